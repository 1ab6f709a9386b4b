"""Train a DeforHMR decoder on cached features.

    python -m train --config train/configs/def-m.yaml --features data/features --run runs/def-m
    python -m train --run runs/def-m --features data/features --resume     # continue from last.ckpt
    make train CONFIG=train/configs/def-m.yaml FEATURES=data/features RUN=runs/def-m [RESUME=1]

Options: `--assets DIR` (SMPL, H36M regressor, mean parameters; default: for synthetic data the
stand-ins it was made with, which its SYNTHETIC markers name (`datasets.assets.assets_for_data`;
other assets are refused for it), else datasets/assets.yaml or $ASSETS), `--set
section.key=value` (repeatable, YAML value, on top of the config).

Several GPUs on one node: set `trainer.devices` (Lightning starts the other ranks). Several
nodes: `trainer.num_nodes` and start one process per GPU with torchrun or SLURM `srun`
(docs/training.md, docs/scale-out.md); Lightning reads their environment.

The run folder:
    RUN/config.yaml              resolved config (every key; the model's preset and keys)
    RUN/checkpoints/last.ckpt    latest state (end of each epoch, every n steps if set)
    RUN/checkpoints/best.ckpt    lowest validation PA-MPJPE
    RUN/logs/version_<k>/        CSV metrics (metrics.csv), one version per start/resume
    RUN/tb/version_<k>/          TensorBoard events
    RUN/loss_curves.png          training terms per step and validation errors per epoch
A new run refuses a RUN that already holds a config; `--resume` reads RUN/config.yaml,
restores weights, optimizer, scheduler and step from last.ckpt, and continues the same data
stream. `--set` on resume changes the saved config (e.g. `optim.epochs=150` to extend);
a `--config` given with `--resume` must resolve to the saved config.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from datasets.assets import assets_for_data, is_synthetic
from datasets.errors import USER_ERRORS, InputError, fail
from datasets.progress import Progress, is_terminal
from model.checkpoint import CheckpointError
from model.checkpoint import load as load_checkpoint
from model.deforhmr import DeforHMR
from pipelines.shard_reader import join, read_split_marker
from train.config import ConfigError, TrainConfig, load_config, load_resolved, with_sets
from train.data import FeatureDataModule
from train.module import DeforHMRModule, NonFiniteLossError, ValProtocol
from train.plots import plot_run

CONFIG_NAME = "config.yaml"
CKPT_DIR = "checkpoints"
LAST = "last"
BEST = "best"
MONITOR = "val/pa_mpjpe"
RESUME_KEYS = ("state_dict", "optimizer_states", "loops")  # what Lightning restores a run from


# DDP: every parameter gets a gradient each step and the graph never changes (static_graph:
# DDP can skip the unused-parameter search and fix its buckets after the first step); the
# module's buffers are constants (mean parameters, camera, sampling grids), never broadcast.
# (The CUDA backward of grid_sample accumulates with atomics: runs are not bit-reproducible.)
DDP_ARGS = dict(find_unused_parameters=False, static_graph=True, broadcast_buffers=False)


class RunError(InputError, RuntimeError):
    """The run folder and the command disagree (exists / nothing to resume / config differs)."""


def resolve_config(run: Path, config: str | None, sets: list[str], resume: bool) -> TrainConfig:
    """The config of this invocation (see the module doc for the resume rules)."""
    saved_path = run / CONFIG_NAME
    if not resume:
        if saved_path.exists() and _first_process():
            raise RunError(f"{run} already holds a run ({saved_path}); pass --resume to continue it "
                           f"or choose a new RUN")
        return load_config(config, sets)
    if not saved_path.exists():
        raise RunError(f"--resume: {saved_path} not found; nothing to resume in {run}")
    cfg = with_sets(load_resolved(saved_path), sets, source=f"{saved_path} + --set")
    if config is not None:
        given = load_config(config, sets)
        if diff := given.diff(cfg):
            raise RunError(f"--resume: {config} (with --set) differs from {saved_path} in {diff}; a resumed "
                           f"run keeps its config (change it with --set, or start a new RUN)")
    return cfg


def _first_process() -> bool:
    """Global rank 0 — known from the launcher's environment (torchrun RANK, SLURM_PROCID,
    Lightning's LOCAL_RANK / NODE_RANK for the processes its `ddp` launcher starts, which
    re-run this command after rank 0 has written the config) before DDP is set up."""
    return rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def resolve_runtime(cfg: TrainConfig) -> dict:
    """Lightning Trainer arguments that 'auto' config values stand for on this machine."""
    t = cfg.trainer
    accel = t.accelerator
    if accel == "auto":
        accel = "gpu" if torch.cuda.is_available() else "cpu"
    on_gpu = accel in ("gpu", "cuda")
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if on_gpu else "32-true")
    devices = t.devices
    if devices == -1 and not on_gpu:
        devices = 1
    world = (torch.cuda.device_count() if devices == -1 else devices) * t.num_nodes
    strategy = t.strategy
    if strategy == "auto" and world > 1:
        strategy = DDPStrategy(**DDP_ARGS)
    return dict(accelerator=accel, devices=devices, num_nodes=t.num_nodes, precision=precision,
                strategy=strategy, on_gpu=on_gpu)


class LossCurves(Callback):
    """Rewrite RUN/loss_curves.png after each validation and at the end (rank 0)."""

    def __init__(self, run: Path):
        self.run = run

    def _write(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.save()
            plot_run(self.run)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer)


class ProgressBar(TQDMProgressBar):
    """Lightning's bar with the training loss, read from the device only when the bar
    refreshes (every `log_every_n_steps` steps): a metric logged with `prog_bar=True` is
    read back after every step, a device sync per step."""

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        if (loss := trainer.callback_metrics.get("train/loss")) is not None:
            items["loss"] = f"{float(loss):.4g}"
        return items


class ProgressLines(Callback):
    """Where stderr is not a terminal (a log file): instead of the bar, a plain line every
    `datasets.progress.PROGRESS_SECONDS`, at the next logging step (`trainer.log_every_n_steps`):
    step of all, steps/s, epoch, loss. The loss is read only there, where Lightning reads it
    from the device anyway (no sync of its own)."""

    def __init__(self, every: float | None = None):
        self.every = every  # None: datasets.progress.PROGRESS_SECONDS
        self.bar: Progress | None = None

    @rank_zero_only
    def on_train_start(self, trainer, pl_module) -> None:
        # a resumed run counts on from its step
        total = trainer.estimated_stepping_batches
        self.bar = Progress(int(total) if math.isfinite(total) else None, "train", "steps", bar=False, every=self.every,
                            initial=trainer.global_step)

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # lines on logging steps only: there Lightning has read the loss from the device already
        if not trainer.log_every_n_steps or trainer.global_step % trainer.log_every_n_steps:
            return
        if self.bar.due():
            loss = trainer.callback_metrics.get("train/loss")
            self.bar.set_postfix(epoch=trainer.current_epoch, **({} if loss is None else {"loss": f"{float(loss):.4g}"}))
        self.bar.update(trainer.global_step - self.bar.n)

    @rank_zero_only
    def on_train_end(self, trainer, pl_module) -> None:
        self.bar.close()


def build_trainer(cfg: TrainConfig, run: Path, runtime: dict, has_val: bool, extra_callbacks=()) -> L.Trainer:
    ckpt_dir = run / CKPT_DIR
    last = dict(dirpath=ckpt_dir, filename=LAST, monitor=None, save_top_k=1, enable_version_counter=False)
    callbacks: list[Callback] = [
        # last.ckpt (one file, overwritten): at each epoch end, and every n steps when set
        ModelCheckpoint(every_n_epochs=1, save_on_train_epoch_end=True, **last),
        *([ModelCheckpoint(every_n_train_steps=n, **last)] if (n := cfg.trainer.checkpoint_every_n_steps) else []),
        LossCurves(run),
        LearningRateMonitor(logging_interval="step"),  # at logging steps only (no per-step tensor from a float)
        *extra_callbacks,
    ]
    progress = is_terminal()
    callbacks.append(ProgressBar(refresh_rate=cfg.trainer.log_every_n_steps) if progress else ProgressLines())
    if has_val:  # best.ckpt: lowest validation PA-MPJPE, saved after validation
        callbacks.insert(1, ModelCheckpoint(dirpath=ckpt_dir, filename=BEST, monitor=MONITOR, mode="min",
                                            save_top_k=1, auto_insert_metric_name=False,
                                            enable_version_counter=False))
    loggers = [CSVLogger(save_dir=run, name="logs"),
               TensorBoardLogger(save_dir=run, name="tb", default_hp_metric=False)]
    return L.Trainer(
        accelerator=runtime["accelerator"], devices=runtime["devices"], num_nodes=runtime["num_nodes"],
        strategy=runtime["strategy"], precision=runtime["precision"],
        max_epochs=cfg.optim.epochs, gradient_clip_val=cfg.optim.grad_clip or None,
        check_val_every_n_epoch=cfg.trainer.val_every_n_epochs, log_every_n_steps=cfg.trainer.log_every_n_steps,
        callbacks=callbacks, logger=loggers, default_root_dir=run, num_sanity_val_steps=0,
        use_distributed_sampler=False, enable_progress_bar=progress, enable_model_summary=False,
        limit_val_batches=None if has_val else 0,
    )


def best_score(trainer: L.Trainer) -> float | None:
    """The best monitored validation value so far (None without validation)."""
    for cb in trainer.checkpoint_callbacks:
        if cb.monitor == MONITOR and cb.best_model_score is not None:
            return float(cb.best_model_score)
    return None


def check_resumable(last: Path) -> None:
    """RunError unless `last` is a whole checkpoint of a training run: read here first
    (`model.checkpoint.load`: one line for a truncated or unreadable file), then by Lightning."""
    try:
        ckpt = load_checkpoint(last, "training checkpoint")
    except FileNotFoundError:
        raise RunError(f"--resume: {last} not found; nothing to resume") from None
    except CheckpointError as e:
        raise RunError(f"--resume: {e}") from None
    missing = [k for k in RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise RunError(f"--resume: {last} is not a checkpoint of a training run (lacks {missing})")


def train(cfg: TrainConfig, features: str | Path, run: str | Path, resume: bool = False,
          assets: str | Path | None = None, extra_callbacks=()) -> L.Trainer:
    """Fit `cfg` on the feature tree `features` into the run folder `run`; returns the Trainer."""
    run = Path(run)
    runtime = resolve_runtime(cfg)
    last = run / CKPT_DIR / f"{LAST}.ckpt"
    if resume:
        check_resumable(last)
    dm = FeatureDataModule(cfg.data, str(features), cfg.optim.global_batch, cfg.trainer.seed,
                           pin_memory=runtime["on_gpu"])
    mc = cfg.model_config()
    if dm.feature_shape != (mc.context_dim, *mc.feature_hw):
        raise ConfigError(f"{dm.root}/encoder.json: the cache holds features {dm.feature_shape}, the model "
                          f"expects (model.context_dim, *model.feature_hw) = {(mc.context_dim, *mc.feature_hw)}; "
                          f"pick the matching data.cache or model keys")
    L.seed_everything(cfg.trainer.seed, workers=False, verbose=False)
    splits = [join(dm.root, s.dataset, s.split) for s in (*dm.sources, *([dm.val_source] if dm.val_source else []))]
    asset_paths, where = assets_for_data(assets, {d: read_split_marker(d) for d in splits})
    if where and _first_process():
        print(f"== train: {where}", flush=True)
    model = DeforHMR.from_assets(mc, asset_paths)
    synthetic_assets = model.body_model.is_synthetic or any(
        is_synthetic(asset_paths.path(n)) for n in ("mean_params", "h36m_regressor"))
    meta = {"synthetic": synthetic_assets or bool(dm.spec.get("synthetic")),
            "assets": str(asset_paths.root), "features": str(dm.root), "steps_per_epoch": dm.batches_per_epoch}
    val = ValProtocol.for_dataset(cfg.data.val_dataset, asset_paths) if dm.val_source else None
    module = DeforHMRModule(cfg, model, meta, val)
    if _first_process():
        run.mkdir(parents=True, exist_ok=True)
        cfg.save(run / CONFIG_NAME)
        print(f"== train: {run} ({'resume from ' + str(last) if resume else 'new run'}); model "
              f"{cfg.model.get('preset')} on {runtime['accelerator']} x{runtime['devices']} "
              f"x{runtime['num_nodes']} nodes, {runtime['precision']}\n{dm.describe()}", flush=True)
    trainer = build_trainer(cfg, run, runtime, dm.val_source is not None, extra_callbacks)
    with warnings.catch_warnings():
        # The stream resumes exactly by construction (train/data.py: the position is the step),
        # which Lightning cannot know of a loader without a state_dict.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # each worker serves its own share of the epoch (FeatureStream.plan), so len() is exact
        warnings.filterwarnings("ignore", message=".*IterableDataset.* has `__len__` defined.*")
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    return trainer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="training config YAML (train/configs/*.yaml); optional with --resume")
    ap.add_argument("--features", required=True, help="feature tree FEATURES/<encoder>/<dataset>/<split>")
    ap.add_argument("--run", required=True, help="run folder (runs/<name>)")
    ap.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    ap.add_argument("--assets", help="assets root (default: synthetic data's own stand-ins, named by its SYNTHETIC "
                    "markers; else datasets/assets.yaml or $ASSETS)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config key (repeatable)")
    args = ap.parse_args(argv)
    if args.config is None and not args.resume:
        ap.error("--config is required for a new run")
    run = Path(args.run)
    t0 = time.time()
    try:
        cfg = resolve_config(run, args.config, args.sets, args.resume)
        trainer = train(cfg, args.features, run, args.resume, args.assets)
    except (*USER_ERRORS, NonFiniteLossError) as e:
        return fail("train", e)
    if trainer.is_global_zero:
        best = best_score(trainer)
        print(f"== train: done in {time.time() - t0:.0f} s: {trainer.global_step} steps, "
              f"{trainer.current_epoch} epochs; best {MONITOR} = "
              f"{'n/a' if best is None else f'{best:.1f} mm'}; run folder {run}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
