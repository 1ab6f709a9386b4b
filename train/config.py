"""Training configuration: one typed dataclass per section, every key declared once.

The defaults below ARE the paper's recipe (DeforHMR §3.3 and supplement A, marked "paper")
plus our choices where it is silent (marked "ours"). A YAML file names only what differs:

    base: def-m.yaml          # optional: a file this one is a delta of (path relative to it)
    model: {preset: def-s}    # a model preset (model.config.PRESETS) plus model-key overrides
    optim: {epochs: 50}

Sections merge key by key down the `base:` chain; the mapping-valued keys (`model`,
`data.mix`) merge key by key too, so a delta can change one dataset weight or one model
key. An unknown section or key, or a value of the wrong type, is a ConfigError naming the
file and the key. A *resolved* config (`TrainConfig.save`, written into every run folder
and checkpoint) lists every key; `load_resolved` reads it back and a missing key there is
an error too. The `model` section of a resolved config holds the preset name and every
`model.config.ModelConfig` key, so evaluation rebuilds the exact model and can check the
preset.

    cfg = load_config("train/configs/def-m.yaml", sets=["optim.lr=3e-4"])
    cfg.save(run / "config.yaml")
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from datasets.errors import InputError
from model.config import ConfigError as ModelConfigError
from model.config import ModelConfig
from model.config import from_dict as model_from_dict

CONFIG_DIR = Path(__file__).parent / "configs"
BASE_KEY = "base"


class ConfigError(InputError, ValueError):
    """A training configuration is malformed; the message names the source and the key."""


# ---- sections --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Which feature shards are read and how (see train/data.py)."""

    # The feature cache under FEATURES (pipelines/features.py): `<encoder>`, or
    # `<encoder>-views<K>` for a cache with K augmented views per sample.
    cache: str = "vitpose-h"
    train_split: str = "train"
    # Sampling weight per training dataset (normalised; 0 drops a dataset). Default: the
    # public "CLIFF on real images + 3DPW" recipe, BEDLAM configs/orig_cliff_3dpw_ft.yaml
    # (DATASETS_AND_RATIOS coco_mpii_h36m_mpi-inf-3dhp_3dpw-train 0.2/0.1/0.4/0.1/0.2); the
    # paper (§3.3) trains on these five datasets and gives no ratios.
    mix: dict = field(default_factory=lambda: {
        "coco": 0.2, "mpii": 0.1, "h36m": 0.4, "mpi_inf_3dhp": 0.1, "3dpw": 0.2})
    val_dataset: str = "3dpw"  # held-out set for best-checkpoint selection ("" = none)
    val_split: str = "val"
    # Which cached augmentation view a training sample uses: "random" draws one of the
    # sample's views each time (seeded), "plain" always takes view 0 (the plain crop).
    views: str = "random"
    shuffle_buffer: int = 100  # samples held per dataset stream and worker (ours; memory: see train/data.py)
    workers: int = 6  # DataLoader worker processes per rank (ours)
    # Samples per epoch over all ranks; 0 = the sum of the training manifests' sample
    # counts (weighted datasets still come in their mix ratios).
    epoch_samples: int = 0
    val_batch: int = 64  # per-rank validation batch (ours)


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and terms (train/losses.py; paper §3.3, all MSE, "following CLIFF"):
    λ_SMPL = 1, λ_joint = 5 (2D and 3D), λ_mesh = 60. BEDLAM's "CLIFF on real images"
    recipe instead puts the whole sum under a global ×60 with L1 vertices at weight 1, betas
    at 0.001, no global orientation in the pose term, a camera term and mesh joints: see
    configs/loss-bedlam.yaml."""

    pose: float = 1.0  # λ_SMPL on the rotation matrices (paper)
    betas: float = 1.0  # λ_SMPL on betas (paper)
    joints_3d: float = 5.0  # λ_joint, 3D joints in metres (paper)
    joints_2d: float = 5.0  # λ_joint, 2D joints (paper)
    vertices: float = 60.0  # λ_mesh, vertices in metres (paper)
    vertices_criterion: str = "mse"  # mse (paper) | l1 (BEDLAM losses.py `shape_loss`)
    global_weight: float = 1.0  # multiplies the whole sum (BEDLAM MODEL.LOSS_WEIGHT = 60)
    # Where the 2D loss compares. "full": the paper's "the 3D meshes are reprojected onto the
    # original image using ground-truth camera parameters provided in each respective dataset",
    # read as the training reprojection (not only the figures' overlays) because §3.3 takes its
    # losses from CLIFF, whose supervision is exactly this: the crop camera turned into a
    # full-image translation (CLIFF `cam_crop2full`), the keypoints projected with the dataset's
    # intrinsics (CLIFF's focal = image diagonal where it has none), the error in original-image
    # pixels normalised as BEDLAM's CLIFF trainer does. "crop": HMR2.0's weak-perspective crop
    # camera at 5000 px in normalised crop coordinates (the HMR2.0 baseline's own loss).
    reprojection: str = "full"
    pose_root: bool = True  # the global orientation in L_pose (paper: silent; BEDLAM smpl_losses: false)
    # L_3d against "labels" (the record's 3D joints, pelvis-relative, confidence-weighted: SPIN)
    # or "mesh" (the GT SMPL mesh's joints at the SMPL origin, unweighted: BEDLAM)
    joints_3d_target: str = "labels"
    # L_mesh frame: "smpl" (both meshes at the SMPL origin, uncentred: SPIN/CLIFF/BEDLAM
    # `shape_loss`) or "pelvis" (each side relative to its own pelvis)
    vertices_frame: str = "smpl"
    cam: float = 0.0  # weight of BEDLAM's loss_cam = exp(-10 s)^2 (paper: none; BEDLAM: 1)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4  # AdamW (paper, supplement A)
    weight_decay: float = 1e-3  # (paper, supplement A)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # torch default (ours)
    global_batch: int = 200  # over all ranks (paper, supplement A)
    epochs: int = 100  # (paper §3.3)
    schedule: str = "constant"  # constant | cosine (train/schedule.py); paper: none named
    warmup_steps: int = 0  # linear warm-up steps before the schedule (ours)
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping (ours)


@dataclass(frozen=True)
class TrainerConfig:
    accelerator: str = "auto"  # auto | cpu | gpu (Lightning)
    devices: int = 1  # processes per node; -1 = every visible GPU (Lightning)
    num_nodes: int = 1
    precision: str = "auto"  # auto = bf16-mixed on GPU, 32-true on CPU; or a Lightning value
    strategy: str = "auto"  # auto = ddp when devices x nodes > 1, else a single device
    seed: int = 0  # model init, shard order, shuffle buffers, view draws (seed + epoch)
    # metrics reach the loggers, and the non-finite loss check reads the device, every n steps
    log_every_n_steps: int = 50
    val_every_n_epochs: int = 1
    checkpoint_every_n_steps: int = 0  # also refresh last.ckpt every n steps (0 = epoch end only)
    # torch.compile of the training step (model, targets, losses; fixed shapes, a short batch
    # padded): off | default, reduce-overhead (CUDA graphs), max-autotune (inductor's modes) |
    # aot_eager (traced, no code generated: compiles in seconds, for tests) (ours)
    compile: str = "off"


SECTIONS: dict[str, type] = {"data": DataConfig, "loss": LossConfig, "optim": OptimConfig,
                             "trainer": TrainerConfig}
CHOICES = {
    ("data", "views"): ("random", "plain"),
    ("loss", "vertices_criterion"): ("mse", "l1"),
    ("loss", "reprojection"): ("full", "crop"),
    ("loss", "joints_3d_target"): ("labels", "mesh"),
    ("loss", "vertices_frame"): ("smpl", "pelvis"),
    ("optim", "schedule"): ("constant", "cosine"),
    ("trainer", "accelerator"): ("auto", "cpu", "gpu", "cuda"),
    ("trainer", "compile"): ("off", "default", "reduce-overhead", "max-autotune", "aot_eager"),
}
DEFAULT_MODEL = {"preset": "def-m"}
# Keys added after run folders were made: a resolved config without one reads it as this
# value, the behaviour those runs had (every other key must be present).
ADDED_KEYS = {("trainer", "compile"): "off", ("loss", "reprojection"): "crop", ("loss", "pose_root"): True,
              ("loss", "joints_3d_target"): "labels", ("loss", "vertices_frame"): "pelvis", ("loss", "cam"): 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration. `model` is a `model.config` mapping: the `preset`
    it started from and every ModelConfig key (resolved on loading); `model_config()`."""

    model: dict = field(default_factory=lambda: dict(DEFAULT_MODEL))
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def model_config(self) -> ModelConfig:
        return model_from_dict(self.model, source="train config `model`")

    def to_dict(self) -> dict:
        """Plain data (YAML-safe); `model` lists the preset and every ModelConfig key."""
        out = {"model": dict(self.model)}
        for name in SECTIONS:
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        return out

    def save(self, path: str | Path) -> None:
        """Write the resolved config (every key)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def diff(self, other: "TrainConfig") -> list[str]:
        """Dotted keys whose values differ between two configs."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# ---- loading ---------------------------------------------------------------------------------
def load_config(path: str | Path | None, sets: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The config of a YAML delta file (following its `base:` chain down to the defaults),
    then `sets` ("section.key=value", value in YAML) on top. `path` None: the defaults."""
    raw: dict = {}
    if path is not None:
        raw = _read_chain(Path(path), seen=())
    for item in sets:
        raw = _merge(raw, _parse_set(item))
    return from_dict(raw, source=str(path) if path is not None else "defaults", complete=False)


def with_sets(cfg: TrainConfig, sets: list[str] | tuple[str, ...], source: str = "--set") -> TrainConfig:
    """`cfg` with "section.key=value" items applied (as `load_config` applies them)."""
    d = cfg.to_dict()
    for item in sets:
        d = _merge(d, _parse_set(item))
    return from_dict(d, source=source, complete=True)


def load_resolved(path: str | Path) -> TrainConfig:
    """A resolved config (as `TrainConfig.save` writes it): every key must be present."""
    path = Path(path)
    d = _read_yaml(path)
    if BASE_KEY in d:
        raise ConfigError(f"{path}: a resolved config has no `{BASE_KEY}:` key")
    for (sec, key), value in ADDED_KEYS.items():
        if isinstance(d.get(sec), dict):
            d[sec].setdefault(key, value)
    return from_dict(d, source=str(path), complete=True)


def from_dict(d: dict, source: str = "dict", complete: bool = False) -> TrainConfig:
    """A TrainConfig from nested plain data. `complete`: every key must be given."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(d).__name__}")
    known = {"model", *SECTIONS}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {sorted(known)}")
    if complete and (missing := sorted(known - set(d))):
        raise ConfigError(f"{source}: missing section(s) {missing}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        kwargs[name] = _section(cls, name, d.get(name) or {}, source, complete)
    model = d.get("model", DEFAULT_MODEL)
    if not isinstance(model, dict):
        raise ConfigError(f"{source}: `model` must be a mapping (preset + model keys), got {model!r}")
    model = dict(model)
    if "preset" not in model and not complete:
        model = dict(DEFAULT_MODEL) | model
    try:  # validates preset name, keys and types (model.config names the key)
        resolved = model_from_dict(model, source=f"{source} `model`", resolved=complete)
    except ModelConfigError as e:
        raise ConfigError(str(e)) from None
    cfg = TrainConfig(model={"preset": model.get("preset")} | resolved.to_dict(), **kwargs)
    _check(cfg, source)
    return cfg


def _section(cls: type, name: str, d: dict, source: str, complete: bool):
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: section `{name}` must be a mapping, got {d!r}")
    declared = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(d) - set(declared))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {[f'{name}.{k}' for k in unknown]}; "
                          f"known: {sorted(declared)}")
    if complete and (missing := sorted(set(declared) - set(d))):
        raise ConfigError(f"{source}: missing key(s) {[f'{name}.{k}' for k in missing]}")
    values = {}
    for key, value in d.items():
        try:
            values[key] = _coerce(value, hints[key])
            if isinstance(values[key], dict) and not complete:  # mappings merge over the default
                values[key] = declared[key].default_factory() | values[key]
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: key `{name}.{key}` must be {_type_name(hints[key])}, "
                              f"got {value!r}") from None
        if (name, key) in CHOICES and values[key] not in CHOICES[(name, key)]:
            raise ConfigError(f"{source}: key `{name}.{key}` must be one of {CHOICES[(name, key)]}, "
                              f"got {value!r}")
    return cls(**values)


def _check(cfg: TrainConfig, source: str) -> None:
    """Value checks that involve more than one key's type."""
    for ds, w in cfg.data.mix.items():
        if not isinstance(ds, str) or isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"{source}: key `data.mix.{ds}` must be a weight >= 0, got {w!r}")
    if not any(w > 0 for w in cfg.data.mix.values()):
        raise ConfigError(f"{source}: key `data.mix` gives no dataset a weight > 0")
    positive = {("optim", "global_batch"), ("optim", "epochs"), ("optim", "lr"), ("trainer", "num_nodes"),
                ("data", "val_batch"), ("data", "shuffle_buffer"), ("trainer", "log_every_n_steps"),
                ("trainer", "val_every_n_epochs")}
    for sec, key in positive:
        if not getattr(getattr(cfg, sec), key) > 0:
            raise ConfigError(f"{source}: key `{sec}.{key}` must be > 0, got {getattr(getattr(cfg, sec), key)!r}")
    non_negative = {("data", "workers"), ("data", "epoch_samples"), ("optim", "warmup_steps"), ("loss", "cam"),
                    ("optim", "grad_clip"), ("optim", "weight_decay"), ("trainer", "checkpoint_every_n_steps")}
    for sec, key in non_negative:
        if getattr(getattr(cfg, sec), key) < 0:
            raise ConfigError(f"{source}: key `{sec}.{key}` must be >= 0, got {getattr(getattr(cfg, sec), key)!r}")
    if cfg.trainer.devices == 0 or cfg.trainer.devices < -1:
        raise ConfigError(f"{source}: key `trainer.devices` must be >= 1 or -1 (all GPUs), got {cfg.trainer.devices}")


# ---- YAML chain ------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            d = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
    return d


def _read_chain(path: Path, seen: tuple[Path, ...]) -> dict:
    """The file merged over its `base:` chain; unknown keys are caught per file."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `{BASE_KEY}:` chain loops back to itself")
    d = _read_yaml(path)
    base = d.pop(BASE_KEY, None)
    from_dict(d, source=str(path), complete=False)  # this file's own keys, named by this file
    if base is None:
        return d
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `{BASE_KEY}` must be a file name, got {base!r}")
    return _merge(_read_chain(path.parent / base, seen + (path,)), d)


def _merge(base: dict, over: dict) -> dict:
    """Key-by-key merge of nested mappings; `over` wins."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_set(item: str) -> dict:
    """"optim.lr=3e-4" -> {"optim": {"lr": 3e-4}} (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    dotted, value = item.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        node: Any = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({e})") from None
    for p in reversed(parts):
        node = {p: node}
    return node


# ---- typing helpers --------------------------------------------------------------------------
def _coerce(value, hint):
    """`value` as the annotated type: int stays int (an int may stand for a float), tuples
    from lists, dicts as given (their items are checked by `_check`)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _coerce(value, arm)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if hint is type(None):
        if value is not None:
            raise TypeError
        return None
    if isinstance(value, bool) and hint is not bool:
        raise TypeError
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise TypeError
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if hint is float and isinstance(value, int):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads "1e-4" as a string
        return float(value)
    if not isinstance(value, hint):
        raise TypeError
    return value


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


def _plain(x):
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
