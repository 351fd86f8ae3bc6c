"""Networks of the edge-guided diffusion compressor (paper 002), all tiny and trained from scratch on faces.

- ``vae``: diffusers ``AutoencoderKL`` (KL-regularised, SD-style latent: ``latent_channels`` x H/4 x W/4).
- ``eb``: one ``EntropyBottleneck`` per quantisation bit depth (``QuantBank``), coding the latent on the grid Δ.
- ``een``: pix2pix U-Net generator (dequantised latent resized to image size -> edge logits).
- ``D``: pix2pix PatchGAN discriminator on (condition, edge map) pairs -> a map of patch logits.
- ``unet`` / ``control`` / ``null``: diffusers ``UNet2DConditionModel`` + ``ControlNetModel`` (edge map as the
  control image) + a learned null text embedding (the UNet's cross-attention needs ``encoder_hidden_states``).
- ``filler``: the completer (beyond the paper): lost latent cells regressed from what arrived and the holes' edges.
diffusers is imported only when networks are built (the system registry imports this package on config load).
"""
from __future__ import annotations

import torch
from torch import nn


class QuantBank(nn.Module):
    """One entropy bottleneck per bit depth: ``bank[str(bits)]`` codes y/Δ(bits) (unit-step grid)."""

    SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

    def __init__(self, channels: int, bits: list, c=None):
        super().__init__()
        from pycompgen.codec.entropy import EntropyBottleneck
        self.bits = [int(b) for b in bits]
        self.bank = nn.ModuleDict({str(b): EntropyBottleneck(channels) for b in self.bits})
        # what a receiver needs besides the weights (checkpointed and part of the weights hash of files)
        rx = [3.0, self.bits[-1], 1000, 10, 0, 25, 1]
        if c is not None:
            rx = [c.latent_range, c.eval_bits, c.train_timesteps, c.steps, self.SCHEDULES.index(c.beta_schedule),
                  c.complete_steps, int(c.project)]
        self.register_buffer("rx", torch.tensor(rx, dtype=torch.float64))

    def receiver_config(self):
        """The receiver's settings stored with the weights (``reconstruct`` has no config)."""
        from types import SimpleNamespace
        r = [float(v) for v in self.rx.cpu()]
        return SimpleNamespace(latent_range=r[0], eval_bits=int(r[1]), train_timesteps=int(r[2]), steps=int(r[3]),
                               beta_schedule=self.SCHEDULES[int(r[4])], complete_steps=int(r[5]),
                               project=bool(r[6]), bits=list(self.bits))

    def get(self, bits: int):
        if str(int(bits)) not in self.bank:
            raise ValueError(f"edgediff: no entropy model for {bits} bits (configured: {self.bits})")
        return self.bank[str(int(bits))]

    def loss(self) -> torch.Tensor:
        return sum(eb.loss() for eb in self.bank.values())


def _blk(cin, cout, down=True, norm=True, drop=False):
    if down:
        layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    else:
        layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    if drop:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.LeakyReLU(0.2, inplace=True) if down else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """pix2pix U-Net (Isola et al.): ``depth`` stride-2 encoder blocks, mirrored decoder with skips; edge logits."""

    def __init__(self, in_ch: int, out_ch: int = 1, channels: int = 32, depth: int = 4):
        super().__init__()
        self.downs = nn.ModuleList()
        c, widths = in_ch, []
        for i in range(depth):
            w = channels * 2 ** min(i, 3)
            self.downs.append(_blk(c, w, True, norm=i > 0))
            widths.append(w)
            c = w
        self.ups = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.ups.append(_blk(c, widths[i], False))
            c = widths[i] * 2
        self.out = nn.ConvTranspose2d(c, out_ch, 4, 2, 1)

    def forward(self, x):
        skips = []
        for d in self.downs:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.ups:
            x = torch.cat([u(x), skips.pop()], 1)
        return self.out(x)


class PatchGAN(nn.Module):
    """pix2pix PatchGAN discriminator: (condition, edges) -> (N, 1, h, w) patch logits."""

    def __init__(self, in_ch: int, channels: int = 32, depth: int = 3):
        super().__init__()
        layers, c = [], in_ch
        for i in range(depth):
            w = channels * 2 ** i
            layers += [nn.Conv2d(c, w, 4, 2 if i < depth - 1 else 1, 1, bias=i == 0)]
            if i > 0:
                layers.append(nn.InstanceNorm2d(w, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c = w
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class NullEmbedding(nn.Module):
    """A learned "empty prompt": (1, tokens, dim), broadcast to the batch as ``encoder_hidden_states``."""

    def __init__(self, dim: int, tokens: int = 1):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)

    def forward(self, n: int) -> torch.Tensor:
        return self.emb.expand(n, -1, -1)


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.a = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.b = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h):
        return h + self.b(nn.functional.silu(self.a(nn.functional.silu(h))))


class Filler(nn.Module):
    """The completer: the lost latent cells regressed from what arrived, at the latent grid. Input
    (``filler_in_channels``): the zero fill of the received latent, the known mask, the holes' edge map
    pixel-unshuffled onto the grid (zeros where known or when no edges were sent), a "holes' edges sent" mask and the
    quantisation step Δ/R; residual blocks with dilations 1, 2, 1, 2, ...; output: a latent whose lost cells are
    used. ``steps`` counts its training steps: 0 (a freshly built filler) means untrained, and the receiver then
    completes by diffusion."""

    def __init__(self, in_ch: int, out_ch: int, width: int = 96, blocks: int = 5):
        super().__init__()
        self.inp = nn.Conv2d(in_ch, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_DilatedBlock(width, 1 + i % 2) for i in range(blocks)])
        self.out = nn.Conv2d(width, out_ch, 3, padding=1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        return self.out(nn.functional.silu(self.blocks(self.inp(x))))


def filler_in_channels(c) -> int:
    """The completer's input channels: received latent + known mask + unshuffled holes' edges + sent mask + Δ/R."""
    down = 2 ** (len(c.vae_channels) - 1)
    return c.latent_channels + 1 + down * down + 1 + 1


def denoiser_in_channels(c) -> int:
    """The UNet's (and ControlNet's) input channels (``input_blocks``). With ``edge_concat`` the edges enter at
    the first convolution, where their weights get a gradient from the first step (the ControlNet's path crosses
    two zero-initialised convolutions in series, so its gradient starts at zero and grows slowly)."""
    return sum(input_blocks(c))


def input_blocks(c) -> tuple[int, int, int]:
    """Channels of the denoiser's input blocks, in order: the noisy latent, the pixel-unshuffled edge map
    (``edge_concat``, else 0) and the received latent where known + the known mask (``known_concat``, else 0)."""
    down = 2 ** (len(c.vae_channels) - 1)
    return (c.latent_channels, down * down if c.edge_concat else 0,
            c.latent_channels + 1 if c.known_concat else 0)


def build_all(c, image_size: int) -> dict:
    """Every network of the system for config section ``c`` (``cfg.edgediff``)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    down = 2 ** (len(c.vae_channels) - 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(c.vae_channels),
                        up_block_types=("UpDecoderBlock2D",) * len(c.vae_channels),
                        block_out_channels=tuple(c.vae_channels), layers_per_block=1,
                        latent_channels=c.latent_channels, norm_num_groups=c.norm_groups, sample_size=image_size)
    n = len(c.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=image_size // down, in_channels=denoiser_in_channels(c),
        out_channels=c.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        block_out_channels=tuple(c.unet_channels), layers_per_block=1, cross_attention_dim=c.cross_dim,
        attention_head_dim=c.head_dim, norm_num_groups=c.norm_groups)
    # conditioning embedding: one stride-2 conv per entry after the first -> image size / down = latent size
    cond = tuple(max(16, c.unet_channels[0] // 2) * 2 ** min(i, 2) for i in range(len(c.vae_channels)))
    control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond, conditioning_channels=1)
    unet.input_blocks = input_blocks(c)    # read by receiver.predict_eps (not a weight)
    zin = c.latent_channels
    return {"vae": vae, "eb": QuantBank(c.latent_channels, c.bits, c),
            "een": UNetGenerator(zin, 1, c.een_channels, c.een_depth),
            "D": PatchGAN(zin + 1, c.disc_channels),
            "unet": unet, "control": control, "null": NullEmbedding(c.cross_dim),
            "filler": Filler(filler_in_channels(c), c.latent_channels, c.filler_width, c.filler_blocks)}
