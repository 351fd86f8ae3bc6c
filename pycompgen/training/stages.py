"""Training steps of Compgen (paper Sec. 3) as plain PyTorch: step 1 and approaches 1-3.

Each stage names the networks it trains and the ones it keeps frozen. Freezing is real: frozen networks have
``requires_grad=False``, stay in ``eval()`` (BatchNorm statistics untouched) and are not in the optimiser.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from pycompgen.models import build_model
from .losses import distortion, latent_mse


@dataclass(frozen=True)
class Stage:
    name: str
    uses: tuple          # networks of this stage (saved in its checkpoint)
    trainable: tuple     # networks updated by the optimiser (everything else in ``uses`` is frozen)
    requires: tuple      # networks that must come from a previous step (``init``)
    needs_edges: bool    # whether batches need z / z_noisy (step 1 only needs x)
    loss_fn: Callable    # (nets, batch, cfg) -> (loss, {name: tensor}; "x_hat" when the loss reconstructs x)
    reconstruct_fn: Callable  # (nets, batch) -> x_hat
    description: str = ""

    def loss(self, nets, batch, cfg):
        return self.loss_fn(nets, batch, cfg)

    def reconstruct(self, nets, batch):
        return self.reconstruct_fn(nets, batch)


def _d(cfg, x, x_hat):
    t = cfg.train
    return distortion(x, x_hat, t.w_ssim, t.w_l1, t.w_mse)


def _step1_loss(nets, b, cfg):
    x_hat = nets["g"](nets["f"](b["x"]))
    d = _d(cfg, b["x"], x_hat)
    return d, {"distortion": d.detach(), "x_hat": x_hat}


def _approach1_loss(nets, b, cfg):
    with torch.no_grad():
        y = nets["f"](b["x"])
    loss = latent_mse(nets["h"](b["z_noisy"]), y)
    return loss, {"latent_mse": loss.detach()}


def _approach2_loss(nets, b, cfg):
    with torch.no_grad():
        y_hat = nets["h"](b["z_noisy"])
    x_hat = nets["g"](y_hat)
    d = _d(cfg, b["x"], x_hat)
    return d, {"distortion": d.detach(), "x_hat": x_hat}


def _approach3_loss(nets, b, cfg):
    y_hat = nets["h"](b["z_noisy"])
    x_hat = nets["g"](y_hat)
    d = _d(cfg, b["x"], x_hat)
    logs = {"distortion": d.detach(), "x_hat": x_hat}
    loss = d
    if cfg.train.w_latent:
        with torch.no_grad():
            y = nets["f"](b["x"])
        lat = latent_mse(y_hat, y)
        loss = d + cfg.train.w_latent * lat
        logs["latent_mse"] = lat.detach()
    return loss, logs


def _ae(nets, b):
    return nets["g"](nets["f"](b["x"]))


def _elm(nets, b):
    return nets["g"](nets["h"](b["z_noisy"]))


STAGES: dict[str, Stage] = {
    "step1": Stage("step1", ("f", "g"), ("f", "g"), (), False, _step1_loss, _ae,
                   "f, g trained with d(x, g(f(x)))"),
    "approach1": Stage("approach1", ("f", "g", "h"), ("h",), ("f", "g"), True, _approach1_loss, _elm,
                       "h trained with MSE(h(z+n), f(x)); f, g frozen"),
    "approach2": Stage("approach2", ("f", "g", "h"), ("g",), ("f", "g", "h"), True, _approach2_loss, _elm,
                       "g retrained with d(x, g(h(z+n))); f, h frozen"),
    "approach3": Stage("approach3", ("f", "g", "h"), ("g", "h"), ("f", "g"), True, _approach3_loss, _elm,
                       "h, g trained jointly with d(x, g(h(z+n))) (+ w_latent MSE(h(z+n), f(x))); f frozen"),
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown training stage {name!r} (expected one of {', '.join(STAGES)})")
    return STAGES[name]


@dataclass
class StageState:
    """Networks, optimiser and bookkeeping of one training stage."""
    stage: Stage
    cfg: object
    device: torch.device
    models: dict               # raw networks (what checkpoints hold)
    nets: dict                 # networks used in forward passes (trainable ones wrapped by ``wrap_module``)
    optimizer: torch.optim.Optimizer
    extra: dict = field(default_factory=dict)

    def train_mode(self) -> None:
        for k, m in self.models.items():
            m.train(k in self.stage.trainable)
        for k in self.stage.trainable:
            self.nets[k].train()

    def eval_mode(self) -> None:
        for k, m in self.models.items():
            m.eval()
        for m in self.nets.values():
            m.eval()

    def model_state(self) -> dict:
        return {k: m.state_dict() for k, m in self.models.items()}

    def payload(self, epoch: int, metrics: dict, best_val_ssim: float) -> dict:
        """The checkpoint payload (see pycompgen.training.checkpoint)."""
        from .checkpoint import FORMAT
        return {
            "format": FORMAT, "model": self.cfg.model.name, "stage": self.stage.name, "epoch": int(epoch),
            "config": self.cfg.to_dict(), "models": self.model_state(),
            "optimizer": self.optimizer.state_dict(),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))},
            "best_val_ssim": float(best_val_ssim),
        }


def _load_net(name: str, module: nn.Module, sd: dict, source: str) -> None:
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"weights for network {name!r} from {source} do not fit the configured model "
                         f"(different model.* widths/depths or data.image_size?): "
                         f"{first[1].strip() if len(first) > 1 else first[0]}") from None


def build_stage(cfg, device, init: Optional[dict] = None, *, resume_state: Optional[dict] = None,
                wrap_module: Callable[[nn.Module], nn.Module] = lambda m: m) -> StageState:
    """Build the networks of ``cfg.train.stage`` (seeded by ``cfg.train.seed``), load previous-step weights from
    ``init`` ({"f": state_dict, ...}), freeze what the stage does not train, load ``resume_state`` (a checkpoint
    payload) if given, wrap the trainable networks with ``wrap_module`` (e.g. DDP) and create the Adam optimiser."""
    stage = get_stage(cfg.train.stage)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        built = build_model(cfg.model, image_size=cfg.data.image_size)
    missing = [k for k in stage.uses if k not in built]
    if missing:
        raise ValueError(f"model {cfg.model.name!r} has no network(s) {missing} needed by stage {stage.name!r}")
    models = {k: built[k] for k in stage.uses}

    init = dict(init or {})
    if stage.name == "approach3" and cfg.train.approach3_init == "fresh":
        init.pop("h", None)
    if resume_state is None:
        lacking = [k for k in stage.requires if k not in init]
        if lacking:
            raise ValueError(
                f"stage {stage.name!r} needs trained network(s) {', '.join(lacking)} from a previous step: set "
                f"train.init=PATH to a checkpoint (e.g. step1's best.pt"
                f"{' or approach1' + chr(39) + 's' if 'h' in lacking else ''}) or run the pipeline (--stage pipeline)")
        for k, sd in init.items():
            if k in models:
                _load_net(k, models[k], sd, "train.init")

    for k, m in models.items():
        m.to(device)
        trainable = k in stage.trainable
        for p in m.parameters():
            p.requires_grad_(trainable)
        m.train(trainable)

    if resume_state is not None:
        for k in stage.uses:
            if k not in resume_state.get("models", {}):
                raise ValueError(f"resume checkpoint has no network {k!r} for stage {stage.name!r}")
            _load_net(k, models[k], resume_state["models"][k], "the resume checkpoint")

    params = [p for k in stage.trainable for p in models[k].parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    if resume_state is not None and resume_state.get("optimizer"):
        optimizer.load_state_dict(resume_state["optimizer"])

    nets = {k: (wrap_module(m) if k in stage.trainable else m) for k, m in models.items()}
    state = StageState(stage, cfg, device, models, nets, optimizer)
    state.train_mode()
    return state


__all__ = ["Stage", "STAGES", "get_stage", "StageState", "build_stage"]
