"""3DPW read as its publisher and the reference pipelines read it.

Hand-built sequence files, written as 3DPW ships them (Python 2 protocol-2 pickles: keys
and strings as Python 2 `str`, numpy arrays with their raw buffer as a Python 2 `str`, so
only a latin1 load reads them; the real key names and dtypes). Every expected value is
computed here from the cited rule, never taken from our generator (records hold float32:
tolerances 1e-6 m / rad, 1e-4 px):
- 3DPW readme.txt (copy: zhyjiang/mmhuman3d `tools/depth_generate/readme.txt`): `poses`,
  `trans`, `poses2d`, `cam_poses` are aligned with the images; `img_frame_ids` index the
  60 Hz arrays `poses_60Hz` / `trans_60Hz`; `campose_valid` marks the aligned camera poses.
- SPIN `datasets/preprocess/pw3d.py` (mmhuman3d `data_converters/pw3d.py` alike): image i
  is `imageFiles/<seq>/image_%s.jpg % str(i).zfill(5)` for i in `range(len(poses[0]))`;
  only `campose_valid` frames are kept; betas `[:10]`; global orientation
  `Rodrigues(extrinsics[:3, :3] @ Rodrigues(pose[:3]))`; box from
  `part = poses2d[i][f].T; part = part[part[:, 2] > 0]`: centre of the tight box,
  `scale = 1.2 * max(w, h) / 200`.
- aymenmir1/3dpw-eval `evaluate.py` `apply_camera_transforms`: joints `[X, 1] @ cam_pose.T`,
  i.e. X_cam = R X + t.
- huawei-noah/noah-research issue #163: CLIFF's 2D targets on 3DPW are the ground-truth
  SMPL's joints projected with the camera, not the OpenPose `poses2d`.
- Joint orders: OpenPose `doc/output.md` (COCO-18: nose, neck, r/l shoulder, elbow, wrist,
  r/l hip, knee, ankle, r/l eye, ear), SPIN `constants.py` (the 24 ground-truth joints),
  SMPL's 24 joints (smplx `joint_names.py`).
"""
import pickle
import re
import struct
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from datasets.pw3d import Options, PW3DReader, detections_2d
from datasets.reader import AnnotationError
from datasets.record import PersonFrame, Reject, make_key

SEQ = "courtyard_test_00"
HW = (120, 80)  # portrait (h, w), as 3DPW's 1920 x 1080
K = np.array([[100.0, 0.0, 38.5], [0.0, 110.0, 61.0], [0.0, 0.0, 1.0]])
# SPIN constants.py: the 24 ground-truth joints 0-11 are r ankle, r knee, r hip, l hip, l knee,
# l ankle, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist; their SMPL joints
# (0 pelvis, 1 l hip, 2 r hip, 4 l knee, 5 r knee, 7 l ankle, 8 r ankle, 16 l shoulder,
# 17 r shoulder, 18 l elbow, 19 r elbow, 20 l wrist, 21 r wrist):
SPIN_ROWS_FROM_SMPL = {0: 8, 1: 5, 2: 2, 3: 1, 4: 4, 5: 7, 6: 21, 7: 19, 8: 17, 9: 16, 10: 18, 11: 20}
# SPIN row <- OpenPose COCO-18 row, by the two published orders (SPIN 19-23: nose, l eye, r eye, l ear, r ear)
SPIN_ROWS_FROM_COCO18 = {0: 10, 1: 9, 2: 8, 3: 11, 4: 12, 5: 13, 6: 4, 7: 3, 8: 2, 9: 5, 10: 6, 11: 7,
                         19: 0, 20: 15, 21: 14, 22: 17, 23: 16}
OFF_IMAGE_SMPL_JOINT = 21  # right wrist, put right of the image in the hand-built joints


# ---- Python 2 pickles ----------------------------------------------------------------------
def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle as Python 2 with numpy 1.x writes it: `str` as (SHORT_)BINSTRING,
    an array as `numpy.core.multiarray._reconstruct` + state (1, shape, dtype, fortran, raw
    buffer as a BINSTRING)."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes):
        out.extend((b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b)

    def emit(o):
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, (list, tuple)):
            out.extend(b"](" if isinstance(o, list) else b"(")
            for v in o:
                emit(v)
            out.extend(b"e" if isinstance(o, list) else b"t")
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            order = a.dtype.str[0] if a.dtype.itemsize > 1 else "|"
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            string(b"b")
            out.extend(b"\x87R(")  # _reconstruct(ndarray, (0,), 'b'), then its state
            emit(1)
            emit(tuple(a.shape))
            out.extend(b"cnumpy\ndtype\n")
            string(a.dtype.str[1:].encode())
            emit(0)
            emit(1)
            out.extend(b"\x87R")
            emit((3, order, None, None, None, -1, -1, 0))
            out.extend(b"b")
            emit(False)
            string(a.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


# ---- hand-built sequences ------------------------------------------------------------------
def camera(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-identity world -> camera rotation and translation of frame i (moving camera)."""
    R = Rotation.from_euler("yxz", [0.6 + 0.1 * i, -0.3, 0.2]).as_matrix()
    return R, np.array([0.3, -0.2 + 0.05 * i, 0.5])


def camera_joints(rng) -> np.ndarray:
    """(24, 3) SMPL joints about 3 m ahead, inside the image but for the right wrist."""
    X = np.column_stack([rng.uniform(-0.4, 0.4, 24), rng.uniform(-0.8, 0.8, 24), rng.uniform(2.8, 3.2, 24)])
    X[OFF_IMAGE_SMPL_JOINT, 0] = 3.0  # u = 38.5 + 100 * 3.0 / z > 80
    return X


def detections(rng) -> np.ndarray:
    """(3, 18) OpenPose-style poses2d of one frame: x, y, confidence; the right ear undetected
    (all zeros, as in the real files)."""
    p = np.stack([rng.uniform(20, 60, 18), rng.uniform(15, 100, 18), rng.uniform(0.2, 0.95, 18)])
    p[:, 16] = 0
    return p


def sequence(n=3, genders=("f",), seed=0, n_betas=10, name=SEQ) -> dict:
    """A sequence file's dict with the real keys: world-frame SMPL per actor whose joints land
    inside the image, `cam_poses` world -> camera, 60 Hz arrays with `img_frame_ids` = 2i."""
    rng = np.random.default_rng(seed)
    cams = [camera(i) for i in range(n)]
    d = {k: [] for k in ("genders", "poses", "betas", "trans", "poses2d", "jointPositions", "campose_valid",
                         "poses_60Hz", "trans_60Hz", "betas_clothed")}
    for g in genders:
        poses = rng.normal(0, 0.2, (n, 72))
        poses[:, :3] = rng.normal(0, 1.0, (n, 3))  # world-frame global orientation
        world = np.stack([R.T @ (camera_joints(rng) - t).T for R, t in cams]).transpose(0, 2, 1)  # X = R^T (Xc - t)
        d["genders"].append(g)
        d["poses"].append(poses)
        d["betas"].append(rng.normal(0, 1, n_betas))
        d["trans"].append(rng.normal(0, 0.5, (n, 3)))
        d["poses2d"].append(np.stack([detections(rng) for _ in range(n)]))
        d["jointPositions"].append(world.reshape(n, 72))
        d["campose_valid"].append(np.ones(n, np.uint8))
        d["poses_60Hz"].append(np.repeat(poses, 2, axis=0))
        d["trans_60Hz"].append(np.repeat(d["trans"][-1], 2, axis=0))
        d["betas_clothed"].append(d["betas"][-1].copy())
    cam_poses = np.tile(np.eye(4), (n, 1, 1))
    for i, (R, t) in enumerate(cams):
        cam_poses[i, :3, :3], cam_poses[i, :3, 3] = R, t
    d.update(sequence=name, cam_poses=cam_poses, cam_intrinsics=K.copy(),
             img_frame_ids=(2 * np.arange(n)).astype(np.uint16), texture_maps=[])
    return d


def write_tree(root, data: dict, split_dir="test", images=None) -> None:
    """sequenceFiles/<split_dir>/<seq>.pkl (Python 2 pickle) + imageFiles/<seq>/image_{i:05d}.jpg."""
    seq = data["sequence"]
    (root / "sequenceFiles" / split_dir).mkdir(parents=True, exist_ok=True)
    (root / "sequenceFiles" / split_dir / f"{seq}.pkl").write_bytes(py2_pickle(data))
    (root / "imageFiles" / seq).mkdir(parents=True, exist_ok=True)
    for i in (range(len(data["poses"][0])) if images is None else images):
        Image.new("RGB", HW[::-1], (90, 120, 150)).save(root / "imageFiles" / seq / f"image_{i:05d}.jpg")


def read(root, split="test", **options) -> dict:
    opts = Options(**({"joints_3d": "joint_positions"} | options))
    return {item.key: item for item in PW3DReader(root, split, opts).frames()}


def key(i, a=0, split="test", seq=SEQ):
    return make_key("3dpw", split, seq, i, a)


# ---- the file -------------------------------------------------------------------------------
def test_python2_pickles_read_with_latin1(tmp_path):
    data = sequence()
    blob = py2_pickle(data)
    with pytest.raises(UnicodeDecodeError):  # the array buffers are not ASCII
        pickle.loads(blob)
    assert pickle.loads(blob, encoding="latin1")["sequence"] == SEQ
    write_tree(tmp_path, data)
    items = read(tmp_path)
    assert set(items) == {key(i) for i in range(3)}
    assert all(isinstance(r, PersonFrame) and r.sequence == SEQ for r in items.values())


def test_image_i_is_row_i_of_the_30hz_arrays_not_img_frame_ids(tmp_path):
    """img_frame_ids = 2i index the 60 Hz arrays; image i is image_{i:05d}.jpg and frame i."""
    n = 4
    data = sequence(n)
    assert data["img_frame_ids"].tolist() == [0, 2, 4, 6] and len(data["poses_60Hz"][0]) == 2 * n
    write_tree(tmp_path, data)  # images 0..3 only: naming by img_frame_ids would miss 4 and 6
    items = read(tmp_path)
    assert list(items) == [key(i) for i in range(n)]
    for i in range(n):
        rec = items[key(i)]
        assert isinstance(rec, PersonFrame), rec
        assert rec.frame == i and rec.image_path == f"imageFiles/{SEQ}/image_{i:05d}.jpg"


def test_img_frame_ids_are_checked_against_the_60hz_arrays(tmp_path):
    data = sequence(3)
    data["img_frame_ids"] = np.array([0, 2, 6], np.uint16)  # row 6 of a 6-row 60 Hz array
    write_tree(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"courtyard_test_00\.pkl.*'img_frame_ids' reaches row 6.*'poses_60Hz'"):
        read(tmp_path)
    data["img_frame_ids"] = np.array([0, 2], np.uint16)
    write_tree(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"'img_frame_ids'.*one per image"):
        read(tmp_path)


# ---- camera and targets ---------------------------------------------------------------------
def test_cam_poses_rotate_the_orientation_and_move_the_points(tmp_path):
    """Orientation R R_go (SPIN), points R X + t (3dpw-eval), betas[:10], per frame's camera."""
    data = sequence(3, n_betas=300)
    write_tree(tmp_path, data)
    items = read(tmp_path)
    world = data["jointPositions"][0].reshape(3, 24, 3)
    for i in range(3):
        R, t = data["cam_poses"][i, :3, :3], data["cam_poses"][i, :3, 3]
        assert not np.allclose(R, np.eye(3)) and np.linalg.norm(t) > 0.1
        rec = items[key(i)]
        assert rec.has_smpl and rec.has_transl  # every 3DPW actor has its SMPL and its translation
        R_go = Rotation.from_rotvec(data["poses"][0][i, :3]).as_matrix()
        np.testing.assert_allclose(Rotation.from_rotvec(rec.smpl_pose[0]).as_matrix(), R @ R_go, atol=1e-6)
        np.testing.assert_allclose(rec.smpl_pose[1:].reshape(-1), data["poses"][0][i, 3:], atol=1e-6)
        np.testing.assert_allclose(rec.betas, data["betas"][0][:10], atol=1e-6)
        X = world[i] @ R.T + t  # R X + t
        for row, smpl in SPIN_ROWS_FROM_SMPL.items():
            np.testing.assert_allclose(rec.joints_3d[row], [*X[smpl], 1.0], atol=1e-6)
        # the camera-frame body's root (transl + J0, J0 = pelvis - trans) is the moved pelvis
        J0 = world[i, 0] - data["trans"][0][i]
        np.testing.assert_allclose(rec.smpl_transl + J0, X[0], atol=1e-6)


def test_2d_targets_are_the_gt_joints_projected_with_K(tmp_path):
    """noah-research #163: 2D targets = K X / z of the camera-frame GT joints, not poses2d."""
    data = sequence(3)
    write_tree(tmp_path, data)
    items = read(tmp_path)
    world = data["jointPositions"][0].reshape(3, 24, 3)
    for i in range(3):
        R, t = data["cam_poses"][i, :3, :3], data["cam_poses"][i, :3, 3]
        X = world[i] @ R.T + t
        uvw = X @ K.T
        uv = uvw[:, :2] / uvw[:, 2:]
        rec = items[key(i)]
        np.testing.assert_allclose(rec.intrinsics, K, atol=1e-4)
        for row in range(24):
            smpl = SPIN_ROWS_FROM_SMPL.get(row)
            if smpl is None:  # no such SMPL joint: no target
                assert rec.keypoints_2d[row, 2] == 0, row
            elif smpl == OFF_IMAGE_SMPL_JOINT:  # projected right of the image: no target
                assert uv[smpl, 0] >= HW[1] and rec.keypoints_2d[row, 2] == 0
            else:
                np.testing.assert_allclose(rec.keypoints_2d[row], [*uv[smpl], 1.0], atol=1e-4)


def test_box_is_spins_rule_on_poses2d(tmp_path):
    data = sequence(3)
    write_tree(tmp_path, data)
    items = read(tmp_path)
    for i in range(3):
        part = data["poses2d"][0][i].T
        part = part[part[:, 2] > 0, :]
        bbox = [min(part[:, 0]), min(part[:, 1]), max(part[:, 0]), max(part[:, 1])]
        center = [(bbox[2] + bbox[0]) / 2, (bbox[3] + bbox[1]) / 2]
        scale = 1.2 * max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 200
        rec = items[key(i)]
        np.testing.assert_allclose(rec.box_center, center, atol=1e-4)
        np.testing.assert_allclose(rec.box_size, [scale * 200] * 2, atol=1e-4)
        assert rec.box_expand == 1.2
        np.testing.assert_allclose(rec.box_tight, bbox, atol=1e-4)  # the tight box it grew from


def test_smpl_targets_are_the_world_body_seen_by_the_camera(tmp_path, synthetic_assets):
    """The default reading: the gendered SMPL in the camera frame (record parameters) is the
    world-frame body moved by R X + t; its KEYPOINTS_2D points, projected with K, are the 2D
    targets (confidence 0 where the mesh has no such point or the point is off the image)."""
    from datasets.reader import BodyModels

    n = 2
    data = sequence(n, genders=("m", "f"))
    models = BodyModels(synthetic_assets.root)
    for a in range(2):  # the world-frame body about 3 m in front of each frame's camera
        for i in range(n):
            R, t = data["cam_poses"][i, :3, :3], data["cam_poses"][i, :3, 3]
            data["trans"][a][i] = R.T @ (np.array([0.4 * a - 0.2, 0.0, 3.0]) - t)
    write_tree(tmp_path, data)
    items = read(tmp_path, joints_3d="smpl", assets_root=str(synthetic_assets.root))
    for a, gender in enumerate(("male", "female")):
        betas = np.broadcast_to(data["betas"][a][:10], (n, 10))
        world = models.forward(gender, data["poses"][a].reshape(n, 24, 3), betas, data["trans"][a])
        recs = [items[key(i, a)] for i in range(n)]
        assert all(r.gender == gender for r in recs)
        cam = models.forward(gender, np.stack([r.smpl_pose for r in recs]), betas, np.stack([r.smpl_transl for r in recs]))
        for i, rec in enumerate(recs):
            R, t = data["cam_poses"][i, :3, :3], data["cam_poses"][i, :3, 3]
            np.testing.assert_allclose(cam["vertices"][i], world["vertices"][i] @ R.T + t, atol=1e-6)
            X = world["keypoints"][i, :, :3] @ R.T + t
            on_mesh = world["keypoints"][i, :, 3]  # 0 where the mesh has no such point
            np.testing.assert_array_equal(rec.joints_3d[:, 3], on_mesh)
            np.testing.assert_allclose(rec.joints_3d[on_mesh > 0, :3], X[on_mesh > 0], atol=1e-6)
            uvw = X @ K.T
            uv = uvw[:, :2] / uvw[:, 2:]
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < HW[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < HW[0])
            conf = on_mesh * inside
            assert conf.sum() >= 10
            np.testing.assert_array_equal(rec.keypoints_2d[:, 2], conf)
            np.testing.assert_allclose(rec.keypoints_2d[conf > 0, :2], uv[conf > 0], atol=1e-4)


# ---- frames left out, genders, detections ------------------------------------------------------
def test_campose_valid_false_rejects_that_actor_and_frame(tmp_path):
    data = sequence(3, genders=("f", "m"))
    data["campose_valid"][0][1] = 0
    write_tree(tmp_path, data)
    items = read(tmp_path)
    assert set(items) == {key(i, a) for i in range(3) for a in range(2)}
    assert isinstance(items[key(1, 0)], Reject) and items[key(1, 0)].reason == "invalid_camera_pose"
    others = [items[k] for k in items if k != key(1, 0)]
    assert all(isinstance(r, PersonFrame) for r in others)
    assert [items[key(0, a)].gender for a in range(2)] == ["female", "male"]


def test_an_unknown_gender_code_is_an_error(tmp_path):
    data = sequence(1)
    data["genders"] = ["x"]
    write_tree(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"courtyard_test_00\.pkl.*'genders'\[0\] is 'x'"):
        read(tmp_path)


def test_detections_2d_are_poses2d_by_joint_name(tmp_path):
    """poses2d stays reachable per record key, COCO-18 rows moved to SPIN's rows by name."""
    data = sequence(2, genders=("f", "m"))
    write_tree(tmp_path, data)
    det = detections_2d(tmp_path, "test")
    assert set(det) == {key(i, a) for i in range(2) for a in range(2)}
    for (i, a) in ((0, 0), (1, 1)):
        coco = data["poses2d"][a][i].T  # (18, 3)
        got = det[key(i, a)]
        for row in range(24):
            want = coco[SPIN_ROWS_FROM_COCO18[row]] if row in SPIN_ROWS_FROM_COCO18 else np.zeros(3)
            np.testing.assert_array_equal(got[row], want)


# ---- issue #19: the test split's completeness check ----------------------------------------------
def _scored(root, synthetic: bool):
    """A ProtocolResult of the 3DPW protocol over what the reader made of `root`'s test split."""
    from eval.evaluate import ProtocolResult
    from eval.protocols import THREEDPW

    items = read(root).values()
    recs = [r for r in items if isinstance(r, PersonFrame)]
    rejects = Counter(r.reason.split(":")[0] for r in items if isinstance(r, Reject))
    return ProtocolResult(THREEDPW, keys=[r.key for r in recs], sequences=[r.sequence for r in recs],
                          image_rejected=rejects, rejected=Counter(), synthetic=synthetic)


def test_real_3dpw_test_split_must_be_whole(tmp_path):
    """Real data: 24 sequences (SPIN's 3DPW test split) and frames left out only for an
    invalid camera pose; synthetic data is not held to it."""
    from eval.evaluate import EvalError, check_complete

    short, whole = tmp_path / "short", tmp_path / "whole"
    for s in range(2):
        data = sequence(2, seed=s, name=f"seq_{s:02d}")
        data["campose_valid"][0][0] = 0
        write_tree(short, data)
    with pytest.raises(EvalError, match="2 sequences in the test split, the protocol's split has 24"):
        check_complete(_scored(short, synthetic=False))
    check_complete(_scored(short, synthetic=True))

    for s in range(24):
        data = sequence(2, seed=s, name=f"seq_{s:02d}")
        data["campose_valid"][0][0] = int(s % 5 != 0)
        write_tree(whole, data)
    res = _scored(whole, synthetic=False)
    assert len(set(res.sequences)) == 24 and res.image_rejected == {"invalid_camera_pose": 5}
    check_complete(res)
    res.rejected = Counter({"corrupt_image": 1})  # a frame lost at the features
    with pytest.raises(EvalError, match="left out for 1 corrupt_image; the protocol leaves out only invalid_camera_pose"):
        check_complete(res)
    (whole / "imageFiles" / "seq_03" / "image_00001.jpg").unlink()
    res = _scored(whole, synthetic=False)
    with pytest.raises(EvalError, match="left out for 1 missing_image"):
        check_complete(res)
    res.image_rejected = None
    with pytest.raises(EvalError, match="image shards' manifest of 3dpw/test is needed"):
        check_complete(res)


# ---- issue #19 (mutation testing): malformed fields, points behind the camera -------------------
@pytest.mark.parametrize("field, label, cut", [
    ("poses", "poses[0]", lambda v: v[:, :69]), ("trans", "trans[0]", lambda v: v[:, :2]),
    ("poses2d", "poses2d[0]", lambda v: v[:, :2]), ("jointPositions", "jointPositions[0]", lambda v: v[:, :69]),
    ("cam_poses", "cam_poses", lambda v: v[:, :3]), ("cam_intrinsics", "cam_intrinsics", lambda v: v[:2])])
def test_a_field_of_the_wrong_shape_names_the_file_and_the_field(tmp_path, field, label, cut):
    data = sequence(2)
    if isinstance(data[field], list):  # per actor
        data[field][0] = cut(data[field][0])
    else:
        data[field] = cut(data[field])
    write_tree(tmp_path, data)
    want = rf"{SEQ}\.pkl: field '{re.escape(label)}' has shape"
    with pytest.raises(AnnotationError, match=want):
        read(tmp_path)
    if field == "poses2d":  # the detections alone read it too
        with pytest.raises(AnnotationError, match=want):
            detections_2d(tmp_path, "test")


def test_keypoints_at_or_behind_the_camera_plane_are_not_targets():
    """project_keypoints: K X / z with the point's confidence where z > 0; a point at or behind
    the camera (z <= 0) is not seen, whatever its projection, so its confidence is 0."""
    from datasets.pw3d import project_keypoints

    joints = np.array([[0.2, -0.1, 2.0, 0.7],   # 2 m ahead: (38.5 + 100 * 0.1, 61 - 110 * 0.05)
                       [0.1, 0.1, 0.5, 1.0],    # 0.5 m ahead (closer than 1 m): still seen
                       [0.0, 0.0, 0.0, 1.0],    # at the camera centre
                       [0.1, 0.1, -1.0, 1.0]])  # behind: would project to (28.5, 50), inside the image
    out = project_keypoints(joints, K)
    np.testing.assert_allclose(out[:2, :2], [[48.5, 55.5], [58.5, 83.0]], atol=1e-9)
    np.testing.assert_array_equal(out[:, 2], [0.7, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("field, value, count", [("betas", np.arange(8.0), "3 campose_valid flags / 8 betas"),
                                                 ("betas", 1, "3 campose_valid flags / 1 betas"),
                                                 ("campose_valid", np.ones(2, np.uint8), "2 campose_valid flags / 10"),
                                                 ("campose_valid", 1, "1 campose_valid flags / 10")])
def test_too_few_betas_or_campose_valid_flags_name_the_actor(tmp_path, field, value, count):
    """Each actor needs 10 betas (SPIN: `smpl_betas[i][:10]`) and one `campose_valid` flag per
    image; fewer (a scalar among them) is an error naming the file and the actor."""
    data = sequence(3)
    data[field][0] = value
    write_tree(tmp_path, data)
    with pytest.raises(AnnotationError, match=rf"{SEQ}\.pkl: actor 0 has {count}"):
        read(tmp_path)


@pytest.mark.parametrize("ids", [np.array([0.0, 2.5, 4.0]), np.array([-2, 0, 2], np.int16), np.array([False, True, True])],
                         ids=["non-integral", "negative", "boolean"])
def test_img_frame_ids_must_be_non_negative_integers(tmp_path, ids):
    """3DPW readme: `img_frame_ids` is an index array into the 60 Hz arrays, one per image."""
    data = sequence(3)
    data["img_frame_ids"] = ids
    write_tree(tmp_path, data)
    with pytest.raises(AnnotationError, match=rf"{SEQ}\.pkl: field 'img_frame_ids' .* non-negative integers"):
        read(tmp_path)


def test_img_frame_ids_as_a_column_are_one_per_image(tmp_path):
    """WHAM `threedpw_eval_utils.py` counts the images as `len(img_frame_ids)`: an (N, 1)
    column counts N as well as an (N,) array, and is read as the same ids."""
    data = sequence(3)
    data["img_frame_ids"] = (2 * np.arange(3)).astype(np.uint16)[:, None]
    write_tree(tmp_path, data)
    assert list(read(tmp_path)) == [key(i) for i in range(3)]


def test_sequence_names_as_bytes_or_wrapped_in_an_array_are_the_same_text():
    """`sequence` / `genders` are Python 2 `str`: latin1 text under a latin1 load, bytes under
    encoding='bytes', a 0-d array when a converter wrapped them (SPIN: `str(data['sequence'])`)."""
    from datasets.pw3d import text

    for value in ("courtyard_café_00", b"courtyard_caf\xe9_00", np.array(b"courtyard_caf\xe9_00"),
                  np.array("courtyard_café_00")):
        assert text(value) == "courtyard_café_00", value


def test_records_and_rejects_name_their_sequence_file(tmp_path):
    """Each record or reject names the file it came from, relative to the 3DPW root (the
    manifest's rejects and the record checks' errors point there)."""
    data = sequence(2)
    data["campose_valid"][0][1] = 0
    write_tree(tmp_path, data)
    items = read(tmp_path)
    assert isinstance(items[key(0)], PersonFrame) and isinstance(items[key(1)], Reject)
    assert [items[key(i)].source for i in range(2)] == [f"sequenceFiles/test/{SEQ}.pkl"] * 2


def test_missing_images_and_undetected_labels_are_rejects_that_say_which(tmp_path):
    """A frame whose image is absent (one file, or the sequence's whole image folder) is a
    `missing_image` reject naming the image; an actor whose `poses2d` holds NaN is a
    `non_finite_label` reject naming the field, and the other actor of that image is read."""
    data = sequence(3, genders=("f", "m"))
    data["poses2d"][0][1, 0, 4] = np.nan
    write_tree(tmp_path / "one", data, images=[0, 1])
    items = read(tmp_path / "one")
    assert set(items) == {key(i, a) for i in range(3) for a in range(2)}
    assert items[key(1, 0)].reason == "non_finite_label: poses2d"
    assert isinstance(items[key(1, 1)], PersonFrame) and isinstance(items[key(0, 0)], PersonFrame)
    for a in range(2):
        assert items[key(2, a)].reason == f"missing_image: imageFiles/{SEQ}/image_00002.jpg"
    write_tree(tmp_path / "none", data, images=[])
    (tmp_path / "none" / "imageFiles" / SEQ).rmdir()
    items = read(tmp_path / "none")
    assert set(items) == {key(i, a) for i in range(3) for a in range(2)}
    assert [items[key(i, a)].reason for i in range(3) for a in range(2)] == \
        [f"missing_image: imageFiles/{SEQ}/image_{i:05d}.jpg" for i in range(3) for a in range(2)]


def test_an_actor_without_detections_or_images_without_a_header_are_rejects(tmp_path):
    """No `poses2d` point detected: SPIN's box rule has no box, a `no_visible_keypoint` reject
    (the other actor of the image is read); images whose header does not read: no image size,
    every frame a `missing_image` reject."""
    data = sequence(2, genders=("f", "m"))
    data["poses2d"][0][0] = 0  # actor 0, frame 0: nothing detected (OpenPose writes zeros)
    write_tree(tmp_path, data)
    items = read(tmp_path)
    assert items[key(0, 0)].reason == "no_visible_keypoint: poses2d detects no point (SPIN box rule)"
    assert all(isinstance(items[k], PersonFrame) for k in (key(0, 1), key(1, 0), key(1, 1)))
    write_tree(tmp_path / "headless", sequence(2, genders=("f", "m")))
    for i in range(2):
        (tmp_path / "headless" / "imageFiles" / SEQ / f"image_{i:05d}.jpg").write_bytes(b"not a jpeg")
    items = read(tmp_path / "headless")
    assert [items[key(i, a)].reason for i in range(2) for a in range(2)] == \
        [f"missing_image: imageFiles/{SEQ}/image_{i:05d}.jpg" for i in range(2) for a in range(2)]


def test_a_sequence_without_frames_reads_as_nothing(tmp_path):
    """No image (zero rows in every per-frame array, no `img_frame_ids`): no record, no error."""
    data = sequence(1)
    for k in ("poses", "trans", "poses2d", "jointPositions", "campose_valid", "poses_60Hz", "trans_60Hz"):
        data[k] = [v[:0] for v in data[k]]
    data["cam_poses"], data["img_frame_ids"] = data["cam_poses"][:0], data["img_frame_ids"][:0]
    write_tree(tmp_path, data)
    assert read(tmp_path) == {}


@pytest.mark.parametrize("change", ["no actor", "a list short", "not a list"])
def test_per_actor_lists_that_disagree_or_are_empty_are_named(tmp_path, change):
    """`genders`, `poses`, `betas`, `trans`, `poses2d`, `campose_valid`: one entry per actor."""
    data = sequence(2, genders=("f", "m"))
    if change == "no actor":
        for k in ("genders", "poses", "betas", "trans", "poses2d", "campose_valid"):
            data[k] = []
    elif change == "a list short":
        data["trans"] = data["trans"][:1]
    else:
        data["betas"] = 1
    write_tree(tmp_path, data, images=[])
    with pytest.raises(AnnotationError, match=rf"{SEQ}\.pkl: the per-actor lists disagree"):
        read(tmp_path)


def test_an_unreadable_sequence_file_says_what_it_is(tmp_path):
    write_tree(tmp_path, sequence(1))
    (tmp_path / "sequenceFiles" / "test" / f"{SEQ}.pkl").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(AnnotationError, match=rf"{SEQ}\.pkl: unreadable 3DPW sequence file"):
        read(tmp_path)
