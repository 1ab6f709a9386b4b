"""MPI-INF-3DHP reader: the raw training layout (videos) and the test set (HDF5 + JPEGs).

Training (`split="train"`), after SPIN `datasets/preprocess/mpi_inf_3dhp.py`:
- `S<s>/Seq<q>/annot.mat` (scipy): `annot2` / `annot3` are cells with one (N, 28*2) /
  (N, 28*3) array per camera (pixels / camera-frame mm, MPI_INF_3DHP_28 order),
  `cameras` the camera ids of the cells;
- `S<s>/Seq<q>/camera.calibration`: a text block per camera (`name`, `sensor`, `size`,
  `animated`, `intrinsic` 16 numbers = row-major 4x4, `extrinsic` 16, `radial`);
- `S<s>/Seq<q>/imageSequence/video_<c>.avi`: frame i of the video is row i of the
  annotation (the record gives `video_frame = i`; OpenCV decodes it downstream).
Cameras and frame subsampling are options; the defaults are SPIN's cameras (0-2, 4-8;
3 and 9-13 are the ceiling/other views it leaves out) and SPIN's "every 10th frame",
taken per video by frame index (ours: SPIN counts over frames that passed its
all-joints-in-image check, across videos, so its selection depends on the rejects).
Joints outside the image keep their 3D position but get 2D confidence 0.
Optional SMPL fits: an npz with SPIN's keys `imgname`, `pose`, `shape`, `has_smpl`
(SPIN's released `mpi_inf_3dhp_train.npz` holds them), matched by SPIN's image name
`S<s>/Seq<q>/imageFrames/video_<c>/frame_<i+1:06d>.jpg`.

Test (`split="test"`): `mpi_inf_3dhp_test_set/TS<k>/annot_data.mat` (MATLAB 7.3 = HDF5,
h5py: `annot2` (N, 1, 17, 2), `annot3` (N, 1, 17, 3) mm, `valid_frame` (N, 1)) and
`imageSequence/img_<i+1:06d>.jpg`; frames with `valid_frame` 0 are rejected
(`invalid_frame`). The test files hold no intrinsics, so records have none. We use
`annot3` (metric, camera frame), not the height-normalised `univ_annot3`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.joints import KEYPOINTS_2D, MPI_INF_3DHP_17, MPI_INF_3DHP_28, convert
from datasets.reader import (AnnotationError, FrameId, finish, image_hw, require_file, synthetic_assets,
                             visible_in_image)
from datasets.record import NUM_BETAS, PersonFrame, Reject
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints

MM_TO_M = 1e-3
SPIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)  # SPIN `vid_list`
SPIN_FRAME_STEP = 10  # SPIN: "because of the dataset size, we only keep every 10th frame"
TEST_DIR = "mpi_inf_3dhp_test_set"
VIDEO_PATTERN = "S{s}/Seq{q}/imageSequence/video_{c}.avi"
SPIN_IMGNAME = "S{s}/Seq{q}/imageFrames/video_{c}/frame_{k:06d}.jpg"
TEST_IMAGE_PATTERN = TEST_DIR + "/TS{t}/imageSequence/img_{k:06d}.jpg"


@dataclass(frozen=True)
class Options:
    """cameras: training camera ids; frame_step: keep frames i % frame_step == 0 of each
    video; smpl_fits: npz of SMPL fits relative to the root, used when present."""

    cameras: tuple[int, ...] = SPIN_CAMERAS
    frame_step: int = SPIN_FRAME_STEP
    smpl_fits: str | None = "mpi_inf_3dhp_train.npz"


class MpiInf3dhpReader:
    name = "mpi_inf_3dhp"

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"mpi_inf_3dhp: unknown split {split!r}; known ['test', 'train']")
        self.root, self.split, self.options = Path(root), split, options or Options()
        if self.options.frame_step < 1:
            raise ValueError(f"mpi_inf_3dhp: options.frame_step must be >= 1, got {self.options.frame_step}")
        self.synthetic = synthetic_assets(self.root) is not None

    @staticmethod
    def splits(root: Path) -> list[str]:
        root = Path(root)
        out = ["train"] if _numbered(root, "S") else []
        return out + (["test"] if _numbered(root / TEST_DIR, "TS") else [])

    def frames(self) -> Iterator[PersonFrame | Reject]:
        if self.split == "train":
            fits = self._fits()
            for s, sdir in _numbered(self.root, "S"):
                for q, qdir in _numbered(sdir, "Seq"):
                    yield from self._train_sequence(s, q, qdir, fits)
        else:
            for t, tdir in _numbered(self.root / TEST_DIR, "TS"):
                yield from self._test_sequence(t, tdir)

    # ---- training ------------------------------------------------------------------------
    def _train_sequence(self, s: int, q: int, qdir: Path, fits: dict) -> Iterator[PersonFrame | Reject]:
        annot_path = require_file(qdir / "annot.mat", "MPI-INF-3DHP annotation")
        annot = _loadmat(annot_path)
        calib = read_calibration(require_file(qdir / "camera.calibration", "MPI-INF-3DHP camera calibration"))
        cam_ids = [int(c) for c in np.asarray(annot["cameras"]).reshape(-1)]
        src = str(annot_path.relative_to(self.root))
        for c in self.options.cameras:
            if c not in cam_ids or c not in calib:
                raise AnnotationError(f"{annot_path}: camera {c} is not in 'cameras' {cam_ids} "
                                      f"or camera.calibration ({sorted(calib)})")
            cell = cam_ids.index(c)
            annot2 = _cell(annot["annot2"], cell, 28 * 2, annot_path, "annot2").reshape(-1, 28, 2)
            annot3 = _cell(annot["annot3"], cell, 28 * 3, annot_path, "annot3").reshape(-1, 28, 3)
            video = VIDEO_PATTERN.format(s=s, q=q, c=c)
            n_video, hw = _video_info(self.root / video)
            K = calib[c]
            for i in range(0, len(annot2), self.options.frame_step):
                fid = FrameId(self.name, self.split, f"S{s}-Seq{q}-cam{c}", i, 0, video, src, video_frame=i)
                if i >= n_video:
                    yield fid.reject("missing_image", f"{video} has {n_video} frames, annotation frame {i}")
                    continue
                fit = fits.get(SPIN_IMGNAME.format(s=s, q=q, c=c, k=i + 1))
                yield self._record(fid, hw, annot2[i], annot3[i], MPI_INF_3DHP_28, K, fit)

    def _fits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """SPIN image name -> (pose (24, 3), betas (10,)) for rows with has_smpl."""
        if self.options.smpl_fits is None or not (self.root / self.options.smpl_fits).is_file():
            return {}
        path = self.root / self.options.smpl_fits
        try:
            with np.load(path, allow_pickle=False) as z:
                names, pose, shape, has = z["imgname"], z["pose"], z["shape"], z["has_smpl"]
        except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
            raise AnnotationError(f"{path}: unreadable SMPL fits npz ({e})") from e
        n = len(names)
        if pose.shape != (n, 72) or shape.shape[0] != n or shape.shape[1] < NUM_BETAS or has.shape != (n,):
            raise AnnotationError(f"{path}: fits have shapes pose {pose.shape}, shape {shape.shape}, "
                                  f"has_smpl {has.shape} for {n} names")
        return {str(k): (p.reshape(24, 3), b[:NUM_BETAS]) for k, p, b, h in zip(names, pose, shape, has) if h}

    # ---- test ----------------------------------------------------------------------------
    def _test_sequence(self, t: int, tdir: Path) -> Iterator[PersonFrame | Reject]:
        path = require_file(tdir / "annot_data.mat", "MPI-INF-3DHP test annotation")
        annot2, annot3, valid = _load_test(path)
        src = str(path.relative_to(self.root))
        hw_cache: tuple[int, int] | None = None
        for i in range(len(annot2)):
            image = TEST_IMAGE_PATTERN.format(t=t, k=i + 1)
            fid = FrameId(self.name, self.split, f"TS{t}", i, 0, image, src)
            if not valid[i]:
                yield fid.reject("invalid_frame")
                continue
            if not (self.root / image).is_file():
                yield fid.reject("missing_image", image)
                continue
            hw = hw_cache or image_hw(self.root / image)  # all frames of a sequence share one size
            hw_cache = hw_cache or hw
            yield self._record(fid, hw, annot2[i], annot3[i], MPI_INF_3DHP_17, None, None)

    # ---- one frame -------------------------------------------------------------------------
    def _record(self, fid: FrameId, hw, kp2d, kp3d, joint_set, K, fit) -> PersonFrame | Reject:
        if hw is None:
            return fid.reject("missing_image", fid.image_path)
        ones = np.ones((len(kp2d), 1))
        kp = convert(np.concatenate([kp2d, ones], 1), joint_set, KEYPOINTS_2D)
        kp = visible_in_image(kp, hw) if np.all(np.isfinite(kp)) else kp
        joints = convert(np.concatenate([kp3d * MM_TO_M, ones], 1), joint_set, KEYPOINTS_2D)
        box = box_from_keypoints(np.nan_to_num(kp, nan=0.0))
        if box is None:
            return fid.reject("no_visible_keypoint")
        smpl = {}
        if fit is not None:
            smpl = dict(smpl_pose=fit[0], betas=fit[1], has_smpl=True)
        return finish(fid, hw, box_center=box[0], box_size=box[1], box_expand=SPIN_BOX_EXPAND,
                      synthetic=self.synthetic, intrinsics=K, joints_3d=joints, keypoints_2d=kp, **smpl)


def read_calibration(path: Path) -> dict[int, np.ndarray]:
    """camera id -> (3, 3) intrinsics from a `camera.calibration` file (the `intrinsic`
    line of each `name` block, a row-major 4x4; SPIN `read_calibration`)."""
    out: dict[int, np.ndarray] = {}
    cam = None
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: unreadable camera calibration ({e})") from e
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "name":
            cam = int(parts[1])
        elif parts and parts[0] == "intrinsic":
            if cam is None or len(parts) != 17:
                raise AnnotationError(f"{path}: malformed 'intrinsic' line {line.strip()!r}")
            out[cam] = np.array([float(v) for v in parts[1:]]).reshape(4, 4)[:3, :3]
    if not out:
        raise AnnotationError(f"{path}: no camera blocks found")
    return out


def _numbered(parent: Path, prefix: str) -> list[tuple[int, Path]]:
    """(number, path) of the folders `<prefix><number>` in `parent`, by number."""
    if not parent.is_dir():
        return []
    pat = re.compile(rf"^{prefix}(\d+)$")
    found = [(int(m.group(1)), p) for p in parent.iterdir() if p.is_dir() and (m := pat.match(p.name))]
    return sorted(found)


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        annot = scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes an error naming it
        raise AnnotationError(f"{path}: unreadable annot.mat ({e})") from e
    missing = [k for k in ("annot2", "annot3", "cameras") if k not in annot]
    if missing:
        raise AnnotationError(f"{path}: annot.mat lacks {missing}")
    return annot


def _cell(cells, index: int, width: int, path: Path, field: str) -> np.ndarray:
    arr = np.asarray(np.asarray(cells).reshape(-1)[index], np.float64)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise AnnotationError(f"{path}: field '{field}' cell {index} has shape {arr.shape}, expected (N, {width})")
    return arr


def _video_info(path: Path) -> tuple[int, tuple[int, int] | None]:
    """(frame count, (h, w)) of a video; (0, None) when it is missing or unreadable."""
    import cv2

    if not path.is_file():
        return 0, None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        hw = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    finally:
        cap.release()
    return n, hw


def _load_test(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            annot2 = np.asarray(f["annot2"], np.float64)
            annot3 = np.asarray(f["annot3"], np.float64)
            valid = np.asarray(f["valid_frame"]).reshape(-1).astype(bool)
    except (OSError, KeyError) as e:
        raise AnnotationError(f"{path}: unreadable MPI-INF-3DHP test annotation ({e})") from e
    n = len(valid)
    if annot2.shape != (n, 1, 17, 2) or annot3.shape != (n, 1, 17, 3):
        raise AnnotationError(f"{path}: 'annot2' {annot2.shape} / 'annot3' {annot3.shape} do not match "
                              f"{n} 'valid_frame' entries of 17 joints")
    return annot2[:, 0], annot3[:, 0], valid
