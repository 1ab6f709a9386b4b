"""Decoder layers, queries and the model configuration (presets, YAML)."""
from __future__ import annotations

import pytest
import torch

from model.config import ADDED_KEYS, PRESETS, ConfigError, ModelConfig, from_dict, get_config, load_config, preset_names
from model.decoder import Decoder, DecoderLayer, Queries, SelfAttention


def test_presets_differ_as_the_paper_tables_say():
    assert get_config("def-m") == ModelConfig()
    assert get_config("def-m").num_queries == 25 and get_config("def-s").num_queries == 1
    reg_s = get_config("reg-s")
    assert (reg_s.cross_attention, reg_s.queries) == ("regular", "single")
    table3 = {(c.heads, c.groups, c.offset_range) for c in map(get_config, ["def-m", "def-m-h16-g8-o2",
                                                                          "def-m-h8-g4-o1", "def-m-h8-g4-o2"])}
    assert table3 == {(16, 8, 1.0), (16, 8, 2.0), (8, 4, 1.0), (8, 4, 2.0)}
    assert {get_config(n).pos_encoding for n in ["def-m", "def-m-pe-none", "def-m-pe-absolute"]} == {
        "relative", "none", "absolute"}
    tiny = get_config("def-m-h8-g4-o2-tiny")
    assert (tiny.heads, tiny.groups, tiny.offset_range, tiny.dim) == (8, 4, 2.0, 64)
    assert len(preset_names()) == 2 * len(PRESETS)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ConfigError, match="def-m"):
        get_config("def-x")


def test_yaml_round_trip_and_preset_overrides(tmp_path):
    cfg = get_config("def-s-tiny", offset_range=2.0)
    cfg.save(tmp_path / "full.yaml")
    assert load_config(tmp_path / "full.yaml") == cfg
    (tmp_path / "delta.yaml").write_text("preset: reg-m-tiny\ndepth: 3\n")
    assert load_config(tmp_path / "delta.yaml") == get_config("reg-m-tiny").replace(depth=3)


@pytest.mark.parametrize("text, match", [
    ("depth: 6\n", "missing model key"),
    ("preset: def-m\ndepht: 3\n", r"unknown model key\(s\) \['depht'\]"),
    ("preset: def-m\ndepth: 2.5\n", "'depth' must be like 6"),
    ("preset: def-m\nheads: 12\n", "heads 12 is not divisible by groups 8|dim 1024 is not divisible"),
    ("preset: def-m\ncross_attention: sparse\n", "cross_attention must be one of"),
    ("preset: nope\n", "unknown model preset"),
])
def test_yaml_errors_name_the_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(path)
    assert "bad.yaml" in str(e.value)


def test_float_keys_take_ints():
    assert get_config("def-m", offset_range=2).offset_range == 2.0


@pytest.mark.parametrize("name", ["def-m-tiny", "reg-s-tiny", "def-s-tiny", "reg-m-tiny"])
def test_decoder_shapes_and_attention_info(name):
    cfg = get_config(name)
    torch.manual_seed(0)
    dec, queries = Decoder(cfg), Queries(cfg)
    ctx = torch.randn(2, cfg.context_dim, *cfg.feature_hw)
    tokens = queries(2)
    assert tokens.shape == (2, cfg.num_queries, cfg.dim)
    out, infos = dec(tokens, ctx, need_weights=True)
    assert out.shape == tokens.shape and torch.isfinite(out).all()
    assert len(infos) == cfg.depth
    g = cfg.groups if cfg.cross_attention == "deformable" else 1
    h, w = cfg.feature_hw
    assert infos[0].positions.shape == (2, g, h, w, 2)
    assert infos[-1].weights.shape == (2, cfg.heads, cfg.num_queries, h * w)
    assert dec(tokens, ctx)[1] == []  # no attention info unless asked


def test_layer_is_residual_around_each_block():
    """With every sub-block's output projection zeroed the layer is the identity."""
    cfg = get_config("def-m-tiny")
    layer = DecoderLayer(cfg)
    with torch.no_grad():
        for lin in (layer.self_attn.out_proj, layer.cross_attn.to_out, layer.ffn[-1]):
            lin.weight.zero_()
            lin.bias.zero_()
    y = torch.randn(2, cfg.num_queries, cfg.dim)
    out, _ = layer(y, torch.randn(2, cfg.context_dim, *cfg.feature_hw))
    torch.testing.assert_close(out, y)


def test_self_attention_mixes_tokens_cross_attention_reads_context():
    cfg = get_config("def-m-tiny")
    torch.manual_seed(0)
    layer = DecoderLayer(cfg).eval()
    y = torch.randn(1, cfg.num_queries, cfg.dim)
    ctx = torch.randn(1, cfg.context_dim, *cfg.feature_hw)
    base, _ = layer(y, ctx)
    y2 = y.clone()
    y2[:, 0] += 1.0
    assert not torch.allclose(layer(y2, ctx)[0][:, 1:], base[:, 1:])  # token 0 reaches the others
    assert not torch.allclose(layer(y, ctx + 1.0)[0], base)  # the context reaches every token


def test_self_attention_is_multihead_attention_with_its_checkpoint_names():
    """At the default width and with biases, SelfAttention takes nn.MultiheadAttention's
    state dict as is (the decoder's earlier checkpoints) and computes the same."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(64, 16, batch_first=True).double()
    ours = SelfAttention(64, 64, 16).double()
    ours.load_state_dict(mha.state_dict())  # strict: same names and shapes
    y = torch.randn(2, 25, 64, dtype=torch.float64)
    torch.testing.assert_close(ours(y), mha(y, y, y, need_weights=False)[0], rtol=0, atol=1e-12)


def test_narrow_unbiased_attention():
    """attn_dim < dim and no q/k/v bias (HMR2.0's 8 x 64 in a 1024-wide decoder, here tiny)."""
    cfg = get_config("def-m-tiny", heads=8, groups=4, attn_dim=32, qkv_bias=False)
    layer = DecoderLayer(cfg)
    assert layer.self_attn.in_proj_weight.shape == (96, 64) and layer.self_attn.in_proj_bias is None
    assert layer.cross_attn.to_k.weight.shape == (32, cfg.context_dim) and layer.cross_attn.to_k.bias is None
    assert layer.cross_attn.to_out.weight.shape == (64, 32)
    out, info = layer(torch.randn(2, 25, 64), torch.randn(2, cfg.context_dim, *cfg.feature_hw), need_weights=True)
    assert out.shape == (2, 25, 64) and info.weights.shape == (2, 8, 25, 16 * 12)


def test_final_norm_is_configuration():
    assert isinstance(Decoder(get_config("def-m-tiny")).norm, torch.nn.LayerNorm)
    assert isinstance(Decoder(get_config("def-m-tiny", final_norm=False)).norm, torch.nn.Identity)


def test_tiny_presets_scale_the_attention_width_with_d():
    assert get_config("def-m-tiny").attn_dim == 64 and get_config("reg-s-tiny").attn_dim == 32  # 1024 -> 64
    for name in PRESETS:
        full, tiny = get_config(name), get_config(name + "-tiny")
        assert tiny.attn_dim * full.dim == full.attn_dim * tiny.dim and tiny.heads == full.heads, name


@pytest.mark.parametrize("changes, match", [
    ({"qkv_bias": 1}, "'qkv_bias' must be like True"),
    ({"heads": 1, "groups": 1, "offset_range": True}, "'offset_range' must be like 1.0"),
    ({"attn_dim": 100}, "attn_dim 100 is not divisible by heads 16"),
    ({"token_input": "mean"}, "token_input must be one of"),
    ({"init": "xavier"}, "init must be one of"),
])
def test_new_keys_are_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        get_config("def-m", **changes)


def test_a_config_from_before_the_hmr2_keys_reads_as_the_decoder_it_was():
    """A resolved config (checkpoint `model_config`: every key, no preset) written before
    attn_dim / qkv_bias / final_norm / token_input / init existed is the old decoder:
    D-wide biased attention, a final norm, the estimate-conditioned tokens, our init."""
    old = get_config("reg-s-tiny").to_dict()
    for key in ADDED_KEYS:
        del old[key]
    old["heads"] = 16  # the old reg-s
    cfg = from_dict(old, source="old checkpoint")
    assert (cfg.attn_dim, cfg.qkv_bias, cfg.final_norm, cfg.token_input, cfg.init) == (64, True, True, "estimate", "ours")
    del old["depth"]
    with pytest.raises(ConfigError, match=r"missing model key\(s\) \['depth'\]"):
        from_dict(old, source="old checkpoint")
    # a delta with a preset still takes the preset's values
    assert from_dict({"preset": "reg-s"}).attn_dim == 512
