"""The BEGAN image refiner (seed 003) on the harness: losses, k_t, injected scales, resume, inference, bad input,
and a 2-worker Ray Train run through the CLI. Tiny widths, 32x32 (one test at 64x64) synthetic faces."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import synthetic_face_batch as face_batch
from pycompgen.config import load_config
from pycompgen.data import load_faces
from pycompgen.systems import build_networks, build_system, get_system
from pycompgen.training import load_checkpoint, train_local

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "began-tiny.yaml")


def cfg_for(*over, out=None):
    cfg = load_config(TINY, list(over))
    if out is not None:
        cfg.out = str(out)
    return cfg


def test_losses_decrease_on_a_fixed_batch():
    sys_ = build_system(cfg_for(), "cpu")
    b = sys_.prepare_batch(face_batch(16), torch.Generator())
    logs = [sys_.train_step(b) for _ in range(25)]
    first, last = logs[0], logs[-1]
    # the autoencoder learns real faces and the refiner learns to reproduce them (L_G has an adversarial part that
    # D moves, so only its reconstruction part need fall)
    assert last["l_real"] < first["l_real"]
    assert last["l_rcn"] < first["l_rcn"]
    assert last["m_global"] < first["m_global"]
    for lg in logs:
        assert all(torch.isfinite(v) for v in lg.values())


def test_loss_is_the_papers_equation_4():
    """L_D = L(x) − k·L(G), L_G = (1−λr)·L(G) + λr·|x − G|, k' = clip(k + λk(γL(x) − L(G)), 0, 1), every term on
    BEGAN's scale [−1, 1] (v' = 2v − 1) while the refiner's images stay in [0, 1]."""
    cfg = cfg_for("began.lambda_k=0.3", "began.gamma=0.9", "began.k0=0.25", "began.lambda_r=0.3", "train.amp=off")
    s = build_system(cfg, "cpu")
    x = s.prepare_batch(face_batch(8), torch.Generator())["x"]
    g, D = s.models["g"], s.models["D"]
    with torch.no_grad():
        G = g(x)
        xs, Gs = 2 * x - 1, 2 * G - 1
        l_real = (xs - D(xs)).abs().mean()
        l_fake = (Gs - D(Gs)).abs().mean()
    logs = s.train_step({"x": x})
    torch.testing.assert_close(logs["l_real"], l_real, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["l_fake"], l_fake, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["loss_d"], l_real - 0.25 * l_fake, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["l_rcn"], (xs - Gs).abs().mean(), rtol=1e-5, atol=1e-6)
    k = min(max(0.25 + 0.3 * float(0.9 * l_real - l_fake), 0.0), 1.0)
    assert s.extra["k_t"] == pytest.approx(k, abs=1e-6) and float(logs["k_t"]) == pytest.approx(k, abs=1e-6)
    assert float(logs["m_global"]) == pytest.approx(float(l_real + (0.9 * l_real - l_fake).abs()), abs=1e-6)
    # L_G uses L(G) through the updated D, into g only: D's gradients stay those of its own step
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in D.parameters())


def test_reconstruction_at_a_lower_resolution():
    """began.rcn_size=16: L_RCN compares G's output and the target both area-downscaled to 16x16, so detail above
    16 px is left to the adversarial term; null keeps the full-size term of eq. (4)."""
    import torch.nn.functional as F
    cfg = cfg_for("began.rcn_size=16", "train.amp=off")
    s = build_system(cfg, "cpu")
    x = s.prepare_batch(face_batch(8), torch.Generator())["x"]
    with torch.no_grad():
        G = s.models["g"](x)
    down = lambda v: F.interpolate(v, size=(16, 16), mode="area")  # noqa: E731
    logs = s.train_step({"x": x})
    torch.testing.assert_close(logs["l_rcn"], 2 * (down(x) - down(G)).abs().mean(), rtol=1e-5, atol=1e-6)
    assert float(logs["l_rcn"]) < float(2 * (x - G).abs().mean())  # detail above 16 px no longer counts
    # an image that differs from x only above 16 px (a checkerboard averages out in every 2x2 cell) costs nothing
    from pycompgen.systems.began import rcn_loss
    checker = (torch.arange(32).view(1, 32) + torch.arange(32).view(32, 1)) % 2 * 0.2 - 0.1
    y = x.clamp(0.1, 0.9)
    assert float(rcn_loss(y + checker, y, 16)) < 1e-6 and float(rcn_loss(y + checker, y)) > 0.1
    for bad in (4, 64, "'16'", "full"):
        with pytest.raises(ValueError, match="began.rcn_size must be null"):
            cfg_for(f"began.rcn_size={bad}")
    # "input": the largest resolution the refiner is given (at 32x32 every variant injects 16)
    c = cfg_for("began.rcn_size=input").began
    assert c.rcn_resolution(32) == 16 and cfg_for().began.rcn_resolution(32) == 32
    c64 = load_config(None, ["model.name=began", "data.image_size=64", "began.rcn_size=input", "began.variant=B"])
    assert c64.began.rcn_resolution(64) == 32


def test_spatial_code_discriminator():
    """began.code_channels=c: D's bottleneck is a c x 8 x 8 code (1x1 convs) instead of the FC embedding; it trains
    (no fully connected layer in D) and the paper's FC bottleneck stays the default."""
    s = build_system(cfg_for("began.code_channels=4"), "cpu")
    D = s.models["D"]
    assert not any(isinstance(m, torch.nn.Linear) for m in D.modules())
    b = s.prepare_batch(face_batch(8), torch.Generator())
    logs = [s.train_step(b) for _ in range(3)]
    assert all(torch.isfinite(v) for lg in logs for v in lg.values())
    fc = build_system(cfg_for(), "cpu").models["D"]
    assert any(isinstance(m, torch.nn.Linear) for m in fc.modules())
    with pytest.raises(ValueError, match="began.code_channels must be >= 1"):
        cfg_for("began.code_channels=0")


def test_bilinear_upsampling_in_the_refiner():
    """began.upsample=bilinear: G interpolates instead of copying pixels (same weights, other outputs; D unchanged),
    it trains, and the default stays BEGAN's nearest-neighbour; an unknown mode is refused in one line."""
    near = build_system(cfg_for(), "cpu").models
    bil = build_networks(cfg_for("began.upsample=bilinear"))
    assert near["g"].dec.upsample == "nearest" and bil["g"].dec.upsample == "bilinear"
    assert bil["D"].dec.upsample == "nearest"
    bil["g"].load_state_dict(near["g"].state_dict())
    x = face_batch(4).float() / 255
    near["g"].eval(), bil["g"].eval()
    with torch.no_grad():
        assert not torch.allclose(near["g"](x), bil["g"](x))
    s = build_system(cfg_for("began.upsample=bilinear"), "cpu")
    logs = [s.train_step(s.prepare_batch(face_batch(8), torch.Generator())) for _ in range(2)]
    assert all(torch.isfinite(v) for lg in logs for v in lg.values())
    with pytest.raises(ValueError, match="began.upsample must be one of nearest, bilinear, pixelshuffle"):
        cfg_for("began.upsample=cubic")


def test_pixelshuffle_upsampling_starts_as_nearest():
    """began.upsample=pixelshuffle: each upsampling is a 3x3 conv to 4n channels + PixelShuffle(2), ICNR-initialised,
    so at initialisation every 2x2 block of its output is constant (a nearest-neighbour upsampling, no checkerboard);
    after training steps the sub-pixels differ."""
    from pycompgen.systems.began import BEGANDecoder
    dec = BEGANDecoder(8, 32, upsample="pixelshuffle")
    h = dec._up(torch.randn(2, 8, 8, 8), 0)
    assert h.shape == (2, 8, 16, 16)
    assert torch.allclose(h, torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(h, 2), scale_factor=2))
    s = build_system(cfg_for("began.upsample=pixelshuffle"), "cpu")
    assert len(s.models["g"].dec.shuffle) == len(s.models["g"].dec.scales)
    b = s.prepare_batch(face_batch(8), torch.Generator())
    logs = [s.train_step(b) for _ in range(3)]
    assert all(torch.isfinite(v) for lg in logs for v in lg.values())
    h = s.models["g"].dec._up(torch.randn(2, 8, 8, 8), 0)
    assert not torch.allclose(h, torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(h, 2),
                                                                 scale_factor=2))


def test_consistency_projection_keeps_the_input_at_the_rcn_resolution():
    """began.consistency: the refined image's area-downscale to the L_RCN resolution equals the input's exactly (in
    training mode, before the eval clamp), L_RCN is measured on G's output before the projection (so it still
    trains), and a projection at full size (the identity) is refused."""
    from pycompgen.systems.began import project
    y, t = torch.randn(3, 3, 32, 32), torch.rand(3, 3, 8, 8)
    assert torch.allclose(torch.nn.functional.avg_pool2d(project(y, t), 4), t, atol=1e-6)
    z = project(y, t)
    assert torch.allclose(project(z, t), z, atol=1e-6)  # a projection
    s = build_system(cfg_for("began.consistency=true", "began.rcn_size=16"), "cpu")
    g = s.models["g"]
    assert g.consistency == 16
    x = face_batch(4).float() / 255
    out, raw = g(x, with_raw=True)
    assert torch.allclose(torch.nn.functional.avg_pool2d(out, 2), torch.nn.functional.avg_pool2d(x, 2), atol=1e-5)
    assert not torch.allclose(out, raw)
    b = s.prepare_batch(face_batch(8), torch.Generator())
    logs = [s.train_step(b) for _ in range(3)]
    assert float(logs[0]["l_rcn"]) > 0 and float(logs[-1]["l_rcn"]) < float(logs[0]["l_rcn"])
    assert float(s.validation_step(b)["l_rcn"]) > 0
    with pytest.raises(ValueError, match="began.consistency needs began.rcn_size below data.image_size"):
        cfg_for("began.consistency=true")


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_k_t_stays_in_unit_interval(gamma):
    s = build_system(cfg_for(f"began.gamma={gamma}", "began.lambda_k=10.0", "began.k0=0.5"), "cpu")
    b = s.prepare_batch(face_batch(8), torch.Generator())
    ks = [float(s.train_step(b)["k_t"]) for _ in range(4)]
    assert all(0.0 <= k <= 1.0 for k in ks)
    assert ks[-1] == (0.0 if gamma == 0.0 else 1.0)  # pushed hard to a bound, clipped there


def test_k_t_is_checkpointed_and_restored_on_resume(tmp_path):
    over = ["began.lambda_k=0.2", "began.gamma=1.5", "train.epochs=2"]
    full = train_local(cfg_for(*over, out=tmp_path / "full"), verbose=False)
    train_local(cfg_for(*over[:-1], "train.epochs=1", out=tmp_path / "part"), verbose=False)
    ck1 = load_checkpoint(tmp_path / "part" / "last.pt", expect_model="began")
    k1 = ck1["extra"]["k_t"]
    assert 0.0 < k1 <= 1.0 and set(ck1["optimizers"]) == {"g", "D"} and set(ck1["models"]) == {"g", "D"}
    # a system built from the checkpoint starts from its k_t, not from began.k0
    s = build_system(cfg_for(*over), "cpu", resume_state=ck1)
    assert s.extra["k_t"] == k1
    resumed = train_local(cfg_for(*over, out=tmp_path / "part"), resume=True, verbose=False)
    ck_full = load_checkpoint(tmp_path / "full" / "last.pt", expect_model="began")
    ck_res = load_checkpoint(tmp_path / "part" / "last.pt", expect_model="began")
    assert ck_res["epoch"] == 2 and ck_res["extra"]["k_t"] == pytest.approx(ck_full["extra"]["k_t"], abs=1e-6)
    assert resumed["train_k_t"] == pytest.approx(full["train_k_t"], abs=1e-6)
    assert resumed["train_m_global"] == pytest.approx(full["train_m_global"], rel=1e-5)
    for k, v in ck_full["models"]["g"].items():
        torch.testing.assert_close(ck_res["models"]["g"][k], v)


def test_injected_scales_change_the_generators_inputs():
    from pycompgen.systems.began import upsample_scales, variant_scales
    assert upsample_scales(64) == [16, 32, 64]
    # downscaled versions only: the full-resolution image would make G(x) = x optimal
    assert [variant_scales(v, 64) for v in "ABC"] == [[16], [32], [16, 32]]
    assert [variant_scales(v, 128) for v in "ABC"] == [[16], [64], [16, 32, 64]]
    assert [variant_scales(v, 32) for v in "ABC"] == [[16]] * 3
    x = face_batch(4, 64).float() / 255
    outs = {}
    for v in "ABC":
        cfg = load_config(TINY, ["data.image_size=64", f"began.variant={v}"])
        g = build_networks(cfg)["g"]
        assert g.inject == tuple(variant_scales(v, 64))
        # the first conv after each upsampling takes n (+3 where the downscaled image is injected) channels
        widths = [blk[0].in_channels for blk in g.dec.blocks[1:]]
        assert widths == [8 + (3 if s in g.inject else 0) for s in (16, 32, 64)]
        outs[v] = g(x)
        assert outs[v].shape == x.shape and outs[v].min() >= 0 and outs[v].max() <= 1
    # an explicit list overrides the variant; only the injected scales reach the generator
    cfg = load_config(TINY, ["data.image_size=64", "began.inject=[32]", "began.variant=A"])
    g = build_networks(cfg)["g"]
    assert g.inject == (32,)
    x64 = face_batch(2, 64).float() / 255
    y = g(x64)
    x64.requires_grad_(True)
    g(x64).sum().backward()
    assert x64.grad.abs().sum() > 0 and y.shape == (2, 3, 64, 64)
    # the refiner never sees the full-resolution image: a swap inside every 2x2 block changes nothing
    a = face_batch(1, 64).float() / 255
    b = a.clone()
    b[..., 0::2, 0::2], b[..., 1::2, 1::2] = a[..., 1::2, 1::2], a[..., 0::2, 0::2]  # same 2x2 means
    torch.testing.assert_close(g(a), g(b), atol=1e-5, rtol=0)
    # without injection at 32, it sees the image only through its 8x8 and 16x16 versions
    g16 = build_networks(load_config(TINY, ["data.image_size=64", "began.inject=[16]"]))["g"]
    c = a.clone()
    c[..., 0::4, :], c[..., 2::4, :] = a[..., 2::4, :], a[..., 0::4, :]  # rows swapped inside 4x4 blocks
    torch.testing.assert_close(g16(a), g16(c), atol=1e-5, rtol=0)
    assert (g(a) - g(c)).abs().max() > 1e-4  # injected at 32: the refiner sees the difference


def test_validation_reconstruct_and_refine():
    cfg = cfg_for()
    s = build_system(cfg, "cpu")
    b = s.prepare_batch(face_batch(4), torch.Generator())
    s.eval_mode()
    with torch.no_grad():
        out = s.validation_step(b)
    assert {"loss", "x_hat", "m_global", "l_rcn"} <= set(out) and out["x_hat"].shape == b["x"].shape
    cls = get_system("began")
    assert cls.input_key("train") == "x"
    eb = cls.example_batch(cfg, face_batch(2), torch.Generator())
    with torch.no_grad():
        rec = cls.reconstruct("train", s.models, eb)
    assert rec.shape == (2, 3, 32, 32)
    from pycompgen.systems.began import refine
    # arbitrary inputs: uint8 tensors, numpy arrays, other sizes (a 16x16 face is enlarged to 32x32)
    r1 = refine(s.models, face_batch(3))
    r2 = refine(s.models, load_faces(None, "train", 32, synthetic_count=3).images)
    torch.testing.assert_close(r1, r2)
    r3 = refine(s.models, face_batch(2, 16))
    assert r3.shape == (2, 3, 32, 32) and 0 <= r3.min() and r3.max() <= 1


def test_refiner_report_measures_synthetic_fd_against_the_given_real_faces():
    """refiner_report's FD of synthetic faces goes to ``real_fd`` when given (many faces; the SSIM figures keep
    ``val``): against the synthetic inputs themselves the unrefined FD is 0."""
    from pycompgen.evaluation.judge import EncoderFeatures
    from pycompgen.evaluation.refiner import refiner_report
    torch.manual_seed(0)
    feats = EncoderFeatures(torch.nn.Conv2d(3, 4, 4, 4), name="enc", pool=2)
    faces = face_batch(48).float() / 255
    val, syn = faces[:8], faces[8:]
    same = refiner_report(lambda t: t, val, val, syn, feats, 8, 16)
    own = refiner_report(lambda t: t, val, val, syn, feats, 8, 16, real_fd=syn)
    assert own["synthetic"]["fd_input_to_real"] == pytest.approx(0.0, abs=1e-6)
    assert same["synthetic"]["fd_input_to_real"] > 1e-3 and own["val"] == same["val"]


def test_bad_input_gives_clear_errors():
    s = build_system(cfg_for(), "cpu")
    with pytest.raises(ValueError, match="data.image_size=32"):
        s.prepare_batch(face_batch(2, 64), torch.Generator())
    with pytest.raises(ValueError, match="expected 32x32 images"):
        s.models["g"](torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="expected 32x32 images"):
        s.models["D"](torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        s.models["g"](torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="power-of-two data.image_size"):
        cfg_for("data.image_size=48")
    with pytest.raises(ValueError, match="began.variant must be one of A, B, C"):
        cfg_for("began.variant=D")
    with pytest.raises(ValueError, match="began.inject must list distinct resolutions among"):
        cfg_for("began.inject=[8]")
    with pytest.raises(ValueError, match=r"among \[16\] \(downscaled versions"):
        cfg_for("began.inject=[32]")  # the full 32x32 image: identity would be optimal
    with pytest.raises(ValueError, match="began.lambda_r must be in"):
        cfg_for("began.lambda_r=1.5")
    from pycompgen.systems.began import refine
    with pytest.raises(ValueError, match="refine: expected"):
        refine(s.models, torch.rand(2, 32, 32))


@pytest.mark.distributed
@pytest.mark.timeout(420)
def test_cli_trains_began_on_two_ray_workers(tmp_path):
    """``pycompgen train --system began --workers 2`` on Ray Train with the tiny config, tracked in MLflow."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pycompgen", "train", "--system", "began", "--workers", "2", "--config", TINY,
           "--out", str(out), "data.synthetic_count=64", "train.epochs=2", "eval.max_images=16",
           "began.lambda_k=0.2", "began.gamma=1.5"]
    from conftest import RAY_TEST_ENV
    env = dict(os.environ, **RAY_TEST_ENV, PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = load_checkpoint(out / "last.pt", expect_model="began")
    assert ck["stage"] == "train" and ck["epoch"] == 2 and set(ck["models"]) == {"g", "D"}
    assert set(ck["optimizers"]) == {"g", "D"} and ck["optimizers"]["D"]["state"]
    assert 0.0 <= ck["extra"]["k_t"] <= 1.0
    assert "train_k_t" in ck["metrics"] and "train_m_global" in ck["metrics"]


def test_k_t_and_m_global_are_logged_every_step():
    """System.step_log_keys: the epoch's metrics carry one value per training step (MLflow: step_k_t, ...)."""
    from pycompgen.training import make_loaders
    from pycompgen.training.loop import train_one_epoch
    cfg = cfg_for("train.max_steps_per_epoch=3", "began.lambda_k=0.5")
    s = build_system(cfg, "cpu")
    loader, _ = make_loaders(cfg)
    m = train_one_epoch(s, loader, 0)
    assert set(m["step_logs"]) == {"k_t", "m_global"}
    assert len(m["step_logs"]["k_t"]) == m["train_steps"] == 3
    assert all(0.0 <= k <= 1.0 for k in m["step_logs"]["k_t"])
    assert m["step_logs"]["k_t"][-1] == pytest.approx(s.extra["k_t"])


def test_step_logs_reach_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient
    from pycompgen.tracking import EpochLogger
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cl = MlflowClient(uri)
    rid = cl.create_run(cl.create_experiment("t")).info.run_id
    log = EpochLogger(uri, rid)
    log.log_epoch(2, {"train_loss": 0.5, "epochs": 3}, None, step_logs={"k_t": [0.1, 0.2, 0.3]})
    hist = cl.get_metric_history(rid, "step_k_t")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(3, 0.1), (4, 0.2), (5, 0.3)]


def test_refiner_output_is_linear_in_training_and_clamped_in_eval():
    """A tanh output saturated at 0 on CelebA and lost its gradient: the output is linear while training (gradient
    alive far outside [0, 1]) and clamped to [0, 1] in eval mode."""
    g = build_networks(load_config(TINY, []))["g"]
    with torch.no_grad():
        g.dec.out.bias.fill_(5.0)   # pushes every output to ~3, where a tanh would be flat
    x = face_batch(2).float() / 255
    y = g.train()(x)
    assert float(y.min()) > 1.0
    y.mean().backward()
    assert float(g.dec.out.bias.grad.abs().min()) > 0.1   # d mean / d bias = 0.5 per channel: not saturated
    assert float(g.eval()(x).max()) <= 1.0
