"""Systems on the harness: the face-reconstruction study's CVAE and DCGAN, GAN checkpoints and resume, config
sections, and the harness contract (frozen networks, extra state) on a toy two-optimiser system."""
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from pycompgen import cli
from conftest import synthetic_face_batch as face_batch
from pycompgen.config import load_config
from pycompgen.systems import SYSTEMS, build_system, register_system
from pycompgen.systems.base import StageSpec, System
from pycompgen.training import fit, load_checkpoint, make_loaders, train_local

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
SMALL = {"cvae": ["cvae.channels=8", "cvae.latent_channels=4"],
         "dcgan": ["dcgan.channels=8", "dcgan.latent_channels=4", "dcgan.disc_channels=8"]}


def cfg_for(system, *over, out=None):
    cfg = load_config(TINY, [f"model.name={system}", *SMALL.get(system, []), *over])
    if out is not None:
        cfg.out = str(out)
    return cfg


def clone(sd):
    return {k: v.clone() for k, v in sd.items()}


@pytest.mark.parametrize("system", ["cvae", "dcgan"])
def test_loss_decreases(system):
    # the tiny GAN's generator first answers the discriminator; its reconstruction term wins after ~30 steps
    cfg = cfg_for(system, "train.lr=0.003", "dcgan.lr_g=0.01")
    torch.manual_seed(0)
    st = build_system(cfg, "cpu")
    b = st.prepare_batch(face_batch(), torch.Generator().manual_seed(0))
    logs = [st.train_step(b) for _ in range(25 if system == "cvae" else 50)]
    losses = [float(l["loss"]) for l in logs]
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    if system == "dcgan":
        assert {"loss_d", "loss_g", "adv", "d_real", "d_fake"} <= set(logs[-1])
        assert all(torch.isfinite(l["loss_d"]) for l in logs)


def test_study_parameter_counts():
    """CVAE ~0.45 M parameters; the DCGAN generator about twice that (~1 M), as in the study."""
    from pycompgen.systems import build_networks
    n = lambda nets, ks: sum(p.numel() for k in ks for p in nets[k].parameters())
    cvae = n(build_networks(load_config(None, ["model.name=cvae"])), ("f", "g"))
    gan = build_networks(load_config(None, ["model.name=dcgan"]))
    assert 350_000 < cvae < 550_000 and 800_000 < n(gan, ("f", "g")) < 1_200_000
    assert build_system(load_config(None, ["model.name=cvae"]), "cpu").models["f"](
        torch.rand(2, 3, 64, 64))[0][0].numel() == 512  # 512-value latent per 64x64 face


def test_dcgan_generator_step_leaves_discriminator_gradients_alone():
    st = build_system(cfg_for("dcgan"), "cpu")
    b = st.prepare_batch(face_batch(8), torch.Generator().manual_seed(0))
    d_before = clone(st.models["D"].state_dict())
    st.train_step(b)
    # D changed by its own step only; its gradients are those of the D loss (G's step does not accumulate into D)
    assert any(not torch.equal(v, st.models["D"].state_dict()[k]) for k, v in d_before.items())
    st2 = build_system(cfg_for("dcgan"), "cpu")
    st2.models["D"].load_state_dict(d_before)
    torch.manual_seed(0)
    st2.train_step(b)
    grads = [p.grad.clone() for p in st2.models["D"].parameters()]
    assert all(g is not None for g in grads)


def test_gan_resume_equals_uninterrupted_run(tmp_path):
    """Both optimisers, the networks and the epoch are restored: 1 epoch + resume == 2 epochs, bit for bit."""
    cfg = cfg_for("dcgan", "train.epochs=2", out=tmp_path / "full")
    full = train_local(cfg, verbose=False)
    part = cfg_for("dcgan", "train.epochs=1", out=tmp_path / "part")
    train_local(part, verbose=False)
    ck = load_checkpoint(tmp_path / "part" / "last.pt", expect_model="dcgan")
    assert set(ck["optimizers"]) == {"G", "D"} and ck["optimizers"]["D"]["state"]
    resumed = train_local(cfg_for("dcgan", "train.epochs=2", out=tmp_path / "part"), resume=True, verbose=False)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    for net in ("f", "g", "D"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), f"{net}.{k}"
    assert resumed["train_loss"] == full["train_loss"]


def test_cli_trains_any_system(tmp_path, capsys):
    assert cli.main(["train", "--system", "cvae", "--config", TINY, "--out", str(tmp_path / "c"),
                     *SMALL["cvae"]]) == 0
    ck = load_checkpoint(tmp_path / "c" / "last.pt", expect_model="cvae")
    assert ck["stage"] == "train" and ck["config"]["cvae"]["channels"] == 8
    assert cli.main(["train", "--system", "cvae", "--config", TINY, "cvae.kl_weight=-1"]) == 2
    assert "cvae.kl_weight must be >= 0" in capsys.readouterr().err
    assert cli.main(["train", "--system", "cvae", "--config", TINY, "cvae.nope=1"]) == 2
    assert "unknown config key 'cvae.nope'" in capsys.readouterr().err
    assert cli.main(["train", "--system", "cvae", "--stage", "step1", "--config", TINY]) == 2
    assert "train.stage must be one of train for system 'cvae'" in capsys.readouterr().err


def test_config_sections_round_trip():
    cfg = cfg_for("dcgan", "dcgan.betas_d=[0.0,0.9]")
    flat = cfg.flatten()
    assert flat["dcgan.betas_d"] == [0.0, 0.9] and flat["model.name"] == "dcgan" and "cvae.channels" not in flat
    again = type(cfg).from_dict(cfg.to_dict())
    assert again.dcgan.betas_d == [0.0, 0.9] and again.dcgan.channels == 8 and again.train.stage == "train"
    with pytest.raises(ValueError, match="dcgan.betas_g must be two numbers"):
        cfg_for("dcgan", "dcgan.betas_g=[0.5]")


# -- the harness contract on a toy system ----------------------------------------------------------------------------
@dataclass
class ToyConfig:
    width: int = 4


class Toy(System):
    """Two optimisers, a frozen network and a k_t-like extra state clipped to [0, 1]."""
    name = "toy-test"
    section = ToyConfig
    stages = {"pre": StageSpec("pre", ("a", "frozen"), ("a",), (), 1),
              "main": StageSpec("main", ("a", "b", "frozen"), ("a", "b"), ("a",), 2)}

    @classmethod
    def build_networks(cls, cfg):
        w = cfg.sections["toy-test"].width
        return {"a": nn.Conv2d(3, w, 3, padding=1), "b": nn.Conv2d(w, 3, 3, padding=1),
                "frozen": nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))}

    def initial_extra(self):
        return {"k": 0.0, "steps": torch.zeros((), dtype=torch.long)}

    def configure_optimizers(self):
        opts = {"a": torch.optim.Adam(self.models["a"].parameters(), lr=1e-2)}
        if "b" in self.spec.trainable:
            opts["b"] = torch.optim.SGD(self.models["b"].parameters(), lr=1e-2, momentum=0.9)
        return opts

    def _out(self, nets, x):
        h = nets["a"](nets["frozen"](x))
        return torch.sigmoid(nets["b"](h)) if "b" in nets else torch.sigmoid(h.mean(1, keepdim=True)).expand_as(x)

    def train_step(self, batch):
        x = batch["x"]
        loss = (self._out(self.nets, x) - x).abs().mean()
        if "b" in self.optimizers:
            self.optimizers["a"].zero_grad()
            self.step(loss, "b")
            self.optimizers["a"].step()
        else:
            self.step(loss, "a")
        self.extra["k"] = min(1.0, max(0.0, self.extra["k"] + 0.3))
        self.extra["steps"] += 1
        return {"loss": loss.detach()}

    def validation_step(self, batch):
        x_hat = self._out(self.models, batch["x"])
        return {"loss": (x_hat - batch["x"]).abs().mean(), "x_hat": x_hat}


@pytest.fixture
def toy():
    register_system(Toy)
    yield Toy
    SYSTEMS.pop(Toy.name)


def test_harness_contract_on_a_toy_system(toy, tmp_path):
    cfg = load_config(TINY, ["model.name=toy-test", "train.epochs=1", "toy-test.width=5", f"out={tmp_path}"])
    assert cfg.train.stage == "pre"  # default: the system's first stage
    from pycompgen.training import run_pipeline
    res = run_pipeline(cfg, verbose=False)
    assert list(res) == ["pre", "main"]
    pre = load_checkpoint(tmp_path / "pre" / "best.pt")
    main = load_checkpoint(tmp_path / "main" / "last.pt")
    for k, v in pre["models"]["frozen"].items():  # frozen: weights and BatchNorm statistics untouched
        assert torch.equal(v, main["models"]["frozen"][k]), k
    assert set(main["optimizers"]) == {"a", "b"} and main["extra"]["k"] == pytest.approx(0.6)
    assert int(main["extra"]["steps"]) == 2  # 1 epoch x max_steps_per_epoch 2
    # resume restores extra state and both optimisers
    c = cfg.copy()
    c.train.stage = "main"
    st = build_system(c, "cpu", resume_state=main)
    assert st.extra["k"] == pytest.approx(0.6) and int(st.extra["steps"]) == 2
    assert st.optimizers["b"].state_dict()["state"]
    with pytest.raises(ValueError, match="optimiser 'c'"):
        build_system(c, "cpu", resume_state=dict(main, optimizers={"c": {}}))
    with pytest.raises(ValueError, match="needs trained network"):
        build_system(c, "cpu")


@pytest.mark.parametrize("select", [("val_loss", "min"), ("val_ssim", "max")])
def test_best_checkpoint_follows_the_stage_selection_metric(toy, tmp_path, monkeypatch, select):
    """best.pt is the epoch with the best value of the stage's ``select`` metric (e.g. the EEN's edge-F1, a denoiser's
    validation loss), not always val SSIM; its payload names the metric."""
    import json
    from dataclasses import replace
    from pycompgen.training import run_pipeline
    monkeypatch.setitem(Toy.stages, "pre", replace(Toy.stages["pre"], epochs=4, select=select))
    cfg = load_config(TINY, ["model.name=toy-test", "train.stage=pre", "train.epochs=4", f"out={tmp_path}"])
    run_pipeline(cfg, stages=["pre"], verbose=False)
    rows = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if select[0] in r]
    assert len(rows) == 4
    pick = (min if select[1] == "min" else max)(rows, key=lambda r: r[select[0]])
    best = load_checkpoint(tmp_path / "pre" / "best.pt")
    assert best["epoch"] == pick["epoch"] and best["best_metric"] == select[0]
    assert best["best_value"] == pytest.approx(pick[select[0]])
    assert sum(r["is_best"] for r in rows) >= 1 and rows[-1]["best_value"] == pytest.approx(pick[select[0]])


def test_precision_auto_follows_the_hardware(capsys):
    from pycompgen.systems.base import native_bf16, resolve_precision
    cfg = load_config(TINY, ["train.progress=true"])
    assert cfg.train.amp == "auto" and cfg.train.channels_last == "auto"
    native = native_bf16(torch.device("cpu"))
    assert resolve_precision(cfg.train, torch.device("cpu")) == (("bf16", True) if native else ("off", False))
    assert load_config(TINY, ["train.amp=true"]).train.amp == "bf16"
    assert load_config(TINY, ["train.amp=false"]).train.amp == "off"
    assert resolve_precision(load_config(TINY, ["train.amp=off", "train.channels_last=on"]).train,
                             torch.device("cpu")) == ("off", True)
    with pytest.raises(ValueError, match="train.amp must be auto, bf16 or off"):
        load_config(TINY, ["train.amp=fp8"])
    st = build_system(load_config(TINY, ["train.amp=bf16"]), "cpu")
    assert st.amp == "bf16" and st.channels_last
    assert st.models["f"].head[0].weight.is_contiguous(memory_format=torch.channels_last)
    train_loader, val_loader = make_loaders(cfg)
    cfg.train.epochs = 1
    m = fit(cfg, device="cpu", train_loader=train_loader, val_loader=val_loader)
    assert m["precision"] == ("bf16" if native else "off")
    assert f"precision {'bfloat16 autocast' if native else 'float32'}" in capsys.readouterr().out


def test_cvae_file_round_trip_through_the_cli(tmp_path, capsys):
    """compress -> decompress of a trained CVAE: the decoded image is g(round(μ)), what validation measures."""
    import cv2
    import numpy as np

    from pycompgen.codec.container import unpack
    from pycompgen.data.synthetic import synthetic_faces
    from pycompgen.models import load_for_eval
    cfg = cfg_for("cvae", "train.epochs=1", out=tmp_path / "run")
    train_local(cfg, verbose=False)
    faces = synthetic_faces(2, 32, seed=7)
    for i, f in enumerate(faces):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.ascontiguousarray(f[..., ::-1]))
    ck = str(tmp_path / "run" / "last.pt")
    assert cli.main(["compress", str(tmp_path / "f0.png"), str(tmp_path / "f1.png"), "-o", str(tmp_path / "c"),
                     "--checkpoint", ck]) == 0
    hdr, _ = unpack((tmp_path / "c" / "f0.pcg").read_bytes())
    assert hdr.system == "cvae" and hdr.kind == "latent"
    assert cli.main(["decompress", str(tmp_path / "c" / "f0.pcg"), "-o", str(tmp_path / "d"), "--checkpoint", ck]) == 0
    out = cv2.imread(str(tmp_path / "d" / "f0.png"))[..., ::-1]
    lc = load_for_eval(ck, expect_model="cvae")
    x = torch.from_numpy(faces[:1].copy()).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = lc.models["g"](lc.models["eb"](lc.models["f"](x)[0])[0])
    ref8 = (ref.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - ref8.astype(int)).max() <= 1


def test_compgen_autoencoder_with_entropy_bottleneck(tmp_path):
    """model.entropy_bottleneck: step 1 trains f, g and eb; a higher rate_weight gives fewer bits; the file decodes
    to what validation measured; the approaches are unchanged (no eb)."""
    from pycompgen.inference import compress_images, decompress_bytes, load_checkpoint_for_codec
    base = ["model.entropy_bottleneck=true", "train.amp=off", "train.lr=0.003", "train.max_steps_per_epoch=20",
            "train.max_val_batches=4", "train.epochs=3"]
    res = {}
    for lam in (0.0, 0.5):
        cfg = load_config(TINY, base + [f"train.rate_weight={lam}", f"out={tmp_path / str(lam)}"])
        res[lam] = train_local(cfg, verbose=False)
        assert "val_bpp" in res[lam] and res[lam]["val_bpp"] > 0
    assert res[0.5]["val_bpp"] < res[0.0]["val_bpp"]
    ck = load_checkpoint(tmp_path / "0.0" / "last.pt")
    assert "eb" in ck["models"] and ck["stage"] == "step1"
    lc = load_checkpoint_for_codec(tmp_path / "0.0" / "last.pt")
    x = torch.from_numpy(face_batch(4).numpy()).float() / 255
    data = compress_images(lc, x)
    x_hat, hdr = decompress_bytes(lc, data)
    assert hdr.kind == "latent" and x_hat.shape == x.shape
    with torch.no_grad():
        ref = lc.models["g"](lc.models["eb"](lc.models["f"](x))[0])
    assert torch.allclose(x_hat, ref.cpu(), atol=1e-6)
    st = build_system(load_config(TINY, base + ["train.stage=approach3"]), "cpu",
                      {k: v for k, v in ck["models"].items()})
    assert "eb" not in st.models


def test_gan_logs_reach_the_epoch_metrics_and_other_tools_refuse_clearly(tmp_path, capsys):
    import yaml
    cfg = cfg_for("dcgan", "train.epochs=1", out=tmp_path / "g")
    m = train_local(cfg, verbose=False)
    for k in ("train_loss_d", "train_loss_g", "train_d_real", "train_bpp", "val_bpp", "lr_G", "lr_D"):
        assert k in m and m[k] == m[k], k
    assert m["lr_D"] == cfg.dcgan.lr_d and m["lr_G"] == cfg.dcgan.lr_g
    # the channel-PSNR sweep is Compgen's: another system's checkpoint gets a one-line pointer elsewhere
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "g" / "last.pt"), "--config", TINY]) == 2
    assert "evaluate runs Compgen's channel-PSNR sweep" in capsys.readouterr().err
    # --system with a config file written by another system's run: its stage does not leak over
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(load_config(TINY).to_dict()))
    assert cli.main(["train", "--system", "cvae", "--config", str(tmp_path / "c.yaml"), "--out",
                     str(tmp_path / "c"), *SMALL["cvae"], "train.epochs=1"]) == 0
