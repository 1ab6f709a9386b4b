"""The frozen ViTPose encoder: 256x192 RGB crop -> (C, 16, 12) feature map (paper §3.1).

ViTPose-H as ViTPose's code builds it (ViTAE-Transformer/ViTPose
`mmpose/models/backbones/vit.py`, class `ViT`):
- patch embedding: Conv2d(3, C, kernel 16, stride 16, padding 2) (`padding=4 + 2 * (ratio//2 - 1)`
  with ratio 1), so 256x192 -> 16x12 tokens;
- position embedding of 1 + 16*12 = 193 slots; the class slot is added to every token
  (`x + pos_embed[:, 1:] + pos_embed[:, :1]`), there is no class token;
- 32 pre-norm blocks (LayerNorm eps 1e-6 -> attention -> residual, LayerNorm -> MLP 4x with
  exact GELU -> residual), width 1280, 16 heads, qkv bias;
- a final LayerNorm (`last_norm`), tokens reshaped to (B, C, 16, 12).

The module is transformers' `VitPoseBackbone` (the maintained implementation of exactly
this network: padding 2, the class-slot sum, pre-norm blocks), configured with ViTPose's
eps 1e-6 and the last stage as output. Checkpoints are read in ViTPose's key layout
(`vitpose_keys`) and mapped onto it by `vitpose_to_transformers` (the fused `qkv` is split
into query / key / value); `tests/test_vitpose.py` checks the result against a
transcription of ViTPose's forward.

    enc = ViTPoseEncoder("vitpose-h")                      # random weights
    enc.load_checkpoint("data/assets/vitpose_h.pth")        # mmpose, HMR2.0 or plain backbone
    feats = enc(normalize(crops_uint8_nhwc))                # (B, 1280, 16, 12) float32
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.record import CROP_HW
from model.checkpoint import CheckpointError
from model.checkpoint import load as load_checkpoint

# ImageNet statistics on RGB in [0, 1], as ViTPose's `NormalizeTensor` and HMR2.0's
# DEFAULT_MEAN / DEFAULT_STD (x 255) use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH = 16
PATCH_PADDING = 2  # ViTPose `PatchEmbed`: 4 + 2 * (ratio // 2 - 1) with ratio 1
LAYER_NORM_EPS = 1e-6  # ViTPose `ViT`: partial(nn.LayerNorm, eps=1e-6)


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a ViTPose-style plain ViT. `name` identifies the feature cache it makes."""

    name: str
    width: int  # C, token width = channels of the feature map
    depth: int  # transformer blocks
    heads: int
    mlp_ratio: int = 4
    image_hw: tuple[int, int] = CROP_HW

    @property
    def feature_hw(self) -> tuple[int, int]:
        """(H, W) of the output map: the padded patch convolution's output size."""
        return tuple((s + 2 * PATCH_PADDING - PATCH) // PATCH + 1 for s in self.image_hw)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return (self.width, *self.feature_hw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_hw"] = list(self.image_hw)
        return d


# ViTPose's published sizes (ViTPose `configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/
# ViTPose_{small,base,large,huge}_coco_256x192.py`) and a tiny one of the same class for
# tests and the CPU demo (its width matches the decoder's tiny `context_dim`).
CONFIGS: dict[str, EncoderConfig] = {
    "vitpose-h": EncoderConfig("vitpose-h", width=1280, depth=32, heads=16),
    "vitpose-l": EncoderConfig("vitpose-l", width=1024, depth=24, heads=16),
    "vitpose-b": EncoderConfig("vitpose-b", width=768, depth=12, heads=12),
    "vitpose-s": EncoderConfig("vitpose-s", width=384, depth=12, heads=12),
    "tiny": EncoderConfig("tiny", width=32, depth=2, heads=2),
}


def get_encoder_config(name: str) -> EncoderConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown encoder {name!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[name]


def mae_sincos_pos_embed(cfg: EncoderConfig) -> torch.Tensor:
    """(1, 1 + h*w, C) the fixed 2D sine-cosine position embedding that MAE pretraining uses,
    the weights ViTPose initialises its backbone with (ViTPose paper, implementation details).

    MAE's layout (facebookresearch/mae `util/pos_embed.py`, get_2d_sincos_pos_embed; ours,
    for a non-square grid): the first C/2 channels encode the column (x), the last C/2 the
    row (y); each half is [sin(p * w_k), cos(p * w_k)] with w_k = 10000^(-k / (C/4)),
    k < C/4, p the cell index; the class slot is zeros.
    """
    h, w = cfg.feature_hw
    if cfg.width % 4:
        raise ValueError(f"encoder width {cfg.width} is not divisible by 4 (2D sine-cosine embedding)")
    quarter = cfg.width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (C/4,)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")  # (h, w) each

    def axis(p: torch.Tensor) -> torch.Tensor:  # (h*w,) -> (h*w, C/2)
        out = p.reshape(-1, 1) * omega
        return torch.cat([out.sin(), out.cos()], 1)

    grid = torch.cat([axis(cols), axis(rows)], 1)  # (h*w, C), row-major tokens
    return torch.cat([torch.zeros(1, cfg.width, dtype=torch.float64), grid]).float()[None]


# ---- ViTPose key layout <-> transformers' VitPoseBackbone ---------------------------------
def vitpose_keys(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the backbone in ViTPose's layout (no `backbone.` prefix) with its shape."""
    c, hidden = cfg.width, cfg.width * cfg.mlp_ratio
    h, w = cfg.feature_hw
    keys = {"patch_embed.proj.weight": (c, 3, PATCH, PATCH), "patch_embed.proj.bias": (c,),
            "pos_embed": (1, 1 + h * w, c)}
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        keys |= {b + "norm1.weight": (c,), b + "norm1.bias": (c,),
                 b + "attn.qkv.weight": (3 * c, c), b + "attn.qkv.bias": (3 * c,),
                 b + "attn.proj.weight": (c, c), b + "attn.proj.bias": (c,),
                 b + "norm2.weight": (c,), b + "norm2.bias": (c,),
                 b + "mlp.fc1.weight": (hidden, c), b + "mlp.fc1.bias": (hidden,),
                 b + "mlp.fc2.weight": (c, hidden), b + "mlp.fc2.bias": (c,)}
    return keys | {"last_norm.weight": (c,), "last_norm.bias": (c,)}


# ViTPose name -> transformers name; `{i}` is the block index.
_RENAME = {
    "patch_embed.proj.{p}": "embeddings.patch_embeddings.projection.{p}",
    "pos_embed": "embeddings.position_embeddings",
    "blocks.{i}.norm1.{p}": "encoder.layer.{i}.layernorm_before.{p}",
    "blocks.{i}.attn.proj.{p}": "encoder.layer.{i}.attention.output.dense.{p}",
    "blocks.{i}.norm2.{p}": "encoder.layer.{i}.layernorm_after.{p}",
    "blocks.{i}.mlp.fc1.{p}": "encoder.layer.{i}.mlp.fc1.{p}",
    "blocks.{i}.mlp.fc2.{p}": "encoder.layer.{i}.mlp.fc2.{p}",
    "last_norm.{p}": "layernorm.{p}",
}
_RENAME_RE = [(re.compile("^" + re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)")
                          .replace(r"\{p\}", r"(?P<p>weight|bias)") + "$"), dst) for src, dst in _RENAME.items()]
_QKV = re.compile(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")


def _rename(key: str) -> str:
    for pattern, dst in _RENAME_RE:
        m = pattern.match(key)
        if m:
            return dst.format(**m.groupdict())
    raise KeyError(key)


def vitpose_to_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ViTPose-layout backbone state dict -> `VitPoseBackbone`'s.

    ViTPose's fused `attn.qkv` (3C, C) holds q, k, v in that order along its rows
    (`qkv.reshape(B, N, 3, heads, -1)`), so it splits into three (C, C) blocks.
    """
    out = {}
    for key, value in sd.items():
        m = _QKV.match(key)
        if m:
            i, p = m.groups()
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"encoder.layer.{i}.attention.attention.{name}.{p}"] = part
        else:
            out[_rename(key)] = value
    return out


def transformers_to_vitpose(sd: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    """Inverse of `vitpose_to_transformers` (for saving a plain ViTPose-layout backbone)."""
    out = {}
    for key in vitpose_keys(cfg):
        m = _QKV.match(key)
        if m:
            i, p = m.groups()
            out[key] = torch.cat([sd[f"encoder.layer.{i}.attention.attention.{n}.{p}"]
                                  for n in ("query", "key", "value")], 0)
        else:
            out[key] = sd[_rename(key)]
    return out


# ---- checkpoint files --------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(backbone state dict in ViTPose layout, meta) from a local checkpoint file.

    Accepts (a) an mmpose/ViTPose checkpoint (`state_dict` with `backbone.*` keys; the
    `keypoint_head.*` keys are ignored), (b) an HMR2.0 Lightning checkpoint (its
    `state_dict`'s `backbone.*` part), (c) a plain backbone state dict, bare or under
    `state_dict` (4D-Humans' `hmr2_training_data/vitpose_backbone.pth`), with or without the
    `backbone.` prefix. Loaded by `model.checkpoint.load` (weights only); classes in the
    metadata that torch's allowlist lacks are read as plain ordered dicts.
    `meta` is the checkpoint's `meta` dict when it has one (`meta['synthetic']` marks the
    project's stand-ins, see `datasets.assets`).
    """
    path = Path(path)
    obj = load_checkpoint(path, "encoder checkpoint", inert_classes=True, mmap=True)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    sd = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("backbone.") for k in tensors):
        tensors = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (looked in 'state_dict' and at the top level)")
    return tensors, meta


def check_backbone_keys(sd: dict, cfg: EncoderConfig, source: str) -> None:
    """Strict check of a ViTPose-layout state dict against `cfg`: missing / unexpected keys
    and shape mismatches are all listed in one error."""
    expected = vitpose_keys(cfg)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(f"{k} {tuple(sd[k].shape)} != {expected[k]}" for k in set(expected) & set(sd)
                   if tuple(sd[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{source}: checkpoint does not match encoder {cfg.name!r}"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:20])}{' ...' if len(items) > 20 else ''}")
        raise CheckpointError("; ".join(parts))


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- the encoder ---------------------------------------------------------------------------
def normalize(crops: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB crops -> (B, 3, H, W) float32, ImageNet-normalised, same device.
    `mean`, `std`: (1, 3, 1, 1) float32 on the crops' device (`ViTPoseEncoder.pixel_mean` /
    `pixel_std`: no host-to-device copy per call); default: made here from the constants."""
    x = crops.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1) if mean is None else mean
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) if std is None else std
    return (x - mean) / std


BF16_AUTOCAST, FP32 = "bf16-autocast", "fp32"


def encoder_precision(device_type: str) -> str:
    """How `ViTPoseEncoder.forward` computes on a device type: bf16 autocast on CUDA, fp32
    elsewhere (the feature cache records it: the bytes differ between the two)."""
    return BF16_AUTOCAST if device_type == "cuda" else FP32


class ViTPoseEncoder(nn.Module):
    """Frozen ViTPose backbone: (B, 3, 256, 192) normalised RGB -> (B, C, 16, 12) float32.

    Always in eval mode, no parameter requires grad, forward runs without autograd; on
    CUDA under bf16 autocast. Weights are random (seeded by `seed`) until
    `load_checkpoint` / `load_vitpose_state_dict`.
    """

    def __init__(self, config: EncoderConfig | str = "vitpose-h", seed: int = 0):
        super().__init__()
        from transformers import VitPoseBackbone, VitPoseBackboneConfig

        self.config = get_encoder_config(config) if isinstance(config, str) else config
        c = self.config
        hf = VitPoseBackboneConfig(
            image_size=list(c.image_hw), patch_size=[PATCH, PATCH], hidden_size=c.width,
            num_hidden_layers=c.depth, num_attention_heads=c.heads, mlp_ratio=c.mlp_ratio,
            hidden_act="gelu", layer_norm_eps=LAYER_NORM_EPS, qkv_bias=True,
            out_indices=[c.depth])  # the last block's output, through the final LayerNorm
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.backbone = VitPoseBackbone(hf)
        # the preprocessing constants as buffers, so `normalize` on the encoder's device copies
        # nothing from the host (not in the state dict: they are not weights)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ViTPoseEncoder":
        return super().train(False)  # frozen: never leaves eval mode

    def place(self, device: str | torch.device) -> "ViTPoseEncoder":
        """Move to `device` for inference. Where the forward runs under bf16 autocast (CUDA),
        the weights of the matrix products (every Linear and the patch Conv2d) are stored in
        bf16 once, the values autocast would cast them to on every forward (so the features
        are the same bits, a test checks it); LayerNorms and the position embedding stay
        float32, as autocast computes them. Halves the weights' memory and removes the
        per-forward cast of the frozen weights."""
        device = torch.device(device)
        self.to(device)
        if encoder_precision(device.type) == BF16_AUTOCAST:
            self.store_matmul_weights(torch.bfloat16)
        return self

    def store_matmul_weights(self, dtype: torch.dtype) -> None:
        """Cast the parameters of every Linear and Conv2d (the ops autocast runs in low precision) to `dtype`."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.to(dtype)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 crops on the encoder's device -> normalised (B, 3, H, W) float32."""
        return normalize(crops, self.pixel_mean, self.pixel_std)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        h, w = self.config.feature_hw
        with torch.autocast(device_type=pixels.device.type, dtype=torch.bfloat16,
                            enabled=encoder_precision(pixels.device.type) == BF16_AUTOCAST):
            tokens = self.backbone(pixels).feature_maps[-1]  # (B, h*w, C)
        return tokens.float().transpose(1, 2).reshape(b, self.config.width, h, w)  # (B, C, h, w)

    def load_vitpose_state_dict(self, sd: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a ViTPose-layout backbone state dict (strict, see `check_backbone_keys`)."""
        check_backbone_keys(sd, self.config, source)
        self.backbone.load_state_dict(vitpose_to_transformers(sd), strict=True)

    def vitpose_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in ViTPose's layout (loadable by ViTPose and by `load_checkpoint`)."""
        return transformers_to_vitpose(self.backbone.state_dict(), self.config)

    def load_checkpoint(self, path: str | Path) -> dict:
        """Load (a) mmpose ViTPose, (b) HMR2.0 `backbone.*` or (c) plain backbone weights;
        returns the checkpoint's `meta`."""
        sd, meta = read_checkpoint(path)
        self.load_vitpose_state_dict(sd, source=str(path))
        return meta


def encoder_spec(name: str, ckpt: str | Path | None = None, seed: int = 0) -> dict:
    """What a feature cache records about its encoder, as timm stores a pretrained cfg with
    its weights: shape, preprocessing, and the weights' identity (file sha256, or the seed of
    random weights) and whether they are synthetic. Checks the checkpoint's keys without
    building the network."""
    cfg = get_encoder_config(name)
    if ckpt is None:
        weights, synthetic = {"random_seed": seed}, True
    else:
        sd, meta = read_checkpoint(ckpt)
        check_backbone_keys(sd, cfg, str(ckpt))
        weights, synthetic = {"file": Path(ckpt).name, "sha256": file_sha256(ckpt)}, bool(meta.get("synthetic", False))
    return {"encoder": cfg.name, "config": cfg.to_dict(), "feature_shape": list(cfg.feature_shape),
            "input": {"size_hw": list(cfg.image_hw), "color": "RGB", "scale": "1/255",
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "weights": weights, "synthetic": synthetic,
            "implementation": "transformers.VitPoseBackbone, ViTPose key layout (model/vitpose.py)"}


def load_encoder(name: str, ckpt: str | Path | None = None, seed: int = 0) -> ViTPoseEncoder:
    """`name`'s encoder with `ckpt`'s weights, or random weights (seeded) without one."""
    enc = ViTPoseEncoder(name, seed=seed)
    if ckpt is not None:
        enc.load_checkpoint(ckpt)
    return enc


def encode_crops(encoder: ViTPoseEncoder, crops: np.ndarray, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB crops -> (B, C, h, w) features (numpy, `dtype`, cast on `device`)."""
    crops = np.ascontiguousarray(crops)
    if not crops.flags.writeable:  # e.g. np.frombuffer of bytes; torch wants writable memory
        crops = crops.copy()
    x = torch.from_numpy(crops).to(device)
    feats = encoder(normalize(x))  # (B, C, h, w), a transposed view of the tokens
    return feats.to(dtype, memory_format=torch.contiguous_format).cpu().numpy()  # C-order made on the device
