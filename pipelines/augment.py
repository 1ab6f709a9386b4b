"""Augmented views of a cropped sample, with every target moved consistently (ours: the
paper trains on cached features, so train-time augmentation must be baked into the cache).

A view is a crop of the crop: the box of the plain 256x192 crop scaled by `box_scale`
about its centre, turned by `rotation` and optionally mirrored, made with the same
`model.geometry.crop_affine` that cut the crop from the original image, then a per-channel
colour gain. View 0 is always the plain crop. The parameters follow HMR2.0's
`do_augmentation` (4D-Humans `hmr2/datasets/utils.py`; `DATASETS.CONFIG` in
`hmr2/configs/__init__.py`: SCALE_FACTOR 0.3, ROT_FACTOR 30, ROT_AUG_RATE 0.6,
FLIP_AUG_RATE 0.5, COLOR_SCALE 0.2); its translation and extreme-crop jitter are left out.

How targets follow the (2, 3) affine A of crop pixels -> view pixels (`apply_view`):
- A's linear part is s * Q2 with Q2 a rotation or a reflection; Q = diag(Q2, 1) is the
  matching change of camera axes, exact for an in-plane turn / mirror because pixel x, y
  and camera X, Y share their axes (OpenCV frame).
- keypoints_2d: A applied (confidence kept); joints_3d: X -> Q X; intrinsics:
  K' = [A; 0 0 1] K Q^T, so project(Q X, K') = A(project(X, K)): the 2D keypoints stay the
  projection of the 3D joints.
- a mirror (det Q < 0) also swaps left and right: joints by `flip_permutation()` of their
  joint set, SMPL pose rows by SMPL-24's, each joint's rotation R -> M R M with
  M = diag(-1, 1, 1), i.e. axis-angle (x, y, z) -> (x, -y, -z) (SPIN `flip_pose`).
- global orientation: R0 -> Q R0 (after the mirror above when there is one).
- smpl_transl: SMPL rotates about its root joint, which depends on the shape, so a turned
  or mirrored view marks `has_transl` False (a scaled view keeps it).
- crop_affine: A composed with the crop's; box_size scaled by `box_scale`.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from datasets.joints import KEYPOINTS_2D, SMPL_24
from datasets.record import CROP_HW, PersonFrame
from model.geometry import affine_intrinsics, axis_angle_to_matrix, crop_affine, matrix_to_axis_angle, \
    transform_keypoints
from pipelines.crop import warp

# Joint sets of the record's joint arrays (`datasets.record.PersonFrame`): keypoints_2d and
# joints_3d are both in KEYPOINTS_2D order, the SMPL pose rows in SMPL-24 order.
KEYPOINTS_2D_FLIP = KEYPOINTS_2D.flip_permutation()
JOINTS_3D_FLIP = KEYPOINTS_2D.flip_permutation()
SMPL_POSE_FLIP = SMPL_24.flip_permutation()
MIRROR = np.diag([-1.0, 1.0, 1.0])  # camera-frame mirror of a horizontal flip


@dataclass(frozen=True)
class AugmentSettings:
    """How augmented views are drawn (HMR2.0's defaults, see the module doc)."""

    scale_factor: float = 0.3  # box_scale = 1 + clip(N(0,1), -1, 1) * scale_factor
    rot_factor: float = 30.0  # degrees: rotation = clip(N(0,1), -2, 2) * rot_factor ...
    rot_rate: float = 0.6  # ... with this probability, else 0
    flip_rate: float = 0.5
    color_scale: float = 0.2  # per-channel gain ~ U(1 - c, 1 + c)


@dataclass(frozen=True)
class ViewParams:
    box_scale: float = 1.0  # > 1 zooms out (the view's box is larger than the crop's)
    rotation: float = 0.0  # radians, counter-clockwise in the image (`crop_affine`)
    flip: bool = False
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # gain per RGB channel

    @property
    def is_identity(self) -> bool:
        return self == ViewParams()


def view_rng(seed: int, key: str, view: int) -> np.random.Generator:
    """The generator of one sample's view: a function of (seed, key, view) only, so the
    views do not depend on the order or partitioning in which samples are processed."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, view])


def draw_view(rng: np.random.Generator, settings: AugmentSettings = AugmentSettings()) -> ViewParams:
    """Random view parameters as HMR2.0's `do_augmentation` draws them."""
    box_scale = 1.0 + float(np.clip(rng.standard_normal(), -1, 1)) * settings.scale_factor
    rot_deg = float(np.clip(rng.standard_normal(), -2, 2)) * settings.rot_factor
    rotation = math.radians(rot_deg) if rng.random() <= settings.rot_rate else 0.0
    flip = bool(rng.random() <= settings.flip_rate)
    c = settings.color_scale
    color = tuple(float(g) for g in rng.uniform(1 - c, 1 + c, size=3))
    return ViewParams(box_scale, rotation, flip, color)


def view_affine(params: ViewParams, crop_hw: tuple[int, int] = CROP_HW) -> np.ndarray:
    """(2, 3) affine from crop pixels to view pixels: `crop_affine` of the crop's own box
    (centre = crop centre, size = crop size x box_scale) with the view's turn and mirror."""
    h, w = crop_hw
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    return crop_affine(centre, np.array([w, h], np.float64) * params.box_scale, crop_hw,
                       rotation=params.rotation, flip=params.flip)


def _compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(2, 3) affine of 'B, then A'."""
    return (np.vstack([A, [0, 0, 1]]) @ np.vstack([B, [0, 0, 1]]))[:2]


def apply_view(record: PersonFrame, A: np.ndarray, view: int, box_scale: float = 1.0) -> PersonFrame:
    """The record seen through the (2, 3) similarity A of crop pixels (module doc)."""
    if not record.is_cropped:
        raise ValueError(f"{record.source or record.key}: augmenting needs a cropped record")
    A = np.asarray(A, np.float64)
    L = A[:, :2]
    s = math.sqrt(abs(np.linalg.det(L)))
    Q = np.eye(3)
    Q[:2, :2] = L / s  # rotation (det +1) or reflection (det -1)
    mirrored = np.linalg.det(Q) < 0

    kp = transform_keypoints(np.asarray(record.keypoints_2d, np.float64), A)
    j3d = np.asarray(record.joints_3d, np.float64).copy()
    j3d[:, :3] = j3d[:, :3] @ Q.T
    pose = np.asarray(record.smpl_pose, np.float64)
    if mirrored:
        kp, j3d = kp[KEYPOINTS_2D_FLIP], j3d[JOINTS_3D_FLIP]
        pose = pose[SMPL_POSE_FLIP] * np.array([1.0, -1.0, -1.0])  # M R M per joint
    R0 = axis_angle_to_matrix(_torch(pose[0])).numpy()
    R0 = (Q @ MIRROR if mirrored else Q) @ R0  # the mirror is already in R0; Q M is the turn
    pose = pose.copy()
    pose[0] = matrix_to_axis_angle(_torch(R0)).numpy()
    K = record.intrinsics
    if K is not None:
        K = affine_intrinsics(np.asarray(K, np.float64), A) @ Q.T
    turned = not np.allclose(Q, np.eye(3))
    return record.replace(
        keypoints_2d=kp.astype(np.float32), joints_3d=j3d.astype(np.float32),
        smpl_pose=pose.astype(np.float32),
        intrinsics=None if K is None else K.astype(np.float32),
        crop_affine=_compose(A, np.asarray(record.crop_affine, np.float64)).astype(np.float32),
        box_size=(np.asarray(record.box_size, np.float64) * box_scale).astype(np.float32),
        has_transl=bool(record.has_transl and not turned),
        smpl_transl=np.zeros(3, np.float32) if turned else record.smpl_transl,
        view=view,
    ).validate()


def _torch(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, np.float64))


def augment(record: PersonFrame, image: np.ndarray, params: ViewParams, view: int) -> tuple[PersonFrame, np.ndarray]:
    """(record, (H, W, 3) uint8 image) of view `view` under `params`; `image` is the crop."""
    if params.is_identity:
        return record.replace(view=view), image
    A = view_affine(params, image.shape[:2])
    out = warp(image, A, image.shape[:2])
    if params.color != (1.0, 1.0, 1.0):
        out = np.clip(out.astype(np.float32) * np.asarray(params.color, np.float32), 0, 255).astype(np.uint8)
    return apply_view(record, A, view, params.box_scale), out


def views(record: PersonFrame, image: np.ndarray, count: int, seed: int,
          settings: AugmentSettings = AugmentSettings()) -> list[tuple[PersonFrame, np.ndarray]]:
    """View 0 (the plain crop) and `count - 1` augmented views of one sample."""
    out = [augment(record, image, ViewParams(), 0)]
    for v in range(1, count):
        out.append(augment(record, image, draw_view(view_rng(seed, record.key, v), settings), v))
    return out
