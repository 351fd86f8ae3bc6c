"""Evaluation of trained models: the channel-PSNR sweep with figures, generation from sketches and noise, the
judge (realism, faithfulness, diversity), face masks; and what the benches measure (``rd``, ``curves``,
``machine``, ``presets``, ``budget``, ``edgediff``: imported by module, not re-exported here). Metrics are
``pycompgen.metrics``; loading trained models is ``pycompgen.models``; running them on images is
``pycompgen.inference``."""
from pycompgen import metrics
from pycompgen.inference import check_image_size, reconstruct
from pycompgen.metrics import compute_metrics, edge_f1, ms_ssim, psnr, ssim
from pycompgen.models import load_for_eval, resolve_checkpoints

from .generate import generate_from_edges, generate_unconditional, run_sketches, run_unconditional
from .sweep import DEFAULT_PSNRS, format_markdown, format_pivot, sweep, sweep_models

__all__ = ["reconstruct", "sweep", "sweep_models", "compute_metrics", "ssim", "ms_ssim", "psnr", "edge_f1",
           "load_for_eval", "resolve_checkpoints", "check_image_size", "generate_from_edges", "generate_unconditional",
           "run_sketches", "run_unconditional", "format_pivot", "format_markdown", "DEFAULT_PSNRS", "metrics"]
