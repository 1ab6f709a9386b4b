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
