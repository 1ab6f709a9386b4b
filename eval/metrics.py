"""Per-sample 3D errors: MPJPE, PA-MPJPE, PVE, 3D PCK and its AUC. Pure functions, no project imports.

Every function takes two point sets `pred`, `gt` of shape (N, P, 3) — numpy arrays or
torch tensors (P joints or vertices) — and returns the per-sample error (N,) in the
inputs' unit, of the inputs' type (a torch tensor on the inputs' device, or a numpy
float64 array). Unit conversion (metres -> mm) and root alignment are the protocol's
job (`eval.protocols`): `mpjpe` and `pve` align nothing.

PA-MPJPE aligns each predicted sample to its ground truth by the similarity transform
(rotation without reflection, isotropic scale, translation) that minimises the squared
error — Umeyama (1991), as in SPIN `utils/pose_utils.py::compute_similarity_transform`
and 4D-Humans `hmr2/utils/pose_utils.py` — then takes the mean per-joint distance.

PCK / AUC return fractions per sample (the share of joints under a distance threshold,
and its mean over a list of thresholds), as MPI-INF-3DHP's `mpii_compute_3d_pck.m`
counts them; the thresholds are the caller's (in the inputs' unit).
"""
from __future__ import annotations

import numpy as np
import torch

# Below this variance (squared input unit) a centred prediction has no extent, so no
# scale can be estimated; its alignment is then the translation alone (ours).
_MIN_VARIANCE = 1e-12


def _check(pred, gt) -> None:
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"pred has shape {tuple(pred.shape)}, gt {tuple(gt.shape)}: they must match")
    if len(pred.shape) != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected point sets of shape (N, P, 3), got {tuple(pred.shape)}")
    if pred.shape[1] == 0:
        raise ValueError("expected at least one point per sample, got P = 0")


def _as_torch(x) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy). numpy inputs are computed in float64 on the CPU."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.from_numpy(np.asarray(x, dtype=np.float64)), True


def _out(x: torch.Tensor, was_numpy: bool):
    return x.numpy() if was_numpy else x


def mean_distance(pred, gt):
    """Mean Euclidean distance between corresponding points: (N, P, 3) x2 -> (N,)."""
    _check(pred, gt)
    p, was_numpy = _as_torch(pred)
    g, _ = _as_torch(gt)
    return _out(torch.linalg.vector_norm(p - g, dim=-1).mean(dim=-1), was_numpy)


def mpjpe(pred, gt):
    """Mean per-joint position error, no alignment: (N, J, 3) x2 -> (N,)."""
    return mean_distance(pred, gt)


def pve(pred, gt):
    """Per-vertex error, no alignment: (N, V, 3) x2 -> (N,)."""
    return mean_distance(pred, gt)


def similarity_align(pred, gt):
    """`pred` mapped onto `gt` by the per-sample least-squares similarity transform.

    (N, P, 3) x2 -> (N, P, 3). Umeyama: centre both sets, K = X^T Y (3x3), K = U S V^T;
    R = V D U^T with D = diag(1, 1, sign det(V U^T)) so R is a rotation (never a
    reflection); scale s = trace(D S) / |X|^2; t = mean(gt) - s R mean(pred).
    Computed in float64 whatever the input precision.
    """
    _check(pred, gt)
    p, was_numpy = _as_torch(pred)
    g, _ = _as_torch(gt)
    dtype = p.dtype
    p = p.to(torch.float64)
    g = g.to(torch.float64)
    mu_p = p.mean(dim=1, keepdim=True)  # (N, 1, 3)
    mu_g = g.mean(dim=1, keepdim=True)
    x = p - mu_p  # (N, P, 3)
    y = g - mu_g
    k = x.transpose(1, 2) @ y  # (N, 3, 3)  K = X^T Y
    u, s, vt = torch.linalg.svd(k)  # K = U diag(S) V^T
    v = vt.transpose(1, 2)
    d = torch.ones_like(s)  # (N, 3)
    d[:, 2] = torch.sign(torch.linalg.det(v @ u.transpose(1, 2)))  # U, V orthogonal: det ±1, never 0
    rot = v @ torch.diag_embed(d) @ u.transpose(1, 2)  # (N, 3, 3), maps x -> y
    var = (x**2).sum(dim=(1, 2))  # (N,)
    scale = torch.where(var > _MIN_VARIANCE, (d * s).sum(dim=1) / var.clamp_min(_MIN_VARIANCE),
                        torch.zeros_like(var))
    aligned = scale[:, None, None] * (x @ rot.transpose(1, 2)) + mu_g  # (N, P, 3)
    return _out(aligned.to(dtype), was_numpy)


def pa_mpjpe(pred, gt):
    """Procrustes-aligned MPJPE: `mpjpe(similarity_align(pred, gt), gt)`, (N,)."""
    return mean_distance(similarity_align(pred, gt), gt)


def pck(pred, gt, threshold: float):
    """Per-sample fraction of joints closer than `threshold` (strictly, in the inputs'
    unit) to their ground truth, no alignment: (N, J, 3) x2 -> (N,) in [0, 1].
    The 3D PCK of MPI-INF-3DHP's evaluation (`mpii_compute_3d_pck.m`: `error < t`)."""
    _check(pred, gt)
    p, was_numpy = _as_torch(pred)
    g, _ = _as_torch(gt)
    dist = torch.linalg.vector_norm(p - g, dim=-1)  # (N, J)
    return _out((dist < threshold).to(dist.dtype).mean(dim=-1), was_numpy)


def auc(pred, gt, thresholds):
    """Per-sample area under the PCK curve: the mean of `pck` over `thresholds` (as
    `mpii_compute_3d_pck.m` averages its PCK curve over `0:5:150`), (N,) in [0, 1]."""
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ValueError("auc: expected at least one threshold")
    curves = [pck(pred, gt, t) for t in thresholds]
    if isinstance(curves[0], torch.Tensor):
        return torch.stack(curves).mean(dim=0)
    return np.mean(np.stack(curves), axis=0)
