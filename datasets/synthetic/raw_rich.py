"""Synthetic RICH test labels in BEDLAM's parsed layout (`datasets.rich`): `rich/rich_test.npz`
(`imgname`, `center`, `scale`, `pose_cam` (N, 66), `shape` (N, 10), `gender`, and the
optional `cam_int`, `trans_cam`, `cam_ext`) + `rich/test/<seq>/cam_<cc>/<frame:05d>_<cc>.jpeg`.

`cam_ext` is as BEDLAM's files hold it (`data_processing/df_full_body.py`): `[:3, :3]` the
camera's roll x pitch rotation (already folded into `pose_cam`), `[:3, 3]` the offset of
the body's placement in the camera, `[3, 3]` = 1; `trans_cam` is the rest of the rendered
camera-frame translation, so the reader's `trans_cam + cam_ext[:3, 3]` is what was drawn.

The people are the synthetic gendered SMPL-X, rendered as SMPL-X meshes; the box is
SPIN's rule on the projection of their SMPL-topology keypoints. Images are 1/10 of RICH's
4112x3008 frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.reader import SPIN_SCALE_UNIT, centred_intrinsics, project
from datasets.rich import LABEL_FILE, NUM_JOINTS_SMPLX
from datasets.record import make_key
from datasets.synthetic.raw_scene import (Truth, angles_to_pose, background, corrupt_jpeg, place, pose_people,
                                          render, sample_angles, sample_betas, sample_orient, write_jpeg)
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints

HW = (300, 412)  # 1/10 of 3008 x 4112
FOCAL = 4100.0 / 10  # RICH-like focal at 1/10 scale (ours)
SEQUENCES = ("Synthetic_001_walk", "Synthetic_002_stretch")
CAMERAS = (0, 3)
FRAMES = 3
# fault -> (sequence index, camera, frame)
FAULTS = {"missing_image": (0, 0, 0), "corrupt_jpeg": (0, 0, 1), "nan_label": (0, 0, 2), "box_outside": (0, 3, 0)}
MOTION_M = 0.15  # scale of `trans_cam`, the body's own motion beside the camera offset (ours)


def write(raw_root: Path, models, rng: np.random.Generator, scale: int, max_people: int, faults: set[str]) -> Truth:
    """One person per sequence (RICH's test sequences are single-subject), seen by each camera."""
    root = Path(raw_root) / "rich"
    smplx = models.smplx()
    truth = Truth()
    rows = []
    K = centred_intrinsics(FOCAL, HW)
    for r in range(scale):
        for q, base in enumerate(SEQUENCES):
            seq = base if r == 0 else f"{base}{r}"
            gender = ("male", "female")[rng.integers(2)]
            betas = sample_betas(rng)
            for c in CAMERAS:
                ang0, ang1 = sample_angles(rng), sample_angles(rng)
                orient = sample_orient(rng)
                start = place(smplx, rng, gender, _pose(orient, ang0), betas, K, HW, height_frac=(0.55, 0.8))
                cam_ext = _cam_ext(rng, start.transl - rng.normal(0, MOTION_M, 3))
                poses = np.stack([_pose(orient, (1 - w) * ang0 + w * ang1) for w in np.linspace(0, 1, FRAMES)])
                people = pose_people(smplx, gender, poses, betas, np.tile(start.transl, (FRAMES, 1)))
                for i, person in enumerate(people):
                    image, masks = render(background(rng, HW), [person], smplx.faces, K, rng)
                    name = f"test/{seq}/cam_{c:02d}/{i:05d}_{c:02d}.jpeg"
                    write_jpeg(root / name, image)
                    kp = person.keypoints
                    part = np.concatenate([project(kp[:, :3], K), kp[:, 3:]], 1)
                    center, size = box_from_keypoints(part, SPIN_BOX_EXPAND)
                    fault = next((f for f, at in FAULTS.items() if f in faults and r == 0 and at == (q, c, i)), "")
                    rows.append(dict(imgname=name, center=center, scale=size[0] / SPIN_SCALE_UNIT,
                                     pose_cam=person.pose[:NUM_JOINTS_SMPLX].reshape(-1), shape=betas,
                                     gender=gender[0], cam_int=K, cam_ext=cam_ext,
                                     trans_cam=person.transl - cam_ext[:3, 3]))
                    _inject(fault, root / name, rows[-1])
                    truth.add(make_key("rich", "test", f"{seq}/cam_{c:02d}", i, 0), person, K, masks[0], fault)
    cols = {k: np.array([row[k] for row in rows]) for k in rows[0]}
    np.savez(root / LABEL_FILE, **cols)
    return truth


def _pose(orient: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(24, 3) rows 0-21 = SMPL-X global orientation + 21 body joints; 22-23 (SMPL's hands) zero."""
    pose = np.concatenate([orient[None], angles_to_pose(angles)])
    pose[NUM_JOINTS_SMPLX:] = 0
    return pose


def _cam_ext(rng: np.random.Generator, offset: np.ndarray) -> np.ndarray:
    """(4, 4) BEDLAM-style extrinsics: roll x pitch rotation (BEDLAM `get_global_orient`:
    `final_rotmat = roll_rotmat @ pitch_rotmat`), translation column `offset`, [3, 3] = 1."""
    from scipy.spatial.transform import Rotation

    pitch, roll = np.deg2rad(rng.uniform(-15, 15, 2))
    out = np.zeros((4, 4))
    out[:3, :3] = Rotation.from_euler("z", roll).as_matrix() @ Rotation.from_euler("x", pitch).as_matrix()
    out[:3, 3] = offset
    out[3, 3] = 1.0
    return out


def _inject(fault: str, image: Path, row: dict) -> None:
    if fault == "missing_image":
        image.unlink()
    elif fault == "corrupt_jpeg":
        corrupt_jpeg(image)
    elif fault == "nan_label":
        row["pose_cam"] = row["pose_cam"].copy()
        row["pose_cam"][10] = np.nan
    elif fault == "box_outside":
        row["center"] = np.array([HW[1] + 500.0, HW[0] / 2])
