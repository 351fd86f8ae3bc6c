"""Fused SSIM (Wang et al. 2004) and the Compgen distortion 0.5*(1 - SSIM) on torch.ops.compgen.

The kernels (csrc/cpu/ssim.cpp, csrc/cuda/ssim_kernel.cu) compute the five Gaussian-blurred moments, the SSIM map
and its reduction in one pass, and when a gradient is wanted also the derivative maps that the backward pass
blurs back (transposed) onto x and y.

padding="valid" uses only full windows (output map (H-k+1)x(W-k+1)) and reproduces
pytorch_msssim.ssim(x, y, data_range, size_average=True). padding="same" first pads x and y by window_size//2
with *reflect* padding (torch.nn.functional.pad(mode="reflect")), so the map is HxW; pycompgen.reference.ssim
does the same.

dtypes: float32 and float64 accumulate in their own type, float16 and bfloat16 in float32 (CPU and CUDA). The SSIM
value / map is returned in that accumulation type (float32 for float16 / bfloat16 inputs, as losses are under
autocast), gradients in the input dtype. Gradients are contiguous NCHW whatever the input layout (channels_last,
views): the kernels read and write NCHW planes, and the fake kernels declare exactly that, so torch.compile sees
the strides the kernels produce.
"""
import math
import numbers

import torch
import torch.nn.functional as F

from . import eager_checks

_REDUCTIONS = {"mean": 0, "none": 1, "map": 2}
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _acc(dtype):
    """Accumulation (and SSIM output) dtype of an input dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fwd_fake(x, y, window_size, sigma, c1, c2, reduction, loss, grad_x, grad_y):
    n, c, h, w = x.shape
    ho, wo = h - window_size + 1, w - window_size + 1
    # value / map and derivative maps in the accumulation type (float32 for float16 / bfloat16 inputs), contiguous
    acc = _acc(x.dtype)
    shape = ((), (n,), (n, c, ho, wo))[reduction]
    nd = (int(grad_x) + int(grad_y) + 2) if (grad_x or grad_y) else 0
    return x.new_empty(shape, dtype=acc), x.new_empty((nd, n, c, ho, wo), dtype=acc)


def _bwd_fake(grad, x, y, dmaps, window_size, sigma, reduction, loss, grad_x, grad_y):
    # contiguous NCHW in the input dtype, as the kernels write them (not empty_like: that keeps channels_last)
    dx = x.new_empty(x.shape) if grad_x else x.new_empty((0,))
    dy = y.new_empty(y.shape) if grad_y else y.new_empty((0,))
    return dx, dy


def _setup_context(ctx, inputs, output):
    x, y, window_size, sigma, c1, c2, reduction, loss, grad_x, grad_y = inputs
    _, dmaps = output
    ctx.mark_non_differentiable(dmaps)
    ctx.save_for_backward(x, y, dmaps)
    ctx.args = (window_size, sigma, reduction, loss, grad_x, grad_y)


def _backward(ctx, grad_out, _grad_dmaps):
    x, y, dmaps = ctx.saved_tensors
    window_size, sigma, reduction, loss, grad_x, grad_y = ctx.args
    if not (grad_x or grad_y):
        return (None,) * 10
    gx, gy = torch.ops.compgen.ssim_bwd(grad_out, x, y, dmaps, window_size, sigma, reduction, loss, grad_x, grad_y)
    return (gx if grad_x else None, gy if grad_y else None) + (None,) * 8


def _register():
    torch.library.register_fake("compgen::ssim_fwd")(_fwd_fake)
    torch.library.register_fake("compgen::ssim_bwd")(_bwd_fake)
    torch.library.register_autograd("compgen::ssim_fwd", _backward, setup_context=_setup_context)


_register()


def _check(op, x, y, window_size, sigma, data_range, k1, k2, padding, reduction):
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{op}: x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.dim() != 4 or y.dim() != 4:
        raise ValueError(f"{op}: x and y must be 4-D (N, C, H, W), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"{op}: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.device != y.device:
        raise ValueError(f"{op}: x and y must be on the same device, got {x.device} and {y.device}")
    if x.dtype != y.dtype:
        raise ValueError(f"{op}: x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if x.dtype not in _DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in _DTYPES)
        raise ValueError(f"{op}: dtype {x.dtype} is not supported (supported: {names})")
    if (isinstance(window_size, bool) or not isinstance(window_size, numbers.Integral) or window_size < 1
            or window_size % 2 == 0):
        raise ValueError(f"{op}: window_size must be a positive odd integer, got {window_size!r}")
    h, w = x.shape[-2:]
    if window_size > h or window_size > w:
        raise ValueError(f"{op}: window_size {window_size} is larger than the image ({h}x{w})")
    for name, v in (("sigma", sigma), ("data_range", data_range)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{op}: {name} must be a positive finite number, got {v!r}")
    for name, v in (("k1", k1), ("k2", k2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{op}: {name} must be a non-negative finite number, got {v!r}")
    if padding not in ("valid", "same"):
        raise ValueError(f"{op}: padding must be 'valid' or 'same', got {padding!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'none' or 'map', got {reduction!r}")
    # The CPU kernel detects NaN/Inf itself (non-finite sums) at no extra cost. On CUDA a check costs a device sync:
    # only in debug mode (PYCOMPGEN_CHECK_FINITE=1); otherwise NaN/Inf propagate into the result.
    if x.device.type != "cpu" and eager_checks(x.device):
        for name, t in (("x", x), ("y", y)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{op}: {name} contains NaN or Inf")


def _run(op, loss, x, y, window_size, sigma, data_range, k1, k2, padding, reduction):
    _check(op, x, y, window_size, sigma, data_range, k1, k2, padding, reduction)
    if padding == "same" and window_size > 1:
        p = window_size // 2
        x = F.pad(x, (p, p, p, p), mode="reflect")
        y = F.pad(y, (p, p, p, p), mode="reflect")
    grad_on = torch.is_grad_enabled()
    grad_x = grad_on and x.requires_grad
    grad_y = grad_on and y.requires_grad
    c1 = float((k1 * data_range) ** 2)
    c2 = float((k2 * data_range) ** 2)
    try:
        out, _ = torch.ops.compgen.ssim_fwd(x, y, int(window_size), float(sigma), c1, c2, _REDUCTIONS[reduction],
                                            loss, grad_x, grad_y)
    except RuntimeError as e:
        msg = str(e)
        if "contains NaN or Inf" in msg:
            raise ValueError(f"{op}: " + msg.split("compgen::ssim: ", 1)[-1].splitlines()[0]) from None
        raise
    return out


def ssim(x, y, window_size=11, sigma=1.5, data_range=1.0, k1=0.01, k2=0.03, padding="valid", reduction="mean"):
    """Structural similarity of x and y, both (N, C, H, W), with a Gaussian window (size window_size, std sigma).

    reduction="mean": mean over N, C and the map (scalar); "none": per image (shape N); "map": the SSIM map
    (N, C, H-k+1, W-k+1) for padding="valid", (N, C, H, W) for "same" (reflect padding by window_size//2).
    Gradients flow to whichever of x and y requires grad. float32, float64, float16 and bfloat16 (the last two
    accumulated in float32; the result is then float32, the gradients in the input dtype). Any layout
    (channels_last, views); gradients come back contiguous. An empty batch gives an empty result (NaN for
    reduction="mean"). NaN/Inf in x or y raise ValueError on the CPU; on CUDA they propagate into the result
    unless PYCOMPGEN_CHECK_FINITE=1 (eager check, one device sync).
    """
    return _run("ssim", False, x, y, window_size, sigma, data_range, k1, k2, padding, reduction)


def ssim_loss(x, y, window_size=11, sigma=1.5, data_range=1.0, k1=0.01, k2=0.03, padding="valid",
              reduction="mean"):
    """Compgen distortion d = 0.5*(1 - SSIM), computed in the fused kernel (same arguments as ssim)."""
    return _run("ssim_loss", True, x, y, window_size, sigma, data_range, k1, k2, padding, reduction)
