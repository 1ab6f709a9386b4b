"""Each reader against the synthetic tree in its real layout: the records hold exactly
what the generator rendered, and every frame is a record or a reject.

The tree is the session fixture `synthetic_dir` (what `make synthetic` writes at test
scale); the faulted tree is the session fixture `synthetic_faulty_raw`.
"""
import numpy as np
import pytest

from datasets.assets import Assets
from datasets.joints import KEYPOINTS_2D
from datasets.reader import project
from datasets.readers import READERS, available
from datasets.record import PersonFrame, Reject
from datasets.synthetic.raw import TRUTH_FILE
from datasets.synthetic.raw_scene import load_truth
from model.geometry import expand_to_aspect

DATASETS = tuple(READERS)
# 3D joints that a label file stores root-centred (SPIN's H36M `S`: minus the pelvis, SPIN h36m.py)
ROOT_CENTRED = {("h36m", "train"): "pelvis_mpii", ("h36m", "test"): "pelvis_mpii"}
# label files without 2D keypoints (SPIN's h36m_valid_protocol2.npz has no `part`)
NO_2D = {("h36m", "test")}


def read_all(raw_root, name):
    root = Assets(raw_root=raw_root).raw(name)
    out = {}
    for split in READERS[name].splits(root):
        for item in READERS[name](root, split).frames():
            assert item.key not in out, f"{name}: key {item.key} read twice"
            out[item.key] = item
    return out, load_truth(root / TRUTH_FILE)


def test_every_dataset_and_split_is_found(synthetic_dir):
    found = available(synthetic_dir / "raw")
    assert {d for d, _ in found} == set(READERS)
    assert ("3dpw", "val") in found and ("mpi_inf_3dhp", "test") in found and ("h36m", "test") in found


@pytest.mark.parametrize("name", DATASETS)
def test_records_hold_what_was_rendered(synthetic_dir, name):
    items, truth = read_all(synthetic_dir / "raw", name)
    assert set(items) == set(truth)
    assert all(isinstance(r, PersonFrame) for r in items.values()), [r for r in items.values() if isinstance(r, Reject)]
    for key, rec in items.items():
        t = truth[key]
        assert rec.synthetic and rec.dataset == name
        if rec.has_smpl:
            np.testing.assert_allclose(rec.smpl_pose, t["pose"], atol=1e-5, err_msg=key)
            np.testing.assert_allclose(rec.betas, t["betas"], atol=1e-6, err_msg=key)
            assert rec.gender == t["gender"], key
        if rec.has_transl:
            np.testing.assert_allclose(rec.smpl_transl, t["transl"], atol=1e-5, err_msg=key)
        # 3D joints: the body model's, where the record has them
        valid = rec.joints_3d[:, 3] > 0
        assert valid.sum() >= 12, key
        root = ROOT_CENTRED.get((name, rec.split))
        want = t["joints_3d"][:, :3] - (t["joints_3d"][KEYPOINTS_2D.index[root], :3] if root else 0)
        np.testing.assert_allclose(rec.joints_3d[valid, :3], want[valid], atol=1e-5, err_msg=key)
        # 2D keypoints: the projection of the body's 3D joints with the dataset's camera
        vis = rec.keypoints_2d[:, 2] > 0
        assert vis.sum() == 0 if (name, rec.split) in NO_2D else vis.sum() >= 10, key
        proj = project(t["joints_3d"][:, :3], t["K"])
        assert np.all(np.abs(rec.keypoints_2d[vis, :2] - proj[vis]) < 0.5), key
        if rec.intrinsics is not None:
            np.testing.assert_allclose(rec.intrinsics, t["K"], atol=1e-4, err_msg=key)
        # the crop box (the person box widened to the crop's aspect, as the shard pipeline
        # crops it) holds the rendered person
        x0, y0, x1, y1 = t["mask_box"]
        half = expand_to_aspect(rec.box_size) / 2
        lo, hi = rec.box_center - half, rec.box_center + half
        slack = 0.03 * rec.box_size
        assert np.all(lo - slack <= [x0, y0]) and np.all([x1, y1] <= hi + slack), (key, lo, hi, t["mask_box"])


@pytest.mark.parametrize("name", DATASETS)
def test_injected_faults_become_rejects(synthetic_faulty_raw, name):
    items, truth = read_all(synthetic_faulty_raw, name)
    assert set(items) == set(truth)  # every frame is a record or a reject
    faulted = {k: t["reason"] for k, t in truth.items() if t["reason"] and k in items}
    assert faulted, f"{name}: no fault was injected"
    for key, reason in faulted.items():
        item = items[key]
        if reason == "corrupt_image":  # found when the shard pipeline decodes the image
            assert isinstance(item, PersonFrame), key
        else:
            assert isinstance(item, Reject) and item.reason.split(":")[0] == reason, (key, item)
    clean = [k for k in items if k not in faulted]
    assert clean and all(isinstance(items[k], PersonFrame) for k in clean)


def test_contact_sheet_draws_every_dataset(synthetic_dir, tmp_path):
    from PIL import Image

    from datasets.synthetic.contact_sheet import main

    out = tmp_path / "sheet.png"
    assert main(["--raw", str(synthetic_dir / "raw"), "--out", str(out), "--per", "2"]) == 0
    with Image.open(out) as im:
        assert im.size == (2 * 192, len(READERS) * 256)
