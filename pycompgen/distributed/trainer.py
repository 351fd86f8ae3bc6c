"""Driver side of distributed training: Ray Train's ``TorchTrainer`` around the plain ``fit`` (Ray Train V2 API).

- ``make_trainer(cfg, num_workers=..., ...)`` -> a TorchTrainer for one stage (also used by Ray Tune trials).
- ``train_distributed(cfg, args)``: ``pycompgen train --workers N``: connects to Ray (embedded local Ray, or
  ``--address``), opens the MLflow runs (parent + one nested run per stage), runs one TorchTrainer per stage
  (step 1 -> approach 1 -> 2 -> 3 with ``--stage pipeline``, handing checkpoints on), copies each stage's final
  ``last.pt`` / ``best.pt`` into the run folder, logs the model and the evaluation sweep, and prints where
  everything is.

Fault tolerance: ``FailureConfig(max_failures)`` restarts the worker group from the latest reported checkpoint
when a worker dies; ``--resume`` re-runs the same Ray run names under the same storage path, which Ray Train V2
restores from its checkpoint-manager snapshot (finished stages are skipped).
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

from .worker import BEST_NAME, CHECKPOINT_NAME, train_loop_per_worker

FAULT_ENV = ("PYCOMPGEN_FAULT_AT_EPOCH", "PYCOMPGEN_FAULT_RANK", "PYCOMPGEN_FAULT_MODE", "PYCOMPGEN_FAULT_MARKER",
             "PYCOMPGEN_FAULT_DELAY_S")
DEFAULT_MAX_FAILURES = 3
RAYLET_WORKER_DIED = r"A worker died or was killed while executing a task by an unexpected system error"


def _log(msg: str) -> None:
    print(f"[compgen] {msg}", flush=True)


def fault_from_env(env=None) -> Optional[dict]:
    """Fault-injection settings from PYCOMPGEN_FAULT_AT_EPOCH (1-based epoch), _RANK (default: last worker),
    _MODE (exit | raise), _MARKER (file making it fire once; default: none -> every attempt) and _DELAY_S."""
    env = os.environ if env is None else env
    epoch = env.get("PYCOMPGEN_FAULT_AT_EPOCH")
    if not epoch:
        return None
    mode = env.get("PYCOMPGEN_FAULT_MODE", "exit")
    if mode not in ("exit", "raise"):
        raise ValueError(f"PYCOMPGEN_FAULT_MODE must be 'exit' or 'raise', got {mode!r}")
    return {"epoch": int(epoch), "rank": int(env.get("PYCOMPGEN_FAULT_RANK", "-1")), "mode": mode,
            "marker": env.get("PYCOMPGEN_FAULT_MARKER") or None,
            "delay_s": float(env.get("PYCOMPGEN_FAULT_DELAY_S", "2.5"))}


def absolute_paths(cfg):
    """Ray Train workers run in their own working directory: make the config's paths absolute."""
    cfg = cfg.copy()
    if cfg.data.path not in (None, "synthetic"):
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    if cfg.data.cache_dir:
        cfg.data.cache_dir = str(Path(cfg.data.cache_dir).expanduser().resolve())
    if cfg.train.init and not cfg.train.init.startswith("zoo:"):
        cfg.train.init = str(Path(cfg.train.init).expanduser().resolve())
    cfg.out = str(Path(cfg.out).expanduser().resolve())
    return cfg


def make_trainer(cfg, *, num_workers: Optional[int] = None, workers: Optional[int] = None, use_gpu: bool = False,
                 resources_per_worker: Optional[dict] = None, storage_path: Optional[str] = None,
                 name: Optional[str] = None, init: Optional[dict] = None, init_checkpoint: Optional[str] = None,
                 callbacks: Optional[list] = None, max_failures: int = 0, tracking: Optional[dict] = None,
                 fault: Optional[dict] = None, num_to_keep: int = 2, threads: Optional[int] = None,
                 log_level: str = "WARNING"):
    """A Ray Train ``TorchTrainer`` running ``cfg.train.stage`` on ``num_workers`` workers (alias ``workers``).

    ``init``: previous-step weights {net: state_dict}; ``init_checkpoint``: a checkpoint file to take them from
    (must be readable by every worker). ``tracking``: {"uri", "run_id", "grid_every"} -> rank 0 logs each epoch to
    that MLflow run. ``callbacks``: Ray Train ``UserCallback``s (e.g. ``ray.tune.integration.ray_train.
    TuneReportCallback()`` inside a Tune trial). Each reported checkpoint directory holds ``checkpoint.pt`` and
    ``best.pt`` (pycompgen payloads). ``storage_path`` must be shared storage (NFS, s3://...) on multi-node
    clusters. ``log_level``: console level of Ray Train's own ``ray.train`` logs in the controller and the workers
    (INFO prints every worker's full report each epoch; Ray's session log files keep every level).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    n = num_workers if num_workers is not None else (workers if workers is not None else 1)
    if n < 1:
        raise ValueError(f"the number of Ray Train workers must be >= 1, got {n}")
    cfg = absolute_paths(cfg).validate()
    res = dict(resources_per_worker or {"CPU": 1})
    if fault is not None and int(fault.get("rank", -1)) < 0:
        fault = dict(fault, rank=n - 1)
    loop_config = {
        "config": cfg.to_dict(),
        "init": init,
        "init_checkpoint": str(Path(init_checkpoint).resolve()) if init_checkpoint else None,
        "tracking": tracking,
        "fault": fault,
        "threads": threads or max(1, int(math.floor(float(res.get("CPU", 1))))),
    }
    storage = str(Path(storage_path).expanduser().resolve()) if storage_path and "://" not in storage_path \
        else storage_path
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=n, use_gpu=use_gpu, resources_per_worker=res),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, callbacks=list(callbacks or []),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
            logging_config=ray.train.LoggingConfig(log_level=log_level)),
    )


# -- Ray connection ----------------------------------------------------------------------------------------------
def _token_auth_like_ray_start() -> None:
    """`ray start` (Ray >= 2.5x) turns token authentication on when RAY_AUTH_MODE is unset and a token exists
    (~/.ray/auth_token), but a driver joining with ray.init(address) does not: do what `ray start` does."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available
    except ImportError:  # other Ray versions
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None,
            log_to_driver: bool = True) -> dict:
    """Join the cluster at ``address`` ("auto", "host:6379", "ray://host:10001"), or start an embedded local Ray
    without dashboard. ``log_to_driver=False`` keeps the output of workers and actors (Ray Train's controller and
    workers included) in Ray's session logs instead of forwarding it to this console. Returns {"address",
    "nodes": alive node count, "local": bool}. An already initialised Ray is used as it is."""
    import logging
    import ray
    if ray.is_initialized():
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"address": address or "existing", "nodes": len(nodes), "local": address is None}
    if address:
        if address.startswith("ray://"):
            from ray._private.utils import get_ray_client_dependency_error
            err = get_ray_client_dependency_error()
            if err is not None:
                raise RuntimeError(f"--address {address} uses Ray Client, which needs `pip install "
                                   f"'ray[client]=={ray.__version__}'` ({err}); or run on a cluster node with "
                                   f"--address auto / HOST:6379")
        _token_auth_like_ray_start()
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_driver)
        except ConnectionError as e:
            raise RuntimeError(f"cannot join the Ray cluster at {address!r} ({e}); start it with `ray start --head` "
                               f"or check --address") from None
    else:
        kw = {"num_gpus": num_gpus} if num_gpus is not None else {}
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=log_to_driver, **kw)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"address": address or "local", "nodes": len(nodes), "local": address is None}


def _is_local_path(p: str) -> bool:
    return "://" not in p or p.startswith("file://")


def ray_log_dir() -> Optional[str]:
    """This node's Ray session log folder (worker-*.out/err, train/ for Ray Train), or None."""
    try:
        import ray
        node = ray._private.worker._global_node  # where Ray Train's own log files live, too
        return os.path.join(node.get_session_dir_path(), "logs") if node is not None else None
    except Exception:
        return None


def _failure_summary(e: Exception, log_file: Path) -> str:
    """One line for a failed Ray Train run; the full error is appended to ``log_file`` (worker-group errors are
    already there: ``ConsoleProgress`` reported them)."""
    from pycompgen.tracking.console import describe_failure
    failures = getattr(e, "worker_failures", None)
    if failures:
        return f"{describe_failure(failures)[0]} [details: {log_file}]"
    lines = str(e).strip().splitlines()
    summary, detail = (lines[-1] if lines else type(e).__name__), str(e)
    try:
        with open(log_file, "a") as fh:
            fh.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {summary}\n{detail}\n\n")
        summary += f" [details: {log_file}]"
    except OSError:
        pass
    return summary


# -- helpers ------------------------------------------------------------------------------------------------------
def _copy_checkpoint(result, dest: Path) -> dict:
    """Copy the last Ray checkpoint's checkpoint.pt / best.pt to ``dest``/last.pt, best.pt (atomically)."""
    from pycompgen.training import load_checkpoint, save_checkpoint
    ckpt = result.checkpoint
    if ckpt is None:
        raise RuntimeError(f"the Ray Train run {getattr(result, 'path', '?')} reported no checkpoint")
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    with ckpt.as_directory() as d:
        for src, name in ((CHECKPOINT_NAME, "last.pt"), (BEST_NAME, "best.pt")):
            p = Path(d) / src
            if p.is_file():
                save_checkpoint(dest / name, load_checkpoint(p))
                out[name] = str(dest / name)
    return out


def _handover(cfg, stage: str, ckpts: dict) -> Optional[dict]:
    """Previous-step weights for ``stage``: the pipeline's own hand-over rules (pycompgen.training.pipeline)."""
    from pycompgen.training import pipeline
    return pipeline._handover(cfg, stage, ckpts)


def _set_aside(run_dir: Path) -> None:
    """Without --resume an earlier Ray run of the same name would be restored by Ray: move it aside."""
    if run_dir.exists():
        dest = run_dir.with_name(f"{run_dir.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(dest)
        _log(f"moved the earlier Ray run {run_dir} to {dest} (pass --resume to continue it instead)")


def _warn(msg: str) -> None:
    bar = "!" * 78
    print(f"{bar}\nwarning: {msg}\n{bar}", file=sys.stderr, flush=True)


# -- entry point -------------------------------------------------------------------------------------------------
def train_distributed(cfg, args=None, **kw) -> dict:
    """``pycompgen train --workers N [--gpu] [--address A] [--storage-path P] [--tracking-uri U] [--resume]
    [--max-failures K] [--stage S|pipeline]``. Keyword arguments override ``args`` attributes (for Python use;
    also ``stages=[...]``: a prefix of the pipeline, ``grid_every``, ``evaluate``, ``cpus_per_worker``).
    Returns {"stages": {stage: {"metrics", "last", "best", "run_id", "ray_path"}}, "parent_run_id",
    "tracking_uri", "storage_path", "evaluation", "experiment_id"}."""
    # Ray's driver also prints the raylet's "A worker died ..." notice for a lost worker; RunConsole prints one line
    # instead (full text in OUT/ray.log). Ray reads this documented filter when it is first imported.
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", RAYLET_WORKER_DIED)
    from pycompgen.tracking import PipelineTracker, is_local_store, preflight, resolve_tracking_uri, ui_lines
    from pycompgen.tracking.console import RunConsole
    from pycompgen.tracking.artifacts import evaluation_metrics, log_model, run_evaluation
    from pycompgen.training import load_checkpoint, pipeline_stages, stage_checkpoint
    from pycompgen.training.pipeline import init_weights, stage_done
    import ray.train

    def opt(name, default=None):
        if name in kw:
            return kw[name]
        v = getattr(args, name, None) if args is not None else None
        return default if v is None else v

    workers = int(opt("workers", 1))
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    use_gpu = bool(opt("gpu", False))
    address = opt("address")
    resume = bool(opt("resume", False))
    max_failures = int(opt("max_failures", DEFAULT_MAX_FAILURES))
    stage_arg = opt("stage")
    order = pipeline_stages(cfg)
    stages = list(opt("stages", None) or (order if stage_arg == "pipeline" else [cfg.train.stage]))
    unknown = [s for s in stages if s not in order]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} (expected some of {', '.join(order)})")
    pipeline_mode = stage_arg == "pipeline" or opt("stages", None) is not None
    grid_every = int(opt("grid_every", 5))
    evaluate = bool(opt("evaluate", True))
    cpus_per_worker = float(opt("cpus_per_worker", 1))

    cfg = absolute_paths(cfg).validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    storage_path = opt("storage_path") or str(out / "ray_results")
    if _is_local_path(storage_path):
        storage_path = str(Path(storage_path.replace("file://", "")).expanduser().resolve())
    uri = resolve_tracking_uri(opt("tracking_uri"), str(out))
    preflight(uri)  # before Ray starts and before any training
    fault = fault_from_env()

    # Worker and Ray output stays in Ray's session logs; this console gets one line per epoch (RunConsole).
    info = connect(address, num_cpus=opt("num_cpus") or max(os.cpu_count() or 1,
                                                              int(math.ceil(workers * cpus_per_worker))),
                   log_to_driver=False)
    if info["nodes"] > 1 or (address or "").startswith("ray://"):
        if is_local_store(uri):
            _warn(f"the MLflow store {uri} is a local file but the Ray cluster has {info['nodes']} nodes: "
                  f"rank 0 may run on another node and write elsewhere. Start `mlflow server --host 0.0.0.0 "
                  f"--port 5000 --backend-store-uri sqlite:///mlflow.db --serve-artifacts` and pass "
                  f"--tracking-uri http://<host>:5000 (a shared filesystem path also works).")
        if _is_local_path(storage_path):
            _warn(f"--storage-path {storage_path} is a local folder on a {info['nodes']}-node cluster: it must be "
                  f"shared by all nodes (NFS) or an object store URI (s3://..., gs://...).")
    _log(f"Ray: {info['address']} ({info['nodes']} node(s)); {workers} worker(s), "
         f"{'GPU' if use_gpu else 'CPU'}; checkpoints under {storage_path}")
    ray_log = out / "ray.log"  # full text of worker failures; everything else: Ray's session logs
    _log(f"Ray logs: {ray_log_dir() or 'the Ray session folder (/tmp/ray/session_latest/logs)'}; "
         f"worker failures: {ray_log}")

    run_name = out.name
    tracker = PipelineTracker(uri, str(out), run_name=run_name, resume=resume, check=False,
                              tags={"pycompgen.workers": str(workers), "pycompgen.stages": ",".join(stages)})
    tracker.log_config(cfg)
    tracker.set_tags(tracker.parent_id, {"pycompgen.storage_path": storage_path, "pycompgen.ray": info["address"]})
    _log(f"MLflow: parent run {tracker.parent_id} in {uri}")

    results: dict = {}
    ckpts: dict = {}
    status = "FAILED"
    current: Optional[str] = None
    console = None
    try:
        console = RunConsole(ray_log).__enter__()
        for stage in stages:
            c = cfg.copy()
            c.train.stage = stage
            if pipeline_mode:
                c.train.init = None
                c.out = str(out / stage)
            c.validate()
            stage_out = Path(c.out)
            ray_name = f"{run_name}-{stage}"
            if resume and stage_done(stage_out / "last.pt", c):
                ckpts[stage] = str(stage_checkpoint(stage_out))
                results[stage] = {"metrics": dict(load_checkpoint(ckpts[stage]).get("metrics", {})),
                                  "last": str(stage_out / "last.pt"), "best": ckpts[stage], "skipped": True}
                _log(f"{stage}: already finished in {stage_out}, skipping")
                continue
            if not resume and _is_local_path(storage_path):
                _set_aside(Path(storage_path) / ray_name)
            if pipeline_mode:
                init = _handover(cfg, stage, ckpts)
            else:
                init = init_weights(c.train.init, c) if c.train.init else None
            run_id = tracker.stage_run(stage, c, tags={"pycompgen.ray_run": f"{storage_path}/{ray_name}"})
            current = run_id
            _log(f"{stage}: {c.epochs_for()} epoch(s) on {workers} worker(s); MLflow run {run_id}; "
                 f"Ray run {storage_path}/{ray_name}")
            trainer = make_trainer(c, num_workers=workers, use_gpu=use_gpu,
                                   resources_per_worker={"CPU": cpus_per_worker}, storage_path=storage_path,
                                   name=ray_name, init=init, max_failures=max_failures, fault=fault,
                                   tracking={"uri": uri, "run_id": run_id, "grid_every": grid_every},
                                   callbacks=[console.callback(stage, max_failures)])
            t0 = time.perf_counter()
            try:
                result = trainer.fit()
            except ray.train.TrainingFailedError as e:
                console.close()  # its lines first
                raise RuntimeError(
                    f"{stage}: the Ray Train run failed ({max_failures} restart(s) allowed, see --max-failures): "
                    f"{_failure_summary(e, ray_log)}. Re-run the same command with --resume to continue from the "
                    f"latest checkpoint in {storage_path}/{ray_name}") from e
            secs = time.perf_counter() - t0
            if getattr(result, "error", None) is not None:
                raise RuntimeError(f"{stage}: Ray Train run failed: {result.error}")
            files = _copy_checkpoint(result, stage_out)
            final = load_checkpoint(files["last.pt"], expect_model=c.model.name)
            m = dict(final.get("metrics", {}))
            starts = [int(x.value) for x in sorted(tracker.cl.get_metric_history(run_id, "start_epoch"),
                                                    key=lambda x: x.timestamp)]
            tracker.set_tags(run_id, {"pycompgen.epochs_completed": final["epoch"],
                                      "pycompgen.start_epochs": starts,
                                      "pycompgen.worker_nodes": (result.metrics or {}).get("worker_nodes", "")})
            tracker.log_metrics(run_id, {"wall_time_s": secs}, step=int(final["epoch"]))
            try:
                info_model = log_model(uri, run_id, final)
                tracker.set_tags(run_id, {"pycompgen.model_uri": info_model.model_uri})
            except Exception as e:
                _warn(f"{stage}: mlflow.pytorch.log_model failed ({type(e).__name__}: {e})")
            tracker.end(run_id, "FINISHED")
            current = None
            ckpts[stage] = files.get("best.pt", files["last.pt"])
            results[stage] = {"metrics": m, "last": files["last.pt"], "best": files.get("best.pt"),
                              "run_id": run_id, "ray_path": getattr(result, "path", None), "seconds": secs}
            val = f"val SSIM {m['val_ssim']:.4f}, val PSNR {m['val_psnr']:.2f} dB, " if "val_ssim" in m else ""
            _log(f"{stage}: done in {secs:.1f} s: {final['epoch']} epochs, {val}"
                 f"checkpoints {stage_out}/last.pt, best.pt")

        evaluation = None
        from pycompgen.systems import get_system
        if evaluate and ckpts and get_system(cfg.model.name).psnr_sweep:
            labels = {s: p for s, p in ckpts.items()}
            eval_dir = out / "eval"
            try:
                evaluation = run_evaluation(cfg, labels, eval_dir)
            except Exception as e:
                _warn(f"evaluation failed ({type(e).__name__}: {e}); the checkpoints are kept")
            if evaluation is not None:
                tracker.log_artifacts(tracker.parent_id, eval_dir, "evaluation")
                tracker.log_metrics(tracker.parent_id, evaluation_metrics(evaluation))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        _log(f"interrupted: re-run the same command with --resume to continue from {storage_path}")
        raise
    finally:
        if console is not None:
            console.close()
        try:
            if current is not None:
                tracker.end(current, status)
            tracker.end_all(status)
        except Exception as e:  # keep the original error
            print(f"warning: could not close the MLflow runs ({e})", file=sys.stderr)

    _log(f"checkpoints: {out}{'/<stage>' if pipeline_mode else ''}/last.pt, best.pt "
         f"(Ray checkpoints: {storage_path})")
    _log(f"MLflow: experiment {tracker.experiment_id}, parent run {tracker.parent_id} ({uri})")
    for line in ui_lines(uri, tracker.experiment_id):
        _log(line)
    return {"stages": results, "parent_run_id": tracker.parent_id, "tracking_uri": uri,
            "storage_path": storage_path, "evaluation": evaluation, "experiment_id": tracker.experiment_id}


__all__ = ["make_trainer", "train_distributed", "connect", "fault_from_env", "absolute_paths",
           "train_loop_per_worker", "DEFAULT_MAX_FAILURES"]
