"""The transformer decoder over query tokens (paper §3.2.1-3.2.2, Fig. 2).

Each layer (§3.2.2): Y1 = SelfAttn(Y) + Y; Y2 = CrossAttn(Y1, X) + Y1; Y' = FFN(Y2) + Y2,
with a LayerNorm before each sub-block (pre-LN, ours: the paper does not say where the
norms sit; HMR2.0's decoder is pre-LN too) and a final LayerNorm after the last layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from model.config import ModelConfig
from model.deformable_attention import AttentionInfo, CrossAttention


class DecoderLayer(nn.Module):
    """Self-attention + (deformable | regular) cross-attention + 2-layer FFN, each residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, cfg.heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(d)
        self.cross_attn = CrossAttention(
            d, cfg.context_dim, cfg.heads, cfg.num_queries, cfg.feature_hw, cfg.pos_encoding,
            deformable=cfg.cross_attention == "deformable", groups=cfg.groups,
            offset_range=cfg.offset_range, offset_kernel=cfg.offset_kernel)
        self.norm_ffn = nn.LayerNorm(d)
        # ours: GELU between the two linear layers (HMR2.0's FeedForward)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, d))

    def forward(self, y: torch.Tensor, context: torch.Tensor, need_weights: bool = False):
        """y (B, N, D), context (B, C, H, W) -> (y (B, N, D), AttentionInfo | None)."""
        h = self.norm_self(y)
        y = y + self.self_attn(h, h, h, need_weights=False)[0]  # Y1 = Self-Attn(Y) + Y
        out, info = self.cross_attn(self.norm_cross(y), context, need_weights)
        y = y + out  # Y2 = AV + Y1
        y = y + self.ffn(self.norm_ffn(y))  # Y = FFN(Y2) + Y2
        return y, info


class Decoder(nn.Module):
    """`depth` decoder layers and a final LayerNorm: tokens (B, N, D) x context -> tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

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
    §3.2.1), single = one token (HMR2.0). (N, D), trunc-normal(0.02) init (ours, ViT's)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(cfg.num_queries, cfg.dim))
        nn.init.trunc_normal_(self.tokens, std=0.02)

    def forward(self, batch: int) -> torch.Tensor:
        return self.tokens.unsqueeze(0).expand(batch, -1, -1)  # (B, N, D)
