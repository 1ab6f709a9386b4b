"""MPI-INF-3DHP reader: the raw training layout (videos) and the test set (HDF5 + JPEGs).

What is established, and from where:

Training (`split="train"`), as SPIN `datasets/preprocess/mpi_inf_3dhp.py` (`train_data`) reads it:
- `S<s>/Seq<q>/annot.mat` (scipy): `annot2` / `annot3` are cells with one (N, 28*2) /
  (N, 28*3) array per camera (pixels / camera-frame mm, MPI_INF_3DHP_28 order), `cameras`
  the camera ids of the cells (SPIN indexes the cell by camera id, `annot2[vid_i][0]`);
- `S<s>/Seq<q>/camera.calibration`: a text block per camera (`name`, `sensor`, `size`,
  `animated`, `intrinsic` 16 numbers = row-major 4x4, `extrinsic` 16, `radial`);
- `S<s>/Seq<q>/imageSequence/video_<c>.avi`: SPIN decodes every frame in order and writes
  decoded frame n (counted from 1) as `imageFrames/video_<c>/frame_<n:06d>.jpg`, so SPIN's
  image name `frame_<k:06d>.jpg` is video frame k-1 (0-based). Row i of the camera's
  annotation is video frame i.
- SPIN's frame set: it lists the extracted frames with an unsorted `glob` (SPIN issues
  #114, #115) and takes annotation row i for the i-th listed file; it keeps a frame only
  if all 17 joints it stores (`joints17_idx`) lie inside the 2048x2048 image
  (0 <= x < w, 0 <= y < h), counts the kept frames with one `counter` running over all
  subjects, sequences and cameras (0-2, 4-8), and keeps `counter % 10 == 1`. So the
  selection is "every 10th frame" only up to a phase that shifts at each rejected frame
  and each video boundary (SPIN issue #84: the released names skip 481 -> 619 and
  859 -> 1377 within S1/Seq1/video_0). The released `mpi_inf_3dhp_train.npz`
  (keys `imgname`, `center`, `scale`, `part`, `S`, `openpose`, `pose`, `shape`,
  `has_smpl`) copies `pose` / `shape` / `has_smpl` in row order from
  `mpi-inf-3dhp_mview_fits.npz` (96,507 rows; a rerun of the preprocessing elsewhere gives
  96,719 frames, SPIN issue #84), so its `imgname`s, not a re-derivation, are the frame
  set the fits belong to. The released names increase within a video (issue #84), as a
  listing in name order gives; then the i-th listed file is frame_<i+1>, i.e. annotation
  row i = k-1, which is the row we read. (mmhuman3d `data_converters/mpi_inf_3dhp.py`
  differs: it sorts the listing and checks all 28 joints.)
So, with the fits file present (`Options.smpl_fits`), the frame set is exactly its
`imgname`s, each fit attached to the frame its name gives, labels from `annot.mat` row k-1;
a name that does not parse, repeats, or names a camera / annotation row the sequence lacks
is an AnnotationError; a frame beyond the video's length or of a sequence folder that is
not present is a `missing_image` reject. Without the fits file, the frame set is ours:
cameras `Options.cameras` (SPIN's by default) and every `Options.frame_step`-th frame of
each video by frame index. Joints outside the image keep their 3D position but get 2D
confidence 0.

Test (`split="test"`): `mpi_inf_3dhp_test_set/TS<k>/annot_data.mat` (MATLAB 7.3 = HDF5;
h5py reads MATLAB's 2x17x1xN / 3x17x1xN as `annot2` (N, 1, 17, 2) px and `annot3`,
`univ_annot3` (N, 1, 17, 3) mm; `valid_frame` (N, 1)) and `imageSequence/img_<i+1:06d>.jpg`
(SPIN `test_data`: `'img_' + str(frame_i+1).zfill(6)`).
- 3D joints: `univ_annot3` by default, "the 3D annotations in mm for 17 joints ... scaled
  to the height of the universal skeleton used by Human3.6m" (the test set's README), which
  the official evaluation (`mpii_test_predictions.m`) and SPIN `test_data` score against;
  `annot3` (metric) is the option `test_joints="annot3"` (scoring against it moves SPIN's
  MPJPE by ~14 mm, SPIN issue #80). `univ_annot3` is a rescaled skeleton: only its
  root-relative pose is meaningful, it need not project onto `annot2`.
- `valid_frame` 0: rejected (`invalid_frame`); "invalid frames won't be used for
  evaluation" (README), leaving the 2929 frames of the protocol (akanazawa/hmr issue #45).
- SPIN `test_data` also drops frames with any of the 17 joints outside the image (its size
  read from the image: TS5/TS6 are 1920x1080). The official protocol keeps them, so this is
  the option `drop_joints_outside_image` (default False), rejecting with
  `joint_outside_image`.
The test files hold no intrinsics, so test records have none.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from datasets.joints import KEYPOINTS_2D, MPI_INF_3DHP_17, MPI_INF_3DHP_28, convert
from datasets.reader import (AnnotationError, FrameId, finish, image_hw, load_label_npz, require_file,
                             synthetic_assets, visible_in_image)
from datasets.record import NUM_BETAS, PersonFrame, Reject
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints, tight_box

MM_TO_M = 1e-3
SPIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)  # SPIN preprocess `vid_list`
SPIN_FRAME_STEP = 10  # SPIN preprocess: "because of the dataset size, we only keep every 10th frame"
TEST_DIR = "mpi_inf_3dhp_test_set"
VIDEO_PATTERN = "S{s}/Seq{q}/imageSequence/video_{c}.avi"
# SPIN preprocess: decoded frame n (from 1) of video_<c> is written as frame_%06d.jpg, so k = video frame + 1
SPIN_IMGNAME = "S{s}/Seq{q}/imageFrames/video_{c}/frame_{k:06d}.jpg"
SPIN_IMGNAME_RE = re.compile(r"S(\d+)/Seq(\d+)/imageFrames/video_(\d+)/frame_(\d{6,})\.jpg")
TEST_IMAGE_PATTERN = TEST_DIR + "/TS{t}/imageSequence/img_{k:06d}.jpg"  # SPIN test_data: frame_i + 1
TEST_JOINTS = ("univ_annot3", "annot3")  # test set README / SPIN test_data: univ_annot3 (SPIN issue #80)


@dataclass(frozen=True)
class Options:
    """smpl_fits: SPIN's `mpi_inf_3dhp_train.npz` relative to the root; when it exists it
    fixes the training frame set (its `imgname`s) and each frame's SMPL fit.
    cameras, frame_step: the training frame set without the fits file (camera ids; frames
    i % frame_step == 0 of each video).
    test_joints: the test set's 3D joints, "univ_annot3" (the official protocol) or "annot3".
    drop_joints_outside_image: reject test frames with any of the 17 joints outside the
    image (SPIN `test_data`; the official protocol keeps them)."""

    smpl_fits: str | None = "mpi_inf_3dhp_train.npz"
    cameras: tuple[int, ...] = SPIN_CAMERAS
    frame_step: int = SPIN_FRAME_STEP
    test_joints: str = "univ_annot3"
    drop_joints_outside_image: bool = False


@dataclass(frozen=True)
class Fits:
    """SPIN's fits file, parsed: per (subject, sequence), the rows (camera, video frame, row)
    its image names give, and the per-row SMPL (`has_smpl` false: no fit)."""

    path: Path
    frames: dict[tuple[int, int], list[tuple[int, int, int]]]
    pose: np.ndarray  # (N, 24, 3) axis-angle
    betas: np.ndarray  # (N, NUM_BETAS)
    has_smpl: np.ndarray  # (N,) bool

    def fit(self, row: int) -> dict:
        if not self.has_smpl[row]:
            return {}
        return dict(smpl_pose=self.pose[row], betas=self.betas[row], has_smpl=True)


@dataclass(frozen=True)
class Camera:
    """One training camera of a sequence: its labels, intrinsics and video."""

    annot2: np.ndarray  # (N, 28, 2) px
    annot3: np.ndarray  # (N, 28, 3) mm
    K: np.ndarray  # (3, 3)
    video: str  # relative to the root
    n_video: int  # decodable frames (0: missing)
    hw: tuple[int, int] | None


class MpiInf3dhpReader:
    name = "mpi_inf_3dhp"

    def __init__(self, root: str | Path, split: str, options: Options | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"mpi_inf_3dhp: unknown split {split!r}; known ['test', 'train']")
        self.root, self.split, self.options = Path(root), split, options or Options()
        if self.options.frame_step < 1:
            raise ValueError(f"mpi_inf_3dhp: options.frame_step must be >= 1, got {self.options.frame_step}")
        if self.options.test_joints not in TEST_JOINTS:
            raise ValueError(f"mpi_inf_3dhp: options.test_joints must be one of {TEST_JOINTS}, "
                             f"got {self.options.test_joints!r}")
        self.synthetic = synthetic_assets(self.root) is not None

    @staticmethod
    def splits(root: Path) -> list[str]:
        root = Path(root)
        out = ["train"] if _numbered(root, "S") else []
        return out + (["test"] if _numbered(root / TEST_DIR, "TS") else [])

    def frames(self) -> Iterator[PersonFrame | Reject]:
        if self.split == "test":
            for t, tdir in _numbered(self.root / TEST_DIR, "TS"):
                yield from self._test_sequence(t, tdir)
            return
        fits = self._fits()
        if fits is not None:
            for (s, q), rows in sorted(fits.frames.items()):
                yield from self._fits_sequence(s, q, rows, fits)
            return
        for s, sdir in _numbered(self.root, "S"):
            for q, qdir in _numbered(sdir, "Seq"):
                yield from self._sampled_sequence(s, q, qdir)

    # ---- training ------------------------------------------------------------------------
    def _fits_sequence(self, s: int, q: int, rows: list[tuple[int, int, int]], fits: Fits):
        """The frames SPIN's fits name in S<s>/Seq<q>, each with its fit."""
        qdir = self.root / f"S{s}" / f"Seq{q}"
        src = f"S{s}/Seq{q}/annot.mat"
        if not qdir.is_dir():  # a subject not downloaded: its frames are accounted for
            for c, i, _ in sorted(rows):
                yield self._fid(s, q, c, i, src).reject("missing_image", f"S{s}/Seq{q} is not present")
            return
        cams: dict[int, Camera] = {}
        annot, calib = self._sequence_files(qdir)
        for c, i, row in sorted(rows):
            if c not in cams:
                cams[c] = self._camera(s, q, c, qdir, annot, calib)
            cam = cams[c]
            if i >= len(cam.annot2):
                raise AnnotationError(f"{fits.path}: field 'imgname' row {row} names video_{c} frame {i} "
                                      f"(0-based) of S{s}/Seq{q}, but annot.mat has {len(cam.annot2)} rows "
                                      f"for camera {c}")
            yield self._train_frame(s, q, c, i, src, cam, fits.fit(row))

    def _sampled_sequence(self, s: int, q: int, qdir: Path):
        """Without fits: every frame_step-th frame of each camera's video (ours)."""
        annot, calib = self._sequence_files(qdir)
        src = f"S{s}/Seq{q}/annot.mat"
        for c in self.options.cameras:
            cam = self._camera(s, q, c, qdir, annot, calib)
            for i in range(0, len(cam.annot2), self.options.frame_step):
                yield self._train_frame(s, q, c, i, src, cam, {})

    def _fid(self, s: int, q: int, c: int, i: int, src: str) -> FrameId:
        return FrameId(self.name, self.split, f"S{s}-Seq{q}-cam{c}", i, 0, VIDEO_PATTERN.format(s=s, q=q, c=c),
                       src, video_frame=i)

    def _train_frame(self, s, q, c, i, src, cam: Camera, smpl: dict) -> PersonFrame | Reject:
        fid = self._fid(s, q, c, i, src)
        if i >= cam.n_video:
            return fid.reject("missing_image", f"{cam.video} has {cam.n_video} frames, annotation frame {i}")
        return self._record(fid, cam.hw, cam.annot2[i], cam.annot3[i], MPI_INF_3DHP_28, cam.K, smpl)

    def _sequence_files(self, qdir: Path) -> tuple[dict, dict[int, np.ndarray]]:
        annot = _loadmat(require_file(qdir / "annot.mat", "MPI-INF-3DHP annotation"))
        calib = read_calibration(require_file(qdir / "camera.calibration", "MPI-INF-3DHP camera calibration"))
        return annot, calib

    def _camera(self, s: int, q: int, c: int, qdir: Path, annot: dict, calib: dict[int, np.ndarray]) -> Camera:
        annot_path = qdir / "annot.mat"
        cam_ids = [int(v) for v in np.asarray(annot["cameras"]).reshape(-1)]
        if c not in cam_ids or c not in calib:
            raise AnnotationError(f"{annot_path}: camera {c} is not in 'cameras' {cam_ids} "
                                  f"or camera.calibration ({sorted(calib)})")
        cell = cam_ids.index(c)
        annot2 = _cell(annot["annot2"], cell, 28 * 2, annot_path, "annot2").reshape(-1, 28, 2)
        annot3 = _cell(annot["annot3"], cell, 28 * 3, annot_path, "annot3").reshape(-1, 28, 3)
        if len(annot2) != len(annot3):
            raise AnnotationError(f"{annot_path}: camera {c} has {len(annot2)} 'annot2' rows "
                                  f"but {len(annot3)} 'annot3' rows")
        video = VIDEO_PATTERN.format(s=s, q=q, c=c)
        n_video, hw = _video_info(self.root / video)
        return Camera(annot2, annot3, calib[c], video, n_video, hw)

    def _fits(self) -> Fits | None:
        """SPIN's fits file, or None when it is not configured or not present."""
        if self.options.smpl_fits is None or not (self.root / self.options.smpl_fits).is_file():
            return None
        path = self.root / self.options.smpl_fits
        z = load_label_npz(path, "SPIN MPI-INF-3DHP fits npz", ("imgname", "pose", "shape"),
                           {"imgname": ("N",), "pose": ("N", 72), "shape": ("N", -NUM_BETAS), "has_smpl": ("N",)})
        n = len(z["imgname"])
        # SPIN datasets/base_dataset.py: pose/shape without `has_smpl` means every row has SMPL
        has = z["has_smpl"].astype(bool) if "has_smpl" in z else np.ones(n, bool)
        frames: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        seen: dict[tuple[int, int, int, int], int] = {}
        for row, name in enumerate(z["imgname"]):
            m = SPIN_IMGNAME_RE.fullmatch(str(name))
            if m is None or int(m.group(4)) < 1:
                raise AnnotationError(f"{path}: field 'imgname' row {row} is {str(name)!r}, expected "
                                      f"S<s>/Seq<q>/imageFrames/video_<c>/frame_<k>.jpg with k >= 1 (6 digits)")
            s, q, c, k = (int(g) for g in m.groups())
            if (s, q, c, k) in seen:
                raise AnnotationError(f"{path}: field 'imgname' rows {seen[s, q, c, k]} and {row} "
                                      f"both name {str(name)!r}")
            seen[s, q, c, k] = row
            frames.setdefault((s, q), []).append((c, k - 1, row))  # SPIN: frame_<k> is video frame k-1
        pose = np.asarray(z["pose"], np.float64).reshape(n, 24, 3)
        return Fits(path, frames, pose, np.asarray(z["shape"], np.float64)[:, :NUM_BETAS], has)

    # ---- test ----------------------------------------------------------------------------
    def _test_sequence(self, t: int, tdir: Path) -> Iterator[PersonFrame | Reject]:
        path = require_file(tdir / "annot_data.mat", "MPI-INF-3DHP test annotation")
        annot2, joints3, valid = _load_test(path, self.options.test_joints)
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
            if self.options.drop_joints_outside_image and hw is not None and np.all(np.isfinite(annot2[i])):
                outside = int(len(annot2[i]) - inside_image(annot2[i], hw).sum())
                if outside:  # SPIN test_data: every one of the 17 joints must be inside the image
                    yield fid.reject("joint_outside_image", f"{outside} of {len(annot2[i])} joints")
                    continue
            yield self._record(fid, hw, annot2[i], joints3[i], MPI_INF_3DHP_17, None, {})

    # ---- one frame -------------------------------------------------------------------------
    def _record(self, fid: FrameId, hw, kp2d, kp3d, joint_set, K, smpl: dict) -> PersonFrame | Reject:
        if hw is None:
            return fid.reject("missing_image", fid.image_path)
        ones = np.ones((len(kp2d), 1))
        kp = convert(np.concatenate([kp2d, ones], 1), joint_set, KEYPOINTS_2D)
        kp = visible_in_image(kp, hw) if np.all(np.isfinite(kp)) else kp
        joints = convert(np.concatenate([kp3d * MM_TO_M, ones], 1), joint_set, KEYPOINTS_2D)
        kp_finite = np.nan_to_num(kp, nan=0.0)
        box = box_from_keypoints(kp_finite)
        if box is None:
            return fid.reject("no_visible_keypoint")
        return finish(fid, hw, box_center=box[0], box_size=box[1], box_expand=SPIN_BOX_EXPAND,
                      box_tight=tight_box(kp_finite), synthetic=self.synthetic, intrinsics=K, joints_3d=joints,
                      keypoints_2d=kp, **smpl)


def inside_image(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N,) bool: which (N, 2) pixel points lie inside an image of size hw, as SPIN's
    preprocess tests it (`0 <= x < w and 0 <= y < h`)."""
    h, w = hw
    return (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)


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


def _load_test(path: Path, joints_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annot2 (N, 17, 2) px, `joints_key` (N, 17, 3) mm, valid_frame (N,) bool) of a test sequence."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("annot2", joints_key, "valid_frame") if k not in f]
            if missing:
                raise AnnotationError(f"{path}: MPI-INF-3DHP test annotation lacks {missing}")
            annot2 = np.asarray(f["annot2"], np.float64)
            joints3 = np.asarray(f[joints_key], np.float64)
            valid = np.asarray(f["valid_frame"]).reshape(-1).astype(bool)
    except (OSError, KeyError) as e:
        raise AnnotationError(f"{path}: unreadable MPI-INF-3DHP test annotation ({e})") from e
    n = len(valid)
    if annot2.shape != (n, 1, 17, 2) or joints3.shape != (n, 1, 17, 3):
        raise AnnotationError(f"{path}: 'annot2' {annot2.shape} / '{joints_key}' {joints3.shape} do not match "
                              f"{n} 'valid_frame' entries of 17 joints")
    return annot2[:, 0], joints3[:, 0], valid
