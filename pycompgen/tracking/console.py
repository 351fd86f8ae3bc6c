"""The console of a Ray Train run: one line per epoch and one line per lost worker, printed by the driver.

Ray Train runs its callbacks in the Train controller actor, whose output reaches the driver only through Ray's
log forwarding (which also carries every worker's and Ray's own messages). ``ConsoleProgress`` (a Ray Train
``UserCallback``) therefore sends its lines through a ``ray.util.queue.Queue`` to a thread of the driver
(``RunConsole``), which prints them and appends the full text of worker failures to a log file. The driver starts
Ray with ``log_to_driver=False`` (``pycompgen.distributed.connect``), so the rest stays in Ray's session logs.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Optional

from ray.train import UserCallback

PREFIX = "[compgen]"


def _num(m: dict, key: str) -> Optional[float]:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def format_epoch(stage: str, metrics: dict) -> str:
    """``step1 epoch 2/3: train loss 0.4773, val SSIM 0.1374, val PSNR 14.76 dB, 412 img/s`` from one worker's
    report (missing values are left out)."""
    epoch, epochs = metrics.get("epoch", "?"), metrics.get("epochs")
    parts = []
    for key, fmt in (("train_loss", "train loss {:.4f}"), ("val_ssim", "val SSIM {:.4f}"),
                     ("val_psnr", "val PSNR {:.2f} dB"), ("images_per_s", "{:.0f} img/s")):
        v = _num(metrics, key)
        if v is not None:
            parts.append(fmt.format(v))
    head = f"{stage} epoch {epoch}{f'/{epochs}' if epochs else ''}"
    return f"{head}: {', '.join(parts)}" if parts else head


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# Errors of workers that only lost their peer (collective ops on a closed connection): not the cause.
_COLLATERAL = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def describe_failure(worker_exceptions: dict) -> tuple:
    """(one-line summary, full text) of a worker-group failure {rank: exception}. A worker whose process died or
    stopped answering is named first, then one that raised its own error; workers whose collective ops failed
    because a peer vanished come last."""
    if not worker_exceptions:
        return "the worker group failed", ""
    detail = "\n\n".join(f"[rank {r}] {type(e).__name__}:\n{e}" for r, e in sorted(worker_exceptions.items()))
    died = sorted(r for r, e in worker_exceptions.items() if type(e).__name__.startswith("WorkerHealthCheck"))
    if died:
        return f"worker rank {', '.join(map(str, died))} lost (process died or stopped answering)", detail
    own = [r for r, e in sorted(worker_exceptions.items()) if not any(c in str(e) for c in _COLLATERAL)]
    rank = own[0] if own else min(worker_exceptions)
    return f"worker rank {rank} failed ({_last_line(worker_exceptions[rank])[:160]})", detail


class ConsoleProgress(UserCallback):
    """Ray Train callback (runs in the Train controller): an epoch line after every report (rank 0's metrics) and
    a failure line after a worker-group error, saying from which checkpoint the run restarts."""

    def __init__(self, queue, stage: str, max_failures: int = 0):
        self.queue, self.stage, self.max_failures = queue, stage, int(max_failures)
        self.checkpoint_epoch: Optional[int] = None  # epoch of the latest reported checkpoint
        self.failures = 0

    def _put(self, item) -> None:
        try:
            self.queue.put(item, block=False)
        except Exception:  # the console must never take the training down
            pass

    def after_report(self, run_context, metrics, checkpoint) -> None:
        m = metrics[0] if metrics else {}
        if checkpoint is not None and isinstance(m.get("epoch"), int):
            self.checkpoint_epoch = m["epoch"]
        self._put(("epoch", format_epoch(self.stage, m), None))

    def after_exception(self, run_context, worker_exceptions) -> None:
        self.failures += 1
        summary, detail = describe_failure(worker_exceptions)
        limit = math.inf if self.max_failures < 0 else self.max_failures
        if self.failures > limit:
            line = f"{self.stage}: {summary}; no restarts left (--max-failures {self.max_failures})"
        else:
            start = (f"the checkpoint of epoch {self.checkpoint_epoch}" if self.checkpoint_epoch
                     else "the latest checkpoint")  # none reported in this call yet (e.g. a --resume)
            of = "" if limit == math.inf else f" of {self.max_failures}"
            line = f"{self.stage}: {summary}; restarting from {start} (restart {self.failures}{of})"
        self._put(("failure", line, detail))


class RunConsole:
    """Driver side: a queue for ``ConsoleProgress`` callbacks and a thread printing what they send; full failure
    texts are appended to ``log_file``. Use as a context manager around the ``trainer.fit()`` calls."""

    def __init__(self, log_file=None, prefix: str = PREFIX, poll_s: float = 0.5):
        from ray.util.queue import Queue
        self.log_file = Path(log_file) if log_file else None
        self.prefix, self.poll_s = prefix, poll_s
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._stop = threading.Event()  # set by close()
        self._thread = threading.Thread(target=self._loop, name="pycompgen-console", daemon=True)

    def callback(self, stage: str, max_failures: int = 0) -> ConsoleProgress:
        return ConsoleProgress(self.queue, stage, max_failures)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Print what is still queued, stop the thread and the queue actor (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._drain()
        try:
            self.queue.shutdown()
        except Exception:
            pass

    def _show(self, item) -> None:
        kind, line, detail = item
        note = ""
        if detail and self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a") as fh:
                fh.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n{detail}\n\n")
            note = f" [details: {self.log_file}]"
        print(f"{self.prefix} {line}{note}", flush=True)

    def _drain(self) -> None:
        from ray.util.queue import Empty
        while True:
            try:
                self._show(self.queue.get(block=False))
            except Empty:
                return
            except Exception:  # queue actor gone
                return

    def _loop(self) -> None:
        from ray.util.queue import Empty
        while not self._stop.is_set():
            try:
                self._show(self.queue.get(block=True, timeout=self.poll_s))
            except Empty:
                continue
            except Exception:  # queue actor gone (Ray shut down)
                return


__all__ = ["ConsoleProgress", "RunConsole", "format_epoch", "describe_failure"]
