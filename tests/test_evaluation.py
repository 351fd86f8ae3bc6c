"""Evaluation: metrics, the channel-PSNR sweep and its files, generation, CLI errors (tiny models, synthetic faces)."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pycompgen.config import load_config
from pycompgen import metrics as M
from pycompgen.evaluation import (generate_from_edges, generate_unconditional, load_for_eval, reconstruct,
                                  resolve_checkpoints, sweep, sweep_models)
from pycompgen.systems.compgen.networks import build_compgen
from pycompgen.models.checkpoint import FORMAT, save_checkpoint

TINY = ["model.channels=8", "model.latent_channels=4", "model.num_res=1", "model.num_mult=1",
        "model.elm_channels=8", "model.elm_hidden=16", "model.elm_num_res=1", "data.image_size=32",
        "data.synthetic_count=32", "train.progress=false", "eval.batch_size=16"]


def tiny_cfg(*extra):
    return load_config(None, TINY + list(extra))


def write_ckpt(path, cfg, stage, model_name="compgen", seed=0):
    torch.manual_seed(seed)
    models = build_compgen(cfg.model, cfg.data.image_size)
    state = {"format": FORMAT, "model": model_name, "stage": stage, "epoch": 1, "config": cfg.to_dict(),
             "models": {k: m.state_dict() for k, m in models.items()}, "optimizer": {},
             "metrics": {"val_ssim": 0.1}, "best_val_ssim": 0.1}
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = tiny_cfg()
    for i, stage in enumerate(["step1", "approach1", "approach3"]):
        write_ckpt(d / stage / "best.pt", cfg, stage, seed=i)
    return d


# -- metrics -------------------------------------------------------------------------------------------------------
def test_identical_images_score_perfectly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 64, 64, generator=g)
    z = (torch.rand(3, 1, 64, 64, generator=g) > 0.85).float()
    m = M.compute_metrics(x, x, z, edge_fn=lambda img: z)
    for k in ("ssim", "ms_ssim", "edge_f1"):
        assert torch.allclose(m[k], torch.ones(3), atol=1e-5), k
    assert torch.all(m["psnr"] == M.PSNR_CAP)
    assert torch.all(m["l1"] == 0) and torch.all(m["l2"] == 0)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m2 = M.compute_metrics(y, x)
    assert torch.all(m2["ssim"] < 0.9) and torch.all(m2["ms_ssim"] < 0.95) and torch.all(m2["psnr"] < 20)


def test_psnr_l1_l2_values():
    x = torch.full((2, 3, 16, 16), 0.5)
    y = x + 0.1
    assert torch.allclose(M.mse(y, x), torch.full((2,), 0.01), atol=1e-6)
    assert torch.allclose(M.l1(y, x), torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(M.psnr(y, x), torch.full((2,), 20.0), atol=1e-3)


def test_ms_ssim_matches_pytorch_msssim():
    pm = pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 180, 180, generator=g)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = M.ms_ssim(y, x)
    ref = pm.ms_ssim(y, x, data_range=1.0, size_average=False, win_size=11)
    assert ours.shape == (3,)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_ms_ssim_small_images_use_fewer_scales():
    assert M.ms_ssim_scales(256) == 5 and M.ms_ssim_scales(64) == 3 and M.ms_ssim_scales(32) == 2
    x = torch.rand(2, 3, 64, 64)
    v = M.ms_ssim(x.flip(0), x)
    assert torch.isfinite(v).all() and (v < 1).all()
    with pytest.raises(ValueError, match="5 scales"):
        M.ms_ssim(x, x, weights=M.MS_SSIM_WEIGHTS)


def test_edge_f1_exact_and_tolerance():
    t = torch.zeros(1, 1, 32, 32)
    t[0, 0, 8:24, 10] = 1
    t[0, 0, 12, 8:24] = 1
    shifted = torch.zeros_like(t)
    shifted[..., 1:] = t[..., :-1]   # one pixel to the right, no wrap-around
    assert M.edge_f1(t, t).item() == 1.0
    exact = M.edge_f1(shifted, t).item()
    assert 0 < exact < 0.5
    assert M.edge_f1(shifted, t, tolerance=1).item() == pytest.approx(1.0)
    empty = torch.zeros_like(t)
    assert M.edge_f1(empty, empty).item() == 1.0
    assert M.edge_f1(empty, t).item() == 0.0 and M.edge_f1(t, empty).item() == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        M.edge_f1(t, t, tolerance=-1)
    with pytest.raises(ValueError, match="shape"):
        M.edge_f1(t, t[..., :16])


# -- sweep -----------------------------------------------------------------------------------------------------------
def test_sweep_writes_json_table_plot_and_grids(run_dir, tmp_path):
    cfg = tiny_cfg("eval.psnrs=[50,0,-5]")
    ckpts = resolve_checkpoints([str(run_dir)])
    assert set(ckpts) == {"step1", "approach1", "approach3"}
    out = tmp_path / "eval"
    res = sweep(cfg, ckpts, data=None, out_dir=out, max_images=16)
    data = json.loads((out / "sweep.json").read_text())
    assert data["latent_shape"] == [4, 4, 4] and data["latent_values"] == 64 and data["image_size"] == 32
    assert data["n_images"] == 16 and data["split"] == "val" and data["ae_source"] == "step1"
    assert set(data["approaches"]) == {"approach1", "approach3"}
    assert set(data["approaches"]["approach3"]) == {"50", "0", "-5"}
    for row in data["rows"]:
        assert set(M.METRIC_NAMES) <= set(row)
        assert 0 <= row["ssim"] <= 1 and 0 <= row["edge_f1"] <= 1 and row["l2"] >= 0
    assert len(data["rows"]) == 1 + 2 * 3 and data["rows"][0]["approach"] == "ae"
    assert data["edge"]["canny_low"] == cfg.data.canny_low and data["edge"]["f1_tolerance_px"] == 0
    md = (out / "sweep.md").read_text()
    assert "| approach | 50 dB | 0 dB | -5 dB |" in md and "4×4×4" in md and "approach3" in md
    for rel in ["ssim_vs_psnr.png", "grids/psnr_50.png", "grids/psnr_0.png", "grids/psnr_-5.png", "grids/ae.png"]:
        img = cv2.imread(str(out / rel))
        assert img is not None and img.size > 0, rel
    assert data["figures"]["grids"] == {"50": "grids/psnr_50.png", "0": "grids/psnr_0.png",
                                        "-5": "grids/psnr_-5.png"}
    # grid: 6 rows of 32 px tiles x2, columns x, z+n, y, (y_hat, x_hat) x 2 approaches, AE
    g = cv2.imread(str(out / "grids/psnr_0.png"))
    assert g.shape[1] >= 8 * 64 and g.shape[0] >= 6 * 64
    assert res["approaches"]["approach3"]["0"]["ssim"] == pytest.approx(data["approaches"]["approach3"]["0"]["ssim"])


def test_sweep_noise_is_deterministic_and_matters(tmp_path):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    models = build_compgen(cfg.model, 32)
    from pycompgen.data import load_faces
    faces = load_faces(None, "val", 32, synthetic_count=32)
    kw = dict(psnrs=[50, -5], canny_low=cfg.data.canny_low, canny_high=cfg.data.canny_high,
              blur_sigma=cfg.data.blur_sigma, batch_size=8, n_grid=2)
    a = sweep_models({"a": models}, faces, tmp_path / "a", seed=3, **kw)
    b = sweep_models({"a": models}, faces, tmp_path / "b", seed=3, **kw)
    c = sweep_models({"a": models}, faces, tmp_path / "c", seed=4, **kw)
    assert a["approaches"] == b["approaches"]
    assert a["approaches"]["a"]["-5"]["l2"] != c["approaches"]["a"]["-5"]["l2"]
    assert a["ae"] is None and not (tmp_path / "a" / "grids" / "ae.png").exists()
    assert (tmp_path / "a" / "grids" / "psnr_50.png").is_file()
    d = sweep_models({"a": models}, faces, tmp_path / "d", seed=3, **{**kw, "n_grid": 0})  # no grids at all
    assert d["approaches"] == a["approaches"] and d["figures"]["grids"] == {}
    assert not (tmp_path / "d" / "grids").exists()


def test_reconstruct_modes():
    cfg = tiny_cfg()
    models = {k: m.eval() for k, m in build_compgen(cfg.model, 32).items()}
    x = torch.rand(2, 3, 32, 32)
    assert reconstruct(models, x=x, mode="ae").shape == (2, 3, 32, 32)
    assert reconstruct(models, z_noisy=torch.rand(2, 1, 32, 32), mode="elm").shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="mode"):
        reconstruct(models, x=x, mode="other")


# -- generation ------------------------------------------------------------------------------------------------------
def _sketch_folder(d: Path, n=3):
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((100, 80), 245, np.uint8)
        cv2.ellipse(img, (40, 50), (25 + i, 35), 0, 0, 360, 20, 2)
        cv2.circle(img, (30, 42), 4, 30, 2)
        cv2.circle(img, (50, 42), 4, 30, 2)
        cv2.line(img, (30, 68), (50, 68), 25, 2)
        cv2.imwrite(str(d / f"s{i}.png"), img)
    return d


def test_cli_evaluate_and_generate(run_dir, tmp_path, capsys):
    from pycompgen.cli import main
    out = tmp_path / "ev"
    rc = main(["evaluate", "--checkpoint", str(run_dir), "--out", str(out), *TINY, "eval.psnrs=[10,-2]",
               "eval.max_images=16"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "10 dB" in text and "-2 dB" in text and "approach3" in text and "latent 4x4x4" in text
    assert (out / "sweep.json").is_file() and (out / "grids" / "psnr_-2.png").is_file()
    sw = json.loads((out / "sweep.json").read_text())  # the fixed training faces beside the split, and the gap
    ts = sw["train_subset"]
    assert ts["n_images"] > 0 and "fixed training faces" in text and "## Gap" in (out / "sweep.md").read_text()
    assert ts["gap"]["approach3"]["10"]["ssim"] == pytest.approx(ts["approaches"]["approach3"]["10"]["ssim"]
                                                                 - sw["approaches"]["approach3"]["10"]["ssim"])

    sk = _sketch_folder(tmp_path / "sketches")
    gout = tmp_path / "gen"
    rc = main(["generate", "--checkpoint", str(run_dir / "approach3" / "best.pt"), "--out", str(gout),
               "--sketches", str(sk), "--unconditional", "4", *TINY])
    assert rc == 0
    assert cv2.imread(str(gout / "sketches_p000.png")) is not None
    assert sorted(f.name for f in (gout / "faces").iterdir()) == ["s0.png", "s1.png", "s2.png"]  # one per sketch
    assert cv2.imread(str(gout / "faces" / "s1.png")).shape == (32, 32, 3)
    assert cv2.imread(str(gout / "unconditional.png")) is not None
    summary = json.loads((gout / "generate.json").read_text())
    assert summary["psnr"] == -5.0
    assert summary["outputs"]["approach3"]["sketches"]["n"] == 3
    assert summary["checkpoints"]["approach3"]["latent_shape"] == [4, 4, 4]


def test_generation_is_seeded(run_dir):
    lc = load_for_eval(run_dir / "approach3" / "best.pt")
    a = generate_unconditional(lc.models, 3, 32, psnr=-5, seed=1)
    b = generate_unconditional(lc.models, 3, 32, psnr=-5, seed=1)
    assert a.shape == (3, 3, 32, 32) and torch.equal(a, b)
    z = torch.zeros(2, 1, 32, 32)
    z[:, :, 10, 5:25] = 1
    noisy, faces = generate_from_edges(lc.models, z, psnr=50, seed=0, image_size=32)
    assert faces.shape == (2, 3, 32, 32) and (noisy - z).abs().max() < 0.05


# -- errors ----------------------------------------------------------------------------------------------------------
def test_missing_checkpoint_is_reported(tmp_path, capsys):
    from pycompgen.cli import main
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        resolve_checkpoints([str(tmp_path / "nope.pt")])
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        resolve_checkpoints([str(tmp_path)])
    rc = main(["evaluate", "--checkpoint", f"a3={tmp_path / 'missing.pt'}", *TINY])
    assert rc == 2 and "missing.pt" in capsys.readouterr().err
    rc = main(["generate", "--out", str(tmp_path / "empty_run"), "--unconditional", "2", *TINY])
    assert rc == 2 and "approach3" in capsys.readouterr().err


def test_checkpoint_from_another_model(tmp_path):
    cfg = tiny_cfg()
    p = write_ckpt(tmp_path / "other.pt", cfg, "approach3", model_name="dcgan")
    with pytest.raises(ValueError, match="dcgan"):
        load_for_eval(p, expect_model="compgen")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a pycompgen checkpoint"):
        load_for_eval(tmp_path / "foreign.pt")


def test_wrong_image_size_and_bad_requests(run_dir, tmp_path, capsys):
    from pycompgen.cli import main
    lc = load_for_eval(run_dir / "approach3" / "best.pt")
    with pytest.raises(ValueError, match="32×32"):
        generate_from_edges(lc.models, torch.zeros(1, 1, 48, 48), image_size=32)
    faces = torch.zeros(4, 3, 48, 48, dtype=torch.uint8)
    with pytest.raises(ValueError, match="48×48"):
        sweep(tiny_cfg(), {"a3": str(run_dir / "approach3" / "best.pt")}, data=faces, out_dir=tmp_path / "x")
    rc = main(["generate", "--checkpoint", str(run_dir / "step1" / "best.pt"), "--unconditional", "2",
               "--out", str(tmp_path / "g"), *TINY])
    assert rc == 2 and "no trained ELM" in capsys.readouterr().err
    rc = main(["generate", "--checkpoint", str(run_dir / "approach3" / "best.pt"), *TINY])
    assert rc == 2 and "nothing to generate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="given twice"):
        resolve_checkpoints([f"x={run_dir / 'step1' / 'best.pt'}", f"x={run_dir / 'approach1' / 'best.pt'}"])
    assert math.isfinite(lc.epoch)


def test_sweep_auto_encoder_only(tmp_path):
    cfg = tiny_cfg()
    models = build_compgen(cfg.model, 32)
    faces = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    res = sweep_models({}, faces, tmp_path, ae=models, psnrs=[50, 0])
    assert [r["approach"] for r in res["rows"]] == ["ae"] and res["approaches"] == {}
    assert (tmp_path / "ssim_vs_psnr.png").is_file() and (tmp_path / "grids" / "ae.png").is_file()
    assert not list((tmp_path / "grids").glob("psnr_*.png"))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        sweep_models({}, faces, tmp_path, ae=None)
