"""Distributed training (Ray Train V2) tracked in MLflow: 2-worker CPU runs, fault injection, whole-run resume,
a real two-node Ray cluster and a real MLflow server on loopback. Tiny models, 32x32 synthetic faces.

Select with ``pytest -m distributed``; the loopback cluster / server tests also carry ``cluster``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"

pytestmark = pytest.mark.distributed


def tiny_cfg(out, *overrides):
    from pycompgen.config import load_config
    return load_config(str(TINY), [f"out={out}", "data.synthetic_count=64", "train.max_steps_per_epoch=2",
                                   "eval.max_images=16", *overrides])


def run_ids(uri, parent_id):
    from mlflow.tracking import MlflowClient
    cl = MlflowClient(uri)
    parent = cl.get_run(parent_id)
    children = cl.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return cl, parent, {r.data.tags["pycompgen.stage"]: r for r in children}


def logged_models(uri, experiment_id, run_id):
    # an explicit client: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI to the later tests
    from mlflow.tracking import MlflowClient
    return [m for m in MlflowClient(uri).search_logged_models(experiment_ids=[experiment_id])
            if m.source_run_id == run_id]


# -- fast checks (no Ray) -------------------------------------------------------------------------------------------
def test_fault_env_parsing():
    from pycompgen.distributed import fault_from_env
    assert fault_from_env({}) is None
    f = fault_from_env({"PYCOMPGEN_FAULT_AT_EPOCH": "2", "PYCOMPGEN_FAULT_MODE": "raise"})
    assert f["epoch"] == 2 and f["mode"] == "raise" and f["rank"] == -1
    with pytest.raises(ValueError, match="PYCOMPGEN_FAULT_MODE"):
        fault_from_env({"PYCOMPGEN_FAULT_AT_EPOCH": "1", "PYCOMPGEN_FAULT_MODE": "segfault"})


def test_shard_sampler_partitions_exactly():
    from pycompgen.distributed import ShardSampler
    shards = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


def test_tracking_uri_defaults(tmp_path, monkeypatch):
    from pycompgen.tracking import default_tracking_uri, resolve_tracking_uri, ui_command
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri(None, str(tmp_path))
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db" == default_tracking_uri(str(tmp_path))
    assert ui_command(uri).startswith(f"mlflow ui --backend-store-uri {uri}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert resolve_tracking_uri(None, str(tmp_path)) == "http://example.invalid:5000"
    assert resolve_tracking_uri("sqlite:////x/y.db", str(tmp_path)) == "sqlite:////x/y.db"


def test_unreachable_tracking_server_fails_before_training(tmp_path):
    """A tracking server that does not answer stops the run at once, before Ray or any training starts."""
    from conftest import free_port
    from pycompgen.distributed import train_distributed
    from pycompgen.tracking import TrackingUnavailableError
    cfg = tiny_cfg(tmp_path / "run")
    t0 = time.time()
    with pytest.raises(TrackingUnavailableError, match=r"not reachable.*mlflow server"):
        train_distributed(cfg, workers=2, tracking_uri=f"http://127.0.0.1:{free_port()}")
    assert time.time() - t0 < 15
    assert not (tmp_path / "run" / "ray_results").exists()


def test_ray_client_address_without_client_package_is_explained():
    pytest.importorskip("ray")
    from ray._private.utils import get_ray_client_dependency_error
    if get_ray_client_dependency_error() is None:
        pytest.skip("ray[client] is installed")
    from pycompgen.distributed import connect
    with pytest.raises(RuntimeError, match=r"ray\[client\]"):
        connect("ray://127.0.0.1:10001")


# -- Ray Train on an embedded local Ray ------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_two_worker_pipeline_lands_in_mlflow(tmp_path, ray_local):
    """step 1 -> approach 1 as two 2-worker Ray Train runs: checkpoints handed on, everything in MLflow."""
    from pycompgen.distributed import train_distributed
    from pycompgen.training import load_checkpoint
    cfg = tiny_cfg(tmp_path / "run", "train.epochs=2")
    env_uri = os.environ.get("MLFLOW_TRACKING_URI")
    res = train_distributed(cfg, workers=2, stages=["step1", "approach1"], grid_every=1)
    out = tmp_path / "run"
    s1 = load_checkpoint(out / "step1" / "best.pt", expect_model="compgen")  # weights_only=True inside
    a1 = load_checkpoint(out / "approach1" / "last.pt", expect_model="compgen")
    assert load_checkpoint(out / "step1" / "last.pt")["epoch"] == 2 and s1["stage"] == "step1"
    assert a1["stage"] == "approach1" and a1["epoch"] == 2 and "h" in a1["models"]
    for net in ("f", "g"):  # approach 1 starts from step 1's best f, g and keeps them frozen
        for k, v in s1["models"][net].items():
            assert torch.equal(v, a1["models"][net][k]), f"{net}.{k} not handed over"
    assert torch.load(out / "approach1" / "best.pt", weights_only=True)["format"] == "pycompgen/1"
    uri = res["tracking_uri"]
    assert uri == f"sqlite:///{out.resolve()}/mlflow.db"

    cl, parent, children = run_ids(uri, res["parent_run_id"])
    assert parent.info.status == "FINISHED" and sorted(children) == ["approach1", "step1"]
    assert all(c.info.status == "FINISHED" for c in children.values())
    # params: the full flattened config, on the parent and each step run
    flat = cfg.flatten()
    for run in (parent, *children.values()):
        assert set(flat) <= set(run.data.params)
    child = children["step1"]
    assert child.data.params["model.num_res"] == "1" and child.data.params["data.image_size"] == "32"
    assert children["approach1"].data.params["train.stage"] == "approach1"
    # per-epoch metrics with step = epoch
    for run in children.values():
        for key in ("train_loss", "val_ssim", "val_psnr", "images_per_s"):
            hist = cl.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in hist) == [1, 2], key
    # both ranks reported their node (rank 0 logged)
    assert len(child.data.tags["pycompgen.worker_nodes"].split(",")) == 2
    # artifacts: sample grids each epoch, evaluation on the parent, the models
    samples = [a.path for a in cl.list_artifacts(child.info.run_id, "samples")]
    assert samples == ["samples/samples_epoch001.png", "samples/samples_epoch002.png"]
    ev = {a.path for a in cl.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"evaluation/sweep.json", "evaluation/sweep.md", "evaluation/ssim_vs_psnr.png"} <= ev
    assert any(k.startswith("eval_ae_ssim") for k in parent.data.metrics)
    assert any(k.startswith("eval_approach1_ssim_") for k in parent.data.metrics)
    import mlflow.pytorch
    from pycompgen.tracking.artifacts import _tracking_uri_set
    for stage, shape in (("step1", (2, 3, 32, 32)), ("approach1", (2, 1, 32, 32))):
        models = logged_models(uri, parent.info.experiment_id, children[stage].info.run_id)
        assert len(models) == 1, stage
        with _tracking_uri_set(uri):  # models:/<id> resolves in this store
            net = mlflow.pytorch.load_model(models[0].model_uri)
        with torch.no_grad():
            y = net(torch.rand(*shape))
        assert y.shape == (2, 3, 32, 32) and 0 <= float(y.min()) and float(y.max()) <= 1
    assert (out / "mlartifacts").is_dir()  # artifacts beside the SQLite file, not ./mlruns
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_uri  # the run does not redirect later runs


@pytest.mark.timeout(300)
def test_killed_worker_resumes_from_checkpoint(tmp_path, ray_local, monkeypatch):
    """Worker rank 1 dies (os._exit) in epoch 2: Ray restarts the group from epoch 1's checkpoint and the run
    still ends after the configured 3 epochs; at most the interrupted epoch is redone."""
    from pycompgen.distributed import train_distributed
    from pycompgen.training import load_checkpoint
    marker = tmp_path / "fault.marker"
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # propagated to the Train controller
    monkeypatch.setenv("PYCOMPGEN_FAULT_AT_EPOCH", "2")
    monkeypatch.setenv("PYCOMPGEN_FAULT_RANK", "1")
    monkeypatch.setenv("PYCOMPGEN_FAULT_MODE", "exit")
    monkeypatch.setenv("PYCOMPGEN_FAULT_MARKER", str(marker))
    monkeypatch.setenv("PYCOMPGEN_FAULT_DELAY_S", "1.5")
    cfg = tiny_cfg(tmp_path / "run", "train.epochs=3")
    res = train_distributed(cfg, workers=2, max_failures=2, evaluate=False)
    assert marker.is_file(), "the fault was not injected"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    cl, parent, children = run_ids(res["tracking_uri"], res["parent_run_id"])
    child = children["step1"]
    starts = [int(m.value) for m in sorted(cl.get_metric_history(child.info.run_id, "start_epoch"),
                                           key=lambda m: m.timestamp)]
    # first attempt started at 0, the restart at the last checkpoint: epoch 1 (lost epochs <= 1)
    assert starts == [0, 1], starts
    hist = cl.get_metric_history(child.info.run_id, "val_ssim")
    assert sorted({m.step for m in hist}) == [1, 2, 3]


@pytest.mark.timeout(420)
def test_interrupted_run_resumes_with_resume_flag(tmp_path):
    """The CLI end to end in fresh processes: a run that fails for good (a worker raises, --max-failures 0) is
    continued by re-running the same command with --resume: Ray restores its checkpoint, MLflow keeps the runs."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pycompgen", "train", "--workers", "2", "--config", str(TINY), "--out", str(out),
           "data.synthetic_count=64", "train.epochs=2", "eval.max_images=16"]
    from conftest import RAY_TEST_ENV
    env = dict(os.environ, **RAY_TEST_ENV, PYCOMPGEN_FAULT_AT_EPOCH="2", PYCOMPGEN_FAULT_MODE="raise",
               PYCOMPGEN_FAULT_RANK="0", PYCOMPGEN_FAULT_MARKER=str(tmp_path / "fault.marker"),
               PYCOMPGEN_FAULT_DELAY_S="1.5", PYTHONPATH=str(ROOT))
    assert env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"  # the fault lands after the epoch-1 report counted
    env.pop("MLFLOW_TRACKING_URI", None)
    r1 = subprocess.run(cmd + ["--max-failures", "0"], env=env, capture_output=True, text=True, timeout=200)
    assert r1.returncode != 0, r1.stdout[-2000:] + r1.stderr[-2000:]
    assert "--resume" in r1.stderr, r1.stderr[-2000:]
    assert not (out / "last.pt").exists()
    runs = (out / "mlflow_runs.json").read_text()
    r2 = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=200)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert "mlflow ui --backend-store-uri" in r2.stdout
    from pycompgen.training import load_checkpoint
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert (out / "mlflow_runs.json").read_text() == runs  # same parent / stage runs
    import json
    ids = json.loads(runs)
    cl, parent, children = run_ids(ids["tracking_uri"], ids["parent"])
    child = children["step1"]
    assert parent.info.status == child.info.status == "FINISHED"
    starts = [int(m.value) for m in sorted(cl.get_metric_history(child.info.run_id, "start_epoch"),
                                           key=lambda m: m.timestamp)]
    assert starts == [0, 1]  # the resumed attempt picked up after epoch 1


# -- real multi-node Ray cluster + real MLflow server on loopback ----------------------------------------------------
@pytest.mark.cluster
@pytest.mark.timeout(420)
def test_two_node_cluster_with_tracking_server(tmp_path, ray_cluster, mlflow_server):
    """Workers land on both nodes of a `ray start` cluster; rank 0 logs to a real `mlflow server` whose artifacts
    are served (and stored) by the server."""
    from pycompgen.distributed import train_distributed
    cfg = tiny_cfg(tmp_path / "run", "train.epochs=1")
    res = train_distributed(cfg, workers=2, address=ray_cluster["address"], tracking_uri=mlflow_server["uri"],
                            storage_path=str(tmp_path / "shared"), grid_every=1)
    metrics_nodes = res["stages"]["step1"]
    cl, parent, children = run_ids(mlflow_server["uri"], res["parent_run_id"])
    child = children["step1"]
    nodes = child.data.tags["pycompgen.worker_nodes"].split(",")
    assert len(set(nodes)) == 2 and set(nodes) <= set(ray_cluster["node_ids"]), (nodes, ray_cluster["node_ids"])
    assert sorted(m.step for m in cl.get_metric_history(child.info.run_id, "val_ssim")) == [1]
    assert [a.path for a in cl.list_artifacts(child.info.run_id, "samples")] == ["samples/samples_epoch001.png"]
    assert {"evaluation/sweep.json"} <= {a.path for a in cl.list_artifacts(parent.info.run_id, "evaluation")}
    assert logged_models(mlflow_server["uri"], parent.info.experiment_id, child.info.run_id)
    stored = list((mlflow_server["root"] / "artifacts").rglob("samples_epoch001.png"))
    assert stored, "artifacts were not stored by the server"
    assert metrics_nodes["last"].endswith("last.pt")


@pytest.mark.timeout(600)
def test_gan_system_trains_on_two_workers(tmp_path, ray_local):
    """A multi-optimiser system (the DCGAN compressor) through the same Ray Train / MLflow path as Compgen."""
    from pycompgen.distributed import train_distributed
    from pycompgen.training import load_checkpoint
    cfg = tiny_cfg(tmp_path / "run", "model.name=dcgan", "dcgan.channels=8", "dcgan.latent_channels=4",
                   "dcgan.disc_channels=8", "train.epochs=2")
    res = train_distributed(cfg, workers=2)
    ck = load_checkpoint(tmp_path / "run" / "last.pt", expect_model="dcgan")
    assert ck["stage"] == "train" and ck["epoch"] == 2 and set(ck["models"]) == {"f", "g", "eb", "D"}
    assert set(ck["optimizers"]) == {"G", "D"} and ck["optimizers"]["D"]["state"]
    cl, parent, children = run_ids(res["tracking_uri"], res["parent_run_id"])
    assert children["train"].info.status == "FINISHED"
    assert children["train"].data.params["dcgan.recon_weight"] == "10.0"
    assert [m.step for m in cl.get_metric_history(children["train"].info.run_id, "val_ssim")] == [1, 2]
