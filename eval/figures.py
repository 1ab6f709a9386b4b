"""Pictures of predictions: mesh overlays on the original image, a side view, best and
worst examples, and Fig. 5-style deformable-attention points.

- Overlay (paper Fig. 4): the crop prediction (body-frame vertices + crop-camera
  translation `cam_t`, focal FOCAL_CROP at the crop centre) is drawn into the original
  image through the stored crop affine: K_original = [A; 0 0 1]^-1 K_crop, so no
  re-fitting of a camera is involved. Shaded by `model.render` (Lambert, numpy).
- Side view: the same camera-frame mesh turned 90° about the vertical axis through its
  centre, on a white canvas.
- Worst cases: the k worst samples of a protocol as one contact sheet (`save_sheet`): the
  crop with the ground-truth (orange) and predicted (blue) meshes, and both sides' scored
  joints, root-centred, seen from the camera and from the side.
- Attention (paper Fig. 5): for one head of the first and the last decoder layer, the
  sampling positions P whose attention summed over the queries exceeds a threshold
  (paper: 0.25), drawn as square dots on the crop, coloured maroon -> bright red by that
  sum. Head h reads the positions of its offset group h // (heads / G).

Everything is numpy + matplotlib (Agg); images are RGB uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.record import CROP_HW
from model.geometry import affine_intrinsics, crop_intrinsics, invert_affine
from model.render import LIGHT_BLUE, render_mesh

ATTENTION_THRESHOLD = 0.25  # paper Fig. 5: "attention value sum over the queries is over 0.25"
SIDE_VIEW_SIZE = 384


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- geometry of the pictures ----------------------------------------------------------
def original_intrinsics(crop_affine: np.ndarray, crop_hw: tuple[int, int] = CROP_HW) -> np.ndarray:
    """(3, 3) the crop camera seen in original-image pixels: [A; 0 0 1]^-1 K_crop."""
    return affine_intrinsics(crop_intrinsics(crop_hw), invert_affine(np.asarray(crop_affine, np.float64)))


def overlay_original(image: np.ndarray, vertices: np.ndarray, cam_t: np.ndarray, faces: np.ndarray,
                     crop_affine: np.ndarray, color=LIGHT_BLUE, alpha: float = 0.85) -> np.ndarray:
    """Shaded mesh over the original image. vertices (V, 3) body frame metres, cam_t (3,)
    crop-camera translation, crop_affine (2, 3) original -> crop pixels."""
    cam = np.asarray(vertices, np.float64) + np.asarray(cam_t, np.float64)
    return render_mesh(image, cam, faces, original_intrinsics(crop_affine), color=color, alpha=alpha)[0]


def overlay_crop(crop: np.ndarray, vertices: np.ndarray, cam_t: np.ndarray, faces: np.ndarray,
                 color=LIGHT_BLUE, alpha: float = 0.85) -> np.ndarray:
    """Shaded mesh over the 256x192 crop (the model's input)."""
    cam = np.asarray(vertices, np.float64) + np.asarray(cam_t, np.float64)
    return render_mesh(crop, cam, faces, crop_intrinsics(crop.shape[:2]), color=color, alpha=alpha)[0]


def side_view(vertices: np.ndarray, faces: np.ndarray, size: int = SIDE_VIEW_SIZE,
              color=LIGHT_BLUE, yaw: float = np.pi / 2) -> np.ndarray:
    """(size, size, 3) the camera-frame mesh turned by `yaw` about the camera's vertical
    axis through its centre, framed to fill ~90% of the picture."""
    v = np.asarray(vertices, np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    v = (v - centre) @ turn.T
    extent = float((v.max(0) - v.min(0))[:2].max())
    focal = 2.5 * size
    dist = focal * extent / (0.9 * size) + extent
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])
    canvas = np.full((size, size, 3), 255, np.uint8)
    return render_mesh(canvas, v + (0, 0, dist), faces, K, color=color)[0]


# ---- attention points (Fig. 5) -----------------------------------------------------------
@dataclass
class AttentionPoints:
    """Sampling positions of one head kept by the threshold: xy (K, 2) pixels of the
    picture, weight (K,) attention summed over the queries, ascending (brightest last)."""

    xy: np.ndarray
    weight: np.ndarray
    threshold: float
    total: int  # positions before the threshold
    fallback: bool = False  # nothing passed the threshold: the `top_if_empty` largest are shown


def attention_points(info, sample: int = 0, head: int = 0, threshold: float = ATTENTION_THRESHOLD,
                     image_hw: tuple[int, int] = CROP_HW, top_if_empty: int = 0) -> AttentionPoints:
    """Fig. 5 points of one sample and head from a `model.deformable_attention.AttentionInfo`
    (positions (B, G, H, W, 2) in [-1, 1], weights (B, heads, N, H*W)). When no position
    passes the threshold (an untrained, near-uniform model), the `top_if_empty` largest
    are returned instead, flagged `fallback` (and said so in the picture)."""
    from model.deformable_attention import positions_to_pixels

    weights = info.weights[sample].float()  # (heads, N, HW)
    positions = info.positions[sample].float()  # (G, H, W, 2)
    heads, groups = weights.shape[0], positions.shape[0]
    if not 0 <= head < heads:
        raise ValueError(f"head {head} out of range: the layer has {heads} heads")
    g = head // (heads // groups)
    pos = positions[g].reshape(-1, 2)  # (HW, 2) in [-1, 1]
    total = weights[head].sum(0)  # (HW,) summed over the queries
    xy = positions_to_pixels(pos, image_hw).cpu().numpy()
    w = total.cpu().numpy()
    keep = w > threshold
    fallback = not keep.any() and top_if_empty > 0
    if fallback:
        keep = np.zeros_like(keep)
        keep[np.argsort(w)[-top_if_empty:]] = True
    order = np.argsort(w[keep])
    return AttentionPoints(xy[keep][order], w[keep][order], threshold, len(w), fallback)


def _draw_points(ax, image: np.ndarray, pts: AttentionPoints, title: str) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("maroon_red", [(0.5, 0.0, 0.0), (1.0, 0.1, 0.1)])
    ax.imshow(image)
    if len(pts.weight):
        lo, hi = pts.weight.min(), pts.weight.max()
        ax.scatter(pts.xy[:, 0], pts.xy[:, 1], c=pts.weight, cmap=cmap, vmin=lo, vmax=max(hi, lo + 1e-6),
                   marker="s", s=18, edgecolors="none")
    if pts.fallback:
        what = f"none > {pts.threshold:g}: top {len(pts.weight)}/{pts.total} shown"
    else:
        what = f"{len(pts.weight)}/{pts.total} positions with Σ_q attention > {pts.threshold:g}"
    ax.set_title(f"{title}\n{what}", fontsize=8)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.axis("off")


def save_attention_figure(path: str | Path, crop: np.ndarray, first: AttentionPoints, last: AttentionPoints,
                          title: str = "", head: int = 0, layers: tuple[int, int] | None = None) -> Path:
    """Two panels on the crop: the first and the last decoder layer (paper Fig. 5)."""
    plt = _mpl()
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 3.9), dpi=110)
    names = ("first", "last") if layers is None else (f"layer {layers[0] + 1}", f"layer {layers[1] + 1}")
    for ax, pts, name in zip(axes, (first, last), names):
        _draw_points(ax, crop, pts, f"{name} layer, head {head + 1}" if layers is None else f"{name}, head {head + 1}")
    return _save(fig, path, title, fontsize=8)


def _save(fig, path: str | Path, title: str, fontsize: int) -> Path:
    """Title, lay out, write (creating the folder) and close a figure."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _mpl().close(fig)
    return path


# ---- example panels ------------------------------------------------------------------------
@dataclass
class Example:
    """What one example picture shows (arrays as above; errors in mm)."""

    key: str
    image: np.ndarray  # original image (H, W, 3) uint8
    crop_affine: np.ndarray  # (2, 3)
    vertices: np.ndarray  # (6890, 3) predicted, body frame
    cam_t: np.ndarray  # (3,)
    errors: dict[str, float]
    gt_vertices: np.ndarray | None = None  # (6890, 3) camera-aligned GT (optional, side view)


def _zoom_box(image_hw, crop_affine, margin: float = 0.25) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the crop box in the original image, grown by `margin`, clipped."""
    from model.geometry import apply_affine

    h, w = CROP_HW
    corners = apply_affine(np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float),
                           invert_affine(np.asarray(crop_affine, np.float64)))
    lo, hi = corners.min(0), corners.max(0)
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    H, W = image_hw
    return max(lo[0], -0.5), min(hi[0], W - 0.5), min(hi[1], H - 0.5), max(lo[1], -0.5)


def example_panels(ex: Example, faces: np.ndarray) -> list[tuple[str, np.ndarray, tuple | None]]:
    """[(title, picture, zoom)]: image, overlay, side view (prediction; GT in grey when given)."""
    overlay = overlay_original(ex.image, ex.vertices, ex.cam_t, faces, ex.crop_affine)
    zoom = _zoom_box(ex.image.shape[:2], ex.crop_affine)
    cam_pred = ex.vertices + ex.cam_t
    side = side_view(cam_pred, faces)
    panels = [("image", ex.image, zoom), ("overlay", overlay, zoom), ("side view", side, None)]
    if ex.gt_vertices is not None:
        panels.append(("ground truth, side", side_view(ex.gt_vertices, faces, color=(0.7, 0.7, 0.7)), None))
    return panels


def save_examples_figure(path: str | Path, examples: Sequence[Example], faces: np.ndarray, title: str = "") -> Path:
    """One row per example: image | overlay | side view [| GT side view]."""
    if not examples:
        raise ValueError("save_examples_figure: no examples")
    plt = _mpl()
    rows = [example_panels(ex, faces) for ex in examples]
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.6 * ncol, 2.8 * len(rows)), dpi=120, squeeze=False)
    for i, (ex, panels) in enumerate(zip(examples, rows)):
        for j in range(ncol):
            ax = axes[i, j]
            ax.axis("off")
            if j >= len(panels):
                continue
            name, pic, zoom = panels[j]
            ax.imshow(pic)
            if zoom is not None:
                ax.set_xlim(zoom[0], zoom[1])
                ax.set_ylim(zoom[2], zoom[3])
            label = name if j else f"{ex.key}\n" + "  ".join(f"{k} {v:.1f}" for k, v in ex.errors.items())
            ax.set_title(label, fontsize=6)
    return _save(fig, path, title, fontsize=9)


def best_and_worst(errors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k smallest and k largest errors (ascending / descending), stable."""
    errors = np.asarray(errors)
    order = np.argsort(errors, kind="stable")
    k = min(k, len(errors))
    return order[:k], order[::-1][:k]


# ---- the worst samples of a protocol as one contact sheet ------------------------------------------
PRED_COLOR = LIGHT_BLUE  # the prediction's mesh, as in every overlay
GT_COLOR = (0.95, 0.6, 0.2)  # the ground truth, mesh and joints (orange)
PRED_JOINT_COLOR = (0.15, 0.45, 0.95)


@dataclass
class SheetTile:
    """One sample of a contact sheet: `crop` (256, 192, 3) RGB the scored input, `overlay`
    the crop with the ground-truth (orange) and predicted (blue) meshes or None, the scored
    joints of both sides (J, 3) metres, each centred on its own root, and the errors."""

    key: str
    crop: np.ndarray
    overlay: np.ndarray | None
    pred_joints: np.ndarray
    gt_joints: np.ndarray
    errors: dict[str, float]


def overlay_pair(crop: np.ndarray, gt_vertices: np.ndarray, pred_vertices: np.ndarray, faces: np.ndarray,
                 K: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The crop with the ground-truth mesh (orange) and the prediction (blue) drawn over it,
    both (V, 3) in the crop camera's frame (OpenCV axes, metres), K the crop intrinsics."""
    img = render_mesh(crop, np.asarray(gt_vertices, np.float64), faces, np.asarray(K, np.float64),
                      color=GT_COLOR, alpha=alpha)[0]
    return render_mesh(img, np.asarray(pred_vertices, np.float64), faces, np.asarray(K, np.float64),
                       color=PRED_COLOR, alpha=alpha)[0]


def _draw_joints(ax, pred: np.ndarray, gt: np.ndarray, axes: tuple[int, int], name: str) -> None:
    """Both sides' joints projected on two camera axes (y down), a line from each ground-truth
    joint to its prediction."""
    a, b = axes
    for p, g in zip(pred, gt):
        ax.plot([g[a], p[a]], [g[b], p[b]], color=(0.5, 0.5, 0.5), linewidth=0.6)
    ax.scatter(gt[:, a], gt[:, b], s=6, color=GT_COLOR, edgecolors="k", linewidths=0.3, label="ground truth")
    ax.scatter(pred[:, a], pred[:, b], s=6, color=PRED_JOINT_COLOR, edgecolors="k", linewidths=0.3, label="prediction")
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(name, fontsize=6)


def save_sheet(path: str | Path, tiles: Sequence[SheetTile], title: str = "", per_row: int = 2) -> Path:
    """Tiles in a grid, `per_row` per row; a tile is: the crop (with both meshes where the
    protocol has them), the joints seen from the camera (x, y) and from the side (z, y)."""
    if not tiles:
        raise ValueError("save_sheet: no tiles")
    plt = _mpl()
    rows = (len(tiles) + per_row - 1) // per_row
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(2.1 * 3 * per_row, 2.6 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for t, tile in enumerate(tiles):
        r, c = divmod(t, per_row)
        img_ax, front, side = axes[r, 3 * c], axes[r, 3 * c + 1], axes[r, 3 * c + 2]
        img_ax.imshow(tile.overlay if tile.overlay is not None else tile.crop)
        label = "  ".join(f"{k} {v:.1f}" for k, v in tile.errors.items())
        img_ax.set_title(f"#{t + 1} {tile.key}\n{label}", fontsize=5)
        for ax, axes_, name in ((front, (0, 1), "joints, camera view"), (side, (2, 1), "joints, side view")):
            ax.axis("on")
            _draw_joints(ax, np.asarray(tile.pred_joints), np.asarray(tile.gt_joints), axes_, name)
    axes[0, 1].legend(fontsize=5, loc="lower right")
    return _save(fig, path, title, fontsize=9)
