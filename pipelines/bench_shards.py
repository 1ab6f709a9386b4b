"""`make bench-shards`: the shard pipeline's crops per second against the limit measured in
the same run.

Launch:
    python -m pipelines.bench_shards                      # the synthetic datasets, rendered here
    python -m pipelines.bench_shards --raw data/raw --datasets coco --repeat 1

1. raw tree: `--raw`, or the synthetic datasets rendered into a temporary folder at
   `--scale`. Each reader's frames are repeated `--repeat` times under distinct keys
   (`r<j>-<key>`, so copies of a frame are not adjacent and never share a decoded image),
   so the run is long enough for fixed costs (Ray start-up, body-model loading) to fade.
2. pipeline: `pipelines.shards.build` into a fresh folder on a local Ray with all cores,
   started and warmed (workers up, modules imported) before the clock starts. Two rates:
   the crop stage (Ray Data: decode, warp, encode, serialize, write; wall time from its
   start to its last shard) and end to end (reading the labels on the driver included).
3. limit: the same decode + warp + JPEG encode (`shards.load_crop`) of the same records,
   in the same contiguous groups (one per shard), in a tight loop on a process pool with
   one process per core; and the same plus the target file (`PersonFrame.to_npz_bytes`),
   the other per-sample work every sample needs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipelines.shards import (ImageError, ImageSource, ShardSettings, build, ensure_ray, load_crop,
                              read_split)


def repeated(cls, times: int):
    """A reader class yielding each frame of `cls` `times` times, keys `r<j>-<key>`."""

    class Repeated:
        splits = staticmethod(cls.splits)

        def __init__(self, root, split):
            self.inner = cls(root, split)
            self.name, self.split = self.inner.name, split

        def frames(self):
            items = list(self.inner.frames())
            for j in range(times):
                for item in items:
                    yield dataclasses.replace(item, key=f"r{j:03d}-{item.key}")

    return Repeated


def _warm_worker(row: dict) -> dict:
    import pipelines.shards  # noqa: F401 - the import (torch included) is what is warmed

    time.sleep(0.5)  # hold the CPU so every worker gets one row
    return row


def warm_ray(num_cpus: int) -> None:
    """Start every Ray worker and import the pipeline in it, off the clock."""
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.from_items([{"i": i} for i in range(num_cpus)], override_num_blocks=num_cpus) \
        .map(_warm_worker, num_cpus=1).take_all()


def _crop_group(args) -> int:
    """Decode + warp + encode (+ serialize the target when `with_target`) one group."""
    import cv2

    cv2.setNumThreads(1)
    root, records, crop, with_target = args
    source = ImageSource(root)
    n = 0
    try:
        for rec in records:
            try:
                _, out = load_crop(source, rec, crop)
            except ImageError:
                continue
            if with_target:
                out.to_npz_bytes()
            n += 1
    finally:
        source.close()
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Shard pipeline crops/s against a tight-loop limit.")
    ap.add_argument("--raw", default=None, help="raw root (default: render the synthetic datasets)")
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--scale", type=int, default=1, help="synthetic size (default 1, the test size)")
    ap.add_argument("--repeat", type=int, default=100, help="times each frame is cropped (default 100)")
    ap.add_argument("--rounds", type=int, default=3, help="measure each figure this often, keep the best")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--max-samples", type=int, default=1000, help="samples per shard (default 1000)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    settings = ShardSettings(max_samples=args.max_samples)
    from datasets.readers import READERS

    from pipelines.shards import dataset_roots

    readers = {name: repeated(cls, args.repeat) for name, cls in READERS.items()}
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        raw = args.raw
        if raw is None:
            from datasets.synthetic.__main__ import main as synthetic

            print(f"== bench-shards: rendering the synthetic datasets (scale {args.scale}) into {tmp}", flush=True)
            synthetic(["--out", f"{tmp}/synthetic", "--scale", str(args.scale)])
            raw = f"{tmp}/synthetic/raw"
        ensure_ray(args.num_cpus)
        warm_ray(args.num_cpus)
        with mp.get_context("spawn").Pool(args.num_cpus) as pool:
            groups = None
            for r in range(args.rounds):
                print(f"== round {r + 1}/{args.rounds}: pipeline on {raw} (each frame x{args.repeat}), "
                      f"Ray on {args.num_cpus} CPUs", flush=True)
                t0 = time.perf_counter()
                stats, skipped = build(raw, f"{tmp}/shards-{r}", settings, args.datasets, readers=readers)
                keep("end to end", time.perf_counter() - t0)
                keep("crop stage", max(s["seconds"]["stage"] for s in stats))
                read_s = sum(s["seconds"]["read"] for s in stats)
                crops = sum(s["status"]["ok"] for s in stats)
                shutil.rmtree(f"{tmp}/shards-{r}")
                if groups is None:  # the same records in the same contiguous groups as the shards
                    roots, per, groups = dataset_roots(raw), settings.samples_per_shard(), []
                    for s in stats:
                        reader = readers[s["dataset"]](roots[s["dataset"]], s["split"])
                        _, records = read_split(reader, settings)
                        groups += [(roots[s["dataset"]], records[i:i + per], settings.crop)
                                   for i in range(0, len(records), per)]
                    pool.map(_crop_group, [g + (True,) for g in groups[:args.num_cpus]])  # warm-up
                print(f"== round {r + 1}/{args.rounds}: the same crops in a tight loop on {args.num_cpus} "
                      f"processes", flush=True)
                for name, with_target in (("limit: decode+warp+JPEG", False), ("limit: + target file", True)):
                    t0 = time.perf_counter()
                    n = sum(pool.imap_unordered(_crop_group, [g + (with_target,) for g in groups]))
                    keep(name, time.perf_counter() - t0)
                    assert n == crops, (name, n, crops)

    rates = {name: crops / seconds for name, seconds in best.items()}
    image_limit = rates["limit: decode+warp+JPEG"]
    ratio = rates["crop stage"] / image_limit
    print(f"\n{crops} crops ({args.repeat} x the frames of {len(stats)} splits), {args.num_cpus} CPUs, "
          f"best of {args.rounds}")
    print(f"{'':<26}{'seconds':>9}{'crops/s':>10}{'/ limit':>9}")
    for name in ("crop stage", "end to end", "limit: decode+warp+JPEG", "limit: + target file"):
        print(f"{name:<26}{best[name]:>9.2f}{rates[name]:>10.1f}{rates[name] / image_limit:>9.2f}")
    print(f"ratio (crop stage / decode+warp+JPEG limit) {ratio:.2f}, goal >= 0.7; reading the labels took "
          f"{read_s:.1f} s on the driver; skipped: {skipped or 'none'}")
    if args.json:
        figures = dict(cpus=args.num_cpus, crops=crops, repeat=args.repeat, rounds=args.rounds,
                       seconds={k: round(v, 3) for k, v in best.items()},
                       crops_per_s={k: round(v, 1) for k, v in rates.items()}, ratio=round(ratio, 3),
                       read_seconds=round(read_s, 2))
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    # run the importable module's main, so that pickled functions name
    # `pipelines.bench_shards`, which the pool's spawned workers can import
    from pipelines.bench_shards import main as _main

    sys.exit(_main())
