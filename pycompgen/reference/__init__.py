"""Pure-PyTorch references of the compiled ops, for tests and documentation (not used in production paths)."""
from .ssim import ssim, ssim_loss
from .awgn import awgn
from .canny import canny

__all__ = ["ssim", "ssim_loss", "awgn", "canny"]
