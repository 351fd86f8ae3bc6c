"""Canny edge maps (Canny 1986) on torch.ops.compgen, equal to OpenCV's cv2.Canny on the quantised image.

Pipeline (csrc/cpu/canny.cpp, csrc/cuda/canny_kernel.cu), in integer arithmetic:
  1. quantise to 8 bits, u8 = round(clamp(img, 0, 1) * 255) (ties to even, as torch.round); RGB input is first
     quantised per channel, then converted to luma with OpenCV's fixed-point RGB2GRAY weights
     (0.299, 0.587, 0.114 in Q15), exactly as cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY);
  2. optional Gaussian pre-blur (blur_sigma > 0): kernel size round(6 sigma + 1) | 1 as OpenCV picks it for 8-bit
     images, integer weights (Q14), reflect-101 border, result rounded back to 8 bits (close to, not bit-equal with,
     cv2.GaussianBlur);
  3. Sobel 3x3 with replicated border, magnitude |dx| + |dy| or dx^2 + dy^2 (l2_gradient);
  4. non-maximum suppression along the gradient direction (4 sectors), hysteresis with 8-connectivity.
Thresholds are in OpenCV's units divided by 255 (low=50/255 means cv2.Canny(..., 50, ...)); with blur off and
img = u8 / 255 the result equals cv2.Canny(u8, low * 255, high * 255, L2gradient=l2_gradient).

Not differentiable: an edge map is piecewise constant in img (zero derivative almost everywhere), so the output
never requires grad.
"""
import math
import numbers

import torch

_MAX_BLUR_SIGMA = 10.0


def _fake(img, low, high, blur_sigma, l2_gradient):
    torch._check(img.dim() == 4, lambda: f"canny: img must be 4-D, got {img.dim()}-D")
    torch._check(img.shape[1] in (1, 3), lambda: f"canny: img must have 1 or 3 channels, got {img.shape[1]}")
    return img.new_empty((img.shape[0], 1, img.shape[2], img.shape[3]))


torch.library.register_fake("compgen::canny")(_fake)


def _check_number(name, v, upper=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"canny: {name} must be a finite number >= 0, got {v!r}")
    if upper is not None and v > upper:
        raise ValueError(f"canny: {name} must be <= {upper}, got {v!r}")
    return float(v)


def canny(img, low, high, blur_sigma=None, l2_gradient=True):
    """Canny edge map of img (N, 1, H, W) gray or (N, 3, H, W) RGB, values in [0, 1] (clamped).

    low, high: hysteresis thresholds in OpenCV units / 255 (0 <= low <= high). blur_sigma: std of an optional
    Gaussian pre-blur in pixels (None or 0: off, at most 10). l2_gradient: magnitude sqrt(dx^2 + dy^2) instead of
    |dx| + |dy|. Returns (N, 1, H, W) in {0, 1} with img's dtype; never requires grad. CPU: float32/64, float16,
    bfloat16; CUDA: the same (computed on 8-bit values, so the dtype does not change the result), without host
    synchronisation.
    Raises ValueError for a wrong rank/channel count, a non-float dtype, negative or non-finite thresholds,
    low > high, or blur_sigma outside [0, 10]; and for NaN/Inf in img on the CPU. On CUDA an image holding NaN/Inf
    comes out all NaN instead (checking would synchronise), unless PYCOMPGEN_CHECK_FINITE=1, which raises the same
    ValueError after one synchronisation.
    """
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"canny: img must be a tensor, got {type(img).__name__}")
    if img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"canny: img must be (N, 1, H, W) or (N, 3, H, W), got shape {tuple(img.shape)}")
    if not img.dtype.is_floating_point:
        raise ValueError(f"canny: img must be a floating-point tensor with values in [0, 1], got {img.dtype}")
    low = _check_number("low", low)
    high = _check_number("high", high)
    if low > high:
        raise ValueError(f"canny: low threshold must be <= high threshold, got low={low} high={high}")
    sigma = 0.0 if blur_sigma is None else _check_number("blur_sigma", blur_sigma, _MAX_BLUR_SIGMA)
    return torch.ops.compgen.canny(img.detach(), low, high, sigma, bool(l2_gradient))
