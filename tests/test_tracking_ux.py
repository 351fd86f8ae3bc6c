"""What a user sees of a run: the MLflow experiments open on their runs table (experiment kind tag, the printed
runs-page URL) and the console of a Ray Train run (one line per epoch, one line per lost worker)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder.resolve()}/mlflow.db"


# -- experiment kind -----------------------------------------------------------------------------------------------
def test_new_experiments_are_model_training_experiments(tmp_path):
    from pycompgen.tracking import PipelineTracker
    from pycompgen.tune.tracking import experiment_id
    uri = sqlite_uri(tmp_path)
    tracker = PipelineTracker(uri, str(tmp_path / "run"))
    cl = client(uri)
    assert cl.get_experiment(tracker.experiment_id).tags.get(KIND_TAG) == KIND
    tune_id = experiment_id(cl, "compgen-tune", uri)
    exp = cl.get_experiment(tune_id)
    assert exp.name == "compgen-tune" and exp.tags.get(KIND_TAG) == KIND
    assert exp.artifact_location == (tmp_path / "mlartifacts").resolve().as_uri()  # beside the store, not ./mlruns


def test_existing_experiments_get_the_kind_tag_once(tmp_path):
    from pycompgen.tracking import EXPERIMENT, PipelineTracker
    from pycompgen.tune.tracking import experiment_id
    uri = sqlite_uri(tmp_path)
    cl = client(uri)
    old = cl.create_experiment(EXPERIMENT)  # made by an earlier version: no kind
    assert KIND_TAG not in cl.get_experiment(old).tags
    tracker = PipelineTracker(uri, str(tmp_path / "run"))
    assert tracker.experiment_id == old and cl.get_experiment(old).tags[KIND_TAG] == KIND
    # a deleted search experiment is restored and tagged; a kind chosen in the UI is kept
    gone = cl.create_experiment("compgen-tune")
    cl.delete_experiment(gone)
    assert experiment_id(cl, "compgen-tune", uri) == gone
    exp = cl.get_experiment(gone)
    assert exp.lifecycle_stage == "active" and exp.tags[KIND_TAG] == KIND
    chosen = cl.create_experiment("mine", tags={KIND_TAG: "genai_development"})
    assert experiment_id(cl, "mine", uri) == chosen
    assert cl.get_experiment(chosen).tags[KIND_TAG] == "genai_development"


# -- runs page URL -------------------------------------------------------------------------------------------------
def test_runs_page_url(tmp_path):
    from pycompgen.tracking import experiment_url, ui_command, ui_lines
    uri = sqlite_uri(tmp_path)
    page = "/#/experiments/7/runs?workflowType=machine_learning"
    assert experiment_url(uri, "7") == "http://127.0.0.1:5000" + page  # `mlflow ui` on its default address
    assert experiment_url("http://head:5000/", 7) == "http://head:5000" + page
    assert experiment_url("https://mlflow.example.org/team", "7") == "https://mlflow.example.org/team" + page
    assert experiment_url("databricks", "7") is None
    assert ui_lines(uri, "7") == [f"view the runs with: {ui_command(uri)}", f"  then open http://127.0.0.1:5000{page}"]
    assert ui_lines("http://head:5000", "7") == [f"MLflow runs: http://head:5000{page}"]


def _mlflow_ui_bundle() -> str:
    import mlflow
    js = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    files = sorted(js.glob("*.js"))
    if not files:
        pytest.skip("this MLflow install has no UI bundle")
    return "\n".join(f.read_text(errors="replace") for f in files)


def test_installed_mlflow_ui_has_the_route_and_values_we_use():
    """The URL and the tag are MLflow UI conventions, not API: check them against the installed UI bundle."""
    js = _mlflow_ui_bundle()
    assert '"/experiments/:experimentId/runs"' in js  # route of an experiment's runs table
    assert "/#/experiments/" in js  # hash routing
    assert 'get("workflowType")' in js and 'MACHINE_LEARNING="machine_learning"' in js  # the URL's query value
    assert '"mlflow.experimentKind"' in js and f'CUSTOM_MODEL_DEVELOPMENT="{KIND}"' in js


# -- console lines -------------------------------------------------------------------------------------------------
class ListQueue:
    def __init__(self):
        self.items = []

    def put(self, item, block=True):
        self.items.append(item)


def _health_check_failure(rank):
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
    return WorkerHealthCheckFailedError("A worker health check failed.", RuntimeError(f"actor of rank {rank} died"))


def _user_error(msg):
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    return UserExceptionWithTraceback(RuntimeError(msg),
                                      f"Traceback (most recent call last):\n  ...\nRuntimeError: {msg}")


def test_epoch_and_failure_lines():
    from pycompgen.tracking.console import ConsoleProgress, describe_failure, format_epoch
    m = {"epoch": 2, "epochs": 3, "train_loss": 0.46604, "val_ssim": 0.13701, "val_psnr": 14.7512,
         "images_per_s": 596.4, "lr": 1e-3, "worker_nodes": "a,b"}
    assert format_epoch("step1", m) == \
        "step1 epoch 2/3: train loss 0.4660, val SSIM 0.1370, val PSNR 14.75 dB, 596 img/s"
    assert format_epoch("approach1", {"epoch": 1, "train_loss": float("nan")}) == "approach1 epoch 1"

    q = ListQueue()
    cb = ConsoleProgress(q, "step1", max_failures=1)
    cb.after_report(None, [dict(m, epoch=1), dict(m, epoch=1, val_ssim=0.9)], checkpoint=object())
    cb.after_report(None, [dict(m, epoch=2)], checkpoint=None)  # no checkpoint: restarts stay at epoch 1
    peer_lost = _user_error("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:10158")
    cb.after_exception(None, {0: peer_lost, 1: _health_check_failure(1)})
    cb.after_exception(None, {0: peer_lost, 1: _health_check_failure(1)})
    kinds = [k for k, _, _ in q.items]
    lines = [line for _, line, _ in q.items]
    assert kinds == ["epoch", "epoch", "failure", "failure"]
    assert lines[0] == "step1 epoch 1/3: train loss 0.4660, val SSIM 0.1370, val PSNR 14.75 dB, 596 img/s"
    assert lines[2] == ("step1: worker rank 1 lost (process died or stopped answering); restarting from the "
                        "checkpoint of epoch 1 (restart 1 of 1)")
    assert lines[3] == ("step1: worker rank 1 lost (process died or stopped answering); no restarts left "
                        "(--max-failures 1)")
    assert "Connection closed by peer" in q.items[2][2] and "actor of rank 1 died" in q.items[2][2]
    # a worker that raised is named, not the peer whose collective op failed because of it
    summary, _ = describe_failure({0: peer_lost, 1: _user_error("injected fault: worker rank 1 in epoch 2")})
    assert summary == "worker rank 1 failed (RuntimeError: injected fault: worker rank 1 in epoch 2)"
    unlimited = ConsoleProgress(ListQueue(), "step1", max_failures=-1)
    unlimited.after_exception(None, {0: _user_error("boom")})
    assert unlimited.queue.items[0][1] == ("step1: worker rank 0 failed (RuntimeError: boom); restarting from the "
                                           "latest checkpoint (restart 1)")


# -- a real 2-worker run on an embedded Ray, as a user starts it ------------------------------------------------------
EPOCH_LINE = re.compile(r"^\[compgen\] step1 epoch (\d)/3: train loss [\d.]+, val SSIM ([\d.]+), "
                        r"val PSNR [\d.]+ dB, \d+ img/s$")


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_console_of_a_fault_drill(tmp_path):
    """`pycompgen train --workers 2` with a worker killed in epoch 2: the console holds one line per epoch and one
    line for the lost worker; Ray's reports and worker-death text stay out of it (the failure's full text is in
    OUT/ray.log); it ends with the runs page of the (model-training) experiment."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
               RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.5", RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="300",
               PYCOMPGEN_FAULT_AT_EPOCH="2", PYCOMPGEN_FAULT_MARKER=str(tmp_path / "fault.marker"),
               PYCOMPGEN_FAULT_DELAY_S="1.5")
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([sys.executable, "-m", "pycompgen", "train", "--workers", "2", "--config", str(TINY),
                        "--out", str(out), "train.epochs=3", "eval.max_images=16"],
                       env=env, capture_output=True, text=True, timeout=280)
    text = r.stdout + r.stderr
    (tmp_path / "console.log").write_text(text)  # kept for failure analysis
    assert r.returncode == 0, text[-4000:]
    assert (tmp_path / "fault.marker").is_file(), "the fault was not injected"
    lines = r.stdout.splitlines()

    epochs = [EPOCH_LINE.match(ln) for ln in lines]
    epochs = [mt for mt in epochs if mt]
    assert [int(mt.group(1)) for mt in epochs] == [1, 2, 3], text[-4000:]
    lost = [ln for ln in lines if "lost" in ln]
    assert len(lost) == 1 and lost[0].startswith("[compgen] step1: worker rank 1 lost"), lost
    assert "restarting from the checkpoint of epoch 1 (restart 1 of 3)" in lost[0]
    assert "WorkerHealthCheckFailedError" in (out / "ray.log").read_text()
    for noise in ("Reporting training result", "pid=", "A worker died", "Traceback"):
        assert noise not in text, noise
    others = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("[compgen]")]
    assert len(others) <= 4, others  # Ray's token-auth notice, MLflow creating its tables

    runs = json.loads((out / "mlflow_runs.json").read_text())
    cl = client(runs["tracking_uri"])
    assert cl.get_experiment(runs["experiment_id"]).tags.get(KIND_TAG) == KIND
    url = f"http://127.0.0.1:5000/#/experiments/{runs['experiment_id']}/runs?workflowType=machine_learning"
    assert lines[-1] == f"[compgen]   then open {url}"
    assert lines[-2].startswith("[compgen] view the runs with: mlflow ui --backend-store-uri ")
    # the printed values are the run's (rank 0 logged the same metrics to MLflow)
    logged = {m.step: m.value for m in cl.get_metric_history(runs["stages"]["step1"], "val_ssim")}
    assert [f"{logged[k]:.4f}" for k in (1, 2, 3)] == [mt.group(2) for mt in epochs]
