"""Compgen networks: compressive encoder f, decoder g (paper Fig. 3) and the Edgemap-to-Latent Mapper h (Fig. 4)."""
from __future__ import annotations

import torch
from torch import nn

from pycompgen.networks import ResidualBlock, conv5_down, deconv5_up, norm2d, residual_stack

DOWNSAMPLE = 8  # three stride-2 stages: 64x64 -> 8x8


def _check_image(x: torch.Tensor, channels: int, what: str, size: int | None = None) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{what} expects a (N, {channels}, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if size is not None and (h, w) != (size, size):
        raise ValueError(f"{what} was built for {size}x{size} images, got {h}x{w} (set data.image_size={h} "
                         f"and retrain, or resize the input)")
    if h % DOWNSAMPLE or w % DOWNSAMPLE:
        raise ValueError(f"{what} needs H and W divisible by {DOWNSAMPLE}, got {h}x{w}")


class Encoder(nn.Module):
    """f: x (N,3,H,W) in [0,1] -> y (N, latent_channels, H/8, W/8).

    [k5 n(c/2) s2] - ReLU - [k5 n(c) s2] - ReLU - num_res x (num_mult residual blocks + skip) - [k5 n(latent) s2].
    """

    def __init__(self, channels: int = 128, latent_channels: int = 16, num_res: int = 2, num_mult: int = 2,
                 norm: str = "batch", image_size: int | None = None):
        super().__init__()
        c2 = max(channels // 2, 1)
        self.image_size = image_size
        self.head = nn.Sequential(
            conv5_down(3, c2), norm2d(norm, c2), nn.ReLU(inplace=True),
            conv5_down(c2, channels), norm2d(norm, channels), nn.ReLU(inplace=True),
        )
        self.res = residual_stack(channels, num_res, num_mult, norm)
        self.tail = conv5_down(channels, latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, 3, "encoder f", self.image_size)
        return self.tail(self.res(self.head(x)))


class Decoder(nn.Module):
    """g: y (N, latent_channels, H/8, W/8) -> x_hat (N,3,H,W) in [0,1] (mirror of f, sigmoid output)."""

    def __init__(self, channels: int = 128, latent_channels: int = 16, num_res: int = 2, num_mult: int = 2,
                 norm: str = "batch"):
        super().__init__()
        c2 = max(channels // 2, 1)
        self.latent_channels = latent_channels
        self.head = nn.Sequential(deconv5_up(latent_channels, channels), norm2d(norm, channels),
                                  nn.ReLU(inplace=True))
        self.res = residual_stack(channels, num_res, num_mult, norm)
        self.tail = nn.Sequential(
            deconv5_up(channels, c2), norm2d(norm, c2), nn.ReLU(inplace=True),
            deconv5_up(c2, 3), nn.Sigmoid(),
        )

    def forward(self, y: torch.Tensor, skips: tuple | None = None) -> torch.Tensor:
        """``skips``: (s16, s32) from an ELM built with ``skips=True``, added after the first and the second
        upsampling (H/4 and H/2); None for the paper's decoder."""
        if y.dim() != 4 or y.shape[1] != self.latent_channels:
            raise ValueError(f"decoder g expects a latent of shape (N, {self.latent_channels}, h, w), "
                             f"got {tuple(y.shape)}")
        if skips is None:
            return self.tail(self.res(self.head(y)))
        s16, s32 = skips
        t = self.res(self.head(y) + s16)
        return self.tail[3:](self.tail[:3](t) + s32)


class ELM(nn.Module):
    """h: noisy edge map (N,1,H,W) -> y_hat with y's shape (N, latent_channels, H/8, W/8).

    Three [k5 s2] convs down to H/8, ``num_res`` residual blocks with BatchNorm, FC1 - ReLU - FC2, reshape
    (``dropout`` > 0, beyond the paper: dropout on FC1's input and output while training). ``norm`` (beyond the
    paper, ``model.elm_norm``): "group" replaces the BatchNorms by GroupNorm, so that training batches, whose images
    are drawn at different channel PSNRs, do not share normalisation statistics, and evaluation at one PSNR does
    not use running statistics averaged over all of them.

    ``skips=True`` (beyond the paper, ``model.elm_skips``): h also hands its H/4 and H/2 conv features to g
    (``forward(z, return_skips=True)`` -> (y_hat, (s16, s32))), projected by 3x3 convs to g's widths
    (``g_channels``) and scaled per image and channel by a gate sigmoid(W·mean(H/8 features)). Detail can bypass
    the FC bottleneck when the edges are clean; the gate learns to close when they are noisy, leaving the FC path
    (a prior over faces). The projections start at zero, so a model initialised from the paper's h, g starts as
    the paper's model. ``skip_blocks`` (``model.elm_skip_blocks``) residual blocks on each skip before its gate
    give the convolutional path depth of its own (0: the features of h's first and second convs as they are).

    ``hint_size`` > 0 (beyond the paper, ``model.hint_size``): h also takes a colour hint, an RGB thumbnail
    (N,3,hint_size,hint_size) in [0,1] (``pycompgen.codec.hint``), resized to the H/8 grid and added to the conv
    features before the residual blocks through two 3x3 convs (the last starts at zero); a hint larger than H/8
    (up to H/4) is added on the H/4 grid instead, before the last stride-2 conv. ``hint_bits`` is the
    quantiser a coded hint uses and ``hint_space`` its colour space (attributes, not weights).
    """

    def __init__(self, image_size: int = 64, channels: int = 64, num_res: int = 2, hidden: int = 1024,
                 latent_channels: int = 16, skips: bool = False, g_channels: int = 128, dropout: float = 0.0,
                 hint_size: int = 0, hint_bits: int = 4, hint_space: str = "rgb", norm: str = "batch",
                 skip_blocks: int = 0):
        super().__init__()
        if image_size % DOWNSAMPLE:
            raise ValueError(f"ELM needs image_size divisible by {DOWNSAMPLE}, got {image_size}")
        c2 = max(channels // 2, 1)
        self.image_size = image_size
        s = image_size // DOWNSAMPLE
        self.latent = (latent_channels, s, s)
        self.convs = nn.Sequential(
            conv5_down(1, c2), nn.ReLU(inplace=True),
            conv5_down(c2, channels), norm2d(norm, channels), nn.ReLU(inplace=True),
            conv5_down(channels, channels), norm2d(norm, channels), nn.ReLU(inplace=True),
        )
        self.res = nn.Sequential(*[ResidualBlock(channels, norm) for _ in range(num_res)])
        self.fc1 = nn.Linear(channels * s * s, hidden)
        self.fc2 = nn.Linear(hidden, latent_channels * s * s)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # on FC1's input and on its output
        self.skips = skips
        self.hint_size, self.hint_bits, self.hint_space = int(hint_size), int(hint_bits), str(hint_space)
        if self.hint_size:
            self.hint = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, channels, 3, padding=1))
            nn.init.zeros_(self.hint[2].weight)
            nn.init.zeros_(self.hint[2].bias)
        if skips:
            gc2 = max(g_channels // 2, 1)
            self.gate = nn.Linear(channels, channels + c2)
            self.proj16 = nn.Conv2d(channels, g_channels, 3, padding=1)
            self.proj32 = nn.Conv2d(c2, gc2, 3, padding=1)
            # skip_blocks residual blocks per skip: depth for the convolutional path, which shares its weights
            # over positions (the FC path is where training faces are memorised)
            self.skip16 = nn.Sequential(*[ResidualBlock(channels, norm) for _ in range(skip_blocks)])
            self.skip32 = nn.Sequential(*[ResidualBlock(c2, norm) for _ in range(skip_blocks)])
            for m in (self.proj16, self.proj32):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def _fc(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(self.drop(t)))))

    def _hint(self, hint, n: int):
        """The hint's features on the grid where they enter (H/8, or H/4 for a hint larger than H/8), or None for
        an edges-only h; one-line errors for a missing or wrong-shaped hint."""
        if not self.hint_size:
            if hint is not None:
                raise ValueError("ELM h takes no colour hint (model.hint_size=0), but one was given")
            return None
        want = (n, 3, self.hint_size, self.hint_size)
        if hint is None:
            raise ValueError(f"ELM h needs a colour hint of shape {want} (model.hint_size={self.hint_size})")
        if tuple(hint.shape) != want:
            raise ValueError(f"ELM h needs a colour hint of shape {want}, got {tuple(hint.shape)}")
        s = self.latent[1] * (2 if self.hint_size > self.latent[1] else 1)
        if self.hint_size != s:
            hint = torch.nn.functional.interpolate(hint, size=(s, s), mode="nearest")
        return self.hint(hint)

    def forward(self, z_noisy: torch.Tensor, return_skips: bool = False, hint: torch.Tensor | None = None):
        _check_image(z_noisy, 1, "ELM h", self.image_size)
        extra = self._hint(hint, z_noisy.shape[0])
        c = self.convs  # the paper's convs, run layer by layer so the skips and the hint can tap in
        t32 = c[1](c[0](z_noisy))
        t16 = c[4](c[3](c[2](t32)))
        if extra is not None and extra.shape[-1] == t16.shape[-1]:
            t16 = t16 + extra
        t8 = c[7](c[6](c[5](t16)))
        if extra is not None and extra.shape[-1] == t8.shape[-1]:
            t8 = t8 + extra
        t8 = self.res(t8)
        y_hat = self._fc(t8.flatten(1)).view(z_noisy.shape[0], *self.latent)
        if not (self.skips and return_skips):
            return y_hat
        gate = torch.sigmoid(self.gate(t8.mean((2, 3))))
        g16, g32 = gate[:, :t16.shape[1], None, None], gate[:, t16.shape[1]:, None, None]
        return y_hat, (self.proj16(self.skip16(t16) * g16), self.proj32(self.skip32(t32) * g32))


def build_compgen(model_cfg, image_size: int = 64) -> dict[str, nn.Module]:
    m = model_cfg
    nets = {
        "f": Encoder(m.channels, m.latent_channels, m.num_res, m.num_mult, m.norm, image_size=image_size),
        "g": Decoder(m.channels, m.latent_channels, m.num_res, m.num_mult, m.norm),
        "h": ELM(image_size, m.elm_channels, m.elm_num_res, m.elm_hidden, m.latent_channels,
                 skips=getattr(m, "elm_skips", False), g_channels=m.channels,
                 dropout=float(getattr(m, "elm_dropout", 0.0)), hint_size=int(getattr(m, "hint_size", 0)),
                 hint_bits=max(getattr(m, "hint_bits", [4]) or [4]), hint_space=getattr(m, "hint_space", "rgb"),
                 norm=getattr(m, "elm_norm", "batch"), skip_blocks=int(getattr(m, "elm_skip_blocks", 0))),
    }
    if getattr(m, "entropy_bottleneck", False):
        from pycompgen.codec.entropy import EntropyBottleneck
        nets["eb"] = EntropyBottleneck(m.latent_channels)
    return nets


def compgen_latent_shape(model_cfg, image_size: int = 64) -> tuple[int, int, int]:
    s = image_size // DOWNSAMPLE
    return (model_cfg.latent_channels, s, s)
