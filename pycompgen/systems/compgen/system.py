"""Compgen's training steps (paper Sec. 3) on the harness: step 1 and approaches 1-3.

Each stage names the networks it trains and the ones it keeps frozen (see ``pycompgen.systems.base``).

Pipeline hand-over: approach 1 starts from step 1's f, g (frozen) and a fresh h; approach 2 from approach 1's h
(frozen) and step 1's g (retrained); approach 3 from step 1's g and, with ``train.approach3_init="approach1"``
(default), approach 1's h -- a warm start that converges faster than the paper's fresh h (``"fresh"``).

``train.w_adv`` > 0 (approach 3, beyond the paper): a conditional critic d sees the received edge map with the face
(real) or with x_hat (fake); h, g add w_adv times its hinge generator loss to the distortion, d takes one hinge
step per batch on the same batch's faces (``d`` is trained and checkpointed; decoding does not use it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from dataclasses import replace

from pycompgen.data.augment import Augment
from pycompgen.registry import register_system
from pycompgen.networks import PatchDiscriminator
from pycompgen.systems.base import StageSpec, System, adam, image_batch, images01, latent_rate

from .losses import distortion, latent_mse
from .networks import build_compgen


def make_channel(cfg):
    """The edge-map + AWGN channel of ``cfg`` (pycompgen.data.EdgeChannel)."""
    from pycompgen.data import EdgeChannel
    t, d = cfg.train, cfg.data
    psnr = tuple(float(v) for v in t.psnr_range) if t.psnr_range is not None else float(t.psnr)
    return EdgeChannel(canny_low=d.canny_low, canny_high=d.canny_high, blur_sigma=d.blur_sigma, psnr=psnr, peak=1.0)


def prepare_batch(batch, cfg, device, channel, generator, needs_edges: bool = True, augment=None) -> dict:
    """Loader batch (uint8 (N,3,H,W)) -> {"x"} or, with edges, {"x", "z", "z_noisy"} on ``device``. ``augment``
    (a ``pycompgen.data.augment.Augment``, training only) transforms the faces first: the edge map is then the
    augmented face's, so face and edges stay aligned."""
    if not needs_edges:
        x = images01(batch, cfg.data.image_size, device)
        return {"x": augment(x, generator) if augment is not None else x}
    x = image_batch(batch, cfg.data.image_size)
    if augment is not None and augment.active:
        x = x.to(device, non_blocking=True)
        x = augment(x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clamp(0, 1), generator)
    elif x.dtype != torch.uint8:
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return channel(x, device, generator=generator)


def _has_skips(h) -> bool:
    return bool(getattr(getattr(h, "module", h), "skips", False))  # h may be DDP-wrapped


def hint_spec(models: dict) -> tuple[int, int]:
    """(hint_size, hint_bits) of the models' h: (0, 0) for an edges-only h."""
    h = models["h"]
    h = getattr(h, "module", h)
    size = int(getattr(h, "hint_size", 0))
    return (size, int(h.hint_bits)) if size else (0, 0)


def hint_space(models: dict) -> str:
    """The colour space of the models' hint (``model.hint_space``)."""
    h = models["h"]
    return str(getattr(getattr(h, "module", h), "hint_space", "rgb"))


def hint_planes(models: dict, x: torch.Tensor, bits=None) -> list | None:
    """The values of the hint's code planes for faces x (N,3,H,W) in [0,1] at ``bits`` (default the model's; an int
    or one per image): what the analog channel carries (rgb: 3·s² values; ycocg420: s² luma + s²/2 chroma).
    None for an edges-only h."""
    from pycompgen.codec.hint import hint_codes, plane_values
    size, default_bits = hint_spec(models)
    if not size:
        return None
    bits = default_bits if bits is None else bits
    space = hint_space(models)
    return plane_values(hint_codes(x, size, bits, space), bits, space)


def hint_from_planes(models: dict, planes: list) -> torch.Tensor:
    """The RGB thumbnail h takes from (possibly noisy) plane values."""
    from pycompgen.codec.hint import planes_to_rgb
    return planes_to_rgb(planes, hint_space(models))


def make_hint(models: dict, x: torch.Tensor, psnr=None, generator=None, bits=None):
    """The colour hint h receives for faces x (N,3,H,W) in [0,1]: the thumbnail quantised at ``bits`` (default
    the model's; an int or one per image) and, with ``psnr`` (dB, one or one per image), its code planes' values
    sent through the AWGN channel as analog values like the edge map (``hint_planes``). None for an edges-only h."""
    planes = hint_planes(models, x, bits)
    if planes is None:
        return None
    if psnr is not None:
        from pycompgen.ops import awgn
        planes = [awgn(t, psnr, normalize=True, peak=1.0, generator=generator) for t in planes]
    return hint_from_planes(models, planes)


def elm_forward(models: dict, z_noisy: torch.Tensor, hint: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_hat, x_hat) = (h(z + n), g(h(z + n))): the approaches' latent and reconstruction from a (noisy) edge map
    (and, with ``model.hint_size``, its colour hint); with ``model.elm_skips`` h also hands its gated conv
    features to g."""
    h, g = models["h"], models["g"]
    kw = {} if hint is None else {"hint": hint}
    if _has_skips(h):
        y_hat, skips = h(z_noisy, return_skips=True, **kw)
        return y_hat, g(y_hat, skips=skips)
    y_hat = h(z_noisy, **kw)
    return y_hat, g(y_hat)


def decode_edges(models: dict, z_noisy: torch.Tensor, hint: torch.Tensor | None = None,
                 flip_average: bool = False) -> torch.Tensor:
    """x_hat = g(h(z + n)) (see ``elm_forward``). ``flip_average`` (beyond the paper, receiver side, twice the
    decoding cost): the mean of x_hat and the mirror of the decoding of the mirrored edge map (and hint), an
    average over the one augmentation the models were trained with; the result is mirror-equivariant."""
    x_hat = elm_forward(models, z_noisy, hint)[1]
    if not flip_average:
        return x_hat
    mirrored = elm_forward(models, z_noisy.flip(-1), None if hint is None else hint.flip(-1))[1]
    return (x_hat + mirrored.flip(-1)) / 2


def _d(cfg, x, x_hat):
    t = cfg.train
    return distortion(x, x_hat, t.w_ssim, t.w_l1, t.w_mse)


def _step1_loss(nets, b, cfg):
    y = nets["f"](b["x"])
    if "eb" not in nets:
        x_hat = nets["g"](y)
        d = _d(cfg, b["x"], x_hat)
        return d, {"distortion": d.detach(), "x_hat": x_hat}
    x = b["x"]  # with an entropy bottleneck: g(ŷ), ŷ = y + U(-½, ½) in training, round(y) in eval
    y_hat, bpp, rate = latent_rate(nets["eb"], y, cfg.train.rate_weight, x.shape[0] * x.shape[-2] * x.shape[-1])
    x_hat = nets["g"](y_hat.to(y.dtype))
    d = _d(cfg, x, x_hat)
    eb = getattr(nets["eb"], "module", nets["eb"])  # DDP-wrapped in training
    reported = d + cfg.train.rate_weight * bpp  # comparable across runs: no density-fit or quantile terms
    return d + rate + eb.loss(), {"distortion": d.detach(), "bpp": bpp.detach(), "x_hat": x_hat,
                                  "rd_loss": reported.detach()}


def _approach1_loss(nets, b, cfg):
    with torch.no_grad():
        y = nets["f"](b["x"])
    h, kw = nets["h"], _hint_kw(b)
    if not _has_skips(h):
        loss = latent_mse(h(b["z_noisy"], **kw), y)
        return loss, {"latent_mse": loss.detach()}
    y_hat, skips = h(b["z_noisy"], return_skips=True, **kw)  # the skip path gets zero gradients (DDP needs them used)
    lat = latent_mse(y_hat, y)
    return lat + 0.0 * sum(s.float().sum() for s in skips), {"latent_mse": lat.detach()}


def _approach2_loss(nets, b, cfg):
    with torch.no_grad():
        if _has_skips(nets["h"]):
            y_hat, skips = nets["h"](b["z_noisy"], return_skips=True, **_hint_kw(b))
        else:
            y_hat, skips = nets["h"](b["z_noisy"], **_hint_kw(b)), None
    x_hat = nets["g"](y_hat) if skips is None else nets["g"](y_hat, skips=skips)
    d = _d(cfg, b["x"], x_hat)
    return d, {"distortion": d.detach(), "x_hat": x_hat}


def _hint_kw(b) -> dict:
    return {"hint": b["hint"]} if "hint" in b else {}


def _approach3_loss(nets, b, cfg):
    y_hat, x_hat = elm_forward(nets, b["z_noisy"], b.get("hint"))
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
    y = nets["f"](b["x"])
    return nets["g"](nets["eb"](y.float())[0].to(y.dtype) if "eb" in nets else y)


def _elm(nets, b):
    return decode_edges(nets, b["z_noisy"], b.get("hint"))


def _adversarial(cfg) -> bool:
    return cfg.train.w_adv > 0


def critic(image_size: int) -> torch.nn.Module:
    """d for ``train.w_adv``: the received edge map and a face (4 channels) -> one logit; no normalisation, so real
    and fake batches share no statistics."""
    return PatchDiscriminator(in_ch=4, channels=32, depth=3, image_size=image_size, norm=False)


SKIP_MODULES = ("gate", "proj16", "proj32", "skip16", "skip32")  # h's skip path (model.elm_skips)
FRESH_MODULES = SKIP_MODULES + ("hint",)  # h's parts beyond the paper that start at their init

# stage -> (loss, reconstruction, needs edges)
_STEPS: dict[str, tuple[Callable, Callable, bool]] = {
    "step1": (_step1_loss, _ae, False),
    "approach1": (_approach1_loss, _elm, True),
    "approach2": (_approach2_loss, _elm, True),
    "approach3": (_approach3_loss, _elm, True),
}


@register_system
class Compgen(System):
    name = "compgen"
    description = "faces from Canny edge maps over an AWGN channel (Pandian et al.)"
    psnr_sweep = True
    ema_networks = ("h", "g")  # averaged when train.ema_decay > 0 (off by default): the trainable ones of each stage
    stages = {
        "step1": StageSpec("step1", ("f", "g"), ("f", "g"), (), 50, "f, g trained with d(x, g(f(x)))"),
        "approach1": StageSpec("approach1", ("f", "g", "h"), ("h",), ("f", "g"), 40,
                               "h trained with MSE(h(z+n), f(x)); f, g frozen"),
        "approach2": StageSpec("approach2", ("f", "g", "h"), ("g",), ("f", "g", "h"), 40,
                               "g retrained with d(x, g(h(z+n))); f, h frozen"),
        "approach3": StageSpec("approach3", ("f", "g", "h"), ("g", "h"), ("f", "g"), 40,
                               "h, g trained jointly with d(x, g(h(z+n))) (+ w_latent MSE(h(z+n), f(x))); f frozen"),
    }

    def __init__(self, cfg, device, init=None, **kw):
        self.loss_fn, self.reconstruct_fn, self.needs_edges = _STEPS[cfg.train.stage]
        self.channel = make_channel(cfg) if self.needs_edges else None
        self.augment = Augment.from_config(cfg.data)  # its ranges are checked by Config.validate
        super().__init__(cfg, device, init, **kw)

    @classmethod
    def stage_spec(cls, cfg) -> StageSpec:
        spec = cls.get_stage(cfg.train.stage)
        if cfg.model.entropy_bottleneck and spec.name == "step1":
            spec = replace(spec, uses=spec.uses + ("eb",), trainable=spec.trainable + ("eb",))
        if _adversarial(cfg) and spec.name == "approach3":
            spec = replace(spec, uses=spec.uses + ("d",), trainable=spec.trainable + ("d",))
        return spec

    @classmethod
    def build_networks(cls, cfg) -> dict:
        nets = build_compgen(cfg.model, image_size=cfg.data.image_size)
        if _adversarial(cfg):
            nets["d"] = critic(cfg.data.image_size)
        return nets

    def configure_optimizers(self) -> dict:
        opts = super().configure_optimizers(exclude=("d",))  # the critic (train.w_adv) has its own
        if "d" in self.spec.trainable:
            opts["d"] = adam(self.models["d"].parameters(), lr=self.cfg.train.lr, betas=(0.5, 0.999))
        return opts

    def filter_init(self, init: dict) -> dict:
        if self.spec.name == "approach3" and self.cfg.train.approach3_init == "fresh":
            init.pop("h", None)
        if "h" in init and "h" in self.models and (self.models["h"].skips or self.models["h"].hint_size):
            # an h trained without skips or hint (e.g. the paper's approach 1) starts those paths at their init
            own = self.models["h"].state_dict()
            fresh = {k: v for k, v in own.items() if k.split(".")[0] in FRESH_MODULES and k not in init["h"]}
            init["h"] = {**init["h"], **fresh}
        return init

    def missing_init_message(self, lacking: list) -> str:
        return (f"stage {self.spec.name!r} needs trained network(s) {', '.join(lacking)} from a previous step: set "
                f"train.init=PATH to a checkpoint (e.g. step1's best.pt"
                f"{' or approach1' + chr(39) + 's' if 'h' in lacking else ''}) or run the pipeline (--stage pipeline)")

    @classmethod
    def handover(cls, cfg, stage: str, models_of) -> Optional[dict]:
        if stage == "step1":
            return None
        s1 = models_of("step1")
        if s1 is None:
            raise ValueError(f"pipeline stage {stage!r} needs step 1's checkpoint: run step1 first "
                             f"(expected {Path(cfg.out) / 'step1' / 'best.pt'})")
        init = {"f": s1["f"], "g": s1["g"]}
        if stage == "approach2" or (stage == "approach3" and cfg.train.approach3_init == "approach1"):
            a1 = models_of("approach1")
            if a1 is None:
                raise ValueError(f"pipeline stage {stage!r} needs approach 1's h: run approach1 first "
                                 f"(expected {Path(cfg.out) / 'approach1' / 'best.pt'})")
            init["h"] = a1["h"]
        return init

    @classmethod
    def prerequisites(cls, cfg, stage: str) -> list:
        if stage == "approach3":
            return ["step1"] + (["approach1"] if cfg.train.approach3_init == "approach1" else [])
        return {"step1": [], "approach1": ["step1"], "approach2": ["step1", "approach1"]}[cls.get_stage(stage).name]

    def prepare_batch(self, batch, generator) -> dict:
        # augmentation (data.augment_*) while training: any trainable network in train mode; none in validation
        training = any(self.models[k].training for k in self.spec.trainable)
        b = prepare_batch(batch, self.cfg, self.device, self.channel, generator, self.needs_edges,
                          self.augment if training and self.augment.active else None)
        if self.needs_edges and self.cfg.model.hint_size:
            b["hint"] = self._hint(b, generator, training)
        return b

    def _hint(self, b: dict, generator, training: bool):
        """The batch's colour hint at the batch's channel PSNRs: bits drawn per image from model.hint_bits while
        training, the largest in validation."""
        bits = [int(v) for v in self.cfg.model.hint_bits]
        if training and len(bits) > 1:
            gdev = generator.device if generator is not None else torch.device("cpu")
            pick = torch.randint(len(bits), (b["x"].shape[0],), generator=generator, device=gdev)
            bits = torch.tensor(bits, device=gdev)[pick]
        else:
            bits = max(bits)
        return make_hint(self.models, b["x"], b["psnr"], generator, bits)

    def loss(self, nets: dict, batch: dict):
        """(loss, logs) of the stage with ``nets`` (``self.nets`` to train, ``self.models`` to validate)."""
        return self.loss_fn(nets, batch, self.cfg)

    def train_step(self, batch: dict) -> dict:
        if "d" in self.spec.trainable:
            return self._adversarial_step(batch)
        with self.autocast():
            loss, logs = self.loss(self.nets, batch)
        self.step(loss)
        reported = logs.pop("rd_loss", loss.detach())
        return {"loss": reported, **{k: v for k, v in logs.items() if k != "x_hat"}}

    def _adversarial_step(self, batch: dict) -> dict:
        """h, g: distortion + w_adv * (-d(z, x_hat)); then d: hinge on (z, x) against (z, x_hat), one forward over
        both (the generator's term goes through the unwrapped d, whose gradients it does not need). Every term is
        logged (adv_g before its weight)."""
        z, n = batch["z_noisy"], batch["z_noisy"].shape[0]
        gen = [p for group in self.optimizers["main"].param_groups for p in group["params"]]  # h's and g's
        with self.autocast():
            loss, logs = self.loss(self.nets, batch)
            x_hat = logs.pop("x_hat")
            adv_g = -self.models["d"](torch.cat([z, x_hat], 1)).float().mean()
        self.step(loss + self.cfg.train.w_adv * adv_g, "main", inputs=gen)
        with self.autocast():
            pairs = torch.cat([torch.cat([z, batch["x"].to(x_hat.dtype)], 1), torch.cat([z, x_hat.detach()], 1)])
            logits = self.nets["d"](pairs).float()
            real, fake = logits[:n], logits[n:]
            loss_d = torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
        self.step(loss_d, "d")
        # d's mean logit on the fakes is -adv_g (the same d before its step): logged once
        return {"loss": loss.detach(), **logs, "adv_g": adv_g.detach(), "loss_d": loss_d.detach(),
                "d_real": real.mean().detach()}

    def validation_step(self, batch: dict) -> dict:
        with self.autocast():
            loss, logs = self.loss(self.models, batch)
            x_hat = logs["x_hat"] if "x_hat" in logs else self.reconstruct_fn(self.models, batch)
        return {"loss": logs.get("rd_loss", loss), "x_hat": x_hat.float(),
                **({"bpp": logs["bpp"]} if "bpp" in logs else {})}

    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        return _STEPS[cls.get_stage(stage).name][1](models, batch)

    @classmethod
    def input_key(cls, stage: str) -> str:
        return "z_noisy" if _STEPS[cls.get_stage(stage).name][2] else "x"

    @classmethod
    def example_batch(cls, cfg, x_uint8, generator) -> dict:
        b = {k: v.cpu() for k, v in make_channel(cfg)(x_uint8, torch.device("cpu"), generator=generator).items()}
        if cfg.model.hint_size:
            from pycompgen.codec.hint import quantised_thumbnail
            b["hint"] = quantised_thumbnail(b["x"], cfg.model.hint_size, max(cfg.model.hint_bits),
                                            getattr(cfg.model, "hint_space", "rgb"))
        return b


SYSTEM = Compgen

__all__ = ["Compgen", "decode_edges", "elm_forward", "hint_from_planes", "hint_planes", "hint_space", "hint_spec",
           "make_channel", "make_hint", "prepare_batch"]
