"""Reference Canny edge maps in pure PyTorch (integer arithmetic), documenting pycompgen.ops.canny step by step.

Same definition as the compiled op (see pycompgen/_ops/canny.py): quantise to 8 bits (RGB -> OpenCV fixed-point
luma), optional integer Gaussian blur (reflect-101), Sobel 3x3 with replicated border, OpenCV's thresholds and
non-maximum suppression, hysteresis by repeated 8-neighbour dilation inside the candidate set. Slow; for tests.
"""
import math

import torch
import torch.nn.functional as F

_BLUR_BITS = 14
_MAX_BLUR_RADIUS = 32
_TG22 = 13573  # tan(22.5 deg) in Q15


def gaussian_weights(sigma):
    """Integer Gaussian weights w[0..r] (w[k] at distance k) in Q14 summing to exactly 2**14 (r = 0: no blur)."""
    if not sigma > 0:
        return []
    r = min((int(math.floor(sigma * 6.0 + 1.0 + 0.5)) | 1) // 2, _MAX_BLUR_RADIUS)
    if r == 0:
        return []
    g = [math.exp(-0.5 * (k * k) / (sigma * sigma)) for k in range(r + 1)]
    s = 0.0
    for k, v in enumerate(g):  # same summation order as the kernels
        s += (1.0 if k == 0 else 2.0) * v
    one = float(1 << _BLUR_BITS)
    w = [int(math.floor(v / s * one + 0.5)) for v in g]
    w[0] += (1 << _BLUR_BITS) - (w[0] + 2 * sum(w[1:]))
    return w


def _reflect101(i, n):
    if n == 1:
        return 0
    while i < 0 or i >= n:
        if i < 0:
            i = -i
        if i >= n:
            i = 2 * n - 2 - i
    return i


def quantise(img):
    """img (N, 1|3, H, W) in [0, 1] -> gray levels (N, H, W) int64 in 0..255."""
    x = img.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    q = (x.clamp(0, 1) * 255).round().to(torch.int64)
    if q.shape[1] == 3:
        q = (q[:, 0] * 9798 + q[:, 1] * 19235 + q[:, 2] * 3735 + (1 << 14)) >> 15  # OpenCV's Q15 luma
    else:
        q = q[:, 0]
    return q


def blur(gray, sigma):
    """Integer separable Gaussian blur of gray (N, H, W) int64, reflect-101 border; returns 0..255 int64."""
    w = gaussian_weights(sigma)
    if not w:
        return gray
    r = len(w) - 1
    n, h, wd = gray.shape
    xi = torch.tensor([_reflect101(x, wd) for x in range(-r, wd + r)], device=gray.device)
    yi = torch.tensor([_reflect101(y, h) for y in range(-r, h + r)], device=gray.device)
    g = gray[:, :, xi]
    tmp = sum(w[abs(k)] * g[:, :, r + k:r + k + wd] for k in range(-r, r + 1))
    tmp = (tmp + (1 << 5)) >> 6
    t = tmp[:, yi, :]
    acc = sum(w[abs(k)] * t[:, r + k:r + k + h, :] for k in range(-r, r + 1))
    return (acc + (1 << 21)) >> 22


def thresholds(low, high, l2_gradient):
    """OpenCV's integer magnitude thresholds from thresholds given in 0..1 units (OpenCV units / 255)."""
    lo, hi = low * 255.0, high * 255.0
    if l2_gradient:
        lo, hi = min(32767.0, lo), min(32767.0, hi)
        lo = lo * lo if lo > 0 else lo
        hi = hi * hi if hi > 0 else hi
    return math.floor(lo), math.floor(hi)


def canny(img, low, high, blur_sigma=None, l2_gradient=True):
    """Reference of pycompgen.ops.canny: (N, 1|3, H, W) in [0, 1] -> (N, 1, H, W) in {0, 1} (img's dtype)."""
    n, _, h, w = img.shape
    out_dtype = img.dtype if img.dtype.is_floating_point else torch.float32
    if img.numel() == 0:
        return torch.zeros((n, 1, h, w), dtype=out_dtype, device=img.device)
    g = blur(quantise(img), blur_sigma or 0.0)
    p = F.pad(g[:, None].double(), (1, 1, 1, 1), mode="replicate")[:, 0].to(torch.int64)

    def s(dy, dx):
        return p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    gx = (s(-1, 1) - s(-1, -1)) + 2 * (s(0, 1) - s(0, -1)) + (s(1, 1) - s(1, -1))
    gy = (s(1, -1) + 2 * s(1, 0) + s(1, 1)) - (s(-1, -1) + 2 * s(-1, 0) + s(-1, 1))
    mag = gx * gx + gy * gy if l2_gradient else gx.abs() + gy.abs()
    lo, hi = thresholds(low, high, l2_gradient)

    mp = F.pad(mag, (1, 1, 1, 1))  # magnitude is 0 outside the image

    def m(dy, dx):
        return mp[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # Sector of the gradient direction: |dy| < tan(22.5)|dx| horizontal, > tan(67.5)|dx| vertical, else diagonal.
    ax, ay = gx.abs(), gy.abs() << 15
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    horiz = (mag > m(0, -1)) & (mag >= m(0, 1))
    vert = (mag > m(-1, 0)) & (mag >= m(1, 0))
    same_sign = (gx ^ gy) >= 0
    diag = torch.where(same_sign, (mag > m(-1, -1)) & (mag > m(1, 1)), (mag > m(-1, 1)) & (mag > m(1, -1)))
    peak = torch.where(ay < tg22x, horiz, torch.where(ay > tg67x, vert, diag))
    cand = peak & (mag > lo)
    edge = cand & (mag > hi)

    # Hysteresis: grow the strong edges inside the candidate set until nothing changes.
    cand_f = cand[:, None].float()
    e = edge[:, None].float()
    while True:
        grown = F.max_pool2d(e, 3, stride=1, padding=1) * cand_f
        if torch.equal(grown, e):
            break
        e = grown
    return e.to(out_dtype)
