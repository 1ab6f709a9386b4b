"""Fit a small ViTPose-class encoder on the 2D keypoints of image shards.

The paper's encoder is ViTPose-H, pretrained on COCO 2D pose and then frozen. Its weights
cannot be downloaded here, and a random-weight encoder carries little pose information,
so the CPU demo first does what ViTPose did, at toy scale: it trains a small encoder of
the same class with ViTPose's "simple decoder" heatmap head on the training crops' 2D
keypoints, then freezes it and caches its features like any other checkpoint.

- Head: ViTPose's simple decoder (ViTPose paper §3.1; `TopdownHeatmapSimpleHead` with
  `extra=dict(final_conv_kernel=3)` in ViTPose's configs): bilinear x4 upsampling,
  ReLU, a 3x3 conv to one heatmap per joint (64x48 for a 256x192 crop).
- Objective (`--objective`), over joints with confidence > 0:
  - `ce` (default): a softmax over each heatmap against a Gaussian target distribution
    (sigma `TARGET_SIGMA_PX` crop pixels around the keypoint), cross-entropy. ViTPose's
    Gaussian heatmaps with a spatial softmax in place of its per-pixel MSE (the same
    target as DSNT's / SimCC's distribution losses). Ours: on the demo crops it reached
    16.5 px (L1, x + y, held-out crops) where `integral` reached 19.1 at the same 12
    epochs, and 14.9 px at 30 epochs.
  - `integral`: integral regression (Sun et al., "Integral Human Pose Regression",
    2018): the softmax's expected position, L1 to the keypoint in normalised crop
    coordinates. Its predictions stayed within a pixel of the training-mean skeleton's
    error on the held-out crops.
  (ViTPose's per-pixel Gaussian-heatmap MSE first collapses to all-zero maps, which at
  this toy budget is where it stays: its loss reached exactly the zero-map value.)
- Start (`--pos-init`): ViTPose starts from MAE-pretrained weights, whose position
  embedding is MAE's fixed 2D sine-cosine table; `mae` (default) starts the position
  embedding there (`model.vitpose.mae_sincos_pos_embed`), the rest at random. `random`
  keeps transformers' init (trunc-normal, std 0.02), under which the position signal
  is tiny next to the patch embedding and the fitted features barely say where a cell is:
  a linear map from one cell's 32 features to its column reached R^2 0.16 on the demo's
  training crops, 0.82 from the MAE start (`python -m eval.probe` prints it). The
  decoders read positions from the features (DeforHMR's relative position encoding only
  biases the attention logits; HMR2.0's decoder adds none), so they need it.
- Output: a plain backbone state dict in ViTPose's key layout (checkpoint kind (c) of
  `model.vitpose.read_checkpoint`) with `meta = {'synthetic': True, ...}`, so `make
  features CKPT=...` loads it like a real checkpoint and every output made from it is
  marked synthetic.

    python -m train.pretrain_encoder --shards data/demo/shards --encoder tiny \
        --out runs/demo/encoder.pth --epochs 6
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets.errors import USER_ERRORS, fail
from datasets.joints import KEYPOINTS_2D
from datasets.progress import Progress
from datasets.record import CROP_HW
from model.geometry import normalise_crop_pixels
from model.vitpose import CONFIGS, ViTPoseEncoder, mae_sincos_pos_embed, normalize
from pipelines.features import shard_sets
from pipelines.shard_reader import decode_jpeg, iter_split

HEATMAP_STRIDE = 4  # ViTPose: 256x192 input -> 64x48 heatmaps
TARGET_SIGMA_PX = 8.0  # `ce` target spread in crop pixels (ViTPose: sigma 2 heatmap cells = 8 px)
OBJECTIVES = ("ce", "integral")
POS_INITS = ("mae", "random")


class HeatmapHead(nn.Module):
    """ViTPose's simple decoder: (B, C, h, w) -> (B, J, 4h, 4w) heatmaps."""

    def __init__(self, channels: int, joints: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, joints, 3, padding=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(feats, scale_factor=HEATMAP_STRIDE, mode="bilinear", align_corners=False)
        return self.conv(F.relu(x))


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, J, h, w) logits -> (B, J, 2) expected (x, y) in crop pixels.

    Heatmap cell (i, j) covers crop pixels [4j, 4j + 4), centre 4j + 1.5 (the pixel-centre
    convention of model.geometry)."""
    b, j, h, w = heatmaps.shape
    prob = heatmaps.flatten(2).softmax(-1).reshape(b, j, h, w)  # (B, J, h, w)
    xs, ys = heatmap_centres(h, w)
    xs, ys = xs.to(prob.dtype), ys.to(prob.dtype)
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], -1)  # (B, J, 2)


def heatmap_centres(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-pixel (x (w,), y (h,)) of the heatmap cells' centres: cell (i, j) covers crop
    pixels [4j, 4j + 4), centre 4j + 1.5 (the pixel-centre convention of model.geometry)."""
    xs = torch.arange(w, dtype=torch.float32) * HEATMAP_STRIDE + (HEATMAP_STRIDE - 1) / 2
    ys = torch.arange(h, dtype=torch.float32) * HEATMAP_STRIDE + (HEATMAP_STRIDE - 1) / 2
    return xs, ys


def keypoint_loss(heatmaps: torch.Tensor, keypoints: torch.Tensor, objective: str) -> torch.Tensor:
    """Mean loss over visible joints of (B, J, h, w) logits against (B, J, 3) crop-pixel
    keypoints (column 2 the confidence); see the module doc for the objectives."""
    vis = (keypoints[..., 2] > 0).float()  # (B, J)
    if objective == "ce":
        b, j, h, w = heatmaps.shape
        xs, ys = heatmap_centres(h, w)
        d2 = ((xs - keypoints[..., 0, None]) ** 2)[..., None, :] + ((ys - keypoints[..., 1, None]) ** 2)[..., :, None]
        target = torch.softmax(-d2.flatten(2) / (2 * TARGET_SIGMA_PX ** 2), -1)  # (B, J, h*w)
        per_joint = -(target * torch.log_softmax(heatmaps.flatten(2), -1)).sum(-1)  # (B, J)
    elif objective == "integral":
        xy = soft_argmax(heatmaps)  # (B, J, 2) crop pixels
        per_joint = (normalise_crop_pixels(xy) - normalise_crop_pixels(keypoints[..., :2])).abs().sum(-1)
    else:
        raise ValueError(f"objective {objective!r}: expected one of {OBJECTIVES}")
    return (per_joint * vis).sum() / vis.sum().clamp_min(1)


def load_training_crops(shards: str, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every `split` crop under `shards`: ((N, H, W, 3) uint8 RGB, (N, J, 3) keypoints, sets)."""
    crops, kps, sets = [], [], []
    for dataset, sp in shard_sets(shards):
        if sp != split:
            continue
        sets.append(f"{dataset}/{sp}")
        for rec, jpeg in iter_split(shards, dataset, sp):
            crops.append(decode_jpeg(jpeg))
            kps.append(rec.keypoints_2d)
    if not crops:
        raise FileNotFoundError(f"{shards}: no '{split}' image shards found (run `make shards` first)")
    return np.stack(crops), np.stack(kps).astype(np.float32), sets


def keypoint_px(heatmaps: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """(B, J) L1 (x + y) crop-pixel error of the heatmaps' soft-argmax (NaN where not visible)."""
    err = (soft_argmax(heatmaps) - keypoints[..., :2]).abs().sum(-1)
    return torch.where(keypoints[..., 2] > 0, err, torch.nan)


def pretrain(crops: np.ndarray, keypoints: np.ndarray, encoder_name: str, epochs: int, batch: int,
             lr: float, seed: int, progress: bool = True,
             objective: str = "ce", pos_init: str = "mae") -> tuple[ViTPoseEncoder, HeatmapHead, list[float]]:
    """Train encoder + heatmap head on (crops, keypoints); returns them and the mean 2D
    error (px, L1 x + y) of each epoch's training batches."""
    torch.manual_seed(seed)
    enc = ViTPoseEncoder(encoder_name, seed=seed)
    backbone = enc.backbone  # trained here, frozen again by ViTPoseEncoder once saved/loaded
    cfg = enc.config
    if pos_init == "mae":
        with torch.no_grad():
            backbone.embeddings.position_embeddings.copy_(mae_sincos_pos_embed(cfg))
    elif pos_init != "random":
        raise ValueError(f"pos_init {pos_init!r}: expected one of {POS_INITS}")
    backbone.requires_grad_(True).train()
    fh, fw = cfg.feature_hw
    head = HeatmapHead(cfg.width, len(KEYPOINTS_2D))
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    n = len(crops)
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    losses = []
    bar = Progress(steps, f"pretrain {encoder_name}", "steps", show=progress)
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            x = normalize(torch.from_numpy(crops[idx]))  # (B, 3, H, W)
            kp = torch.from_numpy(keypoints[idx])  # (B, J, 3)
            tokens = backbone(x).feature_maps[-1]  # (B, fh*fw, C)
            feats = tokens.transpose(1, 2).reshape(len(idx), cfg.width, fh, fw)  # (B, C, fh, fw)
            heatmaps = head(feats)  # (B, J, 4 fh, 4 fw)
            loss = keypoint_loss(heatmaps, kp, objective)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            px = float(keypoint_px(heatmaps.detach(), kp).nanmean())
            total += px * len(idx)
            bar.update()
            bar.set_postfix(px=f"{px:.1f}")
        losses.append(total / n)
    bar.close()
    backbone.requires_grad_(False)
    enc.eval()
    head.eval()
    return enc, head, losses


@torch.no_grad()
def heldout_px(enc: ViTPoseEncoder, head: HeatmapHead, crops: np.ndarray, keypoints: np.ndarray,
               batch: int = 64) -> float:
    """Mean 2D error (px, L1 x + y, visible joints) of encoder + head on held-out crops."""
    fh, fw = enc.config.feature_hw
    errs = []
    for i in range(0, len(crops), batch):
        tokens = enc.backbone(normalize(torch.from_numpy(crops[i:i + batch]))).feature_maps[-1]
        feats = tokens.transpose(1, 2).reshape(-1, enc.config.width, fh, fw)
        errs.append(keypoint_px(head(feats), torch.from_numpy(keypoints[i:i + batch])))
    return float(torch.cat(errs).nanmean())


def mean_skeleton_px(train_keypoints: np.ndarray, keypoints: np.ndarray) -> float:
    """The same error for the training crops' mean 2D skeleton predicted for every crop:
    what an encoder that sees nothing of the pose scores."""
    kp = torch.from_numpy(keypoints)
    seen = train_keypoints[..., 2:] > 0  # (N, J, 1)
    count = seen.sum(0)  # (J, 1); a joint no training crop shows has no mean (NaN, skipped below)
    total = np.where(seen, train_keypoints[..., :2], 0).sum(0)  # (J, 2)
    mean = torch.from_numpy(np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0))
    err = (mean - kp[..., :2]).abs().sum(-1)
    return float(torch.where(kp[..., 2] > 0, err, torch.nan).nanmean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="image shard root (make shards OUT)")
    ap.add_argument("--encoder", default="tiny", choices=sorted(CONFIGS), help="encoder config name")
    ap.add_argument("--out", required=True, help="checkpoint to write (.pth)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--objective", default="ce", choices=OBJECTIVES)
    ap.add_argument("--pos-init", default="mae", choices=POS_INITS,
                    help="position embedding at the start: MAE's 2D sine-cosine table, or transformers' random init")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    try:
        crops, kps, sets = load_training_crops(args.shards)
    except USER_ERRORS as e:
        return fail("pretrain", e)
    print(f"pretrain: {len(crops)} training crops from {', '.join(sets)}")
    enc, head, losses = pretrain(crops, kps, args.encoder, args.epochs, args.batch, args.lr, args.seed,
                                 objective=args.objective, pos_init=args.pos_init)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save({"state_dict": enc.vitpose_state_dict(),
                "meta": {"synthetic": True, "encoder": args.encoder, "trained_on": ",".join(sets),
                         "objective": f"2D keypoints, {args.objective} on ViTPose simple-decoder heatmaps",
                         "pos_init": args.pos_init,
                         "epochs": args.epochs, "final_train_px": losses[-1]}}, tmp)
    tmp.replace(out)
    print(f"pretrain: 2D keypoint error on the training crops {losses[0]:.1f} -> {losses[-1]:.1f} px (L1, x+y) "
          f"over {args.epochs} epochs, {time.time() - t0:.0f} s; wrote {out} (synthetic)")
    try:
        held, held_kps, held_sets = load_training_crops(args.shards, "val")
    except FileNotFoundError:
        held_sets = []
    if held_sets:
        print(f"pretrain: on the held-out crops of {', '.join(held_sets)}: {heldout_px(enc, head, held, held_kps):.1f} px; "
              f"the training crops' mean skeleton scores {mean_skeleton_px(kps, held_kps):.1f} px there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
