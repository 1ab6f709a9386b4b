"""The scale-out paths on this machine (docs/scale-out.md): a two-node Ray cluster, an S3
object store, training as two DDP nodes. Each drives the user's commands (`make shards`,
`make features`, `make train`, torchrun) in subprocesses and compares what they write with
a local run of the same data; each fixture ends the processes it started, by session.

Run alone: `.venv/bin/python -m pytest -m scaleout` (about 2 minutes of CPU; docs/scale-out.md
gives the times measured).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from datasets.reader import SYNTHETIC_MARKER
from pipelines.features import FeatureSettings
from pipelines.features import run as run_features
from pipelines.shards import ShardSettings, build
from processes import kill_session, session_processes

pytestmark = [pytest.mark.scaleout, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["coco", "mpi_inf_3dhp"]  # label npz + JPEGs; MATLAB v5 / HDF5 .mat + AVI videos
MAX_SAMPLES = 2  # 13 shards
ENCODER = "tiny"
ENV_CLEAR = ("RAY_ADDRESS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


# ---- helpers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without a cluster address or object-store endpoint of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_CLEAR}
    return {**env, "OMP_NUM_THREADS": "1", "RAY_DISABLE_USAGE_STATS": "1", **extra}


def start(cmd: list[str], env: dict, log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """A command in a session of its own (ended by `stop`), its output into `log`."""
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    kill_session(proc.pid)
    proc.wait()


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> tuple[int, str]:
    """(exit status, output) of a started command; on timeout it is ended and the test fails."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.args} ran over {timeout} s:\n{log.read_text()[-3000:]}")
    finally:
        stop(proc)
    return proc.returncode, log.read_text()


def make(tmp: Path, target: str, *args: str, env: dict, timeout: float = 300) -> str:
    """`make -s <target> ARGS` in the repository; its output (the test fails on a non-zero status)."""
    log = tmp / f"make-{target}-{time.monotonic_ns()}.log"
    rc, out = finish(start(["make", "-s", target, *args], env, log), log, timeout)
    assert rc == 0, f"make {target} {' '.join(args)}: exit {rc}\n{out[-4000:]}"
    return out


def shard_args(raw: str, out: str) -> list[str]:
    return [f"RAW={raw}", f"OUT={out}", f"DATASETS={' '.join(DATASETS)}", f"MAX_SAMPLES={MAX_SAMPLES}",
            "SHARDS_ARGS=--no-progress"]


def tree(fs, root: str) -> dict[str, bytes]:
    """{relative path: bytes} of every file under `root` on a pyarrow file system."""
    import pyarrow.fs as pafs

    root = root.rstrip("/")
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(root) + 1:]] = f.read()
    return out


def local_tree(root: Path) -> dict[str, bytes]:
    import pyarrow.fs as pafs

    return tree(pafs.LocalFileSystem(), str(Path(root).resolve()))


def assert_same_files(got: dict[str, bytes], want: dict[str, bytes], what: str) -> None:
    """Same files, byte for byte, except `stats.json` (timings and Ray nodes of the run) and
    the `SYNTHETIC` markers, which name the assets from where each run found them (relative to a
    local folder, absolute for a bucket) and must carry the same assets digest."""
    for marker in [k for k in want if k.endswith("/" + SYNTHETIC_MARKER)]:
        assert marker in got, f"{what}: no {marker}"
        digest = (json.loads(got[marker])["sha256"], json.loads(want[marker])["sha256"])
        assert digest[0] == digest[1] and digest[0], f"{what}: {marker} names other assets {digest}"
    skip = ("stats.json", "/" + SYNTHETIC_MARKER)
    got = {k: v for k, v in got.items() if not k.endswith(skip)}
    want = {k: v for k, v in want.items() if not k.endswith(skip)}
    assert sorted(got) == sorted(want), f"{what}: other files ({sorted(set(got) ^ set(want))[:5]})"
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"{what}: {len(differ)} files differ from the local run, e.g. {differ[:5]}"
    assert any(k.endswith(".tar") for k in want) and any(k.endswith("manifest.parquet") for k in want)


def shard_nodes(out: Path) -> set[str]:
    """The Ray nodes that wrote the shards of a `make shards` run (stats.json)."""
    return {n for f in glob.glob(f"{out}/*/*/stats.json") for n in json.load(open(f))["nodes"]}


def feature_nodes(output: str) -> set[str]:
    """The Ray nodes of a `make features` run, from its summary line: those that read image
    shards (Ray tasks) or encoded them (the encoder actor)."""
    line = next(ln for ln in output.splitlines() if ln.startswith("image shards by Ray node: "))
    return set(re.findall(r"([0-9a-f]{12}) read", line))


# ---- the local run everything is compared with ----------------------------------------------------
@pytest.fixture(scope="module")
def reference(synthetic_dir, ray_session, tmp_path_factory):
    """Image shards and tiny-encoder features of DATASETS, built locally (in this process's Ray)."""
    root = tmp_path_factory.mktemp("scaleout-local")
    stats, skipped = build(str(synthetic_dir / "raw"), str(root / "shards"), ShardSettings(max_samples=MAX_SAMPLES),
                           DATASETS)
    assert not skipped and sum(s["shards"] for s in stats) >= 10
    run_features(str(root / "shards"), str(root / "features"), FeatureSettings(encoder=ENCODER))
    return root


# ---- 1. a two-node Ray cluster ------------------------------------------------------------------------
@dataclass
class RayCluster:
    address: str
    env: dict[str, str]
    head: subprocess.Popen
    worker: subprocess.Popen
    nodes: dict[str, str]  # node id (12 hex digits) -> "head" / "worker"

    def kill_worker(self) -> None:
        """The worker node fails: every process of it is killed at once."""
        stop(self.worker)


def running(sid: int, task: str) -> bool:
    """Whether a Ray worker of the node in session `sid` runs `task` (its process title is `ray::<task name>`)."""
    for pid in session_processes(sid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"ray::") and task.encode() in title:
            return True
    return False


def alive_nodes(address: str, env: dict) -> list[dict]:
    probe = ("import json, ray; ray.init(address=%r, logging_level='ERROR'); "
             "print(json.dumps([{'id': n['NodeID'][:12], 'head': 'node:__internal_head__' in n['Resources']} "
             "for n in ray.nodes() if n['Alive']]))") % address
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else []


@pytest.fixture
def ray_cluster():
    """A head and a worker node of one CPU each (`ray start --block`, each in a session of its
    own, ports and temp dir of their own: other Ray instances on this machine are untouched)."""
    tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    # token authentication off for this loopback-only test cluster (the head would otherwise
    # enable it from ~/.ray/auth_token and refuse the worker node)
    env = base_env(RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="disabled")
    ray_bin = str(Path(sys.executable).with_name("ray"))

    def node(*args: str, name: str) -> subprocess.Popen:
        ports = [f"--{p}={free_port()}" for p in ("node-manager-port", "object-manager-port", "runtime-env-agent-port",
                                                  "dashboard-agent-grpc-port", "dashboard-agent-listen-port",
                                                  "metrics-export-port")]
        return start([ray_bin, "start", "--block", "--num-cpus=1", "--num-gpus=0", f"--object-store-memory={100 << 20}",
                      f"--temp-dir={tmp}", "--disable-usage-stats", *ports, *args], env, tmp / f"{name}.log")

    head = node("--head", f"--port={free_port()}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}", name="head")
    worker = None
    try:
        deadline = time.monotonic() + 120
        while not (tmp / "ray_current_cluster").exists():
            assert head.poll() is None and time.monotonic() < deadline, (tmp / "head.log").read_text()[-3000:]
            time.sleep(0.2)
        address = (tmp / "ray_current_cluster").read_text().strip()
        worker = node(f"--address={address}", name="worker")
        while len(nodes := alive_nodes(address, env)) < 2:
            assert worker.poll() is None and time.monotonic() < deadline, (tmp / "worker.log").read_text()[-3000:]
            time.sleep(1)
        yield RayCluster(address, {**env, "RAY_ADDRESS": address}, head, worker,
                         {n["id"]: "head" if n["head"] else "worker" for n in nodes})
    finally:
        for proc in (worker, head):
            if proc is not None:
                stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_cluster_two_nodes_identical_output_and_a_lost_node(reference, ray_cluster, synthetic_dir, tmp_path):
    """`make shards` / `make features` through RAY_ADDRESS: work on both nodes, the local run's
    bytes; the worker node killed mid-run: the run completes on the head or fails saying so,
    and a rerun completes with the same bytes."""
    raw, env = str(synthetic_dir / "raw"), ray_cluster.env
    assert sorted(ray_cluster.nodes.values()) == ["head", "worker"]
    make(tmp_path, "shards", *shard_args(raw, str(tmp_path / "shards")), env=env)
    assert shard_nodes(tmp_path / "shards") == set(ray_cluster.nodes), "the shard tasks did not run on both nodes"
    assert_same_files(local_tree(tmp_path / "shards"), local_tree(reference / "shards"), "cluster shards")

    out = make(tmp_path, "features", f"SHARDS={tmp_path / 'shards'}", f"OUT={tmp_path / 'features'}",
               f"ENCODER={ENCODER}", env=env)
    assert feature_nodes(out) == set(ray_cluster.nodes), f"features did not run on both nodes:\n{out[-2000:]}"
    assert_same_files(local_tree(tmp_path / "features"), local_tree(reference / "features"), "cluster features")

    # the worker node dies while it runs a shard task
    killed, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = start(["make", "-s", "shards", *shard_args(raw, str(killed))], env, log)
    deadline = time.monotonic() + 240
    while not running(ray_cluster.worker.pid, "_process_row") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before a shard task ran on the worker node:\n{log.read_text()[-3000:]}"
    ray_cluster.kill_worker()
    rc, out = finish(proc, log, timeout=300)
    if rc != 0:  # Ray gave up: one clear line, then a rerun (on the head alone) writes what is missing
        assert "error: the Ray cluster lost a node or worker mid-run" in out, out[-3000:]
        make(tmp_path, "shards", *shard_args(raw, str(killed)), env=env)
    assert_same_files(local_tree(killed), local_tree(reference / "shards"), "shards after a lost node")
    assert not glob.glob(f"{killed}/*/*/.tmp-*")
    print(f"lost node: the run's exit status {rc}" + (" (a rerun completed it)" if rc else " (Ray retried the task)"))


# ---- 2. an S3 object store ---------------------------------------------------------------------------
@dataclass
class S3:
    endpoint: str
    env: dict[str, str]  # the standard AWS variables a user sets (docs/scale-out.md)
    bucket: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            region_name=self.env["AWS_DEFAULT_REGION"])

    def upload(self, folder: Path, prefix: str) -> int:
        client, n = self.client(), 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), self.bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
            n += 1
        return n

    def tree(self, prefix: str) -> dict[str, bytes]:
        client, out = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):  # folder markers
                    body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    out[obj["Key"][len(prefix) + 1:]] = body
        return out


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's standalone S3 server on a free port, in a session of its own, with one bucket."""
    tmp = tmp_path_factory.mktemp("moto")
    port = free_port()
    server = start([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                   base_env(), tmp / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp / "moto.log").read_text()[-2000:]
                time.sleep(0.2)
        store = S3(endpoint, base_env(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"), "deforhmr")
        store.client().create_bucket(Bucket=store.bucket)
        yield store
    finally:
        stop(server)


# the training run of both tests: 15 samples, 3 steps of 4 (DDP: 2 per rank), no validation set
TRAIN_MIX = ["data.mix.coco=1", "data.mix.mpi_inf_3dhp=1", "data.mix.mpii=0", "data.mix.h36m=0", "data.mix.3dpw=0"]
TRAIN_SETS = [*TRAIN_MIX, "optim.global_batch=4", "optim.epochs=1", "data.shuffle_buffer=4",
              "trainer.log_every_n_steps=1", "trainer.accelerator=cpu"]
NO_VAL = "data.val_dataset=''"
CONFIG = REPO / "train" / "configs" / "demo-cpu.yaml"


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_s3_object_store_gives_the_local_bytes_and_training(reference, s3, synthetic_dir, tmp_path):
    """RAW, OUT, SHARDS and FEATURES as s3:// URIs (endpoint and credentials from the AWS
    variables): the shards and features of the local run byte for byte, and a seeded training
    run equal to the one on the local features to the last digit."""
    env, bucket = s3.env, f"s3://{s3.bucket}"
    assert s3.upload(synthetic_dir, "synthetic") > 100  # the raw tree and the assets its SYNTHETIC markers name
    make(tmp_path, "shards", *shard_args(f"{bucket}/synthetic/raw", f"{bucket}/shards"),
         f"RAW_STAGE={tmp_path / 'stage'}", env=env)
    assert_same_files(s3.tree("shards"), local_tree(reference / "shards"), "shards in the bucket")
    assert (tmp_path / "stage" / s3.bucket / "synthetic" / "raw" / "coco").is_dir()  # the readers' mirror

    make(tmp_path, "features", f"SHARDS={bucket}/shards", f"OUT={bucket}/features", f"ENCODER={ENCODER}", env=env)
    assert_same_files(s3.tree("features"), local_tree(reference / "features"), "features in the bucket")
    out = make(tmp_path, "check-shards", f"SHARDS={bucket}/shards", f"FEATURES={bucket}/features", env=env)
    assert "6 split folder(s) checked, nothing damaged" in out, out[-2000:]  # every byte against its index

    runs = {}
    for name, features in (("s3", f"{bucket}/features"), ("local", str(reference / "features"))):
        runs[name] = tmp_path / f"run-{name}"
        make(tmp_path, "train", f"CONFIG={CONFIG}", f"FEATURES={features}", f"RUN={runs[name]}",
             f"ASSETS={synthetic_dir / 'assets'}", f"SET={' '.join(TRAIN_SETS)} data.val_dataset=\"''\"", env=env)
    a, b = weights(runs["s3"] / "checkpoints" / "last.ckpt"), weights(runs["local"] / "checkpoints" / "last.ckpt")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), "weights differ"
    metrics = [(r / "logs" / "version_0" / "metrics.csv").read_text() for r in runs.values()]
    assert metrics[0] == metrics[1] and metrics[0].count("\n") > 3


# ---- 3. DDP over two nodes --------------------------------------------------------------------------
def test_ddp_two_nodes_one_process_each(reference, synthetic_dir, tmp_path):
    """Two torchrun "nodes" (node rank 0 and 1, one process each, gloo on CPU): the ranks read
    disjoint samples, end with identical weights, and one checkpoint is written."""
    port, run = free_port(), tmp_path / "run"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    args = [str(REPO / "tests" / "train_recorder.py"), str(tmp_path), str(CONFIG), str(reference / "features"), str(run),
            str(synthetic_dir / "assets"), *TRAIN_SETS, NO_VAL, "data.workers=1", "trainer.devices=1",
            "trainer.num_nodes=2"]
    env = base_env(PYTHONPATH=str(REPO))
    procs = [start([torchrun, "--nnodes=2", "--nproc-per-node=1", f"--node-rank={r}", "--master-addr=127.0.0.1",
                    f"--master-port={port}", *args], env, tmp_path / f"node{r}.log") for r in (0, 1)]
    for r, proc in enumerate(procs):
        rc, out = finish(proc, tmp_path / f"node{r}.log", timeout=300)
        assert rc == 0, f"node {r}: exit {rc}\n{out[-4000:]}"
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["step"] == r1["step"] == 3
    assert len(r0["keys"]) == len(r1["keys"]) == 3 * 2  # 3 steps of 4 samples, 2 per rank
    assert not set(r0["keys"]) & set(r1["keys"]), "the two nodes read the same samples"
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"]), "the ranks' weights differ"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    saved = {k: v for k, v in r0["state"].items() if f"model.{k}" in ckpt["state_dict"]}  # SMPL buffers are not
    assert len(saved) > len(r0["state"]) // 2
    assert all(torch.equal(ckpt["state_dict"][f"model.{k}"], v) for k, v in saved.items())
