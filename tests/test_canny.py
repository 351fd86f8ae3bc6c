"""Canny op (pycompgen.ops.canny) vs OpenCV's cv2.Canny, the pure-PyTorch reference, opcheck and bad inputs."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pycompgen._ops import CHECK_FINITE_ENV
from pycompgen.ops import canny
from pycompgen.reference import canny as ref_canny

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba"

# (low, high) in OpenCV units
THRESHOLDS = [(0, 0), (10, 30), (50, 150), (100, 200), (180, 181), (300, 600)]


def shapes_image(kind, h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    if kind == "circles":
        for _ in range(4):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(img, c, int(rng.integers(2, max(3, min(h, w) // 2))), int(rng.integers(30, 256)), -1)
    elif kind == "rectangles":
        for _ in range(4):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.rectangle(img, p1, p2, int(rng.integers(30, 256)), int(rng.choice([-1, 1, 2])))
    elif kind == "gradient":
        yy, xx = np.mgrid[0:h, 0:w]
        img = ((xx * rng.uniform(0.5, 4) + yy * rng.uniform(0.5, 4)) % 256).astype(np.uint8)
    elif kind == "noise":
        img = rng.integers(0, 256, (h, w)).astype(np.uint8)
    elif kind == "smooth_noise":
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 1.5)
    return img


def to_input(u8, device, dtype=torch.float32):
    """u8 (N, H, W) -> (N, 1, H, W) u8/255."""
    return (torch.from_numpy(np.ascontiguousarray(u8)).to(torch.float64) / 255).to(device, dtype)[:, None]


def cv2_canny(u8, low, high, l2):
    return np.stack([cv2.Canny(a, low, high, L2gradient=l2) for a in u8]) > 0


def f1(pred, ref):
    tp = np.logical_and(pred, ref).sum()
    denom = pred.sum() + ref.sum()
    return 1.0 if denom == 0 else 2.0 * tp / denom


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["circles", "rectangles", "gradient", "noise", "smooth_noise"])
@pytest.mark.parametrize("l2", [False, True])
def test_equals_cv2_on_shapes(device, kind, l2):
    # (260, 300): too large for one CUDA block's shared memory, so CUDA runs its multi-kernel path
    sizes = [(64, 64), (1, 1), (1, 9), (7, 1), (2, 3), (33, 17), (130, 70), (260, 300)]
    for si, (h, w) in enumerate(sizes):
        u8 = np.stack([shapes_image(kind, h, w, seed=10 * si + k) for k in range(3)])
        x = to_input(u8, device)
        for lo, hi in THRESHOLDS:
            out = canny(x, lo / 255, hi / 255, l2_gradient=l2)
            assert out.shape == (3, 1, h, w) and out.dtype == x.dtype
            got = out[:, 0].cpu().numpy()
            assert set(np.unique(got)) <= {0.0, 1.0}
            np.testing.assert_array_equal(got > 0, cv2_canny(u8, lo, hi, l2), err_msg=f"{kind} {h}x{w} {lo},{hi}")


@pytest.mark.parametrize("device", DEVICES)
def test_rgb_input_uses_opencv_luma(device):
    rng = np.random.default_rng(1)
    rgb = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (48, 40, 3)).astype(np.uint8), (0, 0), 1.2)
                    for _ in range(4)])
    gray = np.stack([cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in rgb])
    x = (torch.from_numpy(rgb).permute(0, 3, 1, 2).double() / 255).float().to(device)
    for l2 in (False, True):
        got = canny(x, 20 / 255, 60 / 255, l2_gradient=l2)[:, 0].cpu().numpy() > 0
        np.testing.assert_array_equal(got, cv2_canny(gray, 20, 60, l2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_match_float32(device, dtype):
    u8 = np.stack([shapes_image("circles", 40, 40, s) for s in range(3)])
    x = to_input(u8, device)
    y = x.to(dtype)  # k/255 is close enough in every dtype to round back to k
    out = canny(y, 30 / 255, 90 / 255)
    assert out.dtype == dtype
    assert torch.equal(out.float(), canny(x, 30 / 255, 90 / 255))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("blur_sigma", [None, 0.0, 0.6, 1.0, 2.5])
def test_matches_reference(device, blur_sigma):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(3, 3, 37, 45, generator=g), 3, 1, 1)
    for l2 in (False, True):
        got = canny(x.to(device), 0.04, 0.12, blur_sigma, l2).cpu()
        assert torch.equal(got, ref_canny(x, 0.04, 0.12, blur_sigma, l2))


def test_reference_equals_cv2():
    u8 = np.stack([shapes_image("smooth_noise", 30, 41, s) for s in range(3)])
    for l2 in (False, True):
        got = ref_canny(to_input(u8, "cpu"), 20 / 255, 50 / 255, l2_gradient=l2)[:, 0].numpy() > 0
        np.testing.assert_array_equal(got, cv2_canny(u8, 20, 50, l2))


def test_blur_close_to_cv2_gaussian_blur():
    """The integer pre-blur is not bit-equal to cv2.GaussianBlur, but within one gray level and edges agree."""
    u8 = np.stack([shapes_image("smooth_noise", 64, 64, s) for s in range(4)])
    for sigma in (0.8, 1.0, 1.4):
        k = int(round(sigma * 6 + 1)) | 1
        blurred = np.stack([cv2.GaussianBlur(a, (k, k), sigma) for a in u8])
        got = canny(to_input(u8, "cpu"), 10 / 255, 30 / 255, blur_sigma=sigma)[:, 0].numpy() > 0
        assert f1(got, cv2_canny(blurred, 10, 30, True)) > 0.8


@pytest.mark.parametrize("device", DEVICES)
def test_real_faces_vs_cv2(device):
    files = sorted((CELEBA / "img_align_celeba").glob("*.jpg"))[:200] if CELEBA.is_dir() else []
    if not files:
        pytest.skip(f"no CelebA images under {CELEBA}")
    rgb = np.stack([cv2.resize(cv2.imread(str(f))[..., ::-1], (64, 64), interpolation=cv2.INTER_AREA)
                    for f in files])
    gray = np.stack([cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in rgb])
    x_rgb = (torch.from_numpy(rgb).permute(0, 3, 1, 2).double() / 255).float().to(device)
    x_gray = to_input(gray, device)
    for lo, hi in [(50, 150), (100, 200), (20, 60)]:
        for l2 in (False, True):
            want = cv2_canny(gray, lo, hi, l2)
            for x in (x_gray, x_rgb):
                got = canny(x, lo / 255, hi / 255, l2_gradient=l2)[:, 0].cpu().numpy() > 0
                assert f1(got, want) >= 0.995
                assert np.array_equal(got, want)  # the op is bit-exact, not only close


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_no_grad(device):
    out = canny(torch.zeros(0, 3, 16, 16, device=device), 0.1, 0.2)
    assert out.shape == (0, 1, 16, 16)
    x = torch.rand(2, 1, 16, 16, device=device, requires_grad=True)
    assert not canny(x, 0.1, 0.2).requires_grad


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.rand(2, 3, 20, 24, device=device)
    torch.library.opcheck(torch.ops.compgen.canny.default, (x, 0.1, 0.3, 0.0, True))
    torch.library.opcheck(torch.ops.compgen.canny.default, (x[:, :1], 0.05, 0.1, 1.0, False))


def test_torch_compile():
    x = torch.rand(2, 1, 16, 16)
    f = torch.compile(lambda t: canny(t, 0.1, 0.3) * 2, backend="eager", fullgraph=True)
    assert torch.equal(f(x), canny(x, 0.1, 0.3) * 2)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs(device, monkeypatch):
    monkeypatch.setenv(CHECK_FINITE_ENV, "1")  # CUDA: eager data checks (debug mode)
    x = torch.rand(2, 1, 8, 8, device=device)
    cases = [
        (lambda: canny(x[0], 0.1, 0.2), "must be"),
        (lambda: canny(torch.rand(2, 2, 8, 8, device=device), 0.1, 0.2), "must be"),
        (lambda: canny((x * 255).to(torch.uint8), 0.1, 0.2), "floating-point"),
        (lambda: canny(x, 0.3, 0.2), "low threshold must be <= high"),
        (lambda: canny(x, -0.1, 0.2), "low must be"),
        (lambda: canny(x, 0.1, float("nan")), "high must be"),
        (lambda: canny(x, 0.1, 0.2, blur_sigma=-1.0), "blur_sigma"),
        (lambda: canny(x, 0.1, 0.2, blur_sigma=11.0), "blur_sigma"),
        (lambda: canny(torch.where(x > 0.5, float("nan"), x), 0.1, 0.2), "NaN or Inf"),
        (lambda: canny(torch.where(x > 0.5, float("inf"), x), 0.1, 0.2), "NaN or Inf"),
        # the raw op validates too
        (lambda: torch.ops.compgen.canny(x, 0.3, 0.2, 0.0, True), "low threshold must be <= high"),
        (lambda: torch.ops.compgen.canny(x, 0.1, 0.2, -1.0, True), "blur_sigma"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            fn()
        assert "canny" in str(e.value)
    with pytest.raises(TypeError, match="canny"):
        canny(np.zeros((1, 1, 4, 4)), 0.1, 0.2)
