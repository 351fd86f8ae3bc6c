"""DCGAN face compressor of the face-reconstruction study (seed 001): a generator of the CVAE's encoder-decoder
family with about twice its parameters (~1 M), a small convolutional discriminator trained with binary
cross-entropy, and the generator's reconstruction loss weighted x10 (the study's fix for collapse); 30 epochs.

Like the CVAE, the latent passes an entropy bottleneck "eb" (``dcgan.rate_weight`` λ for λ·bpp; val_bpp reported).
One ``train_step`` = one discriminator step (real faces vs reconstructions, one forward of the concatenated batch)
then one generator step: BCE(D(G(x)), real) + recon_weight·L1 (+ kl_weight·KL). The generator step back-propagates
through the discriminator into the generator only (``backward(inputs=...)``), so no gradient reaches D's parameters
and DDP never sees D outside its own step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pycompgen.networks import ConvDecoder, ConvEncoder, PatchDiscriminator
from pycompgen.registry import register_system
from pycompgen.systems.base import StageSpec, System, adam, check_fields
from pycompgen.systems.cvae import CVAE, vae_loss, vae_reconstruction


@dataclass
class DCGANConfig:
    channels: int = 52           # generator widths (~0.95 M parameters, about twice the CVAE's)
    latent_channels: int = 8     # latent 8 x H/8 x W/8 = 512 values per 64x64 face
    disc_channels: int = 32      # discriminator widths 32, 64, 128
    recon_weight: float = 10.0   # the study's x10 on the reconstruction loss
    kl_weight: float = 0.01
    rate_weight: float = 0.0     # λ of λ·bpp (entropy-bottleneck rate); 0 = the study's loss
    lr_g: float = 1e-3
    lr_d: float = 2e-4
    betas_g: list[float] = field(default_factory=lambda: [0.9, 0.999])
    betas_d: list[float] = field(default_factory=lambda: [0.5, 0.999])

    def validate(self, cfg) -> None:
        check_fields("dcgan", self, ">= 1", "channels", "latent_channels", "disc_channels")
        check_fields("dcgan", self, ">= 0", "recon_weight", "kl_weight", "rate_weight")
        check_fields("dcgan", self, "> 0", "lr_g", "lr_d")
        check_fields("dcgan", self, "two numbers in [0, 1)", "betas_g", "betas_d")


@register_system
class DCGAN(System):
    name = "dcgan"
    description = "DCGAN face compressor (face-reconstruction study)"
    section = DCGANConfig
    stages = {"train": StageSpec("train", ("f", "g", "eb", "D"), ("f", "g", "eb", "D"), (), 30,
                                 "generator (f, eb, g) with BCE(D(x̂), 1) + 10·L1; discriminator D with BCE")}
    generator = ("f", "g", "eb")

    @classmethod
    def build_networks(cls, cfg) -> dict:
        from pycompgen.codec.entropy import EntropyBottleneck
        c = cfg.dcgan
        return {"f": ConvEncoder(3, c.channels, c.latent_channels), "g": ConvDecoder(3, c.channels, c.latent_channels),
                "eb": EntropyBottleneck(c.latent_channels),
                "D": PatchDiscriminator(3, c.disc_channels, image_size=cfg.data.image_size)}

    def configure_optimizers(self) -> dict:
        c = self.cfg.dcgan
        gen = [p for k in self.generator for p in self.models[k].parameters()]
        return {"G": adam(gen, lr=c.lr_g, betas=tuple(c.betas_g)),
                "D": adam(self.models["D"].parameters(), lr=c.lr_d, betas=tuple(c.betas_d))}

    def train_step(self, batch: dict) -> dict:
        c, x = self.cfg.dcgan, batch["x"]
        n = x.shape[0]
        with self.autocast():
            x_hat, mu, logvar, bpp, rate = vae_reconstruction(self.nets, x, True, c.rate_weight)
            # discriminator: real -> 1, reconstruction -> 0
            logits = self.nets["D"](torch.cat([x, x_hat.detach().to(x.dtype)])).float()
        target = torch.cat([torch.ones(n, device=x.device), torch.zeros(n, device=x.device)])
        loss_d = F.binary_cross_entropy_with_logits(logits, target)
        self.step(loss_d, "D")
        # generator: fool the (updated) discriminator and reconstruct x
        with self.autocast():
            fake_logits = self.models["D"](x_hat).float()
        adv = F.binary_cross_entropy_with_logits(fake_logits, torch.ones(n, device=x.device))
        rec, logs = vae_loss(x, x_hat, mu, logvar, c.kl_weight, c.recon_weight)
        loss_g = adv + rec + rate + self.models["eb"].loss()
        gen_params = [p for k in self.generator for p in self.models[k].parameters()]
        self.step(loss_g, "G", inputs=gen_params)
        with torch.no_grad():
            d_real = torch.sigmoid(logits[:n]).mean()
            d_fake = torch.sigmoid(logits[n:]).mean()
        return {"loss": rec.detach(), "loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "adv": adv.detach(),
                "d_real": d_real, "d_fake": d_fake, "bpp": bpp.detach(), **logs}

    def validation_step(self, batch: dict) -> dict:
        with self.autocast():
            x_hat, mu, logvar, bpp, _ = vae_reconstruction(self.models, batch["x"], False)
        loss, _ = vae_loss(batch["x"], x_hat, mu, logvar, self.cfg.dcgan.kl_weight, self.cfg.dcgan.recon_weight)
        return {"loss": loss, "x_hat": x_hat.float(), "bpp": bpp}

    latent = CVAE.latent
    reconstruct = CVAE.reconstruct


SYSTEM = DCGAN
__all__ = ["DCGAN", "DCGANConfig"]
