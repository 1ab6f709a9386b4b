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


def _npy(arr, version=None) -> bytes:
    """A .npy file as numpy writes it (numpy.lib.format)."""
    b = io.BytesIO()
    np.lib.format.write_array(b, arr, version=version)
    return b.getvalue()


def _zip(members: dict, method=zipfile.ZIP_STORED, comment=b"", extra=b"", member_comment=b"") -> bytes:
    """An archive as Python's zipfile writes it (1980-01-01, MS-DOS, mode 644: dumps' fixed fields)."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type, info.create_system, info.external_attr = method, 0, 0o644 << 16
            info.extra, info.comment = extra, member_comment
            z.writestr(info, data)
        z.comment = comment
    return b.getvalue()


@pytest.fixture
def no_np_load(monkeypatch):
    """np.load (the zipfile path) refused: what loads reads, it reads itself."""
    def refuse(*a, **k):
        raise AssertionError("np.load called: the fast path refused a stored npz")
    monkeypatch.setattr(np, "load", refuse)


def test_dumps_writes_the_container_zipfile_writes():
    """Byte for byte the archive Python's zipfile writes for the same stored members
    (APPNOTE.TXT: one disk, no flags, method 0, no extra fields or comments)."""
    data = npz.dumps(ARRAYS)
    members = {n: zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist()}
    assert list(members) == [f"{k}.npy" for k in ARRAYS]
    assert data == _zip(members)
    assert npz.dumps({}) == _zip({})


def test_the_stored_archives_of_dumps_and_zipfile_are_read_without_np_load(no_np_load):
    """The fast path takes every stored, non-ZIP64 archive: dumps' (the empty one too), and
    zipfile's with extra fields, member comments and members of every .npy version."""
    _same(ARRAYS, npz.loads(npz.dumps(ARRAYS)))
    assert npz.loads(npz.dumps({})) == {}
    arr = np.arange(6, dtype="<i2").reshape(2, 3)
    members = {"v1.npy": _npy(arr, (1, 0)), "v2.npy": _npy(arr, (2, 0)), "v3.npy": _npy(arr, (3, 0)),
               "raw": _npy(arr)}  # a member not named .npy keeps its name (as np.load's NpzFile)
    out = npz.loads(_zip(members, extra=b"\x99\x99\x02\x00ab", member_comment=b"a comment"))
    assert list(out) == ["v1", "v2", "v3", "raw"]
    for v in out.values():
        np.testing.assert_array_equal(v, arr)


def test_a_version_1_header_longer_than_32_kib_is_read(no_np_load):
    """NEP 1: the version-1.0 header length is an unsigned short (up to 65535 bytes): a
    record dtype of many fields makes one over 32767."""
    dtype = np.dtype([(f"field_{i:04d}", "<f4") for i in range(1800)])
    arr = np.zeros(2, dtype)
    arr["field_0007"] = [1.5, -2.0]
    data = _npy(arr, (1, 0))
    assert 32767 < int.from_bytes(data[8:10], "little")
    out = npz.loads(_zip({"wide.npy": data}))["wide"]
    assert out.dtype == dtype and out["field_0007"].tolist() == [1.5, -2.0]


def test_what_the_fast_path_cannot_read_goes_to_zipfile():
    """An archive comment, and a deflated member whose size happens to equal its compressed
    size: read as np.load reads them."""
    arr = np.arange(4, dtype=np.float32)
    for comment in (b"a note", bytes(32)):
        np.testing.assert_array_equal(npz.loads(_zip({"a.npy": _npy(arr)}, comment=comment))["a"], arr)
    rnd = np.random.default_rng(0).bytes(72000)
    for m in range(60000, 72000, 50):  # random bytes deflate to about their size: find an equal one
        member = _npy(np.frombuffer(rnd[:m], np.uint8))
        data = _zip({"r.npy": member}, method=zipfile.ZIP_DEFLATED)
        info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
        if info.compress_size == info.file_size:
            break
    else:
        pytest.fail("no deflated member of its own size found")
    assert npz.loads(data)["r"].tobytes() == rnd[:m]


def test_object_arrays_in_a_compressed_npz_are_refused():
    buf = io.BytesIO()
    np.savez_compressed(buf, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(npz.NpzError, match="pickle"):
        npz.loads(buf.getvalue())


def test_a_corrupt_directory_or_member_is_refused_and_named():
    data = npz.dumps(ARRAYS)
    end = len(data) - 22
    past = bytearray(data)
    past[end + 12:end + 16] = (0x7FFFFFFF).to_bytes(4, "little")  # central directory size past the file
    bad_sig = bytearray(data)
    cd = int.from_bytes(data[end + 16:end + 20], "little")
    bad_sig[cd:cd + 4] = b"PK\x09\x09"  # the first central header's signature
    bad_end = bytearray(data)
    bad_end[end:end + 4] = b"PK\x09\x09"  # the END record's signature
    for corrupt in (past, bad_sig, bad_end):
        with pytest.raises(npz.NpzError):
            npz.loads(bytes(corrupt))
    with pytest.raises(npz.NpzError, match="member 'i64.npy' is not a .npy file"):
        npz.loads(_zip({"f32.npy": _npy(ARRAYS["f32"]), "i64.npy": b"\x93NUMPX but not one"}))


def test_a_member_with_a_legacy_name_does_not_stop_the_others():
    """A member name that is not UTF-8 (a zip without the UTF-8 flag: CP437 bytes)."""
    data = bytearray(_zip({"f32.npy": _npy(ARRAYS["f32"]), "caf\u00e9.npy": _npy(ARRAYS["i64"])}))
    at = data.index("caf\u00e9".encode())
    while at >= 0:  # both the local and the central header: the name in CP437, flag 11 cleared
        data[at:at + 5] = b"caf\x82."
        at = data.find("caf\u00e9".encode())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        i = data.rfind(sig)
        flag_at = i + (6 if sig == b"PK\x03\x04" else 8)
        data[flag_at:flag_at + 2] = (int.from_bytes(data[flag_at:flag_at + 2], "little") & ~0x800).to_bytes(2, "little")
    np.testing.assert_array_equal(npz.loads(bytes(data), ["f32"])["f32"], ARRAYS["f32"])


def test_more_members_than_a_non_zip64_archive_holds_are_refused():
    """APPNOTE 4.3.16: the END record counts members in 16 bits, 0xFFFF meaning ZIP64."""
    one = np.zeros(1, np.uint8)
    with pytest.raises(npz.NpzError, match="ZIP64"):
        npz.dumps({f"m{i}": one for i in range(0xFFFF)})
