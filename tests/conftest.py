"""Shared pytest fixtures.

Sections are owned by different parts of the project; extend by adding sections, not by rewriting others.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "distributed: Ray Train / MLflow integration tests (select with -m distributed)")
    config.addinivalue_line("markers", "cluster: starts a real multi-node Ray cluster or MLflow server on loopback")


# ==== Ray clusters, MLflow servers, free ports (distributed training; reused by the tuning tests) =================
def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL the process group this fixture started (never other Ray or MLflow processes)."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # children in the group may outlive the leader: keep signalling the group
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _popen(cmd, log: Path, env=None) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def _wait(pred, timeout: float, what: str, logs=()):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}:\n{Path(p).read_text(errors='replace')[-3000:]}" for p in logs if Path(p).exists())
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tails}")


def _driver_token_auth():
    """Token auth for this (driver) process: what `ray start` does when a token exists (env + Ray's config)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return
    from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    os.environ.pop("RAY_AUTH_MODE", None)
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _shutdown_local_ray():
    try:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass


# Ray Train settings for the embedded test Ray (exported before ray.init, so the raylet, the Train controller and
# the workers inherit them): no preemption watcher actor (a single local node is never drained), no Prometheus
# metrics callbacks, no structured log files; the controller polls the workers every 0.5 s instead of 2 s (each
# run waits for at least one poll to start and one to finish), and a worker group started on a loaded 2-core
# machine gets 5 minutes instead of 60 s before Ray counts it as a failure and restarts it.
RAY_TEST_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
}


@pytest.fixture(scope="module")
def ray_local():
    """An embedded local Ray (2 CPUs, no dashboard, ``RAY_TEST_ENV``) shared by a test module; shut down and the
    environment restored afterwards."""
    import ray
    _shutdown_local_ray()
    saved = {k: os.environ.get(k) for k in RAY_TEST_ENV}
    os.environ.update(RAY_TEST_ENV)
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        yield ray
    finally:
        _shutdown_local_ray()
        _restore_env(saved)


def _restore_env(saved: dict) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on loopback: ``ray start --head`` plus a second ``ray start --address`` (1 CPU
    each, no dashboard), started as their own process groups and always killed at the end. Yields
    {"address": "127.0.0.1:PORT", "node_ids": [...], "tmp": folder}."""
    _shutdown_local_ray()
    tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    gcs = free_port()
    address = f"127.0.0.1:{gcs}"
    # Ray >= 2.5x clusters use token authentication; `ray start --address` (the second node) and the driver only
    # turn it on with RAY_AUTH_MODE=token, so set it for every process; the token is ~/.ray/auth_token.
    if not (Path.home() / ".ray" / "auth_token").is_file() and not os.environ.get("RAY_AUTH_TOKEN"):
        subprocess.run([_ray_bin(), "get-auth-token", "--generate"], check=True, capture_output=True)
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    saved_env = {k: os.environ.get(k) for k in RAY_TEST_ENV}
    os.environ.update(RAY_TEST_ENV)  # the driver propagates them to the Train controller
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    common = ["--num-cpus=1", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    head = worker = None
    try:
        head = _popen([_ray_bin(), "start", "--head", f"--port={gcs}", "--include-dashboard=false",
                       f"--temp-dir={tmp}", *common],
                      tmp / "head.log", env)

        def up():
            if head.poll() is not None:
                raise RuntimeError(f"ray start --head exited:\n{(tmp / 'head.log').read_text()[-3000:]}")
            return "Ray runtime started" in (tmp / "head.log").read_text(errors="replace")
        _wait(up, 90, "Ray head", [tmp / "head.log"])
        worker = _popen([_ray_bin(), "start", f"--address={address}", *common], tmp / "worker.log", env)

        import ray
        _driver_token_auth()
        ray.init(address=address, logging_level="WARNING")

        def two_nodes():
            return sum(1 for n in ray.nodes() if n.get("Alive")) >= 2
        _wait(two_nodes, 90, "second Ray node", [tmp / "head.log", tmp / "worker.log"])
        ids = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        yield {"address": address, "node_ids": ids, "tmp": tmp}
    finally:
        _shutdown_local_ray()
        _kill_group(worker)
        _kill_group(head)
        _restore_env(dict(saved_env, RAY_AUTH_MODE=saved_mode))


@pytest.fixture(scope="module")
def mlflow_server():
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts served by the server), killed at the
    end. Yields {"uri": "http://127.0.0.1:PORT", "root": folder holding mlflow.db and artifacts/}."""
    root = Path(tempfile.mkdtemp(prefix="mlflow-srv-"))
    p = free_port()
    uri = f"http://127.0.0.1:{p}"
    proc = _popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(p),
                   "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
                   "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                  root / "server.log")

    def healthy():
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{(root / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    try:
        _wait(healthy, 120, "mlflow server", [root / "server.log"])
        yield {"uri": uri, "root": root}
    finally:
        _kill_group(proc)


@pytest.fixture
def one_thread():
    """One intra-op thread: reproducible float sums, and faster for tiny tensors on a shared 2-core machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def one_thread_module():
    """``one_thread`` for a whole module (use with autouse in modules of tiny networks)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ==== synthetic faces as a uint8 batch (system tests) ==============================================================
def synthetic_face_batch(n: int = 16, size: int = 32):
    """``n`` synthetic training faces as uint8 (n, 3, size, size), the batch a system's ``prepare_batch`` takes."""
    import torch
    from pycompgen.data import load_faces
    faces = load_faces(None, "train", size, synthetic_count=n)
    return torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous()


# ==== the repository's tools/ scripts as modules (zoo export) =====================================================
def load_tool(name: str):
    """``tools/<name>.py`` imported as a module (the tools are scripts, not a package)."""
    import importlib.util
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", root / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
