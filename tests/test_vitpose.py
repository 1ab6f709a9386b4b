"""The ViTPose encoder: agreement with ViTPose's forward and with transformers' backbone,
checkpoint formats (mmpose, HMR2.0, plain), strict key errors, frozen behaviour."""
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.vitpose import (CONFIGS, IMAGENET_MEAN, IMAGENET_STD, CheckpointError, EncoderConfig,
                           ViTPoseEncoder, encode_crops, encoder_spec, normalize, read_checkpoint,
                           vitpose_keys, vitpose_to_transformers)

SMALL = EncoderConfig("small-test", width=48, depth=2, heads=4)  # 12 channels per head


def random_vitpose_state(cfg: EncoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in ViTPose's layout; LayerNorm weights and biases far from 1 / 0 so
    that a swapped or dropped parameter shows."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in vitpose_keys(cfg).items():
        r = torch.randn(shape, generator=g)
        out[k] = (1 + 0.5 * r if k.endswith("weight") else 0.5 * r) if "norm" in k else 0.1 * r
    return out


def vitpose_reference_forward(sd: dict, x: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
    """ViTPose's `ViT.forward_features`, transcribed from ViTAE-Transformer/ViTPose
    `mmpose/models/backbones/vit.py` (PatchEmbed padding 2, pos_embed[:, 1:] + pos_embed[:, :1],
    Block = x + attn(norm1(x)); x + mlp(norm2(x)), LayerNorm eps 1e-6, last_norm)."""
    B = x.shape[0]
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16, padding=2)
    Hp, Wp = x.shape[2:]
    x = x.flatten(2).transpose(1, 2)
    x = x + sd["pos_embed"][:, 1:] + sd["pos_embed"][:, :1]
    C, nh = cfg.width, cfg.heads
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (C,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        N = h.shape[1]
        qkv = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        qkv = qkv.reshape(B, N, 3, nh, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * (C // nh) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        a = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        x = x + F.linear(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (C,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = x + h
    x = F.layer_norm(x, (C,), sd["last_norm.weight"], sd["last_norm.bias"], eps=1e-6)
    return x.permute(0, 2, 1).reshape(B, -1, Hp, Wp)


@pytest.fixture(scope="module")
def small():
    sd = random_vitpose_state(SMALL)
    enc = ViTPoseEncoder(SMALL)
    enc.load_vitpose_state_dict(sd)
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(1))
    return sd, enc, x


def test_matches_vitpose_forward_and_transformers_backbone(small):
    from transformers import VitPoseBackbone, VitPoseBackboneConfig

    sd, enc, x = small
    ours = enc(x)
    assert ours.shape == (2, SMALL.width, 16, 12)
    ref = vitpose_reference_forward(sd, x, SMALL)
    assert (ours - ref).abs().max().item() < 1e-5
    # random weights cannot tell eps 1e-6 from 1e-12 (ViTPose's vs transformers' default)
    norms = [m for m in enc.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * SMALL.depth + 1 and all(m.eps == 1e-6 for m in norms)
    # the same weights in a transformers backbone built from its own config
    hf = VitPoseBackbone(VitPoseBackboneConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                               layer_norm_eps=1e-6, out_indices=[-1])).eval()
    hf.load_state_dict(vitpose_to_transformers(sd), strict=True)
    with torch.no_grad():
        tokens = hf(x).feature_maps[-1]  # (B, 192, C)
    theirs = tokens.transpose(1, 2).reshape(2, SMALL.width, 16, 12)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_vitpose_h_is_vitpose_h():
    cfg = CONFIGS["vitpose-h"]
    assert cfg.feature_shape == (1280, 16, 12)
    keys = vitpose_keys(cfg)
    assert keys["pos_embed"] == (1, 193, 1280) and keys["patch_embed.proj.weight"] == (1280, 3, 16, 16)
    assert keys["blocks.31.mlp.fc1.weight"] == (5120, 1280) and "blocks.32.norm1.weight" not in keys
    n = sum(math.prod(s) for s in keys.values())
    assert 630e6 < n < 633e6  # ViTPose-H: 631 M parameters
    with torch.device("meta"):  # the module itself, without allocating 2.5 GB
        enc = ViTPoseEncoder("vitpose-h")
    assert sum(p.numel() for p in enc.parameters()) == n


def _save(obj, path):
    torch.save(obj, path)
    return path


def _foreign_cfg_class():
    """A class from a module the loader cannot import (as yacs' CfgNode in HMR2.0 checkpoints)."""
    mod = types.ModuleType("yacs_like.config")
    cls = type("CfgNode", (dict,), {"__module__": "yacs_like.config"})
    mod.CfgNode = cls
    return mod, cls


def test_loads_mmpose_hmr2_and_plain_checkpoints(small, tmp_path):
    sd, enc, x = small
    want = enc(x)
    mmpose = _save({"meta": {"mmpose_version": "0.24.0", "CLASSES": None},
                    "state_dict": {**{f"backbone.{k}": v for k, v in sd.items()},
                                   "keypoint_head.final_layer.weight": torch.zeros(17, 256, 1, 1)}},
                   tmp_path / "vitpose.pth")
    mod, cls = _foreign_cfg_class()
    sys.modules["yacs_like"], sys.modules["yacs_like.config"] = types.ModuleType("yacs_like"), mod
    cfg = cls(MODEL={"BACKBONE": {"TYPE": "vit"}})
    cfg.__dict__["__immutable__"] = True
    try:
        hmr2 = _save({"epoch": 35, "global_step": 1000000, "hyper_parameters": {"cfg": cfg},
                      "state_dict": {**{f"backbone.{k}": v for k, v in sd.items()},
                                     "smpl_head.decpose.weight": torch.zeros(138, 1024),
                                     "discriminator.D_conv1.weight": torch.zeros(32, 9, 1, 1)}},
                     tmp_path / "hmr2.ckpt")
    finally:
        del sys.modules["yacs_like"], sys.modules["yacs_like.config"]
    plain = _save(dict(sd), tmp_path / "backbone.pth")
    wrapped = _save({"state_dict": dict(sd)}, tmp_path / "vitpose_backbone.pth")  # 4D-Humans' training file
    for path in (mmpose, hmr2, plain, wrapped):
        other = ViTPoseEncoder(SMALL, seed=5)
        other.load_checkpoint(path)
        assert torch.equal(other(x), want), path.name
    for k, v in other.vitpose_state_dict().items():  # and back to ViTPose's layout
        assert torch.equal(v, sd[k]), k


def test_checkpoint_errors_name_the_keys(small, tmp_path):
    sd, _, _ = small
    broken = dict(sd)
    del broken["blocks.1.attn.qkv.bias"]
    broken["blocks.0.attn.relative_position_bias"] = torch.zeros(3)
    path = _save({"state_dict": {f"backbone.{k}": v for k, v in broken.items()}}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth.*1 missing: blocks\.1\.attn\.qkv\.bias.*"
                                              r"1 unexpected: blocks\.0\.attn\.relative_position_bias"):
        ViTPoseEncoder(SMALL).load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"29 wrong shape: .*blocks\.0\.attn\.proj\.weight \(48, 48\) != \(32, 32\)"):
        ViTPoseEncoder("tiny").load_checkpoint(_save(dict(sd), tmp_path / "other_size.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: unreadable or truncated encoder checkpoint"):
        read_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_checkpoint(tmp_path / "nowhere.pth")


def test_frozen_eval_and_no_grad(small):
    _, enc, x = small
    enc.train()
    assert not enc.training and not enc.backbone.training
    assert not any(p.requires_grad for p in enc.parameters())
    out = enc(x.requires_grad_(True))
    assert not out.requires_grad


def test_normalize_and_encode_crops(small):
    _, enc, _ = small
    crops = np.random.default_rng(0).integers(0, 256, (3, 256, 192, 3), dtype=np.uint8)
    x = normalize(torch.from_numpy(crops))
    assert x.shape == (3, 3, 256, 192)
    want = (crops[1, 10, 20, 2] / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]
    assert x[1, 2, 10, 20].item() == pytest.approx(want, abs=1e-6)
    np.testing.assert_array_equal(encode_crops(enc, crops), enc(x).numpy())


def test_spec_records_weights_and_preprocessing(small, tmp_path):
    spec = encoder_spec("tiny", seed=3)
    assert spec["feature_shape"] == [32, 16, 12] and spec["weights"] == {"random_seed": 3} and spec["synthetic"]
    assert spec["input"]["mean"] == list(IMAGENET_MEAN) and spec["input"]["size_hw"] == [256, 192]
    tiny = ViTPoseEncoder("tiny", seed=3)
    path = _save({"meta": {"synthetic": True}, "state_dict": {f"backbone.{k}": v for k, v in
                                                              tiny.vitpose_state_dict().items()}}, tmp_path / "t.pth")
    spec = encoder_spec("tiny", path)
    assert spec["synthetic"] and len(spec["weights"]["sha256"]) == 64
    assert not encoder_spec("tiny", _save(tiny.vitpose_state_dict(), tmp_path / "real.pth"))["synthetic"]
    with pytest.raises(CheckpointError, match="does not match encoder 'vitpose-s'"):
        encoder_spec("vitpose-s", path)


def test_matmul_weights_stored_in_bf16_give_autocasts_bits(small):
    """On CUDA `place` stores the Linear / Conv2d weights in bf16 once: under bf16 autocast that
    is the cast autocast makes on every forward, so the features are the same bits (checked here
    with CPU autocast, which casts the same ops). LayerNorms and the position embedding stay fp32."""
    import copy

    _, enc, x = small
    stored = copy.deepcopy(enc)
    stored.store_matmul_weights(torch.bfloat16)
    dtypes = {n: p.dtype for n, p in stored.named_parameters()}
    assert dtypes["backbone.embeddings.position_embeddings"] == torch.float32
    assert dtypes["backbone.encoder.layer.0.layernorm_before.weight"] == torch.float32
    assert dtypes["backbone.encoder.layer.0.mlp.fc1.weight"] == torch.bfloat16
    assert dtypes["backbone.embeddings.patch_embeddings.projection.weight"] == torch.bfloat16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = enc.backbone(x).feature_maps[-1]
        got = stored.backbone(x).feature_maps[-1]
    assert torch.equal(got, want)
    assert enc.place("cpu") is enc and next(enc.parameters()).dtype == torch.float32  # fp32 on CPU


def test_preprocess_uses_the_encoders_constants(small):
    """`preprocess` (the encoder's mean / std buffers: no host data per call) is `normalize`;
    the buffers are not weights (not in the state dict) and follow the encoder's device."""
    _, enc, _ = small
    crops = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 256, 192, 3), dtype=np.uint8))
    assert torch.equal(enc.preprocess(crops), normalize(crops))
    assert not any("pixel_" in k for k in enc.state_dict())
    assert {n for n, _ in enc.named_buffers()} >= {"pixel_mean", "pixel_std"}
