"""train.losses: each term against a hand computation, masking by validity, the pelvis,
and the BEDLAM switch."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets.joints import KEYPOINTS_2D
from model.geometry import axis_angle_to_matrix
from train.config import LossConfig
from train.losses import PELVIS_JOINTS, TERMS, Targets, compute_losses, masked_mean, pelvis

B, V = 3, 50
HIPS = KEYPOINTS_2D.indices(PELVIS_JOINTS)


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    valid = torch.ones(24, dtype=torch.bool)
    valid[KEYPOINTS_2D.index["head_top"]] = False  # a joint the mesh lacks (no H36M regressor)
    pred = SimpleNamespace(rotmats=axis_angle_to_matrix(0.3 * r(B, 24, 3)), betas=r(B, 10),
                           vertices=r(B, V, 3), keypoints_3d=r(B, 24, 3), keypoints_valid=valid,
                           keypoints_2d=100 + 30 * r(B, 24, 2))
    j3d = torch.cat([r(B, 24, 3), torch.ones(B, 24, 1)], -1)
    k2d = torch.cat([100 + 30 * r(B, 24, 2), torch.rand(B, 24, 1, generator=g)], -1)
    t = Targets(rotmats=axis_angle_to_matrix(0.3 * r(B, 24, 3)), betas=r(B, 10),
                has_smpl=torch.tensor([True, False, True]), joints_3d=j3d, keypoints_2d=k2d,
                vertices=r(B, V, 3), mesh_keypoints=r(B, 24, 3))
    return pred, t


def test_each_term_matches_a_hand_computation():
    pred, t = _case()
    cfg = LossConfig()
    total, terms = compute_losses(pred, t, cfg)
    smpl = [0, 2]  # samples with SMPL targets
    np.testing.assert_allclose(terms["pose"], ((pred.rotmats - t.rotmats)[smpl] ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["betas"], ((pred.betas - t.betas)[smpl] ** 2).mean(), rtol=1e-5)
    # 3D: pelvis = mean of the hips, every joint the mesh defines (conf 1), all samples
    p = pred.keypoints_3d - pred.keypoints_3d[:, HIPS].mean(1, keepdim=True)
    g = t.joints_3d[..., :3] - t.joints_3d[:, HIPS, :3].mean(1, keepdim=True)
    d = pred.keypoints_valid
    np.testing.assert_allclose(terms["joints_3d"], ((p - g)[:, d] ** 2).mean(), rtol=1e-5)
    # 2D: normalised by half the crop height (128 px), weighted by confidence over valid entries
    err = (((pred.keypoints_2d - t.keypoints_2d[..., :2]) / 128) ** 2)[:, d]  # (B, 23, 2)
    w = t.keypoints_2d[:, d, 2]
    np.testing.assert_allclose(terms["joints_2d"], (w[..., None] * err).sum() / (w.numel() * 2), rtol=1e-5)
    pv = pred.vertices - pred.keypoints_3d[:, HIPS].mean(1, keepdim=True)
    gv = t.vertices - t.mesh_keypoints[:, HIPS].mean(1, keepdim=True)
    np.testing.assert_allclose(terms["vertices"], ((pv - gv)[smpl] ** 2).mean(), rtol=1e-5)
    expect = terms["pose"] + terms["betas"] + 5 * terms["joints_3d"] + 5 * terms["joints_2d"] + 60 * terms["vertices"]
    np.testing.assert_allclose(total, expect, rtol=1e-6)


def test_invalid_targets_give_no_gradient_and_do_not_move_the_loss():
    pred, t = _case()
    t.joints_3d[0, 5, 3] = 0  # an absent 3D joint
    t.keypoints_2d[2, 7, 2] = 0  # a zero-confidence keypoint
    for f in ("rotmats", "betas", "vertices", "keypoints_3d", "keypoints_2d"):
        getattr(pred, f).requires_grad_(True)
    total, _ = compute_losses(pred, t, LossConfig())
    total.backward()
    # sample 1 has no SMPL: no gradient through its parameters or vertices
    assert pred.rotmats.grad[1].abs().max() == 0 and pred.betas.grad[1].abs().max() == 0
    assert pred.vertices.grad[1].abs().max() == 0
    # garbage in invalid targets changes nothing
    t2 = Targets(**{**t.__dict__})
    t2.rotmats, t2.betas, t2.vertices = t.rotmats.clone(), t.betas.clone(), t.vertices.clone()
    t2.rotmats[1], t2.betas[1], t2.vertices[1] = 1e6, -1e6, 1e6
    t2.joints_3d = t.joints_3d.clone()
    t2.joints_3d[0, 5, :3] = 1e6
    t2.keypoints_2d = t.keypoints_2d.clone()
    t2.keypoints_2d[2, 7, :2] = 1e6
    a = compute_losses(pred, t, LossConfig())[1]
    b = compute_losses(pred, t2, LossConfig())[1]
    for k in TERMS:
        np.testing.assert_allclose(a[k].detach(), b[k].detach(), rtol=1e-6)
    assert pred.keypoints_3d.grad[0, 5].abs().max() == 0 and pred.keypoints_2d.grad[2, 7].abs().max() == 0


def test_a_sample_without_both_hips_has_no_3d_joint_loss():
    pred, t = _case()
    t.joints_3d[:, HIPS[0], 3] = 0  # no left hip anywhere: no pelvis, no 3D term
    _, terms = compute_losses(pred, t, LossConfig())
    assert terms["joints_3d"] == 0


def test_joint_and_vertex_terms_are_pelvis_relative():
    pred, t = _case()
    _, a = compute_losses(pred, t, LossConfig())
    shift = torch.tensor([0.3, -2.0, 5.0])
    t.joints_3d[..., :3] += shift
    t.vertices += shift
    t.mesh_keypoints += shift
    pred.vertices = pred.vertices - shift
    pred.keypoints_3d = pred.keypoints_3d - shift
    _, b = compute_losses(pred, t, LossConfig())
    for k in ("joints_3d", "vertices"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4)


def test_perfect_prediction_has_zero_loss():
    pred, t = _case()
    t.has_smpl[:] = True
    pred.rotmats, pred.betas, pred.vertices = t.rotmats, t.betas, t.vertices
    pred.keypoints_3d = t.joints_3d[..., :3]
    t.mesh_keypoints = pred.keypoints_3d
    pred.keypoints_2d = t.keypoints_2d[..., :2]
    total, terms = compute_losses(pred, t, LossConfig())
    assert float(total) == pytest.approx(0.0, abs=1e-10)
    assert set(terms) == set(TERMS)


def test_bedlam_switch_uses_l1_vertices_and_a_global_weight():
    pred, t = _case()
    cfg = LossConfig(betas=0.001, vertices=1.0, vertices_criterion="l1", global_weight=60.0)
    total, terms = compute_losses(pred, t, cfg)
    pv = pred.vertices - pelvis(pred.keypoints_3d)
    gv = t.vertices - pelvis(t.mesh_keypoints)
    np.testing.assert_allclose(terms["vertices"], (pv - gv)[[0, 2]].abs().mean(), rtol=1e-5)
    expect = 60 * (terms["pose"] + 0.001 * terms["betas"] + 5 * terms["joints_3d"] + 5 * terms["joints_2d"]
                   + terms["vertices"])
    np.testing.assert_allclose(total, expect, rtol=1e-6)


def test_masked_mean_of_nothing_is_zero():
    assert masked_mean(torch.ones(2, 3, 4), torch.zeros(2, 3)) == 0


def test_smplx_parameters_never_supervise_smpl():
    from train.losses import make_targets

    batch = {"smpl_pose": torch.zeros(3, 24, 3), "betas": torch.zeros(3, 10),
             "has_smpl": torch.tensor([True, True, False]), "is_smpl": torch.tensor([True, False, True]),
             "joints_3d": torch.zeros(3, 24, 4), "keypoints_2d": torch.zeros(3, 24, 3)}
    t = make_targets(batch, None)
    assert t.has_smpl.tolist() == [True, False, False] and t.vertices is None
    assert torch.allclose(t.rotmats, torch.eye(3).expand(3, 24, 3, 3))
