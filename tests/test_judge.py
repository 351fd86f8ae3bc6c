"""pycompgen.evaluation.judge: FD/KD, bootstrap intervals, collapse flag, bad input, torchmetrics agreement."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pycompgen.evaluation import judge as J


class _Pool(J.FeatureExtractor):
    """A deterministic small feature space for tests: 4×4 average pooling of RGB -> 48 features."""
    name = "pool4"

    def forward(self, x):
        return nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)


def _faces(n, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=g)
    x = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (x + 0.02 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def test_fd_zero_on_itself_and_grows_with_shift():
    torch.manual_seed(0)
    f = torch.randn(400, 16, dtype=torch.float64)
    assert abs(J.frechet_distance(f, f)) < 1e-8
    d = [J.frechet_distance(f + s, f) for s in (0.0, 0.2, 0.5, 1.0)]
    assert d[0] < 1e-8 < d[1] < d[2] < d[3]
    assert d[3] == pytest.approx(16.0, rel=1e-6)   # a mean shift of 1 in 16 dims: ‖Δμ‖² = 16


def test_fd_matches_closed_form_and_low_rank_case():
    torch.manual_seed(1)
    a, b = torch.randn(30, 64, dtype=torch.float64), torch.randn(40, 64, dtype=torch.float64) * 2
    # reference: eigenvalues of Σ1Σ2 (as torchmetrics / pytorch-fid)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    ref = (a.mean(0) - b.mean(0)).pow(2).sum() + ca.trace() + cb.trace() - \
        2 * torch.linalg.eigvals(ca @ cb).sqrt().real.sum()
    assert J.frechet_distance(a, b) == pytest.approx(float(ref), rel=1e-6, abs=1e-6)


def test_kd_unbiased_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(2)
    kds = [J.kernel_distance(torch.randn(300, 8, generator=g, dtype=torch.float64),
                             torch.randn(300, 8, generator=g, dtype=torch.float64)) for _ in range(10)]
    mean = sum(kds) / len(kds)
    shifted = J.kernel_distance(torch.randn(300, 8, generator=g, dtype=torch.float64) + 0.5,
                                torch.randn(300, 8, generator=g, dtype=torch.float64))
    assert abs(mean) < 0.01 < shifted
    assert min(kds) < 0 < max(kds) or abs(mean) < 2e-3    # unbiased: scatters around zero


def test_interval_contains_its_estimate_even_with_more_dims_than_samples():
    """The subset interval brackets its own estimate; with d > n/2 the plain bootstrap's FD interval did not (the
    repeated samples inflate the covariance term) — the case of Compgen f features (1,024 dims) on 500 faces."""
    torch.manual_seed(3)
    for d in (8, 300):
        f, r = torch.randn(200, d, dtype=torch.float64) + 0.3, torch.randn(250, d, dtype=torch.float64)
        b = J.bootstrap_realism(f, r, n_boot=100, seed=0)
        assert b["fd_ci"][0] <= b["fd_sub"] <= b["fd_ci"][1] and b["kd_ci"][0] <= b["kd_sub"] <= b["kd_ci"][1]
        assert b["subset_size"] == [100, 125]
        if d == 8:  # few dimensions: the full-set estimate lies inside as well
            fd, kd = J.frechet_distance(f, r), J.kernel_distance(f, r)
            assert b["fd_ci"][0] <= fd <= b["fd_ci"][1] and b["kd_ci"][0] <= kd <= b["kd_ci"][1]
    m = J.bootstrap_mean(torch.rand(100), n_boot=100)
    assert m["ci"][0] <= m["mean"] <= m["ci"][1] and m["n"] == 100


def test_collapse_flag():
    real = _faces(64, 0)
    distinct = _faces(64, 1)
    dup = _faces(4, 2).repeat(16, 1, 1, 1)
    feats = _Pool()
    r_ok = J.judge(distinct, real, features=feats, n_boot=10)
    r_dup = J.judge(dup, real, features=feats, n_boot=10)
    assert r_ok["diversity"]["collapse"] is False and r_ok["diversity"]["near_duplicate_share"] <= 0.1
    assert r_dup["diversity"]["collapse"] is True and r_dup["diversity"]["near_duplicate_share"] == 1.0
    assert r_dup["diversity"]["ratio_to_real"] < r_ok["diversity"]["ratio_to_real"]
    # blur shrinks every distance but keeps outputs distinct: not collapse (the scale-free criterion)
    blurred = 0.5 + 0.1 * (distinct - 0.5)
    r_blur = J.judge(blurred, real, features=feats, n_boot=10)
    assert r_blur["diversity"]["collapse"] is False and r_blur["diversity"]["ratio_to_real"] < 0.5


def test_judge_dict_labels_counts_and_faithfulness():
    real = _faces(32, 0)
    gen = (real + 0.03 * torch.randn_like(real)).clamp(0, 1)
    from pycompgen.metrics import edges
    sk = edges(real, J.CANNY_LOW, J.CANNY_HIGH)
    r = J.judge(gen, real, sources=real, sketches=sk, features=_Pool(), n_boot=20)
    re_ = r["realism"]
    assert re_["label"] == "FD/KD in pool4 features (non-standard)" and "FID" not in re_["fd_name"]
    assert re_["n_generated"] == 32 and re_["n_real"] == 32 and re_["bootstraps"] == 20
    assert r["faithfulness"]["ssim"]["mean"] > 0.5 and r["faithfulness"]["ms_ssim"]["n"] == 32
    assert 0 <= r["faithfulness"]["edge_f1"]["mean"] <= r["faithfulness"]["edge_f1_1px"]["mean"] <= 1
    # refiner: a low-res source -> SSIM of the downscaled output and the input
    low = nn.functional.interpolate(real, size=(16, 16), mode="area")
    r2 = J.judge(gen, real, sources=low, features=_Pool(), n_boot=5)
    assert r2["faithfulness"]["ssim_lowres"]["size"] == 16 and r2["faithfulness"]["ssim_lowres"]["mean"] > 0.8


@pytest.mark.parametrize("case, msg", [
    ("size", "32×32 px but the generated images are 24×24"),
    ("channels", "wrong domain"),
    ("range_pm1", "looks like [-1, 1]"),
    ("range_255", "divide by 255"),
    ("uint8", "uint8"),
    ("sketch_rgb", "wrong domain"),
    ("count", "3 sources for 8 generated"),
    ("sources_size", "not the same size"),
])
def test_bad_input_is_one_line_value_error(case, msg):
    real, gen = _faces(8, 0), _faces(8, 1)
    kw = {}
    if case == "size":
        gen = _faces(8, 1, size=24)
    elif case == "channels":
        gen = gen[:, :1]
    elif case == "range_pm1":
        gen = gen * 2 - 1
    elif case == "range_255":
        gen = gen * 255
    elif case == "uint8":
        gen = (gen * 255).to(torch.uint8)
    elif case == "sketch_rgb":
        kw["sketches"] = gen
    elif case == "count":
        kw["sources"] = real[:3]
    elif case == "sources_size":
        kw["sources"] = _faces(8, 0, size=24)
    with pytest.raises(ValueError) as e:
        J.judge(gen, real, features=_Pool(), n_boot=2, **kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_fd_equals_torchmetrics_fid_with_same_feature_module():
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance
    real, gen = _faces(60, 0), (_faces(50, 1) * 0.8 + 0.1)
    feats = _Pool()
    fid = FrechetInceptionDistance(feature=feats, reset_real_features=True)
    fid.update(real, real=True)
    fid.update(gen, real=False)
    ours = J.frechet_distance(feats.extract(gen), feats.extract(real))
    assert ours == pytest.approx(float(fid.compute()), rel=1e-4, abs=1e-6)
    r = J.judge(gen, real, features=feats, n_boot=5)
    assert r["realism"]["fd_impl"] == "torchmetrics"
    assert r["realism"]["fd"] == pytest.approx(r["realism"]["fd_pycompgen"], rel=1e-4, abs=1e-6)
    kid = KernelInceptionDistance(feature=feats, subsets=1, subset_size=50)   # one subset = all 50 generated
    kid.update(real[:50], real=True)
    kid.update(gen, real=False)
    ref_kd = float(kid.compute()[0])
    # torchmetrics sums the cubic kernel in float32: agreement to ~1e-3 relative on a value of ~1e-4
    assert J.kernel_distance(feats.extract(gen), feats.extract(real[:50])) == pytest.approx(ref_kd, rel=1e-2,
                                                                                           abs=1e-6)


def test_encoder_features_and_generators_on_tiny_compgen(tmp_path):
    """EncoderFeatures from Compgen's f, the Compgen adapters at 50 / -5 dB and pure noise, one table."""
    from pycompgen.config import load_config
    from pycompgen.systems import build_networks
    from pycompgen.evaluation import judge_generators as G
    cfg = load_config("configs/tiny.yaml", []).validate()
    torch.manual_seed(0)
    nets = build_networks(cfg)
    feats = J.EncoderFeatures.from_models(nets, "tiny-f", image_size=cfg.data.image_size)
    assert feats.label == "FD/KD in tiny-f features (non-standard)"
    specs = G.compgen_specs(lambda s: nets, cfg, "tiny ", {}, psnrs=(50.0, -5.0))
    names = [s.name for s in specs]
    assert "tiny step1 g(f(x))" in names and "tiny approach3 @-5 dB" in names and \
        "tiny approach3 pure noise @-5 dB" in names
    real = G.real_faces(None, 24, image_size=cfg.data.image_size)
    rows = G.judge_all(specs[:2] + specs[-1:], real, feats, n_boot=5)
    assert all("error" not in r for r in rows), rows
    assert "edge_f1" in rows[1]["faithfulness"] and "ssim" not in rows[2]["faithfulness"]
    md = G.format_table(rows)
    assert "non-standard" in md and "FID" not in md
    kd = rows[0]["realism"]["kd_sub"]  # KD in a custom feature space is shown unscaled (×10³ only for KID)
    assert "×10³" not in md and G._f(kd) in md.splitlines()[4]
    with pytest.raises(ValueError, match="takes 32×32"):
        feats.extract(torch.rand(2, 3, 16, 16))


class _FakeInception(nn.Module):
    """Stands in for StyleGAN's TorchScript inception-2015-12-05.pt: [0, 255] input, return_features=True."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        f = nn.functional.adaptive_avg_pool2d(x / 255.0, 4).flatten(1)
        return f if return_features else f[:, :10]


def test_inception_path_is_labelled_standard(tmp_path):
    p = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception()).save(str(p))
    feats = J.resolve_features(None, inception_weights=str(p))
    assert feats.standard and feats.label.startswith("FID/KID")
    real, gen = _faces(40, 0), _faces(40, 1)
    r = J.judge(gen, real, features=feats, n_boot=5)
    assert r["realism"]["fd_name"] == "FID" and r["realism"]["feature_dims"] == 48
    assert "kid_torchmetrics" in r["realism"] or pytest.importorskip("torchmetrics") is None
    from pycompgen.evaluation import judge_generators as G
    row = {"generator": "g", "system": "x", "realism": r["realism"], "faithfulness": {}, "diversity": r["diversity"]}
    assert "KID ×10³" in G.format_table([row])
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript Inception"):
        J.InceptionFeatures(tmp_path / "bad.pt")


def test_sketch2face_rows_from_canny_and_cufsf_sketches(tmp_path):
    """A Sketch2face checkpoint trained on a sketch folder gives two rows: Canny edge maps of the real faces, and
    the folder's validation sketches (one output per sketch, no source or sketch reference)."""
    import cv2
    import numpy as np
    from pycompgen.config import load_config
    from pycompgen.evaluation import judge_generators as G
    from pycompgen.systems import build_system
    from pycompgen.training import save_checkpoint
    sk_dir = tmp_path / "sketches"
    sk_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # every 10th file is a validation sketch: 2 of 20
        cv2.imwrite(str(sk_dir / f"{i:05d}.png"), (255 - 255 * (rng.random((40, 40)) < 0.1)).astype(np.uint8))
    cfg = load_config("configs/sketch2face-tiny.yaml", ["train.amp=off", f"sketch2face.sketch_path={sk_dir}",
                                                         "train.stage=cycle"])
    st = build_system(cfg, "cpu")
    ck = tmp_path / "s2f.pt"
    save_checkpoint(ck, st.payload(1, {}, 0.0))
    notes = []
    specs = G.discover(None, None, {"s2f": str(ck)}, note=notes.append)
    assert [s.name for s in specs] == ["s2f (Canny edge-map sketches)", "s2f (CUFSF val sketches)"], (specs, notes)
    assert specs[1].inputs.shape == (2, 1, 32, 32) and 0 <= float(specs[1].inputs.min()) <= 1
    y, src, sk = G.generate(specs[1], G.real_faces(None, 8, image_size=32))
    assert y.shape == (2, 3, 32, 32) and src is None and sk is None and 0 <= float(y.min()) <= float(y.max()) <= 1
    rows = G.judge_all(specs, G.real_faces(None, 16, image_size=32), J.EncoderFeatures.from_models(
        build_system(load_config("configs/tiny.yaml", []).validate(), "cpu").models, "tiny-f", image_size=32),
        n_boot=3)
    assert all("error" not in r for r in rows), rows
    assert rows[1]["realism"]["n_generated"] == 2 and "edge_f1" in rows[0]["faithfulness"]


def test_bench_judge_smoke_runs_on_its_own_tiny_run(tmp_path):
    """bench/judge.py --smoke judges 32×32 tiny checkpoints; with the 64×64 zoo entry present it must still take the
    smoke run's own encoder as the feature space (it used to pick zoo:compgen-64 and stop on the size)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "bench" / "judge.py"), "--smoke", "--results", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    md = next(tmp_path.glob("judge-smoke-*.md")).read_text()
    assert "non-standard" in md and "| compgen step1" in md


def test_fd_note_when_samples_are_few_for_the_feature_dims_and_pooled_default():
    """FD with fewer than twice as many samples as feature dimensions carries a note (and the judge table shows it);
    the default feature space pools the encoder's latent to 2×2 (64 values), 0 keeps it flattened."""
    real = _faces(120, 0)
    gen = (real + 0.03 * torch.randn_like(real)).clamp(0, 1)
    few = J.judge(gen[:60], real[:60], features=_Pool(), n_boot=5)["realism"]  # 60 < 2 × 48
    many = J.judge(gen, real, features=_Pool(), n_boot=5)["realism"]          # 120 >= 2 × 48
    assert "fd_note" in few and "48" in few["fd_note"] and "fd_note" not in many
    from pycompgen.evaluation.judge_generators import format_table
    row = {"generator": "g", "realism": few, "faithfulness": {}, "diversity": {
        "ratio_to_real": 1.0, "near_duplicate_share": 0.0, "collapse": False}}
    assert "dominated by covariance bias" in format_table([row])
    import inspect
    assert inspect.signature(J.resolve_features).parameters["pool"].default == J.DEFAULT_POOL == 2
    enc = J.EncoderFeatures(nn.Conv2d(3, 4, 4, 4), name="enc", pool=J.DEFAULT_POOL)
    flat = J.EncoderFeatures(nn.Conv2d(3, 4, 4, 4), name="enc", pool=0)
    assert enc.extract(real[:3]).shape == (3, 16) and flat.extract(real[:3]).shape == (3, 4 * 8 * 8)
