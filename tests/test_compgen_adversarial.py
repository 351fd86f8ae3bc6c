"""Beyond the paper: an adversarial term in Compgen's approach 3 (``train.w_adv``, a conditional critic d)."""
from pathlib import Path

import pytest
import torch

from pycompgen.config import load_config
from pycompgen.systems import build_system
from pycompgen.systems.compgen.networks import build_compgen
from pycompgen.training import make_loaders

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


def _system(stage="approach3", resume_state=None, *extra):
    cfg = load_config(TINY, ["train.psnr_range=[-5,50]", "train.amp=off", f"train.stage={stage}", "train.w_adv=0.5",
                             "train.ema_decay=0.9", *extra]).validate()
    torch.manual_seed(0)
    nets = build_compgen(cfg.model, cfg.data.image_size)
    init = {k: v.state_dict() for k, v in nets.items()}
    return cfg, build_system(cfg, "cpu", init, resume_state=resume_state)


def _batches(cfg, system, n=2):
    loader, _ = make_loaders(cfg)
    g = torch.Generator().manual_seed(0)
    out = []
    for i, batch in enumerate(loader):
        if i == n:
            break
        out.append(system.prepare_batch(batch, g))
    return out


def test_adversarial_step_trains_h_g_and_the_critic_and_logs_every_term(one_thread):
    cfg, system = _system()
    assert "d" in system.spec.trainable and set(system.optimizers) == {"main", "d"}
    assert "d" not in system.ema  # the EMA averages the generators h, g only
    d0 = {k: v.clone() for k, v in system.models["d"].state_dict().items()}
    h0 = {k: v.clone() for k, v in system.models["h"].state_dict().items()}
    f0 = {k: v.clone() for k, v in system.models["f"].state_dict().items()}
    for b in _batches(cfg, system):
        logs = system.train_step(b)
        system.update_ema()
    for key in ("loss", "distortion", "adv_g", "loss_d", "d_real"):
        assert torch.isfinite(logs[key]), key
    assert any(not torch.equal(v, system.models["d"].state_dict()[k]) for k, v in d0.items())
    assert any(not torch.equal(v, system.models["h"].state_dict()[k]) for k, v in h0.items())
    assert all(torch.equal(v, system.models["f"].state_dict()[k]) for k, v in f0.items())  # f stays frozen

    # the critic and its optimiser are checkpointed and restored on resume
    payload = system.payload(1, {}, 0.0)
    assert "d" in payload["models"] and "d" in payload["optimizers"]
    _, again = _system(resume_state=payload)
    for k, v in system.models["d"].state_dict().items():
        assert torch.equal(v, again.models["d"].state_dict()[k]), k
    assert again.optimizers["d"].state_dict()["state"]


def test_the_critic_only_joins_approach3(one_thread):
    """Approach 1 (h against f's latent) has no x_hat to judge: no critic, one optimiser."""
    _, system = _system("approach1")
    assert "d" not in system.models and set(system.optimizers) == {"main"}
    with pytest.raises(ValueError, match="train.w_adv"):
        load_config(TINY, ["train.w_adv=-1"]).validate()
