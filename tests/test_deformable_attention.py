"""Deformable / regular cross-attention (paper §3.2.2, eq. 1-4)."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from model.deformable_attention import CrossAttention, positions_to_pixels, reference_grid

H, W, C, D, HEADS, G, N = 4, 3, 16, 32, 4, 2, 5


def _attn(deformable=True, pos_encoding="relative", offset_range=1.0, seed=0):
    torch.manual_seed(seed)
    return CrossAttention(D, C, HEADS, N, (H, W), pos_encoding, deformable=deformable, groups=G,
                          offset_range=offset_range, offset_kernel=3)


def _inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, N, D, generator=g), torch.randn(b, C, H, W, generator=g)


def test_reference_grid_is_cell_centres():
    ref = reference_grid(H, W, dtype=torch.float64)
    assert ref.shape == (H, W, 2)
    # cell (i, j) covers [j, j+1] x [i, i+1] of a W x H image; centres in pixels are j, i
    px = positions_to_pixels(ref, (H, W))
    jj, ii = torch.meshgrid(torch.arange(W, dtype=torch.float64), torch.arange(H, dtype=torch.float64), indexing="xy")
    torch.testing.assert_close(px, torch.stack([jj, ii], -1), rtol=0, atol=1e-12)


def test_dat_reference_points_are_not_cell_centres():
    """LeapLabTHU/DAT models/dat_blocks.py `_get_ref_points`: linspace(0.5, H-0.5, H) / (H-1)
    * 2 - 1, sampled with align_corners=True, lands at cell index i + 0.5 (between two cell
    centres), where ours (align_corners=False) land on the centres i."""
    rows = torch.arange(H, dtype=torch.float64).reshape(1, 1, H, 1).expand(1, 1, H, W)  # value = row index
    dat_y = torch.linspace(0.5, H - 0.5, H, dtype=torch.float64) / (H - 1) * 2 - 1  # DAT's ref[..., 0]
    grid = torch.stack([torch.zeros(H, dtype=torch.float64), dat_y], -1).reshape(1, H, 1, 2)  # (x, y) at x = 0
    dat = F.grid_sample(rows, grid, mode="bilinear", align_corners=True).flatten()  # DAT: zero padding
    # the last point is half a cell past the last centre: half its row, half the zero padding
    torch.testing.assert_close(dat, torch.tensor([0.5, 1.5, 2.5, 1.5], dtype=torch.float64))
    ours = F.grid_sample(rows, reference_grid(H, W, dtype=torch.float64)[None], mode="bilinear",
                         align_corners=False)[0, 0, :, 0]
    torch.testing.assert_close(ours, torch.arange(H, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("hw", [(H, W), (16, 12)])
def test_zero_offsets_sample_the_feature_map_exactly(hw):
    """In float64, so that "exactly" means to the rounding of the grid coordinate (~1e-15)."""
    torch.manual_seed(0)
    attn = CrossAttention(D, C, HEADS, N, hw, "relative", groups=G, offset_kernel=3).double()
    with torch.no_grad():
        attn.offset_net.net[-1].weight.zero_()
    x = torch.randn(2, C, *hw, dtype=torch.float64)
    pos = attn.positions(x)
    assert pos.shape == (2, G, *hw, 2)
    torch.testing.assert_close(pos, reference_grid(*hw, dtype=torch.float64).expand_as(pos), rtol=0, atol=0)
    torch.testing.assert_close(attn.sample(x, pos), x, rtol=0, atol=1e-12)
    # the same in float32 to float32 rounding
    attn.float()
    torch.testing.assert_close(attn.sample(x.float(), pos.float()), x.float(), rtol=0, atol=1e-5)
    # and the RPE bias at the cell centres is the table itself (float64 positions read by
    # the float32 table: positions of any precision)
    bias = attn.rpe_bias(pos)
    table = attn.rpe_table.reshape(1, HEADS, N, hw[0] * hw[1]).expand_as(bias)
    torch.testing.assert_close(bias, table, rtol=0, atol=1e-6)


def test_offsets_move_the_samples():
    """Non-zero offsets sample off the grid: S differs from X, and matches a shifted lookup."""
    attn = _attn()
    _, x = _inputs()
    pos = attn.positions(x)
    assert not torch.allclose(pos, reference_grid(H, W).expand_as(pos))
    # one group's channels at its own positions: compare with grid_sample done by hand
    s = attn.sample(x, pos)
    g1 = F.grid_sample(x[:, C // G:], pos[:, 1], mode="bilinear", align_corners=False)
    torch.testing.assert_close(s[:, C // G:], g1)


def test_sampling_positions_are_query_agnostic():
    attn = _attn()
    q1, x = _inputs(seed=1)
    q2 = torch.randn_like(q1) * 10
    _, i1 = attn(q1, x, need_weights=True)
    out2, i2 = attn(q2, x, need_weights=True)
    torch.testing.assert_close(i1.positions, i2.positions, rtol=0, atol=0)
    assert not torch.allclose(i1.weights, i2.weights)  # the queries do matter for A
    # and a different context moves them
    _, i3 = attn(q1, x.flip(-1), need_weights=True)
    assert not torch.allclose(i1.positions, i3.positions)


@pytest.mark.parametrize("offset_range", [1.0, 2.0])
def test_offsets_never_exceed_offset_range_cells(offset_range):
    attn = _attn(offset_range=offset_range)
    with torch.no_grad():
        attn.offset_net.net[-1].weight.mul_(1e4)  # raw offsets far into tanh saturation
    _, x = _inputs()
    delta = attn.positions(x) - reference_grid(H, W)  # (B, G, H, W, 2)
    cells = delta / torch.tensor([2.0 / W, 2.0 / H])  # in grid cells per axis
    assert cells.abs().max() <= offset_range + 1e-6
    assert cells.abs().max() > 0.99 * offset_range  # saturated, so the bound is reached


def test_regular_equals_scaled_dot_product_attention():
    attn = _attn(deformable=False, pos_encoding="none")
    assert attn.offset_net is None
    tokens, x = _inputs()
    out, info = attn(tokens, x, need_weights=True)
    q, k, v = attn.project(tokens, x, attn.positions(x))
    assert k.shape == (2, HEADS, H * W, D // HEADS)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, N, D)
    torch.testing.assert_close(out, attn.to_out(ref), rtol=1e-5, atol=1e-6)
    # keys are exactly the projected feature-map tokens
    torch.testing.assert_close(k.transpose(1, 2).reshape(2, H * W, D), attn.to_k(x.flatten(2).transpose(1, 2)))
    assert info.positions.shape == (2, 1, H, W, 2)


def test_relative_bias_enters_the_logits():
    """Eq. 4 against SDPA with the sampled bias as additive mask."""
    attn = _attn()
    with torch.no_grad():
        attn.rpe_table.normal_(0, 1.0)
    tokens, x = _inputs()
    out, info = attn(tokens, x, need_weights=True)
    pos = attn.positions(x)
    q, k, v = attn.project(tokens, x, pos)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=attn.rpe_bias(pos))
    torch.testing.assert_close(out, attn.to_out(ref.transpose(1, 2).reshape(2, N, D)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(info.weights.sum(-1), torch.ones(2, HEADS, N))


@pytest.mark.parametrize("heads, groups", [(8, 2), (8, 4), (HEADS, G)])
def test_rpe_bias_head_reads_its_groups_positions(heads, groups):
    """Every head h's bias, for every query, is its own query grid sampled at the positions
    of group h // (heads/G) (the mapping `AttentionInfo` documents and `eval.figures`
    reads): with 8 heads in 2 groups, h % G would differ at heads 1-6."""
    torch.manual_seed(0)
    attn = CrossAttention(D, C, heads, N, (H, W), "relative", groups=groups, offset_kernel=3)
    _, x = _inputs()
    pos = attn.positions(x)  # (B, G, H, W, 2)
    assert not torch.allclose(pos[:, 0], pos[:, 1])  # the groups look at different places
    bias = attn.rpe_bias(pos)  # (B, heads, N, HW)
    for h in range(heads):
        for n in range(N):
            want = F.grid_sample(attn.rpe_table[h, n][None, None].expand(2, 1, H, W), pos[:, h // (heads // groups)],
                                 mode="bilinear", padding_mode="border", align_corners=False)
            torch.testing.assert_close(bias[:, h, n], want.reshape(2, H * W), msg=f"head {h} query {n}")


@pytest.mark.parametrize("pos_encoding", ["none", "absolute", "relative"])
@pytest.mark.parametrize("deformable", [True, False])
def test_gradients_reach_every_parameter(deformable, pos_encoding):
    attn = _attn(deformable=deformable, pos_encoding=pos_encoding)
    tokens, x = _inputs()
    tokens.requires_grad_(True)
    out, _ = attn(tokens, x)
    out.square().mean().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert tokens.grad.abs().sum() > 0


def test_wrong_context_size_is_an_error():
    attn = _attn()
    tokens, _ = _inputs()
    with pytest.raises(ValueError, match="built for"):
        attn(tokens, torch.randn(2, C, H + 1, W))


def test_parameters_defaults_and_initial_scales():
    """The defaults (relative PE, one group, λ_o = 1, 5x5 offset kernel), DAT's depthwise
    offset conv, the PE shapes and their small initial values (DAT's RPE table
    trunc-normal 0.01, ours for the absolute PE: ViT's 0.02)."""
    torch.manual_seed(0)
    attn = CrossAttention(D, C, HEADS, N, (H, W))
    assert attn.groups == 1 and attn.offset_range == 1.0 and attn.rpe_table.shape == (HEADS, N, H, W)
    conv = attn.offset_net.net[0]
    assert conv.weight.shape == (C, 1, 5, 5) and conv.groups == C  # depthwise, on one group's C channels
    assert attn.offset_net.net[-1].bias is None
    big = CrossAttention(D, C, HEADS, N, (16, 12), groups=G)
    assert big.offset_net.net[0].weight.shape == (C // G, 1, 5, 5)
    assert 0.005 < big.rpe_table.std() < 0.015
    absolute = CrossAttention(D, C, HEADS, N, (16, 12), "absolute", groups=G)
    assert absolute.abs_pos.shape == (1, C, 16, 12) and 0.01 < absolute.abs_pos.std() < 0.03
    tokens, _ = _inputs()
    pos = absolute.positions(torch.randn(2, C, 16, 12))
    _, k, _ = absolute.project(tokens, torch.zeros(2, C, 16, 12), pos)
    s = absolute.sample(absolute.abs_pos.expand(2, -1, -1, -1), pos)  # the PE alone, sampled at P
    torch.testing.assert_close(k.transpose(1, 2).reshape(2, 16 * 12, D), absolute.to_k(s.flatten(2).transpose(1, 2)))


def test_positions_are_the_grid_plus_the_offsets():
    """Eq. 3: P = R + ΔP, per group."""
    attn = _attn()
    _, x = _inputs()
    delta = attn.offsets(x).reshape(2, G, H, W, 2)
    torch.testing.assert_close(attn.positions(x), reference_grid(H, W) + delta)


@pytest.mark.parametrize("dim, heads, groups, context", [(30, 4, 2, 16), (32, 4, 8, 16), (32, 4, 2, 15)])
def test_sizes_that_do_not_divide_are_refused(dim, heads, groups, context):
    with pytest.raises(ValueError, match="do not divide"):
        CrossAttention(dim, context, heads, N, (H, W), groups=groups)


def test_a_query_count_the_table_lacks_is_an_error():
    attn = _attn()
    tokens, x = _inputs()
    with pytest.raises(ValueError, match="relative-position table has 5"):
        attn(tokens[:, :3], x)


@pytest.mark.parametrize("deformable", [True, False])
def test_bf16_autocast_keeps_logits_and_bias_in_fp32(deformable):
    """Under bf16 autocast the attention equals the explicit fp32 form softmax(QK^T/sqrt(d) +
    φ(Z_rpe, P)) of the same Q, K and positions (to fp32 rounding), so the RPE bias (σ 0.01)
    is not lost in bf16 logits (whose rounding alone moves weights by ~1e-3)."""
    attn = _attn(deformable=deformable)
    tokens, ctx = _inputs(b=3, seed=7)
    ctx = 4 * ctx  # logits of a few units, as a trained layer's
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, info = attn(tokens, ctx, need_weights=True)
        q, k, _ = attn.project(tokens, ctx, attn.positions(ctx))
        assert q.dtype == torch.bfloat16  # the projections do run in bf16
    bias = attn.rpe_bias(info.positions)  # fp32, outside autocast
    explicit = (q.float() @ k.float().transpose(-1, -2) / (D // HEADS) ** 0.5 + bias).softmax(-1)
    assert info.weights.dtype == torch.float32
    torch.testing.assert_close(info.weights, explicit, rtol=0, atol=1e-6)
    rounded = (q @ k.transpose(-1, -2) / (D // HEADS) ** 0.5).float() + bias  # bf16 logits, as before
    assert (rounded.softmax(-1) - explicit).abs().max() > 1e-4  # what the fp32 form avoids


def test_the_constants_follow_the_layer_to_its_device_and_dtype():
    """`.to(device)` / `.double()` remake the reference grid and the offset bound where the
    parameters go ("meta" stands in for an accelerator here), exact in float64: the cell
    centres (2i+1)/H - 1 and λ_o cells of 2/W x 2/H, by hand; `to_empty(recurse=False)`
    leaves the sub-layers where they were, as torch's own `_apply` does."""
    attn = _attn(offset_range=1.3).to("meta")
    assert {t.device.type for t in [*attn.parameters(), *attn.buffers()]} == {"meta"}
    attn = _attn(offset_range=1.3).double()
    want = [[[(2 * j + 1) / W - 1, (2 * i + 1) / H - 1] for j in range(W)] for i in range(H)]
    assert attn.ref_grid.dtype == torch.float64 and attn.ref_grid.tolist() == want
    torch.testing.assert_close(attn.offset_scale, torch.tensor([1.3 * 2 / W, 1.3 * 2 / H], dtype=torch.float64),
                               rtol=1e-15, atol=0)  # float64 to its rounding (float32's 2/3 is 1e-8 off)
    shallow = _attn().to_empty(device="meta", recurse=False)
    assert shallow.rpe_table.device.type == "meta" and shallow.ref_grid.device.type == "meta"
    assert shallow.to_q.weight.device.type == "cpu"


def test_a_checkpoint_holds_the_learned_weights_only():
    """The state dict (what a checkpoint stores) names W_q, W_k, W_v with their biases
    (qkv_bias defaults to True; False drops them, as 4D-Humans' CrossAttention), the output
    projection, DAT's offset net (its last conv without bias) and the RPE table; never the
    reference grid nor the offset bound, which the configuration gives."""
    torch.manual_seed(0)
    offset = {"offset_net.net.0.weight", "offset_net.net.0.bias", "offset_net.net.1.weight",
              "offset_net.net.1.bias", "offset_net.net.3.weight"}
    qkv = {f"to_{p}.{w}" for p in "qkv" for w in ("weight", "bias")}
    out = {"to_out.weight", "to_out.bias"}
    assert set(CrossAttention(D, C, HEADS, N, (H, W)).state_dict()) == qkv | out | offset | {"rpe_table"}
    unbiased = CrossAttention(D, C, HEADS, N, (H, W), qkv_bias=False)
    assert set(unbiased.state_dict()) == {f"to_{p}.weight" for p in "qkv"} | out | offset | {"rpe_table"}


def test_weights_only_when_asked_and_no_warning():
    """`need_weights` defaults to False (no AttentionInfo), and a step warns nothing (every
    grid_sample names its align_corners: left unset, torch warns on each call)."""
    attn = _attn()
    tokens, x = _inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = attn(tokens, x)
        assert info is None and out.shape == (2, N, D)


def test_a_float16_context_is_read_in_the_layers_precision():
    """Feature shards are float16 (pipelines/chunk_encoder.py): a float32 layer reads them as
    float32, so the result is that of the same values given in float32."""
    attn = _attn()
    tokens, x = _inputs()
    x16 = x.half()
    out16, info16 = attn(tokens, x16, need_weights=True)
    out32, info32 = attn(tokens, x16.float(), need_weights=True)
    torch.testing.assert_close(out16, out32, rtol=0, atol=0)
    torch.testing.assert_close(info16.positions, info32.positions, rtol=0, atol=0)


def test_a_bfloat16_layer_runs_in_bfloat16():
    """A layer cast to bfloat16 (inference without autocast) keeps A in float32 and gives the
    float32 layer's result to bfloat16 precision."""
    attn = _attn(deformable=False)  # no offsets: both read the same keys
    tokens, x = _inputs()
    out32, info32 = attn(tokens, x, need_weights=True)
    out, info = attn.to(torch.bfloat16)(tokens.bfloat16(), x.bfloat16(), need_weights=True)
    assert out.dtype == torch.bfloat16 and info.weights.dtype == torch.float32
    torch.testing.assert_close(info.weights, info32.weights, rtol=0, atol=0.05)
    torch.testing.assert_close(out.float(), out32, rtol=0.05, atol=0.05)
