import cv2
import numpy as np
import pytest

from datasets.record import CROP_HW, PersonFrame, make_key
from model.geometry import apply_affine, invert_affine
from pipelines.crop import (CropSettings, crop_frame, decode_image, encode_jpeg, jpeg_bytes_bound,
                            label_reject, transform_record)

IMAGE_HW = (480, 640)
K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])


def make_record(frame=0, person=0, center=(320.0, 240.0), side=200.0, dataset="coco", split="train",
                image_hw=IMAGE_HW, seed=0, **over) -> PersonFrame:
    """A reader-style record (original pixels) whose 2D keypoints are the projection of its
    3D joints through K, spread around `center`."""
    rng = np.random.default_rng(seed)
    t = PersonFrame.empty_targets()
    z = 4.0
    xy = (np.asarray(center) - K[:2, 2]) * z / K[0, 0]
    joints = np.concatenate([xy + rng.uniform(-0.15, 0.15, (24, 2)) * side / 100, np.full((24, 1), z)], 1)
    joints[:, 2] += rng.uniform(-0.1, 0.1, 24)
    uv = joints @ K.T
    kp = np.concatenate([uv[:, :2] / uv[:, 2:], np.ones((24, 1))], 1)
    kp[3, 2] = 0  # one absent joint
    t.update(joints_3d=np.concatenate([joints, np.ones((24, 1))], 1), keypoints_2d=kp,
             smpl_pose=rng.normal(size=(24, 3)) * 0.1, betas=rng.normal(size=10), has_smpl=True)
    base = dict(key=make_key(dataset, split, "seq", frame, person), dataset=dataset, split=split,
                sequence="seq", frame=frame, person=person, image_path=f"images/{frame:04d}.jpg",
                image_hw=np.array(image_hw), box_center=np.array(center, float), box_size=np.array([side, side]),
                box_expand=1.2, synthetic=True, intrinsics=K.copy(), source="labels.npz", **t)
    base.update(over)
    return PersonFrame(**base).validate()


def test_unit_scale_crop_is_an_exact_slice_and_maps_back():
    img = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), np.uint8)
    x0, y0 = 100, 50
    h, w = CROP_HW
    # a (w, h) box centred on pixel-centre coordinates: scale 1, integer shift
    rec = make_record(center=(x0 + (w - 1) / 2, y0 + (h - 1) / 2), side=0, box_size=np.array([w, h], float))
    crop, out = crop_frame(img, rec)
    assert crop.shape == (h, w, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, img[y0:y0 + h, x0:x0 + w])
    np.testing.assert_allclose(out.box_size, [w, h])
    # crop-space keypoints map back to the reader's through the inverse affine
    back = apply_affine(out.keypoints_2d[:, :2].astype(np.float64), invert_affine(out.crop_affine.astype(np.float64)))
    np.testing.assert_allclose(back, rec.keypoints_2d[:, :2], atol=1e-3)
    np.testing.assert_array_equal(out.keypoints_2d[:, 2], rec.keypoints_2d[:, 2])


def test_crop_camera_reprojects_3d_joints_onto_crop_keypoints():
    rec = make_record(center=(400.0, 200.0), side=180.0)
    out = transform_record(rec, CropSettings(expand=1.3))
    uv = out.joints_3d[:, :3].astype(np.float64) @ out.intrinsics.astype(np.float64).T
    np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], out.keypoints_2d[:, :2], atol=1e-2)
    # the stored box is exactly the 4:3 box cropped, expanded, and maps onto the whole crop
    # (to float32's precision: the box is computed in float64 and rounded once)
    np.testing.assert_array_equal(out.box_size, np.float32([180 * 1.3, 180 * 1.3 * 256 / 192]))
    assert out.box_expand == pytest.approx(1.2 * 1.3)
    corners = np.array([out.box_center - out.box_size / 2, out.box_center + out.box_size / 2], np.float64)
    np.testing.assert_allclose(apply_affine(corners, out.crop_affine.astype(np.float64)),
                               [[-0.5, -0.5], [191.5, 255.5]], atol=1e-3)
    np.testing.assert_array_equal(out.smpl_pose, rec.smpl_pose)
    np.testing.assert_array_equal(out.joints_3d, rec.joints_3d)
    assert rec.crop_affine is None  # the reader's record is left as it was
    with pytest.raises(ValueError, match="already cropped"):
        transform_record(out)


def test_area_outside_the_image_is_black():
    img = np.full((*IMAGE_HW, 3), 200, np.uint8)
    crop, _ = crop_frame(img, make_record(center=(10.0, 240.0), side=300.0))
    assert (crop[:, :40] == 0).all() and (crop[:, -40:] == 200).all()


def test_label_rejects():
    assert label_reject(make_record()) is None
    bad = make_record()
    bad.betas = bad.betas.copy()
    bad.betas[2] = np.nan
    assert label_reject(bad) == "non_finite_label: betas"
    assert label_reject(make_record(box_center=np.array([-400.0, 240.0]))).startswith("box_outside_image")
    assert label_reject(make_record(box_center=np.array([320.0, 1000.0]))).startswith("box_outside_image")
    # partly outside is fine
    assert label_reject(make_record(center=(5.0, 240.0), side=300.0)) is None
    unlabelled = make_record()  # no 2D label at all (e.g. SPIN's H36M test file): cropped by its box
    unlabelled.keypoints_2d = unlabelled.keypoints_2d.copy()
    unlabelled.keypoints_2d[:, 2] = 0
    assert label_reject(unlabelled) is None
    far = make_record()  # visible keypoints, but all far outside the crop box
    far.keypoints_2d = far.keypoints_2d.copy()
    far.keypoints_2d[:, :2] += 1000
    assert label_reject(far) == "no_visible_keypoint"


@pytest.mark.parametrize("value", [np.array(["n/a"] * 10), np.array([0.1] * 9 + [None], object)])
def test_a_field_of_text_or_objects_is_a_record_error_not_a_reject(value):
    """A non-numeric label is malformed (a reader bug or a bad file): RecordError naming the
    field, as `validate` says, not a numpy error nor a 'non_finite_label' reject."""
    from datasets.record import RecordError

    rec = make_record()
    rec.betas = value
    with pytest.raises(RecordError, match="'betas'"):
        label_reject(rec)


def test_jpeg_is_deterministic_bounded_and_decodable():
    noise = np.random.default_rng(2).integers(0, 256, (*CROP_HW, 3), np.uint8)
    a, b = encode_jpeg(noise, 100), encode_jpeg(noise.copy(), 100)
    assert a == b and len(a) <= jpeg_bytes_bound(CROP_HW)
    assert len(encode_jpeg(noise, 50)) < len(a)
    smooth = cv2.GaussianBlur(noise, (31, 31), 10)
    back = decode_image(encode_jpeg(smooth, 95))
    assert back.shape == smooth.shape and np.abs(back.astype(int) - smooth).mean() < 2
    assert decode_image(b"") is None and decode_image(b"\xff\xd8 not really a jpeg") is None


def test_settings_are_checked():
    with pytest.raises(ValueError):
        CropSettings(expand=0)
    with pytest.raises(ValueError):
        CropSettings(jpeg_quality=101)


def test_predict_crops_a_tight_box_as_the_shards_crop_the_same_person():
    """`eval.predict`'s crop of a tight person box is the shards' crop of the same person:
    the readers' SPIN box around the keypoints (`box_from_keypoints`), then the crop stage
    (`transform_record`). The issue's box (150, 40, 100, 240) gives a 288 x 384 px crop
    (SPIN: 1.2 x the larger side, square, widened to 4:3); predict used to widen 1.2 x
    (w, h) to 4:3, a 216 x 288 px crop."""
    from eval.predict import crop_for_box
    from model.geometry import box_from_keypoints

    x, y, w, h = 150.0, 40.0, 100.0, 240.0
    kp = np.c_[np.random.default_rng(0).uniform([x, y], [x + w, y + h], (24, 2)), np.ones(24)]
    kp[0, :2], kp[1, :2] = (x, y), (x + w, y + h)  # the tight box's corners
    center, size = box_from_keypoints(kp)
    shard = transform_record(make_record(center=tuple(center), box_size=size, keypoints_2d=kp))
    image = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), np.uint8)
    crop, A = crop_for_box(image, (x, y, w, h))
    np.testing.assert_allclose(A, shard.crop_affine, rtol=1e-6, atol=1e-4)
    shard_crop = crop_frame(image, make_record(center=tuple(center), box_size=size, keypoints_2d=kp))[0]
    assert np.abs(crop.astype(int) - shard_crop).max() <= 1  # the shards warp with their float32 affine
    # the crop spans 288 x 384 px about the box centre (200, 160)
    corners = apply_affine(np.array([[-0.5, -0.5], [191.5, 255.5]]), invert_affine(A))
    np.testing.assert_allclose(corners, [[200 - 144, 160 - 192], [200 + 144, 160 + 192]], atol=1e-9)


def _unlabelled(center, box_size, **over):
    """A record with no 2D label (the box alone decides) and the 4:3 box `box_size`."""
    rec = make_record(center=center, box_size=np.array(box_size, float), **over)
    rec.keypoints_2d = rec.keypoints_2d.copy()
    rec.keypoints_2d[:, 2] = 0
    return rec


# The image spans [-0.5, W - 0.5] x [-0.5, H - 0.5] (pixel centres at integers): a crop box
# touching it from outside is rejected, one overlapping it by 0.25 px is kept.
BOX = (30.0, 40.0)  # (w, h), already 4:3: the crop box itself
W_IMG, H_IMG = IMAGE_HW[1], IMAGE_HW[0]


@pytest.mark.parametrize("center, kept", [
    ((-15.5, 240.0), False), ((-15.25, 240.0), True),  # left: hi x = -0.5 / -0.25
    ((320.0, -20.5), False), ((320.0, -20.25), True),  # top: hi y = -0.5 / -0.25
    ((W_IMG - 0.5 + 15, 240.0), False), ((W_IMG - 0.75 + 15, 240.0), True),  # right: lo x = W - 0.5 / W - 0.75
    ((320.0, H_IMG - 0.5 + 20), False), ((320.0, H_IMG - 0.75 + 20), True),  # bottom: lo y = H - 0.5 / H - 0.75
])
def test_a_box_touching_the_image_from_outside_is_rejected(center, kept):
    reason = label_reject(_unlabelled(center, BOX))
    assert (reason is None) == kept, reason
    if not kept:
        assert reason.startswith("box_outside_image: box [")


def test_the_box_outside_reason_names_box_and_image():
    reason = label_reject(_unlabelled((-15.57, 240.0), BOX))
    assert reason == "box_outside_image: box [-30.6, 220.0]..[-0.6, 260.0] vs image 640x480"


@pytest.mark.parametrize("edge, kept", [
    ((-0.5, 127.5), True), ((-0.6, 127.5), False), ((191.5, 127.5), True), ((191.6, 127.5), False),
    ((95.5, -0.5), True), ((95.5, -0.6), False), ((95.5, 255.5), True), ((95.5, 255.6), False)])
def test_one_labelled_keypoint_on_the_crop_edge_keeps_the_frame(edge, kept):
    """Crop pixels span [-0.5, 191.5] x [-0.5, 255.5]: a frame whose one labelled keypoint
    lies on that edge is kept, 0.1 px beyond it rejected; unlabelled keypoints inside the
    crop do not count."""
    x0, y0 = 100, 50  # a unit-scale crop: crop pixels = original pixels - (x0, y0)
    h, w = CROP_HW
    rec = make_record(center=(x0 + (w - 1) / 2, y0 + (h - 1) / 2), box_size=np.array([w, h], float))
    kp = np.zeros((24, 3))
    kp[:, :2] = (x0 + 90, y0 + 120)  # unlabelled, inside
    kp[5] = (x0 + edge[0], y0 + edge[1], 1.0)
    rec.keypoints_2d = kp
    assert (label_reject(rec) is None) == kept


def test_another_crop_size_is_made_with_its_own_aspect_and_scale():
    """A 64 x 64 crop: the box widened to 1:1 (not 4:3), warped onto 64 x 64 pixels; a
    keypoint on the box's right part is inside that crop."""
    settings = CropSettings(crop_hw=(64, 64))
    rec = make_record(center=(320.0, 240.0), side=200.0)
    rec.keypoints_2d = rec.keypoints_2d.copy()
    rec.keypoints_2d[:, 2] = 0
    rec.keypoints_2d[0] = (410.0, 240.0, 1.0)  # 90 px right of the centre: crop x = 31.5 + 90 * 64 / 200
    assert label_reject(rec, settings) is None
    # 110 px above the image: a square 200 px box ends 10 px above it (a 4:3 one would reach in)
    assert label_reject(_unlabelled((320.0, -110.0), (200.0, 200.0)), settings).startswith("box_outside_image")
    img = np.random.default_rng(1).integers(0, 256, (*IMAGE_HW, 3), np.uint8)
    crop, out = crop_frame(img, rec, settings)
    assert crop.shape == (64, 64, 3)
    np.testing.assert_allclose(out.box_size, [200, 200])
    np.testing.assert_allclose(out.keypoints_2d[0, :2], [31.5 + 90 * 64 / 200, 31.5], atol=1e-4)
    corners = apply_affine(np.array([[-0.5, -0.5], [63.5, 63.5]]), invert_affine(out.crop_affine.astype(np.float64)))
    np.testing.assert_allclose(corners, [[220, 140], [420, 340]], atol=1e-3)


def test_warp_takes_an_integer_affine():
    """A (2, 3) affine written as integers (a whole-pixel shift) is an affine like any other:
    crop pixel (x, y) is original pixel (x + 7, y + 3)."""
    from pipelines.crop import warp

    img = np.random.default_rng(3).integers(0, 256, (*IMAGE_HW, 3), np.uint8)
    crop = warp(img, [[1, 0, -7], [0, 1, -3]])
    np.testing.assert_array_equal(crop, img[3:3 + CROP_HW[0], 7:7 + CROP_HW[1]])


def test_cropped_records_hold_float32_and_may_lack_intrinsics():
    out = transform_record(make_record())
    for name in ("crop_affine", "keypoints_2d", "intrinsics", "box_center", "box_size"):
        assert getattr(out, name).dtype == np.float32, name
    bare = transform_record(make_record(intrinsics=None))
    assert bare.intrinsics is None and bare.crop_affine.dtype == np.float32
    with pytest.raises(ValueError, match="already cropped"):
        transform_record(out)


def test_jpeg_is_baseline_with_the_standard_huffman_tables():
    """What `jpeg_bytes_bound` assumes: a baseline frame (SOF0, not progressive) and the
    standard tables of JPEG Annex K (12 + 162 DC/AC symbols for luma and for chroma), not
    optimised ones."""
    data = encode_jpeg(np.random.default_rng(3).integers(0, 256, (*CROP_HW, 3), np.uint8))
    markers, symbols, i = [], 0, 2
    while data[i] == 0xFF and data[i + 1] != 0xDA:  # up to the start of scan
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        markers.append(marker)
        if marker == 0xC4:  # DHT: (class/id, 16 code counts, symbols) per table
            j = i + 4
            while j < i + 2 + length:
                n = sum(data[j + 1:j + 17])
                symbols += n
                j += 17 + n
        i += 2 + length
    assert 0xC0 in markers and 0xC2 not in markers
    assert symbols == 2 * (12 + 162)


def test_jpeg_bound_follows_its_rule():
    """ceil(h/16) x ceil(w/16) MCUs x 6 blocks x 2 x 216 bytes + 2048 (the docstring's rule)."""
    assert jpeg_bytes_bound((256, 192)) == 16 * 12 * 6 * 2 * 216 + 2048 == 499712
    assert jpeg_bytes_bound((17, 33)) == 2 * 3 * 6 * 2 * 216 + 2048


def test_jpeg_quality_bounds():
    assert CropSettings(jpeg_quality=1).jpeg_quality == 1 and CropSettings(jpeg_quality=100).jpeg_quality == 100
    with pytest.raises(ValueError, match="JPEG quality"):
        CropSettings(jpeg_quality=0)
