"""Results as long-format rows, and the paper's tables as a group-by over them.

A row is one number: `{method, dataset, metric, value_mm, n_samples}` plus where it
came from (`run_id`, `kind`, `synthetic`, `checkpoint`, `created`). `results.json` is a
list of rows; a rerun appends rows under a new `run_id` and never overwrites an
existing one (`merge_rows`). A table shows, per method, the latest row of each
(dataset, metric).

The paper's own numbers (DeforHMR, Heo et al., Tables 1 and 2) are data here, copied
cell by cell, and enter every table as rows of kind "reported"; so do other published
numbers that can be traced to a citable source (`PUBLISHED`, each with its source).

`results.json` also keeps, per evaluation, what was scored and each sample's errors
(`Evaluation`: the input, the coverage of a predictions file, per-sample values by key).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# the paper's column order (Tables 1-3), then MPI-INF-3DHP's PCK@150 mm and AUC (in %)
METRICS = ("pa_mpjpe", "mpjpe", "pve", "pck", "auc")
MESH_METRICS = METRICS[:3]
HIGHER_IS_BETTER = ("pck", "auc")
METRIC_LABELS = {"pa_mpjpe": "PA-MPJPE", "mpjpe": "MPJPE", "pve": "PVE", "pck": "PCK@150", "auc": "AUC"}
DATASET_LABELS = {"3dpw": "3DPW", "rich": "RICH", "emdb": "EMDB", "3dhp": "MPI-INF-3DHP"}
TABLE1_DATASETS = ("3dpw", "rich")

KINDS = ("measured", "baseline", "reported")
REPORTED_RUN_TABLE1 = "paper:table1"
REPORTED_RUN_TABLE2 = "paper:table2"
MEAN_POSE_METHOD = "mean pose"
_REPORTED_SOURCE = {REPORTED_RUN_TABLE1: "paper Table 1", REPORTED_RUN_TABLE2: "paper Table 2"}


@dataclass(frozen=True)
class ResultRow:
    """One number of one method on one dataset and metric.

    - method: str, the row label (a run's method name, a paper's method, or "mean pose").
    - dataset: str, a protocol's dataset key ("3dpw", "rich").
    - metric: one of METRICS.
    - value_mm: float, the mean over `n_samples` person-frames: millimetres, or percent for
      the HIGHER_IS_BETTER metrics (pck, auc).
    - n_samples: int or None, how many person-frames the mean is over (None: reported
      by a paper that does not say).
    - run_id: str, the evaluation that produced the row (reported rows: "paper:tableK").
    - kind: "measured" (a model), "baseline" (mean pose on the same data) or "reported".
    - synthetic: bool, made with synthetic assets/data (never comparable to the paper).
    - checkpoint: str, checkpoint the row was measured with ("" otherwise).
    - created: str, UTC ISO time of the evaluation ("" for reported rows).
    """

    method: str
    dataset: str
    metric: str
    value_mm: float
    n_samples: int | None
    run_id: str
    kind: str = "measured"
    synthetic: bool = False
    checkpoint: str = ""
    created: str = ""

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {METRICS}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown row kind {self.kind!r}; expected one of {KINDS}")
        if not math.isfinite(self.value_mm):
            raise ValueError(f"{self.method}/{self.dataset}/{self.metric}: value {self.value_mm} is not finite")
        if self.kind != "reported" and not (isinstance(self.n_samples, int) and self.n_samples > 0):
            raise ValueError(f"{self.method}/{self.dataset}/{self.metric}: a {self.kind} row needs "
                             f"n_samples > 0, got {self.n_samples!r}")

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.run_id, self.method, self.dataset, self.metric)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "ResultRow":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"result row has unknown fields {sorted(unknown)}")
        return cls(**d)


# ---- the paper's numbers ------------------------------------------------------------
# DeforHMR Table 1 (3DPW test and RICH; mm). None = "-" in the paper. Citation numbers
# are the paper's reference list. (*) = trained without 3DPW.
PAPER_TABLE1: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    # method:        {dataset: (PA-MPJPE, MPJPE, PVE)}
    "ROMP [41]": {"3dpw": (47.3, 76.7, 93.4), "rich": (None, None, None)},
    "PARE [23]": {"3dpw": (46.5, 74.5, 88.6), "rich": (60.7, 109.2, 123.5)},
    "CLIFF [26]": {"3dpw": (43.0, 69.0, 81.2), "rich": (56.6, 102.6, 115.0)},
    "HybrIK [25]": {"3dpw": (41.8, 71.6, 82.3), "rich": (56.4, 96.8, 110.4)},
    "SA-HMR [38]": {"3dpw": (None, None, None), "rich": (None, 93.9, 103.0)},
    "HMR2.0* [14]": {"3dpw": (44.4, 69.8, 83.2), "rich": (48.1, 96.0, 110.9)},
    "DeforHMR": {"3dpw": (38.3, 63.6, 75.2), "rich": (48.6, 84.2, 94.5)},
}
PAPER_TABLE1_NOTE = "(*) trained without 3DPW (paper's note)."

# DeforHMR Table 2 (3DPW test; mm): the cross-attention × query ablation.
ABLATION_CONFIGS = ("Reg-S", "Reg-M", "Def-S", "Def-M")
ABLATION_LABELS = {"Reg-S": "Reg-S (HMR2.0†)", "Reg-M": "Reg-M", "Def-S": "Def-S", "Def-M": "Def-M (DeforHMR)"}
# The model preset (model/config.py) of each configuration: the method name its measured
# rows carry by default (the evaluator labels rows by preset).
ABLATION_PRESETS = {"Reg-S": "reg-s", "Reg-M": "reg-m", "Def-S": "def-s", "Def-M": "def-m"}
PAPER_TABLE2: dict[str, tuple[float, float, float]] = {
    # configuration: (PA-MPJPE, MPJPE, PVE) on 3DPW
    "Reg-S": (41.5, 67.2, 81.2),
    "Reg-M": (39.3, 65.3, 78.1),
    "Def-S": (41.1, 66.4, 79.5),
    "Def-M": (38.3, 63.6, 75.2),
}


def _reported(method: str, dataset: str, values: Sequence[float | None], run_id: str) -> list[ResultRow]:
    return [ResultRow(method, dataset, m, float(v), None, run_id, kind="reported")
            for m, v in zip(METRICS, values) if v is not None]


def reported_table1_rows() -> list[ResultRow]:
    """The paper's Table 1 as rows of kind "reported"."""
    return [r for method, per_ds in PAPER_TABLE1.items() for ds, vals in per_ds.items()
            for r in _reported(method, ds, vals, REPORTED_RUN_TABLE1)]


@dataclass(frozen=True)
class Published:
    """Numbers a method's authors published, with where: `run_id` keys the rows, `label` is
    the short source shown in tables, `source` the full citation; values are
    {dataset: (PA-MPJPE, MPJPE, PVE)} in mm (None: not given), copied as printed."""

    method: str
    run_id: str
    label: str
    source: str
    values: Mapping[str, tuple[float | None, float | None, float | None]]


# Only numbers traced to a source we can cite. The reference repositories' READMEs state
# these; HMR2.0, CLIFF and CameraHMR publish no EMDB / 3DPW numbers in theirs (4D-Humans,
# noah-research/CLIFF, CameraHMR ReadMe.md), so they have no row here beyond the paper's.
PUBLISHED: tuple[Published, ...] = (
    Published(
        method="TokenHMR",
        run_id="readme:tokenhmr",
        label="TokenHMR README",
        source="saidwivedi/TokenHMR README.md (commit 198645f), Model Zoo, row 'TokenHMR-ITW, SD + ITW + BEDLAM, "
               "Paper Version': 3DPW PVE 84.3, MPJPE 70.9, PA-MPJPE 44.8; EMDB PVE 108.5, MPJPE 89.5, PA-MPJPE 55.6. "
               "Its 3DPW protocol is HMR2.0's (tokenhmr/lib/configs/datasets_eval.yaml 3DPW-TEST: 14 LSP joints of "
               "the model's keypoints), its EMDB protocol the one `emdb` follows",
        values={"3dpw": (44.8, 70.9, 84.3), "emdb": (55.6, 89.5, 108.5)},
    ),
)


def reported_rows() -> list[ResultRow]:
    """Every reported row: the paper's Table 1, then PUBLISHED."""
    return reported_table1_rows() + [r for p in PUBLISHED for ds, vals in p.values.items()
                                     for r in _reported(p.method, ds, vals, p.run_id)]


def reported_table2_rows() -> list[ResultRow]:
    """The paper's Table 2 (3DPW) as rows of kind "reported"; methods are ABLATION_CONFIGS."""
    return [r for cfg, vals in PAPER_TABLE2.items() for r in _reported(cfg, "3dpw", vals, REPORTED_RUN_TABLE2)]


# ---- storage ------------------------------------------------------------------------
def merge_rows(existing: Iterable[ResultRow], new: Iterable[ResultRow]) -> list[ResultRow]:
    """Append `new` to `existing`. A row whose key (run_id, method, dataset, metric) is
    already present is dropped if identical, and is an error if it differs: a rerun
    gets a new run_id, it never rewrites a number."""
    out = list(existing)
    seen = {r.key: r for r in out}
    for r in new:
        old = seen.get(r.key)
        if old is None:
            out.append(r)
            seen[r.key] = r
        elif old != r:
            raise ValueError(f"result {r.key} already recorded as {old.value_mm:.3f} mm "
                             f"(n={old.n_samples}); refusing to overwrite with {r.value_mm:.3f} mm "
                             f"(n={r.n_samples}): evaluate under a new run id")
    return out


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation of one method on one protocol scored, beside its rows.

    - run_id, method, dataset: as its rows.
    - input: what was scored ("checkpoint <path>" or "predictions <path>").
    - coverage: for a predictions file, {"samples", "scored", "missing", "extra",
      "missing_examples", "extra_examples"}; None for a run (it scores every sample).
    - per_sample: {"key": [...], <metric>: [...]} each sample's errors (mm; pck, auc %).
    """

    run_id: str
    method: str
    dataset: str
    input: str
    per_sample: Mapping[str, Sequence]
    coverage: Mapping | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.run_id, self.method, self.dataset)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "method": self.method, "dataset": self.dataset, "input": self.input,
                "coverage": None if self.coverage is None else dict(self.coverage),
                "per_sample": {k: list(v) for k, v in self.per_sample.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Evaluation":
        return cls(d["run_id"], d["method"], d["dataset"], d["input"], d["per_sample"], d.get("coverage"))


def load_results(path: str | os.PathLike) -> tuple[list[ResultRow], list[Evaluation]]:
    """(rows, evaluations) of a results.json; empty when the file does not exist. A file of
    the older layout (a plain list of rows) has no evaluations."""
    path = Path(path)
    if not path.exists():
        return [], []
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, list):
        return [ResultRow.from_dict(d) for d in data], []
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: expected {{'rows': [...], 'evaluations': [...]}} or a JSON list of result rows, "
                         f"got {type(data).__name__}")
    return ([ResultRow.from_dict(d) for d in data["rows"]],
            [Evaluation.from_dict(d) for d in data.get("evaluations", [])])


def load_rows(path: str | os.PathLike) -> list[ResultRow]:
    """Rows of a results.json; [] when the file does not exist."""
    return load_results(path)[0]


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def save_rows(path: str | os.PathLike, rows: Iterable[ResultRow], evaluations: Iterable[Evaluation] = ()) -> None:
    """Write rows and evaluations as JSON (atomically: a killed write leaves the old file).
    Rows one object per line-group; each evaluation's per-sample lists on one line."""
    rows_text = ",\n".join(" " + json.dumps(r.to_dict()) for r in rows)
    evals_text = ",\n".join(" " + json.dumps(e.to_dict()) for e in evaluations)
    _atomic_write_text(Path(path), '{"rows": [\n' + rows_text + '\n],\n"evaluations": [\n' + evals_text + "\n]}\n")


def merge_evaluations(existing: Iterable[Evaluation], new: Iterable[Evaluation]) -> list[Evaluation]:
    """Append `new`; one already present under the same (run_id, method, dataset) is dropped
    if identical and an error if it differs (as `merge_rows`)."""
    out = list(existing)
    seen = {e.key: e.to_dict() for e in out}
    for e in new:
        old = seen.get(e.key)
        if old is None:
            out.append(e)
            seen[e.key] = e.to_dict()
        elif old != e.to_dict():
            raise ValueError(f"evaluation {e.key} already recorded with other per-sample errors; refusing to "
                             f"overwrite: evaluate under a new run id")
    return out


def append_rows(path: str | os.PathLike, rows: Iterable[ResultRow],
                evaluations: Iterable[Evaluation] = ()) -> list[ResultRow]:
    """merge_rows / merge_evaluations with what `path` holds, saved back; returns all rows."""
    old_rows, old_evals = load_results(path)
    merged = merge_rows(old_rows, rows)
    evals = merge_evaluations(old_evals, evaluations)
    save_rows(path, merged, evals)
    return merged


# ---- group-by -------------------------------------------------------------------------
def latest(rows: Iterable[ResultRow]) -> dict[tuple[str, str, str, str], ResultRow]:
    """(kind, method, dataset, metric) -> the last row in file order (the latest
    evaluation). The kind is part of the key, so a measured "DeforHMR" never mixes
    with the paper's reported "DeforHMR"."""
    out: dict[tuple[str, str, str, str], ResultRow] = {}
    for r in rows:
        out[(r.kind, r.method, r.dataset, r.metric)] = r
    return out


def _methods_in_order(rows: Iterable[ResultRow]) -> list[tuple[str, str]]:
    """(kind, method) table rows: reported first (in the paper's order), then the
    baseline, then measured methods, each in order of first appearance."""
    order = {k: i for i, k in enumerate(("reported", "baseline", "measured"))}
    first: dict[tuple[str, str], tuple[int, int]] = {}
    for i, r in enumerate(rows):
        first.setdefault((r.kind, r.method), (order[r.kind], i))
    return sorted(first, key=first.get)


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _source(cells: Sequence[ResultRow]) -> str:
    kinds = {r.kind for r in cells}
    if kinds == {"reported"}:
        return "reported (" + ", ".join(sorted({_reported_label(r.run_id) for r in cells})) + ")"
    runs = sorted({r.run_id for r in cells})
    label = "baseline" if kinds == {"baseline"} else "measured"
    return f"{label}, run {', '.join(runs)}"


def _reported_label(run_id: str) -> str:
    labels = {**_REPORTED_SOURCE, **{p.run_id: p.label for p in PUBLISHED}}
    return labels.get(run_id, run_id)


def _n_cell(cells: Sequence[ResultRow]) -> str:
    ns = [r.n_samples for r in cells]
    if not ns or all(n is None for n in ns):
        return "–"
    distinct = sorted({n for n in ns if n is not None})
    return str(distinct[0]) if len(distinct) == 1 else "/".join(str(n) for n in ns)


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _title(base: str, rows: Sequence[ResultRow]) -> str:
    if any(r.synthetic for r in rows if r.kind != "reported"):
        return (f"{base} — SYNTHETIC assets/data: these numbers test the pipeline and are "
                f"not comparable to the reported rows")
    return base


def dataset_metrics(rows: Sequence[ResultRow], dataset: str) -> list[str]:
    """The metric columns of a dataset: those its rows hold, in METRICS order (PA-MPJPE,
    MPJPE, PVE when it has none)."""
    have = {r.metric for r in rows if r.dataset == dataset}
    return [m for m in METRICS if m in have] or list(MESH_METRICS)


def render_table1(rows: Sequence[ResultRow], datasets: Sequence[str] = TABLE1_DATASETS,
                  include_reported: bool = True) -> str:
    """Markdown in the layout of the paper's Table 1: methods × (dataset × PA-MPJPE /
    MPJPE / PVE, or the dataset's own metrics), plus the number of person-frames each
    measured number averages."""
    rows = list(rows)
    if include_reported:
        rows = merge_rows(reported_rows(), rows)
    cell = latest(rows)
    columns = {ds: dataset_metrics(rows, ds) for ds in datasets}
    header = ["Method", "Source"]
    for ds in datasets:
        header += [f"{DATASET_LABELS.get(ds, ds)} {METRIC_LABELS[m]} {'↑' if m in HIGHER_IS_BETTER else '↓'}"
                   for m in columns[ds]]
        header.append(f"{DATASET_LABELS.get(ds, ds)} n")
    body = []
    for kind, method in _methods_in_order(rows):
        cells = [cell[(kind, method, ds, m)] for ds in datasets for m in columns[ds] if (kind, method, ds, m) in cell]
        if not cells:
            continue
        line = [method, _source(cells)]
        for ds in datasets:
            keys = [(kind, method, ds, m) for m in columns[ds]]
            line += [_fmt(cell[k].value_mm if k in cell else None) for k in keys]
            line.append(_n_cell([cell[k] for k in keys if k in cell]))
        body.append(line)
    names = " and ".join(DATASET_LABELS.get(ds, ds) for ds in datasets) if len(datasets) <= 2 else \
        ", ".join(DATASET_LABELS.get(ds, ds) for ds in datasets)
    title = _title(f"Table 1: {names}, mm (PCK / AUC: %) (layout of DeforHMR Table 1)"
                   if any(m in HIGHER_IS_BETTER for c in columns.values() for m in c)
                   else f"Table 1: {names}, mm (layout of DeforHMR Table 1)", rows)
    notes = [f"Reported rows are copied from their sources (paper: DeforHMR, Heo et al., Table 1); n = person-frames "
             f"averaged. {PAPER_TABLE1_NOTE}"]
    shown = {r.run_id for r in rows if r.kind == "reported" and r.dataset in datasets}
    notes += [f"{p.label}: {p.source}." for p in PUBLISHED if p.run_id in shown]
    return f"### {title}\n\n{_markdown(header, body)}\n\n" + "\n".join(notes) + "\n"


TABLE2_PARAMS_NOTE = (
    "Params: decoder + heads (`python -m model.summary`; the frozen encoder and SMPL excluded) of the model "
    "a measured row was evaluated with; on a reported row, of our full-size build of that configuration "
    "(the paper gives no counts). Reg-S is HMR2.0's decoder head as 4D-Humans builds it "
    "(hmr_vit_transformer.yaml: 8 heads × 64, no q/k/v bias, no final norm, zero input token).")


def render_table2(rows: Sequence[ResultRow], methods: Mapping[str, str] | None = None,
                  dataset: str = "3dpw", include_reported: bool = True,
                  params: Mapping[str, int] | None = None) -> str:
    """Markdown in the layout of the paper's Table 2 (Reg/Def × S/M on 3DPW).

    `methods` maps each configuration of ABLATION_CONFIGS to the method name its measured
    rows carry (default: ABLATION_PRESETS, the preset names). `params`, if given, maps
    method names (measured rows) and the full-size presets of ABLATION_PRESETS (reported
    rows) to parameter counts, shown in a "Params (M)" column ("–" where absent)."""
    methods = dict(methods or ABLATION_PRESETS)
    rows = list(rows)
    cell = latest(r for r in rows if r.kind == "measured")
    if include_reported:
        cell.update(latest(reported_table2_rows()))
    header = ["Configuration", "Source"] + [METRIC_LABELS[m] for m in MESH_METRICS] + ["n"]
    header += ["Params (M)"] if params is not None else []
    body = []
    for cfg in ABLATION_CONFIGS:
        for kind, name in (("reported", cfg), ("measured", methods.get(cfg, cfg))):
            keys = [(kind, name, dataset, m) for m in MESH_METRICS]
            cells = [cell[k] for k in keys if k in cell]
            if not cells:
                continue
            line = [ABLATION_LABELS[cfg], _source(cells)]
            line += [_fmt(cell[k].value_mm if k in cell else None) for k in keys]
            line.append(_n_cell(cells))
            if params is not None:
                n = params.get(ABLATION_PRESETS[cfg] if kind == "reported" else name)
                line.append("–" if n is None else f"{n / 1e6:.2f}")
            body.append(line)
    title = _title(f"Table 2: cross-attention × queries on {DATASET_LABELS.get(dataset, dataset)}, mm "
                   f"(layout of DeforHMR Table 2)", [r for r in rows if r.kind != "reported"])
    note = f"\n{TABLE2_PARAMS_NOTE}\n" if params is not None else ""
    return f"### {title}\n\n{_markdown(header, body)}\n{note}"


# ---- command line: gather runs into one table ---------------------------------------------
RESULTS_FILE = Path("eval") / "results.json"
RUN_CONFIG = "config.yaml"  # the resolved training config of a run folder (train/run.py)


def parameter_counts(runs: Mapping[str, Sequence[ResultRow]]) -> dict[str, int]:
    """Parameter counts for `render_table2`: each full-size preset of ABLATION_PRESETS, and
    each measured method of each run (run folder -> its rows), counted from the run's own
    model config (RUN/config.yaml), else from the preset of that name if there is one."""
    from model.config import ConfigError, get_config
    from model.summary import count_parameters
    from train.config import load_resolved

    counts = {p: count_parameters(get_config(p)) for p in ABLATION_PRESETS.values()}
    for run, rows in runs.items():
        path = Path(run) / RUN_CONFIG
        run_cfg = load_resolved(path).model_config() if path.exists() else None
        for method in {r.method for r in rows if r.kind == "measured"}:
            try:
                counts[method] = count_parameters(run_cfg or get_config(method))
            except ConfigError:  # not a preset name and no run config: no count
                continue
    return counts


def baseline_ratios(rows: Sequence[ResultRow], metric: str = "pa_mpjpe") -> list[str]:
    """One line per (measured method, dataset): its `metric` against the mean-pose
    baseline on the same data (the demo's goal: at least 25% below)."""
    cell = latest(rows)
    lines = []
    for (kind, method, ds, m), r in sorted(cell.items()):
        base = cell.get(("baseline", MEAN_POSE_METHOD, ds, m))
        if kind != "measured" or m != metric or base is None or not base.value_mm:
            continue
        drop = 1 - r.value_mm / base.value_mm
        lines.append(f"{method} on {DATASET_LABELS.get(ds, ds)}: {METRIC_LABELS[m]} {r.value_mm:.1f} mm vs mean pose "
                     f"{base.value_mm:.1f} mm: {abs(100 * drop):.1f}% {'below' if drop > 0 else 'above'} the baseline "
                     f"(n={r.n_samples})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m eval.tables --runs RUN [RUN ...] [--table1] [--table2] [--out FILE]`:
    the latest rows of each RUN/eval/results.json, as the paper's Table 1 and/or Table 2."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--runs", nargs="+", required=True, help="run folders evaluated by `make eval`")
    ap.add_argument("--table1", action="store_true", help="Table 1 layout (3DPW and RICH)")
    ap.add_argument("--table2", action="store_true", help="Table 2 layout (Reg/Def x S/M on 3DPW)")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    per_run: dict[str, list[ResultRow]] = {}
    for run in args.runs:
        path = Path(run) / RESULTS_FILE
        if not path.exists():
            ap.error(f"{path}: no results (run `make eval RUN={run}` first)")
        per_run[run] = load_rows(path)
    rows = [r for run_rows in per_run.values() for r in run_rows]
    parts = []
    if args.table1 or not args.table2:
        parts.append(render_table1(rows))
    if args.table2:
        measured = {r.method for r in rows if r.kind == "measured"}
        # tiny presets (the CPU demo) stand in for their full-size configuration
        methods = {cfg: next((m for m in (p, f"{p}-tiny") if m in measured), p) for cfg, p in ABLATION_PRESETS.items()}
        parts.append(render_table2(rows, methods, params=parameter_counts(per_run)))
    ratios = baseline_ratios(rows)
    text = "\n".join(parts) + ("\n" + "\n".join(f"- {line}" for line in ratios) + "\n" if ratios else "")
    print(text)
    if args.out:
        _atomic_write_text(Path(args.out), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
