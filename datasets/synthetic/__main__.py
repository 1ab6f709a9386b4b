"""Write the synthetic stand-ins in the real layouts: `make synthetic OUT=data/synthetic`.

    python -m datasets.synthetic --out data/synthetic [--seed 0] [--scale 1] [--people 2] [--faults all]

Steps, in order (each a function of the parsed arguments returning the paths it wrote):
- assets: OUT/assets/, the SMPL-family stand-ins at the paths of datasets/assets.yaml
  (use them with ASSETS=OUT/assets).
- raw: OUT/raw/<dataset>/, the raw datasets in their real layouts, rendered with those
  stand-ins (`datasets.synthetic.raw`; use them with RAW=OUT/raw).
Add a step by appending (name, function) to STEPS.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from datasets.assets import is_synthetic
from datasets.errors import fail
from datasets.synthetic import raw


def _assets(args: argparse.Namespace) -> list[Path]:
    from datasets.synthetic.body import write_synthetic_assets

    written = list(write_synthetic_assets(args.out / "assets", seed=args.seed).values())
    unmarked = [p for p in written if not is_synthetic(p)]
    if unmarked:
        raise RuntimeError(f"synthetic assets not marked as synthetic: {unmarked}")
    return written


STEPS: list[tuple[str, Callable[[argparse.Namespace], list[Path]]]] = [
    ("assets", _assets),
    ("raw", raw.step),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datasets.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output root (default data/synthetic)")
    ap.add_argument("--seed", type=int, default=0, help="seed of everything generated (default 0)")
    ap.add_argument("--scale", type=int, default=1,
                    help="size multiplier of generated datasets (the assets do not depend on it)")
    raw.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.scale < 1:
        ap.error("--scale must be >= 1")
    if args.out.exists() and not args.out.is_dir():
        return fail("synthetic", NotADirectoryError(f"--out {args.out}: exists and is not a folder"))
    summary = []
    for name, step in STEPS:
        print(f"== synthetic {name} (seed {args.seed}) -> {args.out}")
        t0 = time.perf_counter()
        written = step(args)
        for p in written:
            print(f"   {p}")
        summary.append((name, len(written), time.perf_counter() - t0))
    print("\nsynthetic: " + "; ".join(f"{n}: {k} files in {dt:.1f} s" for n, k, dt in summary)
          + f" under {args.out} (all marked synthetic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
