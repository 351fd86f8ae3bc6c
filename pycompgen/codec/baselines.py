"""Baseline image codecs with real files and real bytes: JPEG, WebP, JPEG 2000, AVIF, JPEG XL.

Every codec encodes an RGB uint8 H×W×3 image into the bytes of a complete file and decodes them back; sizes are
the real stream lengths, container included:

- ``jpeg``: OpenCV ``cv2.imencode`` (libjpeg-turbo), quality 1–100, OpenCV defaults (4:2:0 chroma); JFIF file
  with quantisation and Huffman tables (~600 B of headers).
- ``webp``: imagecodecs (libwebp), quality 0–100, lossy (``lossless=False``), method 4; RIFF/WEBP (~20–30 B).
- ``jpeg2k``: imagecodecs (OpenJPEG); the "quality" is the target PSNR in dB (1–100, one fixed-quality layer);
  JP2 boxes around the codestream (~85 B).
- ``avif``: imagecodecs (libavif, AV1), quality 0–100 (100 lossless), 4:4:4, the encoder's default speed
  (~0.1 s per 64×64 face; ``settings={"speed": 6}`` is ~30× faster and ~1–2 dB worse); ISOBMFF boxes (~300 B).
- ``jpegxl``: imagecodecs (libjxl), quality 0–100 (mapped to a butteraugli distance), effort 5; bare codestream.

At 64×64 px a container of a few hundred bytes is already about 0.5 bpp (8·bytes/(H·W)); it is part of the real
file size and is reported as such. A codec whose library is missing from the installed build stays in
``CODECS`` with ``available`` False; using it raises a RuntimeError naming what is missing.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Callable

import numpy as np

from pycompgen.data import to_float01

IMAGECODECS_PIN = "imagecodecs==2026.3.6"


def _check_image(img) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"codec input must be a numpy uint8 array H×W×3, got {type(img).__name__}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise ValueError(f"codec input must be uint8 H×W×3 (RGB), got {img.dtype} {tuple(img.shape)}")
    return np.ascontiguousarray(img)


# -- library access: imported lazily so a missing library only disables its codecs ----------------------------------
def _cv2_reason() -> str | None:
    try:
        import cv2
    except ImportError:
        return "OpenCV is not installed (pip install -r requirements.txt)"
    return None if cv2.haveImageWriter(".jpg") else "this OpenCV build has no JPEG writer"


def _imagecodecs_reason(attr: str) -> Callable[[], str | None]:
    def reason():
        try:
            import imagecodecs
        except ImportError:
            return f"imagecodecs is not installed (pip install {IMAGECODECS_PIN})"
        codec = getattr(imagecodecs, attr, None)
        if codec is None or not getattr(codec, "available", False):
            return f"this imagecodecs {imagecodecs.__version__} build has no {attr} codec"
        return None
    return reason


def _jpeg_encode(img, quality, settings):
    import cv2
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for flag, value in settings.items():  # further cv2.IMWRITE_JPEG_* flags, e.g. {cv2.IMWRITE_JPEG_OPTIMIZE: 1}
        params += [int(flag), int(value)]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError("jpeg: cv2.imencode failed")
    return buf.tobytes()


def _jpeg_decode(data):
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError("jpeg: cv2.imdecode could not decode the stream")
    return img[:, :, ::-1]


def _ic(fn: str):
    def call(*args, **kwargs):
        import imagecodecs
        return getattr(imagecodecs, fn)(*args, **kwargs)
    return call


@dataclasses.dataclass(frozen=True, eq=False)
class Codec:
    """One baseline codec. ``settings`` are extra encoder keywords (e.g. ``dataclasses.replace(CODECS["avif"],
    settings={"speed": 6})`` for a faster AVIF encoder)."""
    name: str
    library: str
    quality_name: str
    quality_range: tuple[float, float]
    integer_quality: bool
    default_qualities: tuple
    file_format: str
    encoder: Callable = dataclasses.field(repr=False)
    decoder: Callable = dataclasses.field(repr=False)
    reason_unavailable: Callable[[], str | None] = dataclasses.field(repr=False)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.reason_unavailable() is None

    def require(self) -> None:
        reason = self.reason_unavailable()
        if reason is not None:
            raise RuntimeError(f"codec {self.name!r} is not available: {reason}")

    def check_quality(self, quality):
        lo, hi = self.quality_range
        if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not math.isfinite(quality) \
                or not lo <= quality <= hi or (self.integer_quality and quality != int(quality)):
            kind = "an integer" if self.integer_quality else "a number"
            raise ValueError(f"{self.name}: {self.quality_name} must be {kind} in [{lo:g}, {hi:g}], got {quality!r}")
        return int(quality) if self.integer_quality else float(quality)

    def encode(self, img: np.ndarray, quality) -> bytes:
        """Bytes of the complete file of the RGB uint8 H×W×3 image at ``quality``."""
        self.require()
        q = self.check_quality(quality)
        return bytes(self.encoder(_check_image(img), q, self.settings))

    def decode(self, data: bytes) -> np.ndarray:
        """RGB uint8 H×W×3 image of an encoded file."""
        self.require()
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise ValueError(f"{self.name}: decode needs the non-empty bytes of an encoded file")
        img = np.asarray(self.decoder(bytes(data)))
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise RuntimeError(f"{self.name}: decoded {img.dtype} {tuple(img.shape)}, expected uint8 H×W×3")
        return np.ascontiguousarray(img)


CODECS: dict[str, Codec] = {
    "jpeg": Codec("jpeg", "OpenCV (libjpeg-turbo)", "quality", (1, 100), True, (5, 10, 20, 30, 50, 70, 85, 95),
                  "JFIF", _jpeg_encode, _jpeg_decode, _cv2_reason),
    "webp": Codec("webp", "imagecodecs (libwebp)", "quality", (0, 100), False, (5, 10, 25, 50, 75, 90),
                  "RIFF/WEBP",
                  lambda img, q, s: _ic("webp_encode")(img, level=q, lossless=False, **{"method": 4, **s}),
                  _ic("webp_decode"), _imagecodecs_reason("WEBP")),
    "jpeg2k": Codec("jpeg2k", "imagecodecs (OpenJPEG)", "target PSNR (dB)", (1, 100), False,
                    (20, 24, 28, 32, 36, 40), "JP2",
                    lambda img, q, s: _ic("jpeg2k_encode")(img, level=q, **{"codecformat": "jp2", **s}),
                    _ic("jpeg2k_decode"), _imagecodecs_reason("JPEG2K")),
    "avif": Codec("avif", "imagecodecs (libavif)", "quality", (0, 100), True, (5, 20, 35, 50, 65, 80),
                  "AVIF (ISOBMFF)", lambda img, q, s: _ic("avif_encode")(img, level=q, **s),
                  _ic("avif_decode"), _imagecodecs_reason("AVIF")),
    "jpegxl": Codec("jpegxl", "imagecodecs (libjxl)", "quality", (0, 100), False, (10, 30, 50, 70, 85, 95),
                    "JPEG XL codestream",
                    lambda img, q, s: _ic("jpegxl_encode")(img, level=q, lossless=False, **{"effort": 5, **s}),
                    _ic("jpegxl_decode"), _imagecodecs_reason("JPEGXL")),
}


def available_codecs() -> list[str]:
    """Names of the codecs usable with the installed libraries."""
    return [n for n, c in CODECS.items() if c.available]


def get_codec(codec: str | Codec) -> Codec:
    """The usable codec of that name (ValueError: unknown name; RuntimeError: library missing)."""
    if isinstance(codec, Codec):
        c = codec
    elif isinstance(codec, str) and codec in CODECS:
        c = CODECS[codec]
    else:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    c.require()
    return c


def sweep(images_uint8_nhwc: np.ndarray, codec: str | Codec, qualities: Sequence | None = None) -> list[dict]:
    """Encode and decode every image at every quality (default: the codec's sweep) and measure it.

    Returns one dict per quality: codec, quality, n, bytes_mean (mean real file size), bpp = 8·bytes_mean/(H·W),
    and the means over images of the project's per-image psnr, ssim and ms_ssim (pycompgen.metrics).
    """
    from pycompgen import metrics as M
    c = get_codec(codec)
    imgs = images_uint8_nhwc
    if not isinstance(imgs, np.ndarray) or imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[3] != 3 \
            or imgs.shape[0] < 1:
        raise ValueError("sweep needs a non-empty uint8 numpy array N×H×W×3, got "
                         f"{getattr(imgs, 'dtype', type(imgs).__name__)} {tuple(getattr(imgs, 'shape', ()))}")
    qs = [c.check_quality(q) for q in (c.default_qualities if qualities is None else qualities)]
    if not qs:
        raise ValueError("sweep needs at least one quality")
    n, h, w = imgs.shape[:3]
    ref = to_float01(imgs)
    out = []
    for q in qs:
        sizes, dec = [], np.empty_like(imgs)
        for i in range(n):
            data = c.encode(imgs[i], q)
            sizes.append(len(data))
            y = c.decode(data)
            if y.shape != imgs.shape[1:]:
                raise RuntimeError(f"{c.name}: decoded shape {y.shape} differs from the input {imgs.shape[1:]}")
            dec[i] = y
        rec = to_float01(dec)
        b = float(np.mean(sizes))
        out.append({"codec": c.name, "quality": q, "n": int(n), "bytes_mean": b, "bpp": 8.0 * b / (h * w),
                    "psnr": float(M.psnr(rec, ref).mean()), "ssim": float(M.ssim(rec, ref).mean()),
                    "ms_ssim": float(M.ms_ssim(rec, ref).mean())})
    return out


_INTERP_KEYS = ("quality", "bytes_mean", "psnr", "ssim", "ms_ssim")


def at_equal_bytes(points, target_bpp: float) -> dict:
    """Quality and metrics of a codec at ``target_bpp``, linearly interpolated in bpp between its sweep points.

    ``points``: one codec's ``sweep`` result, or a mapping {codec: sweep result} (then one result per codec).
    Returns {codec, target_bpp, in_range, bpp_range, quality, bytes_mean, psnr, ssim, ms_ssim}; outside the swept
    bpp range nothing is extrapolated: in_range is False and the values are None."""
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, numbers.Real) or not math.isfinite(target_bpp) \
            or target_bpp <= 0:
        raise ValueError(f"at_equal_bytes: target_bpp must be a positive number, got {target_bpp!r}")
    if isinstance(points, Mapping):
        return {name: at_equal_bytes(pts, target_bpp) for name, pts in points.items()}
    pts = list(points) if points is not None else []
    if not pts or not all(isinstance(p, Mapping) for p in pts):
        raise ValueError("at_equal_bytes: points must be a non-empty list of sweep() dicts (or {codec: list})")
    missing = [k for k in ("bpp",) + _INTERP_KEYS if k not in pts[0]]
    if missing:
        raise ValueError(f"at_equal_bytes: sweep points lack {', '.join(missing)}")
    pts = sorted(pts, key=lambda p: p["bpp"])
    bpp = np.array([p["bpp"] for p in pts], np.float64)
    res = {"codec": pts[0].get("codec"), "target_bpp": float(target_bpp), "bpp_range": (float(bpp[0]), float(bpp[-1]))}
    res["in_range"] = bool(bpp[0] <= target_bpp <= bpp[-1])
    for k in _INTERP_KEYS:
        res[k] = float(np.interp(target_bpp, bpp, [float(p[k]) for p in pts])) if res["in_range"] else None
    return res


__all__ = ["Codec", "CODECS", "available_codecs", "get_codec", "sweep", "at_equal_bytes"]
