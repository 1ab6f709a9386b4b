"""Decoder layers, queries and the model configuration (presets, YAML)."""
from __future__ import annotations

import pytest
import torch

from model.config import PRESETS, ConfigError, ModelConfig, get_config, load_config, preset_names
from model.decoder import Decoder, DecoderLayer, Queries


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
