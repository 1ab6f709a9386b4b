"""SPIN/CLIFF/BEDLAM-style label `.npz` reader: one reader, configured per dataset.

The family (SPIN `datasets/preprocess/*.py` writes it; CLIFF's pseudo-ground-truth
`coco2014part_cliffGT.npz` / `mpii_cliffGT.npz` and BEDLAM's real-image labels keep it):
one row per person, with
- `imgname` (N,) str, image path relative to the dataset root (SPIN `base_dataset.py`
  joins it to `DATASET_FOLDERS[dataset]`; SPIN's H36M files: `images/S9_..._000001.jpg`);
- `center` (N, 2) px and `scale` (N,) = box side / SPIN_SCALE_UNIT, the box already
  expanded by the preprocessing (so the record's `box_expand` is 1.0);
- optional, each read as SPIN `datasets/base_dataset.py` reads it (its `try/except KeyError`s):
  - `part` (N, 24, 3) 2D keypoints in SPIN-24 order (= KEYPOINTS_2D) with confidence;
    absent (SPIN's H36M test file `h36m_valid_protocol2.npz`): no 2D labels, the record
    is still read (its box from `center` / `scale`);
  - `pose` (N, 72) SMPL axis-angle (global orientation in the camera frame) and `shape`
    (N, >= 10), with `has_smpl` (N,); both present without `has_smpl` (the H36M MoSh
    files): every row has SMPL; either absent: no row has;
  - `S` (N, 24, 4) 3D joints (m) + confidence, camera axes; SPIN's H36M / 3DHP files
    root-centre them on the pelvis (`h36m.py`: `S17 -= S17[0]`);
  - `global_t` (N, 3) SMPL `transl` in the full-image camera and `focal_l` (N,) px (CLIFF
    `viz_cliffGT_perImg.py`: principal point at the image centre);
  - `gender` (N,) 'm'/'f' (SPIN; 'n' too); absent: neutral (SPIN: gender -1, and its
    trainer builds every target mesh with the neutral SMPL; CLIFF fits the neutral SMPL);
  - `openpose` (N, 25, 3) OpenPose detections: not read (SPIN `utils/train_options.py`
    `openpose_train_weight` defaults to 0: SPIN does not train on them either).

3D joints: the file's `S` where the row has one (SPIN supervises 3D keypoints with `S`,
`base_dataset.py` `pose_3d`, never with joints of the SMPL fits), else the SMPL mesh's
KEYPOINTS_2D points (`BodyModels.keypoints`) where `has_smpl`, else absent. Without
`global_t` the SMPL joints sit at the SMPL origin (camera axes, translation unknown;
`has_transl` False).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.reader import (GENDER_CODES, SPIN_SCALE_UNIT, AnnotationError, BodyModels, FrameId, centred_intrinsics,
                             finish, image_hw, load_label_npz, person_index, require_file, resolve_assets_root,
                             synthetic_assets)
from datasets.record import NUM_BETAS, NUM_KEYPOINTS, PersonFrame, Reject

REQUIRED_KEYS = ("imgname", "center", "scale")  # SPIN base_dataset.py reads these without a fallback
SHAPES = {"center": ("N", 2), "scale": ("N",), "part": ("N", NUM_KEYPOINTS, 3), "pose": ("N", 72),
          "shape": ("N", -NUM_BETAS), "S": ("N", NUM_KEYPOINTS, 4), "global_t": ("N", 3), "focal_l": ("N",),
          "has_smpl": ("N",), "gender": ("N",)}
NPZ_BOX_EXPAND = 1.0  # the file's box is already expanded by its preprocessing
CHUNK = 256


@dataclass(frozen=True)
class NpzSource:
    """Where one dataset's label files and images are, relative to its raw root.

    files: record split -> label file; image_root: folder that `imgname` is relative to.
    """

    dataset: str
    files: dict[str, str]
    image_root: str = ""


# The real file names of each source (CLIFF README for COCO/MPII; SPIN `config.py`
# DATASET_FILES for Human3.6M).
SOURCES: dict[str, NpzSource] = {
    "coco": NpzSource("coco", {"train": "coco2014part_cliffGT.npz"}),
    "mpii": NpzSource("mpii", {"train": "mpii_cliffGT.npz"}),
    "h36m": NpzSource("h36m", {"train": "h36m_train.npz", "test": "h36m_valid_protocol2.npz"}),
}


@dataclass(frozen=True)
class Options:
    """assets_root: body models (None: the synthetic tree's own, else the configured root);
    source: override the dataset's NpzSource (e.g. for an MPI-INF-3DHP or 3DPW-train npz)."""

    assets_root: str | None = None
    source: NpzSource | None = None


class LabelNpzReader:
    """Reads one dataset's label npz; a subclass per dataset names its SOURCES entry."""

    name = ""

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        self.root, self.split, self.options = Path(root), split, options or Options()
        self.source = self.options.source or SOURCES[self.name]
        self.name = self.source.dataset
        if split not in self.source.files:
            raise ValueError(f"{self.name}: no label file for split {split!r}; known {sorted(self.source.files)}")
        self.synthetic = synthetic_assets(self.root) is not None
        self.models = BodyModels(resolve_assets_root(self.root, self.options.assets_root))  # loaded on first use

    @classmethod
    def splits(cls, root: Path) -> list[str]:
        return [s for s, f in SOURCES[cls.name].files.items() if (Path(root) / f).is_file()]

    @property
    def label_file(self) -> Path:
        return self.root / self.source.files[self.split]

    def frames(self) -> Iterator[PersonFrame | Reject]:
        path = require_file(self.label_file, f"{self.name} label file")
        z = load_label_npz(path, "label npz", REQUIRED_KEYS, SHAPES)
        n = len(z["imgname"])
        src = str(path.relative_to(self.root))
        names = [str(x) for x in z["imgname"]]
        has_smpl = self._has_smpl(z, n)
        genders = [GENDER_CODES.get(str(g)) for g in z.get("gender", ["n"] * n)]
        if None in genders:
            bad = str(z["gender"][genders.index(None)])
            raise AnnotationError(f"{path}: field 'gender' has {bad!r}, expected 'm', 'f' or 'n'")
        # without `pose` or `shape` no row has SMPL (`_has_smpl`): neither is then read
        pose = z["pose"].reshape(n, 24, 3) if "pose" in z else None
        betas = z["shape"][:, :NUM_BETAS] if "shape" in z else None
        transl = z.get("global_t")
        joints = self._joints_3d(z, n, has_smpl, pose, betas, transl, genders)
        part = z["part"] if "part" in z else np.zeros((n, NUM_KEYPOINTS, 3))  # SPIN base_dataset.py: no `part`, no 2D

        person_of = person_index(names)
        sizes: dict[str, tuple[int, int] | None] = {}
        for i, name in enumerate(names):
            image_path = str(Path(self.source.image_root) / name)  # image_root "": the name itself
            if name not in sizes:
                sizes[name] = image_hw(self.root / image_path)
            hw = sizes[name]
            sequence = str(Path(name).with_suffix(""))
            fid = FrameId(self.name, self.split, sequence, 0, person_of[i], image_path, src)
            K = centred_intrinsics(float(z["focal_l"][i]), hw) if "focal_l" in z and hw is not None else None
            side = float(z["scale"][i]) * SPIN_SCALE_UNIT
            yield finish(fid, hw, box_center=z["center"][i], box_size=(side, side), box_expand=NPZ_BOX_EXPAND,
                         synthetic=self.synthetic, intrinsics=K, require_keypoints="part" in z,
                         smpl_pose=pose[i] if has_smpl[i] else np.zeros((24, 3)),
                         betas=betas[i] if has_smpl[i] else np.zeros(NUM_BETAS),
                         smpl_transl=transl[i] if transl is not None else np.zeros(3),
                         gender=genders[i], joints_3d=joints[i], keypoints_2d=part[i],
                         has_smpl=bool(has_smpl[i]), has_transl=bool(transl is not None and has_smpl[i]))

    @staticmethod
    def _has_smpl(z: dict, n: int) -> np.ndarray:
        """(n,) bool. SPIN base_dataset.py: `pose` and `shape` present -> the file's `has_smpl`,
        or all ones where the file has none (the H36M MoSh files); either absent -> zeros."""
        if "pose" not in z or "shape" not in z:
            return np.zeros(n, bool)
        return np.asarray(z["has_smpl"], bool) if "has_smpl" in z else np.ones(n, bool)

    def _joints_3d(self, z, n, has_smpl, pose, betas, transl, genders) -> np.ndarray:
        """(n, 24, 4): the file's `S` in rows that have one (any confidence set), else the
        SMPL keypoints where has_smpl, else absent."""
        joints = np.zeros((n, NUM_KEYPOINTS, 4))
        has_s = np.zeros(n, bool)
        if "S" in z:  # SPIN base_dataset.py: `S` is the 3D keypoint target whenever the file has it
            joints[:] = z["S"]
            has_s = np.any(z["S"][..., 3] != 0, axis=1)  # NaN counts as set: the row is then rejected
        t = transl if transl is not None else np.zeros((n, 3))
        for gender in sorted(set(genders)):
            idx = np.flatnonzero(has_smpl & ~has_s & (np.array(genders) == gender))
            for s in range(0, len(idx), CHUNK):
                sel = idx[s:s + CHUNK]
                joints[sel] = self.models.keypoints(gender, pose[sel], betas[sel], t[sel])
        return joints


class CocoReader(LabelNpzReader):
    name = "coco"


class MpiiReader(LabelNpzReader):
    name = "mpii"


class H36MReader(LabelNpzReader):
    name = "h36m"
