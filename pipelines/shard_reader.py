"""Read the image shards that `pipelines.shards` writes: (PersonFrame, JPEG bytes) per sample.

Layout (`OUT/<dataset>/<split>/`): `<dataset>-<split>-%06d.tar` shards whose samples are
`<key>.jpg` (the 256x192 crop) + `<key>.npz` (`PersonFrame.to_npz_bytes()`, crop space),
members in sorted key order; `manifest.parquet` (one row per input frame) and
`stats.json` beside them.

Two readers:
- `iter_shard` / `iter_split`: plain sequential iteration with strict checks on every
  tar member (a regular file named `<key>.jpg|npz`, keys strictly increasing, each key
  exactly one .jpg then one .npz); a bad member raises `ShardError` naming shard and member.
- `webdataset_samples`: a `webdataset.WebDataset` pipeline for training-time streaming
  (shard shuffling, node/worker splitting), yielding the same (PersonFrame, bytes) pairs.
Both check each shard against the split's `index.json` (`pipelines.shard_index`: size,
sample count, and for `iter_shard` the checksum); a short, cut or padded shard is an error.

Locations are local paths or URIs that `pyarrow.fs.FileSystem.from_uri` understands.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from datasets.errors import InputError
from datasets.image_file import decode_image
from datasets.reader import SYNTHETIC_MARKER, SyntheticMarker, marker_text, parse_marker
from datasets.record import KEY_RE, PersonFrame

SAMPLE_EXTS = ("jpg", "npz")  # the members of one sample, in tar order
MEMBER_RE = re.compile(r"^(?P<key>[A-Za-z0-9_-]+)\.(?P<ext>jpg|npz)$")
SHARD_RE = re.compile(r"^(?P<dataset>[A-Za-z0-9_-]+)-(?P<split>[a-z]+)-(?P<index>\d{6})\.tar$")
MANIFEST = "manifest.parquet"
STATS = "stats.json"


class ShardError(InputError, ValueError):
    """A shard does not follow the layout above; the message names shard and member."""


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(file system, path) for a local path or an object-store URI (`s3://bucket/dir`)."""
    location = str(location)
    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(location)


def join(location: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/'."""
    return "/".join([str(location).rstrip("/"), *parts])


def shard_name(dataset: str, split: str, index: int) -> str:
    return f"{dataset}-{split}-{index:06d}.tar"


def split_dir(out: str | os.PathLike, dataset: str, split: str) -> str:
    """`OUT/<dataset>/<split>` (a local path or URI)."""
    return join(out, dataset, split)


def list_shards(out: str | os.PathLike, dataset: str, split: str) -> list[str]:
    """Locations of the complete shards of one dataset split, in index order."""
    directory = split_dir(out, dataset, split)
    fs, path = resolve(directory)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    names = sorted(i.base_name for i in infos if SHARD_RE.match(i.base_name))
    return [join(directory, n) for n in names]


def read_split_marker(directory: str) -> SyntheticMarker | None:
    """The `SYNTHETIC` marker of a split folder of shards (`datasets.reader`: the assets
    synthetic data was made with), or None (real data, or a folder made before markers)."""
    where = join(directory, SYNTHETIC_MARKER)
    fs, path = resolve(where)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        text = f.read().decode()
    return parse_marker(directory if "://" in directory else path.rsplit("/", 1)[0], text, where)


def write_split_marker(directory: str, marker: SyntheticMarker | None) -> None:
    """Write (or, for real data, remove) the `SYNTHETIC` marker of a split folder."""
    fs, path = resolve(join(directory, SYNTHETIC_MARKER))
    if marker is None:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
        return
    local = path.rsplit("/", 1)[0] if "://" not in directory else directory
    with fs.open_output_stream(path) as f:
        f.write(marker_text(local, marker.assets, marker.sha256).encode())


def read_manifest(out: str | os.PathLike, dataset: str, split: str):
    """The split's manifest as a `pyarrow.Table` (one row per input frame)."""
    fs, path = resolve(join(split_dir(out, dataset, split), MANIFEST))
    return pq.read_table(path, filesystem=fs)


def check_member(shard: str, name: str, is_file: bool = True) -> tuple[str, str]:
    """(key, ext) of a tar member name, or ShardError naming shard and member."""
    m = MEMBER_RE.match(name)
    if not is_file or m is None:
        what = "is not a regular file" if not is_file else \
            f"is not named <key>.{{{','.join(SAMPLE_EXTS)}}} with key in [A-Za-z0-9_-]"
        raise ShardError(f"{shard}: member {name!r} {what}")
    return m["key"], m["ext"]


def _samples(shard: str, members: Iterable[tuple[str, bool, object]]) -> Iterator[tuple[str, dict]]:
    """Group checked tar members (name, is_file, payload) into samples: (key, {ext: payload}).

    Keys must be strictly increasing and each sample exactly one .jpg then one .npz."""
    key, parts, prev = None, [], None
    for name, is_file, payload in members:
        k, ext = check_member(shard, name, is_file)
        if k != key:
            if key is not None:
                yield key, _check_sample(shard, key, parts)
            if prev is not None and k <= prev:
                raise ShardError(f"{shard}: member {name!r}: key {k!r} is out of order or repeated "
                                 f"(after {prev!r})")
            key, parts, prev = k, [], k
        parts.append((ext, payload))
    if key is not None:
        yield key, _check_sample(shard, key, parts)


def _check_sample(shard: str, key: str, parts: list[tuple[str, object]]) -> dict:
    exts = tuple(e for e, _ in parts)
    if exts != SAMPLE_EXTS:
        raise ShardError(f"{shard}: sample {key!r} has members {exts}, expected {SAMPLE_EXTS} in that order")
    return dict(parts)


def iter_members(shard: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample of one shard, checked, and checked against the
    shard's index entry (size, samples, checksum); streams the tar (object stores too)."""
    from pipelines.shard_index import ShardRead

    read = ShardRead(shard)
    yield from read.samples(_samples(shard, read.members()))


def list_samples(shard: str) -> list[tuple[str, int]]:
    """(key, bytes of its members) per sample of one shard, checked as `iter_members`, from
    the tar headers alone (seeks past the data) up to the end-of-archive marker (a tar cut
    anywhere is a ShardError). Not checked against an index: the shard writer's resume
    reads shards of a run that has not written its index yet."""
    from pipelines.shard_index import tar_headers

    members = [(m.name, m.isreg(), m.size) for m in tar_headers(shard)]
    return [(key, sum(sizes.values())) for key, sizes in _samples(shard, members)]


def iter_shard(shard: str) -> Iterator[tuple[PersonFrame, bytes]]:
    """(record in crop space, JPEG bytes) per sample of one shard, in key order."""
    for key, data in iter_members(shard):
        record = PersonFrame.from_npz_bytes(data["npz"], source=f"{shard}:{key}.npz")
        if record.key != key:
            raise ShardError(f"{shard}: member {key}.npz holds the record of key {record.key!r}")
        yield record, data["jpg"]


def iter_split(out: str | os.PathLike, dataset: str, split: str) -> Iterator[tuple[PersonFrame, bytes]]:
    """Every sample of one dataset split, shard by shard."""
    for shard in list_shards(out, dataset, split):
        yield from iter_shard(shard)


def decode_jpeg(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sample's JPEG (decoded as every image is, `datasets.image_file`)."""
    img = decode_image(data)
    if img is None:
        raise ShardError("sample JPEG is not decodable")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _decode_wds_sample(sample: dict) -> tuple[PersonFrame, bytes]:
    url, key = sample.get("__url__", "?"), sample["__key__"]
    exts = sorted(k for k in sample if not k.startswith("__"))
    if not KEY_RE.match(key) or exts != sorted(SAMPLE_EXTS):
        raise ShardError(f"{url}: sample {key!r} has members {exts}, expected {list(SAMPLE_EXTS)} "
                         f"and a key in [A-Za-z0-9_-]")
    record = PersonFrame.from_npz_bytes(sample["npz"], source=f"{url}:{key}.npz")
    return record, sample["jpg"]


def webdataset_samples(urls: str | Iterable[str], shardshuffle: bool | int = False, seed: int = 0, **kwargs):
    """A `webdataset.WebDataset` of (PersonFrame, JPEG bytes) over shard `urls`.

    `urls`: a list of shard paths / URLs or a brace pattern (`.../coco-train-{000000..000012}.tar`);
    `shardshuffle`: False, or the shuffle buffer in shards (seeded by `seed`); other keyword
    arguments go to `webdataset.WebDataset` (e.g. `nodesplitter`, `resampled`).
    """
    import webdataset as wds
    from webdataset.shardlists import expand_urls

    from pipelines.shard_index import ShardRead, counted_by_shard

    urls = expand_urls(urls) if isinstance(urls, str) else list(urls)
    for url in urls:  # up front: each shard there, of the size its index lists
        ShardRead(url)
    ds = wds.WebDataset(urls, shardshuffle=shardshuffle, seed=seed, empty_check=False, **kwargs)
    return ds.compose(counted_by_shard).map(_decode_wds_sample)
