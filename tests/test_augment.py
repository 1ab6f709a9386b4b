"""Augmented views: targets move with the pixels (2D = projection of 3D, global orientation
turns with the joints, flip swaps sides and mirrors the pose), flipping twice is the identity."""
import numpy as np
import pytest
import torch

from datasets.joints import KEYPOINTS_2D, SMPL_24
from model.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from pipelines.augment import MIRROR, AugmentSettings, ViewParams, augment, draw_view, view_affine, view_rng, views
from pipelines.crop import crop_frame
from test_crop import IMAGE_HW, make_record

TARGETS = ("smpl_pose", "betas", "joints_3d", "keypoints_2d", "intrinsics", "crop_affine", "box_size", "box_center")


def _rot(aa):
    return axis_angle_to_matrix(torch.as_tensor(aa, dtype=torch.float64)).numpy()


def crop_sample(seed=0):
    """(crop-space record, crop) whose 3D joints are t + R0 d_k (body offsets d_k turned by the
    global orientation R0) and whose 2D keypoints are their projection."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*IMAGE_HW, 3), np.uint8)
    crop, rec = crop_frame(image, make_record(seed=seed, center=(330.0, 250.0), side=220.0))
    R0 = _rot(rec.smpl_pose[0].astype(np.float64) + [0.3, -1.0, 0.5])
    t = np.array([0.1, 0.05, 4.0])
    d = rng.uniform(-0.4, 0.4, (24, 3))
    j3d = t + d @ R0.T
    uv = j3d @ rec.intrinsics.astype(np.float64).T
    kp = np.c_[uv[:, :2] / uv[:, 2:], rec.keypoints_2d[:, 2]]
    pose = rec.smpl_pose.copy()
    pose[0] = matrix_to_axis_angle(torch.from_numpy(R0)).numpy()
    rec = rec.replace(joints_3d=np.c_[j3d, np.ones(24)].astype(np.float32), keypoints_2d=kp.astype(np.float32),
                      smpl_pose=pose, has_transl=True, smpl_transl=t.astype(np.float32)).validate()
    return rec, crop, t, d


def _project(rec):
    uv = rec.joints_3d[:, :3].astype(np.float64) @ rec.intrinsics.astype(np.float64).T
    return uv[:, :2] / uv[:, 2:]


PARAMS = [ViewParams(flip=True), ViewParams(rotation=0.5), ViewParams(box_scale=1.25),
          ViewParams(0.8, -0.4, True, (1.1, 0.9, 1.0))]


@pytest.mark.parametrize("params", PARAMS + [draw_view(view_rng(0, "k", v)) for v in range(1, 5)])
def test_2d_keypoints_are_the_projection_of_the_3d_joints(params):
    rec, crop, _, _ = crop_sample()
    out, img = augment(rec, crop, params, view=3)
    assert img.shape == crop.shape and img.dtype == np.uint8 and out.view == 3
    np.testing.assert_allclose(_project(out), out.keypoints_2d[:, :2], atol=2e-3)
    np.testing.assert_array_equal(np.sort(out.keypoints_2d[:, 2]), np.sort(rec.keypoints_2d[:, 2]))


@pytest.mark.parametrize("params", PARAMS)
def test_global_orientation_turns_with_the_joints(params):
    rec, crop, t, d = crop_sample(1)
    out, _ = augment(rec, crop, params, view=1)
    A = view_affine(params)
    Q = np.eye(3)
    Q[:2, :2] = A[:, :2] / np.sqrt(abs(np.linalg.det(A[:, :2])))
    R0 = _rot(out.smpl_pose[0].astype(np.float64))
    if params.flip:  # the mirrored body: joint i is the mirror of joint perm[i]
        d = (d @ MIRROR.T)[KEYPOINTS_2D.flip_permutation()]
    np.testing.assert_allclose(out.joints_3d[:, :3], Q @ t + d @ R0.T, atol=1e-5)
    assert out.has_transl == (params.rotation == 0 and not params.flip)


def test_flip_swaps_sides_and_mirrors_each_joint_rotation():
    rec, crop, _, _ = crop_sample(2)
    out, _ = augment(rec, crop, ViewParams(flip=True), view=1)
    left, right = SMPL_24.index["left_elbow"], SMPL_24.index["right_elbow"]
    np.testing.assert_allclose(_rot(out.smpl_pose[right]), MIRROR @ _rot(rec.smpl_pose[left]) @ MIRROR, atol=1e-6)
    kl, kr = KEYPOINTS_2D.index["left_wrist"], KEYPOINTS_2D.index["right_wrist"]
    assert out.keypoints_2d[kr, 0] == pytest.approx(191 - rec.keypoints_2d[kl, 0], abs=1e-4)


def test_flipping_twice_returns_the_original():
    rec, crop, _, _ = crop_sample(3)
    once, img1 = augment(rec, crop, ViewParams(flip=True), view=1)
    twice, img2 = augment(once, img1, ViewParams(flip=True), view=0)
    np.testing.assert_array_equal(img2, crop)
    for name in TARGETS:
        np.testing.assert_allclose(getattr(twice, name), getattr(rec, name), atol=1e-5, err_msg=name)


def test_pixels_move_with_the_keypoints():
    """A bright dot drawn at a keypoint lands where the augmented keypoint says."""
    rec, _, _, _ = crop_sample(4)
    j = KEYPOINTS_2D.index["left_wrist"]
    x, y = np.round(rec.keypoints_2d[j, :2]).astype(int)
    rec = rec.replace(keypoints_2d=np.c_[rec.keypoints_2d[:, :2].round(), rec.keypoints_2d[:, 2]].astype(np.float32))
    crop = np.zeros((256, 192, 3), np.uint8)
    crop[y - 2:y + 3, x - 2:x + 3] = 255
    for params in PARAMS:
        out, img = augment(rec, crop, params, view=1)
        jj = KEYPOINTS_2D.flip_permutation()[j] if params.flip else j
        ys, xs = np.nonzero(img[..., 0] > 0)
        w = img[ys, xs, 0].astype(np.float64)
        centroid = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
        np.testing.assert_allclose(centroid, out.keypoints_2d[jj, :2], atol=0.3)


def test_views_are_a_function_of_seed_key_and_view():
    rec, crop, _, _ = crop_sample(5)
    a = views(rec, crop, 4, seed=7)
    b = views(rec, crop, 4, seed=7)
    assert [r.view for r, _ in a] == [0, 1, 2, 3]
    assert a[0][1] is crop and all(np.array_equal(getattr(a[0][0], n), getattr(rec, n)) for n in TARGETS)
    for (ra, ia), (rb, ib) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ra.smpl_pose, rb.smpl_pose)
    c = views(rec, crop, 2, seed=8)
    assert not np.array_equal(c[1][1], a[1][1])
    # HMR2.0's ranges
    s = AugmentSettings()
    drawn = [draw_view(view_rng(0, f"k{i}", 1), s) for i in range(400)]
    assert all(0.7 <= p.box_scale <= 1.3 and abs(p.rotation) <= np.radians(60) + 1e-9 for p in drawn)
    assert 0.3 < np.mean([p.flip for p in drawn]) < 0.7 and 0.3 < np.mean([p.rotation == 0 for p in drawn]) < 0.5
