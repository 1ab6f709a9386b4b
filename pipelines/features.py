"""`make features`: image shards -> feature shards of a frozen ViTPose encoder, with Ray (read tasks, encoder actors).

Launch:
    python -m pipelines.features --shards data/shards --out data/features --encoder vitpose-h \
        --ckpt data/assets/vitpose_h.pth [--views 4]
    RAY_ADDRESS=head:6379 python -m pipelines.features --shards s3://b/shards --out s3://b/features ...
(a cluster and a bucket: docs/scale-out.md; the read tasks and the encoder actors run on any
node, so SHARDS and the checkpoint must be readable, and OUT writable, from every node: the
encoder actors write the feature shards).

Layout (`CACHE` = OUT/<encoder>, or OUT/<encoder>-views<K> with K > 1 views):
- `CACHE/encoder.json`: the encoder (config, preprocessing, weights sha256 or random seed,
  synthetic flag, `encoder_id`), the storage (`shape`, `dtype`), views, seed, augmentation,
  and `compute`: the device type and precision the features were computed in (CPU fp32 and
  GPU bf16 give different bytes, so a cache is only extended under the same ones).
- `CACHE/<dataset>/<split>/<dataset>-<split>-%06d.tar`: one feature shard per image shard,
  same name, same keys in the same order. A sample `<key>` holds
  `<key>.enc` the `encoder_id` (ASCII), so features of different encoders never mix, and
  per view v = 0..K-1 (the view index is in the member name, and in `PersonFrame.view`):
  `<key>.v<v>.f16` the feature map, raw little-endian float16, C-order (C, 16, 12);
  `<key>.v<v>.npz` the record (`PersonFrame.to_npz_bytes`, targets moved with the view);
  `<key>.v<v>.tgt` its training targets as one fixed-layout row
  (`PersonFrame.to_targets_bytes`, layout `datasets.record.TARGETS_DTYPE`, recorded in
  `encoder.json` under `targets`), which the training loader reads instead of the npz.
  One sample per image keeps an epoch one pass over the images whatever K: the loader
  draws one view per sample (`sample_views`, `decode_view`).
- beside each tar a `.json` sidecar (its manifest rows and its index entry), and per split
  `index.json` (per shard: samples, bytes, CRC-32; `pipelines.shard_index`) and
  `manifest.parquet`: one row per image-shard sample (`ok`, or `rejected` with the reason);
  for synthetic data, the image split's `SYNTHETIC` marker (the stand-ins its ground truth was
  made with: `datasets.assets.assets_for_data` gives them to training and evaluation).

Stages, top to bottom:
1. plan (driver): every image shard set under SHARDS, checked against its index up front
   (every damaged image shard in one error); a shard is done when its feature tar and
   sidecar exist (and the tar has the size the sidecar's index entry says: a damaged one
   is an error); the rest, with their sample counts from the image index, is the work list.
   The storage the run needs (samples x views x bytes per sample) is printed before it starts.
2. assign (driver): the work list over the encoder actors, one per GPU of the Ray cluster
   (`num_gpus=1`), else `cpu_actors` CPU actors; each gets whole shards, the largest first to
   the least loaded (a shard's bytes do not depend on which actor writes it).
3. read (Ray tasks, one CPU each, launched by the actor `read_ahead` shards ahead): one image
   shard -> its crops as one uint8 array (samples x views, H, W, 3) in key then view order
   (`pipelines.augment.views`), the records and target rows, and the rejects (a JPEG that does
   not decode is a `corrupt_image` reject). The array reaches the actor through Ray's object
   store (shared memory, no pickling of its bytes).
4. encode and write (`ShardEncoder`, the actor): the crops in chunks of `batch_size` in that
   order (so a chunk's composition depends on the shard alone, not on the run, and the bytes
   are the same after a restart), through `pipelines.chunk_encoder.ChunkEncoder` (on a GPU:
   pinned host buffers, copies that do not block, the encoder's matmul weights in bf16, float16
   features made C-order on the device; a shard's last chunk padded to a multiple of
   `pad_multiple`). While the device computes chunk i + 1 the actor writes chunk i into
   `.tmp-<shard>.<unique>` (samples counted, bytes hashed in a helper thread); at a shard's
   last chunk the sidecar is written, then the tar is renamed into place. The chunk stream runs
   on across shards, so the device does not wait at a shard's end. A killed run leaves no half
   shard (Ray stops a dead driver's actors shortly after it; one may still leave a temporary
   file, which the next run removes); a rerun writes only what is missing, with the same bytes.
5. index and manifest (driver): the split's sidecars -> `index.json` and `manifest.parquet`,
   checked against the image manifest (every image-shard sample accounted for); summary table.

Reading: `read_cache_spec(CACHE)` once, then per WebDataset sample `sample_views(sample)` and
`decode_view(sample, view, spec)` -> ((C, 16, 12) float16, a read-only view of the member's
bytes, no copy; PersonFrame); `iter_feature_shard(tar, spec)` reads one shard plainly,
checked against its index entry (size, samples, checksum).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from datasets.errors import USER_ERRORS, InputError, fail
from datasets.record import SPLITS, TARGETS_DTYPE, PersonFrame, reject_reason, targets_layout
from pipelines.augment import AugmentSettings, views
from pipelines.shard_index import (INDEX, ShardCheckError, ShardRead, ShardWriter, check, entry_from_dict,
                                   read_entry, read_index, size_problem, write_index)
from pipelines.shard_reader import (MANIFEST, SHARD_RE, ShardError, decode_jpeg, iter_shard, join, list_shards,
                                    read_manifest, read_split_marker, resolve, split_dir, write_split_marker)
from pipelines.shards import TMP_PREFIX, _tmp_path, _write_atomic, ensure_ray, exit_on_lost_node, node_id
from pipelines.tar import BLOCK

SPEC = "encoder.json"
FEATURE_EXT, RECORD_EXT, ENCODER_EXT = "f16", "npz", "enc"  # members <key>.v<v>.f16, <key>.v<v>.npz, <key>.enc
TARGETS_EXT = "tgt"  # <key>.v<v>.tgt
FEATURE_DTYPE = "<f2"  # little-endian float16
SPEC_KEYS = ("encoder_id", "encoder", "storage")  # what every reader of a cache takes from encoder.json
STORAGE_KEYS = ("shape", "dtype")
SIDECAR_SUFFIX = ".json"
OK, REJECTED = "ok", "rejected"
MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("image_shard", pa.string()), ("views", pa.int32()),
    ("status", pa.string()), ("reason", pa.string()),
])
# crops per forward: 32 on CPU (the CPU demo's setting), 256 on a GPU, where a shard's last chunk is
# padded to a multiple of 32 (ours: ViT-H in bf16 keeps a GPU's matmul units busy from about
# 64 crops = 12288 tokens; 256 leaves room, 32 bounds the padding and the distinct shapes at 8)
DEFAULT_BATCH = {"cpu": 32, "cuda": 256}
DEFAULT_PAD_MULTIPLE = {"cpu": 0, "cuda": 32}

log = logging.getLogger(__name__)


# ---- members and decoding (what the training loader calls) -------------------------------------
def view_ext(view: int, ext: str) -> str:
    """Member extension of view `view`: `v<view>.<ext>` (the member is `<key>.v<view>.<ext>`)."""
    return f"v{view}.{ext}"


def sample_views(sample: dict) -> list[int]:
    """The views a WebDataset sample (extensions -> bytes) holds, sorted."""
    return sorted(int(k[1:-len(RECORD_EXT) - 1]) for k in sample
                  if k.startswith("v") and k.endswith("." + RECORD_EXT))


class CacheError(InputError, ValueError):
    """A feature cache does not fit this code or this run (another version, encoder or
    settings; its folders disagree); the message names the file and the way out."""


def read_cache_spec(cache: str) -> dict:
    """`CACHE/encoder.json` of a feature cache (local path or URI), with what every reader
    needs (`SPEC_KEYS`; else a CacheError: a cache of another version)."""
    where = join(cache, SPEC)
    fs, path = resolve(where)
    try:
        with fs.open_input_stream(path) as f:
            spec = json.loads(f.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: not a feature cache (run `make features`)") from None
    except ValueError as e:
        raise CacheError(f"{where}: not readable JSON ({e})") from None
    missing = [k for k in SPEC_KEYS if not isinstance(spec, dict) or k not in spec]
    missing += [f"storage.{k}" for k in STORAGE_KEYS if not missing and k not in (spec["storage"] or {})]
    if missing:
        raise CacheError(f"{where}: a feature cache of another version (lacks {missing}); make it again with "
                         f"`make features` into another OUT")
    return spec


def list_caches(features: str) -> list[str]:
    """Names of the feature caches under `features` (folders holding an `encoder.json`)."""
    fs, root = resolve(features)
    folders = [i for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
               if i.type == pafs.FileType.Directory]
    return sorted(i.base_name for i in folders if fs.get_file_info(f"{i.path}/{SPEC}").type == pafs.FileType.File)


def decode_features(data: bytes | memoryview, spec: dict) -> np.ndarray:
    """A `.f16` member -> (C, H, W) float16, a read-only view of `data` (no copy)."""
    shape = tuple(spec["storage"]["shape"])
    arr = np.frombuffer(data, dtype=spec["storage"]["dtype"])
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"feature member holds {arr.size} values, the cache's shape {shape} needs {np.prod(shape)}")
    return arr.reshape(shape)


def decode_view(sample: dict, view: int, spec: dict) -> tuple[np.ndarray, PersonFrame]:
    """((C, H, W) float16 view of the bytes, record) of view `view` of a sample; checks
    the sample's encoder id against the cache's `spec`."""
    where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    enc = sample.get(ENCODER_EXT, b"").decode()
    if enc != spec["encoder_id"]:
        raise ShardError(f"{where}: made by encoder {enc!r}, the cache's is {spec['encoder_id']!r}")
    try:
        data, rec = sample[view_ext(view, FEATURE_EXT)], sample[view_ext(view, RECORD_EXT)]
    except KeyError:
        raise ShardError(f"{where}: no view {view} (views {sample_views(sample)})") from None
    return decode_features(data, spec), PersonFrame.from_npz_bytes(rec, source=f"{where}.{view_ext(view, RECORD_EXT)}")


def iter_feature_shard(shard: str, spec: dict) -> Iterator[tuple[str, list[tuple[np.ndarray, PersonFrame]]]]:
    """(key, [(features, record) per view]) per sample of one feature shard, in order; the
    shard checked against its index entry (size, samples, checksum)."""
    read = ShardRead(shard)
    yield from read.samples(_feature_samples(shard, read.members(), spec))


def _feature_samples(shard: str, members, spec: dict):
    """Tar members (name, is a file, bytes) grouped by key, decoded per view."""
    sample: dict = {}
    for name, _, data in members:
        key, ext = name.split(".", 1)
        if sample and key != sample["__key__"]:
            yield sample["__key__"], [decode_view(sample, v, spec) for v in sample_views(sample)]
            sample = {}
        sample.update({"__key__": key, "__url__": shard, ext: data})
    if sample:
        yield sample["__key__"], [decode_view(sample, v, spec) for v in sample_views(sample)]


# ---- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSettings:
    """One feature cache. `encoder`, `ckpt`, `views`, `seed` and `augment` decide its bytes;
    the rest decides how it is computed."""

    encoder: str = "vitpose-h"
    ckpt: str | None = None  # None: random weights seeded by `seed` (tests, benchmarks)
    views: int = 1
    seed: int = 0
    augment: AugmentSettings = AugmentSettings()
    batch_size: int | None = None  # crops per forward (a chunk); None: DEFAULT_BATCH of the device
    pad_multiple: int | None = None  # pad a short chunk to a multiple (0: no padding); None: the device's default
    device: str = "auto"  # auto | cpu | cuda
    cpu_actors: int = 1  # encoder actors when there is no GPU (each uses `threads` threads)
    threads: int | None = None  # torch threads of a CPU actor (default: the node's CPUs)
    read_ahead: int | None = None  # image shards each actor has read ahead; None: the CPUs it can use

    def __post_init__(self):
        if self.views < 1:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pad_multiple is not None and self.pad_multiple < 0:
            raise ValueError(f"pad_multiple must be >= 0, got {self.pad_multiple}")
        if self.read_ahead is not None and self.read_ahead < 1:
            raise ValueError(f"read_ahead must be >= 1, got {self.read_ahead}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def for_device(self, device: str) -> "FeatureSettings":
        """These settings with the batch and the padding resolved for `device` ("cpu" | "cuda")."""
        return dataclasses.replace(
            self, device=device,
            batch_size=self.batch_size or DEFAULT_BATCH[device],
            pad_multiple=DEFAULT_PAD_MULTIPLE[device] if self.pad_multiple is None else self.pad_multiple)

    @property
    def cache_name(self) -> str:
        return self.encoder if self.views == 1 else f"{self.encoder}-views{self.views}"


def targets_spec() -> dict:
    """`encoder.json`'s `targets` entry: the member and the row layout this code writes."""
    return {"member": TARGETS_EXT, "layout": targets_layout()}


_TARGETS_SPEC = targets_spec()


def has_targets(spec: dict) -> bool:
    """True when the cache's `.tgt` members have the layout this code reads (a cache
    written before them, or with another layout, is read through the npz records)."""
    return spec.get("targets") == _TARGETS_SPEC


def compute_spec(device: str) -> dict:
    """`encoder.json`'s `compute` entry: the device type the encoder actors run on and the
    precision `model.vitpose.ViTPoseEncoder` computes in there."""
    from model.vitpose import encoder_precision

    return {"device": device, "precision": encoder_precision(device)}


def cache_spec(settings: FeatureSettings, device: str) -> dict:
    """The content of `encoder.json` for features computed on `device` ("cpu" | "cuda")
    (checks the checkpoint's keys; no network is built)."""
    from model.vitpose import encoder_spec

    enc = encoder_spec(settings.encoder, settings.ckpt, settings.seed)
    enc_id = f"{settings.encoder}-" + hashlib.sha256(json.dumps(enc, sort_keys=True).encode()).hexdigest()[:16]
    return {"encoder_id": enc_id, "encoder": enc,
            "storage": {"member": FEATURE_EXT, "dtype": FEATURE_DTYPE, "shape": enc["feature_shape"], "order": "C"},
            "views": settings.views, "seed": settings.seed,
            "augment": dataclasses.asdict(settings.augment) if settings.views > 1 else None,
            "members": "<key>.enc, and per view v: <key>.v<v>.f16, <key>.v<v>.npz, <key>.v<v>.tgt",
            "targets": targets_spec(),
            "compute": compute_spec(device),
            "synthetic": enc["synthetic"]}


# ---- stage 3: read an image shard (Ray task) ----------------------------------------------------
def read_shard(shard: str, samples: int, settings: FeatureSettings) -> dict:
    """One image shard of `samples` samples -> {"crops": (n, H, W, 3) uint8 RGB, n = ok samples
    x views, in key then view order; "items": [key, view] per crop; "records": npz bytes per
    crop; "targets": the crops' target rows, concatenated; "rejects": [key, reason]}."""
    import cv2
    import ray

    from datasets.record import CROP_HW

    cv2.setNumThreads(1)  # one task per CPU
    crops = np.empty((samples * settings.views, *CROP_HW, 3), np.uint8)
    items, records, targets, rejects = [], [], [], []
    for record, jpg in iter_shard(shard):
        try:
            image = decode_jpeg(jpg)
        except ShardError:
            rejects.append([record.key, reject_reason("corrupt_image", f"{record.key}.jpg is not decodable")])
            continue
        if image.shape != crops.shape[1:]:
            raise ShardError(f"{shard}: {record.key}.jpg is {image.shape[1]}x{image.shape[0]} pixels, a crop is "
                             f"{CROP_HW[1]}x{CROP_HW[0]} (image shards of another crop size?)")
        for rec, img in views(record.replace(source=""), image, settings.views, settings.seed, settings.augment):
            crops[len(items)] = img
            items.append([record.key, rec.view])
            records.append(rec.to_npz_bytes())
            targets.append(rec.to_targets_bytes())
    return {"crops": crops[:len(items)], "items": items, "records": records, "targets": b"".join(targets),
            "read_on": node_id() if ray.is_initialized() else None,
            "rejects": rejects}


# ---- stage 4: encode and write (Ray actor) -------------------------------------------------
@dataclass
class _Work:
    """One image shard to turn into a feature shard."""

    shard: str  # image shard location
    out_dir: str  # CACHE/<dataset>/<split>
    samples: int  # image samples in it
    index: int = 0  # in the run's work list

    @property
    def name(self) -> str:
        return self.shard.rsplit("/", 1)[-1]


class ShardEncoder:
    """The frozen encoder, built once per actor (Ray's batch-inference class), turning whole
    image shards into feature shards and writing them (stage 4 of the module doc).
    `encode_shards` takes (work, read_shard output) pairs and runs anywhere; `run` is the Ray
    actor's entry, reading ahead with Ray tasks. Yields, per shard once its tar is in place:
    {"index", "crops", "chunks": [(finished_at, crops, encoder seconds)]}."""

    def __init__(self, settings: FeatureSettings, device: str, encoder_id: str):
        import torch

        from model.vitpose import load_encoder
        from pipelines.chunk_encoder import ChunkEncoder

        settings = settings.for_device(device)
        if device == "cpu":
            torch.set_num_threads(settings.threads or os.cpu_count() or 1)
        self.settings, self.encoder_id = settings, encoder_id
        encoder = load_encoder(settings.encoder, settings.ckpt, settings.seed)
        self.chunks = ChunkEncoder(encoder, device, settings.batch_size, settings.pad_multiple)
        self.node: str | None = None  # the Ray node, once `run` is called there

    def run(self, work: list[_Work], read_ahead: int) -> Iterator[dict]:
        """Ray actor entry (a streaming generator): read tasks for `work` kept `read_ahead`
        shards ahead, each shard encoded and written as its read arrives."""
        import ray

        self.node = node_id()
        task = ray.remote(read_shard).options(num_cpus=1)
        pending: list = []
        todo = iter(work)

        def launch() -> None:
            if (w := next(todo, None)) is not None:
                pending.append((w, task.remote(w.shard, w.samples, self.settings)))

        def reads() -> Iterator[tuple[_Work, dict]]:
            for _ in range(read_ahead):
                launch()
            while pending:
                w, ref = pending.pop(0)
                data = ray.get(ref)
                launch()
                yield w, data

        yield from self.encode_shards(reads())

    def encode_shards(self, shards: Iterator[tuple[_Work, dict]]) -> Iterator[dict]:
        """Encode and write each (work, `read_shard` output), the chunks of consecutive shards
        in one stream through the `ChunkEncoder`."""
        batch = self.settings.batch_size
        done: list[dict] = []

        def chunks():  # (crops, (writer, data, start, stop)) of every shard, in order
            for w, data in shards:
                writer, n = _ShardWriter(w, self.encoder_id, self.settings.views), len(data["crops"])
                if n == 0:  # every sample rejected: nothing to encode
                    done.append(self._close(writer, data))
                for start in range(0, n, batch):
                    stop = min(n, start + batch)
                    yield data["crops"][start:stop], (writer, data, start, stop)

        for (writer, data, start, stop), out in self.chunks.encode(chunks()):
            writer.add(data, start, stop, out.features)
            writer.chunks.append((out.finished_at, stop - start, out.busy_seconds))
            writer.tar.wait_hashed()  # the features' buffer is reused by the next chunk
            if stop == len(data["crops"]):
                done.append(self._close(writer, data))
            while done:  # (not `yield from` a list: Ray drives an actor's generator with send())
                yield done.pop(0)
        while done:
            yield done.pop(0)


    def _close(self, writer: "_ShardWriter", data: dict) -> dict:
        """Close a shard's writer; its result says on which Ray nodes it was read and encoded."""
        return writer.close(data["rejects"]) | {"read_on": data.get("read_on"), "encoded_on": self.node}


class _ShardWriter:
    """Streams one feature shard into a temporary file; `close` writes the sidecar, then renames."""

    def __init__(self, work: _Work, encoder_id: str, views: int):
        self.work, self.encoder_id, self.views = work, encoder_id.encode(), views
        self.fs, out_dir = resolve(work.out_dir)
        self.final = f"{out_dir}/{work.name}"
        self.tmp = _tmp_path(self.final)
        self.stream = self.fs.open_output_stream(self.tmp)
        # the CRC-32 beside the actor's thread, which also drives the encoder
        self.tar = ShardWriter(self.stream, hash_in_thread=True)
        self.rows: list[dict] = []
        self.chunks: list[tuple[float, int, float]] = []

    def add(self, data: dict, start: int, stop: int, features: np.ndarray) -> None:
        """Crops start..stop of a `read_shard` output with their (stop - start, C, h, w) features."""
        if features.dtype != np.dtype(FEATURE_DTYPE):
            features = features.astype(FEATURE_DTYPE)
        row = TARGETS_DTYPE.itemsize
        targets = data["targets"]
        for i in range(start, stop):  # a sample's views are consecutive
            key, view = data["items"][i]
            if view == 0:
                self.tar.add(f"{key}.{ENCODER_EXT}", self.encoder_id)
                self.rows.append(_row(key, self.work, self.views, OK, None))
            feature = memoryview(features[i - start].reshape(-1)).cast("B")  # C-order bytes, no copy
            self.tar.add(f"{key}.{view_ext(view, FEATURE_EXT)}", feature)
            self.tar.add(f"{key}.{view_ext(view, RECORD_EXT)}", data["records"][i])
            self.tar.add(f"{key}.{view_ext(view, TARGETS_EXT)}", targets[i * row:(i + 1) * row])

    def close(self, rejects: list) -> dict:
        self.rows += [_row(key, self.work, 0, REJECTED, reason) for key, reason in rejects]
        self.rows.sort(key=lambda r: r["key"])
        entry = self.tar.close()
        self.stream.close()
        sidecar = {"encoder_id": self.encoder_id.decode(), "image_shard": self.work.name,
                   "index": dataclasses.asdict(entry), "rows": self.rows}
        _write_atomic(self.fs, _sidecar(self.final), (json.dumps(sidecar, indent=0) + "\n").encode())
        self.fs.move(self.tmp, self.final)
        return {"index": self.work.index, "crops": sum(n for _, n, _ in self.chunks), "rejects": len(rejects),
                "chunks": self.chunks}


def _row(key: str, work: _Work, views: int, status: str, reason: str | None) -> dict:
    return dict(key=key, shard=work.name if status == OK else None, image_shard=work.name, views=views,
                status=status, reason=reason)


def _sidecar(tar_path: str) -> str:
    return tar_path[: -len(".tar")] + SIDECAR_SUFFIX


# ---- stage 1 and 5: plan and manifest (driver) -----------------------------------------------
def shard_sets(shards: str) -> list[tuple[str, str]]:
    """(dataset, split) of every image shard set under `shards` (a folder with shards or an index)."""
    fs, root = resolve(shards)
    found = []
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            continue
        for split in SPLITS:
            index = fs.get_file_info(f"{root}/{info.base_name}/{split}/{INDEX}").type == pafs.FileType.File
            if index or list_shards(shards, info.base_name, split):
                found.append((info.base_name, split))
    return sorted(found)


def prepare_cache(out: str, settings: FeatureSettings, spec: dict) -> str:
    """Create CACHE and its `encoder.json`, or refuse a cache made by another encoder,
    other views or seed, or on another device type or precision (`compute`). Returns the
    cache location."""
    cache = join(out, settings.cache_name)
    fs, path = resolve(cache)
    fs.create_dir(path, recursive=True)
    spec_path = f"{path}/{SPEC}"
    wanted = json.dumps(spec, indent=1, sort_keys=True) + "\n"
    if fs.get_file_info(spec_path).type == pafs.FileType.File:
        with fs.open_input_stream(spec_path) as f:
            have = json.loads(f.read())
        if have != spec:
            diff = sorted(k for k in set(have) | set(spec) if have.get(k) != spec.get(k))
            compute = (f"; its features were computed with {have.get('compute') or 'unrecorded settings'}, this run "
                       f"computes {spec['compute']} (other bytes: pass the matching --device)"
                       if "compute" in diff else "")
            raise CacheError(f"{join(cache, SPEC)}: this cache was made with another encoder, views, seed, device "
                             f"or precision, or by another version of this code (differs in {diff}){compute}; use "
                             f"another OUT or remove {cache}")
    else:
        _write_atomic(fs, spec_path, wanted.encode())
    return cache


def plan_split(shards: str, cache: str, dataset: str, split: str) -> tuple[list[str], list[_Work], list[str]]:
    """(all image shards of the split, the ones whose feature shard is missing, what is
    wrong with the feature shards already there). The image shards are checked already."""
    out_dir = join(cache, dataset, split)
    fs, path = resolve(out_dir)
    fs.create_dir(path, recursive=True)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.base_name.startswith(TMP_PREFIX):  # left by a killed run
            fs.delete_file(info.path)
    image_index = read_index(split_dir(shards, dataset, split))
    all_shards = list_shards(shards, dataset, split)
    todo, damaged = [], []
    for shard in all_shards:
        name = shard.rsplit("/", 1)[-1]
        tar, sidecar = (fs.get_file_info(p) for p in (f"{path}/{name}", _sidecar(f"{path}/{name}")))
        if tar.type != pafs.FileType.File or sidecar.type != pafs.FileType.File:
            todo.append(_Work(shard, out_dir, image_index[name].samples))
            continue
        with fs.open_input_stream(sidecar.path) as f:
            entry = json.loads(f.read()).get("index")  # None: written before indexes (see write_manifest)
        if entry is not None and (p := size_problem(tar.size, entry_from_dict(entry, sidecar.path))):
            damaged.append(f"{join(out_dir, name)}: {p}")
    return all_shards, todo, damaged


def write_manifest(shards: str, cache: str, dataset: str, split: str, image_shards: list[str]) -> list[dict]:
    """Gather the split's sidecars into `index.json` and `manifest.parquet`; check that every
    sample of the image manifest (when there is one) is accounted for. A sidecar written
    before indexes gets its entry from its shard, read whole (`read_entry`), whose sample
    count must be the sidecar's ok rows."""
    fs, path = resolve(join(cache, dataset, split))
    rows, entries = [], {}
    for shard in image_shards:
        name = shard.rsplit("/", 1)[-1]
        with fs.open_input_stream(_sidecar(f"{path}/{name}")) as f:
            sidecar = json.loads(f.read())
        rows += sidecar["rows"]
        location = join(cache, dataset, split, name)
        if "index" in sidecar:
            entries[name] = entry_from_dict(sidecar["index"], _sidecar(location))
        else:
            entries[name] = read_entry(location)
            ok = sum(r["status"] == OK for r in sidecar["rows"])
            if entries[name].samples != ok:
                raise ShardCheckError([f"{location}: {entries[name].samples} samples, its sidecar lists {ok}"],
                                      "remove it and rerun `make features` (it computes only what is missing)")
    image_manifest = join(shards, dataset, split, MANIFEST)
    fs_img, p_img = resolve(image_manifest)
    if fs_img.get_file_info(p_img).type == pafs.FileType.File:
        table = read_manifest(shards, dataset, split)
        expected = {k for k, s in zip(table.column("key").to_pylist(), table.column("status").to_pylist()) if s == OK}
        seen = {r["key"] for r in rows}
        if expected != seen:
            missing, extra = sorted(expected - seen), sorted(seen - expected)
            raise CacheError(f"{dataset}/{split}: image manifest {image_manifest} and feature shards disagree: "
                               f"{len(missing)} samples without features (e.g. {missing[:3]}), "
                               f"{len(extra)} features of samples the manifest lacks (e.g. {extra[:3]})")
    # synthetic data: the assets its ground truth was made with, named beside the features too
    write_split_marker(join(cache, dataset, split), read_split_marker(split_dir(shards, dataset, split)))
    write_index(join(cache, dataset, split), entries)
    tmp = f"{path}/{TMP_PREFIX}{MANIFEST}"
    pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), tmp, filesystem=fs)
    fs.move(tmp, f"{path}/{MANIFEST}")
    return rows


# ---- run --------------------------------------------------------------------------------------
@dataclass
class SplitStats:
    dataset: str
    split: str
    shards: int
    written: int
    ok: int
    rejected: int
    megabytes: float


@dataclass
class RunStats:
    cache: str
    views: int
    splits: list[SplitStats]
    crops: int  # crops encoded in this run
    seconds: float  # whole run (Ray start, actors, all shards)
    steady_seconds: float  # encoder actors' time from the first chunk done to the last
    steady_crops: int  # crops of the chunks done after the first: / steady_seconds = the rate the
    # pipeline keeps the encoder at (gaps from a starving read stage or a slow writer count)
    busy_seconds: float  # the encoder's own time on those chunks: / steady_seconds = its utilisation
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # Ray node -> {"read": image shards, "encoded": image shards}


def _device(settings: FeatureSettings, num_cpus: int | None = None, shared: tuple[str, ...] = ()) -> tuple[str, int]:
    """(device, number of encoder actors): one per GPU of the cluster, else CPU actors
    (`--device cpu` decides without Ray; otherwise Ray is started to count the GPUs;
    `shared`: as `ensure_ray`'s)."""
    import ray

    if settings.device == "cpu":
        return "cpu", settings.cpu_actors
    ensure_ray(num_cpus, shared)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if settings.device == "cuda" and gpus == 0:
        raise InputError("--device cuda: the Ray cluster has no GPU")
    if settings.device != "cpu" and gpus > 0:
        return "cuda", gpus
    return "cpu", settings.cpu_actors


def run(shards: str, out: str, settings: FeatureSettings = FeatureSettings(), progress: bool = False,
        num_cpus: int | None = None) -> RunStats:
    """Compute the feature cache of every image shard set under `shards` into `out`."""
    t0 = time.perf_counter()
    sets = shard_sets(shards)
    if not sets:
        raise FileNotFoundError(f"{shards}: no image shards found (<dataset>/<split>/<dataset>-<split>-%06d.tar)")
    check([split_dir(shards, *s) for s in sets], remedy="remove the damaged image shards and rerun `make shards` "
          "(it writes only what is missing), then `make features`")
    shared = (shards, *([settings.ckpt] if settings.ckpt else []))  # read on every node
    spec = cache_spec(settings, _device(settings, num_cpus, shared)[0])
    cache = prepare_cache(out, settings, spec)
    plans = {s: plan_split(shards, cache, *s) for s in sets}
    if damaged := [p for s in sets for p in plans[s][2]]:
        raise ShardCheckError(damaged, "remove the damaged feature shards and rerun `make features` (it computes "
                              "only what is missing)")
    work = [w for s in sets for w in plans[s][1]]
    written = {s: len(plans[s][1]) for s in sets}
    log.info(storage_needed(shards, cache, sets, work, settings, spec).describe())

    done: list[tuple[float, int, float]] = []
    nodes: dict[str, dict[str, int]] = {}
    if work:
        ensure_ray(num_cpus, shared)
        done, nodes = _encode(work, settings, spec, progress)
    splits = []
    for s in sets:
        rows = write_manifest(shards, cache, *s, plans[s][0])
        fs, path = resolve(join(cache, *s))
        nbytes = sum(i.size for i in fs.get_file_info(pafs.FileSelector(path)) if SHARD_RE.match(i.base_name))
        splits.append(SplitStats(*s, len(plans[s][0]), written[s], sum(r["status"] == OK for r in rows),
                                 sum(r["status"] == REJECTED for r in rows), nbytes / 1e6))
    done.sort()
    steady = done[-1][0] - done[0][0] if done else 0.0
    return RunStats(cache, settings.views, splits, sum(n for _, n, _ in done), time.perf_counter() - t0,
                    steady, sum(n for _, n, _ in done[1:]), sum(b for _, _, b in done[1:]), nodes)


def _member_bytes(size: int) -> int:
    """Bytes of a tar member of `size` bytes: its header and its data padded to a block."""
    return BLOCK + -(-size // BLOCK) * BLOCK


@dataclass
class Storage:
    """What a feature cache takes on disk (tar members; the sidecars and manifests are small)."""

    cache: str
    samples: int  # image-shard samples of every split
    samples_todo: int  # of the shards this run writes
    views: int
    feature_bytes: int  # one feature map
    view_bytes: int  # one view's members: feature map, record, target row, with headers
    sample_bytes: int  # a sample: its views and its encoder id
    free_bytes: int | None  # free space where the cache is (local disks only)

    def describe(self) -> str:
        text = (f"storage: {self.samples} samples x {self.views} view(s) x {_size(self.view_bytes)} "
                f"(feature map {self.feature_bytes} B, record, target row and tar headers "
                f"{self.view_bytes - self.feature_bytes} B) = {_size(self.samples * self.sample_bytes)} in "
                f"{self.cache}; this run writes {_size(self.samples_todo * self.sample_bytes)}")
        if self.free_bytes is not None:
            short = self.samples_todo * self.sample_bytes > self.free_bytes
            text += f"; {_size(self.free_bytes)} free there{' — NOT ENOUGH' if short else ''}"
        return text


def _size(n: float) -> str:
    """Bytes in kB, MB, GB or TB (powers of 1000), three significant digits."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def storage_needed(shards: str, cache: str, sets: list[tuple[str, str]], work: list[_Work],
                   settings: FeatureSettings, spec: dict) -> Storage:
    """The cache's size from the image indexes' sample counts: the feature map's bytes are
    exact; a record's are the first image-shard record's (every view's record has its fields)."""
    import shutil

    samples = sum(e.samples for s in sets for e in read_index(split_dir(shards, *s)).values())
    first = next((w.shard for w in work), None) or next((sh for s in sets for sh in list_shards(shards, *s)), None)
    record = len(next(iter_shard(first))[0].replace(source="").to_npz_bytes()) if first and samples else 0
    feature = int(np.prod(spec["storage"]["shape"])) * np.dtype(spec["storage"]["dtype"]).itemsize
    view = _member_bytes(feature) + _member_bytes(record) + _member_bytes(TARGETS_DTYPE.itemsize)
    sample = settings.views * view + _member_bytes(len(spec["encoder_id"]))
    fs, path = resolve(cache)
    free = shutil.disk_usage(path).free if isinstance(fs, pafs.LocalFileSystem) else None
    return Storage(cache, samples, sum(w.samples for w in work), settings.views, feature, view, sample, free)


def assign(work: list[_Work], actors: int) -> list[list[_Work]]:
    """Whole shards per actor: the largest first, each to the actor with the fewest samples
    so far (ties: the lower actor)."""
    plans: list[list[_Work]] = [[] for _ in range(actors)]
    load = [0] * actors
    for w in sorted(work, key=lambda w: (-w.samples, w.index)):
        a = load.index(min(load))
        plans[a].append(w)
        load[a] += w.samples
    return [p for p in plans if p]


def read_ahead(settings: FeatureSettings, work: list[_Work], actors: int) -> int:
    """Image shards each actor keeps read ahead: `settings.read_ahead`, else the cluster's CPUs
    left over by the actors, shared among them (at least 2: one read while one is encoded), as
    far as a quarter of the object store holds their crops."""
    import ray

    from datasets.record import CROP_HW

    if settings.read_ahead:
        return settings.read_ahead
    cpus = int(ray.cluster_resources().get("CPU", 1))
    store = ray.cluster_resources().get("object_store_memory", 0)
    shard_bytes = max(w.samples for w in work) * settings.views * int(np.prod(CROP_HW)) * 3
    by_cpu = max(2, (cpus - actors) // actors)
    by_memory = int(store / 4 / actors // shard_bytes) if store else by_cpu
    return max(1, min(by_cpu, by_memory))


def _encode(work: list[_Work], settings: FeatureSettings, spec: dict, progress: bool):
    """Stages 2-4 over the work list; returns (time the actor finished it, crops, encoder
    seconds) per non-empty chunk, and {Ray node: {"read": image shards, "encoded": image shards}}."""
    import ray

    from datasets.progress import Progress

    device, actors = _device(settings)
    settings = settings.for_device(device)
    for i, w in enumerate(work):
        w.index = i
    plans = assign(work, actors)
    if (cpus := int(ray.cluster_resources().get("CPU", 0))) <= len(plans):
        raise InputError(f"the Ray cluster has {cpus} CPU(s): the {len(plans)} encoder actor(s) take one each "
                           f"and the read tasks need at least one more (start Ray with more CPUs)")
    ahead = read_ahead(settings, work, len(plans))
    cls = ray.remote(ShardEncoder).options(num_gpus=1 if device == "cuda" else 0, num_cpus=1)
    pool = [cls.remote(settings, device, spec["encoder_id"]) for _ in plans]
    streams = [a.run.options(num_returns="streaming").remote(p, ahead) for a, p in zip(pool, plans)]
    total = sum(w.samples for w in work) * settings.views
    done = []
    nodes: dict[str, Counter] = defaultdict(Counter)
    desc = (f"features {settings.cache_name} ({device} x{len(plans)}, batch {settings.batch_size}, "
            f"{ahead} shard(s) read ahead)")
    try:
        with Progress(total, desc, "crops", show=progress) as bar:
            live = list(streams)
            while live:
                ready, _ = ray.wait(live, num_returns=1)
                try:
                    shard = ray.get(next(ready[0]))
                except StopIteration:
                    live.remove(ready[0])
                    continue
                done += [c for c in shard["chunks"] if c[1]]
                nodes[shard["read_on"]]["read"] += 1
                nodes[shard["encoded_on"]]["encoded"] += 1
                bar.update(shard["crops"] + shard["rejects"] * settings.views)
    finally:
        for a in pool:  # free the GPUs now (an error in one actor stops the others too)
            ray.kill(a)
    return done, {n: {"read": c["read"], "encoded": c["encoded"]} for n, c in sorted(nodes.items())}


# ---- command line ------------------------------------------------------------------------------
def summary_table(stats: RunStats) -> str:
    header = ("dataset", "split", "shards", "samples", "rejected", "MB")
    lines = [(s.dataset, s.split, f"{s.shards} ({s.written} new)", str(s.ok), str(s.rejected), f"{s.megabytes:.1f}")
             for s in stats.splits]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    out = [fmt(header), fmt(tuple("-" * w for w in widths)), *map(fmt, lines)]
    if stats.nodes:
        out.append("image shards by Ray node: " + ", ".join(f"{n} read {c['read']} encoded {c['encoded']}"
                                                      for n, c in stats.nodes.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from model.vitpose import CONFIGS

    ap = argparse.ArgumentParser(description="Image shards -> frozen-encoder feature shards (Ray).")
    ap.add_argument("--shards", default="data/shards", help="image shards root, local or URI")
    ap.add_argument("--out", default="data/features", help="feature caches root (the cache is OUT/<encoder>)")
    ap.add_argument("--encoder", default="vitpose-h", choices=sorted(CONFIGS))
    ap.add_argument("--ckpt", default=None,
                    help="ViTPose (mmpose), HMR2.0 or plain backbone checkpoint; default for vitpose-h: the "
                         "`vitpose_h` asset (datasets/assets.yaml); other encoders: random weights")
    ap.add_argument("--random-weights", action="store_true", help="random weights (seeded) even for vitpose-h")
    ap.add_argument("--views", type=int, default=1, help="view 0 = the crop, plus K-1 augmented views")
    ap.add_argument("--seed", type=int, default=0, help="seed of the augmented views and of random weights")
    ap.add_argument("--batch-size", type=int, default=None,
                    help=f"crops per forward (default: {DEFAULT_BATCH['cpu']} on CPU, "
                         f"{DEFAULT_BATCH['cuda']} on a GPU)")
    ap.add_argument("--pad-multiple", type=int, default=None,
                    help=f"pad a shard's last chunk to a multiple of this (0: never; default: "
                         f"{DEFAULT_PAD_MULTIPLE['cpu']} on CPU, {DEFAULT_PAD_MULTIPLE['cuda']} on a GPU)")
    ap.add_argument("--read-ahead", type=int, default=None,
                    help="image shards each encoder actor has read ahead (default: the CPUs it can use)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--cpu-actors", type=int, default=1, help="encoder actors when there is no GPU")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per CPU actor (default: all)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    ckpt = args.ckpt
    if ckpt is None and args.encoder == "vitpose-h" and not args.random_weights:
        from datasets.assets import Assets

        ckpt = str(Assets().path("vitpose_h"))
        if not os.path.isfile(ckpt):
            return fail("features", FileNotFoundError(
                f"no ViTPose-H checkpoint at {ckpt} (the `vitpose_h` asset): pass --ckpt (make: CKPT=), or "
                f"--random-weights, or --encoder tiny for a random-weight test encoder"))
    try:
        settings = FeatureSettings(encoder=args.encoder, ckpt=ckpt, views=args.views, seed=args.seed,
                                   batch_size=args.batch_size, pad_multiple=args.pad_multiple,
                                   read_ahead=args.read_ahead, device=args.device, cpu_actors=args.cpu_actors,
                                   threads=args.threads)
    except ValueError as e:
        return fail("features", e)
    weights = ckpt or f"random weights (seed {args.seed})"
    print(f"== features: {args.shards} -> {join(args.out, settings.cache_name)} "
          f"(encoder {args.encoder}, {weights}, {args.views} view(s))", flush=True)
    try:
        stats = run(args.shards, args.out, settings, progress=not args.no_progress, num_cpus=args.num_cpus)
    except USER_ERRORS as e:
        return fail("features", e)
    except Exception as e:
        return exit_on_lost_node(e, f"feature shard in {args.out}")
    print(summary_table(stats))
    rate = f", {stats.crops / stats.seconds:.1f} crops/s overall" if stats.crops else ""
    print(f"{sum(s.ok for s in stats.splits)} samples x {stats.views} view(s) in {stats.cache}; "
          f"{stats.crops} crops encoded this run in {stats.seconds:.1f} s{rate}")
    return 0


if __name__ == "__main__":
    # run the importable module's main, so that what Ray pickles names `pipelines.features`, not `__main__`
    from pipelines.features import main as _main

    sys.exit(_main())
