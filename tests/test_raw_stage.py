"""The local mirror of a raw tree in an object store (`pipelines.raw_stage`), on `file://` URIs
(pyarrow's local file system behind the same code as s3://; tests/test_scaleout.py runs it on
an S3 endpoint)."""
from __future__ import annotations

import json
import os

import pytest

from datasets.reader import SYNTHETIC_MARKER
from pipelines.raw_stage import MARK, StageError, mirror_path, stage


def files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARK}


@pytest.fixture
def bucket(tmp_path):
    """A 'bucket' folder with a raw tree (two datasets, one synthetic) and its assets beside it."""
    b = tmp_path / "bucket"
    for rel, data in {"raw/coco/labels.npz": b"npz", "raw/coco/train2014/a.jpg": b"jpg" * 100,
                      "raw/3DPW/sequenceFiles/test/s.pkl": b"pkl", "assets/smpl.pkl": b"model"}.items():
        (b / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / rel).write_bytes(data)
    (b / "raw" / "coco" / SYNTHETIC_MARKER).write_text(json.dumps({"assets": "../../assets", "synthetic": True}))
    return b


def test_mirrors_the_tree_then_only_what_changed(bucket, tmp_path):
    uri, logs = f"file://{bucket}/raw/coco", []
    local = stage(uri, tmp_path / "stage", log=logs.append)
    assert local == mirror_path(uri, tmp_path / "stage") == tmp_path / "stage" / str(bucket / "raw" / "coco")[1:]
    assert files(local) == files(bucket / "raw" / "coco")
    # the synthetic marker's assets, at the same relative place
    assert files(local / ".." / ".." / "assets") == files(bucket / "assets")
    assert "3 files, 3 fetched" in logs[0] and "1 files, 1 fetched" in logs[1]

    stage(uri, tmp_path / "stage", log=logs.append)
    assert "3 files, 0 fetched" in logs[2] and "0 removed" in logs[2]
    (bucket / "raw" / "coco" / "labels.npz").write_bytes(b"new labels")  # changed size
    os.utime(bucket / "raw" / "coco" / "train2014" / "a.jpg", ns=(1, 1))  # same size, other time
    (bucket / "raw" / "coco" / "gone.txt").write_bytes(b"x")
    stage(uri, tmp_path / "stage", log=logs.append)
    (bucket / "raw" / "coco" / "gone.txt").unlink()
    stage(uri, tmp_path / "stage", log=logs.append)
    assert "4 files, 3 fetched" in logs[4] and "3 files, 0 fetched" in logs[6] and "1 removed" in logs[6]
    assert files(local) == files(bucket / "raw" / "coco")


def test_refuses_folders_that_are_not_its_mirror_and_markers_outside_the_bucket(bucket, tmp_path):
    uri = f"file://{bucket}/raw/coco"
    taken = mirror_path(uri, tmp_path / "stage")
    taken.mkdir(parents=True)
    (taken / "mine.txt").write_text("a user's file")
    with pytest.raises(StageError, match="not empty and not a raw mirror"):
        stage(uri, tmp_path / "stage", log=lambda *a: None)
    assert (taken / "mine.txt").exists()

    stage(f"file://{bucket}/raw/3DPW", tmp_path / "other", log=lambda *a: None)
    (mirror_path(f"file://{bucket}/raw/3DPW", tmp_path / "other") / MARK).write_text(json.dumps({"uri": "s3://x/y"}))
    with pytest.raises(StageError, match="the mirror of s3://x/y"):
        stage(f"file://{bucket}/raw/3DPW", tmp_path / "other", log=lambda *a: None)

    depth = len(bucket.parts)  # '../' enough times to leave the file system's first folder
    (bucket / "raw" / "coco" / SYNTHETIC_MARKER).write_text(json.dumps({"assets": "../" * (depth + 2) + "assets"}))
    with pytest.raises(StageError, match="outside the bucket"):
        stage(uri, tmp_path / "third", log=lambda *a: None)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        stage(f"file://{bucket}/raw/mpii", tmp_path / "stage", log=lambda *a: None)
