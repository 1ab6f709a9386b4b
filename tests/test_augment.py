"""Augmented views: targets move with the pixels (2D = projection of 3D, global orientation
turns with the joints, flip swaps sides and mirrors the pose), flipping twice is the identity."""
import numpy as np
import pytest
import torch

from datasets.joints import KEYPOINTS_2D, SMPL_24
from model.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from datasets.record import CROP_HW
from model.geometry import crop_affine
from pipelines.augment import (EXTREME_CROP_CHOICES, EXTREME_CROP_PARTS, MIRROR, AugmentSettings, ViewParams, augment,
                               draw_view, extreme_crop_part, part_box, view_affine, view_rng, views)
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
          ViewParams(0.8, -0.4, True, (1.1, 0.9, 1.0)), ViewParams(shift=(0.02, -0.015)),
          ViewParams(1.1, 0.3, True, shift=(-0.01, 0.02), part="torso", part_box=(90.0, 110.0, 150.0))]


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


def test_draws_reach_hmr2s_extremes():
    """box_scale reaches both 1 -/+ 0.3 (clipped N(0, 1)), rotations both -/+ 60 degrees
    (clipped at 2 sigma x 30), colour gains spread over U(0.8, 1.2) per channel."""
    drawn = [draw_view(view_rng(0, f"k{i}", 1)) for i in range(2000)]
    scales = [p.box_scale for p in drawn]
    turns = np.degrees([p.rotation for p in drawn if p.rotation])
    colors = np.array([p.color for p in drawn])  # (n, 3)
    assert min(scales) == pytest.approx(0.7) and max(scales) == pytest.approx(1.3)
    assert min(turns) == pytest.approx(-60) and max(turns) == pytest.approx(60)
    assert 0.8 <= colors.min() < 0.81 and 1.19 < colors.max() <= 1.2
    assert abs(colors.mean() - 1) < 0.01 and colors.std(0).min() > 0.1
    assert len({p.color for p in drawn}) == len(drawn)


def test_views_draw_with_the_given_settings():
    """No scale, turn, flip, colour, shift or extreme crop: every drawn view is the plain crop."""
    rec, crop, _, _ = crop_sample(6)
    still = AugmentSettings(scale_factor=0.0, rot_factor=0.0, rot_rate=0.0, flip_rate=0.0, color_scale=0.0,
                           trans_factor=0.0, extreme_crop_rate=0.0)
    for r, img in views(rec, crop, 3, seed=1, settings=still)[1:]:
        np.testing.assert_array_equal(img, crop)
        np.testing.assert_array_equal(r.keypoints_2d, rec.keypoints_2d)


def test_a_view_of_a_view_carries_the_original_pixels_and_box():
    """crop_affine of a view maps original pixels to view pixels (the view's affine after the
    crop's); box_size scales with box_scale; a turned view drops the translation, a scaled
    one keeps it; every array stays float32."""
    rec, crop, t, _ = crop_sample(7)
    original = np.array([[300.0, 200.0], [350.0, 310.0], [280.0, 260.0]])
    from model.geometry import apply_affine

    for params in (ViewParams(box_scale=1.25), ViewParams(0.8, -0.4, True, (1.1, 0.9, 1.0))):
        out, _ = augment(rec, crop, params, view=1)
        A = view_affine(params)
        want = apply_affine(apply_affine(original, rec.crop_affine.astype(np.float64)), A)
        np.testing.assert_allclose(apply_affine(original, out.crop_affine.astype(np.float64)), want, atol=1e-3)
        np.testing.assert_allclose(out.box_size, rec.box_size * params.box_scale, rtol=1e-6)
        for name in ("keypoints_2d", "joints_3d", "smpl_pose", "intrinsics", "crop_affine", "box_size", "smpl_transl"):
            assert getattr(out, name).dtype == np.float32, name
    scaled, _ = augment(rec, crop, ViewParams(box_scale=1.25), view=1)
    assert scaled.has_transl and np.array_equal(scaled.smpl_transl, t.astype(np.float32))
    turned, _ = augment(rec, crop, ViewParams(rotation=0.3), view=1)
    assert not turned.has_transl and not turned.smpl_transl.any()
    # a view of 1.25 x the box: a point 40 px from the crop centre lands 32 px from it
    np.testing.assert_allclose(apply_affine(np.array([[95.5 + 40, 127.5]]), view_affine(ViewParams(box_scale=1.25))),
                               [[95.5 + 32, 127.5]], atol=1e-9)
    bare = rec.replace(intrinsics=None)
    assert augment(bare, crop, ViewParams(rotation=0.3), view=1)[0].intrinsics is None


def test_colour_gain_scales_and_saturates_the_pixels():
    rec, _, _, _ = crop_sample(8)
    crop = np.full((256, 192, 3), 100, np.uint8)
    crop[:, :96] = 250
    _, img = augment(rec, crop, ViewParams(color=(1.2, 0.5, 1.0)), view=1)
    assert img[100, 20].tolist() == [255, 125, 250]  # 250 x 1.2 saturates at 255
    assert img[100, 150].tolist() == [120, 50, 100]


def test_views_of_another_crop_size_keep_that_size():
    rec, _, _, _ = crop_sample(9)
    small = np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8)
    params = ViewParams(box_scale=1.25)
    _, img = augment(rec, small, params, view=1)
    assert img.shape == (64, 48, 3)
    from model.geometry import apply_affine

    A = view_affine(params, (64, 48))
    np.testing.assert_allclose(apply_affine(np.array([[23.5, 31.5]]), A), [[23.5, 31.5]])  # the centre stays
    np.testing.assert_allclose(A[:, :2], np.eye(2) / 1.25)
    from pipelines.crop import warp

    np.testing.assert_array_equal(img, warp(small, A, (64, 48)))


@pytest.mark.parametrize("params", PARAMS)
def test_the_view_box_in_original_pixels_cuts_the_view(params):
    """box_center / box_size of a view are the box that `crop_affine` (with the view's turn
    and mirror) maps onto the view: the same affine as the record's crop_affine."""
    rec, crop, _, _ = crop_sample(6)
    out, _ = augment(rec, crop, params, view=1)
    A = crop_affine(out.box_center.astype(np.float64), out.box_size.astype(np.float64), CROP_HW,
                    rotation=params.rotation, flip=params.flip)
    np.testing.assert_allclose(A, out.crop_affine, atol=2e-3)
    ratio = out.box_size[1] / out.box_size[0]
    assert ratio == pytest.approx(CROP_HW[0] / CROP_HW[1], rel=1e-5)


def _full_body(rec):
    """rec with every joint visible (confidence 1)."""
    kp = rec.keypoints_2d.copy()
    kp[:, 2] = 1
    return rec.replace(keypoints_2d=kp)


@pytest.mark.parametrize("part", sorted(EXTREME_CROP_PARTS))
def test_an_extreme_crop_frames_the_part_as_hmr2_boxes_it(part):
    """Unshifted, unscaled: the part's kept keypoints are centred in the view and their larger
    extent is S / (1.2 x factor) of the view's S = 256 pixels (HMR2.0 get_bbox, crop_*)."""
    rec, crop, _, _ = crop_sample(7)
    rec = _full_body(rec)
    box = part_box(rec, part)
    out, _ = augment(rec, crop, ViewParams(part=part, part_box=box), view=1)
    factor, names = EXTREME_CROP_PARTS[part]
    kp = out.keypoints_2d[KEYPOINTS_2D.indices(names), :2].astype(np.float64)  # no mirror: same order
    lo, hi = kp.min(0), kp.max(0)
    np.testing.assert_allclose((lo + hi) / 2, [(CROP_HW[1] - 1) / 2, (CROP_HW[0] - 1) / 2], atol=1e-3)
    assert (hi - lo).max() == pytest.approx(CROP_HW[0] / (1.2 * factor), rel=1e-4)


def test_extreme_crop_parts_follow_visibility_and_the_draw():
    rec, _, _, _ = crop_sample(8)
    full = _full_body(rec).keypoints_2d
    for level in (0, 1):
        bounds = EXTREME_CROP_CHOICES[level, "full"]
        assert [extreme_crop_part(full, b - 1e-9, level) for b, _ in bounds] == [p for _, p in bounds]
    upper = full.copy()
    upper[KEYPOINTS_2D.indices(["right_knee", "left_knee", "right_ankle", "left_ankle"]), 2] = 0
    assert extreme_crop_part(upper, 0.1) == "shoulders" and extreme_crop_part(upper, 0.99) == "left_arm"
    one_ankle = full.copy()
    one_ankle[KEYPOINTS_2D.index["left_ankle"], 2] = 0  # neither full nor upper
    assert extreme_crop_part(one_ankle, 0.1) is None
    hidden_arm = full.copy()
    hidden_arm[KEYPOINTS_2D.indices(["right_wrist", "right_elbow"]), 2] = 0  # one keypoint left: no box
    assert part_box(rec.replace(keypoints_2d=hidden_arm), "right_arm") is None


def test_drawn_views_have_hmr2s_rates_and_ranges():
    rec, _, _, _ = crop_sample(9)
    rec = _full_body(rec)
    s = AugmentSettings()
    drawn = [draw_view(view_rng(0, f"k{i}", 1), s, rec) for i in range(1000)]
    assert all(abs(p.shift[0]) <= 0.02 and abs(p.shift[1]) <= 0.02 for p in drawn)
    assert 0.06 < np.mean([p.part is not None for p in drawn]) < 0.14
    assert {p.part for p in drawn if p.part} <= set(EXTREME_CROP_PARTS) and len({p.part for p in drawn}) > 5
    assert all(p.part is None for p in (draw_view(view_rng(0, f"k{i}", 1), s) for i in range(200)))


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_gain_of_two_doubles_its_channel(channel):
    rec, _, _, _ = crop_sample(8)
    crop = np.full((256, 192, 3), 100, np.uint8)
    crop[:, :96] = 200
    gain = [1.0, 1.0, 1.0]
    gain[channel] = 2.0
    _, img = augment(rec, crop, ViewParams(color=tuple(gain)), view=1)
    want = [100, 100, 100]
    want[channel] = 200
    assert img[100, 150].tolist() == want
    want = [200, 200, 200]
    want[channel] = 255  # 400 saturates
    assert img[100, 20].tolist() == want


def test_colour_gain_is_the_pixel_times_the_gain_truncated():
    """Every pixel value v under a decimal gain g becomes floor(v x g) (exact decimal
    arithmetic, capped at 255), e.g. 100 x 0.7 = 70, not 69; a negative gain (COLOR_SCALE
    over 1) gives 0, as HMR2.0's np.clip(img * color_scale, 0, 255)."""
    from fractions import Fraction

    rec, _, _, _ = crop_sample(8)
    crop = np.broadcast_to((np.arange(256 * 192) % 256).astype(np.uint8).reshape(256, 192, 1), (256, 192, 3)).copy()
    gains = (0.7, 0.9, 1.15)
    _, img = augment(rec, crop, ViewParams(color=gains), view=1)
    for c, g in enumerate(gains):
        want = [min(255, int(v * Fraction(str(g)))) for v in range(256)]
        assert img[..., c].reshape(-1)[:256].tolist() == want, g
    _, img = augment(rec, crop, ViewParams(color=(-0.5, 1.0, 1.0)), view=1)
    assert not img[..., 0].any() and np.array_equal(img[..., 1], crop[..., 1])


def test_a_shift_moves_the_view_box_by_shift_times_its_side():
    """HMR2.0 `center_x += width * tx`: the view's centre is the box centre + shift x S (S =
    256 crop pixels for the crop's own box, the part box's S for an extreme crop)."""
    from model.geometry import apply_affine

    mid = [(CROP_HW[1] - 1) / 2, (CROP_HW[0] - 1) / 2]
    A = view_affine(ViewParams(shift=(0.02, -0.015)))
    np.testing.assert_allclose(apply_affine(np.array([[95.5 + 0.02 * 256, 127.5 - 0.015 * 256]]), A), [mid], atol=1e-9)
    A = view_affine(ViewParams(shift=(0.02, 0.01), part="torso", part_box=(90.0, 110.0, 150.0)))
    np.testing.assert_allclose(apply_affine(np.array([[90.0 + 3.0, 110.0 + 1.5]]), A), [mid], atol=1e-9)


def test_the_view_box_size_is_the_box_over_the_scale_rounded_once():
    """box_size of a view of box_scale 1.25 is 1.25 x the crop's, to float32's precision
    (computed in float64, rounded once)."""
    rec, crop, _, _ = crop_sample(7)
    for size in ([389.0809020996094, 292.16448974609375], [198.3792724609375, 404.79290771484375]):
        r = rec.replace(box_size=np.float32(size))
        out, _ = augment(r, crop, ViewParams(box_scale=1.25), view=1)
        np.testing.assert_array_equal(out.box_size, np.float32(r.box_size.astype(np.float64) * 1.25))


def test_a_stored_float32_affine_gives_the_view_of_its_values():
    """apply_view of an affine held as float32 (as records store them) is the view of those
    values, the same as of their float64 copy."""
    from pipelines.augment import apply_view

    rec, _, _, _ = crop_sample(6)
    A = view_affine(ViewParams(0.8, -0.4, True)).astype(np.float32)
    a, b = apply_view(rec, A, 1), apply_view(rec, A.astype(np.float64), 1)
    for name in TARGETS + ("smpl_transl",):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _arm(kp, box_width=300.0):
    """A record of crop_sample(0) whose 2D keypoints are zero but the right arm's
    (shoulder, elbow, wrist: (x, y, confidence)), its crop box `box_width` original px wide."""
    rec = crop_sample(0)[0]
    k = np.zeros((24, 3), np.float32)
    k[KEYPOINTS_2D.indices(["right_shoulder", "right_elbow", "right_wrist"])] = kp
    return rec.replace(keypoints_2d=k, box_size=np.float32([box_width, box_width * 4 / 3]))


def test_a_part_box_is_hmr2s_get_bbox_of_the_visible_kept_keypoints():
    """HMR2.0 `get_bbox` then `crop_rightarm_only`: centre of the visible keypoints' box,
    (width1, height1) = 1.2 x 1.1 x its extent, S the larger; hidden keypoints and
    confidences do not enter; confidences summing to 1 or less keep the person's box."""
    box = part_box(_arm([(100.25, 60.5, 1.0), (120.75, 95.125, 0.5), (90.5, 130.375, 0.3)]), "right_arm")
    assert box == pytest.approx((105.625, 95.4375, 69.875 * 1.2 * 1.1), rel=1e-12)
    # the hidden elbow, far away, is not boxed (and two confidences of 1 are enough)
    box = part_box(_arm([(100.0, 60.0, 1.0), (500.0, 500.0, 0.0), (90.0, 130.0, 1.0)]), "right_arm")
    assert box == pytest.approx((95.0, 95.0, 70.0 * 1.2 * 1.1), rel=1e-12)
    # confidences 0.5 + 0.5 = 1: HMR2.0's `sum() > 1` fails, no part box
    assert part_box(_arm([(100.0, 60.0, 0.5), (0.0, 0.0, 0.0), (90.0, 130.0, 0.5)]), "right_arm") is None
    # a tiny part in a 1920 px box (4 original px = 0.4 crop px): confidences 1 and 0.1 do not widen it
    box = part_box(_arm([(100.0, 100.0, 1.0), (100.5, 100.5, 1.0), (100.25, 100.75, 0.1)], 1920.0), "right_arm")
    assert box == pytest.approx((100.25, 100.375, 0.75 * 1.2 * 1.1), rel=1e-12)


@pytest.mark.parametrize("height, kept", [(1.5, False), (2.0, True)])
def test_a_part_box_under_4_original_pixels_high_is_not_used(height, kept):
    """HMR2.0 drops an extreme crop whose width1 OR height1 is under 4 original pixels: a
    right arm held level, 50 crop px long and `height` crop px high, in a 300 px box (0.64 crop
    px per original px): height1 = 1.32 x 1.5 / 0.64 = 3.1 px (dropped), 1.32 x 2 / 0.64 = 4.1 px."""
    box = part_box(_arm([(100.0, 60.0, 1.0), (125.0, 60.0 + height, 1.0), (150.0, 60.0, 1.0)]), "right_arm")
    assert (box is not None) == kept
    if kept:
        assert box == pytest.approx((125.0, 61.0, 50 * 1.2 * 1.1), rel=1e-12)


def test_extreme_crop_part_boundaries_follow_hmr2():
    """`if p < bound`: a draw at a bound takes the next part; `upper_body`: no lower joint
    visible and at least 2 upper ones (HMR2.0 `>= 2`)."""
    rec, _, _, _ = crop_sample(8)
    full = _full_body(rec).keypoints_2d
    for level in (0, 1):
        bounds = EXTREME_CROP_CHOICES[level, "full"]
        assert [extreme_crop_part(full, b, level) for b, _ in bounds[:-1]] == [p for _, p in bounds[1:]]
    two = np.zeros_like(full)
    two[KEYPOINTS_2D.indices(["nose", "head_top"]), 2] = 1
    assert extreme_crop_part(two, 0.1) == "shoulders"
    two[KEYPOINTS_2D.index["nose"], 2] = 0
    assert extreme_crop_part(two, 0.1) is None


def test_drawn_extreme_crops_use_the_record_and_the_level():
    """With every view an extreme crop: a full body gets its part's box (`part_box`), level 0
    only hips / shoulders / head; a body neither full nor upper, or one whose parts are all
    under 4 px, keeps the person's box (no part)."""
    rec, crop, _, _ = crop_sample(9)
    rec = _full_body(rec)
    for level, parts in ((1, set(EXTREME_CROP_PARTS)), (0, {"hips", "shoulders", "head"})):
        s = AugmentSettings(extreme_crop_rate=1.0, extreme_crop_level=level)
        drawn = [draw_view(view_rng(0, f"k{i}", 1), s, rec) for i in range(300)]
        assert {p.part for p in drawn} == parts
        assert all(p.part_box == part_box(rec, p.part) for p in drawn)
    s = AugmentSettings(extreme_crop_rate=1.0)
    neither = rec.keypoints_2d.copy()
    neither[KEYPOINTS_2D.index["left_ankle"], 2] = 0
    dot = rec.keypoints_2d.copy()
    dot[:, :2] = 100.0  # every part is a point: no box
    for kp in (neither, dot):
        assert all(draw_view(view_rng(0, f"k{i}", 1), s, rec.replace(keypoints_2d=kp)).part is None for i in range(20))
    # views() draws with the record: each view is its part's box (S / 256 of the crop's box)
    still = AugmentSettings(scale_factor=0.0, rot_factor=0.0, flip_rate=0.0, color_scale=0.0, trans_factor=0.0,
                            extreme_crop_rate=1.0)
    for r, _ in views(rec, crop, 4, seed=3, settings=still)[1:]:
        sides = {part_box(rec, p)[2] for p in EXTREME_CROP_PARTS}
        assert any(r.box_size[1] == pytest.approx(rec.box_size[1] * s / 256, rel=1e-5) for s in sides)


def test_shifts_spread_over_hmr2s_range():
    """tx, ty = clip(N(0, 1), -1, 1) x TRANS_FACTOR: both signs, both clip ends reached."""
    shifts = np.array([draw_view(view_rng(0, f"k{i}", 1)).shift for i in range(500)])
    assert shifts.min(0) == pytest.approx([-0.02, -0.02]) and shifts.max(0) == pytest.approx([0.02, 0.02])
    assert np.abs(shifts.mean(0)).max() < 0.003
