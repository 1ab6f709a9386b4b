"""Joint sets: names in order, written out once, and the mapping tables between them.

Every index list in the project is derived here from joint *names*; nowhere else types
an integer list of joints. A mapping `src -> dst` is an index array `idx` of length
len(dst) with `dst_joints = src_joints[idx]`, and a boolean `present` mask for the dst
joints that `src` has at all (`idx` is 0 where absent; mask those out).

Sources of the orders:
- SMPL-24: the SMPL kinematic tree (smplx `joint_names.py`, first 24 names).
- SPIN-24: the 24 ground-truth joints of SPIN `constants.py` (`JOINT_NAMES[25:]`), the
  `part` / `S` arrays of SPIN/CLIFF/BEDLAM label files.
- OpenPose BODY_25: OpenPose's output order (SPIN `constants.py` `JOINT_NAMES[:25]`).
- COCO-17: the COCO keypoint order.
- COCO-18: OpenPose's COCO-18 order, used by 3DPW `poses2d`.
- H36M-17: the rows of SPIN's `J_regressor_h36m.npy`. Its legs are 1-3 left, 4-6 right
  (so SPIN's `H36M_TO_J14 = [6,5,4,1,2,3,16,15,14,11,12,13,8,10]` lands on LSP-14);
  see SPIN `constants.py`.
- LSP-14: the LSP order used for the 3DPW PA-MPJPE protocol (SPIN `constants.py` J14).
- MPI-INF-3DHP-28: `annot2`/`annot3` joint order of the training set (mmhuman3d
  `keypoints_mapping/mpi_inf_3dhp.py`); MPI-INF-3DHP-17: the test set `annot_data.mat`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """An ordered, named joint set. `parents` is given for kinematic sets only."""

    name: str
    names: tuple[str, ...]
    parents: tuple[int, ...] | None = None
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"joint set {self.name}: duplicate joint names")
        object.__setattr__(self, "index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def indices(self, names) -> np.ndarray:
        """Indices of `names` in this set (KeyError naming the joint if absent)."""
        try:
            return np.array([self.index[n] for n in names], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"joint {e.args[0]!r} is not in joint set {self.name}") from None

    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps left_* and right_* joints (for horizontal flips)."""
        perm = []
        for n in self.names:
            if n.startswith("left_"):
                m = "right_" + n[5:]
            elif n.startswith("right_"):
                m = "left_" + n[6:]
            else:
                m = n
            perm.append(self.index.get(m, self.index[n]))
        return np.array(perm, dtype=np.int64)


def mapping(src: JointSet, dst: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """(idx, present): `dst_joints = src_joints[idx]`, valid where `present`."""
    idx = np.zeros(len(dst), dtype=np.int64)
    present = np.zeros(len(dst), dtype=bool)
    for j, n in enumerate(dst.names):
        if n in src.index:
            idx[j] = src.index[n]
            present[j] = True
    return idx, present


def convert(joints: np.ndarray, src: JointSet, dst: JointSet) -> np.ndarray:
    """Re-order (..., len(src), C) joints into (..., len(dst), C); absent joints are zero.

    If C == 3 and the last column is a confidence (2D keypoints), absent joints get
    confidence 0 and so drop out of every loss and metric.
    """
    idx, present = mapping(src, dst)
    out = joints[..., idx, :].copy()
    out[..., ~present, :] = 0
    return out


SMPL_24 = JointSet(
    "smpl24",
    (
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
        "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
        "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
    ),
    parents=(-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21),
)

# SPIN's 24 ground-truth joints. Names shared with other sets mean the same anatomical
# point only where the datasets agree (hips/knees/ankles/shoulders/elbows/wrists);
# `neck_lsp`, `head_top`, `thorax`, `spine_h36m`, `jaw`, `head_h36m` are their own points.
SPIN_24 = JointSet(
    "spin24",
    (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
        "left_wrist", "neck_lsp", "head_top", "pelvis_mpii", "thorax", "spine_h36m",
        "jaw", "head_h36m", "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    ),
)

OPENPOSE_25 = JointSet(
    "openpose25",
    (
        "nose", "neck_op", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear",
        "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
        "right_small_toe", "right_heel",
    ),
)

COCO_17 = JointSet(
    "coco17",
    (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
)

# 3DPW `poses2d`: OpenPose's COCO-18 output order.
COCO_18 = JointSet(
    "coco18",
    (
        "nose", "neck_op", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
        "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
    ),
)

H36M_17 = JointSet(
    "h36m17",
    (
        "pelvis_h36m", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee",
        "right_ankle", "spine_h36m", "neck_lsp", "head_h36m", "head_top", "left_shoulder",
        "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
)

LSP_14 = JointSet(
    "lsp14",
    (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
        "left_wrist", "neck_lsp", "head_top",
    ),
)

MPI_INF_3DHP_28 = JointSet(
    "mpi_inf_3dhp28",
    (
        "spine3_3dhp", "spine4_3dhp", "spine2_3dhp", "spine_h36m", "pelvis_3dhp",
        "neck_3dhp", "head_h36m", "head_top", "left_clavicle", "left_shoulder",
        "left_elbow", "left_wrist", "left_hand_3dhp", "right_clavicle", "right_shoulder",
        "right_elbow", "right_wrist", "right_hand_3dhp", "left_hip", "left_knee",
        "left_ankle", "left_foot_3dhp", "left_toe", "right_hip", "right_knee",
        "right_ankle", "right_foot_3dhp", "right_toe",
    ),
)

MPI_INF_3DHP_17 = JointSet(
    "mpi_inf_3dhp17",
    (
        "head_top", "neck_3dhp", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
        "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis_3dhp",
        "spine_h36m", "head_h36m",
    ),
)

JOINT_SETS: dict[str, JointSet] = {
    s.name: s
    for s in (SMPL_24, SPIN_24, OPENPOSE_25, COCO_17, COCO_18, H36M_17, LSP_14,
              MPI_INF_3DHP_28, MPI_INF_3DHP_17)
}

# The 2D keypoint set every record carries (crop pixels + confidence). The SPIN-24
# superset holds what 3DPW (COCO-18), CLIFF labels (`part`), MPI-INF-3DHP and the
# H36M-17 / LSP-14 evaluation joints provide, so no dataset loses a joint it has.
KEYPOINTS_2D = SPIN_24
# Every record's `joints_3d` (camera frame, metres, + confidence) is in the same
# KEYPOINTS_2D order: read off the ground-truth SMPL mesh (KEYPOINTS_FROM_MESH below)
# where a dataset has SMPL, from its own 3D labels otherwise (MPI-INF-3DHP `annot3`).

# The 3DPW/H36M evaluation subset (SPIN `H36M_TO_J14`), derived from names.
H36M_TO_LSP14 = H36M_17.indices(LSP_14.names)
H36M_PELVIS = H36M_17.index["pelvis_h36m"]

# How each KEYPOINTS_2D joint is read off an SMPL mesh, so that predictions and
# SMPL-derived ground truth go through one table. SPIN (`smpl.py`, JOINT_MAP) takes limbs
# from SMPL joints, face points from vertices (smplx `vertex_ids['smplh']`) and hips /
# neck / head top / pelvis / spine / head from `J_regressor_extra` + H36M; we have no
# `J_regressor_extra` asset, so those come from the H36M regressor rows of the same
# name (ours). `thorax` is SMPL's neck joint (ours); `jaw` has no source (confidence 0).
KEYPOINTS_FROM_MESH: dict[str, tuple[str, str | int] | None] = {
    "right_ankle": ("smpl24", "right_ankle"),
    "right_knee": ("smpl24", "right_knee"),
    "right_hip": ("h36m17", "right_hip"),
    "left_hip": ("h36m17", "left_hip"),
    "left_knee": ("smpl24", "left_knee"),
    "left_ankle": ("smpl24", "left_ankle"),
    "right_wrist": ("smpl24", "right_wrist"),
    "right_elbow": ("smpl24", "right_elbow"),
    "right_shoulder": ("smpl24", "right_shoulder"),
    "left_shoulder": ("smpl24", "left_shoulder"),
    "left_elbow": ("smpl24", "left_elbow"),
    "left_wrist": ("smpl24", "left_wrist"),
    "neck_lsp": ("h36m17", "neck_lsp"),
    "head_top": ("h36m17", "head_top"),
    "pelvis_mpii": ("h36m17", "pelvis_h36m"),
    "thorax": ("smpl24", "neck"),
    "spine_h36m": ("h36m17", "spine_h36m"),
    "jaw": None,
    "head_h36m": ("h36m17", "head_h36m"),
    "nose": ("vertex", 332),
    "left_eye": ("vertex", 2800),
    "right_eye": ("vertex", 6260),
    "left_ear": ("vertex", 583),
    "right_ear": ("vertex", 4071),
}
assert tuple(KEYPOINTS_FROM_MESH) == KEYPOINTS_2D.names
