"""AWGN channel of Compgen (Pandian et al.) on torch.ops.compgen: z + n, n ~ N(0, sigma_i^2) per image i.

PSNR follows the paper, PSNR = max_j 10 log10(z_j^2 / sigma^2), so sigma_i = peak_i * 10^(-PSNR_i / 20) with
peak_i = `peak` (default 1.0: the maximum of any non-empty binary edge map, and also usable for z = 0) or, with
peak=None, max_j |z_ij| of each image. normalize=True returns the power-normalised (z + n) / max(1, sigma_i):
unchanged down to 0 dB, unit-power noise below it. PSNR = +inf gives z back exactly.

The kernels (csrc/cpu/awgn.cpp, csrc/cuda/awgn_kernel.cu) read z once and write the result once; the noise comes
from a counter-based Philox4x32-10 generator keyed by two words drawn from `generator` (or torch's default
generator of z's device), so results repeat under torch.manual_seed / a seeded torch.Generator, and do not depend
on the number of threads. Differentiable w.r.t. z (sigma is treated as a constant of the channel, also with
peak=None): dz = grad / max(1, sigma_i) when normalize, else grad.
"""
import math
import numbers

import torch

from . import eager_checks


def _fake(z, sigma, seed, normalize):
    torch._check(z.dim() >= 1, lambda: "awgn: z must have a batch dimension")
    return z.new_empty(z.shape)


def _setup_context(ctx, inputs, output):
    z, sigma, seed, normalize = inputs
    ctx.save_for_backward(sigma)
    ctx.normalize = normalize
    ctx.ndim = z.dim()


def _backward(ctx, grad):
    if not ctx.normalize:
        return grad, None, None, None
    (sigma,) = ctx.saved_tensors
    scale = sigma.clamp(min=1.0).to(grad.dtype).view((-1,) + (1,) * (ctx.ndim - 1))
    return grad / scale, None, None, None


torch.library.register_fake("compgen::awgn")(_fake)
torch.library.register_autograd("compgen::awgn", _backward, setup_context=_setup_context)


def _sigma(z, psnr_db, peak):
    """Per-image noise std (N,) float64 on z's device."""
    n, dev = z.shape[0], z.device
    if peak is not None:
        if isinstance(peak, bool) or not isinstance(peak, numbers.Real) or not math.isfinite(peak) or peak <= 0:
            raise ValueError(f"awgn: peak must be a positive finite number or None, got {peak!r}")
        peak = float(peak)
    if isinstance(psnr_db, torch.Tensor):
        if psnr_db.dim() > 1 or (psnr_db.dim() == 1 and psnr_db.shape[0] != n):
            raise ValueError(f"awgn: psnr_db must be a float or a tensor of shape (N,) = ({n},), got shape "
                             f"{tuple(psnr_db.shape)}")
        if psnr_db.is_complex() or psnr_db.dtype == torch.bool:
            raise ValueError(f"awgn: psnr_db must be real, got {psnr_db.dtype}")
        psnr = psnr_db.detach().to(device=dev, dtype=torch.float64, non_blocking=True).expand(n)  # no host sync
        if eager_checks(dev) and bool((torch.isnan(psnr) | (psnr == -math.inf)).any()):
            raise ValueError("awgn: psnr_db must not be NaN or -inf (use +inf for no noise)")
        # NaN / -inf PSNR give a NaN / inf sigma: the kernels turn that image into NaN (CUDA without debug checks)
        rel = torch.where(psnr == math.inf, torch.zeros_like(psnr), torch.pow(10.0, -psnr / 20.0))
    elif isinstance(psnr_db, numbers.Real) and not isinstance(psnr_db, bool):
        p = float(psnr_db)
        if math.isnan(p) or p == -math.inf:
            raise ValueError(f"awgn: psnr_db must not be NaN or -inf (use +inf for no noise), got {psnr_db!r}")
        try:
            rel = 0.0 if p == math.inf else 10.0 ** (-p / 20.0)
        except OverflowError:
            rel = math.inf
        if peak is not None or not math.isfinite(rel):
            sigma = (1.0 if peak is None else peak) * rel
            if not math.isfinite(sigma):
                raise ValueError(f"awgn: psnr_db={p} gives an infinite noise std")
            return torch.full((n,), sigma, dtype=torch.float64, device=dev)
        rel = torch.full((n,), rel, dtype=torch.float64, device=dev)
    else:
        raise ValueError(f"awgn: psnr_db must be a float or a tensor of shape (N,), got {type(psnr_db).__name__}")
    if peak is None:
        pk = z.detach().abs().reshape(n, -1).amax(1).to(torch.float64)
        if eager_checks(dev):
            zero = (pk == 0).nonzero().flatten()
            if zero.numel():
                raise ValueError(f"awgn: peak=None but image {int(zero[0])} of z is all zero (its peak is 0, so "
                                 "PSNR is undefined); pass an explicit peak")
        # an all-zero image has no PSNR: NaN sigma, so the kernel outputs NaN for it when not checked above
        sigma = torch.where(pk > 0, pk * rel, torch.full_like(pk, math.nan))
    else:
        sigma = peak * rel
    if eager_checks(dev) and not bool(torch.isfinite(sigma).all()):
        raise ValueError("awgn: psnr_db gives an infinite or NaN noise std (PSNR too low, or z holds NaN/Inf)")
    return sigma


def awgn(z, psnr_db, normalize=True, peak=1.0, generator=None):
    """Noisy channel output for z (N, ...): (z + n) / max(1, sigma_i) (normalize) or z + n.

    psnr_db: float, or tensor of shape (N,) with one PSNR per image (dB; +inf: no noise, exact identity).
    peak: signal peak in the PSNR (default 1.0), or None for max|z| of each image (an all-zero image is then an
    error). generator: torch.Generator for the noise (default: torch's default generator of z's device); each
    call draws one 64-bit key from it. Differentiable w.r.t. z. CPU: float32/64, float16, bfloat16 (noise drawn
    in float32); CUDA: the same, without host synchronisation (also for a tensor psnr_db and peak=None).
    Bad data raise ValueError on the CPU: NaN/Inf in z (checked while reading z), a NaN or -inf psnr_db, an
    all-zero image with peak=None. On CUDA those checks would each synchronise, so they run only with
    PYCOMPGEN_CHECK_FINITE=1; otherwise the kernel propagates NaN: NaN in z stays NaN, and an image whose sigma is
    NaN, infinite or negative comes out all NaN. Arguments that need no data (a float psnr_db, peak, shapes,
    dtypes) are checked on every device.
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"awgn: z must be a tensor, got {type(z).__name__}")
    if z.dim() < 1:
        raise ValueError("awgn: z must have a batch dimension (N, ...), got a 0-D tensor")
    if not z.dtype.is_floating_point:
        raise ValueError(f"awgn: z must be a floating-point tensor, got {z.dtype}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"awgn: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if z.numel() == 0:
        return z.clone()
    if z.device.type != "cpu" and eager_checks(z.device) and not bool(torch.isfinite(z).all()):
        raise ValueError("awgn: z contains NaN or Inf")  # the CPU kernel checks z while it reads it
    sigma = _sigma(z, psnr_db, peak)
    gdev = generator.device if generator is not None else z.device
    seed = torch.randint(0, 2 ** 32, (2,), dtype=torch.int64, device=gdev, generator=generator)
    seed = seed.to(z.device, non_blocking=True)  # a CPU generator for CUDA z: no host sync for the copy
    return torch.ops.compgen.awgn(z, sigma, seed, bool(normalize))
