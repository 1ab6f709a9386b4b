"""Contact sheet: frames of the raw datasets with the readers' 2D keypoints and boxes drawn.

    python -m datasets.synthetic.contact_sheet --raw data/synthetic/raw --out docs/synthetic_contact_sheet.png

Reads every (dataset, split) under `--raw` through `datasets.readers.READERS`, takes the
first `--per` records of each dataset (spread over its splits), crops each to its person
box (widened to the crop aspect) and tiles the crops, labelled, into one PNG. What is drawn
is the readers' output over the decoded image, so the sheet shows both that the synthetic
people are people and that the labels land on them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from datasets.joints import KEYPOINTS_2D
from datasets.record import CROP_HW, PersonFrame
from datasets.readers import READERS, available
from model.geometry import crop_affine, expand_to_aspect, transform_keypoints

BONES = [KEYPOINTS_2D.indices(pair) for pair in (
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
    ("right_hip", "left_hip"), ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("left_elbow", "left_shoulder"), ("right_shoulder", "left_shoulder"),
    ("neck_lsp", "head_top"), ("thorax", "pelvis_mpii"), ("nose", "left_eye"), ("nose", "right_eye"),
    ("left_eye", "left_ear"), ("right_eye", "right_ear"))]


def load_image(root: Path, rec: PersonFrame) -> np.ndarray | None:
    """BGR image of a record (a video frame where `video_frame` >= 0), None if undecodable."""
    import cv2

    from datasets.image_file import read_image

    path = root / rec.image_path
    if rec.video_frame < 0:
        return read_image(path)  # as stored, the frame of the record's box and keypoints
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, rec.video_frame)
        ok, image = cap.read()
    finally:
        cap.release()
    return image if ok else None


def draw_tile(image: np.ndarray, rec: PersonFrame, label: str, mesh: tuple | None = None,
              points: np.ndarray | None = None) -> np.ndarray:
    """The record's person crop with its keypoints and skeleton drawn, labelled.

    mesh: (vertices (V, 3) camera frame, faces (F, 3), K (3, 3) of the original image), a
    body shaded into the crop under the keypoints (`model.render`); points: (24, 3) other
    original-image keypoints + confidence (e.g. a body's projection), drawn as white
    crosses joined by a magenta line to the record's keypoint of the same joint."""
    import cv2

    from model.geometry import affine_intrinsics

    h, w = CROP_HW
    A = crop_affine(rec.box_center, expand_to_aspect(rec.box_size * 1.1))
    tile = cv2.warpAffine(image, A, (w, h), flags=cv2.INTER_LINEAR, borderValue=(40, 40, 40))
    if mesh is not None:
        from model.render import render_mesh

        vertices, faces, K = mesh
        rgb = render_mesh(np.ascontiguousarray(tile[..., ::-1]), vertices, faces, affine_intrinsics(K, A), alpha=0.6)[0]
        tile = np.ascontiguousarray(rgb[..., ::-1])
    kp = transform_keypoints(rec.keypoints_2d.astype(np.float64), A)
    if points is not None:
        pts = transform_keypoints(np.asarray(points, np.float64), A)
        for (x, y, c), (u, v, d) in zip(pts, kp):
            if c > 0 and d > 0:
                cv2.line(tile, (int(round(x)), int(round(y))), (int(round(u)), int(round(v))), (255, 0, 255), 1,
                         cv2.LINE_AA)
        for x, y, c in pts:
            if c > 0:
                cv2.drawMarker(tile, (int(round(x)), int(round(y))), (255, 255, 255), cv2.MARKER_CROSS, 5, 1)
    for a, b in BONES:
        if kp[a, 2] > 0 and kp[b, 2] > 0:
            cv2.line(tile, tuple(int(round(v)) for v in kp[a, :2]), tuple(int(round(v)) for v in kp[b, :2]),
                     (255, 255, 255), 1, cv2.LINE_AA)
    for j, (x, y, c) in enumerate(kp):
        if c > 0:
            name = KEYPOINTS_2D.names[j]
            color = (0, 0, 255) if name.startswith("right_") else (255, 128, 0) if name.startswith("left_") else (0, 220, 0)
            cv2.circle(tile, (int(round(x)), int(round(y))), 2, color, -1, cv2.LINE_AA)
    half = rec.box_size / 2
    box = np.array([rec.box_center - half, rec.box_center + half])
    (x0, y0), (x1, y1) = np.round(box @ A[:, :2].T + A[:, 2]).astype(int)
    cv2.rectangle(tile, (x0, y0), (x1, y1), (0, 255, 255), 1)
    cv2.rectangle(tile, (0, 0), (w, 14), (0, 0, 0), -1)
    cv2.putText(tile, label, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(raw_root: Path, per: int = 6) -> np.ndarray:
    """(H, W, 3) BGR sheet: one row per dataset, `per` tiles each."""
    from datasets.assets import Assets

    assets = Assets(raw_root=raw_root)
    pairs = available(raw_root)
    rows = []
    for name in READERS:
        splits = [s for d, s in pairs if d == name]
        tiles = []
        for split in splits:
            root = assets.raw(name)
            for rec in READERS[name](root, split).frames():
                if len(tiles) >= per * (splits.index(split) + 1) // len(splits):
                    break
                if not isinstance(rec, PersonFrame):
                    continue
                image = load_image(root, rec)
                if image is not None:
                    tiles.append(draw_tile(image, rec, f"{name} {split} {rec.sequence[-12:]} f{rec.frame} p{rec.person}"))
        if tiles:
            rows.append(tile_grid(tiles[:per], per))
    if not rows:
        raise FileNotFoundError(f"{raw_root}: no dataset with readable records")
    return np.concatenate(rows, 0)


def tile_grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Equal-size tiles in rows of `columns`, the last row padded with black tiles."""
    tiles = tiles + [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.concatenate([np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)], 0)


def save_sheet(sheet: np.ndarray, path: Path) -> None:
    """Write a BGR sheet as a PNG: a 256-colour palette keeps it small (the backgrounds'
    grain defeats deflate)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(sheet[..., ::-1])).quantize(256).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/synthetic/raw", help="raw datasets root (default %(default)s)")
    ap.add_argument("--out", default="docs/synthetic_contact_sheet.png", help="PNG to write (default %(default)s)")
    ap.add_argument("--per", type=int, default=6, help="tiles per dataset (default %(default)s)")
    args = ap.parse_args(argv)
    sheet = contact_sheet(Path(args.raw), args.per)
    save_sheet(sheet, Path(args.out))
    print(f"contact sheet {sheet.shape[1]}x{sheet.shape[0]} px -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
