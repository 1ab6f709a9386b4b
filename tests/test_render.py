"""The numpy rasteriser: coverage, depth order, culling, perspective-correct depth, shading,
and pictures of the synthetic body (rest and posed, front and side)."""
import cv2
import numpy as np
import pytest
import torch

from datasets.assets import Assets
from datasets.joints import SMPL_24
from datasets.synthetic.body import write_synthetic_assets
from model.body_model import BodyModel
from model.render import AMBIENT, rasterize, render_mesh, render_views

K100 = np.array([[100.0, 0, 49.5], [0, 100.0, 49.5], [0, 0, 1]])

# The pose of docs/synthetic_smpl.png: a step forward, one arm raised and bent.
DEMO_POSE = {"left_hip": (-0.9, 0, 0.1), "left_knee": (1.2, 0, 0), "right_hip": (0.3, 0, 0),
             "left_shoulder": (0, 0.3, 0.9), "left_elbow": (0, -1.4, 0), "right_shoulder": (0, 0, 1.2),
             "right_elbow": (0, 0.5, 0), "spine2": (0.15, 0.2, 0), "head": (0.2, -0.3, 0)}


def square(z=2.0, half=0.5, cx=0.0, cy=0.0, facing=True):
    """Two triangles of a square at depth z, outward normal towards the camera if `facing`."""
    v = np.array([[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z],
                  [cx - half, cy + half, z]])
    f = np.array([[0, 2, 1], [0, 3, 2]])  # normal -z in a y-down frame: towards the camera
    return v, (f if facing else f[:, ::-1])


def test_square_covers_its_projected_area_at_its_depth():
    v, f = square()
    r = rasterize(v, f, K100, (100, 100))
    assert abs(r.mask.sum() - 50 * 50) <= 2 * 50 + 1  # 1 m at 2 m with f=100: 50 px, edges +-1
    np.testing.assert_allclose(r.depth[r.mask], 2.0, rtol=1e-6)
    assert np.isinf(r.depth[~r.mask]).all() and (r.face[~r.mask] == -1).all()
    np.testing.assert_allclose(r.bary[r.mask].sum(1), 1, atol=1e-5)
    assert r.mask[49, 49] and not r.mask[10, 10]


def test_nearer_surface_wins_whatever_the_face_order():
    near, fn = square(z=2.0, half=0.3, cx=-0.2)
    far, ff = square(z=3.0, half=1.0)
    for order in (0, 1):
        parts = [(near, fn), (far, ff)] if order == 0 else [(far, ff), (near, fn)]
        v = np.concatenate([parts[0][0], parts[1][0]])
        f = np.concatenate([parts[0][1], parts[1][1] + 4])
        r = rasterize(v, f, K100, (100, 100))
        near_faces = {0, 1} if order == 0 else {2, 3}
        overlap = r.depth < 2.5
        assert overlap.sum() > 500
        assert set(np.unique(r.face[overlap])) <= near_faces
        np.testing.assert_allclose(r.depth[overlap], 2.0, rtol=1e-6)


def test_backfaces_are_culled_only_when_asked():
    v, f = square(facing=False)
    assert not rasterize(v, f, K100, (100, 100)).mask.any()
    assert rasterize(v, f, K100, (100, 100), cull_backfaces=False).mask.sum() > 2000


def test_depth_is_perspective_correct_on_a_slanted_plane():
    # Plane z = 2 + 0.8 x, seen at a grazing angle; depth along each pixel's ray.
    x = np.array([-1.0, 1.0, 1.0, -1.0])
    y = np.array([-1.0, -1.0, 1.0, 1.0])
    v = np.stack([x, y, 2 + 0.8 * x], 1)
    f = np.array([[0, 2, 1], [0, 3, 2]])
    r = rasterize(v, f, K100, (100, 100), cull_backfaces=False)
    ys, xs = np.nonzero(r.mask)
    rays = np.linalg.inv(K100) @ np.stack([xs, ys, np.ones_like(xs)]).astype(float)  # (3, N), z = 1
    z_true = 2 / (1 - 0.8 * rays[0])  # z = 2 + 0.8 * (z * ray_x)
    np.testing.assert_allclose(r.depth[ys, xs], z_true, rtol=1e-5)


def test_render_mesh_shades_blends_and_leaves_the_input_alone():
    v, f = square()
    image = np.full((100, 100, 3), 20, dtype=np.uint8)
    before = image.copy()
    out, mask = render_mesh(image, v, f, K100, color=(1.0, 0.5, 0.0))
    np.testing.assert_array_equal(image, before)
    assert mask.sum() > 2000 and (out[~mask] == 20).all()
    red = out[mask][:, 0].astype(float)
    assert red.min() >= 255 * AMBIENT - 1 and red.max() <= 255
    assert (out[mask][:, 2] == 0).all()  # no blue in an orange mesh
    faint, _ = render_mesh(image, v, f, K100, color=(1.0, 0.5, 0.0), alpha=0.0)
    np.testing.assert_array_equal(faint, image)
    half, _ = render_mesh(image, v, f, K100, color=(1.0, 0.5, 0.0), alpha=0.5)
    assert np.all(np.abs(half[mask].astype(int) - (out[mask].astype(int) + 20) / 2) <= 1)
    with pytest.raises(ValueError, match="uint8"):
        render_mesh(image.astype(np.float32), v, f, K100)


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    root = tmp_path_factory.mktemp("render_assets") / "assets"
    write_synthetic_assets(root)
    return BodyModel(Assets(root=root).body_model_dir, "neutral")


def posed_vertices(model, rotations) -> np.ndarray:
    pose = torch.zeros(1, 23, 3)
    for name, aa in rotations.items():
        pose[0, SMPL_24.index[name] - 1] = torch.tensor(aa, dtype=torch.float32)
    return model(torch.zeros(1, 10), pose.reshape(1, 69), torch.zeros(1, 3)).vertices[0].numpy()


def body_picture(model, size=384) -> np.ndarray:
    """(size, 4 * size, 3) RGB: rest pose front | side, DEMO_POSE front | side."""
    return np.concatenate([render_views(posed_vertices(model, p), model.faces, size) for p in ({}, DEMO_POSE)], 1)


def test_pictures_of_the_synthetic_body(body, tmp_path):
    size = 256
    picture = body_picture(body, size)
    assert picture.shape == (size, 4 * size, 3)
    path = tmp_path / "synthetic_smpl.png"
    assert cv2.imwrite(str(path), picture[..., ::-1])
    assert path.stat().st_size > 5000
    fg = (picture != 255).any(2)
    front, side = fg[:, :size], fg[:, size:2 * size]
    mirrored = front[:, ::-1]
    assert (front & mirrored).sum() / (front | mirrored).sum() > 0.95  # rest pose: left-right symmetric
    rows = np.flatnonzero(front.any(1))
    assert 0.6 * size < np.ptp(rows) < 0.95 * size  # standing, fills most of the view
    assert np.ptp(np.flatnonzero(side.any(0))) < np.ptp(np.flatnonzero(front.any(0))) / 2  # T-pose seen from the side
    lit = picture[:, :size][front].astype(float)
    assert lit.std() > 5  # shaded, not a flat silhouette


def test_a_video_sized_frame_of_the_body_is_drawn(body):
    """A 512 px frame filled by the body (what `make bench-render` times)."""
    v = posed_vertices(body, DEMO_POSE)
    size = 512
    K = np.array([[size * 1.2, 0, size / 2], [0, size * 1.2, size / 2], [0, 0, 1]])
    cam = v * [1, -1, -1] + [0, 0, 2.8]  # upright, facing the camera, filling the frame
    background = np.zeros((size, size, 3), dtype=np.uint8)
    image, mask = render_mesh(background, cam, body.faces, K)
    assert mask.mean() > 0.05 and (image[mask] != 0).any(1).all() and not image[~mask].any()
