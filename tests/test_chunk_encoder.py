"""The chunk encoder of the feature pipeline on CPU: the bytes `encode_crops` gives for the
same chunk, padded chunks, buffers reused only after their chunk is handed out, and the
pinned-memory path guarded (CUDA only)."""
import numpy as np
import pytest
import torch

from model.vitpose import encode_crops, load_encoder
from pipelines.chunk_encoder import ChunkEncoder


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).integers(0, 256, (11, 256, 192, 3), dtype=np.uint8)


def test_features_are_encode_crops_bytes_chunk_by_chunk(crops):
    enc = ChunkEncoder(load_encoder("tiny"), "cpu", batch_size=4)
    chunks = [crops[0:4], crops[4:8], crops[8:11]]
    got = [(tag, out.features.copy(), out.padded) for tag, out in enc.encode((c, i) for i, c in enumerate(chunks))]
    assert [t for t, _, _ in got] == [0, 1, 2] and all(p == 0 for _, _, p in got)
    direct = load_encoder("tiny")
    for (_, feats, _), chunk in zip(got, chunks):
        want = encode_crops(direct, chunk, "cpu", torch.float16)
        assert feats.dtype == np.float16 and feats.flags.c_contiguous
        assert feats.tobytes() == want.tobytes()
    assert not any(t.is_pinned() for t in enc._in + enc._out)  # page-locked memory is CUDA's


def test_a_short_chunk_is_padded_and_the_padding_dropped(crops):
    enc = ChunkEncoder(load_encoder("tiny"), "cpu", batch_size=8, pad_multiple=4)
    assert [enc.rows(n) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]
    (_, out), = enc.encode([(crops[:5], None)])
    assert out.features.shape == (5, 32, 16, 12) and out.padded == 3 and out.busy_seconds > 0
    want = encode_crops(load_encoder("tiny"), crops[:5], "cpu", torch.float16)
    np.testing.assert_allclose(out.features.astype(np.float32), want.astype(np.float32), rtol=2 ** -10, atol=1e-6)


def test_a_chunks_buffer_is_reused_only_after_the_next_request(crops):
    """Two slots: chunk i's view holds its own features while the caller uses it."""
    enc = ChunkEncoder(load_encoder("tiny"), "cpu", batch_size=2, slots=2)
    direct = load_encoder("tiny")
    for i, (_, out) in enumerate(enc.encode((crops[j:j + 2], j) for j in range(0, 10, 2))):
        want = encode_crops(direct, crops[2 * i:2 * i + 2], "cpu", torch.float16)
        assert out.features.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="a chunk is 1 to 2 uint8 crops"):
        list(enc.encode([(crops[:3], None)]))
