"""`make bench-gpu` with tiny shapes on CPU: every row of the table is there with finite
numbers (no timing is asserted), and the FLOPs per crop behind the encoder rows are torch's
own count of the network."""
import math

import pytest
import torch

from pipelines import bench_gpu as B


@pytest.mark.parametrize("name", ["tiny", "vitpose-h"])
def test_flops_per_crop_are_torchs_count(name):
    """`vit_flops` from the shapes = `FlopCounterMode` over a forward on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from model.vitpose import ViTPoseEncoder, get_encoder_config

    with torch.device("meta"):
        enc = ViTPoseEncoder(name)
    with FlopCounterMode(display=False) as counter:
        enc.backbone(torch.empty(1, 3, *enc.config.image_hw, device="meta"))
    assert B.vit_flops(get_encoder_config(name)) == counter.get_total_flops()
    if name == "vitpose-h":
        assert round(counter.get_total_flops() / 1e9, 1) == 248.0


def test_datasheet_peaks_match_device_names():
    assert B.datasheet_peak("NVIDIA H100 80GB HBM3")[0] == 989.4e12
    assert B.datasheet_peak("NVIDIA H100 PCIe")[0] == 756.5e12
    assert B.datasheet_peak("NVIDIA H200")[0] == 989.4e12
    assert B.datasheet_peak("NVIDIA L40S")[0] == 362.05e12 and B.datasheet_peak("NVIDIA L4")[0] == 121e12
    assert B.datasheet_peak("NVIDIA GeForce GTX 1080") is None


@pytest.mark.slow
def test_tiny_table_has_every_row_with_finite_numbers(ray_session):
    rows = B.bench(B.TINY, torch.device("cpu"), pipeline=True)
    names = [r.measurement for r in rows]
    assert names == ["matmul peak (measured)", "encoder on the device", "encoder host to host (ChunkEncoder)",
                     "feature pipeline (steady)", "train def-m-tiny", "train reg-s-tiny", "eval 3dpw"]
    for r in rows:
        assert math.isfinite(r.rate) and r.rate > 0, r
        assert r.of_peak is None or math.isfinite(r.of_peak)
    for r in rows[4:6]:
        assert 0 <= r.loader_wait <= 1 and r.peak_memory_gb is None  # no device memory on CPU
    assert "batch 4" in rows[4].setting and "def-m-tiny" in rows[6].setting
    text = B.table(rows)
    assert text.count("\n") == len(rows) + 1 and all(f"| {n} |" in text for n in names)
    assert any(g.startswith("encoder FLOP/s / measured peak") for g in B.goals(rows))
