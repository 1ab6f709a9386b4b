"""Reg-S ("HMR2.0†", paper Table 2) against HMR2.0's decoder head as 4D-Humans builds it.

The reference below is written from 4D-Humans' sources, not from our model:
- hmr2/configs_hydra/experiment/hmr_vit_transformer.yaml, `MODEL.SMPL_HEAD.TRANSFORMER_DECODER`:
  depth 6, heads 8, mlp_dim 1024, dim_head 64, dropout 0, emb_dropout 0, norm layer, context_dim 1280;
- hmr2/models/heads/smpl_head.py `SMPLTransformerDecoderHead`: num_tokens 1, token_dim 1
  (TRANSFORMER_INPUT defaults to 'zero'), dim 1024, decpose nn.Linear(dim, 6 * 24), decshape
  nn.Linear(dim, 10), deccam nn.Linear(dim, 3) (INIT_DECODER_XAVIER unset: nn.Linear's init),
  one IEF round from the mean parameters (pred = dec(token_out) + init);
- hmr2/models/components/pose_transformer.py: `TransformerDecoder` (to_token_embedding
  nn.Linear(token_dim, dim), pos_embedding randn(1, num_tokens, dim), then
  `TransformerCrossAttn`: per layer PreNorm(LayerNorm) around `Attention` (to_qkv
  nn.Linear(dim, 3 * inner, bias=False), to_out nn.Linear(inner, dim)), `CrossAttention`
  (to_kv nn.Linear(context_dim, 2 * inner, bias=False), to_q nn.Linear(dim, inner, bias=False),
  to_out) and `FeedForward` (Linear, GELU, Dropout, Linear, Dropout), each residual, and no
  norm after the last layer), inner = heads * dim_head, scale dim_head ** -0.5.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.config import get_config
from model.deforhmr import DeforHMR
from model.summary import count_parameters

# hmr_vit_transformer.yaml TRANSFORMER_DECODER, with smpl_head.py's dim / token arguments
HMR2_HEAD = dict(depth=6, heads=8, dim_head=64, mlp_dim=1024, context_dim=1280, dim=1024, num_tokens=1,
                 token_dim=1, npose=6 * 24)
# the same head at our tiny test size (reg-s-tiny)
HMR2_HEAD_TINY = dict(HMR2_HEAD, depth=2, dim_head=4, mlp_dim=64, context_dim=32, dim=64)


def hmr2_param_shapes(depth, heads, dim_head, mlp_dim, context_dim, dim, num_tokens, token_dim, npose):
    """name -> shape of every parameter of SMPLTransformerDecoderHead, from the module definitions."""
    inner = heads * dim_head
    shapes = {"transformer.to_token_embedding.weight": (dim, token_dim),
              "transformer.to_token_embedding.bias": (dim,),
              "transformer.pos_embedding": (1, num_tokens, dim)}
    for i in range(depth):
        p = f"transformer.transformer.layers.{i}"
        for j in range(3):  # PreNorm(LayerNorm(dim)) around attn, cross-attn, ff
            shapes[f"{p}.{j}.norm.weight"] = shapes[f"{p}.{j}.norm.bias"] = (dim,)
        shapes[f"{p}.0.fn.to_qkv.weight"] = (3 * inner, dim)
        shapes[f"{p}.0.fn.to_out.0.weight"], shapes[f"{p}.0.fn.to_out.0.bias"] = (dim, inner), (dim,)
        shapes[f"{p}.1.fn.to_kv.weight"] = (2 * inner, context_dim)
        shapes[f"{p}.1.fn.to_q.weight"] = (inner, dim)
        shapes[f"{p}.1.fn.to_out.0.weight"], shapes[f"{p}.1.fn.to_out.0.bias"] = (dim, inner), (dim,)
        shapes[f"{p}.2.fn.net.0.weight"], shapes[f"{p}.2.fn.net.0.bias"] = (mlp_dim, dim), (mlp_dim,)
        shapes[f"{p}.2.fn.net.3.weight"], shapes[f"{p}.2.fn.net.3.bias"] = (dim, mlp_dim), (dim,)
    for name, out in (("decpose", npose), ("decshape", 10), ("deccam", 3)):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, dim), (out,)
    return shapes


def as_hmr2_state(model: DeforHMR) -> dict[str, torch.Tensor]:
    """Our Reg-S parameters under 4D-Humans' names (every one of ours used exactly once)."""
    sd = dict(model.named_parameters())
    out = {"transformer.to_token_embedding.weight": sd.pop("embed_token.weight"),
           "transformer.to_token_embedding.bias": sd.pop("embed_token.bias"),
           "transformer.pos_embedding": sd.pop("queries.tokens")[None]}
    for i in range(model.cfg.depth):
        p, q = f"transformer.transformer.layers.{i}", f"decoder.layers.{i}"
        names = {"norm_self": "0.norm", "self_attn.out_proj": "0.fn.to_out.0", "norm_cross": "1.norm",
                 "cross_attn.to_out": "1.fn.to_out.0", "norm_ffn": "2.norm", "ffn.0": "2.fn.net.0",
                 "ffn.2": "2.fn.net.3"}
        for ours, theirs in names.items():
            for t in ("weight", "bias"):
                out[f"{p}.{theirs}.{t}"] = sd.pop(f"{q}.{ours}.{t}")
        out[f"{p}.0.fn.to_qkv.weight"] = sd.pop(f"{q}.self_attn.in_proj_weight")  # rows q, k, v as chunk(3)
        out[f"{p}.1.fn.to_q.weight"] = sd.pop(f"{q}.cross_attn.to_q.weight")
        out[f"{p}.1.fn.to_kv.weight"] = torch.cat([sd.pop(f"{q}.cross_attn.to_k.weight"),  # chunk(2): k, v
                                                   sd.pop(f"{q}.cross_attn.to_v.weight")])
    for ours, theirs in (("head_pose", "decpose"), ("head_betas", "decshape"), ("head_cam", "deccam")):
        out[f"{theirs}.weight"], out[f"{theirs}.bias"] = sd.pop(f"{ours}.weight"), sd.pop(f"{ours}.bias")
    assert not sd, f"parameters with no counterpart in HMR2.0's head: {sorted(sd)}"
    return out


def hmr2_forward(w: dict, x: torch.Tensor, init: dict, depth, heads, dim_head, **_) -> torch.Tensor:
    """SMPLTransformerDecoderHead.forward up to the 6D pose (before rot6d_to_rotmat):
    x (B, C, H, W) -> (pred_body_pose (B, 144), pred_betas (B, 10), pred_cam (B, 3))."""
    b = x.shape[0]
    context = x.flatten(2).transpose(1, 2)  # 'b c h w -> b (h w) c'
    dim = w["transformer.pos_embedding"].shape[-1]
    token = torch.zeros(b, 1, 1, dtype=x.dtype)  # TRANSFORMER_INPUT 'zero'
    t = F.linear(token, w["transformer.to_token_embedding.weight"], w["transformer.to_token_embedding.bias"])
    t = t + w["transformer.pos_embedding"][:, :1]

    def ln(v, p):
        return F.layer_norm(v, (dim,), w[f"{p}.weight"], w[f"{p}.bias"])

    def attend(q, k, v, out_w, out_b):  # (B, n, inner) x (B, m, inner) -> (B, n, dim)
        split = lambda z: z.reshape(z.shape[0], z.shape[1], heads, dim_head).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        a = (q @ k.transpose(-1, -2) * dim_head ** -0.5).softmax(-1)
        return F.linear((a @ v).transpose(1, 2).reshape(q.shape[0], -1, heads * dim_head), out_w, out_b)

    for i in range(depth):
        p = f"transformer.transformer.layers.{i}"
        q, k, v = F.linear(ln(t, f"{p}.0.norm"), w[f"{p}.0.fn.to_qkv.weight"]).chunk(3, -1)
        t = attend(q, k, v, w[f"{p}.0.fn.to_out.0.weight"], w[f"{p}.0.fn.to_out.0.bias"]) + t
        k, v = F.linear(context, w[f"{p}.1.fn.to_kv.weight"]).chunk(2, -1)
        q = F.linear(ln(t, f"{p}.1.norm"), w[f"{p}.1.fn.to_q.weight"])
        t = attend(q, k, v, w[f"{p}.1.fn.to_out.0.weight"], w[f"{p}.1.fn.to_out.0.bias"]) + t
        h = F.gelu(F.linear(ln(t, f"{p}.2.norm"), w[f"{p}.2.fn.net.0.weight"], w[f"{p}.2.fn.net.0.bias"]))
        t = F.linear(h, w[f"{p}.2.fn.net.3.weight"], w[f"{p}.2.fn.net.3.bias"]) + t
    t = t.squeeze(1)  # no final norm
    return tuple(F.linear(t, w[f"{n}.weight"], w[f"{n}.bias"]) + init[k]
                 for n, k in (("decpose", "pose"), ("decshape", "shape"), ("deccam", "cam")))


def _mean_params() -> dict:
    g = np.random.default_rng(0)
    return {"pose": g.normal(size=144).astype(np.float32), "shape": g.normal(size=10).astype(np.float32),
            "cam": np.array([0.9, 0.1, -0.1], np.float32)}


def test_hmr2_head_has_39_5_million_parameters():
    """The formula itself, against a literal worked out by hand from the definitions:
    per layer 3 LayerNorms 6,144 + Attention 2,098,176 + CrossAttention 2,360,320 +
    FeedForward 2,099,200 = 6,563,840; x 6 + token 3,072 + heads 160,925."""
    n = sum(math.prod(s) for s in hmr2_param_shapes(**HMR2_HEAD).values())
    assert n == 6 * 6_563_840 + 3_072 + 160_925 == 39_547_037


def test_reg_s_parameters_are_hmr2s_one_for_one():
    """Every Reg-S parameter maps to one of HMR2.0's head with the same shape, and back."""
    with torch.device("meta"):
        model = DeforHMR(get_config("reg-s"), _mean_params())
    ours = {k: tuple(v.shape) for k, v in as_hmr2_state(model).items()}
    assert ours == hmr2_param_shapes(**HMR2_HEAD)
    assert count_parameters(get_config("reg-s")) == 39_547_037


def test_reg_s_layer_structure():
    """8 heads x 64, no q/k/v bias, output projections with bias, no final norm, zero input token."""
    cfg = get_config("reg-s")
    with torch.device("meta"):
        model = DeforHMR(cfg, _mean_params())
    assert isinstance(model.decoder.norm, torch.nn.Identity)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.decoder.norm.modules())
    for layer in model.decoder.layers:
        sa, ca = layer.self_attn, layer.cross_attn
        assert sa.heads == ca.heads == 8 and ca.head_dim == 64
        assert sa.in_proj_bias is None and sa.in_proj_weight.shape == (3 * 512, 1024)
        assert all(lin.bias is None for lin in (ca.to_q, ca.to_k, ca.to_v))
        assert sa.out_proj.bias is not None and ca.to_out.bias is not None
        assert ca.offset_net is None and ca.rpe_table is None and ca.abs_pos is None  # regular, no PE
    assert model.embed_token.in_features == 1 and not hasattr(model, "embed_all")


def test_reg_s_computes_what_hmr2s_head_computes():
    """Same weights, same feature map: our Reg-S (tiny) and the reference written from
    4D-Humans' modules give the same 6D pose, betas and camera (fp64)."""
    torch.manual_seed(0)
    mean = _mean_params()
    model = DeforHMR(get_config("reg-s-tiny"), mean).double().eval()
    with torch.no_grad():  # a trained-looking state: biases and norms away from their init
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 32, 16, 12, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        w = as_hmr2_state(model)
        init = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in mean.items()}
        pose, betas, cam = hmr2_forward(w, x, init, **HMR2_HEAD_TINY)
    torch.testing.assert_close(out.pose_6d.reshape(3, 144), pose, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.betas, betas, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.cam, cam, rtol=0, atol=1e-10)


def test_reg_s_initialisation_is_hmr2s():
    """pos_embedding ~ N(0, 1) (torch.randn); every Linear with nn.Linear's default
    U(±1/sqrt(fan_in)) weights and biases, the heads included (no xavier gain 0.01);
    the def-m default keeps ours (xavier self-attention, small heads)."""
    torch.manual_seed(0)
    model = DeforHMR(get_config("reg-s"), _mean_params())
    assert 0.9 < model.queries.tokens.std().item() < 1.1
    for name, p in model.named_parameters():
        if p.dim() == 2 and name != "queries.tokens":
            bound = 1 / math.sqrt(p.shape[1])  # kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))
            assert 0.95 * bound < p.abs().max().item() <= bound, name
    assert model.head_pose.bias.abs().max() > 0
    ours = DeforHMR(get_config("def-m-tiny"), _mean_params())
    w = ours.decoder.layers[0].self_attn.in_proj_weight
    xavier = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert 0.95 * xavier < w.abs().max().item() <= xavier
    assert ours.queries.tokens.std().item() < 0.03 and ours.head_pose.weight.abs().max() < 0.01


@pytest.mark.parametrize("name", ["def-m", "def-s", "reg-m"])
def test_deforhmr_variants_keep_their_own_decoder(name):
    """Only Reg-S is HMR2.0's: the other Table 2 rows keep D-wide biased attention, the final
    norm and the estimate-conditioned tokens."""
    cfg = get_config(name)
    assert (cfg.heads, cfg.attn_dim, cfg.qkv_bias, cfg.final_norm, cfg.token_input, cfg.init) == (
        16, 1024, True, True, "estimate", "ours")
