"""Sketch2face (seed 004): unpaired sketch <-> face CycleGAN with VAE generators and WGAN-GP critics.
Tiny networks, 32x32 synthetic faces and synthetic sketches (no dataset needed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.systems import build_system, get_system

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "sketch2face-tiny.yaml"


def cfg_for(*overrides):
    return load_config(str(TINY), ["train.amp=off", *overrides])


def loader_batch(cfg, n=8, split="train"):
    ds = get_system("sketch2face").datasets(cfg, split)
    return torch.stack([ds[i] for i in range(n)])


def test_dataset_unpaired_domains():
    cfg = cfg_for()
    ds = get_system("sketch2face").datasets(cfg, "train")
    item = ds[0]
    assert item.shape == (4, 32, 32) and item.dtype == torch.uint8
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg), torch.Generator().manual_seed(0))
    assert b["sketch"].shape == (8, 1, 32, 32) and b["face"].shape == (8, 3, 32, 32)
    assert b["sketch"].min() >= -1 and b["face"].max() <= 1 and b["x"].min() >= 0
    # the canny sketch style (edges of other synthetic faces, dark lines on white)
    c2 = cfg_for("sketch2face.sketch_source=canny")
    sk = get_system("sketch2face").datasets(c2, "val").sketches
    assert sk.dtype.name == "uint8" and set(map(int, torch.unique(torch.from_numpy(sk)))) <= {0, 255}


@pytest.mark.parametrize("stage", ["pretrain", "cycle"])
def test_losses_decrease(stage):
    cfg = cfg_for(f"train.stage={stage}", "sketch2face.lr_g=0.003", "sketch2face.lr_d=0.001",
                  "sketch2face.n_critic=1")
    torch.manual_seed(0)
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg, n=4), torch.Generator().manual_seed(0))
    logs = [st.train_step(b) for _ in range(6)]
    rec = [float(l["loss"]) for l in logs]
    assert min(rec[-2:]) < 0.9 * rec[0], rec  # the (cycle) reconstruction L1
    loss_d = [float(l["loss_d"]) for l in logs]
    assert min(loss_d[-2:]) < loss_d[0], loss_d  # the critics' WGAN-GP loss
    assert {"loss_g", "loss_d", "adv", "kld", "wdist_s", "gp_f"} <= set(logs[-1])
    assert all(torch.isfinite(l["loss_d"]) and torch.isfinite(l["loss_g"]) for l in logs)


def test_gradient_penalty_matches_direct_autograd():
    from pycompgen.systems.sketch2face import gradient_penalty
    cfg = cfg_for()
    D = build_system(cfg, "cpu").models["D_f"]
    torch.manual_seed(1)
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    eps = torch.rand(4, 1, 1, 1)
    gp = gradient_penalty(D, real, fake, eps)
    direct = []
    for i in range(4):  # one image at a time: ∂D(x̂_i)/∂x̂_i
        xi = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        g, = torch.autograd.grad(D(xi).sum(), xi)
        direct.append((g.norm() - 1) ** 2)
    torch.testing.assert_close(gp, torch.stack(direct).mean(), rtol=1e-5, atol=1e-6)
    # the penalty trains the critic: a gradient reaches D's parameters through the input gradient
    gp.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for n, p in D.named_parameters()
               if n != "fc.bias")  # the output bias does not change the input gradient


def test_latent_stage_keeps_frozen_parts_bit_identical():
    cfg = cfg_for("train.stage=latent")
    pre = build_system(cfg_for("train.stage=pretrain"), "cpu").model_state()
    st = build_system(cfg, "cpu", init=pre)
    frozen = ("E_s", "G_s", "E_f", "G_f")
    before = {k: {n: t.clone() for n, t in st.models[k].state_dict().items()} for k in frozen}
    t_before = {n: t.clone() for n, t in st.models["T_sf"].state_dict().items()}
    b = st.prepare_batch(loader_batch(cfg), torch.Generator().manual_seed(0))
    for _ in range(2):
        st.train_step(b)
    for k in frozen:  # parameters and BatchNorm buffers
        for n, t in st.models[k].state_dict().items():
            assert torch.equal(t, before[k][n]), (k, n)
    assert any(not torch.equal(t, t_before[n]) for n, t in st.models["T_sf"].state_dict().items())
    assert set(st.optimizers) == {"G", "D_s", "D_f"}


def test_stitched_stage_needs_pretraining():
    with pytest.raises(ValueError, match="needs trained network"):
        build_system(cfg_for("train.stage=stitched"), "cpu")


def test_bad_input_gives_clear_error():
    from pycompgen.systems.sketch2face import Sketch2Face, cycle_distances
    cfg = cfg_for()
    st = build_system(cfg, "cpu")
    st.eval_mode()
    models = st.models
    with pytest.raises(ValueError, match=r"sketch batch must be \(N, 1, H, W\).*face given as a sketch") as e:
        Sketch2Face.sketch_to_face(models, torch.zeros(2, 3, 32, 32))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="built for 32x32 sketch images but got 64x64") as e:
        Sketch2Face.sketch_to_face(models, torch.zeros(2, 1, 64, 64))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"values must be floats in \[-1, 1\]"):
        Sketch2Face.sketch_to_face(models, torch.full((2, 1, 32, 32), 255.0))
    with pytest.raises(ValueError, match="face batch must be"):
        cycle_distances(models, torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="face-only data cannot train sketch2face") as e:
        st.prepare_batch(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.Generator())
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="16x16 images but data.image_size=32"):
        st.prepare_batch(torch.zeros(2, 4, 16, 16, dtype=torch.uint8), torch.Generator())


def test_evaluation_helpers():
    from pycompgen.systems.sketch2face import cycle_distances, sample_spread
    cfg = cfg_for("train.stage=cycle")
    st = build_system(cfg, "cpu")
    st.eval_mode()
    b = st.prepare_batch(loader_batch(cfg, split="val"), torch.Generator().manual_seed(0))
    d = cycle_distances(st.models, b["sketch"], b["face"])
    assert {"sketch_cycle_l1", "face_cycle_l1", "sketch_cycle_ssim", "face_cycle_ssim"} <= set(d)
    assert 0 <= d["sketch_cycle_l1"] <= 1 and -1 <= d["face_cycle_ssim"] <= 1 and d["face_n"] == 8
    s = sample_spread(st.models, b["sketch"], samples=4)
    assert s["spread_within_input"] >= 0 and s["spread_across_inputs"] > 0 and s["spread_ratio"] >= 0



def test_realism_figures_flag_one_face_for_every_sketch():
    """pycompgen.evaluation.sketch2face: judge figures of sketch -> face and pixel diversity of face -> sketch; a
    generator that returns one face for every sketch (and one sketch for every face) is flagged as collapsed, with
    spread ratios near 0; real faces against real faces are not. Table 1's ordering read per cycle."""
    from pycompgen.evaluation import sketch2face as S2F
    from pycompgen.evaluation.judge import EncoderFeatures
    from pycompgen.systems import build_networks
    cfg = cfg_for("train.stage=cycle")
    st = build_system(cfg, "cpu")
    st.eval_mode()
    b = st.prepare_batch(loader_batch(cfg, n=32, split="val"), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    feats = EncoderFeatures.from_models(build_networks(load_config("configs/tiny.yaml", [])), "tiny-f", 32)
    r = S2F.realism(st.models, b["sketch"], b["face"], feats)
    assert {"fd", "spread_ratio", "collapse", "sharpness_ratio", "sketch_spread_ratio", "sketch_collapse"} <= set(r)

    class One(torch.nn.Module):  # every input -> the same output
        def __init__(self, ch):
            super().__init__()
            self.ch = ch

        def forward(self, z):
            return torch.full((z.shape[0], self.ch, 32, 32), 0.1) + torch.linspace(-0.5, 0.5, 32)

    one = dict(st.models, G_f=One(3), G_s=One(1))
    c = S2F.realism(one, b["sketch"], b["face"], feats)
    assert c["collapse"] and c["sketch_collapse"] and c["spread_ratio"] < 0.01 and c["sketch_spread_ratio"] < 0.01
    # the face decoder on prior samples and on the face VAE's own encodings: one face for every latent is flagged
    for source in ("prior", "reconstruction"):
        p = S2F.prior_realism(st.models, b["face"], feats, n=32, source=source)
        assert p["n_samples"] == 32 and {"fd", "spread_ratio", "collapse", "sharpness_ratio"} <= set(p)
        assert S2F.prior_realism(one, b["face"], feats, n=32, source=source)["collapse"]
    with pytest.raises(ValueError, match="source must be prior or reconstruction"):
        S2F.prior_realism(st.models, b["face"], feats, source="sketch")
    ref = S2F.real_reference(b["face"], feats)
    assert 0.5 < ref["spread_ratio"] < 2 and 0.5 < ref["sharpness_ratio"] < 2
    rows = {"latent": {"sketch_cycle_l1": 0.1, "face_cycle_l1": 0.3}, "stitched": {"sketch_cycle_l1": 0.2,
            "face_cycle_l1": 0.2}, "cycle": {"sketch_cycle_l1": 0.3, "face_cycle_l1": 0.25}}
    assert S2F.ordering(rows) == {"sketch_cycle_as_paper": True, "face_cycle_as_paper": False}
    # the paper's measure: FD between inputs and their cycle reconstructions; the ordering reads it where present
    fd = S2F.cycle_fd(st.models, b["sketch"], b["face"], feats)
    assert fd["sketch_cycle_fd_n"] == fd["face_cycle_fd_n"] == 32 and fd["sketch_cycle_fd"] > 0 and fd["face_cycle_fd"] > 0
    from pycompgen.systems.sketch2face import Sketch2Face
    with pytest.MonkeyPatch.context() as mp:  # a perfect cycle gives its inputs back: FD 0
        mp.setattr(Sketch2Face, "cycle", classmethod(lambda cls, m, src, x, sample=False: x))
        perfect = S2F.cycle_fd(st.models, b["sketch"], b["face"], feats)
    assert abs(perfect["sketch_cycle_fd"]) < 1e-6 and abs(perfect["face_cycle_fd"]) < 1e-6
    for k, v in zip(("latent", "stitched", "cycle"), (1.0, 2.0, 3.0)):
        rows[k].update(sketch_cycle_fd=v, face_cycle_fd=4.0 - v if k != "cycle" else 0.5)
    o = S2F.ordering(rows)
    assert o["sketch_cycle_as_paper_fd"] and not o["face_cycle_as_paper_fd"] and o["sketch_cycle_as_paper"]

def _ddp_worker(rank, world, port, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    cfg = cfg_for("train.stage=cycle", "sketch2face.n_critic=1")
    torch.manual_seed(100 + rank)  # different parameters per rank before the broadcast
    st = build_system(cfg, "cpu")
    ds = get_system("sketch2face").datasets(cfg, "train")
    x = torch.stack([ds[i] for i in range(rank * 4, rank * 4 + 4)])  # a different shard per rank
    b = st.prepare_batch(x, torch.Generator().manual_seed(rank))
    st.train_step(b)
    torch.save({k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in st.models.items()}
               | {"grads": [p.grad.clone() for p in st.models["D_f"].parameters()]}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gradients_identical(tmp_path):
    """Manual gradient averaging (no DDP: double backward for the penalty) leaves both processes with the same
    gradients and weights after a step on different data."""
    import torch.multiprocessing as mp
    from conftest import free_port
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for ga, gb in zip(a.pop("grads"), b.pop("grads")):
        assert torch.equal(ga, gb)
    for k in a:
        for n in a[k]:
            assert torch.equal(a[k][n], b[k][n]), (k, n)


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_trains_on_two_ray_workers(tmp_path, ray_local):
    """The cycle stage on 2 Ray Train workers (CPU) with the tiny config (the CLI's --workers path is the same
    train_distributed; tests/test_distributed.py runs it end to end)."""
    from pycompgen.distributed import train_distributed
    from pycompgen.training import load_checkpoint
    cfg = cfg_for(f"out={tmp_path / 'run'}", "train.stage=cycle", "train.epochs=1", "eval.max_images=16")
    train_distributed(cfg, workers=2, stages=["cycle"], evaluate=False)
    ck = load_checkpoint(tmp_path / "run" / "cycle" / "last.pt", expect_model="sketch2face")
    assert ck["stage"] == "cycle" and ck["epoch"] == 1 and set(ck["optimizers"]) == {"G", "D_s", "D_f"}


def test_loss_scales_kld_per_value_and_none_on_the_cycle_hop():
    """The KLD is a mean per latent value (not a per-image sum), taken on the encodings of real inputs only;
    every weighted term is logged on its own."""
    from pycompgen.networks import kl_divergence
    cfg = cfg_for("train.stage=cycle", "sketch2face.n_critic=1")
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg, n=4), torch.Generator().manual_seed(0))
    mu, logvar = st.models["E_s"](b["sketch"])
    z, kld = st.encode(st.models, "s", b["sketch"])
    torch.testing.assert_close(kld, kl_divergence(mu, logvar).mean() / mu[0].numel())
    out = st._fakes(b, grad=True)
    with torch.no_grad():
        torch.testing.assert_close(out["kld_s"], st.encode(st.models, "s", b["sketch"])[1])  # no cycle-hop term
        torch.testing.assert_close(out["kld_f"], st.encode(st.models, "f", b["face"])[1])
    logs = st.train_step(b)
    c = cfg.sketch2face
    torch.testing.assert_close(logs["w_rec"] + logs["w_adv"] + logs["w_kld"], logs["loss_g"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logs["w_kld"], c.lambda_kld * logs["kld"])


@pytest.mark.parametrize("mode, sizes", [("split", [4, 4]), ("reuse", [8, 8])])
def test_each_critic_step_gets_fresh_real_and_fake_images(mode, sizes):
    cfg = cfg_for("train.stage=cycle", "sketch2face.n_critic=2", f"sketch2face.critic_batches={mode}")
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg, n=8), torch.Generator().manual_seed(0))
    seen = []
    h = st.models["D_f"].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    st.train_step(b)
    h.remove()
    # per critic step: D(real), D(fake), D(interpolates); then the generator's D(fake)
    reals = [seen[3 * i] for i in range(2)]
    assert [r.shape[0] for r in reals] == sizes
    if mode == "split":  # disjoint slices of the batch, each with its own fakes
        torch.testing.assert_close(torch.cat(reals), b["face"].float())
        assert seen[1].shape[0] == seen[4].shape[0] == 4
    else:
        torch.testing.assert_close(reals[0], reals[1])
    with pytest.raises(ValueError, match="critic_batches=split needs train.batch_size >= n_critic"):
        cfg_for("sketch2face.n_critic=9").validate()


def test_flips_in_every_training_stage_and_none_in_validation():
    cfg = cfg_for("train.stage=latent")
    st = build_system(cfg, "cpu", init=build_system(cfg_for("train.stage=pretrain"), "cpu").model_state())
    x = loader_batch(cfg, n=16)
    plain = st.split_batch(cfg, x, "cpu")
    flipped = st.prepare_batch(x, torch.Generator().manual_seed(0))  # encoders frozen, T_* training: flips on
    assert not torch.equal(flipped["face"], plain["face"])
    st.eval_mode()
    assert torch.equal(st.prepare_batch(x, torch.Generator().manual_seed(0))["face"], plain["face"])


def test_generators_use_instance_norm_and_gan_defaults():
    from torch import nn
    cfg = cfg_for().validate()
    nets = build_system(cfg, "cpu").models
    kinds = {type(m) for k in ("E_s", "G_f") for m in nets[k].modules()}
    assert nn.InstanceNorm2d in kinds and nn.BatchNorm2d not in kinds
    bn = build_system(cfg_for("sketch2face.norm=batch").validate(), "cpu").models
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn["G_f"].modules())
    assert cfg.train.ema_decay == 0.999 and cfg.train.fp32_networks == ["D_s", "D_f"]
    assert get_system("sketch2face").selection(cfg) == ("val_loss", "min")
    st = build_system(cfg, "cpu")
    assert set(st.ema) == {"E_s", "G_s", "E_f", "G_f"}  # stage pretrain: its trainable generators


def test_cycle_noise_reaches_the_cycle_hop_only():
    """sketch2face.cycle_noise: the translation is perturbed before the cycle hop (against hiding the cycle's
    information in low-amplitude patterns), never in the translation itself or at 0."""
    cfg = cfg_for("train.stage=cycle", "sketch2face.n_critic=1", "sketch2face.cycle_noise=0.3")
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg, n=4), torch.Generator().manual_seed(0))
    seen = []
    orig = st.translate

    def spy(nets, src, x, sample=True):
        seen.append((src, x.detach().clone()))
        return orig(nets, src, x, sample)
    st.translate = spy
    torch.manual_seed(0)
    out = st._fakes(b, grad=True)
    (s0, x_s), (f0, x_f), (s1, hop_f), (f1, hop_s) = seen
    assert (s0, f0, s1, f1) == ("s", "f", "f", "s")
    torch.testing.assert_close(x_s, b["sketch"])  # the translation itself sees the clean input
    d = hop_f - out["y_f"].detach()
    assert 0.25 < float(d.std()) < 0.35 and abs(float(d.mean())) < 0.05
    off = build_system(cfg_for("train.stage=cycle", "sketch2face.n_critic=1"), "cpu")
    y = torch.rand(2, 3, 32, 32)
    assert off.hop(y) is y
    with pytest.raises(ValueError, match="sketch2face.cycle_noise must be >= 0"):
        cfg_for("sketch2face.cycle_noise=-0.1")


def test_vector_latent_networks_and_latent_layers():
    """sketch2face.latent_dim: a vector latent (linear encoder head and decoder stem); every output pixel depends on
    the whole latent; the latent layers T_* start as the identity on it; a wrong latent shape is refused."""
    from pycompgen.networks import ConvDecoder, ConvEncoder
    cfg = cfg_for("train.stage=latent", "sketch2face.latent_dim=16").validate()
    st = build_system(cfg, "cpu", init=build_system(cfg_for("train.stage=pretrain", "sketch2face.latent_dim=16"),
                                                     "cpu").model_state())
    b = st.prepare_batch(loader_batch(cfg, n=4), torch.Generator().manual_seed(0))
    mu, logvar = st.models["E_s"](b["sketch"])
    assert mu.shape == logvar.shape == (4, 16) and st.latent_shape(cfg) == (16,)
    z = torch.randn(3, 16)
    torch.testing.assert_close(st.models["T_sf"](z), z)
    st.eval_mode()
    y, _ = st.translate(st.models, "s", b["sketch"], False)
    assert y.shape == (4, 3, 32, 32)
    g = ConvDecoder(3, 8, latent_dim=16, image_size=32, out="tanh").eval()
    torch.manual_seed(0)
    z = torch.randn(1, 16, requires_grad=True)
    g(z)[0, :, 0, 0].sum().backward()  # a corner pixel sees every latent value
    assert bool((z.grad != 0).all())
    spatial = ConvDecoder(3, 8, latent_channels=4, out="tanh").eval()
    zs = torch.randn(1, 4, 4, 4, requires_grad=True)
    spatial(zs)[0, :, 0, 0].sum().backward()  # ... a spatial latent's corner pixel does not
    assert bool((zs.grad[0, :, -1, -1] == 0).all())
    with pytest.raises(ValueError, match=r"latent of shape \(N, 16\)"):
        g(torch.zeros(1, 4, 4, 4))
    assert ConvEncoder(1, 8, latent_dim=16, image_size=32)(torch.zeros(2, 1, 32, 32))[0].shape == (2, 16)
    with pytest.raises(ValueError, match="latent_dim"):
        cfg_for("sketch2face.latent_dim=-1").validate()


@pytest.mark.parametrize("stage, prior", [("pretrain", True), ("stitched", True), ("latent", False)])
def test_prior_samples_train_the_decoders_against_the_critics(stage, prior):
    """sketch2face.lambda_prior: where a decoder trains, half of each critic step's fakes are its prior samples
    G_d(z), z ~ N(0, I), and the generator loss gets -λ_adv·λ_prior·D(G_d(z)); frozen decoders (latent) get none."""
    ovs = ["sketch2face.latent_dim=16", "sketch2face.lambda_prior=0.5", "sketch2face.n_critic=1"]
    pre = build_system(cfg_for("train.stage=pretrain", *ovs), "cpu").model_state()
    cfg = cfg_for(f"train.stage={stage}", *ovs)
    st = build_system(cfg, "cpu", init=None if stage == "pretrain" else pre)
    assert st.prior_domains() == (("s", "f") if prior else ())
    b = st.prepare_batch(loader_batch(cfg, n=8), torch.Generator().manual_seed(0))
    calls = []
    orig = st.prior_sample
    st.prior_sample = lambda d, n, grad: calls.append((d, n, grad)) or orig(d, n, grad)
    logs = st.train_step(b)
    c = cfg.sketch2face
    if prior:
        assert sorted(calls) == sorted([("s", 8, False), ("f", 8, False), ("s", 8, True), ("f", 8, True)])
        assert float(logs["w_adv_prior"]) != 0
    else:
        assert calls == [] and float(logs["w_adv_prior"]) == 0
    torch.testing.assert_close(logs["w_rec"] + logs["w_adv"] + logs["w_adv_prior"] + logs["w_kld"],
                               logs["loss_g"], rtol=1e-4, atol=1e-5)
    off = build_system(cfg_for("train.stage=pretrain", "sketch2face.latent_dim=16"), "cpu")
    assert off.prior_domains() == ()  # lambda_prior 0 (the default): no prior samples
    assert c.lambda_prior == 0.5


def test_kld_target_holds_each_domain_near_its_capacity():
    """sketch2face.kld_target: the KLD term is λ_KLD·(|KLD_s − C| + |KLD_f − C|), so it pushes a domain's KLD down
    above C and up below it; the raw KLD is still logged."""
    cfg = cfg_for("train.stage=pretrain", "sketch2face.n_critic=1", "sketch2face.kld_target=0.7",
                  "sketch2face.lambda_kld=2")
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(loader_batch(cfg, n=4), torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    with torch.no_grad():
        ks = float(st.encode(st.models, "s", b["sketch"])[1])
        kf = float(st.encode(st.models, "f", b["face"])[1])
    torch.manual_seed(1)
    logs = st.train_step(b)
    torch.testing.assert_close(float(logs["kld"]), ks + kf, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(float(logs["w_kld"]), 2 * (abs(ks - 0.7) + abs(kf - 0.7)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="kld_target"):
        cfg_for("sketch2face.kld_target=-1").validate()


def test_mode_seeking_term_pushes_translations_of_different_inputs_apart():
    """sketch2face.lambda_div: λ_div / (output distance / input distance) per translation, logged as w_div and part of
    loss_g; none in pretraining; its gradient alone makes the translations of a batch differ more."""
    from pycompgen.systems.sketch2face import mode_seeking_ratio
    x = torch.tensor([[0.0], [1.0], [3.0]])
    torch.testing.assert_close(mode_seeking_ratio(x, 2 * x), torch.tensor(2.0))   # rolled pairs (2,0),(0,1),(1,2)
    ovs = ["sketch2face.lambda_div=0.5", "sketch2face.n_critic=1"]
    pre = build_system(cfg_for("train.stage=pretrain", *ovs), "cpu")
    b = pre.prepare_batch(loader_batch(pre.cfg, n=8), torch.Generator().manual_seed(0))
    assert float(pre.train_step(b)["w_div"]) == 0
    cfg = cfg_for("train.stage=stitched", *ovs)
    st = build_system(cfg, "cpu", init=pre.model_state())
    b = st.prepare_batch(loader_batch(cfg, n=8), torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        before = st._fakes(b, grad=False)
    r0 = float(mode_seeking_ratio(b["sketch"], before["y_f"].float()))
    logs = st.train_step(b)
    assert float(logs["w_div"]) > 0 and float(logs["div_ratio"]) > 0
    torch.testing.assert_close(logs["w_rec"] + logs["w_adv"] + logs["w_adv_prior"] + logs["w_kld"] + logs["w_div"],
                               logs["loss_g"], rtol=1e-4, atol=1e-5)
    # the term alone (every other weight 0) raises the sketch -> face ratio
    only = cfg_for("train.stage=stitched", "sketch2face.lambda_div=1", "sketch2face.lambda_rec=0",
                   "sketch2face.lambda_adv=0", "sketch2face.lambda_kld=0", "sketch2face.n_critic=1",
                   "sketch2face.lr_g=0.001")
    st = build_system(only, "cpu", init=pre.model_state())
    for _ in range(5):
        st.train_step(b)
    with torch.no_grad():
        torch.manual_seed(1)
        after = st._fakes(b, grad=False)
    assert float(mode_seeking_ratio(b["sketch"], after["y_f"].float())) > r0
    with pytest.raises(ValueError, match="lambda_div"):
        cfg_for("sketch2face.lambda_div=-1").validate()


def test_feature_reconstruction_term_reads_the_critic_and_trains_the_generators():
    """sketch2face.lambda_feat: the reconstruction's distance in the critic's features (relative per block), zero
    for an exact reconstruction, logged as w_feat and part of loss_g; the generator step leaves the critics as they
    were; the term alone lowers itself."""
    cfg = cfg_for("train.stage=pretrain", "sketch2face.lambda_feat=2", "sketch2face.n_critic=1")
    pre = build_system(cfg, "cpu")
    b = pre.prepare_batch(loader_batch(cfg, n=8), torch.Generator().manual_seed(0))
    critic = pre.models["D_f"]
    feats = critic.features(b["face"])
    assert len(feats) >= 2 and feats[0].shape[-1] == b["face"].shape[-1] // 2
    assert float(pre.feature_distance(critic, b["face"], b["face"]).detach()) == 0
    assert float(pre.feature_distance(critic, b["face"].flip(-1), b["face"]).detach()) > 0
    logs = pre.train_step(b)
    assert float(logs["w_feat"]) > 0
    torch.testing.assert_close(logs["w_rec"] + logs["w_adv"] + logs["w_adv_prior"] + logs["w_kld"] + logs["w_div"]
                               + logs["w_feat"], logs["loss_g"], rtol=1e-4, atol=1e-5)
    # the term alone: critics untouched by the generator updates, the feature distance falls
    only = cfg_for("train.stage=pretrain", "sketch2face.lambda_feat=1", "sketch2face.lambda_rec=0",
                   "sketch2face.lambda_adv=0", "sketch2face.lambda_kld=0", "sketch2face.lambda_real=0",
                   "sketch2face.lambda_fake=0", "sketch2face.lambda_gp=0", "sketch2face.n_critic=1",
                   "sketch2face.lr_g=0.001")
    st = build_system(only, "cpu", init=pre.model_state())
    d0 = {k: v.clone() for k, v in st.models["D_f"].state_dict().items()}
    first = [float(st.train_step(b)["w_feat"]) for _ in range(6)]
    for k, v in st.models["D_f"].state_dict().items():
        torch.testing.assert_close(v, d0[k])
    assert first[-1] < first[0]
    with pytest.raises(ValueError, match="lambda_feat"):
        cfg_for("sketch2face.lambda_feat=-1").validate()


def test_face_cycle_weight_scales_the_face_cycle_only_in_translation_stages():
    """sketch2face.face_cycle_weight: w_rec = λ_rec·(L1 sketch cycle + weight·L1 face cycle) in the translation
    stages (same seeds: the same cycles, so w_rec is linear in the weight); pretraining ignores it."""
    def w_rec(stage, weight, init=None):
        cfg = cfg_for(f"train.stage={stage}", f"sketch2face.face_cycle_weight={weight}", "sketch2face.n_critic=1")
        torch.manual_seed(0)
        st = build_system(cfg, "cpu", init=init)
        b = st.prepare_batch(loader_batch(cfg, n=8), torch.Generator().manual_seed(0))
        torch.manual_seed(1)
        return float(st.train_step(b)["w_rec"]), st
    p1, pre = w_rec("pretrain", 1.0)
    p0, _ = w_rec("pretrain", 0.0)
    assert p0 == pytest.approx(p1, rel=1e-6)
    init = pre.model_state()
    w0, w5, w1 = (w_rec("stitched", w, init)[0] for w in (0.0, 0.5, 1.0))
    assert 0 < w0 < w5 < w1
    assert w1 - w0 == pytest.approx(2 * (w5 - w0), rel=1e-4)
    with pytest.raises(ValueError, match="face_cycle_weight"):
        cfg_for("sketch2face.face_cycle_weight=-1").validate()


def test_bench_pretrain_set_overrides_the_pretraining_only(tmp_path):
    """bench/sketch2face.py --pretrain-set: the pretraining runs with its own overrides, the variant with the
    positional ones and starts from that pretraining; the report names both."""
    import importlib.util
    import json
    from pycompgen.training import load_checkpoint
    spec = importlib.util.spec_from_file_location("bench_sketch2face", ROOT / "bench" / "sketch2face.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, run = tmp_path / "out", tmp_path / "run"
    assert bench.main(["--tiny", "--run-dir", str(run), "--results", str(out), "--machine", "t",
                       "--variants", "stitched", "--eval-images", "8", "--spread-samples", "2",
                       "--pretrain-set", "sketch2face.lambda_rec=150", "sketch2face.lambda_rec=500"]) == 0
    pre = load_checkpoint(run / "pretrain" / "last.pt")
    st = load_checkpoint(run / "stitched" / "last.pt")
    assert pre["config"]["sketch2face"]["lambda_rec"] == 150 and st["config"]["sketch2face"]["lambda_rec"] == 500
    doc = json.loads((out / "sketch2face-t.json").read_text())
    assert doc["pretrain_overrides"] == ["sketch2face.lambda_rec=150"] and doc["config"]["lambda_rec"] == 500
    assert "pretraining with sketch2face.lambda_rec=150" in (out / "sketch2face-t.md").read_text()
    row = doc["table1"]["stitched"]
    tr, va = row["realism_train"], row["realism"]  # training sketches beside validation, as many of each
    assert (tr["n_sketches"], tr["n_faces"]) == (va["n_sketches"], va["n_faces"]) and tr["fd"] != va["fd"]
    assert "training sketches" in (out / "sketch2face-t.md").read_text()
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--run-dir", str(run), "--pretrain-set", "lambda_rec"])


def _cufsf_root(tmp_path, paired=20, unpaired=5, size=40):
    """A CUFSF-like root: sketches/ with photos/ of the same names (each photo the sketch's negative, one of them
    in colour) and sketches_unpaired/ without photos; PNG, so pixels are exact."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for d in ("sketches", "photos", "sketches_unpaired"):
        (tmp_path / d).mkdir(parents=True)
    for i in range(paired + unpaired):
        sk = rng.integers(0, 256, (size, size), dtype=np.uint8)
        sk[:, : size // 2] = 255  # an asymmetric sketch: a flip shows
        name = f"{i:05d}.png"
        if i < paired:
            cv2.imwrite(str(tmp_path / "sketches" / name), sk)
            photo = 255 - sk
            cv2.imwrite(str(tmp_path / "photos" / name), cv2.merge([photo] * 3) if i == 1 else photo)
        else:
            cv2.imwrite(str(tmp_path / "sketches_unpaired" / name), sk)
    return tmp_path


def test_paired_photos_travel_with_their_sketches(tmp_path):
    """lambda_paired > 0: items carry each sketch's photo luma and a has-photo plane; a flip moves the photo with
    its sketch; unpaired sketches are marked; without CUFSF photos the key is refused in one line."""
    root = _cufsf_root(tmp_path)
    cfg = cfg_for(f"sketch2face.sketch_path={root}", "sketch2face.lambda_paired=1")
    ds = get_system("sketch2face").datasets(cfg, "train")
    items = torch.stack([ds[i] for i in range(len(ds))])
    assert items.shape[1:] == (6, 32, 32)
    has = items[:, 5].flatten(1)
    assert bool(((has == 255).all(1) | (has == 0).all(1)).all())
    paired = has[:, 0] == 255
    assert 0 < int(paired.sum()) < len(items)  # 18 of the 22 training sketches have a photo
    neg = (255 - items[paired, 0].int() - items[paired, 4].int()).abs()
    assert int(neg.max()) <= 1  # the photo (the negative) is cropped and resized as its sketch
    assert int(items[~paired, 4].max()) == 0
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(items[:16], torch.Generator().manual_seed(3))
    keep = b["paired"]
    assert torch.allclose(b["photo"][keep], -b["sketch"][keep], atol=2.5 / 255)  # flipped together
    flipped = (b["sketch"] - (items[:16, :1].float() / 127.5 - 1)).abs().amax((1, 2, 3)) > 1e-3
    assert 0 < int(flipped.sum()) < 16
    assert b["face"].shape == (16, 3, 32, 32)
    with pytest.raises(ValueError, match="lambda_paired needs the CUFSF photos"):
        get_system("sketch2face").datasets(cfg_for("sketch2face.lambda_paired=1"), "train")
    with pytest.raises(ValueError, match="lambda_paired"):
        cfg_for("sketch2face.lambda_paired=-1").validate()


def test_paired_term_trains_sketch_to_face_towards_the_photo(tmp_path):
    """The paired term is the L1 of sketch -> face's luma to the photo over the paired sketches only; in a
    translation stage it is logged (w_paired), validation reports l1_paired, and steps on it alone bring
    sketch -> face closer to the photos."""
    from pycompgen.systems.sketch2face import Sketch2Face
    face = torch.zeros(3, 3, 4, 4)
    batch = {"photo": torch.tensor([0.5, -1.0, 9.0]).view(3, 1, 1, 1).expand(3, 1, 4, 4),
             "paired": torch.tensor([True, True, False])}
    assert float(Sketch2Face.paired_distance(face, batch)) == pytest.approx(0.75)
    batch["paired"][:] = False
    assert float(Sketch2Face.paired_distance(face, batch)) == 0.0

    root = _cufsf_root(tmp_path)
    over = [f"sketch2face.sketch_path={root}", "sketch2face.n_critic=1", "sketch2face.lr_g=0.003"]
    pre = build_system(cfg_for("train.stage=pretrain", *over), "cpu").model_state()
    cfg = cfg_for("train.stage=stitched", "sketch2face.lambda_paired=100", "sketch2face.lambda_rec=0",
                  "sketch2face.lambda_adv=0", "sketch2face.lambda_kld=0", *over)
    torch.manual_seed(0)
    st = build_system(cfg, "cpu", init=pre)
    b = st.prepare_batch(loader_batch(cfg, n=16), torch.Generator().manual_seed(0))
    logs = [st.train_step(b) for _ in range(8)]
    assert float(logs[-1]["w_paired"]) < 0.8 * float(logs[0]["w_paired"]), [float(l["w_paired"]) for l in logs]
    st.eval_mode()
    with torch.no_grad():
        v = st.validation_step(st.prepare_batch(loader_batch(cfg, n=3, split="val"), torch.Generator()))
    assert "l1_paired" in v and float(v["l1_paired"]) > 0
    c0 = cfg_for("train.stage=stitched", *over)
    st0 = build_system(c0, "cpu", init=pre)
    assert float(st0.train_step(st0.prepare_batch(loader_batch(c0, n=8), torch.Generator()))["w_paired"]) == 0.0
