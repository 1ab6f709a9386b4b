"""eval.figures: the overlay's camera, Fig. 5 point selection, best/worst, pictures written."""
import numpy as np
import pytest
import torch

from eval import figures as F
from model.deformable_attention import AttentionInfo
from model.geometry import apply_affine, crop_affine, crop_intrinsics, invert_affine


def test_original_intrinsics_map_crop_projection_back_through_the_affine():
    A = crop_affine(np.array([300.0, 200.0]), np.array([150.0, 200.0]))
    pts = np.random.default_rng(0).normal(size=(20, 3)) * 0.3 + np.array([0, 0, 12.0])
    crop_px = (pts @ crop_intrinsics().T)[:, :2] / pts[:, 2:]
    orig_px = (pts @ F.original_intrinsics(A).T)[:, :2] / pts[:, 2:]
    np.testing.assert_allclose(orig_px, apply_affine(crop_px, invert_affine(A)), atol=1e-6)


def _info(heads=4, groups=2, n=3, hw=(4, 3)):
    rng = np.random.default_rng(1)
    pos = torch.tensor(rng.uniform(-1, 1, size=(1, groups, *hw, 2)), dtype=torch.float32)
    w = torch.tensor(rng.uniform(size=(1, heads, n, hw[0] * hw[1])), dtype=torch.float32)
    return AttentionInfo(pos, w / w.sum(-1, keepdim=True))


def test_attention_points_sum_over_queries_threshold_and_group_of_the_head():
    info = _info()
    for head in range(4):
        pts = F.attention_points(info, head=head, threshold=0.25, image_hw=(8, 6))
        total = info.weights[0, head].sum(0).numpy()
        keep = total > 0.25
        assert pts.total == 12 and len(pts.weight) == keep.sum() and not pts.fallback
        np.testing.assert_allclose(np.sort(total[keep]), pts.weight, rtol=1e-6)
        assert np.all(np.diff(pts.weight) >= 0)
        g = head // 2  # 4 heads over 2 offset groups
        xy = ((info.positions[0, g].reshape(-1, 2).numpy() + 1) / 2 * np.array([6, 8]) - 0.5)[keep]
        np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort(pts.xy[:, 0]), rtol=1e-6)
    none = F.attention_points(info, threshold=10.0)
    assert len(none.weight) == 0 and not none.fallback
    top = F.attention_points(info, threshold=10.0, top_if_empty=5)
    assert top.fallback and len(top.weight) == 5
    with pytest.raises(ValueError, match="head 4"):
        F.attention_points(info, head=4)


def test_best_and_worst():
    best, worst = F.best_and_worst(np.array([5.0, 1.0, 9.0, 3.0]), 2)
    assert best.tolist() == [1, 3] and worst.tolist() == [2, 0]


def test_pictures_are_written(tmp_path):
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    verts = np.array([[0, -0.5, 0], [0.3, 0.4, 0.2], [-0.3, 0.4, 0.2], [0, 0.4, -0.3]], float)
    image = np.full((200, 300, 3), 80, np.uint8)
    A = crop_affine(np.array([150.0, 100.0]), np.array([120.0, 160.0]))
    over = F.overlay_original(image, verts, np.array([0.0, 0.0, 40.0]), faces, A)
    assert over.shape == image.shape and (over != image).any()
    side = F.side_view(verts, faces, size=64)
    assert side.shape == (64, 64, 3) and (side != 255).any()
    ex = F.Example("k", image, A, verts, np.array([0.0, 0.0, 40.0]), {"pve": 1.0}, gt_vertices=verts)
    assert F.save_examples_figure(tmp_path / "ex.png", [ex], faces).stat().st_size > 0
    info = _info(hw=(16, 12))
    pts = F.attention_points(info, threshold=0.0)
    assert F.save_attention_figure(tmp_path / "att.png", np.zeros((256, 192, 3), np.uint8), pts, pts).exists()
