"""MLflow runs of a training pipeline: one parent run, one nested child run per step (``mlflow.parentRunId``).

Everything goes through an explicit ``MlflowClient`` bound to one tracking URI (no global active run), so the
driver, a Ray Train worker (rank 0) and a Ray Tune trial can log to the same runs by id.

- ``PipelineTracker`` (driver): creates / reopens the runs, logs the flattened config as params, ends runs.
- ``EpochLogger`` (rank 0 of the training workers): per-epoch metrics with ``step=epoch`` and sample grids.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Optional

from .store import artifact_location, preflight

EXPERIMENT = "pycompgen"
RUNS_FILE = "mlflow_runs.json"
PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "pycompgen.stage"
KIND_TAG = "pycompgen.kind"
# The experiment kind MLflow 3's UI reads (and writes from its kind selector): "custom_model_development" is shown
# as "Machine learning" (runs, metrics, models) rather than "GenAI apps & agents" (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Per-epoch metrics logged to MLflow (keys of fit()'s metrics, plus throughput of all workers).
EPOCH_METRICS = ("train_loss", "val_ssim", "val_psnr", "val_loss", "best_val_ssim", "trainsub_ssim", "gap_ssim",
                 "images_per_s",
                 "images_per_s_worker", "epoch_time_s", "train_time_s")


def client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def param_value(v) -> str:
    """MLflow params are strings (at most 6000 characters)."""
    s = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


def log_params(cl, run_id: str, params: dict) -> None:
    """Log ``params`` in batches (MLflow takes at most 100 params per call). Re-logging the same value is a
    no-op; a changed value (resume with another config) is recorded as a tag instead of failing."""
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException
    existing = cl.get_run(run_id).data.params
    items = [(k, param_value(v)) for k, v in sorted(params.items())]
    new = [Param(k, v) for k, v in items if k not in existing]
    changed = [RunTag(f"param_changed.{k}", v) for k, v in items if k in existing and existing[k] != v]
    for i in range(0, len(new), 100):
        try:
            cl.log_batch(run_id, params=new[i:i + 100])
        except MlflowException as e:  # concurrent writer logged the same key
            if "Changing param values is not allowed" not in str(e):
                raise
    if changed:
        cl.log_batch(run_id, tags=changed)


def ensure_experiment(cl, name: str, uri: str) -> str:
    """Id of experiment ``name`` (created with artifacts beside a SQLite store, restored if deleted), marked as a
    model-training experiment (``mlflow.experimentKind``) unless it already carries a kind."""
    exp = cl.get_experiment_by_name(name)
    if exp is None:
        try:
            return cl.create_experiment(name, artifact_location=artifact_location(uri),
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:  # created concurrently by another process
            exp = cl.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        cl.restore_experiment(exp.experiment_id)
    if not exp.tags.get(EXPERIMENT_KIND_TAG):
        cl.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


class PipelineTracker:
    """Parent run for a pipeline (or a single stage) and one nested child run per stage.

    With ``resume=True`` the runs recorded in ``<out>/mlflow_runs.json`` (same tracking URI) are reopened, so a
    resumed pipeline keeps logging into the runs it started.
    """

    def __init__(self, uri: str, out: str, *, experiment: str = EXPERIMENT, run_name: Optional[str] = None,
                 resume: bool = False, tags: Optional[dict] = None, check: bool = True):
        self.uri = preflight(uri) if check else uri
        self.out = Path(out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.cl = client(self.uri)
        self.experiment_id = ensure_experiment(self.cl, experiment, self.uri)
        self.runs_file = self.out / RUNS_FILE
        saved = self._load() if resume else None
        self.parent_id: Optional[str] = None
        self.stage_ids: dict = {}
        if saved is not None:
            self.parent_id = saved["parent"]
            self.stage_ids = dict(saved.get("stages", {}))
            self.cl.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.cl.create_run(self.experiment_id, run_name=run_name or self.out.name,
                                     tags={KIND_TAG: "pipeline", **(tags or {})})
            self.parent_id = run.info.run_id
        self._save()

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def _load(self) -> Optional[dict]:
        if not self.runs_file.is_file():
            return None
        try:
            saved = json.loads(self.runs_file.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("tracking_uri") != self.uri:
            print(f"note: {self.runs_file} refers to another tracking store ({saved.get('tracking_uri')}); "
                  f"starting new MLflow runs in {self.uri}")
            return None
        try:
            self.cl.get_run(saved["parent"])
        except Exception:
            return None
        return saved

    def _save(self) -> None:
        tmp = self.runs_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                   "parent": self.parent_id, "stages": self.stage_ids}, indent=2))
        os.replace(tmp, self.runs_file)

    # -- runs ----------------------------------------------------------------------------------------------------
    def log_config(self, cfg, run_id: Optional[str] = None) -> None:
        log_params(self.cl, run_id or self.parent_id, cfg.flatten())

    def stage_run(self, stage: str, cfg=None, tags: Optional[dict] = None) -> str:
        """The child run of ``stage`` (created on first use, reopened on resume)."""
        rid = self.stage_ids.get(stage)
        if rid is not None:
            self.cl.update_run(rid, status="RUNNING")
        else:
            run = self.cl.create_run(self.experiment_id, run_name=stage,
                                     tags={PARENT_TAG: self.parent_id, STAGE_TAG: stage, KIND_TAG: "stage",
                                           **(tags or {})})
            rid = run.info.run_id
            self.stage_ids[stage] = rid
            self._save()
        if cfg is not None:
            self.log_config(cfg, rid)
        return rid

    def set_tags(self, run_id: str, tags: dict) -> None:
        from mlflow.entities import RunTag
        self.cl.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: dict, step: Optional[int] = None) -> None:
        from mlflow.entities import Metric
        ts = int(time.time() * 1000)
        ms = [Metric(k, float(v), ts, int(step or 0)) for k, v in metrics.items() if _finite(v)]
        if ms:
            self.cl.log_batch(run_id, metrics=ms)

    def log_artifacts(self, run_id: str, local_dir, artifact_path: Optional[str] = None) -> None:
        self.cl.log_artifacts(run_id, str(local_dir), artifact_path)

    def log_artifact(self, run_id: str, local_path, artifact_path: Optional[str] = None) -> None:
        self.cl.log_artifact(run_id, str(local_path), artifact_path)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.cl.set_terminated(run_id, status=status)

    def end_all(self, status: str = "FINISHED") -> None:
        for rid in self.stage_ids.values():
            if self.cl.get_run(rid).info.status == "RUNNING":
                self.cl.set_terminated(rid, status=status)
        self.cl.set_terminated(self.parent_id, status=status)


class EpochLogger:
    """Rank-0 logger for one stage run: metrics per epoch (``step`` = completed epochs) and a sample grid every
    ``grid_every`` epochs (and at the last epoch). Used inside Ray Train workers and by plain loops alike."""

    def __init__(self, uri: str, run_id: str, *, grid_every: int = 5, sample_batch=None, cfg=None):
        self.uri, self.run_id = uri, run_id
        self.cl = client(uri)
        self.grid_every = max(1, int(grid_every))
        self.sample_batch = sample_batch
        self.cfg = cfg

    def log_epoch(self, epoch: int, metrics: dict, state: Optional[dict] = None,
                  step_logs: Optional[dict] = None) -> None:
        """``epoch``: completed epochs (1-based); ``state``: the checkpoint payload (for sample grids);
        ``step_logs``: {key: [value per training step of this epoch]} (``System.step_log_keys``), logged as
        ``step_<key>`` at the global step (epoch - 1) * steps per epoch + i."""
        from mlflow.entities import Metric
        ts = int(time.time() * 1000)
        keys = list(EPOCH_METRICS) + sorted(k for k in metrics if k.startswith(("train_", "val_", "lr_", "amp_"))
                                            and k not in EPOCH_METRICS)  # a system's own losses, e.g. train_loss_d
        ms = [Metric(k, float(metrics[k]), ts, epoch) for k in keys if _finite(metrics.get(k))]
        for k, vals in (step_logs or {}).items():
            base = (epoch - 1) * len(vals)
            ms += [Metric(f"step_{k}", float(v), ts, base + i) for i, v in enumerate(vals) if _finite(v)]
        for i in range(0, len(ms), 1000):  # MLflow's limit per batch
            self.cl.log_batch(self.run_id, metrics=ms[i:i + 1000])
        last = epoch >= int(metrics.get("epochs", epoch))
        if state is not None and self.sample_batch is not None and (epoch % self.grid_every == 0 or last):
            from .artifacts import sample_grid_png
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"samples_epoch{epoch:03d}.png"
                sample_grid_png(state, self.sample_batch, path)
                self.cl.log_artifact(self.run_id, str(path), "samples")


__all__ = ["PipelineTracker", "EpochLogger", "EXPERIMENT", "EPOCH_METRICS", "RUNS_FILE", "log_params", "client",
           "ensure_experiment", "EXPERIMENT_KIND_TAG", "EXPERIMENT_KIND"]
