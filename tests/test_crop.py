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
    np.testing.assert_allclose(out.box_size, [180 * 1.3, 180 * 1.3 * 256 / 192], rtol=1e-6)
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
