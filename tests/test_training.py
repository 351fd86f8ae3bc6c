"""Training steps, fit(), checkpoints, resume and the pipeline on tiny synthetic-face configs."""
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.data import load_faces
from pycompgen.systems.compgen.networks import build_compgen
from pycompgen.training import (PIPELINE, build_system, fit, get_system, load_checkpoint, make_loaders, prepare_batch,
                                run_pipeline, save_checkpoint, train_local)
from pycompgen.training import pipeline as pipeline_mod

ROOT = Path(__file__).resolve().parents[1]
STAGES = get_system("compgen").stages


def tiny_cfg(*over, out=None):
    cfg = load_config(str(ROOT / "configs" / "tiny.yaml"), list(over))
    if out is not None:
        cfg.out = str(out)
    return cfg


def random_init(cfg, seed=123):
    torch.manual_seed(seed)
    return {k: m.state_dict() for k, m in build_compgen(cfg.model, cfg.data.image_size).items()}


def clone_sd(sd):
    return {k: v.clone() for k, v in sd.items()}


def sd_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_step_lowers_its_loss(stage):
    cfg = tiny_cfg(f"train.stage={stage}", "train.lr=0.003")
    st = build_system(cfg, "cpu", None if stage == "step1" else random_init(cfg))
    faces = load_faces(None, "train", 32, synthetic_count=16)
    batch = torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous()
    b = st.prepare_batch(batch, torch.Generator().manual_seed(0))
    assert b["x"].dtype == torch.float32 and b["x"].shape == (16, 3, 32, 32)
    if st.needs_edges:
        assert b["z"].shape == b["z_noisy"].shape == (16, 1, 32, 32)
    losses = []
    for _ in range(15):
        st.train_mode()
        losses.append(st.train_step(b)["loss"].item())
    assert min(losses[-3:]) < 0.9 * losses[0], losses


@pytest.mark.parametrize("stage", ["approach1", "approach2", "approach3"])
def test_frozen_networks_stay_bit_identical(stage):
    cfg = tiny_cfg(f"train.stage={stage}", "train.epochs=1")
    init = random_init(cfg)
    before = {k: clone_sd(v) for k, v in init.items()}
    st = build_system(cfg, "cpu", init)
    frozen = [k for k in st.spec.uses if k not in st.spec.trainable]
    opt_params = {id(p) for g in st.optimizers["main"].param_groups for p in g["params"]}
    for k in frozen:
        assert not st.models[k].training
        assert all(not p.requires_grad and id(p) not in opt_params for p in st.models[k].parameters())
    payloads = []
    train_loader, val_loader = make_loaders(cfg)
    fit(cfg, device="cpu", train_loader=train_loader, val_loader=val_loader, init=init,
        on_epoch_end=lambda e, m, s: payloads.append({k: clone_sd(v) for k, v in s["models"].items()}))
    after = payloads[-1]
    for k in frozen:  # weights and BatchNorm statistics untouched
        assert sd_equal(after[k], before[k]), k
    for k in st.spec.trainable:
        assert not sd_equal(after[k], before[k]), k


def _fit_losses(cfg, init):
    train_loader, val_loader = make_loaders(cfg)
    seen = []
    m = fit(cfg, device="cpu", train_loader=train_loader, val_loader=val_loader, init=init,
            on_epoch_end=lambda e, met, s: seen.append((met["train_loss"], met["val_ssim"])))
    return seen, m


def test_fit_is_reproducible_and_reports_metrics():
    cfg = tiny_cfg("train.stage=approach3", "train.psnr_range=[-5,50]", "train.w_latent=0.5")
    init = random_init(cfg)
    a, m = _fit_losses(cfg, init)
    b, _ = _fit_losses(cfg, init)
    assert len(a) == 2 and a == b
    c, _ = _fit_losses(tiny_cfg("train.stage=approach3", "train.psnr_range=[-5,50]", "train.w_latent=0.5",
                                "train.seed=1"), init)
    assert c != a
    for key in ("train_loss", "val_ssim", "val_psnr", "val_loss", "images_per_s", "best_val_ssim", "epoch"):
        assert key in m, key
    assert -1.0 <= m["val_ssim"] <= 1.0 and m["images_per_s"] > 0 and m["epoch"] == 2


def test_wrap_module_wraps_only_trainable_networks():
    cfg = tiny_cfg("train.stage=approach3", "train.epochs=1")
    wrapped = []

    def wrap(m):
        wrapped.append(m)
        return m
    st = build_system(cfg, "cpu", random_init(cfg), wrap_module=wrap)
    assert {id(m) for m in wrapped} == {id(st.models["g"]), id(st.models["h"])}


def test_checkpoint_round_trip_weights_only(tmp_path):
    cfg = tiny_cfg("train.epochs=1")
    payloads = []
    train_loader, val_loader = make_loaders(cfg)
    fit(cfg, device="cpu", train_loader=train_loader, val_loader=val_loader,
        on_epoch_end=lambda e, m, s: payloads.append(s) or save_checkpoint(tmp_path / "c.pt", s))
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    state = load_checkpoint(tmp_path / "c.pt", expect_model="compgen")
    assert raw.keys() == state.keys() >= {"format", "model", "stage", "epoch", "config", "models", "optimizers",
                                          "metrics", "best_val_ssim"}
    assert state["stage"] == "step1" and state["epoch"] == 1 and set(state["models"]) == {"f", "g"}
    assert not list(tmp_path.glob(".*tmp"))  # temp file renamed away
    nets = build_compgen(cfg.model, cfg.data.image_size)
    for k in ("f", "g"):
        nets[k].load_state_dict(state["models"][k])
        assert sd_equal(nets[k].state_dict(), payloads[0]["models"][k])
    # the stored config rebuilds the same run
    from pycompgen.config import Config
    assert Config.from_dict(state["config"]).to_dict() == cfg.to_dict()


def test_checkpoint_errors(tmp_path):
    cfg = tiny_cfg()
    st = build_system(cfg, "cpu")
    p = st.payload(1, {"val_ssim": 0.5}, 0.5)
    p["model"] = "cvae"
    save_checkpoint(tmp_path / "other.pt", p)
    with pytest.raises(ValueError, match="model 'cvae'.*'compgen'"):
        load_checkpoint(tmp_path / "other.pt", expect_model="compgen")
    with pytest.raises(ValueError, match="model 'cvae'"):
        train_local(tiny_cfg("train.stage=approach1", f"train.init={tmp_path / 'other.pt'}", out=tmp_path / "r"),
                    verbose=False)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a pycompgen checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    # weights of another architecture
    wide = tiny_cfg("model.channels=24")
    with pytest.raises(ValueError, match="do not fit the configured model"):
        build_system(tiny_cfg("train.stage=approach1"), "cpu", random_init(wide))


def test_approach_without_previous_step_is_a_clear_error():
    with pytest.raises(ValueError, match="needs trained network.*train.init"):
        build_system(tiny_cfg("train.stage=approach1"), "cpu", None)
    init = random_init(tiny_cfg())
    init.pop("h")
    with pytest.raises(ValueError, match="needs trained network.*h"):
        build_system(tiny_cfg("train.stage=approach2"), "cpu", init)
    build_system(tiny_cfg("train.stage=approach3"), "cpu", init)  # approach 3 may start from a fresh h


def test_wrong_image_size_from_loader():
    cfg = tiny_cfg()
    with pytest.raises(ValueError, match="48x48 images but data.image_size=32"):
        prepare_batch(torch.zeros(2, 3, 48, 48, dtype=torch.uint8), cfg, torch.device("cpu"), None, None, False)


def test_resume_after_kill_equals_uninterrupted(tmp_path, monkeypatch):
    over = ("train.stage=approach3", "train.epochs=3", "train.psnr_range=[0,50]")
    init = random_init(tiny_cfg())
    ref = train_local(tiny_cfg(*over, out=tmp_path / "ref"), init=init, verbose=False)

    real_save = pipeline_mod.save_checkpoint

    def dying_save(path, state):
        if state["epoch"] == 3:
            raise KeyboardInterrupt("killed")
        return real_save(path, state)
    monkeypatch.setattr(pipeline_mod, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_local(tiny_cfg(*over, out=tmp_path / "run"), init=init, verbose=False)
    monkeypatch.setattr(pipeline_mod, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    res = train_local(tiny_cfg(*over, out=tmp_path / "run"), resume=True, verbose=False)
    a = load_checkpoint(tmp_path / "ref" / "last.pt")
    b = load_checkpoint(tmp_path / "run" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for k in a["models"]:
        assert sd_equal(a["models"][k], b["models"][k]), k
    assert res["train_loss"] == ref["train_loss"] and res["val_ssim"] == ref["val_ssim"]
    assert (tmp_path / "run" / "best.pt").is_file()
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["best_val_ssim"] == pytest.approx(res["best_val_ssim"])
    # a finished run resumed again does no more work
    again = train_local(tiny_cfg(*over, out=tmp_path / "run"), resume=True, verbose=False)
    assert again["epoch"] == 3
    with pytest.raises(ValueError, match="from stage 'approach3'"):
        train_local(tiny_cfg("train.stage=step1", out=tmp_path / "run"), resume=True, verbose=False)


def test_pipeline_hands_checkpoints_on(tmp_path, capsys):
    cfg = tiny_cfg("train.epochs=1", out=tmp_path)
    res = run_pipeline(cfg)
    assert list(res) == list(PIPELINE)
    ck = {s: load_checkpoint(tmp_path / s / "best.pt") for s in PIPELINE}
    assert set(ck["step1"]["models"]) == {"f", "g"}
    for s in ("approach1", "approach2", "approach3"):
        assert set(ck[s]["models"]) == {"f", "g", "h"} and ck[s]["stage"] == s
        assert sd_equal(ck[s]["models"]["f"], ck["step1"]["models"]["f"])
    assert sd_equal(ck["approach1"]["models"]["g"], ck["step1"]["models"]["g"])   # g frozen in approach 1
    assert sd_equal(ck["approach2"]["models"]["h"], ck["approach1"]["models"]["h"])  # h frozen in approach 2
    assert not sd_equal(ck["approach2"]["models"]["g"], ck["step1"]["models"]["g"])
    assert "pipeline done" in capsys.readouterr().out
    again = run_pipeline(cfg, resume=True)  # everything finished: skipped
    assert again["approach3"]["val_ssim"] == pytest.approx(res["approach3"]["val_ssim"])


def test_get_stage_unknown():
    with pytest.raises(ValueError, match="unknown stage 'step9' for system 'compgen'"):
        get_system("compgen").get_stage("step9")


def test_amp_bfloat16_autocast_trains_float32_weights():
    cfg = tiny_cfg("train.stage=step1", "train.lr=0.003", "train.amp=true")
    st = build_system(cfg, "cpu")
    faces = load_faces(None, "train", 32, synthetic_count=16)
    b = prepare_batch(torch.from_numpy(faces.images).permute(0, 3, 1, 2).contiguous(), cfg, torch.device("cpu"),
                      None, None, False)
    losses = []
    for _ in range(10):
        with st.autocast():
            loss, logs = st.loss(st.nets, b)
        assert logs["x_hat"].dtype == torch.bfloat16 and loss.dtype == torch.float32
        st.step(loss)
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.9 * losses[0], losses
    assert all(p.dtype == torch.float32 for m in st.models.values() for p in m.parameters())


class _Payload:  # a pickle that would run code when unpickled without weights_only
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("kind", ["garbage", "code", "truncated", "plain-pickle"])
def test_non_checkpoints_are_refused_in_one_line(tmp_path, kind, capsys):
    import pickle

    from pycompgen import cli
    p = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        p.write_bytes(b"\x00not a checkpoint\xff" * 20)
    elif kind == "code":
        torch.save({"format": "pycompgen/1", "models": {"f": _Payload()}}, p)
    elif kind == "truncated":
        torch.save({"format": "pycompgen/1", "models": {"f": {"w": torch.ones(100)}}}, p)
        p.write_bytes(p.read_bytes()[:300])
    else:
        p.write_bytes(pickle.dumps({"x": _Payload()}))
    with pytest.raises(ValueError, match="is not a pycompgen checkpoint") as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg
    assert ("could run code" in msg) == (kind == "code")
    assert cli.main(["train", "--config", str(ROOT / "configs" / "tiny.yaml"), "--stage", "approach1", "--init",
                     str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "this ran" not in err.out + err.err
    lines = [ln for ln in err.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is not a pycompgen checkpoint" in lines[0] and "weights_only" not in lines[0]
