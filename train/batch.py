"""One batch layout for training and evaluation: `collate` turns decoded feature samples
(features + the sample's record) into a dict of tensors.

Batch dict (B samples):
- features: (B, C, H, W) float16, the cached encoder feature maps (from arrays, or from
  lazy maps that read themselves into the batch).
- key, dataset, gender: list[str] of B; view: (B,) int64, the augmentation view used.
- smpl_pose: (B, 24, 3) float32 axis-angle, SMPL-24 order, row 0 global orientation in
  the camera frame; betas: (B, 10) float32; has_smpl: (B,) bool (validity of both);
  body_model: list[str], 'smpl' or 'smplx' — the family of those parameters (only 'smpl'
  ones may supervise the SMPL parameters, `train.losses`); is_smpl: (B,) bool, the same
  as a tensor (body_model == 'smpl'), so the step reads no Python strings.
- joints_3d: (B, 24, 4) float32 metres, camera frame, KEYPOINTS_2D order, column 3 the
  confidence (0 = absent).
- keypoints_2d: (B, 24, 3) float32 crop pixels, KEYPOINTS_2D order, column 2 the confidence.
- synthetic: (B,) bool, sample made from the project's synthetic stand-ins.
- the camera (what reprojection in the original image needs, `train.losses`), float32:
  image_hw (B, 2) (height, width) of the original image; box_center (B, 2) and box_size
  (B, 2) (w, h) of the view's box, original pixels; crop_affine (B, 2, 3) original pixels
  -> crop (view) pixels; intrinsics (B, 3, 3) in crop (view) pixels, zeros where the
  dataset has none, and has_intrinsics (B,) bool; smpl_transl (B, 3) metres, camera frame,
  valid where has_transl (B,) bool.

A sample's record is a `PersonFrame`, the mapping `batch_fields` reads from the record's
npz bytes (only the fields above, no full record), or a `TargetRow`: the record's
fixed-layout targets row (`datasets.record.TARGETS_DTYPE`) as bytes, which `collate`
parses for the whole batch at once (the training loader's fast path, for caches that
store the rows). In a DataLoader worker (`collate(lazy=True)`) the feature maps stay in
their shards (or, read already, are stacked into shared memory) and the target fields
stay numpy arrays, pickled with the batch; `materialize` makes the tensors in the
training process.
"""
from __future__ import annotations

import math
import mmap
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from datasets import npz
from datasets.record import (_ARRAY_FIELDS, BODY_MODELS, GENDERS, TARGET_ARRAYS, TARGET_FLAGS, TARGETS_DTYPE,
                             PersonFrame, RecordError)

READ_THREADS = min(4, os.cpu_count() or 1)  # threads reading maps into a batch (preadv releases the GIL)
ARRAYS = TARGET_ARRAYS  # float32 target arrays of the record
FLAGS = TARGET_FLAGS  # bool
STRINGS = ("key", "dataset", "gender", "body_model")
BATCH_FIELDS = ARRAYS + FLAGS + STRINGS + ("view",)
DEFAULTS = {"body_model": "smpl"}  # fields records written before they existed lack
OPTIONAL = ("intrinsics", "crop_affine")  # record fields an npz may lack (None): zeros in a batch
DERIVED = {"has_intrinsics": "intrinsics"}  # flag -> the field whose presence it is


def batch_fields(data: bytes, source: str) -> dict:
    """The record fields a batch carries, read from a record's npz bytes (PersonFrame
    `to_npz_bytes`) without building the record, checked for shape and finiteness
    (RecordError naming `source` and the field); values as `PersonFrame.target_arrays`."""
    stored = [f for f in BATCH_FIELDS if f not in DERIVED]
    try:
        a = npz.loads(data, stored)
    except npz.NpzError as e:
        raise RecordError(f"{source}: target file is not a readable npz ({e})") from e
    if missing := [f for f in stored if f not in a and f not in DEFAULTS and f not in OPTIONAL]:
        raise RecordError(f"{source}: target file lacks field(s) {missing}")
    out = {}
    for name in ARRAYS:
        shape, dtype = _ARRAY_FIELDS[name]
        if name not in a:  # OPTIONAL
            out[name] = np.zeros(shape, np.float32)
            continue
        arr = a[name]
        if arr.shape != shape or arr.dtype != dtype:
            raise RecordError(f"{source}: field '{name}' has shape {arr.shape} {arr.dtype}, expected {shape} "
                              f"{np.dtype(dtype)}")
        if not np.isfinite(arr).all():
            raise RecordError(f"{source}: field '{name}' has non-finite values")
        out[name] = arr.astype(np.float32, copy=False)
    for name in FLAGS:
        out[name] = DERIVED[name] in a if name in DERIVED else bool(a[name])
    for name in STRINGS:
        out[name] = str(a[name]) if name in a else DEFAULTS[name]
    out["view"] = int(a["view"])
    return out


class TargetRow(NamedTuple):
    """One sample's targets row (TARGETS_DTYPE bytes, unparsed), its key, and where it
    was read (for errors)."""

    key: str
    row: bytes
    source: str

    def fields(self) -> dict:
        """This sample's batch fields, parsed (for inspection; `collate` parses batches)."""
        return {k: v[0] for k, v in _rows_batch([self]).items()}


def _rows_batch(records: Sequence[TargetRow]) -> dict:
    """The batch fields of TargetRows (numpy arrays and lists): one `np.frombuffer` of the
    joined rows; a bad row is a RecordError naming its source and field."""
    data = b"".join(r.row for r in records)
    if len(data) != len(records) * TARGETS_DTYPE.itemsize:
        bad = next(r for r in records if len(r.row) != TARGETS_DTYPE.itemsize)
        raise RecordError(f"{bad.source}: targets row of {len(bad.row)} bytes, the layout has "
                          f"{TARGETS_DTYPE.itemsize}")
    rows = np.frombuffer(data, TARGETS_DTYPE)  # (B,) structured
    out: dict = {}
    for name in ARRAYS:
        arr = rows[name]
        finite = np.isfinite(arr.reshape(len(rows), -1)).all(1)
        if not finite.all():
            raise RecordError(f"{records[int(np.argmin(finite))].source}: field '{name}' has non-finite values")
        out[name] = np.array(arr)  # a copy: contiguous and writable (a one-row batch would be a view)
    for name, names in (("gender", GENDERS), ("body_model", BODY_MODELS)):
        codes = rows[name]
        if codes.max() >= len(names):  # a batch has rows: collate refuses an empty one
            raise RecordError(f"{records[int(np.argmax(codes))].source}: field '{name}' has code "
                              f"{int(codes.max())}, expected < {len(names)} ({names})")
        out[name] = [names[c] for c in codes.tolist()]
    for name in FLAGS:
        out[name] = rows[name].copy()
    out["view"] = rows["view"].astype(np.int64)
    out["dataset"] = [d.decode("ascii") for d in rows["dataset"].tolist()]
    out["key"] = [r.key for r in records]
    return out


class Span(NamedTuple):
    """Where a tar member's bytes lie in a local shard (read later, straight into place)."""

    path: str
    offset: int
    size: int

    def read_into(self, out: np.ndarray) -> None:
        """Read the bytes into `out` (C-contiguous, exactly `size` bytes): one copy."""
        buf = memoryview(out).cast("B")
        if buf.nbytes != self.size:
            raise ValueError(f"{self.path}: member at byte {self.offset} holds {self.size} bytes, "
                             f"its slot {buf.nbytes}")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            n = os.preadv(fd, [buf], self.offset)
        finally:
            os.close(fd)
        if n != self.size:
            raise ValueError(f"{self.path}: short read at byte {self.offset} ({n} of {self.size} bytes)")


class LazyMap(NamedTuple):
    """A feature map still in its shard (`span`), of `shape` and `dtype`."""

    span: Span
    shape: tuple[int, ...]
    dtype: str

    def read_into(self, out: np.ndarray) -> None:
        self.span.read_into(out)


class MapReads(NamedTuple):
    """The feature maps of a batch still on disk: `materialize` reads them in the process
    that trains (into pinned memory for a GPU), so worker processes pass a few bytes
    instead of copying each map into shared memory."""

    maps: tuple[LazyMap, ...]

    def read(self, pin_memory: bool = False) -> torch.Tensor:
        first = self.maps[0]
        shape, dtype = (len(self.maps), *first.shape), _TORCH[np.dtype(first.dtype)]
        # pinned: torch's caching host allocator hands back warm blocks; else our pool
        out = torch.empty(shape, dtype=dtype, pin_memory=True) if pin_memory else _BUFFERS.tensor(shape, dtype)
        view = out.numpy()

        def read_part(part: range) -> None:
            for i in part:
                self.maps[i].read_into(view[i])

        n = len(self.maps)
        parts = [range(k, n, READ_THREADS) for k in range(min(READ_THREADS, n))]
        list(_pool().map(read_part, parts))  # one task per thread
        return out


_TORCH = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}


class BufferPool:
    """Reusable anonymous memory for batches of maps. Writing into fresh memory costs a page
    fault per 4 kB (2-4x slower than reading the page cache); a pooled buffer is handed out
    again only once no tensor, view or storage made from it is alive — CPython's reference
    count of the buffer is back to the pool's own —, so reuse never overwrites a batch in use.
    Buffers are advised to use huge pages (faults per 2 MB when first filled)."""

    def __init__(self, per_size: int = 6):
        self.per_size = per_size
        self.buffers: dict[int, list[mmap.mmap]] = {}

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        kept = self.buffers.setdefault(nbytes, [])
        for m in kept:
            if sys.getrefcount(m) == _POOLED_REFS:  # nothing outside the pool holds it
                return torch.frombuffer(m, dtype=dtype).view(shape)
        m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            m.madvise(mmap.MADV_HUGEPAGE)
        if len(kept) < self.per_size:
            kept.append(m)
        return torch.frombuffer(m, dtype=dtype).view(shape)  # the tensor keeps the mapping alive


_POOLED_REFS = 3  # references of an idle pooled buffer in `tensor`'s loop: the list, `m`, getrefcount's argument
_BUFFERS = BufferPool()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="read-maps")
    return _POOL


_POOL: ThreadPoolExecutor | None = None


def materialize(batch: dict, pin_memory: bool = False) -> dict:
    """A lazy batch (`collate(lazy=True)`) as tensors: `features` read from disk if they
    are still `MapReads`, numpy fields wrapped (no copy). With `pin_memory` (a GPU) every
    tensor is in pinned memory: a copy from pageable memory to the device waits for the
    device's stream, so the host could not queue the next step ahead."""
    if isinstance(batch.get("features"), MapReads):
        batch = {**batch, "features": batch["features"].read(pin_memory)}
    out = _tensors(batch)
    if pin_memory:
        out = {k: v.pin_memory() if torch.is_tensor(v) and not v.is_pinned() else v for k, v in out.items()}
    return out


def _tensors(batch: dict) -> dict:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def stack(arrays: Sequence, dtype: torch.dtype) -> torch.Tensor:
    """(N, *shape) tensor from N equal-shape arrays (read-only views allowed) or lazy maps
    (objects with `shape` and `read_into(out)`, e.g. `train.data.LazyMap`, which read
    themselves into their slot): one copy, into shared memory in a DataLoader worker."""
    shape = (len(arrays), *arrays[0].shape)  # an array's or a lazy map's
    if get_worker_info() is not None:
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
        out = torch.empty(0, dtype=dtype).new(storage).view(shape)
    else:
        out = torch.empty(shape, dtype=dtype)
    view = out.numpy()
    for i, a in enumerate(arrays):
        if hasattr(a, "read_into"):
            a.read_into(view[i])
        else:
            view[i] = a
    return out


def collate(samples: Sequence[tuple[np.ndarray | LazyMap, PersonFrame | Mapping | TargetRow]],
            lazy: bool = False) -> dict:
    """[(features (C, H, W), record), ...] -> batch dict (see the module doc). With `lazy`
    (DataLoader workers), maps still on disk stay there (`features` is a `MapReads`) and
    the target fields stay numpy arrays, which travel to the training process pickled in
    one piece instead of as one shared-memory segment (and file descriptor) per tensor;
    `materialize` makes the tensors there."""
    if not samples:
        raise ValueError("collate: empty batch")
    feats, records = zip(*samples)
    get = (lambda r, f: r[f]) if isinstance(records[0], Mapping) else getattr  # noqa: E731
    shapes = {f.shape for f in feats}
    if len(shapes) != 1:
        raise ValueError(f"collate: feature maps of different shapes {sorted(shapes)} in one batch "
                         f"(keys {[get(r, 'key') for r in records][:4]}...)")
    if lazy and all(isinstance(f, LazyMap) for f in feats):
        batch: dict = {"features": MapReads(tuple(feats))}
    else:
        batch = {"features": stack(feats, _TORCH[np.dtype(feats[0].dtype)])}
    if isinstance(records[0], TargetRow):
        if not all(isinstance(r, TargetRow) for r in records):
            raise ValueError("collate: a batch mixes targets rows and records")
        batch.update(_rows_batch(records))
    else:
        arrays = [r.target_arrays() if isinstance(r, PersonFrame) else r for r in records]
        for name in ARRAYS:
            batch[name] = np.stack([a[name] for a in arrays]).astype(np.float32, copy=False)
        for name in FLAGS:
            batch[name] = np.array([bool(get(r, name)) for r in records], dtype=bool)
        batch["view"] = np.array([int(get(r, "view")) for r in records], dtype=np.int64)
        for name in STRINGS:
            batch[name] = [str(get(r, name)) for r in records]
    batch["is_smpl"] = np.array([m == "smpl" for m in batch["body_model"]], dtype=bool)
    return batch if lazy else _tensors(batch)


def pad_batch(tensors: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """Tensors of one batch (equal first dimension n <= size) padded with zero rows to `size`
    rows, so a compiled step always sees the same shapes. A zero row is masked out of every
    loss term (`train.losses` weights each term by `has_smpl` & `is_smpl` or by the joint
    confidences, all 0 here) and its zero feature map gives a finite prediction, so the
    loss and its gradients are those of the n real rows."""
    n = next(iter(tensors.values())).shape[0]
    if n > size:
        raise ValueError(f"pad_batch: a batch of {n} rows does not fit {size}")
    if n == size:
        return tensors
    return {k: torch.cat([v, v.new_zeros(size - n, *v.shape[1:])]) for k, v in tensors.items()}
