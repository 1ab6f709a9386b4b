"""eval.evaluate / eval.predict through their command lines, on a hand-made feature cache
(the layout of pipelines/features.py), synthetic assets and a checkpoint in the layout
`make train` writes (an untrained tiny model: the numbers are not the point here, the
counting, the tables, the figures and the errors are)."""
import csv
import io
import json
import tarfile
import zlib

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from datasets.record import PersonFrame, make_key
from eval import evaluate as E
from eval import tables as T
from eval.protocols import PROTOCOLS

PRESET = "def-m-tiny"
FEATURE_HW = (16, 12)
# protocol dataset -> (raw folder under RAW (datasets/assets.yaml), sequences, samples per sequence)
# protocol -> (dataset, raw folder under RAW (datasets/assets.yaml), sequences, samples per sequence)
LAYOUT = {"3dpw": ("3dpw", "3DPW", ("courtyard_a", "office_b"), (3, 2)),
          "rich": ("rich", "rich", ("Gym_010", "Pavallion_002"), (2, 2)),
          "emdb": ("emdb", "emdb", ("P0/09_outdoor_walk",), (3,)),
          "3dhp": ("mpi_inf_3dhp", "mpi_inf_3dhp", ("TS1", "TS5"), (2, 2))}
IMAGE_HW = (360, 480)
CROP_K = np.array([[400.0, 0, 95.5], [0, 400.0, 127.5], [0, 0, 1]])  # the records' crop camera


def _model_config():
    from model.config import get_config

    return get_config(PRESET, feature_hw=FEATURE_HW)


def _record(dataset, sequence, frame, rng):
    from model.geometry import crop_affine

    pose = rng.normal(scale=0.2, size=(24, 3))
    pose[0] = [np.pi, 0.0, 0.0]
    if dataset == "rich":
        pose[22:] = 0.0
    center, size = np.array([240.0, 180.0]) + rng.normal(scale=5, size=2), np.array([180.0, 240.0])
    joints_only = dataset == "mpi_inf_3dhp"  # its ground truth is univ_annot3 joints, no SMPL
    joints = np.concatenate([rng.normal(scale=0.4, size=(24, 3)) + [0, 0, 4.0], np.ones((24, 1))], 1)
    return PersonFrame(
        key=make_key(dataset, "test", sequence, frame, 0), dataset=dataset, split="test", sequence=sequence,
        frame=frame, person=0, image_path=f"images/{sequence}/{frame:05d}.jpg", image_hw=np.array(IMAGE_HW),
        box_center=center, box_size=size, box_expand=1.2, smpl_pose=pose, betas=rng.normal(scale=0.5, size=10),
        smpl_transl=np.array([0.0, 0.3, 6.0]), gender=("male", "female")[frame % 2],
        joints_3d=joints if joints_only else np.zeros((24, 4)), keypoints_2d=np.zeros((24, 3)),
        has_smpl=not joints_only, has_transl=not joints_only, synthetic=True,
        body_model="smplx" if dataset == "rich" else "smpl", crop_affine=crop_affine(center, size),
        intrinsics=None if joints_only else CROP_K).validate()


def _write_cache(features, raw, spec, rng, extra_manifest_rows=0):
    from pipelines.features import MANIFEST_SCHEMA
    from pipelines.shard_index import index_split

    cache = features / "tiny"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "encoder.json").write_text(json.dumps(spec))
    shape = tuple(spec["storage"]["shape"])
    for dataset, raw_dir, seqs, counts in LAYOUT.values():
        d = cache / dataset / "test"
        d.mkdir(parents=True, exist_ok=True)
        rows, members, image_samples = [], [], []
        frame = 0
        for seq, n in zip(seqs, counts):
            for _ in range(n):
                rec = _record(dataset, seq, frame, rng)
                frame += 1
                feats = rng.normal(size=shape).astype("<f2")
                members += [(f"{rec.key}.enc", spec["encoder_id"].encode()), (f"{rec.key}.v0.f16", feats.tobytes()),
                            (f"{rec.key}.v0.npz", rec.to_npz_bytes())]
                rows.append(dict(key=rec.key, shard=f"{dataset}-test-000000.tar", image_shard=f"{dataset}-test-000000.tar",
                                 views=1, status="ok", reason=None))
                crop = np.full((256, 192, 3), 40 + 15 * frame, np.uint8)
                image_samples.append((rec.key, cv2.imencode(".jpg", crop)[1].tobytes(), rec.to_npz_bytes()))
                img = np.full((*IMAGE_HW, 3), 60 + 20 * frame, np.uint8)
                path = raw / raw_dir / rec.image_path
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img)
        rows += [dict(key=make_key(dataset, "test", "rejected", i, 0), shard=None, image_shard=None, views=0,
                      status="rejected", reason="corrupt_image") for i in range(2)]
        rows += [dict(key=make_key(dataset, "test", "lost", i, 0), shard=None, image_shard=None, views=1,
                      status="ok", reason=None) for i in range(extra_manifest_rows)]
        with tarfile.open(d / f"{dataset}-test-000000.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in sorted(members):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), d / "manifest.parquet")
        index_split(str(d))  # a tar made by `tarfile`: indexed as shards made before indexes are
        # the image shards' manifest: the frames rejected before cropping (3DPW: invalid camera pose)
        from pipelines.shards import MANIFEST_SCHEMA as IMAGE_SCHEMA

        img_dir = features.parent / "shards" / dataset / "test"
        img_dir.mkdir(parents=True, exist_ok=True)
        img_rows = [dict(key=r["key"], dataset=dataset, split="test", shard=r["image_shard"], status="ok", reason=None,
                         bytes=1) for r in rows if r["views"]]
        img_rows += [dict(key=make_key(dataset, "test", "campose", i, 0), dataset=dataset, split="test", shard=None,
                          status="rejected", reason="invalid_camera_pose: campose_valid 0", bytes=None) for i in range(3)]
        pq.write_table(pa.Table.from_pylist(img_rows, schema=IMAGE_SCHEMA), img_dir / "manifest.parquet")
        # the image shards themselves (crops + records): the samples a predictions file is scored on
        from pipelines.shard_reader import resolve
        from pipelines.shards import write_tar

        write_tar(resolve(img_dir)[0], str(img_dir / f"{dataset}-test-000000.tar"), sorted(image_samples))
        index_split(str(img_dir))
    return cache


def _write_checkpoint(path, assets, cfg, preset=PRESET, meta=None):
    from model.deforhmr import DeforHMR

    torch.manual_seed(0)
    model = DeforHMR.from_assets(cfg, assets)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "model_config": cfg.to_dict(), "model_preset": preset,
                "train_config": {"data": {"cache": "tiny"}},
                "meta": meta or {"synthetic": True, "features": str(path.parents[3] / "features" / "tiny")}}, path)
    return path


@pytest.fixture(scope="module")
def tree(synthetic_assets, tmp_path_factory):
    from pipelines.features import FeatureSettings, cache_spec

    root = tmp_path_factory.mktemp("evaltree")
    spec = cache_spec(FeatureSettings(encoder="tiny"), "cpu")
    cache = _write_cache(root / "features", root / "raw", spec, np.random.default_rng(0))
    ckpt = _write_checkpoint(root / "runs" / "demo" / "checkpoints" / "best.ckpt", synthetic_assets, _model_config())
    return {"root": root, "assets": synthetic_assets.root, "spec": spec, "cache": cache, "ckpt": ckpt,
            "run": root / "runs" / "demo"}


def _args(tree, *extra):
    return ["--run", str(tree["run"]), "--features", str(tree["root"] / "features"), "--assets", str(tree["assets"]),
            "--raw", str(tree["root"] / "raw"), "--shards", str(tree["root"] / "shards"), "--device", "cpu",
            "--examples", "2", "--worst", "2", *extra]


@pytest.fixture(scope="module")
def first_eval(tree):
    assert E.main(_args(tree, "--run-id", "first")) == 0
    return tree["run"] / "eval"


def test_eval_writes_table_json_csv_and_figures(tree, first_eval, capsys):
    rows = T.load_rows(first_eval / "results.json")
    measured = [r for r in rows if r.kind != "reported"]
    expected_n = {name: sum(counts) for name, (_, _, _, counts) in LAYOUT.items()}
    # every protocol x {model, mean pose} x 3 metrics, each over exactly the manifest's ok rows
    assert {(r.method, r.dataset, r.metric) for r in measured} == {
        (m, ds, metric) for m in (PRESET, T.MEAN_POSE_METHOD) for ds in LAYOUT for metric in PROTOCOLS[ds].metrics}
    for r in measured:
        assert r.n_samples == expected_n[r.dataset] and r.synthetic and r.run_id == "first"
        assert np.isfinite(r.value_mm) and r.value_mm > 0
    assert [r for r in rows if r.kind == "reported"] == T.reported_rows()
    md = (first_eval / "results.md").read_text()
    assert "SYNTHETIC" in md.splitlines()[0]
    assert "| DeforHMR | reported (paper Table 1) | 38.3 | 63.6 | 75.2 |" in md
    assert "3dpw: 5 person-frames in 2 sequences" in md and "at the shards 3 invalid_camera_pose, at the features 2 corrupt_image" in md
    with open(first_eval / "per_sequence.csv") as f:
        seq_rows = list(csv.DictReader(f))
    got = {(r["method"], r["dataset"], r["sequence"]): int(r["n_samples"]) for r in seq_rows}
    for ds, (_, _, seqs, counts) in LAYOUT.items():
        for s, n in zip(seqs, counts):
            assert got[(PRESET, ds, s)] == n and got[(T.MEAN_POSE_METHOD, ds, s)] == n
    # the per-sequence means average back to the table's number
    for ds in LAYOUT:
        per = [r for r in seq_rows if r["method"] == PRESET and r["dataset"] == ds]
        mean = sum(float(r["mpjpe_mm"]) * int(r["n_samples"]) for r in per) / expected_n[ds]
        table = [r for r in measured if r.method == PRESET and r.dataset == ds and r.metric == "mpjpe"][0]
        assert abs(mean - table.value_mm) < 0.01
    # MPI-INF-3DHP: PCK / AUC in %, no PVE
    assert {r["pck_pct"] != "" for r in seq_rows if r["dataset"] == "3dhp"} == {True}
    assert {r["pve_mm"] for r in seq_rows if r["dataset"] == "3dhp"} == {""}
    assert "MPI-INF-3DHP PCK@150 ↑" in md and "EMDB PVE ↓" in md
    # results.json keeps the model's per-sample errors, by key
    _, evaluations = T.load_results(first_eval / "results.json")
    ev = {e.dataset: e for e in evaluations if e.run_id == "first"}
    assert set(ev) == set(LAYOUT) and all(e.method == PRESET and e.coverage is None for e in ev.values())
    for ds, e in ev.items():
        values = e.per_sample["mpjpe"]
        assert len(e.per_sample["key"]) == len(values) == expected_n[ds]
        table = [r for r in measured if r.method == PRESET and r.dataset == ds and r.metric == "mpjpe"][0]
        assert abs(np.mean(values) - table.value_mm) < 0.001
    figs = sorted(p.name for p in (first_eval / "figures").iterdir())
    assert figs == sorted(f"{ds}_{k}.png" for ds in LAYOUT
                          for k in ("best", "worst", "attention_best", "attention_worst", "worst_sheet"))


def test_rerun_appends_under_a_new_run_id(tree, first_eval):
    assert E.main(_args(tree, "--run-id", "second", "--protocols", "3dpw", "--examples", "0")) == 0
    rows = T.load_rows(first_eval / "results.json")
    assert sum(r.run_id == "first" for r in rows) == 2 * sum(len(PROTOCOLS[p].metrics) for p in LAYOUT)  # untouched
    assert sum(r.run_id == "second" for r in rows) == 2 * 3
    assert sum(r.kind == "reported" for r in rows) == len(T.reported_rows())
    with open(first_eval / "per_sequence.csv") as f:
        assert {r["run_id"] for r in csv.DictReader(f)} == {"first", "second"}


def test_scores_match_a_direct_protocol_computation(tree, synthetic_assets):
    """The evaluator's per-sample numbers = Protocol.score on the model's own meshes."""
    loaded = E.load_run(tree["run"], None, synthetic_assets, torch.device("cpu"))
    cache = E.open_cache(str(tree["root"] / "features"), loaded)
    proto = PROTOCOLS["rich"]
    res = E.evaluate_protocol(proto, loaded, cache, synthetic_assets, "m", batch_size=3)
    shards, ok, rejected = E.split_counts(cache, proto)
    assert res.n == ok == 4 and rejected == {"corrupt_image": 2}
    samples = list(E.iter_samples(shards, cache.spec))
    from eval.protocols import load_ground_truth, load_regressor

    with torch.no_grad():
        pred = loaded.model(torch.from_numpy(np.stack([f for f, _ in samples]))).vertices.numpy()
    gt = load_ground_truth(proto, synthetic_assets).vertices(
        np.stack([r.smpl_pose for _, r in samples]), np.stack([r.betas for _, r in samples]), [r.gender for _, r in samples])
    direct = proto.score(pred, gt, load_regressor(proto, synthetic_assets))
    for m in T.MESH_METRICS:
        np.testing.assert_allclose(res.values("m", m), direct[m], rtol=1e-5)
    # the mean-pose baseline is scored on the same samples
    assert len(res.values(T.MEAN_POSE_METHOD, "pve")) == 4


@pytest.mark.parametrize("name", ["3dpw", "rich"])
def test_mean_pose_baseline_is_the_mean_parameter_body(tree, synthetic_assets, name):
    """The baseline rows score the neutral SMPL at the mean parameters of the assets'
    `smpl_mean_params.npz`: with the decoder's heads zeroed the model outputs exactly that
    body (IEF from the mean, zero residuals), so its rows and the baseline's agree sample by
    sample; and the baseline equals `Protocol.score` of the mean body built here."""
    from eval.protocols import load_ground_truth, load_regressor
    from model.body_model import BodyModel, load_mean_params
    from model.geometry import rot6d_to_matrix

    loaded = E.load_run(tree["run"], None, synthetic_assets, torch.device("cpu"))
    with torch.no_grad():
        for head in (loaded.model.head_pose, loaded.model.head_betas, loaded.model.head_cam):
            head.weight.zero_()
            head.bias.zero_()
    cache = E.open_cache(str(tree["root"] / "features"), loaded)
    proto = PROTOCOLS[name]
    res = E.evaluate_protocol(proto, loaded, cache, synthetic_assets, "zeroed", batch_size=3)
    assert res.n == sum(LAYOUT[name][3])
    for m in proto.metrics:
        np.testing.assert_allclose(res.values("zeroed", m), res.values(T.MEAN_POSE_METHOD, m), rtol=1e-5, atol=1e-3)

    mean = load_mean_params(synthetic_assets.require("mean_params"))
    rot = rot6d_to_matrix(torch.from_numpy(mean["pose"]).reshape(1, 24, 6))  # (1, 24, 3, 3)
    body = BodyModel(synthetic_assets.body_model_dir, "neutral")
    with torch.no_grad():
        vertices = body(betas=torch.from_numpy(mean["shape"])[None], body_pose=rot[:, 1:],
                        global_orient=rot[:, :1]).vertices.numpy()  # (1, 6890, 3)
    shards, _, _ = E.split_counts(cache, proto)
    records = [r for _, r in E.iter_samples(shards, cache.spec)]
    genders = [r.gender for r in records]
    gt = load_ground_truth(proto, synthetic_assets).vertices(
        np.stack([r.smpl_pose for r in records]), np.stack([r.betas for r in records]), genders)
    want = proto.score(np.repeat(vertices, len(records), 0), gt, load_regressor(proto, synthetic_assets), genders)
    for m in proto.metrics:
        np.testing.assert_allclose(res.values(T.MEAN_POSE_METHOD, m), want[m], rtol=1e-5, atol=1e-3)
        assert np.all(want[m] > 1), m  # the ground truth is not the mean body


def test_results_gather_chunks_per_method_and_metric():
    res = E.ProtocolResult(PROTOCOLS["3dpw"])
    res.add("m", {"pa_mpjpe": [1.0, 2.0], "mpjpe": [3.0, 4.0], "pve": [5.0, 6.0]})
    res.add("m", {"pa_mpjpe": [7.0], "mpjpe": [8.0], "pve": [9.0]})
    assert res.values("m", "pve").tolist() == [5.0, 6.0, 9.0] and res.values("m", "pve").dtype == np.float64
    # float32 chunks (a metric computed in float32) come back float64: the split's means sum in float64
    f32 = E.ProtocolResult(PROTOCOLS["3dpw"])
    f32.add("m", {"pa_mpjpe": np.float32([0.1]), "mpjpe": np.float32([0.2]), "pve": np.float32([0.3, 0.4])})
    assert f32.values("m", "pve").dtype == np.float64
    assert f32.values("m", "pve").tolist() == [float(np.float32(0.3)), float(np.float32(0.4))]
    empty = E.ProtocolResult(PROTOCOLS["3dpw"], errors={"m": {"pve": []}})
    assert empty.values("m", "pve").shape == (0,)


def test_batches_score_into_one_result_in_the_samples_order(synthetic_assets):
    """`_score_batch` over two batches of a joints protocol (3DHP: its ground truth is read
    from the records by the protocol's joints): the keys and sequences of both batches in
    order, the model's and the mean pose's errors equal to Protocol.score of all the samples
    at once, and the result marked synthetic when any batch holds a synthetic sample (the
    first here; the second, and the assets, are not)."""
    from eval.protocols import Prediction, load_ground_truth, load_regressor

    proto = PROTOCOLS["3dhp"]
    rng = np.random.default_rng(3)
    records = [_record("mpi_inf_3dhp", seq, frame, rng) for seq, frame in (("TS1", 0), ("TS1", 1), ("TS5", 2))]
    records[2] = records[2].replace(synthetic=False)
    pred = rng.normal(scale=0.3, size=(3, 6890, 3))
    baseline = rng.normal(scale=0.3, size=(6890, 3))
    reg = load_regressor(proto, synthetic_assets)
    res = E.ProtocolResult(proto, gt_body=load_ground_truth(proto, synthetic_assets), regressor=reg, synthetic=False)
    E._score_batch(res, "m", Prediction(vertices=pred[:2]), records[:2], baseline)
    E._score_batch(res, "m", Prediction(vertices=pred[2:]), records[2:], baseline)
    assert res.keys == [r.key for r in records] and res.n == 3
    assert res.sequences == ["TS1", "TS1", "TS5"]
    assert res.synthetic is True
    gt = load_ground_truth(proto, synthetic_assets).of_records(records, proto)
    want = proto.score(Prediction(vertices=pred), gt, reg)
    want_mean = proto.score(Prediction(vertices=np.repeat(baseline[None], 3, 0)), gt, reg)
    for m in proto.metrics:
        np.testing.assert_allclose(res.values("m", m), want[m], rtol=1e-6)
        np.testing.assert_allclose(res.values(T.MEAN_POSE_METHOD, m), want_mean[m], rtol=1e-6)
    assert not np.allclose(want["mpjpe"], want_mean["mpjpe"])  # the two methods are told apart


def test_gendered_option_scores_the_ground_truth_by_each_samples_gender(tree, synthetic_assets, monkeypatch):
    """`rich-gendered`: the evaluator hands every sample's gender to the protocol, so its
    ground-truth joints come from that gender's matrix. The synthetic SMPL files share one
    J_regressor across genders, so distinct male / female matrices are put in here."""
    from eval.protocols import JointRegressors, load_ground_truth, load_regressor

    loaded = E.load_run(tree["run"], None, synthetic_assets, torch.device("cpu"))
    cache = E.open_cache(str(tree["root"] / "features"), loaded)
    proto = PROTOCOLS["rich-gendered"]
    base = load_regressor(proto, synthetic_assets)
    regs = JointRegressors(base.pred, {"male": np.roll(base.pred, 7, axis=1), "female": np.roll(base.pred, 13, axis=1)})
    monkeypatch.setattr(E, "load_regressor", lambda protocol, assets: regs)
    res = E.evaluate_protocol(proto, loaded, cache, synthetic_assets, "m", batch_size=3)
    shards, _, _ = E.split_counts(cache, proto)
    samples = list(E.iter_samples(shards, cache.spec))
    with torch.no_grad():
        pred = loaded.model(torch.from_numpy(np.stack([f for f, _ in samples]))).vertices.numpy()
    genders = [r.gender for _, r in samples]
    assert set(genders) == {"male", "female"}
    gt = load_ground_truth(proto, synthetic_assets).vertices(
        np.stack([r.smpl_pose for _, r in samples]), np.stack([r.betas for _, r in samples]), genders)
    direct = proto.score(pred, gt, regs, genders)
    shared = PROTOCOLS["rich"].score(pred, gt, regs, genders)
    for m in T.MESH_METRICS:
        np.testing.assert_allclose(res.values("m", m), direct[m], rtol=1e-5)
        assert np.all(np.abs(direct[m] - shared[m]) > 1e-3), m


def test_gendered_option_is_selectable_and_shown_in_the_results(tree, first_eval):
    assert E.main(_args(tree, "--run-id", "bedlam", "--protocols", "rich-gendered", "--examples", "0")) == 0
    rows = [r for r in T.load_rows(first_eval / "results.json") if r.run_id == "bedlam"]
    assert {(r.method, r.dataset) for r in rows} == {(PRESET, "rich-gendered"), (T.MEAN_POSE_METHOD, "rich-gendered")}
    assert len(rows) == 2 * 3 and all(r.n_samples == sum(LAYOUT["rich"][3]) for r in rows)
    md = (first_eval / "results.md").read_text()
    assert "rich-gendered PA-MPJPE ↓" in md and "RICH PA-MPJPE ↓" in md  # its own column group beside Table 1's
    assert ("- rich-gendered: rich/test, 24 joints by the 'smpl' regressor, ground-truth mesh 'smplx_to_smpl' "
            "(joints: gendered regressor)") in md
    assert "BEDLAM train/dataset/dataset.py" in md


def test_incomplete_shards_are_an_error(tree, synthetic_assets, tmp_path):
    _write_cache(tmp_path / "features", tmp_path / "raw", tree["spec"], np.random.default_rng(1), extra_manifest_rows=1)
    loaded = E.load_run(tree["run"], None, synthetic_assets, torch.device("cpu"))
    cache = E.open_cache(str(tmp_path / "features"), loaded)
    with pytest.raises(E.EvalError, match="scored 5 samples but the manifest .* lists 6 ok"):
        E.evaluate_protocol(PROTOCOLS["3dpw"], loaded, cache, synthetic_assets, "m")


def _copy_for_damage(tree, tmp_path):
    """(features root, run folder) copies of the tree's, to damage."""
    import shutil

    shutil.copytree(tree["root"] / "features", tmp_path / "features")
    shutil.copytree(tree["run"], tmp_path / "run", ignore=shutil.ignore_patterns("eval"))
    return tmp_path / "features", tmp_path / "run"


@pytest.mark.parametrize("kinds", [("cut at a sample boundary", "foreign sample appended"),
                                   ("cut mid-sample", "deleted")])
def test_damaged_shards_stop_eval_before_it_scores(tree, tmp_path, capsys, kinds):
    """Both protocols' shards damaged: one error names both, exit 2, nothing written."""
    from test_shard_index import assert_lists, damage

    features, run = _copy_for_damage(tree, tmp_path)
    damaged = damage([features / "tiny" / d / "test" / f"{d}-test-000000.tar" for d in ("3dpw", "rich")], kinds)
    assert E.main(_args(tree, "--run", str(run), "--features", str(features))) == 2
    err = capsys.readouterr().err
    assert "eval: error: shard check: 2 problem(s)\n" in err
    assert_lists(err, damaged)
    assert not (run / "eval").exists()


def test_a_shard_damaged_after_the_check_stops_eval(tree, tmp_path, capsys):
    """Damage no size shows (the index made to agree with the file): a cut at a sample
    boundary stops at the shard's end, a flipped byte at the checksum; exit 2, nothing written."""
    from test_shard_index import cut_at_sample, repoint_index

    features, run = _copy_for_damage(tree, tmp_path)
    shard = features / "tiny" / "3dpw" / "test" / "3dpw-test-000000.tar"
    whole = shard.read_bytes()
    cut_at_sample(shard, 3)
    repoint_index(shard)
    assert E.main(_args(tree, "--run", str(run), "--features", str(features))) == 2
    assert f"{shard}: read 2 of the 5 samples its index lists, then the tar ends" in capsys.readouterr().err
    shard.write_bytes(whole)
    with tarfile.open(shard) as tar:
        at = next(m.offset_data for m in tar.getmembers() if m.name.endswith(".f16"))
    flipped = bytearray(whole)
    flipped[at + 100] ^= 0xFF  # inside a feature map: the same size, the same samples
    shard.write_bytes(bytes(flipped))
    index = json.loads((shard.parent / "index.json").read_text())
    index["shards"][shard.name].update(bytes=len(whole), crc32=f"{zlib.crc32(whole):08x}")
    (shard.parent / "index.json").write_text(json.dumps(index))
    assert E.main(_args(tree, "--run", str(run), "--features", str(features))) == 2
    assert f"{shard}: {len(whole)} bytes of crc32" in capsys.readouterr().err
    assert not (run / "eval").exists()


def test_features_of_another_encoder_are_refused(tree, synthetic_assets, tmp_path):
    spec = json.loads(json.dumps(tree["spec"]))
    spec["storage"]["shape"] = [1280, 16, 12]
    spec["encoder"]["encoder"] = "vitpose-h"
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "encoder.json").write_text(json.dumps(spec))
    loaded = E.load_run(tree["run"], None, synthetic_assets, torch.device("cpu"))
    with pytest.raises(E.EvalError, match="encoder 'vitpose-h' have shape \\[1280, 16, 12\\].*another encoder"):
        E.open_cache(str(tmp_path), loaded)
    loaded.meta["encoder_id"] = "vitpose-h-0123456789abcdef"
    with pytest.raises(E.EvalError, match="another encoder"):
        E.open_cache(str(tree["root"] / "features"), loaded)


def test_checkpoint_of_another_preset_is_refused(tree, synthetic_assets, tmp_path):
    train_config = pytest.importorskip("train.config")
    run = tmp_path / "run"
    run.mkdir()
    cfg = train_config.from_dict({"model": {"preset": PRESET, "feature_hw": list(FEATURE_HW)}, "data": {"cache": "tiny"}})
    cfg.save(run / "config.yaml")
    from model.config import get_config

    other = _write_checkpoint(run / "checkpoints" / "best.ckpt", synthetic_assets,
                              get_config("reg-s-tiny", feature_hw=FEATURE_HW), preset="reg-s-tiny")
    with pytest.raises(E.EvalError, match="'reg-s-tiny' model but .*config.yaml is preset 'def-m-tiny'"):
        E.load_run(run, other, synthetic_assets, torch.device("cpu"))
    assert E.main(["--run", str(run), "--features", str(tree["root"] / "features"), "--assets",
                   str(tree["assets"]), "--device", "cpu"]) == 2


def test_missing_things_are_clear_errors(tree, tmp_path, capsys):
    # no checkpoint in the run
    assert E.main(["--run", str(tmp_path / "nothing"), "--features", str(tmp_path), "--assets", str(tree["assets"])]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    # a missing asset names itself and where it was expected
    assert E.main(_args(tree, "--assets", str(tmp_path / "empty"))) == 2  # the last --assets wins
    err = capsys.readouterr().err
    assert "missing asset" in err and "expected at" in err
    # a named protocol without feature shards
    assert E.main(_args(tree, "--protocols", "rich", "--features", str(tmp_path / "nofeatures"))) == 2
    assert "not a feature cache" in capsys.readouterr().err


def test_predict_writes_overlay_npz_obj(tree, tmp_path):
    from eval import predict as P

    img = np.full((300, 400, 3), 90, np.uint8)
    cv2.rectangle(img, (150, 40), (250, 280), (200, 120, 80), -1)
    cv2.imwrite(str(tmp_path / "in.jpg"), img)
    out = tmp_path / "pred" / "out.png"
    assert P.main([str(tmp_path / "in.jpg"), "--box", "150,40,100,240", "--run", str(tree["run"]), "--out", str(out),
                   "--assets", str(tree["assets"]), "--device", "cpu"]) == 0
    pic = cv2.imread(str(out))
    assert pic.shape == (300, 700, 3)  # overlay (400 wide) + side view (300)
    z = np.load(out.with_suffix(".npz"))
    assert z["vertices"].shape == (6890, 3) and bool(z["synthetic"])
    np.testing.assert_allclose(z["vertices_camera"], z["vertices"] + z["cam_t"], atol=1e-6)
    obj = out.with_suffix(".obj").read_text().splitlines()
    assert sum(line.startswith("v ") for line in obj) == 6890 and sum(line.startswith("f ") for line in obj) == 13776
    with pytest.raises(P.EvalError, match="x,y,w,h"):
        P.parse_box("1,2,3")


# ---- any method's predictions file (eval.predictions), scored under the same protocols ----------
SCORED = ("3dpw", "rich", "emdb", "3dhp")  # rich-gendered: GT joints by another matrix, never 0 by design


def _pred_args(tree, pred, protocol, out, *extra):
    return ["--pred", str(pred), "--protocol", protocol, "--shards", str(tree["root"] / "shards"),
            "--assets", str(tree["assets"]), "--raw", str(tree["root"] / "raw"), "--out", str(out),
            "--worst", "0", "--device", "cpu", *extra]


def _records(tree, name):
    return E.split_records(str(tree["root"] / "shards"), PROTOCOLS[name])


def _ground_truth_file(tree, assets, name, path, order=None):
    """A predictions file holding the ground truth itself: the mesh, or (3DHP) the scored joints."""
    from eval.predictions import write_npz
    from eval.protocols import load_ground_truth

    proto = PROTOCOLS[name]
    recs = _records(tree, name)
    gt = load_ground_truth(proto, assets).of_records(recs, proto)
    keys = [r.key for r in recs]
    order = np.arange(len(keys)) if order is None else order
    if proto.has_mesh:
        return write_npz(path, [keys[i] for i in order], vertices=gt.vertices[order])
    return write_npz(path, [keys[i] for i in order], joints=gt.joints[:, proto.gt_eval_index][order])


def _file_evaluation(out):
    rows, evals = T.load_results(out / "results.json")
    return [r for r in rows if r.kind == "measured"], evals[-1]


@pytest.mark.parametrize("name", SCORED)
def test_predictions_built_from_the_ground_truth_score_zero(tree, synthetic_assets, tmp_path, name, capsys):
    pred = _ground_truth_file(tree, synthetic_assets, name, tmp_path / "gt.npz")
    assert E.main(_pred_args(tree, pred, name, tmp_path / "out", "--worst", "2" if name in ("3dpw", "3dhp") else "0")) == 0
    rows, ev = _file_evaluation(tmp_path / "out")
    n = len(_records(tree, name))
    assert {r.metric for r in rows} == set(PROTOCOLS[name].metrics) and {r.n_samples for r in rows} == {n}
    perfect = {"pck": 100.0, "auc": 100.0 * 30 / 31}  # AUC's 0 mm threshold: `error < 0` never holds
    for r in rows:
        assert r.value_mm == pytest.approx(perfect.get(r.metric, 0.0), abs=1e-3), (r.metric, r.value_mm)
    assert ev.coverage == {"samples": n, "scored": n, "missing": 0, "extra": 0, "missing_examples": [],
                           "extra_examples": []} and ev.input == f"predictions {pred}"
    assert sorted(ev.per_sample["key"]) == sorted(r.key for r in _records(tree, name))
    md = (tmp_path / "out" / "results.md").read_text()
    assert f"| gt | measured, run gt@" in md and "PARTIAL" not in md
    if name in ("3dpw", "3dhp"):  # the worst-case contact sheet
        assert (tmp_path / "out" / "figures" / f"{name}_worst_sheet.png").stat().st_size > 10_000


def test_smpl_parameters_score_as_the_neutral_mesh_they_give(tree, synthetic_assets, tmp_path):
    """`pose` (axis-angle), `rotmat` and `betas` are the neutral SMPL's: the same numbers as its vertices."""
    from scipy.spatial.transform import Rotation

    from eval.predictions import write_npz
    from model.body_model import BodyModel

    recs = _records(tree, "emdb")
    keys = [r.key for r in recs]
    pose = np.stack([r.smpl_pose for r in recs]).astype(np.float64)
    betas = np.stack([r.betas for r in recs]).astype(np.float64)
    body = BodyModel(synthetic_assets.body_model_dir, "neutral")
    with torch.no_grad():
        verts = body(betas=torch.tensor(betas, dtype=torch.float32), body_pose=torch.tensor(pose[:, 1:], dtype=torch.float32),
                     global_orient=torch.tensor(pose[:, :1], dtype=torch.float32)).vertices.numpy()
    rotmat = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(len(keys), 24, 3, 3)
    files = {"vertices": write_npz(tmp_path / "v.npz", keys, vertices=verts),
             "pose": write_npz(tmp_path / "p.npz", keys, pose=pose.reshape(len(keys), 72), betas=betas),
             "rotmat": write_npz(tmp_path / "r.npz", keys, rotmat=rotmat, betas=betas)}
    got = {}
    for kind, path in files.items():
        assert E.main(_pred_args(tree, path, "emdb", tmp_path / kind)) == 0
        got[kind] = _file_evaluation(tmp_path / kind)[1].per_sample
    for kind in ("pose", "rotmat"):
        for m in ("mpjpe", "pa_mpjpe", "pve"):
            np.testing.assert_allclose(got[kind][m], got["vertices"][m], atol=2e-3)
    assert min(got["vertices"]["pve"]) > 1.0  # gendered ground truth vs the neutral body: not zero


def test_a_runs_own_outputs_score_what_the_run_scores(tree, first_eval, tmp_path):
    assert E.main(_args(tree, "--run-id", "saved", "--save-predictions", "--examples", "0", "--worst", "0")) == 0
    rows, evals = T.load_results(first_eval / "results.json")
    for name in SCORED:
        run_ev = [e for e in evals if e.run_id == "saved" and e.dataset == name][0]
        pred = first_eval / "predictions" / f"{name}.npz"
        assert E.main(_pred_args(tree, pred, name, tmp_path / name, "--method", PRESET)) == 0
        file_rows, file_ev = _file_evaluation(tmp_path / name)
        by_key = {k: i for i, k in enumerate(file_ev.per_sample["key"])}
        order = [by_key[k] for k in run_ev.per_sample["key"]]
        for m in PROTOCOLS[name].metrics:
            np.testing.assert_allclose(np.array(file_ev.per_sample[m])[order], run_ev.per_sample[m], atol=2e-3,
                                       err_msg=(name, m))
        run_rows = {(r.method, r.metric): r.value_mm for r in rows if r.run_id == "saved" and r.dataset == name}
        for r in file_rows:
            assert r.value_mm == pytest.approx(run_rows[(r.method, r.metric)], abs=1e-3), (name, r.method, r.metric)


def test_shuffled_keys_score_the_same(tree, synthetic_assets, tmp_path):
    from eval.predictions import write_npz

    recs = _records(tree, "3dpw")
    keys = [r.key for r in recs]
    rng = np.random.default_rng(3)
    verts = _ground_truth_file(tree, synthetic_assets, "3dpw", tmp_path / "gt.npz")
    v = np.load(verts)["vertices"] + rng.normal(scale=0.02, size=(len(keys), 6890, 3))  # something to score
    order = rng.permutation(len(keys))
    write_npz(tmp_path / "a.npz", keys, vertices=v)
    write_npz(tmp_path / "b.npz", [keys[i] for i in order], vertices=v[order])
    got = {}
    for f in ("a", "b"):
        assert E.main(_pred_args(tree, tmp_path / f"{f}.npz", "3dpw", tmp_path / f, "--method", "m")) == 0
        rows, ev = _file_evaluation(tmp_path / f)
        got[f] = ({(r.metric, round(r.value_mm, 6)) for r in rows if r.method == "m"},
                  dict(zip(ev.per_sample["key"], ev.per_sample["pve"])))
    assert got["a"] == got["b"] and min(got["a"][1].values()) > 1.0


def test_partial_file_scores_the_covered_part_and_says_so(tree, synthetic_assets, tmp_path, capsys):
    from eval.predictions import write_npz

    full = np.load(_ground_truth_file(tree, synthetic_assets, "3dpw", tmp_path / "gt.npz"))
    keys = [str(k) for k in full["key"]]
    extra = make_key("3dpw", "test", "not_a_sample", 7, 0)
    write_npz(tmp_path / "part.npz", keys[2:] + [extra],
              vertices=np.concatenate([full["vertices"][2:], full["vertices"][:1]]))
    assert E.main(_pred_args(tree, tmp_path / "part.npz", "3dpw", tmp_path / "out")) == 0
    out = capsys.readouterr().out
    assert "3 of the 5 samples of 3dpw scored; PARTIAL: 2 samples have no prediction" in out
    assert f"1 keys are not samples of 3dpw (e.g. {extra})" in out
    rows, ev = _file_evaluation(tmp_path / "out")
    assert {r.n_samples for r in rows} == {3}
    assert ev.coverage["missing"] == 2 and ev.coverage["extra"] == 1 and ev.coverage["scored"] == 3
    assert ev.coverage["missing_examples"] == keys[:2] and ev.coverage["extra_examples"] == [extra]
    assert "PARTIAL: the numbers are over the covered samples only" in (tmp_path / "out" / "results.md").read_text()


def _bad_files(tree, assets, tmp_path):
    """name -> (protocol, path, the error's words) of malformed predictions files."""
    from eval.predictions import write_npz

    gt = np.load(_ground_truth_file(tree, assets, "3dpw", tmp_path / "gt.npz"))
    keys, v = [str(k) for k in gt["key"]], gt["vertices"]
    nan = v.copy()
    nan[3, 10, 1] = np.nan
    joints = np.load(_ground_truth_file(tree, assets, "3dhp", tmp_path / "gt3dhp.npz"))
    rich = [r.key for r in _records(tree, "rich")]
    return {
        "shape": ("3dpw", write_npz(tmp_path / "shape.npz", keys, vertices=v[:, :6000]),
                  f"shape.npz: field 'vertices' has shape (5, 6000, 3), expected (5, 6890, 3) (first key '{keys[0]}')"),
        "nan": ("3dpw", write_npz(tmp_path / "nan.npz", keys, vertices=nan),
                f"nan.npz: field 'vertices' has NaN or infinite values for 1 keys, the first '{keys[3]}' (row 3)"),
        "joint count": ("3dhp", write_npz(tmp_path / "j14.npz", [str(k) for k in joints["key"]],
                                          joints=joints["joints"][:, :14]),
                        "j14.npz: field 'joints' has shape (4, 14, 3), expected (4, 17, 3): 14 joints per sample, "
                        "protocol 3dhp scores 17"),
        "other protocol": ("3dpw", write_npz(tmp_path / "rich.npz", rich, vertices=v[:len(rich)]),
                           f"rich.npz: field 'key': key '{rich[0]}' is not a 3dpw/test key"),
        "repeated key": ("3dpw", write_npz(tmp_path / "twice.npz", keys[:2] + keys[:1], vertices=v[:3]),
                         f"twice.npz: field 'key': key '{keys[0]}' appears twice (rows 0 and 2)"),
        "what is needed": ("3dpw", write_npz(tmp_path / "joints.npz", keys, joints=np.zeros((5, 14, 3))),
                           "joints.npz: protocol 3dpw needs 'vertices' (N, 6890, 3) or SMPL parameters"),
    }


def test_malformed_files_are_named_errors_and_write_nothing(tree, synthetic_assets, tmp_path, capsys):
    for case, (protocol, path, words) in _bad_files(tree, synthetic_assets, tmp_path).items():
        out = tmp_path / f"out-{case.replace(' ', '-')}"
        assert E.main(_pred_args(tree, path, protocol, out)) == 2, case
        err = capsys.readouterr().err
        assert words in err, (case, err)
        assert not out.exists(), case  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder left


def test_parquet_predictions_score_as_the_npz(tree, synthetic_assets, tmp_path):
    import pyarrow as pa

    gt = np.load(_ground_truth_file(tree, synthetic_assets, "3dhp", tmp_path / "gt.npz"))
    joints = gt["joints"] + np.random.default_rng(0).normal(scale=0.05, size=gt["joints"].shape)
    np.savez(tmp_path / "j.npz", key=gt["key"], joints=joints)
    pq.write_table(pa.table({"key": [str(k) for k in gt["key"]], "joints": [j.tolist() for j in joints]}),
                   tmp_path / "j.parquet")
    got = {}
    for suffix in ("npz", "parquet"):
        assert E.main(_pred_args(tree, tmp_path / f"j.{suffix}", "3dhp", tmp_path / suffix, "--method", "m")) == 0
        got[suffix] = _file_evaluation(tmp_path / suffix)[1].per_sample
    assert got["npz"] == got["parquet"] and min(got["npz"]["mpjpe"]) > 1.0


def test_export_lists_the_protocol_samples_for_a_round_trip(tree, synthetic_assets, tmp_path):
    from eval import export as X
    from eval.predictions import write_npz
    from eval.protocols import load_ground_truth

    assert X.main(["--protocol", "3dhp", "--shards", str(tree["root"] / "shards"), "--out", str(tmp_path / "3dhp")]) == 0
    table = pq.read_table(tmp_path / "3dhp.parquet").to_pylist()
    header = json.loads((tmp_path / "3dhp.json").read_text())
    recs = _records(tree, "3dhp")
    assert [r["key"] for r in table] == [r.key for r in recs] == [r["key"] for r in header["sample_rows"]]
    assert header["predictions"]["joints_order"] == list(PROTOCOLS["3dhp"].eval_joints) and header["samples"] == 4
    row, rec = table[0], recs[0]
    assert row["image_path"] == rec.image_path and row["image_h"] == IMAGE_HW[0]
    np.testing.assert_allclose(np.reshape(row["crop_affine"], (2, 3)), rec.crop_affine, atol=1e-6)
    assert all(np.isnan(row["box_tight"])) and all(np.isnan(row["intrinsics"]))  # not in these hand-made records
    # the crop box maps onto the whole crop: its corners go to the crop's corners
    A = np.reshape(row["crop_affine"], (2, 3))
    (cx, cy), (w, h) = row["box_center"], row["box_size"]
    corner = A @ np.array([cx + w / 2, cy + h / 2, 1.0])
    np.testing.assert_allclose(corner, [192 - 0.5, 256 - 0.5], atol=1e-3)
    # round trip: a file keyed by the export's keys scores
    gt = load_ground_truth(PROTOCOLS["3dhp"], synthetic_assets).of_records(recs, PROTOCOLS["3dhp"])
    order = [header["predictions"]["joints_order"].index(n) for n in PROTOCOLS["3dhp"].eval_joints]
    write_npz(tmp_path / "p.npz", [r["key"] for r in table],
              joints=gt.joints[:, PROTOCOLS["3dhp"].gt_eval_index][:, order])
    assert E.main(_pred_args(tree, tmp_path / "p.npz", "3dhp", tmp_path / "out")) == 0
    # a protocol without shards is a named error
    assert X.main(["--protocol", "emdb", "--shards", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
