"""Every JointSet against its upstream definition, and the derived index arrays against
SPIN's literal lists.

The upstream lists below are copied from their sources (named at each); a small table
per source renames the upstream names into ours (only the spelling: the order is the
upstream's). A swap of two joints in any of our sets fails here.
"""
import numpy as np
import pytest

from datasets import joints as J

# SPIN constants.py JOINT_NAMES: 25 OpenPose joints, then the 24 ground-truth joints.
SPIN_JOINT_NAMES = [
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow", "OP LWrist",
    "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle", "OP REye", "OP LEye",
    "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle", "Right Wrist", "Right Elbow",
    "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist", "Neck (LSP)", "Top of Head (LSP)",
    "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye",
    "Right Eye", "Left Ear", "Right Ear",
]
# SPIN constants.py selectors and flip permutations
H36M_TO_J17 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
H36M_TO_J14 = H36M_TO_J17[:14]
J24_TO_J17 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]
J24_TO_J14 = J24_TO_J17[:14]
J24_FLIP_PERM = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22]
J49_FLIP_PERM_OP = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]
SMPL_JOINTS_FLIP_PERM = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
# SPIN datasets/preprocess/h36m.py (and h36m_train.py): H36M-17 row i -> SPIN-24 column global_idx[i]
H36M_GLOBAL_IDX = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]
# SPIN datasets/preprocess/mpi_inf_3dhp.py: rows of the 28 (train) / 17 (test) joints -> joints_idx
MPI_JOINTS_IDX = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]
MPI_TRAIN_JOINTS17_IDX = [4, 18, 19, 20, 23, 24, 25, 3, 5, 6, 7, 9, 10, 11, 14, 15, 16]
MPI_TEST_JOINTS17_IDX = [14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]

# OpenPose doc/output.md, POSE_COCO_BODY_PARTS (include/openpose/pose/poseParameters.hpp), without "Bkg"
OPENPOSE_COCO_18 = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
                    "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar"]
# COCO person_keypoints annotations, categories[0]["keypoints"]
COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]
# smplx joint_names.py JOINT_NAMES_DICT['smpl'] = SMPLH_JOINT_NAMES[:22] + ['left_hand', 'right_hand']
# (vchoutas/smplx 4a05f0a; the installed smplx has SMPLH_JOINT_NAMES only), and the SMPL
# kintree_table's parent row
SMPL_JOINT_NAMES = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hand", "right_hand"]
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# MPI-INF-3DHP util/mpii_get_joint_set.m: all_joint_names, and the 'relevant' (test set) joint_idx, 1-based
MPI_ALL_JOINT_NAMES = [
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top", "left_clavicle", "left_shoulder",
    "left_elbow", "left_wrist", "left_hand", "right_clavicle", "right_shoulder", "right_elbow", "right_wrist",
    "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe", "right_hip", "right_knee",
    "right_ankle", "right_foot", "right_toe",
]
MPI_RELEVANT_JOINT_IDX_1BASED = [8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7]

# Our spelling of SPIN's names (the 24 ground-truth joints keep SPIN's dataset tags)
OURS_FROM_SPIN = {
    "OP Nose": "nose", "OP Neck": "neck_op", "OP RShoulder": "right_shoulder", "OP RElbow": "right_elbow",
    "OP RWrist": "right_wrist", "OP LShoulder": "left_shoulder", "OP LElbow": "left_elbow",
    "OP LWrist": "left_wrist", "OP MidHip": "mid_hip", "OP RHip": "right_hip", "OP RKnee": "right_knee",
    "OP RAnkle": "right_ankle", "OP LHip": "left_hip", "OP LKnee": "left_knee", "OP LAnkle": "left_ankle",
    "OP REye": "right_eye", "OP LEye": "left_eye", "OP REar": "right_ear", "OP LEar": "left_ear",
    "OP LBigToe": "left_big_toe", "OP LSmallToe": "left_small_toe", "OP LHeel": "left_heel",
    "OP RBigToe": "right_big_toe", "OP RSmallToe": "right_small_toe", "OP RHeel": "right_heel",
    "Right Ankle": "right_ankle", "Right Knee": "right_knee", "Right Hip": "right_hip", "Left Hip": "left_hip",
    "Left Knee": "left_knee", "Left Ankle": "left_ankle", "Right Wrist": "right_wrist",
    "Right Elbow": "right_elbow", "Right Shoulder": "right_shoulder", "Left Shoulder": "left_shoulder",
    "Left Elbow": "left_elbow", "Left Wrist": "left_wrist", "Neck (LSP)": "neck_lsp",
    "Top of Head (LSP)": "head_top", "Pelvis (MPII)": "pelvis_mpii", "Thorax (MPII)": "thorax",
    "Spine (H36M)": "spine_h36m", "Jaw (H36M)": "jaw", "Head (H36M)": "head_h36m", "Nose": "nose",
    "Left Eye": "left_eye", "Right Eye": "right_eye", "Left Ear": "left_ear", "Right Ear": "right_ear",
}
# Our spelling of the 3DHP names: SPIN's column names for the joints SPIN keeps (its
# joints17_idx -> joints_idx above), 3DHP-tagged names for the rest
OURS_FROM_3DHP = {
    "spine3": "spine3_3dhp", "spine4": "spine4_3dhp", "spine2": "spine2_3dhp", "spine": "spine_h36m",
    "pelvis": "pelvis_mpii", "neck": "neck_lsp", "head": "jaw", "head_top": "head_h36m",
    "left_hand": "left_hand_3dhp", "right_hand": "right_hand_3dhp", "left_foot": "left_foot_3dhp",
    "right_foot": "right_foot_3dhp",
}


def ours_3dhp(name: str) -> str:
    return OURS_FROM_3DHP.get(name, name)


def test_spin24_and_openpose25_are_spins_joint_names():
    assert J.SPIN_24.names == tuple(OURS_FROM_SPIN[n] for n in SPIN_JOINT_NAMES[25:])
    assert J.OPENPOSE_25.names == tuple(OURS_FROM_SPIN[n] for n in SPIN_JOINT_NAMES[:25])
    assert J.KEYPOINTS_2D is J.SPIN_24


def test_coco18_is_openposes_coco_output_order():
    assert J.COCO_18.names == tuple(OURS_FROM_SPIN["OP " + n] for n in OPENPOSE_COCO_18)
    # the eyes and hips, spelled out (a left/right swap of either must fail)
    assert J.COCO_18.names[14:16] == ("right_eye", "left_eye")
    assert (J.COCO_18.names[8], J.COCO_18.names[11]) == ("right_hip", "left_hip")


def test_coco17_is_the_coco_keypoint_order():
    assert J.COCO_17.names == tuple(COCO_KEYPOINTS)


def test_smpl24_is_smplx_joint_names_and_kintree():
    from smplx.joint_names import SMPLH_JOINT_NAMES

    assert J.SMPL_24.names == tuple(SMPL_JOINT_NAMES)
    assert J.SMPL_24.names[:22] == tuple(SMPLH_JOINT_NAMES[:22])
    assert J.SMPL_24.parents == tuple(SMPL_PARENTS)


def test_mpi_inf_3dhp_28_and_17_are_the_official_joint_sets():
    assert J.MPI_INF_3DHP_28.names == tuple(ours_3dhp(n) for n in MPI_ALL_JOINT_NAMES)
    relevant = [MPI_ALL_JOINT_NAMES[i - 1] for i in MPI_RELEVANT_JOINT_IDX_1BASED]  # MATLAB indices
    assert J.MPI_INF_3DHP_17.names == tuple(ours_3dhp(n) for n in relevant)
    # hips spelled out: 28 rows 18 / 23, 17 rows 11 / 8
    assert (J.MPI_INF_3DHP_28.names[18], J.MPI_INF_3DHP_28.names[23]) == ("left_hip", "right_hip")
    assert (J.MPI_INF_3DHP_17.names[11], J.MPI_INF_3DHP_17.names[8]) == ("left_hip", "right_hip")


def test_h36m17_rows_are_the_spin24_columns_spin_writes_them_to():
    assert J.H36M_17.names == tuple(OURS_FROM_SPIN[SPIN_JOINT_NAMES[25 + c]] for c in H36M_GLOBAL_IDX)
    # SPIN constants: H36M_TO_J17 and J24_TO_J17 pick the same joints
    j17 = [J.SPIN_24.names[c] for c in J24_TO_J17]
    assert J.H36M_17.indices(j17).tolist() == H36M_TO_J17


def test_h36m_to_spin24_is_spins_global_idx():
    idx, present = J.mapping(J.H36M_17, J.SPIN_24)
    assert np.flatnonzero(present).tolist() == sorted(H36M_GLOBAL_IDX)
    assert idx[H36M_GLOBAL_IDX].tolist() == list(range(17))
    # SPIN issue #22: 'Jaw (H36M)' is H36M row 9, 'Head (H36M)' row 10
    assert idx[J.SPIN_24.index["jaw"]] == 9 and idx[J.SPIN_24.index["head_h36m"]] == 10


@pytest.mark.parametrize("src, rows", [(J.MPI_INF_3DHP_28, MPI_TRAIN_JOINTS17_IDX),
                                       (J.MPI_INF_3DHP_17, MPI_TEST_JOINTS17_IDX)], ids=["train28", "test17"])
def test_3dhp_to_spin24_is_spins_preprocessing(src, rows):
    idx, present = J.mapping(src, J.SPIN_24)
    assert np.flatnonzero(present).tolist() == sorted(MPI_JOINTS_IDX)
    assert idx[MPI_JOINTS_IDX].tolist() == rows


def test_evaluation_joints_are_spins_j14():
    assert J.H36M_TO_LSP14.tolist() == H36M_TO_J14
    assert J.SPIN_24.indices(J.LSP_14.names).tolist() == J24_TO_J14
    assert J.H36M_PELVIS == 0  # SPIN eval.py centres on H36M joint 0


def test_flip_permutations_are_spins():
    assert J.SPIN_24.flip_permutation().tolist() == J24_FLIP_PERM
    assert J.OPENPOSE_25.flip_permutation().tolist() == J49_FLIP_PERM_OP
    assert J.SMPL_24.flip_permutation().tolist() == SMPL_JOINTS_FLIP_PERM


def test_head_points_read_off_the_mesh_as_spins_columns():
    # the mesh supplies each H36M-derived column from the H36M row SPIN's labels put there
    mesh = J.KEYPOINTS_FROM_MESH
    for col, row in zip(H36M_GLOBAL_IDX, range(17)):
        name = J.SPIN_24.names[col]
        if mesh[name][0] == "h36m17":
            assert J.H36M_17.index[mesh[name][1]] == row, name
    assert J.H36M_17.index[mesh["jaw"][1]] == 9 and J.H36M_17.index[mesh["head_h36m"][1]] == 10
    assert all(mesh[n] is not None for n in J.KEYPOINTS_2D.names)
