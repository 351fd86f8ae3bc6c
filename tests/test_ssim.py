"""Fused SSIM op (pycompgen.ops.ssim / ssim_loss) vs pytorch-msssim, the reference, autograd and bad inputs."""
from pathlib import Path

import pytest
import torch
from pytorch_msssim import ssim as msssim

from pycompgen.ops import ssim, ssim_loss
from pycompgen.reference import ssim as ref_ssim

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def no_tf32():
    """Full float32 convolutions on CUDA: pytorch-msssim, the reference and the conv nets compared here use cuDNN."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def pair(shape, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x.to(device, dtype), y.to(device, dtype)


def rel_err(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_vs_msssim(x, y, data_range=1.0):
    x1, y1 = x.clone().requires_grad_(), y.clone().requires_grad_()
    x2, y2 = x.clone().requires_grad_(), y.clone().requires_grad_()
    ours = ssim(x1, y1, data_range=data_range)
    ref = msssim(x2, y2, data_range=data_range, size_average=True)
    assert abs(float(ours.detach()) - float(ref.detach())) <= 1e-5
    gx1, gy1 = torch.autograd.grad(ours, (x1, y1))
    gx2, gy2 = torch.autograd.grad(ref, (x2, y2))
    assert rel_err(gx1, gx2) <= 1e-4
    assert rel_err(gy1, gy2) <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 1, 11, 11), (3, 7, 33, 17), (100, 3, 64, 64)])
def test_matches_pytorch_msssim(device, shape):
    x, y = pair(shape, device)
    check_vs_msssim(x, y)


@pytest.mark.parametrize("device", DEVICES)
def test_matches_pytorch_msssim_data_range_255(device):
    x, y = pair((2, 3, 40, 29), device)
    check_vs_msssim(x * 255, y * 255, data_range=255.0)


@pytest.mark.skipif(not (DATA / "celeba" / "img_align_celeba").is_dir(), reason="no real data (../shared/data)")
@pytest.mark.parametrize("device", DEVICES)
def test_matches_pytorch_msssim_real_faces(device):
    cv2 = pytest.importorskip("cv2")
    files = sorted((DATA / "celeba" / "img_align_celeba").glob("*.jpg"))[:8]
    imgs = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    x = torch.tensor(__import__("numpy").stack(imgs)).permute(0, 3, 1, 2).float() / 255  # 8x3x218x178
    # a degraded version: JPEG-like blur plus noise, as a reconstruction would be
    g = torch.Generator().manual_seed(1)
    y = (torch.nn.functional.avg_pool2d(x, 3, 1, 1) + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    check_vs_msssim(x.to(device), y.to(device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("reduction", ["mean", "none", "map"])
def test_matches_reference(device, padding, reduction):
    x, y = pair((2, 3, 23, 30), device, torch.float64)
    kw = dict(window_size=7, sigma=1.2, data_range=1.0, padding=padding, reduction=reduction)
    x1, y1 = x.clone().requires_grad_(), y.clone().requires_grad_()
    x2, y2 = x.clone().requires_grad_(), y.clone().requires_grad_()
    a, b = ssim(x1, y1, **kw), ref_ssim(x2, y2, **kw)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    w = torch.rand(a.shape, dtype=a.dtype, device=device)
    ga = torch.autograd.grad((a * w).sum(), (x1, y1))
    gb = torch.autograd.grad((b * w).sum(), (x2, y2))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_reductions_and_loss(device):
    x, y = pair((3, 2, 20, 20), device)
    m = ssim(x, y, reduction="map")
    assert m.shape == (3, 2, 10, 10)
    per = ssim(x, y, reduction="none")
    torch.testing.assert_close(per, m.flatten(1).mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ssim(x, y), m.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ssim_loss(x, y), 0.5 * (1 - ssim(x, y)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ssim_loss(x, y, reduction="none"), 0.5 * (1 - per), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ssim_loss(x, y, reduction="map"), 0.5 * (1 - m), rtol=1e-6, atol=1e-6)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(ssim(x, y), ssim(y, x))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["x", "y", "both"])
def test_gradient_to_whichever_requires_grad(device, which):
    x, y = pair((2, 2, 16, 13), device, torch.float64)
    x.requires_grad_(which in ("x", "both"))
    y.requires_grad_(which in ("y", "both"))
    ssim_loss(x, y).backward()
    xr, yr = x.detach().clone().requires_grad_(x.requires_grad), y.detach().clone().requires_grad_(y.requires_grad)
    (0.5 * (1 - ref_ssim(xr, yr))).backward()
    for a, b in ((x, xr), (y, yr)):
        if b.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
        else:
            assert a.grad is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "none", "map"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_gradcheck_float64(device, reduction, padding):
    x, y = pair((2, 2, 9, 8), device, torch.float64)
    x.requires_grad_()
    y.requires_grad_()
    for fn in (ssim, ssim_loss):
        assert torch.autograd.gradcheck(
            lambda a, b: fn(a, b, window_size=5, sigma=1.0, padding=padding, reduction=reduction), (x, y),
            fast_mode=True)


def _fwd_samples(device):
    # (dtype, reduction, loss, grad_x, grad_y): every reduction, loss flag and gradient combination at least once
    combos = [(torch.float64, 0, False, True, True), (torch.float32, 0, True, True, False),
              (torch.float64, 1, True, False, True), (torch.float64, 2, False, True, True),
              (torch.float32, 2, True, False, False)]
    out = []
    for dtype, red, loss, gx, gy in combos:
        x, y = pair((2, 3, 12, 14), device, dtype)
        x.requires_grad_(gx)
        y.requires_grad_(gy)
        out.append((x, y, 5, 1.5, 1e-4, 9e-4, red, loss, gx, gy))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for args in _fwd_samples(device):
        torch.library.opcheck(torch.ops.compgen.ssim_fwd.default, args)
    x, y = pair((2, 3, 12, 14), device)
    for red, gshape in ((0, ()), (1, (2,)), (2, (2, 3, 8, 10))):
        _, d = torch.ops.compgen.ssim_fwd(x, y, 5, 1.5, 1e-4, 9e-4, red, False, True, True)
        grad = torch.rand(gshape, device=device)
        torch.library.opcheck(torch.ops.compgen.ssim_bwd.default, (grad, x, y, d, 5, 1.5, red, False, True, True))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    x, y = pair((0, 3, 16, 16), device)
    assert ssim(x, y, reduction="none").shape == (0,)
    assert ssim(x, y, reduction="map").shape == (0, 3, 6, 6)
    assert torch.isnan(ssim(x, y))  # mean of nothing, as torch.mean
    x.requires_grad_()
    ssim_loss(x, y, reduction="none").sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("device", DEVICES)
def test_small_strips_and_large_window(device):
    # one plane (rows are split into strips across threads), window equal to the image, window 1
    x, y = pair((1, 1, 120, 50), device, torch.float64)
    for k in (1, 3, 11, 49):
        torch.testing.assert_close(ssim(x, y, window_size=k, reduction="map"),
                                   ref_ssim(x, y, window_size=k, reduction="map"), rtol=1e-10, atol=1e-10)
    x, y = pair((2, 1, 11, 11), device, torch.float64)
    torch.testing.assert_close(ssim(x, y, reduction="none"), ref_ssim(x, y, reduction="none"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype):
    x, y = pair((4, 3, 40, 36), "cuda")
    xl, yl = x.to(dtype).requires_grad_(), y.to(dtype)
    ref_in = xl.detach().float().requires_grad_()
    out = ssim_loss(xl, yl)
    ref = ssim_loss(ref_in, yl.float())
    assert out.dtype == torch.float32  # the value in the accumulation type, as on the CPU
    assert abs(float(out) - float(ref)) < 1e-2
    (g,) = torch.autograd.grad(out, xl)
    (gr,) = torch.autograd.grad(ref, ref_in)
    assert g.dtype == dtype and rel_err(g.float(), gr) < 2e-2


def test_non_contiguous_inputs():
    x, y = pair((2, 3, 21, 18), dtype=torch.float64)
    xv = x.clone().requires_grad_()
    xc = x.transpose(2, 3).contiguous().requires_grad_()
    yt = y.transpose(2, 3)  # non-contiguous views, as is xv.transpose(2, 3)
    a = ssim(xv.transpose(2, 3), yt, reduction="map")
    b = ref_ssim(xc, yt.contiguous(), reduction="map")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    (ga,) = torch.autograd.grad(a.sum(), xv)
    (gb,) = torch.autograd.grad(b.sum(), xc)
    torch.testing.assert_close(ga.transpose(2, 3), gb, rtol=1e-9, atol=1e-12)


def _raises(match, *args, **kw):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        ssim(*args, **kw)


def test_bad_inputs():
    x, y = pair((2, 3, 16, 16))
    _raises(r"ssim: x and y must be 4-D", x[0], y[0])
    _raises(r"ssim: x and y must have the same shape", x, y[:, :2])
    _raises(r"ssim: x and y must have the same dtype", x, y.double())
    _raises(r"ssim: dtype torch.int64 is not supported", x.long(), y.long())
    _raises(r"ssim: window_size 17 is larger than the image \(16x16\)", x, y, window_size=17)
    _raises(r"ssim: window_size must be a positive odd integer", x, y, window_size=4)
    _raises(r"ssim: window_size must be a positive odd integer", x, y, window_size=0)
    _raises(r"ssim: sigma must be a positive finite number", x, y, sigma=0.0)
    _raises(r"ssim: sigma must be a positive finite number", x, y, sigma=-1.0)
    _raises(r"ssim: data_range must be a positive finite number", x, y, data_range=0)
    _raises(r"ssim: k2 must be a non-negative finite number", x, y, k2=float("nan"))
    _raises(r"ssim: padding must be 'valid' or 'same'", x, y, padding="reflect")
    _raises(r"ssim: reduction must be 'mean', 'none' or 'map'", x, y, reduction="sum")
    bad = x.clone()
    bad[1, 2, 3, 4] = float("nan")
    _raises(r"ssim: x contains NaN or Inf", bad, y)
    bad[1, 2, 3, 4] = float("inf")
    _raises(r"ssim: y contains NaN or Inf", x, bad)
    with pytest.raises(ValueError, match=r"ssim_loss: window_size must be"):
        ssim_loss(x, y, window_size=2)
    if torch.cuda.is_available():
        _raises(r"ssim: x and y must be on the same device", x.cuda(), y)


def test_torch_compile_fullgraph():
    x, y = pair((2, 3, 16, 16))
    x.requires_grad_()

    def f(a, b):
        return ssim_loss(a, b, window_size=7) * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x, y)
    torch.testing.assert_close(out, f(x, y))
    (g,) = torch.autograd.grad(out, x)
    (g2,) = torch.autograd.grad(f(x, y), x)
    torch.testing.assert_close(g, g2)


def test_missing_extension_names_the_fix():
    import subprocess
    import sys

    code = ("import sys; sys.modules['pycompgen._C'] = None\n"
            "try:\n    import pycompgen.ops\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pycompgen._C is not built: run `make install`" in r.stdout, r.stdout + r.stderr


# ---- dtypes and layouts: float16 / bfloat16 (float32 accumulation) on every device, channels_last, views ----------
LOW = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("reduction", ["mean", "none", "map"])
def test_low_precision_vs_float64_reference(device, dtype, reduction):
    x, y = pair((3, 2, 24, 21), device)
    xl, yl = x.to(dtype).requires_grad_(), y.to(dtype)
    # reference in float64 on the same (rounded) inputs: only the float32 accumulation differs
    xr, yr = xl.detach().double().requires_grad_(), yl.double()
    out = ssim_loss(xl, yl, reduction=reduction)
    ref = ssim_loss(xr, yr, reduction=reduction)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-5)
    w = torch.rand(out.shape, device=device, dtype=torch.float64)
    (g,) = torch.autograd.grad((out * w.float()).sum(), xl)
    (gr,) = torch.autograd.grad((ref * w).sum(), xr)
    assert g.dtype == dtype and g.shape == x.shape
    assert rel_err(g.double(), gr) < 1e-2  # the gradient is rounded to the input dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_channels_last_and_views_match_contiguous(device, dtype):
    x, y = pair((2, 3, 19, 23), device, dtype)
    layouts = {
        "channels_last": lambda t: t.to(memory_format=torch.channels_last),
        "transposed": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
        "strided": lambda t: torch.stack([t, t], -1)[..., 0],  # last-dim stride 2
    }
    for reduction in ("mean", "map"):
        xc = x.clone().requires_grad_()
        want = ssim(xc, y, reduction=reduction)
        (gwant,) = torch.autograd.grad(want.sum(), xc)
        for name, f in layouts.items():
            xv = f(x).detach().requires_grad_()
            assert torch.equal(xv.detach(), x) and not xv.is_contiguous(), name
            got = ssim(xv, f(y), reduction=reduction)
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
            (g,) = torch.autograd.grad(got.sum(), xv)
            torch.testing.assert_close(g, gwant, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_layouts_and_low_precision(device):
    x0, y0 = pair((2, 3, 12, 14), device)
    cases = [
        (x0.to(memory_format=torch.channels_last), y0.to(memory_format=torch.channels_last)),
        (x0.transpose(2, 3), y0.transpose(2, 3)),          # non-contiguous views
        (x0[:, ::2], y0[:, 1:]),                           # channel slices (N, 2, H, W) and (N, 2, H, W)
        (x0.bfloat16().to(memory_format=torch.channels_last), y0.bfloat16()),
        (x0.half(), y0.half()),
    ]
    for x, y in cases:
        for red, loss, gx, gy in ((0, True, True, False), (1, False, True, True), (2, True, False, True)):
            xg, yg = x.detach().requires_grad_(gx), y.detach().requires_grad_(gy)
            torch.library.opcheck(torch.ops.compgen.ssim_fwd.default, (xg, yg, 5, 1.5, 1e-4, 9e-4, red, loss, gx, gy))
            out, d = torch.ops.compgen.ssim_fwd(x, y, 5, 1.5, 1e-4, 9e-4, red, loss, gx, gy)
            grad = torch.rand(out.shape, dtype=out.dtype, device=device)
            if red == 2:
                grad = grad.to(memory_format=torch.channels_last)
            torch.library.opcheck(torch.ops.compgen.ssim_bwd.default, (grad, x, y, d, 5, 1.5, red, loss, gx, gy))


def _conv_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Sigmoid())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16_autocast"])
def test_torch_compile_conv_net_channels_last(device, backend, amp):
    """A conv net + ssim_loss on channels_last inputs under torch.compile: forward and backward equal eager (the
    fake kernels declare the strides and dtypes the kernels return)."""
    def step(net, x, y):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = net(x)
            return ssim_loss(out, y.to(out.dtype), window_size=7)

    x, y = (t.to(memory_format=torch.channels_last) for t in pair((2, 3, 16, 16), device))
    eager_net = _conv_net().to(device, memory_format=torch.channels_last)
    comp_net = _conv_net().to(device, memory_format=torch.channels_last)
    want = step(eager_net, x, y)
    want.backward()
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()
    with inductor_config.patch(force_disable_caches=True):  # a cached graph would hide a wrong fake kernel
        got = torch.compile(step, backend=backend, fullgraph=True)(comp_net, x, y)
        got.backward()
    assert got.dtype == want.dtype == torch.float32
    tol = 2e-2 if amp else 1e-4  # bfloat16: inductor may skip intermediate roundings; cuDNN algorithms may differ
    assert abs(float(got) - float(want)) <= tol * abs(float(want))
    for (name, p), q in zip(eager_net.named_parameters(), comp_net.parameters()):
        assert q.grad.dtype == p.grad.dtype and rel_err(q.grad, p.grad) < tol, name


def test_ssim_bwd_checks_grad_and_dmaps():
    x, y = pair((2, 3, 12, 14))
    _, d = torch.ops.compgen.ssim_fwd(x, y, 5, 1.5, 1e-4, 9e-4, 1, False, True, True)
    bwd = torch.ops.compgen.ssim_bwd
    with pytest.raises(RuntimeError, match=r"ssim_bwd: grad of reduction 'none' must have shape \(2,\)"):
        bwd(torch.ones(3), x, y, d, 5, 1.5, 1, False, True, True)
    with pytest.raises(RuntimeError, match=r"ssim_bwd: grad of reduction 'mean' must have one element"):
        bwd(torch.ones(2), x, y, d, 5, 1.5, 0, False, True, True)
    with pytest.raises(RuntimeError, match=r"ssim_bwd: grad of reduction 'map' must have shape"):
        bwd(torch.ones(2, 3, 8, 9), x, y, d, 5, 1.5, 2, False, True, True)
    with pytest.raises(RuntimeError, match=r"ssim_bwd: saved derivative maps have shape"):
        bwd(torch.ones(2), x, y, d[:3], 5, 1.5, 1, False, True, True)
    with pytest.raises(RuntimeError, match=r"ssim_bwd: saved derivative maps .* dtype"):
        bwd(torch.ones(2), x, y, d.double(), 5, 1.5, 1, False, True, True)
