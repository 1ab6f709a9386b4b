"""3DPW reader: `sequenceFiles/<split>/*.pkl` + `imageFiles/<seq>/image_%05d.jpg` -> records.

One record per actor per image, images in file order, actors in pickle order. The
conventions, each from the publisher or the reference pipeline:
- Frames: the 30 Hz arrays (`poses`, `trans`, `poses2d`, `cam_poses`, `campose_valid`)
  hold one row per image; image i of a sequence is `imageFiles/<seq>/image_{i:05d}.jpg`,
  i = 0 .. len(poses[0]) - 1, and the record's `frame` is i (SPIN
  `datasets/preprocess/pw3d.py`, mmhuman3d `data_converters/pw3d.py`: `range(num_frames)`).
  `img_frame_ids` maps image i to its row of the 60 Hz arrays `poses_60Hz` / `trans_60Hz`
  (about 2i; 3DPW readme.txt): it is read and checked, never used to name an image.
- Camera: `cam_poses` maps world to camera, X_cam = R X + t; the global orientation
  becomes R R_go (SPIN `datasets/preprocess/pw3d.py`; aymenmir1/3dpw-eval `evaluate.py`
  `apply_camera_transforms`), `trans` follows by `datasets.reader.smpl_to_camera`.
- Shape and gender: the first 10 `betas` (SPIN: `smpl_betas[i][:10]`), `genders` 'm'/'f'.
- 2D targets: the ground-truth SMPL's KEYPOINTS_2D points in the camera frame projected
  with `cam_intrinsics`, confidence 0 where the mesh has no such point or the point is off
  the image. `poses2d` are OpenPose detections, at times misplaced or in the wrong order,
  so CLIFF supervises 3DPW with the GT SMPL's joints (huawei-noah/noah-research issue #163).
- Box: SPIN's rule on `poses2d` (the points with confidence > 0, 1.2 x the larger side of
  their tight box), so the test crops are the published protocol's.
- Frames whose `campose_valid` is false are rejected (`invalid_camera_pose`), as SPIN and
  mmhuman3d keep only the valid ones.

Pickle keys used (per sequence; Python 2 pickles, read with latin1): `sequence`, `genders`
(per actor), `poses` (per actor N x 72, world frame), `betas` (per actor, >= 10), `trans`
(per actor N x 3), `poses2d` (per actor N x 3 x 18, OpenPose COCO-18 x/y/confidence, an
undetected point is all zeros), `cam_poses` (N x 4 x 4), `cam_intrinsics` (3 x 3),
`campose_valid` (per actor N), optional `img_frame_ids` (N, into the 60 Hz arrays),
`poses_60Hz` (per actor M x 72) and `jointPositions` (per actor N x 72, world frame).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.joints import COCO_18, KEYPOINTS_2D, SMPL_24, convert
from datasets.reader import (GENDER_CODES, AnnotationError, BodyModels, FrameId, checked_array, finish, image_hw,
                             load_pickle_dict, project, resolve_assets_root, smpl_to_camera, synthetic_assets,
                             visible_in_image)
from datasets.record import NUM_BETAS, PersonFrame, Reject, make_key
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints, tight_box

# record split -> folder under sequenceFiles/ (3DPW calls its validation split "validation")
SPLIT_DIRS = {"train": "train", "val": "validation", "test": "test"}
REQUIRED_KEYS = ("sequence", "genders", "poses", "betas", "trans", "poses2d", "cam_poses",
                 "cam_intrinsics", "campose_valid")
PER_ACTOR_KEYS = ("genders", "poses", "betas", "trans", "poses2d", "campose_valid")  # one entry per actor
# SPIN datasets/preprocess/pw3d.py: 'imageFiles/' + seq + '/image_%s.jpg' % str(i).zfill(5), i in range(num_frames)
IMAGE_PATTERN = "imageFiles/{seq}/image_{i:05d}.jpg"
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
        return sequence_files(self.root, self.split)

    def frames(self) -> Iterator[PersonFrame | Reject]:
        for path in self.sequence_files():
            yield from self._sequence(path)

    # ---- one sequence file ----------------------------------------------------------------
    def _sequence(self, path: Path) -> Iterator[PersonFrame | Reject]:
        data = load_sequence(path)
        seq = text(data["sequence"])
        src = str(path.relative_to(self.root))
        n = num_frames(data)
        cam = checked_array(data["cam_poses"], (n, 4, 4), path, "cam_poses")  # world -> camera
        K = checked_array(data["cam_intrinsics"], (3, 3), path, "cam_intrinsics")
        detections = poses2d(data, path)  # (A, N, 18, 3)
        image_dir = self.root / "imageFiles" / seq
        present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        # all frames of a sequence share one size: the first readable header gives it
        sizes = (image_hw(image_dir / f) for f in sorted(present) if f.endswith(".jpg"))
        hw = next((s for s in sizes if s is not None), None)

        actors = [self._actor(data, a, cam, K, path) for a in range(len(data["genders"]))]
        for i in range(n):
            image_path = IMAGE_PATTERN.format(seq=seq, i=i)
            for a, act in enumerate(actors):
                fid = FrameId(self.name, self.split, seq, i, a, image_path, src)
                if not act["valid"][i]:
                    yield fid.reject("invalid_camera_pose")
                    continue
                if Path(image_path).name not in present:
                    yield fid.reject("missing_image", image_path)
                    continue
                kp2d = detections[a, i]  # (18, 3) COCO-18 OpenPose detections
                if not np.all(np.isfinite(kp2d)):
                    yield fid.reject("non_finite_label", "poses2d")
                    continue
                box = box_from_keypoints(kp2d, SPIN_BOX_EXPAND)
                if box is None:
                    yield fid.reject("no_visible_keypoint", "poses2d detects no point (SPIN box rule)")
                    continue
                # 2D targets: the GT keypoints' projection, off the image not visible (hw None: missing_image)
                targets_2d = act["keypoints_2d"][i] if hw is None else visible_in_image(act["keypoints_2d"][i], hw)
                yield finish(fid, hw, box_center=box[0], box_size=box[1], box_expand=SPIN_BOX_EXPAND,
                             box_tight=tight_box(kp2d), synthetic=self.synthetic, intrinsics=K,
                             smpl_pose=act["pose"][i], betas=act["betas"], smpl_transl=act["transl"][i],
                             gender=act["gender"], joints_3d=act["joints_3d"][i],
                             keypoints_2d=targets_2d, has_smpl=True, has_transl=True)

    def _actor(self, data: dict, a: int, cam: np.ndarray, K: np.ndarray, path: Path) -> dict:
        """Camera-frame SMPL targets of actor `a` over the whole sequence, and their projection."""
        n = len(cam)
        gender = GENDER_CODES.get(text(data["genders"][a]))
        if gender not in ("male", "female"):
            raise AnnotationError(f"{path}: 'genders'[{a}] is {data['genders'][a]!r}, expected 'm' or 'f'")
        poses = checked_array(data["poses"][a], (n, 72), path, f"poses[{a}]")
        trans = checked_array(data["trans"][a], (n, 3), path, f"trans[{a}]")
        betas = np.asarray(data["betas"][a], np.float64).reshape(-1)[:NUM_BETAS]  # SPIN: smpl_betas[i][:10]
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
            world = checked_array(data["jointPositions"][a], (n, 72), path, f"jointPositions[{a}]").reshape(n, 24, 3)
            # the SMPL root joint J0 is the posed pelvis minus transl (the root does not move under its own rotation)
            pose[:, 0], transl = smpl_to_camera(pose[:, 0], trans, world[:, 0] - trans, R, t)
            cam_joints = np.einsum("nij,nkj->nki", R, world) + t[:, None]
            joints = convert(np.concatenate([cam_joints, np.ones((n, 24, 1))], -1), SMPL_24, KEYPOINTS_2D)
        return dict(gender=gender, pose=pose, betas=betas, transl=transl, joints_3d=joints,
                    keypoints_2d=project_keypoints(joints, K), valid=valid)


# ---- files --------------------------------------------------------------------------------
def sequence_files(root: str | Path, split: str) -> list[Path]:
    """The sequence files of a record split (`sequenceFiles/<folder>/*.pkl`), sorted."""
    d = Path(root) / "sequenceFiles" / SPLIT_DIRS[split]
    if not d.is_dir():
        raise AnnotationError(f"{d}: 3DPW sequence folder not found")
    return sorted(d.glob("*.pkl"))


def load_sequence(path: Path) -> dict:
    """A sequence file (restricted unpickling, latin1 for 3DPW's Python 2 pickles), checked
    for the keys the reader needs and for a consistent `img_frame_ids`."""
    data = load_pickle_dict(path, "3DPW sequence file")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise AnnotationError(f"{path}: 3DPW sequence file lacks {missing}")
    counts = {k: len(data[k]) if hasattr(data[k], "__len__") else None for k in PER_ACTOR_KEYS}
    if len(set(counts.values())) != 1 or not counts["genders"]:
        raise AnnotationError(f"{path}: the per-actor lists disagree on the number of actors: {counts}")
    image_frame_ids(data, path)
    return data


def num_frames(data: dict) -> int:
    """Images of the sequence = rows of the 30 Hz arrays (SPIN: `num_frames = len(smpl_pose[0])`;
    WHAM `lib/data_utils/threedpw_eval_utils.py`: `len(data['img_frame_ids'])`, one id per image)."""
    return len(data["poses"][0])


def image_frame_ids(data: dict, path: Path) -> np.ndarray | None:
    """`img_frame_ids` (N,) int64: the row of the 60 Hz arrays (`poses_60Hz`, `trans_60Hz`)
    that image i was taken at (3DPW readme.txt: "an index-array to down-sample 60 Hz 3D poses
    to corresponding image frame ids"; about 2i). None when the file has none. Checked: one id
    per image, integral, and inside the 60 Hz arrays where the file has them."""
    if "img_frame_ids" not in data:
        return None
    n = num_frames(data)
    raw = np.asarray(data["img_frame_ids"]).reshape(-1)
    ids = raw.astype(np.int64) if raw.dtype.kind in "iuf" else None
    if ids is None or raw.shape != (n,) or np.any(ids != raw) or np.any(ids < 0):
        raise AnnotationError(f"{path}: field 'img_frame_ids' ({raw.dtype}, shape {raw.shape}) is not {n} "
                              f"non-negative integers, one per image")
    for a, rows in enumerate(data.get("poses_60Hz", [])):
        m = len(rows)
        if ids.max(initial=-1) >= m:
            raise AnnotationError(f"{path}: field 'img_frame_ids' reaches row {ids.max()} but 'poses_60Hz'[{a}] "
                                  f"has {m} rows")
    return ids


def poses2d(data: dict, path: Path) -> np.ndarray:
    """(A, N, 18, 3) the file's `poses2d`: OpenPose COCO-18 detections per actor and image,
    x, y in image pixels and the detector's confidence (0 and all zeros: not detected).
    Stored as (N, 3, 18) per actor (SPIN `datasets/preprocess/pw3d.py`: `part = poses2d[i][f].T`)."""
    n = num_frames(data)
    return np.stack([checked_array(p, (n, 3, len(COCO_18)), path, f"poses2d[{a}]").transpose(0, 2, 1)
                     for a, p in enumerate(data["poses2d"])])


def detections_2d(root: str | Path, split: str) -> dict[str, np.ndarray]:
    """Record key -> (24, 3) KEYPOINTS_2D pixels + confidence of 3DPW's own `poses2d`
    detections (COCO-18 points mapped by name; points COCO-18 lacks have confidence 0), for
    every image and actor of the split. For comparing the detections with the records'
    ground-truth projections; the records take only their box from them."""
    out = {}
    for path in sequence_files(root, split):
        data = load_sequence(path)
        seq = text(data["sequence"])
        for a, per_actor in enumerate(convert(poses2d(data, path), COCO_18, KEYPOINTS_2D)):
            for i, kp in enumerate(per_actor):
                out[make_key(PW3DReader.name, split, seq, i, a)] = kp
    return out


def text(value) -> str:
    """A string field as Python 2 pickles leave it under latin1 (str), or wrapped in a 0-d
    numpy array, or as bytes: the same text (SPIN reads `str(data['sequence'])`)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def project_keypoints(joints: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., J, 4) camera-frame points + confidence -> (..., J, 3) pixels + confidence with
    intrinsics K; points at or behind the camera plane get confidence 0."""
    uv = project(joints[..., :3], K)
    conf = np.where(joints[..., 2] > 0, joints[..., 3], 0.0)
    return np.concatenate([uv, conf[..., None]], -1)
