"""The label npz reader against SPIN `datasets/base_dataset.py`'s reading rules, on tiny
hand-built files (each rule is one of base_dataset's `try/except KeyError`s):
- `pose` and `shape` without `has_smpl` -> every row has SMPL; either missing -> none;
- no `part` -> no 2D keypoints (zeros), the rows are still read;
- `S` present -> it is the 3D keypoint target (`pose_3d`), never the fits' joints;
- `gender` 'm' -> male, 'f' -> female; absent -> no gender (neutral);
- `openpose` is not a ground-truth target (`openpose_train_weight` 0, utils/train_options.py);
- the box is `center` and a side of 200 * `scale` px (utils/imutils.py `get_transform`);
- `imgname` is relative to the dataset folder (`join(self.img_dir, self.imgname[index])`).
"""
import numpy as np
import pytest
from PIL import Image

from datasets.label_npz import CocoReader, H36MReader, Options
from datasets.reader import AnnotationError, BodyModels
from datasets.record import PersonFrame

N = 3
HW = (60, 80)
POSE = np.linspace(-0.3, 0.3, N * 72).reshape(N, 72)
SHAPE = np.linspace(-1, 1, N * 10).reshape(N, 10)


def _images(root, names):
    for name in set(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", HW[::-1], (90, 90, 90)).save(root / name)


def _write(root, name="h36m_train.npz", **cols):
    names = [f"images/S9_Walking_1.60457274_{5 * i + 1:06d}.jpg" for i in range(N)]
    base = dict(imgname=np.array(names), center=np.array([[40.0, 30.0]] * N), scale=np.full(N, 0.25))
    _images(root, names)
    np.savez(root / name, **{**base, **cols})


def _part():
    part = np.zeros((N, 24, 3))
    part[:, :17, :2], part[:, :17, 2] = 30.0, 1.0
    return part


def _S():
    S = np.zeros((N, 24, 4))
    S[:, :17, :3] = np.arange(N * 17 * 3).reshape(N, 17, 3) / 100.0
    S[:, :17, 3] = 1.0
    return S


def _read(root, split="train", assets=None):
    out = list(H36MReader(root, split, Options(assets_root=assets)).frames())
    assert all(isinstance(o, PersonFrame) for o in out), out
    return out


def test_pose_and_shape_without_has_smpl_mean_every_row_has_smpl(tmp_path):
    # the H36M MoSh files: pose / shape and no has_smpl
    _write(tmp_path, part=_part(), S=_S(), pose=POSE, shape=SHAPE)
    recs = _read(tmp_path)
    assert [r.has_smpl for r in recs] == [True] * N
    for i, r in enumerate(recs):
        np.testing.assert_allclose(r.smpl_pose.reshape(-1), POSE[i], rtol=1e-6)
        np.testing.assert_allclose(r.betas, SHAPE[i], rtol=1e-6)


def test_has_smpl_is_read_where_the_file_has_it(tmp_path):
    _write(tmp_path, part=_part(), S=_S(), pose=POSE, shape=SHAPE, has_smpl=np.array([1.0, 0.0, 1.0]))
    recs = _read(tmp_path)
    assert [r.has_smpl for r in recs] == [True, False, True]
    assert np.all(recs[1].smpl_pose == 0) and np.all(recs[1].betas == 0)


@pytest.mark.parametrize("missing", ["pose", "shape"])
def test_pose_or_shape_missing_means_no_smpl(tmp_path, missing):
    cols = dict(part=_part(), S=_S(), pose=POSE, shape=SHAPE, has_smpl=np.ones(N))
    del cols[missing]
    _write(tmp_path, **cols)
    assert [r.has_smpl for r in _read(tmp_path)] == [False] * N


def test_the_h36m_test_file_without_part_is_read_without_2d(tmp_path):
    # SPIN datasets/preprocess/h36m.py writes imgname, center, scale, S only
    _write(tmp_path, name="h36m_valid_protocol2.npz", S=_S())
    recs = _read(tmp_path, "test")
    assert len(recs) == N
    for i, r in enumerate(recs):
        assert np.all(r.keypoints_2d == 0)  # no 2D labels
        np.testing.assert_allclose(r.box_center, [40.0, 30.0])
        np.testing.assert_allclose(r.box_size, [0.25 * 200] * 2)
        assert r.box_expand == 1.0
        np.testing.assert_allclose(r.joints_3d, _S()[i], rtol=1e-6)
        assert not r.has_smpl
        assert r.image_path == f"images/S9_Walking_1.60457274_{5 * i + 1:06d}.jpg"


def test_S_is_the_3d_target_even_where_the_fits_are(tmp_path):
    _write(tmp_path, part=_part(), S=_S(), pose=POSE, shape=SHAPE, has_smpl=np.ones(N))
    for i, r in enumerate(_read(tmp_path)):
        assert r.has_smpl
        np.testing.assert_allclose(r.joints_3d, _S()[i], rtol=1e-6)


def test_the_fits_give_3d_joints_only_where_there_is_no_S(tmp_path, synthetic_assets):
    S = _S()
    S[1] = 0  # this row has no S
    _write(tmp_path, part=_part(), S=S, pose=POSE, shape=SHAPE)
    recs = _read(tmp_path, assets=str(synthetic_assets.root))
    np.testing.assert_allclose(recs[0].joints_3d, S[0], rtol=1e-6)
    fits = BodyModels(synthetic_assets.root).keypoints("neutral", POSE[1:2].reshape(1, 24, 3), SHAPE[1:2],
                                                       np.zeros((1, 3)))
    np.testing.assert_allclose(recs[1].joints_3d, fits[0], rtol=1e-5, atol=1e-6)


def test_gender_codes_and_absence(tmp_path):
    _write(tmp_path, part=_part(), S=_S(), pose=POSE, shape=SHAPE, gender=np.array(["m", "f", "m"]))
    assert [r.gender for r in _read(tmp_path)] == ["male", "female", "male"]
    _write(tmp_path, part=_part(), S=_S(), pose=POSE, shape=SHAPE)
    assert [r.gender for r in _read(tmp_path)] == ["neutral"] * N


def test_openpose_detections_are_not_targets(tmp_path):
    _write(tmp_path, part=_part(), S=_S())
    plain = _read(tmp_path)
    _write(tmp_path, part=_part(), S=_S(), openpose=np.full((N, 25, 3), 7.0))
    for a, b in zip(plain, _read(tmp_path)):
        np.testing.assert_array_equal(a.keypoints_2d, b.keypoints_2d)
        np.testing.assert_array_equal(a.joints_3d, b.joints_3d)


def test_cliff_global_t_and_focal_l_place_the_body_in_the_full_image_camera(tmp_path, synthetic_assets):
    """CLIFF `viz_cliffGT_perImg.py`: the SMPL of `pose` / `shape` at `transl=global_t`, seen by
    a camera of focal `focal_l` centred on the image (`common/renderer_pyrd.py`: pyrender's
    cx = img_w // 2 in pixel-corner coordinates, (w - 1) / 2 with pixel centres at integers).
    Rows without SMPL have no translation."""
    t = np.array([[0.1, -0.2, 5.0], [0.0, 0.1, 6.0], [-0.1, 0.0, 7.0]])
    S = _S()
    S[1] = 0  # row 1: its 3D joints are the fit's, at global_t
    _write(tmp_path, name="coco2014part_cliffGT.npz", part=_part(), S=S, pose=POSE, shape=SHAPE,
           has_smpl=np.array([1.0, 1.0, 0.0]), global_t=t, focal_l=np.array([500.0, 600.0, 700.0]))
    recs = list(CocoReader(tmp_path, "train", Options(assets_root=str(synthetic_assets.root))).frames())
    h, w = HW
    for i, r in enumerate(recs):
        np.testing.assert_allclose(r.intrinsics, [[500.0 + 100 * i, 0, (w - 1) / 2], [0, 500.0 + 100 * i, (h - 1) / 2],
                                                  [0, 0, 1]])
    assert [r.has_transl for r in recs] == [True, True, False]
    np.testing.assert_allclose(recs[0].smpl_transl, t[0], rtol=1e-6)
    fits = BodyModels(synthetic_assets.root).keypoints("neutral", POSE[1:2].reshape(1, 24, 3), SHAPE[1:2], t[1:2])
    np.testing.assert_allclose(recs[1].joints_3d, fits[0], rtol=1e-5, atol=1e-6)


def test_records_name_their_image_sequence_person_and_label_file(tmp_path):
    """SPIN `base_dataset.py`: `imgname` joined to the dataset's image folder; one row per
    person, so rows of one image are persons 0, 1, ... of that image (its name, without the
    extension, is the sequence: one frame each)."""
    from datasets.label_npz import NpzSource

    names = ["S9/a.jpg", "S9/b.jpg", "S9/a.jpg"]
    _images(tmp_path / "imgs", names)
    np.savez(tmp_path / "labels.npz", imgname=np.array(names), center=np.array([[40.0, 30.0]] * N),
             scale=np.full(N, 0.25), part=_part())
    source = NpzSource("h36m", {"train": "labels.npz"}, image_root="imgs")
    recs = list(H36MReader(tmp_path, "train", Options(source=source)).frames())
    assert [(r.image_path, r.sequence, r.frame, r.person) for r in recs] == [
        ("imgs/S9/a.jpg", "S9/a", 0, 0), ("imgs/S9/b.jpg", "S9/b", 0, 0), ("imgs/S9/a.jpg", "S9/a", 0, 1)]
    assert all(r.source == "labels.npz" and r.intrinsics is None and not r.has_transl for r in recs)


def test_an_unknown_gender_code_is_named(tmp_path):
    _write(tmp_path, part=_part(), gender=np.array(["m", "x", "f"]))
    with pytest.raises(AnnotationError, match=r"h36m_train\.npz: field 'gender' has 'x', expected 'm', 'f' or 'n'"):
        _read(tmp_path)


def test_a_missing_unreadable_or_incomplete_label_file_is_named(tmp_path):
    with pytest.raises(AnnotationError, match=r"h36m_train\.npz: h36m label file not found"):
        _read(tmp_path)
    (tmp_path / "h36m_train.npz").write_bytes(b"PK not a zip")
    with pytest.raises(AnnotationError, match=r"h36m_train\.npz: unreadable label npz"):
        _read(tmp_path)
    np.savez(tmp_path / "h36m_train.npz", imgname=np.array(["a.jpg"]), center=np.zeros((1, 2)))
    with pytest.raises(AnnotationError, match=r"h36m_train\.npz: label npz lacks \['scale'\]"):
        _read(tmp_path)


def test_a_row_with_part_but_no_visible_keypoint_is_a_reject(tmp_path):
    """A file with 2D labels: a row none of whose `part` points is visible has nothing to
    crop on (the file without `part`, H36M's test file, is read without 2D above)."""
    part = _part()
    part[1, :, 2] = 0
    _write(tmp_path, part=part, S=_S())
    out = list(H36MReader(tmp_path, "train").frames())
    assert isinstance(out[0], PersonFrame) and isinstance(out[2], PersonFrame)
    assert out[1].reason == "no_visible_keypoint"
