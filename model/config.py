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
TOKEN_INPUT = ("estimate", "zero")  # what the query tokens are conditioned on (see ModelConfig)
INIT = ("ours", "hmr2")  # initialisation scheme (see ModelConfig)


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
    attn_dim: int = 1024  # ours: width of q, k, v (heads x head width) in self- and cross-attention = D
    qkv_bias: bool = True  # ours: biased q/k/v projections (nn.MultiheadAttention's default)
    final_norm: bool = True  # ours: a LayerNorm after the last decoder layer
    groups: int = 8  # offset groups G (Table 3, row 1)
    offset_range: float = 1.0  # λ_o: max offset in grid cells (Table 3, row 1)
    offset_kernel: int = 5  # ours: depthwise kernel of the offset net (DAT's size for ~14x14 maps)
    ffn_dim: int = 1024  # ours: FFN hidden width (HMR2.0's mlp_dim)
    pos_encoding: str = "relative"  # none | absolute | relative (Table 4)
    context_dim: int = 1280  # C of the encoder's feature map (ViTPose-H)
    feature_hw: tuple[int, int] = (16, 12)  # (H, W) of the feature map (256x192 crop / 16)
    ief_iters: int = 1  # rounds of iterative error feedback (§3.2.1: one)
    # "estimate" (ours): the current estimate (6D pose, betas, cam) embedded linearly and added
    # to the query tokens; "zero": a zero input embedded (a learned constant), as HMR2.0
    token_input: str = "estimate"
    # "ours": nn.MultiheadAttention's xavier self-attention, query tokens ~ N(0, 0.02²)
    # truncated, heads xavier(gain 0.01) with zero bias; "hmr2": PyTorch's nn.Linear defaults
    # everywhere and query tokens ~ N(0, 1) (see HMR2_DECODER)
    init: str = "ours"

    def __post_init__(self):
        _check_choice("cross_attention", self.cross_attention, CROSS_ATTENTION)
        _check_choice("queries", self.queries, QUERIES)
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODING)
        _check_choice("token_input", self.token_input, TOKEN_INPUT)
        _check_choice("init", self.init, INIT)
        for name in ("depth", "dim", "heads", "attn_dim", "groups", "offset_kernel", "ffn_dim", "context_dim",
                     "ief_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.offset_range <= 0:
            raise ConfigError(f"offset_range must be > 0, got {self.offset_range}")
        if self.offset_kernel % 2 == 0:
            raise ConfigError(f"offset_kernel must be odd (same-size output), got {self.offset_kernel}")
        if self.attn_dim % self.heads:
            raise ConfigError(f"attn_dim {self.attn_dim} is not divisible by heads {self.heads}")
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
# HMR2.0's decoder head (the paper's "HMR2.0†", Table 2), from 4D-Humans: depth 6, heads 8 x
# dim_head 64, mlp_dim 1024, context_dim 1280, dropout 0 (hmr2/configs_hydra/experiment/
# hmr_vit_transformer.yaml `SMPL_HEAD.TRANSFORMER_DECODER`; depth, FFN and context are our
# defaults already). The rest is hmr2/models/components/pose_transformer.py and
# hmr2/models/heads/smpl_head.py:
HMR2_DECODER: dict = {
    "heads": 8,
    "attn_dim": 8 * 64,  # heads x dim_head: Attention / CrossAttention inner_dim, projected back to D
    "qkv_bias": False,  # to_qkv, to_q, to_kv are nn.Linear(..., bias=False); to_out keeps its bias
    "final_norm": False,  # TransformerCrossAttn returns the last layer's residual stream, no norm
    # SMPLTransformerDecoderHead: TRANSFORMER_INPUT defaults to 'zero' (token = zeros(B, 1, 1) ->
    # to_token_embedding nn.Linear(1, D), + pos_embedding); the hydra config sets no other
    "token_input": "zero",
    # pos_embedding = torch.randn(1, num_tokens, dim); no init code anywhere else in the head, and
    # INIT_DECODER_XAVIER (xavier gain 0.01 on decpose/decshape/deccam) is unset, so False
    "init": "hmr2",
}
# ours, deliberately: the regular ("Reg") variants add no position encoding to the context. HMR2.0's
# CrossAttention adds none (the ViTPose tokens carry the encoder's absolute position embedding), and
# Reg-M keeps Reg-S's choice so that the two Reg rows differ in the queries, not in the PE.
REGULAR = {"cross_attention": "regular", "pos_encoding": "none"}
PRESETS: dict[str, dict] = {
    # Table 2
    "def-m": {},  # DeforHMR
    "def-s": {"queries": "single"},
    "reg-m": REGULAR,
    "reg-s": REGULAR | {"queries": "single"} | HMR2_DECODER,  # HMR2.0†: "our reimplementation of HMR2.0"
    # Table 3 (heads, groups, λ_o); row 1 is def-m
    "def-m-h16-g8-o2": {"offset_range": 2.0},
    "def-m-h8-g4-o1": {"heads": 8, "groups": 4},
    "def-m-h8-g4-o2": {"heads": 8, "groups": 4, "offset_range": 2.0},
    # Table 4 (position encoding); "relative" is def-m
    "def-m-pe-none": {"pos_encoding": "none"},
    "def-m-pe-absolute": {"pos_encoding": "absolute"},
}
# `<preset>-tiny`: the same variant small enough for CPU tests in seconds (heads, groups,
# λ_o and the variant switches are kept; the attention width scales with D, 1024 -> 64, so
# a head is 16x narrower: 4 channels in def-m and reg-s). It reads the 32x16x12 maps of the
# tiny encoder (`model.vitpose.CONFIGS["tiny"]`) of the CPU demo.
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
    d = ModelConfig().to_dict() | PRESETS[base]
    if base != name:
        d |= TINY | {"attn_dim": d["attn_dim"] * TINY["dim"] // d["dim"]}
    return from_dict(d | overrides, source=f"preset {name}")


# Keys added after run folders and checkpoints were written: a resolved config (every key, as
# `save` and checkpoints hold it) without one reads it as the behaviour those models had.
ADDED_KEYS: dict[str, object] = {
    "attn_dim": lambda d: d.get("dim"),  # the attention was D wide
    "qkv_bias": True, "final_norm": True, "token_input": "estimate", "init": "ours",
}


def from_dict(d: dict, source: str = "dict", resolved: bool = False) -> ModelConfig:
    """A config from a mapping with every key (or a `preset` key plus overrides).

    Missing keys, unknown keys and values of the wrong type raise ConfigError naming
    `source` and the key. A mapping without a preset, or one marked `resolved` (a run
    folder's config: the preset it came from plus every key), may lack ADDED_KEYS.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of model keys, got {type(d).__name__}")
    d = dict(d)
    declared = {f.name: f for f in fields(ModelConfig)}
    unknown = sorted(set(d) - set(declared) - {"preset"})
    if unknown:
        raise ConfigError(f"{source}: unknown model key(s) {unknown}; known: {sorted(declared)}")
    if resolved or "preset" not in d:
        for key, value in ADDED_KEYS.items():
            if key not in d:
                d[key] = value(d) if callable(value) else value
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
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise TypeError
        return value
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
