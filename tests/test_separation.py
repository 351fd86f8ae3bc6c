"""Compgen against separation over an AWGN channel (issue 17 §3): the SNR <-> paper-PSNR relation, capacity
budgets, per-face rung choice with nothing-fits fallback, and the table on synthetic faces."""
import math

import numpy as np
import pytest
import torch

from pycompgen.evaluation import separation as S


def test_capacity_and_psnr_for_snr():
    assert S.capacity_bits(0.0, 4096) == pytest.approx(2048.0)
    assert S.capacity_bits(20.0, 2) == pytest.approx(math.log2(101.0))
    z = torch.zeros(3, 1, 8, 8)
    z[0, 0, :2] = 1.0            # density 1/4: PSNR = SNR + 10 log10(4)
    z[1] = 1.0                   # density 1: PSNR = SNR
    p = S.psnr_for_snr(z, 5.0)
    assert p[0].item() == pytest.approx(5.0 + 10 * math.log10(4))
    assert p[1].item() == pytest.approx(5.0)
    assert math.isinf(p[2].item())  # nothing to send


def test_measured_snr_of_the_channel_matches_the_request():
    """Noise drawn at psnr_for_snr's PSNR has the requested average-power SNR (before the receiver's scaling)."""
    from pycompgen.ops import awgn
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(64, 1, 32, 32, generator=g) < 0.16).float()
    for snr in (-5.0, 10.0):
        p = S.psnr_for_snr(z, snr)
        n = awgn(z, p, normalize=False, peak=1.0, generator=g) - z
        measured = 10 * math.log10(float(z.pow(2).mean() / n.pow(2).mean()))
        assert measured == pytest.approx(snr, abs=0.1)


def test_separated_picks_the_best_rung_that_fits_and_falls_back():
    ladder = [{"quality": 1, "bytes": np.array([10, 10, 50]), "ssim": np.array([0.5, 0.5, 0.9])},
              {"quality": 2, "bytes": np.array([20, 40, 60]), "ssim": np.array([0.7, 0.8, 0.95])}]
    fb = np.array([0.3, 0.3, 0.3])
    r = S.separated(ladder, 30, fb)
    assert r["ssim"] == pytest.approx((0.7 + 0.5 + 0.3) / 3)
    assert r["decoded"] == pytest.approx(2 / 3)
    assert S.separated(ladder, 5, fb) == {"ssim": pytest.approx(0.3), "decoded": 0.0}
    # sending nothing is always possible: a rung worse than the fallback is not chosen
    assert S.separated(ladder, 30, np.array([0.9, 0.9, 0.9]))["ssim"] == pytest.approx(0.9)


def test_thumbnail_ladder_sizes_and_quality_grow():
    from pycompgen.data import synthetic_faces
    x = torch.from_numpy(synthetic_faces(6, 32, seed=0)).permute(0, 3, 1, 2).float() / 255
    lad = S.thumbnail_ladder(x, [(2, 3), (8, 6)])
    assert [int(r["bytes"][0]) for r in lad] == [math.ceil(3 * 4 * 3 / 8), math.ceil(3 * 64 * 6 / 8)]
    assert lad[1]["ssim"].mean() > lad[0]["ssim"].mean()


def test_compare_on_synthetic_faces_with_the_shipped_compgen(tmp_path, one_thread):
    """End to end on 8 synthetic faces: Compgen through the channel, WebP and the thumbnail at capacity; more SNR
    never gives a separated scheme fewer bytes, and the table, winners and plot come out."""
    from pycompgen import zoo
    from pycompgen.codec.baselines import available_codecs
    from pycompgen.data import synthetic_faces
    u8 = synthetic_faces(8, 64, seed=1)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    pre = zoo.load("compgen-64")
    cg = {"Compgen": S.compgen_over_channel(pre.models("approach3"), pre["approach3"].config.data, x, [-10.0, 20.0])}
    assert cg["Compgen"]["20"]["psnr_db"] > cg["Compgen"]["-10"]["psnr_db"] + 25
    ladders = {"thumb": S.thumbnail_ladder(x)}
    if "webp" in available_codecs():
        ladders["webp"] = S.codec_ladder(u8, "webp", [0, 50, 90])
    t = S.compare(x, [-10.0, 20.0], cg, ladders, x.mean(0))
    lo, hi = t["rows"]["-10"], t["rows"]["20"]
    assert lo["budget_bytes"] == math.floor(S.capacity_bits(-10.0, 4096) / 8) < hi["budget_bytes"]
    for lab in ladders:
        assert hi["schemes"][lab]["ssim"] >= lo["schemes"][lab]["ssim"]
        assert hi["schemes"][lab]["ssim"] >= t["fallback_ssim"] - 1e-9
    if "webp" in ladders:
        assert lo["schemes"]["webp"]["decoded"] == 0.0 and hi["schemes"]["webp"]["decoded"] == 1.0
    assert set(S.winners(t)) == {"-10", "20"}
    md = S.markdown(t)
    assert md[0].startswith("| SNR (dB)") and len(md) == 4
    assert (tmp_path / "p.png").exists() is False and S.plot(t, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
