import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from datasets import safe_pickle


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros(3), "x": _Evil()}, protocol=2))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"SMPL_NEUTRAL\.pkl.*system"):
        safe_pickle.load(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_chumpy_and_sparse_become_numpy(tmp_path):
    # A stand-in `chumpy.ch.Ch` class, pickled as real SMPL files pickle it; it is not
    # importable when loading, and the restricted unpickler must not need it.
    mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = mod
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, mod
    try:
        data = pickle.dumps({"shapedirs": Ch(np.ones((4, 3, 2))), "J_regressor": sp.csc_matrix(np.eye(4)[:2]),
                             "matrix": sp.csr_matrix(np.arange(12.0).reshape(3, 4)),
                             "f": np.arange(6, dtype=np.uint32).reshape(2, 3)}, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    out = safe_pickle.loads(data, "model.pkl")
    assert isinstance(out["shapedirs"], np.ndarray) and out["shapedirs"].shape == (4, 3, 2)
    np.testing.assert_array_equal(out["J_regressor"], np.eye(4)[:2])
    np.testing.assert_array_equal(out["matrix"], np.arange(12.0).reshape(3, 4))
    assert out["f"].dtype == np.uint32


def test_unreadable_pickle_names_file(tmp_path):
    p = tmp_path / "broken.pkl"
    p.write_bytes(b"\x80\x02garbage")
    with pytest.raises(pickle.UnpicklingError, match="broken.pkl"):
        safe_pickle.load(p)
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        safe_pickle.load(tmp_path / "nope.pkl")
