"""Model configuration: one typed dataclass, named presets as small deltas, YAML I/O.

Every key is declared once below with its default. A preset names only what differs
from the default (`PRESETS`); `<preset>-tiny` is the same variant shrunk for CPU tests
(`TINY`). A YAML file either lists every key (a resolved config, as saved in a run
folder) or names a `preset` plus overrides; a missing or unknown key is an error that
names the file and the key.

    cfg = get_config("def-m")                 # DeforHMR, paper defaults + ours
    cfg = get_config("reg-s-tiny")            # HMR2.0-style baseline, tiny
    cfg = load_config("model.yaml")           # {preset: def-m, offset_range: 2.0} or all keys
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from datasets.errors import InputError

CROSS_ATTENTION = ("deformable", "regular")  # Table 2: "Def" / "Reg"
QUERIES = ("multi", "single")  # Table 2: "-M" (24 joints + 1 shape) / "-S" (one token, HMR2.0)
POS_ENCODING = ("none", "absolute", "relative")  # Table 4


class ConfigError(InputError, ValueError):
    """A model configuration is malformed; the message names the source and the key."""


@dataclass(frozen=True)
class ModelConfig:
    """Decoder configuration. Defaults are DeforHMR (`def-m`) at full size.

    Where the paper is silent the default is ours (marked), from DESIGN.md.
    """

    cross_attention: str = "deformable"  # deformable | regular (Table 2)
    queries: str = "multi"  # multi: 24 joint tokens + 1 shape token (§3.2.1) | single
    depth: int = 6  # ours: decoder layers, as HMR2.0
    dim: int = 1024  # D, token width (§3.2.1)
    heads: int = 16  # attention heads (Table 3, row 1); self- and cross-attention (ours: same)
    groups: int = 8  # offset groups G (Table 3, row 1)
    offset_range: float = 1.0  # λ_o: max offset in grid cells (Table 3, row 1)
    offset_kernel: int = 5  # ours: depthwise kernel of the offset net (DAT's size for ~14x14 maps)
    ffn_dim: int = 1024  # ours: FFN hidden width (HMR2.0's mlp_dim)
    pos_encoding: str = "relative"  # none | absolute | relative (Table 4)
    context_dim: int = 1280  # C of the encoder's feature map (ViTPose-H)
    feature_hw: tuple[int, int] = (16, 12)  # (H, W) of the feature map (256x192 crop / 16)
    ief_iters: int = 1  # rounds of iterative error feedback (§3.2.1: one)

    def __post_init__(self):
        _check_choice("cross_attention", self.cross_attention, CROSS_ATTENTION)
        _check_choice("queries", self.queries, QUERIES)
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODING)
        for name in ("depth", "dim", "heads", "groups", "offset_kernel", "ffn_dim", "context_dim", "ief_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.offset_range <= 0:
            raise ConfigError(f"offset_range must be > 0, got {self.offset_range}")
        if self.offset_kernel % 2 == 0:
            raise ConfigError(f"offset_kernel must be odd (same-size output), got {self.offset_kernel}")
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.heads % self.groups:
            raise ConfigError(f"heads {self.heads} is not divisible by groups {self.groups}")
        if self.context_dim % self.groups:
            raise ConfigError(f"context_dim {self.context_dim} is not divisible by groups {self.groups}")
        if len(self.feature_hw) != 2 or min(self.feature_hw) < 1:
            raise ConfigError(f"feature_hw must be (H, W) >= 1, got {self.feature_hw}")

    @property
    def num_queries(self) -> int:
        return 25 if self.queries == "multi" else 1

    def replace(self, **changes) -> "ModelConfig":
        return from_dict({**self.to_dict(), **changes}, source="replace()")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["feature_hw"] = list(self.feature_hw)
        return d

    def save(self, path: str | Path) -> None:
        """Write the resolved config (every key) as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


# ---- presets: each names only what differs from the default ------------------------------
PRESETS: dict[str, dict] = {
    # Table 2
    "def-m": {},  # DeforHMR
    "def-s": {"queries": "single"},
    # ours: the regular variants carry no extra position encoding, as HMR2.0's decoder
    "reg-m": {"cross_attention": "regular", "pos_encoding": "none"},
    "reg-s": {"cross_attention": "regular", "queries": "single", "pos_encoding": "none"},  # HMR2.0†
    # Table 3 (heads, groups, λ_o); row 1 is def-m
    "def-m-h16-g8-o2": {"offset_range": 2.0},
    "def-m-h8-g4-o1": {"heads": 8, "groups": 4},
    "def-m-h8-g4-o2": {"heads": 8, "groups": 4, "offset_range": 2.0},
    # Table 4 (position encoding); "relative" is def-m
    "def-m-pe-none": {"pos_encoding": "none"},
    "def-m-pe-absolute": {"pos_encoding": "absolute"},
}
# `<preset>-tiny`: the same variant small enough for CPU tests in seconds (heads, groups,
# λ_o and the variant switches are kept; 64/16 = 4 channels per head). It reads the
# 32x16x12 maps of the tiny encoder (`model.vitpose.CONFIGS["tiny"]`) of the CPU demo.
TINY: dict = {"depth": 2, "dim": 64, "ffn_dim": 64, "context_dim": 32}
TINY_SUFFIX = "-tiny"


def preset_names(tiny: bool | None = None) -> list[str]:
    """All preset names: full size (tiny=False), tiny (True) or both (None)."""
    full = list(PRESETS)
    small = [n + TINY_SUFFIX for n in PRESETS]
    return {False: full, True: small, None: full + small}[tiny]


def get_config(name: str, **overrides) -> ModelConfig:
    """The preset `name` (see `preset_names()`), with optional key overrides."""
    base = name[: -len(TINY_SUFFIX)] if name.endswith(TINY_SUFFIX) else name
    if base not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(preset_names())}")
    d = ModelConfig().to_dict() | PRESETS[base] | (TINY if base != name else {})
    return from_dict(d | overrides, source=f"preset {name}")


def from_dict(d: dict, source: str = "dict") -> ModelConfig:
    """A config from a mapping with every key (or a `preset` key plus overrides).

    Missing keys, unknown keys and values of the wrong type raise ConfigError naming
    `source` and the key.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of model keys, got {type(d).__name__}")
    d = dict(d)
    declared = {f.name: f for f in fields(ModelConfig)}
    unknown = sorted(set(d) - set(declared) - {"preset"})
    if unknown:
        raise ConfigError(f"{source}: unknown model key(s) {unknown}; known: {sorted(declared)}")
    if "preset" in d:
        name = d.pop("preset")
        try:
            d = get_config(name).to_dict() | d
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    missing = sorted(set(declared) - set(d))
    if missing:
        raise ConfigError(f"{source}: missing model key(s) {missing} (or name a `preset`)")
    values = {}
    for name, value in d.items():
        default = declared[name].default
        try:
            values[name] = _coerce(value, default)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: key {name!r} must be like {default!r}, got {value!r}") from None
    try:
        return ModelConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _coerce(value, default):
    """`value` in the type of `default` (int stays int, an int may stand for a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        raise TypeError
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise TypeError
        return tuple(_coerce(v, dv) for v, dv in zip(value, default))
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise TypeError
    return value


def load_config(path: str | Path) -> ModelConfig:
    """A config from a YAML file (see `from_dict`)."""
    with open(path) as f:
        d = yaml.safe_load(f)
    return from_dict(d, source=str(path))
