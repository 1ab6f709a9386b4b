"""train.data: mixing ratios, shard splitting, equal epochs on every rank, exact replay
after a resume, view draws, validation coverage — on tiny caches written here."""
from __future__ import annotations

import io
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipelines.shard_reader import ShardError

from train.batch import collate
from train.config import DataConfig
from train.data import (DataError, FeatureDataModule, FeatureStream, StepSyncedLoader, ValStream, consumer_shards,
                        open_cache, train_sources)
from train.random_cache import write_cache_spec, write_split

SHAPE = (4, 2, 3)
B = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache whose sample keys name their dataset: 'aaa' 6 shards x 5, 'bbb' 2 shards x 5
    (each with 3 views), a 'aaa' val split of 3 shards x 3."""
    root = tmp_path_factory.mktemp("features")
    c = root / "rand"
    write_cache_spec(c, SHAPE)
    write_split(c, "aaa", "train", 6, 5, SHAPE, views=3)
    write_split(c, "bbb", "train", 2, 5, SHAPE, views=3)
    write_split(c, "aaa", "val", 3, 3, SHAPE)
    return root


def _cfg(**kw) -> DataConfig:
    return DataConfig(**{"cache": "rand", "mix": {"aaa": 1.0, "bbb": 1.0}, "val_dataset": "aaa",
                         "shuffle_buffer": 4, "workers": 0, **kw})


def _stream(cache, rank=0, world=1, batches=6, views="random", weights=None, seed=0):
    root, spec = open_cache(str(cache), "rand")
    sources, w = train_sources(root, _cfg())
    return FeatureStream(sources, np.asarray(weights) if weights is not None else w, spec, B, batches,
                         rank, world, seed, 4, views)


def _keys(loader) -> list[list[str]]:
    return [b["key"] for b in loader]


def test_mixing_follows_the_weights(cache):
    ds = _stream(cache, batches=250, weights=[0.25, 0.75])
    counts = Counter(fr.fields()["dataset"] for _, fr in ds)
    assert sum(counts.values()) == 1000
    assert abs(counts["bbb"] / 1000 - 0.75) < 0.05


def test_maps_are_read_once_into_the_batch_and_bytes_are_decoded_as_views(cache):
    from train.batch import LazyMap, MapReads, materialize
    from train.data import decode_sample, one_view, read_samples

    ds = _stream(cache)
    lazy, frame = next(iter(ds))
    assert isinstance(lazy, LazyMap) and lazy.shape == SHAPE
    eager = collate([(lazy, frame)] * 3)
    assert eager["features"].dtype == torch.float16 and eager["features"].shape == (3, *SHAPE)
    assert eager["joints_3d"].shape == (3, 24, 4) and eager["has_smpl"].dtype == torch.bool
    assert eager["key"] == [frame.key] * 3
    deferred = collate([(lazy, frame)] * 3, lazy=True)
    assert isinstance(deferred["features"], MapReads)
    assert torch.equal(materialize(deferred)["features"], eager["features"])
    # bytes read in memory (remote shards) decode to a view of them, no copy
    sample = next(read_samples(lazy.span.path))
    feats, _ = decode_sample(one_view(sample, "plain", None), ds.spec)
    assert feats.dtype == np.float16 and feats.shape == SHAPE and not feats.flags.owndata
    first = next(s for s in read_samples(lazy.span.path, (".f16",)) if s["__key__"] == sample["__key__"])
    assert torch.equal(collate([(feats, frame)])["features"][0],
                       collate([decode_sample(one_view(first, "plain", None), ds.spec)])["features"][0])


def test_views_random_draws_every_view_and_plain_draws_view_zero(cache):
    assert {fr.fields()["view"] for _, fr in _stream(cache)} == {0, 1, 2}
    assert {fr.fields()["view"] for _, fr in _stream(cache, views="plain")} == {0}


def test_consumers_read_disjoint_shards_that_cover_the_dataset():
    shards = tuple(f"s{i}" for i in range(7))
    for consumers in (1, 3, 7):
        got = [consumer_shards(shards, c, consumers, np.random.default_rng(0)) for c in range(consumers)]
        assert sorted(s for g in got for s in g[0]) == sorted(shards)
        assert all(stride == 1 for _, stride, _ in got)
    # fewer shards than consumers: shared shards, split at the sample level
    got = [consumer_shards(shards[:2], c, 5, np.random.default_rng(0)) for c in range(5)]
    slots = Counter((g[0][0], g[2]) for g in got)
    assert len(slots) == 5 and {g[1] for g in got if g[0][0] == got[0][0][0]} == {3}


@pytest.mark.parametrize("workers", [0, 2])
def test_every_rank_yields_the_same_number_of_batches_of_different_samples(cache, workers):
    per_rank = []
    for rank in range(3):  # 3 ranks x 2 workers = 6 consumers over 6 + 2 shards
        ds = _stream(cache, rank=rank, world=3, batches=3)
        loader = StepSyncedLoader(ds, step=lambda: 0, batch_size=B, num_workers=workers, collate_fn=collate)
        keys = _keys(loader)
        assert len(loader) == 3 and len(keys) == 3 and all(len(k) == B for k in keys)
        per_rank.append({k for b in keys for k in b if k.startswith("aaa")})
    assert not (per_rank[0] & per_rank[1]) and not (per_rank[1] & per_rank[2]) and not (per_rank[0] & per_rank[2])


@pytest.mark.parametrize("workers, stops", [(0, (1, 6)), (3, (2, 4))])
def test_a_resumed_epoch_replays_exactly_the_rest_of_the_stream(cache, workers, stops):
    def run(step):
        loader = StepSyncedLoader(_stream(cache, batches=7), step=lambda: step, batch_size=B, num_workers=workers,
                                  collate_fn=collate)
        return _keys(loader)
    full = run(0)
    assert len(full) == 7
    for done in stops:
        assert run(done) == full[done:], done
    nxt = run(7)  # the next epoch is another draw
    assert len(nxt) == 7 and nxt != full
    assert run(9) == nxt[2:]


def test_persistent_workers_see_the_step_of_each_new_epoch(cache):
    ds = _stream(cache, batches=2)
    step = {"v": 0}
    loader = StepSyncedLoader(ds, step=lambda: step["v"], batch_size=B, num_workers=2, collate_fn=collate,
                              persistent_workers=True)
    e0 = _keys(loader)
    step["v"] = 2
    e1 = _keys(loader)
    step["v"] = 0
    assert _keys(loader) == e0 and e1 != e0


def test_validation_reads_each_sample_once_over_ranks_and_workers(cache):
    root, spec = open_cache(str(cache), "rand")
    from train.data import find_source

    src = find_source(root, "aaa", "val")
    seen = []
    for rank in range(2):
        loader = DataLoader(ValStream(src, spec, rank, 2), batch_size=2, num_workers=2, collate_fn=collate)
        seen += [k for b in loader for k in b["key"]]
    assert len(seen) == src.samples == 9 and len(set(seen)) == 9


def test_datamodule_counts_from_the_manifest_and_checks_the_tree(cache):
    dm = FeatureDataModule(_cfg(), str(cache), global_batch=8, seed=0)
    assert dm.epoch_samples == 40 and dm.batches_per_epoch == 5 and dm.feature_shape == SHAPE
    dm.configure(rank=1, world=2)
    assert dm.batch_size == 4
    with pytest.raises(DataError, match="not divisible"):
        dm.configure(rank=0, world=3)
    with pytest.raises(DataError, match=r"ccc.*data\.mix"):
        FeatureDataModule(_cfg(mix={"ccc": 1.0}), str(cache), 8, 0)
    with pytest.raises(DataError, match=r"data\.cache"):
        FeatureDataModule(_cfg(cache="nope"), str(cache), 8, 0)


def test_batch_fields_read_the_npz_as_the_record_does(cache):
    from datasets.record import PersonFrame, RecordError
    from train.batch import BATCH_FIELDS, batch_fields
    from train.random_cache import random_records

    fr = random_records("aaa", "train", 1, np.random.default_rng(0), has_smpl_rate=0.0)[0].replace(view=2)
    fields = batch_fields(fr.to_npz_bytes(), source="x.npz")
    for name in BATCH_FIELDS:
        assert np.array_equal(fields[name], getattr(fr, name)), name
    a, b = collate([(np.zeros(SHAPE, np.float16), fr)]), collate([(np.zeros(SHAPE, np.float16), fields)])
    assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)
    bad = fr.to_npz_bytes().replace(np.float32(fr.betas[0]).tobytes(), np.float32(np.nan).tobytes(), 1)
    with pytest.raises(RecordError, match=r"x\.npz.*betas"):
        batch_fields(bad, source="x.npz")
    assert PersonFrame.from_npz_bytes(fr.to_npz_bytes()).key == fields["key"]


def test_batch_fields_of_a_record_without_the_optional_arrays():
    """A record without intrinsics and crop affine (3DHP's, or one written before them) gives
    zeros of those fields' shapes and has_intrinsics False; every array comes out float32, as
    a targets row holds it (image_hw is int64 in the record); a member a batch does not carry
    is not read (here one that only unpickling could read)."""
    import io

    from train.batch import ARRAYS, batch_fields
    from train.random_cache import random_records

    fr = random_records("aaa", "train", 1, np.random.default_rng(0))[0].replace(intrinsics=None, crop_affine=None)
    z = dict(np.load(io.BytesIO(fr.to_npz_bytes()), allow_pickle=False))
    assert "intrinsics" not in z and "crop_affine" not in z and z["image_hw"].dtype == np.int64
    buf = io.BytesIO()
    np.savez(buf, **z, notes=np.array([{"made by": "a newer writer"}], dtype=object))
    fields = batch_fields(buf.getvalue(), source="x.npz")
    assert fields["has_intrinsics"] is False
    assert np.array_equal(fields["intrinsics"], np.zeros((3, 3))) and np.array_equal(fields["crop_affine"],
                                                                                       np.zeros((2, 3)))
    assert np.array_equal(fields["image_hw"], fr.image_hw)
    for name in ARRAYS:
        assert fields[name].dtype == np.float32, name
        if name not in ("intrinsics", "crop_affine"):
            assert np.array_equal(fields[name], getattr(fr, name)), name


def test_is_smpl_marks_the_rows_whose_parameters_are_smpl():
    """is_smpl (B,) bool is body_model == 'smpl' row by row (SMPL-X parameters, e.g. RICH's,
    never supervise the SMPL heads, `train.losses`): the same from records, from npz fields
    and from targets rows."""
    from train.batch import TargetRow, batch_fields
    from train.random_cache import random_records

    frames = random_records("aaa", "train", 3, np.random.default_rng(0))
    frames = [frames[0].replace(body_model="smplx"), frames[1].replace(body_model="smpl"),
              frames[2].replace(body_model="smplx")]
    feats = np.zeros(SHAPE, np.float16)
    for records in (frames, [batch_fields(f.to_npz_bytes(), source="x.npz") for f in frames],
                    [TargetRow(f.key, f.to_targets_bytes(), "x.tgt") for f in frames]):
        batch = collate([(feats, r) for r in records])
        assert batch["body_model"] == ["smplx", "smpl", "smplx"]
        assert batch["is_smpl"].dtype == torch.bool and batch["is_smpl"].tolist() == [False, True, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_materialize_pins_every_tensor_of_a_batch_for_the_gpu(cache):
    """With `pin_memory` (training on a GPU) every tensor of the batch is in pinned memory,
    the maps read from disk included, with the values of an unpinned batch; lists stay lists."""
    from train.batch import materialize

    lazy, frame = next(iter(_stream(cache)))
    plain = materialize(collate([(lazy, frame)] * 2, lazy=True))
    pinned = materialize(collate([(lazy, frame)] * 2, lazy=True), pin_memory=True)
    assert pinned.keys() == plain.keys()
    for k, v in pinned.items():
        if torch.is_tensor(v):
            assert v.is_pinned() and torch.equal(v, plain[k]), k
        else:
            assert v == plain[k], k


def _stack_f16(samples):
    from train.batch import stack

    out = stack(samples, torch.float16)
    return out, out.is_shared()


def test_stack_writes_a_workers_batch_into_shared_memory():
    """`stack` in a DataLoader worker writes the maps once, straight into shared memory (the
    batch then goes to the training process without another copy); in the training process
    into ordinary memory. Read-only views (maps decoded from bytes) stack as arrays do."""
    from train.batch import stack

    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=SHAPE).astype(np.float16) for _ in range(3)]
    arrays[1] = np.frombuffer(arrays[1].tobytes(), np.float16).reshape(SHAPE)  # read-only
    want = torch.from_numpy(np.stack(arrays))
    local = stack(arrays, torch.float16)
    assert torch.equal(local, want) and not local.is_shared()
    got, shared = next(iter(DataLoader(arrays, batch_size=3, num_workers=1, collate_fn=_stack_f16)))
    assert torch.equal(got, want) and shared


# `encoder.json` `targets` of caches written before the rows carried the camera (image size,
# box, crop affine, intrinsics, SMPL translation): datasets.record.targets_layout() then
OLD_TARGETS = {"member": "tgt", "layout": [
    ["smpl_pose", "<f4", [24, 3]], ["betas", "<f4", [10]], ["joints_3d", "<f4", [24, 4]],
    ["keypoints_2d", "<f4", [24, 3]], ["has_smpl", "|b1", []], ["synthetic", "|b1", []], ["view", "<i8", []],
    ["gender", "|u1", []], ["body_model", "|u1", []], ["dataset", "|S32", []]]}


def _npz_copy(cache, slow, old: str = "none"):
    """A copy of `cache` at `slow` whose encoder.json lacks `targets` (old "none") or names
    the older rows' layout: the loader reads the batch fields from the npz records."""
    import json
    import shutil

    from pipelines.features import has_targets

    shutil.copytree(cache, slow)
    spec_path = slow / "rand" / "encoder.json"
    spec = json.loads(spec_path.read_text())
    if old == "none":
        del spec["targets"]
    else:
        spec["targets"] = OLD_TARGETS
    assert not has_targets(spec)
    spec_path.write_text(json.dumps(spec))
    return slow


@pytest.fixture(scope="module")
def npz_cache(cache, tmp_path_factory):
    return _npz_copy(cache, tmp_path_factory.mktemp("npz") / "features")


@pytest.mark.parametrize("old", ["none", "older layout"])
def test_targets_rows_give_the_batches_the_npz_records_give(cache, tmp_path, old):
    """The loader's fast path (`.tgt` rows) and its fallback (a cache whose encoder.json
    lacks `targets`, or names a layout other than this code's: read through the npz
    records) make the same batches, the camera fields included."""
    from train.batch import materialize

    slow = _npz_copy(cache, tmp_path / "slow", old)
    batches = []
    for root in (cache, slow):
        dm = FeatureDataModule(_cfg(), str(root), global_batch=8, seed=0)
        batches.append([materialize(b) for b, _ in zip(dm.train_dataloader(), range(3))])
    for fast, plain in zip(*batches):
        assert fast.keys() == plain.keys() and {"intrinsics", "has_intrinsics", "box_size", "image_hw"} <= fast.keys()
        for k in fast:
            assert torch.equal(fast[k], plain[k]) if torch.is_tensor(fast[k]) else fast[k] == plain[k], k


@pytest.mark.parametrize("path", ["targets rows", "npz records", "remote"])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_map_belongs_to_its_targets(cache, npz_cache, path, workers):
    """Each map of every training and validation batch is the map of its own targets' key
    and view: `train.random_cache` seeds a sample's map by (key, view), so a map of another
    view (or sample) paired with these targets differs from `feature_map(key, view)`. The
    remote path (a URI: maps read in memory, stacked in the worker) too."""
    from train.batch import materialize
    from train.random_cache import feature_map

    root = {"targets rows": str(cache), "npz records": str(npz_cache), "remote": "file://" + str(cache)}[path]
    dm = FeatureDataModule(_cfg(workers=workers), root, global_batch=8, seed=0)
    train_batches = [materialize(b) for b, _ in zip(dm.train_dataloader(), range(5))]
    val_batches = [materialize(b) for b in dm.val_dataloader()]
    seen = Counter()
    for batch in train_batches + val_batches:
        assert len(batch["key"]) == len(batch["view"]) == len(batch["features"]) > 0
        for key, view, fmap in zip(batch["key"], batch["view"].tolist(), batch["features"]):
            assert np.array_equal(fmap.numpy(), feature_map(key, view, SHAPE)), f"{key} view {view}: another map"
            seen[view] += 1
    assert set(seen) == {0, 1, 2}  # views 1 and 2 drawn: a view-0 map on their targets would show
    assert sum(len(b["key"]) for b in val_batches) == 9


def test_a_bad_targets_row_is_named(cache):
    from datasets.record import TARGETS_DTYPE, RecordError
    from train.batch import TargetRow
    from train.random_cache import random_records

    fr = random_records("aaa", "train", 1, np.random.default_rng(0))[0]
    row = fr.to_targets_bytes()
    assert TargetRow(fr.key, row, "s.tar:k.v0.tgt").fields()["key"] == fr.key
    bad = row.replace(np.float32(fr.betas[0]).tobytes(), np.float32(np.inf).tobytes(), 1)
    with pytest.raises(RecordError, match=r"s\.tar:k\.v0\.tgt.*betas.*non-finite"):
        collate([(np.zeros(SHAPE, np.float16), TargetRow(fr.key, row, "ok")),
                 (np.zeros(SHAPE, np.float16), TargetRow(fr.key, bad, "s.tar:k.v0.tgt"))])
    with pytest.raises(RecordError, match=rf"s\.tar.*{TARGETS_DTYPE.itemsize - 1} bytes"):
        collate([(np.zeros(SHAPE, np.float16), TargetRow(fr.key, row[:-1], "s.tar"))])


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_reader_agrees_with_tarfile(tmp_path, fmt):
    from train.batch import Span
    from train.data import tar_members

    long = "d" * 60 + "/" + "k" * 90 + ".v0.f16"  # over ustar's 100-byte name field
    members = [("a.enc", b"x"), (long, bytes(range(256)) * 5), ("a.v0.npz", b"")]
    if fmt == tarfile.PAX_FORMAT:
        members.append(("caf\u00e9.npz", b"pax path"))
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        tar.addfile(_dir("adir"))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = list(tar_members(str(path), lazy=(".f16",)))
    assert [n for n, _ in got] == [n for n, _ in members]
    for (name, data), (_, value) in zip(members, got):
        if isinstance(value, Span):
            out = np.empty(value.size, np.uint8)
            value.read_into(out)
            value = out.tobytes()
        assert value == data, name
    raw = bytearray(path.read_bytes())
    raw[600] ^= 0xFF  # inside the second header
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"t\.tar.*byte 512.*checksum"):
        list(tar_members(str(path)))


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_uri_shards_stream_through_pyarrow_and_match_local_reads(cache):
    from train.batch import materialize
    from train.data import read_samples

    shard = str(next((cache / "rand" / "aaa" / "train").glob("*.tar")))
    local = list(read_samples(shard))
    remote = list(read_samples("file://" + shard))
    assert [s["__key__"] for s in remote] == [s["__key__"] for s in local]
    assert all(a[k] == b[k] for a, b in zip(local, remote) for k in a if not k.startswith("__"))
    dm_local = FeatureDataModule(_cfg(), str(cache), global_batch=4, seed=0)
    dm_uri = FeatureDataModule(_cfg(), "file://" + str(cache), global_batch=4, seed=0)
    a = materialize(next(iter(dm_local.train_dataloader())))
    b = materialize(next(iter(dm_uri.train_dataloader())))
    assert a["key"] == b["key"] and torch.equal(a["features"], b["features"])


def _first_sample(cache, lazy=()):
    from train.data import read_samples

    shard = str(sorted((cache / "rand" / "aaa" / "train").glob("*.tar"))[0])
    return shard, next(read_samples(shard, lazy))


def test_bad_samples_are_named_by_shard_and_key(cache):
    """one_view / decode_sample errors name `<shard>:<key>` (or `?` for what is unknown)."""
    from train.data import decode_sample, lazy_members, one_view

    root, spec = open_cache(str(cache), "rand")
    with pytest.raises(ShardError, match=r"^u\.tar:k: no view in the sample \(members \['enc'\]\)"):
        one_view({"__url__": "u.tar", "__key__": "k", "enc": b"x"}, "plain", None)
    with pytest.raises(ShardError, match=r"^\?:\?: no view 0 \(views \[1\]\)"):
        one_view({"v1.f16": b"", "v1.npz": b""}, "plain", None)
    shard, sample = _first_sample(cache, lazy_members(spec))
    key = sample["__key__"]
    del sample["enc"]
    with pytest.raises(ShardError, match=rf"^{shard}:{key}: made by encoder '', the cache's is 'random-features'"):
        decode_sample(one_view(sample, "plain", None), spec)
    shard, sample = _first_sample(cache, lazy_members(spec))
    del sample["v0.tgt"]  # a cache that promises rows, a sample without one (its npz left on disk)
    with pytest.raises(ShardError, match=rf"^{shard}:{key}: the cache's spec promises targets rows"):
        decode_sample(one_view(sample, "plain", None), spec)
    shard, sample = _first_sample(cache, lazy_members(spec))
    from datasets.record import TARGETS_DTYPE, RecordError

    row = np.frombuffer(sample["v0.tgt"], TARGETS_DTYPE).copy()
    row["betas"][0, 0] = np.nan
    sample["v0.tgt"] = row.tobytes()
    with pytest.raises(RecordError, match=rf"^{shard}:{key}\.v0\.tgt: field 'betas' has non-finite"):
        collate([decode_sample(one_view(sample, "plain", None), spec)])
    row = np.frombuffer(sample["v0.tgt"], TARGETS_DTYPE).copy()
    row["betas"][0, 0], row["gender"][0] = 0.0, 3  # GENDERS has 3 codes
    sample["v0.tgt"] = row.tobytes()
    with pytest.raises(RecordError, match=r"field 'gender' has code 3, expected < 3"):
        collate([decode_sample(one_view(sample, "plain", None), spec)])


def test_a_bad_npz_record_is_named_by_shard_key_and_view(npz_cache):
    """A cache without targets rows: the view's record is read from its npz member, and a bad
    one is a RecordError naming `<shard>:<key>.v<view>.npz` (here view 2, drawn)."""
    from datasets.record import PersonFrame, RecordError
    from train.data import decode_sample, lazy_members, one_view

    _, spec = open_cache(str(npz_cache), "rand")
    shard, sample = _first_sample(npz_cache, lazy_members(spec))
    key = sample["__key__"]
    view = one_view(sample, "random", np.random.default_rng(2))
    assert view["__view__"] == 2 and view["npz"] is sample["v2.npz"]
    fr = PersonFrame.from_npz_bytes(view["npz"])
    view["npz"] = view["npz"].replace(np.float32(fr.betas[0]).tobytes(), np.float32(np.nan).tobytes(), 1)
    with pytest.raises(RecordError, match=rf"^{shard}:{key}\.v2\.npz: .*betas"):
        decode_sample(view, spec)


def test_npz_records_are_checked_field_by_field():
    import io

    from datasets.record import RecordError
    from train.batch import batch_fields
    from train.random_cache import random_records

    fr = random_records("aaa", "train", 1, np.random.default_rng(0))[0]

    def npz_without(drop=(), **replace):
        z = dict(np.load(io.BytesIO(fr.to_npz_bytes()), allow_pickle=False))
        for k in drop:
            del z[k]
        z.update(replace)
        buf = io.BytesIO()
        np.savez(buf, **z)
        return buf.getvalue()

    with pytest.raises(RecordError, match=r"x\.npz: field 'betas' has shape \(9,\) float32, expected \(10,\)"):
        batch_fields(npz_without(betas=np.zeros(9, np.float32)), source="x.npz")
    with pytest.raises(RecordError, match=r"x\.npz: target file lacks field\(s\) \['gender'\]"):
        batch_fields(npz_without(["gender"]), source="x.npz")
    assert batch_fields(npz_without(["body_model"]), source="x.npz")["body_model"] == "smpl"  # written before it


def test_collate_keeps_targets_as_numpy_in_workers_and_makes_tensors_after():
    from train.batch import materialize
    from train.random_cache import random_records

    frames = random_records("aaa", "train", 2, np.random.default_rng(0))
    feats = np.zeros(SHAPE, np.float16)
    lazy = collate([(feats, fr) for fr in frames], lazy=True)
    assert isinstance(lazy["betas"], np.ndarray) and lazy["betas"].dtype == np.float32
    eager = collate([(feats, fr) for fr in frames])
    assert eager["betas"].dtype == torch.float32 and eager["view"].dtype == torch.int64
    assert eager["has_smpl"].dtype == torch.bool
    assert torch.equal(materialize(lazy)["betas"], eager["betas"])
