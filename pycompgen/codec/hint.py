"""Compgen's colour hint (beyond the paper): a tiny RGB thumbnail sent beside the edge map.

The sender averages the face over ``size`` × ``size`` blocks (``thumbnail``), quantises each value to ``bits`` bits
(``quantise``), predicts every value from its decoded neighbours in its own colour plane (LOCO-I's median edge
detector, raster order; G first, then R and B corrected by G's prediction error at the same place) and range-codes
the residuals with quantised Laplace models whose two scales (G; R and B) are chosen per file from ``SCALES``
(their index travels in the header as ``hint_scale``). ``decode_hint`` is bit-exact.

On CelebA validation faces an 8 × 8 hint (192 values) costs ~29 / 41 / 57 bytes at 2 / 3 / 4 bits; the edge-map
file of a 64 × 64 face is ~260 bytes.
"""
from __future__ import annotations

import numpy as np

from .container import bytes_to_words, decodes_safely, seal_stream

SCALES = tuple(round(0.25 * 2 ** (k / 3), 4) for k in range(21))  # Laplace scales 0.25 .. 25.4 (index in header)
MAX_BITS = 8


def check_hint_params(size: int, bits: int, what: str = "colour hint") -> None:
    if not 1 <= int(size) <= 64:
        raise ValueError(f"{what}: size must be in 1..64, got {size}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"{what}: bits must be in 1..{MAX_BITS}, got {bits}")


def thumbnail(x, size: int):
    """Faces x (N,3,H,W) in [0,1] -> block means (N,3,size,size) (H and W divisible by ``size``)."""
    import torch.nn.functional as F
    h, w = x.shape[-2:]
    if h % size or w % size:
        raise ValueError(f"colour hint: {size}x{size} blocks need H and W divisible by {size}, got {h}x{w}")
    return F.avg_pool2d(x.float(), (h // size, w // size))


def levels(bits):
    """2**bits - 1 (the largest code) as a float tensor broadcastable over (N,3,s,s); ``bits`` int or (N,)."""
    import torch
    b = torch.as_tensor(bits, dtype=torch.float32)
    return (2.0 ** b - 1).reshape(-1, 1, 1, 1) if b.dim() else 2.0 ** b - 1


def quantise(t, bits):
    """Thumbnail values in [0,1] -> integer codes 0 .. 2**bits - 1 (int64); ``bits`` an int or one per image."""
    import torch
    lv = levels(bits).to(t.device)
    return torch.round(t.float().clamp(0, 1) * lv).to(torch.int64)


def dequantise(q, bits):
    """Integer codes -> values in [0,1] (float32)."""
    return q.float() / levels(bits).to(q.device)


def quantised_thumbnail(x, size: int, bits):
    """What a receiver decodes: the thumbnail of x quantised at ``bits`` (int or one per image), back in [0,1]."""
    return dequantise(quantise(thumbnail(x, size), bits), bits)


def _med(a: int, b: int, c: int) -> int:
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def _predict(plane: np.ndarray, r: int, c: int, mid: int) -> int:
    if r == 0:
        return mid if c == 0 else int(plane[0, c - 1])
    if c == 0:
        return int(plane[r - 1, 0])
    return _med(int(plane[r, c - 1]), int(plane[r - 1, c]), int(plane[r - 1, c - 1]))


ORDER = (1, 0, 2)  # planes coded G, R, B: R and B are predicted from G's prediction error too


def _residuals(q: np.ndarray, mid: int) -> np.ndarray:
    """Residuals of codes q (N,3,s,s) in coding order: per image G, then R and B whose spatial prediction is
    corrected by G's error at the same position (clipped to the code range)."""
    top = 2 * mid - 1
    out = []
    for img in q:
        g_err = None
        for c in ORDER:
            plane = img[c]
            pred = np.array([[_predict(plane, r, k, mid) for k in range(plane.shape[1])]
                             for r in range(plane.shape[0])], np.int64)
            if g_err is None:
                g_err = plane - pred
                out.append(g_err.ravel())
            else:
                out.append((plane - np.clip(pred + g_err, 0, top)).ravel())
    return np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32)


def _scales(n_images: int, size: int, index: int) -> np.ndarray:
    """Per-residual Laplace scales: ``index`` = i_G + len(SCALES)·i_RB (G's plane, then R and B)."""
    k = len(SCALES)
    per = np.concatenate([np.full(size * size, SCALES[index % k]), np.full(2 * size * size, SCALES[index // k])])
    return np.tile(per, n_images)


def _family(bits: int):
    import constriction
    top = (1 << int(bits)) - 1
    return constriction.stream.model.QuantizedLaplace(-top, top)


def _cost_bits(res: np.ndarray, scale: float, bits: int) -> float:
    """Ideal code length of ``res`` under the quantised Laplace(0, scale) on [-(2**bits - 1), 2**bits - 1]."""
    top = (1 << int(bits)) - 1
    k = np.arange(-top, top + 1, dtype=np.float64)
    tail = lambda v: 0.5 * np.exp(-np.abs(v) / scale)  # noqa: E731
    cdf = lambda v: np.where(v < 0, tail(v), 1 - tail(v))  # noqa: E731
    p = cdf(k + 0.5) - cdf(k - 0.5)
    p[0], p[-1] = cdf(-top + 0.5), 1 - cdf(top - 0.5)
    p = np.maximum(p / p.sum(), 1e-12)
    return float(-np.log2(p[res + top]).sum())


def encode_hint(q, bits: int) -> tuple[bytes, int]:
    """Integer codes (N,3,s,s) (tensor or array) at ``bits`` bits -> (stream bytes, scale index: the G plane's
    and the R/B planes' Laplace scales, ``i_G + len(SCALES)·i_RB``)."""
    import constriction
    q = np.asarray(q.cpu().numpy() if hasattr(q, "cpu") else q, dtype=np.int64)
    bits = int(bits)
    if q.ndim != 4 or q.shape[1] != 3 or q.shape[2] != q.shape[3]:
        raise ValueError(f"colour hint: expects codes of shape (N, 3, s, s), got {q.shape}")
    check_hint_params(q.shape[-1], bits)
    top = (1 << bits) - 1
    if q.min(initial=0) < 0 or q.max(initial=0) > top:
        raise ValueError(f"colour hint: codes must be in 0..{top} for {bits} bits")
    n, size = q.shape[0], q.shape[-1]
    res = _residuals(q, (top + 1) // 2)
    per = res.reshape(n, 3, size * size)
    first, rest = per[:, 0].ravel(), per[:, 1:].ravel()
    i_g = int(np.argmin([_cost_bits(first, s, bits) for s in SCALES]))
    i_rb = int(np.argmin([_cost_bits(rest, s, bits) for s in SCALES]))
    idx = i_g + len(SCALES) * i_rb
    fam = _family(bits)
    means, scales = np.zeros(res.size), _scales(n, size, idx)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(res, fam, means, scales)

    def same(words):
        return decodes_safely(lambda: constriction.stream.queue.RangeDecoder(words).decode(fam, means, scales), res)
    return seal_stream(enc.get_compressed(), same), idx


def decode_hint(data: bytes, n: int, size: int, bits: int, scale_index: int) -> np.ndarray:
    """Inverse of ``encode_hint``: bytes -> int64 codes (n, 3, size, size), bit-exact."""
    import constriction
    n, size, bits, scale_index = int(n), int(size), int(bits), int(scale_index)
    check_hint_params(size, bits)
    if not 0 <= scale_index < len(SCALES) ** 2:
        raise ValueError(f"colour hint: scale index must be in 0..{len(SCALES) ** 2 - 1}, got {scale_index}")
    top = (1 << bits) - 1
    total = n * 3 * size * size
    dec = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
    try:
        res = dec.decode(_family(bits), np.zeros(total), _scales(n, size, scale_index)).astype(np.int64)
    except (AssertionError, ValueError) as e:
        raise ValueError(f"colour-hint stream is corrupted ({e})") from None
    q = np.zeros((n, 3, size, size), np.int64)
    k, mid = 0, (top + 1) // 2
    for img in q:
        g_err = None
        for c in ORDER:
            plane, err = img[c], np.zeros((size, size), np.int64)
            for r in range(size):
                for col in range(size):
                    pred = _predict(plane, r, col, mid)
                    if g_err is not None:
                        pred = min(max(pred + int(g_err[r, col]), 0), top)
                    plane[r, col] = res[k] + pred
                    err[r, col] = res[k]
                    k += 1
            if g_err is None:
                g_err = err
    if q.min(initial=0) < 0 or q.max(initial=0) > top:
        raise ValueError("colour-hint stream is corrupted (a code outside the quantiser's range)")
    return q
