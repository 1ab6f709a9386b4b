"""Parameter counts and forward FLOPs of every model preset (BENCHMARKS.md "Model size").

    .venv/bin/python -m model.summary            # full-size presets, markdown table
    .venv/bin/python -m model.summary --tiny     # the tiny test presets
    .venv/bin/python -m model.summary --time def-m   # + seconds per forward+backward, batch 8

The model is the decoder + heads on a feature map (the frozen encoder and the SMPL layer
are not counted: identical across presets). FLOPs are counted by
`torch.utils.flop_counter.FlopCounterMode` for one sample (2 FLOPs per multiply-add); it
counts matrix products and convolutions only, so softmax, LayerNorm, GELU and the
bilinear sampling (grid_sample) are left out, all O(N·H·W·D) or smaller.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import ModelConfig, get_config, preset_names
from model.deforhmr import DeforHMR


def _identity_mean_params() -> dict:
    pose = np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), 24)  # identity rotations, SPIN's 6D layout
    return {"pose": pose, "shape": np.zeros(10, np.float32), "cam": np.array([0.9, 0, 0], np.float32)}


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of the decoder + heads of `cfg`, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = DeforHMR(cfg, _identity_mean_params())
    return sum(p.numel() for p in model.parameters())


def measure(cfg: ModelConfig) -> tuple[int, int]:
    """(parameters, forward FLOPs for batch 1) of the decoder + heads of `cfg`."""
    torch.manual_seed(0)
    model = DeforHMR(cfg, _identity_mean_params()).eval()
    params = sum(p.numel() for p in model.parameters())
    features = torch.randn(1, cfg.context_dim, *cfg.feature_hw)
    counter = FlopCounterMode(display=False)
    with counter:  # (not under no_grad: the counter's module tracker needs autograd)
        model(features)
    return params, counter.get_total_flops()


def time_step(cfg: ModelConfig, batch: int = 8, steps: int = 4) -> float:
    """Median seconds of one forward + backward on `batch` random feature maps (after one warm-up)."""
    torch.manual_seed(0)
    model = DeforHMR(cfg, _identity_mean_params())
    features = torch.randn(batch, cfg.context_dim, *cfg.feature_hw)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = model(features)
        (out.pose_6d.square().mean() + out.betas.square().mean() + out.cam.square().mean()).backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def table(names: list[str]) -> str:
    head = ("| preset | cross-attn | queries | heads × width | q/k/v bias | final LN | token input | init | G | λ_o "
            "| PE | params (M) | fwd GFLOPs / sample |\n" + "|---" * 13 + "|")
    rows = []
    for name in names:
        cfg = get_config(name)
        params, flops = measure(cfg)
        g = cfg.groups if cfg.cross_attention == "deformable" else "-"
        lam = f"{cfg.offset_range:g}" if cfg.cross_attention == "deformable" else "-"
        yes_no = {True: "yes", False: "no"}
        rows.append(f"| {name} | {cfg.cross_attention} | {cfg.queries} | {cfg.heads} × {cfg.attn_dim // cfg.heads} | "
                    f"{yes_no[cfg.qkv_bias]} | {yes_no[cfg.final_norm]} | {cfg.token_input} | {cfg.init} | {g} | "
                    f"{lam} | {cfg.pos_encoding} | {params / 1e6:.2f} | {flops / 1e9:.4g} |")
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Parameters and forward FLOPs per model preset.")
    ap.add_argument("--tiny", action="store_true", help="the tiny (CPU test) presets instead")
    ap.add_argument("presets", nargs="*", help="preset names (default: all full-size, or all tiny)")
    ap.add_argument("--time", action="store_true", help="also time forward+backward (batch --batch) on this machine")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    names = args.presets or preset_names(tiny=args.tiny)
    print(table(names))
    if args.time:
        print(f"\nforward + backward, batch {args.batch}, {torch.get_num_threads()} CPU threads, fp32:")
        for name in names:
            print(f"  {name}: {time_step(get_config(name), args.batch):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
