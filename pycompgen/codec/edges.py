"""Lossless coding of binary edge maps: context-adaptive binary arithmetic coding (JBIG-style) with constriction.

Each pixel is coded in raster order with a Bernoulli model whose probability depends on its *context*, the values
of causal neighbours given by a template (JBIG's three-line template by default: two pixels to the left in the
current row, five in the row above, three two rows above; pixels outside the image count as 0). The estimate
backs off to a *coarse* context (by default the 4 nearest causal neighbours: left, upper-left, up, upper-right),
which learns quickly, so the 1,024 fine contexts need few samples on a 64×64 map. With integer counts (n1 ones
among n pixels seen so far in the context):

    p_c   = (n1_c + δ) / (n_c + 2δ)                 coarse context (δ = delta/16; δ = 1/2: Krichevsky–Trofimov)
    P(1)  = (n1 + α p_c) / (n + α)                  fine context (α = alpha/16)

Both are computed in integer arithmetic and quantised to ``PROB_BITS`` bits (floor, clamped to
[1, 2^PROB_BITS − 1]); constriction's Bernoulli model gets the exactly representable float q / 2^PROB_BITS, so
encoder and decoder use bit-identical models. Counts persist across the images of one stream (a batch adapts once).

The encoder knows every pixel: contexts, counts and probabilities are computed vectorised (numpy) and all symbols
go to the range coder (``constriction.stream.queue``, decode order = encode order) in one call. The decoder is
sequential per pixel; the part of each context that comes from earlier rows is computed per row with numpy.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .container import bytes_to_words, decodes_safely, seal_stream

PROB_BITS = 16
_PSCALE = 1 << PROB_BITS
_DEN = 16                      # delta and alpha are given in 1/16

# Templates: (number of current-row pixels to the left, [(dy, dx), ...] in earlier rows, coarse context bits).
# Context bit j < left is the pixel j + 1 to the left; the earlier-row pixels follow in the listed order; the
# coarse context is made of the listed bits of the fine one.
TEMPLATES: dict[str, tuple[int, tuple[tuple[int, int], ...], tuple[int, ...]]] = {
    # JBIG (ITU-T T.82) three-line template, 10 pixels (the adaptive pixel kept at its default place)
    "jbig3": (2, ((-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (-2, -1), (-2, 0), (-2, 1)), (0, 3, 4, 5)),
    # JBIG two-line template, 10 pixels
    "jbig2": (4, ((-1, -3), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2)), (0, 6, 7, 8)),
    # a 7-pixel three-line template
    "small7": (2, ((-1, -1), (-1, 0), (-1, 1), (-1, 2), (-2, 0)), (0, 2, 3, 4)),
}
# Chosen on 200 CelebA 64x64 validation Canny maps (0.30/0.60): mean 209 bytes vs 221 without back-off.
DEFAULT_TEMPLATE = "jbig3"
DEFAULT_DELTA = 16             # δ = 1
DEFAULT_ALPHA = 96             # α = 6
_DEFAULTS = {"template": DEFAULT_TEMPLATE, "delta": DEFAULT_DELTA, "alpha": DEFAULT_ALPHA}   # part of the format


def coder_params(template: str = DEFAULT_TEMPLATE, delta: int = DEFAULT_DELTA, alpha: int = DEFAULT_ALPHA) -> dict:
    """The parameters a decoder needs, for the container header; values equal to this format's defaults
    (template jbig3, δ = 16/16, α = 96/16, 16-bit probabilities) are left out to keep headers small."""
    _check_params(template, delta, alpha)
    full = {"template": template, "delta": int(delta), "alpha": int(alpha)}
    return {k: v for k, v in full.items() if v != _DEFAULTS[k]}


def params_from_header(params: dict) -> dict:
    """Keyword arguments of ``decode_edges`` from a container's coder parameters (ValueError when unsupported)."""
    if params.get("prob_bits", PROB_BITS) != PROB_BITS or params.get("coder", "cabac") != "cabac":
        raise ValueError(f"unsupported edge coder {params.get('coder', 'cabac')!r} with "
                         f"{params.get('prob_bits')}-bit probabilities (this pycompgen decodes 'cabac', "
                         f"{PROB_BITS}-bit)")
    kw = {k: params.get(k, v) for k, v in _DEFAULTS.items()}
    _check_params(**kw)
    return kw


def _check_params(template: str, delta: int, alpha: int) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"edge coder: unknown template {template!r} (known: {', '.join(sorted(TEMPLATES))})")
    for name, v in (("delta", delta), ("alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= int(v) <= 4096:
            raise ValueError(f"edge coder: {name} must be an integer in 1..4096 (in 1/16), got {v!r}")


def as_edge_array(z: Any) -> np.ndarray:
    """(N,1,H,W), (N,H,W) or (H,W) tensor/array with values in {0, 1} -> uint8 (N, H, W)."""
    if hasattr(z, "detach"):
        z = z.detach().cpu().numpy()
    a = np.asarray(z)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"edge maps must be (N,1,H,W), (N,H,W) or (H,W); got shape {a.shape}")
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    elif a.ndim != 3:
        raise ValueError(f"edge maps must be (N,1,H,W), (N,H,W) or (H,W); got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"edge maps must not be empty; got shape {a.shape}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"edge maps must be bool, integer or float; got dtype {a.dtype}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError("edge maps must hold only 0 and 1 (binary Canny maps); got other values")
    return a.astype(np.uint8)


def _contexts(z: np.ndarray, template: str) -> tuple[np.ndarray, np.ndarray]:
    """Fine and coarse context index of every pixel of z (N, H, W) uint8 -> two int64 arrays (N·H·W,)."""
    left, above, coarse = TEMPLATES[template]
    n, h, w = z.shape
    zp = np.zeros((n, h + 2, w + 8), np.int64)
    zp[:, 2:, 4:4 + w] = z
    ctx = np.zeros((n, h, w), np.int64)
    for j in range(left):
        ctx |= zp[:, 2:, 3 - j:3 - j + w] << j
    for k, (dy, dx) in enumerate(above):
        ctx |= zp[:, 2 + dy:2 + dy + h, 4 + dx:4 + dx + w] << (left + k)
    ctx = ctx.ravel()
    cctx = np.zeros_like(ctx)
    for k, bit in enumerate(coarse):
        cctx |= ((ctx >> bit) & 1) << k
    return ctx, cctx


def _counts_before(ctx: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, n1): pixels and ones seen in the same context before each position (stable sort by context)."""
    m = ctx.size
    order = np.argsort(ctx, kind="stable")
    cs, bs = ctx[order], bits[order]
    idx = np.arange(m)
    start = np.ones(m, bool)
    start[1:] = cs[1:] != cs[:-1]
    gstart = np.maximum.accumulate(np.where(start, idx, 0))
    ones_before = np.cumsum(bs) - bs
    n = np.empty(m, np.int64)
    n1 = np.empty(m, np.int64)
    n[order] = idx - gstart
    n1[order] = ones_before - ones_before[gstart]
    return n, n1


def _coarse_q(n1c, nc, delta: int):
    q = ((_DEN * n1c + delta) << PROB_BITS) // (_DEN * nc + 2 * delta)
    return np.clip(q, 1, _PSCALE - 1)


def _fine_q(n1, n, qc, alpha: int):
    q = ((_DEN * n1 << PROB_BITS) + alpha * qc) // (_DEN * n + alpha)
    return np.clip(q, 1, _PSCALE - 1)


def _adaptive_probs(z: np.ndarray, template: str, delta: int, alpha: int) -> tuple[np.ndarray, np.ndarray]:
    """(bits int32 (M,), P(1) float64 (M,)) in coding order."""
    ctx, cctx = _contexts(z, template)
    bits = z.ravel().astype(np.int64)
    n, n1 = _counts_before(ctx, bits)
    nc, n1c = _counts_before(cctx, bits)
    q = _fine_q(n1, n, _coarse_q(n1c, nc, delta), alpha)
    return bits.astype(np.int32), q.astype(np.float64) / _PSCALE


def encode_edges(z: Any, template: str = DEFAULT_TEMPLATE, delta: int = DEFAULT_DELTA,
                 alpha: int = DEFAULT_ALPHA) -> bytes:
    """Losslessly code binary edge maps z ((N,1,H,W), (N,H,W) or (H,W); bool/uint8/float in {0,1}) -> bytes.

    The stream holds no dimensions: ``decode_edges`` needs n, h, w (the container stores them)."""
    import constriction
    _check_params(template, delta, alpha)
    a = as_edge_array(z)
    bits, p = _adaptive_probs(a, template, int(delta), int(alpha))
    fam = constriction.stream.model.Bernoulli(perfect=False)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(bits, fam, p)

    def same(words):
        return decodes_safely(lambda: constriction.stream.queue.RangeDecoder(words).decode(fam, p), bits)
    return seal_stream(enc.get_compressed(), same)


def decode_edges(data: bytes, n: int, h: int, w: int, template: str = DEFAULT_TEMPLATE, delta: int = DEFAULT_DELTA,
                 alpha: int = DEFAULT_ALPHA) -> np.ndarray:
    """Inverse of ``encode_edges``: bytes -> uint8 (n, 1, h, w) in {0, 1}, bit-exact."""
    import constriction
    _check_params(template, delta, alpha)
    n, h, w = int(n), int(h), int(w)
    if n < 1 or h < 1 or w < 1:
        raise ValueError(f"decode_edges: n, h, w must be >= 1, got {n}, {h}, {w}")
    left, above, coarse = TEMPLATES[template]
    delta, alpha = int(delta), int(alpha)
    dec = constriction.stream.queue.RangeDecoder(bytes_to_words(data))
    bern = constriction.stream.model.Bernoulli
    inv = 1.0 / _PSCALE
    nfine = 1 << (left + len(above))
    coarse_of = [sum(((c >> b) & 1) << k for k, b in enumerate(coarse)) for c in range(nfine)]
    cnt, ones = [0] * nfine, [0] * nfine
    ccnt, cones = [0] * (1 << len(coarse)), [0] * (1 << len(coarse))
    qc = [int(_coarse_q(0, 0, delta))] * (1 << len(coarse))
    lmask = (1 << left) - 1
    cnum0, cden0, top = delta << PROB_BITS, 2 * delta, _PSCALE - 1
    out = np.zeros((n, 1, h, w), np.uint8)
    zp = np.zeros((h + 2, w + 8), np.int64)
    shifts = [(2 + dy, 4 + dx, left + k) for k, (dy, dx) in enumerate(above)]
    try:
        for i in range(n):
            zp[:] = 0
            for r in range(h):
                base = np.zeros(w, np.int64)
                for y0, x0, s in shifts:
                    base |= zp[y0 + r, x0:x0 + w] << s
                row = [0] * w
                cur = 0
                for c, b0 in enumerate(base.tolist()):
                    ctx = b0 | cur
                    cc = coarse_of[ctx]
                    k = cnt[ctx]
                    o = ones[ctx]
                    q = ((_DEN * o << PROB_BITS) + alpha * qc[cc]) // (_DEN * k + alpha)
                    bit = dec.decode(bern((1 if q < 1 else top if q > top else q) * inv, perfect=False))
                    cnt[ctx] = k + 1
                    kc = ccnt[cc] + 1
                    ccnt[cc] = kc
                    oc = cones[cc]
                    if bit:
                        ones[ctx] = o + 1
                        oc += 1
                        cones[cc] = oc
                        row[c] = 1
                        cur = ((cur << 1) | 1) & lmask
                    else:
                        cur = (cur << 1) & lmask
                    q = ((_DEN * oc << PROB_BITS) + cnum0) // (_DEN * kc + cden0)
                    qc[cc] = 1 if q < 1 else top if q > top else q
                zp[2 + r, 4:4 + w] = row
            out[i, 0] = zp[2:, 4:4 + w]
    except AssertionError as e:  # constriction rejects data that no model state could have produced
        raise ValueError(f"edge stream is corrupted ({e})") from None
    return out


# -- baselines -----------------------------------------------------------------------------------------------
def _tiff_strip_bytes(tif: bytes) -> int:
    """Sum of StripByteCounts (tag 279) of the first IFD of a classic TIFF: the coded data without the container."""
    bo = {b"II": "<", b"MM": ">"}.get(tif[:2])
    if bo is None or struct.unpack(bo + "H", tif[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    (ifd,) = struct.unpack(bo + "I", tif[4:8])
    (count,) = struct.unpack(bo + "H", tif[ifd:ifd + 2])
    sizes = {3: 2, 4: 4}
    for e in range(count):
        tag, typ, num, val = struct.unpack(bo + "HHI4s", tif[ifd + 2 + 12 * e:ifd + 14 + 12 * e])
        if tag == 279:
            fmt = bo + ("H" if typ == 3 else "I") * num
            nb = sizes[typ] * num
            raw = val[:nb] if nb <= 4 else tif[struct.unpack(bo + "I", val)[0]:][:nb]
            return int(sum(struct.unpack(fmt, raw)))
    raise ValueError("TIFF has no StripByteCounts")


def edge_baselines(z: Any, check: bool = True) -> dict[str, int]:
    """Sizes in bytes of other lossless bilevel codings of the same edge maps (summed over the batch).

    - ``raw_1bit``: ``np.packbits`` per row;
    - ``png_1bit``: 1-bit grayscale PNG (OpenCV, ``IMWRITE_PNG_BILEVEL``, zlib level 9);
    - ``ccitt_g3`` / ``ccitt_g4``: CCITT T.4 / T.6 (fax Group 3 / 4) strips written by libtiff through
      ``imagecodecs.tiff_encode`` (coded bytes only, without the TIFF container); ``tiff_g4`` the whole file;
    - ``webp_lossless``, ``jpegxl_lossless`` (imagecodecs) on the 8-bit 0/255 map.

    imagecodecs has no JBIG/JBIG2 encoder and its raw ``ccittfax*_encode`` are not implemented, hence TIFF.
    With ``check`` every coding is decoded again and compared bit-exactly (ValueError when one differs).
    """
    import cv2
    import imagecodecs
    a = as_edge_array(z)
    out: dict[str, int] = {}

    def add(name, nbytes, decoded=None, ref=None):
        out[name] = out.get(name, 0) + int(nbytes)
        if check and decoded is not None and not np.array_equal(np.asarray(decoded), ref):
            raise ValueError(f"edge_baselines: {name} did not round-trip bit-exactly")

    for m in a:
        b = m.astype(bool)
        u8 = m * np.uint8(255)
        add("raw_1bit", np.packbits(b, axis=-1).nbytes, np.unpackbits(np.packbits(b, axis=-1), axis=-1,
                                                                       count=b.shape[1]).astype(bool), b)
        ok, png = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError("edge_baselines: OpenCV could not encode a 1-bit PNG")
        add("png_1bit", png.nbytes, cv2.imdecode(png, cv2.IMREAD_UNCHANGED) > 0, b)
        for name, comp in (("ccitt_g3", "ccittfax3"), ("ccitt_g4", "ccittfax4")):
            tif = imagecodecs.tiff_encode(b, compression=comp, bitspersample=1, photometric="miniswhite",
                                          rowsperstrip=b.shape[0])
            dec = imagecodecs.tiff_decode(tif)
            add(name, _tiff_strip_bytes(tif), dec, b)
            if name == "ccitt_g4":
                add("tiff_g4", len(tif))
        enc = imagecodecs.webp_encode(np.repeat(u8[..., None], 3, -1), lossless=True, level=100)
        add("webp_lossless", len(enc), imagecodecs.webp_decode(enc)[..., 0] > 127, b)
        enc = imagecodecs.jpegxl_encode(u8, lossless=True, effort=9)
        add("jpegxl_lossless", len(enc), imagecodecs.jpegxl_decode(enc) > 127, b)
    return out
