"""Loss curves of a run folder as one PNG, from its CSV logs.

    python -m train.plots runs/<name>        # -> runs/<name>/loss_curves.png

Reads every `RUN/logs/version_*/metrics.csv` (one per start or resume, in order; a later
version's row for a step replaces an earlier one) and draws the total training loss and
each unweighted term per step (log scale), and the validation errors (mm) per epoch.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from train.losses import TERMS

PNG_NAME = "loss_curves.png"
VAL_METRICS = ("pa_mpjpe", "mpjpe", "pve")


def read_metrics(run: str | Path) -> list[dict[str, float]]:
    """All logged rows of a run, versions in order; empty cells dropped."""
    rows: list[dict[str, float]] = []
    versions = sorted((Path(run) / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for v in versions:
        f = v / "metrics.csv"
        if not f.exists():
            continue
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({k: float(x) for k, x in r.items() if x not in ("", None)})
    return rows


def series(rows: list[dict[str, float]], name: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(x, y) of one logged value; the last row wins for a repeated x (resumed runs)."""
    points = {r[x]: r[name] for r in rows if name in r and x in r and math.isfinite(r[name])}
    xs = sorted(points)
    return xs, [points[k] for k in xs]


def plot_run(run: str | Path) -> Path | None:
    """Write RUN/loss_curves.png; None when nothing was logged yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    if not rows:
        return None
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, style in [("train/loss_step", dict(color="black", lw=1.5, label="total"))] + \
                       [(f"train/{t}_step", dict(lw=1, label=t)) for t in TERMS]:
        xs, ys = series(rows, name)
        if not xs:
            xs, ys = series(rows, name.removesuffix("_step"))
        if xs and all(y > 0 for y in ys):
            ax_loss.plot(xs, ys, **style)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss (total weighted; terms unweighted)")
    ax_loss.legend(fontsize=8)
    for m in VAL_METRICS:
        xs, ys = series(rows, f"val/{m}", x="epoch")
        if xs:
            ax_val.plot(xs, ys, marker="o", label=m)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("mm")
    ax_val.set_title("validation")
    if ax_val.lines:
        ax_val.legend(fontsize=8)
    fig.suptitle(Path(run).name)
    fig.tight_layout()
    out = Path(run) / PNG_NAME
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m train.plots RUN", file=sys.stderr)
        return 2
    out = plot_run(args[0])
    print(out or f"{args[0]}: no logged metrics")
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
