"""pycompgen: compression and generation of faces from edge maps (Compgen)."""
__version__ = "0.1.0"

from .ops import ssim, ssim_loss, awgn, canny  # noqa: E402,F401  (compiled ops; import fails if _C is not built)
