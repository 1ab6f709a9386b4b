"""3DPW reader: `sequenceFiles/<split>/*.pkl` + `imageFiles/<seq>/image_%05d.jpg` -> records.

One record per actor per frame, frames in file order, actors in pickle order. Follows SPIN
`datasets/preprocess/pw3d.py`: the global orientation is rotated into the camera frame
with `cam_poses`, betas are the first 10, the box is SPIN's rule on the visible `poses2d`
points (1.2 x the larger side). Frames whose `campose_valid` is false are rejected
(`invalid_camera_pose`) rather than dropped.

Pickle keys used (per sequence): `sequence`, `genders` ('m'/'f' per actor), `poses`
(per actor N x 72, world frame), `betas` (per actor, >= 10), `trans` (per actor N x 3),
`poses2d` (per actor N x 3 x 18, OpenPose COCO-18 + confidence), `cam_poses` (N x 4 x 4,
world -> camera), `cam_intrinsics` (3 x 3), `campose_valid` (per actor N), optional
`img_frame_ids` (N; default 0..N-1) and `jointPositions` (per actor N x 72, world frame).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets import safe_pickle
from datasets.joints import COCO_18, KEYPOINTS_2D, SMPL_24, convert
from datasets.reader import (GENDER_CODES, AnnotationError, BodyModels, FrameId, finish, image_hw,
                             resolve_assets_root, smpl_to_camera, synthetic_assets)
from datasets.record import NUM_BETAS, PersonFrame, Reject
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints

# record split -> folder under sequenceFiles/ (3DPW calls its validation split "validation")
SPLIT_DIRS = {"train": "train", "val": "validation", "test": "test"}
REQUIRED_KEYS = ("sequence", "genders", "poses", "betas", "trans", "poses2d", "cam_poses",
                 "cam_intrinsics", "campose_valid")
IMAGE_PATTERN = "imageFiles/{seq}/image_{frame:05d}.jpg"
CHUNK = 256  # frames per body-model call


@dataclass(frozen=True)
class Options:
    """assets_root: body models (None: the synthetic tree's own, else the configured root).
    joints_3d: "smpl" (gendered SMPL mesh -> KEYPOINTS_2D, as predictions) or
    "joint_positions" (the file's `jointPositions`, SMPL-24 joints mapped by name)."""

    assets_root: str | None = None
    joints_3d: str = "smpl"


class PW3DReader:
    name = "3dpw"

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        if split not in SPLIT_DIRS:
            raise ValueError(f"3dpw: unknown split {split!r}; known {sorted(SPLIT_DIRS)}")
        self.root, self.split, self.options = Path(root), split, options or Options()
        if self.options.joints_3d not in ("smpl", "joint_positions"):
            raise ValueError(f"3dpw: options.joints_3d must be 'smpl' or 'joint_positions', got {self.options.joints_3d!r}")
        self.synthetic = synthetic_assets(self.root) is not None
        self.models = BodyModels(resolve_assets_root(self.root, self.options.assets_root))  # loaded on first use

    @staticmethod
    def splits(root: Path) -> list[str]:
        return [s for s, d in SPLIT_DIRS.items() if any((Path(root) / "sequenceFiles" / d).glob("*.pkl"))]

    def sequence_files(self) -> list[Path]:
        d = self.root / "sequenceFiles" / SPLIT_DIRS[self.split]
        if not d.is_dir():
            raise AnnotationError(f"{d}: 3DPW sequence folder not found")
        return sorted(d.glob("*.pkl"))

    def frames(self) -> Iterator[PersonFrame | Reject]:
        for path in self.sequence_files():
            yield from self._sequence(path)

    # ---- one sequence file ----------------------------------------------------------------
    def _sequence(self, path: Path) -> Iterator[PersonFrame | Reject]:
        data = _load(path)
        seq = str(data["sequence"])
        src = str(path.relative_to(self.root))
        cam = np.asarray(data["cam_poses"], np.float64)  # (N, 4, 4) world -> camera
        K = np.asarray(data["cam_intrinsics"], np.float64)
        n = len(cam)
        frame_ids = np.asarray(data.get("img_frame_ids", np.arange(n))).astype(np.int64)
        image_dir = self.root / "imageFiles" / seq
        present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        # all frames of a sequence share one size: the first readable header gives it
        sizes = (image_hw(image_dir / f) for f in sorted(present) if f.endswith(".jpg"))
        hw = next((s for s in sizes if s is not None), None)

        actors = [self._actor(data, a, cam, K, path) for a in range(len(data["genders"]))]
        for i in range(n):
            image_path = IMAGE_PATTERN.format(seq=seq, frame=int(frame_ids[i]))
            for a, act in enumerate(actors):
                fid = FrameId(self.name, self.split, seq, int(frame_ids[i]), a, image_path, src)
                if not act["valid"][i]:
                    yield fid.reject("invalid_camera_pose")
                    continue
                if Path(image_path).name not in present:
                    yield fid.reject("missing_image", image_path)
                    continue
                kp2d = act["poses2d"][i]  # (18, 3) COCO-18
                box = box_from_keypoints(np.nan_to_num(kp2d, nan=0.0))
                if box is None:
                    yield fid.reject("no_visible_keypoint")
                    continue
                yield finish(fid, hw, box_center=box[0], box_size=box[1], box_expand=SPIN_BOX_EXPAND,
                             synthetic=self.synthetic, intrinsics=K,
                             smpl_pose=act["pose"][i], betas=act["betas"], smpl_transl=act["transl"][i],
                             gender=act["gender"], joints_3d=act["joints_3d"][i],
                             keypoints_2d=convert(kp2d, COCO_18, KEYPOINTS_2D), has_smpl=True, has_transl=True)

    def _actor(self, data: dict, a: int, cam: np.ndarray, K: np.ndarray, path: Path) -> dict:
        """Camera-frame SMPL targets of actor `a` over the whole sequence."""
        n = len(cam)
        gender = GENDER_CODES.get(str(data["genders"][a]))
        if gender not in ("male", "female"):
            raise AnnotationError(f"{path}: 'genders'[{a}] is {data['genders'][a]!r}, expected 'm' or 'f'")
        poses = _array(data["poses"][a], (n, 72), path, f"poses[{a}]")
        trans = _array(data["trans"][a], (n, 3), path, f"trans[{a}]")
        betas = np.asarray(data["betas"][a], np.float64).reshape(-1)[:NUM_BETAS]
        poses2d = _array(data["poses2d"][a], (n, 3, 18), path, f"poses2d[{a}]").transpose(0, 2, 1)
        valid = np.asarray(data["campose_valid"][a]).astype(bool).reshape(-1)
        if len(valid) != n or len(betas) != NUM_BETAS:
            raise AnnotationError(f"{path}: actor {a} has {len(valid)} campose_valid flags / {len(betas)} betas "
                                  f"for {n} frames")
        R, t = cam[:, :3, :3], cam[:, :3, 3]
        betas_n = np.broadcast_to(betas, (n, NUM_BETAS))
        pose = poses.reshape(n, 24, 3).copy()
        if self.options.joints_3d == "smpl":
            root = np.broadcast_to(self.models.root_joint(gender, betas[None])[0], (n, 3))
            pose[:, 0], transl = smpl_to_camera(pose[:, 0], trans, root, R, t)
            joints = np.concatenate([self.models.keypoints(gender, pose[s:s + CHUNK], betas_n[s:s + CHUNK],
                                                           transl[s:s + CHUNK]) for s in range(0, n, CHUNK)])
        else:
            if "jointPositions" not in data:
                raise AnnotationError(f"{path}: options.joints_3d='joint_positions' but the file has no 'jointPositions'")
            world = _array(data["jointPositions"][a], (n, 72), path, f"jointPositions[{a}]").reshape(n, 24, 3)
            # the SMPL root joint J0 is the posed pelvis minus transl (the root does not move under its own rotation)
            pose[:, 0], transl = smpl_to_camera(pose[:, 0], trans, world[:, 0] - trans, R, t)
            cam_joints = np.einsum("nij,nkj->nki", R, world) + t[:, None]
            joints = convert(np.concatenate([cam_joints, np.ones((n, 24, 1))], -1), SMPL_24, KEYPOINTS_2D)
        return dict(gender=gender, pose=pose, betas=betas, transl=transl, joints_3d=joints, poses2d=poses2d,
                    valid=valid)


def _load(path: Path) -> dict:
    try:
        data = safe_pickle.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise AnnotationError(f"{path}: unreadable 3DPW sequence file ({e})") from e
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a dict, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise AnnotationError(f"{path}: 3DPW sequence file lacks {missing}")
    return data


def _array(value, shape: tuple[int, ...], path: Path, field: str) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.shape != shape:
        raise AnnotationError(f"{path}: field '{field}' has shape {arr.shape}, expected {shape}")
    return arr

