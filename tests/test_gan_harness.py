"""GAN craft in the harness, for any system (pycompgen.systems.base): generator EMA (checkpointed, restored on resume,
used for validation and by everything that loads the model), learning-rate schedules (state restored on resume),
selection of best.pt by a named metric (the one Ray Tune optimises), gradient clipping, networks kept in float32.
Tiny BEGAN refiner on 32x32 synthetic faces."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import synthetic_face_batch as face_batch
from pycompgen.config import load_config
from pycompgen.models import load_checkpoint, load_for_eval
from pycompgen.systems import build_system, get_system
from pycompgen.training import train_local

from test_began import cfg_for  # the tiny BEGAN config with overrides


def test_system_defaults_fill_only_unset_keys():
    cfg = cfg_for().validate()
    assert (cfg.train.ema_decay, cfg.train.lr_schedule, cfg.train.lr_patience) == (0.999, "plateau", 1)
    cfg = cfg_for("train.ema_decay=0", "train.lr_schedule=none", "train.lr_patience=3").validate()
    assert (cfg.train.ema_decay, cfg.train.lr_schedule, cfg.train.lr_patience) == (0.0, "none", 3)
    c = load_config(None, ["model.name=cvae"]).validate()  # a system without GAN defaults: the harness's
    assert (c.train.ema_decay, c.train.lr_schedule, c.train.lr_patience) == (0.0, "none", 2)


def test_ema_is_checkpointed_used_for_evaluation_and_restored_on_resume(tmp_path):
    over = ["train.ema_decay=0.9", "train.epochs=2", "train.lr_schedule=none"]
    train_local(cfg_for(*over, out=tmp_path / "full"), verbose=False)
    ck = load_checkpoint(tmp_path / "full" / "last.pt", expect_model="began")
    ema = ck["ema"]
    assert ema["decay"] == 0.9 and ema["steps"] == 4 and set(ema["models"]) == {"g"}  # 2 epochs x 2 steps
    diff = max(float((ema["models"]["g"][k] - v).abs().max()) for k, v in ck["models"]["g"].items()
               if v.is_floating_point())
    assert diff > 1e-6  # an average, not a copy of the last weights
    # everything that runs the trained model gets the average
    lc = load_for_eval(tmp_path / "full" / "last.pt", expect_model="began")
    for k, v in lc.models["g"].state_dict().items():
        torch.testing.assert_close(v, ema["models"]["g"][k])
    torch.testing.assert_close(lc.models["D"].state_dict()["fc_enc.weight"], ck["models"]["D"]["fc_enc.weight"])
    # interrupted after epoch 1 and resumed: the same average as the uninterrupted run
    train_local(cfg_for(*over[:1], "train.epochs=1", "train.lr_schedule=none", out=tmp_path / "part"),
                verbose=False)
    train_local(cfg_for(*over, out=tmp_path / "part"), resume=True, verbose=False)
    res = load_checkpoint(tmp_path / "part" / "last.pt", expect_model="began")
    assert res["ema"]["steps"] == 4
    for k, v in ema["models"]["g"].items():
        torch.testing.assert_close(res["ema"]["models"]["g"][k], v)


def test_validation_runs_the_ema_networks():
    cfg = cfg_for("train.ema_decay=0.5").validate()
    s = build_system(cfg, "cpu")
    b = s.prepare_batch(face_batch(4), torch.Generator())
    s.train_step(b)
    s.update_ema()
    with torch.no_grad():
        for p in s.ema["g"].parameters():
            p.add_(1.0)  # make the average visibly different
    from pycompgen.training.loop import evaluate
    with s.ema_weights():
        assert s.models["g"] is s.ema["g"]
        s.eval_mode()
        with torch.no_grad():
            want = s.validation_step(b)["l_rcn"]
    assert s.models["g"] is not s.ema["g"] and not s.ema["g"].training
    got = evaluate(s, [face_batch(4)])["val_l_rcn"]
    assert got == pytest.approx(float(want), rel=1e-5)


def test_step_schedule_and_its_state_on_resume(tmp_path):
    over = ["train.lr_schedule=step", "train.lr_step=1", "train.lr_gamma=0.5", "train.ema_decay=0", "began.lr_g=0.01",
            "began.lr_d=0.02"]
    train_local(cfg_for(*over, "train.epochs=1", out=tmp_path / "r"), verbose=False)
    ck = load_checkpoint(tmp_path / "r" / "last.pt", expect_model="began")
    assert set(ck["schedulers"]) == {"g", "D"}
    assert ck["optimizers"]["g"]["param_groups"][0]["lr"] == pytest.approx(0.005)
    train_local(cfg_for(*over, "train.epochs=3", out=tmp_path / "r"), resume=True, verbose=False)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["lr_g"] for r in rows] == pytest.approx([0.01, 0.005, 0.0025])  # lr at the start of each epoch
    assert [r["lr_D"] for r in rows] == pytest.approx([0.02, 0.01, 0.005])
    ck = load_checkpoint(tmp_path / "r" / "last.pt", expect_model="began")
    assert ck["schedulers"]["g"]["last_epoch"] == 3


def test_plateau_schedule_follows_the_named_metric():
    cfg = cfg_for("train.lr_schedule=plateau", "train.lr_patience=1", "train.lr_gamma=0.1",
                  "train.lr_metric=val_l_rcn", "began.lr_g=0.01").validate()
    s = build_system(cfg, "cpu")
    lr = lambda: s.optimizers["g"].param_groups[0]["lr"]  # noqa: E731
    for v in (1.0, 0.9):  # improving (min: a loss name)
        s.schedule_step({"val_l_rcn": v})
    assert lr() == pytest.approx(0.01)
    s.schedule_step({"val_ssim": 0.1})  # an epoch without validation of that metric: no step
    s.schedule_step({"val_l_rcn": 0.95})
    assert lr() == pytest.approx(0.01)  # one bad epoch is within patience 1
    s.schedule_step({"val_l_rcn": 0.95})
    assert lr() == pytest.approx(0.001)


def test_best_pt_is_chosen_by_the_named_metric_and_tune_uses_it(tmp_path):
    cls = get_system("began")
    assert cls.selection(cfg_for()) == ("val_m_global", "min")
    assert cls.selection(cfg_for("train.select=val_ssim")) == ("val_ssim", "max")
    assert get_system("compgen").selection(load_config(None, [])) == ("val_ssim", "max")
    out = tmp_path / "sel"
    train_local(cfg_for("train.select=val_l_rcn:max", "train.epochs=3", out=out), verbose=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    best = load_checkpoint(out / "best.pt", expect_model="began")
    want = max(rows, key=lambda r: r["val_l_rcn"])
    assert best["best_metric"] == "val_l_rcn" and best["epoch"] == want["epoch"]
    assert best["best_value"] == pytest.approx(want["val_l_rcn"])


def test_gradient_clipping_bounds_every_optimisers_norm():
    s = build_system(cfg_for("train.grad_clip=1e-3").validate(), "cpu")
    s.train_step(s.prepare_batch(face_batch(4), torch.Generator()))
    for name, opt in s.optimizers.items():
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        assert float(norm) <= 1e-3 * (1 + 1e-4), name
    s = build_system(cfg_for().validate(), "cpu")
    s.train_step(s.prepare_batch(face_batch(4), torch.Generator()))
    grads = [p.grad for p in s.models["D"].parameters() if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) > 1e-3


def test_fp32_networks_run_in_float32_under_bf16_autocast():
    s = build_system(cfg_for("train.amp=bf16", "train.fp32_networks=[D]", "train.ema_decay=0.9",
                             "train.ema_networks=[g,D]").validate(), "cpu")
    x = s.prepare_batch(face_batch(2), torch.Generator())["x"]
    with s.autocast():
        assert s.models["D"](x).dtype == torch.float32
        assert s.models["g"](x).dtype == torch.bfloat16
        assert s.ema["D"](x).dtype == torch.float32  # the EMA copy is its own network, still float32
    assert s.ema["D"].forward.__self__ is s.ema["D"]
    logs = s.train_step({"x": x})
    assert all(torch.isfinite(v) for v in logs.values())


@pytest.mark.parametrize("over, msg", [
    ("train.ema_decay=1.5", "train.ema_decay must be in"),
    ("train.lr_schedule=cosine", "train.lr_schedule must be none, step or plateau"),
    ("train.lr_gamma=0", "train.lr_gamma must be in"),
    ("train.select=val_ssim:best", "train.select must be METRIC"),
])
def test_bad_gan_settings_are_one_line_errors(over, msg):
    with pytest.raises(ValueError, match=msg):
        cfg_for(over).validate()


def test_unknown_network_names_are_refused():
    with pytest.raises(ValueError, match=r"train.fp32_networks: .*no such network\(s\) \['critic'\]"):
        build_system(cfg_for("train.fp32_networks=[critic]").validate(), "cpu")
    with pytest.raises(ValueError, match=r"train.ema_networks: .*no such network\(s\) \['G'\]"):
        build_system(cfg_for("train.ema_networks=[G]").validate(), "cpu")
