import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from datasets.record import CROP_HW
from model import geometry as G

RNG = np.random.default_rng(0)


def _aa(n=64):
    aa = Rotation.random(n, random_state=1).as_rotvec()
    aa[0] = 0.0  # identity
    aa[1] = [1e-9, 0, 0]  # near identity
    aa[2] = [np.pi - 1e-6, 0, 0]  # near pi
    return aa


def test_axis_angle_matches_scipy_and_round_trips():
    aa = _aa()
    R = G.axis_angle_to_matrix(torch.tensor(aa)).numpy()
    np.testing.assert_allclose(R, Rotation.from_rotvec(aa).as_matrix(), atol=1e-10)
    back = G.matrix_to_axis_angle(torch.tensor(R)).numpy()
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), R, atol=1e-6)
    ok = np.linalg.norm(aa, axis=1) < np.pi - 1e-3  # unique below pi
    np.testing.assert_allclose(back[ok], aa[ok], atol=1e-6)


def test_axis_angle_gradient_is_finite_at_zero():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    G.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def _spin_rot6d_to_rotmat(x):
    """SPIN utils/geometry.py rot6d_to_rotmat, in numpy: x.view(-1, 3, 2); a1 = x[:, :, 0], a2 = x[:, :, 1]."""
    x = np.asarray(x).reshape(-1, 3, 2)
    return _gram_schmidt(x[:, :, 0], x[:, :, 1])


def _hmr2_rot6d_to_rotmat(x):
    """4D-Humans hmr2/utils/geometry.py rot6d_to_rotmat, in numpy: x.reshape(-1, 2, 3).permute(0, 2, 1);
    a1 = x[:, :, 0], a2 = x[:, :, 1], i.e. a1 = x[0:3], a2 = x[3:6]."""
    x = np.asarray(x).reshape(-1, 2, 3).transpose(0, 2, 1)
    return _gram_schmidt(x[:, :, 0], x[:, :, 1])


def _gram_schmidt(a1, a2):  # both sources: b1 = normalize(a1), b2 = normalize(a2 - <b1, a2> b1), b3 = b1 x b2
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=-1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], -1)  # columns


def test_rot6d_is_spins_layout_not_hmr2s():
    """Our 6D decoding is SPIN's (the layout smpl_mean_params.npz is written in), on any
    6 numbers; HMR2.0's reads the same numbers as another rotation."""
    x = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = G.rot6d_to_matrix(x).numpy()
    np.testing.assert_allclose(ours, _spin_rot6d_to_rotmat(x.numpy()), atol=1e-12)
    assert np.abs(ours - _hmr2_rot6d_to_rotmat(x.numpy())).max(axis=(1, 2)).min() > 1e-3
    # a rotation written as SPIN writes the mean pose (R[:, :2] row-major) comes back only in SPIN's layout
    R = torch.tensor(Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix())
    x = G.matrix_to_rot6d(R)
    np.testing.assert_allclose(_spin_rot6d_to_rotmat(x.numpy())[0], R.numpy(), atol=1e-12)
    assert np.abs(_hmr2_rot6d_to_rotmat(x.numpy())[0] - R.numpy()).max() > 0.1


def test_rot6d_round_trip_and_interleaved_layout():
    R = torch.tensor(Rotation.random(32, random_state=2).as_matrix())
    x = G.matrix_to_rot6d(R)
    np.testing.assert_allclose(G.rot6d_to_matrix(x).numpy(), R.numpy(), atol=1e-10)
    # interleaved: x = [R00, R01, R10, R11, R20, R21] (row-major 3x2), as SPIN's mean params
    np.testing.assert_allclose(x[0].numpy(), R[0, :, :2].reshape(6).numpy())
    # SPIN's mean-param identity is [1, 0, 0, 1, 0, 0]
    np.testing.assert_allclose(G.rot6d_to_matrix(torch.tensor([1.0, 0, 0, 1, 0, 0])).numpy(), np.eye(3), atol=1e-7)
    # any 6 numbers give a rotation
    Rn = G.rot6d_to_matrix(torch.randn(16, 6, dtype=torch.float64))
    np.testing.assert_allclose((Rn @ Rn.transpose(-1, -2)).numpy(), np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-10)
    np.testing.assert_allclose(torch.linalg.det(Rn).numpy(), 1.0, atol=1e-10)


def test_weak_perspective_equals_perspective_crop_camera():
    X = torch.tensor(RNG.normal(scale=0.5, size=(2, 30, 3)))
    X[..., 2] *= 0.01  # weak perspective is exact for a flat body
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.3, -0.2, 0.1]], dtype=torch.float64)
    t = G.weak_cam_to_transl(cam)
    K = torch.tensor(G.crop_intrinsics())
    px = G.project(X + t[:, None], K)
    n = G.normalise_crop_pixels(px)
    weak = cam[:, None, :1] * (X[..., :2] + cam[:, None, 1:])
    np.testing.assert_allclose(n.numpy(), weak.numpy(), atol=2e-3)


def test_crop_affine_matches_warp_and_full_camera():
    H, W = 480, 640
    img = np.zeros((H, W), np.uint8)
    pt = np.array([401.0, 222.0])
    img[int(pt[1]) - 1: int(pt[1]) + 2, int(pt[0]) - 1: int(pt[0]) + 2] = 255
    center, size = np.array([380.0, 250.0]), G.expand_to_aspect(np.array([150.0, 150.0]))
    A = G.crop_affine(center, size, rotation=0.3, flip=True)
    crop = cv2.warpAffine(img, A, (CROP_HW[1], CROP_HW[0]), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(crop > 0)
    peak = np.array([np.average(xs, weights=crop[ys, xs]), np.average(ys, weights=crop[ys, xs])])
    np.testing.assert_allclose(peak, G.apply_affine(pt, A), atol=0.6)
    np.testing.assert_allclose(G.apply_affine(G.apply_affine(pt, A), G.invert_affine(A)), pt, atol=1e-9)
    # box centre lands at the crop centre, the box fills the crop
    np.testing.assert_allclose(G.apply_affine(center, G.crop_affine(center, size)), [(CROP_HW[1] - 1) / 2, (CROP_HW[0] - 1) / 2])
    # intrinsics of the warped image project like "project, then warp"
    K = np.array([[900.0, 0, 320], [0, 900, 240], [0, 0, 1]])
    X = RNG.normal(size=(10, 3)) + [0, 0, 5]
    direct = G.apply_affine(G.project(torch.tensor(X), torch.tensor(K)).numpy(), A)
    via_k = G.project(torch.tensor(X), torch.tensor(G.affine_intrinsics(K, A))).numpy()
    np.testing.assert_allclose(via_k, direct, atol=1e-8)


def test_crop_camera_to_full_image_camera():
    # a body seen by the crop camera reprojects to the same original pixels through the full camera
    H, W, f = 1080, 1920, 1400.0
    center, size = np.array([1200.0, 500.0]), G.expand_to_aspect(np.array([300.0, 400.0]))
    A = G.crop_affine(center, size)
    X = torch.tensor(RNG.normal(scale=0.3, size=(1, 20, 3)))
    X[..., 2] *= 0.01
    cam = torch.tensor([[1.1, 0.02, 0.05]], dtype=torch.float64)
    crop_px = G.project(X + G.weak_cam_to_transl(cam)[:, None], torch.tensor(G.crop_intrinsics()))
    orig_from_crop = G.apply_affine(crop_px[0].numpy(), G.invert_affine(A))
    K_full = torch.tensor([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    t_full = G.cam_crop_to_full(cam, torch.tensor(center[None]), torch.tensor(size[None]), K_full[None])
    full_px = G.project(X + t_full[:, None], K_full)[0].numpy()
    np.testing.assert_allclose(full_px, orig_from_crop, atol=0.5)


def test_box_from_keypoints_spin_rule():
    kp = np.array([[10, 20, 1], [50, 120, 1], [500, 500, 0]], np.float64)
    c, s = G.box_from_keypoints(kp)
    np.testing.assert_allclose(c, [30, 70])
    np.testing.assert_allclose(s, [120, 120])  # 1.2 x 100
    assert G.box_from_keypoints(kp * [1, 1, 0]) is None
    np.testing.assert_allclose(G.expand_to_aspect(np.array([120.0, 120.0])), [120, 160])
    np.testing.assert_allclose(G.expand_to_aspect(np.array([300.0, 100.0])), [300, 400])


def test_rodrigues_near_zero_is_exact_to_float64():
    """Below theta^2 = 1e-8 the Taylor series of sin(t)/t and (1 - cos t)/t^2 stand in for
    them; R is still R = I + sin t [u]x + (1 - cos t) [u]x^2 to float64 precision. With
    u = (0.6, 0.8, 0): R[0, 2] = sin(t) u_y (the first series), R[0, 1] = (1 - cos t) u_x u_y (the second)."""
    import math

    for t in (9e-5, 3e-5):
        u = np.array([0.6, 0.8, 0.0])
        R = G.axis_angle_to_matrix(torch.tensor(u * t)).numpy()
        one_minus_cos = 2 * math.sin(t / 2) ** 2
        assert R[0, 2] == pytest.approx(math.sin(t) * 0.8, rel=1e-12, abs=0)
        assert R[0, 1] == pytest.approx(one_minus_cos * 0.6 * 0.8, rel=1e-12, abs=0)
        assert R[0, 0] == pytest.approx(1 - one_minus_cos * 0.8 ** 2, rel=1e-15, abs=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_rotations_keep_the_dtype_they_are_given(dtype):
    """A half / bfloat16 / float64 input gives a result of that dtype (the identity and the
    pixel centre are made in it), as a model under autocast or a float64 test expects."""
    aa = torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.0, 0.0]], dtype=dtype)
    assert G.axis_angle_to_matrix(aa).dtype == dtype
    assert G.normalise_crop_pixels(torch.tensor([[95.5, 127.5]], dtype=dtype)).dtype == dtype


def test_camera_helpers_take_any_leading_dimensions():
    """One (3,) camera, and a (2, 4, 3) batch: the last axis is always (s, tx, ty)."""
    cam = torch.tensor([0.5, 0.1, -0.2], dtype=torch.float64)
    # tz = 2 f / (H s) = 2 x 5000 / (256 x 0.5)
    np.testing.assert_allclose(G.weak_cam_to_transl(cam).numpy(), [0.1, -0.2, 10000 / 128])
    batch = cam.expand(2, 4, 3)
    np.testing.assert_allclose(G.weak_cam_to_transl(batch).numpy(),
                               np.broadcast_to([0.1, -0.2, 10000 / 128], (2, 4, 3)))
    K = torch.tensor([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]], dtype=torch.float64)
    # CLIFF cam_crop2full: b s = 400 x 0.5 = 200; (tx + 2 (700 - 640) / 200, ty + 2 (300 - 360) / 200, 2 f / 200)
    c, b = torch.tensor([700.0, 300.0], dtype=torch.float64), torch.tensor([300.0, 400.0], dtype=torch.float64)
    np.testing.assert_allclose(G.cam_crop_to_full(cam, c, b, K).numpy(), [0.7, -0.8, 10.0])
    full = G.cam_crop_to_full(batch, c.expand(2, 4, 2), b.expand(2, 4, 2), K.expand(2, 4, 3, 3))
    np.testing.assert_allclose(full.numpy(), np.broadcast_to([0.7, -0.8, 10.0], (2, 4, 3)))
    # a box 1.5 px high, s = 2: b s = 3 (the floors only catch a padded zero row)
    cam2 = torch.tensor([2.0, 0.1, -0.2], dtype=torch.float64)
    small = torch.tensor([1.5, 1.5], dtype=torch.float64)
    np.testing.assert_allclose(G.cam_crop_to_full(cam2, c, small, K).numpy(), [0.1 + 120 / 3, -0.2 - 120 / 3, 2000 / 3])


def test_crop_intrinsics_are_the_crop_camera():
    np.testing.assert_array_equal(G.crop_intrinsics(), [[5000, 0, 95.5], [0, 5000, 127.5], [0, 0, 1]])
    np.testing.assert_array_equal(G.crop_intrinsics((64, 48), 100.0), [[100, 0, 23.5], [0, 100, 31.5], [0, 0, 1]])


def test_project_divides_by_any_depth_and_takes_batched_intrinsics():
    """u = f X / Z + c for points nearer than 1 m too; a (B, 3, 3) K per batch row."""
    X = torch.tensor([[[0.1, -0.2, 0.5], [0.3, 0.1, 2.0]]], dtype=torch.float64).expand(2, 2, 3)
    K = torch.tensor([[[1000.0, 0, 320], [0, 1000, 240], [0, 0, 1]], [[500.0, 0, 100], [0, 600, 50], [0, 0, 1]]],
                     dtype=torch.float64)
    want = [[[320 + 200, 240 - 400], [320 + 150, 240 + 50]], [[100 + 100, 50 - 240], [100 + 75, 50 + 30]]]
    np.testing.assert_allclose(G.project(X, K).numpy(), want)


def test_normalise_crop_pixels_of_numpy_points():
    """n = (px - crop centre) / (H / 2), in numpy as in torch."""
    px = np.array([[95.5, 127.5], [223.5, 0.0], [-32.5, 255.5]])
    want = [[0, 0], [1, -127.5 / 128], [-1, 1]]
    np.testing.assert_allclose(G.normalise_crop_pixels(px), want)
    np.testing.assert_allclose(G.normalise_crop_pixels(torch.tensor(px)).numpy(), want)
    np.testing.assert_allclose(G.normalise_crop_pixels(np.array([[31.5, 15.5]]), (64, 48)), [[8 / 32, -16 / 32]])


def test_quaternions_of_batches_half_turns_and_scaled_input():
    """Each quaternion of a batch is normalised on its own; a half turn about x is
    (0, 1, 0, 0); a rotation with a small scale error still gives a unit quaternion; and the
    axis-angle of q and of 2 q is the same (a tiny angle too)."""
    R = torch.tensor(Rotation.random(5, random_state=3).as_matrix())
    q = G.matrix_to_quaternion(R)
    np.testing.assert_allclose(q.numpy(), Rotation.from_matrix(R.numpy()).as_quat(scalar_first=True)
                               * np.sign(Rotation.from_matrix(R.numpy()).as_quat(scalar_first=True)[:, :1]), atol=1e-12)
    np.testing.assert_allclose(G.matrix_to_quaternion(torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))),
                               [0, 1, 0, 0])
    np.testing.assert_allclose(G.matrix_to_quaternion(R * 1.001).norm(dim=-1).numpy(), 1.0, rtol=1e-12)
    t = 1e-9
    tiny = torch.tensor([np.cos(t / 2), 0.0, np.sin(t / 2), 0.0], dtype=torch.float64)
    for scale in (1.0, 2.0):
        np.testing.assert_allclose(G.quaternion_to_axis_angle(tiny * scale).numpy(), [0, t, 0], rtol=1e-12, atol=0)
    big = torch.tensor([np.cos(0.6), np.sin(0.6), 0.0, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(G.quaternion_to_axis_angle(big * 2.0).numpy(), [1.2, 0, 0], rtol=1e-12)


def test_rot6d_of_a_batch_of_three():
    """A batch whose size is 3 (the size of the cross product's axis) is still decoded per row."""
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(G.rot6d_to_matrix(x).numpy(), _spin_rot6d_to_rotmat(x.numpy()), atol=1e-12)


def test_boxes_follow_their_arguments():
    """expand, min_conf and the aspect rule of a tall box (SPIN's box, HMR2.0's
    expand_to_aspect_ratio): tight_box's default keeps any positive confidence."""
    kp = np.array([[10, 20, 1], [50, 120, 0.3], [500, 500, 0]], np.float64)
    np.testing.assert_array_equal(G.tight_box(kp), [10, 20, 50, 120])
    c, s = G.box_from_keypoints(kp, expand=1.0)
    np.testing.assert_allclose(s, [100, 100])
    c, s = G.box_from_keypoints(kp, min_conf=0.5)  # only (10, 20) is left: a box of side 0
    np.testing.assert_allclose(c, [10, 20])
    np.testing.assert_allclose(s, [0, 0])
    np.testing.assert_allclose(G.expand_to_aspect(np.array([100.0, 300.0])), [225, 300])


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_uncrop_matrix_and_points_undo_the_crop():
    """x = c + k (u - u_0), k = box height / crop height: a box of height 512 centred on
    (400, 300) puts crop pixel (95.5, 127.5) at (400, 300) and the crop's corner (-0.5, -0.5)
    at (400 - 192, 300 - 256); a 64 x 48 crop has k = 8; any leading dimensions."""
    M = G.uncrop_matrix(_t([400.0, 300.0]), _t([384.0, 512.0]))
    np.testing.assert_allclose(M.numpy(), [[2, 0, 400 - 2 * 95.5], [0, 2, 300 - 2 * 127.5], [0, 0, 1]])
    small = G.uncrop_matrix(_t([400.0, 300.0]), _t([384.0, 512.0]), (64, 48))
    np.testing.assert_allclose(small.numpy(), [[8, 0, 400 - 8 * 23.5], [0, 8, 300 - 8 * 31.5], [0, 0, 1]])
    batch = G.uncrop_matrix(_t([400.0, 300.0]).expand(2, 3, 2), _t([384.0, 512.0]).expand(2, 3, 2))
    np.testing.assert_allclose(batch.numpy(), np.broadcast_to(M.numpy(), (2, 3, 3, 3)))
    px = _t([[95.5, 127.5], [-0.5, -0.5], [191.5, 255.5]])
    want = [[400, 300], [400 - 192, 300 - 256], [400 + 192, 300 + 256]]
    np.testing.assert_allclose(G.uncrop_points(px, _t([400.0, 300.0]), _t([384.0, 512.0])).numpy(), want)
    pts = G.uncrop_points(px.expand(2, 3, 2), _t([[400.0, 300.0], [0.0, 0.0]]), _t([[384.0, 512.0], [192.0, 256.0]]))
    np.testing.assert_allclose(pts.numpy(), [want, (px.numpy() - [95.5, 127.5]).tolist()])
    np.testing.assert_allclose(G.uncrop_points(_t([[23.5, 31.5], [-0.5, -0.5]]), _t([400.0, 300.0]), _t([384.0, 512.0]),
                                               (64, 48)).numpy(), [[400, 300], [400 - 8 * 24, 300 - 8 * 32]])
    # a 1.5 px box is used as is; a padded zero row stays finite (its height floored at 1 px)
    np.testing.assert_allclose(G.uncrop_matrix(_t([0.0, 0.0]), _t([1.0, 1.5]))[0, 0].item(), 1.5 / 256)
    np.testing.assert_allclose(G.uncrop_matrix(_t([0.0, 0.0]), _t([0.0, 0.0]))[0, 0].item(), 1 / 256)


def test_cliff_intrinsics_of_any_leading_dimensions():
    K = G.cliff_intrinsics(_t([[[1080.0, 1920.0]], [[480.0, 640.0]]]))  # (2, 1, 2)
    assert K.shape == (2, 1, 3, 3)
    d = np.sqrt(1080.0 ** 2 + 1920.0 ** 2)
    np.testing.assert_allclose(K[0, 0].numpy(), [[d, 0, 959.5], [0, d, 539.5], [0, 0, 1]])
    np.testing.assert_allclose(K[1, 0].numpy(), [[800, 0, 319.5], [0, 800, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(G.cliff_intrinsics(_t([480.0, 640.0])).numpy(), K[1, 0].numpy())


def test_affine_rotation_is_the_turn_of_a_similarity():
    """Q = diag(L / sqrt|det L|, 1) for a scaled turn, a scaled mirror; zeros for a padded row."""
    c, s = np.cos(0.3), np.sin(0.3)
    A = _t([[0.5 * c, 0.5 * s, 7.0], [-0.5 * s, 0.5 * c, -3.0]])
    np.testing.assert_allclose(G.affine_rotation(A).numpy(), [[c, s, 0], [-s, c, 0], [0, 0, 1]], atol=1e-15)
    mirrored = _t([[-2 * c, -2 * s, 1.0], [-2 * s, 2 * c, 2.0]])
    np.testing.assert_allclose(G.affine_rotation(mirrored).numpy(), [[-c, -s, 0], [-s, c, 0], [0, 0, 1]], atol=1e-15)
    zero = torch.zeros(2, 3, dtype=torch.float64)
    both = G.affine_rotation(torch.stack([A, mirrored, zero])[:, None])  # (3, 1, 2, 3)
    assert both.shape == (3, 1, 3, 3)
    np.testing.assert_allclose(both[1, 0].numpy(), [[-c, -s, 0], [-s, c, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_array_equal(both[2, 0].numpy(), [[0, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_cam_full_to_crop_inverts_cam_crop_to_full():
    """The numbers of test_camera_helpers_take_any_leading_dimensions, backwards."""
    K = _t([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    c, b = _t([700.0, 300.0]), _t([300.0, 400.0])
    np.testing.assert_allclose(G.cam_full_to_crop(_t([0.7, -0.8, 10.0]), c, b, K).numpy(), [0.5, 0.1, -0.2])
    many = G.cam_full_to_crop(_t([0.7, -0.8, 10.0]).expand(2, 4, 3), c.expand(2, 4, 2), b.expand(2, 4, 2),
                              K.expand(2, 4, 3, 3))
    np.testing.assert_allclose(many.numpy(), np.broadcast_to([0.5, 0.1, -0.2], (2, 4, 3)))
    # a non-square focal: sqrt(fx fy) = 1000
    K2 = _t([[800.0, 0, 640], [0, 1250.0, 360], [0, 0, 1]])
    np.testing.assert_allclose(G.cam_full_to_crop(_t([0.7, -0.8, 10.0]), c, b, K2).numpy(), [0.5, 0.1, -0.2])


def test_full_image_intrinsics_of_a_plain_crop_and_a_turned_view():
    """A plain crop's full-image K is the dataset's K (or CLIFF's K of the image without one);
    a view turned by 0.4 rad about the box centre c sees the original image turned about c,
    with camera axes Q: project(Q X, K_full) = R (project(X, K) - c) + c. Each row of a batch
    takes its own K or CLIFF's."""
    hw = _t([480.0, 640.0])
    K0 = np.array([[500.0, 0, 330.0], [0, 520.0, 250.0], [0, 0, 1]])
    c, size = np.array([300.0, 220.0]), np.array([150.0, 200.0])
    A = G.crop_affine(c, size)
    crop_K = G.affine_intrinsics(K0, A)
    args = (_t(A), _t(c), _t(size), hw)
    np.testing.assert_allclose(G.full_image_intrinsics(_t(crop_K), torch.tensor(True), *args).numpy(), K0, atol=1e-9)
    d = 800.0  # the diagonal of 480 x 640
    cliff = [[d, 0, 319.5], [0, d, 239.5], [0, 0, 1]]
    np.testing.assert_allclose(G.full_image_intrinsics(_t(crop_K), torch.tensor(False), *args).numpy(), cliff,
                               atol=1e-9)
    small = G.crop_affine(c, size, (64, 48))  # a 64 x 48 crop of the same box
    small_K = G.full_image_intrinsics(_t(G.affine_intrinsics(K0, small)), torch.tensor(True), _t(small), _t(c),
                                      _t(size), hw, (64, 48))
    np.testing.assert_allclose(small_K.numpy(), K0, atol=1e-9)
    rows = G.full_image_intrinsics(_t(crop_K).expand(2, 3, 3), torch.tensor([True, False]), _t(A).expand(2, 2, 3),
                                   _t(c).expand(2, 2), _t(size).expand(2, 2), hw.expand(2, 2))
    np.testing.assert_allclose(rows.numpy(), [K0, cliff], atol=1e-9)
    # a turned view, without intrinsics: CLIFF's K turned with the image
    theta = 0.4
    Av = G.crop_affine(c, size, rotation=theta)
    Kv = G.full_image_intrinsics(_t(G.affine_intrinsics(K0, Av)), torch.tensor(False), _t(Av), _t(c), _t(size), hw)
    R = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])  # crop_affine's turn
    Q = np.eye(3)
    Q[:2, :2] = R
    X = RNG.normal(scale=0.3, size=(6, 3)) + [0.2, -0.1, 4.0]
    x = X @ np.array(cliff).T
    x = x[:, :2] / x[:, 2:]
    want = (x - c) @ R.T + c
    np.testing.assert_allclose(G.project(_t(X @ Q.T), Kv).numpy(), want, atol=1e-8)
