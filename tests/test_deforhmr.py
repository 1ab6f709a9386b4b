"""The full model: heads, IEF from the mean parameters, SMPL outputs, presets, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from datasets.joints import KEYPOINTS_2D
from datasets.record import CROP_HW
from model.config import get_config, preset_names
from model.deforhmr import DeforHMR, ImageModel, ModelOutput
from model.geometry import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix


def _mean_params(seed=0) -> dict:
    """Mean parameters in the `smpl_mean_params.npz` layout, from known rotations."""
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(24, 3, generator=g) * 0.3)
    return {"pose": matrix_to_rot6d(rot).reshape(144).numpy(), "shape": torch.randn(10, generator=g).numpy(),
            "cam": np.array([0.9, 0.0, 0.0], np.float32)}


def _features(cfg, b=2, seed=0):
    return torch.randn(b, cfg.context_dim, *cfg.feature_hw, generator=torch.Generator().manual_seed(seed))


def _zero_heads(model: DeforHMR) -> None:
    with torch.no_grad():
        for head in (model.head_pose, model.head_betas, model.head_cam):
            head.weight.zero_()
            head.bias.zero_()


@pytest.mark.parametrize("name", preset_names(tiny=True))
def test_every_tiny_preset_runs(name):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = DeforHMR(cfg, _mean_params())
    out = model(_features(cfg), need_attention=True)
    assert isinstance(out, ModelOutput)
    assert out.pose_6d.shape == (2, 24, 6) and out.rotmats.shape == (2, 24, 3, 3)
    assert out.betas.shape == (2, 10) and out.cam.shape == (2, 3) and out.cam_t.shape == (2, 3)
    assert out.vertices is None  # no body model injected
    assert len(out.attention) == cfg.depth
    eye = torch.eye(3).expand(2, 24, 3, 3)
    torch.testing.assert_close(out.rotmats @ out.rotmats.transpose(-1, -2), eye, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", preset_names(tiny=False))
def test_every_full_preset_builds(name):
    """Built on the meta device: shapes and parameter counts without the memory."""
    cfg, mean = get_config(name), _mean_params()
    with torch.device("meta"):
        model = DeforHMR(cfg, mean)
    n = sum(p.numel() for p in model.parameters())
    assert 30e6 < n < 150e6, n
    assert model.queries.tokens.shape == (cfg.num_queries, 1024)


def test_zero_heads_return_the_mean_parameters():
    cfg = get_config("def-m-tiny")
    mean = _mean_params()
    model = DeforHMR(cfg, mean)
    _zero_heads(model)
    out = model(_features(cfg))
    torch.testing.assert_close(out.pose_6d, torch.as_tensor(mean["pose"]).reshape(1, 24, 6).expand(2, -1, -1))
    torch.testing.assert_close(out.betas, torch.as_tensor(mean["shape"]).expand(2, -1))
    torch.testing.assert_close(out.cam, torch.as_tensor(mean["cam"]).expand(2, -1))


def test_rot6d_of_mean_parameters_is_the_mean_pose():
    """The interleaved 6D layout of the mean parameters maps back onto the rotations it came from."""
    g = torch.Generator().manual_seed(0)
    rot = axis_angle_to_matrix(torch.randn(24, 3, generator=g) * 0.3)
    model = DeforHMR(get_config("def-s-tiny"), _mean_params(seed=0))
    torch.testing.assert_close(rot6d_to_matrix(model.mean_pose), rot, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["def-m-tiny", "def-s-tiny", "reg-s-tiny", "def-m-pe-absolute-tiny"])
def test_gradients_reach_offsets_rpe_queries_and_heads(name):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = DeforHMR(cfg, _mean_params())
    out = model(_features(cfg))
    (out.pose_6d.square().sum() + out.betas.square().sum() + out.cam.square().sum()).backward()
    named = dict(model.named_parameters())
    must = ["queries.tokens", "head_pose.weight", "head_betas.weight", "head_cam.weight"]
    if cfg.cross_attention == "deformable":
        must += [n for n in named if ".offset_net." in n]
    if cfg.pos_encoding == "relative":
        must += [n for n in named if n.endswith("rpe_table")]
    for name_ in must:
        grad = named[name_].grad
        assert grad is not None and torch.isfinite(grad).all(), name_
        assert grad.abs().sum() > 0, name_
    # and every other parameter gets a finite gradient too
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_full_def_m_forward_backward_on_cpu():
    """Done-when: def-m at full size, a batch of 8 random 1280x16x12 feature maps."""
    cfg = get_config("def-m")
    torch.manual_seed(0)
    model = DeforHMR(cfg, _mean_params())
    features = torch.randn(8, 1280, 16, 12).half()  # the feature caches are fp16
    out = model(features, need_attention=True)
    loss = out.pose_6d.square().mean() + out.betas.square().mean() + out.cam.square().mean()
    loss.backward()
    rpe = model.decoder.layers[0].cross_attn.rpe_table
    assert rpe.grad is not None and rpe.grad.abs().sum() > 0
    assert out.attention[0].positions.shape == (8, 8, 16, 12, 2)
    assert out.attention[-1].weights.shape == (8, 16, 25, 16 * 12)


class _PatchEncoder(nn.Module):
    """A stand-in encoder: 16x16 patches -> C channels (a ViT's output shape)."""

    def __init__(self, c):
        super().__init__()
        self.proj = nn.Conv2d(3, c, 16, stride=16)

    def forward(self, x):
        return self.proj(x)


def test_image_model_freezes_the_encoder():
    cfg = get_config("def-m-tiny")
    model = ImageModel(_PatchEncoder(cfg.context_dim), DeforHMR(cfg, _mean_params())).train()
    assert not model.encoder.training and model.model.training
    h, w = cfg.feature_hw
    out = model(torch.randn(2, 3, 16 * h, 16 * w))
    out.pose_6d.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.model.queries.tokens.grad is not None


def test_summary_command_prints_params_and_flops(capsys):
    from model.summary import main

    names = ["def-m-tiny", "reg-s-tiny", "def-m-pe-absolute-tiny"]
    assert main(names) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == names
    assert all(float(r.split(" | ")[-1].rstrip(" |")) > 0 for r in rows)  # FLOPs counted
    params = sum(p.numel() for p in DeforHMR(get_config("reg-s-tiny"), _mean_params()).parameters())
    assert rows[1].split(" | ")[-2] == f"{params / 1e6:.2f}"


# ---- with the (synthetic) SMPL body model ----------------------------------------------------
@pytest.fixture
def smpl_model(synthetic_assets):
    torch.manual_seed(0)
    return DeforHMR.from_assets(get_config("def-m-tiny"), synthetic_assets)


def test_rot6d_of_the_mean_params_file_is_the_mean_pose(synthetic_assets):
    """smpl_mean_params.npz's interleaved 6D maps to rotations whose 6D is the file's again;
    the root is SPIN's upright pose in the y-down camera frame (π about x)."""
    from model.body_model import load_mean_params

    pose = torch.as_tensor(load_mean_params(synthetic_assets.path("mean_params"))["pose"]).reshape(24, 6)
    rot = rot6d_to_matrix(pose)
    torch.testing.assert_close(matrix_to_rot6d(rot), pose, rtol=0, atol=1e-6)
    torch.testing.assert_close(rot[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])), rtol=0, atol=1e-6)


def test_zero_decoder_output_is_the_mean_smpl_body(smpl_model, synthetic_assets):
    from model.body_model import BodyModel, load_mean_params

    _zero_heads(smpl_model)
    out = smpl_model(_features(smpl_model.cfg))
    mean = load_mean_params(synthetic_assets.path("mean_params"))
    rot = rot6d_to_matrix(torch.as_tensor(mean["pose"]).reshape(1, 24, 6))
    body = BodyModel(synthetic_assets.body_model_dir, gender="neutral")
    ref = body(betas=torch.as_tensor(mean["shape"])[None], body_pose=rot[:, 1:], global_orient=rot[:, :1])
    assert out.vertices.shape == (2, 6890, 3) and out.joints.shape == (2, 24, 3)
    torch.testing.assert_close(out.vertices, ref.vertices.expand(2, -1, -1))
    torch.testing.assert_close(out.joints, ref.joints.expand(2, -1, -1))
    assert out.h36m.shape == (2, 17, 3)
    assert out.keypoints_3d.shape == (2, 24, 3)
    # with the H36M regressor every KEYPOINTS_2D joint is read off the mesh
    assert out.keypoints_valid.all()
    # the mean body under the mean camera stands upright inside the crop
    kp = out.keypoints_2d[0, out.keypoints_valid]
    h, w = CROP_HW
    assert (kp[:, 0] > 0).all() and (kp[:, 0] < w).all() and (kp[:, 1] > 0).all() and (kp[:, 1] < h).all()
    names = KEYPOINTS_2D.index
    assert out.keypoints_2d[0, names["head_top"], 1] < out.keypoints_2d[0, names["left_ankle"], 1]


def test_missing_assets_are_named(tmp_path):
    from datasets.assets import Assets

    with pytest.raises(FileNotFoundError, match="missing asset 'smpl_neutral'"):
        DeforHMR.from_assets(get_config("def-m-tiny"), Assets(root=tmp_path, raw_root=tmp_path))


def test_checkpoints_hold_no_smpl_data_and_the_body_moves_with_the_model(smpl_model):
    sd = smpl_model.state_dict()
    assert not [k for k in sd if k.startswith("body_model.")]
    assert {"mean_pose", "mean_betas", "mean_cam", "queries.tokens"} <= set(sd)
    fresh = DeforHMR(smpl_model.cfg, _mean_params(seed=5))
    fresh.load_state_dict(sd)  # strict: the same keys without a body model
    torch.testing.assert_close(fresh.mean_pose, smpl_model.mean_pose)
    smpl_model.double()
    assert smpl_model.body_model.h36m_regressor.dtype == torch.float64
    out = smpl_model(_features(smpl_model.cfg).double())
    assert out.vertices.dtype == torch.float64


def test_keypoints_2d_follow_the_weak_perspective_camera(smpl_model):
    """Crop pixels ≈ (H/2) s (X_xy + t_xy) + centre (model.geometry's weak perspective), up
    to the depth variation of the body at tz = 2 f / (H s) ≈ 43 m."""
    out = smpl_model(_features(smpl_model.cfg, seed=3))
    s, t = out.cam[:, None, :1], out.cam[:, None, 1:]  # (B, 1, 1), (B, 1, 2)
    h, w = CROP_HW
    weak = s * (out.keypoints_3d[..., :2] + t) * (h / 2) + torch.tensor([(w - 1) / 2, (h - 1) / 2])
    valid = out.keypoints_valid
    assert (out.keypoints_2d[:, valid] - weak[:, valid]).abs().max() < 2.0  # px


def test_body_and_projection_are_fp32_under_bf16_autocast(smpl_model):
    """Under bf16 autocast (as training runs on a GPU; here CPU autocast) the decoder runs in
    bf16, but the SMPL body, the 2D projection and the rotation conversion of its estimate
    are fp32 and equal the fp32 computation of the same estimate: within 1e-5 m and 1e-3 px
    (bf16 matmuls there are ~2 mm / ~0.4 px off)."""
    from model.geometry import project, weak_cam_to_transl

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = smpl_model(_features(smpl_model.cfg, b=3, seed=4))
        assert smpl_model.head_pose(torch.zeros(1, smpl_model.cfg.dim)).dtype == torch.bfloat16  # autocast is on
    for name in ("pose_6d", "rotmats", "vertices", "joints", "keypoints_3d", "keypoints_2d", "h36m", "cam_t"):
        assert getattr(out, name).dtype == torch.float32, name
    # the fp32 path, outside autocast, from the same estimate
    rot = rot6d_to_matrix(out.pose_6d)
    torch.testing.assert_close(out.rotmats, rot, rtol=0, atol=1e-6)
    ref = smpl_model.body_model(betas=out.betas, body_pose=rot[:, 1:], global_orient=rot[:, :1])
    torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.joints, ref.joints, rtol=0, atol=1e-5)
    kp2d = project(ref.keypoints + weak_cam_to_transl(out.cam)[:, None], smpl_model.crop_K)
    torch.testing.assert_close(out.keypoints_2d, kp2d, rtol=0, atol=1e-3)
