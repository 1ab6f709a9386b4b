"""Augmented views of a cropped sample, with every target moved consistently (ours: the
paper trains on cached features, so train-time augmentation must be baked into the cache).

A view is a crop of the crop: a box in the plain 256x192 crop's pixels (the crop's own box,
or with an extreme crop a body part's box), shifted, scaled by `box_scale` about its centre,
turned by `rotation` and optionally mirrored, made with the same
`model.geometry.crop_affine` that cut the crop from the original image, then a per-channel
colour gain. View 0 is always the plain crop.

The paper says nothing about augmentation. We take HMR2.0's training augmentation whole:
`do_augmentation` and `get_example` (4D-Humans `hmr2/datasets/utils.py`) with the parameters
of `hmr2/configs_hydra/experiment/default.yaml` (`DATASETS.CONFIG`), each mapped in
`AugmentSettings`: SCALE_FACTOR 0.3, ROT_FACTOR 30 with ROT_AUG_RATE 0.6, FLIP_AUG_RATE 0.5,
COLOR_SCALE 0.2, TRANS_FACTOR 0.02, EXTREME_CROP_AUG_RATE 0.1 at EXTREME_CROP_AUG_LEVEL 1.
What differs: HMR2.0 draws per training step from the full image, a view here is drawn once
per (seed, key, view) and cut from the crop, whose outside is black where the crop's box left
the image (HMR2.0 pads with black at the image border likewise, `BORDER_CONSTANT`).

HMR2.0's box is the square of side S = the box height (`expand_to_aspect_ratio` to
BBOX_SHAPE [192, 256], `hmr2/models/__init__.py`, then the larger side), warped to 256x256,
of which the ViT reads the middle 192 columns (`hmr2/models/hmr2.py`: `x[:,:,:,32:-32]`):
the image seen is S high and 3/4 S wide, the plain crop's box here (256 x 192 crop pixels,
S = 256). So:
- translation: the box centre moves by (tx, ty) * S (`center_x += width * tx`, with
  width = S), tx, ty = clip(N(0,1), -1, 1) * TRANS_FACTOR, drawn for every sample
  (TRANS_AUG_RATE is declared in the config and read nowhere);
- extreme crop (`extreme_cropping_aggressive` at level 1, `extreme_cropping` at 0, with
  probability EXTREME_CROP_AUG_RATE): the box becomes a body part's: the keypoints the part
  keeps (`EXTREME_CROP_PARTS`), their bounding box x 1.2 (`get_bbox`) x the part's factor,
  its larger side as S; kept unless the kept keypoints' confidences sum to 1 or less or the
  part's box is under 4 original pixels wide or high, as HMR2.0 does. Which part depends on
  which joints are visible (`full_body`, `upper_body`) and a uniform draw (`EXTREME_CROP_CHOICES`).

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
  or mirrored view marks `has_transl` False (a scaled or shifted view keeps it).
- crop_affine: A composed with the crop's; box_center and box_size: the view's box in
  original pixels (the centre moves with a shift or an extreme crop, the size scales by 1/s).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from datasets.joints import KEYPOINTS_2D, SMPL_24
from datasets.record import CROP_HW, PersonFrame
from model.geometry import affine_intrinsics, apply_affine, axis_angle_to_matrix, crop_affine, invert_affine, \
    matrix_to_axis_angle, transform_keypoints
from pipelines.crop import warp

# Joint sets of the record's joint arrays (`datasets.record.PersonFrame`): keypoints_2d and
# joints_3d are both in KEYPOINTS_2D order, the SMPL pose rows in SMPL-24 order.
KEYPOINTS_2D_FLIP = KEYPOINTS_2D.flip_permutation()
JOINTS_3D_FLIP = KEYPOINTS_2D.flip_permutation()
SMPL_POSE_FLIP = SMPL_24.flip_permutation()
MIRROR = np.diag([-1.0, 1.0, 1.0])  # camera-frame mirror of a horizontal flip

# ---- extreme crops (HMR2.0 hmr2/datasets/utils.py) ------------------------------------------
# HMR2.0's keypoints are OpenPose BODY_25 then SPIN's first 19 ground-truth joints; each
# `crop_*` zeroes an index list of them and boxes the rest. A part here keeps the KEYPOINTS_2D
# joints whose name some kept HMR2.0 keypoint has (`crop_to_head` keeps the OpenPose shoulders
# while zeroing the ground-truth ones: the shoulders are in). tests/conformance/test_hmr2_augment.py
# derives these sets from the literal index lists. (factor, kept joint names)
EXTREME_CROP_PARTS: dict[str, tuple[float, tuple[str, ...]]] = {
    "hips": (1.1, ("right_hip", "left_hip", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
                   "left_elbow", "left_wrist", "neck_lsp", "head_top", "pelvis_mpii", "thorax", "spine_h36m", "jaw",
                   "head_h36m", "nose", "left_eye", "right_eye", "left_ear", "right_ear")),  # crop_to_hips
    "shoulders": (1.2, ("right_shoulder", "left_shoulder", "neck_lsp", "head_top", "jaw", "head_h36m", "nose",
                        "left_eye", "right_eye", "left_ear", "right_ear")),  # crop_to_shoulders
    "head": (1.3, ("right_shoulder", "left_shoulder", "neck_lsp", "head_top", "jaw", "head_h36m", "nose",
                   "left_eye", "right_eye", "left_ear", "right_ear")),  # crop_to_head
    "torso": (1.1, ("right_hip", "left_hip", "right_shoulder", "left_shoulder", "neck_lsp", "pelvis_mpii",
                    "thorax", "spine_h36m")),  # crop_torso_only
    "right_arm": (1.1, ("right_wrist", "right_elbow", "right_shoulder")),  # crop_rightarm_only
    "left_arm": (1.1, ("left_shoulder", "left_elbow", "left_wrist")),  # crop_leftarm_only
    "legs": (1.1, ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                   "pelvis_mpii")),  # crop_legs_only
    "right_leg": (1.1, ("right_ankle", "right_knee", "right_hip")),  # crop_rightleg_only
    "left_leg": (1.1, ("left_hip", "left_knee", "left_ankle")),  # crop_leftleg_only
}
KEYPOINT_BOX_RESCALE = 1.2  # HMR2.0 `get_bbox(keypoints_2d, rescale=1.2)`
# original pixels; HMR2.0 `get_example`: a part box with `width1 < THRESH or height1 < THRESH`
# (THRESH = 4) is not used
MIN_BOX_SIDE = 4.0
# `full_body`: these joints all visible (OpenPose or ground truth); `upper_body`: none of the
# lower ones visible and at least 2 of the upper ones (HMR2.0 counts OpenPose's nose, neck,
# eyes, ears and the ground-truth shoulders, neck, head top, jaw, head; OpenPose's neck has no
# KEYPOINTS_2D joint).
FULL_BODY = ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
             "right_knee", "right_ankle", "left_knee", "left_ankle")
LOWER_BODY = ("right_knee", "right_ankle", "left_knee", "left_ankle")
UPPER_BODY = ("nose", "right_eye", "left_eye", "right_ear", "left_ear", "right_shoulder", "left_shoulder",
              "neck_lsp", "head_top", "jaw", "head_h36m")
# (level, body) -> (upper bound of the uniform draw p, part) in order: `extreme_cropping_aggressive`
# (level 1) and `extreme_cropping` (level 0); a body neither full nor upper is not cropped.
EXTREME_CROP_CHOICES: dict[tuple[int, str], tuple[tuple[float, str], ...]] = {
    (1, "full"): ((0.2, "hips"), (0.3, "shoulders"), (0.4, "head"), (0.5, "torso"), (0.6, "right_arm"),
                  (0.7, "left_arm"), (0.8, "legs"), (0.9, "right_leg"), (1.0, "left_leg")),
    (1, "upper"): ((0.2, "shoulders"), (0.4, "head"), (0.6, "torso"), (0.8, "right_arm"), (1.0, "left_arm")),
    (0, "full"): ((0.7, "hips"), (0.9, "shoulders"), (1.0, "head")),
    (0, "upper"): ((0.9, "shoulders"), (1.0, "head")),
}


@dataclass(frozen=True)
class AugmentSettings:
    """How augmented views are drawn: HMR2.0's `DATASETS.CONFIG` (module doc)."""

    scale_factor: float = 0.3  # SCALE_FACTOR: box_scale = 1 + clip(N(0,1), -1, 1) * scale_factor
    rot_factor: float = 30.0  # ROT_FACTOR, degrees: rotation = clip(N(0,1), -2, 2) * rot_factor ...
    rot_rate: float = 0.6  # ROT_AUG_RATE: ... with this probability, else 0
    flip_rate: float = 0.5  # FLIP_AUG_RATE (DO_FLIP True)
    color_scale: float = 0.2  # COLOR_SCALE: per-channel gain ~ U(1 - c, 1 + c)
    trans_factor: float = 0.02  # TRANS_FACTOR: shift = clip(N(0,1), -1, 1) * trans_factor per axis, x S
    extreme_crop_rate: float = 0.1  # EXTREME_CROP_AUG_RATE
    extreme_crop_level: int = 1  # EXTREME_CROP_AUG_LEVEL: 1 aggressive (9 parts), 0 (hips/shoulders/head)

    def __post_init__(self):
        if self.extreme_crop_level not in (0, 1):
            raise ValueError(f"extreme_crop_level must be 0 or 1, got {self.extreme_crop_level}")


@dataclass(frozen=True)
class ViewParams:
    box_scale: float = 1.0  # > 1 zooms out (the view's box is larger than the crop's)
    rotation: float = 0.0  # radians, counter-clockwise in the image (`crop_affine`)
    flip: bool = False
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # gain per RGB channel
    shift: tuple[float, float] = (0.0, 0.0)  # box centre shift, x S (HMR2.0 tx, ty)
    part: str | None = None  # extreme crop: the part of EXTREME_CROP_PARTS ...
    part_box: tuple[float, float, float] | None = None  # ... its box (x, y, S) in crop pixels

    @property
    def is_identity(self) -> bool:
        return self == ViewParams()


def view_rng(seed: int, key: str, view: int) -> np.random.Generator:
    """The generator of one sample's view: a function of (seed, key, view) only, so the
    views do not depend on the order or partitioning in which samples are processed."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, view])


def draw_view(rng: np.random.Generator, settings: AugmentSettings = AugmentSettings(),
              record: PersonFrame | None = None) -> ViewParams:
    """Random view parameters as HMR2.0's `do_augmentation` draws them (its order: shift,
    scale, rotation, flip, extreme crop, colour); the extreme crop's part is chosen from
    `record`'s keypoints (none without a record)."""
    shift = tuple(float(np.clip(rng.standard_normal(), -1, 1)) * settings.trans_factor for _ in range(2))
    box_scale = 1.0 + float(np.clip(rng.standard_normal(), -1, 1)) * settings.scale_factor
    rot_deg = float(np.clip(rng.standard_normal(), -2, 2)) * settings.rot_factor
    rotation = math.radians(rot_deg) if rng.random() <= settings.rot_rate else 0.0
    flip = bool(rng.random() <= settings.flip_rate)
    extreme = bool(rng.random() <= settings.extreme_crop_rate)
    part_draw = float(rng.random())
    c = settings.color_scale
    color = tuple(float(g) for g in rng.uniform(1 - c, 1 + c, size=3))
    part, box = None, None
    if extreme and record is not None:
        part = extreme_crop_part(record.keypoints_2d, part_draw, settings.extreme_crop_level)
        box = part_box(record, part) if part else None
        part = part if box else None
    return ViewParams(box_scale, rotation, flip, color, shift, part, box)


def _visible(keypoints_2d: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return np.asarray(keypoints_2d)[KEYPOINTS_2D.indices(names), 2] > 0


def extreme_crop_part(keypoints_2d: np.ndarray, p: float, level: int = 1) -> str | None:
    """The part HMR2.0's `extreme_cropping(_aggressive)` cuts to for draw `p` in [0, 1), or
    None when the body is neither full (`full_body`) nor upper (`upper_body`)."""
    if _visible(keypoints_2d, FULL_BODY).all():
        body = "full"
    elif not _visible(keypoints_2d, LOWER_BODY).any() and _visible(keypoints_2d, UPPER_BODY).sum() >= 2:
        body = "upper"
    else:
        return None
    return next(part for bound, part in EXTREME_CROP_CHOICES[level, body] if p < bound)


def part_box(record: PersonFrame, part: str) -> tuple[float, float, float] | None:
    """(x, y, S) in crop pixels: the square box HMR2.0's `crop_*` function of `part` makes
    from the record's keypoints, or None where HMR2.0 keeps the person's box (the kept
    keypoints' confidences sum to 1 or less; the box's width or height under MIN_BOX_SIDE
    original pixels)."""
    factor, names = EXTREME_CROP_PARTS[part]
    kp = np.asarray(record.keypoints_2d, np.float64)[KEYPOINTS_2D.indices(names)]
    if kp[:, 2].sum() <= 1:
        return None
    valid = kp[kp[:, 2] > 0, :2]
    lo, hi = valid.min(0), valid.max(0)
    extent = (hi - lo) * KEYPOINT_BOX_RESCALE * factor  # HMR2.0's (width1, height1), crop pixels
    crop_px_per_original = CROP_HW[1] / float(record.box_size[0])
    if extent.min() < MIN_BOX_SIDE * crop_px_per_original:
        return None
    side = float(extent.max())
    centre = (lo + hi) / 2
    return float(centre[0]), float(centre[1]), side


def view_affine(params: ViewParams, crop_hw: tuple[int, int] = CROP_HW) -> np.ndarray:
    """(2, 3) affine from crop pixels to view pixels: `crop_affine` of the view's box — the
    crop's own box (centre = crop centre, S = crop height) or the extreme crop's, its centre
    shifted by `shift` x S, its size (3/4 S, S) x box_scale — with the view's turn and mirror."""
    h, w = crop_hw
    if params.part_box is None:
        centre, side = np.array([(w - 1) / 2, (h - 1) / 2]), float(h)
    else:
        centre, side = np.array(params.part_box[:2], np.float64), float(params.part_box[2])
    centre = centre + np.asarray(params.shift, np.float64) * side
    size = np.array([side * w / h, side]) * params.box_scale
    return crop_affine(centre, size, crop_hw, rotation=params.rotation, flip=params.flip)


def _compose(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(2, 3) affine of 'B, then A'."""
    return (np.vstack([A, [0, 0, 1]]) @ np.vstack([B, [0, 0, 1]]))[:2]


def apply_view(record: PersonFrame, A: np.ndarray, view: int) -> PersonFrame:
    """The record seen through the (2, 3) similarity A of crop pixels (module doc)."""
    if not record.is_cropped:
        raise ValueError(f"{record.source or record.key}: augmenting needs a cropped record")
    A = np.asarray(A, np.float64)
    L = A[:, :2]
    s = math.sqrt(abs(np.linalg.det(L)))
    # the view's box: its centre (what A maps to the crop's centre pixel), back in original
    # pixels as an offset from the crop's (which the crop's affine maps to that same pixel)
    h, w = CROP_HW
    mid = np.array([(w - 1) / 2, (h - 1) / 2])
    C = np.asarray(record.crop_affine, np.float64)
    offset = np.linalg.solve(C[:, :2], apply_affine(mid, invert_affine(A)) - mid)
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
        crop_affine=_compose(A, C).astype(np.float32),
        box_center=(np.asarray(record.box_center, np.float64) + offset).astype(np.float32),
        box_size=(np.asarray(record.box_size, np.float64) / s).astype(np.float32),
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
    return apply_view(record, A, view), out


def views(record: PersonFrame, image: np.ndarray, count: int, seed: int,
          settings: AugmentSettings = AugmentSettings()) -> list[tuple[PersonFrame, np.ndarray]]:
    """View 0 (the plain crop) and `count - 1` augmented views of one sample."""
    out = [augment(record, image, ViewParams(), 0)]
    for v in range(1, count):
        out.append(augment(record, image, draw_view(view_rng(seed, record.key, v), settings, record), v))
    return out
