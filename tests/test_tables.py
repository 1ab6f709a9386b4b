"""eval.tables: long-format rows, merge without overwrite, Table 1 / Table 2 markdown."""
import json

import pytest

from eval import tables as T


def _measured(method, ds, values, n, run="r1", synthetic=False, kind="measured"):
    return [T.ResultRow(method, ds, m, v, n, run, kind=kind, synthetic=synthetic)
            for m, v in zip(T.METRICS, values)]


def _table_lines(md):
    return [line for line in md.splitlines() if line.startswith("| ")]


def _cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


def test_paper_table1_is_copied_exactly():
    # the paper's Table 1, cell by cell (PA-MPJPE, MPJPE, PVE; "-" = None)
    assert T.PAPER_TABLE1["DeforHMR"] == {"3dpw": (38.3, 63.6, 75.2), "rich": (48.6, 84.2, 94.5)}
    assert T.PAPER_TABLE1["HMR2.0* [14]"] == {"3dpw": (44.4, 69.8, 83.2), "rich": (48.1, 96.0, 110.9)}
    assert T.PAPER_TABLE1["SA-HMR [38]"]["rich"] == (None, 93.9, 103.0)
    assert T.PAPER_TABLE1["ROMP [41]"]["rich"] == (None, None, None)
    assert list(T.PAPER_TABLE1) == ["ROMP [41]", "PARE [23]", "CLIFF [26]", "HybrIK [25]", "SA-HMR [38]",
                                    "HMR2.0* [14]", "DeforHMR"]
    rows = T.reported_table1_rows()
    assert all(r.kind == "reported" and r.n_samples is None for r in rows)
    assert len(rows) == 3 * 14 - 3 - 3 - 1  # ROMP lacks RICH, SA-HMR lacks 3DPW and RICH PA-MPJPE
    assert T.PAPER_TABLE2 == {"Reg-S": (41.5, 67.2, 81.2), "Reg-M": (39.3, 65.3, 78.1),
                              "Def-S": (41.1, 66.4, 79.5), "Def-M": (38.3, 63.6, 75.2)}


def test_table1_layout_and_reported_rows():
    rows = _measured("DeforHMR", "3dpw", (40.0, 65.0, 77.0), 35515) + \
        _measured("DeforHMR", "rich", (50.0, 90.0, 99.0), 1000) + \
        _measured(T.MEAN_POSE_METHOD, "3dpw", (120.0, 200.0, 220.0), 35515, kind="baseline")
    md = T.render_table1(rows)
    lines = _table_lines(md)
    header = _cells(lines[0])
    assert header == ["Method", "Source", "3DPW PA-MPJPE ↓", "3DPW MPJPE ↓", "3DPW PVE ↓", "3DPW n",
                      "RICH PA-MPJPE ↓", "RICH MPJPE ↓", "RICH PVE ↓", "RICH n"]
    body = {(_cells(line)[0], _cells(line)[1].split(" ")[0].rstrip(",")): _cells(line) for line in lines[1:]}
    assert body[("DeforHMR", "reported")][2:] == ["38.3", "63.6", "75.2", "–", "48.6", "84.2", "94.5", "–"]
    assert body[("ROMP [41]", "reported")][2:] == ["47.3", "76.7", "93.4", "–", "–", "–", "–", "–"]
    assert body[("DeforHMR", "measured")][2:] == ["40.0", "65.0", "77.0", "35515", "50.0", "90.0", "99.0", "1000"]
    assert body[("mean pose", "baseline")][2:6] == ["120.0", "200.0", "220.0", "35515"]
    # reported first in the paper's order, then the baseline, then measured rows
    order = [_cells(line)[0] for line in lines[1:]]
    published = [p.method for p in T.PUBLISHED]
    assert order[:7] == list(T.PAPER_TABLE1) and order[7:] == [*published, "mean pose", "DeforHMR"]
    # a published row names its source, in the Source column and in full under the table
    assert body[("TokenHMR", "reported")][1] == "reported (TokenHMR README)"
    assert body[("TokenHMR", "reported")][2:6] == ["44.8", "70.9", "84.3", "–"]
    assert "saidwivedi/TokenHMR README.md" in md
    assert "SYNTHETIC" not in md


def test_synthetic_rows_say_so_in_the_title():
    md = T.render_table1(_measured("DeforHMR", "3dpw", (1.0, 2.0, 3.0), 10, synthetic=True))
    assert "SYNTHETIC" in md.splitlines()[0]


def test_rerun_appends_and_never_overwrites(tmp_path):
    path = tmp_path / "results.json"
    first = _measured("DeforHMR", "3dpw", (40.0, 65.0, 77.0), 100, run="run-a")
    T.append_rows(path, first)
    T.append_rows(path, first)  # same run, same numbers: nothing new
    assert len(T.load_rows(path)) == 3
    with pytest.raises(ValueError, match="refusing to overwrite"):
        T.append_rows(path, _measured("DeforHMR", "3dpw", (41.0, 65.0, 77.0), 100, run="run-a"))
    T.append_rows(path, _measured("DeforHMR", "3dpw", (39.0, 64.0, 76.0), 100, run="run-b"))
    rows = T.load_rows(path)
    assert len(rows) == 6 and rows[:3] == first
    # the table shows the latest run's numbers
    line = [ln for ln in _table_lines(T.render_table1(rows)) if "measured" in ln][0]
    assert _cells(line)[2:5] == ["39.0", "64.0", "76.0"] and "run-b" in line
    # JSON is long-format: one object per number with the required fields
    data = json.loads(path.read_text())
    assert {"method", "dataset", "metric", "value_mm", "n_samples"} <= set(data["rows"][0])
    # a file of the older layout (a plain list of rows) still reads
    path.write_text(json.dumps(data["rows"]))
    assert T.load_rows(path) == rows


def test_evaluations_keep_per_sample_errors_and_never_overwrite(tmp_path):
    path = tmp_path / "results.json"
    ev = T.Evaluation("run-a", "m", "3dpw", "predictions p.npz", {"key": ["a", "b"], "mpjpe": [1.0, 2.5]},
                      {"samples": 3, "scored": 2, "missing": 1, "extra": 0})
    T.append_rows(path, _measured("m", "3dpw", (1.0, 1.75, 3.0), 2, run="run-a"), [ev])
    T.append_rows(path, [], [ev])  # the same again: nothing new
    rows, evals = T.load_results(path)
    assert len(rows) == 3 and evals == [ev]
    with pytest.raises(ValueError, match="refusing to overwrite"):
        T.append_rows(path, [], [T.Evaluation("run-a", "m", "3dpw", "x", {"key": ["a"], "mpjpe": [9.0]})])


def test_tables_show_each_datasets_own_metrics():
    rows = [T.ResultRow("m", "3dhp", m, v, 4, "r") for m, v in (("mpjpe", 90.0), ("pck", 85.5), ("auc", 50.25))]
    lines = _table_lines(T.render_table1(rows, datasets=("3dhp",)))
    assert _cells(lines[0]) == ["Method", "Source", "MPI-INF-3DHP MPJPE ↓", "MPI-INF-3DHP PCK@150 ↑",
                                "MPI-INF-3DHP AUC ↑", "MPI-INF-3DHP n"]
    assert _cells(lines[-1])[2:] == ["90.0", "85.5", "50.2", "4"]


def test_rows_are_validated():
    with pytest.raises(ValueError, match="metric"):
        T.ResultRow("m", "3dpw", "accel", 1.0, 1, "r")
    with pytest.raises(ValueError, match="n_samples"):
        T.ResultRow("m", "3dpw", "mpjpe", 1.0, 0, "r")
    with pytest.raises(ValueError, match="finite"):
        T.ResultRow("m", "3dpw", "mpjpe", float("nan"), 5, "r")
    with pytest.raises(ValueError, match="unknown fields"):
        T.ResultRow.from_dict({"method": "m", "dataset": "3dpw", "metric": "mpjpe", "value_mm": 1.0,
                               "n_samples": 1, "run_id": "r", "extra": 1})


def test_table2_layout():
    rows = _measured("def-m", "3dpw", (40.0, 66.0, 78.0), 50) + _measured("reg-s", "3dpw", (45.0, 70.0, 85.0), 50)
    md = T.render_table2(rows, methods={"Def-M": "def-m", "Reg-S": "reg-s"})
    lines = _table_lines(md)
    assert _cells(lines[0]) == ["Configuration", "Source", "PA-MPJPE", "MPJPE", "PVE", "n"]
    got = [(_cells(ln)[0], _cells(ln)[1].split(" ")[0].rstrip(","), *_cells(ln)[2:]) for ln in lines[1:]]
    assert got == [
        ("Reg-S (HMR2.0†)", "reported", "41.5", "67.2", "81.2", "–"),
        ("Reg-S (HMR2.0†)", "measured", "45.0", "70.0", "85.0", "50"),
        ("Reg-M", "reported", "39.3", "65.3", "78.1", "–"),
        ("Def-S", "reported", "41.1", "66.4", "79.5", "–"),
        ("Def-M (DeforHMR)", "reported", "38.3", "63.6", "75.2", "–"),
        ("Def-M (DeforHMR)", "measured", "40.0", "66.0", "78.0", "50"),
    ]


def test_table2_default_methods_are_the_presets():
    md = T.render_table2(_measured("reg-m", "3dpw", (39.0, 65.0, 78.0), 7))
    assert "| Reg-M | measured, run r1 | 39.0 | 65.0 | 78.0 | 7 |" in md


def test_table2_params_column():
    rows = _measured("reg-s-tiny", "3dpw", (45.0, 70.0, 85.0), 50)
    params = {"reg-s": 39_547_037, "reg-m": 66_227_219, "reg-s-tiny": 56_733}  # def-s, def-m unknown
    md = T.render_table2(rows, methods={"Reg-S": "reg-s-tiny"}, params=params)
    lines = _table_lines(md)
    assert _cells(lines[0])[-1] == "Params (M)"
    assert [(_cells(ln)[0], _cells(ln)[1].split(" ")[0].rstrip(","), _cells(ln)[-1]) for ln in lines[1:]] == [
        ("Reg-S (HMR2.0†)", "reported", "39.55"), ("Reg-S (HMR2.0†)", "measured", "0.06"),
        ("Reg-M", "reported", "66.23"), ("Def-S", "reported", "–"), ("Def-M (DeforHMR)", "reported", "–")]
    assert T.TABLE2_PARAMS_NOTE in md
    assert "Params" not in T.render_table2(rows)  # no counts given, no column


def test_tables_command_counts_each_runs_own_model(tmp_path, capsys):
    """Measured rows get the parameters of the run's model config (RUN/config.yaml, here a
    reg-s-tiny with one layer more than the preset), reported rows the full-size presets'."""
    from model.config import get_config
    from model.summary import count_parameters
    from train.config import load_config

    run = tmp_path / "reg"
    run.mkdir()
    load_config(None, ["model.preset=reg-s-tiny", "model.depth=3"]).save(run / "config.yaml")
    T.save_rows(run / "eval" / "results.json", _measured("reg-s-tiny", "3dpw", (45.0, 70.0, 85.0), 9, synthetic=True))
    assert T.main(["--runs", str(run), "--table2"]) == 0
    body = {(c[0], c[1].split(" ")[0].rstrip(",")): c[-1] for c in map(_cells, _table_lines(capsys.readouterr().out)[1:])}
    deeper = count_parameters(get_config("reg-s-tiny", depth=3))
    assert f"{deeper / 1e6:.2f}" != f"{count_parameters(get_config('reg-s-tiny')) / 1e6:.2f}"
    assert body[("Reg-S (HMR2.0†)", "measured")] == f"{deeper / 1e6:.2f}"
    assert body[("Reg-S (HMR2.0†)", "reported")] == "39.55"
    assert body[("Def-M (DeforHMR)", "reported")] == f"{count_parameters(get_config('def-m')) / 1e6:.2f}"


def test_tables_command_gathers_runs_and_states_the_baseline_ratio(tmp_path, capsys):
    from eval import tables as T

    for run, method, value in (("a", "def-m-tiny", 60.0), ("b", "reg-s-tiny", 90.0)):
        rows = [T.ResultRow(T.MEAN_POSE_METHOD, "3dpw", "pa_mpjpe", 100.0, 40, f"{run}/1", kind="baseline", synthetic=True),
                T.ResultRow(method, "3dpw", "pa_mpjpe", value, 40, f"{run}/1", synthetic=True)]
        T.save_rows(tmp_path / run / "eval" / "results.json", rows)
    out = tmp_path / "table.md"
    assert T.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--table2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "def-m-tiny on 3DPW: PA-MPJPE 60.0 mm vs mean pose 100.0 mm: 40.0% below" in text
    assert "reg-s-tiny on 3DPW: PA-MPJPE 90.0 mm vs mean pose 100.0 mm: 10.0% below" in text
    # the tiny presets fill the measured rows of their configurations
    assert "| Def-M (DeforHMR) | measured" in text and "| Reg-S (HMR2.0†) | measured" in text
    assert out.read_text().strip() == text.strip()
