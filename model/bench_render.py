"""Seconds per frame of the numpy mesh renderer (BENCHMARKS.md "Mesh renderer").

    .venv/bin/python -m model.bench_render [--size 512] [--frames 10]
    make bench-render

The synthetic SMPL stand-in (6890 vertices, 13776 faces; `datasets.synthetic.body`),
upright and facing the camera so that it fills most of a square frame, drawn over a black
image by `model.render.render_mesh` (rasterise, depth test, shading): the median of
`--frames` draws after one warm-up draw. The figures and `eval.predict` draw one such
frame per picture; a video overlay draws one per frame.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def frame_seconds(size: int, frames: int) -> tuple[float, float]:
    """(median seconds per frame, fraction of the frame the body covers)."""
    from datasets.assets import Assets
    from datasets.synthetic.body import write_synthetic_assets
    from model.body_model import BodyModel
    from model.render import render_mesh

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "assets"
        write_synthetic_assets(root)
        body = BodyModel(Assets(root=root).body_model_dir, "neutral")
        with torch.no_grad():
            v = body(torch.zeros(1, 10), torch.zeros(1, 69), torch.zeros(1, 3)).vertices[0].numpy()
    cam = v * [1, -1, -1] + [0, 0, 2.8]  # upright (y down), facing the camera, filling the frame
    K = np.array([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]])
    background = np.zeros((size, size, 3), np.uint8)
    _, mask = render_mesh(background, cam, body.faces, K)  # warm-up
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        render_mesh(background, cam, body.faces, K)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(mask.mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Seconds per frame of model.render.render_mesh on the synthetic body.")
    ap.add_argument("--size", type=int, default=512, help="square frame side, px")
    ap.add_argument("--frames", type=int, default=10)
    args = ap.parse_args(argv)
    seconds, covered = frame_seconds(args.size, args.frames)
    print(f"render_mesh: {seconds:.3f} s per {args.size}x{args.size} frame (median of {args.frames}; "
          f"the body covers {100 * covered:.0f}% of the frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
