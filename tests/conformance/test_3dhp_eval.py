"""The MPI-INF-3DHP test protocol against SPIN's evaluation and the test set's own code.

Expected values are computed here from the rules, on hand-built `annot_data.mat` files read
by the real reader:
- nkolot/SPIN `datasets/preprocess/mpi_inf_3dhp.py` (`test_data`): `S17 =
  univ_annot3[frame, 0, joints17_idx] / 1000; S17 = S17 - S17[0]`, stored in SPIN-24 rows
  `joints_idx`; `eval.py` ('mpi-inf-3dhp'): the ground truth `pose_3d[:, J24_TO_J17, :-1]`,
  the prediction `J_regressor_h36m @ vertices`, `[:, H36M_TO_J17] - [:, [0]]` (pelvis),
  MPJPE the mean Euclidean distance, PA-MPJPE after `reconstruction_error` (Procrustes);
  the literal lists are copied from SPIN `constants.py` and the preprocessing.
- the test set's `mpii_compute_3d_pck.m`: `thresh = 0:5:150`, `pck_thresh = 150`, a joint is
  correct when `error < t`; PCK = correct / (joints x frames), AUC = 100 x the mean of the
  PCK curve over `thresh`; `mpii_get_pck_auc_joint_groups.m` (the release's) groups all 17
  joints (Head [1, 17], Neck [2], Shou [3, 6], Elbow [4, 7], Wrist [5, 8], spine [16],
  Hip [9, 12, 15], Knee [10, 13], Ankle [11, 14]) and the total weighs each group by its size.
"""
from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest

from conformance.spin_reference import similarity_transform
from datasets.mpi_inf_3dhp import MpiInf3dhpReader
from datasets.record import PersonFrame

# nkolot/SPIN constants.py
H36M_TO_J17 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
J24_TO_J17 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17]
# nkolot/SPIN datasets/preprocess/mpi_inf_3dhp.py, test_data / mpi_inf_3dhp_extract
SPIN_TEST_JOINTS17_IDX = [14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]
SPIN_JOINTS_IDX = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]
# mpii_compute_3d_pck.m
THRESH_MM = np.arange(0, 151, 5)
PCK_THRESH_MM = 150
# mpii_get_pck_auc_joint_groups.m (1-based 3DHP test joint indices)
JOINT_GROUPS = {"Head": [1, 17], "Neck": [2], "Shou": [3, 6], "Elbow": [4, 7], "Wrist": [5, 8], "spine": [16],
                "Hip": [9, 12, 15], "Knee": [10, 13], "Ankle": [11, 14]}
N = 3


@pytest.fixture
def test_root(tmp_path):
    rng = np.random.default_rng(11)
    annot2 = rng.uniform([5, 5], [55, 35], size=(N, 1, 17, 2))
    univ = rng.uniform(-800, 800, (N, 1, 17, 3)) + [0, 0, 4000]
    ts = tmp_path / "mpi_inf_3dhp_test_set" / "TS2"
    ts.mkdir(parents=True)
    with h5py.File(ts / "annot_data.mat", "w") as f:
        f["annot2"], f["annot3"], f["univ_annot3"] = annot2, univ * 1.1, univ
        f["valid_frame"] = np.ones((N, 1))
    (ts / "imageSequence").mkdir()
    for k in range(1, N + 1):
        cv2.imwrite(str(ts / "imageSequence" / f"img_{k:06d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    return tmp_path, univ[:, 0]


def _spin_gt(univ_mm: np.ndarray) -> np.ndarray:
    """SPIN test_data + eval.py: (17, 3) ground truth of one frame, metres."""
    S17 = univ_mm[SPIN_TEST_JOINTS17_IDX] / 1000
    S17 = S17 - S17[0]
    S24 = np.zeros((24, 3))
    S24[SPIN_JOINTS_IDX] = S17
    return S24[J24_TO_J17]


def _official_pck_auc(err_mm: np.ndarray) -> tuple[float, float]:
    """mpii_compute_3d_pck.m 'Total' of one method: err (frames, 17) mm. The groups index
    the 3DHP test order and `err` is in SPIN's J17 order, but the groups cover each of the
    17 joints once and the total weighs each group by its size, so the total is the same."""
    err = err_mm
    assert sorted(j for g in JOINT_GROUPS.values() for j in g) == list(range(1, 18))
    nf = len(err)
    curve_total, pck_total, count = np.zeros(len(THRESH_MM)), 0.0, 0
    for joints in JOINT_GROUPS.values():
        cols = [j - 1 for j in joints]
        curve = np.array([(err[:, cols] < t).sum() / (len(cols) * nf) for t in THRESH_MM])
        pck = 100 * (err[:, cols] < PCK_THRESH_MM).sum() / (len(cols) * nf)
        curve_total += curve * len(cols)
        pck_total += pck * len(cols)
        count += len(cols)
    return pck_total / count, 100 * (curve_total / count).sum() / len(THRESH_MM)


def test_3dhp_scores_follow_spin_and_the_official_pck(test_root, synthetic_assets):
    from eval.protocols import PROTOCOLS, Prediction, load_ground_truth

    root, univ = test_root
    hp = PROTOCOLS["3dhp"]
    recs = list(MpiInf3dhpReader(root, "test").frames())
    assert all(isinstance(r, PersonFrame) for r in recs) and len(recs) == N
    gt = load_ground_truth(hp, synthetic_assets).of_records(recs, hp)
    rng = np.random.default_rng(2)
    reg = rng.uniform(size=(17, 6890))  # any H36M-like regressor (rows in H36M order)
    reg /= reg.sum(1, keepdims=True)
    # a mesh whose regressed joints lie near the ground truth: each row's vertices at a point
    verts = rng.normal(scale=0.4, size=(N, 6890, 3)) + [0, 0, 4.0]
    out = hp.score(Prediction(vertices=verts), gt, reg)
    errs = []
    for n in range(N):
        kp = reg @ verts[n]  # torch.matmul(J_regressor_batch, pred_vertices)
        pred = kp[H36M_TO_J17] - kp[[0]]  # eval.py: pred_pelvis = pred_keypoints_3d[:, [0], :]
        want = _spin_gt(univ[n])
        err = np.linalg.norm(pred - want, axis=-1)
        errs.append(err * 1000)
        assert out["mpjpe"][n] == pytest.approx(1000 * err.mean(), rel=1e-6)  # records hold float32
        pa = similarity_transform(pred, want)
        assert out["pa_mpjpe"][n] == pytest.approx(1000 * np.linalg.norm(pa - want, axis=-1).mean(), rel=1e-6)
    pck, auc = _official_pck_auc(np.stack(errs))
    assert out["pck"].mean() == pytest.approx(pck, rel=1e-9)
    assert out["auc"].mean() == pytest.approx(auc, rel=1e-9)


def test_pck_auc_on_errors_at_the_thresholds():
    """Joints exactly at a threshold are not correct (`error < t`); 31 thresholds."""
    from eval import metrics

    gt = np.zeros((1, 4, 3))
    pred = gt.copy()
    pred[0, :, 0] = [0.0, 5.0, 150.0, 149.0]  # mm
    assert metrics.pck(pred, gt, 150.0)[0] == pytest.approx(3 / 4)
    # per threshold t in 0:5:150: joint 0 counts for t > 0 (30), joint 1 for t > 5 (29),
    # joint 2 never, joint 3 only at t = 150 (1)
    assert metrics.auc(pred, gt, THRESH_MM)[0] == pytest.approx((30 + 29 + 0 + 1) / (4 * 31))
