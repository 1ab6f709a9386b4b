"""The LightningModule: one DeforHMR decoder trained on cached features.

Per step (`step_losses`, optionally `torch.compile`d: `trainer.compile`): model(features)
-> ModelOutput; targets (with the target mesh from the model's own neutral body model) ->
`train.losses.compute_losses`. The step reads nothing back from the device: a non-finite
loss is recorded on the device (`LossWatch`) and looked at every
`trainer.log_every_n_steps` steps, at checkpoint steps and at each epoch's last batch; one
found on any rank stops the run on every rank with `NonFiniteLossError` naming the step
and the batch keys. Metrics are logged as tensors; the learning rate by Lightning's
LearningRateMonitor (train/run.py) at logging steps. AdamW (paper, supplement A; fused
where torch has the kernel) with the pure step schedule of `train.schedule`.

Validation scores the held-out split exactly as `make eval` scores a test split: the
evaluation protocol of its dataset (`eval.protocols.PROTOCOLS`; 3DPW: H36M regressor,
LSP-14, pelvis root, gendered SMPL ground truth) with its regressor and ground-truth body
(`ValProtocol`), through `eval.metrics`. Per-sample errors are summed over ranks, so
`val/pa_mpjpe` (mm) is the mean over the whole split; it selects the best checkpoint.

Checkpoints carry, besides Lightning's state (weights under `model.` — without the body
model's buffers, which come from the assets —, optimizer, scheduler, loops):
- `train_config`: the resolved TrainConfig (train.config `to_dict`);
- `model_config`: every ModelConfig key; `model_preset`: the preset name it came from;
- `meta`: {"synthetic": bool (trained on synthetic samples or with synthetic assets),
  "assets": str, "features": str, "steps_per_epoch": int}.
"""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from eval.protocols import PROTOCOLS, Protocol, load_ground_truth, load_regressor
from model.deforhmr import DeforHMR
from train.batch import pad_batch
from train.config import ConfigError, TrainConfig
from train.losses import TARGET_FIELDS, TERMS, compute_losses, make_targets
from train.schedule import lr_factor

MAX_KEYS_IN_ERROR = 32
BODY_PREFIX = "model.body_model."  # SMPL buffers: from the assets, left out of checkpoints


STEP_FIELDS = ("features", *TARGET_FIELDS)  # the batch tensors a training step reads
LR_NAME = "train/lr"  # logged by LearningRateMonitor (train/run.py)
# trainer.compile -> torch.compile arguments
COMPILE_ARGS = {"default": {}, "reduce-overhead": {"mode": "reduce-overhead"},
                "max-autotune": {"mode": "max-autotune"}, "aot_eager": {"backend": "aot_eager"}}


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the batch keys."""


class LossWatch:
    """Finds a non-finite loss without reading the loss back to the host each step.

    `record` keeps on the device the first step whose loss was not finite, and its loss and
    terms (a few tensor ops: no synchronisation); the host keeps the (epoch, batch, keys) of
    each step since the last check. `first_bad_step` reads the device record (one sync) and
    `clear` forgets the checked steps.
    """

    def __init__(self):
        self.bad_step: torch.Tensor | None = None  # () int64, -1 = none
        self.bad_values: torch.Tensor | None = None  # (1 + len(TERMS),) loss, then TERMS
        self.steps: dict[int, tuple[int, int, list[str]]] = {}

    def record(self, step: int, epoch: int, batch_idx: int, keys: list[str], loss: torch.Tensor,
               terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([loss.detach(), *(terms[k].detach() for k in TERMS)]).float()  # (1 + T,)
        if self.bad_step is None:
            self.bad_step = torch.full((), -1, dtype=torch.long, device=values.device)
            self.bad_values = torch.zeros_like(values)
        first = ~torch.isfinite(values[0]) & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_values = torch.where(first, values, self.bad_values)
        self.steps[step] = (epoch, batch_idx, list(keys))

    def first_bad_step(self) -> int:
        """The first recorded step with a non-finite loss, or -1 (reads the device)."""
        return -1 if self.bad_step is None else int(self.bad_step)

    def clear(self) -> None:
        self.steps.clear()


@dataclass
class ValProtocol:
    """What validation scores with: an `eval.protocols` protocol, its vertex-to-joint
    regressor and its ground-truth body builder (`.vertices(pose, betas, genders)`)."""

    protocol: Protocol
    regressor: object
    ground_truth: object

    @classmethod
    def for_dataset(cls, dataset: str, assets) -> "ValProtocol":
        if dataset not in PROTOCOLS:
            raise ConfigError(f"data.val_dataset {dataset!r} has no evaluation protocol (eval.protocols); "
                              f"known: {sorted(PROTOCOLS)}, or \"\" for no validation")
        p = PROTOCOLS[dataset]
        return cls(p, load_regressor(p, assets), load_ground_truth(p, assets))


def fused_adamw_available(params: list[torch.Tensor]) -> bool:
    """True when torch has a fused AdamW kernel for these parameters (CUDA; CPU since torch
    2.4): one kernel for the whole update instead of a loop over the parameters."""
    try:
        torch.optim.AdamW([torch.zeros(1, device=p.device, dtype=p.dtype) for p in params[:1]], fused=True)
    except RuntimeError:
        return False
    return bool(params) and all(p.is_floating_point() for p in params)


class DeforHMRModule(L.LightningModule):
    def __init__(self, cfg: TrainConfig, model: DeforHMR, meta: dict | None = None,
                 val: ValProtocol | None = None):
        super().__init__()
        self.cfg, self.model, self.val = cfg, model, val
        self.meta = dict(meta or {})
        self.meta.setdefault("synthetic", False)
        self._val_sums: dict[str, torch.Tensor] = {}
        self.watch = LossWatch()
        t = cfg.trainer
        # fixed shapes (dynamic=False; a short batch is padded, `pad_batch`), so a compiled
        # step is one graph, which mode "reduce-overhead" replays as a CUDA graph
        self._step_losses = self.step_losses if t.compile == "off" else torch.compile(
            self.step_losses, dynamic=False, **COMPILE_ARGS[t.compile])

    # ---- training ---------------------------------------------------------------------------
    def forward(self, features: torch.Tensor):
        return self.model(features)

    def step_losses(self, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's computation on the STEP_FIELDS tensors of a batch: (total, {term: value})."""
        out = self.model(tensors["features"])
        return compute_losses(out, make_targets(tensors, self.model.body_model), self.cfg.loss)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        tensors = {k: batch[k] for k in STEP_FIELDS}
        bs = batch["features"].shape[0]
        if self.cfg.trainer.compile != "off":
            tensors = pad_batch(tensors, self.cfg.optim.global_batch // self.trainer.world_size)
        loss, terms = self._step_losses(tensors)
        self.watch.record(self.global_step, self.current_epoch, batch_idx, batch["key"], loss, terms)
        if self._finite_check_due(batch_idx):
            self._stop_if_not_finite()
        self.log("train/loss", loss, batch_size=bs)  # not prog_bar: read back every step (run.ProgressBar)
        for k in TERMS:
            self.log(f"train/{k}", terms[k], batch_size=bs)
        return loss

    def _finite_check_due(self, batch_idx: int) -> bool:
        """Every `log_every_n_steps` steps, at a step whose checkpoint `checkpoint_every_n_steps`
        writes, and at the epoch's last batch (before the epoch-end checkpoint): the checks
        come before any checkpoint of the weights the bad step touched."""
        t, step = self.cfg.trainer, self.global_step + 1  # steps done after this one
        every_ckpt = t.checkpoint_every_n_steps
        return (step % t.log_every_n_steps == 0 or (every_ckpt > 0 and step % every_ckpt == 0)
                or batch_idx + 1 >= self.trainer.num_training_batches)

    def _stop_if_not_finite(self) -> None:
        bad_step = self.watch.first_bad_step()  # the one read of the device
        bad_here = bad_step >= 0
        if not self.trainer.strategy.reduce_boolean_decision(bad_here, all=False):
            self.watch.clear()
            return
        if not bad_here:
            raise NonFiniteLossError(f"non-finite loss on another rank (found at step {self.global_step}); "
                                     f"this rank ({self.global_rank}) stops with it")
        epoch, batch_idx, keys = self.watch.steps[bad_step]
        shown = ", ".join(keys[:MAX_KEYS_IN_ERROR]) + (f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_IN_ERROR else "")
        loss, *values = self.watch.bad_values.tolist()
        terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(TERMS, values))
        raise NonFiniteLossError(
            f"non-finite loss {loss} at step {bad_step} (epoch {epoch}, batch {batch_idx}, rank {self.global_rank}; "
            f"found at step {self.global_step}); terms: {terms}; batch keys: {shown}")

    def configure_optimizers(self):
        o = self.cfg.optim
        params = list(self.model.parameters())
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.adam_betas),
                                fused=fused_adamw_available(params))
        # total steps from the fixed epoch length (Lightning's `estimated_stepping_batches` would
        # iterate the train loader before a resume restores the step the stream starts at)
        total = max(o.epochs * int(self.meta.get("steps_per_epoch", 1)), 1)
        sched = LambdaLR(opt, lambda step: lr_factor(step, total, o.schedule, o.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "name": LR_NAME}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip the gradient norm (`optim.grad_clip`) with torch directly: Lightning's mixed-
        precision plugin refuses clipping with a fused optimizer even under bf16, which has no
        GradScaler (the gradients are plain; fp16 with a scaler is not used here)."""
        if gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), gradient_clip_val)

    # ---- validation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch["features"])
        has = batch["has_smpl"]
        if not bool(has.any()):
            return
        idx = has.nonzero().squeeze(1).cpu().numpy()
        gt = self.val.ground_truth.vertices(batch["smpl_pose"][has], batch["betas"][has],
                                            [batch["gender"][i] for i in idx])  # (n, 6890, 3), CPU
        scores = self.val.protocol.score(out.vertices[has].float(), gt, self.val.regressor)
        for k, v in scores.items():
            s = self._val_sums.setdefault(k, torch.zeros(2, dtype=torch.float64, device=self.device))
            s += torch.tensor([float(v.sum()), len(v)], dtype=torch.float64, device=self.device)

    def on_validation_epoch_end(self) -> None:
        for k in ("pa_mpjpe", "mpjpe", "pve"):
            s = self._val_sums.get(k, torch.zeros(2, dtype=torch.float64, device=self.device))
            s = self.trainer.strategy.reduce(s.clone(), reduce_op="sum")  # whole split over ranks
            if s[1] > 0:
                self.log(f"val/{k}", (s[0] / s[1]).float(), prog_bar=k == "pa_mpjpe", sync_dist=False)

    # ---- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the body model comes from the assets, never from a checkpoint (eval/evaluate.py)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith(BODY_PREFIX)}
        checkpoint["train_config"] = self.cfg.to_dict()
        checkpoint["model_config"] = self.model.cfg.to_dict()
        checkpoint["model_preset"] = self.cfg.model.get("preset")
        served_synthetic = bool(getattr(self.trainer.datamodule, "served_synthetic", False)) if self._trainer else False
        self.meta["synthetic"] = bool(self.meta["synthetic"]) or served_synthetic
        checkpoint["meta"] = dict(self.meta)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        body = {BODY_PREFIX + k: v for k, v in self.model.body_model.state_dict().items()}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **body}  # called before the weights load
        saved = checkpoint.get("meta", {})
        self.meta["synthetic"] = bool(self.meta.get("synthetic")) or bool(saved.get("synthetic"))
