"""train.pretrain_encoder: the keypoint objectives and the held-out figures it prints."""
import numpy as np
import pytest
import torch

from model.vitpose import get_encoder_config, mae_sincos_pos_embed
from train.pretrain_encoder import (HEATMAP_STRIDE, heatmap_centres, keypoint_loss, keypoint_px, mean_skeleton_px,
                                    pretrain, soft_argmax)

H, W = 64, 48  # heatmaps of a 256x192 crop


def _peaked(kp: torch.Tensor, sharp: float = 8.0) -> torch.Tensor:
    """(B, J, H, W) logits peaked at the (B, J, 2) crop-pixel keypoints."""
    xs, ys = heatmap_centres(H, W)
    d2 = ((xs - kp[..., 0, None]) ** 2)[..., None, :] + ((ys - kp[..., 1, None]) ** 2)[..., :, None]
    return -d2 / (2 * sharp ** 2)


def test_soft_argmax_finds_the_peak_and_the_cell_centres_follow_the_pixel_convention():
    kp = torch.tensor([[[100.0, 50.0], [37.5, 201.25]]])
    assert torch.allclose(soft_argmax(_peaked(kp, 3.0)), kp, atol=0.05)
    xs, ys = heatmap_centres(H, W)
    assert xs[0] == (HEATMAP_STRIDE - 1) / 2 and ys[-1] == (H - 1) * HEATMAP_STRIDE + 1.5


@pytest.mark.parametrize("objective", ["ce", "integral"])
def test_objectives_are_lowest_at_the_keypoint_and_skip_invisible_joints(objective):
    kp = torch.tensor([[[96.0, 128.0, 1.0], [40.0, 60.0, 1.0], [10.0, 10.0, 0.0]]])
    right = keypoint_loss(_peaked(kp[..., :2]), kp, objective)
    wrong = keypoint_loss(_peaked(kp[..., :2] + 20.0), kp, objective)
    assert right < wrong
    moved_invisible = kp.clone()
    moved_invisible[0, 2, :2] = 150.0  # an invisible joint's position changes nothing
    assert torch.allclose(keypoint_loss(_peaked(kp[..., :2]), moved_invisible, objective), right)
    with pytest.raises(ValueError, match="objective"):
        keypoint_loss(_peaked(kp[..., :2]), kp, "mse")


def test_pixel_errors_and_the_mean_skeleton_baseline():
    kp = torch.tensor([[[96.0, 128.0, 1.0], [40.0, 60.0, 0.0]]])
    err = keypoint_px(_peaked(kp[..., :2] + torch.tensor([3.0, -4.0]), 3.0), kp)
    assert abs(float(err[0, 0]) - 7.0) < 0.1 and torch.isnan(err[0, 1])
    train = np.array([[[0, 0, 1], [5, 5, 1]], [[10, 20, 1], [9, 9, 0]]], np.float32)
    held = np.array([[[5, 10, 1], [5, 5, 1]]], np.float32)
    assert mean_skeleton_px(train, held) == pytest.approx((0 + 0) / 2)  # mean skeleton = (5, 10), (5, 5)


def test_a_few_steps_lower_the_training_error():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (8, 256, 192, 3), dtype=np.uint8)
    kps = np.concatenate([rng.uniform(20, 170, (8, 24, 2)), np.ones((8, 24, 1))], -1).astype(np.float32)
    crops[:, 100:140, 80:120] = 255  # something to find: every joint sits on a white square
    kps[..., :2] = rng.uniform(85, 115, (8, 24, 2))
    enc, head, px = pretrain(crops, kps, "tiny", epochs=6, batch=8, lr=5e-3, seed=0, progress=False)
    assert len(px) == 6 and px[-1] < px[0] and not any(p.requires_grad for p in enc.parameters())


def test_mae_position_table_encodes_column_then_row_and_leaves_the_class_slot_zero():
    cfg = get_encoder_config("tiny")  # 32 channels over a 16 x 12 grid
    h, w = cfg.feature_hw
    pe = mae_sincos_pos_embed(cfg)
    assert pe.shape == (1, 1 + h * w, cfg.width) and not pe[0, 0].any()
    grid = pe[0, 1:].reshape(h, w, cfg.width)  # row-major tokens, as ViTPose flattens them
    half, quarter = cfg.width // 2, cfg.width // 4
    assert torch.allclose(grid[0, :, :half], grid[h - 1, :, :half])  # first half: the column only
    assert torch.allclose(grid[:, 0, half:], grid[:, w - 1, half:])  # second half: the row only
    assert torch.allclose(grid[0, 0], torch.cat([torch.zeros(quarter), torch.ones(quarter)] * 2))  # sin 0, cos 0
    # the highest frequency is one radian per cell: sin(column 3), sin(row 5)
    assert grid[5, 3, 0] == pytest.approx(np.sin(3.0), abs=1e-6) and grid[5, 3, half] == pytest.approx(np.sin(5.0), abs=1e-6)
    # every cell gets its own code (what a decoder reading the features needs)
    assert len(torch.unique(grid.reshape(h * w, -1), dim=0)) == h * w


def test_pretraining_starts_from_the_mae_table_or_refuses_an_unknown_start():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (2, 256, 192, 3), dtype=np.uint8)
    kps = np.concatenate([rng.uniform(20, 170, (2, 24, 2)), np.ones((2, 24, 1))], -1).astype(np.float32)
    enc, _, _ = pretrain(crops, kps, "tiny", epochs=1, batch=2, lr=1e-6, seed=0, progress=False)
    pe = enc.backbone.embeddings.position_embeddings
    assert torch.allclose(pe, mae_sincos_pos_embed(enc.config), atol=1e-3)  # one tiny step away from it
    rand, _, _ = pretrain(crops, kps, "tiny", epochs=1, batch=2, lr=1e-6, seed=0, progress=False, pos_init="random")
    assert float(rand.backbone.embeddings.position_embeddings.std()) < 0.05  # transformers' std 0.02 init
    with pytest.raises(ValueError, match="pos_init"):
        pretrain(crops, kps, "tiny", epochs=1, batch=2, lr=1e-6, seed=0, progress=False, pos_init="learned")
