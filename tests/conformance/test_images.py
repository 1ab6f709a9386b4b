"""One image-orientation convention: header size and decoded pixels are the image as stored,
EXIF orientation ignored, as 4D-Humans (`hmr2/datasets/utils.py`: `cv2.imread(img_path,
cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)`) and CameraHMR
(`core/datasets/dataset_val.py`, same flags) decode their images (issue #14, item 9).

The EXIF-rotated JPEGs here are written by PIL (`Image.save(exif=...)`), not by our
generator, and the expected pixels are the array that was saved.
"""
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets.image_file import decode_image, image_hw, read_image

STORED_HW = (48, 80)  # non-square: a 90-degree orientation swaps height and width
EXIF_ORIENTATION = 0x0112  # EXIF 2.3 "Orientation"
REPO = Path(__file__).resolve().parents[2]


def _stored_pixels() -> np.ndarray:
    """(48, 80, 3) RGB: a white block in the stored top-left corner, a mid-grey rest (flat
    8x8-aligned regions, so the JPEG round trip is near exact)."""
    img = np.full((*STORED_HW, 3), 96, np.uint8)
    img[:16, :24] = 255
    return img


def _rotated_jpeg(path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(_stored_pixels()).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as im:  # the tag is really there
        assert im.getexif().get(EXIF_ORIENTATION) == orientation
    return path


def _agrees_with_header(path: Path, decode) -> bool:
    """Header size = decoded shape = the stored pixels (BGR of `_stored_pixels`)."""
    img = decode(path.read_bytes())
    if img is None or tuple(img.shape[:2]) != image_hw(path):
        return False
    return tuple(img.shape[:2]) == STORED_HW and np.abs(img[..., ::-1].astype(int) - _stored_pixels()).max() <= 8


@pytest.mark.parametrize("orientation", [6, 8])
def test_header_size_and_decoded_pixels_are_the_stored_image(tmp_path, orientation):
    path = _rotated_jpeg(tmp_path / f"rot{orientation}.jpg", orientation)
    assert image_hw(path) == STORED_HW  # PIL's header size is the stored size (orientation not applied)
    assert _agrees_with_header(path, decode_image)
    np.testing.assert_array_equal(read_image(path), decode_image(path.read_bytes()))
    # the old decode (cv2.IMREAD_COLOR alone applies the tag) would be caught: rotated, 80x48
    plain = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert plain.shape[:2] == STORED_HW[::-1]
    assert not _agrees_with_header(path, lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_every_decode_site_reads_the_stored_image(tmp_path):
    """The shard pipeline, the shard reader, the figures' original image and the contact
    sheet all see the stored 48x80 image of an EXIF-rotated JPEG."""
    from datasets.synthetic.contact_sheet import load_image
    from eval.evaluate import _original_image
    from pipelines.shard_reader import decode_jpeg
    from pipelines.shards import ImageSource

    path = _rotated_jpeg(tmp_path / "photo.jpg", 6)
    want = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)
    assert ImageSource(str(tmp_path)).read("photo.jpg").shape[:2] == STORED_HW
    np.testing.assert_array_equal(decode_jpeg(path.read_bytes()), want)
    rec = SimpleNamespace(image_path="photo.jpg", video_frame=-1, crop_affine=np.eye(2, 3))  # the fields they read
    np.testing.assert_array_equal(_original_image(rec, tmp_path)[0], want)
    assert load_image(tmp_path, rec).shape[:2] == STORED_HW


def test_no_other_module_decodes_images():
    """Every decode and header read goes through `datasets.image_file` (one convention)."""
    calls = re.compile(r"cv2\.imread\(|cv2\.imdecode\(|Image\.open\(")
    offenders = []
    for folder in ("datasets", "pipelines", "eval", "train", "model"):
        for f in sorted((REPO / folder).rglob("*.py")):
            if f.name == "image_file.py":
                continue
            offenders += [f"{f.relative_to(REPO)}:{i}" for i, line in enumerate(f.read_text().splitlines(), 1)
                          if calls.search(line) and not line.lstrip().startswith("#")]
    assert not offenders, offenders


def test_generator_writes_a_real_exif_tag(tmp_path):
    """`write_jpeg(..., exif_orientation=k)`: a tag PIL reads, pixels left as stored."""
    from datasets.synthetic.raw_scene import write_jpeg

    path = tmp_path / "gen.jpg"
    write_jpeg(path, _stored_pixels(), quality=95, exif_orientation=8)
    with Image.open(path) as im:
        assert im.getexif().get(EXIF_ORIENTATION) == 8 and im.size == STORED_HW[::-1]
    assert _agrees_with_header(path, decode_image)


def test_synthetic_coco_and_mpii_hold_exif_rotated_photos(synthetic_dir):
    """The synthetic tree reproduces the quirk, and every JPEG there follows the convention."""
    tagged = {}
    for dataset in ("coco", "mpii"):
        for f in sorted((synthetic_dir / "raw" / dataset).rglob("*.jpg")):
            with Image.open(f) as im:
                orientation = im.getexif().get(EXIF_ORIENTATION)
            img = read_image(f)
            assert img is not None and img.shape[:2] == image_hw(f), f
            if orientation in (5, 6, 7, 8):
                tagged[dataset] = f
                assert img.shape[0] != img.shape[1], f  # non-square: a rotating decode would be caught
    assert set(tagged) == {"coco", "mpii"}, tagged
