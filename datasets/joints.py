"""Joint sets: names in order, written out once, and the mapping tables between them.

Every index list in the project is derived here from joint *names*; nowhere else types
an integer list of joints. A mapping `src -> dst` is an index array `idx` of length
len(dst) with `dst_joints = src_joints[idx]`, and a boolean `present` mask for the dst
joints that `src` has at all (`idx` is 0 where absent; mask those out).

A name shared by two sets means the point that SPIN's preprocessing copies from one into
the other, so `mapping` reproduces SPIN's own index lists (pinned literally in
tests/conformance/test_joints.py). Sources of the orders:
- SMPL-24: the SMPL kinematic tree (smplx `joint_names.py` `JOINT_NAMES_DICT['smpl']`).
- SPIN-24: the 24 ground-truth joints of SPIN `constants.py` (`JOINT_NAMES[25:]`), the
  `part` / `S` arrays of SPIN/CLIFF/BEDLAM label files.
- OpenPose BODY_25: OpenPose's output order (SPIN `constants.py` `JOINT_NAMES[:25]`).
- COCO-17: the COCO keypoint order (`person_keypoints` category `keypoints`).
- COCO-18: OpenPose's COCO-18 order (OpenPose doc/output.md `POSE_COCO_BODY_PARTS`),
  used by 3DPW `poses2d`.
- H36M-17: the rows of SPIN's `J_regressor_h36m.npy` = the joints SPIN
  `datasets/preprocess/h36m.py` takes from the mocap (`h36m_idx`), in that order. Its legs
  are 1-3 left, 4-6 right (SPIN `constants.py` `H36M_TO_J17`).
- LSP-14: SPIN's 14 evaluation joints (`constants.py` `J24_TO_J14` / `H36M_TO_J14`).
- MPI-INF-3DHP-28: `annot2`/`annot3` joint order of the training set (3DHP
  `mpii_get_joint_set.m` 'all'); MPI-INF-3DHP-17: the test set `annot_data.mat`
  (`mpii_get_joint_set.m` 'relevant').
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

# SPIN's 24 ground-truth joints ('Neck (LSP)' -> neck_lsp, 'Top of Head (LSP)' -> head_top,
# 'Pelvis (MPII)' -> pelvis_mpii, 'Thorax (MPII)' -> thorax, 'Spine (H36M)' -> spine_h36m,
# 'Jaw (H36M)' -> jaw, 'Head (H36M)' -> head_h36m). SPIN's preprocessing fills these
# columns from H36M and MPI-INF-3DHP too: pelvis_mpii, neck_lsp, spine_h36m, jaw and
# head_h36m take those datasets' pelvis, neck, spine, head and head top (see H36M_17).
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

# Row i is named after the SPIN-24 column SPIN `datasets/preprocess/h36m.py` writes it to
# (`global_idx = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]`): pelvis ->
# 'Pelvis (MPII)', thorax -> 'Neck (LSP)', row 9 (mmhuman3d `h36m.py` 'head_extra') -> 'Jaw
# (H36M)', row 10 ('headtop') -> 'Head (H36M)'; SPIN `constants.py` agrees
# (`H36M_TO_J17[13, 16] = 10, 9` against `J24_TO_J17[13, 16] = 18, 17`; SPIN issue #22).
H36M_17 = JointSet(
    "h36m17",
    (
        "pelvis_mpii", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee",
        "right_ankle", "spine_h36m", "neck_lsp", "jaw", "head_h36m", "left_shoulder",
        "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
)

# SPIN's evaluation joints J14: LSP's order, but its 14th joint is 'Head (H36M)', not
# LSP's 'Top of Head' (SPIN `constants.py`: `J24_TO_J14[13] = 18`, `H36M_TO_J14[13] = 10`).
LSP_14 = JointSet(
    "lsp14",
    (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
        "left_wrist", "neck_lsp", "head_h36m",
    ),
)

# 3DHP `mpii_get_joint_set.m` 'all' order; SPIN `datasets/preprocess/mpi_inf_3dhp.py` writes
# rows `joints17_idx = [4, 18, 19, 20, 23, 24, 25, 3, 5, 6, 7, 9, 10, 11, 14, 15, 16]` to
# SPIN-24 `joints_idx = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]`, so
# pelvis -> pelvis_mpii, spine -> spine_h36m, neck -> neck_lsp, head -> jaw, head_top ->
# head_h36m; the joints SPIN drops keep 3DHP names.
MPI_INF_3DHP_28 = JointSet(
    "mpi_inf_3dhp28",
    (
        "spine3_3dhp", "spine4_3dhp", "spine2_3dhp", "spine_h36m", "pelvis_mpii",
        "neck_lsp", "jaw", "head_h36m", "left_clavicle", "left_shoulder",
        "left_elbow", "left_wrist", "left_hand_3dhp", "right_clavicle", "right_shoulder",
        "right_elbow", "right_wrist", "right_hand_3dhp", "left_hip", "left_knee",
        "left_ankle", "left_foot_3dhp", "left_toe", "right_hip", "right_knee",
        "right_ankle", "right_foot_3dhp", "right_toe",
    ),
)

# The test set: 3DHP `mpii_get_joint_set.m` 'relevant' (head_top, neck, arms, legs, pelvis,
# spine, head), named as in MPI_INF_3DHP_28 (SPIN's test preprocessing writes rows
# `[14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]` to the same `joints_idx`).
MPI_INF_3DHP_17 = JointSet(
    "mpi_inf_3dhp17",
    (
        "head_h36m", "neck_lsp", "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
        "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis_mpii",
        "spine_h36m", "jaw",
    ),
)

# SPIN's 17 MPI-INF-3DHP evaluation joints (SPIN `constants.py`: `J24_TO_J17` of the SPIN-24
# ground truth, `H36M_TO_J17` of the H36M-regressed prediction): J14, then pelvis, spine and
# the 3DHP 'head' (SPIN's preprocessing stores it in the 'Jaw (H36M)' column).
SPIN_J17 = JointSet("spin_j17", LSP_14.names + ("pelvis_mpii", "spine_h36m", "jaw"))

JOINT_SETS: dict[str, JointSet] = {
    s.name: s
    for s in (SMPL_24, SPIN_24, OPENPOSE_25, COCO_17, COCO_18, H36M_17, LSP_14,
              MPI_INF_3DHP_28, MPI_INF_3DHP_17, SPIN_J17)
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
H36M_PELVIS = H36M_17.index["pelvis_mpii"]  # SPIN eval.py: pelvis = H36M joint 0

# How each KEYPOINTS_2D joint is read off an SMPL mesh, so that predictions and
# SMPL-derived ground truth go through one table. SPIN (`smpl.py`, JOINT_MAP) takes limbs
# from SMPL joints, face points from vertices (smplx `vertex_ids['smplh']`) and hips /
# neck / head top / pelvis / thorax / spine / jaw / head from `J_regressor_extra`; we have
# no `J_regressor_extra` asset, so those come from the H36M regressor rows of the same
# name, the rows whose mocap joints SPIN's H36M labels put in those columns (H36M_17).
# SPIN issue #22: `J_regressor_extra` rows 'Jaw' and 'Spine' equal `J_regressor_h36m` rows
# 9 and 7; its 'Head' is close to row 10. `head_top` (LSP) takes row 10 as SPIN's J14
# evaluation does (`H36M_TO_J14[13] = 10`); `thorax` is SMPL's neck joint (ours).
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
    "head_top": ("h36m17", "head_h36m"),
    "pelvis_mpii": ("h36m17", "pelvis_mpii"),
    "thorax": ("smpl24", "neck"),
    "spine_h36m": ("h36m17", "spine_h36m"),
    "jaw": ("h36m17", "jaw"),
    "head_h36m": ("h36m17", "head_h36m"),
    "nose": ("vertex", 332),
    "left_eye": ("vertex", 2800),
    "right_eye": ("vertex", 6260),
    "left_ear": ("vertex", 583),
    "right_ear": ("vertex", 4071),
}
assert tuple(KEYPOINTS_FROM_MESH) == KEYPOINTS_2D.names
