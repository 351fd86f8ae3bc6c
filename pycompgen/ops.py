"""Compiled ops of pycompgen (fused SSIM loss, AWGN channel, Canny edge maps).

TEMPORARY: the compiled kernels are being written; until then these names delegate to pycompgen.reference.
"""
from .reference import ssim, ssim_loss, awgn, canny  # noqa: F401  (replaced by the compiled ops)

__all__ = ["ssim", "ssim_loss", "awgn", "canny"]
