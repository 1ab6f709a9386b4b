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

from datasets.errors import InputError, fail

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


# ---- the assets synthetic data was made with ----------------------------------------------
DIGEST_EXCLUDES = ("vitpose_h",)  # the encoder's weights: a feature cache's encoder.json names its own


class AssetsError(InputError, ValueError):
    """The assets asked for do not fit the data (real for synthetic, or other stand-ins)."""


def assets_digest(root: str | os.PathLike) -> str:
    """sha256 over the body-model assets under `root` (every asset but `DIGEST_EXCLUDES`;
    a missing one counts as missing): equal digests, equal ground truth. About 80 MB for
    the synthetic stand-ins."""
    import hashlib

    assets = Assets(root=root)
    h = hashlib.sha256()
    for name in sorted(set(assets.assets) - set(DIGEST_EXCLUDES)):
        path = assets.path(name)
        if path.is_file():
            f = hashlib.sha256()
            with open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    f.update(block)
            h.update(f"{name}:{f.hexdigest()}\n".encode())
        else:
            h.update(f"{name}:missing\n".encode())
    return h.hexdigest()


def assets_for_data(given: str | os.PathLike | None, markers: dict[str, object],
                    raw_root: str | os.PathLike | None = None) -> tuple[Assets, str | None]:
    """(the assets to use with the data whose split folders are `markers`' keys, a line
    saying where they came from or None).

    markers: split folder -> its `SYNTHETIC` marker (`datasets.reader.SyntheticMarker`, the
    assets its ground truth was made with) or None (real data). given: the assets the user
    named (--assets / ASSETS=; $ASSETS counts as named). Real data takes the named or the
    configured assets. Synthetic data takes the assets of its markers when none are named,
    and refuses named ones that are not those (other stand-ins, or real body models: its
    ground truth would not hold); data that mixes real and synthetic splits, or synthetic
    splits of different assets, is refused."""
    given = given or os.environ.get("ASSETS") or None
    synthetic = {loc: m for loc, m in markers.items() if m is not None}
    if not synthetic:
        return Assets(given, raw_root), None
    if real := sorted(loc for loc, m in markers.items() if m is None):
        raise AssetsError(f"{real[0]} is real data (no SYNTHETIC marker) but {sorted(synthetic)[0]} is synthetic: "
                          f"their ground truth needs different body models; use them in separate runs")
    (loc, marker), *others = sorted(synthetic.items())
    for other, m in others:
        same = m.sha256 == marker.sha256 if m.sha256 and marker.sha256 else m.assets == marker.assets
        if not same:
            raise AssetsError(f"{loc} and {other} are synthetic data made with different assets ({marker.assets}, "
                              f"{m.assets}); use them in separate runs")
    if given is not None:
        assets = Assets(given, raw_root)
        if not is_synthetic(assets.require("smpl_neutral")):
            raise AssetsError(f"{loc} is synthetic data made with the stand-ins at {marker.assets}, but ASSETS={given} "
                              f"holds real body models, with which its ground truth does not hold; leave ASSETS= "
                              f"out to use the stand-ins")
        if marker.sha256 and assets_digest(given) != marker.sha256:
            raise AssetsError(f"{loc} is synthetic data made with the stand-ins at {marker.assets} "
                              f"(sha256 {marker.sha256[:12]}), ASSETS={given} holds others; leave ASSETS= out to use "
                              f"those, or remake the data")
        return assets, None
    if not Assets(marker.assets).path("smpl_neutral").exists():
        raise FileNotFoundError(f"{loc} is synthetic data made with the stand-ins at {marker.assets}, which are not "
                                f"there (moved?): pass ASSETS= with them")
    if marker.sha256 and assets_digest(marker.assets) != marker.sha256:
        raise AssetsError(f"{loc} is synthetic data made with the stand-ins at {marker.assets}, which changed since "
                          f"(sha256 {marker.sha256[:12]} then); remake the data (`make synthetic`, `make shards`, "
                          f"`make features`)")
    return Assets(marker.assets, raw_root), (f"assets: {marker.assets} (synthetic: the stand-ins this data was made "
                                             f"with, named by its SYNTHETIC markers)")


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
    for option, given in (("--assets", args.assets), ("--raw", args.raw)):
        if given is not None and not Path(given).is_dir():
            return fail("assets-check", FileNotFoundError(f"{option} {given}: no such folder"))
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
