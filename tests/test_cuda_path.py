"""The CUDA path of the compiled ops: CUDA vs CPU (layouts, dtypes, the AWGN noise of one key), Canny's
union-find hysteresis on both CUDA code paths, NaN handling without host synchronisation (and eager errors with
PYCOMPGEN_CHECK_FINITE=1), host tensors rejected by the launchers, and a Compgen training step on CUDA with its
synchronisations counted. GPU tests skip without CUDA; the CPU tests cover the debug switch, the training step on
the CPU and the build's single list of nvcc flags."""
import math
import re
from pathlib import Path

import pytest
import torch

from pycompgen._ops import CHECK_FINITE_ENV, eager_checks
from pycompgen.ops import awgn, canny, ssim, ssim_loss

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32_no_debug(monkeypatch):
    """Full float32 cuDNN/cuBLAS (peers compared here use them) and the default (non-debug) check mode."""
    monkeypatch.delenv(CHECK_FINITE_ENV, raising=False)
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def pair(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(dtype), y.to(dtype)


# ---- CPU: the switches and the build ----------------------------------------------------------------------------
def test_eager_checks_switch(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert eager_checks(cpu) and not eager_checks(cuda)  # CPU checks are free; CUDA ones sync: debug mode only
    monkeypatch.setenv(CHECK_FINITE_ENV, "1")
    assert eager_checks(cpu) and eager_checks(cuda)
    monkeypatch.setenv(CHECK_FINITE_ENV, "0")
    assert not eager_checks(cuda)


def test_cpu_still_rejects_nan_without_debug_mode():
    x, y = pair((2, 1, 16, 16))
    bad = x.clone()
    bad[1, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="ssim: x contains NaN or Inf"):
        ssim(bad, y)
    with pytest.raises(ValueError, match="awgn: z contains NaN or Inf"):
        awgn(bad, 10.0)
    with pytest.raises(ValueError, match="awgn: psnr_db must not be NaN"):
        awgn(x, torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="canny: img contains NaN or Inf"):
        canny(bad, 0.1, 0.2)


def _flags(text):
    return [t for line in text.splitlines() for t in line.split("#", 1)[0].split()]


def test_nvcc_flags_have_one_source():
    """setup.py, CMakeLists.txt and tools/check_cuda.sh all take the nvcc flags from csrc/NVCC_FLAGS (plus torch's
    COMMON_NVCC_FLAGS); none hard-codes its own (no --use_fast_math anywhere)."""
    flags = _flags((ROOT / "csrc" / "NVCC_FLAGS").read_text())
    assert "-O3" in flags and "-std=c++17" in flags and not any("fast_math" in f for f in flags)
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r'"nvcc":\s*read_nvcc_flags\(\)', setup) and '"NVCC_FLAGS"' in setup
    check = (ROOT / "tools" / "check_cuda.sh").read_text()
    assert "csrc/NVCC_FLAGS" in check and "COMMON_NVCC_FLAGS" in check
    nvcc_lines = [ln for ln in check.splitlines() if '"$NVCC" -c' in ln]
    assert nvcc_lines and all('"${FLAGS[@]}"' in ln and "-O3" not in ln and "-std" not in ln for ln in nvcc_lines)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "csrc/NVCC_FLAGS" in cmake and "COMMON_NVCC_FLAGS" in cmake
    for name, text in (("setup.py", setup), ("check_cuda.sh", check), ("CMakeLists.txt", cmake)):
        assert "use_fast_math" not in text, name


# ---- a Compgen training step (CPU here; on CUDA with its synchronisations counted) ------------------------------
def _tiny_system(device, stage="approach3"):
    from pycompgen.config import load_config
    from pycompgen.systems.compgen.networks import build_compgen
    from pycompgen.training import build_system
    cfg = load_config(str(ROOT / "configs" / "tiny.yaml"), [f"train.stage={stage}", "train.psnr_range=[-5,50]"])
    torch.manual_seed(0)
    init = {k: m.state_dict() for k, m in build_compgen(cfg.model, cfg.data.image_size).items()}
    return build_system(cfg, device, init)


def _uint8_faces(n=8, size=32):
    from pycompgen.data import load_faces
    faces = load_faces(None, "train", size, synthetic_count=n)
    return torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("device", DEVICES)
def test_training_step(device):
    """approach 3 runs every op (Canny, AWGN with a per-image PSNR tensor, the SSIM loss forward and backward)."""
    system = _tiny_system(device)
    batch = _uint8_faces()
    gen = torch.Generator(device=device).manual_seed(0)
    system.train_step(system.prepare_batch(batch, gen))  # warm-up: lazy CUDA init, optimiser state
    params = [p.detach().clone() for p in system.models["g"].parameters()]
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any implicit host synchronisation raises
    try:
        b = system.prepare_batch(batch, gen)
        logs = system.train_step(b)
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    assert b["z"].device.type == device and b["z_noisy"].shape == (8, 1, 32, 32)
    assert math.isfinite(float(logs["loss"]))
    assert any(not torch.equal(p, q) for p, q in zip(params, system.models["g"].parameters()))


@needs_cuda
def test_training_step_makes_no_runtime_synchronisation():
    """CUDA runtime calls recorded by the profiler inside one training step: no stream/device/event synchronise and
    no synchronous memcpy (the sync debug mode above sees only torch-level synchronisations)."""
    from torch.profiler import ProfilerActivity, profile, record_function
    system = _tiny_system("cuda")
    batch = _uint8_faces()
    gen = torch.Generator(device="cuda").manual_seed(0)
    system.train_step(system.prepare_batch(batch, gen))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function("compgen_step"):
            system.train_step(system.prepare_batch(batch, gen))
        torch.cuda.synchronize()
    events = prof.events()
    marks = [e for e in events if e.name == "compgen_step" and e.device_type == torch.autograd.DeviceType.CPU]
    assert marks, "the profiler lost the step's record_function range"
    t0, t1 = marks[0].time_range.start, marks[0].time_range.end
    inside = [e for e in events if t0 <= e.time_range.start <= t1]
    if not any(e.name in ("cudaLaunchKernel", "cudaLaunchKernelExC") for e in inside):
        pytest.skip("the profiler recorded no CUDA runtime calls (CUPTI unavailable)")
    syncs = [e.name for e in inside if "Synchronize" in e.name or e.name in ("cudaMemcpy", "cudaMemcpy2D")]
    assert not syncs, syncs


@needs_cuda
def test_fit_on_cuda():
    from pycompgen.config import load_config
    from pycompgen.training import fit, make_loaders
    cfg = load_config(str(ROOT / "configs" / "tiny.yaml"), ["train.stage=step1", "train.epochs=1",
                                                            "train.device=cuda"])
    train_loader, val_loader = make_loaders(cfg)
    m = fit(cfg, device="cuda", train_loader=train_loader, val_loader=val_loader)
    assert math.isfinite(m["train_loss"]) and -1.0 <= m["val_ssim"] <= 1.0


# ---- SSIM on CUDA ------------------------------------------------------------------------------------------------
LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.to(memory_format=torch.channels_last),
    "transposed_view": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
}


@needs_cuda
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "none", "map"])
def test_ssim_cuda_matches_cpu(layout, dtype, reduction):
    x, y = pair((3, 3, 45, 70), dtype)  # several 16x32 output tiles, partial ones at the borders
    f = LAYOUTS[layout]
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    res = {}
    for dev in ("cpu", "cuda"):
        xd = f(x.to(dev)).detach().requires_grad_()
        yd = f(y.to(dev)).detach().requires_grad_()
        out = ssim_loss(xd, yd, window_size=11, reduction=reduction)
        w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view(out.shape).to(dev)
        gx, gy = torch.autograd.grad((out * w).sum(), (xd, yd))
        assert gx.is_contiguous() and gx.dtype == dtype
        res[dev] = (out.cpu(), gx.cpu(), gy.cpu())
    for a, b in zip(res["cuda"], res["cpu"]):  # value / map, dx, dy
        assert a.shape == b.shape and a.dtype == b.dtype
        assert float((a - b).norm() / b.norm()) < tol


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ssim_cuda_low_precision_vs_cpu(dtype):
    """Both devices accumulate float16 / bfloat16 in float32: same float32 value, gradients within rounding."""
    x, y = pair((4, 3, 40, 36), dtype)
    out = {}
    for dev in ("cpu", "cuda"):
        xd = x.to(dev).requires_grad_()
        v = ssim_loss(xd, y.to(dev), reduction="none")
        (g,) = torch.autograd.grad(v.sum(), xd)
        out[dev] = (v.cpu(), g.cpu())
    assert out["cuda"][0].dtype == torch.float32 and out["cuda"][1].dtype == dtype
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["cuda"][1].float(), out["cpu"][1].float(), rtol=2e-2, atol=1e-5)


@needs_cuda
def test_ssim_bwd_rejects_host_tensors():
    x, y = (t.cuda() for t in pair((2, 3, 16, 16)))
    _, d = torch.ops.compgen.ssim_fwd(x, y, 7, 1.5, 1e-4, 9e-4, 0, True, True, False)
    with pytest.raises(RuntimeError, match="ssim_bwd: grad must be a CUDA tensor"):
        torch.ops.compgen.ssim_bwd(torch.ones(()), x, y, d, 7, 1.5, 0, True, True, False)
    with pytest.raises(RuntimeError, match="ssim_bwd: dmaps must be a CUDA tensor"):
        torch.ops.compgen.ssim_bwd(torch.ones((), device="cuda"), x, y, d.cpu(), 7, 1.5, 0, True, True, False)
    with pytest.raises(RuntimeError, match="CUDA tensors on the same device"):
        torch.ops.compgen.ssim_bwd(torch.ones((), device="cuda"), x, y.cpu(), d, 7, 1.5, 0, True, True, False)


# ---- AWGN on CUDA ------------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_awgn_same_key_same_noise_on_cpu_and_cuda(dtype):
    """The counter-based generator gives the same noise for the same key on both devices (up to float rounding)."""
    z = torch.rand(5, 3, 33, 17, generator=torch.Generator().manual_seed(0)).to(dtype)  # odd sizes: partial groups
    psnr = torch.tensor([40.0, 10.0, 0.0, -10.0, math.inf])
    out = {dev: awgn(z.to(dev), psnr.to(dev), generator=torch.Generator().manual_seed(9)).cpu()
           for dev in ("cpu", "cuda")}
    tol = dict(rtol=1e-5, atol=1e-5) if dtype in (torch.float32, torch.float64) else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out["cuda"], out["cpu"], **tol)
    assert torch.equal(out["cuda"][4], z[4])  # +inf dB: exact identity on both


@needs_cuda
def test_awgn_channels_last_cuda():
    z = torch.rand(4, 3, 16, 16, device="cuda")
    a = awgn(z.to(memory_format=torch.channels_last), 5.0, generator=torch.Generator("cuda").manual_seed(1))
    b = awgn(z, 5.0, generator=torch.Generator("cuda").manual_seed(1))
    assert a.is_contiguous() and torch.equal(a, b)  # noise indexed by the logical NCHW element


# ---- Canny on CUDA: both code paths, long hysteresis chains, layouts, dtypes ------------------------------------
def _structured(n, h, w, seed):
    """Blurred noise plus steps: edges of every strength and direction."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, h // 4 + 1, w // 4 + 1, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.randn(n, 1, h, w, generator=g)).clamp(0, 1)


def _serpentine(h, w, weak=40, strong=255):
    """A boustrophedon corridor (value `weak` on 0) across the whole image with a bright block at its far end: every
    edge pixel of the corridor is weak and joins the strong block only through the full length of the corridor."""
    img = torch.zeros(h, w)
    rows = list(range(2, h - 4, 6))
    for k, r in enumerate(rows):
        img[r:r + 3, 2:w - 2] = weak
        if k + 1 < len(rows):
            c = w - 5 if k % 2 == 0 else 2
            img[r:rows[k + 1] + 3, c:c + 3] = weak
    r = rows[-1]
    img[r:r + 3, 2:8] = strong
    return (img / 255)[None, None]


@needs_cuda
@pytest.mark.parametrize("size", [(64, 64), (128, 96), (300, 260), (257, 513)])  # fused path, multi-kernel path
@pytest.mark.parametrize("blur_sigma,l2", [(None, True), (None, False), (1.2, True)])
def test_canny_cuda_matches_cpu(size, blur_sigma, l2):
    h, w = size
    x = torch.cat([_structured(3, h, w, seed=1), _serpentine(h, w)])
    for lo, hi in ((0.1, 0.3), (100 / 255, 500 / 255), (0.0, 0.0)):
        want = canny(x, lo, hi, blur_sigma=blur_sigma, l2_gradient=l2)
        got = canny(x.cuda(), lo, hi, blur_sigma=blur_sigma, l2_gradient=l2).cpu()
        assert torch.equal(got, want), (size, blur_sigma, l2, lo, hi)
    # the serpentine's weak edges far from its bright end are edges: hysteresis followed the whole corridor
    s = canny(_serpentine(h, w).cuda(), 100 / 255, 500 / 255, l2_gradient=False)[0, 0]
    assert s[:6].sum() > w  # first corridor row, the far end of the chain


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_canny_cuda_dtypes_and_layouts(dtype):
    u8 = (_structured(2, 3 * 48, 80, seed=2).view(2, 3, 48, 80) * 255).round()
    x = (u8 / 255).to(dtype)
    want = canny(x.float(), 0.1, 0.3)
    xc = x.cuda()
    for t in (xc, xc.to(memory_format=torch.channels_last), torch.stack([xc, xc], -1)[..., 0]):
        got = canny(t, 0.1, 0.3)
        assert got.dtype == dtype and got.is_contiguous()
        assert torch.equal(got.float().cpu(), want)


# ---- NaN on CUDA: propagated without a sync by default, raised in debug mode -------------------------------------
def _with_nan(x, image=1):
    x = x.clone()
    x[image, 0, 2, 3] = math.nan
    return x


@needs_cuda
@pytest.mark.parametrize("size", [(32, 32), (300, 260)])
def test_nan_propagates_on_cuda(size):
    h, w = size
    x, y = pair((2, 3, h, w))
    xc, yc = x.cuda(), y.cuda()
    z = torch.zeros(3, 1, h, w, device="cuda")
    z[0, 0, 0, 0] = z[2, 0, 1, 1] = 1.0
    psnr = torch.tensor([10.0, math.nan, -math.inf], device="cuda")  # (a host-to-device copy syncs: made here)
    torch.cuda.set_sync_debug_mode("error")  # none of this synchronises
    try:
        s = ssim(_with_nan(xc), yc, reduction="none")
        e = canny(_with_nan(xc), 0.1, 0.3)
        n1 = awgn(z, psnr, normalize=False)
        n2 = awgn(z, 10.0, peak=None)  # image 1 is all zero: no PSNR
        n3 = awgn(_with_nan(z), 10.0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    s, e, n1, n2, n3 = (t.cpu() for t in (s, e, n1, n2, n3))
    assert torch.isnan(s[1]) and torch.isfinite(s[0])
    torch.testing.assert_close(s[0], ssim(x[:1], y[:1], reduction="none")[0], rtol=1e-5, atol=1e-6)
    assert torch.isnan(e[1]).all() and torch.equal(e[0], canny(x[:1], 0.1, 0.3)[0])
    assert torch.isfinite(n1[0]).all() and torch.isnan(n1[1]).all() and torch.isnan(n1[2]).all()
    assert torch.isfinite(n2[0]).all() and torch.isnan(n2[1]).all() and torch.isfinite(n2[2]).all()
    assert torch.isnan(n3[1, 0, 2, 3]) and torch.isfinite(n3[0]).all()


@needs_cuda
@pytest.mark.parametrize("size", [(32, 32), (300, 260)])
def test_nan_raises_on_cuda_in_debug_mode(monkeypatch, size):
    monkeypatch.setenv(CHECK_FINITE_ENV, "1")
    h, w = size
    x, y = (t.cuda() for t in pair((2, 3, h, w)))
    z = torch.zeros(2, 1, h, w, device="cuda")
    z[0, 0, 0, 0] = 1.0
    cases = [
        (lambda: ssim(_with_nan(x), y), "ssim: x contains NaN or Inf"),
        (lambda: ssim_loss(x, _with_nan(y)), "ssim_loss: y contains NaN or Inf"),
        (lambda: canny(_with_nan(x), 0.1, 0.3), "canny: img contains NaN or Inf"),
        (lambda: torch.ops.compgen.canny(_with_nan(x), 0.1, 0.3, 0.0, True), "canny: img contains NaN or Inf"),
        (lambda: awgn(_with_nan(z), 10.0), "awgn: z contains NaN or Inf"),
        (lambda: awgn(z, torch.tensor([1.0, math.nan], device="cuda")), "awgn: psnr_db must not be NaN or -inf"),
        (lambda: awgn(z, 10.0, peak=None), "awgn: peak=None but image 1 of z is all zero"),
        (lambda: awgn(z, math.nan), "awgn: psnr_db must not be NaN"),  # a float: checked on the host anyway
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()
