"""The per-shard index: how many samples, how many bytes and which checksum each shard of a
split was written with, so that no reader takes a cut, emptied or padded shard for a whole one.

`<split folder>/index.json`, beside the shards and `manifest.parquet`:
    {"format": 1, "checksum": "crc32",
     "shards": {"coco-train-000000.tar": {"samples": 1000, "bytes": 41656320, "crc32": "9a0c33f1"}, ...}}
A sample is a run of consecutive tar members with one key (WebDataset's grouping: the name
up to the first dot of its last path part). The checksum is zlib's CRC-32 of the whole file,
computed as the writer writes it: the cheapest checksum in the standard library (about twice
sha256's rate). On one core of the project's machine it adds about 10 µs to an image-shard
sample (30 KB; the crop work is about 1.3 ms of CPU) and 125 µs to a ViT-H feature sample
(0.5 MB), which the feature cache's writers (its encoder actors, whose thread also drives the
encoder) hash in a helper thread (measured when the driver wrote every shard: 159 µs per sample
without the hash, 181 with it).

Written by every shard writer: each tar goes through `ShardWriter` (a `pipelines.tar.TarWriter`
that counts samples and hashes bytes), and the stage's driver writes the split's index
(`write_index`) before its manifest: `pipelines/shards.py`, `pipelines/features.py`,
`train/random_cache.py`.

Checked by every reader:
- up front (`check`, from folder listings, the index and the manifest; no shard is opened):
  `make features` (image shards), `make train` and `make eval` list every shard that is
  missing, empty, shorter or longer than its index says, not named by the index, or whose
  index count differs from the manifest's ok rows for it, in one `ShardCheckError`, before
  anything is written.
- while reading (`ShardRead`): the size when a shard is opened; the samples as they come (one
  more than the index lists is an error at once; fewer, or a tar cut inside a member, when
  the shard ends); and, for readers that read every byte (image shards; evaluation's and the
  probe's feature reads), the checksum at the end. The training loader leaves the feature
  maps on disk, so it checks size and count only.
- in full: `python -m pipelines.shard_index check ROOT... --checksums` (`make check-shards`)
  reads every byte, e.g. after copying a cache.

Shards written before this index (a split folder without `index.json`) are refused with the
way out: rerun `make shards` / `make features` with the same arguments (complete shards are
kept, read once and indexed; nothing is recomputed), or `python -m pipelines.shard_index index
ROOT...`, which indexes shards whose sample counts match the manifest's rows.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tarfile
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO, TypeVar

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.shard_reader import MANIFEST, SHARD_RE, ShardError, join, resolve
from pipelines.tar import BLOCK, TarWriter

INDEX = "index.json"
FORMAT = 1
CHECKSUM = "crc32"
READ_CHUNK = 1 << 20
UNINDEXED = f"without {INDEX} (written before per-shard indexes)"
HOW_TO_INDEX = ("rerun `make shards` / `make features` with the same arguments (complete shards are kept and "
                "indexed, nothing is recomputed), or index them in place: `python -m pipelines.shard_index index {where}`")
T = TypeVar("T")


class ShardCheckError(ShardError):
    """Shards that do not match their index or manifest; one line per damaged shard."""

    def __init__(self, problems: list[str], remedy: str = ""):
        self.problems, self.remedy = list(problems), remedy
        text = f"shard check: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(text + (f"\n{remedy}" if remedy else ""))

    def __reduce__(self):  # across processes (Ray, DataLoader workers) with its fields
        return type(self), (self.problems, self.remedy)


class TruncatedShard(ShardError):
    """The tar ends before its end-of-archive marker: cut at a member boundary or inside one."""


@dataclass(frozen=True)
class Entry:
    """One shard as written: samples, bytes of the file, CRC-32 of the file (8 hex digits)."""

    samples: int
    bytes: int
    crc32: str


def sample_key(name: str) -> str:
    """The sample key of a tar member name (WebDataset's `group_by_keys` rule)."""
    dot = name.find(".", name.rfind("/") + 1)
    return name if dot < 0 else name[:dot]


# ---- writing -----------------------------------------------------------------------------------
class _Hashing:
    """A binary stream that passes reads or writes through and keeps their CRC-32 and length."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.crc, self.size = raw, 0, 0

    def write(self, data) -> None:
        self.raw.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read the rest of the stream (a tar reader stops at the end-of-archive marker)."""
        while self.read(READ_CHUNK):
            pass

    def wait(self) -> None:
        """Return once every byte written so far is hashed (none pending here)."""

    def finish(self) -> None:
        """Wait for hashing still under way (none here)."""

    @property
    def checksum(self) -> str:
        return f"{self.crc:08x}"


class _HashingInThread(_Hashing):
    """`_Hashing` for writes, whose CRC-32 runs in one helper thread, in order, on batches of
    `BATCH` bytes (zlib releases the GIL on large buffers): the writing thread only queues,
    and waits only when `PENDING` batches are still to hash. The buffers written must not
    change afterwards (the shard writers pass `bytes`)."""

    BATCH = 1 << 16
    PENDING = 8

    def __init__(self, raw: BinaryIO):
        super().__init__(raw)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shard-crc32")
        self._queued: list = []
        self._queued_bytes = 0
        self._pending: deque = deque()

    def write(self, data) -> None:
        self.raw.write(data)
        self.size += len(data)
        self._queued.append(data)
        self._queued_bytes += len(data)
        if self._queued_bytes >= self.BATCH:
            self._submit()

    def _submit(self) -> None:
        while len(self._pending) >= self.PENDING:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._update, self._queued))
        self._queued, self._queued_bytes = [], 0

    def _update(self, buffers: list) -> None:
        for data in buffers:
            self.crc = zlib.crc32(data, self.crc)

    def wait(self) -> None:
        if self._queued:
            self._submit()
        while self._pending:
            self._pending.popleft().result()  # an error in the thread surfaces here

    def finish(self) -> None:
        self.wait()
        self._pool.shutdown()


class ShardWriter:
    """`pipelines.tar.TarWriter` into `stream` that counts samples and hashes every byte:
    `add(name, data)` ..., then `close()` -> the shard's `Entry`. The caller owns `stream`.
    `hash_in_thread`: the CRC-32 runs beside the writing thread (`_HashingInThread`), for a
    writer whose thread has other work (the feature cache's encoder actors); the buffers added
    must then stay unchanged until `wait_hashed()` returns (or `close`)."""

    def __init__(self, stream: BinaryIO, hash_in_thread: bool = False):
        self._out = _HashingInThread(stream) if hash_in_thread else _Hashing(stream)
        self._tar = TarWriter(self._out)
        self._key: str | None = None
        self.samples = 0

    def add(self, name: str, data: bytes | memoryview) -> None:
        key = sample_key(name)
        if key != self._key:
            self.samples, self._key = self.samples + 1, key
        self._tar.add(name, data)

    def wait_hashed(self) -> None:
        """Return once every byte added so far is hashed (its buffers may then be reused)."""
        self._out.wait()

    def close(self) -> Entry:
        self._tar.close()
        self._out.finish()
        return Entry(self.samples, self._out.size, self._out.checksum)


def write_index(split_dir: str, entries: dict[str, Entry]) -> None:
    """Write `split_dir/index.json` (temporary name, then rename)."""
    from pipelines.shards import _write_atomic

    doc = {"format": FORMAT, "checksum": CHECKSUM,
           "shards": {name: asdict(e) for name, e in sorted(entries.items())}}
    fs, path = resolve(split_dir)
    _write_atomic(fs, f"{path}/{INDEX}", (json.dumps(doc, indent=1) + "\n").encode())


def entry_from_dict(d: dict, where: str) -> Entry:
    try:
        return Entry(int(d["samples"]), int(d["bytes"]), str(d[CHECKSUM]))
    except (KeyError, TypeError, ValueError):
        raise ShardError(f"{where}: not an index entry ({d!r}); expected samples, bytes, {CHECKSUM}") from None


# ---- reading the index -------------------------------------------------------------------------
def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def read_index(split_dir: str) -> dict[str, Entry]:
    """{shard name: Entry} of a split folder; ShardError naming the way out when it has none."""
    where = join(split_dir, INDEX)
    fs, path = resolve(where)
    if not _exists(fs, path):
        raise ShardError(f"{where}: no shard index (shards written before per-shard indexes, or by other "
                         f"tools): {HOW_TO_INDEX.format(where=split_dir)}")
    with fs.open_input_stream(path) as f:
        try:
            doc = json.loads(f.read())
        except json.JSONDecodeError as e:
            raise ShardError(f"{where}: not readable JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("checksum") != CHECKSUM:
        raise ShardError(f"{where}: not a format-{FORMAT} {CHECKSUM} shard index")
    return {name: entry_from_dict(e, f"{where}: {name}") for name, e in doc["shards"].items()}


def _split_of(shard: str) -> tuple[str, str]:
    """(split folder, shard name) of a shard location."""
    folder, _, name = shard.rpartition("/")
    return folder, name


def lookup(shard: str) -> Entry:
    """The index entry of one shard (ShardError when its split has no index or the index lacks it)."""
    folder, name = _split_of(shard)
    entries = read_index(folder)
    if name not in entries:
        raise ShardError(f"{shard}: not in {join(folder, INDEX)} (a shard the writer did not write: remove it)")
    return entries[name]


def manifest_counts(split_dir: str) -> Counter | None:
    """{shard name: ok rows naming it} of the split's manifest (None key: ok rows naming no
    shard); None when the split has no manifest."""
    fs, path = resolve(join(split_dir, MANIFEST))
    if not _exists(fs, path):
        return None
    table = pq.read_table(path, filesystem=fs, columns=["shard", "status"])
    return Counter(s for s, st in zip(table.column("shard").to_pylist(), table.column("status").to_pylist())
                   if st == "ok")


def listing(split_dir: str) -> dict[str, int]:
    """{shard name: bytes} of the shard files in a split folder."""
    fs, path = resolve(split_dir)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return {i.base_name: i.size for i in infos if i.type == pafs.FileType.File and SHARD_RE.match(i.base_name)}


# ---- the up-front check ---------------------------------------------------------------------------
def size_problem(size: int | None, entry: Entry) -> str | None:
    """What is wrong with a shard file of `size` bytes (None: absent) against its entry."""
    want = f"its index lists {entry.samples} samples in {entry.bytes} bytes"
    if size is None:
        return f"missing ({want})"
    if size == entry.bytes:
        return None
    if size == 0:
        return f"empty: 0 bytes ({want})"
    if size < entry.bytes:
        return f"truncated: {size} bytes ({want})"
    return f"{size} bytes, more than the {entry.bytes} its index lists: data appended"


def split_problems(split_dir: str) -> list[str]:
    """Every damaged shard of one split folder (see the module doc), from its listing, index
    and manifest. A folder with neither shards nor an index has nothing to check."""
    files = listing(split_dir)
    fs, path = resolve(join(split_dir, INDEX))
    if not _exists(fs, path):
        if not files:
            return []
        return [f"{split_dir}: {len(files)} shard(s) {UNINDEXED}"]
    try:
        entries = read_index(split_dir)
    except ShardError as e:
        return [str(e)]
    problems = []
    for name, entry in entries.items():
        if (p := size_problem(files.get(name), entry)) is not None:
            problems.append(f"{join(split_dir, name)}: {p}")
    problems += [f"{join(split_dir, name)}: a shard file that {INDEX} does not name"
                 for name in sorted(set(files) - set(entries))]
    counts = manifest_counts(split_dir)
    if counts is not None:
        for name in sorted(set(entries) | {n for n in counts if n is not None}):
            have, want = entries[name].samples if name in entries else None, counts.get(name, 0)
            if have is None:
                problems.append(f"{join(split_dir, name)}: {MANIFEST} lists {want} samples in it, {INDEX} has "
                                f"no such shard")
            elif have != want:
                problems.append(f"{join(split_dir, name)}: {INDEX} lists {have} samples, {MANIFEST} {want}")
        if counts.get(None):
            problems.append(f"{join(split_dir, MANIFEST)}: {counts[None]} ok rows name no shard")
    return problems


def check(split_dirs: Iterable[str], remedy: str = "") -> None:
    """ShardCheckError listing every damaged shard of these split folders, then `remedy`
    (for damaged shards) and how to index (for folders without an index); none: returns."""
    problems = [p for d in split_dirs for p in split_problems(d)]
    if problems:
        unindexed = [p.split(": ", 1)[0] for p in problems if p.endswith(UNINDEXED)]
        fixes = [remedy] if remedy and len(unindexed) < len(problems) else []
        if unindexed:
            fixes.append("to index shards written before indexes: " + HOW_TO_INDEX.format(where=" ".join(unindexed)))
        raise ShardCheckError(problems, "\n".join(fixes))


# ---- checks while reading ---------------------------------------------------------------------------
class ShardRead:
    """One read of one shard against its index entry: the size now, the samples as they come
    (`samples`), and, for a reader of every byte (`members`), the end and the checksum."""

    def __init__(self, shard: str):
        self.shard = shard
        self.entry = lookup(shard)
        fs, path = resolve(shard)
        info = fs.get_file_info(path)
        problem = size_problem(info.size if info.type == pafs.FileType.File else None, self.entry)
        if problem is not None:
            raise ShardError(f"{shard}: {problem}")

    def samples(self, samples: Iterable[T]) -> Iterator[T]:
        """`samples`, counted against the index: a sample beyond its count at once, a short
        count (a tail cut at a sample boundary, or inside a member) when the shard ends."""
        n, want = 0, self.entry.samples
        try:
            for sample in samples:
                n += 1
                if n > want:
                    raise ShardError(f"{self.shard}: sample {n} is one more than the {want} samples its index "
                                     f"lists: a sample the writer did not write")
                yield sample
        except (TruncatedShard, tarfile.TarError) as e:
            raise ShardError(f"{self.shard}: read {n} of the {want} samples its index lists, then the tar ends "
                             f"({e})") from None
        if n != want:
            raise ShardError(f"{self.shard}: read {n} of the {want} samples its index lists: the tar ends early "
                             f"(cut at a sample boundary)")

    def members(self) -> Iterator[tuple[str, bool, bytes | None]]:
        """(name, is a regular file, bytes or None) of every member, streamed (object stores
        too); after the last, the end-of-archive marker (a tar cut anywhere is a
        TruncatedShard before its last sample is complete), size and checksum are checked."""
        fs, path = resolve(self.shard)
        with fs.open_input_stream(path) as raw:
            f = _Hashing(raw)
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for m in tar:
                    yield m.name, m.isreg(), tar.extractfile(m).read() if m.isreg() else None
                end = tar.offset  # where the end-of-archive marker starts
            f.drain()
        if f.size - end < 2 * BLOCK:
            raise TruncatedShard(f"{self.shard}: the tar ends at byte {f.size} without the end-of-archive marker")
        if (f.size, f.checksum) != (self.entry.bytes, self.entry.crc32):
            raise ShardError(f"{self.shard}: {f.size} bytes of {CHECKSUM} {f.checksum}, its index lists "
                             f"{self.entry.bytes} bytes of {CHECKSUM} {self.entry.crc32}: the bytes changed after "
                             f"writing")


def counted_by_shard(samples: Iterable[dict]) -> Iterator[dict]:
    """WebDataset samples (`__url__` naming the shard), each shard's run counted by `ShardRead`."""
    for url, run in itertools.groupby(samples, key=lambda s: s["__url__"]):
        yield from ShardRead(url).samples(run)


# ---- indexing shards already written --------------------------------------------------------------
def tar_headers(shard: str) -> list[tarfile.TarInfo]:
    """Every member header of a shard, seeking past the data, up to its end-of-archive
    marker; a tar without one (cut at a member boundary or inside a member, or with bytes
    other than zeros after the marker) is a TruncatedShard."""
    fs, path = resolve(shard)
    with fs.open_input_file(path) as f:
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                members = tar.getmembers()
                end = tar.offset  # where the end-of-archive marker must start
        except tarfile.TarError as e:
            raise TruncatedShard(f"{shard}: not a complete tar ({e})") from None
        f.seek(end)
        tail = f.read()
    if len(tail) < 2 * BLOCK or tail.count(0) != len(tail):
        raise TruncatedShard(f"{shard}: no end-of-archive marker after the last member (at byte {end}): "
                             f"the file was cut, or has bytes appended")
    return members


def read_entry(shard: str) -> Entry:
    """The entry of a shard on disk, read whole: samples from its tar headers (`tar_headers`),
    bytes, checksum."""
    keys = [sample_key(m.name) for m in tar_headers(shard) if m.isreg()]
    fs, path = resolve(shard)
    with fs.open_input_stream(path) as raw:
        stream = _Hashing(raw)
        stream.drain()
    return Entry(sum(1 for _ in itertools.groupby(keys)), stream.size, stream.checksum)


def index_split(split_dir: str) -> dict[str, Entry]:
    """Index the shards of a split folder that has none: every shard read whole
    (`read_entry`), its count checked against the manifest's ok rows naming it."""
    counts = manifest_counts(split_dir)
    if counts is None:
        raise ShardError(f"{split_dir}: no {MANIFEST}: without it a short shard cannot be told from a whole one")
    entries = {name: read_entry(join(split_dir, name)) for name in sorted(listing(split_dir))}
    wrong = [f"{join(split_dir, n)}: {e.samples} samples, {MANIFEST} lists {counts.get(n, 0)}"
             for n, e in entries.items() if e.samples != counts.get(n, 0)]
    wrong += [f"{join(split_dir, n)}: missing ({MANIFEST} lists {c} samples in it)"
              for n, c in counts.items() if n is not None and n not in entries]
    if wrong:
        raise ShardCheckError(wrong, "not indexed: rebuild these shards (remove them and rerun the stage)")
    write_index(split_dir, entries)
    return entries


def verify_split(split_dir: str) -> list[str]:
    """`split_problems`, then every shard read whole against its entry (count and checksum)."""
    problems = split_problems(split_dir)
    if problems:
        return problems
    out = []
    for name, entry in read_index(split_dir).items():
        try:
            got = read_entry(join(split_dir, name))
        except ShardError as e:
            out.append(str(e))
            continue
        if got != entry:
            out.append(f"{join(split_dir, name)}: reads as {got.samples} samples, {CHECKSUM} {got.crc32}; its index "
                       f"lists {entry.samples} samples, {CHECKSUM} {entry.crc32}: the bytes changed after writing")
    return out


def split_dirs(root: str, depth: int = 3) -> list[str]:
    """Every folder under `root` (itself included, `depth` levels down) holding shards or an index."""
    fs, path = resolve(root)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{root}: no such folder")
    found, level = [], [root]
    for _ in range(depth + 1):
        below = []
        for d in level:
            dfs, dpath = resolve(d)
            infos = dfs.get_file_info(pafs.FileSelector(dpath))
            if any(i.base_name == INDEX or SHARD_RE.match(i.base_name) for i in infos):
                found.append(d)
            below += [join(d, i.base_name) for i in infos if i.type == pafs.FileType.Directory]
        level = sorted(below)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check shard folders against their per-shard index, or index "
                                             "shards written before indexes existed.")
    ap.add_argument("action", choices=["check", "index"])
    ap.add_argument("roots", nargs="+", help="shard roots (image shards, a feature root or a cache), local or URI")
    ap.add_argument("--checksums", action="store_true", help="check: also read every shard whole (count, checksum)")
    args = ap.parse_args(argv)
    try:
        dirs = [d for r in args.roots for d in split_dirs(r)]
    except FileNotFoundError as e:
        print(f"shard_index: error: {e}", file=sys.stderr)
        return 2
    problems = []
    for d in dirs:
        if args.action == "index":
            if _exists(*resolve(join(d, INDEX))):
                print(f"{d}: already indexed")
                continue
            try:
                entries = index_split(d)
            except ShardCheckError as e:
                problems += e.problems
                continue
            except ShardError as e:
                problems.append(str(e))
                continue
            print(f"{d}: indexed {len(entries)} shards, {sum(e.samples for e in entries.values())} samples")
        else:
            found = verify_split(d) if args.checksums else split_problems(d)
            problems += found
            if not found:
                print(f"{d}: ok")
    if problems:
        print(str(ShardCheckError(problems)), file=sys.stderr)
        return 1
    print(f"{len(dirs)} split folder(s) {'indexed' if args.action == 'index' else 'checked'}, nothing damaged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
