import json

import numpy as np
import pytest

from datasets import npz
from datasets.record import TARGETS_DTYPE, PersonFrame, RecordError, Reject, make_key, reject_reason


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
    assert reject_reason("invalid_camera_pose") == "invalid_camera_pose"  # no detail: the code alone
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


def test_key_parts_keep_no_separator_at_their_ends_and_an_empty_part_is_x():
    """make_key: a run of characters other than letters, digits and '-' becomes '-', none is
    left at either end of a part, and a part with nothing left is 'x'."""
    assert make_key("3dpw", "test", "_Xray_", 1, 0) == "3dpw_test_Xray_000001_p0"
    assert make_key("3dpw", "test", " walk. ", 1, 0) == "3dpw_test_walk_000001_p0"
    assert make_key("3dpw", "test", "//", 2, 3) == "3dpw_test_x_000002_p3"


def test_a_target_file_read_back_names_its_source_and_takes_the_defaults_it_lacks():
    data = _record().validate().to_npz_bytes()
    assert PersonFrame.from_npz_bytes(data, source="s.tar:k").source == "s.tar:k"
    assert PersonFrame.from_npz_bytes(data).source == ""
    # a file without the fields that have a default (written before they existed) gets the defaults
    arrays = npz.loads(data)
    for name in ("view", "body_model", "video_frame", "intrinsics"):
        del arrays[name]
    back = PersonFrame.from_npz_bytes(npz.dumps(arrays))
    assert (back.view, back.body_model, back.video_frame, back.intrinsics) == (0, "smpl", -1, None)
    del arrays["betas"]  # a field without a default: named
    with pytest.raises(RecordError, match="s.tar:k: target file lacks field 'betas'"):
        PersonFrame.from_npz_bytes(npz.dumps(arrays), source="s.tar:k")


def test_scalar_fields_come_back_as_python_values():
    """What a manifest or a JSON log writes: str, int, float and bool, not 0-d arrays."""
    r = _record(view=2, video_frame=40).validate()
    back = PersonFrame.from_npz_bytes(r.to_npz_bytes())
    names = ("key", "dataset", "frame", "person", "video_frame", "view", "box_expand", "gender", "has_smpl",
             "synthetic", "body_model")
    assert json.dumps({n: getattr(back, n) for n in names}) == json.dumps({n: getattr(r, n) for n in names})
    assert [type(getattr(back, n)) for n in ("frame", "box_expand", "has_smpl", "key")] == [int, float, bool, str]


def test_replace_changes_the_named_fields_only():
    r = _record()
    moved = r.replace(view=2, frame=13)
    assert (moved.view, moved.frame, moved.person) == (2, 13, 1) and (r.view, r.frame) == (0, 12)


def test_the_targets_row_holds_the_record_and_zeros_for_what_it_lacks():
    r = _record(intrinsics=None, dataset="d" * 32, view=3).validate()  # no crop_affine, no intrinsics
    arrays = r.target_arrays()
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float32)}
    assert arrays["image_hw"].tolist() == [1920.0, 1080.0]
    row = np.frombuffer(r.to_targets_bytes(), TARGETS_DTYPE)[0]
    assert row["intrinsics"].shape == (3, 3) and not row["intrinsics"].any()
    assert row["crop_affine"].shape == (2, 3) and not row["crop_affine"].any()
    np.testing.assert_array_equal(row["betas"], np.arange(10))
    np.testing.assert_array_equal(row["box_size"], [300.0, 400.0])
    assert (row["has_smpl"], row["synthetic"], row["has_transl"], row["has_intrinsics"]) == (True, True, False, False)
    assert row["view"] == 3 and row["gender"] == 2 and row["body_model"] == 0  # GENDERS: female is 2; smpl 0
    assert row["dataset"] == b"d" * 32  # the longest name the row holds
    for bad in ("d" * 33, "3dpw-\u00e9"):  # longer than the row's 32 bytes; not ASCII
        with pytest.raises(RecordError, match="field 'dataset'"):
            _record(dataset=bad).to_targets_bytes()


def test_validate_coerces_lists_and_refuses_a_box_that_is_not_positive():
    r = _record(box_center=[500.0, 900.0], box_size=(0.5, 0.75), image_hw=[1920, 1080]).validate()
    assert type(r.box_center) is np.ndarray and r.box_center.dtype == np.float32 and r.image_hw.dtype == np.int64
    assert r.box_size.tolist() == [0.5, 0.75]  # any positive size
    for over, field in ((dict(box_size=np.array([0.0, 400.0])), "box_size"),
                        (dict(box_size=np.array([300.0, -1.0])), "box_size"), (dict(box_expand=0.0), "box_expand")):
        with pytest.raises(RecordError, match=f"field '{field}' must be positive"):
            _record(**over).validate()
