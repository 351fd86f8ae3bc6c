"""CVAE face compressor of the face-reconstruction study (seed 001): a convolutional VAE, 64x64 RGB -> a 512-value
latent (μ, log σ², reparameterisation), a mirrored convolutional decoder, L1 reconstruction (+ KL), Adam, batch
100, 10 epochs.

The latent is spatial, latent_channels x H/8 x W/8 (8 x 8 x 8 = 512 values at 64x64), so it can be quantised and
entropy-coded like Compgen's y. At inference the decoder reads μ (the reparameterised sample is for training only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pycompgen.networks import ConvDecoder, ConvEncoder, kl_divergence, reparameterize
from pycompgen.systems import register_system
from pycompgen.systems.base import StageSpec, System


@dataclass
class CVAEConfig:
    channels: int = 36          # encoder widths channels, 2·channels, 4·channels (~0.45 M parameters in all)
    latent_channels: int = 8    # latent 8 x H/8 x W/8 = 512 values per 64x64 face
    kl_weight: float = 0.01     # weight of the KL term (per latent value, relative to the per-pixel L1)

    def validate(self, cfg) -> None:
        if self.channels < 1 or self.latent_channels < 1:
            raise ValueError("cvae.channels and cvae.latent_channels must be >= 1")
        if self.kl_weight < 0:
            raise ValueError(f"cvae.kl_weight must be >= 0, got {self.kl_weight}")


def vae_reconstruction(models: dict, x: torch.Tensor, sample: bool):
    """(x̂, μ, log σ²) of an encoder "f" and decoder "g"."""
    mu, logvar = models["f"](x)
    return models["g"](reparameterize(mu, logvar) if sample else mu), mu, logvar


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
    stages = {"train": StageSpec("train", ("f", "g"), ("f", "g"), (), 10,
                                 "encoder f and decoder g trained with L1(x, g(y)) + kl_weight·KL, y ~ q(y|x)")}

    @classmethod
    def build_networks(cls, cfg) -> dict:
        c = cfg.cvae
        return {"f": ConvEncoder(3, c.channels, c.latent_channels), "g": ConvDecoder(3, c.channels, c.latent_channels)}

    def train_step(self, batch: dict) -> dict:
        with self.autocast():
            x_hat, mu, logvar = vae_reconstruction(self.nets, batch["x"], sample=True)
        loss, logs = vae_loss(batch["x"], x_hat, mu, logvar, self.cfg.cvae.kl_weight)
        self.step(loss)
        return {"loss": loss.detach(), **logs}

    def validation_step(self, batch: dict) -> dict:
        with self.autocast():
            x_hat, mu, logvar = vae_reconstruction(self.models, batch["x"], sample=False)
        loss, _ = vae_loss(batch["x"], x_hat, mu, logvar, self.cfg.cvae.kl_weight)
        return {"loss": loss, "x_hat": x_hat.float()}

    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        return models["g"](models["f"](batch["x"])[0])


SYSTEM = CVAE
__all__ = ["CVAE", "CVAEConfig", "vae_reconstruction", "vae_loss"]
