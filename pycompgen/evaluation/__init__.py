"""Evaluation of Compgen: metrics, the channel-PSNR sweep with figures, generation, and the CLI entry points."""
from .cli import cli_evaluate, cli_generate
from .generate import generate_from_edges, generate_unconditional, run_sketches, run_unconditional
from .inference import check_image_size, load_for_eval, reconstruct, resolve_checkpoints
from .metrics import compute_metrics, edge_f1, ms_ssim, psnr, ssim
from .sweep import DEFAULT_PSNRS, format_markdown, format_pivot, sweep, sweep_models

__all__ = ["reconstruct", "sweep", "sweep_models", "cli_evaluate", "cli_generate", "compute_metrics", "ssim",
           "ms_ssim", "psnr", "edge_f1", "load_for_eval", "resolve_checkpoints", "check_image_size",
           "generate_from_edges", "generate_unconditional", "run_sketches", "run_unconditional",
           "format_pivot", "format_markdown", "DEFAULT_PSNRS"]
