"""Compgen's colour hint (beyond the paper): a tiny RGB thumbnail sent beside the edge map.

The sender averages the face over ``size`` × ``size`` blocks (``thumbnail``), quantises each value to ``bits`` bits
(``quantise``), predicts every value from its decoded neighbours in its own colour plane (LOCO-I's median edge
detector, raster order; G first, then R and B corrected by G's prediction error at the same place) and range-codes
the residuals with quantised Laplace models whose two scales (G; R and B) are chosen per file from ``SCALES``
(their index travels in the header as ``hint_scale``). ``decode_hint`` is bit-exact.

Two colour spaces (``model.hint_space``, header ``hint_space``):

- ``rgb``: R, G, B block means at s × s, each at ``bits`` bits (as above).
- ``ycocg420``: luma Y = (R + 2G + B)/4 at s × s and ``bits`` bits; chroma Co = (R − B)/2 and Cg = (2G − R − B)/4 at
  s/2 × s/2 (JPEG's 4:2:0) with ``max(bits − 1, 1)`` bits, on a mid-tread quantiser over ±``CHROMA_RANGE`` (faces'
  chroma is small: the full ±0.5 would spend most levels on colours faces do not have; neutral grey is a code).
  Each plane is predicted by the median edge detector and range-coded with its own Laplace scale (Y; Co and Cg
  share one). The receiver upsamples the chroma bilinearly and gives h the RGB s × s thumbnail, so h's input is the
  same in both spaces. On CelebA validation faces a 16 × 16 hint costs ~102 bytes at 4 bits (RGB: 142 at 3 bits)
  and carries more: bicubic upsampling of it alone scores SSIM 0.67 against RGB's 0.64.

On CelebA validation faces an 8 × 8 RGB hint (192 values) costs ~29 / 41 / 57 bytes at 2 / 3 / 4 bits; the edge-map
file of a 64 × 64 face is ~260 bytes.
"""
from __future__ import annotations

import numpy as np

from .container import bytes_to_words, decodes_safely, seal_stream

SCALES = tuple(round(0.25 * 2 ** (k / 3), 4) for k in range(21))  # Laplace scales 0.25 .. 25.4 (index in header)
MAX_BITS = 8
SPACES = ("rgb", "ycocg420")
CHROMA_RANGE = 1 / 6  # ycocg420: chroma coded over [-1/6, 1/6], clipped (4.7 % of CelebA validation block means)


def check_hint_params(size: int, bits: int, what: str = "colour hint", space: str = "rgb") -> None:
    _check_space(space, what)
    if not 1 <= int(size) <= 64 or (space == "ycocg420" and int(size) % 2):
        raise ValueError(f"{what}: size must be in 1..64" + (" and even for ycocg420" if space == "ycocg420" else "")
                         + f", got {size}")
    if not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"{what}: bits must be in 1..{MAX_BITS}, got {bits}")


def _check_space(space: str, what: str = "colour hint") -> None:
    if space not in SPACES:
        raise ValueError(f"{what}: colour space must be one of {', '.join(SPACES)}, got {space!r}")


def chroma_bits(bits):
    """ycocg420's chroma bits for luma ``bits`` (an int or a tensor, one per image): max(bits - 1, 1)."""
    return max(int(bits) - 1, 1) if isinstance(bits, int) else (bits - 1).clamp(min=1)


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


def quantised_thumbnail(x, size: int, bits, space: str = "rgb"):
    """What a receiver decodes: the thumbnail of x quantised at ``bits`` (int or one per image), back in [0,1]."""
    return planes_to_rgb(plane_values(hint_codes(x, size, bits, space), bits, space), space)


# -- ycocg420 planes ---------------------------------------------------------------------------------------------
def _chroma_half(bits):
    """ycocg420's mid-tread chroma quantiser: codes 0 .. 2·half, neutral grey at ``half`` = 2**(cb - 1) - 1."""
    import torch
    cb = chroma_bits(bits)
    half = (2.0 ** (torch.as_tensor(cb, dtype=torch.float32) - 1) - 1)
    return half.reshape(-1, 1, 1, 1) if half.dim() else half


def hint_codes(x, size: int, bits, space: str = "rgb") -> list:
    """Faces x (N,3,H,W) in [0,1] -> the integer code planes a file carries: rgb [(N,3,s,s)]; ycocg420
    [Y (N,1,s,s), (Co, Cg) (N,2,s/2,s/2)]. ``bits``: an int or one per image."""
    import torch
    import torch.nn.functional as F
    _check_space(space)
    if space == "rgb":
        return [quantise(thumbnail(x, size), bits)]
    check_hint_params(size, 1, space=space)
    t = thumbnail(x, size)
    r, g, b = t[:, 0:1], t[:, 1:2], t[:, 2:3]
    y = (r + 2 * g + b) / 4
    c = F.avg_pool2d(torch.cat([(r - b) / 2, (2 * g - r - b) / 4], 1), 2)
    half = _chroma_half(bits).to(x.device)
    cq = torch.round(c.clamp(-CHROMA_RANGE, CHROMA_RANGE) * (half / CHROMA_RANGE)) + half
    return [quantise(y, bits), cq.to(torch.int64)]


def plane_values(codes: list, bits, space: str = "rgb") -> list:
    """Code planes -> their values in [0,1], what the analog channel carries: rgb [(N,3,s,s)]; ycocg420 [Y, (Co, Cg)
    with ±CHROMA_RANGE mapped to [0,1] (neutral 0.5), so the channel's noise treats luma and chroma alike]."""
    import torch
    if space == "rgb":
        return [dequantise(codes[0], bits)]
    half = _chroma_half(bits).to(codes[1].device)
    c = torch.where(half > 0, codes[1].float() / (2 * half).clamp(min=1), torch.tensor(0.5, device=codes[1].device))
    return [dequantise(codes[0], bits), c]


def planes_to_rgb(planes: list, space: str = "rgb"):
    """Plane values -> the RGB s×s thumbnail h takes (ycocg420: chroma upsampled bilinearly, clipped to [0,1])."""
    import torch
    import torch.nn.functional as F
    if space == "rgb":
        return planes[0]
    y, c = planes
    c = F.interpolate((c - 0.5) * (2 * CHROMA_RANGE), size=y.shape[-2:], mode="bilinear", align_corners=False)
    co, cg = c[:, 0:1], c[:, 1:2]
    return torch.cat([y - cg + co, y + cg, y - cg - co], 1).clamp(0, 1)


def _med(a: int, b: int, c: int) -> int:
    if c >= max(a, b):
        return min(a, b)
    if c <= min(a, b):
        return max(a, b)
    return a + b - c


def _predictions(plane: np.ndarray, mid: int) -> np.ndarray:
    """MED predictions of every value of a code plane (s, s) from its causal neighbours, raster order."""
    return np.array([[_predict(plane, r, k, mid) for k in range(plane.shape[1])] for r in range(plane.shape[0])],
                    np.int64)


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
            pred = _predictions(plane, mid)
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
    return _laplace((1 << int(bits)) - 1)


def _cost_bits(res: np.ndarray, scale: float, bits: int, top: int | None = None) -> float:
    """Ideal code length of ``res`` under the quantised Laplace(0, scale) on [-top, top] (default 2**bits - 1)."""
    top = (1 << int(bits)) - 1 if top is None else int(top)
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


def _plane_residuals(planes: np.ndarray, start: int) -> np.ndarray:
    """MED residuals of code planes (M, s, s), each on its own, raster order (``start`` predicts the first value)."""
    out = [(p - _predictions(p, start)).ravel() for p in planes]
    return np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32)


def _ycocg_layout(bits: int) -> tuple[int, int, int]:
    """(luma top code, chroma top code, chroma neutral code) of ycocg420 at ``bits``."""
    half = (1 << (chroma_bits(int(bits)) - 1)) - 1
    return (1 << int(bits)) - 1, 2 * half, half


def _laplace(top: int):
    import constriction
    return constriction.stream.model.QuantizedLaplace(-top, top)


def _best_scale(res: np.ndarray, top: int) -> int:
    return int(np.argmin([_cost_bits(res, sc, 0, top) for sc in SCALES]))


def encode_hint_planes(codes: list, bits: int, space: str = "rgb") -> tuple[bytes, int]:
    """``hint_codes``' planes -> (stream bytes, scale index). rgb: ``encode_hint``. ycocg420: Y's MED residuals,
    then Co's and Cg's (none at 1 chroma bit), with Laplace scales ``i_Y + len(SCALES)·i_C``."""
    import constriction
    _check_space(space)
    if space == "rgb":
        return encode_hint(codes[0], bits)
    bits = int(bits)
    y, c = (np.asarray(t.cpu().numpy() if hasattr(t, "cpu") else t, dtype=np.int64) for t in codes)
    if y.ndim != 4 or y.shape[1] != 1 or c.shape != (y.shape[0], 2, y.shape[2] // 2, y.shape[3] // 2):
        raise ValueError(f"colour hint: ycocg420 expects planes (N,1,s,s) and (N,2,s/2,s/2), got {y.shape}, {c.shape}")
    check_hint_params(y.shape[-1], bits, space=space)
    ytop, ctop, mid_c = _ycocg_layout(bits)
    if y.min(initial=0) < 0 or y.max(initial=0) > ytop or c.min(initial=0) < 0 or c.max(initial=0) > ctop:
        raise ValueError(f"colour hint: codes outside 0..{ytop} (luma) / 0..{ctop} (chroma) for {bits} bits")
    ry = _plane_residuals(y.reshape(-1, *y.shape[2:]), (ytop + 1) // 2)
    rc = _plane_residuals(c.reshape(-1, *c.shape[2:]), mid_c) if ctop else np.zeros(0, np.int32)
    i_y = _best_scale(ry, ytop)
    i_c = _best_scale(rc, ctop) if ctop else 0
    parts = [(ry, _laplace(ytop), np.full(ry.size, SCALES[i_y]))]
    if ctop:
        parts.append((rc, _laplace(ctop), np.full(rc.size, SCALES[i_c])))
    enc = constriction.stream.queue.RangeEncoder()
    for res, fam, sc in parts:
        enc.encode(res, fam, np.zeros(res.size), sc)

    def same(words):
        def run():
            dec = constriction.stream.queue.RangeDecoder(words)
            return np.concatenate([dec.decode(fam, np.zeros(res.size), sc) for res, fam, sc in parts])
        return decodes_safely(run, np.concatenate([p[0] for p in parts]))
    return seal_stream(enc.get_compressed(), same), i_y + len(SCALES) * i_c


def _unpredict(res: np.ndarray, m: int, size: int, start: int) -> np.ndarray:
    planes = np.zeros((m, size, size), np.int64)
    k = 0
    for p in planes:
        for r in range(size):
            for col in range(size):
                p[r, col] = res[k] + _predict(p, r, col, start)
                k += 1
    return planes


def decode_hint_planes(data: bytes, n: int, size: int, bits: int, scale_index: int, space: str = "rgb") -> list:
    """Inverse of ``encode_hint_planes``: bytes -> int64 code planes, bit-exact."""
    import torch
    _check_space(space)
    if space == "rgb":
        return [torch.from_numpy(decode_hint(data, n, size, bits, scale_index))]
    import constriction
    n, size, bits, scale_index = int(n), int(size), int(bits), int(scale_index)
    check_hint_params(size, bits, space=space)
    if not 0 <= scale_index < len(SCALES) ** 2:
        raise ValueError(f"colour hint: scale index must be in 0..{len(SCALES) ** 2 - 1}, got {scale_index}")
    ytop, ctop, mid_c = _ycocg_layout(bits)
    k = len(SCALES)
    half = size // 2
    dec = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
    try:
        ry = dec.decode(_laplace(ytop), np.zeros(n * size * size), np.full(n * size * size, SCALES[scale_index % k]))
        m = 2 * n * half * half
        rc = dec.decode(_laplace(ctop), np.zeros(m), np.full(m, SCALES[scale_index // k])) if ctop else \
            np.zeros(m, np.int64)
    except (AssertionError, ValueError) as e:
        raise ValueError(f"colour-hint stream is corrupted ({e})") from None
    y = _unpredict(ry.astype(np.int64), n, size, (ytop + 1) // 2).reshape(n, 1, size, size)
    c = (_unpredict(rc.astype(np.int64), 2 * n, half, mid_c) if ctop else
         np.zeros((2 * n, half, half), np.int64)).reshape(n, 2, half, half)
    if y.min(initial=0) < 0 or y.max(initial=0) > ytop or c.min(initial=0) < 0 or c.max(initial=0) > ctop:
        raise ValueError("colour-hint stream is corrupted (a code outside the quantiser's range)")
    return [torch.from_numpy(y), torch.from_numpy(c)]
