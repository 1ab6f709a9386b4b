"""`make mutate`: mutation testing of the core modules with mutmut (docs/testing.md).

    .venv/bin/python tests/mutate.py [--modules joints,crop] [--jobs 2] [--out build/mutate]
    make mutate [MODULES=joints,crop] [JOBS=2]

Not part of `make test` nor CI: it runs pytest once per mutant (minutes per module).

Per group of `GROUPS` (a module, or the readers together): mutmut mutates the group's files
(only the named functions where the table names them), runs the group's tests once with
every function instrumented to learn which tests reach which function, and then runs, for
each mutant, only the tests of the group's list that reach the mutated function (`-x`: the
first failure kills it). So a module is judged by its own tests, not the whole suite.
Lines that only build an error message are not mutated (`MESSAGE_LINES`): the tests check
that bad input raises the named error, and the wording of the message is not behaviour.

Each group runs in its own work folder OUT/<group> (a copy of the packages and tests, and
pyproject.toml with the group's [tool.mutmut] section), kept between runs: a rerun tests
again the mutants of functions whose code changed and every mutant not killed before, and
keeps the other verdicts (`--fresh`: test every mutant again). The synthetic datasets the
tests read are generated once into OUT/synthetic (again when datasets/ changes) and handed to
every pytest run (DEFORHMR_TEST_SYNTHETIC, tests/conftest.py) instead of being generated
again for each mutant.

Prints the score per module (killed / mutants; a mutant no selected test reaches counts as
surviving) and the diff of every surviving mutant; keeps each group's last verdicts in
OUT/<group>/score.json and writes every group's into OUT/report.md.

A mutant no test can kill (it behaves as the original code) is explained once, in
tests/mutate_equivalent/<group>.toml: its function, its diff and why (`EQUIVALENT_KINDS`,
the kinds of docs/testing.md). The report counts those apart and lists the survivors left
unexplained: each of them is a missing test or a missing explanation. An explanation is
found by the function and the changed lines, not by mutmut's number, which moves when the
function changes; one that matches no survivor any more is reported as stale.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datasets", "model", "pipelines", "train", "eval")
# regexes of source lines left unmutated: the message of a raised error
MESSAGE_LINES = (r"^\s*raise \w+\(f?[\"']", r"^\s*raise \w+\($")
KILLED = {"killed", "timeout", "segfault"}  # a mutant that makes the tests fail, hang or crash
EQUIVALENT = Path(__file__).resolve().parent / "mutate_equivalent"  # <group>.toml: mutants no test can kill
# why a mutant behaves as the original code (docs/testing.md, "Mutants not killed, and why")
EQUIVALENT_KINDS = {
    "default": "a keyword argument dropped, or set to None, where the callee's default is the same value",
    "device": "a device or precision argument: the same tensor on one CPU device in float32",
    "draw": "a symmetric draw, or a tie of a continuous draw (probability 0)",
    "broadcast": "a shape or axis that broadcasts or indexes to the same result",
    "seed": "another equally valid seed derivation (the contract is: a function of seed, key and view)",
    "unreached": "a branch this platform does not reach (named in the reason)",
    "redundant": "a guard, cast or copy whose work another line does anyway (named in the reason)",
}


@dataclass(frozen=True)
class Group:
    """Files mutated together, the functions of them that count (None: all), and the tests."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    functions: dict | None = None  # file -> function names (mutmut's: `x_name`, `xǁClassǁmethod`)


# every reader against the synthetic tree (not its contact-sheet test: a drawing of the records
# these check, 12 s a run), and the readers' common format checks
READERS_ALL = ("tests/test_readers_formats.py", "tests/test_readers_synthetic.py::test_every_dataset_and_split_is_found",
               "tests/test_readers_synthetic.py::test_records_hold_what_was_rendered",
               "tests/test_readers_synthetic.py::test_injected_faults_become_rejects")
READER_TESTS = ("tests/conformance/test_3dpw.py", "tests/conformance/test_label_npz.py",
                "tests/conformance/test_mpi_inf_3dhp.py", "tests/conformance/test_rich.py",
                "tests/conformance/test_images.py", *READERS_ALL,
                # the shared pieces on hand-built inputs: the SYNTHETIC marker, finish, the bodies
                "tests/test_reader_core.py")
GROUPS: dict[str, Group] = {
    "geometry": Group(("model/geometry.py",),
                      ("tests/test_geometry.py", "tests/test_crop.py", "tests/test_augment.py", "tests/test_body_model.py",
                       "tests/conformance/test_3dpw.py", "tests/conformance/test_images.py",
                       # the full-image reprojection (issue 15): CLIFF's camera, the 2D loss's uncrop
                       "tests/test_reprojection.py", "tests/conformance/test_cliff_camera.py", "tests/test_losses.py")),
    "crop": Group(("pipelines/crop.py",), ("tests/test_crop.py", "tests/test_augment.py", "tests/conformance/test_images.py")),
    "augment": Group(("pipelines/augment.py",), ("tests/test_augment.py", "tests/test_crop.py")),
    "record": Group(("datasets/record.py", "datasets/npz.py"),
                    ("tests/test_record.py", "tests/test_npz.py", "tests/conformance/test_label_npz.py",
                     "tests/test_train_data.py")),  # the targets row (to_targets_bytes) the loader reads
    "joints": Group(("datasets/joints.py",), ("tests/test_joints.py", "tests/conformance/test_joints.py")),
    # the readers, one group per file (each run and resumed on its own): a dataset's reader
    # against its conformance tests and every reader's; the shared helpers against all of them
    "readers-3dpw": Group(("datasets/pw3d.py",), ("tests/conformance/test_3dpw.py", *READERS_ALL)),
    "readers-npz": Group(("datasets/label_npz.py",), ("tests/conformance/test_label_npz.py", *READERS_ALL)),
    "readers-3dhp": Group(("datasets/mpi_inf_3dhp.py",), ("tests/conformance/test_mpi_inf_3dhp.py", *READERS_ALL)),
    "readers-rich": Group(("datasets/rich.py",), ("tests/conformance/test_rich.py", *READERS_ALL)),
    "readers-core": Group(("datasets/reader.py",), READER_TESTS),
    "protocols": Group(("eval/protocols.py", "eval/metrics.py"),
                       ("tests/test_protocols.py", "tests/test_metrics.py", "tests/conformance/test_3dpw.py",
                        "tests/conformance/test_rich.py")),
    "losses": Group(("train/losses.py",), ("tests/test_losses.py",)),
    "attention": Group(("model/deformable_attention.py",),
                       ("tests/test_deformable_attention.py", "tests/test_decoder.py", "tests/test_figures.py")),
    # the loader's view / target pairing: a sample's view, its map and its targets into one batch row
    "loader": Group(("train/data.py", "train/batch.py"), ("tests/test_train_data.py",),
                    {"train/data.py": ("x_one_view", "x_decode_sample"),
                     "train/batch.py": ("x_collate", "x_stack", "x__rows_batch", "x_materialize", "x_batch_fields")}),
    # the evaluator's mean-pose baseline: the mean body and the batch scoring of model and baseline
    # (evaluate_protocol itself is decorated: mutmut leaves it alone)
    "baseline": Group(("eval/evaluate.py",),
                      ("tests/test_evaluate.py::test_mean_pose_baseline_is_the_mean_parameter_body",
                       "tests/test_evaluate.py::test_scores_match_a_direct_protocol_computation",
                       "tests/test_evaluate.py::test_results_gather_chunks_per_method_and_metric",
                       "tests/test_evaluate.py::test_batches_score_into_one_result_in_the_samples_order"),
                      {"eval/evaluate.py": ("x_mean_pose_vertices", "x__score_batch", "xǁProtocolResultǁadd",
                                            "xǁProtocolResultǁvalues")}),
}


def module_name(path: str) -> str:
    return path[:-3].replace("/", ".")


def sync_tree(dst: Path) -> None:
    """Copy the packages, tests and pyproject.toml into `dst`, rewriting only files that
    changed (mutmut compares modification times to reuse its mutants)."""
    for top in (*PACKAGES, "tests"):
        for src in (REPO / top).rglob("*"):
            if "__pycache__" in src.parts or not src.is_file():
                continue
            out = dst / src.relative_to(REPO)
            if out.exists() and out.read_bytes() == src.read_bytes():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)  # mtime now: newer than mutmut's mutants of the old code (copy2 kept the
            # checkout's older mtime, and mutmut went on testing mutants of the code before the change)


def refresh_unmutated(work: Path, group: Group) -> None:
    """Bring the plain copies mutmut keeps of the modules it does not mutate (work/mutants/)
    up to date: mutmut copies them once and then keeps them, even when they changed."""
    for top in PACKAGES:
        for src in (work / top).rglob("*"):
            rel = src.relative_to(work)
            out = work / "mutants" / rel
            if not src.is_file() or str(rel) in group.files or not out.exists():
                continue
            if out.read_bytes() != src.read_bytes():
                shutil.copy2(src, out)


def write_config(work: Path, group: Group) -> None:
    """The project's pyproject.toml with the group's [tool.mutmut] section."""
    base = (REPO / "pyproject.toml").read_text()
    cfg = {"source_paths": list(PACKAGES), "only_mutate": list(group.files),
           "pytest_add_cli_args_test_selection": list(group.tests),
           "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
           "do_not_mutate_patterns": list(MESSAGE_LINES), "process_isolation": "forkserver"}
    section = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items())
    text = base + section
    path = work / "pyproject.toml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def counts(work: Path, group: Group) -> dict[str, dict[str, list[str]]]:
    """file -> status -> mutant names, of the functions that count."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for f in group.files:
        meta = json.loads((work / "mutants" / (f + ".meta")).read_text())
        wanted = (group.functions or {}).get(f)
        by_status: dict[str, list[str]] = {}
        for key, code in sorted(meta["exit_code_by_key"].items()):
            func = key.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[1]
            if wanted is not None and func not in wanted:
                continue
            by_status.setdefault(status_by_exit_code[code], []).append(key)
        out[f] = by_status
    return out


def retest_survivors(work: Path, group: Group) -> None:
    """Clear mutmut's cached verdicts of the mutants not killed, so that new tests meet them
    (mutmut reruns a function's mutants by itself only when the function's code changed)."""
    from mutmut.stats import status_by_exit_code

    for f in group.files:
        path = work / "mutants" / (f + ".meta")
        if not path.exists():
            continue
        meta = json.loads(path.read_text())
        codes = meta["exit_code_by_key"]
        meta["exit_code_by_key"] = {k: c if c is not None and status_by_exit_code[c] in KILLED else None
                                    for k, c in codes.items()}
        path.write_text(json.dumps(meta))


def run_group(name: str, group: Group, out: Path, jobs: int, synthetic: Path, fresh: bool) -> tuple[dict, float]:
    work = out / name
    if fresh and (work / "mutants").exists():
        shutil.rmtree(work / "mutants")
    work.mkdir(parents=True, exist_ok=True)
    retest_survivors(work, group)
    # mutmut's kept map of which tests reach which function is only extended for tests new since it
    # was made: a test older than a function (or than its last change) never runs that function's
    # mutants (losses: 10 "survivors" of _terms that its first tests kill). Map it again every run.
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    sync_tree(work)
    refresh_unmutated(work, group)
    write_config(work, group)
    names = [f"{module_name(f)}.{fn}__mutmut_*" for f, fns in (group.functions or {}).items() for fn in fns]
    env = {**os.environ, "DEFORHMR_TEST_SYNTHETIC": str(synthetic), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    t0 = time.monotonic()
    with open(work / "mutmut.log", "w") as log:
        rc = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(jobs), *names],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - t0
    if rc != 0:
        tail = (work / "mutmut.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutate: mutmut failed for '{name}' (exit {rc}); {work / 'mutmut.log'} ends:\n{tail}\n"
                         f"('failed to collect stats': the group's tests fail unmutated; see which with\n"
                         f"  cd {work / 'mutants'} && DEFORHMR_TEST_SYNTHETIC={synthetic} "
                         f"{sys.executable} -m pytest -x -q {' '.join(group.tests)})")
    return counts(work, group), seconds


def show(work: Path, path: str, mutant: str) -> str:
    """The changed lines of a mutant (what `mutmut show` prints, without its headers)."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(work)  # mutmut reads its config and mutants/ from the current folder
    try:
        reset_config()
        diff = get_diff_for_mutant(mutant, path=path)
    finally:
        os.chdir(here)
    return "\n".join(line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


def diff_key(diff: str) -> str:
    """The changed lines of a mutant, trailing spaces and blank lines dropped: with its
    function, what names a mutant across renumbering."""
    return "\n".join(line.rstrip() for line in diff.strip().splitlines() if line.strip())


def function_of(mutant: str) -> str:
    """`model.geometry.x_crop__mutmut_12` -> `model.geometry.x_crop`."""
    return mutant.rsplit("__mutmut_", 1)[0]


def load_equivalent(group: str, root: Path = EQUIVALENT) -> dict[tuple[str, str], dict]:
    """(function, diff) -> {kind, why} from root/<group>.toml (none: {}). Each entry needs
    `function`, `diff`, a known `kind` and a `why`."""
    import tomllib

    path = root / f"{group}.toml"
    if not path.exists():
        return {}
    try:
        entries = tomllib.loads(path.read_text()).get("mutant", [])
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"mutate: {path} is not valid TOML: {e}") from None
    out = {}
    for i, e in enumerate(entries):
        missing = [k for k in ("function", "diff", "kind", "why") if not str(e.get(k, "")).strip()]
        if missing:
            raise SystemExit(f"mutate: {path} mutant #{i + 1} ({e.get('function', '?')}) lacks {missing}")
        if e["kind"] not in EQUIVALENT_KINDS:
            raise SystemExit(f"mutate: {path} mutant #{i + 1} ({e['function']}): kind {e['kind']!r} "
                             f"is not one of {sorted(EQUIVALENT_KINDS)}")
        key = (e["function"], diff_key(e["diff"]))
        if key in out:
            raise SystemExit(f"mutate: {path} mutant #{i + 1} ({e['function']}) is explained twice")
        out[key] = {"kind": e["kind"], "why": e["why"].strip()}
    return out


def explain(group: str, not_killed: list[dict], root: Path = EQUIVALENT) -> list[tuple[str, str]]:
    """Mark each mutant of `not_killed` that root/<group>.toml explains (`equivalent`: its
    kind); return the explanations that match no mutant (stale: the code or the tests moved)."""
    known = load_equivalent(group, root)
    used = set()
    for m in not_killed:
        key = (function_of(m["mutant"]), diff_key(m["diff"]))
        if key in known:
            m["equivalent"] = known[key]["kind"]
            used.add(key)
    return [k for k in known if k not in used]


FAULTY = "faulty"  # OUT/synthetic/faulty/raw: the synthetic datasets with every fault (tests/conftest.py FAULTY)
SCORE = "score.json"  # OUT/<group>/score.json: the group's last verdicts (report.md gathers every group's)


def write_report(out: Path) -> tuple[list[str], int]:
    """OUT/report.md from the last run of every group that has run (a group run alone
    updates its rows and keeps the others'): the score table and every surviving mutant's diff."""
    lines = ["| group | module | mutants | killed | score | equivalent | unexplained | run |",
             "|---|---|---|---|---|---|---|---|"]
    body, equivalent, survivors = [], [], 0
    for name in GROUPS:
        if not (out / name / SCORE).exists():
            lines.append(f"| {name} | {', '.join(GROUPS[name].files)} | not run | | | | | |")
            continue
        score = json.loads((out / name / SCORE).read_text())
        stale = explain(name, [m for f in score["files"] for m in f["not_killed"]])
        for f in score["files"]:
            left = [m for m in f["not_killed"] if "equivalent" not in m]
            same = [m for m in f["not_killed"] if "equivalent" in m]
            kinds = {}
            for m in left:
                kinds[m["status"]] = kinds.get(m["status"], 0) + 1
            rest = ", ".join(f"{n} {s}" for s, n in sorted(kinds.items())) or "0"
            pct = 100 * f["killed"] / max(f["mutants"], 1)
            lines.append(f"| {name} | {f['file']} | {f['mutants']} | {f['killed']} | {pct:.1f}% | {len(same)} | {rest} "
                         f"| {score['when']}, {score['seconds']} s |")
            for m in left:
                body += [f"### {m['mutant']} ({m['status']})", "", "```diff", m["diff"], "```", ""]
            equivalent += [f"- `{m['mutant']}` ({m['equivalent']})" for m in same]
            survivors += len(left)
        for fn, d in stale:
            body += [f"### stale explanation in tests/mutate_equivalent/{name}.toml: `{fn}`", "", "```diff", d, "```", ""]
    report = ["# Mutation testing (`make mutate`)", "", *lines, "",
              "## Mutants not killed and not explained", "", *body,
              "## Mutants explained as equivalent (tests/mutate_equivalent/)", "", *equivalent]
    (out / "report.md").write_text("\n".join(report) + "\n")
    return lines, survivors


def generator_digest() -> str:
    """sha256 of the sources the synthetic datasets are made from (datasets/, the readers'
    formats included): the shared synthetic tree is made again when they change."""
    import hashlib

    h = hashlib.sha256()
    for src in sorted((REPO / "datasets").rglob("*.py")):
        h.update(str(src.relative_to(REPO)).encode() + b"\0" + src.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mutation testing of the core modules (mutmut).")
    ap.add_argument("--modules", default=",".join(GROUPS), help=f"comma-separated subset of {list(GROUPS)}")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "mutate", help="work folders and report.md")
    ap.add_argument("--fresh", action="store_true",
                    help="test every mutant again (default: reuse the verdicts of killed mutants whose function is unchanged)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    if unknown := [n for n in names if n not in GROUPS]:
        ap.error(f"unknown module group(s) {unknown}; known: {list(GROUPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    synthetic = args.out / "synthetic"
    made_by = generator_digest()
    done = synthetic / ".done"
    if not done.exists() or done.read_text().strip() != made_by:  # made by another generator: again
        shutil.rmtree(synthetic, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "datasets.synthetic", "--out", str(synthetic)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        done.write_text(made_by + "\n")
    if not (synthetic / FAULTY / "raw").is_dir():  # the same datasets with every fault (tests/conftest.py)
        part = synthetic / (FAULTY + ".part")
        shutil.rmtree(part, ignore_errors=True)
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
                        "from conftest import write_faulty; write_faulty(Path(sys.argv[1]), Path(sys.argv[2]))",
                        str(synthetic), str(part)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        part.rename(synthetic / FAULTY)

    for name in names:
        print(f"== mutate {name}: {', '.join(GROUPS[name].files)} against {len(GROUPS[name].tests)} test file(s)",
              flush=True)
        result, seconds = run_group(name, GROUPS[name], args.out, args.jobs, synthetic, args.fresh)
        score = {"when": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(seconds), "files": []}
        for f, by_status in result.items():
            total = sum(len(v) for v in by_status.values())
            killed = sum(len(v) for s, v in by_status.items() if s in KILLED)
            left = [(m, s) for s, v in by_status.items() if s not in KILLED for m in v]
            score["files"].append({"file": f, "mutants": total, "killed": killed,
                                   "not_killed": [{"mutant": m, "status": s, "diff": show(args.out / name, f, m)}
                                                  for m, s in left]})
            print(f"   {f}: {killed}/{total} killed ({100 * killed / max(total, 1):.1f}%)", flush=True)
        print(f"   {seconds:.0f} s", flush=True)
        (args.out / name / SCORE).write_text(json.dumps(score, indent=1) + "\n")
    lines, survivors = write_report(args.out)
    print("\n" + "\n".join(lines))
    print(f"\n{survivors} mutant(s) neither killed nor explained as equivalent: diffs in {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
