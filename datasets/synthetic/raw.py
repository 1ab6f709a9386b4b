"""Write every synthetic raw dataset under `DIR/raw/`, beside the synthetic `DIR/assets/`.

The roots are the ones `datasets/assets.yaml` names (`3DPW/`, `coco/`, `mpii/`, `h36m/`,
`mpi_inf_3dhp/`, `rich/`, `emdb/`), each with the real layout of its dataset, a `SYNTHETIC` marker
naming the assets it was rendered with (`datasets.reader.synthetic_assets`), and
`SYNTHETIC_TRUTH.npz`: per record key, what was rendered (for the tests; no reader reads it).
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch

from datasets.assets import Assets
from datasets.reader import BodyModels, write_synthetic_marker
from datasets.synthetic import raw_3dhp, raw_3dpw, raw_emdb, raw_npz, raw_rich
from datasets.synthetic.raw_scene import FAULTS

TRUTH_FILE = "SYNTHETIC_TRUTH.npz"
# dataset -> writer(raw_root, models, rng, scale, people, faults) -> Truth; each dataset
# draws from its own seed stream, so adding one does not change the others
WRITERS = {
    "3dpw": raw_3dpw.write,
    "coco": partial(raw_npz.write, dataset="coco"),
    "mpii": partial(raw_npz.write, dataset="mpii"),
    "h36m": partial(raw_npz.write, dataset="h36m"),
    "mpi_inf_3dhp": raw_3dhp.write,
    "rich": raw_rich.write,
    "emdb": raw_emdb.write,
}


def write_raw(out: str | Path, *, seed: int = 0, scale: int = 1, people: int = 2, faults: tuple[str, ...] = (),
              datasets: tuple[str, ...] | None = None, assets_root: str | Path | None = None,
              workers: int = 1, scale_for: dict[str, int] | None = None, log=print) -> dict[str, Path]:
    """Render the synthetic raw datasets into `out/raw` with the synthetic body models in
    `assets_root` (default `out/assets`).

    scale: multiplies sequences / images per split (1 = the test size); people: most people
    in one image; faults: names from `raw_scene.FAULTS` to inject (see each writer);
    datasets: a subset of WRITERS (default all); workers: processes writing datasets in
    parallel (each dataset has its own seed stream, so the output does not depend on it);
    scale_for: per-dataset scales overriding `scale` (e.g. more cheap label-npz images for
    the demo's training mix).
    Returns dataset -> its raw root.
    """
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
    if scale < 1 or people < 1:
        raise ValueError(f"scale and people must be >= 1, got {scale}, {people}")
    out = Path(out)
    assets_root = Path(assets_root or out / "assets")
    names = tuple(datasets or WRITERS)
    scale_for = dict(scale_for or {})
    unknown = set(scale_for) - set(WRITERS)
    if unknown:
        raise ValueError(f"scale_for names unknown datasets {sorted(unknown)}; known: {list(WRITERS)}")
    jobs = [(name, assets_root, out / "raw", seed, scale_for.get(name, scale), people, tuple(faults))
            for name in names]
    if workers <= 1:
        return dict(zip(names, (_write_in_process(*job, log=log) for job in jobs)))
    # spawn, not fork: the parent may hold torch / OpenMP threads
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(names, pool.map(_write_in_process, *zip(*jobs))))


def _write_in_process(name: str, assets_root: Path, raw_root: Path, seed: int, scale: int, people: int,
                      faults: tuple[str, ...], log=print) -> Path:
    assets = Assets(root=assets_root, raw_root=raw_root)
    threads = torch.get_num_threads()
    # one body-model call per frame or sequence: tiny matrix products, several times faster
    # on one thread than on two (measured 18 vs 110 ms per call on a busy 2-core machine)
    torch.set_num_threads(1)
    try:
        return _write_one(name, assets, BodyModels(assets.root), seed, scale, people, set(faults), log)
    finally:
        torch.set_num_threads(threads)


def _write_one(name: str, assets: Assets, models: BodyModels, seed: int, scale: int, people: int,
               faults: set[str], log) -> Path:
    t0 = time.perf_counter()
    root = assets.raw(name)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, list(WRITERS).index(name)])
    truth = WRITERS[name](assets.raw_root, models, rng, scale, people, faults)
    write_synthetic_marker(root, assets.root)
    truth.save(root / TRUTH_FILE)
    log(f"  raw {name:<13} {len(truth.rows):4d} people  -> {root}  ({time.perf_counter() - t0:.1f} s)")
    return root



# ---- the `python -m datasets.synthetic` step ------------------------------------------------
def _faults(text: str) -> tuple[str, ...]:
    import argparse

    faults = FAULTS if text == "all" else tuple(f for f in text.split(",") if f)
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    return faults


def _positive(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _scale_for(text: str) -> dict[str, int]:
    import argparse

    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in WRITERS or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected NAME=N with NAME in {list(WRITERS)} and N >= 1, got {item!r}")
        out[name] = int(value)
    return out


def add_arguments(ap) -> None:
    ap.add_argument("--people", type=_positive, default=2, help="most people in one image (default 2)")
    ap.add_argument("--workers", type=_positive, default=1, help="processes writing datasets in parallel (default 1)")
    ap.add_argument("--scale-for", type=_scale_for, default={}, metavar="NAME=N,...",
                    help="per-dataset scales overriding --scale, e.g. coco=40,mpii=40")
    ap.add_argument("--faults", type=_faults, default=(), help="faults to inject into the raw datasets, for tests: "
                    f"'all' or a comma-separated subset of {','.join(FAULTS)} (default none)")


def step(args) -> list[Path]:
    """The raw-dataset step of `python -m datasets.synthetic` (after the assets step)."""
    return list(write_raw(args.out, seed=args.seed, scale=args.scale, people=args.people, faults=args.faults,
                               workers=args.workers, scale_for=args.scale_for).values())
