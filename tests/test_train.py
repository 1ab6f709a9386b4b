"""`python -m train` end to end on tiny feature caches written here: a fixed batch is
overfit, a stopped run resumes exactly, a non-finite loss stops the run naming the step and
the keys, DDP on 2 CPU processes keeps the ranks' weights equal on different samples."""
from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from datasets.assets import is_synthetic
from model.body_model import BodyModel
from train.config import CONFIG_DIR, load_config, load_resolved
from train.module import NonFiniteLossError
from train.random_cache import write_cache_spec, write_split
from train.run import main, train

SHAPE = (32, 4, 3)  # tiny maps (the tiny encoder's are 32 x 16 x 12): fast steps
SMALL_MAPS = "model.feature_hw=[4, 3]"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest, and steadiest on a shared 2-core machine, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def only(**weights) -> str:
    """A data.mix that trains on `weights` alone (the default mix names the real datasets)."""
    mix = {"coco": 0, "mpii": 0, "h36m": 0, "mpi_inf_3dhp": 0, "3dpw": 0, **weights}
    return "data.mix={" + ", ".join(f"{k}: {v}" for k, v in mix.items()) + "}"


def cfg_of(*sets):
    return load_config(CONFIG_DIR / "demo-cpu.yaml",
                       sets=[SMALL_MAPS, "data.workers=0", "trainer.log_every_n_steps=1", "data.val_batch=8", *sets])


@pytest.fixture(scope="module")
def features(tmp_path_factory, synthetic_assets):
    """FEATURES with the cache `tiny`: 'fixed' (one shard of 8), '3dpw' (4 shards x 6, two
    views) and 'coco' (4 x 6, half without SMPL) for training, '3dpw' val (2 x 4) and
    test (2 x 6, half without SMPL, female and male, validated on by one test); and the
    cache `tiny-smpl`: the '3dpw' test samples with SMPL (the same keys, records and maps),
    for `make eval`."""
    a = synthetic_assets
    body = BodyModel(a.body_model_dir, "neutral", h36m_regressor=a.path("h36m_regressor"))
    root = tmp_path_factory.mktemp("features")
    cache = root / "tiny"
    write_cache_spec(cache, SHAPE)
    write_split(cache, "fixed", "train", 1, 8, SHAPE, body_model=body)
    write_split(cache, "3dpw", "train", 4, 6, SHAPE, views=2, body_model=body)
    write_split(cache, "coco", "train", 4, 6, SHAPE, body_model=body, has_smpl_rate=0.5)
    write_split(cache, "3dpw", "val", 2, 4, SHAPE, body_model=body)
    mixed = dict(body_model=body, has_smpl_rate=0.5, genders=("female", "male"))
    write_split(cache, "3dpw", "test", 2, 6, SHAPE, **mixed)
    write_cache_spec(root / "tiny-smpl", SHAPE)
    write_split(root / "tiny-smpl", "3dpw", "test", 2, 6, SHAPE, **mixed, keep=lambda fr: fr.has_smpl)
    return root


def losses(run: Path) -> list[float]:
    rows = []
    for f in sorted((run / "logs").glob("version_*/metrics.csv")):
        rows += [float(r["train/loss"]) for r in csv.DictReader(open(f)) if r.get("train/loss")]
    return rows


def test_overfits_a_fixed_batch_through_the_command_line(features, synthetic_assets, tmp_path):
    run = tmp_path / "run"
    sets = [SMALL_MAPS, only(fixed=1), "data.val_dataset=''", "data.views=plain", "data.shuffle_buffer=1",
            "data.workers=0", "optim.global_batch=8", "data.epoch_samples=600", "optim.epochs=1",
            "optim.lr=2.0e-3", "trainer.log_every_n_steps=1"]
    rc = main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--features", str(features), "--run", str(run),
               "--assets", str(synthetic_assets.root), *[x for s in sets for x in ("--set", s)]])
    assert rc == 0
    curve = losses(run)
    assert len(curve) == 75
    assert curve[0] / curve[-1] >= 10, curve[::6]
    assert (run / "checkpoints" / "last.ckpt").exists() and not (run / "checkpoints" / "best.ckpt").exists()
    assert (run / "loss_curves.png").stat().st_size > 0 and list((run / "tb").glob("version_0/events.*"))
    assert load_resolved(run / "config.yaml").optim.lr == 2e-3


class StopAt(Callback):
    """Stop a run abruptly before the batch of optimizer step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyError("stopped by the test")


class Probe(Callback):
    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())  # training updates it in place
        self.scheduler = copy.deepcopy(trainer.lr_scheduler_configs[0].scheduler.state_dict())


def test_a_stopped_run_resumes_exactly(features, synthetic_assets, tmp_path):
    cfg = cfg_of(only(**{"3dpw": 1, "coco": 1}), "optim.global_batch=4", "data.epoch_samples=16",
                 "optim.epochs=2", "trainer.checkpoint_every_n_steps=3", "data.shuffle_buffer=4")
    assets = synthetic_assets.root
    whole = train(cfg, features, tmp_path / "whole", assets=assets)
    assert whole.global_step == 8

    with pytest.raises(KeyError, match="stopped by the test"):
        train(cfg, features, tmp_path / "cut", assets=assets, extra_callbacks=[StopAt(6)])  # mid epoch 2
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6
    probe = Probe()
    resumed = train(load_resolved(tmp_path / "cut" / "config.yaml"), features, tmp_path / "cut", resume=True,
                    assets=assets, extra_callbacks=[probe])
    assert probe.step == 6 and probe.scheduler["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"]
    want, got = saved["optimizer_states"][0], probe.optimizer
    assert got["param_groups"] == want["param_groups"]
    for i, st in want["state"].items():
        assert int(got["state"][i]["step"]) == int(st["step"])
        assert torch.equal(got["state"][i]["exp_avg"], st["exp_avg"])
        assert torch.equal(got["state"][i]["exp_avg_sq"], st["exp_avg_sq"])
    assert resumed.global_step == 8
    a = whole.lightning_module.model.state_dict()
    b = resumed.lightning_module.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run did not continue the same training"
    assert len(list((tmp_path / "cut" / "logs").glob("version_*"))) == 2

    # what `make eval` reads: weights_only, the resolved configs, the synthetic mark
    ckpt = tmp_path / "whole" / "checkpoints" / "best.ckpt"
    c = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert c["model_preset"] == "def-m-tiny" and c["model_config"]["context_dim"] == SHAPE[0]
    assert c["train_config"] == load_resolved(tmp_path / "whole" / "config.yaml").to_dict()
    assert c["meta"]["synthetic"] and is_synthetic(ckpt)
    assert any(k.startswith("model.") for k in c["state_dict"])


def test_validation_scores_the_checkpoint_as_make_eval_does(features, synthetic_assets, tmp_path):
    """The logged val/* errors, which pick best.ckpt, equal `eval.evaluate.evaluate_protocol`
    on that checkpoint and split: validation leaves out the split's rows without SMPL (in
    mixed batches of both genders), which `make eval` refuses, so eval scores the same split
    written without them (cache `tiny-smpl`)."""
    from eval import evaluate as E
    from eval.protocols import PROTOCOLS

    run = tmp_path / "run"
    cfg = cfg_of(only(fixed=1), "optim.global_batch=4", "data.epoch_samples=8", "optim.epochs=1",
                 "data.val_split=test")
    train(cfg, features, run, assets=synthetic_assets.root)
    rows = [r for f in sorted((run / "logs").glob("version_*/metrics.csv")) for r in csv.DictReader(open(f))
            if r.get("val/pa_mpjpe")]
    assert len(rows) == 1
    loaded = E.load_run(run, run / "checkpoints" / "best.ckpt", synthetic_assets, torch.device("cpu"))
    cache = E.open_cache(str(features), loaded, "tiny-smpl")
    res = E.evaluate_protocol(PROTOCOLS["3dpw"], loaded, cache, synthetic_assets, "m")
    assert 0 < res.n < 12  # the split has rows without SMPL
    for m in ("pa_mpjpe", "mpjpe", "pve"):
        want = float(res.values("m", m).mean())
        assert want > 1 and float(rows[0][f"val/{m}"]) == pytest.approx(want, rel=1e-4), m


def test_cli_refuses_to_overwrite_or_to_resume_nothing(features, synthetic_assets, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    args = ["--features", str(features), "--run", str(run), "--assets", str(synthetic_assets.root)]
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--resume", *args]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    load_config(CONFIG_DIR / "demo-cpu.yaml").save(run / "config.yaml")
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), *args]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--set", "optim.lrate=1", *args[:2],
                 "--run", str(tmp_path / "new")]) == 2
    assert "optim.lrate" in capsys.readouterr().err
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--run", str(tmp_path / "new2"),
                 "--features", str(features), "--set", "data.val_dataset=''"]) == 2  # default mix: no coco here
    err = capsys.readouterr().err
    assert "mpii" in err and "h36m" in err and "data.mix" in err


def _damaged_copy(features, tmp_path):
    import shutil

    root = tmp_path / "features"
    shutil.copytree(features, root)
    return root, root / "tiny"


def test_damaged_shards_stop_training_before_it_starts(features, synthetic_assets, tmp_path, capsys):
    """A shard cut at a sample boundary, one cut mid-sample, one deleted, one with a foreign
    sample appended: `python -m train` names all four in one error, exits 1, writes no run."""
    from test_shard_index import assert_lists, damage

    root, cache = _damaged_copy(features, tmp_path)
    damaged = damage([cache / "3dpw" / "train" / "3dpw-train-000000.tar",
                      cache / "coco" / "train" / "coco-train-000001.tar",
                      cache / "coco" / "train" / "coco-train-000003.tar", cache / "3dpw" / "val" / "3dpw-val-000001.tar"],
                     ("cut at a sample boundary", "cut mid-sample", "foreign sample appended", "deleted"))
    run = tmp_path / "run"
    sets = [SMALL_MAPS, only(**{"3dpw": 1, "coco": 1}), "data.workers=0", "optim.epochs=1"]
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--features", str(root), "--run", str(run),
                 "--assets", str(synthetic_assets.root), *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert "train: error: shard check: 4 problem(s)\n" in err and "rerun `make features`" in err
    assert_lists(err, damaged)
    assert not run.exists()


def test_a_shard_cut_after_the_check_stops_the_epoch(features, synthetic_assets, tmp_path, capsys):
    """The issue's case: the 8-sample shard cut to 3 at a sample boundary, and its index
    entry made to agree with the cut file (so no size shows it): the first epoch stops at
    the shard's end naming it and the counts, exit 1 (it used to train on the 3 and exit 0)."""
    from test_shard_index import cut_at_sample, repoint_index

    root, cache = _damaged_copy(features, tmp_path)
    shard = cache / "fixed" / "train" / "fixed-train-000000.tar"
    cut_at_sample(shard, 3)
    repoint_index(shard)
    sets = [SMALL_MAPS, only(fixed=1), "data.val_dataset=''", "data.shuffle_buffer=1", "data.workers=0",
            "optim.global_batch=4", "data.epoch_samples=8", "optim.epochs=1"]
    assert main(["--config", str(CONFIG_DIR / "demo-cpu.yaml"), "--features", str(root), "--run", str(tmp_path / "run"),
                 "--assets", str(synthetic_assets.root), *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert f"train: error: {shard}: read 2 of the 8 samples its index lists, then the tar ends" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_a_non_finite_loss_stops_the_run_naming_step_and_keys(features, synthetic_assets, tmp_path, monkeypatch):
    import train.module as module

    real = module.compute_losses

    def poisoned(pred, targets, cfg):
        total, terms = real(pred, targets, cfg)
        return total * float("nan"), terms

    monkeypatch.setattr(module, "compute_losses", poisoned)
    cfg = cfg_of(only(fixed=1), "data.val_dataset=''", "optim.global_batch=8")
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*batch keys: fixed_train_seq_0000"):
        train(cfg, features, tmp_path / "run", assets=synthetic_assets.root)


class KeysAt(Callback):
    """The sample keys of the batch of optimizer step `step`."""

    def __init__(self, step: int):
        self.step, self.keys = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.keys = list(batch["key"])


def test_the_non_finite_check_runs_every_n_steps_and_names_the_bad_step(features, synthetic_assets, tmp_path,
                                                                         monkeypatch):
    """The step reads nothing back: a NaN at step 2 is found by the check after step 3
    (log_every_n_steps=4), which names step 2, its batch keys and its loss terms."""
    import train.module as module

    real, calls = module.compute_losses, []

    def nan_at_step_2(pred, targets, cfg):
        total, terms = real(pred, targets, cfg)
        calls.append(1)
        return (total * float("nan"), terms) if len(calls) == 3 else (total, terms)

    monkeypatch.setattr(module, "compute_losses", nan_at_step_2)
    cfg = cfg_of(only(fixed=1), "data.val_dataset=''", "optim.global_batch=4", "data.epoch_samples=40",
                 "trainer.log_every_n_steps=4")
    keys = KeysAt(2)
    with pytest.raises(NonFiniteLossError, match=r"loss nan at step 2 \(epoch 0, batch 2, rank 0; found at step 3\)"
                                                 r"; terms: pose=.*batch keys: ") as e:
        train(cfg, features, tmp_path / "run", assets=synthetic_assets.root, extra_callbacks=[keys])
    assert len(calls) == 4 and str(e.value).endswith(", ".join(keys.keys))
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_ddp_on_two_cpu_processes_keeps_weights_equal_on_different_samples(features, synthetic_assets, tmp_path):
    sets = [SMALL_MAPS, only(**{"3dpw": 1, "coco": 1}), "data.val_dataset=''", "trainer.devices=2", "trainer.accelerator=cpu",
            "optim.global_batch=8", "data.epoch_samples=24", "optim.epochs=1", "data.workers=1",
            "data.shuffle_buffer=2", "trainer.log_every_n_steps=1"]
    cmd = [sys.executable, str(REPO / "tests" / "train_recorder.py"), str(tmp_path), str(CONFIG_DIR / "demo-cpu.yaml"),
           str(features), str(tmp_path / "run"), str(synthetic_assets.root), *sets]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:  # never leave a rank behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out.decode()[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["step"] == r1["step"] == 3
    assert len(r0["keys"]) == len(r1["keys"]) == 3 * 4  # equal batches, 8 / 2 per rank
    assert not set(r0["keys"]) & set(r1["keys"]), "the ranks read the same samples"
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])


def test_resume_keeps_the_saved_config_unless_set(tmp_path):
    from train.run import RunError, resolve_config

    run = tmp_path / "run"
    run.mkdir()
    load_config(CONFIG_DIR / "def-s.yaml").save(run / "config.yaml")
    cfg = resolve_config(run, None, ["optim.epochs=150"], resume=True)
    assert cfg.optim.epochs == 150 and cfg.model["preset"] == "def-s"
    assert resolve_config(run, str(CONFIG_DIR / "def-s.yaml"), [], resume=True) == load_config(CONFIG_DIR / "def-s.yaml")
    with pytest.raises(RunError, match=r"differs .*model\.preset"):
        resolve_config(run, str(CONFIG_DIR / "def-m.yaml"), [], resume=True)
