"""Baseline image codecs (real encoded files), their quality sweeps and the equal-bpp interpolation."""
import dataclasses

import cv2
import numpy as np
import pytest

from pycompgen.codec import baselines as B
from pycompgen.data import synthetic_faces

FACES = synthetic_faces(2, 64, seed=5)
MAGIC = {"jpeg": (0, b"\xff\xd8\xff"), "webp": (8, b"WEBP"), "jpeg2k": (4, b"jP  "), "avif": (4, b"ftypavif"),
         "jpegxl": (0, b"\xff\x0a")}


def usable(name):
    c = B.CODECS[name]
    if not c.available:
        pytest.skip(f"{name} not in this build: {c.reason_unavailable()}")
    return c


@pytest.mark.parametrize("name", list(B.CODECS))
def test_round_trip_real_file(name):
    c = usable(name)
    img = FACES[0]
    data = c.encode(img, c.default_qualities[-1])
    off, magic = MAGIC[name]
    assert isinstance(data, bytes) and data[off:off + len(magic)] == magic
    out = c.decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert cv2.PSNR(img, out) > 28  # highest default quality: a close copy (RGB order kept)


@pytest.mark.parametrize("name", list(B.CODECS))
def test_sweep_bytes_grow_with_quality(name):
    c = usable(name)
    qs = c.default_qualities if name != "avif" else c.default_qualities[::2]  # AV1 encoding is slow
    pts = B.sweep(FACES, name, qs)
    assert [p["quality"] for p in pts] == list(qs)
    sizes = [p["bytes_mean"] for p in pts]
    assert all(a < b for a, b in zip(sizes, sizes[1:])), sizes
    for p in pts:
        assert p["bpp"] == pytest.approx(8 * p["bytes_mean"] / (64 * 64))
        assert p["n"] == 2 and 0 < p["ssim"] <= 1 and 0 < p["ms_ssim"] <= 1
    assert pts[-1]["psnr"] > pts[0]["psnr"] and pts[-1]["ssim"] > pts[0]["ssim"]
    lens = [len(c.encode(f, qs[0])) for f in FACES]
    assert pts[0]["bytes_mean"] == pytest.approx(np.mean(lens))  # the real stream lengths


def test_unavailable_codec_raises_clearly(monkeypatch):
    fake = dataclasses.replace(B.CODECS["jpeg"], reason_unavailable=lambda: "this build has no JPEG writer")
    monkeypatch.setitem(B.CODECS, "jpeg", fake)
    assert "jpeg" not in B.available_codecs()
    for call in (lambda: B.get_codec("jpeg"), lambda: B.sweep(FACES, "jpeg", [50]),
                 lambda: fake.encode(FACES[0], 50), lambda: fake.decode(b"\xff\xd8")):
        with pytest.raises(RuntimeError, match="codec 'jpeg' is not available: this build has no JPEG writer"):
            call()
    assert "has no NOSUCHCODEC codec" in B._imagecodecs_reason("NOSUCHCODEC")()
    with pytest.raises(ValueError, match="unknown codec 'bpg'; known: jpeg, webp"):
        B.get_codec("bpg")


@pytest.mark.parametrize("name,quality", [("jpeg", 0), ("jpeg", 101), ("jpeg", 50.5), ("jpeg", "85"),
                                          ("jpeg", True), ("jpeg", float("nan")), ("webp", -1), ("webp", 101),
                                          ("jpeg2k", 0.5), ("avif", 50.5), ("avif", 101), ("jpegxl", 100.5)])
def test_bad_quality_raises(name, quality):
    c = usable(name)
    with pytest.raises(ValueError, match=f"{name}: .* must be"):
        c.encode(FACES[0], quality)
    with pytest.raises(ValueError, match=f"{name}: .* must be"):
        B.sweep(FACES, name, [quality])


def test_bad_images_raise():
    c = B.CODECS["jpeg"]
    for bad in (FACES[0].astype(np.float32), FACES[0][:, :, 0], np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 H×W×3"):
            c.encode(bad, 50)
    with pytest.raises(ValueError, match="N×H×W×3"):
        B.sweep(FACES[0], "jpeg", [50])
    with pytest.raises(ValueError, match="non-empty bytes"):
        c.decode(b"")


def test_at_equal_bytes_interpolates_without_extrapolating():
    pts = [{"codec": "x", "quality": q, "bpp": bpp, "bytes_mean": bpp * 512, "psnr": 20 + q / 10,
            "ssim": q / 100, "ms_ssim": q / 100} for q, bpp in ((90, 3.0), (10, 1.0), (50, 2.0))]
    r = B.at_equal_bytes(pts, 1.5)
    assert r["in_range"] and r["quality"] == pytest.approx(30) and r["psnr"] == pytest.approx(23)
    assert r["bytes_mean"] == pytest.approx(768) and r["bpp_range"] == (1.0, 3.0)
    out = B.at_equal_bytes({"x": pts, "y": pts[:2]}, 2.5)
    assert out["x"]["quality"] == pytest.approx(70) and out["y"]["quality"] == pytest.approx(70)
    low = B.at_equal_bytes(pts, 0.3)
    assert not low["in_range"] and low["quality"] is None and low["ssim"] is None
    for bad in (0, -1, float("inf"), "2"):
        with pytest.raises(ValueError, match="target_bpp"):
            B.at_equal_bytes(pts, bad)
    with pytest.raises(ValueError, match="non-empty list"):
        B.at_equal_bytes([], 1.0)
    with pytest.raises(ValueError, match="lack"):
        B.at_equal_bytes([{"bpp": 1.0}], 1.0)


def test_at_equal_bytes_on_a_real_sweep():
    pts = B.sweep(FACES, "jpeg", [20, 50, 90])
    mid = (pts[0]["bpp"] + pts[1]["bpp"]) / 2
    r = B.at_equal_bytes(pts, mid)
    assert r["in_range"] and 20 < r["quality"] < 50 and pts[0]["ssim"] < r["ssim"] < pts[1]["ssim"]
