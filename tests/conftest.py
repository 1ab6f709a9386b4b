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


FAULTY = "faulty"  # DIR/faulty/raw: DIR's raw datasets with every fault injected (`make mutate` writes it)


def write_faulty(synthetic_dir: Path, out: Path) -> Path:
    """The synthetic raw datasets with every fault of `raw_scene.FAULTS` injected, rendered
    with the assets of `synthetic_dir` into out/raw; returns out/raw."""
    from datasets.synthetic.raw import write_raw
    from datasets.synthetic.raw_scene import FAULTS

    write_raw(out, faults=FAULTS, assets_root=Path(synthetic_dir) / "assets", log=lambda *a: None)
    return Path(out) / "raw"


@pytest.fixture(scope="session")
def synthetic_faulty_raw(synthetic_dir, tmp_path_factory):
    """A raw root of the synthetic datasets with every fault injected (`write_faulty`; the
    session's own raw tree is fault-free). Generated once per session, or read from
    $DEFORHMR_TEST_SYNTHETIC/faulty/raw when `make mutate` wrote it there (once for all
    mutants). Tests must not modify it."""
    given = synthetic_dir / FAULTY / "raw"
    if os.environ.get("DEFORHMR_TEST_SYNTHETIC") and given.is_dir():
        return given
    return write_faulty(synthetic_dir, tmp_path_factory.mktemp("synthetic-faults"))


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
