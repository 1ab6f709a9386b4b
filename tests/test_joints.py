import numpy as np
import pytest

from datasets import joints as J


def test_lsp14_from_h36m_matches_spin():
    # SPIN constants.py: H36M_TO_J14 = H36M_TO_J17[:14]
    assert J.H36M_TO_LSP14.tolist() == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    assert J.H36M_PELVIS == 0


def test_smpl_kinematic_tree():
    assert len(J.SMPL_24) == 24
    parents = J.SMPL_24.parents
    assert parents[0] == -1 and all(p < i for i, p in enumerate(parents) if i)
    # each left/right child hangs from the same side (or the centre)
    for i, n in enumerate(J.SMPL_24.names):
        p = J.SMPL_24.names[parents[i]] if parents[i] >= 0 else ""
        if n.startswith("left_") and p.startswith("right_") or n.startswith("right_") and p.startswith("left_"):
            pytest.fail(f"{n} hangs from {p}")


@pytest.mark.parametrize("src", list(J.JOINT_SETS.values()), ids=lambda s: s.name)
@pytest.mark.parametrize("dst", list(J.JOINT_SETS.values()), ids=lambda s: s.name)
def test_mapping_tables_move_joints_by_name(src, dst):
    pts = np.random.default_rng(0).normal(size=(2, len(src), 3))
    out = J.convert(pts, src, dst)
    for j, name in enumerate(dst.names):
        if name in src.index:
            np.testing.assert_array_equal(out[:, j], pts[:, src.index[name]])
        else:
            assert np.all(out[:, j] == 0)


def test_known_table_entries():
    # COCO-18 (3DPW poses2d) -> SPIN-24 keeps the 17 shared joints; OpenPose's neck is not LSP's
    idx, present = J.mapping(J.COCO_18, J.SPIN_24)
    assert present.sum() == 17
    assert not present[J.SPIN_24.index["neck_lsp"]]
    assert idx[J.SPIN_24.index["right_ankle"]] == 10
    # MPI-INF-3DHP-28 -> SPIN-24: the 17 joints SPIN's preprocessing keeps (tests/conformance/test_joints.py)
    _, present = J.mapping(J.MPI_INF_3DHP_28, J.SPIN_24)
    assert present.sum() == 17
    # COCO-17 -> SPIN-24 keeps all 17
    _, present = J.mapping(J.COCO_17, J.SPIN_24)
    assert present.sum() == 17


@pytest.mark.parametrize("js", list(J.JOINT_SETS.values()), ids=lambda s: s.name)
def test_flip_permutation_is_an_involution(js):
    perm = js.flip_permutation()
    assert sorted(perm.tolist()) == list(range(len(js)))
    np.testing.assert_array_equal(perm[perm], np.arange(len(js)))
    for i, n in enumerate(js.names):
        if n.startswith("left_") and "right_" + n[5:] in js.index:
            assert js.names[perm[i]] == "right_" + n[5:]


def test_unknown_joint_names_error():
    with pytest.raises(KeyError, match="not in joint set"):
        J.SMPL_24.indices(["nose"])


def test_a_joint_set_indexes_its_names_and_refuses_duplicates():
    js = J.JointSet("t", ("nose", "left_eye", "right_eye", "left_ear"))
    assert js.index == {"nose": 0, "left_eye": 1, "right_eye": 2, "left_ear": 3}
    # a side without its mirror joint (left_ear here) stays in place when flipped
    assert js.flip_permutation().tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="joint set d: duplicate"):
        J.JointSet("d", ("nose", "left_eye", "nose"))


def test_no_names_select_no_joints():
    """An empty name list (two sets that share no joint), or a set without joints, indexes
    an array to nothing, as an empty selection does, rather than failing on a float index."""
    pts = np.zeros((len(J.SMPL_24), 3))
    assert pts[J.SMPL_24.indices([])].shape == (0, 3)
    assert pts[J.SMPL_24.indices(())].shape == (0, 3)
    none = J.JointSet("none", ())
    assert np.zeros((0, 3))[none.flip_permutation()].shape == (0, 3)
