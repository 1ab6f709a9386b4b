"""Training data: streams of cached feature shards, mixed by dataset weights.

Layout read (pipelines/features.py writes it): the cache `FEATURES/<cache>/` holds
`encoder.json` (the storage shape and dtype, the encoder, `synthetic`) and per dataset
split `<dataset>/<split>/<dataset>-<split>-%06d.tar` + `manifest.parquet`. A sample holds
the feature map and the targets (`PersonFrame`) of each cached augmentation view.

The training stream of one rank reads top to bottom (`FeatureStream.__iter__`):
1. position: the optimizer step the run is at (shared with the workers through
   `StepSyncedLoader`) gives the data epoch e = step // N and the batches already done in
   it, so a resumed run replays exactly the stream it stopped in (STYLE 11).
2. per dataset, shards: all shards, permuted by (seed, e); consumer c = rank x workers +
   worker takes every C-th of them (C consumers in all), so within an epoch nodes, ranks
   and workers each read their own shards; a dataset with fewer shards than consumers is
   shared at the sample level (consumer c reads every m-th sample of shard c mod S). A
   consumer reads its share over and over, so a stream never runs dry.
3. per dataset, samples: tar members grouped by key, each reduced to one of its cached
   views (a seeded draw, or view 0: `one_view`), then a shuffle buffer seeded by
   (seed, e, consumer, dataset). A worker holds datasets x `shuffle_buffer` samples of
   about 0.5 MB (ViTPose-H maps): mind `data.workers` x that per rank.
4. mixing: each next sample comes from dataset d with probability weight_d / sum.
5. skip: the samples of the batches done before a resume, without decoding them.
6. decode (`decode_sample`): the view's targets row (`.tgt`, `train.batch.TargetRow`: its
   bytes, parsed for the whole batch by `collate`; a cache without rows: the batch's fields
   of the view's npz record, `train.batch.batch_fields`) and its feature map, left in the
   shard (`train.batch.LazyMap`: path, offset, size); then
   `train.batch.collate(lazy=True)` in the worker, and in the training process
   `FeatureDataModule.on_before_batch_transfer` reads the batch's maps straight into one
   (pinned, on a GPU) tensor: one copy from the page cache, as `cat` makes. (A map read
   in a worker would be copied into shared memory, which is 5-10x slower to fill than
   reused memory; remote shards, read through WebDataset, take that path.)
Local shards are read by `tar_members` (headers parsed in place, feature maps left on
disk); URIs (s3://, gs://, hdfs://) stream through pyarrow's file systems and WebDataset's
tar iterator. Members are grouped into samples by WebDataset's `group_by_keys`, and its
`_shuffle` is the shuffle buffer.
Shards are checked against their split's `index.json` (`pipelines.shard_index`): up front,
every shard of the splits the config reads (missing, empty, cut, padded, not named by the
index, a count the manifest disagrees with: all in one DataError, before the run folder is
touched); and each time a shard is read, its size at open and its sample count (a sample
beyond the index's count at once; a tail cut at a sample boundary or inside a member when
the shard ends): never an epoch on part of a shard.
Every rank yields exactly N batches per epoch (N = epoch samples // global batch), so no
rank waits for another at an epoch's end; worker w of a rank serves the batches
b = w, w + W, ... (the DataLoader's round-robin order).

Validation reads each sample of the held-out split once over all ranks (view 0, no
shuffling): shards split across ranks and workers as above.
"""
from __future__ import annotations

import functools
import math
import os
import random
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datasets.errors import InputError
from pipelines.features import (ENCODER_EXT, FEATURE_EXT, OK, RECORD_EXT, TARGETS_EXT, decode_features,
                                has_targets, list_caches, read_cache_spec, sample_views, view_ext)
from pipelines.shard_index import ShardCheckError, ShardRead, TruncatedShard, check
from pipelines.shard_reader import ShardError, join, list_shards, read_manifest, resolve
from pipelines.tar import BLOCK as TAR_BLOCK
from pipelines.tar import header_checksum
from train.batch import LazyMap, Span, TargetRow, batch_fields, collate, materialize
from train.config import DataConfig

MIX_CHUNK = 4096  # dataset draws made at once (numpy's choice is slow per call)
LAZY = ("." + FEATURE_EXT,)  # members left on disk until their batch slot exists


def lazy_members(spec: dict) -> tuple[str, ...]:
    """Member endings `tar_members` leaves on disk: the maps, and the npz records where the
    cache has targets rows (the loader never reads those records then)."""
    return LAZY + ("." + RECORD_EXT,) if has_targets(spec) else LAZY


class DataError(InputError, ValueError):
    """The feature tree lacks what the config asks for; the message names path and key."""


# ---- what is on disk ------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One dataset split of the feature tree."""

    dataset: str
    split: str
    shards: tuple[str, ...]
    samples: int  # from the manifest (rows with status ok)


def open_cache(features: str, cache: str) -> tuple[str, dict]:
    """(location, encoder.json) of the feature cache `features/<cache>`."""
    root = join(features, cache)
    try:
        return root, read_cache_spec(root)
    except FileNotFoundError as e:
        raise DataError(f"{e} (config key data.cache = {cache!r}; caches under {features}: "
                        f"{list_caches(features) or 'none'})") from None


def find_source(root: str, dataset: str, split: str) -> Source:
    """The shards and manifest count of `<cache root>/<dataset>/<split>`."""
    shards = tuple(list_shards(root, dataset, split))
    where = join(root, dataset, split)
    if not shards:
        raise DataError(f"{where}: no feature shards for dataset '{dataset}' split '{split}' "
                        f"(config key data.mix / data.val_dataset / data.train_split / data.val_split)")
    try:
        table = read_manifest(root, dataset, split)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{where}: cannot read manifest.parquet ({e})") from None
    if "status" not in table.column_names:
        raise DataError(f"{where}/manifest.parquet: no column 'status'")
    status = table.column("status").to_pylist()
    return Source(dataset, split, shards, sum(s == OK for s in status))


def check_shards(root: str, cfg: DataConfig) -> None:
    """Every shard of the splits `cfg` reads from the cache `root` against its index and
    manifest (`pipelines.shard_index.check`): all damaged shards in one DataError."""
    splits = [(d, cfg.train_split) for d, w in cfg.mix.items() if w > 0]
    if cfg.val_dataset:
        splits.append((cfg.val_dataset, cfg.val_split))
    try:
        check([join(root, d, s) for d, s in splits],
              remedy="remove the damaged feature shards and rerun `make features` (it computes only what is "
                     "missing), or leave their datasets out (data.mix weight 0, data.val_dataset)")
    except ShardCheckError as e:
        raise DataError(str(e)) from None


def train_sources(root: str, cfg: DataConfig) -> tuple[list[Source], np.ndarray]:
    """(sources, normalised weights) of the datasets with weight > 0 in the cache `root`."""
    names = [d for d, w in cfg.mix.items() if w > 0]
    missing = [d for d in names if not list_shards(root, d, cfg.train_split)]
    if missing:
        raise DataError(f"{root}: no feature shards for dataset(s) {missing} split '{cfg.train_split}' (config key "
                        f"data.mix: give them weight 0, or build their features)")
    sources = [find_source(root, d, cfg.train_split) for d in names]
    weights = np.array([cfg.mix[d] for d in names], np.float64)
    return sources, weights / weights.sum()


# ---- stream pieces (pure functions of their seeds) ------------------------------------------
def consumer_shards(shards: tuple[str, ...], consumer: int, consumers: int,
                    rng: np.random.Generator | None = None) -> tuple[list[str], int, int]:
    """(shards, stride, offset) consumer `consumer` of `consumers` reads in one pass: its
    shards of a permutation (`rng`; None: the given order), taking every `stride`-th
    sample from `offset`."""
    order = list(shards) if rng is None else [shards[i] for i in rng.permutation(len(shards))]
    if len(order) >= consumers:
        return order[consumer::consumers], 1, 0
    s = consumer % len(order)  # fewer shards than consumers: share shard s at the sample level
    sharing = len(range(s, consumers, len(order)))
    return [order[s]], sharing, consumer // len(order)


def read_samples(shard: str, lazy: tuple[str, ...] = ()) -> Iterator[dict]:
    """The samples of one tar: {"__key__", "__url__", <ext>: bytes} (WebDataset's grouping),
    checked against the shard's index entry (size, sample count: `ShardRead`).
    Members of a local shard whose name ends with one of `lazy` are left on disk: a `Span`
    instead of their bytes."""
    read = ShardRead(shard)
    if "://" in shard:  # object stores: pyarrow's file systems (as pipelines.shard_reader.resolve)
        from webdataset.tariterators import group_by_keys, tar_file_expander

        fs, path = resolve(shard)
        with fs.open_input_stream(path) as stream:
            yield from read.samples(group_by_keys(tar_file_expander([{"url": shard, "stream": stream}])))
        return
    yield from read.samples(group_members(tar_members(shard, lazy), shard))


def group_members(members: Iterator[tuple[str, bytes | Span]], url: str) -> Iterator[dict]:
    """Consecutive members with the same key as one sample, as WebDataset's `group_by_keys`
    groups them (key: the name up to the first dot of its last path part; extension: the
    rest, lower-cased; a name without a dot is skipped), at a third of its cost per member.
    A repeated extension within a sample is a ShardError naming the shard and member."""
    sample: dict | None = None
    for name, data in members:
        dot = name.find(".", name.rfind("/") + 1)
        if dot < 0:
            continue
        key, ext = name[:dot], name[dot + 1:].lower()
        if sample is None or key != sample["__key__"]:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__url__": url}
        elif ext in sample:
            raise ShardError(f"{url}: member {name!r} repeats extension {ext!r} of sample {key!r}")
        sample[ext] = data
    if sample is not None:
        yield sample


_REGULAR, _PAX, _PAX_GLOBAL, _GNU_LONGNAME = (b"0", b"\0"), b"x", b"g", b"L"


def tar_members(path: str, lazy: tuple[str, ...] = ()) -> Iterator[tuple[str, bytes | Span]]:
    """(name, bytes or Span) of each regular member of a local tar, in order.

    A direct reader of the ustar headers (POSIX.1-2001 pax `path`/`size` records and GNU
    long names honoured) at a few microseconds per member, where `tarfile` spends about
    30: the loader reads three members per sample. Other entry types are skipped; a
    header whose checksum fails is a ShardError naming the shard and the byte; a file that
    ends before the end-of-archive marker (inside a member, or at a member boundary) is a
    TruncatedShard.
    """
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        pax: dict[bytes, bytes] = {}
        while True:
            at = f.tell()
            header = f.read(TAR_BLOCK)
            if header == bytes(TAR_BLOCK):
                return  # end of archive (zero blocks)
            if len(header) < TAR_BLOCK:
                raise TruncatedShard(f"{path}: the file ends at byte {end} without the end-of-archive marker")
            if header_checksum(header) != _octal(header[148:156], path, at):
                raise ShardError(f"{path}: tar header at byte {at} fails its checksum")
            kind = header[156:157]
            size = int(pax.get(b"size", b"0")) if b"size" in pax else _octal(header[124:136], path, at)
            padded = -(-size // TAR_BLOCK) * TAR_BLOCK
            if at + TAR_BLOCK + size > end:
                raise TruncatedShard(f"{path}: the member at byte {at} has {size} bytes, the file ends at byte {end}")
            if kind in (_PAX, _GNU_LONGNAME, _PAX_GLOBAL):
                data = f.read(padded)[:size]
                if kind == _PAX:
                    pax = _pax_records(data)
                elif kind == _GNU_LONGNAME:
                    pax = {b"path": data.rstrip(b"\0")}
                continue
            name = (pax.get(b"path") or _ustar_name(header)).decode("utf-8")
            pax = {}
            if kind not in _REGULAR:
                f.seek(padded, 1)
                continue
            if lazy and name.endswith(lazy):
                yield name, Span(path, at + TAR_BLOCK, size)
                f.seek(padded, 1)
            else:
                yield name, f.read(size)
                f.seek(padded - size, 1)


def _octal(field: bytes, path: str, at: int) -> int:
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)
    except ValueError:
        raise ShardError(f"{path}: tar header at byte {at} has a malformed number {field!r}") from None


def _ustar_name(header: bytes) -> bytes:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar" and (prefix := header[345:500].split(b"\0", 1)[0]):
        name = prefix + b"/" + name
    return name


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """'<len> <key>=<value>\\n' records of a pax extended header."""
    out, i = {}, 0
    while i < len(data):
        sp = data.index(b" ", i)
        n = int(data[i:sp])
        key, _, value = data[sp + 1:i + n - 1].partition(b"=")
        out[key] = value
        i += n
    return out


def one_view(sample: dict, views: str, rng: np.random.Generator) -> dict:
    """The sample reduced to one of its cached views: a seeded draw ("random") or view 0
    ("plain"); `__view__` names it. Buffers then hold one view per sample."""
    have = sample_views(sample)
    where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
    if not have:
        raise ShardError(f"{where}: no view in the sample (members {sorted(k for k in sample if k[:2] != '__')})")
    view = have[rng.integers(len(have))] if views == "random" else 0
    try:
        feats, rec = sample[view_ext(view, FEATURE_EXT)], sample[view_ext(view, RECORD_EXT)]
    except KeyError:
        raise ShardError(f"{where}: no view {view} (views {have})") from None
    out = {"__key__": sample.get("__key__"), "__url__": sample.get("__url__"), "__view__": view,
           ENCODER_EXT: sample.get(ENCODER_EXT, b""), FEATURE_EXT: feats, RECORD_EXT: rec}
    if (tgt := sample.get(view_ext(view, TARGETS_EXT))) is not None:
        out[TARGETS_EXT] = tgt
    return out


def decode_sample(sample: dict, spec: dict) -> tuple[np.ndarray | LazyMap, dict]:
    """((C, H, W) float16 feature map, the batch fields of the record) of a `one_view`
    sample: `pipelines.features.decode_view` with the record as its targets row
    (`TargetRow`, where the cache has rows of this code's layout) or read by
    `train.batch.batch_fields`, and a map left on disk (`Span`) returned as a `LazyMap` of
    the cache's shape."""
    where = f"{sample['__url__']}:{sample['__key__']}"
    if (enc := sample[ENCODER_EXT].decode()) != spec["encoder_id"]:
        raise ShardError(f"{where}: made by encoder {enc!r}, the cache's is {spec['encoder_id']!r}")
    if TARGETS_EXT in sample and has_targets(spec):
        rec = TargetRow(sample["__key__"], sample[TARGETS_EXT], f"{where}.{view_ext(sample['__view__'], TARGETS_EXT)}")
    else:
        npz = sample[RECORD_EXT]
        if isinstance(npz, Span):
            raise ShardError(f"{where}: the cache's spec promises targets rows but the sample has none")
        rec = batch_fields(npz, source=f"{where}.{view_ext(sample['__view__'], RECORD_EXT)}")
    feats = sample[FEATURE_EXT]
    if not isinstance(feats, Span):
        return decode_features(feats, spec), rec
    shape, dtype = tuple(spec["storage"]["shape"]), np.dtype(spec["storage"]["dtype"])
    if feats.size != math.prod(shape) * dtype.itemsize:
        raise ShardError(f"{where}: feature member holds {feats.size} bytes, the cache's shape {shape} "
                         f"{dtype} needs {math.prod(shape) * dtype.itemsize}")
    return LazyMap(feats, shape, spec["storage"]["dtype"]), rec


def dataset_stream(source: Source, seed: int, epoch: int, consumer: int, consumers: int, shuffle_buffer: int,
                   views: str = "plain", lazy: tuple[str, ...] = LAZY) -> Iterator[dict]:
    """Endless shuffled one-view samples of one dataset for one consumer (steps 2-3): the
    consumer's share of the epoch's shard permutation, read over and over."""
    from webdataset.filters import _shuffle

    shards, stride, offset = consumer_shards(source.shards, consumer, consumers,
                                             np.random.default_rng([seed, epoch, _h(source.dataset)]))
    view_rng = np.random.default_rng([seed, epoch, consumer, _h(source.dataset), 1])

    def passes():
        while True:
            n = 0
            for shard in shards:
                for i, sample in enumerate(read_samples(shard, lazy)):
                    if i % stride == offset:
                        n += 1
                        yield one_view(sample, views, view_rng)
            if n == 0:
                raise DataError(f"{source.dataset}/{source.split}: consumer {consumer} of {consumers} "
                                f"read no sample from {shards}")

    rng = random.Random(int(np.random.default_rng([seed, epoch, consumer, _h(source.dataset)]).integers(2**63)))
    yield from _shuffle(passes(), bufsize=shuffle_buffer, initial=shuffle_buffer, rng=rng)


def mixed(streams: list[Iterator[dict]], weights: np.ndarray, rng: np.random.Generator) -> Iterator[dict]:
    """Step 4: an endless stream drawing each sample from stream d with probability weights[d]."""
    while True:
        for d in rng.choice(len(streams), size=MIX_CHUNK, p=weights):
            yield next(streams[d])


def _worker() -> tuple[int, int]:
    """(this DataLoader worker's index, the number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


def _h(name: str) -> int:
    """A stable integer of a dataset name for seeding (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode())


# ---- the training stream of one rank ---------------------------------------------------------
class FeatureStream(IterableDataset):
    """N batches of `batch_size` (features, PersonFrame) samples per epoch for one rank.

    `position` is a shared (1,) int64 tensor holding the optimizer step at which the next
    iteration starts; `StepSyncedLoader` sets it before each epoch's iteration.
    """

    def __init__(self, sources: list[Source], weights: np.ndarray, spec: dict, batch_size: int, batches: int,
                 rank: int, world: int, seed: int, shuffle_buffer: int, views: str):
        self.sources, self.weights, self.spec = sources, weights, spec
        self.batch_size, self.batches = batch_size, batches
        self.rank, self.world, self.seed = rank, world, seed
        self.shuffle_buffer, self.views = shuffle_buffer, views
        self.position = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:  # samples of a whole epoch (the DataLoader divides by batch_size)
        return self.batches * self.batch_size

    def plan(self, step: int, worker: int, workers: int) -> tuple[int, int, int, int]:
        """(epoch, acting worker, batches to skip, batches to serve) for DataLoader worker
        `worker` when the epoch's iteration starts at optimizer step `step`.

        Batch b of an epoch is made by acting worker b mod W; after a resume at batch k the
        DataLoader asks worker w for batches k + w, k + w + W, ... so it acts as (k + w) mod W.
        """
        epoch, done = divmod(step, self.batches)
        acting = (done + worker) % workers
        skip = len(range(acting, done, workers))
        serve = len(range(done + worker, self.batches, workers))
        return epoch, acting, skip, serve

    def __iter__(self) -> Iterator[tuple[np.ndarray, object]]:
        worker, workers = _worker()
        epoch, acting, skip, serve = self.plan(int(self.position[0]), worker, workers)
        consumer, consumers = self.rank * workers + acting, self.world * workers
        streams = [dataset_stream(s, self.seed, epoch, consumer, consumers, self.shuffle_buffer, self.views,
                                  lazy_members(self.spec)) for s in self.sources]
        raw = mixed(streams, self.weights, np.random.default_rng([self.seed, epoch, consumer]))
        for _ in range(skip * self.batch_size):  # step 5: replay without decoding
            next(raw)
        for _ in range(serve * self.batch_size):
            yield decode_sample(next(raw), self.spec)


class ValStream(IterableDataset):
    """Every sample of the held-out split once over all ranks and workers (view 0)."""

    def __init__(self, source: Source, spec: dict, rank: int, world: int):
        self.source, self.spec, self.rank, self.world = source, spec, rank, world

    def __iter__(self):
        worker, workers = _worker()
        shards, stride, offset = consumer_shards(tuple(sorted(self.source.shards)), self.rank * workers + worker,
                                                 self.world * workers)
        for shard in shards:
            for i, sample in enumerate(read_samples(shard, lazy_members(self.spec))):
                if i % stride == offset:
                    yield decode_sample(one_view(sample, "plain", None), self.spec)


class StepSyncedLoader(DataLoader):
    """A DataLoader that writes the current optimizer step into its FeatureStream's shared
    `position` before each iteration starts (persistent workers read it at `iter()`)."""

    def __init__(self, dataset: FeatureStream, step: Callable[[], int], **kwargs):
        super().__init__(dataset, **kwargs)
        self._step = step

    def __iter__(self):
        self.dataset.position[0] = int(self._step())
        return super().__iter__()


# ---- Lightning ------------------------------------------------------------------------------
class FeatureDataModule(L.LightningDataModule):
    """Train and validation loaders over a feature tree, for one rank of `world`."""

    def __init__(self, cfg: DataConfig, features: str, global_batch: int, seed: int, pin_memory: bool = False):
        super().__init__()
        self.cfg, self.features, self.seed = cfg, str(features), seed
        self.global_batch, self.pin_memory = global_batch, pin_memory
        self.configure(rank=0, world=1)
        self.served_synthetic = False  # a training batch held a sample made from synthetic stand-ins
        self.root, self.spec = open_cache(self.features, cfg.cache)
        check_shards(self.root, cfg)
        self.sources, self.weights = train_sources(self.root, cfg)
        self.epoch_samples = cfg.epoch_samples or sum(s.samples for s in self.sources)
        self.batches_per_epoch = max(1, self.epoch_samples // global_batch)
        self.val_source = find_source(self.root, cfg.val_dataset, cfg.val_split) if cfg.val_dataset else None

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the cached feature maps."""
        return tuple(self.spec["storage"]["shape"])

    def configure(self, rank: int, world: int) -> None:
        """Set this process's rank among `world` ranks (Lightning: from the trainer in `setup`)."""
        if self.global_batch % world:
            raise DataError(f"optim.global_batch {self.global_batch} is not divisible by the {world} ranks")
        self.rank, self.world, self.batch_size = rank, world, self.global_batch // world

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.configure(self.trainer.global_rank, self.trainer.world_size)

    def describe(self) -> str:
        lines = [f"training mix ({self.epoch_samples} samples/epoch = {self.batches_per_epoch} steps of "
                 f"{self.global_batch}, {self.batch_size} per rank x {self.world}):"]
        for s, w in zip(self.sources, self.weights):
            lines.append(f"  {s.dataset}/{s.split}: weight {w:.3f}, {s.samples} samples in {len(s.shards)} shards")
        if self.val_source:
            lines.append(f"validation: {self.val_source.dataset}/{self.val_source.split}, "
                         f"{self.val_source.samples} samples")
        return "\n".join(lines)

    def _loader_kwargs(self) -> dict:
        w = self.cfg.workers
        # workers pass the maps' places, not their bytes; `on_before_batch_transfer` reads them
        # (into pinned memory on a GPU) in the training process
        return dict(num_workers=w, collate_fn=functools.partial(collate, lazy=True),
                    persistent_workers=w > 0, prefetch_factor=2 if w > 0 else None)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.trainer is None or self.trainer.training:  # checked on the host: no device sync
            self.served_synthetic |= bool(batch["synthetic"].any())
        return materialize(batch, pin_memory=self.pin_memory)

    def train_dataloader(self):
        ds = FeatureStream(self.sources, self.weights, self.spec, self.batch_size, self.batches_per_epoch,
                           self.rank, self.world, self.seed, self.cfg.shuffle_buffer, self.cfg.views)
        return StepSyncedLoader(ds, step=lambda: self.trainer.global_step if self.trainer else 0,
                                batch_size=self.batch_size, **self._loader_kwargs())

    def val_dataloader(self):
        if self.val_source is None:
            return []
        return DataLoader(ValStream(self.val_source, self.spec, self.rank, self.world), batch_size=self.cfg.val_batch,
                          **self._loader_kwargs())
