"""The multi-network training harness: Compgen on it reproduces the pre-harness code, and the harness's checkpoint /
resume / freezing contract holds for any system."""
import json
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.systems import build_system, get_system, names
from pycompgen.training import make_loaders, run_pipeline

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
RECORDED = Path(__file__).parent / "data" / "compgen_equivalence.json"


def _cfg(tmp_path, *extra):
    # float32 NCHW, as the recorded code ran (train.amp defaults to bf16 where the CPU has it)
    return load_config(TINY, ["train.epochs=2", "train.psnr_range=[-5,50]", "train.w_latent=0.1", "train.w_l1=0.2",
                              "train.amp=off", f"out={tmp_path}", *extra])


def test_compgen_matches_pre_harness_code(tmp_path, one_thread, monkeypatch):
    """Losses and validation metrics of step 1 and approaches 1-3 equal those recorded from the code before the
    harness (commit f7b16f1, tests/data/record_compgen_equivalence.py) up to float rounding."""
    from pycompgen.systems import base
    # the recorded code's optimiser: Adam's per-tensor (foreach) step; the fused kernel rounds differently (~1e-6)
    def recorded_adam(params, lr, betas=(0.9, 0.999), weight_decay=0.0):
        assert weight_decay == 0.0  # the recorded code had none
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas))
    monkeypatch.setattr(base, "adam", recorded_adam)
    rec = json.loads(RECORDED.read_text())
    cfg = _cfg(tmp_path)
    res = run_pipeline(cfg, verbose=False)
    for stage, want in rec["pipeline"].items():
        for k, v in want.items():
            assert res[stage][k] == pytest.approx(v, rel=1e-6, abs=1e-9), (stage, k)
    s1 = torch.load(tmp_path / "step1" / "best.pt", weights_only=True)["models"]
    a1 = torch.load(tmp_path / "approach1" / "best.pt", weights_only=True)["models"]
    for stage, want in rec["steps"].items():
        c = cfg.copy()
        c.train.stage = stage
        init = None if stage == "step1" else dict(s1, **({"h": a1["h"]} if stage != "approach1" else {}))
        system = build_system(c, "cpu", init)
        loader, _ = make_loaders(c)
        g = torch.Generator().manual_seed(123)
        got = []
        for i, batch in enumerate(loader):
            if i == 3:
                break
            got.append(system.train_step(system.prepare_batch(batch, g))["loss"].item())
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), stage


def test_registry_lists_systems():
    assert "compgen" in names()
    assert get_system("compgen").pipeline() == ("step1", "approach1", "approach2", "approach3")
    with pytest.raises(ValueError, match="unknown system 'nope'.*compgen"):
        get_system("nope")
    with pytest.raises(ValueError, match="train.stage must be one of step1"):
        load_config(TINY, ["train.stage=pretrain"])


def test_stage_epochs_give_each_stage_its_budget(tmp_path):
    """train.stage_epochs: a stage named there gets those epochs ahead of train.epochs, others train.epochs; a
    finished stage is recognised by its own budget on resume; unknown stages and negative budgets are refused."""
    from pycompgen.training import stage_done
    cfg = load_config(TINY, ["train.epochs=2", "train.stage_epochs={step1: 1, approach1: 0}",
                             "train.max_steps_per_epoch=1", "train.max_val_batches=1"])
    assert [cfg.epochs_for(s) for s in ("step1", "approach1", "approach2")] == [1, 0, 2]
    cfg.out = str(tmp_path)
    run_pipeline(cfg, stages=["step1"], verbose=False)
    c = cfg.copy()
    c.train.stage = "step1"
    assert stage_done(tmp_path / "step1" / "last.pt", c)
    c.train.stage_epochs = {"step1": 2}
    assert not stage_done(tmp_path / "step1" / "last.pt", c)
    with pytest.raises(ValueError, match="stage_epochs names stage 'pretrain'"):
        load_config(TINY, ["train.stage_epochs={pretrain: 3}"])
    with pytest.raises(ValueError, match=r"stage_epochs\[step1\] must be >= 0"):
        load_config(TINY, ["train.stage_epochs={step1: -1}"])
    with pytest.raises(ValueError, match="expects a mapping"):
        load_config(TINY, ["train.stage_epochs=3"])
