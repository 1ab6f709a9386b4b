import numpy as np
import pytest

from datasets.record import PersonFrame, RecordError, Reject, make_key, reject_reason


def _record(**over):
    t = PersonFrame.empty_targets()
    t.update(smpl_pose=np.random.default_rng(0).normal(size=(24, 3)) * 0.1, has_smpl=True,
             betas=np.arange(10, dtype=np.float64), gender="female")
    base = dict(key=make_key("3dpw", "test", "downtown_walking_00", 12, 1), dataset="3dpw", split="test",
                sequence="downtown_walking_00", frame=12, person=1,
                image_path="imageFiles/downtown_walking_00/image_00012.jpg",
                image_hw=np.array([1920, 1080]), box_center=np.array([500.0, 900.0]),
                box_size=np.array([300.0, 400.0]), box_expand=1.2, synthetic=True,
                intrinsics=np.eye(3), **t)
    base.update(over)
    return PersonFrame(**base)


def test_key_is_stable_and_safe():
    k = make_key("mpi_inf_3dhp", "train", "S1/Seq2.cam0", 7, 0)
    assert k == "mpi-inf-3dhp_train_S1-Seq2-cam0_000007_p0"  # "_" separates the parts
    assert "." not in k and "/" not in k


def test_round_trip_through_npz():
    r = _record().validate()
    back = PersonFrame.from_npz_bytes(r.to_npz_bytes(), source="x.tar:k")
    for name in ("smpl_pose", "betas", "keypoints_2d", "intrinsics", "image_hw"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.crop_affine is None and back.gender == "female" and back.frame == 12 and back.has_smpl is True
    assert back.smpl_pose.dtype == np.float32 and back.image_hw.dtype == np.int64


def test_bad_field_names_field_and_source():
    r = _record(betas=np.full(10, np.nan), source="3DPW/sequenceFiles/test/a.pkl")
    with pytest.raises(RecordError, match=r"a\.pkl.*'betas'.*non-finite"):
        r.validate()
    with pytest.raises(RecordError, match=r"'smpl_pose' has shape \(23, 3\)"):
        _record(smpl_pose=np.zeros((23, 3))).validate()
    with pytest.raises(RecordError, match="'gender'"):
        _record(gender="m").validate()


def test_corrupt_target_file_is_named():
    with pytest.raises(RecordError, match="shard-000001.tar:abc"):
        PersonFrame.from_npz_bytes(b"not a zip", source="shard-000001.tar:abc")


def test_reject_reasons_are_a_closed_set():
    assert reject_reason("missing_image", "a.jpg") == "missing_image: a.jpg"
    with pytest.raises(ValueError):
        reject_reason("bad vibes")
    Reject("k", "3dpw", "test", reject_reason("invalid_camera_pose"))


def test_empty_targets_are_every_target_off_in_the_record_layout():
    """The filler a reader takes for targets its dataset lacks: every validity off, zeros in
    the record's shapes and float32 (what `validate` would otherwise have to coerce), and the
    neutral body (the protocols' regressor for a sample without a gender)."""
    t = PersonFrame.empty_targets()
    want = {"smpl_pose": (24, 3), "betas": (10,), "smpl_transl": (3,), "joints_3d": (24, 4), "keypoints_2d": (24, 3)}  # KEYPOINTS_2D: 24 joints
    assert sorted(t) == sorted([*want, "gender", "has_smpl", "has_transl"])
    for name, shape in want.items():
        assert isinstance(t[name], np.ndarray) and t[name].shape == shape and t[name].dtype == np.float32, name
        assert not t[name].any(), name
    assert t["gender"] == "neutral" and t["has_smpl"] is False and t["has_transl"] is False
    assert PersonFrame.empty_targets()["betas"] is not t["betas"]  # a fresh dict of fresh arrays each call
