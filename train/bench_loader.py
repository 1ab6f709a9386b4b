"""`make bench-train`: the training loader's samples/s against the raw read rate of the same
shard files, measured in the same run, and the training samples/s of the full `def-m`
preset on this machine.

Launch:
    python -m train.bench_loader                       # CPU: loader vs `cat`, def-m steps on CPU
    python -m train.bench_loader --device cuda --train-batch 200 --train-steps 20   # on a GPU node

1. input: `--samples` samples of ViTPose-H-sized features (1280 x 16 x 12 float16 = 0.5 MB,
   one view) with their records, in shards of `--per-shard`, over two datasets, written by
   `train.random_cache` into a temporary folder (so the files sit in the page cache: both
   readers below read memory, which is the bound a loader can reach here).
2. raw: `cat` of every shard to /dev/null, samples/s (best of `--repeats`, before and after);
3. loader: `train.data.FeatureDataModule` over those shards as training runs it (default
   `def-m` data settings: shard splitting, one-view reduction, shuffle buffers, mixing,
   decode, collate into shared memory, `--workers` worker processes, per-rank batch
   `--batch`), iterated for `--batches` batches after one warm-up batch; samples/s.
   Ratio = loader / raw; the goal is >= 0.5. Both are also given as CPU time per sample
   (`cat`: its user + system time; loader: its workers' and the training process's), the
   figure a shared machine does not distort.
4. training: `def-m` (66.7 M parameters) + the synthetic SMPL, forward, `train.losses`,
   backward and AdamW step on `--train-batch` random maps, after one warm-up step;
   samples/s (fp32 on CPU; bf16 autocast on CUDA, as `make train` runs it).
5. step profile (`train.profile_step`): the real Lightning step of `def-m` under the torch
   profiler, `--profile-steps` steps of batch `--profile-batch` after two warm-up steps:
   aten op calls, host syncs and tensors made from host data per step (CUDA: memcpys and
   stream syncs too).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURE_SHAPE = (1280, 16, 12)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_rate(shards: list[str], samples: int, repeats: int) -> tuple[float, float]:
    """(best samples/s, CPU seconds per sample) of `cat` over the shards."""
    best, cpu = 0.0, float("inf")
    for _ in range(repeats):
        c0, t0 = _children_cpu(), time.perf_counter()
        subprocess.run(["cat", *shards], stdout=subprocess.DEVNULL, check=True)
        best = max(best, samples / (time.perf_counter() - t0))
        cpu = min(cpu, (_children_cpu() - c0) / samples)
    return best, cpu


def loader_rate(features: Path, workers: int, batch: int, batches: int) -> tuple[float, float, float]:
    """(samples/s, worker CPU s per sample, training-process CPU s per sample) of the training
    loader over `batches` batches after a warm-up one."""
    from train.config import DataConfig
    from train.data import FeatureDataModule

    cfg = DataConfig(cache="bench", mix={"bench-a": 1.0, "bench-b": 1.0}, val_dataset="", workers=workers,
                     epoch_samples=batch * (batches + 1))
    dm = FeatureDataModule(cfg, str(features), global_batch=batch, seed=0)
    it = iter(dm.train_dataloader())
    dm.on_before_batch_transfer(next(it), 0)  # workers started, buffers filled
    pids = [w.pid for w in getattr(it, "_workers", [])]
    w0, m0, t0 = sum(map(_proc_cpu, pids)), time.process_time(), time.perf_counter()
    n = 0
    for _ in range(batches):
        batch_ = dm.on_before_batch_transfer(next(it), 0)  # the maps read in this process, as in training
        n += batch_["features"].shape[0]
    rate = n / (time.perf_counter() - t0)
    return rate, (sum(map(_proc_cpu, pids)) - w0) / n, (time.process_time() - m0) / n


def train_rate(assets_root: Path, batch: int, steps: int, device: str) -> float:
    """samples/s of def-m training steps (forward, losses, backward, AdamW) on random maps."""
    import torch

    from datasets.assets import Assets
    from model.config import get_config
    from model.deforhmr import DeforHMR
    from train.config import LossConfig, OptimConfig
    from train.losses import compute_losses, make_targets
    from train.random_cache import random_records
    from train.batch import collate

    dev = torch.device(device)
    model = DeforHMR.from_assets(get_config("def-m"), Assets(root=assets_root)).to(dev)
    from train.module import fused_adamw_available

    o = OptimConfig()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused_adamw_available(params))
    frames = random_records("bench", "train", batch, np.random.default_rng(0), model.body_model.cpu())
    model.to(dev)
    feats = np.random.default_rng(1).standard_normal((batch, *FEATURE_SHAPE)).astype(np.float16)
    b = collate(list(zip(feats, frames)))
    b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()}

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model(b["features"])
            loss, _ = compute_losses(out, make_targets(b, model.body_model), LossConfig())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1600, help="feature samples written (0.5 MB each)")
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader worker processes")
    ap.add_argument("--batch", type=int, default=100, help="loader batch (per rank)")
    ap.add_argument("--batches", type=int, default=40, help="loader batches timed")
    ap.add_argument("--repeats", type=int, default=3, help="cat passes (the best counts)")
    ap.add_argument("--train-batch", type=int, default=8, help="def-m training batch")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--profile-steps", type=int, default=3, help="def-m steps profiled (0: no profile)")
    ap.add_argument("--profile-batch", type=int, default=2, help="batch of the profiled steps (counts do not depend on it)")
    ap.add_argument("--assets", help="assets root for the body model (default: synthetic stand-ins written here)")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)

    from train.random_cache import write_cache_spec, write_split

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        features = Path(tmp) / "features"
        cache = features / "bench"
        write_cache_spec(cache, FEATURE_SHAPE)
        half = args.samples // 2
        for name in ("bench-a", "bench-b"):
            write_split(cache, name, "train", max(1, half // args.per_shard), args.per_shard, FEATURE_SHAPE)
        shards = sorted(str(p) for p in cache.glob("*/train/*.tar"))
        n = sum(1 for _ in shards) * args.per_shard
        size_mb = sum(os.path.getsize(s) for s in shards) / 1e6
        print(f"== bench-train: {n} samples ({size_mb:.0f} MB) in {len(shards)} shards; loader: {args.workers} "
              f"workers, batch {args.batch}", flush=True)
        load = os.getloadavg()[0]
        raw_before, cat_cpu = raw_rate(shards, n, args.repeats)
        loader, worker_cpu, main_cpu = loader_rate(features, args.workers, args.batch, args.batches)
        raw_after, cat_cpu2 = raw_rate(shards, n, args.repeats)
        raw, cat_cpu = max(raw_before, raw_after), min(cat_cpu, cat_cpu2)
        loader_cpu = worker_cpu + main_cpu
        print(f"load average at the start: {load:.1f} on {os.cpu_count()} CPUs")
        print(f"raw read (cat, page cache)  {raw:10.0f} samples/s  ({raw * size_mb / n:.0f} MB/s), "
              f"{cat_cpu * 1e6:.0f} us CPU/sample")
        print(f"training loader              {loader:10.0f} samples/s  ratio {loader / raw:.2f} (goal >= 0.5); "
              f"CPU/sample: workers {worker_cpu * 1e6:.0f} us + training process {main_cpu * 1e6:.0f} us")
        print(f"CPU cost ratio (cat / loader, the ratio when CPU bound): {cat_cpu / loader_cpu:.2f}")
        if not args.skip_train:
            assets = args.assets
            if assets is None:
                from datasets.synthetic.body import write_synthetic_assets

                assets = Path(tmp) / "assets"
                write_synthetic_assets(assets)
            rate = train_rate(Path(assets), args.train_batch, args.train_steps, args.device)
            print(f"def-m training ({args.device}, batch {args.train_batch}) {rate:8.2f} samples/s")
            if args.profile_steps:
                from train.profile_step import profile_training_steps

                p = profile_training_steps(assets, "def-m", args.profile_batch, args.device, steps=args.profile_steps)
                print(f"def-m training step ({args.device}, batch {args.profile_batch}, Lightning): {p.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
