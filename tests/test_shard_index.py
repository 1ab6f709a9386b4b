"""The per-shard index (pipelines/shard_index.py) against damaged shards: cut at a sample
boundary, cut inside a sample, deleted, a foreign sample appended, emptied. The up-front
check lists every damaged shard in one error; each reader (the training loader, local and
URI; the image-shard reader; the feature-shard reader; the WebDataset pipeline) stops at a
damaged shard even when its index was made to agree with the damaged file's size.

The helpers here (`DAMAGES`, `damage`, `repoint_index`) are shared by the entry-point tests
in test_train.py, test_evaluate.py and test_features.py."""
from __future__ import annotations

import io
import json
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipelines import shard_index as si
from pipelines import shard_reader as sr

SHAPE = (4, 2, 3)
PER_SHARD = 5
KEEP = 3  # samples left by a cut


# ---- damage, as an interrupted copy, a full disk or a stray write leaves it ---------------------
def sample_starts(path: Path) -> list[int]:
    """Byte offset of each sample's first header, then the end of the last member."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        end = tar.offset
    starts, last = [], None
    for m in members:
        if si.sample_key(m.name) != last:
            starts.append(m.offset)
            last = si.sample_key(m.name)
    return starts + [end]


def cut_at_sample(path: Path, keep: int = KEEP) -> None:
    """Keep the first `keep` samples, whole (the shard must hold more)."""
    starts = sample_starts(path)
    assert keep < len(starts) - 1, "a cut that loses no sample"
    path.write_bytes(path.read_bytes()[:starts[keep]])


def cut_mid_sample(path: Path, keep: int = KEEP) -> None:
    """Keep the first `keep` samples and part of the next."""
    starts = sample_starts(path)
    path.write_bytes(path.read_bytes()[:(starts[keep] + starts[keep + 1]) // 2 + 7])


def append_foreign(path: Path, keep: int = 0) -> None:
    """Append (tar's own append) a copy of the first sample under a key the writer never wrote."""
    with tarfile.open(path) as tar:
        first = si.sample_key(tar.getmembers()[0].name)
        members = [(m.name.replace(first, "zzz_foreign", 1), tar.extractfile(m).read())
                   for m in tar.getmembers() if si.sample_key(m.name) == first]
    with tarfile.open(path, "a") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def delete(path: Path, keep: int = 0) -> None:
    path.unlink()


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGES = {"cut at a sample boundary": cut_at_sample, "cut mid-sample": cut_mid_sample, "deleted": delete,
           "foreign sample appended": append_foreign}
# what the up-front check says of each
UPFRONT = {"cut at a sample boundary": "truncated: ", "cut mid-sample": "truncated: ", "deleted": "missing (",
           "foreign sample appended": "data appended", "emptied": "empty: 0 bytes"}
# what a reader says of a damaged shard whose index entry was made to agree with its size:
# the tar readers of this project (the loader's, and the streaming reader of every byte) stop
# at the missing end-of-archive marker while the last whole sample is still being grouped;
# WebDataset's reader (URIs, `webdataset_samples`) ends quietly, and the count stops it
CUT_STRICT = (f"read {KEEP - 1} of the {PER_SHARD} samples its index lists, then the tar ends "
              f".*without the end-of-archive marker")
CUT_QUIET = f"read {KEEP} of the {PER_SHARD} samples its index lists: the tar ends early"
MID_SAMPLE = f"read {KEEP} of the {PER_SHARD} samples its index lists, then the tar ends"
FOREIGN = f"sample {PER_SHARD + 1} is one more than the {PER_SHARD} samples its index lists"


def damage(shards: list[Path], kinds=tuple(DAMAGES), keep: int = KEEP) -> dict[Path, str]:
    """Damage shards[i] by kinds[i] (cuts keep `keep` whole samples); {shard: kind}."""
    for path, kind in zip(shards, kinds):
        DAMAGES[kind](path, keep)
    return dict(zip(shards, kinds))


def repoint_index(path: Path) -> None:
    """Make the index entry of `path` agree with its damaged file's size and checksum (keeping
    the sample count), as if the damage happened after writing in a way no size shows."""
    index = path.parent / si.INDEX
    doc = json.loads(index.read_text())
    data = path.read_bytes()
    doc["shards"][path.name].update(bytes=len(data), crc32=f"{zlib.crc32(data):08x}")
    index.write_text(json.dumps(doc))


def assert_lists(message: str, damaged: dict[Path, str]) -> None:
    """One message naming every damaged shard with what the check found."""
    for path, kind in damaged.items():
        line = next((ln for ln in message.splitlines() if str(path) in ln), None)
        assert line is not None, f"{path} ({kind}) not in:\n{message}"
        assert UPFRONT[kind] in line, line


# ---- fixtures ----------------------------------------------------------------------------------
def feature_split(root: Path, shards: int = 6) -> Path:
    """A random feature cache root/rand with 'aaa/train': `shards` shards of PER_SHARD samples."""
    from train.random_cache import write_cache_spec, write_split

    write_cache_spec(root / "rand", SHAPE)
    write_split(root / "rand", "aaa", "train", shards, PER_SHARD, SHAPE, views=2)
    return root / "rand" / "aaa" / "train"


def image_split(root: Path, shards: int = 2) -> Path:
    """Image shards root/aaa/train (records of train.random_cache, stand-in JPEG bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.shards import MANIFEST_SCHEMA, write_tar
    from train.random_cache import random_records

    d = root / "aaa" / "train"
    d.mkdir(parents=True)
    fs, _ = sr.resolve(d)
    rows, entries = [], {}
    for s in range(shards):
        name = sr.shard_name("aaa", "train", s)
        recs = random_records("aaa", "train", PER_SHARD, np.random.default_rng(s), first=s * PER_SHARD)
        samples = [(r.key, b"jpeg " + r.key.encode(), r.to_npz_bytes()) for r in recs]  # JPEGs are not decoded here
        entries[name] = write_tar(fs, str(d / name), samples)
        rows += [dict(key=r.key, dataset="aaa", split="train", shard=name, status="ok", reason=None, bytes=1)
                 for r in recs]
    si.write_index(str(d), entries)
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), d / sr.MANIFEST)
    return d


def _spec(split: Path) -> dict:
    from pipelines.features import read_cache_spec

    return read_cache_spec(str(split.parents[1]))


# ---- the index as written ------------------------------------------------------------------------
def test_written_entries_are_what_the_files_hold(tmp_path):
    d = feature_split(tmp_path, shards=2)
    index = si.read_index(str(d))
    assert sorted(index) == ["aaa-train-000000.tar", "aaa-train-000001.tar"]
    for name, entry in index.items():
        data = (d / name).read_bytes()
        assert entry == si.Entry(PER_SHARD, len(data), f"{zlib.crc32(data):08x}")
        assert si.read_entry(str(d / name)) == entry
    assert si.split_problems(str(d)) == [] and si.verify_split(str(d)) == []
    img = image_split(tmp_path / "shards")
    assert [e.samples for e in si.read_index(str(img)).values()] == [PER_SHARD, PER_SHARD]
    assert si.verify_split(str(img)) == []


def test_hashing_in_a_thread_gives_the_entry_hashing_inline_gives(tmp_path, monkeypatch):
    """The feature writer's CRC-32 in a helper thread, in small batches with a short queue
    (ordering and back-pressure exercised), equals the inline one and the file's."""
    monkeypatch.setattr(si._HashingInThread, "BATCH", 700)
    monkeypatch.setattr(si._HashingInThread, "PENDING", 2)
    rng = np.random.default_rng(0)
    members = [(f"k{i // 3:03d}.m{i % 3}", rng.bytes(int(rng.integers(0, 3000)))) for i in range(60)]
    entries = []
    for threaded in (False, True):
        path = tmp_path / f"{threaded}.tar"
        with open(path, "wb") as f:
            writer = si.ShardWriter(f, hash_in_thread=threaded)
            for name, data in members:
                writer.add(name, data)
            entries.append(writer.close())
        assert si.read_entry(str(path)) == entries[-1]
    assert entries[0] == entries[1] and entries[0].samples == 20


# ---- up front -------------------------------------------------------------------------------------
def test_check_lists_every_damaged_shard_in_one_error(tmp_path):
    d = feature_split(tmp_path)
    shards = sorted(d.glob("*.tar"))
    damaged = damage(shards[:4])
    empty(shards[4])
    damaged[shards[4]] = "emptied"
    stray = d / sr.shard_name("aaa", "train", 7)
    stray.write_bytes(shards[5].read_bytes())
    with pytest.raises(si.ShardCheckError) as e:
        si.check([str(d), str(tmp_path / "rand" / "bbb" / "train")], remedy="do this")
    msg = str(e.value)
    assert msg.startswith("shard check: 6 problem(s)\n") and msg.endswith("\ndo this")
    assert_lists(msg, damaged)
    assert f"{stray}: a shard file that index.json does not name" in msg
    assert str(shards[5]) not in msg  # the whole shard is not listed


def test_index_and_manifest_must_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = feature_split(tmp_path, shards=2)
    table = pq.read_table(d / sr.MANIFEST)
    pq.write_table(table.slice(1), d / sr.MANIFEST)  # the manifest lost a row of shard 0
    assert si.split_problems(str(d)) == [f"{d / 'aaa-train-000000.tar'}: index.json lists 5 samples, "
                                         f"manifest.parquet 4"]
    rows = table.to_pylist()
    rows[0]["shard"] = None
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), d / sr.MANIFEST)
    assert si.split_problems(str(d))[-1] == f"{d / sr.MANIFEST}: 1 ok rows name no shard"


def test_shards_without_an_index_are_refused_until_indexed(tmp_path, capsys):
    from train.data import read_samples

    d = feature_split(tmp_path, shards=3)
    shard = str(d / "aaa-train-000000.tar")
    (d / si.INDEX).unlink()
    assert si.split_problems(str(d)) == [f"{d}: 3 shard(s) without index.json (written before per-shard indexes)"]
    with pytest.raises(si.ShardCheckError, match=f"(?s)rerun `make shards`.*python -m pipelines.shard_index index {d}`$"):
        si.check([str(d)], remedy="not for unindexed shards")
    with pytest.raises(sr.ShardError, match="no shard index.*python -m pipelines.shard_index index"):
        next(read_samples(shard))
    # the indexing step reads every shard whole and checks its count against the manifest
    cut_at_sample(d / "aaa-train-000001.tar")
    assert si.main(["index", str(tmp_path)]) == 1
    assert "aaa-train-000001.tar: no end-of-archive marker" in capsys.readouterr().err
    assert not (d / si.INDEX).exists()
    (d / "aaa-train-000001.tar").unlink()
    (d / "aaa-train-000002.tar").unlink()
    assert si.main(["index", str(tmp_path)]) == 1
    assert "aaa-train-000001.tar: missing (manifest.parquet lists 5 samples in it)" in capsys.readouterr().err
    feature_split(tmp_path / "again", shards=3)
    for name in ("aaa-train-000001.tar", "aaa-train-000002.tar"):
        (d / name).write_bytes((tmp_path / "again" / "rand" / "aaa" / "train" / name).read_bytes())
    assert si.main(["index", str(tmp_path / "rand")]) == 0
    assert "indexed 3 shards, 15 samples" in capsys.readouterr().out
    assert si.read_index(str(d)) == si.read_index(str(tmp_path / "again" / "rand" / "aaa" / "train"))
    assert len(list(read_samples(shard))) == PER_SHARD


def test_checksums_find_bytes_changed_in_place(tmp_path, capsys):
    from pipelines.features import iter_feature_shard

    d = feature_split(tmp_path, shards=2)
    path = d / "aaa-train-000001.tar"
    raw = bytearray(path.read_bytes())
    raw[sample_starts(path)[2] + 3 * 512 + 10] ^= 0xFF  # inside a feature map: same size, same count
    path.write_bytes(bytes(raw))
    assert si.main(["check", str(tmp_path)]) == 0  # sizes and counts: nothing to see
    capsys.readouterr()
    assert si.main(["check", str(tmp_path), "--checksums"]) == 1
    err = capsys.readouterr().err
    assert f"{path}: reads as 5 samples, crc32" in err and "the bytes changed after writing" in err
    with pytest.raises(sr.ShardError, match=f"{path}: .*the bytes changed after writing"):
        list(iter_feature_shard(str(path), _spec(d)))


# ---- while reading ------------------------------------------------------------------------------
def _train_local(path: Path):
    from train.data import read_samples

    return list(read_samples(str(path), (".f16",)))


def _train_uri(path: Path):
    from train.data import read_samples

    return list(read_samples("file://" + str(path)))


def _features(path: Path):
    from pipelines.features import iter_feature_shard

    return list(iter_feature_shard(str(path), _spec(path.parent)))


def _images(path: Path):
    return list(sr.iter_shard(str(path)))


def _webdataset(path: Path):
    return list(sr.webdataset_samples([str(path)]))


READERS = {"train loader": _train_local, "train loader, URI": _train_uri, "feature shards": _features,
           "image shards": _images, "webdataset": _webdataset}
QUIET_AT_THE_END = ("train loader, URI", "webdataset")  # WebDataset's tar iterator


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", DAMAGES)
def test_readers_stop_at_a_damaged_shard(tmp_path, reader, kind):
    d = image_split(tmp_path) if reader in ("image shards", "webdataset") else feature_split(tmp_path, shards=1)
    path = d / "aaa-train-000000.tar"
    assert len(READERS[reader](path)) == PER_SHARD
    damage([path], [kind])
    with pytest.raises(sr.ShardError, match=f"{path}: .*{re.escape(UPFRONT[kind])}"):
        READERS[reader](path)  # at open: the size differs from the index's
    if kind == "deleted":
        return
    repoint_index(path)  # now only the samples as they come show the damage
    streaming = {"cut at a sample boundary": CUT_QUIET if reader in QUIET_AT_THE_END else CUT_STRICT,
                 "cut mid-sample": MID_SAMPLE, "foreign sample appended": FOREIGN}[kind]
    with pytest.raises(sr.ShardError, match=f"{path}: {streaming}"):
        READERS[reader](path)


def test_a_truncated_tail_is_an_error_of_the_tar_reader_itself(tmp_path):
    from train.data import tar_members

    d = feature_split(tmp_path, shards=1)
    path = d / "aaa-train-000000.tar"
    data = path.read_bytes()
    starts = sample_starts(path)
    for cut, match in ((starts[KEEP], "without the end-of-archive marker"),
                       (starts[KEEP] + 3 * 512 + 5, "the member at byte .* has 48 bytes, the file ends")):
        path.write_bytes(data[:cut])
        with pytest.raises(si.TruncatedShard, match=match):
            list(tar_members(str(path), (".f16",)))
        with pytest.raises(si.TruncatedShard, match="no end-of-archive marker|not a complete tar"):
            sr.list_samples(str(path))
