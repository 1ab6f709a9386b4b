"""RICH test reader: BEDLAM's parsed evaluation labels `rich_test.npz` + the RICH images.

Layout (BEDLAM `train/core/config.py` DATASET_FILES 'rich' and `train/dataset/dataset.py`):
one row per person and image, with
- `imgname` (N,) str, relative to the RICH image root (`test/<seq>/cam_<cc>/<frame>_<cc>.jpeg`);
- `center` (N, 2) px and `scale` (N,) = box side / SPIN_SCALE_UNIT;
- `pose_cam` (N, >= 66): SMPL-X global orientation (camera frame) + 21 body joints,
  axis-angle (BEDLAM uses the first NUM_JOINTS_SMPLX * 3 = 66 numbers);
- `shape` (N, >= 10) SMPL-X betas; `gender` (N,) 'm' / 'f' (BEDLAM: 'm' -> male, else female);
- optional `cam_int` (N, 3, 3), `trans_cam` (N, 3) and `cam_ext` (N, 4, 4), the names
  BEDLAM's labels use for the intrinsics, the body translation and the camera extrinsics.

Camera-frame translation, BEDLAM's rule (`train/dataset/dataset.py`, `__getitem__`:
`item['translation'] = self.cam_ext[index][:, 3]`, then `item['translation'][:3] +=
self.trans_cam[index]`, with `cam_ext` all zeros when the file has none): the SMPL-X body
of `pose_cam`, `shape` and transl = `trans_cam` + `cam_ext[:3, 3]` is in the camera frame.
Only the translation column of `cam_ext` is used: its rotation `cam_ext[:3, :3]` is already
folded into `pose_cam` and `trans_cam` (BEDLAM `data_processing/df_full_body.py`
`get_global_orient`: `c_global_orient` and `c_translation` are rotated by the camera's
`final_rotmat`, the same matrix stored as `cam_ext[:3, :3]`; `project` then adds
`cam_ext[:3, 3]`, the body-to-camera offset, to the posed points). With `cam_ext` absent
the translation is `trans_cam` alone; with neither, the translation is unknown. (BEDLAM's
test branch reads none of the three: its RICH scores are root-centred. The translation
places `joints_3d` and `keypoints_2d` in the camera and the image.)

Record convention for RICH (test only, read by the evaluation protocol in
`eval/protocols.py`, ground truth "smplx_to_smpl"): `smpl_pose` rows 0-21 hold the SMPL-X
global orientation and 21 body joints (SMPL-X's first 22 joints are SMPL's, same names and
order), rows 22-23 are zero; `betas` are SMPL-X betas. `joints_3d` are the KEYPOINTS_2D
points of the gendered SMPL-X mesh mapped to SMPL topology (the `smplx2smpl` matrix), read
by the same table as predictions, at the translation above; `keypoints_2d` are their
projection when the file has `cam_int` and a translation, else absent.
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
          "gender": ("N",), "cam_int": ("N", 3, 3), "trans_cam": ("N", 3), "cam_ext": ("N", 4, 4)}
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
        bad = [str(g) for g, name in zip(z["gender"], genders) if name not in ("male", "female")]
        if bad:
            raise AnnotationError(f"{path}: field 'gender' has {bad[0]!r}, expected 'm' or 'f' (SMPL-X has no neutral here)")
        pose = np.zeros((n, NUM_SMPL_JOINTS, 3))
        pose[:, :NUM_JOINTS_SMPLX] = z["pose_cam"][:, :NUM_JOINTS_SMPLX * 3].reshape(n, NUM_JOINTS_SMPLX, 3)
        betas = z["shape"][:, :NUM_BETAS]
        transl, has_transl = camera_translation(z)
        has_cam = "cam_int" in z and has_transl
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
                         has_transl=has_transl)

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


def camera_translation(z: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
    """((N, 3) camera-frame SMPL-X translation, known?) of a label file's arrays, BEDLAM's rule:
    `cam_ext[:3, 3]` (zero without `cam_ext`) + `trans_cam` (zero without it)."""
    n = len(z["imgname"])
    transl = np.zeros((n, 3))
    if "cam_ext" in z:
        transl = transl + z["cam_ext"][:, :3, 3]  # BEDLAM dataset.py: translation = cam_ext[:, 3] (rotation unused)
    if "trans_cam" in z:
        transl = transl + z["trans_cam"]  # BEDLAM dataset.py: translation[:3] += trans_cam
    return transl, "cam_ext" in z or "trans_cam" in z


def _sequence_frame(name: str) -> tuple[str, int]:
    """('<seq>/cam_<cc>', frame) from `.../<seq>/cam_<cc>/<frame>_<cc>.jpeg`; else (stem, 0)."""
    p = Path(name)
    m = re.match(r"^(\d+)", p.stem)
    if m and p.parent.name:
        return f"{p.parent.parent.name}/{p.parent.name}", int(m.group(1))
    return str(p.with_suffix("")), 0

