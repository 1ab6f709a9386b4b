"""eval.metrics against independent computations (scipy) and known cases."""
import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from eval import metrics


def _rng():
    return np.random.default_rng(1234)


def _random_similarity(rng, n):
    rot = Rotation.random(n, random_state=rng.integers(1 << 31)).as_matrix()  # (n, 3, 3)
    scale = rng.uniform(0.5, 2.0, size=n)
    shift = rng.normal(size=(n, 3))
    return rot, scale, shift


def _apply(rot, scale, shift, x):
    return scale[:, None, None] * np.einsum("nij,npj->npi", rot, x) + shift[:, None]


def _pa_reference(pred, gt):
    """Independent: scipy Kabsch (proper rotation) on centred sets + optimal scale."""
    out = []
    for p, g in zip(pred, gt):
        x, y = p - p.mean(0), g - g.mean(0)
        rot, _ = Rotation.align_vectors(y, x)  # minimises sum |y_i - R x_i|^2, det R = +1
        rx = rot.apply(x)
        s = (rx * y).sum() / (x * x).sum()
        out.append(np.linalg.norm(s * rx - y, axis=1).mean())
    return np.array(out)


def test_mpjpe_pve_are_mean_euclidean_distance():
    rng = _rng()
    pred, gt = rng.normal(size=(2, 5, 7, 3))
    expected = np.sqrt(((pred - gt) ** 2).sum(-1)).mean(-1)
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.pve(pred, gt), expected, rtol=1e-12)


def test_shift_gives_its_length_and_no_pa_error():
    gt = _rng().normal(size=(4, 14, 3))
    pred = gt + np.array([0.006, 0.0, 0.008])  # 10 mm in metres
    np.testing.assert_allclose(metrics.mpjpe(pred, gt), 0.010, rtol=1e-12)
    np.testing.assert_allclose(metrics.pve(pred, gt), 0.010, rtol=1e-12)
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), 0.0, atol=1e-12)


def test_pa_mpjpe_matches_independent_kabsch_on_random_data():
    rng = _rng()
    pred, gt = rng.normal(size=(2, 64, 14, 3))
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), _pa_reference(pred, gt), rtol=1e-9, atol=1e-12)


def test_pa_mpjpe_matches_scipy_orthogonal_procrustes_when_proper():
    rng = _rng()
    checked = 0
    for _ in range(40):
        pred, gt = rng.normal(size=(2, 17, 3))
        gt = 0.3 * gt + 1.5 * pred  # correlated, as predictions are
        x, y = pred - pred.mean(0), gt - gt.mean(0)
        r, _ = orthogonal_procrustes(x, y)  # x @ r ~ y (may reflect)
        if np.linalg.det(r) < 0:
            continue
        s = np.trace((x @ r).T @ y) / (x * x).sum()
        ref = np.linalg.norm(s * x @ r - y, axis=1).mean()
        np.testing.assert_allclose(metrics.pa_mpjpe(pred[None], gt[None])[0], ref, rtol=1e-9)
        checked += 1
    assert checked > 20


def test_pa_mpjpe_is_the_least_squares_optimum():
    """Direct numerical minimisation over (rotation vector, log-scale, translation)."""
    rng = _rng()
    pred, gt = rng.normal(size=(2, 3, 10, 3))
    for p, g in zip(pred, gt):
        def sq(theta):
            r = Rotation.from_rotvec(theta[:3]).as_matrix()
            return ((np.exp(theta[3]) * p @ r.T + theta[4:] - g) ** 2).sum()
        best = min((minimize(sq, np.r_[rng.normal(size=3), 0, 0, 0, 0], method="BFGS") for _ in range(8)),
                   key=lambda r: r.fun)
        aligned = metrics.similarity_align(p[None], g[None])[0]
        assert ((aligned - g) ** 2).sum() <= best.fun + 1e-7


def test_similarity_copy_has_zero_pa_mpjpe():
    rng = _rng()
    gt = rng.normal(size=(32, 14, 3))
    rot, scale, shift = _random_similarity(rng, 32)
    pred = _apply(rot, scale, shift, gt)
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), 0.0, atol=1e-10)
    np.testing.assert_allclose(metrics.similarity_align(pred, gt), gt, atol=1e-10)


def test_reflection_is_not_an_allowed_alignment():
    gt = _rng().normal(size=(8, 14, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    err = metrics.pa_mpjpe(mirrored, gt)
    assert np.all(err > 1e-3)
    np.testing.assert_allclose(err, _pa_reference(mirrored, gt), rtol=1e-9)
    # and the alignment it picks is a proper rotation: same handedness as the prediction
    aligned = metrics.similarity_align(mirrored, gt)
    ref_det = np.linalg.det(np.stack([m[1:4] - m[0] for m in mirrored]))
    out_det = np.linalg.det(np.stack([a[1:4] - a[0] for a in aligned]))
    assert np.all(np.sign(ref_det) == np.sign(out_det))


def test_torch_input_gives_torch_output_and_same_values():
    rng = _rng()
    pred, gt = rng.normal(size=(2, 6, 14, 3))
    for fn in (metrics.mpjpe, metrics.pa_mpjpe, metrics.pve):
        ref = fn(pred, gt)
        out = fn(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
        assert isinstance(out, torch.Tensor) and out.shape == (6,) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-6)
        assert isinstance(ref, np.ndarray) and ref.shape == (6,)


def test_degenerate_prediction_does_not_produce_nan():
    gt = _rng().normal(size=(2, 14, 3))
    pred = np.zeros_like(gt)
    err = metrics.pa_mpjpe(pred, gt)
    assert np.all(np.isfinite(err))
    np.testing.assert_allclose(err, np.linalg.norm(gt - gt.mean(1, keepdims=True), axis=-1).mean(-1))


@pytest.mark.parametrize("shapes", [((2, 14, 3), (2, 13, 3)), ((14, 3), (14, 3)), ((2, 14, 2), (2, 14, 2))])
def test_shape_errors_are_clear(shapes):
    a, b = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match="shape"):
        metrics.pa_mpjpe(a, b)


def test_pck_and_auc_count_joints_strictly_under_each_threshold():
    """MPI-INF-3DHP `mpii_compute_3d_pck.m`: a joint is correct when `error < t`; PCK is the
    share of correct joints, AUC the mean of the PCK curve over the thresholds. Errors are
    placed exactly (ground truth at the origin, each joint off along x by its error)."""
    errors = np.array([[0.0, 0.05, 0.1, 0.2], [0.15, 0.15, 0.15, 0.15]])  # (N=2, J=4)
    gt = np.zeros((2, 4, 3))
    pred = gt.copy()
    pred[..., 0] = errors
    # by hand: t = 0.1 -> sample 0 has 0 and 0.05 under it (0.1 is not), sample 1 none
    pck_01, pck_015 = [0.5, 0.0], [0.75, 0.0]
    # thresholds 0, 0.1, 0.2: sample 0 -> 0, 1/2, 3/4; sample 1 -> 0, 0, 1
    auc = [(0 + 0.5 + 0.75) / 3, (0 + 0 + 1) / 3]
    for cast in (np.asarray, torch.from_numpy):
        p, g = cast(pred), cast(gt)
        for out, want in ((metrics.pck(p, g, 0.1), pck_01), (metrics.pck(p, g, 0.15), pck_015),
                          (metrics.auc(p, g, [0.0, 0.1, 0.2]), auc)):
            assert type(out) is type(p) and tuple(out.shape) == (2,)  # per sample, the inputs' type
            np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12)


def test_numpy_inputs_of_any_type_are_computed_in_float64():
    """Integer and float32 arrays are read as float64 (the docstring's contract): a 3-4-5
    triangle is 5 exactly, and float32 points give the float64 distance of their values."""
    out = metrics.mpjpe(np.array([[[0, 0, 0]]]), np.array([[[3, 4, 0]]]))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [5.0])
    p32 = np.array([[[0.1, 0.2, 0.3]]], np.float32)
    want = np.sqrt((p32.astype(np.float64) ** 2).sum())  # float64 arithmetic on the float32 values
    out = metrics.pve(p32, np.zeros((1, 1, 3), np.float32))
    assert out.dtype == np.float64 and out[0] == want


def test_a_sample_needs_at_least_one_point():
    with pytest.raises(ValueError, match="at least one point"):
        metrics.mpjpe(np.zeros((2, 0, 3)), np.zeros((2, 0, 3)))
    np.testing.assert_allclose(metrics.mpjpe(np.zeros((2, 1, 3)), np.ones((2, 1, 3))), np.sqrt(3.0))  # one joint


def _official_3dpw_similarity(s1, s2):
    """aymenmir1/3dpw-eval evaluate.py `compute_similarity_transform` (one sample, S1 the
    prediction (P, 3)), restated: centre both, K = X1 X2^T, U s V^T = svd(K),
    Z = diag(1, 1, sign det(U V^T)), R = V Z U^T, scale = trace(R K) / |X1|^2,
    t = mu2 - scale R mu1; an all-zero prediction becomes the ground truth's mean."""
    if np.abs(s1).sum() == 0:
        return np.tile(s2.mean(0), (len(s1), 1))
    x1, x2 = s1.T, s2.T
    mu1, mu2 = x1.mean(1, keepdims=True), x2.mean(1, keepdims=True)
    k = (x1 - mu1) @ (x2 - mu2).T
    u, _, vh = np.linalg.svd(k)
    z = np.eye(3)
    z[-1, -1] = np.sign(np.linalg.det(u @ vh))
    r = vh.T @ z @ u.T
    scale = np.trace(r @ k) / ((x1 - mu1) ** 2).sum()
    return (scale * r @ x1 + mu2 - scale * r @ mu1).T


def test_similarity_align_is_the_official_3dpw_procrustes():
    rng = _rng()
    pred, gt = rng.normal(size=(2, 6, 14, 3))
    pred[1] *= [-1.0, 1.0, 1.0]  # a mirrored sample: the rotation must not reflect
    pred[2] = 0.0  # the official code's degenerate case
    want = np.stack([_official_3dpw_similarity(p, g) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(metrics.similarity_align(pred, gt), want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), np.linalg.norm(want - gt, axis=-1).mean(-1), rtol=1e-9)
