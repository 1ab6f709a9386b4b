"""The commands as a newcomer meets them.

- `make help` lists every target the README names, and every `make` line of the README
  passes each of its variables to its command (`make -n`, nothing run).
- The demo's first stage runs from a fresh state, and `make shards` after it, with their
  output in log files: plain lines, no carriage-return frames.
- The chain shards -> features -> train -> eval on synthetic data runs without ASSETS=:
  the data names the stand-ins it was made with (SYNTHETIC markers), the commands use them
  and say so, and refuse other assets for it.
- One test per bad input of every command (`BAD_INPUTS`): exit status non-zero, one error
  line naming the problem, no traceback, nothing written.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import progress as progress_module
from datasets.assets import AssetsError, assets_digest, assets_for_data
from datasets.reader import SYNTHETIC_MARKER, SyntheticMarker
from pipelines.shard_reader import read_split_marker

REPO = Path(__file__).resolve().parents[1]
ONLY_3DPW = ["data.mix.coco=0", "data.mix.mpii=0", "data.mix.h36m=0", "data.mix.mpi_inf_3dhp=0"]


def make(*args: str, timeout: int = 600, **files) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, text=True, timeout=timeout,
                          capture_output=not files, **files)


# ---- the README's commands --------------------------------------------------------------------
DOC_PAGES = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])


def make_lines(page: str) -> list[str]:
    """Every `make ...` command of a page: code lines and inline code, comments and optional
    brackets dropped, `a && b` taken as two commands."""
    text = (REPO / page).read_text()
    found = re.findall(r"^\s*(make [^\n`#]*)", text, re.M) + re.findall(r"`(make [^`]*)`", text)
    parts = [part.strip() for line in found for part in line.split("&&")]
    lines = [re.sub(r"\[([^\]]*)\]", r"\1", line).strip() for line in parts if line.startswith("make ")]
    return sorted(set(line for line in lines if "..." not in line and "…" not in line))


def readme_make_lines() -> list[str]:
    return make_lines("README.md")


def test_make_help_lists_every_target_the_readme_names():
    out = make("help")
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^  make (\S+)", out.stdout, re.M))
    named = {shlex.split(line)[1] for line in readme_make_lines()}
    assert {"setup", "test", "synthetic", "shards", "features", "train", "eval", "demo"} <= named
    assert named <= listed, f"README names targets `make help` lacks: {sorted(named - listed)}"


@pytest.mark.parametrize("line", readme_make_lines())
def test_every_make_line_of_the_readme_passes_its_variables(line):
    assert_make_line_passes_its_variables(line)


@pytest.mark.parametrize("page, line", [(page, line) for page in DOC_PAGES if page != "README.md"
                                        for line in make_lines(page)])
def test_every_make_line_of_the_docs_passes_its_variables(page, line):
    assert_make_line_passes_its_variables(line)


def assert_make_line_passes_its_variables(line: str) -> None:
    words = shlex.split(line)[1:]
    dry = make("-n", *words)
    assert dry.returncode == 0, f"{line}: {dry.stderr}"
    for word in words:
        name, eq, value = word.partition("=")
        if not eq:
            continue
        wanted = ["--resume"] if name == "RESUME" else value.split()
        missing = [w for w in wanted if w not in dry.stdout]
        assert not missing, f"{line}: {name}={value} does not reach the command ({missing} not in `make -n`)"


# ---- links between the pages ------------------------------------------------------------------
def relative_links(page: str) -> list[str]:
    """The targets of a page's markdown links and images that are paths in the repository
    (no scheme, not a bare anchor), outside fenced code; an anchor is dropped."""
    text = re.sub(r"^```.*?^```", "", (REPO / page).read_text(), flags=re.M | re.S)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", DOC_PAGES)
def test_every_relative_link_of_the_readme_and_docs_points_to_a_file(page):
    links = relative_links(page)
    assert links, f"{page}: no links found (every page links where it leans on another)"
    missing = []
    for target in links:
        path = (REPO / page).parent / target
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page}: links to missing files {missing}"


def test_the_readme_links_every_docs_page():
    linked = {os.path.normpath(t) for t in relative_links("README.md")}
    pages = {p for p in DOC_PAGES if p.startswith("docs/")}
    assert pages <= linked, f"README does not link {sorted(pages - linked)}"


@pytest.mark.slow
def test_the_demos_first_stage_and_shards_run_from_a_fresh_state_into_plain_logs(tmp_path):
    demo = tmp_path / "demo"
    with open(tmp_path / "synthetic.log", "w") as log:
        done = make(f"{demo}/synthetic/.done", f"DEMO={demo}", "DEMO_SCALE=1", "DEMO_SCALE_FOR=coco=1",
                    stdout=log, stderr=subprocess.STDOUT)
    assert done.returncode == 0, (tmp_path / "synthetic.log").read_text()[-3000:]
    assert (demo / "synthetic" / ".done").exists()
    assert json.loads((demo / "synthetic" / "raw" / "3DPW" / SYNTHETIC_MARKER).read_text())["sha256"] == \
        assets_digest(demo / "synthetic" / "assets")
    with open(tmp_path / "shards.out", "w") as out, open(tmp_path / "shards.err", "w") as err:
        shards = make("shards", f"RAW={demo}/synthetic/raw", f"OUT={tmp_path}/shards", "DATASETS=mpii",
                      stdout=out, stderr=err)
    log = (tmp_path / "shards.err").read_text()
    assert shards.returncode == 0, log[-3000:]
    assert "\r" not in log and "\r" not in (tmp_path / "shards.out").read_text()
    assert len(log.splitlines()) < 40, log  # Ray's start-up lines and at most a few progress lines
    assert read_split_marker(f"{tmp_path}/shards/mpii/train").assets == (demo / "synthetic" / "assets").resolve()


# ---- the chain on synthetic data, without ASSETS= ---------------------------------------------
def assert_one_error_line(err: str, words: str) -> None:
    """One `<command>: error: ...` line, holding `words` (a shard check lists each damaged shard
    on a line of its own after it), nothing after it, no traceback, no unsafe advice."""
    lines = [line for line in err.splitlines() if line.strip()]
    error = [i for i, line in enumerate(lines) if ": error: " in line]
    assert "Traceback" not in err and "weights_only" not in err, err
    assert len(error) == 1 and words in "\n".join(lines[error[0]:]), err
    if not lines[error[0]].split(": error: ", 1)[1].startswith("shard check:"):
        assert error[0] == len(lines) - 1 and words in lines[-1], err


def run_main(main, argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command's main, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def chain(synthetic_dir, ray_session, tmp_path_factory):
    """3DPW of the session's synthetic tree -> shards -> tiny features -> a 1-epoch run, each
    through its command's main, none given assets, progress shown into a log (every update
    a line: PROGRESS_SECONDS = 0)."""
    from pipelines.features import main as features
    from pipelines.shards import main as shards
    from train.run import main as train

    root = tmp_path_factory.mktemp("front")
    paths = {"raw": synthetic_dir / "raw", "assets": synthetic_dir / "assets", "shards": root / "shards",
             "features": root / "features", "run": root / "runs" / "a", "root": root}
    steps = {
        "shards": (shards, ["--raw", str(paths["raw"]), "--out", str(paths["shards"]), "--datasets", "3dpw"]),
        "features": (features, ["--shards", str(paths["shards"]), "--out", str(paths["features"]),
                                "--encoder", "tiny", "--device", "cpu"]),
        "train": (train, ["--config", "train/configs/demo-cpu.yaml", "--features", str(paths["features"]),
                          "--run", str(paths["run"]), "--set", "optim.epochs=1", "--set", "data.workers=0",
                          "--set", "trainer.log_every_n_steps=1",
                          *[x for s in ONLY_3DPW for x in ("--set", s)]]),
    }
    logs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(progress_module, "PROGRESS_SECONDS", 0.0)
            for name, (main, argv) in steps.items():
                rc, out, err = run_main(main, argv)
                assert rc == 0, f"{name}: {err[-3000:]}"
                logs[name] = (out, err)
    finally:
        torch.set_num_threads(threads)
    return {**paths, "logs": logs}


def test_synthetic_data_names_its_assets_in_every_split_it_goes_through(chain):
    digest = assets_digest(chain["assets"])
    for split in ("train", "val", "test"):
        for folder in (chain["shards"] / "3dpw" / split, chain["features"] / "tiny" / "3dpw" / split):
            info = json.loads((folder / SYNTHETIC_MARKER).read_text())
            assert not os.path.isabs(info["assets"]) and info["sha256"] == digest  # relative: the tree can move
            assert (folder / info["assets"]).resolve() == chain["assets"].resolve()


def test_train_without_assets_takes_the_datas_stand_ins_and_says_so(chain):
    out = chain["logs"]["train"][0]
    assert f"== train: assets: {chain['assets'].resolve()} (synthetic" in out
    meta = torch.load(chain["run"] / "checkpoints" / "last.ckpt", weights_only=True)["meta"]
    assert Path(meta["assets"]) == chain["assets"].resolve() and meta["synthetic"]


def test_progress_written_to_a_log_is_plain_lines(chain):
    for name, (_, err) in chain["logs"].items():
        assert "\r" not in err, name
    shards, features, train = (chain["logs"][n][1] for n in ("shards", "features", "train"))
    frames = sum(json.loads((chain["shards"] / "3dpw" / s / "stats.json").read_text())["frames"]
                 for s in ("train", "val", "test"))
    crop = [line for line in shards.splitlines() if line.startswith("  crop+write: ")]
    assert crop and len(crop) <= frames and crop[-1].startswith(f"  crop+write: {frames}/{frames} frames (100%)")
    encoded = [line for line in features.splitlines() if line.startswith("  features tiny (cpu x1")]
    assert encoded and f"): {frames}/{frames} crops (100%)" in encoded[-1], features
    steps = [line for line in train.splitlines() if line.startswith("  train: ")]
    assert steps and steps[-1].startswith("  train: 1/1 steps (100%)") and "epoch 0" in steps[-1], train


def test_eval_without_assets_takes_the_datas_stand_ins(chain, tmp_path):
    from eval.evaluate import main as evaluate

    run = tmp_path / "run"
    shutil.copytree(chain["run"], run)
    rc, out, err = run_main(evaluate, ["--run", str(run), "--features", str(chain["features"]), "--shards",
                                       str(chain["shards"]), "--protocols", "3dpw", "--examples", "0",
                                       "--device", "cpu"])
    assert rc == 0, err[-3000:]
    assert f"== eval: assets: {chain['assets'].resolve()} (synthetic" in out
    assert (run / "eval" / "results.json").exists()


def fake_real_assets(root: Path) -> Path:
    """An assets folder whose SMPL neutral file is not marked synthetic: real body models, as
    far as the commands can tell."""
    path = root / "body_models" / "smpl" / "SMPL_NEUTRAL.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"f": np.zeros((1, 3), np.int64)}))
    return root


def other_stand_ins(assets: Path, root: Path) -> Path:
    """The stand-ins linked file by file, but other mean parameters: other synthetic assets."""
    for f in assets.rglob("*"):
        if f.is_file():
            (root / f.relative_to(assets)).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f, root / f.relative_to(assets))
    mean = root / "smpl_mean_params.npz"
    arrays = dict(np.load(mean, allow_pickle=False))
    mean.unlink()
    arrays["shape"] = arrays["shape"] + 0.5
    np.savez(mean, **arrays)
    return root


@pytest.mark.parametrize("which", ["real", "other stand-ins"])
def test_named_assets_other_than_the_datas_own_are_refused(chain, tmp_path, which):
    from eval.evaluate import main as evaluate
    from train.run import main as train

    given = fake_real_assets(tmp_path / "real") if which == "real" else \
        other_stand_ins(chain["assets"], tmp_path / "other")
    words = "holds real body models" if which == "real" else "holds others"
    rc, _, err = run_main(train, ["--config", "train/configs/demo-cpu.yaml", "--features", str(chain["features"]),
                                  "--run", str(tmp_path / "run"), "--assets", str(given),
                                  *[x for s in ONLY_3DPW for x in ("--set", s)]])
    assert rc == 2 and not (tmp_path / "run").exists(), err
    assert_one_error_line(err, words)
    run = tmp_path / "copy"
    shutil.copytree(chain["run"], run)
    rc, _, err = run_main(evaluate, ["--run", str(run), "--features", str(chain["features"]), "--assets", str(given),
                                     "--device", "cpu"])
    assert rc == 2 and not (run / "eval").exists(), err
    assert_one_error_line(err, words)


def test_assets_for_data_rules(tmp_path, synthetic_assets):
    a = synthetic_assets.root.resolve()
    digest = assets_digest(a)
    mark = SyntheticMarker(a, digest)
    got, where = assets_for_data(None, {"x/3dpw/train": mark, "x/3dpw/val": mark})
    assert got.root == a and "named by its SYNTHETIC markers" in where
    got, where = assets_for_data(str(a), {"x/3dpw/train": mark})  # named, and the same: no line
    assert got.root == a and where is None
    got, where = assets_for_data(str(tmp_path / "mine"), {"x/coco/train": None})  # real data: as named
    assert got.root == tmp_path / "mine" and where is None
    with pytest.raises(AssetsError, match="x/coco/train is real data .* x/3dpw/train is synthetic"):
        assets_for_data(None, {"x/3dpw/train": mark, "x/coco/train": None})
    with pytest.raises(AssetsError, match="made with different assets"):
        assets_for_data(None, {"x/3dpw/train": mark, "x/3dpw/val": SyntheticMarker(tmp_path, "0" * 64)})
    with pytest.raises(FileNotFoundError, match="not there \\(moved\\?\\): pass ASSETS="):
        assets_for_data(None, {"x/3dpw/train": SyntheticMarker(tmp_path / "gone", digest)})
    with pytest.raises(AssetsError, match="which changed since"):
        assets_for_data(None, {"x/3dpw/train": SyntheticMarker(a, "0" * 64)})


# ---- bad inputs: one line, non-zero, nothing written ----------------------------------------
def _cut_file(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _copy_features(chain, tmp: Path) -> Path:
    shutil.copytree(chain["features"], tmp / "features")
    return tmp / "features"


def _old_cache(chain, tmp: Path) -> Path:
    """A cache whose encoder.json lacks what this code reads (made by an older version)."""
    features = _copy_features(chain, tmp)
    spec = json.loads((features / "tiny" / "encoder.json").read_text())
    del spec["storage"]
    (features / "tiny" / "encoder.json").write_text(json.dumps(spec))
    return features


def _other_targets_layout(chain, tmp: Path) -> Path:
    features = _copy_features(chain, tmp)
    spec = json.loads((features / "tiny" / "encoder.json").read_text())
    spec["targets"]["layout"] = [["older", "<f4", [3]]]
    (features / "tiny" / "encoder.json").write_text(json.dumps(spec))
    return features


def _index_of_another_format(root: Path, split: str) -> Path:
    index = root / split / "index.json"
    doc = json.loads(index.read_text())
    index.write_text(json.dumps({**doc, "format": 99}))
    return root


def _copy_run(chain, tmp: Path, cut: str | None = None) -> Path:
    run = tmp / "run"
    shutil.copytree(chain["run"], run)
    if cut:
        _cut_file(run / "checkpoints" / cut)
    return run


def _predict_image(tmp: Path) -> Path:
    import cv2

    cv2.imwrite(str(tmp / "in.jpg"), np.full((240, 320, 3), 90, np.uint8))
    return tmp / "in.jpg"


# name: (module of the command, (chain, tmp) -> (argv, paths that must not be written), words of the error)
BAD_INPUTS = {
    # make shards
    "shards: RAW missing": ("pipelines.shards", lambda c, t: (
        ["--raw", str(t / "nothing"), "--out", str(t / "out")], [t / "out"]), "no such folder"),
    "shards: RAW without datasets": ("pipelines.shards", lambda c, t: (
        ["--raw", str(t), "--out", str(t / "out")], [t / "out"]), "no dataset found under"),
    "shards: unknown DATASETS": ("pipelines.shards", lambda c, t: (
        ["--raw", str(c["raw"]), "--out", str(t / "out"), "--datasets", "3dpw", "cocoa"], [t / "out"]),
        "unknown datasets ['cocoa']"),
    "shards: MAX_SAMPLES=0": ("pipelines.shards", lambda c, t: (
        ["--raw", str(c["raw"]), "--out", str(t / "out"), "--max-samples", "0"], [t / "out"]),
        "--max-samples must be >= 1"),
    "shards: JPEG_QUALITY=500": ("pipelines.shards", lambda c, t: (
        ["--raw", str(c["raw"]), "--out", str(t / "out"), "--jpeg-quality", "500"], [t / "out"]),
        "JPEG quality must be in 1..100"),
    # make features
    "features: SHARDS missing": ("pipelines.features", lambda c, t: (
        ["--shards", str(t / "nothing"), "--out", str(t / "out"), "--encoder", "tiny", "--device", "cpu"],
        [t / "out"]), "no image shards found"),
    "features: wrong ENCODER": ("pipelines.features", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(t / "out"), "--encoder", "vitpose-x"], [t / "out"]),
        "invalid choice: 'vitpose-x'"),
    "features: VIEWS=0": ("pipelines.features", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(t / "out"), "--encoder", "tiny", "--views", "0"], [t / "out"]),
        "views must be >= 1"),
    "features: vitpose-h without its checkpoint": ("pipelines.features", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(t / "out")], [t / "out"]), "no ViTPose-H checkpoint"),
    "features: truncated CKPT": ("pipelines.features", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(t / "out"), "--encoder", "tiny", "--device", "cpu",
         "--ckpt", str(_cut_and_return(c["run"] / "checkpoints" / "last.ckpt", t / "enc.pth"))], [t / "out"]),
        "truncated encoder checkpoint"),
    "features: OUT holds a cache of another version": ("pipelines.features", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(_other_targets_layout(c, t)), "--encoder", "tiny",
         "--device", "cpu"], []), "or by another version of this code (differs in ['targets'])"),
    "features: image shards indexed by another version": ("pipelines.features", lambda c, t: (
        ["--shards", str(_index_of_another_format(_copytree(c["shards"], t / "shards"), "3dpw/test")), "--out",
         str(t / "out"), "--encoder", "tiny", "--device", "cpu"], [t / "out"]), "not a format-1 crc32 shard index"),
    # make train
    "train: FEATURES missing": ("train.run", lambda c, t: (
        ["--config", "train/configs/demo-cpu.yaml", "--features", str(t / "nothing"), "--run", str(t / "run")],
        [t / "run"]), "not a feature cache"),
    "train: CONFIG missing": ("train.run", lambda c, t: (
        ["--config", "train/configs/def-x.yaml", "--features", str(c["features"]), "--run", str(t / "run")],
        [t / "run"]), "config file not found"),
    "train: a config for another encoder's cache": ("train.run", lambda c, t: (
        ["--config", "train/configs/def-m.yaml", "--features", str(c["features"]), "--run", str(t / "run")],
        [t / "run"]), "data.cache = 'vitpose-h'; caches under"),
    "train: a model for another encoder's features": ("train.run", lambda c, t: (
        ["--config", "train/configs/def-m.yaml", "--set", "data.cache=tiny", "--features", str(c["features"]),
         "--run", str(t / "run"), *[x for s in ONLY_3DPW for x in ("--set", s)]], [t / "run"]),
        "the cache holds features (32, 16, 12), the model expects"),
    "train: a cache of another version": ("train.run", lambda c, t: (
        ["--config", "train/configs/demo-cpu.yaml", "--features", str(_old_cache(c, t)), "--run", str(t / "run")],
        [t / "run"]), "a feature cache of another version (lacks ['storage'])"),
    "train: feature shards indexed by another version": ("train.run", lambda c, t: (
        ["--config", "train/configs/demo-cpu.yaml", "--features",
         str(_index_of_another_format(_copy_features(c, t) / "tiny", "3dpw/train").parent), "--run",
         str(t / "run"), *[x for s in ONLY_3DPW for x in ("--set", s)]], [t / "run"]),
        "not a format-1 crc32 shard index"),
    "train: unknown dataset in the mix": ("train.run", lambda c, t: (
        ["--config", "train/configs/demo-cpu.yaml", "--features", str(c["features"]), "--run", str(t / "run"),
         "--set", "data.mix.cocoa=1"], [t / "run"]), "cocoa"),
    "train: RESUME=1 without a run": ("train.run", lambda c, t: (
        ["--features", str(c["features"]), "--run", str(t / "run"), "--resume"], [t / "run"]), "nothing to resume"),
    "train: RESUME=1 from a truncated checkpoint": ("train.run", lambda c, t: (
        ["--features", str(c["features"]), "--run", str(_copy_run(c, t, cut="last.ckpt")), "--resume"],
        [t / "run" / "logs" / "version_1"]), "truncated training checkpoint"),
    # make eval
    "eval: RUN missing": ("eval.evaluate", lambda c, t: (
        ["--run", str(t / "run"), "--features", str(c["features"])], [t / "run"]), "no checkpoint"),
    "eval: truncated checkpoint": ("eval.evaluate", lambda c, t: (
        ["--run", str(_copy_run(c, t, cut="best.ckpt")), "--features", str(c["features"])],
        [t / "run" / "eval"]), "truncated decoder checkpoint"),
    "eval: CKPT not a checkpoint": ("eval.evaluate", lambda c, t: (
        ["--run", str(_copy_run(c, t)), "--features", str(c["features"]), "--ckpt", str(c["run"] / "config.yaml")],
        [t / "run" / "eval"]), "unreadable or truncated decoder checkpoint"),
    "eval: FEATURES missing": ("eval.evaluate", lambda c, t: (
        ["--run", str(_copy_run(c, t)), "--features", str(t / "nothing")], [t / "run" / "eval"]),
        "not a feature cache"),
    "eval: a cache of another version": ("eval.evaluate", lambda c, t: (
        ["--run", str(_copy_run(c, t)), "--features", str(_old_cache(c, t))], [t / "run" / "eval"]),
        "a feature cache of another version"),
    "eval: unknown protocol": ("eval.evaluate", lambda c, t: (
        ["--run", str(_copy_run(c, t)), "--features", str(c["features"]), "--protocols", "3dpw,emdb9"],
        [t / "run" / "eval"]), "unknown protocol(s) ['emdb9']"),
    "eval: PRED missing": ("eval.evaluate", lambda c, t: (
        ["--pred", str(t / "preds.npz"), "--protocol", "3dpw", "--shards", str(c["shards"])], [t / "preds-eval"]),
        "preds.npz: predictions file not found"),
    "eval: PRED with an unknown PROTOCOL": ("eval.evaluate", lambda c, t: (
        ["--pred", str(t / "preds.npz"), "--protocol", "3dpx", "--shards", str(c["shards"])], [t / "preds-eval"]),
        "--pred needs --protocol, one of"),
    # make eval-export
    "eval-export: SHARDS missing": ("eval.export", lambda c, t: (
        ["--protocol", "3dpw", "--out", str(t / "exp"), "--shards", str(t / "nothing")],
        [t / "exp.parquet", t / "exp.json"]), "no image shards at"),
    # make demo's encoder fit, python -m eval.probe
    "pretrain: SHARDS missing": ("train.pretrain_encoder", lambda c, t: (
        ["--shards", str(t / "nothing"), "--out", str(t / "enc.pth")], [t / "enc.pth"]),
        "no 'train' image shards found"),
    "pretrain: wrong encoder": ("train.pretrain_encoder", lambda c, t: (
        ["--shards", str(c["shards"]), "--out", str(t / "enc.pth"), "--encoder", "tiny2"], [t / "enc.pth"]),
        "invalid choice: 'tiny2'"),
    "probe: cache missing": ("eval.probe", lambda c, t: (["--cache", str(t / "nothing")], []), "not a feature cache"),
    # make check-data
    "check-data: RAW missing": ("datasets.check", lambda c, t: (
        ["--raw", str(t / "nothing"), "--out", str(t / "out")], [t / "out"]), "no such folder"),
    "check-data: unknown DATASETS": ("datasets.check", lambda c, t: (
        ["--raw", str(c["raw"]), "--out", str(t / "out"), "--datasets", "3dpww"], [t / "out"]),
        "unknown datasets ['3dpww']"),
    "check-data: RAW without datasets": ("datasets.check", lambda c, t: (
        ["--raw", str(t), "--out", str(t / "out")], [t / "out"]), "no dataset found under"),
    # make assets-check, make synthetic
    "assets-check: ASSETS missing": ("datasets.assets", lambda c, t: (
        ["--assets", str(t / "nothing")], []), "--assets"),
    "synthetic: OUT is a file": ("datasets.synthetic.__main__", lambda c, t: (
        ["--out", str(_file(t / "taken"))], [t / "taken" / "assets"]), "exists and is not a folder"),
    # python -m eval.predict
    "predict: image missing": ("eval.predict", lambda c, t: (
        [str(t / "none.jpg"), "--box", "1,1,50,80", "--run", str(c["run"]), "--out", str(t / "p" / "o.png")],
        [t / "p"]), "none.jpg: no such image"),
    "predict: bad box": ("eval.predict", lambda c, t: (
        [str(_predict_image(t)), "--box", "1,1,50", "--run", str(c["run"]), "--out", str(t / "p" / "o.png")],
        [t / "p"]), "expected x,y,w,h"),
    "predict: truncated checkpoint": ("eval.predict", lambda c, t: (
        [str(_predict_image(t)), "--box", "1,1,50,80", "--run", str(_copy_run(c, t, cut="best.ckpt")),
         "--out", str(t / "p" / "o.png")], [t / "p"]), "truncated decoder checkpoint"),
}


def _cut_and_return(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    _cut_file(dst)
    return dst


def _copytree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _file(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_a_failure_and_writes_nothing(case, chain, tmp_path):
    import importlib

    module, make_args, words = BAD_INPUTS[case]
    argv, unwritten = make_args(chain, tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    rc, _, err = run_main(importlib.import_module(module).main, argv)
    assert rc not in (0, None), f"{case}: exit status {rc}"
    assert_one_error_line(err, words)
    assert not [p for p in unwritten if p.exists()], f"{case}: wrote {unwritten}"
    if case.startswith(("features: OUT holds", "train: RESUME=1 from")):
        assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing added to an existing folder
