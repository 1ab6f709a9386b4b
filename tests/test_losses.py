"""train.losses: each term against a hand computation, masking by validity, the pelvis,
the reprojection in the original image and BEDLAM's terms."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets.joints import KEYPOINTS_2D
from model.geometry import axis_angle_to_matrix, cam_crop_to_full, project
from train.config import LossConfig
from train.losses import PELVIS_JOINTS, TERMS, Targets, compute_losses, masked_mean, pelvis, project_full

B, V = 3, 50
HIPS = KEYPOINTS_2D.indices(PELVIS_JOINTS)
CROP = LossConfig(reprojection="crop", vertices_frame="pelvis")  # the loss before the full-image recipe


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    valid = torch.ones(24, dtype=torch.bool)
    valid[KEYPOINTS_2D.index["head_top"]] = False  # a joint the mesh lacks (no H36M regressor)
    pred = SimpleNamespace(rotmats=axis_angle_to_matrix(0.3 * r(B, 24, 3)), betas=r(B, 10),
                           vertices=r(B, V, 3), keypoints_3d=r(B, 24, 3), keypoints_valid=valid,
                           keypoints_2d=100 + 30 * r(B, 24, 2), cam=torch.tensor([0.9, 0.05, 0.2]) + 0.05 * r(B, 3))
    j3d = torch.cat([r(B, 24, 3), torch.ones(B, 24, 1)], -1)
    k2d = torch.cat([100 + 30 * r(B, 24, 2), torch.rand(B, 24, 1, generator=g)], -1)
    full = torch.cat([600 + 200 * r(B, 24, 2), k2d[..., 2:]], -1)
    K = torch.tensor([[1100.0, 0, 950], [0, 1100, 530], [0, 0, 1]]).expand(B, 3, 3)
    t = Targets(rotmats=axis_angle_to_matrix(0.3 * r(B, 24, 3)), betas=r(B, 10),
                has_smpl=torch.tensor([True, False, True]), joints_3d=j3d, keypoints_2d=k2d,
                keypoints_full=full, K_full=K, box_center=torch.tensor([[900.0, 500], [300, 700], [1500, 400]]),
                box_size=torch.tensor([[300.0, 400], [150, 200], [450, 600]]),
                image_wh=torch.tensor([[1920.0, 1080]]).expand(B, 2), vertices=r(B, V, 3), mesh_keypoints=r(B, 24, 3))
    return pred, t


def _full_2d(pred, t):
    """The predicted keypoints in full-image pixels, by hand: CLIFF's cam_crop2full with the
    principal point of K (the image centre in CLIFF), then the pinhole projection."""
    s, tx, ty = pred.cam.unbind(-1)
    f, px, py = t.K_full[:, 0, 0], t.K_full[:, 0, 2], t.K_full[:, 1, 2]
    bs = t.box_size[:, 1] * s
    T = torch.stack([tx + 2 * (t.box_center[:, 0] - px) / bs, ty + 2 * (t.box_center[:, 1] - py) / bs, 2 * f / bs], -1)
    X = pred.keypoints_3d + T[:, None]
    return torch.stack([f[:, None] * X[..., 0] / X[..., 2] + px[:, None], f[:, None] * X[..., 1] / X[..., 2] + py[:, None]], -1)


def test_each_term_matches_a_hand_computation():
    pred, t = _case()
    total, terms = compute_losses(pred, t, CROP)
    smpl = [0, 2]  # samples with SMPL targets
    np.testing.assert_allclose(terms["pose"], ((pred.rotmats - t.rotmats)[smpl] ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["betas"], ((pred.betas - t.betas)[smpl] ** 2).mean(), rtol=1e-5)
    # 3D: pelvis = mean of the hips, every joint the mesh defines (conf 1), all samples
    p = pred.keypoints_3d - pred.keypoints_3d[:, HIPS].mean(1, keepdim=True)
    g = t.joints_3d[..., :3] - t.joints_3d[:, HIPS, :3].mean(1, keepdim=True)
    d = pred.keypoints_valid
    np.testing.assert_allclose(terms["joints_3d"], ((p - g)[:, d] ** 2).mean(), rtol=1e-5)
    # 2D (crop): normalised by half the crop height (128 px), weighted by confidence over valid entries
    err = (((pred.keypoints_2d - t.keypoints_2d[..., :2]) / 128) ** 2)[:, d]  # (B, 23, 2)
    w = t.keypoints_2d[:, d, 2]
    np.testing.assert_allclose(terms["joints_2d"], (w[..., None] * err).sum() / (w.numel() * 2), rtol=1e-5)
    pv = pred.vertices - pred.keypoints_3d[:, HIPS].mean(1, keepdim=True)
    gv = t.vertices - t.mesh_keypoints[:, HIPS].mean(1, keepdim=True)
    np.testing.assert_allclose(terms["vertices"], ((pv - gv)[smpl] ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["cam"], (torch.exp(-10 * pred.cam[:, 0]) ** 2).mean(), rtol=1e-5)
    expect = terms["pose"] + terms["betas"] + 5 * terms["joints_3d"] + 5 * terms["joints_2d"] + 60 * terms["vertices"]
    np.testing.assert_allclose(total, expect, rtol=1e-6)


def test_the_default_2d_term_compares_in_the_original_image_as_bedlam_normalises():
    """2D keypoints reprojected by the sample's camera and compared in original-image pixels:
    BEDLAM losses.py (bedlam_bbox): (2 u / size - 1) per axis, squared error x size / box size."""
    pred, t = _case()
    _, terms = compute_losses(pred, t, LossConfig())
    d = pred.keypoints_valid
    size, box = t.image_wh[:, None], t.box_size[:, None]  # (B, 1, 2)
    norm = lambda u: 2 * u / size - 1  # noqa: E731
    err = ((norm(_full_2d(pred, t)) - norm(t.keypoints_full[..., :2])) ** 2 * size / box)[:, d]  # (B, 23, 2)
    w = t.keypoints_full[:, d, 2]
    np.testing.assert_allclose(terms["joints_2d"], (w[..., None] * err).sum() / (w.numel() * 2), rtol=1e-4)
    # the crop-camera prediction plays no part; the full-image labels do
    pred.keypoints_2d = pred.keypoints_2d + 1e3
    assert compute_losses(pred, t, LossConfig())[1]["joints_2d"] == terms["joints_2d"]
    # vertices: uncentred, SMPL origin on both sides (SPIN/CLIFF/BEDLAM shape_loss)
    np.testing.assert_allclose(terms["vertices"], ((pred.vertices - t.vertices)[[0, 2]] ** 2).mean(), rtol=1e-5)


def test_the_2d_term_sends_gradients_to_the_camera():
    pred, t = _case()
    pred.cam.requires_grad_(True)
    compute_losses(pred, t, LossConfig())[1]["joints_2d"].backward()
    assert torch.isfinite(pred.cam.grad).all() and (pred.cam.grad.abs() > 0).all()


@pytest.mark.parametrize("cfg", [CROP, LossConfig()], ids=["crop", "full"])
def test_invalid_targets_give_no_gradient_and_do_not_move_the_loss(cfg):
    pred, t = _case()
    t.joints_3d[0, 5, 3] = 0  # an absent 3D joint
    t.keypoints_2d[2, 7, 2] = t.keypoints_full[2, 7, 2] = 0  # a zero-confidence keypoint
    for f in ("rotmats", "betas", "vertices", "keypoints_3d", "keypoints_2d", "cam"):
        getattr(pred, f).requires_grad_(True)
    total, _ = compute_losses(pred, t, cfg)
    total.backward()
    # sample 1 has no SMPL: no gradient through its parameters or vertices
    assert pred.rotmats.grad[1].abs().max() == 0 and pred.betas.grad[1].abs().max() == 0
    assert pred.vertices.grad[1].abs().max() == 0
    # garbage in invalid targets changes nothing
    t2 = replace(t, rotmats=t.rotmats.clone(), betas=t.betas.clone(), vertices=t.vertices.clone(),
                 joints_3d=t.joints_3d.clone(), keypoints_2d=t.keypoints_2d.clone(), keypoints_full=t.keypoints_full.clone())
    t2.rotmats[1], t2.betas[1], t2.vertices[1] = 1e6, -1e6, 1e6
    t2.joints_3d[0, 5, :3] = 1e6
    t2.keypoints_2d[2, 7, :2] = t2.keypoints_full[2, 7, :2] = 1e6
    a = compute_losses(pred, t, cfg)[1]
    b = compute_losses(pred, t2, cfg)[1]
    for k in TERMS:
        np.testing.assert_allclose(a[k].detach(), b[k].detach(), rtol=1e-6)
    if cfg.reprojection == "crop":  # (with "full" the 3D joints also carry the 2D term's gradient)
        assert pred.keypoints_3d.grad[0, 5].abs().max() == 0 and pred.keypoints_2d.grad[2, 7].abs().max() == 0


def test_a_sample_without_both_hips_has_no_3d_joint_loss():
    pred, t = _case()
    t.joints_3d[:, HIPS[0], 3] = 0  # no left hip anywhere: no pelvis, no 3D term
    _, terms = compute_losses(pred, t, LossConfig())
    assert terms["joints_3d"] == 0


def test_joint_terms_are_pelvis_relative_and_vertices_as_configured():
    pred, t = _case()
    shift = torch.tensor([0.3, -2.0, 5.0])
    moved = replace(t, joints_3d=torch.cat([t.joints_3d[..., :3] + shift, t.joints_3d[..., 3:]], -1),
                    vertices=t.vertices + shift, mesh_keypoints=t.mesh_keypoints + shift)
    for cfg, vertices_move in ((CROP, False), (LossConfig(), True)):
        _, a = compute_losses(pred, t, cfg)
        _, b = compute_losses(pred, moved, cfg)
        np.testing.assert_allclose(a["joints_3d"], b["joints_3d"], rtol=1e-4)
        assert (abs(float(a["vertices"] - b["vertices"])) > 1) == vertices_move


def test_perfect_prediction_has_zero_loss():
    pred, t = _case()
    t.has_smpl[:] = True
    pred.rotmats, pred.betas, pred.vertices = t.rotmats, t.betas, t.vertices
    pred.keypoints_3d = t.mesh_keypoints = t.joints_3d[..., :3]
    pred.keypoints_2d = t.keypoints_2d[..., :2]
    t.keypoints_full = torch.cat([project_full(pred, t), t.keypoints_full[..., 2:]], -1)
    for cfg in (LossConfig(), CROP):
        total, terms = compute_losses(pred, t, cfg)
        assert float(total) == pytest.approx(0.0, abs=1e-10)
        assert set(terms) == set(TERMS)


def test_bedlam_loss_config_has_bedlam_terms():
    """configs/loss-bedlam.yaml against BEDLAM train/losses/losses.py HMRLoss with
    configs/orig_cliff.yaml: ×60 over pose without the root, betas ×0.001, GT-mesh 3D joints
    uncentred and unweighted, full-image 2D, L1 uncentred vertices, loss_cam = exp(-10 s)^2."""
    from train.config import CONFIG_DIR, load_config

    cfg = load_config(CONFIG_DIR / "loss-bedlam.yaml").loss
    pred, t = _case()
    total, terms = compute_losses(pred, t, cfg)
    smpl, d = [0, 2], pred.keypoints_valid
    np.testing.assert_allclose(terms["pose"], ((pred.rotmats - t.rotmats)[smpl, 1:] ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["joints_3d"], ((pred.keypoints_3d - t.mesh_keypoints)[smpl][:, d] ** 2).mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(terms["vertices"], (pred.vertices - t.vertices)[smpl].abs().mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["cam"], (torch.exp(-pred.cam[:, 0] * 10) ** 2).mean(), rtol=1e-5)
    assert terms["joints_2d"] == compute_losses(pred, t, LossConfig())[1]["joints_2d"]
    expect = 60 * (terms["pose"] + 0.001 * terms["betas"] + 5 * terms["joints_3d"] + 5 * terms["joints_2d"]
                   + terms["vertices"] + terms["cam"])
    np.testing.assert_allclose(total, expect, rtol=1e-6)


def test_the_camera_term_stays_finite_and_skips_padded_rows():
    pred, t = _case()
    pred.cam = pred.cam.clone()
    pred.cam[1, 0] = -50.0  # exp(500) would overflow
    t.box_size = t.box_size.clone()
    t.box_size[2] = 0  # a padded row (train.batch.pad_batch)
    _, terms = compute_losses(pred, t, LossConfig())
    assert all(torch.isfinite(v) for v in terms.values())
    np.testing.assert_allclose(terms["cam"], (torch.exp(-10 * pred.cam[:2, 0].clamp_min(-4)) ** 2).mean(), rtol=1e-5)


def test_masked_mean_of_nothing_is_zero():
    assert masked_mean(torch.ones(2, 3, 4), torch.zeros(2, 3)) == 0


def test_smplx_parameters_never_supervise_smpl():
    from train.losses import make_targets

    batch = {"smpl_pose": torch.zeros(3, 24, 3), "betas": torch.zeros(3, 10),
             "has_smpl": torch.tensor([True, True, False]), "is_smpl": torch.tensor([True, False, True]),
             "joints_3d": torch.zeros(3, 24, 4), "keypoints_2d": torch.zeros(3, 24, 3),
             "image_hw": torch.full((3, 2), 100.0), "box_center": torch.full((3, 2), 50.0),
             "box_size": torch.full((3, 2), 40.0), "crop_affine": torch.zeros(3, 2, 3),
             "intrinsics": torch.zeros(3, 3, 3), "has_intrinsics": torch.zeros(3, dtype=torch.bool)}
    t = make_targets(batch, None)
    assert t.has_smpl.tolist() == [True, False, False] and t.vertices is None
    assert torch.allclose(t.rotmats, torch.eye(3).expand(3, 24, 3, 3))


def test_masked_mean_divides_by_the_valid_entries():
    err = torch.tensor([[[3.0, 5.0], [100.0, 100.0]]])  # (1, 2, 2): one valid joint of 2 values
    assert masked_mean(err, torch.tensor([[1.0, 0.0]])) == 4.0


def test_make_targets_carries_the_batch_and_poses_the_target_mesh():
    """The target mesh is the body model at the batch's betas, body pose (joints 1-23) and
    global orientation (joint 0); the other targets are the batch's, as float32."""
    from train.losses import make_targets

    g = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(2, 24, 3, generator=g)
    batch = {"smpl_pose": pose.double(), "betas": torch.randn(2, 10, generator=g).double(),
             "has_smpl": torch.tensor([True, False]), "is_smpl": torch.tensor([True, True]),
             "joints_3d": torch.randn(2, 24, 4, generator=g).double(),
             "keypoints_2d": torch.randn(2, 24, 3, generator=g).double(),
             "image_hw": torch.full((2, 2), 100.0), "box_center": torch.full((2, 2), 50.0),
             "box_size": torch.full((2, 2), 40.0), "crop_affine": torch.zeros(2, 2, 3),
             "intrinsics": torch.zeros(2, 3, 3), "has_intrinsics": torch.zeros(2, dtype=torch.bool)}
    seen = {}

    def body_model(**kw):
        seen.update(kw)
        return SimpleNamespace(vertices=torch.full((2, V, 3), 7.0, dtype=torch.float64),
                               keypoints=torch.full((2, 24, 3), 8.0, dtype=torch.float64))

    t = make_targets(batch, body_model)
    rot = axis_angle_to_matrix(pose)
    torch.testing.assert_close(t.rotmats, rot)
    torch.testing.assert_close(seen["global_orient"], rot[:, :1])
    torch.testing.assert_close(seen["body_pose"], rot[:, 1:])
    assert seen["betas"] is t.betas
    for name in ("betas", "joints_3d", "keypoints_2d"):
        assert getattr(t, name).dtype == torch.float32 and torch.equal(getattr(t, name), batch[name].float()), name
    assert t.has_smpl.tolist() == [True, False]
    assert t.vertices.dtype == t.mesh_keypoints.dtype == torch.float32
    assert (t.vertices == 7).all() and (t.mesh_keypoints == 8).all()


def test_the_vertex_loss_needs_both_meshes():
    pred, t = _case()
    t.vertices = t.mesh_keypoints = None
    with pytest.raises(ValueError, match="losses need the predicted and the target mesh"):
        compute_losses(pred, t, LossConfig())
    pred, t = _case()
    pred.vertices = None
    with pytest.raises(ValueError, match="losses need the predicted and the target mesh"):
        compute_losses(pred, t, LossConfig())


def test_make_targets_puts_the_labels_and_the_camera_in_the_full_image():
    """keypoints_full: the crop-pixel labels taken back through the box (x = c + k (u - u0),
    k = box height / 256, u0 = ((192 - 1) / 2, (256 - 1) / 2)), confidence kept; K_full: the
    dataset's crop K taken the same way, or, without one, CLIFF's K of the original image
    (focal = image diagonal, principal point at its centre); image_wh = (width, height)."""
    from train.losses import make_targets

    kp = torch.tensor([[[95.5, 127.5, 1.0], [0.0, 0.0, 0.5]] + [[10.0, 20.0, 0.0]] * 22,
                       [[95.5, 127.5, 0.25], [191.0, 255.0, 1.0]] + [[10.0, 20.0, 0.0]] * 22])
    center = torch.tensor([[400.0, 300.0], [1000.0, 500.0]])
    size = torch.tensor([[192.0, 256.0], [384.0, 512.0]])  # k = 1 and 2
    K_crop = torch.tensor([[500.0, 0, 95.5], [0, 500, 127.5], [0, 0, 1]])
    # row 1's crop affine (original -> crop pixels) of its box: u = (x - c) / k + u0
    A1 = torch.tensor([[0.5, 0, 95.5 - 500], [0, 0.5, 127.5 - 250]])
    batch = {"smpl_pose": torch.zeros(2, 24, 3), "betas": torch.zeros(2, 10),
             "has_smpl": torch.tensor([True, True]), "is_smpl": torch.tensor([True, True]),
             "joints_3d": torch.zeros(2, 24, 4), "keypoints_2d": kp,
             "image_hw": torch.tensor([[600.0, 800.0], [1080.0, 1920.0]]), "box_center": center, "box_size": size,
             "crop_affine": torch.stack([torch.zeros(2, 3), A1]), "intrinsics": torch.stack([K_crop, torch.zeros(3, 3)]),
             "has_intrinsics": torch.tensor([True, False])}
    t = make_targets(batch, None)
    expect_full = torch.tensor([[[400.0, 300.0, 1.0], [304.5, 172.5, 0.5]],
                                [[1000.0, 500.0, 0.25], [1191.0, 755.0, 1.0]]])
    torch.testing.assert_close(t.keypoints_full[:, :2], expect_full)
    torch.testing.assert_close(t.keypoints_full[:, 2:, 2], kp[:, 2:, 2])
    torch.testing.assert_close(t.image_wh, torch.tensor([[800.0, 600.0], [1920.0, 1080.0]]))
    assert torch.equal(t.box_center, center) and torch.equal(t.box_size, size)
    # row 0: [[k, 0, cx - k u0x], [0, k, cy - k u0y], [0, 0, 1]] @ K_crop with k = 1
    K0 = torch.tensor([[500.0, 0, 400], [0, 500, 300], [0, 0, 1]])
    K1 = torch.tensor([[2202.9071, 0, 959.5], [0, 2202.9071, 539.5], [0, 0, 1]])  # sqrt(1920^2 + 1080^2)
    torch.testing.assert_close(t.K_full, torch.stack([K0, K1]))


def test_masked_mean_of_one_valid_value_is_that_value_in_the_error_precision():
    err = torch.tensor([[[2.5], [7.0]]])  # (1, 2, 1)
    assert masked_mean(err, torch.tensor([[1.0, 0.0]])) == 2.5
    # the weight (a bool mask, a float64 confidence) does not change the loss's precision
    for weight in (torch.tensor([[True, False]]), torch.tensor([[1.0, 0.0]], dtype=torch.float64)):
        out = masked_mean(err, weight)
        assert out.dtype == torch.float32 and out == 2.5
    assert masked_mean(err.half(), torch.tensor([[1.0, 0.0]])).dtype == torch.float16


def test_a_row_of_one_pixel_is_scored_as_any_other():
    """The floors that keep a padded row's zero box and image finite (1 px) leave a real row
    of 1 px as it is: BEDLAM's 2D normalisation with its own sizes, and the camera term."""
    pred, t = _case()
    t.image_wh = t.image_wh.clone()
    t.image_wh[0] = torch.tensor([1.0, 1.5])
    t.box_size = t.box_size.clone()
    t.box_size[0] = torch.tensor([1.5, 1.0])
    _, terms = compute_losses(pred, t, LossConfig())
    d = pred.keypoints_valid
    size, box = t.image_wh[:, None], t.box_size[:, None]  # (B, 1, 2)
    err = ((2 * (_full_2d(pred, t) - t.keypoints_full[..., :2]) / size) ** 2 * size / box)[:, d]  # (B, 23, 2)
    w = t.keypoints_full[:, d, 2]
    np.testing.assert_allclose(terms["joints_2d"], (w[..., None] * err).sum() / (w.numel() * 2), rtol=1e-4)
    np.testing.assert_allclose(terms["cam"], (torch.exp(-10 * pred.cam[:, 0]) ** 2).mean(), rtol=1e-5)
