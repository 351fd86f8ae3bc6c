"""Shared building blocks of the project's networks (residual blocks of Compgen, Mentzer et al. 2018; more as systems need them)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def norm2d(kind: str, channels: int) -> nn.Module:
    """BatchNorm ("batch"), GroupNorm with up to 8 groups ("group": per-image statistics, so images of one batch at
    different channel PSNRs do not share them), or nothing ("none")."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(next(g for g in (8, 4, 2, 1) if channels % g == 0), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r} (expected 'batch', 'group' or 'none')")


def conv5_down(cin: int, cout: int) -> nn.Conv2d:
    """[k5 n(cout) s2]: halves H and W."""
    return nn.Conv2d(cin, cout, kernel_size=5, stride=2, padding=2)


def deconv5_up(cin: int, cout: int) -> nn.ConvTranspose2d:
    """Transposed [k5 n(cout) s2]: doubles H and W."""
    return nn.ConvTranspose2d(cin, cout, kernel_size=5, stride=2, padding=2, output_padding=1)


class ResidualBlock(nn.Module):
    """3x3 conv - (norm) - ReLU - 3x3 conv - (norm), plus the identity skip."""

    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"), norm2d(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"), norm2d(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualNetworkBlock(nn.Module):
    """``num_mult`` residual blocks with an outer skip around them (paper: one of ``num_res`` such blocks)."""

    def __init__(self, channels: int, num_mult: int, norm: str = "batch"):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(channels, norm) for _ in range(num_mult)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x)


def residual_stack(channels: int, num_res: int, num_mult: int, norm: str) -> nn.Module:
    """``num_res`` residual network blocks, followed (as in Mentzer et al.) by one more skip over the whole stack."""
    if num_res == 0:
        return nn.Identity()
    return _Skip(nn.Sequential(*[ResidualNetworkBlock(channels, num_mult, norm) for _ in range(num_res)]))


class _Skip(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


# -- convolutional (variational) autoencoders: the face-reconstruction study's CVAE / DCGAN generator ---------------
NORMS = ("batch", "instance")


def _norm(kind, c: int) -> list:
    """BatchNorm ("batch", or True), InstanceNorm with affine weights ("instance": per-image statistics, as
    CycleGAN's generators), or nothing (False / None / "none")."""
    if kind is True or kind == "batch":
        return [nn.BatchNorm2d(c)]
    if kind == "instance":
        return [nn.InstanceNorm2d(c, affine=True)]
    if kind in (False, None, "none"):
        return []
    raise ValueError(f"normalisation must be one of batch, instance, none, got {kind!r}")


def _down(cin: int, cout: int, norm="batch") -> list:
    """[k4 s2] conv halving H and W, (normalisation), LeakyReLU(0.2)."""
    n = _norm(norm, cout)
    return [nn.Conv2d(cin, cout, 4, 2, 1, bias=not n)] + n + [nn.LeakyReLU(0.2, inplace=True)]


def _up(cin: int, cout: int, norm="batch") -> list:
    """[k4 s2] transposed conv doubling H and W, normalisation, ReLU."""
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)] + _norm(norm, cout) + [nn.ReLU(inplace=True)]


class ConvEncoder(nn.Module):
    """x (N, in_ch, H, W) -> (μ, log σ²), each (N, latent_channels, H/2^depth, W/2^depth).

    ``depth`` [k4 s2] convs with widths channels·2^i, then a 3x3 conv to 2·latent_channels (μ and log σ²).
    With ``variational=False`` the second half is absent and log σ² is None (a plain autoencoder). ``norm``: the
    normalisation after every conv but the first ("batch" | "instance" | "none"). With ``latent_dim`` the latent is
    a vector instead: a linear layer on the flattened features gives (N, latent_dim) μ and log σ² (``image_size``
    fixes the flattened size)."""

    def __init__(self, in_ch: int = 3, channels: int = 32, latent_channels: int = 8, depth: int = 3,
                 variational: bool = True, norm: str = "batch", latent_dim: Optional[int] = None,
                 image_size: int = 64):
        super().__init__()
        layers, c = [], in_ch
        for i in range(depth):
            layers += _down(c, channels * 2 ** i, norm=norm if i > 0 else "none")
            c = channels * 2 ** i
        self.body = nn.Sequential(*layers)
        self.variational = variational
        self.latent_channels = latent_channels
        k = 2 if variational else 1
        if latent_dim:
            s = image_size // 2 ** depth
            self.head = nn.Sequential(nn.Flatten(1), nn.Linear(c * s * s, latent_dim * k))
        else:
            self.head = nn.Conv2d(c, latent_channels * k, 3, padding=1)

    def forward(self, x: torch.Tensor):
        t = self.head(self.body(x))
        if not self.variational:
            return t, None
        mu, logvar = t.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class ConvDecoder(nn.Module):
    """y (N, latent_channels, h, w) -> image (N, out_ch, h·2^depth, w·2^depth); mirror of ``ConvEncoder``.

    ``out``: "sigmoid" (images in [0, 1]) or "tanh" (images in [-1, 1]); ``norm`` as ``ConvEncoder``'s. With
    ``latent_dim``, y is a vector (N, latent_dim) and a linear layer (DCGAN's stem) makes the first feature map
    (``image_size`` / 2^depth square), so every output pixel depends on the whole latent."""

    def __init__(self, out_ch: int = 3, channels: int = 32, latent_channels: int = 8, depth: int = 3,
                 out: str = "sigmoid", norm: str = "batch", latent_dim: Optional[int] = None, image_size: int = 64):
        super().__init__()
        c = channels * 2 ** (depth - 1)
        self.latent_dim = latent_dim or None
        if self.latent_dim:
            s = image_size // 2 ** depth
            layers = [nn.Linear(self.latent_dim, c * s * s, bias=False), nn.Unflatten(1, (c, s, s))]
        else:
            layers = [nn.Conv2d(latent_channels, c, 3, padding=1, bias=False)]
        layers += [*_norm(norm, c), nn.ReLU(inplace=True)]
        for i in reversed(range(1, depth)):
            layers += _up(c, channels * 2 ** (i - 1), norm)
            c = channels * 2 ** (i - 1)
        layers += [nn.ConvTranspose2d(c, out_ch, 4, 2, 1)]
        if out not in ("sigmoid", "tanh"):
            raise ValueError(f"ConvDecoder: out must be 'sigmoid' or 'tanh', got {out!r}")
        layers.append(nn.Sigmoid() if out == "sigmoid" else nn.Tanh())
        self.body = nn.Sequential(*layers)
        self.latent_channels = latent_channels

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.latent_dim:
            if y.dim() != 2 or y.shape[1] != self.latent_dim:
                raise ValueError(f"decoder expects a latent of shape (N, {self.latent_dim}), got {tuple(y.shape)}")
        elif y.dim() != 4 or y.shape[1] != self.latent_channels:
            raise ValueError(f"decoder expects a latent of shape (N, {self.latent_channels}, h, w), "
                             f"got {tuple(y.shape)}")
        return self.body(y)


class PatchDiscriminator(nn.Module):
    """A small convolutional discriminator: ``depth`` [k4 s2] convs (LeakyReLU, BatchNorm after the first), then a
    linear layer to one logit per image (no output activation: pair with BCE-with-logits or a WGAN critic loss)."""

    def __init__(self, in_ch: int = 3, channels: int = 32, depth: int = 3, image_size: int = 64, norm: bool = True):
        super().__init__()
        layers, c = [], in_ch
        for i in range(depth):
            layers += _down(c, channels * 2 ** i, norm="batch" if norm and i > 0 else "none")
            c = channels * 2 ** i
        self.body = nn.Sequential(*layers)
        s = image_size // 2 ** depth
        self.fc = nn.Linear(c * s * s, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1)).squeeze(1)

    def features(self, x: torch.Tensor) -> list:
        """The activations after each [k4 s2] block (H/2, H/4, ...): a learned similarity's feature space."""
        out = []
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """y = μ + σ·ε, ε ~ N(0, I) (Kingma & Welling)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, I)) per image, summed over the latent: shape (N,)."""
    return 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).flatten(1).sum(1)
