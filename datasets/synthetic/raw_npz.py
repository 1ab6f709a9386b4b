"""Synthetic COCO-, MPII- and Human3.6M-like label `.npz` + images, in the real names
(`datasets.label_npz.SOURCES`) and with the real files' keys (`NpzStyle.keys`): one row per
rendered person (neutral bodies) with `imgname`, `center`, `scale` (SPIN's box: 1.2 x the
larger side of the visible `part` points, for every source; SPIN's real H36M boxes are 0.9 x
the larger side of the mask's box, `h36m.py`, not reproduced), and per source:
- COCO / MPII (CLIFF pseudo-labels): `part` (the projection of the body's KEYPOINTS_2D
  points, confidence 0 where absent or outside the image), `pose` (camera frame),
  `shape`, `has_smpl`, `global_t`, `focal_l` = the image diagonal (CLIFF's focal guess
  for in-the-wild images);
- Human3.6M train (SPIN `datasets/preprocess/h36m_train.py` + the MoSh fits, SPIN issue
  #20): `part`, `S`, `openpose`, `pose`, `shape` and no `has_smpl` (SPIN
  `base_dataset.py` then reads every row as SMPL); the fits are neutral-SMPL fits
  (HMR's `neutrSMPL_H3.6`, akanazawa/hmr issue #91), so no `gender`;
- Human3.6M test `h36m_valid_protocol2.npz` (SPIN `datasets/preprocess/h36m.py`): only
  `imgname`, `center`, `scale`, `S`; subjects 9 and 11, camera 60457274.
H36M `part` and `S` hold only the 17 mocap joints (SPIN writes them to `global_idx`),
each with confidence 1 whether in the image or not; `S` is root-centred on the pelvis
(`S17 -= S17[0]`). Image names keep SPIN's every-5th frame, numbered from 1.
Image sizes are 1/4 of the real ones (COCO ~640x480, MPII 1280x720, H36M 1000x1000).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.joints import H36M_17, KEYPOINTS_2D, OPENPOSE_25, JointSet, convert, mapping
from datasets.label_npz import SOURCES
from datasets.reader import SPIN_SCALE_UNIT, centred_intrinsics, project, visible_in_image
from datasets.record import make_key
from datasets.synthetic.raw_scene import (Truth, angles_to_pose, background, corrupt_jpeg, place, render,
                                          sample_angles, sample_betas, sample_orient, write_jpeg)
from model.geometry import SPIN_BOX_EXPAND, box_from_keypoints

# fault -> row of the train file it is injected at (rows of distinct images; see _rows)
FAULT_ROWS = {"missing_image": 0, "corrupt_jpeg": 1, "nan_label": 2, "box_outside": 3}
# COCO / MPII photos with an EXIF Orientation tag (phone pictures): the first image after the
# faulted ones carries this tag, its pixels and labels stay as stored (`datasets.image_file`)
EXIF_ORIENTATION = {"coco": 6, "mpii": 8}


@dataclass(frozen=True)
class NpzStyle:
    root: str  # dataset root under raw/
    image_name: str  # imgname pattern, formatted with i (1-based frame number), subject and cam
    sizes: tuple[tuple[int, int], ...]  # (h, w) choices
    focal: float | None  # px; None: the image diagonal (CLIFF)
    images: int  # per split at scale 1
    keys: dict[str, tuple[str, ...]]  # split -> the keys of its label file
    mocap: JointSet | None = None  # `part` / `S` hold only these joints, `S` root-centred on the first
    frame_step: int = 1  # image i is frame i * frame_step + 1
    subjects: dict[str, tuple[int, ...]] = field(default_factory=dict)  # split -> subjects, in turn
    cameras: dict[str, int] = field(default_factory=dict)  # split -> camera id


CLIFF_KEYS = ("imgname", "center", "scale", "part", "pose", "shape", "has_smpl", "global_t", "focal_l")
STYLES = {
    "coco": NpzStyle("coco", "train2014/COCO_train2014_{i:012d}.jpg", ((240, 320), (320, 240), (256, 340)), None,
                     6, {"train": CLIFF_KEYS}),
    "mpii": NpzStyle("mpii", "images/{i:09d}.jpg", ((180, 320),), None, 5, {"train": CLIFF_KEYS}),
    # SPIN h36m_train.py / h36m.py: every 5th frame, `'%s_%s.%s_%06d.jpg' % (subject, action, camera, frame + 1)`;
    # protocol 2 keeps camera 60457274 of subjects 9 and 11
    "h36m": NpzStyle("h36m", "images/S{subject}_Synthetic_1.{cam}_{i:06d}.jpg", ((250, 250),), 1145.0 / 4, 5,
                     {"train": ("imgname", "center", "scale", "part", "S", "openpose", "pose", "shape"),
                      "test": ("imgname", "center", "scale", "S")},
                     mocap=H36M_17, frame_step=5, subjects={"train": (1, 5), "test": (9, 11)},
                     cameras={"train": 54138969, "test": 60457274}),
}


def write(raw_root: Path, models, rng: np.random.Generator, scale: int, max_people: int, faults: set[str],
          dataset: str) -> Truth:
    style, source = STYLES[dataset], SOURCES[dataset]
    root = Path(raw_root) / style.root
    truth = Truth()
    faces = models.faces
    for split, label_file in source.files.items():
        rows = []
        n_images = style.images * scale
        for i in range(n_images):
            hw = style.sizes[rng.integers(len(style.sizes))]
            K = centred_intrinsics(style.focal or float(np.hypot(*hw)), hw)
            name = _image_name(style, split, i)
            n_people = 1 if i < len(FAULT_ROWS) else int(rng.integers(1, max_people + 1))
            people = []
            for _ in range(n_people):
                pose = np.concatenate([sample_orient(rng)[None], angles_to_pose(sample_angles(rng))])
                frac = (0.5, 0.85) if n_people == 1 else (0.35, 0.6)
                people.append(place(models, rng, "neutral", pose, sample_betas(rng), K, hw, height_frac=frac))
            image, masks = render(background(rng, hw), people, faces, K, rng)
            write_jpeg(root / name, image,
                       exif_orientation=EXIF_ORIENTATION.get(dataset) if i == len(FAULT_ROWS) else None)
            for p, (person, mask) in enumerate(zip(people, masks)):
                proj = np.concatenate([project(person.keypoints[:, :3], K), person.keypoints[:, 3:]], 1)
                part = visible_in_image(proj, hw)
                part[part[:, 2] == 0, :2] = 0
                center, size = box_from_keypoints(part, SPIN_BOX_EXPAND)
                rows.append(dict(imgname=name, center=center, scale=size[0] / SPIN_SCALE_UNIT, part=part,
                                 pose=person.pose.reshape(-1), shape=person.betas, has_smpl=1.0,
                                 global_t=person.transl, focal_l=K[0, 0], S=person.keypoints,
                                 openpose=convert(part, KEYPOINTS_2D, OPENPOSE_25)))
                if style.mocap is not None:
                    rows[-1].update(_mocap_labels(proj, person.keypoints, style.mocap))
                fault = ""
                if split == "train":
                    fault = next((f for f, r in FAULT_ROWS.items() if r == len(rows) - 1 and f in faults), "")
                sequence = str(Path(name).with_suffix(""))
                truth.add(make_key(dataset, split, sequence, 0, p), person, K, mask, fault)
        _inject(rows, root, faults if split == "train" else set())
        path = root / label_file
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{k: np.array([r[k] for r in rows]) for k in style.keys[split]})
    return truth


def _image_name(style: NpzStyle, split: str, i: int) -> str:
    subjects = style.subjects.get(split, (0,))
    return style.image_name.format(i=i * style.frame_step + 1, subject=subjects[i % len(subjects)],
                                   cam=style.cameras.get(split, 0))


def _mocap_labels(proj: np.ndarray, joints: np.ndarray, mocap: JointSet) -> dict[str, np.ndarray]:
    """SPIN h36m_train.py / h36m.py: `part` and `S` are zero but at the `mocap` joints, which
    all have confidence 1 (in the image or not); `S` is minus the root (`S17 -= S17[0]`).
    proj (24, 3) pixels of the KEYPOINTS_2D joints, joints (24, 4) camera-frame metres."""
    keep = mapping(mocap, KEYPOINTS_2D)[1][:, None]  # (24, 1)
    root = joints[KEYPOINTS_2D.index[mocap.names[0]], :3]
    part = np.where(keep, np.concatenate([proj[:, :2], np.ones((len(proj), 1))], 1), 0.0)
    S = np.where(keep, np.concatenate([joints[:, :3] - root, np.ones((len(joints), 1))], 1), 0.0)
    return dict(part=part, S=S)


def _inject(rows: list[dict], root: Path, faults: set[str]) -> None:
    for f, r in FAULT_ROWS.items():
        if f not in faults:
            continue
        if f == "missing_image":
            (root / rows[r]["imgname"]).unlink()
        elif f == "corrupt_jpeg":
            corrupt_jpeg(root / rows[r]["imgname"])
        elif f == "nan_label":
            rows[r]["pose"] = rows[r]["pose"].copy()
            rows[r]["pose"][7] = np.nan
            rows[r]["S"] = rows[r]["S"] * np.nan
        elif f == "box_outside":
            rows[r]["center"] = np.array([-400.0, -400.0])
