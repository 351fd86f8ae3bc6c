"""Sketch2face (seed 004): unpaired sketch <-> face translation, a CycleGAN whose generators are VAEs and whose
discriminators are WGAN-GP critics.

Domains: sketches "s" (grayscale, 1 channel: CUFSF artist sketches or Canny edge maps drawn as dark lines on white,
``sketch2face.sketch_source``) and faces "f" (RGB, 3 channels, CelebA), both in [-1, 1], random horizontal flips
per image and domain (``sketch2face.flip``). Data: ``pycompgen.data.unpaired`` through the ``System.datasets`` hook;
each loader item holds one sketch and one independent face.

Networks per domain d: encoder ``E_d`` (conv encoder to μ, log σ²), decoder ``G_d`` (BatchNorm, ReLU, tanh
output), critic ``D_d`` (LeakyReLU convs, no normalisation, linear output, no activation). Translators
G_sf = G_f ∘ [T_sf] ∘ reparam ∘ E_s and G_fs = G_s ∘ [T_fs] ∘ reparam ∘ E_f; ``T_*`` (linear layers on the flattened
latent, identity at start) exist only in the "latent" stage.

Losses (the paper's eqs (1)-(5)): generator λ_rec·L1(x, x_rec) − λ_adv·D(y) + λ_KLD·KLD(z); critic
−λ_real·D(x) + λ_fake·D(y) + λ_gp·GP with GP = E[(‖∇_x̂ D(x̂)‖₂ − 1)²] on random interpolates x̂ (Gulrajani et al.).
Scales: L1 is a per-pixel mean on [-1, 1] images and the KLD a per-latent-value mean (a per-image sum over 512
values × 0.01 gave an effective β of ~12 against the L1 and blurred the outputs); the KLD is taken on the
encodings of real inputs only (equation 3 has none on the cycle hop). Every weighted term is logged (``w_rec``,
``w_adv``, ``w_kld``, ``w_adv_prior``, ``w_div``, ``w_feat``) so their scales can be compared.

Learned similarity (beyond the paper, ``lambda_feat`` > 0): a heavy pixel L1 keeps identity but averages detail
away. As in VAE-GAN (Larsen et al. 2016) the reconstruction (pretraining) or the cycle (other stages) is also
compared with its input in the critic's features: λ_feat · the mean over the critic's blocks of the L1 between the
activations, each relative to the real activations' mean magnitude (``feature_distance``).

The face cycle's weight (beyond the paper, ``face_cycle_weight`` < 1, translation stages): the sketch cycle
(sketch -> face -> sketch) makes every translated face carry its sketch, which is what keeps sketch -> face from one
face for every sketch. The face cycle (face -> sketch -> face) asks G_f ∘ E_s to rebuild a face's colours and texture
from a sketch that does not hold them, and an L1 on that averages them away: blur in every sketch -> face output.
``face_cycle_weight`` scales the face cycle's reconstruction terms (λ_rec and λ_feat) against the sketch cycle's.

A paired signal (beyond the paper, ``lambda_paired`` > 0, translation stages): the unpaired losses let
sketch -> face draw any CelebA-like face that the sketch cycle can decode its sketch from (a hidden code), so men
became long-haired women. CUFSF's training sketches come with the photos they were drawn from; the generator also
gets λ_paired · the L1 between the luma of G_sf(sketch) and that photo's luma (FERET photos are mostly grey, so
colour stays the critic's), over the batch's sketches that have a photo. Validation reports it as ``l1_paired``.

Diversity (beyond the paper, ``lambda_div`` > 0, translation stages): many sketches mapped to a few faces is the
conditional form of mode collapse. Mode seeking (Mao et al. 2019, MSGAN) asks outputs of two inputs to differ as much
as the inputs do: for each translation, with the batch paired to itself rolled by one, the generator gets
λ_div / (mean|y_i − y_j| / mean|x_i − x_j| + 1e-5), L1 distances in [-1, 1] (logged ``div_ratio``).

Latent: ``latent_channels`` x H/8 x W/8 (the default), or a vector of ``latent_dim`` values (linear encoder head and
decoder stem). A translation hands one domain's posterior to the other domain's decoder, so that decoder must draw
its domain from any latent in the shared prior, not only from its own encoder's posteriors: with ``lambda_prior`` > 0
half of each critic step's fakes are prior samples G_d(z), z ~ N(0, I), and the generator gets
λ_adv·λ_prior·D(G_d(z)) (VAE-GAN, Larsen et al. 2016). The latents must then stay in the prior's region:
``kld_target`` holds each domain's KLD near a set number of nats per value (λ_KLD·|KLD − target|, the capacity of
Burgess et al. 2018; the adversarial terms' scale is not known in advance, and with a plain weight of 0.05 the KLD
drifted to 14 nats per value, means ~4 prior σ away). A spatial latent with i.i.d. prior samples cannot give a
coherent face (each output pixel sees a few latent pixels), hence the vector latent.
One ``train_step`` = ``n_critic`` critic updates, each on its own slice of the batch (fresh real images and fresh
fakes per critic step, as WGAN-GP; ``critic_batches=reuse``: every step on the whole batch), then one generator
update on the whole batch. Flips are on in every stage. The generators' encoders and decoders use instance
normalisation by default (``sketch2face.norm``; CycleGAN's choice): BatchNorm would mix the statistics of the
translation and the cycle passes, which see different distributions. Harness defaults: an EMA of the generators
(E_*, G_*, T_*), the critics in float32 (their gradient penalty), best.pt by the validation cycle L1
(``val_loss``; SSIM would not judge a GAN).

Stages (``--stage pipeline`` runs them in this order):
- ``pretrain``: each domain's VAE-GAN reconstructs its own domain against its critic (like Compgen's step 1);
- ``cycle``: the CycleGAN from scratch (paper: "trained from scratch");
- ``stitched``: the pretrained VAEs stitched across domains and trained whole ("whole model");
- ``latent``: the pretrained encoders/decoders frozen, only T_sf, T_fs (and the critics) trained ("only latent
  layers").

Distributed training: WGAN-GP differentiates the critic's input gradient again (double backward), which DDP does
not support on a wrapped module, and the cycle passes every encoder/decoder twice per step (DDP's reducer marks a
parameter ready only once). So this system keeps every network out of DDP (``wrap_module`` is ignored) and
averages gradients itself: ``step`` all-reduces (sum / world) the gradients of the optimiser's parameters in one
flat buffer after backward and before the update, and after each update rank 0's BatchNorm buffers are broadcast
(what DDP's ``broadcast_buffers`` does). Parameters start identical (same seed; also broadcast from rank 0). On one
process all of this is a no-op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pycompgen.networks import ConvDecoder, ConvEncoder, PatchDiscriminator, kl_divergence, reparameterize
from pycompgen.registry import register_system
from pycompgen.systems.base import StageSpec, System, adam, check_fields

DOMAINS = {"s": 1, "f": 3}  # channels of the sketch and face domains
LUMA = torch.tensor([0.299, 0.587, 0.114])  # BT.601, as OpenCV's grayscale reading of the photos
VAES = ("E_s", "G_s", "E_f", "G_f")
CRITICS = ("D_s", "D_f")
LATENT = ("T_sf", "T_fs")


@dataclass
class Sketch2FaceConfig:
    sketch_source: str = "cufsf"          # cufsf (artist sketches) | canny (Canny edge maps of faces)
    sketch_path: Optional[str] = None     # CUFSF root or sketch folder (None: synthetic sketches with synthetic faces)
    channels: int = 32                    # encoder / decoder widths channels·2^i
    latent_channels: int = 8              # latent latent_channels x H/8 x W/8 (latent_dim 0)
    latent_dim: int = 0                   # > 0: a vector latent of this size (linear encoder head / decoder stem)
    disc_channels: int = 32               # critic widths
    n_critic: int = 5                     # critic updates per generator update
    lambda_rec: float = 10.0
    lambda_adv: float = 1.0
    lambda_kld: float = 0.1               # on the per-value mean KLD (see the module docstring)
    kld_target: float = 0.0               # > 0: λ_KLD·|KLD − target| per domain (a capacity target, nats per value)
    lambda_gp: float = 10.0
    lambda_prior: float = 0.0             # VAE-GAN prior samples G_d(z), z ~ N(0, I), as fakes (critic and G)
    lambda_real: float = 1.0
    lambda_fake: float = 1.0
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    lr_latent: float = 1e-3               # T_sf, T_fs in the "latent" stage
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    flip: bool = True                     # random horizontal flips (training batches, every stage)
    norm: str = "instance"                # encoders/decoders: instance | batch (mixes the two passes) | none
    critic_batches: str = "split"         # split: each critic step on its own slice of the batch | reuse
    cycle_noise: float = 0.0              # std of Gaussian noise on the translation before the cycle hop ([-1, 1])
    lambda_div: float = 0.0               # mode seeking: λ_div / (output distance / input distance) per translation
    lambda_feat: float = 0.0              # learned similarity: reconstruction distance in the critic's features
    face_cycle_weight: float = 1.0        # translation stages: the face cycle's share of λ_rec (and λ_feat) terms
    lambda_paired: float = 0.0            # translation stages: L1 of sketch -> face's luma to the sketch's photo

    def validate(self, cfg) -> None:
        if self.sketch_source not in ("cufsf", "canny"):
            raise ValueError(f"sketch2face.sketch_source must be 'cufsf' or 'canny', got {self.sketch_source!r}")
        check_fields("sketch2face", self, ">= 1", "channels", "latent_channels", "disc_channels", "n_critic")
        check_fields("sketch2face", self, ">= 0", "lambda_rec", "lambda_adv", "lambda_kld", "lambda_gp", "lambda_real",
                     "lambda_fake", "lambda_prior", "latent_dim", "kld_target")
        check_fields("sketch2face", self, "> 0", "lr_g", "lr_d", "lr_latent")
        check_fields("sketch2face", self, ">= 0", "cycle_noise", "lambda_div", "lambda_feat", "face_cycle_weight",
                     "lambda_paired")
        check_fields("sketch2face", self, "two numbers in [0, 1)", "betas")
        if self.norm not in ("batch", "instance", "none"):
            raise ValueError(f"sketch2face.norm must be batch, instance or none, got {self.norm!r}")
        if self.critic_batches not in ("split", "reuse"):
            raise ValueError(f"sketch2face.critic_batches must be split or reuse, got {self.critic_batches!r}")
        if self.critic_batches == "split" and cfg.train.batch_size < self.n_critic:
            raise ValueError(f"sketch2face.critic_batches=split needs train.batch_size >= n_critic "
                             f"({self.n_critic}), got {cfg.train.batch_size}")
        if cfg.data.image_size not in (32, 64):
            raise ValueError(f"sketch2face supports data.image_size 32 or 64, got {cfg.data.image_size}")


class LatentLinear(nn.Module):
    """A linear layer on the flattened latent (C, h, w) or (D,), initialised to the identity."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(shape)
        n = math.prod(self.shape)
        self.fc = nn.Linear(n, n)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(n))
            self.fc.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.flatten(1)).view(z.shape[0], *self.shape)


# -- losses ------------------------------------------------------------------------------------------------------
def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     eps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """WGAN-GP: mean over the batch of (‖∇_x̂ D(x̂)‖₂ − 1)², x̂ = ε·real + (1−ε)·fake, ε ~ U(0, 1) per image. The
    graph is kept (create_graph) so the penalty trains the critic. ``critic`` must be an unwrapped module."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x = (eps * real.float() + (1 - eps) * fake.float().detach()).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):  # the penalty in float32
        out = critic(x).float()
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def mode_seeking_ratio(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean|y_i − y_j| / mean|x_i − x_j| over the batch paired with itself rolled by one (MSGAN's ratio, L1)."""
    dy = (y - y.roll(1, 0)).abs().mean()
    dx = (x - x.roll(1, 0)).abs().mean()
    return dy / dx.clamp(min=1e-8)


def critic_loss(critic, real, fake, c) -> tuple:
    """Eqs (2), (4), (5): −λ_real·D(x) + λ_fake·D(y) + λ_gp·GP (batch means). Returns (loss, W-distance, gp)."""
    d_real, d_fake = critic(real).float().mean(), critic(fake.detach()).float().mean()
    gp = gradient_penalty(critic, real, fake)
    loss = -c.lambda_real * d_real + c.lambda_fake * d_fake + c.lambda_gp * gp
    return loss, (d_real - d_fake).detach(), gp.detach()


def _to01(x: torch.Tensor) -> torch.Tensor:
    return (x.float() + 1) / 2


def _gray3(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@register_system
class Sketch2Face(System):
    name = "sketch2face"
    description = "Sketch2face: unpaired sketch <-> face CycleGAN with VAE generators and WGAN-GP critics"
    section = Sketch2FaceConfig
    _SEL = ("val_loss", "min")  # the validation cycle L1 (latent means)
    stages = {
        "pretrain": StageSpec("pretrain", VAES + CRITICS, VAES + CRITICS, (), 20,
                              "per-domain VAE-GANs: E_d/G_d reconstruct domain d against critic D_d", select=_SEL),
        "cycle": StageSpec("cycle", VAES + CRITICS, VAES + CRITICS, (), 20,
                           "CycleGAN with VAE generators trained from scratch", select=_SEL),
        "stitched": StageSpec("stitched", VAES + CRITICS, VAES + CRITICS, VAES + CRITICS, 20,
                              "pretrained VAE-GANs stitched across domains, trained whole", select=_SEL),
        "latent": StageSpec("latent", VAES + CRITICS + LATENT, CRITICS + LATENT, VAES + CRITICS, 20,
                            "pretrained VAEs frozen; only the latent linear layers T_sf, T_fs (and critics) train",
                            select=_SEL),
    }
    ema_networks = VAES + LATENT
    architecture = ("channels", "latent_channels", "latent_dim", "disc_channels", "norm")
    train_defaults = {"ema_decay": 0.999, "fp32_networks": list(CRITICS)}

    def __init__(self, cfg, device, init=None, *, resume_state=None, wrap_module=lambda m: m):
        # no DDP (see the module docstring): gradients are all-reduced in ``step``
        super().__init__(cfg, device, init, resume_state=resume_state, wrap_module=lambda m: m)
        self._broadcast(params=True)

    # -- networks and data --------------------------------------------------------------------------------------------
    @classmethod
    def build_networks(cls, cfg) -> dict:
        c, size = cfg.sketch2face, cfg.data.image_size
        nets = {}
        vec = dict(latent_dim=c.latent_dim or None, image_size=size)
        for d, ch in DOMAINS.items():
            nets[f"E_{d}"] = ConvEncoder(ch, c.channels, c.latent_channels, norm=c.norm, **vec)
            nets[f"G_{d}"] = ConvDecoder(ch, c.channels, c.latent_channels, out="tanh", norm=c.norm, **vec)
            nets[f"D_{d}"] = PatchDiscriminator(ch, c.disc_channels, image_size=size, norm=False)
        for k in LATENT:
            nets[k] = LatentLinear(*cls.latent_shape(cfg))
        return nets

    @classmethod
    def datasets(cls, cfg, split: str):
        from pycompgen.data.unpaired import load_unpaired
        d, c = cfg.data, cfg.sketch2face
        return load_unpaired(d.path, split, sketch_source=c.sketch_source, sketch_path=c.sketch_path,
                             image_size=d.image_size, cache_dir=d.cache_dir, synthetic_count=d.synthetic_count,
                             seed=cfg.train.seed, photos=c.lambda_paired > 0)

    @classmethod
    def handover(cls, cfg, stage: str, models_of) -> Optional[dict]:
        if stage in ("pretrain", "cycle"):
            return None
        pre = models_of("pretrain")
        if pre is None:
            raise ValueError(f"stage {stage!r} of sketch2face needs the pretrained per-domain VAE-GANs: run stage "
                             f"'pretrain' first (expected {Path(cfg.out) / 'pretrain' / 'best.pt'})")
        return {k: pre[k] for k in VAES + CRITICS}

    @classmethod
    def prerequisites(cls, cfg, stage: str) -> list:
        return [] if cls.get_stage(stage).name in ("pretrain", "cycle") else ["pretrain"]

    def configure_optimizers(self) -> dict:
        c = self.cfg.sketch2face
        betas = tuple(c.betas)
        opts = {}
        gen = [k for k in VAES if k in self.spec.trainable]
        if gen:
            opts["G"] = adam([p for k in gen for p in self.models[k].parameters()], lr=c.lr_g,
                                         betas=betas)
        lat = [k for k in LATENT if k in self.spec.trainable]
        if lat:
            opts["G"] = adam([p for k in lat for p in self.models[k].parameters()], lr=c.lr_latent,
                                         betas=betas)
        for k in CRITICS:
            opts[k] = adam(self.models[k].parameters(), lr=c.lr_d, betas=betas)
        return opts

    # -- batches ------------------------------------------------------------------------------------------------------
    @classmethod
    def split_batch(cls, cfg, batch, device, generator: Optional[torch.Generator] = None) -> dict:
        """A loader batch uint8 (N, 4, H, W) (sketch channel + RGB face) -> {"sketch" (N,1,H,W), "face" (N,3,H,W)}
        in [-1, 1] and "x" (the face in [0, 1], what the harness measures); with ``generator``, random horizontal
        flips per image and domain. A batch (N, 6, H, W) also holds each sketch's photo luma and a has-photo plane
        (``lambda_paired``): "photo" (N,1,H,W) in [-1, 1], flipped with its sketch, and "paired" (N,) bool. A clear
        one-line error for anything else."""
        size = cfg.data.image_size
        if isinstance(batch, dict) and "sketch" in batch and "face" in batch:
            sk, fa = batch["sketch"], batch["face"]
            for name, t, ch in (("sketch", sk, 1), ("face", fa, 3)):
                if not torch.is_tensor(t) or t.dim() != 4 or t.shape[1] != ch or tuple(t.shape[-2:]) != (size, size):
                    raise ValueError(f"sketch2face: {name} batch must be (N, {ch}, {size}, {size}), got "
                                     f"{tuple(getattr(t, 'shape', ()))}")
            x = torch.cat([sk, fa], 1)
        else:
            x = batch
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] not in (4, 6):
            raise ValueError(f"sketch2face: expected unpaired batches (N, 4, H, W) = 1 sketch + 3 face channels "
                             f"(6 with lambda_paired's photo planes; pycompgen.data.unpaired), got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__} -- face-only data cannot train "
                             f"sketch2face")
        if tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"sketch2face: the data yields {x.shape[-2]}x{x.shape[-1]} images but "
                             f"data.image_size={size}")
        x = x.to(device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if generator is not None and cfg.sketch2face.flip:
            n = x.shape[0]
            gdev = generator.device
            m = torch.rand(2, n, generator=generator, device=gdev).lt(0.5).to(device)[:, :, None, None, None]
            sk = torch.where(m[0], x[:, :1].flip(-1), x[:, :1])
            fa = torch.where(m[1], x[:, 1:4].flip(-1), x[:, 1:4])
            ph = torch.where(m[0], x[:, 4:].flip(-1), x[:, 4:])  # the photo (and its flag) with its sketch
            x = torch.cat([sk, fa, ph], 1)
        out = {"sketch": x[:, :1] * 2 - 1, "face": x[:, 1:4] * 2 - 1, "x": x[:, 1:4].contiguous()}
        if x.shape[1] == 6:
            out["photo"], out["paired"] = x[:, 4:5] * 2 - 1, x[:, 5].flatten(1).amax(1) > 0.5
        return out

    def prepare_batch(self, batch, generator: torch.Generator) -> dict:
        # flips while training (any trainable network in train mode: also the "latent" stage, whose encoders are
        # frozen); none in validation (eval mode everywhere)
        training = any(self.models[k].training for k in self.spec.trainable)
        return self.split_batch(self.cfg, batch, self.device, generator if training else None)

    @classmethod
    def example_batch(cls, cfg, x_uint8, generator) -> dict:
        return cls.split_batch(cfg, x_uint8, "cpu")

    # -- forward passes -----------------------------------------------------------------------------------------------
    @staticmethod
    def encode(nets, d: str, x, sample: bool = True):
        """(z, KLD as a mean per latent value and image)."""
        mu, logvar = nets[f"E_{d}"](x)
        z = reparameterize(mu, logvar) if sample else mu
        return z, kl_divergence(mu, logvar).mean() / mu[0].numel()

    @classmethod
    def translate(cls, nets, src: str, x, sample: bool = True):
        """src -> the other domain: (image in [-1, 1], KLD of the encoding)."""
        dst = "f" if src == "s" else "s"
        z, kld = cls.encode(nets, src, x, sample)
        t = nets.get(f"T_{src}{dst}")
        if t is not None:
            z = t(z)
        return nets[f"G_{dst}"](z), kld

    @classmethod
    def autoencode(cls, nets, d: str, x, sample: bool = True):
        z, kld = cls.encode(nets, d, x, sample)
        return nets[f"G_{d}"](z), kld

    # -- one step ---------------------------------------------------------------------------------------------------
    def _fakes(self, b: dict, grad: bool) -> dict:
        """Generator outputs of this stage: "pretrain": reconstructions; else translations and cycles."""
        nets, out = self.models, {}
        with torch.set_grad_enabled(grad), self.autocast():
            if self.spec.name == "pretrain":
                out["y_s"], out["kld_s"] = self.autoencode(nets, "s", b["sketch"])
                out["y_f"], out["kld_f"] = self.autoencode(nets, "f", b["face"])
                out["rec_s"], out["rec_f"] = out["y_s"], out["y_f"]
            else:
                out["y_f"], out["kld_s"] = self.translate(nets, "s", b["sketch"])   # sketch -> fake face
                out["y_s"], out["kld_f"] = self.translate(nets, "f", b["face"])     # face -> fake sketch
                if grad:  # the cycle hop: no KLD term (equation 3)
                    out["rec_s"], _ = self.translate(nets, "f", self.hop(out["y_f"]))  # -> sketch again
                    out["rec_f"], _ = self.translate(nets, "s", self.hop(out["y_s"]))  # -> face again
        return out

    @staticmethod
    def latent_shape(cfg) -> tuple:
        c = cfg.sketch2face
        return (c.latent_dim,) if c.latent_dim else (c.latent_channels, cfg.data.image_size // 8,
                                                     cfg.data.image_size // 8)

    def prior_domains(self) -> tuple:
        """Domains whose decoder trains in this stage and is also trained on prior samples (``lambda_prior`` > 0)."""
        if self.cfg.sketch2face.lambda_prior <= 0:
            return ()
        return tuple(d for d in DOMAINS if f"G_{d}" in self.spec.trainable)

    def prior_sample(self, d: str, n: int, grad: bool) -> torch.Tensor:
        """G_d(z), z ~ N(0, I): what the decoder makes of the prior (VAE-GAN, Larsen et al. 2016). Trained against
        the critic, it makes G_d a generator everywhere in the prior, not only on its own encoder's posteriors, so
        the other domain's encoder (KL-pulled to the same prior) lands where G_d draws faces or sketches."""
        z = torch.randn(n, *self.latent_shape(self.cfg), device=self.device)
        with torch.set_grad_enabled(grad), self.autocast():
            return self.models[f"G_{d}"](z)

    def hop(self, y: torch.Tensor) -> torch.Tensor:
        """A translation as the cycle hop sees it: with ``cycle_noise`` > 0, plus Gaussian noise of that std, so
        the cycle cannot pass its information through low-amplitude patterns in the fake (CycleGAN's
        steganography) and must use what a real image of the other domain would show."""
        s = self.cfg.sketch2face.cycle_noise
        return y if s <= 0 else y + s * torch.randn_like(y)

    def train_step(self, batch: dict) -> dict:
        c = self.cfg.sketch2face
        real = {"s": batch["sketch"], "f": batch["face"]}
        logs = {}
        n = real["s"].shape[0]
        if c.critic_batches == "split":  # fresh real images and fresh fakes for every critic step
            bounds = [(i * n // c.n_critic, (i + 1) * n // c.n_critic) for i in range(c.n_critic)]
        else:
            bounds = [(0, n)] * c.n_critic
        fk, prior = None, self.prior_domains()
        for i, (a, b) in enumerate(bounds):
            part = {"sketch": real["s"][a:b], "face": real["f"][a:b]}
            if fk is None or c.critic_batches == "split":
                with torch.no_grad():
                    fk = self._fakes(part, grad=False)
            for d in ("s", "f"):
                fake = fk[f"y_{d}"].float()
                if d in prior:  # half the fakes (at random) are prior samples
                    pick = torch.rand(b - a, 1, 1, 1, device=fake.device) < 0.5
                    fake = torch.where(pick, self.prior_sample(d, b - a, grad=False).float(), fake)
                with self.autocast():
                    loss_d, wdist, gp = critic_loss(self.models[f"D_{d}"], real[d][a:b], fake, c)
                self.step(loss_d, f"D_{d}")
                logs[f"loss_d_{d}"], logs[f"wdist_{d}"], logs[f"gp_{d}"] = loss_d.detach(), wdist, gp
        # generator: eq (1) (pretrain) / eq (3) (cycle variants)
        out = self._fakes(batch, grad=True)
        w = {"s": 1.0, "f": 1.0 if self.spec.name == "pretrain" else c.face_cycle_weight}
        rec = w["s"] * F.l1_loss(out["rec_s"].float(), real["s"]) + w["f"] * F.l1_loss(out["rec_f"].float(), real["f"])
        with self.autocast():
            adv = self.models["D_s"](out["y_s"]).float().mean() + self.models["D_f"](out["y_f"]).float().mean()
        kld = out["kld_s"] + out["kld_f"]
        t = c.kld_target
        kld_term = kld if t <= 0 else (out["kld_s"] - t).abs() + (out["kld_f"] - t).abs()
        adv_p = torch.zeros((), device=rec.device)
        for d in prior:
            yp = self.prior_sample(d, n, grad=True)
            with self.autocast():
                adv_p = adv_p + self.models[f"D_{d}"](yp).float().mean()
        div, ratio = torch.zeros((), device=rec.device), torch.zeros((), device=rec.device)
        if c.lambda_div > 0 and self.spec.name != "pretrain" and n > 1:
            for src, y in (("s", out["y_f"]), ("f", out["y_s"])):
                r = mode_seeking_ratio(real[src], y.float())
                div, ratio = div + 1.0 / (r + 1e-5), ratio + r.detach() / 2
        paired = torch.zeros((), device=rec.device)
        if c.lambda_paired > 0 and self.spec.name != "pretrain":
            paired = self.paired_distance(out["y_f"], batch)
        feat = torch.zeros((), device=rec.device)
        if c.lambda_feat > 0:
            for d in DOMAINS:
                feat = feat + w[d] * self.feature_distance(self.models[f"D_{d}"], out[f"rec_{d}"], real[d])
        loss_g = (c.lambda_rec * rec - c.lambda_adv * (adv + c.lambda_prior * adv_p) + c.lambda_kld * kld_term
                  + c.lambda_div * div + c.lambda_feat * feat + c.lambda_paired * paired)
        gen = [p for k in self.spec.trainable if k not in CRITICS for p in self.models[k].parameters()]
        self.step(loss_g, "G", inputs=gen)
        logs.update({"loss": rec.detach(), "loss_g": loss_g.detach(), "adv": adv.detach(), "kld": kld.detach(),
                     "w_rec": (c.lambda_rec * rec).detach(), "w_adv": (-c.lambda_adv * adv).detach(),
                     "w_kld": (c.lambda_kld * kld_term).detach(),
                     "w_adv_prior": (-c.lambda_adv * c.lambda_prior * adv_p).detach(),
                     "w_div": (c.lambda_div * div).detach(), "div_ratio": ratio,
                     "w_feat": (c.lambda_feat * feat).detach(), "w_paired": (c.lambda_paired * paired).detach(),
                     "loss_d": (logs["loss_d_s"] + logs["loss_d_f"]) / 2})
        return logs

    @staticmethod
    def paired_distance(face: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean L1 (in [-1, 1]) between the luma of translated faces (N, 3, H, W) and their sketches' photos, over
        the images that have one (0 when none does)."""
        if "photo" not in batch:
            raise ValueError("sketch2face.lambda_paired > 0 needs batches with the CUFSF photos (6 channels: "
                             "sketch, face, photo luma, has-photo)")
        keep = batch["paired"]
        if not bool(keep.any()):
            return face.new_zeros(()).float()
        luma = (face.float() * LUMA.to(face.device)[:, None, None]).sum(1, keepdim=True)
        return F.l1_loss(luma[keep], batch["photo"][keep].float())

    def feature_distance(self, critic: nn.Module, x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean over the critic's blocks of L1(features(x_rec), features(x)) / mean|features(x)|: each block's
        distance relative to its real activations' scale, so the term stays O(1) while the critic drifts. The
        critic is only read (the generator step updates the generators alone); x's features are a fixed target."""
        with self.autocast():
            with torch.no_grad():
                target = critic.features(x)
            got = critic.features(x_rec)
        terms = [F.l1_loss(a.float(), t.float()) / (t.float().abs().mean() + 1e-6) for a, t in zip(got, target)]
        return torch.stack(terms).mean()

    def validation_step(self, batch: dict) -> dict:
        """Face cycle (pretrain: face reconstruction) with the latent means: x_hat in [0, 1] against batch["x"];
        the loss is the mean L1 (in [-1, 1]) of the sketch and face cycles."""
        nets = self.models
        with self.autocast():
            if self.spec.name == "pretrain":
                rs, _ = self.autoencode(nets, "s", batch["sketch"], False)
                rf, _ = self.autoencode(nets, "f", batch["face"], False)
            else:
                y_f, _ = self.translate(nets, "s", batch["sketch"], False)  # the sketch cycle, its face kept
                rs, _ = self.translate(nets, "f", y_f, False)
                rf = self.cycle(nets, "f", batch["face"], sample=False)
        l_s = F.l1_loss(rs.float(), batch["sketch"])
        l_f = F.l1_loss(rf.float(), batch["face"])
        out = {"loss": (l_s + l_f) / 2, "x_hat": _to01(rf), "l1_sketch_cycle": l_s, "l1_face_cycle": l_f}
        if "photo" in batch and self.spec.name != "pretrain" and bool(batch["paired"].any()):
            out["l1_paired"] = self.paired_distance(y_f, batch)
        return out

    # -- distributed: manual gradient averaging ---------------------------------------------------------------------
    @staticmethod
    def _world() -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def step(self, loss: torch.Tensor, optimizer: str = "main", inputs: Optional[list] = None) -> None:
        """zero_grad, backward, average the gradients over all processes (one flat all-reduce), step; then rank 0's
        BatchNorm buffers are broadcast. Equivalent to DDP, but works with double backward and repeated forwards."""
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs)
        params = [p for g in opt.param_groups for p in g["params"]]
        world = self._world()
        if world > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            i = 0
            for p in params:
                n = p.numel()
                p.grad = flat[i:i + n].view_as(p).clone()
                i += n
        if self.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.train.grad_clip)
        opt.step()
        if world > 1:
            self._broadcast(params=False)

    def _broadcast(self, params: bool) -> None:
        if self._world() <= 1:
            return
        for m in self.models.values():
            for b in m.buffers():
                dist.broadcast(b.data, 0)
            if params:
                for p in m.parameters():
                    dist.broadcast(p.data, 0)

    # -- inference ----------------------------------------------------------------------------------------------------
    @classmethod
    def cycle(cls, models: dict, src: str, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """x (domain ``src``, [-1, 1]) -> other domain -> back: the cycle reconstruction in [-1, 1]."""
        y, _ = cls.translate(models, src, x, sample)
        back, _ = cls.translate(models, "f" if src == "s" else "s", y, sample)
        return back

    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        """Face x in [0, 1] (N, 3, H, W) -> its face cycle face -> sketch -> face (pretrain: the face VAE) in [0, 1]."""
        x = batch["x"]
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"sketch2face.reconstruct expects faces (N, 3, H, W), got {tuple(x.shape)}")
        f = x.float() * 2 - 1
        if stage == "pretrain":
            out, _ = cls.autoencode(models, "f", f, False)
        else:
            out = cls.cycle(models, "f", f)
        return _to01(out)

    @classmethod
    def sketch_to_face(cls, models: dict, sketch: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Sketches (N, 1, H, W) in [-1, 1] -> faces (N, 3, H, W) in [-1, 1]."""
        check_domain(sketch, "s", models)
        return cls.translate(models, "s", sketch, sample)[0]

    @classmethod
    def face_to_sketch(cls, models: dict, face: torch.Tensor, sample: bool = False) -> torch.Tensor:
        check_domain(face, "f", models)
        return cls.translate(models, "f", face, sample)[0]


def check_domain(x: torch.Tensor, d: str, models: dict) -> None:
    """One-line ValueError unless x is a batch of domain ``d`` ("s": (N,1,H,W), "f": (N,3,H,W)) at the size the
    critic of that domain was built for, with values in [-1, 1]."""
    name = {"s": "sketch", "f": "face"}[d]
    ch = DOMAINS[d]
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != ch:
        hint = " (a face given as a sketch?)" if d == "s" and torch.is_tensor(x) and x.dim() == 4 and x.shape[1] == 3 \
            else (" (a sketch given as a face?)" if d == "f" and torch.is_tensor(x) and x.dim() == 4 and x.shape[1] == 1
                  else "")
        raise ValueError(f"sketch2face: a {name} batch must be (N, {ch}, H, W), got "
                         f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}{hint}")
    D = models.get(f"D_{d}")
    if D is not None:  # the critic's linear layer fixes the image size the model was built for
        convs = [m for m in D.body if isinstance(m, nn.Conv2d)]
        s = int(round((D.fc.in_features / convs[-1].out_channels) ** 0.5)) * 2 ** len(convs)
        if tuple(x.shape[-2:]) != (s, s):
            raise ValueError(f"sketch2face: the model was built for {s}x{s} {name} images but got "
                             f"{x.shape[-2]}x{x.shape[-1]}")
    if x.dtype == torch.uint8 or float(x.min()) < -1.0001 or float(x.max()) > 1.0001:
        raise ValueError(f"sketch2face: {name} values must be floats in [-1, 1], got {x.dtype} in "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")


# -- evaluation helpers ---------------------------------------------------------------------------------------------
@torch.no_grad()
def cycle_distances(models: dict, sketches: torch.Tensor, faces: torch.Tensor, batch_size: int = 64) -> dict:
    """The paper's Table 1 analogue: distance between inputs and their cycle reconstructions (latent means),
    sketch -> face -> sketch and face -> sketch -> face. Inputs in [-1, 1]. Returns mean L1 (on [0, 1] images) and
    mean SSIM per cycle, with the image counts."""
    from pycompgen.ops import ssim
    check_domain(sketches, "s", models)
    check_domain(faces, "f", models)
    out = {}
    for d, x in (("sketch", sketches), ("face", faces)):
        l1 = ss = 0.0
        for a in range(0, len(x), batch_size):
            xb = x[a:a + batch_size]
            r = Sketch2Face.cycle(models, d[0], xb).float().clamp(-1, 1)
            l1 += float((_to01(r) - _to01(xb)).abs().flatten(1).mean(1).sum())
            ss += float(ssim(_gray3(_to01(r)), _gray3(_to01(xb)), reduction="none").sum())
        out[f"{d}_cycle_l1"] = l1 / len(x)
        out[f"{d}_cycle_ssim"] = ss / len(x)
        out[f"{d}_n"] = int(len(x))
    return out


@torch.no_grad()
def sample_spread(models: dict, sketches: torch.Tensor, samples: int = 8, seed: int = 0) -> dict:
    """The paper's observation as a number: for sketch -> face, the spread of outputs over VAE samples of one input
    (mean per-pixel std over ``samples`` draws, averaged over inputs) vs the spread over different inputs (std over
    the inputs of their latent-mean outputs). ratio = within / across: near 1 or above means the output depends
    more on the sampled noise than on the sketch."""
    check_domain(sketches, "s", models)
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        draws = torch.stack([Sketch2Face.translate(models, "s", sketches, True)[0].float() for _ in range(samples)])
    means = Sketch2Face.translate(models, "s", sketches, False)[0].float()
    within = float(draws.std(0).mean())
    across = float(means.std(0).mean()) if len(sketches) > 1 else float("nan")
    return {"spread_within_input": within, "spread_across_inputs": across,
            "spread_ratio": within / across if across > 0 else float("nan"), "samples": samples,
            "inputs": int(len(sketches))}


SYSTEM = Sketch2Face
__all__ = ["Sketch2Face", "Sketch2FaceConfig", "gradient_penalty", "critic_loss", "cycle_distances",
           "sample_spread", "check_domain", "LatentLinear"]
