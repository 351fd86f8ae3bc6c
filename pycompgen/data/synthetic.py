"""Deterministic synthetic faces (tests, demo, figures): ellipse heads with hair, eyes, brows, nose, mouth,
skin tones, a lighting gradient and varied backgrounds. Vectorised over the batch (numpy, float32)."""
from __future__ import annotations

import numpy as np

_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [160, 104, 70],
                  [120, 76, 50], [92, 58, 40]], np.float32) / 255.0
_HAIR = np.array([[20, 16, 14], [55, 38, 28], [95, 64, 40], [150, 110, 70], [205, 170, 110], [170, 80, 40],
                  [150, 150, 150], [225, 225, 220]], np.float32) / 255.0
_IRIS = np.array([[60, 40, 25], [95, 65, 35], [70, 110, 150], [80, 120, 80], [40, 30, 25]], np.float32) / 255.0


def _col(p):  # (B,) -> (B,1,1) for broadcasting against (B,H,W)
    return p.reshape(-1, 1, 1)


def _ellipse(u, v, cx, cy, a, b, rot, px):
    """Soft (anti-aliased) mask of an ellipse rotated by `rot` (None: axis-aligned); px = pixel size."""
    du, dv = u - _col(cx), v - _col(cy)
    if rot is not None:
        c, s = _col(np.cos(rot)), _col(np.sin(rot))
        du, dv = du * c + dv * s, dv * c - du * s
    du *= _col(1.0 / a)
    dv *= _col(1.0 / b)
    du *= du
    dv *= dv
    du += dv
    r = np.sqrt(du, out=du)
    r -= 1.0
    r *= _col(-np.minimum(a, b) / px)  # -(approximate signed distance) in pixels
    r += 0.5
    return np.clip(r, 0.0, 1.0, out=r)


def _textured(color, u, v, amp, freq, ang, ph):
    """Per-pixel colour (3,B,H,W): color (B,3) modulated by oriented stripes (hair strands, fabric)."""
    t = 1.0 + _col(amp) * np.sin(_col(freq) * (u * _col(np.cos(ang)) + v * _col(np.sin(ang))) + _col(ph))
    return np.stack([_col(color[:, c]) * t for c in range(3)])


def _blend(img, mask, color):
    """img (3,B,H,W) <- mask (B,H,W) * color (B,3) or (3,B,H,W) over img (in place, channel planes for locality)."""
    for c in range(3):
        t = (_col(color[:, c]) if color.ndim == 2 else color[c]) - img[c]
        t *= mask
        img[c] += t


def _feature(img, u, v, cx, cy, a, b, rot, px, color, alpha=1.0, under=None, v_margin=0.0):
    """Blend a small soft ellipse into img (3,B,H,W), computing only inside the union of the faces' bounding boxes
    (the mask is exactly 0 outside them). under: optional (B,H,W) multiplier; v_margin: extra rows (per face)."""
    size = img.shape[-1]
    r = np.maximum(a, b) * (1.0 + 0.6 * px / np.minimum(a, b)) + px
    rv = r + v_margin

    def span(c, rr):
        lo = int(np.floor((float((c - rr).min()) + 1.0) / px)) - 1
        hi = int(np.ceil((float((c + rr).max()) + 1.0) / px)) + 1
        return max(lo, 0), min(hi, size)

    r0, r1 = span(cy, rv)
    c0, c1 = span(cx, r)
    if r0 >= r1 or c0 >= c1:
        return
    m = _ellipse(u[..., r0:r1, c0:c1], v[..., r0:r1, c0:c1], cx, cy, a, b, rot, px)
    if not np.isscalar(alpha) or alpha != 1.0:
        m *= alpha
    if under is not None:
        m *= under[..., r0:r1, c0:c1]
    _blend(img[:, :, r0:r1, c0:c1], m, color)


def _faces_chunk(rng, n, size):
    px = 2.0 / size
    g = (np.arange(size, dtype=np.float32) + 0.5) * px - 1.0
    v, u = np.meshgrid(g, g, indexing="ij")  # v: down, u: right, both in [-1, 1]
    u, v = u[None], v[None]
    f32 = np.float32

    def U(lo, hi):
        return rng.uniform(lo, hi, n).astype(f32)

    def pick(table):
        i = rng.integers(0, len(table), n)
        return table[i] * U(0.85, 1.1)[:, None]

    # background: linear gradient between two colours plus soft stripes or blobs
    c0, c1 = rng.uniform(0.1, 0.95, (n, 3)).astype(f32), rng.uniform(0.1, 0.95, (n, 3)).astype(f32)
    th = U(0, 2 * np.pi)
    gray = U(0.3, 0.8)[:, None]
    c0, c1 = c0 * (1 - gray) + gray * c0.mean(1, keepdims=True), c1 * (1 - gray) + gray * c1.mean(1, keepdims=True)
    t = np.clip(0.5 + 0.5 * (u * _col(np.cos(th)) + v * _col(np.sin(th))), 0, 1)
    freq, amp, ph = U(1.5, 12.0), U(0.0, 0.12) * (rng.random(n) < 0.6), U(0, 2 * np.pi)
    wav = _col(amp) * np.sin(_col(freq) * (u * _col(np.sin(th)) - v * _col(np.cos(th))) * np.pi + _col(ph))
    img = np.stack([_col(c0[:, c]) + (_col(c1[:, c]) - _col(c0[:, c])) * t + wav for c in range(3)])

    # geometry of the head
    cx, cy = U(-0.08, 0.08), U(-0.02, 0.12)
    a, b = U(0.46, 0.58), U(0.6, 0.74)
    rot = U(-0.12, 0.12)
    skin, hair = pick(_SKIN), pick(_HAIR)
    clothes = rng.uniform(0.05, 0.9, (n, 3)).astype(f32)

    # shoulders / clothes
    cloth_tex = _textured(clothes, u, v, U(0, 0.35) * (rng.random(n) < 0.5), U(10, 30), U(0, np.pi), U(0, 6.3))
    _blend(img, _ellipse(u, v, cx, cy + b + U(0.45, 0.6), U(0.8, 1.1), U(0.45, 0.6), None, px), cloth_tex)

    # hair behind the head (long hair for some faces)
    long_hair = rng.random(n) < 0.45
    hb = np.where(long_hair, b * U(1.15, 1.45), b * U(0.95, 1.05)).astype(f32)
    hair_back = _ellipse(u, v, cx, cy - 0.08 + np.where(long_hair, 0.25 * b, 0.0).astype(f32),
                         a * U(1.08, 1.25), hb, rot, px)
    hair_back *= np.where(long_hair[:, None, None], 1.0, (v < _col(cy + 0.1 * b)).astype(f32))
    hair_tex = _textured(hair, u, v, U(0.12, 0.3), U(30, 55), U(-0.5, 0.5), U(0, 6.3))
    _blend(img, hair_back, hair_tex)
    # neck
    neck = (np.abs(u - _col(cx)) < _col(a * U(0.45, 0.6))) & (v > _col(cy)) & (v < _col(cy + b + 0.3))
    _blend(img, neck.astype(f32), skin * 0.85)

    # face
    head = _ellipse(u, v, cx, cy, a, b, rot, px)
    _blend(img, head, skin)
    # ears
    for sgn in (-1.0, 1.0):
        _feature(img, u, v, cx + sgn * a * 0.98, cy + 0.05, a * 0.14, b * 0.2, None, px, skin * 0.95,
                 under=1 - head)

    # hair on top: fringe bounded by a wavy hairline
    hl = cy - b * U(0.35, 0.6)
    wave = _col(U(0.0, 0.06)) * np.sin(u * _col(U(3, 9)) + _col(U(0, 6.3)))
    side = _col(U(-0.25, 0.25))  # parting offset: hairline slopes
    hairline = _col(hl) + wave + side * (u - _col(cx))
    fringe = _ellipse(u, v, cx, cy - 0.02, a * 1.06, b * 1.04, rot, px)
    fringe *= np.clip(0.5 - (v - hairline) / px, 0, 1)
    bald = rng.random(n) < 0.06
    fringe *= (~bald)[:, None, None]
    _blend(img, fringe, hair_tex)

    # eyes, irises, brows
    ey = cy - b * U(0.02, 0.14)
    ex = a * U(0.33, 0.43)
    ew, eh = a * U(0.14, 0.2), b * U(0.05, 0.085)
    iris = pick(_IRIS)
    gaze = U(-0.3, 0.3)
    by = ey - b * U(0.14, 0.22)
    brow_col = np.clip(hair * 0.8, 0, 1)
    brow_th = U(0.06, 0.14)
    for sgn in (-1.0, 1.0):
        exs = cx + sgn * ex
        _feature(img, u, v, exs, ey, ew, eh, None, px, np.full((n, 3), 0.95, f32))
        _feature(img, u, v, exs + gaze * ew * 0.4, ey, eh * 0.95, eh * 0.95, None, px, iris)
        _feature(img, u, v, exs + gaze * ew * 0.4, ey, eh * 0.45, eh * 0.45, None, px, np.full((n, 3), 0.05, f32))
        _feature(img, u, v, exs, by, ew * U(1.1, 1.4), b * brow_th * 0.3, sgn * U(-0.25, 0.1), px, brow_col)

    # nose: shaded ridge and nostrils
    ny = cy + b * U(0.18, 0.3)
    _feature(img, u, v, cx + a * 0.06, (ey + ny) / 2, a * 0.05, (ny - ey) / 2 + 0.02, rot, px, skin * 0.7,
             alpha=0.35)
    for sgn in (-1.0, 1.0):
        _feature(img, u, v, cx + sgn * a * 0.1, ny, a * 0.055, b * 0.03, None, px, skin * 0.35, alpha=0.8)

    # mouth: curved lips with a dark parting line (smile curvature varies)
    my = cy + b * U(0.48, 0.6)
    mw = a * U(0.3, 0.45)
    curv = U(-0.6, 1.2)
    vv = v - _col(curv) * (u - _col(cx)) ** 2 / _col(mw) * 0.5
    lips = pick(np.array([[180, 80, 80], [150, 70, 70], [200, 110, 110], [120, 60, 55]], np.float32) / 255.0)
    mh = b * U(0.05, 0.09)
    bend = np.abs(curv) * (mw * (1.0 + 0.6 * px / np.minimum(mw, mh)) + px) ** 2 / mw * 0.5  # row shift of vv
    _feature(img, u, vv, cx, my, mw, mh, None, px, lips, v_margin=bend)
    _feature(img, u, vv, cx, my, mw * 0.95, b * 0.012 + px * 0.3, None, px, lips * 0.35, v_margin=bend * 1.5)

    # lighting gradient over everything, slight vignette, sensor noise
    lt = U(0, 2 * np.pi)
    light = 1.0 + _col(U(0.1, 0.35)) * (u * _col(np.cos(lt)) + v * _col(np.sin(lt)))
    light *= 1.0 - 0.15 * (u ** 2 + v ** 2) * _col(U(0, 1))
    img *= light * _col(U(0.8, 1.15) * 255.0)
    img += rng.standard_normal(img.shape, dtype=f32) * (0.012 * 255.0) + 0.5
    return np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def synthetic_faces(n: int, image_size: int = 64, seed: int = 0) -> np.ndarray:
    """`n` synthetic RGB faces, uint8 (n, image_size, image_size, 3); the same (n, size, seed) gives the same array,
    and the first k faces do not depend on n."""
    n, image_size = int(n), int(image_size)
    if n < 0:
        raise ValueError(f"synthetic_faces: n must be >= 0, got {n}")
    if image_size < 8:
        raise ValueError(f"synthetic_faces: image_size must be >= 8, got {image_size}")
    out = np.empty((n, image_size, image_size, 3), np.uint8)
    chunk = 64
    for k, start in enumerate(range(0, n, chunk)):
        # one generator per chunk keyed by (seed, chunk index): prefixes are stable when n grows
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, k])
        m = min(chunk, n - start)
        out[start:start + m] = _faces_chunk(rng, chunk, image_size)[:m]
    return out


def _paper(rng, size):
    import cv2
    fine = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 0.8)
    coarse = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 12)
    coarse /= max(float(np.abs(coarse).max()), 1e-6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shade = rng.uniform(-12, 12) * (xx - 0.5) + rng.uniform(-12, 12) * (yy - 0.5)
    return rng.uniform(215, 240) + 4.0 * fine + 8.0 * coarse + shade


def _stroke(ink, pts, w0, w1, dark, rng):
    """Pencil stroke through pts (k,2) with width tapering w0 -> w1 and a little pressure jitter."""
    import cv2
    layer = np.zeros_like(ink)
    k = len(pts)
    for i in range(k - 1):
        w = w0 + (w1 - w0) * i / max(1, k - 2)
        p, q = pts[i], pts[i + 1]
        cv2.line(layer, (int(round(p[0] * 16)), int(round(p[1] * 16))), (int(round(q[0] * 16)), int(round(q[1] * 16))),
                 float(dark * rng.uniform(0.8, 1.0)), max(1, int(round(w))), cv2.LINE_AA, shift=4)
    np.maximum(ink, layer, out=ink)


def _arc(cx, cy, ax, ay, t0, t1, k=24, wobble=0.0, rng=None):
    t = np.linspace(t0, t1, k)
    pts = np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)
    if wobble and rng is not None:
        pts += rng.normal(0, wobble, pts.shape)
    return pts


def synthetic_sketches(n: int, size: int = 200, seed: int = 0, return_masks: bool = False):
    """Hand-drawn-style face sketches: dark pencil strokes of varying width on light textured paper, uint8
    (n, size, size) grayscale (like CUFSF sketches, no dataset pixels). With return_masks, also bool (n, size, size)
    masks of where ink was laid down."""
    import cv2
    out = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, size, size), bool)
    for i in range(n):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7, i])
        s = float(size)
        ink = np.zeros((size, size), np.float32)
        cx, cy = s * rng.uniform(0.46, 0.54), s * rng.uniform(0.5, 0.56)
        a, b = s * rng.uniform(0.22, 0.27), s * rng.uniform(0.3, 0.35)
        lw = s / 100.0  # base line width
        U = rng.uniform
        # jaw and cheeks
        _stroke(ink, _arc(cx, cy, a, b, -0.15, np.pi + 0.15, 40, lw * 0.3, rng), lw * 1.2, lw * 2.2, 0.85, rng)
        # hair: outer outline, hairline and strands
        hy = cy - b * U(0.45, 0.65)
        _stroke(ink, _arc(cx, cy - b * 0.05, a * U(1.1, 1.2), b * U(1.05, 1.15), np.pi + 0.1, 2 * np.pi - 0.1, 40,
                          lw * 0.4, rng), lw * 2.5, lw * 1.5, 0.9, rng)
        _stroke(ink, _arc(cx, hy + b * 0.2, a * 0.95, b * 0.25, np.pi + 0.2, 2 * np.pi - 0.2, 24, lw * 0.3, rng),
                lw * 1.5, lw * 1.0, 0.75, rng)
        for _ in range(rng.integers(3, 7)):
            x0 = cx + U(-0.8, 0.8) * a
            pts = np.stack([np.linspace(x0, x0 + U(-0.3, 0.3) * a, 6), np.linspace(hy - b * 0.35, hy + b * 0.12, 6)], 1)
            _stroke(ink, pts + rng.normal(0, lw * 0.4, pts.shape), lw * 1.2, lw * 0.5, 0.6, rng)
        # ears
        for sg in (-1, 1):
            _stroke(ink, _arc(cx + sg * a * 1.02, cy - b * 0.05, a * 0.12, b * 0.18, -np.pi / 2, np.pi / 2, 12)
                    * [[sg, 1]] + [[0 if sg > 0 else 2 * (cx - a * 1.02), 0]], lw * 1.2, lw * 1.0, 0.7, rng)
        # eyes and brows
        ey, ex = cy - b * U(0.08, 0.16), a * U(0.38, 0.46)
        ew, eh = a * U(0.2, 0.26), b * U(0.06, 0.09)
        for sg in (-1, 1):
            x = cx + sg * ex
            _stroke(ink, _arc(x, ey + eh * 0.3, ew, eh * 1.3, np.pi, 2 * np.pi, 16), lw * 1.6, lw * 1.0, 0.9, rng)
            _stroke(ink, _arc(x, ey - eh * 0.3, ew * 0.95, eh, 0.1, np.pi - 0.1, 16), lw * 1.0, lw * 0.8, 0.7, rng)
            cv2.circle(ink, (int(x + U(-0.2, 0.2) * ew), int(ey)), max(1, int(eh * 0.8)), 0.9, -1, cv2.LINE_AA)
            by = ey - b * U(0.24, 0.3)
            _stroke(ink, _arc(x, by + eh * 1.2, ew * 1.3, eh * 1.4, np.pi + 0.3, 2 * np.pi - 0.3, 14) if sg < 0 else
                    _arc(x, by + eh * 1.2, ew * 1.3, eh * 1.4, 2 * np.pi - 0.3, np.pi + 0.3, 14),
                    lw * 3.0, lw * 1.2, 0.85, rng)
        # nose: ridge and base
        ny = cy + b * U(0.18, 0.28)
        side = rng.choice([-1, 1])
        _stroke(ink, np.stack([np.full(6, cx + side * a * 0.12) + rng.normal(0, lw * 0.2, 6),
                               np.linspace(ey + eh, ny - b * 0.05, 6)], 1), lw * 0.8, lw * 1.4, 0.6, rng)
        _stroke(ink, _arc(cx, ny - b * 0.04, a * 0.22, b * 0.06, 0.2, np.pi - 0.2, 14), lw * 1.5, lw * 1.2, 0.8, rng)
        # mouth: parting line and lower lip
        my, mw = cy + b * U(0.5, 0.6), a * U(0.32, 0.45)
        curv = U(-0.04, 0.08) * b
        _stroke(ink, _arc(cx, my - curv, mw, curv + 1e-3 * s, 0.05, np.pi - 0.05, 18), lw * 2.0, lw * 1.2, 0.9, rng)
        _stroke(ink, _arc(cx, my + b * 0.02, mw * 0.7, b * 0.08, 0.3, np.pi - 0.3, 12), lw * 1.0, lw * 0.8, 0.55, rng)
        # neck and shoulders
        for sg in (-1, 1):
            _stroke(ink, np.array([[cx + sg * a * 0.55, cy + b * 0.8], [cx + sg * a * 0.6, s * 0.98]]),
                    lw * 1.4, lw * 1.2, 0.7, rng)
            _stroke(ink, _arc(cx + sg * a * 2.2, s * 1.25, a * 1.8, s * 0.3, np.pi, 1.5 * np.pi, 12)
                    * [[sg, 1]] + [[0 if sg > 0 else 2 * (cx - a * 2.2), 0]], lw * 1.6, lw * 1.2, 0.7, rng)
        paper = _paper(rng, size)
        graphite = U(35, 70)
        img = paper * (1 - ink) + graphite * ink
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
        masks[i] = ink > 0.25
    return (out, masks) if return_masks else out
