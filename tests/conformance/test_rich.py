"""RICH as BEDLAM writes it (issue #14, item 8): the camera-frame translation is BEDLAM's
`cam_ext[:3, 3] + trans_cam`, and the ground-truth joint regressor is a named protocol
option (neutral, as WHAM / CameraHMR; gendered, as BEDLAM).

Inputs are hand-built (a tiny `rich_test.npz`, random meshes and regressors); expected
values are computed here from the cited code's rule:
- BEDLAM `train/dataset/dataset.py` `__getitem__`: `item['translation'] =
  self.cam_ext[index][:, 3]`, then `item['translation'][:3] += self.trans_cam[index]`;
- BEDLAM `train/dataset/dataset.py` (rich, test) + `train/core/hmr_trainer.py`
  (`validation_step`, 'rich'): ground-truth joints `model.J_regressor @ gt_vertices` with
  `model` the gendered SMPL, prediction joints `self.smpl.J_regressor @ pred_vertices`
  (neutral), both centred on the mean of joints 1 and 2, `reconstruction_error` for PA;
- WHAM `lib/eval/evaluate_rich.py`: `J_regressor_eval = smpl.J_regressor` of the neutral
  SMPL on both sides, `pelvis_idxs = [1, 2]`.
"""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from datasets.image_file import image_hw
from datasets.reader import AnnotationError
from datasets.rich import LABEL_FILE, Options, RichReader
from eval import protocols as P

HW = (300, 412)
FOCAL = 410.0


def _bedlam_translation(cam_ext: np.ndarray, trans_cam: np.ndarray) -> np.ndarray:
    """BEDLAM dataset.py, literally: translation = cam_ext[:, 3]; translation[:3] += trans_cam."""
    translation = cam_ext[:, 3].copy()
    translation[:3] += trans_cam
    return translation[:3]


def _write_rich(root, keys=("cam_int", "cam_ext", "trans_cam")):
    """Two people (male, female) in two images of one camera; returns the arrays written."""
    import cv2

    rng = np.random.default_rng(11)
    n = 2
    names = [f"test/Gym_010_pushup1/cam_03/{i:05d}_03.jpeg" for i in range(n)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.full((*HW, 3), 90, np.uint8))
    pose = np.zeros((n, 22, 3))
    pose[:, 0] = [np.pi, 0, 0]  # upright in the OpenCV camera frame
    pose[:, 1:] = rng.normal(scale=0.15, size=(n, 21, 3))
    cam_ext = np.zeros((n, 4, 4))
    cam_ext[:, :3, :3] = Rotation.from_euler("x", 12, degrees=True).as_matrix()  # BEDLAM: the camera's pitch
    cam_ext[:, :3, 3] = [[0.25, -0.1, 3.2], [0.2, -0.05, 3.4]]
    cam_ext[:, 3, 3] = 1.0
    K = np.array([[FOCAL, 0, (HW[1] - 1) / 2], [0, FOCAL, (HW[0] - 1) / 2], [0, 0, 1]])
    arrays = dict(imgname=np.array(names), center=np.array([[220.0, 150.0], [215.0, 152.0]]),
                  scale=np.array([1.2, 1.2]), pose_cam=pose.reshape(n, -1), shape=rng.normal(scale=0.5, size=(n, 10)),
                  gender=np.array(["m", "f"]), cam_int=np.stack([K, K]), cam_ext=cam_ext,
                  trans_cam=np.array([[0.05, 0.1, -0.2], [-0.04, 0.08, 0.15]]))
    keep = ("imgname", "center", "scale", "pose_cam", "shape", "gender") + tuple(keys)
    np.savez(root / LABEL_FILE, **{k: arrays[k] for k in keep})
    return arrays


@pytest.fixture(scope="module")
def models(synthetic_assets):
    """The synthetic SMPL-X / SMPL bodies, loaded once for every read of this module."""
    from datasets.reader import BodyModels

    return BodyModels(synthetic_assets.root)


def _read(root, models):
    reader = RichReader(root, "test", Options(assets_root=str(models.assets_root)))
    assert reader.models.assets_root == models.assets_root  # the option names the assets: the same bodies
    reader.models = models  # already loaded (building them is most of a read's time)
    return list(reader.frames())


def test_translation_is_cam_ext_plus_trans_cam(tmp_path, models):
    bare = tmp_path / "bare"
    full = tmp_path / "full"
    a = _write_rich(full)
    _write_rich(bare, keys=())
    recs, recs0 = _read(full, models), _read(bare, models)
    assert image_hw(full / a["imgname"][0]) == HW
    for i, (rec, rec0) in enumerate(zip(recs, recs0)):
        want = _bedlam_translation(a["cam_ext"][i], a["trans_cam"][i])
        assert not np.allclose(want, a["trans_cam"][i])  # the old reader (trans_cam alone) would fail here
        assert rec.has_transl and not rec0.has_transl
        assert rec0.intrinsics is None and np.all(rec0.keypoints_2d == 0)  # no camera: no 2D, still a record
        np.testing.assert_allclose(rec.smpl_transl, want, atol=1e-9)
        # the body of `pose_cam` / `shape` moved by the translation only: cam_ext's rotation is not applied
        valid = rec.joints_3d[:, 3] > 0
        np.testing.assert_allclose(rec.joints_3d[valid, :3], rec0.joints_3d[valid, :3] + want, atol=1e-6)
        # 2D keypoints: the pinhole projection of those joints with cam_int
        K = a["cam_int"][i]
        uvw = rec.joints_3d[:, :3] @ K.T
        vis = rec.keypoints_2d[:, 2] > 0
        assert vis.sum() >= 10
        np.testing.assert_allclose(rec.keypoints_2d[vis, :2], uvw[vis, :2] / uvw[vis, 2:], atol=1e-4)
        np.testing.assert_allclose(rec.intrinsics, K)


def test_translation_without_trans_cam_or_without_cam_ext(tmp_path, models):
    """BEDLAM: `cam_ext` defaults to zeros (translation = trans_cam); `trans_cam` is added
    only when present (translation = cam_ext[:3, 3])."""
    only_ext, only_trans = tmp_path / "ext", tmp_path / "trans"
    a = _write_rich(only_ext, keys=("cam_int", "cam_ext"))
    _write_rich(only_trans, keys=("cam_int", "trans_cam"))
    for i, rec in enumerate(_read(only_ext, models)):
        np.testing.assert_allclose(rec.smpl_transl, _bedlam_translation(a["cam_ext"][i], np.zeros(3)), atol=1e-9)
        assert rec.has_transl and rec.intrinsics is not None and np.any(rec.keypoints_2d[:, 2] > 0)
    for i, rec in enumerate(_read(only_trans, models)):
        np.testing.assert_allclose(rec.smpl_transl, _bedlam_translation(np.zeros((4, 4)), a["trans_cam"][i]), atol=1e-9)
        assert rec.has_transl and rec.intrinsics is not None and np.any(rec.keypoints_2d[:, 2] > 0)


def test_record_fields_follow_bedlams_reading(tmp_path, models):
    """BEDLAM `train/dataset/dataset.py`: box `center` and `scale` (SPIN's crop: side 200 *
    scale, already expanded), `pose_cam[:, :NUM_JOINTS_SMPLX * 3]` (22 joints), gender 'm' ->
    male, else female; the SMPL-X betas (BEDLAM keeps 11) cut to the record's 10. One row per
    person: two rows of one image are persons 0 and 1 of that frame; the frame is the
    image's number, the sequence `<seq>/cam_<cc>`."""
    a = _write_rich(tmp_path)
    take = [0, 1, 1]  # two people in image 1
    a = {k: v[take] for k, v in a.items()}
    rng = np.random.default_rng(5)
    a["gender"] = np.array(["m", "f", "m"])
    a["pose_cam"] = np.concatenate([a["pose_cam"], rng.normal(scale=0.1, size=(3, 165 - 66))], 1)  # SMPL-X's 55 joints
    a["shape"] = rng.normal(scale=0.5, size=(3, 11))
    np.savez(tmp_path / LABEL_FILE, **a)
    recs = _read(tmp_path, models)
    assert [(r.sequence, r.frame, r.person) for r in recs] == [("Gym_010_pushup1/cam_03", 0, 0),
                                                               ("Gym_010_pushup1/cam_03", 1, 0),
                                                               ("Gym_010_pushup1/cam_03", 1, 1)]
    assert [r.gender for r in recs] == ["male", "female", "male"]
    for i, rec in enumerate(recs):
        assert rec.image_path == a["imgname"][i] and rec.source == LABEL_FILE
        np.testing.assert_allclose(rec.box_center, a["center"][i])
        np.testing.assert_allclose(rec.box_size, [200 * a["scale"][i]] * 2, rtol=1e-6)
        assert rec.box_expand == 1.0
        np.testing.assert_allclose(rec.smpl_pose[:22], a["pose_cam"][i, :66].reshape(22, 3), atol=1e-6)
        assert np.all(rec.smpl_pose[22:] == 0)
        np.testing.assert_allclose(rec.betas, a["shape"][i, :10], atol=1e-6)
        assert rec.has_smpl and rec.body_model == "smplx"


def test_image_names_outside_the_rich_layout_are_their_own_sequences(tmp_path, models):
    """`test/<seq>/cam_<cc>/<frame>_<cc>.jpeg` gives sequence `<seq>/cam_<cc>` and the frame
    number; any other name (no leading number, or no folder) is a sequence of its own, the
    name without its extension, frame 0: distinct images never share a key."""
    import cv2

    a = _write_rich(tmp_path)
    a["imgname"] = np.array(["extra/frame_a.jpeg", "00012_03.jpeg"])
    for name in a["imgname"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((*HW, 3), 90, np.uint8))
    np.savez(tmp_path / LABEL_FILE, **a)
    assert [(r.sequence, r.frame) for r in _read(tmp_path, models)] == [("extra/frame_a", 0), ("00012_03", 0)]


def test_without_intrinsics_or_without_the_file(tmp_path, models):
    """A translation but no `cam_int`: the body is placed, nothing is projected (no 2D, no
    intrinsics); no label file at all: an error naming it."""
    a = _write_rich(tmp_path, keys=("cam_ext", "trans_cam"))
    for i, rec in enumerate(_read(tmp_path, models)):
        assert rec.has_transl and rec.intrinsics is None and np.all(rec.keypoints_2d == 0)
        np.testing.assert_allclose(rec.smpl_transl, _bedlam_translation(a["cam_ext"][i], a["trans_cam"][i]), atol=1e-9)
    (tmp_path / LABEL_FILE).unlink()
    with pytest.raises(AnnotationError, match=r"rich_test\.npz: RICH label file not found"):
        _read(tmp_path, models)


@pytest.mark.parametrize("code", ["n", "x"])
def test_a_gender_other_than_m_or_f_is_named(tmp_path, models, code):
    """BEDLAM builds the gendered SMPL-X (there is no neutral one here): 'm' male, 'f' female;
    any other code is an error naming the file and the field, not a silent female."""
    a = _write_rich(tmp_path)
    a["gender"] = np.array(["f", code])
    np.savez(tmp_path / LABEL_FILE, **a)
    with pytest.raises(AnnotationError, match=rf"rich_test\.npz: field 'gender' has '{code}'"):
        _read(tmp_path, models)


def test_cam_ext_of_the_wrong_shape_is_named(tmp_path, models):
    a = _write_rich(tmp_path)
    a["cam_ext"] = a["cam_ext"][:, :3]
    np.savez(tmp_path / LABEL_FILE, **a)
    with pytest.raises(AnnotationError, match=r"rich_test\.npz: field 'cam_ext' has shape \(2, 3, 4\)"):
        _read(tmp_path, models)


# ---- the ground-truth joint regressor: a named protocol option ----------------------------
def _regressor(rng):
    """(24, 6890) row-normalised weights on 40 random vertices per joint."""
    reg = np.zeros((24, 6890))
    for j in range(24):
        cols = rng.choice(6890, 40, replace=False)
        reg[j, cols] = rng.uniform(0.5, 1.5, 40)
    return reg / reg.sum(1, keepdims=True)


def _procrustes_error(pred, gt):
    """SPIN `utils/pose_utils.py` reconstruction_error (similarity Procrustes) per sample, in mm."""
    out = []
    for p, g in zip(pred, gt):
        mp, mg = p.mean(0), g.mean(0)
        x, y = p - mp, g - mg
        u, s, vt = np.linalg.svd(x.T @ y)
        z = np.eye(3)
        z[-1, -1] = np.sign(np.linalg.det(u @ vt))
        r = vt.T @ z @ u.T
        scale = np.trace(r @ x.T @ y) / (x ** 2).sum()
        aligned = scale * x @ r.T + mg
        out.append(1000 * np.linalg.norm(aligned - g, axis=-1).mean())
    return np.array(out)


def _expected(pred_v, gt_v, pred_reg, gt_regs):
    """mm per sample: joints by the given matrices, each side centred on its mean of joints 1, 2."""
    pj = np.einsum("jv,nvc->njc", pred_reg, pred_v)
    gj = np.stack([r @ v for r, v in zip(gt_regs, gt_v)])
    pr, gr = pj[:, [1, 2]].mean(1, keepdims=True), gj[:, [1, 2]].mean(1, keepdims=True)
    return {"mpjpe": 1000 * np.linalg.norm((pj - pr) - (gj - gr), axis=-1).mean(1),
            "pa_mpjpe": _procrustes_error(pj - pr, gj - gr),
            "pve": 1000 * np.linalg.norm((pred_v - pr) - (gt_v - gr), axis=-1).mean(1)}


def test_the_two_regressor_options_score_as_their_sources():
    rng = np.random.default_rng(4)
    neutral, male, female = _regressor(rng), _regressor(rng), _regressor(rng)
    gt_v = rng.normal(scale=0.3, size=(2, 6890, 3)) + [0, 0, 4]
    pred_v = gt_v + rng.normal(scale=0.03, size=gt_v.shape) + [0.1, 0, 0.2]
    genders = ["male", "female"]
    regs = P.JointRegressors(neutral, {"male": male, "female": female})
    wham = P.PROTOCOLS["rich"].score(pred_v, gt_v, regs, genders)
    bedlam = P.PROTOCOLS["rich-gendered"].score(pred_v, gt_v, regs, genders)
    want_wham = _expected(pred_v, gt_v, neutral, [neutral, neutral])
    want_bedlam = _expected(pred_v, gt_v, neutral, [male, female])
    for m in ("mpjpe", "pa_mpjpe", "pve"):
        np.testing.assert_allclose(wham[m], want_wham[m], rtol=1e-6)
        np.testing.assert_allclose(bedlam[m], want_bedlam[m], rtol=1e-6)
        assert np.all(np.abs(wham[m] - bedlam[m]) > 1e-3), m  # the option changes every number
    # the prediction scored against itself: zero under the neutral option, not under the gendered
    np.testing.assert_allclose(P.PROTOCOLS["rich"].score(gt_v, gt_v, regs, genders)["mpjpe"], 0, atol=1e-9)
    assert np.all(P.PROTOCOLS["rich-gendered"].score(gt_v, gt_v, regs, genders)["mpjpe"] > 1.0)
    with pytest.raises(ValueError, match="one gender per sample"):
        P.PROTOCOLS["rich-gendered"].score(pred_v, gt_v, regs)


def test_the_default_is_neutral_and_the_gendered_option_loads_the_gendered_smpl(synthetic_assets):
    from model.body_model import load_smpl_arrays

    assert "rich" in P.DEFAULT_PROTOCOLS and "rich-gendered" not in P.DEFAULT_PROTOCOLS
    assert P.PROTOCOLS["rich"].gt_regressor == "shared" and "WHAM" in P.PROTOCOLS["rich"].source
    smpl = {g: load_smpl_arrays(synthetic_assets.require(f"smpl_{g}"))["J_regressor"]
            for g in ("neutral", "male", "female")}
    regs = P.load_regressor(P.PROTOCOLS["rich-gendered"], synthetic_assets)
    np.testing.assert_allclose(regs.pred, smpl["neutral"], atol=1e-7)
    assert set(regs.gt) == {"male", "female"}
    for g in ("male", "female"):
        np.testing.assert_allclose(regs.gt[g], smpl[g], atol=1e-7)
    assert P.load_regressor(P.PROTOCOLS["rich"], synthetic_assets).gt == {}
