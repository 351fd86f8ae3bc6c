"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

Payload: {"format": "pycompgen/1", "model": name, "stage": ..., "epoch": completed epochs, "config": Config.to_dict(),
"models": {"f": state_dict, ...}, "optimizers": {name: state_dict}, "extra": {...} (a system's own state, e.g.
a GAN's k_t), "metrics": {...}, "best_metric": the stage's selection metric, "best_value": its best value so far}
(and "best_val_ssim" when that metric is val_ssim; older files hold only it); with a learning-rate schedule
"schedulers": {name: state_dict}; with a generator EMA "ema": {"decay", "steps", "models": {net: state_dict}} — the
weights evaluation and export use (``eval_weights``). Files of pycompgen <= 0.1 hold one "optimizer" instead.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

FORMAT = "pycompgen/1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")  # a stage folder's checkpoints, in order of preference


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename); a payload without
    a ``format`` (``System.payload``) is stamped with ``FORMAT``."""
    path = Path(path)
    if "format" not in state:
        state = {"format": FORMAT, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def load_weights_only(path, map_location="cpu"):
    """``torch.load(weights_only=True)`` with one-line errors of our own: torch's message for a refused pickle
    advises ``weights_only=False``, which would run whatever code the file carries."""
    import pickle
    import zipfile
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            raise ValueError(f"{path} is not a pycompgen checkpoint: it holds Python objects other than tensors and "
                             f"plain values, and is refused (loading it could run code)") from None
        raise ValueError(f"{path} is not a pycompgen checkpoint (not a torch file of tensors and plain values; "
                         f"refused unread)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError):
        raise ValueError(f"{path} is not a pycompgen checkpoint (not a readable torch file: truncated or "
                         f"corrupted?)") from None


def load_checkpoint(path, expect_model: Optional[str] = None, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; ValueError naming the mismatch if it is not a pycompgen
    checkpoint or (with ``expect_model``) was written by another model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_weights_only(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a pycompgen checkpoint (format {fmt!r}, expected {FORMAT!r})")
    if expect_model is not None and state.get("model") != expect_model:
        raise ValueError(f"checkpoint {path} was written by model {state.get('model')!r}, "
                         f"but model {expect_model!r} is configured (model.name)")
    return state


def stage_checkpoint(folder) -> Optional[Path]:
    """The checkpoint of a stage folder to use: its best.pt, else its last.pt; None when it has neither."""
    folder = Path(folder)
    return next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)


def eval_weights(payload: dict) -> dict:
    """{net: state_dict} to run a trained model: the raw weights, with each network that has an EMA replaced by
    its average (what validation measured)."""
    return {**payload["models"], **((payload.get("ema") or {}).get("models") or {})}


__all__ = ["FORMAT", "CHECKPOINT_NAMES", "eval_weights", "save_checkpoint", "load_checkpoint", "load_weights_only", "stage_checkpoint"]
