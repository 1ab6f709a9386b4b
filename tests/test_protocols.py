"""eval.protocols: declared protocols, and the scoring math on known cases."""
import numpy as np
import pytest
import torch

from datasets import joints as J
from eval import protocols as P

V = P.NUM_SMPL_VERTICES


def _disjoint_regressor(n_joints, support, rng):
    """(J, 6890): each joint averages its own `support` vertices (disjoint blocks)."""
    reg = np.zeros((n_joints, V))
    for j in range(n_joints):
        cols = np.arange(j * support, (j + 1) * support)
        w = rng.uniform(0.5, 1.5, size=support)
        reg[j, cols] = w / w.sum()
    return reg


@pytest.fixture
def body():
    rng = np.random.default_rng(7)
    verts = rng.normal(scale=0.3, size=(5, V, 3)) + np.array([0.0, 0.2, 4.0])
    return rng, verts


def test_protocols_are_declared_objects():
    assert set(P.PROTOCOLS) == {"3dpw", "rich"}
    pw = P.PROTOCOLS["3dpw"]
    assert pw.eval_index.tolist() == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]  # SPIN H36M_TO_J14
    assert pw.root_index.tolist() == [0] and pw.regressor == "h36m" and pw.ground_truth == "smpl"
    assert pw.expected_sequences == 24
    rich = P.PROTOCOLS["rich"]
    assert rich.eval_index.tolist() == list(range(24))
    assert rich.root_index.tolist() == [1, 2]  # WHAM pelvis_idxs for RICH
    assert rich.regressor == "smpl" and rich.ground_truth == "smplx_to_smpl"
    with pytest.raises(KeyError, match="not in joint set"):
        P.Protocol("x", "x", "test", "h36m", J.H36M_17, ("nose",), ("pelvis_h36m",), "smpl", "")
    with pytest.raises(ValueError, match="regressor"):
        P.Protocol("x", "x", "test", "vertex", J.H36M_17, ("left_hip",), ("pelvis_h36m",), "smpl", "")


@pytest.mark.parametrize("name", sorted(P.PROTOCOLS))
def test_ground_truth_as_prediction_scores_zero(name, body):
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    out = proto.score(verts, verts, reg)
    assert set(out) == {"mpjpe", "pa_mpjpe", "pve"}
    for v in out.values():
        assert v.shape == (5,) and np.allclose(v, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(P.PROTOCOLS))
def test_global_shift_is_removed_by_the_root(name, body):
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    out = proto.score(verts + np.array([0.1, -0.3, 2.0]), verts, reg)
    for v in out.values():
        np.testing.assert_allclose(v, 0.0, atol=1e-9)


@pytest.mark.parametrize("name", sorted(P.PROTOCOLS))
def test_moving_everything_but_the_root_by_10mm(name, body):
    """Shift every vertex outside the root joints' support by 10 mm: the root stays,
    every scored joint moves 10 mm (its support is disjoint from the root's, except the
    root joints themselves when scored), PVE = 10 mm x fraction of moved vertices,
    and a pure translation of the scored joints has PA-MPJPE 0."""
    rng, verts = body
    proto = P.PROTOCOLS[name]
    reg = _disjoint_regressor(len(proto.joint_set), 50, rng)
    root_support = np.flatnonzero(reg[proto.root_index].sum(0))
    moved = np.ones(V, bool)
    moved[root_support] = False
    shift = np.array([0.0, 0.006, 0.008])  # 10 mm
    pred = verts.copy()
    pred[:, moved] += shift
    out = proto.score(pred, verts, reg)
    scored_is_root = np.isin(proto.eval_index, proto.root_index)
    expected_mpjpe = 10.0 * (~scored_is_root).mean()
    np.testing.assert_allclose(out["mpjpe"], expected_mpjpe, rtol=1e-9)
    np.testing.assert_allclose(out["pve"], 10.0 * moved.mean(), rtol=1e-9)
    if not scored_is_root.any():
        np.testing.assert_allclose(out["pa_mpjpe"], 0.0, atol=1e-8)
    else:
        assert np.all(out["pa_mpjpe"] < expected_mpjpe)


def test_score_matches_a_direct_computation(body):
    rng, verts = body
    proto = P.PROTOCOLS["3dpw"]
    reg = rng.uniform(size=(17, V))
    reg /= reg.sum(1, keepdims=True)
    pred = verts + rng.normal(scale=0.02, size=verts.shape)
    out = proto.score(torch.from_numpy(pred).float(), verts, reg)
    pj, gj = reg @ pred, reg @ verts  # (N, 17, 3) via broadcasting matmul
    pj = pj - pj[:, :1]
    gj = gj - gj[:, :1]
    idx = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    np.testing.assert_allclose(out["mpjpe"], 1000 * np.linalg.norm(pj[:, idx] - gj[:, idx], axis=-1).mean(-1),
                               rtol=1e-5)
    pv = pred - (reg @ pred)[:, :1]
    gv = verts - (reg @ verts)[:, :1]
    np.testing.assert_allclose(out["pve"], 1000 * np.linalg.norm(pv - gv, axis=-1).mean(-1), rtol=1e-5)


def test_shape_errors_name_the_protocol(body):
    rng, verts = body
    with pytest.raises(ValueError, match="3dpw.*regressor"):
        P.PROTOCOLS["3dpw"].score(verts, verts, np.zeros((24, V)))
    with pytest.raises(ValueError, match="rich.*vertices"):
        P.PROTOCOLS["rich"].score(verts[:, :100], verts[:, :100], np.zeros((24, V)))
