"""`make check-data` (datasets/check.py): the synthetic tree passes, with every promised
comparison made; copies of it with one convention broken on purpose are flagged."""
import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from datasets.check import LIMITS, Limits, label_coverage, limits_for, main, override_limits, run
from datasets.joints import KEYPOINTS_2D
from datasets.readers import READERS, available
from datasets.record import CROP_HW, PersonFrame

# what each source promises to compare (datasets/check.py INDEPENDENT_LABELS): 2D and 3D
COMPARED_2D = {("3dpw", "train"), ("3dpw", "val"), ("3dpw", "test"), ("coco", "train"), ("mpii", "train"),
               ("mpi_inf_3dhp", "train")}
COMPARED_3D = {("3dpw", "train"), ("3dpw", "val"), ("3dpw", "test"), ("h36m", "train"), ("mpi_inf_3dhp", "train")}
SPIN_HEAD = KEYPOINTS_2D.indices(["jaw", "head_h36m"])  # SPIN-24 columns 17, 18


@pytest.fixture(scope="module")
def checked(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("check")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["--raw", str(synthetic_dir / "raw"), "--out", str(out), "-n", "3", "--no-progress"])
    return rc, out, json.loads((out / "check.json").read_text()), printed.getvalue()


def test_synthetic_tree_passes_with_every_comparison_made(synthetic_dir, checked):
    rc, out, results, printed = checked
    assert rc == 0
    got = {(r["dataset"], r["split"]): r for r in results}
    assert set(got) == set(available(synthetic_dir / "raw"))
    for (name, split), r in got.items():
        assert r["flags"] == [], (name, split, r["flags"])
        d, cov = r["disagreement"], r["coverage"]
        assert cov["records"] > 0
        assert (d["2d"]["pairs"] > 0) == ((name, split) in COMPARED_2D), (name, split)
        assert (d["3d"]["pairs"] > 0) == ((name, split) in COMPARED_3D), (name, split)
        if (name, split) in COMPARED_2D:  # every sampled body with a camera and labels was compared
            assert d["2d"]["records"] == cov["smpl"]
    # the coverage the sources promise (module docstrings of the readers)
    for split in ("train", "val", "test"):
        cov = got["3dpw", split]["coverage"]
        assert cov["smpl"] == cov["intrinsics"] == cov["joints_3d"] == cov["records"]
    assert got["h36m", "test"]["coverage"]["smpl"] == got["h36m", "test"]["coverage"]["keypoints_2d"] == 0
    assert got["h36m", "train"]["coverage"]["intrinsics"] == 0
    assert got["mpi_inf_3dhp", "test"]["coverage"]["smpl"] == got["mpi_inf_3dhp", "test"]["coverage"]["intrinsics"] == 0
    assert got["rich", "test"]["disagreement"]["in_box"]["share"] == 1.0
    # one sheet per split, 3 tiles of the crop size (2 x 2 grid)
    from PIL import Image

    for name, split in got:
        with Image.open(out / f"{name}-{split}.png") as im:
            assert im.size == (2 * CROP_HW[1], 2 * CROP_HW[0])
    assert "3dpw" in printed and "FLAG" not in printed and "11 splits, 0 flagged" in printed


def _copy(synthetic_dir, tmp_path, names):
    """tmp/raw/<name> copies beside a link to the synthetic assets (the SYNTHETIC markers name
    them as ../../assets)."""
    os.symlink(synthetic_dir / "assets", tmp_path / "assets")
    for name in names:
        shutil.copytree(synthetic_dir / "raw" / name, tmp_path / "raw" / name)
    return tmp_path / "raw"


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(path, **arrays)


def _results(raw, names):
    return {(r["dataset"], r["split"]): r for r in run(raw, None, names, show_progress=False, log=lambda *_: None)}


def test_3dhp_fits_on_the_neighbouring_frames_are_flagged(synthetic_dir, tmp_path):
    raw = _copy(synthetic_dir, tmp_path, ["mpi_inf_3dhp"])

    def shift(z):  # each fit attached to the next row's frame (SPIN issue #84's kind of mismatch)
        z["imgname"] = np.roll(z["imgname"], 1)

    _rewrite(raw / "mpi_inf_3dhp" / "mpi_inf_3dhp_train.npz", shift)
    got = _results(raw, ["mpi_inf_3dhp"])
    flags = got["mpi_inf_3dhp", "train"]["flags"]
    assert any(f.startswith("3D: median") for f in flags), flags
    assert got["mpi_inf_3dhp", "train"]["coverage"]["smpl"] == got["mpi_inf_3dhp", "train"]["coverage"]["records"]
    assert got["mpi_inf_3dhp", "test"]["flags"] == []


def test_3dhp_without_fits_is_flagged_as_coverage(synthetic_dir, tmp_path):
    raw = _copy(synthetic_dir, tmp_path, ["mpi_inf_3dhp"])
    os.remove(raw / "mpi_inf_3dhp" / "mpi_inf_3dhp_train.npz")  # the reader's own frame set: no SMPL
    flags = _results(raw, ["mpi_inf_3dhp"])["mpi_inf_3dhp", "train"]["flags"]
    assert len(flags) == 1 and flags[0].startswith("coverage: smpl in 0 of"), flags


def test_swapped_spin_head_columns_are_flagged(synthetic_dir, tmp_path):
    raw = _copy(synthetic_dir, tmp_path, ["coco", "h36m"])

    def swap(key):
        def change(z):
            z[key][:, SPIN_HEAD] = z[key][:, SPIN_HEAD[::-1]]
        return change

    _rewrite(raw / "coco" / "coco2014part_cliffGT.npz", swap("part"))  # 2D labels
    _rewrite(raw / "h36m" / "h36m_train.npz", swap("S"))  # 3D labels
    got = _results(raw, ["coco", "h36m"])
    assert got["coco", "train"]["flags"] == [
        "2D: jaw/head_h36m fit the body better exchanged in "
        f"{got['coco', 'train']['coverage']['records']} of {got['coco', 'train']['coverage']['records']} "
        "records (> 50%, max_swapped)"]
    h36m = got["h36m", "train"]["flags"]
    assert any(f.startswith("3D: jaw/head_h36m fit the body better exchanged") for f in h36m), h36m
    assert got["h36m", "test"]["flags"] == []


def test_label_coverage_counts_each_label():
    t = PersonFrame.empty_targets()
    base = dict(key="k", dataset="coco", split="train", sequence="s", frame=0, person=0, image_path="a.jpg",
                image_hw=np.array([10, 10]), box_center=np.array([5.0, 5.0]), box_size=np.array([4.0, 4.0]),
                box_expand=1.0, synthetic=True, **t)
    bare = PersonFrame(**base)
    full = bare.replace(has_smpl=True, intrinsics=np.eye(3), joints_3d=np.ones((24, 4)),
                        keypoints_2d=np.ones((24, 3)))
    one_joint = bare.replace(keypoints_2d=np.zeros((24, 3)))
    one_joint.keypoints_2d[3, 2] = 0.5  # one joint with confidence: the record has 2D keypoints
    assert label_coverage([bare, full, one_joint]) == dict(records=3, smpl=1, joints_3d=1, keypoints_2d=2,
                                                           intrinsics=1)


def test_limits_are_per_split_and_overridable():
    assert limits_for("h36m", "test") is LIMITS["h36m/test"]
    assert limits_for("3dpw", "val") is LIMITS["3dpw"]
    assert limits_for("unknown", "train") == Limits()
    table = override_limits(LIMITS, ["3dpw.px_median=0.1", "mpi_inf_3dhp/train.min_smpl=none", "coco/train.mm_p95=7"])
    assert table["3dpw"].px_median == 0.1 and table["3dpw"].mm_median == LIMITS["3dpw"].mm_median
    assert table["mpi_inf_3dhp/train"].min_smpl is None
    assert table["coco/train"] == Limits(**{**LIMITS["coco"].__dict__, "mm_p95": 7.0})
    assert LIMITS["3dpw"].px_median == 0.03  # the table itself is untouched
    for bad in ("3dpw.px_median", "3dpw.nope=1", "3dpw.px_median=x"):
        with pytest.raises(ValueError, match="--limit"):
            override_limits(LIMITS, [bad])


def test_every_reader_has_limits_and_label_sources():
    from datasets.check import INDEPENDENT_LABELS

    assert set(INDEPENDENT_LABELS) == set(READERS)
    assert all(any(k == n or k.startswith(n + "/") for k in LIMITS) for n in READERS)
