"""The pieces every reader shares (`datasets.reader`), on hand-built inputs: the SYNTHETIC
marker's round trip, `finish`'s checks at their edges, the label npz shape rule, and the
ground-truth bodies' outputs against SMPL's own definition on the synthetic assets."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from datasets.reader import (AnnotationError, BodyModels, FrameId, SyntheticMarker, finish, load_label_npz,
                             marker_text, parse_marker, read_synthetic_marker, write_synthetic_marker)
from datasets.record import PersonFrame, Reject

# ---- the SYNTHETIC marker ----------------------------------------------------------------------


def test_marker_text_names_the_assets_relative_to_a_local_folder(tmp_path):
    """The marker's JSON (datasets/reader.py's format comment): the assets relative to the
    folder, the digest, "synthetic": true, one line ending in a newline."""
    folder, assets = tmp_path / "data" / "raw" / "3DPW", tmp_path / "assets"
    folder.mkdir(parents=True)
    assets.mkdir()
    text = marker_text(folder, assets, "ab12")
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {"assets": os.path.join("..", "..", "..", "assets"), "sha256": "ab12",
                                "synthetic": True}
    # read back from that folder, whatever the working directory
    assert parse_marker(folder, text, "w") == SyntheticMarker(assets.resolve(), "ab12")


def test_marker_text_names_the_assets_absolutely_for_a_uri_folder(tmp_path):
    """No local path is relative to a URI: the marker holds the assets' absolute path, and a
    remote folder's marker is read back to the same assets."""
    assets = tmp_path / "assets"
    assets.mkdir()
    text = marker_text("s3://bucket/shards/3dpw/test", assets, None)
    assert json.loads(text) == {"assets": str(assets.resolve()), "sha256": None, "synthetic": True}
    assert parse_marker("s3://bucket/shards/3dpw/test", text, "w") == SyntheticMarker(assets.resolve(), None)
    # a relative path in a remote marker is taken from the filesystem root, never from the
    # working directory or the URI's own text
    rel = parse_marker("s3://bucket/shards", json.dumps({"assets": "opt/assets"}), "w")
    assert rel == SyntheticMarker(Path("/opt/assets"), None)


def test_written_marker_reads_back_with_its_digest_and_a_bad_one_is_named(tmp_path, synthetic_dir):
    from datasets.assets import assets_digest

    root, assets = tmp_path / "raw" / "RICH", synthetic_dir / "assets"
    root.mkdir(parents=True)
    write_synthetic_marker(root, assets)
    assert json.loads((root / "SYNTHETIC").read_text())["assets"] == os.path.relpath(assets.resolve(), root.resolve())
    digest = assets_digest(assets)
    assert digest != assets_digest(tmp_path / "no_assets")  # the digest of these assets, not of none
    assert read_synthetic_marker(root) == SyntheticMarker(assets.resolve(), digest)
    assert read_synthetic_marker(tmp_path) is None  # real data: no marker
    (root / "SYNTHETIC").write_text("not json")
    with pytest.raises(AnnotationError, match=r"RICH[/\\]SYNTHETIC: unreadable synthetic marker"):
        read_synthetic_marker(root)


# ---- finish ------------------------------------------------------------------------------------
FID = FrameId("3dpw", "test", "seq_00", 4, 0, "imageFiles/seq_00/image_00004.jpg", "sequenceFiles/test/seq_00.pkl")


def _finish(center, keypoint_conf=1.0, **kw):
    kp = np.zeros((24, 3))
    kp[0] = [10.0, 10.0, keypoint_conf]
    return finish(FID, (40, 60), box_center=center, box_size=(20.0, 20.0), box_expand=1.2, synthetic=False,
                  keypoints_2d=kp, **kw)


@pytest.mark.parametrize("center", [(0.0, 0.0), (59.9, 39.9), (0.0, 39.9), (59.9, 0.0)])
def test_a_box_centre_inside_the_image_makes_a_record(center):
    rec = _finish(center)
    assert isinstance(rec, PersonFrame) and rec.box_center.tolist() == pytest.approx(list(center))
    assert rec.image_hw.tolist() == [40, 60]


@pytest.mark.parametrize("center,where", [((60.0, 10.0), "centre (60.0, 10.0) outside 60x40"),
                                          ((10.0, 40.0), "centre (10.0, 40.0) outside 60x40"),
                                          ((-0.1, 10.0), "centre (-0.1, 10.0) outside 60x40"),
                                          ((10.0, -0.1), "centre (10.0, -0.1) outside 60x40")])
def test_a_box_centre_outside_the_image_is_a_reject_saying_where(center, where):
    """0 <= x < w and 0 <= y < h, the pixel rule of `visible_in_image`."""
    r = _finish(center)
    assert isinstance(r, Reject) and r.reason == f"box_outside_image: {where}"


def test_finish_requires_a_visible_keypoint_by_default_and_names_a_non_finite_camera():
    assert _finish((10.0, 10.0), keypoint_conf=0.0).reason == "no_visible_keypoint"
    assert isinstance(_finish((10.0, 10.0), keypoint_conf=0.0, require_keypoints=False), PersonFrame)
    K = np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])
    assert isinstance(_finish((10.0, 10.0), intrinsics=K), PersonFrame)
    K[0, 0] = np.nan
    assert _finish((10.0, 10.0), intrinsics=K).reason == "non_finite_label: intrinsics"
    assert _finish((10.0, 10.0), box_tight=[0, 0, np.inf, 5]).reason == "non_finite_label: box_tight"


# ---- label npz ---------------------------------------------------------------------------------


def test_label_npz_checks_every_present_field_and_refuses_pickles(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez(path, imgname=np.array(["a.jpg", "b.jpg"]), pose=np.zeros((3, 72)))
    # a field absent from the file is skipped, the next one is still checked
    with pytest.raises(AnnotationError, match=r"labels\.npz: field 'pose' has shape \(3, 72\), expected \(2, 72\)"):
        load_label_npz(path, "label npz", ("imgname",), {"betas": ("N", 10), "pose": ("N", 72)})
    # no rows: a field with rows does not match N = 0
    np.savez(path, imgname=np.array([], "<U5"), pose=np.zeros((3, 72)))
    with pytest.raises(AnnotationError, match=r"field 'pose' has shape \(3, 72\), expected \(0, 72\)"):
        load_label_npz(path, "label npz", ("imgname",), {"pose": ("N", 72)})
    # an object array would need pickle: unreadable, not unpickled
    np.savez(path, imgname=np.array(["a.jpg"]), gender=np.array([{"x": 1}], dtype=object))
    with pytest.raises(AnnotationError, match=r"labels\.npz: unreadable label npz"):
        load_label_npz(path, "label npz", ("imgname",), {})


# ---- ground-truth bodies -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bodies(synthetic_dir):
    return BodyModels(synthetic_dir / "assets")


def test_smpl_forward_at_rest_is_the_template_and_its_regressed_joints(bodies, synthetic_assets):
    """Zero pose and shape: SMPL's vertices are v_template + transl and its 24 joints
    J_regressor v_template + transl (smplx `lbs` with identity rotations); the H36M-derived
    keypoints are the H36M regressor's rows of that mesh, with confidence 1."""
    from datasets.joints import H36M_17, KEYPOINTS_FROM_MESH
    from model.body_model import load_h36m_regressor

    smpl = bodies("neutral").smpl
    v = smpl.v_template.double().numpy()
    J = smpl.J_regressor.double().numpy()
    transl = np.array([[0.1, -0.2, 3.0], [0.0, 0.5, 4.0]])
    out = bodies.forward("neutral", np.zeros((2, 24, 3)), np.zeros((2, 10)), transl)
    assert out["vertices"].shape == (2, 6890, 3) and out["joints"].shape == (2, 24, 3)
    np.testing.assert_allclose(out["vertices"], v[None] + transl[:, None], atol=1e-7)
    np.testing.assert_allclose(out["joints"], (J @ v)[None] + transl[:, None], atol=1e-7)
    reg = load_h36m_regressor(synthetic_assets.require("h36m_regressor")).astype(np.float64)
    rows = [(k, H36M_17.index[e[1]]) for k, e in enumerate(KEYPOINTS_FROM_MESH.values())
            if e is not None and e[0] == "h36m17"]
    assert rows, "KEYPOINTS_2D takes some points from the H36M regressor"
    for k, r in rows:
        np.testing.assert_array_equal(out["keypoints"][:, k, 3], [1.0, 1.0])
        np.testing.assert_allclose(out["keypoints"][:, k, :3], (reg[r] @ v)[None] + transl, atol=1e-6)


def test_root_joint_reads_float32_betas_of_a_label_file(bodies):
    """The rest root J0 = J_regressor[0] (v_template + shapedirs betas) (smplx `lbs`), for the
    float32 betas label files store as well as float64."""
    smpl = bodies("male").smpl
    betas = np.array([[0.5, -1.0, 0.25, 0, 0, 0, 0, 0, 0, 2.0]], np.float32)
    shapedirs = smpl.shapedirs.double().numpy()[..., :10]  # (6890, 3, 10)
    v_shaped = smpl.v_template.double().numpy() + shapedirs @ betas[0].astype(np.float64)
    want = smpl.J_regressor.double().numpy()[0] @ v_shaped
    np.testing.assert_allclose(bodies.root_joint("male", betas), want[None], atol=1e-7)
    np.testing.assert_allclose(bodies.root_joint("male", betas.astype(np.float64)), want[None], atol=1e-7)


def test_smplx_bodies_are_loaded_once_and_give_the_mesh_and_its_smpl_joints(bodies, synthetic_assets):
    """RICH's bodies: one SmplxBodies per BodyModels (its models stay loaded); its vertices
    are SMPL-X's and its joints SMPL's J_regressor on the mesh mapped by smplx2smpl."""
    from model.body_model import load_smplx2smpl

    sx = bodies.smplx()
    assert bodies.smplx() is sx
    out = sx.forward("female", np.zeros((1, 24, 3)), np.zeros((1, 10)), np.array([[0.0, 0.0, 2.0]]))
    verts = sx("female").smplx.v_template.double().numpy() + [0.0, 0.0, 2.0]
    assert out["vertices"].shape == (1, 10475, 3)
    np.testing.assert_allclose(out["vertices"][0], verts, atol=1e-6)
    mapped = load_smplx2smpl(synthetic_assets.require("smplx2smpl")).astype(np.float64) @ out["vertices"][0]
    J = bodies("neutral").smpl.J_regressor.double().numpy()
    np.testing.assert_allclose(out["joints"][0], J @ mapped, atol=1e-7)
