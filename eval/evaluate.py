"""`make eval`: score a trained run on the standardized protocols (3DPW test, RICH test).

    python -m eval.evaluate --run runs/def-m --features data/features [--ckpt PATH]
        [--assets DIR] [--raw DIR] [--protocols 3dpw,rich] [--batch-size 64] [--device auto]
        [--examples 3] [--run-id ID]
    make eval RUN=runs/def-m FEATURES=data/features [CKPT=...]
    make eval RUN=... EVAL_ARGS="--protocols 3dpw,rich-gendered"   # RICH with BEDLAM's GT joints

Reads top to bottom:
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
   mean-pose mesh (baseline), the ground-truth mesh (`Protocol.ground_truth`) and its
   genders -> `Protocol.score` per sample (ground-truth joints by `Protocol.gt_regressor`).
   The number scored must equal the manifest's ok rows; a sample without SMPL targets is an
   error. Nothing is skipped. On real data the split must be the protocol's whole split
   (`check_complete`: 3DPW 24 sequences, frames left out only for an invalid camera pose,
   read from the image shards' manifest, --shards).
5. outputs under RUN/eval/: `results.json` (long-format rows, appended under a new run id;
   the `dataset` column is the protocol's name), `results.md` (Table 1 layout, reported rows
   from the paper, a column group per protocol scored, and each protocol's declaration and
   source), `per_sequence.csv`, and
   `figures/` (best / worst examples with overlays and side views; Fig. 5 attention points).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
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
from eval.protocols import DEFAULT_PROTOCOLS, PROTOCOLS, Protocol, load_ground_truth, load_regressor

CKPT_DIR = "checkpoints"
CKPT_NAMES = ("best.ckpt", "last.ckpt")  # default checkpoint: the first that exists
RUN_CONFIG = "config.yaml"
EVAL_DIR = "eval"
METRICS = tables.METRICS
MODEL_PREFIX = "model."  # Lightning stores the DeforHMR weights under `model.`
BODY_PREFIX = "body_model."  # the body model comes from the assets, never from a checkpoint
DEFAULT_BATCH = 64
ATTENTION_TOP_IF_EMPTY = 20  # Fig. 5 pictures of a near-uniform (untrained) model: show the top 20, say so


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
    """The checkpoint dict, loaded without running code (`model.checkpoint.load`)."""
    from model.checkpoint import CheckpointError, load

    try:
        ckpt = load(path, "decoder checkpoint")
    except (CheckpointError, FileNotFoundError) as e:
        raise EvalError(str(e)) from None
    missing = [k for k in ("state_dict", "model_config") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise EvalError(f"{path}: not a DeforHMR training checkpoint (lacks {missing}; expected what "
                        f"`make train` writes: state_dict, model_config, model_preset, train_config, meta)")
    return ckpt


def load_run(run: Path, ckpt_path: Path | None, assets: Assets, device: torch.device,
             ckpt: dict | None = None) -> LoadedRun:
    """The run's model from `ckpt_path` (default `default_checkpoint`; `ckpt`: its content, read already)."""
    from model.config import from_dict as model_from_dict
    from model.deforhmr import DeforHMR

    ckpt_path = ckpt_path or default_checkpoint(run)
    ckpt = ckpt or read_checkpoint(ckpt_path)
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


def check_shards(cache: FeatureCache, protocols: list[Protocol], shards_root: str | None) -> None:
    """Every shard the evaluation may read (the protocols' feature splits; their image splits
    under `shards_root`, for figure crops) against its index and manifest: all damaged
    shards in one EvalError (`pipelines.shard_index.check`)."""
    from pipelines.shard_index import ShardCheckError, check
    from pipelines.shard_reader import join

    dirs = [join(cache.root, p.dataset, p.split) for p in protocols]
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
    """Per-sample errors (mm) of one protocol, for the model and the mean-pose baseline."""

    protocol: Protocol
    keys: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    errors: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)  # method -> metric -> chunks
    manifest_ok: int = 0
    rejected: Counter = field(default_factory=Counter)  # feature stage (e.g. corrupt_image)
    image_rejected: Counter | None = None  # shard stage (e.g. invalid_camera_pose); None: manifest not at hand
    synthetic: bool = False
    gt_body: object = field(default=None, repr=False, compare=False)  # the loaded ground-truth builder

    def add(self, method: str, scores: dict[str, np.ndarray]) -> None:
        per = self.errors.setdefault(method, {m: [] for m in METRICS})
        for m in METRICS:
            per[m].append(np.asarray(scores[m], np.float64))

    def values(self, method: str, metric: str) -> np.ndarray:
        return np.concatenate(self.errors[method][metric]) if self.errors[method][metric] else np.zeros(0)

    @property
    def n(self) -> int:
        return len(self.keys)


def mean_pose_vertices(model) -> torch.Tensor:
    """(6890, 3) the neutral SMPL at the SMPL mean parameters (pose and shape): the baseline."""
    from model.geometry import rot6d_to_matrix

    rot = rot6d_to_matrix(model.mean_pose)[None]  # (1, 24, 3, 3)
    body = model.body_model(betas=model.mean_betas[None], body_pose=rot[:, 1:], global_orient=rot[:, :1])
    return body.vertices[0]


@torch.no_grad()
def evaluate_protocol(protocol: Protocol, loaded: LoadedRun, cache: FeatureCache, assets: Assets,
                      method: str, batch_size: int = DEFAULT_BATCH, log=print) -> ProtocolResult:
    shards, ok, rejected = split_counts(cache, protocol)
    regressor = load_regressor(protocol, assets)
    gt_body = load_ground_truth(protocol, assets)
    result = ProtocolResult(protocol, manifest_ok=ok, rejected=rejected, gt_body=gt_body)
    result.synthetic = bool(gt_body.is_synthetic)
    model = loaded.model
    baseline = mean_pose_vertices(model).cpu().numpy()  # (6890, 3)
    for batch in batched(iter_samples(shards, cache.spec), batch_size):
        feats = torch.from_numpy(np.stack([f for f, _ in batch])).to(loaded.device)
        records = [r for _, r in batch]
        lacking = [r.key for r in records if not r.has_smpl]
        if lacking:
            raise EvalError(f"{protocol.name}: samples without SMPL ground truth in the evaluation split "
                            f"(e.g. {lacking[:3]}); the protocol scores every sample")
        out = model(feats)
        pred = out.vertices.float().cpu().numpy()  # (B, 6890, 3)
        genders = [r.gender for r in records]
        gt = gt_body.vertices(np.stack([r.smpl_pose for r in records]), np.stack([r.betas for r in records]), genders)
        result.add(method, protocol.score(pred, gt, regressor, genders))
        result.add(tables.MEAN_POSE_METHOD,
                   protocol.score(np.broadcast_to(baseline, pred.shape), gt, regressor, genders))
        result.keys += [r.key for r in records]
        result.sequences += [r.sequence for r in records]
        result.synthetic |= any(r.synthetic for r in records)
    if result.n != ok:
        raise EvalError(f"{protocol.name}: scored {result.n} samples but the manifest of {cache.root} lists {ok} ok "
                        f"samples for {protocol.dataset}/{protocol.split}; the feature shards are incomplete")
    return result


def check_complete(result: ProtocolResult) -> None:
    """On real data, an EvalError unless the scored samples are the protocol's whole split:
    `expected_sequences` sequences, and no frame left out (at the image shards or at the
    features) for a reason outside `allowed_rejects` (3DPW: only `invalid_camera_pose`).
    Synthetic data is not checked."""
    protocol = result.protocol
    if result.synthetic:
        return
    n_seq = len(set(result.sequences))
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
        for m in METRICS:
            v = result.values(method, m)
            rows.append(tables.ResultRow(method, result.protocol.name, m, float(v.mean()), int(len(v)), run_id,
                                         kind=kind, synthetic=synthetic, checkpoint=checkpoint, created=created))
    return rows


PER_SEQUENCE_FIELDS = ("run_id", "method", "dataset", "sequence", "n_samples", *(f"{m}_mm" for m in METRICS))


def per_sequence_rows(result: ProtocolResult, run_id: str) -> list[dict]:
    seqs = np.asarray(result.sequences)
    rows = []
    for method in result.errors:
        vals = {m: result.values(method, m) for m in METRICS}
        for s in sorted(set(result.sequences)):
            sel = seqs == s
            rows.append({"run_id": run_id, "method": method, "dataset": result.protocol.name, "sequence": s,
                         "n_samples": int(sel.sum()), **{f"{m}_mm": round(float(vals[m][sel].mean()), 3) for m in METRICS}})
    return rows


def append_per_sequence(path: Path, rows: list[dict]) -> None:
    """Append rows to per_sequence.csv (header written once); reruns add, never rewrite."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PER_SEQUENCE_FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)


def describe_protocol(protocol: Protocol) -> str:
    """One line: what the protocol declares and where it is taken from."""
    return (f"{protocol.name}: {protocol.dataset}/{protocol.split}, joints by the '{protocol.regressor}' regressor "
            f"(ground truth: {protocol.gt_regressor}), ground-truth mesh '{protocol.ground_truth}', root = mean of "
            f"{list(protocol.root_joints)}; source: {protocol.source}")


def table_datasets(rows: list[tables.ResultRow]) -> tuple[str, ...]:
    """Table 1's column groups: the paper's datasets, then every other protocol the rows
    hold (e.g. `rich-gendered`), in order of first appearance."""
    extra = [r.dataset for r in rows if r.dataset not in tables.TABLE1_DATASETS]
    return tuple(tables.TABLE1_DATASETS) + tuple(dict.fromkeys(extra))


def describe_counts(result: ProtocolResult) -> str:
    def fmt(c: Counter) -> str:
        return ", ".join(f"{n} {r}" for r, n in sorted(c.items())) or "none"

    shards = "image manifest not given" if result.image_rejected is None else fmt(result.image_rejected)
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
    pve = result.values(method, "pve")
    best, worst = F.best_and_worst(pve, k)
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
        gt = gt_body.vertices(rec.smpl_pose[None], rec.betas[None], [rec.gender])[0]
        i = result.keys.index(key)
        errs = {m: float(result.values(method, m)[i]) for m in ("pa_mpjpe", "mpjpe", "pve")}
        examples[key] = (F.Example(key, image, affine, out.vertices[0].float().cpu().numpy(),
                                   out.cam_t[0].float().cpu().numpy(), errs, gt_vertices=gt), crop, out.attention)
    fig_dir = out_dir / "figures"
    for name, idx in (("best", best), ("worst", worst)):
        exs = [examples[result.keys[i]][0] for i in idx if result.keys[i] in examples]
        written.append(F.save_examples_figure(
            fig_dir / f"{protocol.name}_{name}.png", exs, faces,
            title=f"{protocol.name} {name} {len(exs)} by PVE (mm), {method}{title_suffix}"))
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


# ---- the command ----------------------------------------------------------------------------
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Score a trained run on the 3DPW / RICH protocols (Table 1 layout).")
    ap.add_argument("--run", required=True, help="run folder (RUN/config.yaml, RUN/checkpoints/)")
    ap.add_argument("--features", required=True, help="feature root (FEATURES/<cache>/<dataset>/<split>)")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default RUN/checkpoints/best.ckpt, else last.ckpt)")
    ap.add_argument("--cache", default=None, help="feature cache name (default: the one the run trained on)")
    ap.add_argument("--assets", default=None, help="assets root (default: synthetic data's own stand-ins, named by its "
                    "SYNTHETIC markers; else datasets/assets.yaml / $ASSETS)")
    ap.add_argument("--raw", default=None, help="raw datasets root, for the original images of the figures")
    ap.add_argument("--shards", default=None, help="image shards root (crops for figures when no original image)")
    ap.add_argument("--protocols", default=None,
                    help=f"comma-separated subset of {sorted(PROTOCOLS)} (default: {','.join(DEFAULT_PROTOCOLS)}, "
                         f"those the cache holds; named ones must exist; rich-gendered = RICH with BEDLAM's "
                         f"gendered ground-truth joint regressor)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--examples", type=int, default=3, help="best / worst examples per protocol in the figures (0: none)")
    ap.add_argument("--method", default=None, help="row label in the tables (default: the model preset)")
    ap.add_argument("--run-id", default=None, help="id of this evaluation's rows (default: RUN name, checkpoint, time)")
    args = ap.parse_args(argv)

    run = Path(args.run)
    device = _device(args.device)
    print(f"== eval: run {run}, features {args.features}, device {device}")
    try:
        ckpt_path = Path(args.ckpt) if args.ckpt else default_checkpoint(run)
        ckpt = read_checkpoint(ckpt_path)
        assets, where = data_assets(args.features, ckpt, ckpt_path, args.cache, args.assets, args.raw)
        print(f"   {where or f'assets: {assets.root}'}")
        loaded = load_run(run, ckpt_path, assets, device, ckpt)
        cache = open_cache(args.features, loaded, args.cache)
        method = args.method or loaded.preset
        if args.protocols:
            names = [n.strip() for n in args.protocols.split(",") if n.strip()]
            unknown = [n for n in names if n not in PROTOCOLS]
            if unknown:
                raise EvalError(f"unknown protocol(s) {unknown}; known: {sorted(PROTOCOLS)}")
        else:
            names = list(DEFAULT_PROTOCOLS)
        created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        run_id = args.run_id or f"{run.name}/{loaded.ckpt.stem}@{created}"
        synthetic_inputs = bool(loaded.meta.get("synthetic")) or bool(cache.spec.get("synthetic")) or \
            is_synthetic(assets.require("smpl_neutral"))
        print(f"   checkpoint {loaded.ckpt} (preset {loaded.preset}), cache {cache.root} "
              f"(encoder {cache.spec.get('encoder', {}).get('encoder', '?')}), run id {run_id}")
        check_shards(cache, [PROTOCOLS[n] for n in names], args.shards)
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
            res = evaluate_protocol(protocol, loaded, cache, assets, method, args.batch_size)
            res.image_rejected = image_rejects(args.shards, protocol)
            print("   " + describe_counts(res))
            check_complete(res)
            results.append(res)
        if not results:
            raise EvalError(f"no protocol could be evaluated: {'; '.join(not_evaluated)}")
    except USER_ERRORS as e:
        return fail("eval", e)

    synthetic = synthetic_inputs or any(r.synthetic for r in results)
    out_dir = run / EVAL_DIR
    rows = [r for res in results for r in result_rows(res, run_id, str(loaded.ckpt), synthetic, created)]
    # the paper's rows enter once (identical rows merge), this evaluation's under its run id
    all_rows = tables.append_rows(out_dir / "results.json", tables.reported_table1_rows() + rows)
    append_per_sequence(out_dir / "per_sequence.csv", [row for res in results for row in per_sequence_rows(res, run_id)])
    md = tables.render_table1(all_rows, datasets=table_datasets(all_rows))
    declared = "\n".join(f"- {describe_protocol(res.protocol)}" for res in results)
    counts = "\n".join(f"- {describe_counts(res)}" for res in results)
    if not_evaluated:
        counts += "\n" + "\n".join(f"- not evaluated: {n}" for n in not_evaluated)
    suffix = " (SYNTHETIC)" if synthetic else ""
    figures = []
    for res in results:
        figures += write_figures(res, loaded, cache, assets, method, out_dir, args.examples,
                                 assets.raw(res.protocol.dataset),
                                 args.shards, suffix)
    fig_md = "\n".join(f"- [{p.name}](figures/{p.name})" for p in figures)
    (out_dir / "results.md").write_text(
        f"{md}\n## Protocols\n\n{declared}\n\n## Samples\n\n{counts}\n\nLatest evaluation: run id `{run_id}`, checkpoint `{loaded.ckpt}`.\n"
        + (f"\n## Figures\n\n{fig_md}\n" if figures else ""))
    print()
    print(md)
    print(counts)
    print(f"\n== eval done: {out_dir / 'results.md'}, results.json ({len(rows)} new rows), per_sequence.csv, "
          f"{len(figures)} figures{suffix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
