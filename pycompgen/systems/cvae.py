"""CVAE face compressor of the face-reconstruction study (seed 001): a convolutional VAE, 64x64 RGB -> a 512-value
latent (μ, log σ², reparameterisation), a mirrored convolutional decoder, L1 reconstruction (+ KL), Adam, batch
100, 10 epochs.

The latent is spatial, latent_channels x H/8 x W/8 (8 x 8 x 8 = 512 values at 64x64). A file carries μ quantised
and range-coded with an entropy bottleneck "eb" (factorised prior, ``pycompgen.codec.entropy``), trained with the
networks: the decoder sees y + U(-½, ½) while training and round(μ) at inference; ``cvae.rate_weight`` λ adds λ·bpp to
the loss (0: the study's loss, the bottleneck only learns the latent's density). Validation reports val_bpp, the
estimated bits per pixel of the quantised latent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pycompgen.networks import ConvDecoder, ConvEncoder, kl_divergence, reparameterize
from pycompgen.registry import register_system
from pycompgen.systems.base import StageSpec, System, check_fields, latent_rate


@dataclass
class CVAEConfig:
    channels: int = 36          # encoder widths channels, 2·channels, 4·channels (~0.45 M parameters in all)
    latent_channels: int = 8    # latent 8 x H/8 x W/8 = 512 values per 64x64 face
    kl_weight: float = 0.01     # weight of the KL term (per latent value, relative to the per-pixel L1)
    rate_weight: float = 0.0    # λ of λ·bpp (entropy-bottleneck rate); 0 = the study's loss

    def validate(self, cfg) -> None:
        if self.channels < 1 or self.latent_channels < 1:
            raise ValueError("cvae.channels and cvae.latent_channels must be >= 1")
        check_fields("cvae", self, ">= 0", "kl_weight", "rate_weight")


def vae_reconstruction(models: dict, x: torch.Tensor, sample: bool, rate_weight: float = 0.0):
    """(x̂, μ, log σ², bpp, rate term) of an encoder "f", entropy bottleneck "eb" and decoder "g": the decoder gets
    the bottleneck's ŷ of a sample y ~ q(y|x) (``sample``) or of μ."""
    mu, logvar = models["f"](x)
    y = reparameterize(mu, logvar) if sample else mu
    y_hat, bpp, rate = latent_rate(models["eb"], y, rate_weight, x.shape[0] * x.shape[-2] * x.shape[-1])
    return models["g"](y_hat.to(mu.dtype)), mu, logvar, bpp, rate


def vae_loss(x, x_hat, mu, logvar, kl_weight: float, l1_weight: float = 1.0):
    """l1_weight·L1(x̂, x) + kl_weight·KL per latent value; returns (loss, logs)."""
    l1 = F.l1_loss(x_hat.float(), x.float())
    kl = kl_divergence(mu, logvar).mean() / mu[0].numel()
    return l1_weight * l1 + kl_weight * kl, {"l1": l1.detach(), "kl": kl.detach()}


@register_system
class CVAE(System):
    name = "cvae"
    description = "convolutional VAE face compressor (face-reconstruction study)"
    section = CVAEConfig
    stages = {"train": StageSpec("train", ("f", "g", "eb"), ("f", "g", "eb"), (), 10,
                                 "encoder f, decoder g and bottleneck eb trained with L1(x, g(ŷ)) + kl_weight·KL "
                                 "(+ rate_weight·bpp), y ~ q(y|x)")}

    @classmethod
    def build_networks(cls, cfg) -> dict:
        from pycompgen.codec.entropy import EntropyBottleneck
        c = cfg.cvae
        return {"f": ConvEncoder(3, c.channels, c.latent_channels), "g": ConvDecoder(3, c.channels, c.latent_channels),
                "eb": EntropyBottleneck(c.latent_channels)}

    def train_step(self, batch: dict) -> dict:
        c = self.cfg.cvae
        with self.autocast():
            x_hat, mu, logvar, bpp, rate = vae_reconstruction(self.nets, batch["x"], True, c.rate_weight)
        loss, logs = vae_loss(batch["x"], x_hat, mu, logvar, c.kl_weight)
        self.step(loss + rate + self.models["eb"].loss())
        return {"loss": loss.detach(), "bpp": bpp.detach(), **logs}

    def validation_step(self, batch: dict) -> dict:
        with self.autocast():
            x_hat, mu, logvar, bpp, _ = vae_reconstruction(self.models, batch["x"], False)
        loss, _ = vae_loss(batch["x"], x_hat, mu, logvar, self.cfg.cvae.kl_weight)
        return {"loss": loss, "x_hat": x_hat.float(), "bpp": bpp}

    @classmethod
    def latent(cls, models: dict, x: torch.Tensor) -> torch.Tensor:
        return models["f"](x)[0]

    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        return models["g"](models["eb"](cls.latent(models, batch["x"]).float())[0])


SYSTEM = CVAE
__all__ = ["CVAE", "CVAEConfig", "vae_reconstruction", "vae_loss"]
