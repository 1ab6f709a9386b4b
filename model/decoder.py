"""The transformer decoder over query tokens (paper §3.2.1-3.2.2, Fig. 2).

Each layer (§3.2.2): Y1 = SelfAttn(Y) + Y; Y2 = CrossAttn(Y1, X) + Y1; Y' = FFN(Y2) + Y2,
with a LayerNorm before each sub-block (pre-LN, ours: the paper does not say where the
norms sit; HMR2.0's decoder is pre-LN too) and, when `cfg.final_norm` (ours), a final
LayerNorm after the last layer (HMR2.0 has none). Attention width (`cfg.attn_dim` =
heads x head width), q/k/v biases and initialisation are configuration, so the same code
is DeforHMR's decoder and HMR2.0's (`model.config.HMR2_DECODER`).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import ModelConfig
from model.deformable_attention import AttentionInfo, CrossAttention


class SelfAttention(nn.Module):
    """Multi-head self-attention among the query tokens, q/k/v `attn_dim` wide, output
    projected back to `dim`.

    Parameters are named as nn.MultiheadAttention's (in_proj_weight (3A, D), in_proj_bias
    (3A) or absent, out_proj), which the decoder used before, so its checkpoints load.
    init "ours": nn.MultiheadAttention's (xavier-uniform in_proj, zero biases); "hmr2":
    nn.Linear's defaults, as 4D-Humans pose_transformer.py `Attention` (to_qkv, to_out).
    """

    def __init__(self, dim: int, attn_dim: int, heads: int, bias: bool = True, init: str = "ours"):
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * attn_dim, dim))  # rows: q, k, v
        self.in_proj_bias = nn.Parameter(torch.empty(3 * attn_dim)) if bias else None
        self.out_proj = nn.Linear(attn_dim, dim)
        if init == "ours":
            nn.init.xavier_uniform_(self.in_proj_weight)
            if bias:
                nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        elif init == "hmr2":  # nn.Linear.reset_parameters on the (3A, D) matrix (out_proj has it already)
            nn.init.kaiming_uniform_(self.in_proj_weight, a=math.sqrt(5))
            if bias:
                nn.init.uniform_(self.in_proj_bias, -1 / math.sqrt(dim), 1 / math.sqrt(dim))
        else:
            raise ValueError(f"init must be ours | hmr2, got {init!r}")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, N, D) -> (B, N, D)."""
        b, n, _ = y.shape
        qkv = F.linear(y, self.in_proj_weight, self.in_proj_bias)  # (B, N, 3A)
        q, k, v = qkv.reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, N, A/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(QK^T / sqrt(d)) V, (B, heads, N, A/heads)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))  # (B, N, A) -> (B, N, D)


class DecoderLayer(nn.Module):
    """Self-attention + (deformable | regular) cross-attention + 2-layer FFN, each residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = SelfAttention(d, cfg.attn_dim, cfg.heads, bias=cfg.qkv_bias, init=cfg.init)
        self.norm_cross = nn.LayerNorm(d)
        self.cross_attn = CrossAttention(
            d, cfg.context_dim, cfg.heads, cfg.num_queries, cfg.feature_hw, cfg.pos_encoding,
            deformable=cfg.cross_attention == "deformable", groups=cfg.groups,
            offset_range=cfg.offset_range, offset_kernel=cfg.offset_kernel,
            attn_dim=cfg.attn_dim, qkv_bias=cfg.qkv_bias)
        self.norm_ffn = nn.LayerNorm(d)
        # ours: GELU between the two linear layers (HMR2.0's FeedForward)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, d))

    def forward(self, y: torch.Tensor, context: torch.Tensor, need_weights: bool = False):
        """y (B, N, D), context (B, C, H, W) -> (y (B, N, D), AttentionInfo | None)."""
        y = y + self.self_attn(self.norm_self(y))  # Y1 = Self-Attn(Y) + Y
        out, info = self.cross_attn(self.norm_cross(y), context, need_weights)
        y = y + out  # Y2 = AV + Y1
        y = y + self.ffn(self.norm_ffn(y))  # Y = FFN(Y2) + Y2
        return y, info


class Decoder(nn.Module):
    """`depth` decoder layers and, if `cfg.final_norm`, a final LayerNorm: tokens (B, N, D)
    x context -> tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim) if cfg.final_norm else nn.Identity()

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, need_weights: bool = False):
        """-> (tokens (B, N, D), [AttentionInfo per layer] if need_weights else [])."""
        infos: list[AttentionInfo] = []
        for layer in self.layers:
            tokens, info = layer(tokens, context, need_weights)
            if info is not None:
                infos.append(info)
        return self.norm(tokens), infos


class Queries(nn.Module):
    """Learnable query tokens: multi = 24 joint tokens + 1 shape token (t in R^{25xD},
    §3.2.1), single = one token (HMR2.0). (N, D). init "ours": trunc-normal(0.02) (ViT's);
    "hmr2": N(0, 1), 4D-Humans `TransformerDecoder.pos_embedding = torch.randn(...)`, which
    this is: HMR2.0 adds it to its embedded input token as DeforHMR's IEF adds the estimate."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(cfg.num_queries, cfg.dim))
        if cfg.init == "hmr2":
            nn.init.normal_(self.tokens)
        else:
            nn.init.trunc_normal_(self.tokens, std=0.02)

    def forward(self, batch: int) -> torch.Tensor:
        return self.tokens.unsqueeze(0).expand(batch, -1, -1)  # (B, N, D)
