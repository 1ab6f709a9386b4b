"""Crop one person: the 256x192 box around them, the image warped into it, the labels with it.

What holds after `crop_frame` (the shard contract, see `datasets.record`):
- the crop is the 4:3 box (height 256, width 192) centred on the reader's `box_center`,
  of size `expand_to_aspect(box_size * expand)`; that exact box is stored back in
  `box_center` / `box_size`, and `box_expand` is multiplied by `expand`;
- `crop_affine` is the (2, 3) map from original pixels to crop pixels
  (`model.geometry.crop_affine`), so `invert_affine(crop_affine)` maps any crop-space
  prediction back to the original image;
- `keypoints_2d` (confidence kept) and `intrinsics` are in crop pixels; 3D targets are
  untouched (an unrotated crop keeps the camera frame);
- image area outside the original image is black (`PAD_VALUE`).

Expansion: the readers already expand the tight person box by SPIN's 1.2
(`model.geometry.SPIN_BOX_EXPAND`, SPIN `datasets/preprocess/*.py`; HMR2.0 reads the same
SPIN-style boxes), so this stage's extra factor defaults to 1.0: the crops then match
HMR2.0/SPIN. The factor is configurable (`CropSettings.expand`).

Colour: images are decoded with OpenCV, so every array here is BGR (OpenCV's order). The
JPEG bytes are a standard JPEG: PIL decodes them to RGB, `cv2.imdecode` to BGR
(`pipelines.shard_reader.decode_jpeg` returns RGB).
Decoding is `datasets.image_file.decode_image`: the image as stored, EXIF orientation
ignored (`cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION`, as 4D-Humans and CameraHMR
read theirs), the same convention as the readers' header size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.image_file import decode_image  # noqa: F401 - the pipeline's one decode
from datasets.record import CROP_HW, PersonFrame, reject_reason
from model.geometry import (affine_intrinsics, apply_affine, crop_affine,
                            expand_to_aspect, transform_keypoints)

DEFAULT_EXPAND = 1.0  # on top of the readers' SPIN 1.2: together HMR2.0/SPIN's crop
DEFAULT_JPEG_QUALITY = 95
PAD_VALUE = (0, 0, 0)  # BGR of the area outside the original image

# Float fields whose non-finite values reject a frame ('non_finite_label').
_FINITE_FIELDS = ("box_center", "box_size", "intrinsics", "smpl_pose", "betas", "smpl_transl",
                  "joints_3d", "keypoints_2d")


@dataclass(frozen=True)
class CropSettings:
    """How a crop is made. Every field changes the bytes of the shards."""

    crop_hw: tuple[int, int] = CROP_HW
    expand: float = DEFAULT_EXPAND
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if not self.expand > 0:
            raise ValueError(f"crop expand must be positive, got {self.expand}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")


def crop_box(box_center: np.ndarray, box_size: np.ndarray, expand: float = DEFAULT_EXPAND,
             crop_hw: tuple[int, int] = CROP_HW) -> tuple[np.ndarray, np.ndarray]:
    """(center (2,), size (2,) = (w, h)) of the box the crop covers, original pixels, for a
    reader's person box (`box_center`, `box_size`): the box expanded, widened to the crop's
    aspect. The one rule for the shards' crops and `eval.predict`'s."""
    size = expand_to_aspect(np.asarray(box_size, np.float64) * expand, crop_hw[1] / crop_hw[0])
    return np.asarray(box_center, np.float64), size


def label_reject(record: PersonFrame, settings: CropSettings = CropSettings()) -> str | None:
    """The reject reason of a frame decided by its labels alone, or None if it can be cropped.

    Non-finite values reject the frame; so do 2D labels none of which falls inside the crop
    (a record with no 2D label at all is kept: its reader decided that its source has none).
    Any other malformed field raises RecordError (a reader bug or a bad annotation file,
    which stops the dataset).
    """
    for name in _FINITE_FIELDS:
        arr = np.asarray(getattr(record, name))
        # only floats can be non-finite; an absent field (None) or any other dtype is judged
        # by validate() below (text or objects: RecordError naming the field)
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            return reject_reason("non_finite_label", name)
    record.validate()
    center, size = crop_box(record.box_center, record.box_size, settings.expand, settings.crop_hw)
    img_h, img_w = (int(v) for v in record.image_hw)
    lo, hi = center - size / 2, center + size / 2
    # pixel centres are integers, so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]
    if hi[0] <= -0.5 or hi[1] <= -0.5 or lo[0] >= img_w - 0.5 or lo[1] >= img_h - 0.5:
        return reject_reason("box_outside_image", f"box {lo.round(1).tolist()}..{hi.round(1).tolist()} "
                                                  f"vs image {img_w}x{img_h}")
    A = crop_affine(center, size, settings.crop_hw)
    kp = apply_affine(np.asarray(record.keypoints_2d[:, :2], np.float64), A)
    h, w = settings.crop_hw
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= w - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= h - 0.5)
    labelled = record.keypoints_2d[:, 2] > 0
    # a record without any 2D label (a source without them, e.g. SPIN's h36m_valid_protocol2.npz,
    # which its reader passes on) is cropped by its box alone
    if labelled.any() and not np.any(inside & labelled):
        return reject_reason("no_visible_keypoint")
    return None


def transform_record(record: PersonFrame, settings: CropSettings = CropSettings()) -> PersonFrame:
    """The record in crop space (see the module doc); the image is not needed."""
    if record.is_cropped:
        raise ValueError(f"{record.source or record.key}: record is already cropped")
    center, size = crop_box(record.box_center, record.box_size, settings.expand, settings.crop_hw)
    A = crop_affine(center, size, settings.crop_hw)
    K = None if record.intrinsics is None else affine_intrinsics(np.asarray(record.intrinsics, np.float64), A)
    return record.replace(
        crop_affine=A.astype(np.float32),
        keypoints_2d=transform_keypoints(np.asarray(record.keypoints_2d, np.float64), A).astype(np.float32),
        intrinsics=None if K is None else K.astype(np.float32),
        box_center=center.astype(np.float32),
        box_size=size.astype(np.float32),
        box_expand=float(record.box_expand) * settings.expand,
    ).validate()


def warp(image: np.ndarray, A: np.ndarray, crop_hw: tuple[int, int] = CROP_HW) -> np.ndarray:
    """(H, W, 3) uint8 crop of `image` under the (2, 3) affine A; outside area = PAD_VALUE."""
    h, w = crop_hw
    return cv2.warpAffine(image, np.asarray(A, np.float64), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=PAD_VALUE)


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Baseline JPEG, 4:2:0 chroma, standard Huffman tables (deterministic for equal input;
    `jpeg_bytes_bound` relies on these settings)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                           cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
                                           cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed on a {image.shape} image")
    return buf.tobytes()


def jpeg_bytes_bound(crop_hw: tuple[int, int] = CROP_HW) -> int:
    """An upper bound on `encode_jpeg`'s output size for a crop of `crop_hw`, any content.

    Baseline JPEG with the standard Huffman tables codes a coefficient in at most
    16 (code) + 11 (magnitude) bits, 64 per 8x8 block: 216 bytes, doubled for the 0xFF
    byte stuffing; 4:2:0 has 6 blocks per 16x16 MCU; plus headers (< 2 KiB).
    """
    h, w = crop_hw
    mcus = math.ceil(h / 16) * math.ceil(w / 16)
    return mcus * 6 * 2 * 216 + 2048


def crop_frame(image: np.ndarray, record: PersonFrame,
               settings: CropSettings = CropSettings()) -> tuple[np.ndarray, PersonFrame]:
    """(crop (256, 192, 3) uint8 BGR, record in crop space) for one person in `image`."""
    out = transform_record(record, settings)
    return warp(image, out.crop_affine, settings.crop_hw), out
