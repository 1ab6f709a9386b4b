"""`make bench-features`: the frozen encoder's crops per second, and the whole feature
pipeline's rate against it, measured in the same run.

Launch:
    python -m pipelines.bench_features                              # ViT-H, random weights, CPU
    python -m pipelines.bench_features --device cuda --crops 4096 --batch-size 64   # on a GPU node

1. input: `--crops` random-content 256x192 crops written as image shards (JPEG + record, as
   `make shards` writes them) into a temporary folder, `--per-shard` samples per shard;
2. bare encoder: `encode_crops` (uint8 -> normalise -> forward -> float16 on the host) on
   batches of `--batch-size` already-decoded crops, after one warm-up batch; crops/s, measured
   before and again after the pipeline and averaged, so that a change in the machine's load
   during the run (a shared machine) weighs on both sides alike;
3. pipeline: `pipelines.features.run` over those shards (Ray local, all cores; one encoder
   actor, with the encoder's threads = all cores on CPU, `num_gpus=1` on GPU). Steady rate =
   crops of the chunks after the first / time between the actor finishing the first chunk and
   the last, so any time the read stage starves the actor or the writer holds it back counts,
   while Ray start, actor construction and the first forward (start-up) do not; the
   end-to-end rate (start-up included) is reported apart.
4. utilisation: the actor's own encoder time on those chunks / the same window, i.e. the
   pipeline's rate against the bare encoder's measured in the same process at the same time
   (immune to the machine's load changing between the runs of 2. and 3.).
Goal: utilisation and steady / bare >= 0.9 (the pipeline must not starve the encoder). Both
use the same encoder (same weights), batch size, threads and device.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_image_shards(root: Path, crops: int, per_shard: int, seed: int = 0) -> list[np.ndarray]:
    """`crops` image-shard samples (random smooth images, SPIN-style records) under
    root/bench/train, with its index; returns the decoded crops, RGB, in order."""
    import cv2

    from datasets.record import CROP_HW, PersonFrame, make_key
    from model.geometry import crop_intrinsics
    from pipelines.crop import encode_jpeg
    from pipelines.shard_index import write_index
    from pipelines.shard_reader import decode_jpeg, resolve, shard_name
    from pipelines.shards import write_tar

    rng = np.random.default_rng(seed)
    out_dir = root / "bench" / "train"
    out_dir.mkdir(parents=True)
    fs, _ = resolve(out_dir)
    h, w = CROP_HW
    decoded, samples, entries = [], [], {}
    for i in range(crops):
        small = rng.integers(0, 256, (h // 8, w // 8, 3), np.uint8)
        crop = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        t = PersonFrame.empty_targets()
        rec = PersonFrame(key=make_key("bench", "train", "seq", i, 0), dataset="bench", split="train",
                          sequence="seq", frame=i, person=0, image_path=f"{i:06d}.jpg",
                          image_hw=np.array([h, w]), box_center=np.array([(w - 1) / 2, (h - 1) / 2]),
                          box_size=np.array([w, h], float), box_expand=1.0, synthetic=True,
                          crop_affine=np.array([[1.0, 0, 0], [0, 1, 0]]), intrinsics=crop_intrinsics(), **t)
        jpg = encode_jpeg(crop)
        decoded.append(decode_jpeg(jpg))
        samples.append((rec.key, jpg, rec.to_npz_bytes()))
        if len(samples) == per_shard or i == crops - 1:
            name = shard_name("bench", "train", len(entries))
            entries[name] = write_tar(fs, str(out_dir / name), samples)
            samples = []
    write_index(str(out_dir), entries)
    return decoded


def bare_rate(encoder_name: str, crops: list[np.ndarray], batch: int, device: str, threads: int) -> float:
    """Crops/s of `encode_crops` on decoded crops, after one warm-up batch."""
    import torch

    from model.vitpose import encode_crops, load_encoder

    torch.set_num_threads(threads)
    enc = load_encoder(encoder_name).to(device)
    stack = np.stack(crops)
    encode_crops(enc, stack[:batch], device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, len(stack), batch):
        encode_crops(enc, stack[i:i + batch], device, torch.float16)  # host memory: synchronised
    return len(stack) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Encoder crops/s and the feature pipeline's rate against it.")
    ap.add_argument("--encoder", default="vitpose-h", help="encoder config (random weights)")
    ap.add_argument("--crops", type=int, default=48, help="crops through the pipeline (the bare run takes half)")
    ap.add_argument("--per-shard", type=int, default=16, help="samples per image shard")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)

    import ray
    import torch

    from pipelines.features import FeatureSettings, run
    from pipelines.shards import ensure_ray

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"CPU, {args.threads} threads ({os.cpu_count()} cores)"
    print(f"== bench-features: encoder {args.encoder} (random weights), {device_name}, "
          f"batch {args.batch_size}, {args.crops} crops; load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        root = Path(tmp)
        crops = write_image_shards(root / "shards", args.crops, args.per_shard)
        bare_crops = crops[: max(args.batch_size, args.crops // 3)]
        before = bare_rate(args.encoder, bare_crops, args.batch_size, args.device, args.threads)
        print(f"bare encoder: {before:.2f} crops/s ({len(bare_crops)} crops)", flush=True)

        ensure_ray(None)  # local: every core
        settings = FeatureSettings(encoder=args.encoder, batch_size=args.batch_size, device=args.device,
                                   threads=args.threads)
        stats = run(str(root / "shards"), str(root / "features"), settings, progress=False)
        ray.shutdown()
        after = bare_rate(args.encoder, bare_crops, args.batch_size, args.device, args.threads)
        print(f"bare encoder again: {after:.2f} crops/s", flush=True)
    if stats.steady_seconds <= 0:
        raise SystemExit(f"--crops {args.crops} makes one chunk of {args.batch_size}: no steady window; use more")
    bare = (before + after) / 2
    steady = stats.steady_crops / stats.steady_seconds
    end_to_end = stats.crops / stats.seconds
    print()
    busy = stats.busy_seconds / stats.steady_seconds
    print("| encoder | device | batch | bare encoder crops/s (before / after) | pipeline crops/s (steady) | "
          "steady / bare | encoder utilisation in the pipeline | pipeline end-to-end crops/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.encoder} | {device_name} | {args.batch_size} | {bare:.2f} ({before:.2f} / {after:.2f}) | "
          f"{steady:.2f} | {steady / bare:.2f} | {busy:.2f} | "
          f"{end_to_end:.2f} ({stats.crops} crops in {stats.seconds:.0f} s) |")
    ok = busy >= 0.9
    print(f"\nencoder utilisation in the pipeline = {busy:.2f} (goal >= 0.9: {'met' if ok else 'NOT met'}); "
          f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    # run the importable module's main, so that what Ray pickles names `pipelines.bench_features`, not `__main__`
    from pipelines.bench_features import main as _main

    sys.exit(_main())
