"""MPI-INF-3DHP against the rules of its publisher and of SPIN's preprocessing.

Expected values are computed here from the rules as nkolot/SPIN
`datasets/preprocess/mpi_inf_3dhp.py` writes them (`train_data`, `test_data`; the literal
lists below are copied from it), on small hand-built raw files:
- training: the frames of SPIN's `mpi_inf_3dhp_train.npz` are those whose 17 stored joints
  (`joints17_idx`) lie inside 2048x2048, counted by one counter over all subjects,
  sequences and cameras, kept at `counter % 10 == 1` (SPIN issue #84); the image name
  `frame_%06d.jpg` counts decoded video frames from 1, so `frame_<k>` is video frame k-1
  and annotation row k-1. The reader must take exactly those frames from the fits file and
  attach each fit row to the frame its name gives.
- test: SPIN `test_data` and the official evaluation read `univ_annot3` (SPIN issue #80),
  and SPIN drops frames with any of the 17 joints outside the image (`0 <= x < w`,
  `0 <= y < h`, the size of the image): an option of the reader.
"""
from __future__ import annotations

import re

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from datasets.joints import KEYPOINTS_2D, MPI_INF_3DHP_17, MPI_INF_3DHP_28, convert
from datasets.mpi_inf_3dhp import TEST_DIR, MpiInf3dhpReader, Options, read_calibration
from datasets.reader import AnnotationError
from datasets.record import PersonFrame, Reject

# nkolot/SPIN datasets/preprocess/mpi_inf_3dhp.py, train_data
SPIN_VID_LIST = list(range(3)) + list(range(4, 9))
SPIN_TRAIN_JOINTS17_IDX = [4, 18, 19, 20, 23, 24, 25, 3, 5, 6, 7, 9, 10, 11, 14, 15, 16]
SPIN_TRAIN_HW = (2048, 2048)  # `h, w = 2048, 2048`
# nkolot/SPIN datasets/preprocess/mpi_inf_3dhp.py, test_data
SPIN_TEST_JOINTS17_IDX = [14, 11, 12, 13, 8, 9, 10, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]
NUM_CAMERAS = 14  # annot.mat cells: one per camera 0..13

VIDEO_HW = (48, 64)  # the hand-built videos (h, w); labels stay inside them
FRAMES = 7  # per video: not a multiple of 10, so the counter's phase moves at each video boundary
SEQUENCES = ((1, 1), (1, 2), (2, 1))  # (subject, sequence), in SPIN's loop order


def spin_all_joints_inside(joints: np.ndarray, h: float, w: float) -> bool:
    """SPIN's check: `x_in = (x < w) & (x >= 0)`, `y_in` alike, `np.sum(ok_pts) < len(joints_idx)` drops."""
    x_in = np.logical_and(joints[:, 0] < w, joints[:, 0] >= 0)
    y_in = np.logical_and(joints[:, 1] < h, joints[:, 1] >= 0)
    return int(np.sum(np.logical_and(x_in, y_in))) >= len(joints)


def spin_train_imgnames(annot2: dict) -> list[str]:
    """SPIN train_data's kept image names, in its order. annot2: (subject, sequence) ->
    cells by camera id of (n, 56) arrays; the i-th listed frame file of a video is
    frame_<i+1> (a listing in name order, as the released names show, SPIN issue #84)."""
    h, w = SPIN_TRAIN_HW
    counter = 0
    out = []
    for user_i, seq_i in sorted(annot2):  # SPIN: for user_i in range(1, 9): for seq_i in range(1, 3)
        for vid_i in SPIN_VID_LIST:
            for i in range(len(annot2[user_i, seq_i][vid_i])):
                joints = np.reshape(annot2[user_i, seq_i][vid_i][i], (28, 2))[SPIN_TRAIN_JOINTS17_IDX]
                if not spin_all_joints_inside(joints, h, w):
                    continue
                counter += 1
                if counter % 10 != 1:
                    continue
                out.append(f"S{user_i}/Seq{seq_i}/imageFrames/video_{vid_i}/frame_{i + 1:06d}.jpg")
    return out


def assert_spin_box(rec, joints: np.ndarray) -> None:
    """SPIN preprocess (train_data and test_data): `bbox` the tight box of the 17 joints,
    `center` its middle, `scale = scaleFactor * max(w, h) / 200` with scaleFactor 1.2."""
    bbox = [min(joints[:, 0]), min(joints[:, 1]), max(joints[:, 0]), max(joints[:, 1])]
    center = [(bbox[2] + bbox[0]) / 2, (bbox[3] + bbox[1]) / 2]
    scale = 1.2 * max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 200
    np.testing.assert_allclose(rec.box_center, center, atol=1e-4)
    np.testing.assert_allclose(rec.box_size, [scale * 200] * 2, atol=1e-4)
    np.testing.assert_allclose(rec.box_tight, bbox, atol=1e-4)
    assert rec.box_expand == 1.2


# ---- hand-built raw files ------------------------------------------------------------------------
def _annot(s: int, q: int) -> tuple[list, list]:
    """Per camera (n, 56) / (n, 84) labels, distinct per sequence, camera and row. Rejected by
    SPIN's check: S1/Seq1 camera 1 row 2 (right ankle, joint 25, past x = 2048) and S1/Seq2
    camera 0 row 5 (pelvis, joint 4, at y < 0); kept: S1/Seq1 camera 0 row 3, whose
    outside joint (left toe, 22) is not one of the 17 SPIN checks."""
    rng = np.random.default_rng(100 * s + q)
    a2, a3 = [], []
    for c in range(NUM_CAMERAS):
        base = rng.uniform([8, 8], [VIDEO_HW[1] - 8, VIDEO_HW[0] - 8], size=(28, 2))
        rows2 = np.stack([base + 0.25 * i for i in range(FRAMES)])
        rows3 = np.stack([rng.uniform(-800, 800, (28, 3)) + [0, 0, 4000] + i for i in range(FRAMES)])
        a2.append(rows2)
        a3.append(rows3)
    if (s, q) == (1, 1):
        a2[1][2, 25, 0] = 2100.0
        a2[0][3, 22, 0] = -40.0
    if (s, q) == (1, 2):
        a2[0][5, 4, 1] = -3.0
    return [a.reshape(FRAMES, 56) for a in a2], [a.reshape(FRAMES, 84) for a in a3]


def _cells(arrays: list) -> np.ndarray:
    out = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        out[i, 0] = a
    return out


def _video(path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (VIDEO_HW[1], VIDEO_HW[0]))
    for i in range(n):
        writer.write(np.full((*VIDEO_HW, 3), 10 * i, np.uint8))
    writer.release()


def _calibration(path) -> None:
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c in range(NUM_CAMERAS):
        K = np.eye(4)
        K[0, 0] = K[1, 1] = 100.0 + c
        K[0, 2], K[1, 2] = VIDEO_HW[1] / 2, VIDEO_HW[0] / 2
        lines += [f"name          {c}", "  sensor      10 10", f"  size        {VIDEO_HW[1]} {VIDEO_HW[0]}",
                  "  animated    0", "  intrinsic   " + " ".join(f"{v:.6f}" for v in K.reshape(-1)),
                  "  extrinsic   " + " ".join(f"{v:.6f}" for v in np.eye(4).reshape(-1)), "  radial      0"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def train_root(tmp_path):
    """Three sequences of 8 SPIN cameras x 7 frames, with their labels by (s, q)."""
    labels = {}
    for s, q in SEQUENCES:
        qdir = tmp_path / f"S{s}" / f"Seq{q}"
        qdir.mkdir(parents=True)
        a2, a3 = _annot(s, q)
        labels[s, q] = (a2, a3)
        scipy.io.savemat(str(qdir / "annot.mat"), {
            "annot2": _cells(a2), "annot3": _cells(a3), "univ_annot3": _cells(a3),
            "frames": np.arange(FRAMES, dtype=float)[:, None],
            "cameras": np.arange(NUM_CAMERAS, dtype=float)[None]})
        _calibration(qdir / "camera.calibration")
        for c in SPIN_VID_LIST:
            _video(qdir / "imageSequence" / f"video_{c}.avi", FRAMES)
    return tmp_path, labels


def _write_fits(root, names: list[str], has_smpl=None) -> tuple[np.ndarray, np.ndarray]:
    n = len(names)
    pose = np.arange(n)[:, None] * 0.01 + np.arange(72)[None] * 1e-4
    shape = np.arange(n)[:, None] + np.arange(10)[None] * 0.1
    has = np.ones(n) if has_smpl is None else np.asarray(has_smpl, float)
    np.savez(root / "mpi_inf_3dhp_train.npz", imgname=np.array(names), pose=pose, shape=shape, has_smpl=has)
    return pose, shape


def _parse(name: str) -> tuple[int, int, int, int]:
    s, q, c, k = re.fullmatch(r"S(\d+)/Seq(\d+)/imageFrames/video_(\d+)/frame_(\d+)\.jpg", name).groups()
    return int(s), int(q), int(c), int(k)


# ---- training ---------------------------------------------------------------------------------
def test_train_frames_are_spin_selection_with_fits_attached(train_root):
    root, labels = train_root
    names = spin_train_imgnames({sq: a2 for sq, (a2, _) in labels.items()})
    # 3 x 8 x 7 = 168 frames, 2 rejected -> counters 1..166, kept 1, 11, ..., 161. By hand:
    # S1/Seq1 video_0 rows 0-6 = 1-7 (row 3 counts: the left toe is not checked); video_1 row 2
    # rejected, rows 0,1,3-6 = 8-13 (11 = row 4); video_2 = 14-20; video_4 = 21-27 (21 = row 0);
    # ... S1/Seq2 video_0 row 5 rejected, rows 0-4,6 = 56-61 (61 = row 6); S2/Seq1 video_0 = 111-117.
    assert [n.replace("/imageFrames/video_", " ").replace(".jpg", "") for n in names] == [
        "S1/Seq1 0/frame_000001", "S1/Seq1 1/frame_000005", "S1/Seq1 4/frame_000001", "S1/Seq1 5/frame_000004",
        "S1/Seq1 6/frame_000007", "S1/Seq1 8/frame_000003", "S1/Seq2 0/frame_000007", "S1/Seq2 2/frame_000003",
        "S1/Seq2 4/frame_000006", "S1/Seq2 6/frame_000002", "S1/Seq2 7/frame_000005", "S2/Seq1 0/frame_000001",
        "S2/Seq1 1/frame_000004", "S2/Seq1 2/frame_000007", "S2/Seq1 5/frame_000003", "S2/Seq1 6/frame_000006",
        "S2/Seq1 8/frame_000002"]
    pose, shape = _write_fits(root, names, has_smpl=[1] * 16 + [0])

    items = list(MpiInf3dhpReader(root, "train").frames())
    assert all(isinstance(r, PersonFrame) for r in items), [r for r in items if isinstance(r, Reject)]
    by_key = {r.key: r for r in items}
    assert len(by_key) == len(items) == len(names)
    for row, name in enumerate(names):
        s, q, c, k = _parse(name)
        i = k - 1  # frame_<k> is the k-th decoded frame: video frame k-1
        rec = by_key[f"mpi-inf-3dhp_train_S{s}-Seq{q}-cam{c}_{i:06d}_p0"]
        assert (rec.frame, rec.video_frame) == (i, i)
        assert rec.image_path == f"S{s}/Seq{q}/imageSequence/video_{c}.avi"
        a2, a3 = labels[s, q]
        want2 = convert(np.concatenate([a2[c][i].reshape(28, 2), np.ones((28, 1))], 1), MPI_INF_3DHP_28, KEYPOINTS_2D)
        want3 = convert(np.concatenate([a3[c][i].reshape(28, 3) / 1000, np.ones((28, 1))], 1),
                        MPI_INF_3DHP_28, KEYPOINTS_2D)
        np.testing.assert_allclose(rec.keypoints_2d, want2, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(rec.joints_3d, want3, atol=1e-5, err_msg=name)
        h, w = VIDEO_HW  # camera.calibration's intrinsic, the 3x3 of its row-major 4x4
        np.testing.assert_allclose(rec.intrinsics, [[100.0 + c, 0, w / 2], [0, 100.0 + c, h / 2], [0, 0, 1]])
        assert rec.source == f"S{s}/Seq{q}/annot.mat"
        assert_spin_box(rec, a2[c][i].reshape(28, 2)[SPIN_TRAIN_JOINTS17_IDX])
        assert rec.has_smpl == (row < 16), name
        if rec.has_smpl:
            np.testing.assert_allclose(rec.smpl_pose, pose[row].reshape(24, 3), atol=1e-6, err_msg=name)
            np.testing.assert_allclose(rec.betas, shape[row], atol=1e-6, err_msg=name)


def test_train_fits_row_order_does_not_move_a_fit(train_root):
    root, labels = train_root
    names = spin_train_imgnames({sq: a2 for sq, (a2, _) in labels.items()})
    pose, _ = _write_fits(root, names)
    first = {r.key: r.smpl_pose for r in MpiInf3dhpReader(root, "train").frames()}
    order = np.random.default_rng(0).permutation(len(names))
    np.savez(root / "mpi_inf_3dhp_train.npz", imgname=np.array(names)[order], pose=pose[order],
             shape=np.ones((len(names), 10)), has_smpl=np.ones(len(names)))
    second = {r.key: r.smpl_pose for r in MpiInf3dhpReader(root, "train").frames()}
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_train_without_fits_keeps_per_video_sampling(train_root):
    root, _ = train_root
    items = list(MpiInf3dhpReader(root, "train").frames())
    assert sorted((r.sequence, r.frame) for r in items) == sorted(
        (f"S{s}-Seq{q}-cam{c}", 0) for s, q in SEQUENCES for c in SPIN_VID_LIST)
    assert not any(r.has_smpl for r in items)


def test_train_fits_that_do_not_fit_the_tree(train_root):
    root, _ = train_root
    ok = "S1/Seq1/imageFrames/video_0/frame_000001.jpg"
    for bad, match in [
        ("S1/Seq1/video_0/frame_000001.jpg", r"mpi_inf_3dhp_train\.npz: field 'imgname' row 1"),
        ("S1/Seq1/imageFrames/video_0/frame_000000.jpg", "k >= 1"),  # SPIN numbers frames from 1
        (ok, "rows 0 and 1 both name"),
        ("S1/Seq1/imageFrames/video_0/frame_000008.jpg", r"mpi_inf_3dhp_train\.npz: field 'imgname' row 1 names "
                                                         r"video_0 frame 7 \(0-based\) of S1/Seq1, but annot\.mat "
                                                         r"has 7 rows"),
    ]:
        _write_fits(root, [ok, bad])
        with pytest.raises(AnnotationError, match=match):
            list(MpiInf3dhpReader(root, "train").frames())
    # a frame past the end of its video, a subject that is not present: rejects with a reason
    _video(root / "S1" / "Seq1" / "imageSequence" / "video_2.avi", 5)
    _write_fits(root, [ok, "S1/Seq1/imageFrames/video_2/frame_000006.jpg",
                       "S5/Seq1/imageFrames/video_0/frame_000001.jpg"])
    items = list(MpiInf3dhpReader(root, "train").frames())
    assert isinstance(items[0], PersonFrame)
    assert [(r.key, r.reason) for r in items[1:]] == [
        ("mpi-inf-3dhp_train_S1-Seq1-cam2_000005_p0", "missing_image: S1/Seq1/imageSequence/video_2.avi has 5 frames, "
                                                      "annotation frame 5"),
        ("mpi-inf-3dhp_train_S5-Seq1-cam0_000000_p0", "missing_image: S5/Seq1 is not present")]
    assert [r.source for r in items] == ["S1/Seq1/annot.mat", "S1/Seq1/annot.mat", "S5/Seq1/annot.mat"]


def test_synthetic_fits_follow_spin_selection(synthetic_dir):
    """The generator's fits file is SPIN's selection of its own annot.mat files, and shows
    the rule's quirks (rejected frames, a phase that moves across videos)."""
    root = synthetic_dir / "raw" / "mpi_inf_3dhp"
    annot2 = {}
    for path in sorted(root.glob("S*/Seq*/annot.mat")):
        s, q = int(path.parent.parent.name[1:]), int(path.parent.name[3:])
        cap = cv2.VideoCapture(str(path.parent / "imageSequence" / "video_0.avi"))
        to_spin = SPIN_TRAIN_HW[1] / cap.get(cv2.CAP_PROP_FRAME_WIDTH)  # the videos are 2048 px ones, scaled down
        cap.release()
        annot2[s, q] = [cell[0] * to_spin for cell in scipy.io.loadmat(str(path))["annot2"]]
    with np.load(root / "mpi_inf_3dhp_train.npz") as z:
        names = [str(n) for n in z["imgname"]]
    assert names == spin_train_imgnames(annot2)
    h, w = SPIN_TRAIN_HW
    counted = [spin_all_joints_inside(row.reshape(28, 2)[SPIN_TRAIN_JOINTS17_IDX], h, w)
               for cells in annot2.values() for c in SPIN_VID_LIST for row in cells[c]]
    assert not all(counted)  # some frames are rejected ...
    assert len({_parse(n)[3] for n in names}) > 1  # ... and the kept frame moves within the videos


# ---- test split ---------------------------------------------------------------------------------
def _jpeg(path, hw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((*hw, 3), np.uint8))


@pytest.fixture
def test_root(tmp_path):
    """TS3: 5 frames of a 40x60 image; frame 1 has a joint at x = w, frame 2 one at y < 0,
    frame 3 one just inside the far corner, frame 4 is not a valid frame."""
    hw = (40, 60)
    n = 5
    rng = np.random.default_rng(3)
    annot2 = rng.uniform([5, 5], [55, 35], size=(n, 1, 17, 2))
    annot2[1, 0, 9, 0] = 60.0
    annot2[2, 0, 0, 1] = -0.5
    annot2[3, 0, 16] = [59.9, 39.9]
    annot3 = rng.uniform(-800, 800, (n, 1, 17, 3)) + [0, 0, 4000]
    univ = annot3 * 0.93 + 5.0  # differs from annot3 everywhere
    ts = tmp_path / "mpi_inf_3dhp_test_set" / "TS3"
    ts.mkdir(parents=True)
    with h5py.File(ts / "annot_data.mat", "w") as f:
        f["annot2"], f["annot3"], f["univ_annot3"] = annot2, annot3, univ
        f["valid_frame"] = np.array([[1.0], [1.0], [1.0], [1.0], [0.0]])
    for k in range(1, n + 1):  # SPIN test_data: img_<frame_i + 1:06d>.jpg
        _jpeg(ts / "imageSequence" / f"img_{k:06d}.jpg", hw)
    return tmp_path, hw, annot2[:, 0], annot3[:, 0], univ[:, 0]


def _joints(mm: np.ndarray) -> np.ndarray:
    return convert(np.concatenate([mm / 1000, np.ones((17, 1))], 1), MPI_INF_3DHP_17, KEYPOINTS_2D)


@pytest.mark.parametrize("key", ["univ_annot3", "annot3"])
def test_test_joints_come_from_the_chosen_key(test_root, key):
    root, _, annot2, annot3, univ = test_root
    options = None if key == "univ_annot3" else Options(test_joints=key)  # univ_annot3 is the default
    items = list(MpiInf3dhpReader(root, "test", options).frames())
    assert [r.key for r in items] == [f"mpi-inf-3dhp_test_TS3_{i:06d}_p0" for i in range(5)]
    assert items[0].image_path == "mpi_inf_3dhp_test_set/TS3/imageSequence/img_000001.jpg"
    want = univ if key == "univ_annot3" else annot3
    for i in range(4):
        np.testing.assert_allclose(items[i].joints_3d, _joints(want[i]), atol=1e-5)
        assert items[i].source == "mpi_inf_3dhp_test_set/TS3/annot_data.mat" and items[i].intrinsics is None
    for i in (0, 3):  # every joint inside the image: SPIN's box of the 17
        assert_spin_box(items[i], annot2[i])
        np.testing.assert_allclose(items[i].keypoints_2d, convert(np.concatenate([annot2[i], np.ones((17, 1))], 1),
                                                                  MPI_INF_3DHP_17, KEYPOINTS_2D), atol=1e-4)
    assert items[4].reason == "invalid_frame"


@pytest.mark.parametrize("drop", [False, True])
def test_test_frames_with_a_joint_outside_the_image(test_root, drop):
    root, (h, w), annot2, _, _ = test_root
    items = list(MpiInf3dhpReader(root, "test", Options(drop_joints_outside_image=drop)).frames())
    for i, item in enumerate(items[:4]):
        joints = annot2[i][SPIN_TEST_JOINTS17_IDX]  # SPIN's order; the rule looks at all 17
        if drop and not spin_all_joints_inside(joints, h, w):
            assert isinstance(item, Reject) and item.reason == "joint_outside_image: 1 of 17 joints", (i, item)
        else:
            assert isinstance(item, PersonFrame), (i, item)
    # the fixture has both outcomes: frames 1 and 2 out (x = w, y < 0), frame 3 in (x < w, y < h)
    assert [spin_all_joints_inside(annot2[i], h, w) for i in range(4)] == [True, False, False, True]
    assert items[4].reason == "invalid_frame"


# ---- issue #19 (mutation testing): the options, and files that do not fit ----------------------
def test_without_fits_the_cameras_and_the_step_are_options(train_root):
    root, labels = train_root
    items = list(MpiInf3dhpReader(root, "train", Options(cameras=(2, 0), frame_step=3)).frames())
    want = [(f"S{s}-Seq{q}-cam{c}", i) for s, q in SEQUENCES for c in (2, 0) for i in (0, 3, 6)]
    assert [(r.sequence, r.frame) for r in items] == want  # in the options' camera order
    assert [r.source for r in items] == [f"S{s}/Seq{q}/annot.mat" for s, q in SEQUENCES for _ in range(6)]
    assert all(isinstance(r, PersonFrame) and not r.has_smpl for r in items)
    a2 = labels[1, 1][0]
    want2 = convert(np.concatenate([a2[2][3].reshape(28, 2), np.ones((28, 1))], 1), MPI_INF_3DHP_28, KEYPOINTS_2D)
    np.testing.assert_allclose(items[1].keypoints_2d, want2, atol=1e-4)


def test_a_fits_file_without_has_smpl_fits_every_row(train_root):
    """SPIN base_dataset.py: `pose` and `shape` without `has_smpl` -> every row has SMPL."""
    root, labels = train_root
    names = spin_train_imgnames({sq: a2 for sq, (a2, _) in labels.items()})[:3]
    pose = np.linspace(-0.5, 0.5, 3 * 72).reshape(3, 72)
    np.savez(root / "mpi_inf_3dhp_train.npz", imgname=np.array(names), pose=pose, shape=np.ones((3, 10)))
    items = list(MpiInf3dhpReader(root, "train").frames())
    assert len(items) == 3 and all(r.has_smpl for r in items)
    np.testing.assert_allclose(items[0].smpl_pose, pose[0].reshape(24, 3), atol=1e-6)
    items = list(MpiInf3dhpReader(root, "train", Options(smpl_fits=None)).frames())  # the fits not used
    assert len(items) == len(SEQUENCES) * 8 and not any(r.has_smpl for r in items)


@pytest.mark.parametrize("video", ["missing", "unreadable"])
def test_a_missing_or_unreadable_video_makes_its_frames_rejects(train_root, video):
    root, _ = train_root
    path = root / "S1" / "Seq1" / "imageSequence" / "video_0.avi"
    if video == "missing":
        path.unlink()
    else:
        path.write_bytes(b"RIFF not a video")
    items = list(MpiInf3dhpReader(root, "train", Options(cameras=(0,))).frames())
    lost = [r for r in items if "_S1-Seq1-cam0_" in r.key]
    assert [r.reason for r in lost] == [f"missing_image: S1/Seq1/imageSequence/video_0.avi has 0 frames, "
                                        f"annotation frame {i}" for i in range(0, FRAMES, 10)]
    assert all(isinstance(r, PersonFrame) for r in items if r not in lost) and len(items) == len(SEQUENCES)
    assert lost[0].source == "S1/Seq1/annot.mat"


def test_inside_image_is_spins_rule():
    """SPIN preprocess: `x_in = (x < w) & (x >= 0)`, `y_in = (y < h) & (y >= 0)`."""
    from datasets.mpi_inf_3dhp import inside_image

    points = np.array([[0.0, 0.0], [59.9, 39.9], [-0.5, 10.0], [10.0, -0.5], [60.0, 10.0], [10.0, 40.0], [0.5, 0.5]])
    assert inside_image(points, (40, 60)).tolist() == [True, True, False, False, False, False, True]


def test_only_numbered_folders_are_subjects_sequences_and_test_sequences(train_root):
    root, _ = train_root
    (root / "S3_backup").mkdir()
    (root / "S1" / "Seq1b").mkdir()
    (root / "S4").write_text("not a folder")
    assert MpiInf3dhpReader.splits(root) == ["train"]
    items = list(MpiInf3dhpReader(root, "train", Options(cameras=(0,), frame_step=100)).frames())
    assert [r.sequence for r in items] == ["S1-Seq1-cam0", "S1-Seq2-cam0", "S2-Seq1-cam0"]
    (root / TEST_DIR / "TS1").mkdir(parents=True)
    assert MpiInf3dhpReader.splits(root) == ["train", "test"]


@pytest.mark.parametrize("change, match", [
    ("camera", r"S1/Seq1/annot\.mat: camera 0 is not in 'cameras'"),
    ("rows", r"S1/Seq1/annot\.mat: camera 0 has 7 'annot2' rows but 6 'annot3' rows"),
    ("annot2 cell", r"S1/Seq1/annot\.mat: field 'annot2' cell 0 has shape \(7, 54\)"),
    ("annot3 cell", r"S1/Seq1/annot\.mat: field 'annot3' cell 0 has shape \(7, 83\)"),
    ("no annot3", r"S1/Seq1/annot\.mat: annot\.mat lacks \['annot3'\]"),
    ("garbage", r"S1/Seq1/annot\.mat: unreadable annot\.mat"),
    ("no calibration", r"S1/Seq1/camera\.calibration: MPI-INF-3DHP camera calibration not found"),
    ("no annotation", r"S1/Seq1/annot\.mat: MPI-INF-3DHP annotation not found")])
def test_training_files_that_do_not_fit_are_named(train_root, change, match):
    root, labels = train_root
    qdir = root / "S1" / "Seq1"
    a2, a3 = [list(x) for x in labels[1, 1]]
    cams = np.arange(NUM_CAMERAS, dtype=float)[None]
    if change == "camera":
        cams = cams + 20
    elif change == "rows":
        a3[0] = a3[0][:6]
    elif change == "annot2 cell":
        a2[0] = a2[0][:, :54]
    elif change == "annot3 cell":
        a3[0] = a3[0][:, :83]
    mat = {"annot2": _cells(a2), "annot3": _cells(a3), "cameras": cams}
    if change == "no annot3":
        del mat["annot3"]
    scipy.io.savemat(str(qdir / "annot.mat"), mat)
    if change == "garbage":
        (qdir / "annot.mat").write_bytes(b"MATLAB 5.0 garbage")
    elif change == "no calibration":
        (qdir / "camera.calibration").unlink()
    elif change == "no annotation":
        (qdir / "annot.mat").unlink()
    with pytest.raises(AnnotationError, match=match):
        list(MpiInf3dhpReader(root, "train", Options(cameras=(0,))).frames())


@pytest.mark.parametrize("text, match", [
    ("name 0\n  intrinsic 1 2 3\n", r"malformed 'intrinsic' line"),
    ("  intrinsic " + " ".join(["1"] * 16) + "\n", r"malformed 'intrinsic' line"),  # before any `name`
    ("name 0\n  sensor 10 10\n", "no camera blocks found"),
    (b"\xff\xfe\x00bad", "unreadable camera calibration")])
def test_a_calibration_that_does_not_parse_is_named(tmp_path, text, match):
    path = tmp_path / "camera.calibration"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(AnnotationError, match=rf"camera\.calibration: {match}"):
        read_calibration(path)


def test_calibration_blocks_give_each_camera_its_own_intrinsics(tmp_path):
    """SPIN `read_calibration`: the `intrinsic` line after each `name`, a row-major 4x4."""
    path = tmp_path / "camera.calibration"
    _calibration(path)
    K = read_calibration(path)
    assert sorted(K) == list(range(NUM_CAMERAS))
    h, w = VIDEO_HW
    np.testing.assert_allclose(K[5], [[105.0, 0, w / 2], [0, 105.0, h / 2], [0, 0, 1]])


@pytest.mark.parametrize("change, match", [
    ("no valid_frame", r"TS3/annot_data\.mat: MPI-INF-3DHP test annotation lacks \['valid_frame'\]"),
    ("short annot2", r"TS3/annot_data\.mat: 'annot2' \(4, 1, 17, 2\) / 'univ_annot3' \(5, 1, 17, 3\) do not match 5"),
    ("garbage", r"TS3/annot_data\.mat: unreadable MPI-INF-3DHP test annotation"),
    ("no file", r"TS3/annot_data\.mat: MPI-INF-3DHP test annotation not found")])
def test_test_files_that_do_not_fit_are_named(test_root, change, match):
    root, _, annot2, annot3, univ = test_root
    path = root / TEST_DIR / "TS3" / "annot_data.mat"
    if change == "garbage":
        path.write_bytes(b"\x89HDF garbage")
    elif change == "no file":
        path.unlink()
    else:
        with h5py.File(path, "w") as f:
            f["annot2"], f["univ_annot3"] = annot2[:, None], univ[:, None]
            if change == "short annot2":
                del f["annot2"]
                f["annot2"] = annot2[:4, None]
                f["valid_frame"] = np.ones((5, 1))
    with pytest.raises(AnnotationError, match=match):
        list(MpiInf3dhpReader(root, "test").frames())


def test_test_frames_with_non_finite_labels_or_no_image_are_rejects(test_root):
    """A NaN label: a `non_finite_label` reject (whatever the outside-joint option); an image
    whose header does not read (the first of its sequence): a `missing_image` reject."""
    root, _, annot2, _, univ = test_root
    path = root / TEST_DIR / "TS3" / "annot_data.mat"
    a2 = annot2.copy()
    a2[2, 3, 0] = np.nan  # frame 2 (also one joint at y < 0): not judged outside, a non-finite label
    with h5py.File(path, "w") as f:
        f["annot2"], f["univ_annot3"], f["valid_frame"] = a2[:, None], univ[:, None], np.ones((5, 1))
    (root / TEST_DIR / "TS3" / "imageSequence" / "img_000001.jpg").write_bytes(b"not a jpeg")
    for drop in (False, True):
        items = list(MpiInf3dhpReader(root, "test", Options(drop_joints_outside_image=drop)).frames())
        assert items[0].reason == "missing_image: mpi_inf_3dhp_test_set/TS3/imageSequence/img_000001.jpg"
        assert items[2].reason == "non_finite_label: keypoints_2d", items[2]
        assert isinstance(items[3], PersonFrame) and isinstance(items[4], PersonFrame)


@pytest.mark.parametrize("options, error", [
    (dict(frame_step=0), "frame_step must be >= 1"), (dict(test_joints="univ"), "test_joints must be one of")])
def test_options_out_of_range_are_errors(tmp_path, options, error):
    with pytest.raises(ValueError, match=error):
        MpiInf3dhpReader(tmp_path, "train", Options(**options))
    with pytest.raises(ValueError, match="unknown split 'val'"):
        MpiInf3dhpReader(tmp_path, "val")


@pytest.mark.parametrize("field, value, match", [
    ("imgname", None, r"SPIN MPI-INF-3DHP fits npz lacks \['imgname'\]"),
    ("pose", np.zeros((2, 69)), r"field 'pose' has shape \(2, 69\), expected \(2, 72\)"),
    ("shape", np.zeros((2, 8)), r"field 'shape' has shape \(2, 8\), expected \(2, >= 10\)"),
    ("has_smpl", np.ones((2, 1)), r"field 'has_smpl' has shape \(2, 1\), expected \(2\)"),
    ("imgname", np.array([["S1/Seq1/imageFrames/video_0/frame_000001.jpg"]] * 2),
     r"field 'imgname' has shape \(2, 1\), expected \(2\)"),
    ("garbage", None, r"unreadable SPIN MPI-INF-3DHP fits npz")])
def test_a_fits_file_of_the_wrong_shape_is_named(train_root, field, value, match):
    root, _ = train_root
    names = ["S1/Seq1/imageFrames/video_0/frame_000001.jpg", "S1/Seq1/imageFrames/video_1/frame_000001.jpg"]
    cols = dict(imgname=np.array(names), pose=np.zeros((2, 72)), shape=np.zeros((2, 10)), has_smpl=np.ones(2))
    if field == "garbage":
        (root / "mpi_inf_3dhp_train.npz").write_bytes(b"PK garbage")
    else:
        if value is None:
            del cols[field]
        else:
            cols[field] = value
        np.savez(root / "mpi_inf_3dhp_train.npz", **cols)
    with pytest.raises(AnnotationError, match=r"mpi_inf_3dhp_train\.npz: " + match):
        list(MpiInf3dhpReader(root, "train").frames())


def test_fits_with_more_than_10_betas_keep_the_first_10(train_root):
    """SPIN's `shape` has 10 betas; a file with more (BEDLAM-style 11) gives the first 10."""
    root, _ = train_root
    shape = np.arange(22.0).reshape(2, 11) / 10
    np.savez(root / "mpi_inf_3dhp_train.npz", imgname=np.array(["S1/Seq1/imageFrames/video_0/frame_000001.jpg",
                                                                 "S1/Seq1/imageFrames/video_1/frame_000002.jpg"]),
             pose=np.zeros((2, 72)), shape=shape)
    items = list(MpiInf3dhpReader(root, "train").frames())
    for rec, betas in zip(items, shape):
        np.testing.assert_allclose(rec.betas, betas[:10], atol=1e-6)


def test_a_test_sequence_shares_the_size_of_its_first_readable_image(test_root):
    """Every frame of a test sequence has one size, read once from the first image whose header
    reads: a later image that does not decode is still a record of that size (the shard
    pipeline finds it when it decodes the image: `corrupt_image`)."""
    root, hw, _, _, _ = test_root
    (root / TEST_DIR / "TS3" / "imageSequence" / "img_000004.jpg").write_bytes(b"not a jpeg")
    items = list(MpiInf3dhpReader(root, "test").frames())
    assert isinstance(items[3], PersonFrame) and tuple(items[3].image_hw) == hw


def test_joints_outside_the_image_are_not_2d_targets(test_root):
    """Kept frames (the official protocol): a joint outside the image keeps its 3D position
    but has 2D confidence 0; a frame with every joint outside has nothing to crop on (a
    `no_visible_keypoint` reject); one whose labels are all NaN is a `non_finite_label` reject."""
    root, (h, w), annot2, _, univ = test_root
    a2 = annot2.copy()
    a2[3] += [1000.0, 0.0]  # frame 3: every joint right of the image
    a2[0] = np.nan
    with h5py.File(root / TEST_DIR / "TS3" / "annot_data.mat", "w") as f:
        f["annot2"], f["univ_annot3"], f["valid_frame"] = a2[:, None], univ[:, None], np.ones((5, 1))
    items = list(MpiInf3dhpReader(root, "test").frames())
    assert items[0].reason == "non_finite_label: keypoints_2d"
    assert items[3].reason == "no_visible_keypoint"
    for i in (1, 2):  # one joint outside (x = w, y < 0)
        x, y = a2[i, :, 0], a2[i, :, 1]
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)  # SPIN's rule
        want = convert(np.concatenate([a2[i], inside[:, None].astype(float)], 1), MPI_INF_3DHP_17, KEYPOINTS_2D)
        assert (want[:, 2] > 0).sum() == 16
        np.testing.assert_array_equal(items[i].keypoints_2d[:, 2], want[:, 2])
        assert (items[i].joints_3d[:, 3] > 0).sum() == 17


def test_a_frame_step_of_1_reads_every_frame(train_root):
    root, _ = train_root
    items = list(MpiInf3dhpReader(root, "train", Options(cameras=(0,), frame_step=1, smpl_fits=None)).frames())
    assert [(r.sequence, r.frame) for r in items] == [(f"S{s}-Seq{q}-cam0", i) for s, q in SEQUENCES
                                                      for i in range(FRAMES)]


def test_valid_frame_as_a_row_or_a_column_gives_the_same_flags(test_root):
    """MATLAB writes a vector as 1 x N or N x 1 (h5py: (N, 1) or (1, N)): the same N flags."""
    root, _, annot2, _, univ = test_root
    with h5py.File(root / TEST_DIR / "TS3" / "annot_data.mat", "w") as f:
        f["annot2"], f["univ_annot3"] = annot2[:, None], univ[:, None]
        f["valid_frame"] = np.array([[1.0, 1.0, 1.0, 1.0, 0.0]])
    items = list(MpiInf3dhpReader(root, "test").frames())
    assert [getattr(r, "reason", "") for r in items] == ["", "", "", "", "invalid_frame"]
