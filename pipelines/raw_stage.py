"""Raw datasets in an object store (`make shards RAW=s3://bucket/raw`): a local mirror for the readers.

The readers (`datasets/`) open their annotation files with random access (3DPW pickles,
MPI-INF-3DHP's MATLAB v5 and HDF5 `.mat` files, label npz), size every image from its
header and every video with OpenCV, all through local paths. Rather than teach each of them
an object-store client, the shard driver mirrors the raw tree once into a local folder and
runs the readers there (`stage`); the shard tasks then read the images and videos from the
bucket itself (`pipelines.shards.ImageSource`), so no other node of a Ray cluster needs the
copy. The driver's disk must hold the raw tree.

Layout: `URI = <scheme>://<bucket>/<key>` is mirrored into `STAGE/<bucket>/<key>` (default
STAGE: `data/raw-stage`), each mirrored folder marked by `.raw-stage.json` naming its URI.
A rerun downloads only what changed: a file is fetched when its local copy is missing or
differs in size or modification time (the copy gets the object's), written to a temporary
name and renamed; local files that the bucket no longer holds are removed. A folder that is
neither empty nor a mirror of the same URI is refused (it is never cleaned).

Synthetic trees (`make synthetic`): a dataset root's `SYNTHETIC` marker names the assets the
tree was rendered with, relative to the root (`../../assets`); that folder of the bucket is
mirrored too, at the same relative place, so the readers find the body models.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from datasets.reader import SYNTHETIC_MARKER
from pipelines.shard_reader import resolve

DEFAULT_STAGE = "data/raw-stage"
MARK = ".raw-stage.json"
THREADS = 16  # concurrent downloads (object stores serve many small files best in parallel)
CHUNK = 1 << 20


class StageError(RuntimeError):
    """The mirror cannot be made (a folder that is not a mirror of this URI, a marker outside the bucket)."""


@dataclass
class StageStats:
    files: int = 0
    fetched: int = 0
    fetched_bytes: int = 0
    removed: int = 0


def mirror_path(uri: str, stage_root: str | os.PathLike) -> Path:
    """Where `uri` is mirrored under `stage_root`: `STAGE/<bucket>/<key>`."""
    _, path = resolve(uri)
    return Path(stage_root) / path.strip("/")


def stage(uri: str, stage_root: str | os.PathLike = DEFAULT_STAGE, log=print) -> Path:
    """Mirror the tree at `uri` (and the assets its synthetic markers name) under
    `stage_root`; returns the local folder that stands for `uri`. FileNotFoundError when the
    store has no such folder."""
    local = mirror_path(uri, stage_root)
    todo = [(uri, local)]
    while todo:
        src, dst = todo.pop()
        t0 = time.perf_counter()
        stats = _mirror(src, dst)
        log(f"== raw stage: {src} -> {dst}: {stats.files} files, {stats.fetched} fetched "
            f"({stats.fetched_bytes / 1e6:.1f} MB), {stats.removed} removed, {time.perf_counter() - t0:.1f} s")
        if src == uri:
            todo += [(a, mirror_path(a, stage_root)) for a in _marked_assets(uri, local)
                     if not a.startswith(uri.rstrip("/") + "/")]  # inside the tree: mirrored already
    return local


def _mirror(uri: str, local: Path) -> StageStats:
    fs, root = resolve(uri)
    root = root.rstrip("/")
    listing = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
               if i.type == pafs.FileType.File]
    if not listing and fs.get_file_info(root).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{uri}: no such folder in the object store")
    _claim(local, uri)
    remote = {posixpath.relpath(i.path, root): i for i in listing}
    stats = StageStats(files=len(remote))
    todo = [(rel, info) for rel, info in sorted(remote.items()) if not _same(local / rel, info)]
    with ThreadPoolExecutor(THREADS) as pool:
        for size in pool.map(lambda item: _fetch(fs, item[1], local / item[0]), todo):
            stats.fetched += 1
            stats.fetched_bytes += size
    for dirpath, _, files in os.walk(local):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(local).as_posix()
            if rel != MARK and rel not in remote:
                path.unlink()
                stats.removed += 1
    return stats


def _claim(local: Path, uri: str) -> None:
    """Make `local` the mirror of `uri`, refusing a folder that holds anything else."""
    mark = local / MARK
    if mark.is_file():
        have = json.loads(mark.read_text()).get("uri")
        if have != uri:
            raise StageError(f"{local}: the mirror of {have}, not of {uri}; choose another RAW_STAGE")
        return
    if local.exists() and any(local.iterdir()):
        raise StageError(f"{local}: not empty and not a raw mirror ({MARK} missing); choose another RAW_STAGE")
    local.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"uri": uri}) + "\n")


def _same(path: Path, info: pafs.FileInfo) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == info.size and st.st_mtime_ns == info.mtime_ns


def _fetch(fs: pafs.FileSystem, info: pafs.FileInfo, path: Path) -> int:
    """Download one object to `path` (temporary name, then rename), with the object's mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}")
    try:
        with fs.open_input_stream(info.path) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        os.utime(tmp, ns=(info.mtime_ns, info.mtime_ns))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return info.size


def _marked_assets(uri: str, local: Path) -> list[str]:
    """URIs of the assets folders that the staged tree's synthetic markers name."""
    out = set()
    for marker in sorted(local.rglob(SYNTHETIC_MARKER)):
        try:
            rel = json.loads(marker.read_text())["assets"]
        except (ValueError, KeyError, TypeError) as e:
            raise StageError(f"{marker}: unreadable synthetic marker ({e})") from e
        root_rel = marker.parent.relative_to(local).as_posix()
        target = posixpath.normpath(posixpath.join(root_rel, rel))
        scheme, _, rest = uri.partition("://")
        base = rest.strip("/")  # <bucket>/<key> (file:// URIs: the first folder stands for the bucket)
        joined = posixpath.normpath(posixpath.join(base, target))
        if joined.startswith("..") or joined.split("/", 1)[0] != base.split("/", 1)[0]:
            raise StageError(f"{marker}: assets {rel!r} lie outside the bucket of {uri}")
        out.add(f"{scheme}://{'/' if rest.startswith('/') else ''}{joined}")
    return sorted(out)
