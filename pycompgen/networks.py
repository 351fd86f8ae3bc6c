"""Shared building blocks of the project's networks (residual blocks of Compgen, Mentzer et al. 2018; more as systems need them)."""
from __future__ import annotations

import torch
from torch import nn


def norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r} (expected 'batch' or 'none')")


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
