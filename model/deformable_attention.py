"""Cross-attention from query tokens to an encoder feature map (paper §3.2.2, Fig. 3).

`CrossAttention(deformable=True)` is DeforHMR's query-agnostic deformable cross-attention:
offsets come from the context alone (eq. 2), are bounded (tanh, λ_o cells), added to a
reference grid (eq. 1, 3); the context is sampled bilinearly at the positions P, per
offset group, and projected to keys and values; the attention logits get a bias sampled
from a learnable per-query relative-position table at P (eq. 4).
`CrossAttention(deformable=False)` is plain multi-head attention over all H x W context
tokens (the HMR2.0-style "Reg" baseline of Table 2).

Coordinates: positions are normalised to [-1, 1] as `F.grid_sample` with
`align_corners=False` reads them, stored (x, y) (grid_sample's order), shaped
(B, G, H, W, 2). -1 is the outer edge of the first cell, so a cell centre is
(i + 0.5) / H * 2 - 1. `positions_to_pixels` maps them to image pixels (Fig. 5).

Facts about DAT's conventions (offset net = depthwise conv -> LayerNorm -> GELU -> 1x1
conv to 2 channels, no bias; groups folded into the batch; RPE table sampled with
grid_sample; trunc-normal(0.01) table init) are from LeapLabTHU/DAT
`models/dat_blocks.py` (DAttentionBaseline); the code here is ours.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class AttentionInfo:
    """What one cross-attention layer looked at (for Fig. 5-style visualisation).

    - positions: (B, G, H, W, 2) sampling positions P, (x, y) in [-1, 1]
      (align_corners=False); G = 1 for regular cross-attention (the cell centres).
    - weights: (B, heads, N, H*W) softmax attention of each head and query over the
      sampled keys; key k of head h sits at positions[:, h // (heads // G)] flattened
      row-major over (H, W).
    """

    positions: torch.Tensor
    weights: torch.Tensor


def reference_grid(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """(H, W, 2) cell centres (x, y) in [-1, 1], as read by grid_sample(align_corners=False).

    Eq. 1 prints R_ij = (i/H*2-1, j/W*2-1), which under align_corners=False lands on the
    top-left corner of each cell (between cells) and with align_corners=True on a grid
    that misses the last row/column. Ours: cell centres (2i+1)/H - 1, so that zero
    offsets sample the feature map exactly. DAT differs: `_get_ref_points` (models/
    dat_blocks.py) takes linspace(0.5, H-0.5, H) / (H-1) * 2 - 1 and samples with
    align_corners=True (±1 = the centres of the first and last cells), i.e. at cell
    index i + 0.5, halfway between two cell centres (the last half a cell past the last one).
    """
    ys = (2 * torch.arange(h, device=device, dtype=dtype) + 1) / h - 1  # (H,)
    xs = (2 * torch.arange(w, device=device, dtype=dtype) + 1) / w - 1  # (W,)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([gx, gy], -1)  # (H, W, 2) as (x, y)


def positions_to_pixels(positions: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """(..., 2) normalised (x, y) positions -> (..., 2) pixels of an image of size image_hw.

    Pixels with (0, 0) at the centre of the top-left pixel (model.geometry's convention);
    -1 / +1 are the outer image edges (align_corners=False).
    """
    h, w = image_hw
    size = positions.new_tensor([w, h])
    return (positions + 1) / 2 * size - 0.5


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, H, W)


class OffsetNet(nn.Module):
    """Eq. 2: ΔP' = Conv2D(GELU(LayerNorm(Conv2D(X)))), one group's channels in, (x, y) out.

    Shared by the G groups (the groups are folded into the batch, as in DAT). The first
    conv is depthwise k x k (DAT's choice; the paper says "grouped convolutions"), the
    second a 1x1 conv to 2 channels without bias (DAT).
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels),
            LayerNorm2d(channels),
            nn.GELU(),
            nn.Conv2d(channels, 2, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B*G, 2, H, W) raw offsets, channel 0 = x, 1 = y (ours)


class CrossAttention(nn.Module):
    """Multi-head cross-attention from N tokens (B, N, D) to a context map (B, C, H, W).

    Returns the output projection of AV, (B, N, D); the residual is the caller's (the
    decoder layer adds it, §3.2.2 "Y2 = AV + Y1").

    pos_encoding: "relative" adds eq. 4's bias φ(Z_rpe, P), Z_rpe a learnable
    (heads, N, H, W) table (one grid per query and head; §3.2.2: queries have no
    position, so each query learns its own grid) sampled bilinearly at P; "absolute"
    adds a learnable (C, H, W) embedding to the context before it is sampled (ours, ViT
    style; the paper's Table 4 names it only); "none" adds nothing.
    attn_dim: width of Q, K, V (heads x head width; None: `dim`), projected back to `dim`;
    qkv_bias: whether W_q, W_k, W_v have a bias (4D-Humans' CrossAttention: no).
    """

    def __init__(self, dim: int, context_dim: int, heads: int, num_queries: int,
                 feature_hw: tuple[int, int], pos_encoding: str = "relative",
                 deformable: bool = True, groups: int = 1, offset_range: float = 1.0,
                 offset_kernel: int = 5, attn_dim: int | None = None, qkv_bias: bool = True):
        super().__init__()
        attn_dim = attn_dim or dim
        if attn_dim % heads or heads % groups or context_dim % groups:
            raise ValueError(f"attn_dim {attn_dim} / heads {heads} / groups {groups} / context_dim {context_dim} "
                             f"do not divide")
        self.heads, self.head_dim = heads, attn_dim // heads
        self.groups = groups if deformable else 1
        self.deformable, self.offset_range = deformable, offset_range
        self.feature_hw, self.num_queries = tuple(feature_hw), num_queries
        # §3.2.2: Q = W_q Y1, K = W_k S, V = W_v S (S in C channels; projected C -> attn_dim)
        self.to_q = nn.Linear(dim, attn_dim, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, attn_dim, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, attn_dim, bias=qkv_bias)
        self.to_out = nn.Linear(attn_dim, dim)
        self.offset_net = OffsetNet(context_dim // groups, offset_kernel) if deformable else None
        h, w = self.feature_hw
        # constants as buffers (non-persistent: derived from the config, never in a checkpoint),
        # made once, so that a step builds no tensor from host data (a host-to-device copy on
        # a GPU); `_apply` remakes them in a new dtype (exact in float64)
        self._make_constants(None, torch.get_default_dtype())  # None: the default device
        self.scale = 1 / math.sqrt(self.head_dim)  # eq. 4: 1 / sqrt(d_k)
        self.rpe_table = self.abs_pos = None
        if pos_encoding == "relative":
            # ours: one cell per feature-map cell, indexed by absolute position (the queries
            # have no position, so there is no displacement; DAT's table is (2H-1)x(2W-1))
            self.rpe_table = nn.Parameter(torch.zeros(heads, num_queries, h, w))
            nn.init.trunc_normal_(self.rpe_table, std=0.01)  # DAT's init of its rpe_table
        elif pos_encoding == "absolute":
            self.abs_pos = nn.Parameter(torch.zeros(1, context_dim, h, w))
            nn.init.trunc_normal_(self.abs_pos, std=0.02)  # ours: ViT's position-embedding init
        elif pos_encoding != "none":
            raise ValueError(f"pos_encoding must be none | absolute | relative, got {pos_encoding!r}")

    def _make_constants(self, device, dtype) -> None:
        h, w = self.feature_hw
        self.register_buffer("ref_grid", reference_grid(h, w, device, dtype), persistent=False)  # eq. 1, (H, W, 2)
        # ΔP = λ_o / H_r · tanh(ΔP'). The paper bounds the offset by "λ_o times the grid
        # spacing"; a cell is 2/H wide in [-1, 1], so ours reads H_r = H/2 per axis (H_r = W/2
        # for x): λ_o = 1 is one cell. (DAT scales by 1/(H-1) under align_corners=True, which
        # is half a cell.)
        cell = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64, device=device)  # (2,) cell size (x, y)
        self.register_buffer("offset_scale", (self.offset_range * cell).to(dtype), persistent=False)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._make_constants(self.ref_grid.device, self.ref_grid.dtype)
        return self

    # ---- eq. 1-3: sampling positions ----------------------------------------------------
    def offsets(self, context: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> ΔP (B*G, H, W, 2), (x, y) normalised, |ΔP| <= λ_o cells per axis."""
        b, c, h, w = context.shape
        x = context.reshape(b * self.groups, c // self.groups, h, w)  # (B*G, C/G, H, W)
        raw = self.offset_net(x).permute(0, 2, 3, 1)  # eq. 2: ΔP' (B*G, H, W, 2)
        return self.offset_scale * torch.tanh(raw)  # ΔP = λ_o / H_r · tanh(ΔP') (see __init__)

    def positions(self, context: torch.Tensor) -> torch.Tensor:
        """Sampling positions P (B, G, H, W, 2); a function of the context only (query-agnostic)."""
        b = context.shape[0]
        ref = self.ref_grid  # eq. 1 (cell centres, see reference_grid), (H, W, 2)
        if not self.deformable:
            return ref.expand(b, 1, *ref.shape)  # (B, 1, H, W, 2)
        pos = ref + self.offsets(context)  # eq. 3: P = ΔP + R, (B*G, H, W, 2)
        return pos.reshape(b, self.groups, *pos.shape[1:])  # (B, G, H, W, 2)

    def sample(self, context: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """S: the context sampled bilinearly at P, group g's C/G channels at P_g.

        (B, C, H, W), (B, G, H, W, 2) -> (B, C, H, W). Outside the map the context is 0
        (grid_sample's zero padding, as DAT).
        """
        if not self.deformable:
            return context
        b, c, h, w = context.shape
        g = self.groups
        s = F.grid_sample(context.reshape(b * g, c // g, h, w),  # (B*G, C/G, H, W)
                          positions.reshape(b * g, *positions.shape[2:]),  # (B*G, H, W, 2)
                          mode="bilinear", padding_mode="zeros", align_corners=False)
        return s.reshape(b, c, *s.shape[2:])  # (B, C, H, W)

    def rpe_bias(self, positions: torch.Tensor) -> torch.Tensor:
        """Eq. 4's φ(Z_rpe, P): (B, G, H, W, 2) -> (B, heads, N, H*W).

        Head h reads its group's positions (h // (heads / G)); outside [-1, 1] the table's
        border value (ours).
        """
        b, g, h, w, _ = positions.shape
        if not self.deformable:  # P is the cell centres, where φ returns the table itself
            return self.rpe_table.reshape(1, self.heads, self.num_queries, h * w)  # (1, heads, N, HW)
        hg = self.heads // g
        table = self.rpe_table.reshape(g, hg * self.num_queries, *self.feature_hw)  # (G, heads/G*N, H, W)
        table = table.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(b * g, *table.shape[1:])  # (B*G, heads/G*N, H, W)
        bias = F.grid_sample(table, positions.reshape(b * g, h, w, 2).to(table.dtype),
                             mode="bilinear", padding_mode="border", align_corners=False)  # (B*G, heads/G*N, H, W)
        return bias.reshape(b, self.heads, self.num_queries, h * w)  # (B, heads, N, HW)

    # ---- eq. 4: attention ------------------------------------------------------------------
    def project(self, tokens: torch.Tensor, context: torch.Tensor, positions: torch.Tensor):
        """Q (B, heads, N, d), K and V (B, heads, H*W, d) from the tokens and the sampled context."""
        if self.abs_pos is not None:
            context = context + self.abs_pos  # absolute PE, carried to P by the sampling
        s = self.sample(context, positions).flatten(2).transpose(1, 2)  # (B, HW, C)

        def split(t):  # (B, L, A) -> (B, heads, L, A/heads)
            return t.reshape(*t.shape[:2], self.heads, self.head_dim).transpose(1, 2)

        return split(self.to_q(tokens)), split(self.to_k(s)), split(self.to_v(s))

    def attention(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Eq. 4: A = softmax(QK^T / sqrt(d_k) + φ(Z_rpe, P)), (B, heads, N, HW), with the
        logits, the bias and the softmax in fp32 (or wider) outside autocast (ours): logits of a few
        units rounded to bf16 carry errors of ~1e-2, as large as the bias itself (the
        table starts at σ 0.01). QK^T is N x HW per head (25 x 192), small next to the
        projections, so fp32 costs little."""
        wide = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(q.device.type, enabled=False):
            logits = (q.to(wide) @ k.to(wide).transpose(-1, -2)) * self.scale  # QK^T / sqrt(d_k)
            if self.rpe_table is not None:
                logits = logits + self.rpe_bias(positions).to(wide)  # + φ(Z_rpe, P)
            return logits.softmax(-1)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, need_weights: bool = False):
        """tokens (B, N, D), context (B, C, H, W) -> (out (B, N, D), AttentionInfo or None)."""
        b, n, _ = tokens.shape
        if tuple(context.shape[2:]) != self.feature_hw:
            raise ValueError(f"context map is {tuple(context.shape[2:])}, the layer was built for {self.feature_hw}")
        if self.rpe_table is not None and n != self.num_queries:
            raise ValueError(f"{n} query tokens, the relative-position table has {self.num_queries}")
        context = context.to(tokens.dtype)
        pos = self.positions(context)  # (B, G, H, W, 2)
        q, k, v = self.project(tokens, context, pos)
        attn = self.attention(q, k, pos)  # A, (B, heads, N, HW), fp32
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, -1)  # AV (bf16 under autocast), (B, heads, N, d) -> (B, N, A)
        info = AttentionInfo(positions=pos.detach(), weights=attn.detach()) if need_weights else None
        return self.to_out(out), info
