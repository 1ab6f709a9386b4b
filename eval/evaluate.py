"""`make eval`: score a trained run, or any method's predictions file, on the standardized
protocols (3DPW test, RICH test, EMDB 1, MPI-INF-3DHP test; `eval.protocols`).

    python -m eval.evaluate --run runs/def-m --features data/features [--ckpt PATH]
        [--assets DIR] [--raw DIR] [--shards DIR] [--protocols 3dpw,rich,emdb,3dhp] [--batch-size 64]
        [--device auto] [--examples 3] [--worst 8] [--save-predictions] [--run-id ID]
    python -m eval.evaluate --pred preds.npz --protocol 3dpw [--shards DIR] [--out DIR] [--method NAME]
    make eval RUN=runs/def-m FEATURES=data/features [CKPT=...]
    make eval RUN=... EVAL_ARGS="--protocols 3dpw,rich-gendered"   # RICH with BEDLAM's GT joints
    make eval PRED=preds.npz PROTOCOL=3dpw [OUT=DIR]                # any method (docs/evaluation.md)

A run reads top to bottom:
1. run: the checkpoint (default RUN/checkpoints/best.ckpt, else last.ckpt) with its model
   config; checked against RUN/config.yaml (same model keys) and rebuilt with the assets'
   body model (`DeforHMR.from_assets`; the checkpoint's decoder weights, never its copy of
   the body model's buffers).
2. features: FEATURES/<cache> (the cache the run trained on, `data.cache`); its
   `encoder.json` must hold features of the shape the model reads (and of the encoder id
   the checkpoint names, when it names one).
3. shards, up front: the feature shards of every protocol's split (and the image shards
   under `--shards` the figures may crop from) against their per-shard indexes and
   manifests (`pipelines.shard_index.check`): every damaged shard in one error, before
   anything is scored or written. While scoring, each shard is checked again as it is
   read (size, sample count, checksum).
4. per protocol (`--protocols`, default `eval.protocols.DEFAULT_PROTOCOLS`; any of
   `PROTOCOLS`, e.g. `rich-gendered`) whose split exists in the cache: every ok
   sample of the feature manifest, view 0, in shard order -> the model's neutral mesh, the
   mean-pose mesh (baseline), the ground truth (`Protocol.ground_truth`: a mesh with its
   genders, or the record's joints) -> `Protocol.score` per sample. The number scored must
   equal the manifest's ok rows; a sample without the protocol's ground truth is an error.
   Nothing is skipped. On real data the split must be the protocol's whole split
   (`check_complete`: 3DPW 24 sequences, frames left out only for an invalid camera pose,
   read from the image shards' manifest, --shards).
5. outputs under RUN/eval/: `results.json` (long-format rows, appended under a new run id;
   the `dataset` column is the protocol's name; and each evaluation's per-sample errors),
   `results.md` (Table 1 layout, reported rows with their sources, a column group per
   protocol scored, and each protocol's declaration and source), `per_sequence.csv`, and
   `figures/` (best / worst examples with overlays and side views; Fig. 5 attention points;
   the worst-case contact sheet of each protocol). `--save-predictions` also writes the
   model's outputs as predictions files (RUN/eval/predictions/<protocol>.npz).

A predictions file (`--pred`, `eval.predictions`) is checked in full first (a malformed
file is an error naming the file, field and first offending key, and nothing is written);
its samples and ground truth are the protocol's split in the image shards (`--shards`,
checked and counted against their manifest); the covered samples are scored as a run's
are, the missing and extra keys counted; outputs go to `--out` (default `<FILE stem>-eval`
beside the file), figures staged first so that a failure leaves that folder untouched.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from datasets.assets import Assets, assets_for_data, is_synthetic
from datasets.errors import USER_ERRORS, InputError, fail
from datasets.record import PersonFrame
from eval import tables
from eval.predictions import Coverage, PredictionsFile, match, write_npz
from eval.predictions import read as read_predictions
from eval.protocols import (DEFAULT_PROTOCOLS, PROTOCOLS, GroundTruthError, Prediction, Protocol, load_ground_truth,
                            load_regressor)

CKPT_DIR = "checkpoints"
CKPT_NAMES = ("best.ckpt", "last.ckpt")  # default checkpoint: the first that exists
RUN_CONFIG = "config.yaml"
EVAL_DIR = "eval"
METRICS = tables.METRICS
MODEL_PREFIX = "model."  # Lightning stores the DeforHMR weights under `model.`
BODY_PREFIX = "body_model."  # the body model comes from the assets, never from a checkpoint
DEFAULT_BATCH = 64
ATTENTION_TOP_IF_EMPTY = 20  # Fig. 5 pictures of a near-uniform (untrained) model: show the top 20, say so
DEFAULT_WORST = 8  # samples in a protocol's worst-case contact sheet
DEFAULT_SHARDS = "data/shards"  # image shards: the samples and ground truth of a predictions file
PREDICTIONS_DIR = "predictions"  # RUN/eval/predictions/<protocol>.npz (--save-predictions)


class EvalError(InputError, RuntimeError):
    """The run, checkpoint, features or assets do not fit together; says which and what was expected."""


# ---- 1. the run ------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    model: torch.nn.Module  # model.deforhmr.DeforHMR, eval mode, on `device`
    preset: str
    train_config: dict
    meta: dict
    ckpt: Path
    device: torch.device


def default_checkpoint(run: Path) -> Path:
    for name in CKPT_NAMES:
        p = run / CKPT_DIR / name
        if p.exists():
            return p
    raise EvalError(f"{run / CKPT_DIR}: no checkpoint ({' or '.join(CKPT_NAMES)}); train the run first "
                    f"(`make train RUN={run}`) or pass CKPT=")


def read_checkpoint(path: Path) -> dict:
    """The checkpoint dict, loaded without running code (`model.checkpoint.load`; tensors
    mapped, not read, until used: reading it twice costs little)."""
    from model.checkpoint import CheckpointError, load

    try:
        ckpt = load(path, "decoder checkpoint", mmap=True)
    except (CheckpointError, FileNotFoundError) as e:
        raise EvalError(str(e)) from None
    missing = [k for k in ("state_dict", "model_config") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise EvalError(f"{path}: not a DeforHMR training checkpoint (lacks {missing}; expected what "
                        f"`make train` writes: state_dict, model_config, model_preset, train_config, meta)")
    return ckpt


def load_run(run: Path, ckpt_path: Path | None, assets: Assets, device: torch.device) -> LoadedRun:
    from model.config import from_dict as model_from_dict
    from model.deforhmr import DeforHMR

    ckpt_path = ckpt_path or default_checkpoint(run)
    ckpt = read_checkpoint(ckpt_path)
    cfg = model_from_dict(dict(ckpt["model_config"]), source=f"{ckpt_path} model_config")
    preset = ckpt.get("model_preset") or "?"
    run_cfg_path = run / RUN_CONFIG
    if run_cfg_path.exists():
        from train.config import load_resolved

        run_cfg = load_resolved(run_cfg_path)
        run_model = run_cfg.model_config()
        if run_model != cfg:
            diff = sorted(k for k, v in cfg.to_dict().items() if run_model.to_dict().get(k) != v)
            raise EvalError(f"checkpoint {ckpt_path} is a '{preset}' model but {run_cfg_path} is preset "
                            f"'{run_cfg.model.get('preset')}' (model keys differ: {diff}); pass the run's own "
                            f"checkpoint or the matching RUN")
    model = DeforHMR.from_assets(cfg, assets)
    state = {k[len(MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    state = {k: v for k, v in state.items() if not k.startswith(BODY_PREFIX)}
    own = {k for k in model.state_dict() if not k.startswith(BODY_PREFIX)}
    derived = {n for n, _ in model.named_buffers()}  # non-persistent buffers older checkpoints may hold
    state = {k: v for k, v in state.items() if k in own or k not in derived}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise EvalError(f"{ckpt_path}: weights do not fit a '{preset}' model (missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]})")
    model.load_state_dict(state, strict=False)
    model.to(device).eval()
    return LoadedRun(model, preset, dict(ckpt.get("train_config") or {}), dict(ckpt.get("meta") or {}),
                     ckpt_path, device)


def data_assets(features: str, ckpt: dict, ckpt_path: Path, cache: str | None, given: str | None,
                raw: str | None) -> tuple[Assets, str | None]:
    """(assets, where they came from) for scoring the protocols' splits of the run's feature
    cache (`datasets.assets.assets_for_data`: synthetic data takes the stand-ins it was made with)."""
    from pipelines.shard_reader import list_shards, read_split_marker

    root, _ = cache_spec(features, dict(ckpt.get("train_config") or {}), ckpt_path, cache)
    splits = dict.fromkeys((p.dataset, p.split) for p in PROTOCOLS.values())
    dirs = [f"{root}/{d}/{s}" for d, s in splits if list_shards(root, d, s)]
    return assets_for_data(given, {d: read_split_marker(d) for d in dirs}, raw)


# ---- 2. the features --------------------------------------------------------------------------
@dataclass
class FeatureCache:
    root: str
    spec: dict


def cache_spec(features: str, train_config: dict, ckpt_path: Path, cache: str | None = None) -> tuple[str, dict]:
    """(location, encoder.json) of the feature cache `cache`, default the one the run trained on."""
    from pipelines.features import list_caches, read_cache_spec
    from pipelines.shard_reader import join

    name = cache or (train_config.get("data") or {}).get("cache")
    if not name:
        raise EvalError(f"{ckpt_path}: the checkpoint does not name its feature cache (train_config.data.cache); "
                        f"pass --cache")
    root = join(features, name)
    try:
        return root, read_cache_spec(root)
    except FileNotFoundError as e:
        raise EvalError(f"{e} (the run trained on cache '{name}'; make its evaluation splits with `make features`; "
                        f"caches under {features}: {list_caches(features) or 'none'})") from None


def open_cache(features: str, loaded: LoadedRun, cache: str | None = None) -> FeatureCache:
    root, spec = cache_spec(features, loaded.train_config, loaded.ckpt, cache)
    cfg = loaded.model.cfg
    want = [cfg.context_dim, *cfg.feature_hw]
    have = list(spec["storage"]["shape"])
    enc = spec.get("encoder", {}).get("encoder", "?")
    if have != want:
        raise EvalError(f"{root}: features of encoder '{enc}' have shape {have}; the checkpoint's model reads "
                        f"{want} (model.context_dim, model.feature_hw) — features from another encoder")
    expected_id = loaded.meta.get("encoder_id")
    if expected_id and expected_id != spec.get("encoder_id"):
        raise EvalError(f"{root}: feature cache of encoder id {spec.get('encoder_id')!r}, the checkpoint was "
                        f"trained on {expected_id!r} — features from another encoder")
    return FeatureCache(root, spec)


def check_shards(cache: FeatureCache | None, protocols: list[Protocol], shards_root: str | None) -> None:
    """Every shard the evaluation may read (the protocols' feature splits, when scoring a
    run; their image splits under `shards_root`: figure crops, and a predictions file's
    samples) against its index and manifest: all damaged shards in one EvalError
    (`pipelines.shard_index.check`)."""
    from pipelines.shard_index import ShardCheckError, check
    from pipelines.shard_reader import join

    dirs = [join(cache.root, p.dataset, p.split) for p in protocols] if cache is not None else []
    dirs += [join(shards_root, p.dataset, p.split) for p in protocols] if shards_root else []
    try:
        check(dirs, remedy="remove the damaged shards and rerun `make shards` / `make features` (they write only "
                           "what is missing)")
    except ShardCheckError as e:
        raise EvalError(str(e)) from None


def split_counts(cache: FeatureCache, protocol: Protocol) -> tuple[list[str], int, Counter]:
    """(shards, ok rows, rejected reasons) of the protocol's split in the cache."""
    from pipelines.shard_reader import list_shards, read_manifest

    shards = list_shards(cache.root, protocol.dataset, protocol.split)
    if not shards:
        return [], 0, Counter()
    table = read_manifest(cache.root, protocol.dataset, protocol.split).to_pydict()
    status = table["status"]
    ok = sum(s == "ok" for s in status)
    rejected = Counter(_reason_code(r) for s, r in zip(status, table["reason"]) if s != "ok")
    return shards, ok, rejected


def _reason_code(reason: str | None) -> str:
    """The reject code of a manifest reason (`code` or `code: detail`)."""
    return (reason or "unknown").split(":", 1)[0]


def image_rejects(shards_root: str | None, protocol: Protocol) -> Counter | None:
    """Rejected frames by reason in the image shards' manifest of the protocol's split
    (3DPW: `invalid_camera_pose` frames), or None when that manifest is not at hand."""
    if not shards_root:
        return None
    from pipelines.shard_reader import read_manifest

    try:
        table = read_manifest(shards_root, protocol.dataset, protocol.split).to_pydict()
    except (FileNotFoundError, OSError):
        return None
    return Counter(_reason_code(r) for s, r in zip(table["status"], table["reason"]) if s != "ok")


def iter_samples(shards: list[str], spec: dict) -> Iterator[tuple[np.ndarray, PersonFrame]]:
    """(features (C, H, W) float16, record) of view 0 of every sample, in shard order."""
    from pipelines.features import iter_feature_shard

    for shard in shards:
        for key, views in iter_feature_shard(shard, spec):
            if not views:
                raise EvalError(f"{shard}: sample {key} holds no view")
            features, record = views[0]
            if record.view != 0:
                raise EvalError(f"{shard}: sample {key}'s first view is {record.view}, expected the plain crop (0)")
            yield features, record


def batched(it, n: int):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- 3. scoring -------------------------------------------------------------------------------
@dataclass
class ProtocolResult:
    """Per-sample errors (mm; PCK / AUC %) of one protocol, for the scored method and the
    mean-pose baseline, with what was scored."""

    protocol: Protocol
    keys: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    errors: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)  # method -> metric -> chunks
    manifest_ok: int = 0
    rejected: Counter = field(default_factory=Counter)  # feature stage (e.g. corrupt_image)
    image_rejected: Counter | None = None  # shard stage (e.g. invalid_camera_pose); None: manifest not at hand
    synthetic: bool = False
    gt_body: object = field(default=None, repr=False, compare=False)  # the loaded ground-truth builder
    regressor: object = field(default=None, repr=False, compare=False)  # the loaded JointRegressors
    input: str = ""  # what was scored: "checkpoint <path>" / "predictions <path>"
    coverage: Coverage | None = None  # a predictions file's keys against the split's samples
    split_sequences: list[str] | None = None  # every sample's sequence (None: the scored ones are all)

    def add(self, method: str, scores: dict[str, np.ndarray]) -> None:
        per = self.errors.setdefault(method, {m: [] for m in self.protocol.metrics})
        for m in self.protocol.metrics:
            per[m].append(np.asarray(scores[m], np.float64))

    def values(self, method: str, metric: str) -> np.ndarray:
        return np.concatenate(self.errors[method][metric]) if self.errors[method][metric] else np.zeros(0)

    @property
    def n(self) -> int:
        return len(self.keys)


def mean_pose_vertices(mean_pose6d: torch.Tensor, mean_betas: torch.Tensor, body_model) -> torch.Tensor:
    """(6890, 3) the neutral SMPL at the SMPL mean parameters (pose (24, 6), shape (10,)): the baseline."""
    from model.geometry import rot6d_to_matrix

    rot = rot6d_to_matrix(mean_pose6d)[None]  # (1, 24, 3, 3)
    body = body_model(betas=mean_betas[None], body_pose=rot[:, 1:], global_orient=rot[:, :1])
    return body.vertices[0]


def _ground_truth(gt_body, records: list[PersonFrame], protocol: Protocol):
    try:
        return gt_body.of_records(records, protocol)
    except GroundTruthError as e:
        raise EvalError(f"{protocol.name}: {e}") from None


def _score_batch(result: ProtocolResult, method: str, pred: Prediction, records: list[PersonFrame],
                 baseline: np.ndarray) -> None:
    """Score one batch (the method and the mean-pose baseline) into `result`."""
    protocol = result.protocol
    gt = _ground_truth(result.gt_body, records, protocol)
    result.add(method, protocol.score(pred, gt, result.regressor))
    result.add(tables.MEAN_POSE_METHOD, protocol.score(
        Prediction(vertices=np.broadcast_to(baseline, (len(records), *baseline.shape))), gt, result.regressor))
    result.keys += [r.key for r in records]
    result.sequences += [r.sequence for r in records]
    result.synthetic |= any(r.synthetic for r in records)


def _new_result(protocol: Protocol, assets: Assets, **kw) -> ProtocolResult:
    gt_body = load_ground_truth(protocol, assets)
    result = ProtocolResult(protocol, gt_body=gt_body, regressor=load_regressor(protocol, assets), **kw)
    result.synthetic = bool(gt_body.is_synthetic)
    return result


@torch.no_grad()
def evaluate_protocol(protocol: Protocol, loaded: LoadedRun, cache: FeatureCache, assets: Assets,
                      method: str, batch_size: int = DEFAULT_BATCH, log=print,
                      save_predictions: Path | None = None) -> ProtocolResult:
    """Score the run on every ok sample of the protocol's split in the cache; with
    `save_predictions`, also write the model's outputs there as a predictions file
    (`eval.predictions`: key, rotmat, betas), which `--pred` scores to the same numbers."""
    shards, ok, rejected = split_counts(cache, protocol)
    result = _new_result(protocol, assets, manifest_ok=ok, rejected=rejected, input=f"checkpoint {loaded.ckpt}")
    model = loaded.model
    baseline = mean_pose_vertices(model.mean_pose, model.mean_betas, model.body_model).cpu().numpy()  # (6890, 3)
    saved: dict[str, list[np.ndarray]] = {"rotmat": [], "betas": []}
    for batch in batched(iter_samples(shards, cache.spec), batch_size):
        feats = torch.from_numpy(np.stack([f for f, _ in batch])).to(loaded.device)
        records = [r for _, r in batch]
        out = model(feats)
        _score_batch(result, method, Prediction(vertices=out.vertices.float().cpu().numpy()), records, baseline)
        if save_predictions is not None:
            saved["rotmat"].append(out.rotmats.float().cpu().numpy())
            saved["betas"].append(out.betas.float().cpu().numpy())
    if result.n != ok:
        raise EvalError(f"{protocol.name}: scored {result.n} samples but the manifest of {cache.root} lists {ok} ok "
                        f"samples for {protocol.dataset}/{protocol.split}; the feature shards are incomplete")
    if save_predictions is not None and result.n:
        write_npz(save_predictions, result.keys, **{k: np.concatenate(v) for k, v in saved.items()})
        log(f"   {protocol.name}: the model's outputs -> {save_predictions} (score them with --pred)")
    return result


def split_records(shards_root: str, protocol: Protocol) -> list[PersonFrame]:
    """Every sample of the protocol's split in the image shards (records only), checked
    against the shards' manifest: an EvalError when they are absent or incomplete."""
    from pipelines.shard_reader import iter_split, list_shards, read_manifest

    if not list_shards(shards_root, protocol.dataset, protocol.split):
        raise EvalError(f"{protocol.name}: no image shards at {shards_root}/{protocol.dataset}/{protocol.split} "
                        f"(the samples and their ground truth; `make shards`, SHARDS=)")
    records = [rec for rec, _ in iter_split(shards_root, protocol.dataset, protocol.split)]
    ok = sum(s == "ok" for s in read_manifest(shards_root, protocol.dataset, protocol.split).column("status").to_pylist())
    if len(records) != ok:
        raise EvalError(f"{protocol.name}: {len(records)} samples in the image shards of {protocol.dataset}/"
                        f"{protocol.split} but their manifest lists {ok} ok; the shards are incomplete")
    return records


@torch.no_grad()
def evaluate_predictions(protocol: Protocol, preds: PredictionsFile, records: list[PersonFrame], assets: Assets,
                         method: str, batch_size: int = DEFAULT_BATCH) -> ProtocolResult:
    """Score a predictions file on the protocol's samples (`records`, the split's image
    shards): the covered samples in the split's order, the mean pose on the same ones."""
    from model.body_model import BodyModel, load_mean_params

    coverage = match(preds, [r.key for r in records], protocol)
    result = _new_result(protocol, assets, manifest_ok=len(records), input=f"predictions {preds.path}",
                         coverage=coverage, split_sequences=[r.sequence for r in records])
    body = BodyModel(assets.body_model_dir, "neutral")
    mean = load_mean_params(assets.require("mean_params"))
    baseline = mean_pose_vertices(torch.as_tensor(np.asarray(mean["pose"]), dtype=torch.float32).reshape(24, 6),
                                  torch.as_tensor(np.asarray(mean["shape"]), dtype=torch.float32).reshape(-1),
                                  body).numpy()
    result.synthetic |= body.is_synthetic
    covered = set(coverage.scored)
    for batch in batched((r for r in records if r.key in covered), batch_size):
        _score_batch(result, method, preds.prediction([r.key for r in batch], body), batch, baseline)
    return result


def check_complete(result: ProtocolResult) -> None:
    """On real data, an EvalError unless the scored samples are the protocol's whole split:
    `expected_sequences` sequences, and no frame left out (at the image shards or at the
    features) for a reason outside `allowed_rejects` (3DPW: only `invalid_camera_pose`).
    Synthetic data is not checked."""
    protocol = result.protocol
    if result.synthetic:
        return
    n_seq = len(set(result.split_sequences if result.split_sequences is not None else result.sequences))
    if protocol.expected_sequences and n_seq != protocol.expected_sequences:
        raise EvalError(f"{protocol.name}: {n_seq} sequences in the {protocol.split} split, the protocol's split has "
                        f"{protocol.expected_sequences}; the shards do not hold the whole split")
    if protocol.allowed_rejects is None:
        return
    allowed = ", ".join(protocol.allowed_rejects)
    if result.image_rejected is None:
        raise EvalError(f"{protocol.name}: the image shards' manifest of {protocol.dataset}/{protocol.split} is needed "
                        f"to check that only {allowed} frames were left out (pass --shards)")
    other = {r: n for r, n in (result.image_rejected + result.rejected).items() if r not in protocol.allowed_rejects}
    if other:
        raise EvalError(f"{protocol.name}: frames of the {protocol.split} split left out for "
                        f"{', '.join(f'{n} {r}' for r, n in sorted(other.items()))}; the protocol leaves out only "
                        f"{allowed} frames, so the scores would not be on its whole split")


# ---- 4. outputs -------------------------------------------------------------------------------
def result_rows(result: ProtocolResult, run_id: str, checkpoint: str, synthetic: bool, created: str) -> list[tables.ResultRow]:
    rows = []
    for method, per in result.errors.items():
        kind = "baseline" if method == tables.MEAN_POSE_METHOD else "measured"
        for m in result.protocol.metrics:
            v = result.values(method, m)
            rows.append(tables.ResultRow(method, result.protocol.name, m, float(v.mean()), int(len(v)), run_id,
                                         kind=kind, synthetic=synthetic, checkpoint=checkpoint, created=created))
    return rows


PER_SAMPLE_DECIMALS = 3  # per-sample errors in results.json: 0.001 mm (or %)


def result_evaluations(result: ProtocolResult, run_id: str) -> list[tables.Evaluation]:
    """Each measured method's per-sample errors, by key, with what was scored (results.json)."""
    out = []
    for method in result.errors:
        if method == tables.MEAN_POSE_METHOD:
            continue
        per = {"key": list(result.keys)}
        per.update({m: np.round(result.values(method, m), PER_SAMPLE_DECIMALS).tolist() for m in result.protocol.metrics})
        out.append(tables.Evaluation(run_id, method, result.protocol.name, result.input, per,
                                     None if result.coverage is None else result.coverage.to_dict()))
    return out


# per_sequence.csv columns: mm for the distances, % for PCK / AUC
_SEQUENCE_UNITS = {m: "pct" if m in tables.HIGHER_IS_BETTER else "mm" for m in METRICS}
PER_SEQUENCE_FIELDS = ("run_id", "method", "dataset", "sequence", "n_samples",
                       *(f"{m}_{_SEQUENCE_UNITS[m]}" for m in METRICS))


def per_sequence_rows(result: ProtocolResult, run_id: str) -> list[dict]:
    seqs = np.asarray(result.sequences)
    rows = []
    metrics = result.protocol.metrics
    for method in result.errors:
        vals = {m: result.values(method, m) for m in metrics}
        for s in sorted(set(result.sequences)):
            sel = seqs == s
            rows.append({"run_id": run_id, "method": method, "dataset": result.protocol.name, "sequence": s,
                         "n_samples": int(sel.sum()),
                         **{f"{m}_{_SEQUENCE_UNITS[m]}": round(float(vals[m][sel].mean()), 3) for m in metrics}})
    return rows


def append_per_sequence(path: Path, rows: list[dict]) -> None:
    """Append rows to per_sequence.csv (header written once); reruns add, never rewrite a
    row. A file with an older header (fewer metric columns) is rewritten once with
    PER_SEQUENCE_FIELDS, its rows unchanged (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, old = tuple(reader.fieldnames or ()), list(reader)
        if header != PER_SEQUENCE_FIELDS:
            unknown = sorted(set(header) - set(PER_SEQUENCE_FIELDS))
            if unknown:
                raise EvalError(f"{path}: unknown columns {unknown}; expected {list(PER_SEQUENCE_FIELDS)}")
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=PER_SEQUENCE_FIELDS)
            w.writeheader()
            w.writerows(old)
            tables._atomic_write_text(path, buf.getvalue())
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PER_SEQUENCE_FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)


def describe_protocol(protocol: Protocol) -> str:
    """One line: what the protocol declares and where it is taken from."""
    gt = (f"ground-truth mesh '{protocol.ground_truth}' (joints: {protocol.gt_regressor} regressor)" if protocol.has_mesh
          else f"ground-truth joints '{protocol.ground_truth}' (no mesh)")
    return (f"{protocol.name}: {protocol.dataset}/{protocol.split}, {len(protocol.eval_joints)} joints by the "
            f"'{protocol.regressor}' regressor, {gt}, root = mean of {list(protocol.root_joints)}, metrics "
            f"{', '.join(protocol.metrics)}, predictions as {' / '.join(protocol.inputs)}; source: {protocol.source}")


def table_datasets(rows: list[tables.ResultRow]) -> tuple[str, ...]:
    """Table 1's column groups: the paper's datasets, then every other protocol the rows
    hold (e.g. `rich-gendered`), in order of first appearance."""
    extra = [r.dataset for r in rows if r.dataset not in tables.TABLE1_DATASETS]
    return tuple(tables.TABLE1_DATASETS) + tuple(dict.fromkeys(extra))


def describe_counts(result: ProtocolResult) -> str:
    def fmt(c: Counter) -> str:
        return ", ".join(f"{n} {r}" for r, n in sorted(c.items())) or "none"

    shards = "image manifest not given" if result.image_rejected is None else fmt(result.image_rejected)
    if result.coverage is not None:
        cov = result.coverage
        text = (f"{result.protocol.name}: {result.n} of the {cov.total} person-frames of the split scored "
                f"({len(set(result.sequences))} sequences); {len(cov.missing)} without a prediction, "
                f"{len(cov.extra)} extra keys")
        if cov.partial:
            text += (f" — PARTIAL: the numbers are over the covered samples only (missing e.g. "
                     f"{', '.join(cov.missing[:3])})")
        return text + f"; not in the split because rejected at the shards: {shards}"
    return (f"{result.protocol.name}: {result.n} person-frames in {len(set(result.sequences))} sequences "
            f"(= the feature manifest's ok rows; not scored because rejected before: at the shards {shards}, "
            f"at the features {fmt(result.rejected)})")


# ---- figures ----------------------------------------------------------------------------------
def _original_image(record: PersonFrame, raw_root: Path | None):
    """(image, affine original -> crop) from the raw dataset, or None when not found."""
    import cv2

    from datasets.image_file import read_image

    if raw_root is None or record.video_frame >= 0:
        return None
    img = read_image(raw_root / record.image_path)  # as stored, the frame of the record's affine
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), np.asarray(record.crop_affine, np.float64)


def _crop_from_image_shards(shards_root: str | None, protocol: Protocol, keys: set[str]) -> dict[str, np.ndarray]:
    """key -> crop (256x192 RGB) from the image shards, for the keys asked for."""
    if not shards_root:
        return {}
    from pipelines.shard_reader import decode_jpeg, iter_split

    out = {}
    try:
        for record, jpg in iter_split(shards_root, protocol.dataset, protocol.split):
            if record.key in keys:
                out[record.key] = decode_jpeg(jpg)
    except (FileNotFoundError, OSError):
        return {}
    return out


@torch.no_grad()
def write_figures(result: ProtocolResult, loaded: LoadedRun, cache: FeatureCache, assets: Assets, method: str,
                  out_dir: Path, k: int, raw_root: Path | None, shards_root: str | None, title_suffix: str,
                  log=print) -> list[Path]:
    """Best / worst examples by PVE (overlay on the original image, side view) and the
    Fig. 5 attention points of the best and worst sample."""
    from eval import figures as F
    from pipelines.crop import warp

    if result.n == 0 or k <= 0:
        return []
    protocol = result.protocol
    ranked = result.values(method, protocol.rank_metric)
    best, worst = F.best_and_worst(ranked, k)
    wanted = {result.keys[i] for i in np.concatenate([best, worst])}
    samples: dict[str, tuple[np.ndarray, PersonFrame]] = {}
    shards, _, _ = split_counts(cache, protocol)
    for feats, rec in iter_samples(shards, cache.spec):
        if rec.key in wanted:
            samples[rec.key] = (np.array(feats), rec)
    crops = _crop_from_image_shards(shards_root, protocol, wanted)
    gt_body = result.gt_body or load_ground_truth(protocol, assets)
    faces = loaded.model.body_model.faces
    model = loaded.model
    written = []
    examples = {}
    for key, (feats, rec) in samples.items():
        out = model(torch.from_numpy(feats)[None].to(loaded.device), need_attention=True)
        orig = _original_image(rec, raw_root)
        if orig is not None:
            image, affine = orig
            crop = warp(image, affine)
        elif key in crops:  # no original image: draw on the crop (identity affine)
            image, affine, crop = crops[key], np.array([[1.0, 0, 0], [0, 1.0, 0]]), crops[key]
        else:
            log(f"   figures: no image for {key} (original {raw_root and raw_root / rec.image_path} not found, "
                f"no image shards); drawn on a grey canvas")
            image = crop = np.full((*F.CROP_HW, 3), 128, np.uint8)
            affine = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        gt = _ground_truth(gt_body, [rec], protocol).vertices  # (1, 6890, 3), None without a mesh
        i = result.keys.index(key)
        errs = {m: float(result.values(method, m)[i]) for m in protocol.metrics}
        examples[key] = (F.Example(key, image, affine, out.vertices[0].float().cpu().numpy(),
                                   out.cam_t[0].float().cpu().numpy(), errs,
                                   gt_vertices=None if gt is None else gt[0]), crop, out.attention)
    fig_dir = out_dir / "figures"
    for name, idx in (("best", best), ("worst", worst)):
        exs = [examples[result.keys[i]][0] for i in idx if result.keys[i] in examples]
        written.append(F.save_examples_figure(
            fig_dir / f"{protocol.name}_{name}.png", exs, faces,
            title=f"{protocol.name} {name} {len(exs)} by {tables.METRIC_LABELS[protocol.rank_metric]}, "
                  f"{method}{title_suffix}"))
    for name, idx in (("best", best[:1]), ("worst", worst[:1])):
        key = result.keys[idx[0]]
        _, crop, attention = examples[key]
        if not attention:
            continue
        first, last = (F.attention_points(a, top_if_empty=ATTENTION_TOP_IF_EMPTY) for a in (attention[0], attention[-1]))
        written.append(F.save_attention_figure(
            fig_dir / f"{protocol.name}_attention_{name}.png", crop, first, last,
            title=f"{key} ({method}{title_suffix})", layers=(0, len(attention) - 1)))
    return written


def sample_crops(records: dict[str, PersonFrame], protocol: Protocol, shards_root: str | None,
                 raw_root: Path | None) -> dict[str, np.ndarray]:
    """key -> the 256x192 RGB crop of each record: from the image shards, else warped from
    the original image, else a grey canvas."""
    from eval import figures as F
    from pipelines.crop import warp

    crops = _crop_from_image_shards(shards_root, protocol, set(records))
    for key, rec in records.items():
        if key not in crops:
            orig = _original_image(rec, raw_root)
            crops[key] = warp(*orig) if orig is not None else np.full((*F.CROP_HW, 3), 128, np.uint8)
    return crops


def worst_keys(result: ProtocolResult, method: str, k: int) -> list[str]:
    """The keys of the k worst samples of `method` by the protocol's `rank_metric`, worst first."""
    from eval import figures as F

    if result.n == 0 or k <= 0:
        return []
    _, worst = F.best_and_worst(result.values(method, result.protocol.rank_metric), k)
    return [result.keys[i] for i in worst]


@torch.no_grad()
def write_worst_sheet(result: ProtocolResult, method: str, keys: list[str], records: dict[str, PersonFrame],
                      predict, faces: np.ndarray, path: Path, crops: dict[str, np.ndarray],
                      title_suffix: str = "") -> Path | None:
    """The samples `keys` (`worst_keys`) as one contact sheet (`eval.figures.save_sheet`).
    `records`: key -> record; `predict(keys)` -> the `Prediction` of those keys; `crops`:
    key -> crop."""
    from eval import figures as F

    if not keys:
        return None
    protocol = result.protocol
    row = {key: i for i, key in enumerate(result.keys)}
    worst = [row[key] for key in keys]
    recs = [records[key] for key in keys]
    gt = _ground_truth(result.gt_body, recs, protocol)
    pj, gj, pv, gv = (None if x is None else x.numpy() for x in protocol.aligned(predict(keys), gt, result.regressor))
    tiles = []
    for i, (key, rec) in enumerate(zip(keys, recs)):
        overlay = None
        if pv is not None and gv is not None and rec.intrinsics is not None and rec.has_transl:
            # the ground truth where it stands in the crop camera, the prediction on its root
            root_cam = np.asarray(gt.vertices[i][0], np.float64) - gv[i][0] + rec.smpl_transl
            overlay = F.overlay_pair(crops[key], gv[i] + root_cam, pv[i] + root_cam, faces, rec.intrinsics)
        errors = {tables.METRIC_LABELS[m]: float(result.values(method, m)[worst[i]]) for m in protocol.metrics}
        tiles.append(F.SheetTile(key, crops[key], overlay, pj[i], gj[i], errors))
    units = "mm, PCK / AUC %" if set(protocol.metrics) & set(tables.HIGHER_IS_BETTER) else "mm"
    return F.save_sheet(path, tiles, title=f"{protocol.name}: the {len(tiles)} worst by "
                                           f"{tables.METRIC_LABELS[protocol.rank_metric]} ({units}), "
                                           f"{method}{title_suffix}; ground truth orange, prediction blue")


def _run_predict(loaded: LoadedRun, cache: FeatureCache, protocol: Protocol, keys: set[str]):
    """(records, predict) of `keys` for a run: the records from the feature shards and a
    function giving the model's Prediction of some of those keys."""
    shards, _, _ = split_counts(cache, protocol)
    feats, records = {}, {}
    for f, rec in iter_samples(shards, cache.spec):
        if rec.key in keys:
            feats[rec.key], records[rec.key] = np.array(f), rec

    def predict(ks: list[str]) -> Prediction:
        x = torch.from_numpy(np.stack([feats[k] for k in ks])).to(loaded.device)
        return Prediction(vertices=loaded.model(x).vertices.float().cpu().numpy())

    return records, predict


# ---- the command ----------------------------------------------------------------------------
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _protocol_names(text: str | None) -> list[str]:
    if not text:
        return list(DEFAULT_PROTOCOLS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown:
        raise EvalError(f"unknown protocol(s) {unknown}; known: {sorted(PROTOCOLS)}")
    return names


def eval_assets(args) -> Assets:
    """The assets for scoring a run (`data_assets`) or a predictions file (its protocol's image
    split): synthetic data's own stand-ins unless named, said in one line when so."""
    from pipelines.shard_reader import join, read_split_marker

    if args.run and args.features:
        ckpt_path = Path(args.ckpt) if args.ckpt else default_checkpoint(Path(args.run))
        assets, where = data_assets(args.features, read_checkpoint(ckpt_path), ckpt_path, args.cache, args.assets,
                                    args.raw)
    elif args.pred and args.protocol in PROTOCOLS:
        protocol = PROTOCOLS[args.protocol]
        split = join(args.shards or DEFAULT_SHARDS, protocol.dataset, protocol.split)
        assets, where = assets_for_data(args.assets, {split: read_split_marker(split)}, args.raw)
    else:  # evaluate_run / evaluate_file say what is missing
        return Assets(args.assets, args.raw)
    if where:
        print(f"== eval: {where}")
    return assets


def evaluate_run(args, assets: Assets, created: str):
    """The run path of `main`: (results, not evaluated, run id, checkpoint, method,
    synthetic inputs, figure-drawing function)."""
    run = Path(args.run)
    device = _device(args.device)
    print(f"== eval: run {run}, features {args.features}, assets {assets.root}, device {device}")
    if not args.features:
        raise EvalError("--features is needed to score a run (FEATURES/<cache>/<dataset>/<split>)")
    loaded = load_run(run, Path(args.ckpt) if args.ckpt else None, assets, device)
    cache = open_cache(args.features, loaded, args.cache)
    method = args.method or loaded.preset
    names = _protocol_names(args.protocols)
    run_id = args.run_id or f"{run.name}/{loaded.ckpt.stem}@{created}"
    synthetic_inputs = bool(loaded.meta.get("synthetic")) or bool(cache.spec.get("synthetic"))
    print(f"   checkpoint {loaded.ckpt} (preset {loaded.preset}), cache {cache.root} "
          f"(encoder {cache.spec.get('encoder', {}).get('encoder', '?')}), run id {run_id}")
    check_shards(cache, [PROTOCOLS[n] for n in names], args.shards)
    out_dir = run / EVAL_DIR
    results, not_evaluated = [], []
    for name in names:
        protocol = PROTOCOLS[name]
        shards, ok, _ = split_counts(cache, protocol)
        if not shards:
            where = f"{cache.root}/{protocol.dataset}/{protocol.split}"
            if args.protocols:
                raise EvalError(f"{name}: no feature shards at {where} (run `make shards` and `make features` "
                                f"for {protocol.dataset} {protocol.split})")
            print(f"   {name}: not evaluated — no feature shards at {where}")
            not_evaluated.append(f"{name} (no feature shards at {where})")
            continue
        print(f"   {name}: scoring {ok} samples ({describe_protocol(protocol)})")
        save = out_dir / PREDICTIONS_DIR / f"{name}.npz" if args.save_predictions else None
        res = evaluate_protocol(protocol, loaded, cache, assets, method, args.batch_size, save_predictions=save)
        res.image_rejected = image_rejects(args.shards, protocol)
        print("   " + describe_counts(res))
        check_complete(res)
        results.append(res)
    if not results:
        raise EvalError(f"no protocol could be evaluated: {'; '.join(not_evaluated)}")

    def draw(res: ProtocolResult, fig_dir: Path, suffix: str) -> list[Path]:
        figures = write_figures(res, loaded, cache, assets, method, fig_dir.parent, args.examples,
                                assets.raw(res.protocol.dataset), args.shards, suffix)
        keys = worst_keys(res, method, args.worst)
        records, predict = _run_predict(loaded, cache, res.protocol, set(keys))
        sheet = write_worst_sheet(res, method, keys, records, predict, loaded.model.body_model.faces,
                                  fig_dir / f"{res.protocol.name}_worst_sheet.png",
                                  sample_crops(records, res.protocol, args.shards, assets.raw(res.protocol.dataset)),
                                  suffix)
        return figures + ([sheet] if sheet else [])

    return results, not_evaluated, run_id, str(loaded.ckpt), method, out_dir, synthetic_inputs, draw


def evaluate_file(args, assets: Assets, created: str):
    """The predictions-file path of `main` (see `evaluate_run`); every check on the file
    happens here, before anything is written."""
    from model.body_model import BodyModel

    pred_path = Path(args.pred)
    if not args.protocol or args.protocol not in PROTOCOLS:
        raise EvalError(f"--pred needs --protocol, one of {sorted(PROTOCOLS)} (got {args.protocol!r})")
    protocol = PROTOCOLS[args.protocol]
    shards_root = args.shards or DEFAULT_SHARDS
    print(f"== eval: predictions {pred_path} on {protocol.name}, samples from {shards_root}, assets {assets.root}")
    preds = read_predictions(pred_path, protocol)
    print(f"   {pred_path}: {len(preds.keys)} keys, scoring their {preds.kind} ({describe_protocol(protocol)})")
    check_shards(None, [protocol], shards_root)
    records = split_records(shards_root, protocol)
    method = args.method or pred_path.stem
    res = evaluate_predictions(protocol, preds, records, assets, method, args.batch_size)
    res.image_rejected = image_rejects(shards_root, protocol)
    print("   " + res.coverage.describe(pred_path, protocol.name))
    print("   " + describe_counts(res))
    check_complete(res)
    run_id = args.run_id or f"{pred_path.stem}@{created}"
    out_dir = Path(args.out) if args.out else pred_path.with_name(f"{pred_path.stem}-eval")
    body = BodyModel(assets.body_model_dir, "neutral")

    def draw(r: ProtocolResult, fig_dir: Path, suffix: str) -> list[Path]:
        keys = worst_keys(r, method, args.worst)
        by_key = {rec.key: rec for rec in records if rec.key in set(keys)}
        sheet = write_worst_sheet(r, method, keys, by_key, lambda ks: preds.prediction(ks, body), body.faces,
                                  fig_dir / f"{r.protocol.name}_worst_sheet.png",
                                  sample_crops(by_key, protocol, shards_root, assets.raw(protocol.dataset)), suffix)
        return [sheet] if sheet else []

    return [res], [], run_id, f"predictions {pred_path}", method, out_dir, False, draw


def write_outputs(out_dir: Path, results: list[ProtocolResult], not_evaluated: list[str], run_id: str,
                  checkpoint: str, synthetic: bool, created: str, draw) -> tuple[str, str, list[Path], int]:
    """Figures first, into a staging folder beside `out_dir` (a failure there leaves
    `out_dir` untouched), then results.json, per_sequence.csv, results.md, then the figures
    moved into `out_dir/figures`. Returns (table markdown, sample counts, figures, new rows)."""
    import shutil
    import tempfile

    suffix = " (SYNTHETIC)" if synthetic else ""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staged = [p for res in results for p in draw(res, staging / "figures", suffix)]
        rows = [r for res in results for r in result_rows(res, run_id, checkpoint, synthetic, created)]
        evaluations = [e for res in results for e in result_evaluations(res, run_id)]
        # the reported rows enter once (identical rows merge), this evaluation's under its run id
        all_rows = tables.append_rows(out_dir / "results.json", tables.reported_rows() + rows, evaluations)
        append_per_sequence(out_dir / "per_sequence.csv",
                            [row for res in results for row in per_sequence_rows(res, run_id)])
        figures = []
        for p in staged:
            dest = out_dir / "figures" / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            figures.append(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    md = tables.render_table1(all_rows, datasets=table_datasets(all_rows))
    declared = "\n".join(f"- {describe_protocol(res.protocol)}" for res in results)
    counts = "\n".join(f"- {describe_counts(res)}" for res in results)
    if not_evaluated:
        counts += "\n" + "\n".join(f"- not evaluated: {n}" for n in not_evaluated)
    fig_md = "\n".join(f"- [{p.name}](figures/{p.name})" for p in figures)
    (out_dir / "results.md").write_text(
        f"{md}\n## Protocols\n\n{declared}\n\n## Samples\n\n{counts}\n\nLatest evaluation: run id `{run_id}`, "
        f"{checkpoint if checkpoint.startswith('predictions') else f'checkpoint `{checkpoint}`'}.\n"
        + (f"\n## Figures\n\n{fig_md}\n" if figures else ""))
    return md, counts, figures, len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Score a trained run, or any method's predictions file, on the "
                                             "standardized protocols (3DPW, RICH, EMDB, MPI-INF-3DHP).")
    ap.add_argument("--run", default=None, help="run folder (RUN/config.yaml, RUN/checkpoints/)")
    ap.add_argument("--features", default=None, help="feature root (FEATURES/<cache>/<dataset>/<split>); with --run")
    ap.add_argument("--pred", default=None, help="a predictions file (.npz / .parquet, docs/evaluation.md) to "
                                                 "score instead of a run; needs --protocol")
    ap.add_argument("--protocol", default=None, help=f"with --pred: the protocol, one of {sorted(PROTOCOLS)}")
    ap.add_argument("--out", default=None, help="with --pred: the output folder (default <FILE stem>-eval beside it)")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default RUN/checkpoints/best.ckpt, else last.ckpt)")
    ap.add_argument("--cache", default=None, help="feature cache name (default: the one the run trained on)")
    ap.add_argument("--assets", default=None, help="assets root (default: synthetic data's own stand-ins, named by its "
                    "SYNTHETIC markers; else datasets/assets.yaml / $ASSETS)")
    ap.add_argument("--raw", default=None, help="raw datasets root, for the original images of the figures")
    ap.add_argument("--shards", default=None, help=f"image shards root: crops for the figures; with --pred the "
                                                   f"samples and their ground truth (default {DEFAULT_SHARDS})")
    ap.add_argument("--protocols", default=None,
                    help=f"with --run: comma-separated subset of {sorted(PROTOCOLS)} (default: "
                         f"{','.join(DEFAULT_PROTOCOLS)}, those the cache holds; named ones must exist; "
                         f"rich-gendered = RICH with BEDLAM's gendered ground-truth joint regressor)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--examples", type=int, default=3, help="best / worst examples per protocol in the figures (0: none)")
    ap.add_argument("--worst", type=int, default=DEFAULT_WORST,
                    help=f"samples in each protocol's worst-case contact sheet (default {DEFAULT_WORST}; 0: none)")
    ap.add_argument("--save-predictions", action="store_true",
                    help="with --run: also write the model's outputs as predictions files, RUN/eval/predictions/")
    ap.add_argument("--method", default=None, help="row label in the tables (default: the model preset / FILE stem)")
    ap.add_argument("--run-id", default=None, help="id of this evaluation's rows (default: RUN name, checkpoint, time)")
    args = ap.parse_args(argv)
    if bool(args.run) == bool(args.pred):
        ap.error("give either --run (score a trained run) or --pred FILE --protocol NAME (score a predictions file)")

    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        assets = eval_assets(args)
        path = evaluate_run if args.run else evaluate_file
        results, not_evaluated, run_id, checkpoint, method, out_dir, synthetic_inputs, draw = path(args, assets, created)
        synthetic = synthetic_inputs or is_synthetic(assets.require("smpl_neutral")) or any(r.synthetic for r in results)
        md, counts, figures, n_rows = write_outputs(out_dir, results, not_evaluated, run_id, checkpoint, synthetic,
                                                    created, draw)
    except USER_ERRORS as e:
        return fail("eval", e)
    print()
    print(md)
    print(counts)
    print(f"\n== eval done: {out_dir / 'results.md'}, results.json ({n_rows} new rows), per_sequence.csv, "
          f"{len(figures)} figures{' (SYNTHETIC)' if synthetic else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
