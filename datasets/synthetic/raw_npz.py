"""Synthetic COCO-, MPII- and Human3.6M-like label `.npz` + images, in the real names
(`datasets.label_npz.SOURCES`): one row per rendered person with `imgname`, `center`,
`scale` (SPIN's box: 1.2 x the larger side of the visible `part` points), `part` (the
projection of the body's KEYPOINTS_2D points, confidence 0 where absent or outside the
image), `pose` (camera frame), `shape`, `has_smpl`, and per source:
- COCO / MPII (CLIFF pseudo-labels): `global_t`, `focal_l` = the image diagonal (CLIFF's
  focal guess for in-the-wild images), neutral bodies;
- Human3.6M (SPIN labels): gendered bodies (`gender`), `S` (24, 4) camera-frame joints, no
  translation; its test file holds only `S` and `part` (no SMPL), as SPIN's.
Image sizes are 1/4 of the real ones (COCO ~640x480, MPII 1280x720, H36M 1000x1000).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    image_name: str  # imgname pattern, formatted with i (image index) and split
    sizes: tuple[tuple[int, int], ...]  # (h, w) choices
    focal: float | None  # px; None: the image diagonal (CLIFF)
    gendered: bool
    cliff: bool  # CLIFF keys global_t / focal_l; else SPIN's S
    images: int  # per split at scale 1


STYLES = {
    "coco": NpzStyle("coco", "train2014/COCO_train2014_{i:012d}.jpg", ((240, 320), (320, 240), (256, 340)), None,
                     False, True, 6),
    "mpii": NpzStyle("mpii", "images/{i:09d}.jpg", ((180, 320),), None, False, True, 5),
    "h36m": NpzStyle("h36m", "images/S{subject}_Synthetic_1.{cam}_{i:06d}.jpg", ((250, 250),), 1145.0 / 4, True,
                     False, 5),
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
            name = style.image_name.format(i=i + 1, subject=1 + i % 2 * 4 if split == "train" else 9, cam=54138969)
            n_people = 1 if i < len(FAULT_ROWS) else int(rng.integers(1, max_people + 1))
            people = []
            for _ in range(n_people):
                gender = ("male", "female")[rng.integers(2)] if style.gendered else "neutral"
                pose = np.concatenate([sample_orient(rng)[None], angles_to_pose(sample_angles(rng))])
                frac = (0.5, 0.85) if n_people == 1 else (0.35, 0.6)
                people.append(place(models, rng, gender, pose, sample_betas(rng), K, hw, height_frac=frac))
            image, masks = render(background(rng, hw), people, faces, K, rng)
            write_jpeg(root / name, image,
                       exif_orientation=EXIF_ORIENTATION.get(dataset) if i == len(FAULT_ROWS) else None)
            for p, (person, mask) in enumerate(zip(people, masks)):
                part = visible_in_image(np.concatenate([project(person.keypoints[:, :3], K),
                                                        person.keypoints[:, 3:]], 1), hw)
                part[part[:, 2] == 0, :2] = 0
                center, size = box_from_keypoints(part, SPIN_BOX_EXPAND)
                rows.append(dict(imgname=name, center=center, scale=size[0] / SPIN_SCALE_UNIT, part=part,
                                 pose=person.pose.reshape(-1), shape=person.betas, global_t=person.transl,
                                 focal_l=K[0, 0], gender=person.gender[0], S=person.keypoints))
                fault = ""
                if split == "train":
                    fault = next((f for f, r in FAULT_ROWS.items() if r == len(rows) - 1 and f in faults), "")
                sequence = str(Path(name).with_suffix(""))
                truth.add(make_key(dataset, split, sequence, 0, p), person, K, mask, fault)
        _inject(rows, root, faults if split == "train" else set())
        _save(root / label_file, rows, style, has_smpl=split == "train" or style.cliff)
    return truth


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


def _save(path: Path, rows: list[dict], style: NpzStyle, has_smpl: bool) -> None:
    cols = {k: np.array([r[k] for r in rows]) for k in ("imgname", "center", "scale", "part")}
    if has_smpl:
        cols.update(pose=np.array([r["pose"] for r in rows]), shape=np.array([r["shape"] for r in rows]),
                    has_smpl=np.ones(len(rows)))
    if style.cliff:
        cols.update(global_t=np.array([r["global_t"] for r in rows]), focal_l=np.array([r["focal_l"] for r in rows]))
    else:
        cols["S"] = np.array([r["S"] for r in rows])
    if style.gendered:
        cols["gender"] = np.array([r["gender"] for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **cols)
