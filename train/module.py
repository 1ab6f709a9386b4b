"""The LightningModule: one DeforHMR decoder trained on cached features.

Per step: model(features) -> ModelOutput; targets (with the target mesh from the model's
own neutral body model) -> `train.losses.compute_losses`; a non-finite loss on any rank
stops the run on every rank with `NonFiniteLossError` naming the step and the batch keys.
AdamW (paper, supplement A) with the pure step schedule of `train.schedule`.

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
from train.config import ConfigError, TrainConfig
from train.losses import TERMS, compute_losses, make_targets
from train.schedule import lr_factor

MAX_KEYS_IN_ERROR = 32
BODY_PREFIX = "model.body_model."  # SMPL buffers: from the assets, left out of checkpoints


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step and the batch keys."""


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


class DeforHMRModule(L.LightningModule):
    def __init__(self, cfg: TrainConfig, model: DeforHMR, meta: dict | None = None,
                 val: ValProtocol | None = None):
        super().__init__()
        self.cfg, self.model, self.val = cfg, model, val
        self.meta = dict(meta or {})
        self.meta.setdefault("synthetic", False)
        self._val_sums: dict[str, torch.Tensor] = {}

    # ---- training ---------------------------------------------------------------------------
    def forward(self, features: torch.Tensor):
        return self.model(features)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.model(batch["features"])
        targets = make_targets(batch, self.model.body_model)
        loss, terms = compute_losses(out, targets, self.cfg.loss)
        self._stop_if_not_finite(loss, terms, batch, batch_idx)
        bs = batch["features"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k in TERMS:
            self.log(f"train/{k}", terms[k], batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, terms: dict, batch: dict, batch_idx: int) -> None:
        bad_here = not bool(torch.isfinite(loss))
        bad_anywhere = self.trainer.strategy.reduce_boolean_decision(bad_here, all=False) \
            if self._trainer is not None else bad_here
        if not bad_anywhere:
            return
        if not bad_here:
            raise NonFiniteLossError(f"non-finite loss on another rank at step {self.global_step}; "
                                     f"this rank ({self.global_rank}) stops with it")
        keys = batch["key"]
        shown = ", ".join(keys[:MAX_KEYS_IN_ERROR]) + (f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_IN_ERROR else "")
        values = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"non-finite loss {float(loss)} at step {self.global_step} (epoch {self.current_epoch}, "
            f"batch {batch_idx}, rank {self.global_rank}); terms: {values}; batch keys: {shown}")

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                betas=tuple(o.adam_betas))
        # total steps from the fixed epoch length (Lightning's `estimated_stepping_batches` would
        # iterate the train loader before a resume restores the step the stream starts at)
        total = max(o.epochs * int(self.meta.get("steps_per_epoch", 1)), 1)
        sched = LambdaLR(opt, lambda step: lr_factor(step, total, o.schedule, o.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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
