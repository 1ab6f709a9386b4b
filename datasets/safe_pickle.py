"""Restricted unpickling: read SMPL model files and 3DPW sequence files without running code.

A pickle may name any importable callable; `pickle.load` would call it. This unpickler
allows only the globals that numpy arrays, plain containers, and the two foreign types
of real SMPL files need, and maps those foreign types to inert stand-ins:
- `chumpy.ch.Ch` (SMPL's `shapedirs` etc.; chumpy does not import on Python 3.11 /
  numpy 2) -> its `x` array;
- `scipy.sparse.csc_matrix` / `csr_matrix` (SMPL's `J_regressor`) -> a dense array.
Anything else is refused with `UnsafePickleError` naming the file and the global.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from datasets.errors import InputError


class UnsafePickleError(InputError, pickle.UnpicklingError):
    """The pickle names a global outside the allowlist; nothing was called."""


class _Inert:
    """Collects the state of a foreign object; converted to numpy after loading."""

    kind = ""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state):
        self.state = state


class _ChumpyArray(_Inert):
    kind = "chumpy"


class _SparseMatrix(_Inert):
    kind = "sparse"
    format = ""  # the class the pickle named; scipy's pickled state may omit 'format'


class _CscMatrix(_SparseMatrix):
    format = "csc"


class _CsrMatrix(_SparseMatrix):
    format = "csr"


def _np_core(name: str):
    import numpy._core.multiarray as ma
    import numpy._core.numeric as nu

    return {"_reconstruct": ma._reconstruct, "scalar": ma.scalar, "_frombuffer": nu._frombuffer}[name]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copy_reg", "_reconstructor"): None,  # filled below: copyreg._reconstructor
    ("copyreg", "_reconstructor"): None,
    ("__builtin__", "object"): object,
    ("_codecs", "encode"): None,  # filled below: how protocol-2 pickles carry bytes
    ("builtins", "object"): object,
    ("chumpy.ch", "Ch"): _ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): _CscMatrix,
    ("scipy.sparse._csc", "csc_matrix"): _CscMatrix,
    ("scipy.sparse.csr", "csr_matrix"): _CsrMatrix,
    ("scipy.sparse._csr", "csr_matrix"): _CsrMatrix,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(_mod, _name)] = ("np_core", _name)
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = ("np_core", "_frombuffer")


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key not in _ALLOWED:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global '{module}.{name}' "
                "(only numpy arrays, plain containers, chumpy arrays and scipy sparse matrices are allowed)"
            )
        value = _ALLOWED[key]
        if isinstance(value, tuple):
            return _np_core(value[1])
        if value is None:
            import codecs
            import copyreg

            return codecs.encode if module == "_codecs" else copyreg._reconstructor
        return value


def _convert(obj: Any, source: str) -> Any:
    """Replace inert stand-ins by numpy arrays, recursively through containers."""
    if isinstance(obj, _ChumpyArray):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "x" not in state:
            raise UnsafePickleError(f"{source}: chumpy object without an 'x' array")
        return np.asarray(state["x"])
    if isinstance(obj, _SparseMatrix):
        return _sparse_to_dense(obj.state, obj.format, source)
    if isinstance(obj, dict):
        return {k: _convert(v, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, source) for v in obj)
    return obj


def _sparse_to_dense(state: Any, named_format: str, source: str) -> np.ndarray:
    import scipy.sparse as sp

    if not isinstance(state, dict):
        raise UnsafePickleError(f"{source}: sparse matrix without a state dict")
    shape = state.get("_shape", state.get("shape"))
    fmt = state.get("format", named_format)
    try:
        cls = {"csc": sp.csc_matrix, "csr": sp.csr_matrix}[fmt]
        m = cls((state["data"], state["indices"], state["indptr"]), shape=tuple(shape))
    except (KeyError, TypeError, ValueError) as e:
        raise UnsafePickleError(f"{source}: malformed sparse matrix state ({e})") from e
    return np.asarray(m.toarray())


def loads(data: bytes, source: str = "<bytes>", encoding: str = "latin1") -> Any:
    """Restricted `pickle.loads`; `source` names the data in errors."""
    return _convert(RestrictedUnpickler(io.BytesIO(data), source, encoding).load(), source)


def load(path: str | Path, encoding: str = "latin1") -> Any:
    """Restricted `pickle.load` of a file (latin1 by default, for Python 2 pickles)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read pickle ({e.strerror})") from e
    try:
        return loads(data, str(path), encoding)
    except UnsafePickleError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure becomes a named error
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e
