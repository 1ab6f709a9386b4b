"""RICH test reader: BEDLAM's parsed evaluation labels `rich_test.npz` + the RICH images.

Layout (BEDLAM `train/core/config.py` DATASET_FILES 'rich' and `train/dataset/dataset.py`):
one row per person and image, with
- `imgname` (N,) str, relative to the RICH image root (`test/<seq>/cam_<cc>/<frame>_<cc>.jpeg`);
- `center` (N, 2) px and `scale` (N,) = box side / SPIN_SCALE_UNIT;
- `pose_cam` (N, >= 66): SMPL-X global orientation (camera frame) + 21 body joints,
  axis-angle (BEDLAM uses the first NUM_JOINTS_SMPLX * 3 = 66 numbers);
- `shape` (N, >= 10) SMPL-X betas; `gender` (N,) 'm' / 'f' (BEDLAM: 'm' -> male, else female);
- optional `cam_int` (N, 3, 3) and `trans_cam` (N, 3), the names BEDLAM's training labels
  use for the intrinsics and the body translation in the camera (with no `cam_ext` in
  the file the translation is `trans_cam` alone, as BEDLAM's loader reads it).

Record convention for RICH (test only, read by the evaluation protocol in
`eval/protocols.py`, ground truth "smplx_to_smpl"): `smpl_pose` rows 0-21 hold the SMPL-X
global orientation and 21 body joints (SMPL-X's first 22 joints are SMPL's, same names and
order), rows 22-23 are zero; `betas` are SMPL-X betas. `joints_3d` are the KEYPOINTS_2D
points of the gendered SMPL-X mesh mapped to SMPL topology (the `smplx2smpl` matrix), read
by the same table as predictions; `keypoints_2d` are their projection when the file has a
camera (`cam_int` + `trans_cam`), else absent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.reader import (GENDER_CODES, SPIN_SCALE_UNIT, AnnotationError, BodyModels, FrameId, finish, image_hw,
                             load_label_npz, person_index, project, require_file, resolve_assets_root,
                             synthetic_assets)
from datasets.record import NUM_BETAS, NUM_SMPL_JOINTS, PersonFrame, Reject

LABEL_FILE = "rich_test.npz"
NUM_JOINTS_SMPLX = 22  # global orientation + 21 body joints (BEDLAM `constants.py`)
REQUIRED_KEYS = ("imgname", "center", "scale", "pose_cam", "shape", "gender")
SHAPES = {"center": ("N", 2), "scale": ("N",), "pose_cam": ("N", -NUM_JOINTS_SMPLX * 3), "shape": ("N", -NUM_BETAS),
          "gender": ("N",), "cam_int": ("N", 3, 3), "trans_cam": ("N", 3)}
RICH_BOX_EXPAND = 1.0  # the file's box is already expanded
CHUNK = 64


@dataclass(frozen=True)
class Options:
    """assets_root: SMPL-X / SMPL models and smplx2smpl (None: the synthetic tree's own,
    else the configured root); label_file: relative to the root."""

    assets_root: str | None = None
    label_file: str = LABEL_FILE


class RichReader:
    name = "rich"

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        if split != "test":
            raise ValueError(f"rich: only the 'test' split is read, got {split!r}")
        self.root, self.split, self.options = Path(root), split, options or Options()
        self.synthetic = synthetic_assets(self.root) is not None
        self.models = BodyModels(resolve_assets_root(self.root, self.options.assets_root))  # loaded on first use

    @staticmethod
    def splits(root: Path) -> list[str]:
        return ["test"] if (Path(root) / LABEL_FILE).is_file() else []

    def frames(self) -> Iterator[PersonFrame | Reject]:
        path = require_file(self.root / self.options.label_file, "RICH label file")
        z = load_label_npz(path, "RICH label npz", REQUIRED_KEYS, SHAPES)
        n = len(z["imgname"])
        src = str(path.relative_to(self.root))
        names = [str(x) for x in z["imgname"]]
        genders = [GENDER_CODES.get(str(g)) for g in z["gender"]]
        bad = [g for g, name in zip(z["gender"], genders) if name not in ("male", "female")]
        if bad:
            raise AnnotationError(f"{path}: field 'gender' has {bad[0]!r}, expected 'm' or 'f' (SMPL-X has no neutral here)")
        pose = np.zeros((n, NUM_SMPL_JOINTS, 3))
        pose[:, :NUM_JOINTS_SMPLX] = z["pose_cam"][:, :NUM_JOINTS_SMPLX * 3].reshape(n, NUM_JOINTS_SMPLX, 3)
        betas = z["shape"][:, :NUM_BETAS]
        has_cam = "cam_int" in z and "trans_cam" in z
        transl = z["trans_cam"] if has_cam else np.zeros((n, 3))
        joints = self._joints_3d(pose, betas, transl, genders)
        person_of = person_index(names)
        sizes: dict[str, tuple[int, int] | None] = {}
        for i, name in enumerate(names):
            if name not in sizes:
                sizes[name] = image_hw(self.root / name)
            sequence, frame = _sequence_frame(name)
            fid = FrameId(self.name, self.split, sequence, frame, person_of[i], name, src)
            kp2d = np.zeros((len(joints[i]), 3))
            K = z["cam_int"][i] if has_cam else None
            if has_cam:
                kp2d = np.concatenate([project(joints[i, :, :3], K), joints[i, :, 3:]], -1)
            side = float(z["scale"][i]) * SPIN_SCALE_UNIT
            yield finish(fid, sizes[name], box_center=z["center"][i], box_size=(side, side),
                         box_expand=RICH_BOX_EXPAND, synthetic=self.synthetic, intrinsics=K,
                         require_keypoints=has_cam, smpl_pose=pose[i], betas=betas[i], smpl_transl=transl[i],
                         gender=genders[i], joints_3d=joints[i], keypoints_2d=kp2d, has_smpl=True, body_model="smplx",
                         has_transl=has_cam)

    def _joints_3d(self, pose, betas, transl, genders) -> np.ndarray:
        """(N, 24, 4): KEYPOINTS_2D points of the SMPL-X mesh in SMPL topology + confidence."""
        gt = self.models.smplx()
        out = np.zeros((len(pose), NUM_SMPL_JOINTS, 4))
        for gender in sorted(set(genders)):
            idx = np.flatnonzero(np.array(genders) == gender)
            for s in range(0, len(idx), CHUNK):
                sel = idx[s:s + CHUNK]
                out[sel] = gt.keypoints(gender, pose[sel], betas[sel], transl[sel])
        return out


def _sequence_frame(name: str) -> tuple[str, int]:
    """('<seq>/cam_<cc>', frame) from `.../<seq>/cam_<cc>/<frame>_<cc>.jpeg`; else (stem, 0)."""
    p = Path(name)
    m = re.match(r"^(\d+)", p.stem)
    if m and p.parent.name:
        return f"{p.parent.parent.name}/{p.parent.name}", int(m.group(1))
    return str(p.with_suffix("")), 0

