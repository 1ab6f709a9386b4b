"""SPIN's Procrustes as its `utils/pose_utils.py::compute_similarity_transform` writes it
(kept by CameraHMR / TokenHMR `reconstruction_error` and eth-ait/emdb), for the conformance
tests' expected PA-MPJPE: an independent reimplementation, not the project's metric."""
from __future__ import annotations

import numpy as np


def similarity_transform(S1: np.ndarray, S2: np.ndarray) -> np.ndarray:
    """S1, S2 (N, 3) -> S1 mapped onto S2 by the least-squares similarity transform."""
    S1, S2 = S1.T, S2.T
    mu1, mu2 = S1.mean(axis=1, keepdims=True), S2.mean(axis=1, keepdims=True)
    X1, X2 = S1 - mu1, S2 - mu2
    var1 = np.sum(X1 ** 2)  # 2. the variance of X1, for the scale
    K = X1.dot(X2.T)  # 3. the outer product of X1 and X2
    U, s, Vh = np.linalg.svd(K)  # 4. R = U V' maximises trace(R'K)
    V = Vh.T
    Z = np.eye(3)
    Z[-1, -1] *= np.sign(np.linalg.det(U.dot(V.T)))  # det(R) = 1
    R = V.dot(Z.dot(U.T))
    scale = np.trace(R.dot(K)) / var1  # 5. the scale
    t = mu2 - scale * R.dot(mu1)  # 6. the translation
    return (scale * R.dot(S1) + t).T
