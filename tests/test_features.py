"""The feature pipeline on hand-made image shards with the tiny encoder (Ray local, 2 CPUs):
keys one to one, features equal a direct forward, views, manifest, resume after a kill."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.record import make_key
from model.vitpose import encode_crops, load_encoder
from pipelines import shard_reader as sr
from pipelines.augment import views
from pipelines.crop import crop_frame, encode_jpeg
from pipelines.features import (SPEC, CacheError, FeatureSettings, ShardEncoder, _Work, assign, cache_spec,
                                decode_view, iter_feature_shard, prepare_cache, read_cache_spec, read_shard, run,
                                sample_views, storage_needed, summary_table)
from pipelines.shard_index import verify_split, write_index
from pipelines.shards import MANIFEST_SCHEMA, TMP_PREFIX, write_tar
from test_crop import IMAGE_HW, make_record

REPO = Path(__file__).resolve().parents[1]
CORRUPT = make_key("other", "test", "seq", 1, 0)
# (dataset, split) -> samples per shard
LAYOUT = {("synth", "train"): [3, 3, 3, 2], ("other", "test"): [3]}


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    """SHARDS/<dataset>/<split>/ with crops of random images, one undecodable JPEG in
    other/test, and an image manifest for synth/train."""
    root = tmp_path_factory.mktemp("image_shards")
    fs, _ = sr.resolve(root)
    for (dataset, split), sizes in LAYOUT.items():
        d = root / dataset / split
        d.mkdir(parents=True)
        frame, rows, entries = 0, [], {}
        for index, n in enumerate(sizes):
            samples = []
            for _ in range(n):
                rng = np.random.default_rng(frame)
                image = rng.integers(0, 256, (*IMAGE_HW, 3), np.uint8)
                crop, rec = crop_frame(image, make_record(frame=frame, dataset=dataset, split=split, seed=frame,
                                                          center=(300.0 + 3 * frame, 240.0), side=200.0))
                jpg = b"\xff\xd8 not a jpeg" if rec.key == CORRUPT else encode_jpeg(crop)
                samples.append((rec.key, jpg, rec.to_npz_bytes()))
                rows.append(dict(key=rec.key, dataset=dataset, split=split, shard=sr.shard_name(dataset, split, index),
                                 status="ok", reason=None, bytes=len(jpg)))
                frame += 1
            entries[sr.shard_name(dataset, split, index)] = write_tar(fs, str(d / sr.shard_name(dataset, split, index)),
                                                                      samples)
        write_index(str(d), entries)
        if dataset == "synth":
            rows.append(dict(key=make_key(dataset, split, "seq", 99, 0), dataset=dataset, split=split, shard=None,
                             status="rejected", reason="missing_image", bytes=None))
            pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), d / sr.MANIFEST)
    return root


def _image_samples(shards_root):
    """{key: (record, JPEG bytes)} over every image shard."""
    out = {}
    for dataset, split in LAYOUT:
        for rec, jpg in sr.iter_split(shards_root, dataset, split):
            out[rec.key] = (rec, jpg)
    return out


def _complete_shards(cache: Path) -> list[Path]:
    return [p for p in cache.glob("*/*/*.tar") if not p.name.startswith(TMP_PREFIX)]


def _files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(image_shards, ray_session, tmp_path_factory):
    """A 3-view cache of the tiny encoder; chunks of 2 crops split samples' views."""
    out = tmp_path_factory.mktemp("features")
    settings = FeatureSettings(encoder="tiny", views=3, batch_size=2)
    return out, run(str(image_shards), str(out), settings), settings


def _close_in_fp16(feats: np.ndarray, direct: np.ndarray) -> None:
    assert feats.dtype == np.float16
    np.testing.assert_allclose(feats.astype(np.float32), direct, rtol=2 ** -11, atol=2 ** -24)


def test_keys_one_to_one_and_features_equal_a_direct_forward(image_shards, built):
    out, stats, settings = built
    cache = out / "tiny-views3"
    spec = read_cache_spec(str(cache))
    assert spec["storage"] == {"member": "f16", "dtype": "<f2", "shape": [32, 16, 12], "order": "C"}
    assert spec["encoder"]["weights"] == {"random_seed": 0} and spec["synthetic"] and spec["views"] == 3
    encoder = load_encoder("tiny")
    images = _image_samples(image_shards)
    seen = []
    for dataset, split in LAYOUT:
        image_names = [s.rsplit("/", 1)[1] for s in sr.list_shards(image_shards, dataset, split)]
        assert sorted(p.name for p in (cache / dataset / split).glob("*.tar")) == image_names
        for name in image_names:
            image_keys = [k for k, _ in sr.list_samples(str(image_shards / dataset / split / name))]
            feature_keys = []
            for key, per_view in iter_feature_shard(str(cache / dataset / split / name), spec):
                feature_keys.append(key)
                feats, rec = per_view[0]  # view 0: the plain crop, the image shard's targets
                rec_in, jpg = images[key]
                assert rec.view == 0 and rec.key == key
                for field in ("smpl_pose", "betas", "joints_3d", "keypoints_2d", "intrinsics", "crop_affine"):
                    np.testing.assert_array_equal(getattr(rec, field), getattr(rec_in, field))
                _close_in_fp16(feats, encode_crops(encoder, sr.decode_jpeg(jpg)[None])[0])
            assert feature_keys == [k for k in image_keys if k != CORRUPT]  # same keys, same order
            seen += feature_keys
    assert len(seen) == len(images) - 1
    for dataset, split in LAYOUT:  # the index the driver wrote (CRC-32 in a helper thread) is the files'
        assert verify_split(str(cache / dataset / split)) == []
    manifest = pq.read_table(cache / "other" / "test" / "manifest.parquet").to_pylist()
    assert [(r["key"], r["status"]) for r in manifest] == [
        (make_key("other", "test", "seq", f, 0), "rejected" if f == 1 else "ok") for f in range(3)]
    assert manifest[1]["reason"].startswith("corrupt_image") and manifest[1]["shard"] is None
    by_split = {(s.dataset, s.split): s for s in stats.splits}
    assert (by_split["synth", "train"].ok, by_split["other", "test"].rejected) == (11, 1)
    assert stats.crops == 13 * 3 and "synth" in summary_table(stats)


def test_views_hold_the_augmented_crops_and_targets(image_shards, built):
    out, _, settings = built
    cache = out / "tiny-views3"
    spec = read_cache_spec(str(cache))
    assert spec["augment"]["rot_rate"] == 0.6 and spec["seed"] == 0
    encoder = load_encoder("tiny")
    images = _image_samples(image_shards)
    for key, per_view in iter_feature_shard(str(cache / "synth" / "train" / "synth-train-000001.tar"), spec):
        assert len(per_view) == 3
        rec_in, jpg = images[key]
        expected = views(rec_in.replace(source=""), sr.decode_jpeg(jpg), 3, settings.seed, settings.augment)
        for v, ((feats, rec), (rec_want, crop)) in enumerate(zip(per_view, expected)):
            assert rec.view == v
            np.testing.assert_array_equal(rec.keypoints_2d, rec_want.keypoints_2d)
            np.testing.assert_array_equal(rec.smpl_pose, rec_want.smpl_pose)
            _close_in_fp16(feats, encode_crops(encoder, crop[None])[0])
        assert not np.array_equal(per_view[1][0], per_view[0][0])
    rows = pq.read_table(cache / "synth" / "train" / "manifest.parquet").to_pylist()
    assert len(rows) == 11 and all(r["views"] == 3 and r["status"] == "ok" for r in rows)


def test_decoding_is_a_view_of_the_member_bytes(built):
    out, _, _ = built
    cache = out / "tiny-views3"
    spec = read_cache_spec(str(cache))
    import webdataset as wds

    sample = next(iter(wds.WebDataset(str(cache / "synth" / "train" / "synth-train-000000.tar"),
                                      shardshuffle=False, empty_check=False)))
    assert sample_views(sample) == [0, 1, 2] and sample["enc"].decode() == spec["encoder_id"]
    feats, rec = decode_view(sample, 2, spec)
    assert feats.shape == (32, 16, 12) and rec.view == 2
    assert not feats.flags.owndata and not feats.flags.writeable
    assert np.shares_memory(feats, np.frombuffer(sample["v2.f16"], np.uint8))
    with pytest.raises(ValueError, match="made by encoder 'vitpose-h-0000'"):
        decode_view(dict(sample, enc=b"vitpose-h-0000"), 0, spec)
    with pytest.raises(ValueError, match=r"no view 3 \(views \[0, 1, 2\]\)"):
        decode_view(sample, 3, spec)


def test_rerun_writes_nothing_and_other_settings_are_refused(image_shards, built, tmp_path):
    out, _, settings = built
    before = _files(out / "tiny-views3")
    stats = run(str(image_shards), str(out), settings)
    assert stats.crops == 0 and all(s.written == 0 for s in stats.splits)
    assert _files(out / "tiny-views3") == before
    # a cache written before shard indexes (sidecars without entries, no index.json): indexed, nothing computed
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for sidecar in (old / "tiny-views3").glob("*/*/*-*.json"):
        sidecar.write_text(json.dumps({k: v for k, v in json.loads(sidecar.read_text()).items() if k != "index"}))
    for index in (old / "tiny-views3").glob("*/*/index.json"):
        index.unlink()
    assert run(str(image_shards), str(old), settings).crops == 0
    assert {k: v for k, v in _files(old / "tiny-views3").items() if k.endswith("index.json")} == \
        {k: v for k, v in before.items() if k.endswith("index.json")}
    with pytest.raises(CacheError, match=r"encoder\.json: this cache was made with another encoder.*'encoder_id'"):
        run(str(image_shards), str(out), dataclasses.replace(settings, seed=1))


def test_a_cache_made_on_another_device_or_precision_is_not_extended(built, tmp_path):
    """encoder.json records the device type and precision (CPU fp32 and GPU bf16 features
    differ in their bytes); a run under other ones is refused with both named, and so is a
    cache from before they were recorded. The encoder id (the weights) stays the same."""
    import json

    out, _, settings = built
    spec = read_cache_spec(str(out / "tiny-views3"))
    assert spec["compute"] == {"device": "cpu", "precision": "fp32"}
    gpu = cache_spec(settings, "cuda")
    assert gpu["compute"] == {"device": "cuda", "precision": "bf16-autocast"} and gpu["encoder_id"] == spec["encoder_id"]
    with pytest.raises(CacheError, match=r"differs in \['compute'\]\); its features were computed with "
                                           r"\{'device': 'cpu', 'precision': 'fp32'\}, this run computes "
                                           r"\{'device': 'cuda', 'precision': 'bf16-autocast'\}"):
        prepare_cache(str(out), settings, gpu)
    old = tmp_path / settings.cache_name
    old.mkdir()
    (old / SPEC).write_text(json.dumps({k: v for k, v in spec.items() if k != "compute"}))
    with pytest.raises(CacheError, match=r"computed with unrecorded settings"):
        prepare_cache(str(tmp_path), settings, spec)


def test_killed_and_rerun_job_gives_identical_output(image_shards, built, tmp_path):
    """SIGKILL the command line (on the tests' Ray, via RAY_ADDRESS) once its first shard is
    in, run again: the same bytes as the uninterrupted run with the same settings."""
    import ray

    ref_out, _, settings = built
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipelines.features", "--shards", str(image_shards), "--out", str(out),
           "--encoder", "tiny", "--views", "3", "--batch-size", "2", "--no-progress"]
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    cache = out / "tiny-views3"
    deadline = time.monotonic() + 120
    try:
        while not _complete_shards(cache):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no shard written in 120 s"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = _complete_shards(cache)
    assert 0 < len(done) < 5, "the kill came too late to leave work undone"
    print(f"killed after {time.monotonic() - deadline + 120:.1f} s with {len(done)} shard(s) done")
    # Ray stops the dead driver's encoder actor and read tasks shortly after (until then the
    # actor may still open a temporary file, which the rerun would find and remove, or not, as
    # the race goes): rerun once they have given their CPUs back, as a user's rerun would
    free_by = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < free_by, "the killed run's workers still hold CPUs after 60 s"
        time.sleep(0.1)
    stats = run(str(image_shards), str(out), settings)
    assert 0 < stats.crops < 13 * 3
    assert _files(cache) == _files(ref_out / "tiny-views3")


def _damaged_copy(image_shards, tmp_path):
    import shutil

    shutil.copytree(image_shards, tmp_path / "shards")
    return tmp_path / "shards", [tmp_path / "shards" / "synth" / "train" / sr.shard_name("synth", "train", i)
                                 for i in range(4)]


def test_damaged_image_shards_stop_features_before_it_starts(image_shards, tmp_path, capsys):
    """A shard cut at a sample boundary, one cut mid-sample, one deleted, one with a foreign
    sample appended: `python -m pipelines.features` names all four in one error, exits 2,
    writes no cache."""
    from pipelines.features import main
    from test_shard_index import assert_lists, damage

    shards, paths = _damaged_copy(image_shards, tmp_path)
    damaged = damage(paths, keep=1)
    out = tmp_path / "features"
    assert main(["--shards", str(shards), "--out", str(out), "--encoder", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: shard check: 4 problem(s)\n" in err and "rerun `make shards`" in err
    assert_lists(err, damaged)
    assert not out.exists()


def test_an_image_shard_cut_after_the_check_stops_features(image_shards, built, tmp_path):
    """A cut no size shows (the index made to agree with the cut file): the read task stops
    at the shard's end naming it and the counts; its feature shard is never written."""
    from test_shard_index import cut_at_sample, repoint_index

    _, _, settings = built
    shards, paths = _damaged_copy(image_shards, tmp_path)
    cut_at_sample(paths[1], 1)
    repoint_index(paths[1])
    with pytest.raises(sr.ShardError, match=f"{paths[1]}: read 0 of the 3 samples its index lists, then the tar ends"):
        run(str(shards), str(tmp_path / "features"), settings)
    assert not (tmp_path / "features" / "tiny-views3" / "synth" / "train" / paths[1].name).exists()


def _reference_tar(image_shard: Path, settings: FeatureSettings, encoder_id: str) -> bytes:
    """The feature tar as the single writer on the driver wrote it before the actors did: the
    shard's crops in key then view order, `encode_crops` in float16 on chunks of `batch_size`,
    members <key>.enc (at view 0), <key>.v<v>.f16 (C-order), .npz, .tgt per crop."""
    import io

    import torch

    from pipelines.tar import TarWriter

    encoder = load_encoder(settings.encoder, settings.ckpt, settings.seed)
    crops, members = [], []
    for rec, jpg in sr.iter_shard(str(image_shard)):
        try:
            image = sr.decode_jpeg(jpg)
        except sr.ShardError:
            continue
        for view, img in views(rec.replace(source=""), image, settings.views, settings.seed, settings.augment):
            crops.append(img)
            members.append((rec.key, view))
    feats = [f for i in range(0, len(crops), settings.batch_size)
             for f in encode_crops(encoder, np.stack(crops[i:i + settings.batch_size]), "cpu", torch.float16)]
    out = io.BytesIO()
    tar = TarWriter(out)
    for (key, view), f in zip(members, feats):
        if view.view == 0:
            tar.add(f"{key}.enc", encoder_id.encode())
        tar.add(f"{key}.v{view.view}.f16", f.tobytes())
        tar.add(f"{key}.v{view.view}.npz", view.to_npz_bytes())
        tar.add(f"{key}.v{view.view}.tgt", view.to_targets_bytes())
    tar.close()
    return out.getvalue()


def test_actors_write_the_single_writers_bytes_whichever_writes_a_shard(image_shards, built, tmp_path):
    """Every feature tar the actors wrote is, byte for byte, the tar of one sequential writer
    (`_reference_tar`), its index entry that file's size, count and CRC-32; and two encoders
    sharing the shards (`assign`) in this process, without Ray, write the same files."""
    import zlib

    out, _, settings = built
    cache = out / "tiny-views3"
    spec = read_cache_spec(str(cache))
    for dataset, split in LAYOUT:
        for shard in sr.list_shards(image_shards, dataset, split):
            name = shard.rsplit("/", 1)[1]
            want = _reference_tar(Path(shard), settings, spec["encoder_id"])
            assert (cache / dataset / split / name).read_bytes() == want, name
            entry = json.loads((cache / dataset / split / name.replace(".tar", ".json")).read_text())["index"]
            assert entry == {"samples": len({m.split(".")[0] for m in _names(want)}), "bytes": len(want),
                             "crc32": f"{zlib.crc32(want):08x}"}
    other = tmp_path / "tiny-views3"
    work = []
    for dataset, split in LAYOUT:
        (other / dataset / split).mkdir(parents=True)
        for i, shard in enumerate(sr.list_shards(image_shards, dataset, split)):
            work.append(_Work(shard, str(other / dataset / split), LAYOUT[dataset, split][i], index=len(work)))
    plans = assign(work, 2)
    assert sorted(w.index for p in plans for w in p) == list(range(len(work)))
    assert [[w.samples for w in p] for p in plans] == [[3, 3, 2], [3, 3]]  # largest first, to the least loaded
    for plan in plans:
        encoder = ShardEncoder(settings, "cpu", spec["encoder_id"])
        done = list(encoder.encode_shards((w, read_shard(w.shard, w.samples, settings)) for w in plan))
        assert sorted(d["index"] for d in done) == sorted(w.index for w in plan)
    for p in other.rglob("*.tar"):
        assert p.read_bytes() == (cache / p.relative_to(other)).read_bytes()


def _names(tar_bytes: bytes) -> list[str]:
    import io

    return tarfile.open(fileobj=io.BytesIO(tar_bytes)).getnames()


def test_the_storage_printed_before_a_run_is_the_caches_size(image_shards, built):
    out, _, settings = built
    cache = out / "tiny-views3"
    spec = read_cache_spec(str(cache))
    sets = sorted(LAYOUT)
    need = storage_needed(str(image_shards), str(cache), sets, [], settings, spec)
    assert (need.samples, need.samples_todo, need.views, need.feature_bytes) == (14, 0, 3, 32 * 16 * 12 * 2)
    tars = sorted(cache.glob("*/*/*.tar"))
    ok = sum(1 for t in tars for _ in iter_feature_shard(str(t), spec))
    written = sum(t.stat().st_size for t in tars)
    # the estimate counts every image sample (the corrupt one too) and no end-of-archive blocks
    assert 0 < (need.samples - 1) * need.sample_bytes <= written <= need.samples * need.sample_bytes + 10240 * len(tars)
    assert ok == 13
    with tarfile.open(tars[0]) as t:  # one view's members as written: header + data padded to 512 bytes
        first = t.getmembers()[0].name.split(".")[0]
        view0 = [m for m in t.getmembers() if m.name.startswith(f"{first}.v0.")]
    assert need.view_bytes == sum(512 + -(-m.size // 512) * 512 for m in view0)
    text = need.describe()
    assert text.startswith("storage: 14 samples x 3 view(s) x ") and "(feature map 12288 B" in text
    assert "this run writes 0 kB" in text and " free there" in text


def test_device_defaults():
    s = FeatureSettings()
    assert (s.for_device("cpu").batch_size, s.for_device("cpu").pad_multiple) == (32, 0)
    assert (s.for_device("cuda").batch_size, s.for_device("cuda").pad_multiple) == (256, 32)
    assert FeatureSettings(batch_size=8, pad_multiple=0).for_device("cuda").batch_size == 8
