"""EMDB against the rules of its publisher and of the evaluations that report EMDB 1.

Expected values are written here from the rules, on small hand-built files:
- eth-ait/emdb `dataset.md`: the layout `P<k>/<seq>/P<k>_<seq>_data.pkl`, images
  `images/{%5d}.jpg` from 0, the keys of the pickle, `bboxes` as `(x_min, y_min, x_max,
  y_max)`, `invalid_idxs` (not a good frame, or `x_max - x_min <= 0 or y_max - y_min <= 0`);
- eth-ait/emdb `evaluate.py`: the evaluated sequences are those with `emdb1` true;
  `evaluation_engine.py`: only `good_frames_mask` frames are scored, the ground truth is the
  gendered SMPL with the sequence's betas repeated, `extrinsics` are world -> camera and
  `evaluation_metrics.apply_camera_transforms` maps world points by `world2camera @ [x; 1]`;
  WHAM `emdb_eval_utils.py`: `poses_root_cam = extrinsics[:, :3, :3] @ poses_root`;
- the EMDB-1 numbers of CameraHMR `core/camerahmr_trainer_smpl.py` ('emdb' branch) and
  TokenHMR `lib/utils/pose_utils.py` (Evaluator, 'EMDB'): joints = the neutral SMPL
  `J_regressor` @ vertices on both sides, pelvis = (j[1] + j[2]) / 2 subtracted from joints
  and vertices, MPJPE / PVE the mean Euclidean distances x 1000, PA-MPJPE after
  `compute_similarity_transform` (SPIN's Procrustes) on the 24 joints.
"""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conformance.spin_reference import similarity_transform
from datasets.emdb import EmdbReader, Options
from datasets.reader import AnnotationError, BodyModels
from datasets.record import PersonFrame, Reject

HW = (48, 64)  # (height, width) of the hand-built frames
N = 4


def _rng_world_sequence(rng, n):
    """World-frame SMPL parameters and world -> camera extrinsics of a small sequence."""
    poses_root = rng.normal(scale=0.5, size=(n, 3))
    poses_body = rng.normal(scale=0.2, size=(n, 69))
    trans = rng.normal(scale=0.3, size=(n, 3))
    ext = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        ext[i, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.6, size=3)).as_matrix()
        ext[i, :3, 3] = rng.normal(scale=0.2, size=3) + [0, 0, 5.0]
    return poses_root, poses_body, trans, ext


def _write_sequence(root, subject, seq, *, emdb1, gender="female", seed=0):
    rng = np.random.default_rng(seed)
    poses_root, poses_body, trans, ext = _rng_world_sequence(rng, N)
    boxes = np.array([[10.0, 5.0, 30.0, 40.0], [12.0, 6.0, 31.0, 41.0], [20.0, 8.0, 20.0, 30.0],
                      [14.0, 7.0, 33.0, 44.0]])  # frame 2: x_max == x_min, a degenerate box
    good = np.array([True, False, True, True])  # frame 1: not a good frame
    data = {
        "gender": gender, "name": f"{subject}_{seq}", "emdb1": emdb1, "emdb2": False, "n_frames": N,
        "good_frames_mask": good,
        "camera": {"intrinsics": np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]), "extrinsics": ext,
                   "width": HW[1], "height": HW[0]},
        "smpl": {"poses_root": poses_root, "poses_body": poses_body, "trans": trans,
                 "betas": rng.normal(scale=0.5, size=10)},
        "kp2d": np.zeros((N, 24, 2)),
        # dataset.md: invalid if not a good frame or degenerate
        "bboxes": {"bboxes": boxes, "invalid_idxs": np.array([1, 2])},
    }
    d = root / subject / seq
    (d / "images").mkdir(parents=True)
    for i in range(N):  # dataset.md: images/{%5d}.jpg from 0
        cv2.imwrite(str(d / "images" / f"{i:05d}.jpg"), np.zeros((*HW, 3), np.uint8))
    (d / f"{subject}_{seq}_data.pkl").write_bytes(pickle.dumps(data, protocol=4))
    return data


@pytest.fixture
def emdb_root(tmp_path):
    root = tmp_path / "emdb"
    seqs = {"P3/12_hand_built": _write_sequence(root, "P3", "12_hand_built", emdb1=True),
            "P3/13_not_emdb1": _write_sequence(root, "P3", "13_not_emdb1", emdb1=False, gender="male", seed=1)}
    return root, seqs


def test_test_split_is_emdb1_good_frames(emdb_root, synthetic_assets):
    root, _ = emdb_root
    opts = Options(assets_root=str(synthetic_assets.root))
    assert EmdbReader.splits(root) == ["test"]
    items = list(EmdbReader(root, "test", opts).frames())
    # evaluate.py: only EMDB 1 sequences; frames in file order from 0
    assert [i.key for i in items] == [f"emdb_test_P3-12-hand-built_{k:06d}_p0" for k in range(N)]
    assert isinstance(items[1], Reject) and items[1].reason == "invalid_frame: good_frames_mask false"
    assert isinstance(items[2], Reject) and items[2].reason == "invalid_frame: bboxes invalid_idxs"
    assert all(isinstance(items[k], PersonFrame) for k in (0, 3))
    assert items[3].image_path == "P3/12_hand_built/images/00003.jpg"  # dataset.md: {%5d}.jpg from 0
    every = list(EmdbReader(root, "test", Options(assets_root=str(synthetic_assets.root), subset="all")).frames())
    assert len(every) == 2 * N and every[N].key == "emdb_test_P3-13-not-emdb1_000000_p0"


def test_ground_truth_is_the_gendered_body_through_world2cam(emdb_root, synthetic_assets):
    root, seqs = emdb_root
    data = seqs["P3/12_hand_built"]
    recs = [r for r in EmdbReader(root, "test", Options(assets_root=str(synthetic_assets.root))).frames()
            if isinstance(r, PersonFrame)]
    models = BodyModels(synthetic_assets.root)
    smpl = data["smpl"]
    for rec in recs:
        i = rec.frame
        E = data["camera"]["extrinsics"][i]
        pose_w = np.concatenate([smpl["poses_root"][i], smpl["poses_body"][i]]).reshape(1, 24, 3)
        world = models.forward("female", pose_w, smpl["betas"][None], smpl["trans"][i][None])
        # evaluation_metrics.apply_camera_transforms: world2camera @ [x; 1]
        want = world["keypoints"][0, :, :3] @ E[:3, :3].T + E[:3, 3]
        np.testing.assert_allclose(rec.joints_3d[:, :3], want, atol=1e-5)
        # WHAM emdb_eval_utils.py: poses_root_cam = extrinsics[:, :3, :3] @ poses_root
        R_root = Rotation.from_rotvec(smpl["poses_root"][i]).as_matrix()
        np.testing.assert_allclose(Rotation.from_rotvec(rec.smpl_pose[0]).as_matrix(), E[:3, :3] @ R_root, atol=1e-5)
        np.testing.assert_allclose(rec.smpl_pose[1:].reshape(-1), smpl["poses_body"][i], atol=1e-6)
        np.testing.assert_allclose(rec.betas, smpl["betas"], atol=1e-6)  # load_emdb_gt: betas repeated
        assert rec.gender == "female" and rec.has_smpl and rec.has_transl
        np.testing.assert_allclose(rec.intrinsics, data["camera"]["intrinsics"])
        np.testing.assert_array_equal(rec.image_hw, HW)
        x0, y0, x1, y1 = data["bboxes"]["bboxes"][i]  # (x_min, y_min, x_max, y_max)
        np.testing.assert_allclose(rec.box_tight, [x0, y0, x1, y1])
        np.testing.assert_allclose(rec.box_center, [(x0 + x1) / 2, (y0 + y1) / 2])


def test_bad_files_are_named_errors(emdb_root, synthetic_assets):
    root, _ = emdb_root
    opts = Options(assets_root=str(synthetic_assets.root))
    path = root / "P3" / "12_hand_built" / "P3_12_hand_built_data.pkl"
    data = pickle.loads(path.read_bytes())
    del data["good_frames_mask"]
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(AnnotationError, match=r"P3_12_hand_built_data.pkl: EMDB sequence file lacks \['good_frames_mask'\]"):
        list(EmdbReader(root, "test", opts).frames())
    # a pickle that would run code is refused (datasets.safe_pickle), naming the file
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(AnnotationError, match="P3_12_hand_built_data.pkl.*refusing to unpickle global 'os.system'"):
        list(EmdbReader(root, "test", opts).frames())
    other = root.parent / "other"
    data = _write_sequence(other, "P4", "00_x", emdb1=True)
    data["smpl"]["poses_body"] = data["smpl"]["poses_body"][:, :66]
    (other / "P4" / "00_x" / "P4_00_x_data.pkl").write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(AnnotationError, match=r"P4_00_x_data.pkl: field 'smpl.poses_body' has shape \(4, 66\)"):
        list(EmdbReader(other, "test", opts).frames())


# ---- the EMDB-1 numbers: CameraHMR / TokenHMR's evaluation rule ----------------------------------
def test_emdb_scores_follow_camerahmr_and_tokenhmr(synthetic_assets):
    from eval.protocols import PROTOCOLS, load_regressor

    emdb = PROTOCOLS["emdb"]
    J = load_regressor(emdb, synthetic_assets).pred.astype(np.float64)  # the neutral SMPL's J_regressor
    from model.body_model import load_smpl_arrays

    np.testing.assert_array_equal(J, load_smpl_arrays(synthetic_assets.require("smpl_neutral"))["J_regressor"]
                                  .astype(np.float32))
    rng = np.random.default_rng(4)
    gt_v = rng.normal(scale=0.3, size=(3, 6890, 3)) + [0, 0, 3.0]
    pred_v = gt_v + rng.normal(scale=0.03, size=gt_v.shape) + [0.2, 0.1, -0.5]
    out = emdb.score(pred_v, gt_v, J)
    for n in range(3):
        gk, pk = J @ gt_v[n], J @ pred_v[n]  # torch.matmul(J_regressor, vertices)
        g_pelvis, p_pelvis = (gk[1] + gk[2]) / 2, (pk[1] + pk[2]) / 2
        gk, gv = gk - g_pelvis, gt_v[n] - g_pelvis
        pk, pv = pk - p_pelvis, pred_v[n] - p_pelvis
        assert out["mpjpe"][n] == pytest.approx(1000 * np.linalg.norm(pk - gk, axis=-1).mean(), rel=1e-9)
        assert out["pve"][n] == pytest.approx(1000 * np.linalg.norm(pv - gv, axis=-1).mean(), rel=1e-9)
        pa = similarity_transform(pk, gk)
        assert out["pa_mpjpe"][n] == pytest.approx(1000 * np.linalg.norm(pa - gk, axis=-1).mean(), rel=1e-6)
