"""`make shards`: raw datasets -> 256x192 WebDataset shards + manifest, with Ray Data.

Launch:
    python -m pipelines.shards --raw data/synthetic/raw --out data/shards
    RAY_ADDRESS=head:6379 python -m pipelines.shards --raw s3://bucket/raw --out s3://bucket/shards
(a cluster and a bucket: docs/scale-out.md; a raw tree in a bucket is mirrored for the readers
into `--raw-stage`, `pipelines.raw_stage`).

Stages, top to bottom (per dataset and split):
1. read (driver): the reader's `PersonFrame | Reject`s (light metadata; a raw tree in an
   object store is read from its local mirror, `pipelines.raw_stage`). Reader rejects
   and label rejects (`crop.label_reject`: non-finite label, box outside the image, no
   visible keypoint in the crop) become manifest rows at once.
   Holds after: every frame read is either a row or a croppable record.
2. plan (driver): the croppable records sorted by key, cut into shards of at most
   `samples_per_shard()` (the sample count bound, and a byte bound that holds for any
   image content, see `ShardSettings`). Shard i of a split always gets the same keys.
3. crop + encode + write (Ray Data, one row = one shard, one CPU task each): decode the
   source image (undecodable, or not the size the labels say: `corrupt_image`; gone:
   `missing_image`), warp, JPEG-encode, serialize the crop-space record, and stream the
   samples in key order into `.tmp-<shard>.<id>` with fixed tar metadata, renamed to
   `<shard>` when complete; its sample count, size and checksum are taken as it is written
   (`pipelines.shard_index.ShardWriter`). A shard that already exists (an earlier,
   interrupted run) is checked against the plan from its tar headers instead, and read
   once for its checksum.
   Holds after: each planned frame is in its shard or an image-reject row.
4. index and manifest (driver): the split's `index.json` (per shard: samples, bytes,
   CRC-32), then one row per frame read, sorted by key -> `manifest.parquet` (temporary
   name + rename, written last), `stats.json`.

Outputs per split: `OUT/<dataset>/<split>/{<dataset>-<split>-%06d.tar, index.json,
manifest.parquet, stats.json, build.json}`; `build.json` holds the settings the shards were
made with, and a rerun with other settings into the same folder is refused. `stats.json`
also says on which Ray nodes the shards of this run were written (`nodes`). A split read
from synthetic data also gets its raw root's `SYNTHETIC` marker (`datasets.reader`: the
stand-ins its ground truth was made with, as a path relative to the split folder, and their
digest), which `make features` carries on and training and evaluation take their assets from.

Determinism: the same input and settings give byte-identical shards in any output folder,
whatever the number of workers, interruptions included (JPEG and npz encoding are
deterministic; tar members are in key order with mtime 0, uid/gid 0, empty owner names,
mode 0644).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from datasets.assets import Assets, assets_digest
from datasets.check import coverage_cell, label_coverage
from datasets.errors import InputError, fail
from datasets.progress import Progress
from datasets.progress import progress as progress_of
from datasets.reader import SyntheticMarker, read_synthetic_marker
from datasets.record import PersonFrame, Reject, reject_reason
from pipelines.crop import (CropSettings, crop_frame, decode_image, encode_jpeg, jpeg_bytes_bound,
                            label_reject)
from pipelines.raw_stage import DEFAULT_STAGE, StageError, stage
from pipelines.shard_index import Entry, ShardWriter, read_entry, write_index
from pipelines.shard_reader import (MANIFEST, SHARD_RE, STATS, ShardError, join, list_samples, resolve,
                                    shard_name, split_dir, write_split_marker)
from pipelines.tar import BLOCK as TAR_BLOCK
from pipelines.tar import RECORD as TAR_RECORD

DEFAULT_MAX_SAMPLES = 1000
DEFAULT_MAX_BYTES = 1_000_000_000
BUILD = "build.json"
TMP_PREFIX = ".tmp-"  # `.tmp-<name>.<unique>`: a file being written; removed by the next run
# A sample's tar overhead: two headers, two paddings, and room for PAX headers of long names.
TAR_SAMPLE_OVERHEAD = 8 * TAR_BLOCK
# End of archive: two zero blocks, padded to tarfile's record size.
TAR_END = 2 * TAR_BLOCK + TAR_RECORD
TARGET_BYTES_BOUND = 64 * 1024  # a record's npz is ~8 KB; a larger one is an error
OK, REJECTED = "ok", "rejected"
MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("dataset", pa.string()), ("split", pa.string()),
    ("shard", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("bytes", pa.int64()),  # bytes of the sample's members (null for rejects)
])

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSettings:
    """Everything that determines the bytes of the shards (stored as `build.json`).

    The byte bound is enforced at planning time, before any image is encoded, so that a
    shard's keys depend on nothing but the sorted keys: a shard holds at most
    `(max_bytes - TAR_END) // sample_bytes_bound()` samples, where the bound holds for any
    image content (`crop.jpeg_bytes_bound`). It is a cap, not a target: with the defaults
    the count bound (1000) decides, and a 1000-sample shard is ~30-60 MB.
    """

    crop: CropSettings = CropSettings()
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_bytes: int = DEFAULT_MAX_BYTES

    def sample_bytes_bound(self) -> int:
        return jpeg_bytes_bound(self.crop.crop_hw) + TARGET_BYTES_BOUND + TAR_SAMPLE_OVERHEAD

    def samples_per_shard(self) -> int:
        n = min(self.max_samples, (self.max_bytes - TAR_END) // self.sample_bytes_bound())
        if n < 1:
            raise ValueError(f"max_bytes={self.max_bytes} cannot hold one sample "
                             f"(bound {self.sample_bytes_bound() + TAR_END} bytes)")
        return n

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop"]["crop_hw"] = list(d["crop"]["crop_hw"])
        return d


# ---- source images -----------------------------------------------------------------------
class ImageError(Exception):
    """A source image or video frame cannot be read; `reason` is a manifest reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ImageSource:
    """Reads the source images of one dataset root (local path or URI), in record order.

    Keeps the last decoded image (several people in one image are adjacent in key order)
    and one open video: frames of a video come in increasing order, so they are decoded
    sequentially, seeking only across gaps (`SEEK_GAP` frames or more).
    """

    SEEK_GAP = 4

    def __init__(self, root: str):
        self.root = root
        self.fs, self.path = resolve(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self._last: tuple[tuple[str, int], np.ndarray] | None = None
        self._video: tuple[str, cv2.VideoCapture] | None = None
        self._next_frame = 0
        self._tmp: tempfile.TemporaryDirectory | None = None

    def read(self, image_path: str, video_frame: int = -1) -> np.ndarray:
        """(H, W, 3) uint8 BGR as stored (EXIF orientation ignored: `datasets.image_file`, the
        convention of the readers' header size), or ImageError with a `missing_image` /
        `corrupt_image` reason."""
        ident = (image_path, video_frame)
        if self._last is not None and self._last[0] == ident:
            return self._last[1]
        img = self._read_video(image_path, video_frame) if video_frame >= 0 else self._read_image(image_path)
        self._last = (ident, img)
        return img

    def _file(self, image_path: str) -> str:
        return f"{self.path}/{image_path}"

    def _read_image(self, image_path: str) -> np.ndarray:
        try:
            if self.local:
                with open(self._file(image_path), "rb") as f:
                    data = f.read()
            else:
                with self.fs.open_input_stream(self._file(image_path)) as f:
                    data = f.read()
        except FileNotFoundError:
            raise ImageError(reject_reason("missing_image", image_path)) from None
        img = decode_image(data)
        if img is None:
            raise ImageError(reject_reason("corrupt_image", f"{image_path} is not a decodable image"))
        return img

    def _open_video(self, image_path: str) -> cv2.VideoCapture:
        if self._video is not None and self._video[0] == image_path:
            return self._video[1]
        self.close_video()
        path = self._file(image_path)
        if not self.local:  # OpenCV reads local files: copy the video once per task
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="shards-video-")
            local = os.path.join(self._tmp.name, "video" + os.path.splitext(image_path)[1])
            try:
                pafs.copy_files(path, local, source_filesystem=self.fs,
                                destination_filesystem=pafs.LocalFileSystem())
            except FileNotFoundError:
                raise ImageError(reject_reason("missing_image", image_path)) from None
            path = local
        elif not os.path.isfile(path):
            raise ImageError(reject_reason("missing_image", image_path))
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise ImageError(reject_reason("corrupt_image", f"{image_path} is not a readable video"))
        self._video, self._next_frame = (image_path, cap), 0
        return cap

    def _read_video(self, image_path: str, frame: int) -> np.ndarray:
        cap = self._open_video(image_path)
        if frame < self._next_frame or frame - self._next_frame >= self.SEEK_GAP:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            self._next_frame = frame
        while self._next_frame < frame:
            if not cap.grab():
                break
            self._next_frame += 1
        ok, img = cap.read() if self._next_frame == frame else (False, None)
        self._next_frame = frame + 1
        if not ok or img is None:
            raise ImageError(reject_reason("corrupt_image", f"{image_path} frame {frame} is not decodable"))
        return img

    def close_video(self) -> None:
        if self._video is not None:
            self._video[1].release()
            self._video = None

    def close(self) -> None:
        self.close_video()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def load_crop(source: ImageSource, record: PersonFrame, settings: CropSettings) -> tuple[bytes, PersonFrame]:
    """(JPEG bytes, crop-space record) of one croppable record: decode + warp + encode.

    ImageError when the image is unreadable or not the size the labels were made on."""
    image = source.read(record.image_path, record.video_frame)
    if tuple(image.shape[:2]) != tuple(int(v) for v in record.image_hw):
        raise ImageError(reject_reason("corrupt_image", f"{record.image_path} decodes to "
                                       f"{image.shape[0]}x{image.shape[1]}, labels say "
                                       f"{int(record.image_hw[0])}x{int(record.image_hw[1])}"))
    crop, out = crop_frame(image, record, settings)
    return encode_jpeg(crop, settings.jpeg_quality), out


# ---- one shard (runs in a Ray task) --------------------------------------------------------
@dataclass
class ShardTask:
    """One planned shard: its records (croppable, sorted by key) and where things are."""

    dataset: str
    split: str
    index: int
    root: str  # the dataset's raw root
    out_dir: str  # OUT/<dataset>/<split>
    records: list[PersonFrame]
    settings: ShardSettings

    @property
    def name(self) -> str:
        return shard_name(self.dataset, self.split, self.index)


def write_tar(fs: pafs.FileSystem, path: str, samples: Iterable[tuple[str, bytes, bytes]]) -> Entry:
    """Stream (key, jpg, npz) samples into a tar at `path` (no rename here); its index entry."""
    with fs.open_output_stream(path) as f:
        tar = ShardWriter(f)
        for key, jpg, npz in samples:
            tar.add(f"{key}.jpg", jpg)
            tar.add(f"{key}.npz", npz)
        return tar.close()


def process_shard(task: ShardTask) -> dict:
    """Write (or, if it exists, check) one shard; return its manifest rows, bytes and index entry."""
    cv2.setNumThreads(1)  # one task per CPU: no OpenCV thread pool on top
    fs, out_dir = resolve(task.out_dir)
    final = f"{out_dir}/{task.name}"
    source = ImageSource(task.root)
    t0 = time.perf_counter()
    try:
        if fs.get_file_info(final).type == pafs.FileType.File:
            (rows, entry), written = _check_existing(task, source, join(task.out_dir, task.name)), False
        else:
            (rows, entry), written = _write_shard(task, source, fs, final), True
    finally:
        source.close()
    size = fs.get_file_info(final).size
    if size > task.settings.max_bytes:  # cannot happen while the planning bound holds
        raise RuntimeError(f"{final}: {size} bytes exceeds max_bytes={task.settings.max_bytes}")
    return dict(dataset=task.dataset, split=task.split, index=task.index, rows=rows, bytes=size,
                entry=entry, written=written, seconds=time.perf_counter() - t0)


def _write_shard(task: ShardTask, source: ImageSource, fs: pafs.FileSystem, final: str) -> tuple[list[dict], Entry]:
    rows: list[dict] = []

    def samples() -> Iterator[tuple[str, bytes, bytes]]:
        for rec in task.records:
            try:
                jpg, out = load_crop(source, rec, task.settings.crop)
            except ImageError as e:
                rows.append(_row(rec, None, REJECTED, e.reason))
                continue
            npz = out.to_npz_bytes()
            if len(npz) > TARGET_BYTES_BOUND:
                raise ValueError(f"{rec.source or rec.key}: record {rec.key} serializes to {len(npz)} bytes, "
                                 f"over TARGET_BYTES_BOUND={TARGET_BYTES_BOUND}")
            rows.append(_row(rec, task.name, OK, None, len(jpg) + len(npz)))
            yield rec.key, jpg, npz

    tmp = _tmp_path(final)
    entry = write_tar(fs, tmp, samples())
    fs.move(tmp, final)
    return rows, entry


def _check_existing(task: ShardTask, source: ImageSource, shard: str) -> tuple[list[dict], Entry]:
    """(rows, index entry) of a shard written by an earlier run: its samples must be the
    planned records minus those whose image is unreadable (re-read here to recover the
    reason); a shard cut short is an error naming it."""
    try:
        present = dict(list_samples(shard))
    except ShardError as e:
        raise RuntimeError(f"{e}: remove {shard} and run again") from None
    rows = []
    for rec in task.records:
        if rec.key in present:
            rows.append(_row(rec, task.name, OK, None, present.pop(rec.key)))
            continue
        try:
            load_crop(source, rec, task.settings.crop)
        except ImageError as e:
            rows.append(_row(rec, None, REJECTED, e.reason))
            continue
        raise RuntimeError(f"{shard}: lacks sample {rec.key!r} of this run's plan; it was built from other "
                           f"raw data: remove {shard} (or the whole output folder) and run again")
    if present:
        raise RuntimeError(f"{shard}: holds samples outside this run's plan (e.g. {next(iter(present))!r}); "
                           f"it was built from other raw data: remove it and run again")
    return rows, read_entry(shard)


def _row(item: PersonFrame | Reject, shard: str | None, status: str, reason: str | None,
         nbytes: int | None = None) -> dict:
    return dict(key=item.key, dataset=item.dataset, split=item.split, shard=shard, status=status,
                reason=reason, bytes=nbytes)


# ---- read and plan (driver) ------------------------------------------------------------------
@dataclass
class SplitPlan:
    """A dataset split after reading: manifest rows decided so far and shards to process."""

    dataset: str
    split: str
    out_dir: str
    frames: int
    rows: list[dict]
    tasks: list[ShardTask]
    read_seconds: float
    synthetic: SyntheticMarker | None = None  # the raw root's marker: copied into the split folder


def read_split(reader, settings: ShardSettings, progress: bool = False) -> tuple[list[dict], list[PersonFrame]]:
    """(manifest rows of rejected frames, croppable records sorted by key) of one reader."""
    rows: list[dict] = []
    records: list[PersonFrame] = []
    seen: dict[str, str] = {}
    for item in progress_of(reader.frames(), f"read {reader.name}/{reader.split}", "frames", show=progress,
                            leave=False):
        if item.key in seen:
            raise ValueError(f"{reader.name}/{reader.split}: key {item.key!r} is produced twice "
                             f"(by {seen[item.key] or '?'} and {item.source or '?'})")
        seen[item.key] = item.source
        if isinstance(item, Reject):
            rows.append(_row(item, None, REJECTED, item.reason))
            continue
        reason = label_reject(item, settings.crop)
        if reason is not None:
            rows.append(_row(item, None, REJECTED, reason))
        else:
            records.append(item)
    records.sort(key=lambda r: r.key)
    return rows, records


def prepare_out_dir(out_dir: str, n_shards: int, settings: ShardSettings) -> None:
    """Create the split folder, refuse other settings, drop temporaries of a killed run,
    refuse shards beyond this plan (left by a build from other raw data)."""
    fs, path = resolve(out_dir)
    fs.create_dir(path, recursive=True)
    build = f"{path}/{BUILD}"
    wanted = json.dumps(settings.as_dict(), indent=1, sort_keys=True) + "\n"
    if fs.get_file_info(build).type == pafs.FileType.File:
        with fs.open_input_stream(build) as f:
            have = f.read().decode()
        if have != wanted:
            raise RuntimeError(f"{join(out_dir, BUILD)}: this folder was built with other settings "
                               f"({have.strip()}); use another OUT or remove it")
    else:
        _write_atomic(fs, build, wanted.encode())
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.base_name.startswith(TMP_PREFIX):
            fs.delete_file(info.path)
        m = SHARD_RE.match(info.base_name)
        if m and int(m["index"]) >= n_shards:
            raise RuntimeError(f"{info.path}: shard beyond this run's {n_shards} (built from other raw data?); "
                               f"remove it and run again")


def _tmp_path(path: str) -> str:
    """A temporary name beside `path`, unique per writer (a stray worker of a killed run
    never writes into the file of a live one)."""
    return f"{os.path.dirname(path)}/{TMP_PREFIX}{os.path.basename(path)}.{uuid.uuid4().hex[:12]}"


def _write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    tmp = _tmp_path(path)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def plan_split(reader, root: str, out: str, settings: ShardSettings, progress: bool = False) -> SplitPlan:
    """Read one dataset split and cut its croppable records into shard tasks."""
    t0 = time.perf_counter()
    rows, records = read_split(reader, settings, progress)
    per = settings.samples_per_shard()
    out_dir = split_dir(out, reader.name, reader.split)
    tasks = [ShardTask(reader.name, reader.split, i // per, root, out_dir, records[i:i + per], settings)
             for i in range(0, len(records), per)]
    prepare_out_dir(out_dir, len(tasks), settings)
    return SplitPlan(reader.name, reader.split, out_dir, len(rows) + len(records), rows, tasks,
                     time.perf_counter() - t0, raw_marker(reader.root))


def raw_marker(root: Path) -> SyntheticMarker | None:
    """The `SYNTHETIC` marker of the local raw root a reader reads (for a raw tree in an object
    store: its staged mirror, whose markers' assets `pipelines.raw_stage` staged beside it), with
    the assets' digest (computed now for a marker written before digests, when the assets are there)."""
    if (marker := read_synthetic_marker(Path(root))) is None:
        return None
    if marker.sha256 is None and marker.assets.is_dir():
        marker = dataclasses.replace(marker, sha256=assets_digest(marker.assets))
    return marker


# ---- run ---------------------------------------------------------------------------------------
# The object store's endpoint and region as the driver sees them, forwarded to a cluster's
# workers so that every process reads and writes the same store (the credentials are not
# forwarded: each node has its own, docs/scale-out.md).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def ensure_ray(num_cpus: int | None = None, shared: tuple[str, ...] = ()) -> None:
    """Connect to `RAY_ADDRESS` when set, else start Ray locally (num_cpus: all by default).

    `shared`: the locations every node reads or writes; on a cluster a local path among them
    gets a warning (each node must see it at the same path: a shared file system)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        import datasets
        import model
        import pipelines

        for location in shared:
            if "://" not in str(location):
                log.warning("RAY_ADDRESS is set and %s is a local path: every node of the cluster must see it "
                            "at this path (a shared file system), or use an object-store URI", location)
        # ship this project's packages to the cluster's workers
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        ray.init(runtime_env={"py_modules": [datasets, model, pipelines], "env_vars": env})
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)


def lost_by_ray(error: BaseException) -> str | None:
    """What the Ray cluster lost when `error` (or an error it wraps) is a node, worker,
    actor or object lost under the run, not a failure of this code; else None."""
    import ray.exceptions as rx

    lost = (rx.NodeDiedError, rx.LocalRayletDiedError, rx.WorkerCrashedError, rx.RayActorError, rx.ObjectLostError)
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        # an actor whose constructor raised (e.g. a bad checkpoint) is this code's failure
        if isinstance(error, lost) and not getattr(error, "actor_init_failed", False):
            first = str(error).strip().splitlines()
            return f"{type(error).__name__}: {first[0] if first else ''}"
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


def exit_on_lost_node(error: Exception, outputs: str) -> int:
    """Exit status 1 after one line on stderr when `error` is a node or worker the cluster lost
    (`lost_by_ray`), naming it and how to finish; any other error is raised again.
    `outputs`: what is complete regardless ("shard in OUT")."""
    lost = lost_by_ray(error)
    if lost is None:
        raise error
    print(f"error: the Ray cluster lost a node or worker mid-run ({lost}); every {outputs} is complete (written "
          f"under a temporary name, renamed when whole): rerun the same command, it makes only the missing ones",
          file=sys.stderr)
    return 1


def node_id() -> str:
    """The Ray node this process runs on (first 12 hex digits of its id)."""
    import ray

    return ray.get_runtime_context().get_node_id()[:12]


def _process_row(row: dict) -> dict:
    # ShardTask travels as this run's own pickle between this run's processes (as Ray
    # itself would ship it); it is never stored.
    result = process_shard(pickle.loads(row["task"]))
    result["node"] = node_id()
    return {"result": pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)}


def run_tasks(tasks: list[ShardTask], progress: bool = False) -> Iterator[dict]:
    """Process every shard task with Ray Data (one row and one CPU task per shard); yields
    each shard's result as it completes."""
    if not tasks:
        return
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours below counts shards and frames
    # longest first (by frame count): Ray starts them in this order, so the short shards
    # fill the gaps at the end instead of one long shard running alone on one core
    order = sorted(tasks, key=lambda t: -len(t.records))
    items = [{"task": pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)} for t in order]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map(_process_row, num_cpus=1)
    frames = sum(len(t.records) for t in tasks)
    with Progress(frames, "crop+write", "frames", show=progress) as bar:
        for row in ds.iter_rows():
            result = pickle.loads(row["result"])
            bar.update(len(result["rows"]))
            yield result


def finish_split(plan: SplitPlan, results: list[dict], settings: ShardSettings, stage_seconds: float) -> dict:
    """Write the split's index, its manifest (last, atomically) and stats.json; return the stats.

    stage_seconds: wall time from the start of the crop stage to this split's last shard."""
    rows = list(plan.rows)
    for r in results:
        rows.extend(r["rows"])
    rows.sort(key=lambda r: r["key"])
    if len(rows) != plan.frames:  # every frame read is one row: nothing dropped, nothing twice
        raise RuntimeError(f"{plan.dataset}/{plan.split}: {len(rows)} manifest rows for {plan.frames} frames")
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    write_split_marker(plan.out_dir, plan.synthetic)
    fs, out_dir = resolve(plan.out_dir)
    # every shard is in place: a temporary left here is a retried task's first attempt (a lost node)
    for info in fs.get_file_info(pafs.FileSelector(out_dir)):
        if info.base_name.startswith(TMP_PREFIX):
            fs.delete_file(info.path)
    write_index(plan.out_dir, {shard_name(plan.dataset, plan.split, r["index"]): r["entry"] for r in results})
    tmp = _tmp_path(f"{out_dir}/{MANIFEST}")
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, f"{out_dir}/{MANIFEST}")

    reasons = Counter(r["reason"].split(":")[0] for r in rows if r["status"] == REJECTED)
    ok = {r["key"] for r in rows if r["status"] == OK}
    stats = dict(
        dataset=plan.dataset, split=plan.split, frames=plan.frames,
        status={OK: sum(r["status"] == OK for r in rows), REJECTED: sum(reasons.values())},
        reasons=dict(sorted(reasons.items())), shards=len(plan.tasks),
        # labels the ok samples carry (`datasets.check.label_coverage`, as `make check-data` counts them)
        coverage=label_coverage(rec for t in plan.tasks for rec in t.records if rec.key in ok),
        shards_written=sum(r["written"] for r in results), bytes=sum(r["bytes"] for r in results),
        nodes=dict(sorted(Counter(r["node"] for r in results if "node" in r).items())),
        seconds=dict(read=round(plan.read_seconds, 3), tasks=round(sum(r["seconds"] for r in results), 3),
                     stage=round(stage_seconds, 3)),
        settings=settings.as_dict(),
    )
    _write_atomic(fs, f"{out_dir}/{STATS}", (json.dumps(stats, indent=1) + "\n").encode())
    return stats


def dataset_roots(raw: str) -> dict[str, str]:
    """Raw root of every configured dataset (`datasets/assets.yaml`) under `raw`."""
    assets = Assets(raw_root=raw if "://" not in raw else None)
    if "://" in raw:
        return {name: join(raw, spec.path) for name, spec in assets.datasets.items()}
    return {name: str(assets.raw(name)) for name in assets.datasets}


def _exists(location: str) -> bool:
    """Whether `location` (a local path or a URI) is a folder."""
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def build(raw: str, out: str, settings: ShardSettings = ShardSettings(), names: list[str] | None = None,
          progress: bool = False, num_cpus: int | None = None,
          readers: dict | None = None, raw_stage: str = DEFAULT_STAGE) -> tuple[list[dict], dict[str, str]]:
    """Build the shards of every dataset under `raw` (or of `names`) into `out`.

    `readers`: {dataset: reader class} (default `datasets.readers.READERS`); a class is
    constructed as `cls(root, split)` for each split of `cls.splits(root)`.
    `raw` in an object store: the readers read a mirror of each dataset's root under
    `raw_stage` (`pipelines.raw_stage`), the shard tasks read the images from `raw` itself.
    Returns (stats of each split built, {dataset: why it was skipped or failed}). A dataset
    whose raw root is missing is skipped; one whose annotations cannot be read stops with
    the error (the message names the file) while the others go on.
    """
    if readers is None:
        from datasets.readers import READERS as readers
    unknown = sorted(set(names or []) - set(readers))
    if unknown:
        raise ValueError(f"unknown datasets {unknown}; known: {sorted(readers)}")
    roots = dataset_roots(raw)  # where the tasks read the images
    skipped: dict[str, str] = {}
    plans: list[SplitPlan] = []
    for name in sorted(names or readers):
        root = roots[name]
        try:  # where the readers read
            local = str(stage(root, raw_stage, log=log.info)) if "://" in root else root
        except FileNotFoundError:
            local = None
        if local is None or not os.path.isdir(local):
            skipped[name] = f"skipped: raw root {root} not found"
            continue
        try:
            plans += [plan_split(readers[name](local, split), root, out, settings, progress)
                      for split in readers[name].splits(Path(local))]
        except Exception as e:  # noqa: BLE001 - reported; the other datasets go on
            skipped[name] = f"FAILED: {type(e).__name__}: {e}"
            log.error("%s %s", name, skipped[name])

    # every shard of every split in one Ray Data run; a split is finished when its last
    # shard is in (splits with nothing to crop at once)
    by_split = {(p.dataset, p.split): p for p in plans}
    results: dict[tuple[str, str], list[dict]] = {k: [] for k in by_split}
    remaining = Counter((t.dataset, t.split) for p in plans for t in p.tasks)
    stats = [finish_split(p, [], settings, 0.0) for k, p in by_split.items() if remaining[k] == 0]
    tasks = [t for p in plans for t in p.tasks]
    if tasks:
        ensure_ray(num_cpus, shared=(raw, out))
    stage_t0 = time.perf_counter()
    for result in run_tasks(tasks, progress):
        k = (result["dataset"], result["split"])
        results[k].append(result)
        remaining[k] -= 1
        if remaining[k] == 0:
            p = by_split[k]
            stats.append(finish_split(p, results[k], settings, time.perf_counter() - stage_t0))
    stats.sort(key=lambda s: (s["dataset"], s["split"]))
    return stats, skipped


# ---- command line ------------------------------------------------------------------------------
def summary_table(stats: list[dict], skipped: dict[str, str]) -> str:
    """One line per split: frames, ok, rejected (by reason), how many ok samples carry SMPL /
    3D joints / 2D keypoints / intrinsics, shards (new), MB, work seconds (reading on the
    driver + shard tasks); then the datasets skipped or failed."""
    header = ("dataset", "split", "frames", "ok", "rejected", "smpl/3d/2d/K", "shards", "new", "MB", "s",
              "rejected by reason")
    lines = [(s["dataset"], s["split"], str(s["frames"]), str(s["status"][OK]), str(s["status"][REJECTED]),
              coverage_cell(s["coverage"]),
              str(s["shards"]), str(s["shards_written"]), f"{s['bytes'] / 1e6:.1f}",
              f"{s['seconds']['read'] + s['seconds']['tasks']:.1f}",
              ", ".join(f"{k} {v}" for k, v in s["reasons"].items()))
             for s in stats]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i in (0, 1, len(r) - 1) else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    out = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, lines)]
    out += [f"{name}: {why}" for name, why in sorted(skipped.items())]
    nodes = sum((Counter(s.get("nodes", {})) for s in stats), Counter())
    if nodes:
        out.append(f"shards by Ray node: {', '.join(f'{n} {c}' for n, c in sorted(nodes.items()))}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Raw datasets -> 256x192 WebDataset shards + manifest (Ray Data).")
    ap.add_argument("--raw", default=None, help="raw datasets root, local or URI (default: config / $RAW)")
    ap.add_argument("--out", default="data/shards", help="output root, local or URI (default: data/shards)")
    ap.add_argument("--datasets", nargs="+", default=None, help="only these datasets (default: every present one)")
    ap.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES, help="samples per shard at most")
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="bytes per shard at most")
    ap.add_argument("--jpeg-quality", type=int, default=CropSettings.jpeg_quality)
    ap.add_argument("--expand", type=float, default=CropSettings.expand,
                    help="extra box expansion on top of the readers' (SPIN 1.2); 1.0 = HMR2.0/SPIN crops")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    ap.add_argument("--raw-stage", default=DEFAULT_STAGE,
                    help=f"local mirror of a --raw URI for the readers (default: {DEFAULT_STAGE})")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    from datasets.readers import READERS

    raw = args.raw or os.environ.get("RAW") or str(Assets().raw_root)
    try:
        if args.max_samples < 1:
            raise ValueError(f"--max-samples must be >= 1, got {args.max_samples}")
        settings = ShardSettings(CropSettings(expand=args.expand, jpeg_quality=args.jpeg_quality),
                                 max_samples=args.max_samples, max_bytes=args.max_bytes)
        if unknown := sorted(set(args.datasets or []) - set(READERS)):
            raise ValueError(f"unknown datasets {unknown}; known: {sorted(READERS)}")
        if not _exists(raw):
            raise FileNotFoundError(f"{raw}: no such folder (the raw datasets root, RAW=; `make synthetic` writes "
                                    f"data/synthetic/raw)")
    except (ValueError, FileNotFoundError) as e:
        return fail("shards", e)
    print(f"== shards: {raw} -> {args.out} ({settings.samples_per_shard()} samples per shard at most, "
          f"JPEG quality {settings.crop.jpeg_quality}, extra expand {settings.crop.expand})", flush=True)
    t0 = time.perf_counter()
    try:
        stats, skipped = build(raw, args.out, settings, args.datasets, progress=not args.no_progress,
                               num_cpus=args.num_cpus, raw_stage=args.raw_stage)
    except (StageError, FileNotFoundError) as e:
        return fail("shards", e)
    except Exception as e:
        return exit_on_lost_node(e, f"shard in {args.out}")
    print(summary_table(stats, skipped))
    total = sum(s["status"][OK] for s in stats)
    print(f"{total} samples in {sum(s['shards'] for s in stats)} shards, {time.perf_counter() - t0:.1f} s")
    failed = sorted(name for name, why in skipped.items() if why.startswith("FAILED"))
    if failed:
        return fail("shards", InputError(f"{', '.join(failed)} failed (the lines above say why)"))
    if not stats:
        return fail("shards", FileNotFoundError(f"no dataset found under {raw} (expected folders: "
                                                f"{', '.join(sorted(dataset_roots(raw).values()))})"))
    return 0


if __name__ == "__main__":
    # run the importable module's main, so that pickled classes and functions name
    # `pipelines.shards`, which Ray's and the pool's workers can import, not `__main__`
    from pipelines.shards import main as _main

    sys.exit(_main())
