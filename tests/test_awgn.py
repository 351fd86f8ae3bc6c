"""AWGN channel op (pycompgen.ops.awgn): noise level, normalisation, determinism, autograd, opcheck, bad inputs."""
import math

import pytest
import torch

from pycompgen._ops import CHECK_FINITE_ENV
from pycompgen.ops import awgn
from pycompgen.reference import awgn as ref_awgn

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def edge_map(n, h=64, w=64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, h, w, generator=g) > 0.8).float().to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("psnr", [50.0, 25.0, 10.0, 0.0, -2.0, -5.0, -20.0])
def test_empirical_sigma(device, psnr):
    z = edge_map(256, 64, 64, device)  # 1,048,576 samples
    g = torch.Generator(device=device).manual_seed(1)
    noise = awgn(z, psnr, normalize=False, generator=g) - z
    sigma = 10 ** (-psnr / 20)
    assert abs(noise.std().item() / sigma - 1) < 0.01
    assert abs(noise.mean().item()) < 0.01 * sigma
    # normal shape: kurtosis 3, about 0.27 % of samples beyond 3 sigma
    x = (noise / sigma).double()
    assert abs((x ** 4).mean().item() - 3) < 0.05
    assert abs((x.abs() > 3).double().mean().item() - 0.0027) < 0.0004


@pytest.mark.parametrize("device", DEVICES)
def test_noise_uncorrelated(device):
    z = torch.zeros(4, 1, 512, 512, device=device)
    n = awgn(z, 0.0, normalize=False, generator=torch.Generator(device=device).manual_seed(3)).flatten().double()
    for lag in (1, 2, 3, 4, 5, 8, 512):
        r = (n[:-lag] * n[lag:]).mean() / n.var()
        assert abs(r.item()) < 0.005, lag


@pytest.mark.parametrize("device", DEVICES)
def test_normalisation_rule(device):
    z = edge_map(64, 32, 32, device)
    for psnr in (20.0, 0.0, -6.0, -12.0):
        g1 = torch.Generator(device=device).manual_seed(5)
        g2 = torch.Generator(device=device).manual_seed(5)
        raw = awgn(z, psnr, normalize=False, generator=g1)
        out = awgn(z, psnr, normalize=True, generator=g2)
        sigma = 10 ** (-psnr / 20)
        torch.testing.assert_close(out, raw / max(1.0, sigma), rtol=1e-6, atol=1e-6)
        if psnr < 0:  # unit-power noise below 0 dB
            assert abs((out - z / sigma).std().item() - 1.0) < 0.02


@pytest.mark.parametrize("device", DEVICES)
def test_per_sample_psnr_tensor(device):
    z = torch.zeros(6, 1, 200, 200, device=device)
    psnr = torch.tensor([40.0, 20.0, 0.0, -5.0, float("inf"), 10.0], device=device)
    out = awgn(z, psnr, normalize=False)
    for i, p in enumerate(psnr.tolist()):
        sigma = 0.0 if math.isinf(p) else 10 ** (-p / 20)
        if sigma == 0:
            assert torch.equal(out[i], z[i])
        else:
            assert abs(out[i].std().item() / sigma - 1) < 0.02
    # a 0-D tensor broadcasts like a float
    a = awgn(z, torch.tensor(3.0), generator=torch.Generator(device=device).manual_seed(0))
    b = awgn(z, 3.0, generator=torch.Generator(device=device).manual_seed(0))
    assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_determinism(device):
    z = edge_map(8, 33, 17, device)
    torch.manual_seed(123)
    a = awgn(z, 5.0)
    torch.manual_seed(123)
    b = awgn(z, 5.0)
    c = awgn(z, 5.0)
    assert torch.equal(a, b) and not torch.equal(b, c)
    g = torch.Generator(device=device)
    a = awgn(z, 5.0, generator=g.manual_seed(7))
    b = awgn(z, 5.0, generator=g.manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, awgn(z, 5.0, generator=g.manual_seed(8)))
    # a CPU generator drives the noise of any device
    assert torch.equal(awgn(z, 5.0, generator=torch.Generator().manual_seed(9)),
                       awgn(z, 5.0, generator=torch.Generator().manual_seed(9)))


def test_independent_of_thread_count():
    z = torch.zeros(16, 3, 64, 64)
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = awgn(z, 0.0, generator=torch.Generator().manual_seed(1))
        torch.set_num_threads(max(2, n0))
        b = awgn(z, 0.0, generator=torch.Generator().manual_seed(1))
    finally:
        torch.set_num_threads(n0)
    assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_inf_psnr_is_exact_identity(device):
    z = torch.randn(3, 2, 9, 7, device=device) * 10
    for normalize in (True, False):
        out = awgn(z, float("inf"), normalize=normalize)
        assert torch.equal(out, z) and out.data_ptr() != z.data_ptr()


@pytest.mark.parametrize("device", DEVICES)
def test_peak_none_uses_max_abs(device, monkeypatch):
    monkeypatch.setenv(CHECK_FINITE_ENV, "1")  # CUDA: eager data checks (debug mode)
    z = torch.zeros(2, 1, 256, 256, device=device)
    z[0, 0, 0, 0] = 4.0
    z[1, 0, 5, 5] = -0.5
    out = awgn(z, 6.0, normalize=False, peak=None) - z
    for i, pk in enumerate((4.0, 0.5)):
        assert abs(out[i].std().item() / (pk * 10 ** (-6 / 20)) - 1) < 0.02
    with pytest.raises(ValueError, match="awgn: peak=None but image 1 of z is all zero"):
        awgn(torch.stack([z[0], torch.zeros_like(z[1])]), 6.0, peak=None)


def test_matches_reference_statistics():
    """Same sigma and normalisation as the pure-PyTorch reference (whose noise is torch.randn)."""
    z = edge_map(64, 64, 64)
    psnr = torch.linspace(-10, 20, 64)
    g = torch.Generator().manual_seed(0)
    d = torch.clamp(10 ** (-psnr / 20), min=1).view(-1, 1, 1, 1)
    s_ours = (awgn(z, psnr, peak=None, generator=g) - z / d).std(dim=(1, 2, 3))
    s_ref = (ref_awgn(z, psnr, peak=None, generator=g) - z / d).std(dim=(1, 2, 3))
    want = 10 ** (-psnr / 20) / d.flatten()
    torch.testing.assert_close(s_ours, want, rtol=0.05, atol=0)
    torch.testing.assert_close(s_ref, want, rtol=0.05, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_dtypes(device):
    z = edge_map(4, 32, 32, device)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        out = awgn(z.to(dtype), 10.0, generator=torch.Generator(device=device).manual_seed(0))
        ref = awgn(z, 10.0, generator=torch.Generator(device=device).manual_seed(0))
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient(device):
    z = torch.rand(3, 1, 5, 6, dtype=torch.float64, device=device, requires_grad=True)
    for psnr in (10.0, -6.0):
        for normalize in (True, False):
            g = torch.Generator(device=device)

            def f(t):
                return awgn(t, psnr, normalize=normalize, generator=g.manual_seed(0))

            assert torch.autograd.gradcheck(f, (z,))
            (gz,) = torch.autograd.grad(f(z).sum(), z)
            scale = max(1.0, 10 ** (-psnr / 20)) if normalize else 1.0
            torch.testing.assert_close(gz, torch.full_like(gz, 1 / scale))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    z = torch.rand(3, 2, 8, 8, device=device, requires_grad=True)
    sigma = torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64, device=device)
    seed = torch.tensor([11, 22], device=device)
    for normalize in (True, False):
        torch.library.opcheck(torch.ops.compgen.awgn.default, (z, sigma, seed, normalize))


def test_torch_compile():
    z = torch.rand(2, 1, 16, 16, requires_grad=True)
    f = torch.compile(lambda t, g: awgn(t, -3.0, generator=g) * 2, backend="eager")
    a = f(z, torch.Generator().manual_seed(0))
    assert torch.equal(a, awgn(z, -3.0, generator=torch.Generator().manual_seed(0)) * 2)
    a.sum().backward()
    torch.testing.assert_close(z.grad, torch.full_like(z, 2 / 10 ** (3 / 20)))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    assert awgn(torch.zeros(0, 1, 8, 8, device=device), 10.0).shape == (0, 1, 8, 8)
    assert awgn(torch.zeros(0, 1, 8, 8, device=device), torch.zeros(0, device=device)).shape == (0, 1, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs(device, monkeypatch):
    monkeypatch.setenv(CHECK_FINITE_ENV, "1")  # CUDA: eager data checks (debug mode)
    z = edge_map(2, 8, 8, device)
    cases = [
        (lambda: awgn(z[0, 0, 0, 0], 10.0), "batch dimension"),
        (lambda: awgn(z.to(torch.int32), 10.0), "floating-point"),
        (lambda: awgn(z, float("nan")), "NaN or -inf"),
        (lambda: awgn(z, -math.inf), "NaN or -inf"),
        (lambda: awgn(z, torch.tensor([1.0, float("nan")], device=device)), "NaN or -inf"),
        (lambda: awgn(z, torch.zeros(3, device=device)), r"shape \(N,\)"),
        (lambda: awgn(z, torch.zeros(2, 1, device=device)), r"shape \(N,\)"),
        (lambda: awgn(z, "10"), "psnr_db must be"),
        (lambda: awgn(z, 10.0, peak=0.0), "peak must be"),
        (lambda: awgn(z, 10.0, peak=-1.0), "peak must be"),
        (lambda: awgn(z, -1e6), "infinite"),
        (lambda: awgn(z, 10.0, generator=123), "generator"),
        (lambda: torch.ops.compgen.awgn(z, torch.ones(3, dtype=torch.float64, device=device),
                                        torch.zeros(2, dtype=torch.int64, device=device), True), "sigma"),
        (lambda: torch.ops.compgen.awgn(z, torch.ones(2, device=device),
                                        torch.zeros(2, dtype=torch.int64, device=device), True), "float64"),
        (lambda: torch.ops.compgen.awgn(z, torch.ones(2, dtype=torch.float64, device=device),
                                        torch.zeros(3, dtype=torch.int64, device=device), True), "seed"),
    ]
    cases += [  # the CPU kernel scans z while it reads it; CUDA checks only in debug mode (set above)
        (lambda: awgn(torch.where(z > 0, float("nan"), z), 10.0), "NaN or Inf"),
        (lambda: awgn(torch.where(z > 0, float("inf"), z), math.inf), "NaN or Inf"),
    ]
    if device == "cpu":  # the raw op on CUDA turns an image with a bad sigma into NaN (tests/test_cuda_path.py)
        cases += [
            (lambda: torch.ops.compgen.awgn(z, torch.tensor([1.0, -1.0], dtype=torch.float64),
                                            torch.zeros(2, dtype=torch.int64), True), "sigma of image 1"),
        ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            fn()
        assert "awgn" in str(e.value)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="same device"):
            torch.ops.compgen.awgn(z.cpu(), torch.ones(2, dtype=torch.float64, device="cuda"),
                                   torch.zeros(2, dtype=torch.int64), True)
