"""BEGAN image refiner (seed 003): a Boundary Equilibrium GAN whose generator is fed downscaled versions of the
training image instead of noise, and refines crude faces (synthetic faces, downscaled photos, Compgen outputs) into
photo-realistic ones.

Networks (images in the project's range [0, 1]):
- D: the BEGAN discriminator, an autoencoder. Encoder: a 3x3 input conv, then blocks of two 3x3 convs with ELU and
  nearest-neighbour downsampling (x1/2) at the end of each block but the last, filters growing block by block
  (n, 2n, 3n, ...) down to 8x8; a fully connected bottleneck (``began.embedding`` values); decoder: FC to n x 8 x 8,
  blocks of two 3x3 convs with ELU (constant n filters) and nearest-neighbour upsampling, a 3x3 output conv.
- G: the refiner, the decoder design with constant n filters, fed the training image downscaled to 8x8 (input conv
  from 3 channels); after each upsampling (16, 32, ..., image_size) the image downscaled to that resolution is
  concatenated to the features when the resolution is in ``began.inject``. Output 0.5·(out + 1), linear like
  BEGAN's generator (a tanh output saturated at 0 within one epoch at lr 1e-3 on CelebA, and its gradient died
  there), clamped to [0, 1] in eval mode.
  Variants as the paper's Fig. 2, from the most expressive (A) to the most restrictive (C); every injected image is
  a *downscaled* version of the input (the paper: "a series of downsized versions of the training sample"):
  injecting the full-resolution image would make the identity G(x) = x optimal for the reconstruction term.
  ``began.variant`` picks them, ``began.inject`` (a list of resolutions below the image size) overrides it:

  | variant | injected after upsampling (64x64) | in general |
  |---|---|---|
  | A | 16 | the first upsampling only |
  | B | 32 | the finest downscaled version only (image_size / 2) |
  | C | 16, 32 | every downscaled version |

  (At 32x32 only 16 is below the image size: the three variants coincide.)

Losses as the paper's eq. (4), with L(v) = mean |v − D(v)| and v_LR the downscaled inputs of x, on images mapped to
BEGAN's range [−1, 1] (v ↦ 2v − 1; γ and λ_k were set for that scale, so on [0, 1] every k_t step would be half as
large); the refiner's input and output stay in [0, 1]:
  L_D = L(x) − k_t·L(G(v_LR));  L_G = (1 − λ_r)·L(G(v_LR)) + λ_r·mean |x − G(v_LR)|;
  k_{t+1} = clip(k_t + λ_k·(γ·L(x) − L(G(v_LR))), 0, 1).
The paper measures L_RCN against "the higher resolution versions" without saying at which resolution;
``began.rcn_size`` picks it: null = full size (the refiner is pulled to the conditional mean of the detail it was
not given: blur), "input" = the largest resolution G is given (A: 16, B and C: 32 at 64x64), so detail above it is
left to the adversarial term (bench/results/refiner-probes-cpu2.md). G's sharpness is bounded by D's: G is pulled
towards images D reconstructs well, and D's reconstructions of real faces are smooth at CPU budgets.
``began.code_channels`` replaces D's FC bottleneck by a spatial c x 8 x 8 code (not the paper's; measured there).
``began.upsample=bilinear`` makes G upsample by bilinear interpolation instead of BEGAN's nearest-neighbour copies,
whose 2x2 blocks an adversarial term turns into a visible grid (probe P11 there; D keeps nearest);
``began.upsample=pixelshuffle`` learns each upsampling (a 3x3 conv to 4n channels + PixelShuffle(2), ICNR-initialised
so that it starts as nearest-neighbour copies). ``began.consistency=true`` (not the paper's) projects G's output onto
the images whose area-downscale to the L_RCN resolution equals the input's, by a smooth exact correction (``project``):
the refined face then agrees with what it was given at that resolution by construction, and L_RCN is measured on G's
output before the projection so that G learns to need little correction (probes P12-P15).
k_t is extra state (checkpointed with the networks, restored on resume); under DDP the two losses of its update
are averaged over the workers first (one small all-reduce per step), so every worker holds the same k_t.
One ``train_step`` = a D step, a G step (back-propagating through D into G only: ``backward(inputs=...)``), then
the k_t update; it logs k_t (after the update) and the convergence measure M_global = L(x) + |γ·L(x) − L(G)|.
Both go to MLflow every step (``step_log_keys``: ``step_k_t``, ``step_m_global``) and as epoch averages
(``train_k_t``, ``train_m_global``, also in metrics.jsonl); the latest values are kept in the extra state (``k_t``,
``m_global``) and so in every checkpoint. ``best.pt`` is the epoch of lowest ``val_m_global`` (validation SSIM to
the input would reward copying), which Ray Tune also minimises; the learning rates halve when ``val_m_global``
stalls (BEGAN's schedule: ``train.lr_schedule=plateau``), and G keeps an exponential moving average
(``train.ema_decay`` 0.999) that validation, figures and the zoo use.

Defaults from the paper (Adam lr 1e-3, 64x64, lowest input 8x8, n = 64) and the BEGAN paper (γ = 0.5,
λ_k = 0.001, k_0 = 0); the paper's batch of 25 is ``train.batch_size=25`` (a harness key; bench/refiner.py sets it).
Adam betas (0.5, 0.999) as the BEGAN reference code (the refiner paper names none). The refiner paper gives no
value for λ_r: 0.5 here (configurable, in the Tune space). At 32x32 there are only two upsamplings (16, 32), so
variants A and B coincide there (both inject 16).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pycompgen.registry import register_system
from pycompgen.systems.base import StageSpec, System, adam, check_fields

LOWEST = 8  # the generator's lowest input resolution (the paper's 8x8)
VARIANTS = ("A", "B", "C")
UPSAMPLE = ("nearest", "bilinear", "pixelshuffle")


def upsample_scales(image_size: int) -> list:
    """Resolutions reached after each upsampling of the generator: 16, 32, ..., image_size."""
    return [LOWEST * 2 ** i for i in range(1, int(round(math.log2(image_size // LOWEST))) + 1)]


def variant_scales(variant: str, image_size: int) -> list:
    """The injected resolutions of variant A, B or C (see the module docstring): downscaled versions only."""
    lower = upsample_scales(image_size)[:-1]  # 16, ..., image_size / 2
    if variant == "A":
        return lower[:1]
    if variant == "B":
        return lower[-1:]
    if variant == "C":
        return lower
    raise ValueError(f"began.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


@dataclass
class BEGANConfig:
    channels: int = 64           # n: D's encoder filters n, 2n, 3n, ...; D's decoder and G constant n (paper: 64)
    embedding: int = 64          # D's fully connected bottleneck
    code_channels: Optional[int] = None  # None: the FC bottleneck (BEGAN); c: a spatial c x 8 x 8 code (1x1 convs)
    upsample: str = "nearest"    # the refiner G's upsampling: "nearest" (BEGAN) | "bilinear" (no grid of copies)
    #                              | "pixelshuffle" (a 3x3 conv to 4n + PixelShuffle(2), ICNR-initialised)
    consistency: bool = False    # project G's output onto the images whose area-downscale to the L_RCN resolution
    #                              equals the input's (not the paper's; see the module docstring)
    variant: str = "C"           # A (most expressive) | B | C (most restrictive); sets the injected scales
    inject: Optional[list[int]] = None  # resolutions injected after upsampling (overrides variant), e.g. [16, 32]
    gamma: float = 0.5           # γ, the diversity ratio (BEGAN)
    lambda_k: float = 0.001      # λ_k, k_t's learning rate (BEGAN)
    lambda_r: float = 0.5        # λ_r, weight of the reconstruction loss |v_HR − G(v_LR)| (not given by the paper)
    rcn_size: Optional[Any] = None         # resolution of L_RCN: None = full size (v_HR); 16 = G's output and the
    #                                     target both downscaled to 16x16; "input" = the largest resolution G is given
    k0: float = 0.0              # initial k_t
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas_g: list[float] = field(default_factory=lambda: [0.5, 0.999])
    betas_d: list[float] = field(default_factory=lambda: [0.5, 0.999])

    def scales(self, image_size: int) -> list:
        """The injected resolutions for ``image_size`` images (sorted)."""
        if self.inject is not None:
            return sorted(int(s) for s in self.inject)
        return variant_scales(self.variant, image_size)

    def rcn_resolution(self, image_size: int) -> int:
        """The resolution L_RCN is measured at (``rcn_size`` resolved: "input" -> the largest injected scale)."""
        if self.rcn_size is None:
            return image_size
        if self.rcn_size == "input":
            return max([LOWEST, *self.scales(image_size)])
        return int(self.rcn_size)

    def validate(self, cfg) -> None:
        size = cfg.data.image_size
        ups = upsample_scales(size)[:-1] if size >= 4 * LOWEST and size & (size - 1) == 0 else None
        if ups is None:
            raise ValueError(f"the BEGAN refiner needs a power-of-two data.image_size >= {4 * LOWEST} (its lowest "
                             f"input is {LOWEST}x{LOWEST}, and it injects downscaled versions), got {size}")
        check_fields("began", self, ">= 1", "channels", "embedding")
        if self.code_channels is not None:
            check_fields("began", self, ">= 1", "code_channels")
        if self.upsample not in UPSAMPLE:
            raise ValueError(f"began.upsample must be one of {', '.join(UPSAMPLE)}, got {self.upsample!r}")
        if not isinstance(self.consistency, bool):
            raise ValueError(f"began.consistency must be true or false, got {self.consistency!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"began.variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.inject is not None:
            bad = [s for s in self.inject if not isinstance(s, int) or s not in ups]
            if bad or len(set(self.inject)) != len(self.inject):
                raise ValueError(f"began.inject must list distinct resolutions among {ups} (downscaled versions, "
                                 f"after an upsampling of the {LOWEST}x{LOWEST} input, for data.image_size={size}), "
                                 f"got {self.inject}")
        check_fields("began", self, ">= 0", "gamma", "lambda_k")
        if self.rcn_size not in (None, "input") and (not isinstance(self.rcn_size, int) or isinstance(
                self.rcn_size, bool) or not LOWEST <= self.rcn_size <= size):
            raise ValueError(f"began.rcn_size must be null (full size), \"input\" (the largest resolution the "
                             f"refiner is given) or a resolution in [{LOWEST}, {size}] (data.image_size), got "
                             f"{self.rcn_size!r}")
        if self.consistency and self.rcn_resolution(size) >= size:
            raise ValueError("began.consistency needs began.rcn_size below data.image_size (the projection keeps "
                             "the input at that resolution; at full size the refiner would return its input)")
        check_fields("began", self, "in [0, 1]", "lambda_r", "k0")
        check_fields("began", self, "> 0", "lr_g", "lr_d")
        check_fields("began", self, "two numbers in [0, 1)", "betas_g", "betas_d")


# -- networks ---------------------------------------------------------------------------------------------------------
def _convs(cin: int, cout: int) -> nn.Sequential:
    """A BEGAN block body: two 3x3 convs, each followed by ELU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ELU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ELU())


def _icnr(conv: nn.Conv2d, r: int = 2) -> nn.Conv2d:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding PixelShuffle(r): the r² sub-pixel kernels of each
    output channel start equal, so the shuffle starts as a nearest-neighbour upsampling of one conv (no checkerboard)
    and learns sub-pixel differences from there."""
    w = torch.empty(conv.out_channels // r ** 2, *conv.weight.shape[1:])
    nn.init.kaiming_normal_(w)
    with torch.no_grad():
        conv.weight.copy_(w.repeat_interleave(r ** 2, dim=0))
        conv.bias.zero_()
    return conv


def _check_input(x: torch.Tensor, size: int, who: str) -> None:
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{who}: expected (N, 3, {size}, {size}) images, got {getattr(x, 'shape', type(x).__name__)}")
    if tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{who}: expected {size}x{size} images (the size it was built for), got "
                         f"{x.shape[-2]}x{x.shape[-1]}; resize the input or build with data.image_size="
                         f"{x.shape[-1]}")


class BEGANDecoder(nn.Module):
    """n x 8 x 8 features -> image: blocks of two convs (constant n) + nearest upsampling, a 3x3 output conv."""

    def __init__(self, n: int, image_size: int, inject: tuple = (), upsample: str = "nearest"):
        super().__init__()
        self.scales = upsample_scales(image_size)
        self.inject = tuple(int(s) for s in inject)
        self.upsample = upsample
        blocks = [_convs(n, n)]
        for s in self.scales:
            blocks.append(_convs(n + (3 if s in self.inject else 0), n))
        self.blocks = nn.ModuleList(blocks)
        if upsample == "pixelshuffle":
            self.shuffle = nn.ModuleList(_icnr(nn.Conv2d(n, 4 * n, 3, padding=1)) for _ in self.scales)
        self.out = nn.Conv2d(n, 3, 3, padding=1)

    def _up(self, h: torch.Tensor, i: int) -> torch.Tensor:
        if self.upsample == "pixelshuffle":
            return F.pixel_shuffle(self.shuffle[i](h), 2)
        return F.interpolate(h, scale_factor=2, mode=self.upsample,
                             **({"align_corners": False} if self.upsample == "bilinear" else {}))

    def forward(self, h: torch.Tensor, pyramid: Optional[dict] = None) -> torch.Tensor:
        h = self.blocks[0](h)
        for i, (s, block) in enumerate(zip(self.scales, self.blocks[1:])):
            h = self._up(h, i)
            if s in self.inject:
                h = torch.cat([h, pyramid[s].to(h.dtype)], 1)
            h = block(h)
        return self.out(h)


class BEGANDiscriminator(nn.Module):
    """The BEGAN discriminator: an autoencoder image -> image (linear output, the same range as its input)."""

    def __init__(self, n: int, embedding: int, image_size: int, code_channels: Optional[int] = None):
        super().__init__()
        self.image_size, self.n, self.code_channels = image_size, n, code_channels
        depth = len(upsample_scales(image_size))  # number of downsamplings to 8x8
        self.inp = nn.Sequential(nn.Conv2d(3, n, 3, padding=1), nn.ELU())
        widths = [n * (i + 1) for i in range(depth + 1)]
        self.enc = nn.ModuleList(_convs(cin, cout) for cin, cout in zip([n] + widths[:-1], widths))
        if code_channels:  # spatial code: position kept, c values per 8x8 cell
            self.fc_enc = nn.Conv2d(widths[-1], code_channels, 1)
            self.fc_dec = nn.Conv2d(code_channels, n, 1)
        else:
            self.fc_enc = nn.Linear(widths[-1] * LOWEST * LOWEST, embedding)
            self.fc_dec = nn.Linear(embedding, n * LOWEST * LOWEST)
        self.dec = BEGANDecoder(n, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.image_size, "BEGAN discriminator")
        h = self.inp(x)
        for i, block in enumerate(self.enc):
            h = block(h)
            if i + 1 < len(self.enc):
                h = F.interpolate(h, scale_factor=0.5, mode="nearest")
        if self.code_channels:
            h = self.fc_dec(self.fc_enc(h))
        else:
            h = self.fc_dec(self.fc_enc(h.flatten(1))).view(-1, self.n, LOWEST, LOWEST)
        return self.dec(h)


def image_pyramid(x: torch.Tensor, scales) -> dict:
    """{resolution: x downscaled to it (area averaging; x itself at its own size)} for 8 and ``scales``."""
    out = {}
    for s in sorted({LOWEST, *scales}):
        out[s] = x if s == x.shape[-1] else F.interpolate(x, size=(s, s), mode="area")
    return out


class BEGANRefiner(nn.Module):
    """The refiner G: image (N,3,S,S) in [0, 1] -> refined image in [0, 1]. It sees only the image's 8x8 version
    and its versions at the injected resolutions (``inject``)."""

    def __init__(self, n: int, image_size: int, inject: tuple, upsample: str = "nearest",
                 consistency: Optional[int] = None):
        super().__init__()
        self.image_size, self.inject = image_size, tuple(sorted(int(s) for s in inject))
        self.consistency = consistency
        self.inp = nn.Sequential(nn.Conv2d(3, n, 3, padding=1), nn.ELU())
        self.dec = BEGANDecoder(n, image_size, self.inject, upsample)

    def forward(self, x: torch.Tensor, with_raw: bool = False):
        """The refined image; ``with_raw``: (refined, G's output before the consistency projection)."""
        _check_input(x, self.image_size, "BEGAN refiner")
        pyr = image_pyramid(x, {*self.inject, *([self.consistency] if self.consistency else [])})
        raw = 0.5 * (self.dec(self.inp(pyr[LOWEST]), pyr) + 1.0)
        out = project(raw, pyr[self.consistency]) if self.consistency else raw
        out = out if self.training else out.clamp(0.0, 1.0)
        return (out, raw) if with_raw else out


@functools.lru_cache(maxsize=None)
def _smooth_lift(size: int, r: int) -> tuple:
    """(U, M⁻¹) per axis, float64 on the CPU (built once per size): U (size·r × size) bilinear ×r upsampling,
    M = A·U with A the area (mean of r) downscale."""
    eye = torch.eye(size, dtype=torch.float64)
    U = F.interpolate(eye[:, None, :], scale_factor=r, mode="linear", align_corners=False)[:, 0, :].T
    M = U.reshape(size, r, size).mean(1)
    return U, torch.linalg.inv(M)


def project(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """y moved onto {y': area-downscale(y') = t} by a smooth correction: y + U·c with U the bilinear upsampling and
    c solving A·U·c = t − A(y) exactly (A∘U is invertible and separable: one small matrix per axis), so the result
    agrees with t at its resolution without the 4x4 blocks a nearest-neighbour correction leaves."""
    s, r = t.shape[-1], y.shape[-1] // t.shape[-1]
    U, Minv = (m.to(y.device, torch.float32) for m in _smooth_lift(s, r))
    res = t.float() - F.avg_pool2d(y.float(), r)
    c = Minv @ res @ Minv.T
    return y + (U @ c @ U.T).to(y.dtype)


def pm1(v: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> BEGAN's range [−1, 1] (what D sees and the losses measure)."""
    return v * 2.0 - 1.0


def ae_loss(D: nn.Module, v: torch.Tensor) -> torch.Tensor:
    """L(v) = mean |v' − D(v')| with v' = 2v − 1 (float32)."""
    v = pm1(v)
    return (v.float() - D(v).float()).abs().mean()


def rcn_loss(out: torch.Tensor, x: torch.Tensor, size: Optional[int] = None) -> torch.Tensor:
    """L_RCN = mean |x − out| on the [−1, 1] scale (as L(·)), both area-downscaled to ``size`` first when given."""
    out, x = out.float(), x.float()
    if size is not None and size != x.shape[-1]:
        out, x = F.interpolate(out, size=(size, size), mode="area"), F.interpolate(x, size=(size, size), mode="area")
    return 2.0 * (x - out).abs().mean()


# -- the system -------------------------------------------------------------------------------------------------------
@register_system
class BEGAN(System):
    name = "began"
    description = "BEGAN image refiner (seed 003): downscaled image in, refined face out"
    section = BEGANConfig
    step_log_keys = ("k_t", "m_global")  # every training step to MLflow (step_k_t, step_m_global)
    stages = {"train": StageSpec("train", ("g", "D"), ("g", "D"), (), 30,
                                 "refiner g and autoencoder discriminator D, BEGAN losses with reconstruction (eq. 4)",
                                 select=("val_m_global", "min"))}
    ema_networks = ("g",)
    train_defaults = {"ema_decay": 0.999, "lr_schedule": "plateau", "lr_patience": 1}

    @classmethod
    def build_networks(cls, cfg) -> dict:
        c, size = cfg.began, cfg.data.image_size
        return {"g": BEGANRefiner(c.channels, size, tuple(c.scales(size)), c.upsample,
                                  c.rcn_resolution(size) if c.consistency else None),
                "D": BEGANDiscriminator(c.channels, c.embedding, size, c.code_channels)}

    def initial_extra(self) -> dict:
        return {"k_t": float(self.cfg.began.k0), "m_global": float("nan")}

    def configure_optimizers(self) -> dict:
        c = self.cfg.began
        return {"g": adam(self.models["g"].parameters(), lr=c.lr_g, betas=tuple(c.betas_g)),
                "D": adam(self.models["D"].parameters(), lr=c.lr_d, betas=tuple(c.betas_d))}

    def train_step(self, batch: dict) -> dict:
        c, x = self.cfg.began, batch["x"]
        k = float(self.extra["k_t"])
        with self.autocast():
            x_ref, raw = self.nets["g"](x, with_raw=True)
            # discriminator step: reconstruct real faces, fail on refined ones (weighted by k_t)
            n = x.shape[0]
            both = pm1(torch.cat([x, x_ref.detach().to(x.dtype)]))
            rec = self.nets["D"](both)
        err = (both.float() - rec.float()).abs()
        l_real, l_fake_d = err[:n].mean(), err[n:].mean()
        loss_d = l_real - k * l_fake_d
        self.step(loss_d, "D")
        # generator step through the (updated) D into g only
        with self.autocast():
            l_fake = ae_loss(self.models["D"], x_ref)
        l_rcn = rcn_loss(raw, x, c.rcn_resolution(x.shape[-1]))  # before the projection (zero after it)
        loss_g = (1.0 - c.lambda_r) * l_fake + c.lambda_r * l_rcn
        self.step(loss_g, "g", inputs=list(self.models["g"].parameters()))
        # equilibrium: k_{t+1} = clip(k_t + λ_k (γ L(x) − L(G)), 0, 1), M_global = L(x) + |γ L(x) − L(G)|
        # (both losses from the D of this step, as BEGAN's simultaneous update)
        lr_, lf_ = l_real.detach(), l_fake_d.detach()
        if dist.is_available() and dist.is_initialized():  # one k_t for every worker: average the losses
            both = torch.stack([lr_, lf_])
            dist.all_reduce(both)
            lr_, lf_ = both / dist.get_world_size()
        l_x, l_g = torch.stack([lr_, lf_]).tolist()  # one host sync per step (k_t is a float)
        balance = c.gamma * l_x - l_g
        k_new = min(max(k + c.lambda_k * balance, 0.0), 1.0)
        m_global = l_x + abs(balance)
        self.extra["k_t"] = k_new
        self.extra["m_global"] = m_global
        scalar = lambda v: torch.tensor(v, dtype=torch.float32, device=x.device)  # noqa: E731
        return {"loss": scalar(m_global), "loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "l_real": lr_,
                "l_fake": lf_, "l_fake_g": l_fake.detach(), "l_rcn": l_rcn.detach(), "k_t": scalar(k_new),
                "m_global": scalar(m_global)}

    def validation_step(self, batch: dict) -> dict:
        c, x = self.cfg.began, batch["x"]
        with self.autocast():
            x_hat, raw = self.models["g"](x, with_raw=True)
        x_hat = x_hat.float()
        l_real = ae_loss(self.models["D"], x)
        l_fake = ae_loss(self.models["D"], x_hat)
        l_rcn = rcn_loss(raw, x, c.rcn_resolution(x.shape[-1]))
        m_global = l_real + (c.gamma * l_real - l_fake).abs()
        return {"loss": m_global, "x_hat": x_hat, "l_real": l_real, "l_fake": l_fake, "l_rcn": l_rcn,
                "m_global": m_global, "loss_g": (1.0 - c.lambda_r) * l_fake + c.lambda_r * l_rcn}

    # -- inference ----------------------------------------------------------------------------------------------------
    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        return models["g"](batch["x"])

    @classmethod
    def latent(cls, models: dict, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("the BEGAN refiner has no latent to code (it is a refiner, not a compressor)")

    @classmethod
    @torch.no_grad()
    def refine(cls, models: dict, images) -> torch.Tensor:
        """Refine arbitrary images with a trained refiner ``models["g"]`` (eval mode is set here).

        ``images``: (N,3,H,W) uint8 or float in [0, 1] (or a numpy (N,H,W,3) uint8 array); images of another size
        than the refiner's are resized to it (area when shrinking, bilinear when enlarging) -- the refiner only
        looks at the downscaled versions anyway. Returns float images in [0, 1] at the refiner's size."""
        g = models["g"]
        g.eval()
        if not torch.is_tensor(images):
            import numpy as np
            arr = np.asarray(images)
            if arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(f"refine: expected (N,H,W,3) arrays or (N,3,H,W) tensors, got {arr.shape}")
            images = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"refine: expected (N, 3, H, W) images, got {tuple(images.shape)}")
        dev = next(g.parameters()).device
        x = images.to(dev)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        size = g.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            mode = "area" if x.shape[-1] > size else "bilinear"
            x = F.interpolate(x, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        return g(x.clamp(0, 1)).float()


def refine(models: dict, images) -> torch.Tensor:
    """``BEGAN.refine`` (module-level alias)."""
    return BEGAN.refine(models, images)


SYSTEM = BEGAN
__all__ = ["BEGAN", "BEGANConfig", "BEGANRefiner", "BEGANDiscriminator", "refine", "variant_scales",
           "upsample_scales", "image_pyramid", "project"]
