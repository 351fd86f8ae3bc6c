"""Image-quality metrics of a reconstruction x̂ against the original x (batched, pure torch): the one low room of
metrics that the codecs, training and evaluation all use.

Every function returns one value per image (shape N) so callers can average over a split.

- ``ssim``: Wang et al. 2004, 11×11 Gaussian window (σ 1.5), valid padding — ``pycompgen.ops.ssim``.
- ``ms_ssim``: multi-scale SSIM (Wang, Simoncelli, Bovik 2003). The standard recipe has 5 scales with weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and an 11×11 window; it needs the shorter side to exceed
  (window − 1)·2⁴ = 160 px. For smaller images the number of scales is reduced to the largest count that stays
  valid (shorter side > (window − 1)·2^(scales − 1)) and the leading weights are renormalised to sum to 1.
  At 64×64 this gives 3 scales (64, 32, 16 px) with weights (0.0448, 0.2856, 0.3001)/0.6305. Computation per
  channel then averaged over channels, matching ``pytorch_msssim.ms_ssim`` exactly where that is valid.
- ``psnr``: image PSNR 10·log10(data_range² / MSE), capped at ``PSNR_CAP`` dB for identical images.
- ``l1`` / ``l2``: mean absolute / mean squared error.
- ``laplacian_energy``: mean squared 4-neighbour Laplacian of the luma (0.299 R + 0.587 G + 0.114 B), valid
  region: the fine detail of an image, without a reference. A generator's outputs over real faces' is the
  project's sharpness ratio (bicubic upsampling of 16 px faces to 64: ~0.03; real faces: 1).
- ``edge_f1``: F1 of Canny(x̂) against the clean edge map z. ``tolerance`` t (pixels, default 0 = exact pixel
  match) counts a predicted edge as correct when a true edge lies within the (2t+1)×(2t+1) square around it (and
  vice versa for recall). Two empty maps score 1, one empty map 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from pycompgen.ops import canny
from pycompgen.ops import ssim as _ssim

PSNR_CAP = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
METRIC_NAMES = ("ssim", "ms_ssim", "psnr", "l1", "l2", "edge_f1")


def _check_pair(x: torch.Tensor, y: torch.Tensor, name: str = "x_hat") -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)} but the reference has shape {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be N×C×H×W, got shape {tuple(x.shape)}")


def ssim(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (11×11 Gaussian window, σ 1.5, valid padding), shape N."""
    _check_pair(x_hat, x)
    return _ssim(x_hat.float(), x.float(), data_range=data_range, reduction="none")


def _gauss(window_size: int, sigma: float, dtype, device) -> torch.Tensor:
    c = torch.arange(window_size, dtype=dtype, device=device) - (window_size - 1) / 2.0
    g = torch.exp(-(c ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter(t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c, k = t.shape[1], g.numel()
    t = F.conv2d(t, g.view(1, 1, 1, k).expand(c, 1, 1, k).contiguous(), groups=c)
    return F.conv2d(t, g.view(1, 1, k, 1).expand(c, 1, k, 1).contiguous(), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, c1: float, c2: float):
    """Per-channel SSIM and contrast-structure terms, each N×C."""
    mx, my, exx, eyy, exy = _filter(torch.cat([x, y, x * x, y * y, x * y], 1), g).chunk(5, dim=1)
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim_scales(size: int, window_size: int = 11, max_scales: int = 5) -> int:
    """Largest number of scales (≤ max_scales) valid for a shorter side of ``size`` px."""
    s = max_scales
    while s > 1 and size <= (window_size - 1) * 2 ** (s - 1):
        s -= 1
    if size < window_size:
        raise ValueError(f"MS-SSIM: images of {size} px are smaller than the {window_size}-px window")
    return s


def ms_ssim(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
            sigma: float = 1.5, weights: Sequence[float] | None = None, k1: float = 0.01,
            k2: float = 0.03) -> torch.Tensor:
    """Per-image MS-SSIM, shape N. ``weights`` None: standard 5-scale weights, cut to the scales the image size
    allows and renormalised (see module docstring). Explicit weights are used as given (one per scale)."""
    _check_pair(x_hat, x)
    x_hat, x = x_hat.float(), x.float()
    side = min(x.shape[-2:])
    if weights is None:
        n = ms_ssim_scales(side, window_size)
        w = torch.tensor(MS_SSIM_WEIGHTS[:n], dtype=x.dtype, device=x.device)
        w = w / w.sum()
    else:
        w = torch.as_tensor(list(weights), dtype=x.dtype, device=x.device)
        n = w.numel()
        if side <= (window_size - 1) * 2 ** (n - 1):
            raise ValueError(f"MS-SSIM: {n} scales with a {window_size}-px window need images larger than "
                             f"{(window_size - 1) * 2 ** (n - 1)} px, got {side} px")
    g = _gauss(window_size, sigma, x.dtype, x.device)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    a, b = x_hat, x
    mcs = []
    for i in range(n):
        s, cs = _ssim_cs(a, b, g, c1, c2)
        if i < n - 1:
            mcs.append(torch.relu(cs))
            pad = [d % 2 for d in a.shape[2:]]
            a = F.avg_pool2d(a, kernel_size=2, padding=pad)
            b = F.avg_pool2d(b, kernel_size=2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(s)], dim=0)  # scales × N × C
    return torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean(1)


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _check_pair(x_hat, x)
    return (x_hat.float() - x.float()).pow(2).flatten(1).mean(1)


l2 = mse


def l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    _check_pair(x_hat, x)
    return (x_hat.float() - x.float()).abs().flatten(1).mean(1)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0, cap: float = PSNR_CAP) -> torch.Tensor:
    """Per-image PSNR in dB, capped at ``cap`` (identical images give ``cap`` instead of inf)."""
    m = mse(x_hat, x)
    floor = data_range ** 2 * 10.0 ** (-cap / 10.0)
    return (10.0 * torch.log10(data_range ** 2 / m.clamp_min(floor))).clamp_max(cap)


def image_psnr(x: torch.Tensor, x_hat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-image PSNR (dB) of x_hat vs x for images in [0, 1]; shape (N,) (the training loop's validation PSNR:
    MSE floored at ``eps`` instead of capped at ``PSNR_CAP``)."""
    mse = (x_hat.float() - x.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(eps))


def laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean (∇² luma)² over the valid region (see the module docstring); x (N,3,H,W) in [0, 1]."""
    if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < 3:
        raise ValueError(f"laplacian_energy: expected (N, 3, H>=3, W>=3) images, got {tuple(x.shape)}")
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    y = (x.float() * w).sum(1, keepdim=True)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device).view(1, 1, 3, 3)
    return F.conv2d(y, k).pow(2).mean(dim=(1, 2, 3))


def edge_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Per-image F1 of binary edge maps (N×1×H×W, values {0,1}); see module docstring for ``tolerance``."""
    _check_pair(pred, target, "edge map")
    if tolerance < 0:
        raise ValueError(f"edge-F1 tolerance must be >= 0 pixels, got {tolerance}")
    p = (pred > 0.5).float()
    t = (target > 0.5).float()
    if tolerance > 0:
        k = 2 * tolerance + 1
        t_d = F.max_pool2d(t, k, stride=1, padding=tolerance)
        p_d = F.max_pool2d(p, k, stride=1, padding=tolerance)
    else:
        t_d, p_d = t, p
    np_, nt = p.flatten(1).sum(1), t.flatten(1).sum(1)
    tp_p = (p * t_d).flatten(1).sum(1)
    tp_r = (t * p_d).flatten(1).sum(1)
    prec = tp_p / np_.clamp_min(1)
    rec = tp_r / nt.clamp_min(1)
    f1 = 2 * prec * rec / (prec + rec).clamp_min(1e-12)
    both_empty = (np_ == 0) & (nt == 0)
    return torch.where(both_empty, torch.ones_like(f1), f1)


def edges(img: torch.Tensor, canny_low: float, canny_high: float, blur_sigma=None) -> torch.Tensor:
    """Canny edge map of images in [0,1] with the data config's thresholds (``pycompgen.ops.canny``)."""
    return canny(img.clamp(0, 1).float().contiguous(), canny_low, canny_high, blur_sigma=blur_sigma)


def compute_metrics(x_hat: torch.Tensor, x: torch.Tensor, z: torch.Tensor | None = None, *,
                    canny_low: float = 0.1, canny_high: float = 0.2, blur_sigma=None,
                    edge_tolerance: int = 0, edge_fn=None) -> dict[str, torch.Tensor]:
    """All per-image metrics of ``x_hat`` vs ``x`` (and edge-F1 vs the clean edge map ``z`` when given).

    ``edge_fn`` (images -> edge maps) overrides the Canny settings, e.g. ``EdgeChannel.edges`` of the training run.
    """
    out = {"ssim": ssim(x_hat, x), "ms_ssim": ms_ssim(x_hat, x), "psnr": psnr(x_hat, x),
           "l1": l1(x_hat, x), "l2": mse(x_hat, x)}
    if z is not None:
        e = edge_fn(x_hat.clamp(0, 1).float().contiguous()) if edge_fn is not None else \
            edges(x_hat, canny_low, canny_high, blur_sigma)
        out["edge_f1"] = edge_f1(e, z, edge_tolerance)
    return out


def finite_or_none(v: float):
    """JSON-safe float (NaN/inf -> None)."""
    return float(v) if math.isfinite(v) else None
