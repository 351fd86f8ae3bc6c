"""MLflow at the edge of training: tracking URI + reachability check, one parent run per pipeline with a nested
run per step, per-epoch metrics, sample grids, the evaluation sweep and the final model."""
from .store import (DEFAULT_UI_URL, ENV_VAR, TrackingUnavailableError, artifact_location, default_tracking_uri,
                    experiment_url, is_local_store, is_server, preflight, resolve_tracking_uri, sqlite_path,
                    ui_command, ui_lines, ui_url)
from .runs import (EPOCH_METRICS, EXPERIMENT, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, RUNS_FILE, EpochLogger,
                   PipelineTracker, client, ensure_experiment, log_params)

__all__ = ["default_tracking_uri", "resolve_tracking_uri", "is_local_store", "is_server", "preflight", "ui_command",
           "ui_url", "experiment_url", "ui_lines", "DEFAULT_UI_URL", "artifact_location", "sqlite_path",
           "TrackingUnavailableError", "ENV_VAR", "PipelineTracker", "EpochLogger", "EXPERIMENT", "EPOCH_METRICS",
           "RUNS_FILE", "client", "log_params", "ensure_experiment", "EXPERIMENT_KIND_TAG", "EXPERIMENT_KIND"]
