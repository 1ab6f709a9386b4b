"""EMDB reader: `P<k>/<sequence>/P<k>_<sequence>_data.pkl` + `images/%05d.jpg` -> records.

The layout and the pickle's keys are EMDB's own (eth-ait/emdb `dataset.md`):
- `gender` ("female" / "male" / "neutral"), `name` (`<subject>_<sequence>`), `emdb1` /
  `emdb2` (bool: the sequence belongs to EMDB 1 / EMDB 2 of the paper), `n_frames`,
  `good_frames_mask` (n_frames,) bool ("invalid frames are hand-selected instances where
  the person is out-of-view or occluded entirely");
- `camera`: `intrinsics` (3, 3), `extrinsics` (n_frames, 4, 4), `width`, `height`;
- `smpl`: `poses_root` (n, 3), `poses_body` (n, 69), `trans` (n, 3), `betas` (10,);
- `kp2d` (n, 24, 2) the SMPL joints projected; `bboxes`: `bboxes` (n, 4) as
  `(x_min, y_min, x_max, y_max)` and `invalid_idxs` ("a bounding box at frame i is invalid
  if good_frames_mask[i] == False or if x_max - x_min <= 0 or y_max - y_min <= 0").
- images: `images/{%5d}.jpg` "from 0" (dataset.md), so frame i is `images/<i:05d>.jpg`.

What the benchmark takes, from the reference evaluations:
- the test split is EMDB 1, the sequences whose `emdb1` is true (eth-ait/emdb `evaluate.py`
  `is_emdb1`; WHAM `lib/data_utils/emdb_eval_utils.py` `is_dset(.., '1')`); `Options.subset
  = "all"` reads every sequence;
- only good frames are scored (eth-ait/emdb `evaluation_engine.py`: `poses_gt[good_frames_mask]`;
  WHAM `evaluate_emdb.py`: `[masks]`): a frame whose `good_frames_mask` is false is a
  Reject (`invalid_frame`), as is a good frame whose box `invalid_idxs` lists (never scored);
- `extrinsics` are world -> camera (eth-ait/emdb `evaluation_engine.py`: `world2cam =
  data["camera"]["extrinsics"]`, applied as `world2camera @ joints`); the SMPL root goes
  into the camera frame by its rotation (WHAM `emdb_eval_utils.py`: `poses_root_cam =
  extrinsics[:, :3, :3] @ poses_root`), the translation by `datasets.reader.smpl_to_camera`;
- the ground-truth body is the SMPL of the sequence's `gender` with its `betas` for every
  frame (eth-ait/emdb `load_emdb_gt`: `np.repeat(betas, n_frames)`).
Record: `smpl_pose` / `smpl_transl` camera frame, `joints_3d` the gendered mesh's
KEYPOINTS_2D points (as 3DPW), `keypoints_2d` their projection with `intrinsics` (visible
inside the image), the box SPIN's square rule (1.2 x the larger side, ours: the reference
evaluations crop from their own preprocessed boxes) on EMDB's tight `bboxes`, which the
record keeps as `box_tight`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.reader import (GENDER_CODES, AnnotationError, BodyModels, FrameId, checked_array, finish,
                             load_pickle_dict, project, resolve_assets_root, smpl_to_camera, synthetic_assets,
                             visible_in_image)
from datasets.record import NUM_BETAS, NUM_SMPL_JOINTS, PersonFrame, Reject
from model.geometry import SPIN_BOX_EXPAND

SUBSETS = ("emdb1", "all")
IMAGE_PATTERN = "{subject}/{sequence}/images/{frame:05d}.jpg"  # dataset.md: "{%5d}.jpg from 0"
DATA_FILE = "{subject}_{sequence}_data.pkl"  # dataset.md: {PX}_{sequence}_data.pkl
REQUIRED_KEYS = ("gender", "name", "emdb1", "n_frames", "good_frames_mask", "camera", "smpl", "bboxes")
CAMERA_KEYS = ("intrinsics", "extrinsics", "width", "height")
SMPL_KEYS = ("poses_root", "poses_body", "trans", "betas")
BBOX_KEYS = ("bboxes", "invalid_idxs")
SUBJECT_RE = re.compile(r"^P\d+$")
CHUNK = 256  # frames per body-model call


@dataclass(frozen=True)
class Options:
    """assets_root: body models (None: the synthetic tree's own, else the configured root).
    subset: "emdb1" (the benchmark's sequences, `emdb1` true) or "all"."""

    assets_root: str | None = None
    subset: str = "emdb1"


class EmdbReader:
    name = "emdb"

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        if split != "test":
            raise ValueError(f"emdb: only the 'test' split (EMDB 1) is read, got {split!r}")
        self.root, self.split, self.options = Path(root), split, options or Options()
        if self.options.subset not in SUBSETS:
            raise ValueError(f"emdb: options.subset must be one of {SUBSETS}, got {self.options.subset!r}")
        self.synthetic = synthetic_assets(self.root) is not None
        self.models = BodyModels(resolve_assets_root(self.root, self.options.assets_root))  # loaded on first use

    @staticmethod
    def sequence_files(root: Path) -> list[Path]:
        """Every `P<k>/<sequence>/P<k>_<sequence>_data.pkl` under `root`, sorted."""
        root = Path(root)
        if not root.is_dir():
            return []
        out = []
        for subject in sorted(p for p in root.iterdir() if p.is_dir() and SUBJECT_RE.match(p.name)):
            for seq in sorted(p for p in subject.iterdir() if p.is_dir()):
                f = seq / DATA_FILE.format(subject=subject.name, sequence=seq.name)
                if f.is_file():
                    out.append(f)
        return out

    @staticmethod
    def splits(root: Path) -> list[str]:
        return ["test"] if EmdbReader.sequence_files(root) else []

    def frames(self) -> Iterator[PersonFrame | Reject]:
        for path in self.sequence_files(self.root):
            data = load_sequence(path)
            if self.options.subset == "emdb1" and not bool(data["emdb1"]):
                continue  # not an EMDB 1 sequence: not part of the benchmark's test split
            yield from self._sequence(path, data)

    def _sequence(self, path: Path, data: dict) -> Iterator[PersonFrame | Reject]:
        subject, seq = path.parent.parent.name, path.parent.name
        src = str(path.relative_to(self.root))
        seq_arrays = sequence_arrays(data, path)
        n = seq_arrays["n"]
        gender = GENDER_CODES.get(str(data["gender"]))
        if gender is None:
            raise AnnotationError(f"{path}: field 'gender' is {data['gender']!r}, expected female, male or neutral")
        R, t = seq_arrays["extrinsics"][:, :3, :3], seq_arrays["extrinsics"][:, :3, 3]
        betas = seq_arrays["betas"]
        pose = np.concatenate([seq_arrays["poses_root"][:, None], seq_arrays["poses_body"].reshape(n, 23, 3)], 1)
        if np.all(np.isfinite(betas)):
            root = np.broadcast_to(self.models.root_joint(gender, betas[None])[0], (n, 3))
        else:
            root = np.full((n, 3), np.nan)
        pose[:, 0], transl = smpl_to_camera(pose[:, 0], seq_arrays["trans"], root, R, t)
        betas_n = np.broadcast_to(betas, (n, NUM_BETAS))
        finite = np.isfinite(pose).all((1, 2)) & np.isfinite(transl).all(1) & np.all(np.isfinite(betas))
        joints = np.zeros((n, len(pose[0]), 4))
        ok = np.flatnonzero(finite)
        for s in range(0, len(ok), CHUNK):
            sel = ok[s:s + CHUNK]
            joints[sel] = self.models.keypoints(gender, pose[sel], betas_n[sel], transl[sel])
        joints[~finite] = np.nan  # a non-finite label: finish() rejects it as non_finite_label
        K = seq_arrays["intrinsics"]
        hw = seq_arrays["hw"]
        image_dir = path.parent / "images"
        present = {p.name for p in image_dir.iterdir()} if image_dir.is_dir() else set()
        invalid_box = set(seq_arrays["invalid_idxs"].tolist())
        for i in range(n):
            image = IMAGE_PATTERN.format(subject=subject, sequence=seq, frame=i)
            fid = FrameId(self.name, self.split, f"{subject}/{seq}", i, 0, image, src)
            if not seq_arrays["good"][i]:
                yield fid.reject("invalid_frame", "good_frames_mask false")
                continue
            x0, y0, x1, y1 = seq_arrays["bboxes"][i]
            if i in invalid_box or not (x1 - x0 > 0 and y1 - y0 > 0):  # dataset.md: the box is invalid
                yield fid.reject("invalid_frame", "bboxes invalid_idxs")
                continue
            if Path(image).name not in present:
                yield fid.reject("missing_image", image)
                continue
            side = SPIN_BOX_EXPAND * max(x1 - x0, y1 - y0)  # SPIN's square rule on the tight box (ours)
            kp = np.concatenate([project(joints[i, :, :3], K), joints[i, :, 3:]], -1)
            kp = visible_in_image(kp, hw) if np.all(np.isfinite(kp)) else kp
            yield finish(fid, hw, box_center=((x0 + x1) / 2, (y0 + y1) / 2), box_size=(side, side),
                         box_expand=SPIN_BOX_EXPAND, box_tight=seq_arrays["bboxes"][i], synthetic=self.synthetic,
                         intrinsics=K, smpl_pose=pose[i], betas=betas, smpl_transl=transl[i], gender=gender,
                         joints_3d=joints[i], keypoints_2d=kp, has_smpl=True, has_transl=True)


def load_sequence(path: Path) -> dict:
    """The sequence pickle, restricted-unpickled, with its required keys checked."""
    data = load_pickle_dict(path, "EMDB sequence file")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    for group, keys in (("camera", CAMERA_KEYS), ("smpl", SMPL_KEYS), ("bboxes", BBOX_KEYS)):
        if group in data:
            if not isinstance(data[group], dict):
                raise AnnotationError(f"{path}: field '{group}' is a {type(data[group]).__name__}, expected a dict")
            missing += [f"{group}.{k}" for k in keys if k not in data[group]]
    if missing:
        raise AnnotationError(f"{path}: EMDB sequence file lacks {missing}")
    return data


def sequence_arrays(data: dict, path: Path) -> dict:
    """The arrays of a sequence, shape-checked against `n_frames` (errors name the field)."""
    n = int(data["n_frames"])
    cam, smpl, boxes = data["camera"], data["smpl"], data["bboxes"]
    out = dict(
        n=n,
        good=checked_array(data["good_frames_mask"], (n,), path, "good_frames_mask").astype(bool),
        intrinsics=checked_array(cam["intrinsics"], (3, 3), path, "camera.intrinsics"),
        extrinsics=checked_array(cam["extrinsics"], (n, 4, 4), path, "camera.extrinsics"),
        poses_root=checked_array(smpl["poses_root"], (n, 3), path, "smpl.poses_root"),
        poses_body=checked_array(smpl["poses_body"], (n, (NUM_SMPL_JOINTS - 1) * 3), path, "smpl.poses_body"),
        trans=checked_array(smpl["trans"], (n, 3), path, "smpl.trans"),
        betas=checked_array(np.asarray(smpl["betas"]).reshape(-1)[:NUM_BETAS], (NUM_BETAS,), path, "smpl.betas"),
        bboxes=checked_array(boxes["bboxes"], (n, 4), path, "bboxes.bboxes"),
        invalid_idxs=np.asarray(boxes["invalid_idxs"]).reshape(-1).astype(np.int64),
        hw=(int(cam["height"]), int(cam["width"])),
    )
    return out
