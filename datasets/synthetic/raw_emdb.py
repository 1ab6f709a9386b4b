"""Synthetic EMDB in the real layout (`datasets.emdb`): `emdb/P<k>/<sequence>/` with
`P<k>_<sequence>_data.pkl` (a Python 3 pickle of EMDB's keys: `gender`, `name`, `emdb1`,
`emdb2`, `n_frames`, `good_frames_mask`, `camera` {`intrinsics`, `extrinsics` world -> camera,
`width`, `height`}, `smpl` {`poses_root`, `poses_body`, `trans` in the world frame,
`betas`}, `kp2d` (SMPL joints projected), `bboxes` {`bboxes` xyxy, `invalid_idxs`}) and
`images/%05d.jpg` from 0.

One person per sequence, a hand-held camera that moves a little every frame. Two EMDB 1
sequences per scale unit, and one sequence that is only in EMDB 2 (`emdb1` false, which the
test split does not read: it is not in `SYNTHETIC_TRUTH`). Faults, in the first sequence:
`invalid_frame` clears `good_frames_mask` (EMDB: the person out of view or fully occluded)
and lists the frame in `invalid_idxs`; `missing_image`, `corrupt_jpeg`, `nan_label` (a NaN in
`poses_body`) as for the other datasets. Images are 1/4 of EMDB's 1440x1920 portrait frames.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from datasets.emdb import DATA_FILE, IMAGE_PATTERN
from datasets.reader import project
from datasets.record import make_key
from datasets.synthetic.raw_scene import (Truth, angles_to_pose, background, corrupt_jpeg, mask_box, place,
                                          pose_people, render, sample_angles, sample_betas, sample_orient,
                                          write_jpeg)

ROOT = "emdb"
HW = (480, 360)  # (h, w): 1/4 of EMDB's 1920 x 1440 portrait frames
FOCAL = 1500.0 / 4  # an iPhone-like focal at 1/4 scale (ours)
FRAMES = 4
# (subject, sequence, emdb1, emdb2) per scale unit; the third is EMDB 2 only
SEQUENCES = (("P0", "00_synthetic_walk", True, False), ("P1", "01_synthetic_stretch", True, True),
             ("P1", "02_synthetic_stairs", False, True))
FAULT_FRAMES = {"invalid_frame": 0, "missing_image": 1, "corrupt_jpeg": 2, "nan_label": 3}


def write(raw_root: Path, models, rng: np.random.Generator, scale: int, max_people: int, faults: set[str]) -> Truth:
    root = Path(raw_root) / ROOT
    truth = Truth()
    K = np.array([[FOCAL, 0, (HW[1] - 1) / 2], [0, FOCAL, (HW[0] - 1) / 2], [0, 0, 1]])
    for r in range(scale):
        for q, (subject, base, emdb1, emdb2) in enumerate(SEQUENCES):
            seq = base if r == 0 else f"{base}{r}"
            fault_at = {f: i for f, i in FAULT_FRAMES.items() if f in faults} if (r == 0 and q == 0) else {}
            data, people, masks = _sequence(models, rng, root, subject, seq, K)
            data.update(emdb1=emdb1, emdb2=emdb2)
            for i, person in enumerate(people):
                fault = next((f for f, at in fault_at.items() if at == i), "")
                path = root / IMAGE_PATTERN.format(subject=subject, sequence=seq, frame=i)
                if emdb1:  # the test split reads EMDB 1 only
                    truth.add(make_key(ROOT, "test", f"{subject}/{seq}", i, 0), person, K, masks[i], fault)
                if fault == "invalid_frame":
                    data["good_frames_mask"][i] = False
                elif fault == "missing_image":
                    path.unlink()
                elif fault == "corrupt_jpeg":
                    corrupt_jpeg(path)
                elif fault == "nan_label":
                    data["smpl"]["poses_body"][i, 4] = np.nan
            # dataset.md: invalid if not a good frame or a degenerate box
            x0, y0, x1, y1 = data["bboxes"]["bboxes"].T
            data["bboxes"]["invalid_idxs"] = np.flatnonzero(~data["good_frames_mask"] | (x1 - x0 <= 0) | (y1 - y0 <= 0))
            out = root / subject / seq / DATA_FILE.format(subject=subject, sequence=seq)
            out.write_bytes(pickle.dumps(data, protocol=4))
    return truth


def _sequence(models, rng: np.random.Generator, root: Path, subject: str, seq: str, K: np.ndarray):
    """(pickle dict, people per frame (camera frame), visible masks) of one sequence; writes its images."""
    n = FRAMES
    R0 = Rotation.from_euler("yxz", [rng.uniform(-np.pi, np.pi), rng.uniform(-0.1, 0.1), rng.uniform(-0.05, 0.05)])
    t0 = rng.normal(0, 1.0, size=3)
    drift = rng.normal(0, 0.01, size=3)
    cam = np.tile(np.eye(4), (n, 1, 1))  # world -> camera
    for i in range(n):
        cam[i, :3, :3] = (Rotation.from_rotvec(drift * i) * R0).as_matrix()
        cam[i, :3, 3] = t0 + drift * i
    gender = ("male", "female")[rng.integers(2)]
    betas = sample_betas(rng)
    orient = sample_orient(rng)
    ang0, ang1 = sample_angles(rng, "walk"), sample_angles(rng)
    first = place(models, rng, gender, np.concatenate([orient[None], angles_to_pose(ang0)]), betas, K, HW,
                  height_frac=(0.5, 0.75))
    j0 = first.joints[0] - first.transl  # the SMPL root's rest position (shape only)
    poses_cam = np.stack([np.concatenate([orient[None], angles_to_pose((1 - w) * ang0 + w * ang1)])
                          for w in np.linspace(0, 1, n)])
    walk = np.append(rng.normal(0, 0.015, size=2), 0.0)
    people = pose_people(models, gender, poses_cam, betas, first.transl + walk * np.arange(n)[:, None])
    poses_root, poses_body, trans, kp2d, boxes, masks = [], [], [], [], [], []
    for i, person in enumerate(people):
        R, t = cam[i, :3, :3], cam[i, :3, 3]
        # the body in the world frame (inverse of datasets.reader.smpl_to_camera)
        poses_root.append(Rotation.from_matrix(R.T @ Rotation.from_rotvec(person.pose[0]).as_matrix()).as_rotvec())
        poses_body.append(person.pose[1:].reshape(-1))
        trans.append(R.T @ (person.transl + j0 - t) - j0)
        kp2d.append(project(person.joints, K))  # dataset.md: the SMPL joints projected
        image, (mask,) = render(background(rng, HW), [person], models.faces, K, rng)
        write_jpeg(root / IMAGE_PATTERN.format(subject=subject, sequence=seq, frame=i), image)
        masks.append(mask)
        boxes.append(mask_box(mask))
    data = dict(
        gender=gender, name=f"{subject}_{seq}", n_frames=n, good_frames_mask=np.ones(n, bool),
        camera=dict(intrinsics=K, extrinsics=cam, width=HW[1], height=HW[0]),
        smpl=dict(poses_root=np.array(poses_root), poses_body=np.array(poses_body), trans=np.array(trans),
                  betas=betas),
        kp2d=np.array(kp2d), bboxes=dict(bboxes=np.array(boxes), invalid_idxs=np.zeros(0, np.int64)),
        synthetic=True,
    )
    return data, people, masks
