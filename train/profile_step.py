"""Op calls and host synchronisations per training step, as `make train` runs the step.

    python -m train.profile_step                          # def-m, CPU, batch 2 (counts only)
    python -m train.profile_step --preset def-m-tiny --device cuda --batch 200
    (`make bench-train` prints the same after its rates: train.bench_loader)

The step is the real one: `train.module.DeforHMRModule` in a Lightning Trainer built by
`train.run.build_trainer` (loggers, checkpoint callbacks, gradient clipping, precision as
`make train` sets them), fed one random batch (`train.random_cache` records with SMPL
targets from the synthetic body model, random feature maps) over and over. The torch
profiler records every op from the start of step `warmup` to the start of step
`warmup + steps` (whole steps: forward, losses, backward, optimizer, Lightning's hooks and
logging), and counts per step:
- `aten_ops`: every `aten::` op call, nested ones included (the launch overhead of a step);
- `syncs`: `aten::_local_scalar_dense`, the op behind `.item()`, `bool(t)`, `float(t)` and a
  tensor used as a Python index: on a GPU each waits for the device to finish; except
  `optimizer_reads`, those inside the fused AdamW kernel, which on CPU reads its step
  counters (host memory; the CUDA kernel keeps them on the device and reads none);
- `host_tensors`: `aten::lift_fresh`, a tensor made from Python data (`torch.tensor(...)`,
  `new_tensor`, Lightning's logging of a Python float): on a GPU each is a copy from
  pageable host memory, which waits for the stream too. (A CPU tensor moved with `.to(device)`
  is a no-op on CPU: only a GPU run sees those, as the memcpy counts below.)
- on CUDA also `memcpy_dtoh` / `memcpy_htod` (device activity) and `stream_syncs`
  (cudaStreamSynchronize / cudaDeviceSynchronize calls).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.profiler import ProfilerActivity, profile

SYNC_OP = "aten::_local_scalar_dense"
FUSED_OPTIMIZER_OPS = ("aten::_fused_adamw_", "aten::_fused_adam_")
HOST_TENSOR_OP = "aten::lift_fresh"
STREAM_SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize")


@dataclass
class StepProfile:
    """Counts per training step (means over `steps` profiled steps)."""

    steps: int
    aten_ops: float
    syncs: float  # outside the fused optimizer kernel
    host_tensors: float
    optimizer_reads: float = 0.0  # SYNC_OP inside the fused optimizer kernel (CPU only)
    memcpy_dtoh: float = 0.0
    memcpy_htod: float = 0.0
    stream_syncs: float = 0.0
    top_ops: list[tuple[str, float]] = field(default_factory=list)  # most frequent aten ops per step

    def summary(self) -> str:
        line = (f"{self.aten_ops:.0f} aten op calls, {self.syncs:.1f} host syncs ({SYNC_OP}"
                + (f"; and {self.optimizer_reads:.0f} in the CPU fused AdamW" if self.optimizer_reads else "")
                + f"), {self.host_tensors:.1f} tensors from host data ({HOST_TENSOR_OP})")
        if self.memcpy_dtoh or self.memcpy_htod or self.stream_syncs:
            line += (f", CUDA memcpy DtoH {self.memcpy_dtoh:.1f} / HtoD {self.memcpy_htod:.1f}, "
                     f"stream syncs {self.stream_syncs:.1f}")
        return line + " per step"


def count_events(events, steps: int) -> StepProfile:
    """A StepProfile from the profiler's events of `steps` steps."""
    names = Counter(e.name for e in events)
    aten = {k: v for k, v in names.items() if k.startswith("aten::")}
    dtoh = sum(v for k, v in names.items() if "Memcpy DtoH" in k or "Memcpy D2H" in k)
    htod = sum(v for k, v in names.items() if "Memcpy HtoD" in k or "Memcpy H2D" in k)
    top = sorted(aten.items(), key=lambda kv: -kv[1])[:12]
    in_optimizer = sum(1 for e in events if e.name == SYNC_OP and _has_ancestor(e, FUSED_OPTIMIZER_OPS))
    return StepProfile(steps=steps, aten_ops=sum(aten.values()) / steps,
                       syncs=(names[SYNC_OP] - in_optimizer) / steps, optimizer_reads=in_optimizer / steps,
                       host_tensors=names[HOST_TENSOR_OP] / steps, memcpy_dtoh=dtoh / steps,
                       memcpy_htod=htod / steps, stream_syncs=sum(names[k] for k in STREAM_SYNCS) / steps,
                       top_ops=[(k, v / steps) for k, v in top])


def _has_ancestor(event, names: tuple[str, ...]) -> bool:
    e = event.cpu_parent
    while e is not None:
        if e.name in names:
            return True
        e = e.cpu_parent
    return False


class ProfileSteps(Callback):
    """Profile from the start of batch `warmup` to the start of batch `warmup + steps`."""

    def __init__(self, warmup: int, steps: int, cuda: bool):
        self.warmup, self.steps, self.cuda = warmup, steps, cuda
        self.prof = None
        self.result: StepProfile | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self.prof = profile(activities=acts)
            self.prof.__enter__()
        elif batch_idx == self.warmup + self.steps and self.prof is not None:
            if self.cuda:
                torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)
            self.result = count_events(self.prof.events(), self.steps)
            self.prof = None


def random_batch(model, n: int, seed: int = 0) -> dict:
    """A collated batch (`train.batch.collate`) of `n` random records with SMPL targets from
    `model`'s body model and random float16 feature maps of the model's shape."""
    from train.batch import collate
    from train.random_cache import random_records

    mc = model.cfg
    frames = random_records("bench", "train", n, np.random.default_rng(seed), model.body_model)
    feats = np.random.default_rng(seed + 1).standard_normal((n, mc.context_dim, *mc.feature_hw)).astype(np.float16)
    return collate(list(zip(feats, frames)))


def profile_training_steps(assets_root: str | Path, preset: str = "def-m", batch: int = 2, device: str = "cpu",
                           warmup: int = 2, steps: int = 3, sets: list[str] | tuple[str, ...] = ()) -> StepProfile:
    """Run `warmup + steps + 1` training steps of `preset` on one random batch of `batch`
    samples and return the counts of the `steps` profiled ones."""
    from datasets.assets import Assets
    from model.deforhmr import DeforHMR
    from train.config import load_config
    from train.module import DeforHMRModule
    from train.run import build_trainer, resolve_runtime

    accel = "gpu" if device == "cuda" else "cpu"
    cfg = load_config(None, [f"model.preset={preset}", "optim.epochs=1", f"optim.global_batch={batch}",
                             f"trainer.accelerator={accel}", "data.val_dataset=''", *sets])
    L.seed_everything(0, verbose=False)
    model = DeforHMR.from_assets(cfg.model_config(), Assets(root=assets_root))
    one = random_batch(model, batch)
    n = warmup + steps + 1
    loader = torch.utils.data.DataLoader([one] * n, batch_size=None)
    module = DeforHMRModule(cfg, model, {"steps_per_epoch": n})
    cb = ProfileSteps(warmup, steps, cuda=device == "cuda")
    with tempfile.TemporaryDirectory(prefix="profile-step-") as tmp:
        trainer = build_trainer(cfg, Path(tmp), resolve_runtime(cfg), has_val=False, extra_callbacks=[cb])
        trainer.fit(module, train_dataloaders=loader)
    if cb.result is None:
        raise RuntimeError("profile_training_steps: the profiled steps did not run")
    return cb.result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="def-m", help="model preset (model.config.PRESETS, or <preset>-tiny)")
    ap.add_argument("--batch", type=int, default=2, help="samples per step (the counts do not depend on it)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--assets", help="assets root (default: synthetic stand-ins written to a temporary folder)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="training config override (repeatable)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-assets-") as tmp:
        assets = args.assets
        if assets is None:
            from datasets.synthetic.body import write_synthetic_assets

            assets = Path(tmp) / "assets"
            write_synthetic_assets(assets)
        p = profile_training_steps(assets, args.preset, args.batch, args.device, args.warmup, args.steps, args.sets)
    print(f"{args.preset} training step ({args.device}, batch {args.batch}, {p.steps} steps profiled): {p.summary()}")
    print("most frequent: " + ", ".join(f"{k} {v:.0f}" for k, v in p.top_ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
