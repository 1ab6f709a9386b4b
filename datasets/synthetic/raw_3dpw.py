"""Synthetic 3DPW in the real layout: `3DPW/sequenceFiles/{train,validation,test}/<seq>.pkl`
(pickle protocol 2, the keys `datasets.pw3d` reads) and `3DPW/imageFiles/<seq>/image_%05d.jpg`.

Each sequence: one camera moving slightly, one or two actors walking and moving their
limbs (poses interpolated between two samples), SMPL parameters in a world frame with
`cam_poses` world -> camera. The real files' quirks are written too:
- the 30 Hz arrays (`poses`, `trans`, `poses2d`, `cam_poses`, `campose_valid`) have one row
  per image, images named by that row `i`; `img_frame_ids` (uint16, = 2i) index the 60 Hz
  arrays `poses_60Hz` / `trans_60Hz` (2N rows, the odd ones halfway between images), as in
  3DPW (readme.txt: "an index-array to down-sample 60 Hz 3D poses to corresponding image
  frame ids");
- `poses2d` are OpenPose-like detections of the rendered body's COCO-18 points (OpenPose's
  neck = the shoulders' midpoint): pixel noise, confidences below 1, an undetected point
  (off the image, or a face point missed) all zeros, and some frames with left and right
  swapped (noah-research issue #163: 3DPW's 2D poses are at times misplaced or reordered);
- `campose_valid` uint8 per actor, `sequence` a numpy string, `genders` 'm'/'f'.
Images are 1/4 of 3DPW's 1080x1920 portrait frames, with 3DPW-like intrinsics scaled alike.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from datasets.joints import COCO_18, KEYPOINTS_2D
from datasets.reader import project, visible_in_image
from datasets.record import make_key
from datasets.synthetic.raw_scene import (Truth, angles_to_pose, background, corrupt_jpeg, place, pose_people,
                                          render, sample_angles, sample_betas, sample_orient, write_jpeg)

ROOT = "3DPW"
SPLITS = (("train", "train"), ("validation", "val"), ("test", "test"))  # folder, record split
HW = (480, 270)  # (h, w): 1/4 of 1920 x 1080 portrait
FOCAL = (1961.0 / 4, 1969.0 / 4)  # 3DPW-like fx, fy at 1/4 scale
FRAMES = 5  # per sequence; the test split's first sequence carries the faults
# fault -> frame of the first test sequence it is injected at (actor 0 where per actor)
FAULT_FRAMES = {"invalid_camera_pose": 0, "missing_image": 1, "corrupt_jpeg": 2, "nan_label": 3, "box_outside": 4}
# OpenPose-like detections: pixel noise (1/4 scale), confidence range, how often a frame
# misses one face point, and which frames have every left/right pair swapped
DETECTION_NOISE_PX = 1.0
DETECTION_CONF = (0.3, 0.97)
P_MISSED_FACE_POINT = 0.5
SWAPPED_EVERY = 3  # frames i with i % 3 == 1
FACE_POINTS = COCO_18.indices(["left_eye", "right_eye", "left_ear", "right_ear"])
MIRROR = COCO_18.indices([n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
                          for n in COCO_18.names])


def coco18_points(keypoints: np.ndarray) -> np.ndarray:
    """(N, 24, 4) KEYPOINTS_2D camera points -> (N, 18, 3) COCO-18 points (neck = mid-shoulders)."""
    out = np.zeros(keypoints.shape[:-2] + (len(COCO_18), 3))
    for j, name in enumerate(COCO_18.names):
        if name == "neck_op":
            sh = KEYPOINTS_2D.indices(["left_shoulder", "right_shoulder"])
            out[..., j, :] = keypoints[..., sh, :3].mean(-2)
        else:
            out[..., j, :] = keypoints[..., KEYPOINTS_2D.index[name], :3]
    return out


def write(raw_root: Path, models, rng: np.random.Generator, scale: int, max_people: int,
          faults: set[str]) -> Truth:
    root = Path(raw_root) / ROOT
    truth = Truth()
    faces = models.faces
    for folder, split in SPLITS:
        for s in range(2 * scale):
            seq = f"synthetic_{folder}_{s:02d}"
            fault_at = {f: i for f, i in FAULT_FRAMES.items() if f in faults} if (split == "test" and s == 0) else {}
            data, people, K, cam = _sequence(models, rng, seq, min(max_people, 1 + int(rng.uniform() < 0.5)))
            n = len(cam)
            for i in range(n):
                image = background(rng, HW)
                image, masks = render(image, [p[i] for p in people], faces, K, rng)
                path = root / "imageFiles" / seq / f"image_{i:05d}.jpg"
                write_jpeg(path, image)
                frame_fault = {f for f, at in fault_at.items() if at == i}
                for a in range(len(people)):
                    fault = next((f for f in sorted(frame_fault) if a == 0 or f in ("missing_image", "corrupt_jpeg")), "")
                    truth.add(make_key("3dpw", split, seq, i, a), people[a][i], K, masks[a], fault)
                if "missing_image" in frame_fault:
                    path.unlink()
                if "corrupt_jpeg" in frame_fault:
                    corrupt_jpeg(path)
            for f, i in fault_at.items():
                if f == "invalid_camera_pose":
                    data["campose_valid"][0][i] = 0
                elif f == "nan_label":
                    data["poses"][0][i, 5] = np.nan
                elif f == "box_outside":
                    data["poses2d"][0][i, 0] += 3 * HW[1]  # every point far right of the image
            out = root / "sequenceFiles" / folder / f"{seq}.pkl"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(pickle.dumps(data, protocol=2))
    return truth


def _sequence(models, rng: np.random.Generator, seq: str, n_actors: int):
    """(pickle dict, people[actor][frame], K, cam_poses) of one sequence."""
    n = FRAMES
    K = np.array([[FOCAL[0], 0, (HW[1] - 1) / 2], [0, FOCAL[1], (HW[0] - 1) / 2], [0, 0, 1]])
    # world -> camera: a random camera orientation that drifts a little over the sequence
    R0 = Rotation.from_euler("yxz", [rng.uniform(-np.pi, np.pi), rng.uniform(-0.1, 0.1), rng.uniform(-0.05, 0.05)])
    t0 = rng.normal(0, 1.0, size=3)
    drift = rng.normal(0, 0.01, size=3)
    cam = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        cam[i, :3, :3] = (Rotation.from_rotvec(drift * i) * R0).as_matrix()
        cam[i, :3, 3] = t0 + drift * i
    people, data = [], {k: [] for k in ("genders", "poses", "betas", "trans", "poses2d", "jointPositions",
                                       "campose_valid", "poses_60Hz", "trans_60Hz")}
    for a in range(n_actors):
        gender = ("male", "female")[rng.integers(2)]
        betas = sample_betas(rng)
        ang0, ang1 = sample_angles(rng, "walk"), sample_angles(rng)
        orient = sample_orient(rng)
        pose0 = np.concatenate([orient[None], angles_to_pose(ang0)])
        first = place(models, rng, gender, pose0, betas, K, HW, height_frac=(0.35, 0.6) if n_actors > 1 else (0.5, 0.8))
        walk = np.append(rng.normal(0, 0.02, size=2), 0.0)  # camera-frame drift per frame
        root = first.joints[0] - first.transl  # the SMPL root's rest position (shape only)
        poses_cam = np.stack([np.concatenate([orient[None], angles_to_pose((1 - w) * ang0 + w * ang1)])
                              for w in np.linspace(0, 1, n)])
        frames = pose_people(models, gender, poses_cam, betas, first.transl + walk * np.arange(n)[:, None])
        poses, trans, p2d, jpos = [], [], [], []
        for i, person in enumerate(frames):
            R, t = cam[i, :3, :3], cam[i, :3, 3]
            # the same body in the world frame (inverse of datasets.reader.smpl_to_camera)
            go_w = Rotation.from_matrix(R.T @ Rotation.from_rotvec(person.pose[0]).as_matrix()).as_rotvec()
            trans.append(R.T @ (person.transl + root - t) - root)
            poses.append(np.concatenate([go_w, person.pose[1:].reshape(-1)]))
            p2d.append(detections(rng, project(coco18_points(person.keypoints), K), swapped=i % SWAPPED_EVERY == 1).T)
            jpos.append(((person.joints - t) @ R).reshape(-1))  # world = R^T (X - t)
        people.append(frames)
        data["genders"].append(gender[0])
        data["poses"].append(np.array(poses))
        data["betas"].append(betas)
        data["trans"].append(np.array(trans))
        data["poses2d"].append(np.array(p2d))
        data["jointPositions"].append(np.array(jpos))
        data["campose_valid"].append(np.ones(n, np.uint8))
        poses_60, trans_60 = at_60hz(data["poses"][-1], data["trans"][-1])
        data["poses_60Hz"].append(poses_60)
        data["trans_60Hz"].append(trans_60)
    data.update(sequence=np.array(seq), cam_poses=cam, cam_intrinsics=K,
                img_frame_ids=(2 * np.arange(n)).astype(np.uint16), synthetic=True)
    return data, people, K, cam


def detections(rng: np.random.Generator, uv: np.ndarray, swapped: bool) -> np.ndarray:
    """(18, 3) OpenPose-like detections of the true COCO-18 pixels `uv` (18, 2): noisy,
    confidence below 1, undetected points (off the image, a missed face point) all zeros,
    left and right swapped when `swapped`."""
    out = np.concatenate([uv + rng.normal(0, DETECTION_NOISE_PX, uv.shape),
                          rng.uniform(*DETECTION_CONF, size=(len(uv), 1))], 1)
    out = visible_in_image(out, HW)
    if rng.uniform() < P_MISSED_FACE_POINT:
        out[rng.choice(FACE_POINTS), 2] = 0
    out[out[:, 2] == 0] = 0
    return out[MIRROR] if swapped else out


def at_60hz(poses: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 60 Hz arrays of (N, 72) poses and (N, 3) translations at 30 Hz: row 2i is image
    i, row 2i + 1 halfway to image i + 1 (rotations by slerp), the last row repeats image N - 1."""
    n = len(poses)
    rot = Rotation.from_rotvec(poses.reshape(-1, 3))  # (N * 24)
    cur, nxt = rot[:-24], rot[24:]
    mid = (cur * Rotation.from_rotvec((cur.inv() * nxt).as_rotvec() / 2)).as_rotvec().reshape(n - 1, 72)
    poses_60 = np.repeat(poses, 2, axis=0)
    poses_60[1:-1:2] = mid
    trans_60 = np.repeat(trans, 2, axis=0)
    trans_60[1:-1:2] = (trans[:-1] + trans[1:]) / 2
    return poses_60, trans_60
