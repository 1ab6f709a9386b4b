"""The training step as a GPU runs it, checked on CPU: no read of device data and no tensor
from host data per step, one compiled graph equal to the eager step, padding that changes
nothing, fused AdamW with gradient clipping under bf16, the DDP settings."""
from __future__ import annotations

import pytest
import torch

from model.config import get_config
from model.deforhmr import DeforHMR
from train.batch import pad_batch
from train.config import load_config
from train.module import STEP_FIELDS, DeforHMRModule
from train.profile_step import profile_training_steps, random_batch


@pytest.fixture
def module_and_batch(synthetic_assets):
    torch.manual_seed(0)
    model = DeforHMR.from_assets(get_config("def-m-tiny"), synthetic_assets)
    batch = random_batch(model, 3)
    batch["has_smpl"][1] = False  # a sample without SMPL targets, as pseudo-labelled ones
    return model, {k: batch[k] for k in STEP_FIELDS}


def _loss_and_grads(module, tensors, fn=None):
    module.zero_grad(set_to_none=True)
    loss, terms = (fn or module.step_losses)(tensors)
    loss.backward()
    return loss.detach(), {k: v.detach() for k, v in terms.items()}, \
        {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_a_step_reads_nothing_back_and_makes_no_tensor_from_host_data(synthetic_assets):
    """The real Lightning step (bf16 autocast as on a GPU, gradient clipping, fused AdamW,
    logging) under the profiler: no `aten::_local_scalar_dense` outside the optimizer kernel
    (whose CPU version reads its CPU step counters; it runs, so AdamW is fused) and no
    `aten::lift_fresh` (on a GPU each would wait for the device)."""
    p = profile_training_steps(synthetic_assets.root, "def-m-tiny", batch=2, warmup=2, steps=1,
                               sets=["trainer.precision=bf16-mixed", "optim.grad_clip=1.0"])
    assert p.syncs == 0 and p.host_tensors == 0, p.summary()
    assert p.optimizer_reads > 0  # the fused AdamW kernel ran


def test_padding_a_short_batch_changes_neither_loss_nor_gradients(module_and_batch):
    model, tensors = module_and_batch
    module = DeforHMRModule(load_config(None, ["model.preset=def-m-tiny"]), model)
    loss, terms, grads = _loss_and_grads(module, tensors)
    padded = pad_batch(tensors, 5)
    assert padded["features"].shape[0] == 5 and not padded["has_smpl"][3:].any()
    loss_p, terms_p, grads_p = _loss_and_grads(module, padded)
    torch.testing.assert_close(loss_p, loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(terms_p, terms, rtol=1e-6, atol=0)
    assert grads_p.keys() == grads.keys()
    torch.testing.assert_close(grads_p, grads, rtol=1e-3, atol=1e-6)  # fp32 summation order only
    with pytest.raises(ValueError, match="3 rows does not fit 2"):
        pad_batch(tensors, 2)


def test_the_compiled_step_is_one_graph_and_equals_the_eager_step(module_and_batch):
    """`trainer.compile` (here the aot_eager backend: traced by dynamo and AOTAutograd, no
    code generation, seconds on CPU): one graph, no graph break, the eager loss and gradients."""
    model, tensors = module_and_batch
    module = DeforHMRModule(load_config(None, ["model.preset=def-m-tiny", "trainer.compile=aot_eager"]), model)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module.step_losses)(tensors)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    loss, terms, grads = _loss_and_grads(module, tensors)
    loss_c, terms_c, grads_c = _loss_and_grads(module, tensors, module._step_losses)
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms_c, terms, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(grads_c, grads, rtol=1e-4, atol=1e-7)


def test_ddp_settings():
    from lightning.pytorch.strategies import DDPStrategy

    from train.run import resolve_runtime

    rt = resolve_runtime(load_config(None, ["trainer.accelerator=cpu", "trainer.devices=2"]))
    assert isinstance(rt["strategy"], DDPStrategy)
    kw = rt["strategy"]._ddp_kwargs
    assert kw["static_graph"] is True and kw["broadcast_buffers"] is False and kw["find_unused_parameters"] is False
