"""Compiled ops of pycompgen (fused SSIM loss, AWGN channel, Canny edge maps) on torch.ops.compgen.

Importing this module loads pycompgen._C, whose static initialisers register the ops (csrc/); there is no
pure-Python fallback: pycompgen.reference holds the references used by tests.
"""
import torch  # noqa: F401  (load libtorch before the extension)

try:
    from pycompgen import _C  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only on an unbuilt checkout
    raise ImportError(
        "pycompgen._C is not built: run `make install` or `python -m pip install --no-build-isolation -e .` "
        f"({e})") from e

from ._ops.ssim import ssim, ssim_loss  # noqa: E402

from ._ops.awgn import awgn  # noqa: E402
from ._ops.canny import canny  # noqa: E402

__all__ = ["ssim", "ssim_loss", "awgn", "canny"]
