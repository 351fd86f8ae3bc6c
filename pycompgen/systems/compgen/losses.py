"""Losses of the Compgen training steps (paper Sec. 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pycompgen.ops import ssim_loss


def distortion(x: torch.Tensor, x_hat: torch.Tensor, w_ssim: float = 1.0, w_l1: float = 0.0,
               w_mse: float = 0.0) -> torch.Tensor:
    """d(x, x_hat) = w_ssim * 0.5(1 - SSIM) + w_l1 * L1 + w_mse * MSE (paper: w_ssim = 1, others 0)."""
    x_hat, x = x_hat.float(), x.float()  # float32 losses also under autocast
    d = x_hat.new_zeros(())
    if w_ssim:
        d = d + w_ssim * ssim_loss(x_hat, x)
    if w_l1:
        d = d + w_l1 * F.l1_loss(x_hat, x)
    if w_mse:
        d = d + w_mse * F.mse_loss(x_hat, x)
    return d


def latent_mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Approach 1: MSE(y_hat, y) with y = f(x) from the frozen encoder."""
    return F.mse_loss(y_hat.float(), y.float())


__all__ = ["distortion", "latent_mse"]
