"""Reader parsing on tiny hand-built files: errors name the file, odd frames become rejects."""
import pickle

import h5py
import numpy as np
import pytest

from datasets.label_npz import CocoReader, H36MReader
from datasets.mpi_inf_3dhp import MpiInf3dhpReader, read_calibration
from datasets.pw3d import PW3DReader
from datasets.reader import AnnotationError, SPIN_SCALE_UNIT
from datasets.readers import READERS, available
from datasets.record import PersonFrame, Reject
from datasets.rich import RichReader

# the head of a real camera.calibration (S1/Seq1), numbers as the file writes them
CALIBRATION = """Skeletool Camera Calibration File V1.0
name          0
  sensor      10 10
  size        2048 2048
  animated    0
  intrinsic   1497.693 0 1024.704 0 0 1497.103 1051.394 0 0 0 1 0 0 0 0 1 
  extrinsic   0.9650164 0.00488022 0.262144 -562.8666 -0.004488356 -0.9993728 0.0351275 1398.138 0.262151 -0.03507521 -0.9643893 3852.623 0 0 0 1 
  radial      0
name          1
  sensor      10 10
  size        2048 2048
  animated    0
  intrinsic   1495.587 0 983.8873 0 0 1497.828 987.5902 0 0 0 1 0 0 0 0 1 
  extrinsic   -0.2642744 -0.0046875 0.9644352 -552.1337 -0.00399131 -0.9999624 -0.006010183 1398.138 0.9644386 -0.005415669 0.2642509 3840.215 0 0 0 1 
  radial      0
"""


def _jpeg(path, hw=(40, 60)):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*hw, 3), 128, np.uint8))


def test_calibration_blocks_by_camera(tmp_path):
    p = tmp_path / "camera.calibration"
    p.write_text(CALIBRATION)
    K = read_calibration(p)
    assert sorted(K) == [0, 1]
    np.testing.assert_allclose(K[1], [[1495.587, 0, 983.8873], [0, 1497.828, 987.5902], [0, 0, 1]])
    p.write_text("name 0\n  intrinsic 1 2 3\n")
    with pytest.raises(AnnotationError, match="camera.calibration.*intrinsic"):
        read_calibration(p)


def test_every_reader_is_listed_and_empty_root_has_nothing(tmp_path):
    assert set(READERS) == {"3dpw", "coco", "mpii", "h36m", "mpi_inf_3dhp", "rich", "emdb"}
    assert available(tmp_path) == []
    (tmp_path / "3DPW" / "sequenceFiles" / "validation").mkdir(parents=True)
    (tmp_path / "3DPW" / "sequenceFiles" / "validation" / "a.pkl").write_bytes(b"")
    assert available(tmp_path) == [("3dpw", "val")]


def test_3dpw_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(AnnotationError, match="sequenceFiles/test"):
        list(PW3DReader(tmp_path, "test").frames())
    d = tmp_path / "sequenceFiles" / "test"
    d.mkdir(parents=True)
    (d / "bad.pkl").write_bytes(pickle.dumps({"sequence": "x"}, protocol=2))
    with pytest.raises(AnnotationError, match=r"bad\.pkl.*lacks \['genders'"):
        list(PW3DReader(tmp_path, "test").frames())
    (d / "bad.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # a pickle that would run a command
    with pytest.raises(AnnotationError, match=r"bad\.pkl.*refusing to unpickle global 'os\.system'"):
        list(PW3DReader(tmp_path, "test").frames())


def _3dpw_pickle(n=3):
    """One actor whose 2D points are given; 3D joints from jointPositions (no body model)."""
    p2d = np.zeros((n, 3, 18))
    p2d[:, 0, :] = np.linspace(10, 30, 18)
    p2d[:, 1, :] = np.linspace(5, 35, 18)
    p2d[:, 2, :] = 1
    p2d[2, 2, :] = 0  # frame 2: nothing visible
    joints = np.tile(np.column_stack([np.linspace(-0.1, 0.1, 24), np.linspace(-0.2, 0.2, 24), np.full(24, 2.0)]),
                     (n, 1, 1))  # 2 m in front of the camera, inside the image
    return dict(sequence="s_00", genders=["f"], poses=[np.zeros((n, 72))], betas=[np.zeros(300)],
                trans=[np.zeros((n, 3))], poses2d=[p2d], jointPositions=[joints.reshape(n, 72)],
                cam_poses=np.tile(np.eye(4), (n, 1, 1)), cam_intrinsics=np.array([[50.0, 0, 30], [0, 50, 20], [0, 0, 1]]),
                campose_valid=[np.array([1, 0, 1])], img_frame_ids=np.arange(n))


def test_3dpw_frames_are_records_or_rejects(tmp_path):
    from datasets.pw3d import Options

    d = tmp_path / "sequenceFiles" / "train"
    d.mkdir(parents=True)
    (d / "s_00.pkl").write_bytes(pickle.dumps(_3dpw_pickle(), protocol=2))
    for i in (0, 2):
        _jpeg(tmp_path / "imageFiles" / "s_00" / f"image_{i:05d}.jpg")
    out = list(PW3DReader(tmp_path, "train", Options(joints_3d="joint_positions")).frames())
    assert [type(o) for o in out] == [PersonFrame, Reject, Reject]
    assert out[1].reason == "invalid_camera_pose" and out[2].reason.startswith("no_visible_keypoint: poses2d")
    rec = out[0]
    assert rec.key == "3dpw_train_s-00_000000_p0" and rec.gender == "female" and rec.box_expand == 1.2
    assert tuple(rec.image_hw) == (40, 60) and rec.synthetic is False
    np.testing.assert_allclose(rec.box_center, [20, 20])
    np.testing.assert_allclose(rec.box_size, [36, 36])  # 1.2 x the larger side (30)


def test_label_npz_box_rejects_and_errors(tmp_path):
    with pytest.raises(AnnotationError, match="coco2014part_cliffGT.npz"):
        list(CocoReader(tmp_path, "train").frames())
    n = 4
    part = np.zeros((n, 24, 3))
    part[:, :, :2], part[:, :, 2] = 20, 1
    part[2, :, 2] = 0
    S = np.ones((n, 24, 4))
    S[1, 3, 0] = np.nan
    center = np.array([[30, 20], [30, 20], [30, 20], [-5, 20]], float)
    names = ["images/a.jpg", "images/a.jpg", "images/b.jpg", "images/a.jpg"]
    np.savez(tmp_path / "h36m_train.npz", imgname=np.array(names), center=center, scale=np.full(n, 0.1),
             part=part, S=S)
    _jpeg(tmp_path / "images" / "a.jpg")
    out = list(H36MReader(tmp_path, "train").frames())
    assert [o.key for o in out] == [f"h36m_train_images-{s}_000000_p{p}" for s, p in
                                    (("a", 0), ("a", 1), ("b", 0), ("a", 2))]
    assert isinstance(out[0], PersonFrame) and out[0].box_expand == 1.0 and not out[0].has_smpl
    np.testing.assert_allclose(out[0].box_size, [0.1 * SPIN_SCALE_UNIT] * 2)
    np.testing.assert_array_equal(out[0].joints_3d, S[0])
    assert out[0].intrinsics is None
    assert [o.reason.split(":")[0] for o in out[1:]] == ["non_finite_label", "missing_image", "box_outside_image"]
    np.savez(tmp_path / "h36m_train.npz", imgname=np.array(names), center=center, scale=np.ones(n),
             part=part[:, :17])
    with pytest.raises(AnnotationError, match=r"h36m_train\.npz: field 'part' has shape \(4, 17, 3\)"):
        list(H36MReader(tmp_path, "train").frames())


def test_3dhp_test_set_from_hdf5(tmp_path):
    ts = tmp_path / "mpi_inf_3dhp_test_set" / "TS2"
    ts.mkdir(parents=True)
    n = 3
    a2 = np.tile(np.linspace(5, 35, 17)[None, None, :, None], (n, 1, 1, 2))
    a3 = np.ones((n, 1, 17, 3)) * 1000
    with h5py.File(ts / "annot_data.mat", "w") as f:
        f["annot2"], f["univ_annot3"], f["valid_frame"] = a2, a3, np.array([[1.0], [0.0], [1.0]])
    _jpeg(ts / "imageSequence" / "img_000001.jpg")
    out = list(MpiInf3dhpReader(tmp_path, "test").frames())
    assert [getattr(o, "reason", "") for o in out] == ["", "invalid_frame", "missing_image: "
                                                      "mpi_inf_3dhp_test_set/TS2/imageSequence/img_000003.jpg"]
    rec = out[0]
    assert rec.key == "mpi-inf-3dhp_test_TS2_000000_p0" and rec.intrinsics is None
    assert np.all(rec.joints_3d[rec.joints_3d[:, 3] > 0, :3] == 1.0)  # mm -> m
    # all 17 land in KEYPOINTS_2D, as SPIN's test preprocessing writes them (joints_idx)
    assert (rec.keypoints_2d[:, 2] > 0).sum() == 17
    with h5py.File(ts / "annot_data.mat", "w") as f:
        f["annot2"] = a2
    with pytest.raises(AnnotationError, match="TS2/annot_data.mat"):
        list(MpiInf3dhpReader(tmp_path, "test").frames())


def test_3dhp_train_missing_annotation_is_named(tmp_path):
    (tmp_path / "S1" / "Seq1").mkdir(parents=True)
    assert MpiInf3dhpReader.splits(tmp_path) == ["train"]
    with pytest.raises(AnnotationError, match=r"S1/Seq1/annot\.mat"):
        list(MpiInf3dhpReader(tmp_path, "train").frames())


def test_rich_missing_labels_are_named(tmp_path):
    assert RichReader.splits(tmp_path) == []
    with pytest.raises(AnnotationError, match="rich_test.npz"):
        list(RichReader(tmp_path, "test").frames())
    np.savez(tmp_path / "rich_test.npz", imgname=np.array(["a.jpeg"]), center=np.zeros((1, 2)))
    with pytest.raises(AnnotationError, match=r"rich_test\.npz: RICH label npz lacks \['scale'"):
        list(RichReader(tmp_path, "test").frames())


def test_visible_in_image_is_the_pixel_rule_at_its_edges():
    """A keypoint is a 2D target only inside the image, 0 <= x < w and 0 <= y < h (SPIN's
    preprocess rule); elsewhere its confidence becomes 0, inside it keeps its own."""
    from datasets.reader import visible_in_image

    kp = np.array([[0.0, 0.0, 1.0], [59.9, 39.9, 0.7], [-0.5, 10.0, 1.0], [10.0, -0.5, 1.0], [60.0, 10.0, 1.0],
                   [10.0, 40.0, 1.0], [0.5, 0.5, 1.0]])
    out = visible_in_image(kp, (40, 60))
    np.testing.assert_array_equal(out[:, 2], [1.0, 0.7, 0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(out[:, :2], kp[:, :2])
    assert kp[2, 2] == 1.0  # a copy: the input is left alone


def test_a_reject_carries_its_frame_identity_and_a_checked_array_is_float64(tmp_path):
    from datasets.reader import FrameId, checked_array

    fid = FrameId("3dpw", "test", "seq_00", 4, 1, "imageFiles/seq_00/image_00004.jpg", "sequenceFiles/test/seq_00.pkl")
    r = fid.reject("missing_image", "imageFiles/seq_00/image_00004.jpg")
    assert (r.key, r.dataset, r.split, r.reason, r.source) == (
        "3dpw_test_seq-00_000004_p1", "3dpw", "test", "missing_image: imageFiles/seq_00/image_00004.jpg",
        "sequenceFiles/test/seq_00.pkl")
    # integer labels (a file may store whole numbers as ints) are read as float64, as documented
    arr = checked_array(np.array([[1, 2], [3, 4]], np.int16), (2, 2), tmp_path / "f.pkl", "poses")
    assert arr.dtype == np.float64 and arr.tolist() == [[1.0, 2.0], [3.0, 4.0]]
