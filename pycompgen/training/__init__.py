"""The training harness (plain PyTorch): ``fit`` trains any registered system's stage (``pycompgen.systems``) for any
driver (plain loop or Ray); ``train_local`` / ``run_pipeline`` are the single-process runs."""
from pycompgen.metrics import image_psnr
from pycompgen.models import load_checkpoint, save_checkpoint, stage_checkpoint
from pycompgen.systems.compgen.losses import distortion, latent_mse
from .loop import EpochShuffleSampler, evaluate, fit, resolve_device, train_one_epoch, train_subset_indices
from .pipeline import (PIPELINE, init_weights, make_loaders, pipeline_stages, run_pipeline, stage_done, train_local,
                       train_subset_loader)
from pycompgen.systems import StageSpec, System, build_system, get_system  # noqa: E402


def __getattr__(name):  # Compgen's edge channel, kept here for existing callers (imported lazily: no cycle)
    if name in ("make_channel", "prepare_batch"):
        from pycompgen.systems.compgen import system
        return getattr(system, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["fit", "train_one_epoch", "evaluate", "train_local", "init_weights", "run_pipeline", "make_loaders", "pipeline_stages",
           "stage_done", "build_system", "get_system", "System", "StageSpec", "PIPELINE", "save_checkpoint",
           "load_checkpoint", "distortion", "latent_mse", "image_psnr", "make_channel", "prepare_batch",
           "resolve_device", "EpochShuffleSampler", "train_subset_indices", "train_subset_loader"]
