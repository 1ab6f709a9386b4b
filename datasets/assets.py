"""External assets: where each is expected, whether it is present, real or synthetic.

`datasets/assets.yaml` names every asset once. `Assets(root=..., raw_root=...)` resolves
the paths; `python -m datasets.assets` (`make assets-check`) prints the table.

Synthetic stand-ins say so inside the file: a `synthetic` entry in a pickle's dict or an
npz, `meta['synthetic']` in a checkpoint. A `.npy` file (the H36M regressor) holds one
bare array in the real format, so its stand-in carries a sidecar `<file>.synthetic`.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_PATH = Path(__file__).with_name("assets.yaml")
SYNTHETIC_SIDECAR = ".synthetic"


@dataclass(frozen=True)
class AssetSpec:
    name: str
    path: str
    what: str
    source: str


def _load_config(path: Path = CONFIG_PATH) -> dict:
    with open(path) as f:
        cfg = yaml.safe_load(f)
    for section in ("assets", "datasets"):
        for name, spec in cfg[section].items():
            missing = {"path", "what", "source"} - set(spec)
            if missing:
                raise ValueError(f"{path}: {section}.{name} lacks {sorted(missing)}")
    return cfg


class Assets:
    """Resolved asset and raw-dataset paths.

    root / raw_root default to the config's values, overridden by the environment
    variables ASSETS / RAW and then by explicit arguments.
    """

    def __init__(self, root: str | os.PathLike | None = None, raw_root: str | os.PathLike | None = None,
                 config: Path = CONFIG_PATH):
        cfg = _load_config(config)
        self.root = Path(root or os.environ.get("ASSETS") or cfg["assets_root"])
        self.raw_root = Path(raw_root or os.environ.get("RAW") or cfg["raw_root"])
        self.assets = {k: AssetSpec(k, **v) for k, v in cfg["assets"].items()}
        self.datasets = {k: AssetSpec(k, **v) for k, v in cfg["datasets"].items()}

    def path(self, name: str) -> Path:
        """Path of asset `name` (KeyError lists the known names)."""
        if name not in self.assets:
            raise KeyError(f"unknown asset {name!r}; known: {sorted(self.assets)}")
        p = Path(self.assets[name].path)
        return p if p.is_absolute() else self.root / p

    def raw(self, name: str) -> Path:
        """Raw root of dataset `name`."""
        if name not in self.datasets:
            raise KeyError(f"unknown dataset {name!r}; known: {sorted(self.datasets)}")
        p = Path(self.datasets[name].path)
        return p if p.is_absolute() else self.raw_root / p

    @property
    def body_model_dir(self) -> Path:
        """The folder `smplx.create` expects (it holds `smpl/` and `smplx/`)."""
        return self.path("smpl_neutral").parent.parent

    def require(self, name: str) -> Path:
        """Path of an asset that must exist, else a clear error saying what and where."""
        p = self.path(name)
        if not p.exists():
            spec = self.assets[name]
            raise FileNotFoundError(
                f"missing asset '{name}': {spec.what}, expected at {p} (get it from {spec.source}; "
                f"or run `make synthetic` and pass ASSETS=data/synthetic/assets for stand-ins)")
        return p


def is_synthetic(path: Path) -> bool:
    """Whether an asset file is one of the project's synthetic stand-ins."""
    path = Path(path)
    if Path(str(path) + SYNTHETIC_SIDECAR).exists():
        return True
    suffix = path.suffix
    if suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            return "synthetic" in z.files and bool(z["synthetic"])
    if suffix == ".pkl":
        from datasets import safe_pickle

        obj = safe_pickle.load(path)
        return isinstance(obj, dict) and bool(obj.get("synthetic", False))
    if suffix in (".pth", ".pt", ".ckpt"):
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
        return isinstance(meta, dict) and bool(meta.get("synthetic", False))
    return False


def status(path: Path) -> str:
    if not path.exists():
        return "missing"
    try:
        return "synthetic" if is_synthetic(path) else "present"
    except Exception as e:  # noqa: BLE001 - reported in the table, not raised
        return f"unreadable ({type(e).__name__})"


def check_table(assets: Assets) -> list[tuple[str, str, str, str]]:
    rows = [(n, str(assets.path(n)), status(assets.path(n)), s.source) for n, s in assets.assets.items()]
    for n, s in assets.datasets.items():
        p = assets.raw(n)
        st = "missing" if not p.exists() else ("synthetic" if (p / "SYNTHETIC").exists() else "present")
        rows.append((f"raw:{n}", str(p), st, s.source))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Which external assets are present, missing or synthetic.")
    ap.add_argument("--assets", default=None, help="assets root (default: config / $ASSETS)")
    ap.add_argument("--raw", default=None, help="raw datasets root (default: config / $RAW)")
    args = ap.parse_args(argv)
    assets = Assets(args.assets, args.raw)
    rows = check_table(assets)
    header = ("asset", "expected path", "status", "where to get it")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"  # noqa: E731
    print(line(header))
    print(line(tuple("-" * w for w in widths) + ("-" * 15,)))
    for r in rows:
        print(line(r))
    counts = {s: sum(r[2] == s for r in rows) for s in ("present", "synthetic", "missing")}
    print(f"\n{counts['present']} present, {counts['synthetic']} synthetic, {counts['missing']} missing "
          f"(assets root {assets.root}, raw root {assets.raw_root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
