"""MLflow side of a search: one parent run, one nested child run per trial (params: the sampled values and the
trial's full config; metrics: per-epoch val SSIM/PSNR and the final sweep). All writes happen in the Tune driver
(a Tune callback), so only the driver has to reach the tracking store."""
from __future__ import annotations

import math
import os
import time

from ray.tune import Callback

from pycompgen.tracking import (client, ensure_experiment, is_local_store, log_params, ui_command,  # noqa: F401
                                ui_lines)  # (re-exported)

TRIAL_TAG = "pycompgen.tune.trial_id"
SEARCH_TAG = "pycompgen.tune.search"
PARENT_TAG = "mlflow.parentRunId"
METRIC_KEYS = ("val_ssim", "val_psnr", "val_loss", "train_loss", "best_val_ssim", "images_per_s", "epoch_time_s")


def experiment_id(cl, name, uri):
    """The search's experiment (created, restored or tagged as a model-training experiment as needed)."""
    return ensure_experiment(cl, name, uri)


def _finite_metrics(d):
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def log_metrics(cl, run_id, metrics, step=0):
    from mlflow.entities import Metric
    ts = int(time.time() * 1000)
    items = [Metric(k, v, ts, int(step)) for k, v in _finite_metrics(metrics).items()]
    for i in range(0, len(items), 1000):
        cl.log_batch(run_id, metrics=items[i:i + 1000])


INTERRUPTED = False  # set when the search driver gets Ctrl-C / SIGINT while Tune runs


def _watch_interrupts():
    """Chain a flag-setting handler in front of Tune's SIGINT handler (Tune then stops and saves its state)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(sig, frame):
        global INTERRUPTED
        INTERRUPTED = True
        if callable(previous):
            previous(sig, frame)
        else:
            raise KeyboardInterrupt
    signal.signal(signal.SIGINT, handler)


class MlflowTrialCallback(Callback):
    """Child run per Tune trial, nested under the search's parent run. Picklable (Tune stores it with the
    experiment), the MLflow client is created lazily."""

    def __init__(self, tracking_uri, experiment_id, parent_run_id, search_name, settings, verbose=True):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.search_name = search_name
        self.settings = settings
        self.verbose = verbose
        self._runs = {}
        self._cl = None
        self._final, self._epochs = set(), set()

    def __getstate__(self):
        d = dict(self.__dict__)
        d.update(_cl=None, _runs={}, _final=set(), _epochs=set())
        return d

    @property
    def cl(self):
        if self._cl is None:
            self._cl = client(self.tracking_uri)
        return self._cl

    def _say(self, msg):
        if self.verbose:
            print(f"[search] {msg}", flush=True)

    def run_id(self, trial):
        rid = self._runs.get(trial.trial_id)
        if rid:
            return rid
        found = self.cl.search_runs([self.experiment_id],
                                    filter_string=f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' and "
                                                  f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'", max_results=1)
        if found:
            rid = found[0].info.run_id
        else:
            from .trial import trial_config
            run = self.cl.create_run(self.experiment_id, run_name=f"{self.search_name}/{trial.trial_id}",
                                     tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial.trial_id,
                                           SEARCH_TAG: self.search_name})
            rid = run.info.run_id
            params = {k: v for k, v in trial.config.items()}
            try:
                full = trial_config(self.settings, trial.config).flatten()
                params.update({f"config.{k}": v for k, v in full.items() if k.split(".")[-1] not in params})
            except Exception as e:  # the trial itself reports the error
                params["config_error"] = str(e)
            log_params(self.cl, rid, params)
        self._runs[trial.trial_id] = rid
        return rid

    def setup(self, **info):
        _watch_interrupts()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.config.items())
        self._say(f"trial {trial.trial_id} started: {shown}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._log_result(trial, result)

    def _log_result(self, trial, result):
        """Per-epoch metrics (step = epoch), or the trial's final report (sweep + prerequisite-step metrics).
        Also called from on_trial_complete: Tune may fold a function's last report into its completion."""
        rid = self.run_id(trial)
        if any(k.startswith("sweep_") for k in result) or "checkpoint" in result:
            if trial.trial_id in self._final:
                return
            self._final.add(trial.trial_id)
            m = {k: v for k, v in result.items()
                 if k.startswith("sweep_") or k.startswith(("step1_", "approach1_", "approach2_"))}
            log_metrics(self.cl, rid, m, step=0)
            if result.get("sweep_dir") and os.path.isdir(result["sweep_dir"]):
                try:
                    self.cl.log_artifacts(rid, result["sweep_dir"], artifact_path="sweep")
                except Exception as e:
                    self._say(f"warning: could not upload the sweep of trial {trial.trial_id}: {e}")
            return
        if "val_ssim" not in result and "train_loss" not in result:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if (trial.trial_id, step) in self._epochs:
            return
        self._epochs.add((trial.trial_id, step))
        log_metrics(self.cl, rid, {k: result[k] for k in METRIC_KEYS if k in result}, step=step)
        if "val_ssim" in result:
            self._say(f"trial {trial.trial_id} epoch {step}: val_ssim {result['val_ssim']:.4f}"
                      + (f" val_psnr {result['val_psnr']:.2f} dB" if "val_psnr" in result else ""))

    def _end(self, trial, status, note):
        rid = self.run_id(trial)
        self.cl.set_terminated(rid, status=status)
        last = trial.last_result or {}
        self._say(f"trial {trial.trial_id} {note}"
                  + (f": val_ssim {last['val_ssim']:.4f}" if isinstance(last.get("val_ssim"), float) else ""))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        self._log_result(trial, last)
        early = "checkpoint" not in last  # the trial's final report (after its last epoch) names its model
        if early:
            self.cl.set_tag(self.run_id(trial), "pycompgen.tune.early_stopped", "true")
        self._end(trial, "FINISHED", "stopped early (ASHA)" if early else "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "FAILED", "failed")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
