"""The raw-dataset readers by dataset name, and what exists under a raw root.

`READERS[name](root, split, options)` builds a reader (`datasets.reader.Reader`) for the
dataset's raw root (`Assets.raw(name)`, e.g. `data/raw/3DPW`); each reader class also
has `splits(root)`, the splits whose files are present. `available(raw_root)` lists the
(dataset, split) pairs found under a raw root laid out as `datasets/assets.yaml` names.
"""
from __future__ import annotations

from pathlib import Path

from datasets.emdb import EmdbReader
from datasets.label_npz import CocoReader, H36MReader, MpiiReader
from datasets.mpi_inf_3dhp import MpiInf3dhpReader
from datasets.pw3d import PW3DReader
from datasets.rich import RichReader

READERS = {
    "3dpw": PW3DReader,
    "coco": CocoReader,
    "mpii": MpiiReader,
    "h36m": H36MReader,
    "mpi_inf_3dhp": MpiInf3dhpReader,
    "rich": RichReader,
    "emdb": EmdbReader,
}


def available(raw_root: str | Path | None = None) -> list[tuple[str, str]]:
    """(dataset, split) pairs whose files exist under `raw_root` (default: the configured one)."""
    from datasets.assets import Assets

    assets = Assets(raw_root=raw_root)
    return [(name, split) for name, cls in READERS.items() for split in cls.splits(assets.raw(name))]


def reader(name: str, split: str, raw_root: str | Path | None = None, options=None):
    """The reader of dataset `name` at its root under `raw_root` (KeyError lists the names)."""
    from datasets.assets import Assets

    if name not in READERS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(READERS)}")
    return READERS[name](Assets(raw_root=raw_root).raw(name), split, options)
