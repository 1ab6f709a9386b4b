"""datasets.npz: files np.load reads, reading files np.savez wrote, and refusing bad ones."""
import io
import zipfile

import numpy as np
import pytest

from datasets import npz

ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "f64_fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    "i64": np.array([1, -2, 3], dtype=np.int64),
    "flag": np.array(True),
    "text": np.array("3dpw_test_seq_000001_p0"),
    "empty": np.zeros((0, 3), dtype=np.float16),
    "big_endian": np.arange(4, dtype=">i4"),
}


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def test_numpy_reads_what_dumps_writes():
    data = npz.dumps(ARRAYS)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        _same(ARRAYS, {k: z[k] for k in z.files})
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None  # CRCs right


@pytest.mark.parametrize("compressed", [False, True])
def test_loads_reads_what_numpy_writes(compressed):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **ARRAYS)
    _same(ARRAYS, npz.loads(buf.getvalue()))


def test_round_trip_is_deterministic_and_writable():
    data = npz.dumps(ARRAYS)
    assert npz.dumps(ARRAYS) == data
    out = npz.loads(data)
    _same(ARRAYS, out)
    out["f32"][0, 0] = 7.0  # arrays are writable (their own buffer, not the caller's bytes)
    assert npz.loads(data)["f32"][0, 0] == 0.0


def test_refuses_object_arrays_both_ways():
    with pytest.raises(npz.NpzError, match="pickle"):
        npz.dumps({"o": np.array([{"a": 1}], dtype=object)})
    buf = io.BytesIO()
    np.savez(buf, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(npz.NpzError, match="pickle"):
        npz.loads(buf.getvalue())


def test_corruption_is_named():
    data = bytearray(npz.dumps(ARRAYS))
    at = data.index(np.arange(12, dtype=np.float32).tobytes())
    data[at + 5] ^= 0xFF
    with pytest.raises(npz.NpzError, match="'f32.npy'.*CRC"):
        npz.loads(bytes(data))
    with pytest.raises(npz.NpzError):
        npz.loads(b"not a zip file at all, just some bytes")
    with pytest.raises(npz.NpzError):
        npz.loads(bytes(npz.dumps(ARRAYS)[:-30]))


def test_loads_only_the_names_asked_for():
    data = npz.dumps(ARRAYS)
    assert list(npz.loads(data, ["i64", "flag", "absent"])) == ["i64", "flag"]
    buf = io.BytesIO()
    np.savez_compressed(buf, **ARRAYS)  # the np.load path filters the same way
    assert list(npz.loads(buf.getvalue(), ["i64", "flag", "absent"])) == ["i64", "flag"]
