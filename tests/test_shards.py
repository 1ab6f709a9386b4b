"""The shard pipeline on hand-made records and images (fake readers), then on the synthetic
raw trees through the real readers and the command line (Ray local, 2 CPUs)."""
import dataclasses
import io
import json
import os
import tarfile

import cv2
import numpy as np
import pytest

from datasets.record import PersonFrame, Reject, make_key, reject_reason
from pipelines import shard_reader as sr
from pipelines.crop import CropSettings, crop_frame, decode_image, encode_jpeg, transform_record
from pipelines.shard_index import read_entry, write_index
from pipelines.shards import ImageError, ImageSource, ShardSettings, build, summary_table
from processes import kill_session
from test_crop import make_record

SETTINGS = ShardSettings(max_samples=3)


class AnnotationFailure(RuntimeError):
    pass


def fake_readers(items: dict[str, dict[str, list]]) -> dict:
    """{dataset: reader class} yielding the given items (an exception item is raised)."""

    def reader_class(name):
        class FakeReader:
            def __init__(self, root, split):
                self.root, self.split, self.name = root, split, name

            @staticmethod
            def splits(root):
                return sorted(items[name])

            def frames(self):
                for item in items[name][self.split]:
                    if isinstance(item, Exception):
                        raise item
                    yield item

        return FakeReader

    return {name: reader_class(name) for name in items}


def _image(seed, hw=(480, 640)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (hw[0] // 16, hw[1] // 16, 3), np.uint8)
    return cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    """raw/coco with images and every kind of bad frame; raw/mpii whose annotations fail."""
    raw = tmp_path_factory.mktemp("raw")
    images = raw / "coco" / "images"
    images.mkdir(parents=True)
    train = []
    for f in range(10):
        cv2.imwrite(str(images / f"{f:04d}.jpg"), _image(f), [cv2.IMWRITE_JPEG_QUALITY, 90])
        train.append(make_record(frame=f, seed=f, center=(300.0 + 5 * f, 240.0)))
    train.append(make_record(frame=0, person=1, seed=99, center=(150.0, 200.0), side=120.0))  # same image
    (images / "0005.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # corrupt
    os.remove(images / "0006.jpg")  # vanished after the reader looked
    cv2.imwrite(str(images / "0004.jpg"), _image(4, (100, 100)))  # not the size the labels say
    train[7] = dataclasses.replace(train[7], betas=np.full(10, np.inf))
    train[8] = dataclasses.replace(train[8], box_center=np.array([2000.0, 240.0]))
    train.append(Reject(make_key("coco", "train", "seq", 10, 0), "coco", "train",
                        reject_reason("missing_image", "images/0010.jpg"), "labels.npz"))
    val = [make_record(frame=f, split="val", seed=f, center=(320.0, 240.0)) for f in (1, 2)]
    val[1] = dataclasses.replace(val[1], has_smpl=False, intrinsics=None)  # a sample without SMPL and camera
    (raw / "mpii").mkdir()
    readers = fake_readers({
        "coco": {"train": train, "val": val},
        "mpii": {"train": [AnnotationFailure(f"{raw}/mpii/labels.npz: field 'part' is missing")]},
    })
    expected = {
        make_key("coco", "train", "seq", 4, 0): "corrupt_image",
        make_key("coco", "train", "seq", 5, 0): "corrupt_image",
        make_key("coco", "train", "seq", 6, 0): "missing_image",
        make_key("coco", "train", "seq", 7, 0): "non_finite_label",
        make_key("coco", "train", "seq", 8, 0): "box_outside_image",
        make_key("coco", "train", "seq", 10, 0): "missing_image",
    }
    return raw, readers, {"train": train, "val": val}, expected


def _build(raw, out, readers, settings=SETTINGS):
    return build(str(raw), str(out), settings, readers=readers)


@pytest.fixture(scope="module")
def built(hand_made, ray_session, tmp_path_factory):
    raw, readers, _, _ = hand_made
    out = tmp_path_factory.mktemp("shards")
    stats, skipped = _build(raw, out, readers)
    return out, stats, skipped


def test_every_frame_is_in_the_manifest_with_its_reason(hand_made, built):
    raw, _, items, expected = hand_made
    out, stats, skipped = built
    assert skipped["mpii"].startswith("FAILED") and "mpii/labels.npz" in skipped["mpii"]
    assert [(s["dataset"], s["split"]) for s in stats] == [("coco", "train"), ("coco", "val")]
    m = sr.read_manifest(out, "coco", "train").to_pylist()
    assert len(m) == len(items["train"]) == stats[0]["frames"]
    assert [r["key"] for r in m] == sorted(r.key for r in items["train"])
    got = {r["key"]: r["reason"].split(":")[0] for r in m if r["status"] == "rejected"}
    assert got == expected
    assert all(r["shard"] is None for r in m if r["status"] == "rejected")
    assert stats[0]["reasons"] == {"corrupt_image": 2, "missing_image": 2, "non_finite_label": 1,
                                   "box_outside_image": 1}
    assert stats[0]["status"] == {"ok": 6, "rejected": 6}
    # labels counted over the ok samples only (6 of 12 frames), as `make check-data` counts them
    assert stats[0]["coverage"] == dict(records=6, smpl=6, joints_3d=6, keypoints_2d=6, intrinsics=6)
    assert stats[1]["coverage"] == dict(records=2, smpl=1, joints_3d=2, keypoints_2d=2, intrinsics=1)
    assert json.loads((out / "coco" / "val" / "stats.json").read_text())["coverage"] == stats[1]["coverage"]
    table = summary_table(stats, skipped)
    assert "corrupt_image 2" in table and "mpii: FAILED" in table and " 6/6/6/6 " in table and " 1/2/2/1 " in table


def test_samples_equal_the_reader_records_after_the_crop(hand_made, built):
    raw, _, items, _ = hand_made
    out, _, _ = built
    by_key = {r.key: r for r in items["train"]}
    manifest = {r["key"]: r for r in sr.read_manifest(out, "coco", "train").to_pylist()}
    shards = sr.list_shards(out, "coco", "train")
    assert [os.path.basename(s) for s in shards] == ["coco-train-000000.tar", "coco-train-000001.tar",
                                                     "coco-train-000002.tar"]
    seen = []
    for shard in shards:
        samples = list(sr.iter_shard(shard))
        assert 1 <= len(samples) <= SETTINGS.max_samples
        for rec, jpg in samples:
            src = by_key[rec.key]
            want = transform_record(src)
            for f in dataclasses.fields(PersonFrame):
                a, b = getattr(rec, f.name), getattr(want, f.name)
                if f.compare:
                    assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, f.name
            image = decode_image((raw / "coco" / src.image_path).read_bytes())
            crop, _ = crop_frame(image, src)
            assert jpg == encode_jpeg(crop, 95)
            assert manifest[rec.key]["shard"] == os.path.basename(shard)
            uv = rec.joints_3d[:, :3].astype(np.float64) @ rec.intrinsics.astype(np.float64).T
            vis = rec.keypoints_2d[:, 2] > 0
            assert np.abs(uv[vis, :2] / uv[vis, 2:] - rec.keypoints_2d[vis, :2]).max() < 1.0
            seen.append(rec.key)
    assert seen == sorted(k for k, r in manifest.items() if r["status"] == "ok")
    assert sr.decode_jpeg(jpg).shape == (256, 192, 3)


def test_tar_members_are_sorted_with_fixed_metadata(built):
    out, _, _ = built
    for shard in sr.list_shards(out, "coco", "train"):
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        keys = [n.rsplit(".", 1)[0] for n in names]
        assert keys[::2] == keys[1::2] == sorted(set(keys))
        assert [n.rsplit(".", 1)[1] for n in names] == ["jpg", "npz"] * (len(names) // 2)
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_rebuilds_are_byte_identical_and_resume_writes_only_missing_shards(hand_made, built, tmp_path):
    raw, readers, _, _ = hand_made
    out, _, _ = built
    other = tmp_path / "other"
    _build(raw, other, readers)
    for split in ("train", "val"):
        a, b = sr.list_shards(out, "coco", split), sr.list_shards(other, "coco", split)
        assert [open(x, "rb").read() for x in a] == [open(x, "rb").read() for x in b]
        assert sr.read_manifest(out, "coco", split).equals(sr.read_manifest(other, "coco", split))
    # a killed run: one shard missing, a temporary left behind, no manifest
    split_dir = other / "coco" / "train"
    before = {p.name: p.stat().st_mtime_ns for p in split_dir.glob("*.tar")}
    (split_dir / "coco-train-000001.tar").unlink()
    (split_dir / ".tmp-coco-train-000001.tar").write_bytes(b"half a shard")
    (split_dir / "manifest.parquet").unlink()
    (split_dir / "index.json").unlink()  # also as shards written before indexes: read once and indexed
    stats, _ = _build(raw, other, readers)
    assert {(s["split"], s["shards_written"]) for s in stats} == {("train", 1), ("val", 0)}
    after = {p.name: p.stat().st_mtime_ns for p in split_dir.glob("*.tar")}
    assert {n for n in before if before[n] != after[n]} == {"coco-train-000001.tar"}
    assert not list(split_dir.glob(".tmp-*"))
    assert [open(x, "rb").read() for x in sr.list_shards(out, "coco", "train")] == \
        [open(x, "rb").read() for x in sr.list_shards(other, "coco", "train")]
    assert sr.read_manifest(out, "coco", "train").equals(sr.read_manifest(other, "coco", "train"))
    assert (split_dir / "index.json").read_bytes() == (out / "coco" / "train" / "index.json").read_bytes()


def test_other_settings_into_the_same_folder_are_refused(hand_made, built):
    raw, readers, _, _ = hand_made
    out, _, _ = built
    _, skipped = _build(raw, out, readers, ShardSettings(CropSettings(jpeg_quality=80), max_samples=3))
    assert "other settings" in skipped["coco"]


def test_byte_bound_caps_samples_per_shard():
    s = ShardSettings(max_samples=1000, max_bytes=3 * ShardSettings().sample_bytes_bound() + 20000)
    assert s.samples_per_shard() == 3
    assert ShardSettings().samples_per_shard() == 1000
    with pytest.raises(ValueError, match="cannot hold one sample"):
        ShardSettings(max_bytes=1000).samples_per_shard()


def test_webdataset_reader_yields_the_same_samples(built):
    out, _, _ = built
    plain = list(sr.iter_split(out, "coco", "train"))
    streamed = list(sr.webdataset_samples(sr.list_shards(out, "coco", "train")))
    assert [(r.key, j) for r, j in streamed] == [(r.key, j) for r, j in plain]
    np.testing.assert_array_equal(streamed[0][0].keypoints_2d, plain[0][0].keypoints_2d)


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_shard_reader_names_bad_members(tmp_path, built):
    out, _, _ = built
    good = next(sr.iter_members(sr.list_shards(out, "coco", "train")[0]))
    key, data = good
    cases = {
        "../evil.jpg": [("../evil.jpg", b"x")],
        "a.txt": [("a.txt", b"x")],
        "out of order": [(f"{key}.jpg", data["jpg"]), (f"{key}.npz", data["npz"]),
                         ("a.jpg", data["jpg"]), ("a.npz", data["npz"])],
        "expected": [(f"{key}.npz", data["npz"]), (f"{key}.jpg", data["jpg"])],
    }
    shards = [_tar(tmp_path / f"bad{i}.tar", members) for i, members in enumerate(cases.values())]
    wrong = _tar(tmp_path / "wrong.tar", [("zz.jpg", data["jpg"]), ("zz.npz", data["npz"])])
    write_index(str(tmp_path), {os.path.basename(s): read_entry(s) for s in [*shards, wrong]})
    for i, (match, shard) in enumerate(zip(cases, shards)):
        for read in (lambda s: list(sr.iter_shard(s)), sr.list_samples):
            with pytest.raises(sr.ShardError, match=f"bad{i}.tar.*{match.split()[0]}"):
                read(shard)
    with pytest.raises(sr.ShardError, match="holds the record of key"):
        list(sr.iter_shard(wrong))


def _video(path, n=60, hw=(120, 160)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (hw[1], hw[0]))
    for i in range(n):
        frame = np.zeros((*hw, 3), np.uint8)
        cv2.putText(frame, str(i), (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        frame[:, :, 0] = i * 4
        writer.write(frame)
    writer.release()


def test_video_frames_decode_the_same_by_seek_or_in_sequence(tmp_path):
    _video(tmp_path / "v.avi")
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    reference = [cap.read()[1] for _ in range(60)]
    cap.release()
    source = ImageSource(str(tmp_path))
    for f in (0, 1, 2, 5, 40, 41, 59, 3):  # forward steps, a seek, a backward seek
        np.testing.assert_array_equal(source.read("v.avi", f), reference[f])
    with pytest.raises(ImageError, match="corrupt_image: v.avi frame 60"):
        source.read("v.avi", 60)
    with pytest.raises(ImageError, match="missing_image: w.avi"):
        source.read("w.avi", 0)
    source.close()


# ---- the synthetic raw trees, through the real readers ------------------------------------------
E2E = ShardSettings(max_samples=2)
KILLED_DATASETS = ("coco", "mpi_inf_3dhp")  # an npz dataset and a video one


@pytest.fixture(scope="module")
def synthetic_built(synthetic_faulty_raw, ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic-shards")
    stats, skipped = build(str(synthetic_faulty_raw), str(out), E2E)
    return out, stats, skipped


def _reader_items(raw, dataset, split):
    from datasets.readers import READERS
    from pipelines.shards import dataset_roots

    return list(READERS[dataset](dataset_roots(str(raw))[dataset], split).frames())


def _source_image(raw, dataset, rec):
    from pipelines.shards import dataset_roots

    path = os.path.join(dataset_roots(str(raw))[dataset], rec.image_path)
    if rec.video_frame < 0:  # as stored, EXIF orientation ignored (4D-Humans hmr2/datasets/utils.py flags)
        return cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    cap = cv2.VideoCapture(path)  # sequential decode, independent of the pipeline's seeking
    for _ in range(rec.video_frame + 1):
        ok, img = cap.read()
    cap.release()
    return img


def test_synthetic_every_dataset_round_trips(synthetic_faulty_raw, synthetic_built):
    from datasets.readers import available

    out, stats, skipped = synthetic_built
    pairs = available(synthetic_faulty_raw)
    assert {d for d, _ in pairs} == {"3dpw", "coco", "mpii", "h36m", "mpi_inf_3dhp", "rich", "emdb"}
    assert sorted((s["dataset"], s["split"]) for s in stats) == sorted(pairs) and not skipped
    for dataset, split in pairs:
        items = _reader_items(synthetic_faulty_raw, dataset, split)
        manifest = sr.read_manifest(out, dataset, split).to_pylist()
        assert sorted(r["key"] for r in manifest) == sorted(i.key for i in items)  # rows = frames
        assert {r["dataset"] for r in manifest} == {dataset} and {r["split"] for r in manifest} == {split}
        by_key = {i.key: i for i in items}
        n = 0
        for rec, jpg in sr.iter_split(out, dataset, split):
            src = by_key[rec.key]
            want = transform_record(src, E2E.crop)
            for f in dataclasses.fields(PersonFrame):
                a, b = getattr(rec, f.name), getattr(want, f.name)
                if f.compare:
                    assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, (rec.key, f.name)
            if rec.intrinsics is not None:  # 2D keypoints = 3D joints through the crop camera
                uv = rec.joints_3d[:, :3].astype(np.float64) @ rec.intrinsics.astype(np.float64).T
                vis = (rec.keypoints_2d[:, 2] > 0) & (rec.joints_3d[:, 3] > 0)
                assert np.abs(uv[vis, :2] / uv[vis, 2:] - rec.keypoints_2d[vis, :2]).max() < 1.0, rec.key
            # the stored affine maps the original image onto the stored crop
            image = _source_image(synthetic_faulty_raw, dataset, src)
            crop = cv2.warpAffine(image, rec.crop_affine.astype(np.float64), (192, 256), flags=cv2.INTER_LINEAR)
            stored = cv2.cvtColor(sr.decode_jpeg(jpg), cv2.COLOR_RGB2BGR)
            assert np.abs(stored.astype(int) - crop).mean() < 3, rec.key
            n += 1
        assert n == sum(r["status"] == "ok" for r in manifest) > 0, (dataset, split)


def test_synthetic_faults_are_rejects_with_their_reasons(synthetic_faulty_raw, synthetic_built):
    from datasets.synthetic.raw import TRUTH_FILE
    from datasets.synthetic.raw_scene import load_truth
    from pipelines.shards import dataset_roots

    out, stats, _ = synthetic_built
    roots = dataset_roots(str(synthetic_faulty_raw))
    found = set()
    for s in stats:
        truth = load_truth(os.path.join(roots[s["dataset"]], TRUTH_FILE))
        for row in sr.read_manifest(out, s["dataset"], s["split"]).to_pylist():
            want = truth[row["key"]]["reason"]
            got = row["reason"].split(":")[0] if row["reason"] else ""
            assert got == want, (row["key"], row["reason"], want)
            assert (row["status"] == "ok") == (want == "") and (row["shard"] is None) == (want != "")
            found.add(got)
    # every fault the generator injects shows up, corrupt JPEGs found by this pipeline
    assert found >= {"corrupt_image", "missing_image", "non_finite_label", "box_outside_image",
                     "invalid_camera_pose", "invalid_frame"}


@pytest.mark.slow
def test_killed_run_resumes_to_identical_shards(synthetic_faulty_raw, synthetic_built, tmp_path):
    import glob
    import subprocess
    import sys
    import time

    clean, stats, _ = synthetic_built
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipelines.shards", "--raw", str(synthetic_faulty_raw), "--out", str(out),
           "--datasets", *KILLED_DATASETS, "--max-samples", str(E2E.max_samples), "--num-cpus", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not glob.glob(f"{out}/*/*/*.tar") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:  # kill -9 the run, once its first shard is complete: the driver and its local Ray
        kill_session(proc.pid)
        proc.wait()
    planned = [s for s in stats if s["dataset"] in KILLED_DATASETS]
    survivors = {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{out}/*/*/*.tar")}
    assert 0 < len(survivors) < sum(s["shards"] for s in planned), "the run was not interrupted midway"
    assert not glob.glob(f"{out}/*/*/manifest.parquet") or len(glob.glob(f"{out}/*/*/manifest.parquet")) < len(planned)

    stats2, skipped = build(str(synthetic_faulty_raw), str(out), E2E, list(KILLED_DATASETS))
    assert not skipped
    assert sum(s["shards_written"] for s in stats2) == sum(s["shards"] for s in planned) - len(survivors)
    assert {p: os.stat(p).st_mtime_ns for p in survivors} == survivors  # not rewritten
    for s in planned:
        a, b = sr.list_shards(clean, s["dataset"], s["split"]), sr.list_shards(out, s["dataset"], s["split"])
        assert [os.path.basename(x) for x in a] == [os.path.basename(x) for x in b]
        for x, y in zip(a, b):
            assert open(x, "rb").read() == open(y, "rb").read(), y
        assert sr.read_manifest(clean, s["dataset"], s["split"]).equals(sr.read_manifest(out, s["dataset"], s["split"]))
    assert not glob.glob(f"{out}/*/*/.tmp-*")


def test_truncated_shard_is_named(tmp_path, built):
    out, _, _ = built
    data = open(sr.list_shards(out, "coco", "train")[0], "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data)
    write_index(str(tmp_path), {"cut.tar": read_entry(str(cut))})
    cut.write_bytes(data[:len(data) // 2 + 100])
    for read in (lambda s: list(sr.iter_shard(s)), sr.list_samples):
        with pytest.raises(sr.ShardError, match="cut.tar"):
            read(str(cut))


@pytest.mark.parametrize("lost", ["node", "worker in a task"])
@pytest.mark.parametrize("command", ["shards", "features"])
def test_a_node_lost_mid_run_is_a_clear_error(command, lost, monkeypatch, capsys, tmp_path):
    """A Ray node or worker lost for good (Ray's retries spent) ends `make shards` / `make
    features` with one line saying so and how to finish (tests/test_scaleout.py kills a node
    for real); an error of this code is not taken for one."""
    import ray.exceptions as rx

    from pipelines import features, shards

    error = {"node": rx.NodeDiedError("node 1a2b3c is dead"),
             "worker in a task": rx.RayTaskError("_process_row", "", rx.WorkerCrashedError())}[lost]

    def fail(*args, **kwargs):
        raise RuntimeError("Ray Data failed") from error

    module, work, argv = {"shards": (shards, "build", ["--raw", str(tmp_path)]),
                          "features": (features, "run", ["--shards", str(tmp_path), "--encoder", "tiny"])}[command]
    monkeypatch.setattr(module, work, fail)
    assert module.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the Ray cluster lost a node or worker mid-run (")
    assert type(error if lost == "node" else error.cause).__name__ in err[0] and "rerun the same command" in err[0]
    assert str(tmp_path / "out") in err[0]

    # errors of this code, also inside Ray, are raised as they are
    init_failed = rx.ActorDiedError(rx.RayTaskError("EncodeChunks.__init__", "", ValueError("bad checkpoint")))
    for ours in (RuntimeError("a bug of ours"), rx.RayTaskError("_process_row", "", ValueError("a bug")), init_failed):
        assert shards.lost_by_ray(ours) is None, ours
        monkeypatch.setattr(module, work, lambda *a, error=ours, **k: (_ for _ in ()).throw(error))
        with pytest.raises(type(ours)):
            module.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
