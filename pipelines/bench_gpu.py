"""`make bench-gpu`: the GPU figures of the whole stack in one table, each against a limit
measured in the same run.

Launch:
    python -m pipelines.bench_gpu              # on a GPU node: ViT-H, def-m / reg-s at batch 200, bf16
    python -m pipelines.bench_gpu --tiny       # tiny shapes on this device (automatic without a GPU)

Rows, top to bottom (every one runs the project's own code, so its changes show here):
1. matmul peak: the best FLOP/s of square bf16 matrix products (fp32 on CPU) of a few sizes,
   timed with the device synchronised; beside it the datasheet figure where the device is in
   `DATASHEET_PEAKS` (dense BF16 tensor-core FLOP/s). The rows below are fractions of the
   measured peak: what this device sustains on an ideal matmul, not a marketing number.
2. encoder, on the device: `ViTPoseEncoder` on uint8 crops already on the device
   (preprocess, forward under bf16 autocast with the matmul weights stored in bf16, float16
   C-order output), batches of the feature pipeline's default GPU batch; crops/s, and
   crops/s x FLOPs per crop (`vit_flops`, from the shapes) / peak. Goal: >= 0.5.
3. encoder, host to host: `pipelines.chunk_encoder.ChunkEncoder`, what the feature actors run
   (host crops -> pinned buffer -> device -> float16 features in pinned host memory, copies
   not blocking, two chunks under way).
4. feature pipeline: `pipelines.features.run` (Ray: read tasks, one encoder actor writing the
   shards) over image shards of random crops; steady crops/s (from the first chunk done to the
   last) and the encoder's utilisation in that window.
5. training def-m and reg-s: `train.run.train` (Lightning, the real step and loader, bf16-mixed
   on a GPU) on a random cache of the encoder's feature shape (`train.random_cache`) at
   batch 200: samples/s over the steps after the warm-up ones (device synchronised at both
   ends), peak device memory (`torch.cuda.max_memory_allocated`), and the loader's wait: the
   time the training process spends between steps (waiting for the next batch, reading its
   maps into the pinned batch, moving it to the device, Lightning's bookkeeping) / wall time,
   an upper bound on the time the device waits for data. Goal: < 0.05.
6. eval: `eval.evaluate.evaluate_protocol` (3DPW protocol, the evaluator's batch) of the
   def-m run just trained over a random `3dpw/test` split: samples/s (model, ground-truth
   meshes, metrics).

Budget (< 8 minutes on one GPU): each stage has a fixed size — 3 matmul sizes x 10 products,
2 x 20 encoder batches of 256, 4096 crops through the pipeline, 2 x 35 training steps of 200
on a 2000-sample cache read over and over, 2000 evaluation samples — and the table gives each
stage's own time; the largest costs are start-ups (Ray and the actor's ViT-H, the cache
written to disk, Lightning).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

# dense BF16 tensor-core FLOP/s from NVIDIA's datasheets (they print twice these "with
# sparsity"); matched in order against `torch.cuda.get_device_name()`
DATASHEET_PEAKS: tuple[tuple[str, float, str], ...] = (
    ("H200", 989.4e12, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    ("H100 PCIe", 756.5e12, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    ("H100", 989.4e12, "NVIDIA H100 Tensor Core GPU datasheet (SXM)"),
    ("A100", 312e12, "NVIDIA A100 Tensor Core GPU datasheet"),
    ("L40S", 362.05e12, "NVIDIA L40S datasheet"),
    ("L4", 121e12, "NVIDIA L4 Tensor Core GPU datasheet"),
)
GOAL_ENCODER = 0.5  # encoder FLOP/s / measured peak
GOAL_LOADER_WAIT = 0.05


@dataclass(frozen=True)
class Sizes:
    """How much each stage runs."""

    encoder: str
    presets: tuple[str, str]  # (def-m, reg-s) or their tiny variants
    matmul: tuple[int, ...]
    matmul_reps: int
    encoder_batches: int
    pipeline_crops: int
    per_shard: int
    train_batch: int
    train_warmup: int
    train_steps: int
    cache_samples: int
    eval_samples: int
    workers: int


FULL = Sizes("vitpose-h", ("def-m", "reg-s"), (4096, 8192, 16384), 10, 20, 4096, 1024, 200, 5, 30, 2000, 2000, 8)
TINY = Sizes("tiny", ("def-m-tiny", "reg-s-tiny"), (128, 256), 3, 2, 16, 8, 4, 1, 2, 16, 8, 0)


@dataclass
class Row:
    measurement: str
    setting: str
    rate: float  # per second
    unit: str
    of_peak: float | None = None  # FLOP/s achieved / measured peak
    peak_memory_gb: float | None = None
    loader_wait: float | None = None
    seconds: float = 0.0  # the stage's wall time, start-up included
    notes: list[str] = field(default_factory=list)


# ---- FLOPs ------------------------------------------------------------------------------------
def vit_flops(cfg) -> float:
    """FLOPs (2 per multiply-add) of one crop through a `model.vitpose.EncoderConfig` ViT: the
    patch convolution, then per block the q, k, v and output projections (4 C^2 per token), the
    MLP (2 r C^2), and attention's two products (2 N^2 C); norms, softmax, GELU and adds not
    counted (as `torch.utils.flop_counter` counts)."""
    from model.vitpose import PATCH

    c, r = cfg.width, cfg.mlp_ratio
    n = int(np.prod(cfg.feature_hw))  # tokens
    patch = 2 * n * c * 3 * PATCH * PATCH
    block = 2 * n * (4 * c * c + 2 * r * c * c) + 2 * 2 * n * n * c
    return float(patch + cfg.depth * block)


def datasheet_peak(device_name: str) -> tuple[float, str] | None:
    for key, flops, source in DATASHEET_PEAKS:
        if key in device_name:
            return flops, source
    return None


# ---- timing -------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: torch.device) -> None:
    """Hand the device memory of a finished stage back (the next stage, or the pipeline's actor
    process, gets the whole device)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_peak(device: torch.device, sizes: tuple[int, ...], reps: int) -> tuple[float, int]:
    """(best FLOP/s, its size) of n x n @ n x n products: bf16 on CUDA, fp32 on CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    best = (0.0, 0)
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, (2 * n ** 3 * reps / (time.perf_counter() - t0), n))
        del a, b
    return best


def _encoder(name: str, device: torch.device):
    """A random-weight encoder initialised on `device` (fast for ViT-H on a GPU), placed for inference."""
    from model.vitpose import ViTPoseEncoder

    with torch.device(device):
        enc = ViTPoseEncoder(name)
    return enc.place(device)


@torch.no_grad()
def encoder_on_device(name: str, device: torch.device, batch: int, batches: int) -> float:
    """crops/s of preprocess + forward + float16 C-order on crops already on the device."""
    enc = _encoder(name, device)
    crops = torch.randint(0, 256, (batch, *enc.config.image_hw, 3), dtype=torch.uint8, device=device)

    def step():
        return enc(enc.preprocess(crops)).to(torch.float16, memory_format=torch.contiguous_format)

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    _sync(device)
    return batch * batches / (time.perf_counter() - t0)


def encoder_host_to_host(name: str, device: torch.device, batch: int, batches: int, pad: int) -> float:
    """crops/s of `ChunkEncoder` from host uint8 crops to float16 features in host memory."""
    from pipelines.chunk_encoder import ChunkEncoder

    enc = ChunkEncoder(_encoder(name, device), device, batch, pad)
    crops = np.random.default_rng(0).integers(0, 256, (batch, *enc.crop_shape), dtype=np.uint8)
    for _ in enc.encode([(crops, None)]):
        pass
    t0 = time.perf_counter()
    n = 0
    for _, out in enc.encode((crops, None) for _ in range(batches)):
        n += len(out.features)
    return n / (time.perf_counter() - t0)


def feature_pipeline(name: str, device: str, root: Path, crops: int, per_shard: int) -> tuple[float, float, float]:
    """(steady crops/s, encoder utilisation, run seconds) of `pipelines.features.run` over
    image shards of random crops (Ray local unless connected)."""
    from pipelines.bench_features import write_image_shards
    from pipelines.features import FeatureSettings, run
    from pipelines.shards import ensure_ray

    write_image_shards(root / "shards", crops, per_shard)
    ensure_ray(None)
    settings = FeatureSettings(encoder=name, device=device)
    stats = run(str(root / "shards"), str(root / "features"), settings)
    if stats.steady_seconds <= 0:
        raise RuntimeError(f"{crops} crops made one chunk: no steady window")
    return stats.steady_crops / stats.steady_seconds, stats.busy_seconds / stats.steady_seconds, stats.seconds


# ---- training and evaluation ---------------------------------------------------------------
class StepTimer(Callback):
    """Lightning callback: wall time of the steps after `warmup` (device synchronised at
    both ends), the time between those steps, and the peak device memory."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device = warmup, device
        self.t0 = self.t1 = self.last_end = 0.0
        self.between = 0.0
        self.steps = 0
        self.peak_memory = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            _sync(self.device)
            self.t0 = time.perf_counter()
        elif batch_idx > self.warmup:
            self.between += time.perf_counter() - self.last_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            _sync(self.device)
            self.t1 = time.perf_counter()
            self.steps = batch_idx + 1 - self.warmup
            if self.device.type == "cuda":
                self.peak_memory = torch.cuda.max_memory_allocated(self.device)
        self.last_end = time.perf_counter()


def train_rows(sizes: Sizes, device: torch.device, root: Path, assets: Path) -> list[Row]:
    """def-m and reg-s training rows, and the eval row of the def-m run (module doc, 5-6)."""
    from model.config import get_config
    from train.config import load_config
    from train.random_cache import write_cache_spec, write_split
    from train.run import train

    mc = get_config(sizes.presets[0])
    shape = (mc.context_dim, *mc.feature_hw)
    features = root / "train-features"
    cache = features / "bench"
    write_cache_spec(cache, shape)
    per_shard = max(1, min(100, sizes.cache_samples // 4))
    write_split(cache, "bench", "train", max(1, sizes.cache_samples // per_shard), per_shard, shape)
    rows, runs = [], {}
    for preset in sizes.presets:
        t0 = time.perf_counter()
        cfg = load_config(None, [f"model.preset={preset}", "optim.epochs=1", f"optim.global_batch={sizes.train_batch}",
                                 f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}"])
        steps = sizes.train_warmup + sizes.train_steps
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, cache="bench", mix={"bench": 1.0}, val_dataset="", workers=sizes.workers,
            epoch_samples=steps * sizes.train_batch))
        timer = StepTimer(sizes.train_warmup, device)
        runs[preset] = root / "runs" / preset
        trainer = train(cfg, features, runs[preset], assets=assets, extra_callbacks=[timer])
        wall = timer.t1 - timer.t0
        precision = str(trainer.precision)
        rows.append(Row(f"train {preset}", f"batch {sizes.train_batch}, {precision}, {timer.steps} steps timed "
                        f"after {sizes.train_warmup}, {sizes.workers} loader workers",
                        timer.steps * sizes.train_batch / wall, "samples/s",
                        peak_memory_gb=None if timer.peak_memory is None else timer.peak_memory / 1e9,
                        loader_wait=timer.between / wall, seconds=time.perf_counter() - t0))
    rows.append(eval_row(sizes, device, runs[sizes.presets[0]], cache, shape, assets))
    return rows


def eval_row(sizes: Sizes, device: torch.device, run: Path, cache: Path, shape: tuple[int, ...], assets: Path) -> Row:
    from datasets.assets import Assets
    from eval import evaluate as E
    from eval.protocols import PROTOCOLS
    from pipelines.features import read_cache_spec
    from train.random_cache import write_split

    t0 = time.perf_counter()
    protocol = PROTOCOLS["3dpw"]
    per_shard = max(1, min(500, sizes.eval_samples // 4))
    write_split(cache, protocol.dataset, protocol.split, max(1, sizes.eval_samples // per_shard), per_shard, shape)
    a = Assets(root=assets)
    loaded = E.load_run(run, None, a, device)
    feature_cache = E.FeatureCache(str(cache), read_cache_spec(str(cache)))
    t1 = time.perf_counter()
    result = E.evaluate_protocol(protocol, loaded, feature_cache, a, loaded.preset, log=lambda *_: None)
    rate = result.n / (time.perf_counter() - t1)
    return Row(f"eval {protocol.name}", f"{loaded.preset}, batch {E.DEFAULT_BATCH}, {result.n} samples", rate,
               "samples/s", seconds=time.perf_counter() - t0)


# ---- the table ----------------------------------------------------------------------------------
def bench(sizes: Sizes, device: torch.device, pipeline: bool = True, log=print) -> list[Row]:
    from model.vitpose import get_encoder_config
    from pipelines.features import FeatureSettings

    rows: list[Row] = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    log(f"== bench-gpu: {name}; encoder {sizes.encoder}, presets {', '.join(sizes.presets)}")

    t0 = time.perf_counter()
    peak, n = matmul_peak(device, sizes.matmul, sizes.matmul_reps)
    sheet = datasheet_peak(name) if device.type == "cuda" else None
    notes = [f"datasheet {sheet[0] / 1e12:.0f} TFLOP/s ({sheet[1]}): measured / datasheet {peak / sheet[0]:.2f}"
             ] if sheet else []
    dtype = "bf16" if device.type == "cuda" else "fp32"
    rows.append(Row("matmul peak (measured)", f"{dtype} {n}x{n}x{n}, best of sizes {list(sizes.matmul)}", peak / 1e12,
                    "TFLOP/s", 1.0, seconds=time.perf_counter() - t0, notes=notes))
    log(_line(rows[-1]))
    _release(device)

    cfg = get_encoder_config(sizes.encoder)
    flops = vit_flops(cfg)
    settings = FeatureSettings(encoder=sizes.encoder).for_device(device.type)
    batch = settings.batch_size if device.type == "cuda" else 8
    precision = "bf16 autocast, bf16 matmul weights" if device.type == "cuda" else "fp32"
    for label, fn in (("encoder on the device", lambda: encoder_on_device(sizes.encoder, device, batch,
                                                                           sizes.encoder_batches)),
                      ("encoder host to host (ChunkEncoder)",
                       lambda: encoder_host_to_host(sizes.encoder, device, batch, sizes.encoder_batches,
                                                    settings.pad_multiple))):
        t0 = time.perf_counter()
        rate = fn()
        rows.append(Row(label, f"{sizes.encoder}, batch {batch}, {precision}, {flops / 1e9:.4g} GFLOP/crop", rate,
                        "crops/s", rate * flops / peak, seconds=time.perf_counter() - t0))
        log(_line(rows[-1]))
        _release(device)
    if pipeline:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-pipeline-") as tmp:
            t0 = time.perf_counter()
            rate, busy, _ = feature_pipeline(sizes.encoder, device.type, Path(tmp), sizes.pipeline_crops,
                                             sizes.per_shard)
            rows.append(Row("feature pipeline (steady)", f"{sizes.pipeline_crops} crops, shards of {sizes.per_shard}, "
                            f"batch {batch}, 1 actor", rate, "crops/s", rate * flops / peak,
                            seconds=time.perf_counter() - t0, notes=[f"encoder utilisation {busy:.2f}"]))
            log(_line(rows[-1]))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-train-") as tmp:
        from datasets.synthetic.body import write_synthetic_assets

        assets = Path(tmp) / "assets"
        write_synthetic_assets(assets)
        for row in train_rows(sizes, device, Path(tmp), assets):
            rows.append(row)
            log(_line(row))
    _release(device)
    return rows


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _line(r: Row) -> str:
    return f"   {r.measurement}: {r.rate:.4g} {r.unit} ({r.seconds:.0f} s)"


def table(rows: list[Row]) -> str:
    head = ("measurement", "setting", "rate", "of measured peak", "peak memory (GB)", "loader wait", "stage (s)",
            "notes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join((r.measurement, r.setting, f"{r.rate:.4g} {r.unit}", _fmt(r.of_peak, ".2f"),
                                        _fmt(r.peak_memory_gb, ".1f"), _fmt(r.loader_wait, ".3f"),
                                        f"{r.seconds:.0f}", "; ".join(r.notes))) + " |")
    return "\n".join(lines)


def goals(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.measurement == "encoder on the device":
            out.append(f"encoder FLOP/s / measured peak = {r.of_peak:.2f} (goal >= {GOAL_ENCODER}: "
                       f"{'met' if r.of_peak >= GOAL_ENCODER else 'NOT met'})")
        if r.loader_wait is not None:
            out.append(f"{r.measurement}: loader wait {r.loader_wait:.3f} (goal < {GOAL_LOADER_WAIT}: "
                       f"{'met' if r.loader_wait < GOAL_LOADER_WAIT else 'NOT met'})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU test); automatic without a GPU")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-pipeline", action="store_true", help="leave out the Ray feature pipeline row")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    sizes = TINY if args.tiny or device.type == "cpu" else FULL
    t0 = time.perf_counter()
    rows = bench(sizes, device, pipeline=not args.no_pipeline)
    print()
    print(table(rows))
    print()
    for line in goals(rows):
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s" + ("" if sizes is FULL else
                                                        "; tiny shapes: the rates only show that every row runs"))
    return 0 if all(math.isfinite(r.rate) for r in rows) else 1


if __name__ == "__main__":
    # run the importable module's main, so that what Ray pickles names `pipelines.bench_gpu`, not `__main__`
    from pipelines.bench_gpu import main as _main

    sys.exit(_main())
