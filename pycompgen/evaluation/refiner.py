"""Measuring an image refiner (the BEGAN refiner, seed 003): does it add detail, stay faithful to its input, and
make crude faces look more like real ones?

Figures per refiner (``refiner_report``), on faces the refiner was not trained on (validation) and, beside them, on
a fixed subset of its training faces (a gap says it memorised):
- ``ssim_lowres``: SSIM between the output and the input, both downscaled to the input's resolution (the refiner
  should keep what it was given; 16 px for faces degraded to 16 px).
- ``sharpness_ratio``: mean Laplacian energy of the outputs over that of the real faces (``pycompgen.metrics.
  laplacian_energy``; a smooth copy of a 16-px face scores ~0.03, real faces 1).
- ``ssim_to_original``: SSIM at full size to the face before degradation.
- on synthetic faces (the paper's rendered characters): the Fréchet distance of the refined faces to real faces
  against that of the unrefined inputs, in the judge's feature space (``pycompgen.evaluation.judge``; not
  Inception: FD in the encoder space named by ``features.label``), and the feature-space spread of the outputs
  relative to the real faces'.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from pycompgen import metrics as M
from pycompgen.ops import ssim as _ssim


def down(x: torch.Tensor, s: int) -> torch.Tensor:
    """Area downscale to s x s (identity at that size)."""
    return x if x.shape[-1] == s else F.interpolate(x, size=(s, s), mode="area")


def degrade(x: torch.Tensor, s: int) -> torch.Tensor:
    """Downscale to s x s (area) and back up (bilinear): a crude face for the refiner."""
    return F.interpolate(down(x, s), size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)


def ssim_lowres(out: torch.Tensor, inp: torch.Tensor, size: int) -> float:
    """Mean SSIM of ``out`` and ``inp`` both downscaled to ``size`` (window shrunk to fit small images)."""
    pad = "valid" if size >= 11 else "same"
    win = min(11, size - (1 - size % 2))
    return float(_ssim(down(out, size).contiguous(), down(inp, size).contiguous(), padding=pad, window_size=win))


def sharpness_ratio(out: torch.Tensor, real: torch.Tensor) -> float:
    """Mean Laplacian energy of ``out`` over that of ``real`` (see the module docstring)."""
    return float(M.laplacian_energy(out).mean() / M.laplacian_energy(real).mean().clamp_min(1e-12))


def degraded_set(refine: Callable, faces: torch.Tensor, size: int, batch: int = 100) -> dict:
    """The refiner on ``faces`` (N,3,H,W in [0, 1]) degraded to ``size`` px: faithfulness, detail, accuracy."""
    crude = degrade(faces, size)
    out = torch.cat([refine(crude[i:i + batch]).float().cpu() for i in range(0, len(crude), batch)])
    return {"n": int(faces.shape[0]), "degrade_px": size,
            "ssim_lowres": ssim_lowres(out, crude, size), "sharpness_ratio": sharpness_ratio(out, faces),
            "ssim_to_original": float(M.ssim(out, faces).mean()),
            "input_ssim_to_original": float(M.ssim(crude, faces).mean()),
            "input_sharpness_ratio": sharpness_ratio(crude, faces)}, out


def synthetic_set(refine: Callable, synthetic: torch.Tensor, real: torch.Tensor, features, ssim_size: int,
                  batch: int = 100) -> tuple[dict, torch.Tensor]:
    """The refiner on synthetic faces: FD to ``real`` of outputs vs inputs, spread, faithfulness at ``ssim_size``."""
    from .judge import frechet_distance, mean_pairwise_distance
    out = torch.cat([refine(synthetic[i:i + batch]).float().cpu() for i in range(0, len(synthetic), batch)])
    fr, fo, fi = features.extract(real), features.extract(out), features.extract(synthetic)
    spread_real = mean_pairwise_distance(fr)
    return {"n": int(synthetic.shape[0]), "feature_space": features.label,
            "fd_refined_to_real": frechet_distance(fo, fr), "fd_input_to_real": frechet_distance(fi, fr),
            "spread_ratio": mean_pairwise_distance(fo) / spread_real if spread_real > 0 else None,
            "ssim_lowres": ssim_lowres(out, synthetic, ssim_size), "ssim_size": ssim_size,
            "sharpness_ratio": sharpness_ratio(out, real), "input_sharpness_ratio": sharpness_ratio(synthetic, real)}, out


def refiner_report(refine: Callable, val: torch.Tensor, train: torch.Tensor, synthetic: torch.Tensor, features,
                   degrade_px: int = 16, ssim_size: int = 32, real_fd: Optional[torch.Tensor] = None) -> dict:
    """All figures of one refiner (see the module docstring): validation, training subset, synthetic faces (FD to
    ``real_fd``, default ``val``: FD needs many more faces than feature dimensions, or it ranks blur above detail)."""
    v, _ = degraded_set(refine, val, degrade_px)
    t, _ = degraded_set(refine, train, degrade_px)
    s, _ = synthetic_set(refine, synthetic, val if real_fd is None else real_fd, features, ssim_size)
    gap = {k: t[k] - v[k] for k in ("ssim_lowres", "sharpness_ratio", "ssim_to_original")}
    return {"val": v, "train_subset": t, "train_minus_val": gap, "synthetic": s}


__all__ = ["down", "degrade", "ssim_lowres", "sharpness_ratio", "degraded_set", "synthetic_set", "refiner_report"]
