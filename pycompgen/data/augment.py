"""Training-time augmentation of face batches: one random similarity transform (flip, shift, scale, rotation) and
colour jitter per image, on the device.

Compgen's edge maps are made from the augmented face (``EdgeChannel`` runs after this), so face and edge map stay
aligned by construction: the target the decoder must reach is the transformed face, and the edge map it sees is that
face's Canny map. Geometry uses one ``affine_grid`` / ``grid_sample`` (bilinear, border padding: no black corners);
colour jitter scales brightness, contrast and saturation by factors in [1 - jitter, 1 + jitter].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = False     # horizontal flip with probability 1/2
    shift: float = 0.0     # max translation, as a fraction of the image side (0.0625 = 4 px at 64x64)
    scale: float = 0.0     # max relative zoom (0.05: factors in [0.95, 1.05])
    rotate: float = 0.0    # max rotation in degrees
    jitter: float = 0.0    # colour jitter strength (brightness, contrast, saturation factors in [1 -/+ jitter])

    @classmethod
    def from_config(cls, d) -> "Augment":
        """From ``data.augment_*`` keys of a DataConfig."""
        return cls(flip=bool(d.augment_flip), shift=float(d.augment_shift), scale=float(d.augment_scale),
                   rotate=float(d.augment_rotate), jitter=float(d.augment_jitter))

    def check(self, what: str = "data.augment") -> "Augment":
        for name, lo, hi in (("shift", 0.0, 0.5), ("scale", 0.0, 0.5), ("rotate", 0.0, 180.0), ("jitter", 0.0, 1.0)):
            v = getattr(self, name)
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{what}_{name} must be in [{lo:g}, {hi:g}], got {v}")
        return self

    @property
    def geometric(self) -> bool:
        return self.shift > 0 or self.scale > 0 or self.rotate > 0

    @property
    def active(self) -> bool:
        return self.flip or self.geometric or self.jitter > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x float (N, C, H, W) in [0, 1] -> augmented copy (same shape, dtype, device); identity when inactive."""
        if not self.active:
            return x
        if not torch.is_tensor(x) or x.dim() != 4 or not x.dtype.is_floating_point:
            raise ValueError(f"augment expects float images (N, C, H, W) in [0, 1], got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        n = x.shape[0]
        u = torch.rand(n, 8, generator=generator, device=generator.device, dtype=torch.float32).to(x.device)
        if self.geometric or self.flip:
            x = _similarity(x, u, self)
        if self.jitter > 0:
            x = _jitter(x, u[:, 4:7] * 2 - 1, self.jitter)
        return x


def _similarity(x: torch.Tensor, u: torch.Tensor, a: Augment) -> torch.Tensor:
    s = 1.0 + a.scale * (2 * u[:, 0] - 1)             # zoom factor
    r = math.radians(a.rotate) * (2 * u[:, 1] - 1)
    tx, ty = ((a.shift * 2) * (2 * u[:, 2:4] - 1)).unbind(1)  # grid coordinates span 2 per side
    flip = torch.where(u[:, 7] < 0.5, -1.0, 1.0) if a.flip else torch.ones_like(s)
    cos, sin = torch.cos(r) / s, torch.sin(r) / s     # output -> input sampling grid: inverse zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    if not a.geometric:  # flips alone: exact pixel moves, no resampling
        return torch.where((flip < 0)[:, None, None, None], x.flip(-1), x)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp_(0, 1)


def _jitter(x: torch.Tensor, v: torch.Tensor, strength: float) -> torch.Tensor:
    b, c, s = (1 + strength * v).unbind(1)
    x = x * b[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * c[:, None, None, None] + mean
    if x.shape[1] == 3:
        grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - grey) * s[:, None, None, None] + grey
    return x.clamp_(0, 1)


__all__ = ["Augment"]
