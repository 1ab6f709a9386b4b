"""How an image file becomes pixels and a size: one convention, EXIF orientation ignored.

Every image of the project is decoded here and its size read here, so the size a reader
records (from the header, without decoding) is always the shape of the pixels the shard
pipeline, the figures and the contact sheets crop from, and both are the image as
stored: a JPEG's EXIF `Orientation` tag (0x0112) is not applied.

- Decoding: `cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION` (BGR), as 4D-Humans
  `hmr2/datasets/utils.py::get_example` and CameraHMR `core/datasets/dataset_val.py` /
  `dataset_train.py` / `utils.py` read their training and test images. Plain
  `cv2.IMREAD_COLOR` would rotate EXIF-tagged images (OpenCV applies the tag unless told
  not to, in `imread` and `imdecode` alike), so a 640x480 photo tagged "rotate 90"
  would decode as 480x640 while its labels and header size describe the stored 640x480.
- Size: PIL's `Image.open(path).size` reads the header's frame size, which is the stored
  size (PIL applies the tag only in `ImageOps.exif_transpose`), so it agrees with the
  decode above without decoding the image. `tests/conformance/test_images.py` checks both
  on an EXIF-rotated JPEG.

Videos are not images: `cv2.VideoCapture` decodes them, and the readers size them with the
same capture's properties, so frames and size agree there too.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# 4D-Humans hmr2/datasets/utils.py, CameraHMR core/datasets/dataset_val.py: orientation ignored
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
EXIF_ORIENTATION_TAG = 0x0112  # EXIF 2.3 tag "Orientation": 1 = as stored, 6 / 8 = rotate 90 cw / ccw to display


def decode_image(data: bytes) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR of encoded image bytes as stored (EXIF orientation ignored), or
    None when the bytes are not a decodable image."""
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, DECODE_FLAGS)
    return img if img is not None and img.size else None


def read_image(path: str | Path) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR of an image file as stored (see `decode_image`), or None when
    the file is missing or not a decodable image."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return decode_image(data)


def image_hw(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of an image file as stored, from its header (the shape `read_image`
    returns, without decoding), None if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size  # the stored frame size: PIL does not apply the EXIF orientation here
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return int(h), int(w)
