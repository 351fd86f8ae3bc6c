"""Edge channel of Compgen: x -> z = Canny(x) -> z_noisy = AWGN(z) with the paper's PSNR definition, computed on
the training device each batch."""
from __future__ import annotations

import math

import torch

# Defaults measured at 64x64 (docs/data.md): CelebA faces ~16 % edge pixels (5-95 %: 11-23 %), synthetic faces
# ~11 %, CUFSF sketches after load_sketches ~13 %.
DEFAULT_CANNY_LOW = 0.30
DEFAULT_CANNY_HIGH = 0.60
DEFAULT_BLUR_SIGMA = None


def _check_psnr(psnr):
    if isinstance(psnr, (tuple, list)):
        if len(psnr) != 2:
            raise ValueError(f"EdgeChannel: psnr range must be (lo, hi), got {psnr!r}")
        lo, hi = float(psnr[0]), float(psnr[1])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"EdgeChannel: psnr range needs finite lo <= hi, got {psnr!r}")
        return (lo, hi)
    p = float(psnr)
    if math.isnan(p) or p == -math.inf:
        raise ValueError(f"EdgeChannel: psnr must be a number of dB or +inf, got {psnr!r}")
    return p


class EdgeChannel:
    """x uint8 (N,3,H,W) -> dict(x float32 [0,1], z = canny(x) (N,1,H,W) {0,1}, z_noisy = awgn(z), psnr (N,)).

    psnr: a fixed value in dB, float('inf') (no noise), or (lo, hi): a per-image PSNR drawn uniformly in [lo, hi].
    Noise uses the paper's definition with `peak` as max|z| (1.0 for binary edge maps) and power normalisation.
    """

    def __init__(self, canny_low: float = DEFAULT_CANNY_LOW, canny_high: float = DEFAULT_CANNY_HIGH,
                 blur_sigma: float | None = DEFAULT_BLUR_SIGMA, psnr=50.0, peak: float = 1.0):
        if not (0.0 <= float(canny_low) <= float(canny_high)):
            raise ValueError(f"EdgeChannel: need 0 <= canny_low <= canny_high, got {canny_low}, {canny_high}")
        if blur_sigma is not None and float(blur_sigma) <= 0:
            blur_sigma = None
        self.canny_low, self.canny_high = float(canny_low), float(canny_high)
        self.blur_sigma = None if blur_sigma is None else float(blur_sigma)
        self.psnr = _check_psnr(psnr)
        self.peak = float(peak)

    def __repr__(self):
        return (f"EdgeChannel(canny_low={self.canny_low}, canny_high={self.canny_high}, "
                f"blur_sigma={self.blur_sigma}, psnr={self.psnr}, peak={self.peak})")

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        """Canny edge map (N,1,H,W) {0,1} of float images in [0, 1]."""
        from pycompgen.ops import canny
        return canny(x, self.canny_low, self.canny_high, blur_sigma=self.blur_sigma)

    def draw_psnr(self, n: int, device, generator: torch.Generator | None = None, psnr=None) -> torch.Tensor:
        """Per-image PSNR (n,) float64 on `device`: the fixed value, or uniform in [lo, hi]."""
        psnr = self.psnr if psnr is None else _check_psnr(psnr)
        if isinstance(psnr, tuple):
            lo, hi = psnr
            gdev = generator.device if generator is not None else torch.device("cpu")
            u = torch.rand(n, generator=generator, dtype=torch.float64, device=gdev)
            return (lo + (hi - lo) * u).to(device)
        return torch.full((n,), psnr, dtype=torch.float64, device=device)

    def noisy(self, z: torch.Tensor, psnr=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """AWGN channel on an edge map at `psnr` (fixed dB, inf, or (lo, hi) per image; default: the channel's)."""
        from pycompgen.ops import awgn
        p = self.draw_psnr(z.shape[0], z.device, generator, psnr)
        return awgn(z, p, normalize=True, peak=self.peak, generator=generator)

    def __call__(self, x_uint8: torch.Tensor, device=None, generator: torch.Generator | None = None) -> dict:
        if not torch.is_tensor(x_uint8) or x_uint8.dim() != 4 or x_uint8.shape[1] != 3:
            raise ValueError("EdgeChannel expects a (N, 3, H, W) image tensor, got "
                             f"{type(x_uint8).__name__} {tuple(getattr(x_uint8, 'shape', ()))}")
        device = torch.device(device) if device is not None else x_uint8.device
        x = x_uint8.to(device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.to(torch.float32).div_(255.0)
        elif x.dtype.is_floating_point:
            x = x.to(torch.float32)
        else:
            raise ValueError(f"EdgeChannel expects uint8 (or float in [0, 1]) images, got {x.dtype}")
        z = self.edges(x)
        p = self.draw_psnr(x.shape[0], device, generator)
        from pycompgen.ops import awgn
        z_noisy = awgn(z, p, normalize=True, peak=self.peak, generator=generator)
        return {"x": x, "z": z, "z_noisy": z_noisy, "psnr": p.to(torch.float32)}
