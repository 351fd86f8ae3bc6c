"""Where runs are recorded: the MLflow tracking URI, its reachability check and the command that shows it.

Default store: a SQLite file in the run folder (``sqlite:///<out>/mlflow.db``) with artifacts beside it in
``<out>/mlartifacts``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` select another store (e.g. a tracking server,
``http://host:5000``). A local store (SQLite / file) is only reachable from processes on this machine (or on a
shared filesystem), so multi-node runs should use a tracking server.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

ENV_VAR = "MLFLOW_TRACKING_URI"
DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
# Where `mlflow ui` / `mlflow server` listen unless told otherwise (mlflow.utils.cli_args HOST, PORT).
DEFAULT_UI_URL = "http://127.0.0.1:5000"
# MLflow 3.17's UI is a hash-routed single-page app; an experiment's runs table is route
# /experiments/:experimentId/runs. Its sidebar switch "GenAI | Machine learning" (browser-local, default GenAI)
# decides which tabs an experiment page shows and where it lands; the query parameter selects machine learning.
RUNS_ROUTE = "/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


class TrackingUnavailableError(RuntimeError):
    """The configured tracking store cannot be used (server down, folder not writable, ...)."""


def default_tracking_uri(out: Optional[str] = None) -> str:
    """``sqlite:///<abs out>/mlflow.db`` (``out`` defaults to ./runs)."""
    folder = Path(out if out is not None else "runs").expanduser().resolve()
    return f"sqlite:///{folder / DB_NAME}"


def resolve_tracking_uri(uri: Optional[str] = None, out: Optional[str] = None) -> str:
    """Explicit ``uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite file in ``out``."""
    uri = uri or os.environ.get(ENV_VAR) or default_tracking_uri(out)
    return uri.strip()


def scheme(uri: str) -> str:
    s = urlparse(uri).scheme.lower()
    return "file" if len(s) <= 1 else s  # "" (plain path) or a Windows drive letter


def is_local_store(uri: str) -> bool:
    """A store only this machine sees (SQLite file, file store)."""
    return scheme(uri) in ("file", "sqlite")


def is_server(uri: str) -> bool:
    return scheme(uri) in ("http", "https")


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///...`` URI (None for other stores or in-memory SQLite)."""
    if scheme(uri) != "sqlite":
        return None
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])  # sqlite:////abs/path -> /abs/path; sqlite:///rel/path -> rel/path


def artifact_location(uri: str) -> Optional[str]:
    """Where a new experiment keeps its artifacts: beside the SQLite file (``mlartifacts/``), the server's choice
    for tracking servers (None). Without this MLflow would use ./mlruns relative to the current directory."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_NAME).resolve().as_uri() if db is not None else None


def preflight(uri: str, timeout: float = 5.0) -> str:
    """Check that ``uri`` can record runs before any training starts; returns the URI.

    Tracking servers: ``GET <uri>/health`` and one experiment search must answer within ``timeout`` seconds.
    SQLite: the folder must be creatable and writable. Raises TrackingUnavailableError with the fix.
    """
    if is_server(uri):
        base = uri.rstrip("/")
        try:
            with urllib.request.urlopen(base + "/health", timeout=timeout) as r:
                if r.status != 200:
                    raise OSError(f"/health answered HTTP {r.status}")
            req = urllib.request.Request(base + "/api/2.0/mlflow/experiments/search",
                                         data=json.dumps({"max_results": 1}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                if r.status != 200:
                    raise OSError(f"the experiments API answered HTTP {r.status}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} is not reachable ({reason}); start it, e.g. "
                f"`mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:///mlflow.db "
                f"--serve-artifacts`, or pass another --tracking-uri (or unset {ENV_VAR} to use the local "
                f"SQLite store)") from None
        return uri
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingUnavailableError(f"cannot create the MLflow store folder {db.parent}: {e}") from None
        if not os.access(db.parent, os.W_OK):
            raise TrackingUnavailableError(f"the MLflow store folder {db.parent} is not writable")
    return uri


def ui_command(uri: str) -> str:
    """How to look at the runs of ``uri``."""
    if is_server(uri):
        return f"open {uri} in a browser"
    db = sqlite_path(uri)
    if db is not None:
        return (f"mlflow ui --backend-store-uri {uri} "
                f"--default-artifact-root {(db.parent / ARTIFACTS_NAME).resolve().as_uri()}")
    return f"mlflow ui --backend-store-uri {uri}"


def ui_url(uri: str) -> Optional[str]:
    """The UI that shows the runs of ``uri``: the tracking server itself, or `mlflow ui` at its default address
    for stores it reads directly (SQLite, files, databases). None for Databricks (its own workspace UI)."""
    if is_server(uri):
        return uri.rstrip("/")
    if uri.strip().lower().startswith("databricks"):  # "databricks", "databricks://profile", "databricks-uc"
        return None
    return DEFAULT_UI_URL


def experiment_url(uri: str, experiment_id) -> Optional[str]:
    """URL of experiment ``experiment_id``'s runs table in the MLflow UI of ``uri`` (see ``ui_url``)."""
    base = ui_url(uri)
    if base is None:
        return None
    return base + RUNS_ROUTE.format(experiment_id=experiment_id)


def ui_lines(uri: str, experiment_id) -> list:
    """What to print at the end of a run: how to start the UI (local stores) and the runs page to open."""
    url = experiment_url(uri, experiment_id)
    if is_server(uri):
        return [f"MLflow runs: {url}"]
    lines = [f"view the runs with: {ui_command(uri)}"]
    if url:
        lines.append(f"  then open {url}")
    return lines


__all__ = ["default_tracking_uri", "resolve_tracking_uri", "is_local_store", "is_server", "preflight",
           "ui_command", "ui_url", "experiment_url", "ui_lines", "artifact_location", "sqlite_path",
           "TrackingUnavailableError", "ENV_VAR", "DEFAULT_UI_URL"]
