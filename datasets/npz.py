"""Fast, pickle-free reading and writing of small uncompressed `.npz` files.

Every sample's target file is an npz of about 25 small arrays. `np.savez` / `np.load` spend
most of their time in `zipfile` and in parsing each member's header, about 0.5 ms to write
and 1 ms to read one record on this CPU, which is as much as decoding, warping and encoding
the crop. The files written here are ordinary npz files that `np.load` reads (a test
checks it both ways); the reader takes the fast path for stored (uncompressed), non-ZIP64
members and hands anything else to `np.load(allow_pickle=False)`.

Formats, as specified by their owners:
- `.npy`: numpy's NEP 1 / `numpy.lib.format` docs: magic `\\x93NUMPY`, version, header
  length, then a dict literal (`descr`, `fortran_order`, `shape`) padded with spaces to a
  multiple of 64 bytes and ended by a newline.
- zip: PKWARE's APPNOTE.TXT sections 4.3.7 (local file header), 4.3.12 (central directory
  header) and 4.3.16 (end of central directory record); stored members (method 0) only.

No code runs from the data: the header dict goes through `ast.literal_eval`, and object
dtypes (which would need pickle) are refused.
"""
from __future__ import annotations

import ast
import functools
import io
import math
import struct
import zlib
from typing import Iterable, Mapping

import numpy as np

from datasets.errors import InputError

_NPY_MAGIC = b"\x93NUMPY"
_NPY_ALIGN = 64  # numpy.lib.format.ARRAY_ALIGN
# zip records (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.16); little-endian
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # sig, version, flags, method, time, date, crc, csize, usize, nlen, xlen
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # + version made by, comment len, disk, attrs, offset
_END = struct.Struct("<IHHHHIIH")
_LOCAL_SIG, _CENTRAL_SIG, _END_SIG = 0x04034B50, 0x02014B50, 0x06054B50
_ZIP_VERSION = 20  # 2.0: what a stored member needs
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest DOS date: fixed, so files are reproducible
_DOS_TIME = 0
_EXTERNAL_ATTR = 0o644 << 16  # rw-r--r-- as a Unix mode, as zipfile writes it


class NpzError(InputError, ValueError):
    """The bytes are not a readable npz, or hold an array that would need pickle."""


@functools.lru_cache(maxsize=4096)
def _npy_header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 .npy header, padded so the data starts on a 64-byte boundary."""
    text = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, shape)
    pad = -(len(_NPY_MAGIC) + 2 + 2 + len(text) + 1) % _NPY_ALIGN
    text = text + " " * pad + "\n"
    return _NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


@functools.lru_cache(maxsize=256)
def _descr(dtype: np.dtype) -> str:
    return np.lib.format.dtype_to_descr(dtype)


def dumps(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed npz of `arrays` (member `<name>.npy` each, in the given order).

    The bytes depend on the arrays alone (fixed member dates), so equal inputs give equal
    files. Object arrays are refused."""
    out = io.BytesIO()
    central = []
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise NpzError(f"array {name!r} has dtype {arr.dtype}, which needs pickle")
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        data = arr.tobytes()
        header = _npy_header(_descr(arr.dtype), False, arr.shape)
        fname = f"{name}.npy".encode()
        crc = zlib.crc32(data, zlib.crc32(header))
        size = len(header) + len(data)
        offset = out.tell()
        out.write(_LOCAL.pack(_LOCAL_SIG, _ZIP_VERSION, 0, 0, _DOS_TIME, _DOS_DATE, crc, size, size,
                              len(fname), 0))
        out.write(fname)
        out.write(header)
        out.write(data)
        central.append(_CENTRAL.pack(_CENTRAL_SIG, _ZIP_VERSION, _ZIP_VERSION, 0, 0, _DOS_TIME, _DOS_DATE,
                                     crc, size, size, len(fname), 0, 0, 0, 0, _EXTERNAL_ATTR, offset) + fname)
    cd_offset = out.tell()
    for entry in central:
        out.write(entry)
    cd_size = out.tell() - cd_offset
    if cd_offset + cd_size >= 0xFFFFFFFF or len(central) >= 0xFFFF:
        raise NpzError("npz too large for a non-ZIP64 archive; use np.savez")
    out.write(_END.pack(_END_SIG, 0, 0, len(central), len(central), cd_size, cd_offset, 0))
    return out.getvalue()


@functools.lru_cache(maxsize=4096)
def _parse_header(text: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    try:
        d = ast.literal_eval(text.decode("latin1"))
        dtype = np.dtype(np.lib.format.descr_to_dtype(d["descr"]))
        shape, fortran = tuple(int(n) for n in d["shape"]), bool(d["fortran_order"])
    except Exception as e:  # noqa: BLE001 - re-raised as NpzError naming the header
        raise NpzError(f"bad .npy header {text[:80]!r}: {e}") from e
    if dtype.hasobject:
        raise NpzError(f".npy header declares dtype {dtype}, which needs pickle")
    return dtype, shape, fortran, math.prod(shape)


def _npy_array(buf: memoryview, start: int, end: int, name: str) -> np.ndarray:
    if bytes(buf[start:start + 6]) != _NPY_MAGIC:
        raise NpzError(f"member {name!r} is not a .npy file")
    major = buf[start + 6]
    if major == 1:
        (hlen,), hstart = struct.unpack_from("<H", buf, start + 8), start + 10
    elif major in (2, 3):
        (hlen,), hstart = struct.unpack_from("<I", buf, start + 8), start + 12
    else:
        raise NpzError(f"member {name!r}: unknown .npy version {major}")
    dtype, shape, fortran, count = _parse_header(bytes(buf[hstart:hstart + hlen]))
    data = hstart + hlen
    if data + count * dtype.itemsize != end:
        raise NpzError(f"member {name!r}: {end - data} data bytes, header says {count} x {dtype}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=data)
    return arr.reshape(shape, order="F" if fortran else "C")


def _loads_stored(data: bytes, names: frozenset[str] | None) -> dict[str, np.ndarray] | None:
    """The fast path; None where the archive needs zipfile (compression, ZIP64, a comment)."""
    if len(data) < _END.size:
        return None
    sig, _, _, _, n, cd_size, cd_offset, _ = _END.unpack_from(data, len(data) - _END.size)
    # the layout dumps and zipfile write: the central directory right before the END record, which
    # ends the file (an archive comment, a ZIP64 archive's end records or offset 0xFFFFFFFF fail it)
    if sig != _END_SIG or cd_offset + cd_size + _END.size != len(data):
        return None
    buf = memoryview(bytearray(data))  # writable arrays that share one copy of the file
    out: dict[str, np.ndarray] = {}
    pos = cd_offset
    for _ in range(n):
        (sig, _, _, _, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _,
         offset) = _CENTRAL.unpack_from(buf, pos)
        # stored only (an encrypted member's 12-byte encryption header makes csize != usize)
        if sig != _CENTRAL_SIG or method != 0 or csize != usize:
            return None
        fname = bytes(buf[pos + _CENTRAL.size:pos + _CENTRAL.size + nlen]).decode("utf-8", "replace")
        pos += _CENTRAL.size + nlen + xlen + clen
        lsig, *_, lnlen, lxlen = _LOCAL.unpack_from(buf, offset)
        if lsig != _LOCAL_SIG:
            raise NpzError(f"member {fname!r}: bad local header")
        start = offset + _LOCAL.size + lnlen + lxlen
        end = start + usize
        if end > cd_offset:  # a ZIP64 member's size 0xFFFFFFFF, or a corrupt one: zipfile decides
            return None
        key = fname[:-4] if fname.endswith(".npy") else fname
        if names is not None and key not in names:
            continue
        if zlib.crc32(buf[start:end]) != crc:
            raise NpzError(f"member {fname!r}: CRC mismatch (corrupt file)")
        out[key] = _npy_array(buf, start, end, fname)
    return out


def loads(data: bytes, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """{name: array} of an npz file's bytes (only the members in `names`, where given; a
    missing one is simply absent), never unpickling. NpzError when unreadable."""
    wanted = None if names is None else frozenset(names)
    try:
        fast = _loads_stored(data, wanted)
    except NpzError:
        raise
    except (struct.error, IndexError, ValueError) as e:
        raise NpzError(f"not a readable npz ({e})") from e
    if fast is not None:
        return fast
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files if wanted is None or k in wanted}
    except Exception as e:  # noqa: BLE001 - re-raised as NpzError
        raise NpzError(f"not a readable npz ({e})") from e
