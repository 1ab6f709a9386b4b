"""Shared fixtures: everything a test needs is generated here, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """DIR holding DIR/assets (synthetic body models, regressors, mean params) and, once
    the raw generators exist, DIR/raw (synthetic datasets in the real layouts): exactly
    what `python -m datasets.synthetic --out DIR` writes at its default (test) scale.
    Generated once per test session; tests must not modify it. $DEFORHMR_TEST_SYNTHETIC
    names such a DIR written before (by that command): `make mutate` runs pytest once per
    mutant and generates it once for all of them."""
    from datasets.synthetic.__main__ import main

    if given := os.environ.get("DEFORHMR_TEST_SYNTHETIC"):
        d = Path(given)
        if not (d / "assets").is_dir() or not (d / "raw").is_dir():
            raise FileNotFoundError(f"DEFORHMR_TEST_SYNTHETIC={given}: no assets/ and raw/ there "
                                    f"(write them with `python -m datasets.synthetic --out {given}`)")
        return d
    d = tmp_path_factory.mktemp("synthetic")
    main(["--out", str(d)])
    return d


@pytest.fixture(scope="session")
def synthetic_assets(synthetic_dir):
    """`datasets.assets.Assets` resolved against the synthetic tree."""
    from datasets.assets import Assets

    return Assets(root=synthetic_dir / "assets", raw_root=synthetic_dir / "raw")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray (2 CPUs) shared by the tests that run Ray pipelines, started once."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False)
    yield
    if started:
        ray.shutdown()
