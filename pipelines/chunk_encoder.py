"""The frozen encoder over chunks of host crops: uint8 (n, H, W, 3) in host memory -> float16
(n, C, h, w) C-order in host memory, with the copies and the compute overlapped on a GPU.

    enc = ChunkEncoder(load_encoder("vitpose-h", ckpt), "cuda", batch_size=256, pad_multiple=32)
    for tag, out in enc.encode((crops, tag) for ...):  # crops: (n <= 256, 256, 192, 3) uint8
        write(tag, out.features)            # (n, C, h, w) float16 view, valid until the next step

Per chunk, on CUDA, in one stream:
1. the crops are copied into the slot's page-locked (pinned) host buffer (a plain memcpy);
2. copied to the device without blocking the host (`non_blocking`, from pinned memory);
3. normalised with the encoder's constant buffers (no host data, no sync:
   `ViTPoseEncoder.preprocess`), forward under bf16 autocast with the matmul weights stored in
   bf16 once (`ViTPoseEncoder.place`);
4. cast to float16 into a contiguous device tensor (the C-order layout is made by the device,
   not by numpy on the host);
5. copied into the slot's pinned output buffer without blocking; an event marks the end.
`encode` keeps `slots` chunks under way (default 2): it submits chunk i + 1 before it hands out
chunk i, so the host writes chunk i while the device computes chunk i + 1; a slot's buffers are
reused only once the caller has asked for the next chunk.

On CPU the same steps run synchronously in ordinary memory (pinned memory is CUDA's); the
features are the bytes `model.vitpose.encode_crops(..., torch.float16)` gives for the same chunk.

Fixed shapes: with `pad_multiple` > 0 a short chunk (a shard's last) is padded with zero crops
to the next multiple of `pad_multiple` (at most `batch_size`), so the forward sees at most
batch_size / pad_multiple shapes (one allocation pattern per shape, kernels chosen once); the
padded rows are computed and dropped (a crop's features do not depend on the other crops of
its batch: every op of the ViT is per sample).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


@dataclass
class EncodedChunk:
    features: np.ndarray  # (n, C, h, w) float16, C-order; a view of the slot's host buffer
    busy_seconds: float  # the device's time on the chunk (CUDA events; CPU: the forward's wall time)
    finished_at: float  # time.time() when the features were on the host (CUDA: when the host saw it)
    padded: int  # rows computed beyond n (zero crops)


@dataclass
class _Pending:
    slot: int
    n: int
    m: int  # rows computed
    start: object  # torch.cuda.Event, or perf_counter() on CPU
    end: object  # torch.cuda.Event, or perf_counter() on CPU
    finished_at: float | None  # CPU: time.time() when the forward returned (CUDA: known at `_result`)


class ChunkEncoder:
    """A frozen `model.vitpose.ViTPoseEncoder` on `device` over host chunks (module doc)."""

    def __init__(self, encoder, device: str | torch.device, batch_size: int, pad_multiple: int = 0, slots: int = 2):
        if batch_size < 1 or pad_multiple < 0 or slots < 1:
            raise ValueError(f"batch_size {batch_size} >= 1, pad_multiple {pad_multiple} >= 0, slots {slots} >= 1")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.encoder = encoder.place(self.device)
        self.batch_size, self.pad_multiple, self.slots = batch_size, pad_multiple, slots
        h, w = encoder.config.image_hw
        self.crop_shape = (h, w, 3)
        self.feature_shape = tuple(encoder.config.feature_shape)
        pin = self.cuda  # page-locked host memory exists with CUDA only
        self._in = [torch.empty((batch_size, h, w, 3), dtype=torch.uint8, pin_memory=pin) for _ in range(slots)]
        self._out = [torch.empty((batch_size, *self.feature_shape), dtype=torch.float16, pin_memory=pin)
                     for _ in range(slots)]
        self._in_np = [t.numpy() for t in self._in]
        self._out_np = [t.numpy() for t in self._out]
        self._next = 0

    def rows(self, n: int) -> int:
        """Rows the forward computes for a chunk of n crops (n padded up to `pad_multiple`)."""
        if not self.pad_multiple:
            return n
        return min(self.batch_size, -(-n // self.pad_multiple) * self.pad_multiple)

    @torch.no_grad()
    def _submit(self, crops: np.ndarray) -> _Pending:
        n = len(crops)
        if not 0 < n <= self.batch_size or crops.shape[1:] != self.crop_shape or crops.dtype != np.uint8:
            raise ValueError(f"a chunk is 1 to {self.batch_size} uint8 crops of shape {self.crop_shape}, "
                             f"got {crops.dtype} {crops.shape}")
        slot, m = self._next, self.rows(n)
        self._next = (slot + 1) % self.slots
        host_in = self._in_np[slot]
        host_in[:n] = crops  # into the (pinned) buffer: the copy to the device can then run async
        if m > n:
            host_in[n:m] = 0
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            start = time.perf_counter()
        x = self._in[slot][:m].to(self.device, non_blocking=True)  # (m, H, W, 3) uint8
        feats = self.encoder(self.encoder.preprocess(x))  # (m, C, h, w) float32, a transposed view
        if self.cuda:
            half = feats.to(torch.float16, memory_format=torch.contiguous_format)  # C-order, on the device
            self._out[slot][:m].copy_(half, non_blocking=True)
            end.record()
        else:
            self._out[slot][:m].copy_(feats)  # cast + C-order in one pass
            end = time.perf_counter()
        return _Pending(slot, n, m, start, end, None if self.cuda else time.time())

    def _result(self, p: _Pending) -> EncodedChunk:
        if self.cuda:
            p.end.synchronize()
            busy, finished = p.start.elapsed_time(p.end) / 1e3, time.time()
        else:
            busy, finished = p.end - p.start, p.finished_at
        return EncodedChunk(self._out_np[p.slot][:p.n], busy, finished, p.m - p.n)

    def encode(self, chunks: Iterable[tuple[np.ndarray, T]]) -> Iterator[tuple[T, EncodedChunk]]:
        """(tag, features) of each (crops, tag), in order, `slots` chunks under way (module
        doc). A chunk's `features` are a view of a buffer that the next chunk reuses: use them
        before asking for the next one."""
        pending: deque[tuple[_Pending, T]] = deque()
        for crops, tag in chunks:
            pending.append((self._submit(crops), tag))
            if len(pending) == self.slots:
                p, t = pending.popleft()
                yield t, self._result(p)
        while pending:
            p, t = pending.popleft()
            yield t, self._result(p)
