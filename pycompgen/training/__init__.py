"""Training of Compgen (plain PyTorch): step 1 and approaches 1-3, ``fit`` for any driver (plain loop or Ray)."""
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import distortion, image_psnr, latent_mse
from .loop import EpochShuffleSampler, evaluate, fit, make_channel, prepare_batch, resolve_device, train_one_epoch
from .pipeline import PIPELINE, make_loaders, run_pipeline, train_local
from .stages import STAGES, Stage, StageState, build_stage, get_stage

__all__ = ["fit", "train_one_epoch", "evaluate", "train_local", "run_pipeline", "make_loaders", "build_stage",
           "get_stage", "Stage", "StageState", "STAGES", "PIPELINE", "save_checkpoint", "load_checkpoint",
           "distortion", "latent_mse", "image_psnr", "make_channel", "prepare_batch", "resolve_device",
           "EpochShuffleSampler"]
