"""Synthetic MPI-INF-3DHP in the real layouts (`datasets.mpi_inf_3dhp`):
- training: `S<s>/Seq<q>/annot.mat` (MATLAB 5 via scipy: `annot2`, `annot3`,
  `univ_annot3` cells of 14 cameras, `frames`, `cameras`), `camera.calibration` (the
  Skeletool text format), `imageSequence/video_<c>.avi` (MJPG) for SPIN's eight cameras
  (the other cells are empty), and SPIN's `mpi_inf_3dhp_train.npz` (`imgname`, `pose`,
  `shape`, `has_smpl`) on SPIN's frame selection (`SpinCounter`): the person is lifted out
  of the top of every view at `LIFTED_FRAMES`, which SPIN's all-joints-in-image check
  drops, and the every-10th counter runs on across videos and subjects, so the kept
  frames shift phase at rejected frames and video boundaries as in the real file;
- test: `mpi_inf_3dhp_test_set/TS<k>/annot_data.mat` (MATLAB 7.3 = HDF5 with MATLAB's
  512-byte header: `annot2` (N, 1, 17, 2), `annot3` / `univ_annot3` (N, 1, 17, 3),
  `valid_frame`, `activity_annotation`) and `imageSequence/img_%06d.jpg`; `univ_annot3`
  is `annot3` scaled by a per-sequence factor (the real one rescales to the universal
  skeleton's height; ours scales about the camera centre, so it still projects onto
  `annot2`, and its root-relative pose, which evaluation uses, differs from `annot3`'s).
One person per sequence seen by a ring of cameras; 2048x2048 studio frames are rendered
at 1/8 (256x256), the outdoor test sequences (TS5, TS6: 1920x1080) at 1/4.
`SYNTHETIC_TRUTH` holds the frames the reader yields by default: the training frames the
fits name, every test frame (3D joints as `univ_annot3` holds them).
The 28 / 17 joints: the KEYPOINTS_2D points of the mesh where the name is shared, else
the nearest SMPL joint (`EXTRA_JOINTS`, ours; the readers do not use those joints).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from datasets.joints import KEYPOINTS_2D, MPI_INF_3DHP_17, MPI_INF_3DHP_28, SMPL_24, JointSet
from datasets.mpi_inf_3dhp import (SPIN_CAMERAS, SPIN_FRAME_STEP, SPIN_IMGNAME, TEST_DIR, TEST_IMAGE_PATTERN,
                                   VIDEO_PATTERN, inside_image)
from datasets.reader import centred_intrinsics, project, smpl_to_camera
from datasets.record import make_key
from datasets.synthetic.raw_scene import (Truth, angles_to_pose, background, corrupt_jpeg, place, pose_people,
                                          render, sample_angles, sample_betas, sample_orient, write_jpeg)

M_TO_MM = 1000.0
NUM_CAMERAS = 14
TRAIN_HW, TEST_HW = (256, 256), {1: (256, 256), 2: (256, 256), 3: (256, 256), 4: (256, 256),
                                  5: (270, 480), 6: (270, 480)}
TRAIN_FOCAL = 1500.0 / 8
TEST_FOCAL = {k: 1500.0 / 8 if hw == (256, 256) else 1500.0 / 4 for k, hw in TEST_HW.items()}
TRAIN_FRAMES = 11
LIFTED_FRAMES = (4, 5)  # frames at which the person is lifted out of the top of every view (ours)
LIFT_M = 2.0  # >= 107 px up at the ring's 2.5-3.5 m: the head top leaves every 256 px view
UNIV_SCALE = (0.9, 1.1)  # range of the test sequences' univ_annot3 / annot3 factor (ours)
TEST_FRAMES = 5
TEST_SEQUENCES = (1, 5)  # one studio, one outdoor sequence per scale unit
FPS = 25
# 3DHP joints that KEYPOINTS_2D lacks, taken from the nearest SMPL joint (ours)
EXTRA_JOINTS = {
    "spine3_3dhp": "spine2", "spine4_3dhp": "spine3", "spine2_3dhp": "spine1", "pelvis_3dhp": "pelvis",
    "neck_3dhp": "neck", "left_clavicle": "left_collar", "right_clavicle": "right_collar",
    "left_hand_3dhp": "left_hand", "right_hand_3dhp": "right_hand", "left_foot_3dhp": "left_foot",
    "left_toe": "left_foot", "right_foot_3dhp": "right_foot", "right_toe": "right_foot",
}
# SPIN train_data checks the 17 joints it stores in `part` (`joints17_idx`): the 3DHP-28 joints KEYPOINTS_2D takes
SPIN_CHECKED_JOINTS = MPI_INF_3DHP_28.indices([n for n in KEYPOINTS_2D.names if n in MPI_INF_3DHP_28.index])
# train: fault -> camera (missing_image: its video is deleted; nan_label: its first kept frame's annot3 is NaN);
# test: fault -> frame of the first test sequence
TRAIN_FAULTS = {"missing_image": SPIN_CAMERAS[-1], "nan_label": SPIN_CAMERAS[0]}
TEST_FAULTS = {"invalid_frame": 0, "missing_image": 1, "corrupt_jpeg": 2, "nan_label": 3}
MATLAB_73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: synthetic HDF5 schema 1.00 ."


def joints_3dhp(person, joint_set: JointSet) -> np.ndarray:
    """(J, 3) camera-frame metres of `joint_set` for a posed body."""
    out = np.zeros((len(joint_set), 3))
    for j, name in enumerate(joint_set.names):
        if name in KEYPOINTS_2D.index and person.keypoints[KEYPOINTS_2D.index[name], 3] > 0:
            out[j] = person.keypoints[KEYPOINTS_2D.index[name], :3]
        else:
            out[j] = person.joints[SMPL_24.index[EXTRA_JOINTS[name]]]
    return out


@dataclass
class SpinCounter:
    """SPIN `train_data`'s frame selection (nkolot/SPIN datasets/preprocess/mpi_inf_3dhp.py):
    a frame counts only if all its checked joints lie inside the image; one counter runs
    over all subjects, sequences and cameras; a counted frame is kept when the count is
    1 mod 10."""

    count: int = 0

    def keep(self, annot2: np.ndarray, hw: tuple[int, int]) -> bool:
        """annot2: (28, 2) px of one frame. SPIN tests 2048x2048, the real videos' size;
        ours are rendered at 1/8, so hw is the rendered size."""
        if not inside_image(annot2[SPIN_CHECKED_JOINTS], hw).all():
            return False
        self.count += 1
        return self.count % SPIN_FRAME_STEP == 1


def write(raw_root: Path, models, rng: np.random.Generator, scale: int, max_people: int, faults: set[str]) -> Truth:
    """One person per sequence, as in MPI-INF-3DHP (`max_people` is not used)."""
    root = Path(raw_root) / "mpi_inf_3dhp"
    truth = Truth()
    fits: dict[str, list] = {"imgname": [], "pose": [], "shape": [], "has_smpl": []}
    counter = SpinCounter()
    for s in range(1, scale + 1):
        _train_sequence(root, s, 1, models, rng, truth, fits, counter, faults if s == 1 else set())
    np.savez(root / "mpi_inf_3dhp_train.npz", imgname=np.array(fits["imgname"]), pose=np.array(fits["pose"]),
             shape=np.array(fits["shape"]), has_smpl=np.array(fits["has_smpl"]))
    for r in range(scale):
        for k, t in enumerate(TEST_SEQUENCES):
            _test_sequence(root, t + r if t + r <= 6 else t, models, rng, truth,
                           faults if (r == 0 and k == 0) else set())
    return truth


def _cameras(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """n world -> camera (R, t) on a ring around the origin, 2.5-3.5 m away, all looking at it."""
    out = []
    for c in range(n):
        yaw = 2 * np.pi * c / n + rng.uniform(-0.2, 0.2)
        R = Rotation.from_euler("xy", [rng.uniform(-0.15, 0.05), yaw]).as_matrix()
        out.append((R, np.array([0.0, rng.uniform(-0.2, 0.2), rng.uniform(2.5, 3.5)])))
    return out


def _train_sequence(root: Path, s: int, q: int, models, rng, truth: Truth, fits: dict, counter: SpinCounter,
                    faults: set[str]) -> None:
    seq_dir = root / f"S{s}" / f"Seq{q}"
    seq_dir.mkdir(parents=True, exist_ok=True)
    K = centred_intrinsics(TRAIN_FOCAL, TRAIN_HW)
    gender = "neutral"  # SPIN's fits are of the neutral SMPL
    betas = sample_betas(rng)
    ang0, ang1 = sample_angles(rng), sample_angles(rng)
    # the world frame is camera 0's before the ring is applied: place the person there
    pose0 = np.concatenate([sample_orient(rng)[None], angles_to_pose(ang0)])
    start = place(models, rng, gender, pose0, betas, K, TRAIN_HW, height_frac=(0.6, 0.75))
    centre = start.transl.copy()
    root_j = (start.joints[0] - start.transl)[None]  # the SMPL root's rest position
    cams = _cameras(rng, NUM_CAMERAS)
    annot2 = [np.zeros((0, 56)) for _ in range(NUM_CAMERAS)]
    annot3 = [np.zeros((0, 84)) for _ in range(NUM_CAMERAS)]
    calib = ["Skeletool Camera Calibration File V1.0"]
    for c, (R, t) in enumerate(cams):
        # world points are centred on the person: X_cam = R (X_w - centre) + t
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = R, (t - R @ centre) * M_TO_MM
        K4 = np.eye(4)
        K4[:3, :3] = K
        calib += [f"name          {c}", "  sensor      10 10", f"  size        {TRAIN_HW[1]} {TRAIN_HW[0]}",
                  "  animated    0", "  intrinsic   " + " ".join(f"{v:.6f}" for v in K4.reshape(-1)),
                  "  extrinsic   " + " ".join(f"{v:.6f}" for v in E.reshape(-1)), "  radial      0"]
    (seq_dir / "camera.calibration").write_text("\n".join(calib) + "\n")
    # world translation per frame (relative to the person's centre): lifted at LIFTED_FRAMES
    lift = np.array([0.0, -LIFT_M, 0.0])  # the world's y points down in every ring camera
    world_transl = [start.transl - centre + (lift if i in LIFTED_FRAMES else 0) for i in range(TRAIN_FRAMES)]
    kept = []  # (camera, frame, person, visible mask) of the frames SPIN keeps, in SPIN's order
    for c in SPIN_CAMERAS:
        R, t = cams[c]
        a2, a3 = [], []
        video = root / VIDEO_PATTERN.format(s=s, q=q, c=c)
        video.parent.mkdir(parents=True, exist_ok=True)
        writer = _video_writer(video, TRAIN_HW)
        poses, transls = [], []
        for w, tr_w in zip(np.linspace(0, 1, TRAIN_FRAMES), world_transl):
            pose_w = np.concatenate([pose0[:1], angles_to_pose((1 - w) * ang0 + w * ang1)])
            go, tr = smpl_to_camera(pose_w[:1], tr_w[None], root_j, R[None], t[None])
            poses.append(np.concatenate([go, pose_w[1:]]))
            transls.append(tr[0])
        for i, person in enumerate(pose_people(models, gender, np.array(poses), betas, np.array(transls))):
            image, masks = render(background(rng, TRAIN_HW), [person], models.faces, K, rng)
            writer.write(np.ascontiguousarray(image[..., ::-1]))  # RGB -> OpenCV's BGR
            j3 = joints_3dhp(person, MPI_INF_3DHP_28)
            a2.append(project(j3, K))
            a3.append(j3 * M_TO_MM)
            if counter.keep(a2[-1], TRAIN_HW):
                kept.append((c, i, person, masks[0]))
        writer.release()
        annot2[c], annot3[c] = np.array(a2).reshape(-1, 56), np.array(a3).reshape(-1, 84)
    nan_frame = next((i for c, i, _, _ in kept if c == TRAIN_FAULTS["nan_label"]), None)
    for c, i, person, mask in kept:
        fault = ("missing_image" if "missing_image" in faults and c == TRAIN_FAULTS["missing_image"] else
                 "nan_label" if "nan_label" in faults and c == TRAIN_FAULTS["nan_label"] and i == nan_frame else "")
        truth.add(make_key("mpi_inf_3dhp", "train", f"S{s}-Seq{q}-cam{c}", i, 0), person, K, mask, fault)
        fits["imgname"].append(SPIN_IMGNAME.format(s=s, q=q, c=c, k=i + 1))  # SPIN: frame_<video frame + 1>
        fits["pose"].append(person.pose.reshape(-1))
        fits["shape"].append(betas)
        fits["has_smpl"].append(1)
    if "nan_label" in faults and nan_frame is not None:
        annot3[TRAIN_FAULTS["nan_label"]][nan_frame] = np.nan
    if "missing_image" in faults:
        (root / VIDEO_PATTERN.format(s=s, q=q, c=TRAIN_FAULTS["missing_image"])).unlink()
    _savemat(seq_dir / "annot.mat", annot2, annot3)


def _savemat(path: Path, annot2: list, annot3: list) -> None:
    import scipy.io

    def cells(arrays):
        out = np.empty((len(arrays), 1), dtype=object)
        for i, a in enumerate(arrays):
            out[i, 0] = a
        return out

    n = max(len(a) for a in annot2)
    scipy.io.savemat(str(path), {"annot2": cells(annot2), "annot3": cells(annot3), "univ_annot3": cells(annot3),
                                 "frames": np.arange(n, dtype=float)[:, None],
                                 "cameras": np.arange(NUM_CAMERAS, dtype=float)[None]})


def _video_writer(path: Path, hw: tuple[int, int]):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (hw[1], hw[0]))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an MJPG .avi here")
    return writer


def _test_sequence(root: Path, t: int, models, rng, truth: Truth, faults: set[str]) -> None:
    hw = TEST_HW[t]
    K = centred_intrinsics(TEST_FOCAL[t], hw)
    gender = ("male", "female")[rng.integers(2)]
    betas = sample_betas(rng)
    ang0, ang1 = sample_angles(rng), sample_angles(rng)
    orient = sample_orient(rng)
    start = place(models, rng, gender, np.concatenate([orient[None], angles_to_pose(ang0)]), betas, K, hw,
                  height_frac=(0.55, 0.75))
    univ_scale = rng.uniform(*UNIV_SCALE)
    a2, a3, valid = [], [], []
    poses = np.stack([np.concatenate([orient[None], angles_to_pose((1 - w) * ang0 + w * ang1)])
                      for w in np.linspace(0, 1, TEST_FRAMES)])
    people = pose_people(models, gender, poses, betas, np.tile(start.transl, (TEST_FRAMES, 1)))
    for i, person in enumerate(people):
        image, masks = render(background(rng, hw), [person], models.faces, K, rng)
        path = root / TEST_IMAGE_PATTERN.format(t=t, k=i + 1)
        write_jpeg(path, image)
        j3 = joints_3dhp(person, MPI_INF_3DHP_17)
        a2.append(project(j3, K))
        a3.append(j3 * M_TO_MM)
        fault = next((f for f, fi in TEST_FAULTS.items() if f in faults and fi == i), "")
        valid.append(0.0 if fault == "invalid_frame" else 1.0)
        if fault == "missing_image":
            path.unlink()
        elif fault == "corrupt_jpeg":
            corrupt_jpeg(path)
        elif fault == "nan_label":
            a3[-1] = a3[-1] * np.nan
        # the reader's 3D joints are univ_annot3's: the body's keypoints scaled about the camera centre
        univ = replace(person, keypoints=np.concatenate([person.keypoints[:, :3] * univ_scale,
                                                         person.keypoints[:, 3:]], 1))
        truth.add(make_key("mpi_inf_3dhp", "test", f"TS{t}", i, 0), univ, K, masks[0], fault)
    a3 = np.array(a3)
    _save_test(root / TEST_DIR / f"TS{t}" / "annot_data.mat", np.array(a2), a3, a3 * univ_scale, np.array(valid))


def _save_test(path: Path, annot2: np.ndarray, annot3: np.ndarray, univ_annot3: np.ndarray,
               valid: np.ndarray) -> None:
    """MATLAB 7.3 layout as h5py reads it: MATLAB's (2, 17, 1, N) arrive as (N, 1, 17, 2)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(valid)
    with h5py.File(path, "w", userblock_size=512) as f:
        f["annot2"] = annot2[:, None]
        f["annot3"] = annot3[:, None]
        f["univ_annot3"] = univ_annot3[:, None]
        f["valid_frame"] = valid[:, None]
        f["activity_annotation"] = np.ones((n, 1))
    with open(path, "r+b") as f:  # MATLAB's text header in the user block
        f.write(MATLAB_73_HEADER.ljust(116, b" "))
