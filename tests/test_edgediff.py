"""Edge-guided diffusion compression (issue 11): stage losses, seeded sampling, bit-exact completion of lost
latent regions, bitstream errors, and training through the harness (plain loop; Ray Train with -m distributed)."""
from pathlib import Path

import pytest
import torch

from conftest import synthetic_face_batch as face_batch
from pycompgen.config import load_config
from pycompgen.systems import build_system
from pycompgen.systems.edgediff import receiver as R

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "edgediff-tiny.yaml")


def cfg_for(stage, *over, out=None):
    cfg = load_config(TINY, [f"train.stage={stage}", *over])
    if out is not None:
        cfg.out = str(out)
    return cfg


@pytest.fixture(scope="module")
def trained():
    """The three stages trained in turn for 8 steps on 8 synthetic faces: {stage: losses}, final models."""
    xb, init, losses = face_batch(8), {}, {}
    over = {"vae": ["edgediff.lr_vae=0.003"], "een": ["edgediff.lr_g=0.002", "edgediff.een_l1_weight=10"],
            "denoiser": ["edgediff.lr_denoiser=0.002"]}
    for stage in ("vae", "een", "denoiser"):
        cfg = cfg_for(stage, *over[stage])
        torch.manual_seed(0)
        st = build_system(cfg, "cpu", init)
        b = st.prepare_batch(xb, torch.Generator().manual_seed(0))
        logs = [st.train_step(b) for _ in range(8)]
        losses[stage] = [float(l["loss"]) for l in logs]
        init.update(st.model_state())
        st.eval_mode()
        v = st.validation_step(b)
        assert v["x_hat"].shape == b["x"].shape and torch.isfinite(v["loss"])
    return {"losses": losses, "models": st.models, "c": cfg.edgediff, "x": b["x"][:4]}


@pytest.mark.parametrize("stage", ["vae", "een", "denoiser"])
def test_stage_loss_decreases(trained, stage):
    ls = trained["losses"][stage]
    assert min(ls[-3:]) < 0.95 * ls[0], ls


def test_een_class_balanced_term_trains_and_picks_best_by_edge_f1(trained):
    """edgediff.een_bce_weight adds the class-balanced BCE to eq 2 (logged as ``bce``, decreasing); the EEN stage's
    best.pt is chosen by validation edge-F1, the denoiser's by validation loss."""
    from pycompgen.systems.edgediff.system import EdgeDiff
    xb = face_batch(8)
    init = {k: trained["models"][k].state_dict() for k in ("vae", "eb")}
    torch.manual_seed(0)
    st = build_system(cfg_for("een", "edgediff.lr_g=0.002", "edgediff.een_bce_weight=1"), "cpu", init)
    b = st.prepare_batch(xb, torch.Generator().manual_seed(0))
    bce = [float(st.train_step(b)["bce"]) for _ in range(8)]
    assert min(bce[-3:]) < 0.95 * bce[0], bce
    assert "bce" not in build_system(cfg_for("een"), "cpu", init).train_step(b)  # the paper's loss by default
    assert EdgeDiff.stages["een"].select == ("val_edge_f1", "max")
    assert EdgeDiff.stages["denoiser"].select == ("val_loss", "min")


def test_frozen_networks_untouched():
    xb = face_batch()
    st = build_system(cfg_for("vae"), "cpu")
    init = st.model_state()
    st2 = build_system(cfg_for("een"), "cpu", init)
    before = {k: v.clone() for k, v in st2.models["vae"].state_dict().items()}
    st2.train_step(st2.prepare_batch(xb, torch.Generator().manual_seed(0)))
    assert all(torch.equal(before[k], v) for k, v in st2.models["vae"].state_dict().items())
    assert set(st2.optimizers) == {"G", "D"}


def test_sampling_seeded_and_reproducible(trained):
    m, c, x = trained["models"], trained["c"], trained["x"]
    y_hat, bpp = R.quantise(m, c, R.encode(m, c, x), 5)
    assert (bpp > 0).all()
    a, b = (R.receive(m, c, y_hat, 5, "full", seed=0) for _ in range(2))
    assert torch.equal(a, b)
    wo, sdc = R.receive(m, c, y_hat, 5, "wo"), R.receive(m, c, y_hat, 5, "sdc")
    assert not torch.equal(wo, a) and not torch.equal(sdc, a)
    known = R.drop_regions(y_hat.shape, 0.25, 2, seed=1)
    assert torch.equal(known, R.drop_regions(y_hat.shape, 0.25, 2, seed=1)) and (~known).any()
    c1, c2 = (R.complete(m, c, y_hat, known, "full", seed=7) for _ in range(2))
    assert torch.equal(c1, c2)
    assert not torch.equal(c1, R.complete(m, c, y_hat, known, "full", seed=8))


def test_matched_timestep_follows_quantisation_noise(trained):
    c = trained["c"]
    s = R.ddim(c)
    t3, t5 = (R.matched_timestep(s, R.step_size(c, b) / 12 ** 0.5) for b in (3, 5))
    assert 0 <= t5 < t3 < c.train_timesteps
    a = s.alphas_cumprod[t3].double()
    assert abs(((1 - a) / a).sqrt() - R.step_size(c, 3) / 12 ** 0.5) < 0.05


@pytest.mark.parametrize("mode", ["zeros", "sdc", "full"])
def test_completion_keeps_known_latent_bit_exact(trained, mode):
    m, c, x = trained["models"], trained["c"], trained["x"]
    y_hat, _ = R.quantise(m, c, R.encode(m, c, x), 3)
    known = R.drop_regions(y_hat.shape, 0.25, 3, seed=2)
    out = R.complete(m, c, y_hat, known, mode, seed=0)
    k = known.expand_as(y_hat)
    assert torch.equal(out[k], y_hat[k])
    assert out.view(torch.int32)[k].equal(y_hat.view(torch.int32)[k])      # bit for bit, not just ==
    if mode != "zeros":
        assert not torch.equal(out[~k], torch.zeros_like(out[~k]))
    img = R.pixel_inpaint(R.decode(m, torch.where(k, y_hat, torch.zeros_like(y_hat))), known)
    assert img.shape == x.shape


def test_completion_from_the_zero_filled_latent(trained, monkeypatch):
    """start < 1: about ``steps`` DDIM steps, all below start·T (SDEdit from the zero fill); every value inside
    (−R, R); known values bit-exact; start outside (0, 1] refused."""
    m, c, x = trained["models"], trained["c"], trained["x"]
    y_hat, _ = R.quantise(m, c, R.encode(m, c, x), 3)
    known = R.drop_regions(y_hat.shape, 0.25, 3, seed=2)
    seen, first = [], []
    real = R.predict_eps

    def spy(nets, xt, t, e, **kw):
        seen.append(int(t))
        first.append(xt.clone()) if len(first) == 0 else None
        return real(nets, xt, t, e, **kw)
    monkeypatch.setattr(R, "predict_eps", spy)
    out = R.complete(m, c, y_hat, known, "full", steps=4, seed=0, start=0.5)
    assert 3 <= len(seen) <= 4 and max(seen) < 0.5 * c.train_timesteps, seen
    k = known.expand_as(y_hat)
    assert torch.equal(out[k], y_hat[k])
    # the lost region starts as the zero fill noised to t0, sqrt(1 - ᾱ)·ε, not as pure noise (std 1)
    a0 = R.ddim(c).alphas_cumprod[seen[0]]
    assert abs(float(first[0][~k].std()) / float((1 - a0).sqrt()) - 1) < 0.3 and float(first[0][~k].std()) < 0.85
    assert not torch.equal(out, R.complete(m, c, y_hat, known, "full", steps=4, seed=0))
    # filled values stay in (−R, R) even when the denoiser's estimate leaves it
    monkeypatch.setattr(R, "predict_eps", lambda nets, xt, t, e, **kw: -10 * xt)
    wild = R.complete(m, c, y_hat, known, "full", steps=4, seed=0, start=0.5)
    assert wild[~k].abs().max() <= c.latent_range and torch.equal(wild[k], y_hat[k])
    with pytest.raises(ValueError, match="completion start must be in"):
        R.complete(m, c, y_hat, known, "full", start=0)


def test_wrong_mask_shape_is_refused(trained):
    m, c, x = trained["models"], trained["c"], trained["x"]
    y_hat, _ = R.quantise(m, c, R.encode(m, c, x), 3)
    with pytest.raises(ValueError, match="lost-region mask must have shape"):
        R.complete(m, c, y_hat, torch.ones(4, 1, 4, 4, dtype=torch.bool), "full")


def test_bitstream_roundtrip_and_errors(trained):
    import copy
    m, c, x = trained["models"], trained["c"], trained["x"]
    data = R.compress(m, c, x, 5)
    q, bits = R.decompress(m, c, data)
    assert bits == 5 and torch.equal(q, R.quantise(m, c, R.encode(m, c, x), 5)[0])
    other = dict(m)
    other["vae"] = copy.deepcopy(m["vae"])
    with torch.no_grad():
        next(other["vae"].parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="written by model edgediff@"):
        R.decompress(other, c, data)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="corrupted"):
        R.decompress(m, c, bytes(bad))
    with pytest.raises(ValueError, match="truncated|corrupted"):
        R.decompress(m, c, data[:-7])


def test_trains_through_plain_loop(tmp_path):
    from pycompgen.training import load_checkpoint
    from pycompgen.training.pipeline import run_pipeline
    cfg = cfg_for("vae", "train.epochs=1", "train.max_steps_per_epoch=1", out=tmp_path / "run")
    res = run_pipeline(cfg, verbose=False)
    assert list(res) == ["vae", "een", "denoiser", "entropy", "completer"]
    ck = load_checkpoint(tmp_path / "run" / "denoiser" / "last.pt", expect_model="edgediff")
    assert {"unet", "control", "null", "vae", "een"} <= set(ck["models"])
    assert "val_bpp" in ck["metrics"]
    ck = load_checkpoint(tmp_path / "run" / "entropy" / "last.pt", expect_model="edgediff")  # the whole receiver
    assert {"vae", "eb", "een", "unet", "control", "null"} == set(ck["models"]) and ck["best_metric"] == "val_loss"
    assert {"val_bpp_3", "val_bpp_5"} <= set(ck["metrics"])
    ck = load_checkpoint(tmp_path / "run" / "completer" / "last.pt", expect_model="edgediff")  # + the completer
    assert {"vae", "eb", "een", "unet", "control", "null", "filler"} == set(ck["models"])
    assert {"val_lost_mse_no_edges", "val_edges_gain_db"} <= set(ck["metrics"])
    # the bench reads every network from the last stage; without een/ the EEN too (not a fresh one)
    import shutil
    from pycompgen.evaluation.edgediff import load_models
    shutil.rmtree(tmp_path / "run" / "een")
    nets, used = load_models(cfg, tmp_path / "run")
    assert list(used) == ["completer"]
    best = load_checkpoint(tmp_path / "run" / "completer" / "best.pt", expect_model="edgediff")["models"]
    for k in ("een", "filler", "unet"):
        assert all(torch.equal(v, best[k][n]) for n, v in nets[k].state_dict().items()), k


def test_entropy_stage_fits_the_rate_and_keeps_the_grid(trained):
    """The entropy stage lowers the estimated rate of every bit depth on the frozen encoder's latents; the medians
    (the quantisation grid the EEN and denoiser were trained on) and every other network stay bit-exact."""
    from pycompgen.systems.edgediff.system import EdgeDiff
    init = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in trained["models"].items()}
    st = build_system(cfg_for("entropy", "edgediff.lr_entropy=0.05"), "cpu", init)
    b = st.prepare_batch(face_batch(8), torch.Generator().manual_seed(0))
    c, m = st.cfg.edgediff, st.models
    with torch.no_grad():
        y = R.encode(m, c, b["x"])
        before = {bits: float(R.quantise(m, c, y, bits)[1].mean()) for bits in c.bits}
        grid = {bits: R.quantise(m, c, y, bits)[0] for bits in c.bits}
    logs = [st.train_step(b) for _ in range(10)]
    assert set(logs[0]) == {"loss", "bpp_3", "bpp_5"} and float(logs[-1]["loss"]) < float(logs[0]["loss"])
    st.eval_mode()
    with torch.no_grad():
        after = {bits: float(R.quantise(m, c, y, bits)[1].mean()) for bits in c.bits}
    assert all(after[k] < before[k] for k in c.bits), (before, after)
    for bits in c.bits:
        assert torch.equal(R.quantise(m, c, y, bits)[0], grid[bits])
        assert torch.equal(m["eb"].get(bits).medians, init["eb"][f"bank.{bits}.quantiles"][:, 0, 1])
    for k in ("vae", "een", "unet", "control", "null"):
        assert all(torch.equal(v, init[k][n]) for n, v in m[k].state_dict().items()), k
    v = st.validation_step(b)
    with torch.no_grad():
        for bits in c.bits:  # each bit depth's own rate, not the validation bit depth's
            assert torch.isclose(v[f"bpp_{bits}"], R.quantise(m, c, y, bits)[1].mean())
    assert torch.isclose(v["loss"], (v["bpp_3"] + v["bpp_5"]) / 2) and not torch.isclose(v["bpp_3"], v["bpp_5"])
    assert EdgeDiff.reconstruct("entropy", m, {"x": b["x"][:2]}).shape == b["x"][:2].shape


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="eval_bits"):
        cfg_for("vae", "edgediff.eval_bits=7").validate()


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_trains_on_two_ray_workers(tmp_path, ray_local):
    """The VAE stage on 2 Ray Train workers (gradients, including the unused bit depths' entropy models as zeros,
    averaged in EdgeDiff.step). The other stages take the same path (checked by hand: vae -> een -> denoiser)."""
    from pycompgen.distributed import train_distributed
    from pycompgen.training import load_checkpoint
    cfg = cfg_for("vae", "train.epochs=1", "train.max_steps_per_epoch=2", "eval.max_images=16", out=tmp_path / "run")
    res = train_distributed(cfg, workers=2, stages=["vae"])
    ck = load_checkpoint(tmp_path / "run" / "vae" / "last.pt", expect_model="edgediff")
    assert ck["stage"] == "vae" and set(ck["models"]) == {"vae", "eb"} and ck["epoch"] == 1
    from mlflow.tracking import MlflowClient  # the stage's run in MLflow, with the system's own metrics
    cl = MlflowClient(res["tracking_uri"])
    parent = cl.get_run(res["parent_run_id"])
    child = cl.search_runs([parent.info.experiment_id],
                           filter_string=f"tags.mlflow.parentRunId = '{res['parent_run_id']}'")[0]
    assert child.data.tags["pycompgen.stage"] == "vae" and {"train_loss", "val_bpp"} <= set(child.data.metrics)


def test_reconstruct_needs_no_config(trained):
    from pycompgen.systems.edgediff.system import EdgeDiff
    m, x = trained["models"], trained["x"]
    out = EdgeDiff.reconstruct("denoiser", m, {"x": x})
    assert out.shape == x.shape and torch.equal(out, EdgeDiff.reconstruct("denoiser", m, {"x": x}))
    assert m["eb"].receiver_config().eval_bits == trained["c"].eval_bits


def test_file_decodes_with_a_fresh_copy_of_the_checkpoint(trained):
    """Code tables are rebuilt deterministically on both sides: a receiver loading the same weights (no tables
    yet) gets the sender's weights hash and decodes the file."""
    from pycompgen.systems import build_networks
    m, c, x = trained["models"], trained["c"], trained["x"]
    data = R.compress(m, c, x, 3)
    cfg = cfg_for("denoiser")
    fresh = build_networks(cfg)
    for k in m:
        net = fresh[k]
        sd = {n: v for n, v in m[k].state_dict().items() if not n.split(".")[-1].startswith(("cdf_", "table_"))}
        net.load_state_dict(sd, strict=False)
        net.eval()
    q, bits = R.decompress(fresh, c, data)
    assert bits == 3 and torch.equal(q, R.quantise(m, c, R.encode(m, c, x), 3)[0])


# -- issue 19: a denoiser with room to work, trained where the receiver uses it --------------------------------
def test_projection_keeps_the_estimate_in_the_quantisation_cell(trained):
    """With ``project`` every denoised value lies in ŷ's cell [ŷ − Δ/2, ŷ + Δ/2] (where the true latent is);
    without it the manual DDIM loop equals diffusers' DDIMScheduler.step."""
    m, c, x = trained["models"], trained["c"], trained["x"]
    bits = 3
    y = R.encode(m, c, x)
    y_hat, _ = R.quantise(m, c, y, bits)
    lo, hi = R.cell(c, y_hat, bits)
    assert bool(((y >= lo - 1e-5) & (y <= hi + 1e-5)).all())          # the cell holds the true latent
    out = R.denoise(m, c, y_hat, bits, "full", project=True)
    assert bool(((out >= lo - 1e-5) & (out <= hi + 1e-5)).all())
    free = R.denoise(m, c, y_hat, bits, "full", project=False)
    sched, ts = R.receiver_timesteps(c, bits)
    assert len(ts) > 0 and int(ts[0]) == R.start_timestep(c, bits)
    e = R.een_edges(m, y_hat, x.shape[-1])
    ref = sched.alphas_cumprod[int(ts[0])].sqrt() * y_hat
    for t in ts:
        ref = sched.step(R.predict_eps(m, ref, t, e).float(), t, ref, eta=0.0).prev_sample
    torch.testing.assert_close(free, ref, rtol=1e-4, atol=1e-4)


def test_receiver_takes_oracle_edges_of_the_right_shape(trained):
    m, c, x = trained["models"], trained["c"], trained["x"]
    y_hat, _ = R.quantise(m, c, R.encode(m, c, x), 3)
    from pycompgen.systems.edgediff.system import canny_target
    cfg = cfg_for("denoiser")
    oracle = R.receive(m, c, y_hat, 3, "full", edges=canny_target(x, cfg))
    assert oracle.shape == x.shape and not torch.equal(oracle, R.receive(m, c, y_hat, 3, "full"))
    with pytest.raises(ValueError, match="edges must be"):
        R.receive(m, c, y_hat, 3, "full", edges=torch.zeros(1, 1, 8, 8))


def test_denoiser_batches_sit_where_the_receiver_works(trained):
    """Quantised samples: x_t = sqrt(ᾱ_t*)·ŷ at the receiver's start step, and the target noise implies the true
    latent exactly; the other timesteps stay at or below the largest t* (``t_sampling=matched``, no uniform share)."""
    from pycompgen.systems.edgediff.receiver import ddpm
    init = {k: v.state_dict() for k, v in trained["models"].items()}
    st = build_system(cfg_for("denoiser", "edgediff.uniform_share=0"), "cpu", init)
    st.eval_mode()
    c, x = st.cfg.edgediff, trained["x"]
    g = torch.Generator().manual_seed(0)
    xt, t, noise, edges = st._denoiser_batch(x, g, bits=3, quantised_share=1.0)[:4]
    a = ddpm(c).alphas_cumprod[R.start_timestep(c, 3)]
    assert bool((t == R.start_timestep(c, 3)).all())
    y0 = R.encode(st.models, c, x)
    torch.testing.assert_close((xt - (1 - a).sqrt() * noise) / a.sqrt(), y0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(xt, a.sqrt() * R.quantise(st.models, c, y0, 3)[0])
    t = st._denoiser_batch(face_batch(8).float().div(255), g, quantised_share=0.0).t
    assert int(t.max()) <= max(R.start_timestep(c, b) for b in c.bits)
    assert edges.shape == (x.shape[0], 1, x.shape[-1], x.shape[-1])


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_denoiser_edges_come_from_the_een_share(trained, share):
    """``een_edge_share`` 1: every denoising sample is conditioned on the EEN's edges of ŷ (what the receiver has);
    0: on the original's Canny map (no dropout, no completion samples)."""
    from pycompgen.systems.edgediff.system import canny_target
    init = {k: v.state_dict() for k, v in trained["models"].items()}
    st = build_system(cfg_for("denoiser", f"edgediff.een_edge_share={share}", "edgediff.edge_dropout=0"), "cpu", init)
    st.eval_mode()
    c, x = st.cfg.edgediff, trained["x"]
    edges = st._denoiser_batch(x, torch.Generator().manual_seed(0), bits=3, quantised_share=1.0).edges
    een = R.een_edges(st.models, R.quantise(st.models, c, R.encode(st.models, c, x), 3)[0], x.shape[-1])
    true = canny_target(x, st.cfg)
    want = een if share == 1.0 else true
    assert not torch.equal(een, true)   # the two sources differ, so the test can fail
    torch.testing.assert_close(edges, want)


def test_sender_edges_fill_only_the_lost_regions_and_cost_bits(trained):
    from pycompgen.systems.edgediff.system import canny_target
    m, c, x = trained["models"], trained["c"], trained["x"]
    cfg = cfg_for("denoiser")
    y_hat, _ = R.quantise(m, c, R.encode(m, c, x), 3)
    known = R.drop_regions(y_hat.shape, 0.25, 3, seed=2)
    edges, sizes = R.sender_edges(m, c, y_hat, known, x, lambda im: canny_target(im, cfg))
    lost = R.lost_pixels(known, x.shape[-1]) > 0
    assert torch.equal(edges[lost], canny_target(x, cfg)[lost]) and len(sizes) == x.shape[0] and min(sizes) > 0
    out = R.complete(m, c, y_hat, known, "full", seed=0, edges=edges)
    k = known.expand_as(y_hat)
    assert torch.equal(out[k], y_hat[k])


@pytest.mark.parametrize("bad,match", [("edgediff.t_sampling=near", "t_sampling"),
                                       ("edgediff.quantised_share=1.5", "quantised_share"),
                                       ("edgediff.een_edge_share=-0.1", "een_edge_share")])
def test_denoiser_sampling_config_is_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        cfg_for("denoiser", bad)


def test_bench_trains_measures_and_exports_a_tiny_entry(tmp_path, monkeypatch):
    """bench/edgediff.py --tiny: the five stages, the measurement (completion from the zero fill at 0.5·T by
    default) and --export into a temporary zoo: one rate point per bit depth, a card with each stage's epochs."""
    import importlib.util
    import json
    import os
    spec = importlib.util.spec_from_file_location("bench_edgediff", ROOT / "bench" / "edgediff.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("PYCOMPGEN_ZOO_DIR", str(tmp_path / "zoo"))
    assert bench.main(["--tiny", "--run-dir", str(tmp_path / "run"), "--out-dir", str(tmp_path / "out"),
                       "--completion", "largest", "--export", "ed-tiny", "--check-images", "4"]) == 0
    doc = json.loads((tmp_path / "out" / f"edgediff-cpu{os.cpu_count()}.json").read_text())
    assert doc["results"]["complete_start"] == 0.5 and doc["checkpoints"]["completer"]["epoch"] == 1
    from pycompgen.evaluation.edgediff import FILL_STRATEGIES, STRATEGIES
    rows = {r["strategy"]: r for r in doc["results"]["completion"]}
    assert set(rows) == set(STRATEGIES + FILL_STRATEGIES) and rows["complete_oracle_edges"]["extra_bpp"] == 0
    assert rows["fill_sender_edges"]["extra_bpp"] == rows["complete_sender_edges"]["extra_bpp"] > 0
    import math
    assert all(math.isfinite(r["lost_psnr"]) and r["lost_psnr"] != r["psnr"] for r in rows.values())  # lost pixels only
    entry = json.loads((tmp_path / "zoo" / "manifest.json").read_text())["entries"]["ed-tiny"]
    assert [p["bits"] for p in entry["rate_points"]] == [3, 5] and entry["stages"]["completer"]["bits"] == 5
    assert "filler" in entry["stages"]["completer"]["parts"]
    card = (tmp_path / "zoo" / entry["card"]).read_text()
    assert "entropy 1 epochs" in card and "non-commercial" in card
    # the exported entry measured on the fixed training subset (the train - validation gap), from the zoo
    assert bench.main(["--pretrained", "ed-tiny", "--split", "train", "--n-val", "4", "--steps", "2",
                       "--complete-steps", "2", "--completion", "largest", "--out-dir", str(tmp_path / "out"),
                       "--machine", "t"]) == 0
    tdoc = json.loads((tmp_path / "out" / "edgediff-t-train.json").read_text())
    assert tdoc["split"] == "train" and tdoc["n_val"] == 4 and "zoo:ed-tiny/completer" in str(tdoc["checkpoints"])
    assert "4 training-subset faces" in (tmp_path / "out" / "edgediff-t-train.md").read_text()
    assert {"fill_no_edges", "fill_sender_edges"} <= {r["strategy"] for r in tdoc["results"]["completion"]}
    with pytest.raises(SystemExit):
        bench.main(["--pretrained", "ed-tiny", "--export", "x"])


def test_edge_concat_starts_as_the_handed_over_denoiser_and_learns_from_edges(trained):
    """edgediff.edge_concat: the UNet and ControlNet take the edge map as 16 more input channels; fine-tuned from
    a denoiser without them, the new channels' weights start at zero (same ε as before), and a few steps later the
    edges change ε."""
    init = {k: {n: v.clone() for n, v in m.state_dict().items()} for k, m in trained["models"].items()}
    st = build_system(cfg_for("denoiser", "edgediff.edge_concat=true", "edgediff.lr_denoiser=0.01"), "cpu", init)
    c, m = st.cfg.edgediff, st.models
    assert m["unet"].config.in_channels == m["control"].config.in_channels == c.latent_channels + 16
    x = trained["x"]
    with torch.no_grad():
        y_hat = R.quantise(m, c, R.encode(m, c, x), 5)[0]
        edges = (torch.rand(x.shape[0], 1, x.shape[-1], x.shape[-1], generator=torch.Generator().manual_seed(0))
                 > 0.8).float()
        st.eval_mode()
        eps = R.predict_eps(m, y_hat, 3, edges)
        torch.testing.assert_close(eps, R.predict_eps(trained["models"], y_hat, 3, edges))
    assert all(float(m[k].conv_in.weight.detach()[:, c.latent_channels:].abs().max()) == 0 for k in ("unet", "control"))
    st.train_mode()
    b = st.prepare_batch(face_batch(8), torch.Generator().manual_seed(0))
    for _ in range(3):
        st.train_step(b)
    assert all(float(m[k].conv_in.weight.detach()[:, c.latent_channels:].abs().max()) > 0 for k in ("unet", "control"))
    st.eval_mode()
    with torch.no_grad():  # the edge channels now change ε: zeroing their input weights changes the prediction
        eps = R.predict_eps(m, y_hat, 3, edges)
        for k in ("unet", "control"):
            m[k].conv_in.weight[:, c.latent_channels:] = 0
        assert not torch.allclose(eps, R.predict_eps(m, y_hat, 3, edges))


def test_known_concat_completion_batches_and_conditioning(trained, monkeypatch):
    """edgediff.known_concat: fine-tuned from a denoiser without the known-latent channels it starts as that
    denoiser (zero weights); completion samples (complete_share) carry lost rectangles, the zero fill and its mask
    as the condition, the sender's true edges inside the lost regions, every timestep, and weigh their lost and
    known values equally; denoising samples get a zero condition; the new channels learn; complete() hands the
    denoiser what arrived; complete_share without known_concat is refused."""
    from pycompgen.systems.edgediff.system import canny_target
    with pytest.raises(ValueError, match="complete_share > 0 needs edgediff.known_concat"):
        cfg_for("denoiser", "edgediff.complete_share=0.5")
    init = {k: {n: v.clone() for n, v in mm.state_dict().items()} for k, mm in trained["models"].items()}
    cfg = cfg_for("denoiser", "edgediff.known_concat=true", "edgediff.complete_share=0.5",
                  "edgediff.lr_denoiser=0.01", "edgediff.uniform_share=0")
    st = build_system(cfg, "cpu", init)
    c, m, x = st.cfg.edgediff, st.models, trained["x"]
    assert m["unet"].config.in_channels == m["control"].config.in_channels == 2 * c.latent_channels + 1
    st.eval_mode()
    with torch.no_grad():
        y_hat = R.quantise(m, c, R.encode(m, c, x), 5)[0]
        known = R.drop_regions(y_hat.shape, 0.5, 2, seed=3)
        edges = R.een_edges(m, y_hat, x.shape[-1])
        cond = R.known_input(torch.where(known, y_hat, torch.zeros_like(y_hat)), known)
        eps = R.predict_eps(m, y_hat, 3, edges, known=cond)
        torch.testing.assert_close(eps, R.predict_eps(trained["models"], y_hat, 3, edges))
    xb = face_batch(16).float().div(255)
    b = st._denoiser_batch(xb, torch.Generator().manual_seed(1), bits=5)
    comp = b.complete
    assert 0 < int(comp.sum()) < 16 and bool(b.known[~comp].all()) and not bool(b.known[comp].all())
    assert bool((b.known_cond[~comp] == 0).all())
    assert torch.equal(b.known_cond[comp][:, -1:], b.known[comp].float())
    t_max = max(R.start_timestep(c, bb) for bb in c.bits)
    assert int(b.t[~comp].max()) <= t_max                  # denoising samples stay where the receiver works
    lost = R.lost_pixels(b.known, xb.shape[-1]) > 0
    on = b.edges.flatten(1).sum(1) > 0                       # not dropped (edge_dropout)
    sel = lost & on.view(-1, 1, 1, 1)
    assert torch.equal(b.edges[sel], canny_target(xb, st.cfg)[sel])
    torch.testing.assert_close(b.weight[comp].mean((1, 2, 3)), torch.ones(int(comp.sum())))
    assert float(b.weight[comp][~b.known[comp]].min()) > 1 and bool((b.weight[~comp] == 1).all())
    st.train_mode()
    pb = st.prepare_batch(face_batch(16), torch.Generator().manual_seed(0))
    logs = [st.train_step(pb) for _ in range(3)]
    assert any("lost_mse" in lg for lg in logs)
    w = m["unet"].conv_in.weight.detach()[:, c.latent_channels:]
    assert float(w.abs().max()) > 0
    seen = []
    real = R.predict_eps
    monkeypatch.setattr(R, "predict_eps", lambda nets, xt, t, e, **kw: seen.append(kw.get("known")) or real(nets, xt, t, e, **kw))
    st.eval_mode()
    R.complete(m, c, y_hat, known, "full", steps=2, seed=0)
    assert seen and torch.equal(seen[0][:, -1:], known.float()) and torch.equal(seen[0][:, :-1][~known.expand_as(y_hat)],
                                                                                 torch.zeros(int((~known).sum()) * c.latent_channels))


def test_denoiser_resumes_an_optimiser_saved_before_lr_control(trained):
    """A one-group denoiser optimiser state (unet, control, null) resumes into the two groups (unet + null,
    control): every parameter keeps its own Adam moments."""
    init = {k: {n: v.clone() for n, v in mm.state_dict().items()} for k, mm in trained["models"].items()}
    st = build_system(cfg_for("denoiser", "edgediff.lr_control=0.001"), "cpu", init)
    params = {k: list(st.models[k].parameters()) for k in ("unet", "control", "null")}
    old = torch.optim.AdamW(params["unet"] + params["control"] + params["null"], lr=2e-4, weight_decay=0.0)
    for p in old.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    old.step()
    st.load_training_state({"optimizers": {"main": old.state_dict()}})
    opt = st.optimizers["main"]
    assert [g["lr"] for g in opt.param_groups] == [2e-4, 1e-3]
    for p in params["control"] + params["null"] + params["unet"][:3]:
        assert torch.equal(opt.state[p]["exp_avg"], old.state[p]["exp_avg"])


def test_compress_each_codes_every_face_from_one_encoder_pass(trained, monkeypatch):
    """compress_each (the batched verbs' path): one encoder pass for the batch, one file per face holding what
    compress writes for that face alone."""
    m, c, x = trained["models"], trained["c"], trained["x"]
    calls = []
    real = R.encode
    monkeypatch.setattr(R, "encode", lambda *a: calls.append(1) or real(*a))
    files = R.compress_each(m, c, x, 3)
    assert len(calls) == 1 and len(files) == x.shape[0]
    for i, f in enumerate(files):
        q, bits = R.decompress(m, c, f)
        assert bits == 3 and q.shape[0] == 1
        assert torch.equal(q, R.decompress(m, c, R.compress(m, c, x[i:i + 1], 3))[0])


def test_completion_table_gives_no_lost_pixel_psnr_without_lost_pixels(trained):
    """``evaluate(completion="all")``: the lossless setting (no region lost) has no PSNR of the lost pixels (there
    are none); every lossy setting has one."""
    from pycompgen.evaluation.edgediff import evaluate
    m, x = trained["models"], trained["x"][:2]
    cfg = cfg_for("denoiser")
    res, _ = evaluate(cfg, m, x, steps=2, complete_steps=2, log=lambda *_: None, completion="all",
                      complete_start=0.5)
    rows = res["completion"]
    assert {r["regions"] == 0 for r in rows} == {True, False}
    assert all(("lost_psnr" in r) == (r["regions"] > 0) for r in rows)


def test_completer_trains_alone_and_fills_from_the_holes_edges(trained):
    """The completer stage (beyond the paper): a freshly built filler counts as untrained (complete() keeps
    diffusion; method "filler" refused); trained with everything else frozen, its validation MSE over the lost
    cells falls and it fills by default: known values bit-exact, fills inside (−R, R), the holes' edges change the
    fill, edges outside the holes do not; "sdc" is the fill without edges."""
    m0 = trained["models"]
    init = {k: m0[k].state_dict() for k in ("vae", "eb", "een", "unet", "control", "null")}
    torch.manual_seed(0)
    st = build_system(cfg_for("completer"), "cpu", init)
    b = st.prepare_batch(face_batch(8), torch.Generator().manual_seed(0))
    m, c, x = st.models, st.cfg.edgediff, b["x"][:4]
    y_hat = R.quantise(m, c, R.encode(m, c, x), 5)[0]
    known = R.drop_regions(y_hat.shape, 0.25, 3, seed=2)
    assert not R.filler_trained(m)
    with pytest.raises(ValueError, match="trained completer"):
        R.complete(m, c, y_hat, known, "full", method="filler")
    unet = {k: v.clone() for k, v in m["unet"].state_dict().items()}
    st.eval_mode()
    v0 = st.validation_step(b)
    st.train_mode()
    for _ in range(20):
        st.train_step(b)
    st.eval_mode()
    v1 = st.validation_step(b)
    assert float(v1["loss"]) < 0.8 * float(v0["loss"]) and torch.isfinite(v1["lost_mse_no_edges"])
    assert int(m["filler"].steps) == 20 and R.filler_trained(m)
    assert all(torch.equal(unet[k], v) for k, v in m["unet"].state_dict().items())
    edges = (torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(3)) > 0.7).float()
    full = R.complete(m, c, y_hat, known, "full", edges=edges, bits=5)
    assert torch.equal(full, R.fill(m, c, y_hat, known, 5, edges))
    k = known.expand_as(y_hat)
    assert full.view(torch.int32)[k].equal(y_hat.view(torch.int32)[k])
    assert full[~k].abs().max() <= c.latent_range
    none = R.complete(m, c, y_hat, known, "sdc", bits=5)
    assert torch.equal(none, R.fill(m, c, y_hat, known, 5)) and not torch.equal(none, full)
    outside = torch.where(R.lost_pixels(known, 32) > 0, edges, 1 - edges)   # other edges where the latent arrived
    assert torch.equal(full, R.fill(m, c, y_hat, known, 5, outside))
    with pytest.raises(ValueError, match="method"):
        R.complete(m, c, y_hat, known, "full", method="regress")
