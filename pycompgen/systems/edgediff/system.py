"""Edge-guided diffusion compression (paper 002) as a system of the harness: four stages and a fifth beyond the paper.

- ``vae``: KL-regularised conv VAE (diffusers ``AutoencoderKL``, latent C x H/4 x W/4) + one entropy bottleneck
  per bit depth. Quantisation: uniform with step Δ = 2R / 2^bits on the latent squashed into (-R, R) by
  R·tanh(·/R) (``receiver.squash``, in training as at inference); the entropy models fit the latent with additive
  uniform noise U(-Δ/2, Δ/2) at a random configured bit depth, rounding at inference. The decoder learns from the
  clean squashed latent (``decoder_noise=False``, as the paper's Stable Diffusion VAE never saw quantisation
  noise): a decoder trained on the noisy latent absorbs the quantisation error itself and leaves a denoiser no
  room (measured: at most 0.85 dB). Loss: recon_weight·L1 + kl_weight·KL (+ rate_weight·bpp) + the bottlenecks'
  quantile losses.
- ``een``: Edge Estimation Network (pix2pix U-Net) from the dequantised latent (bilinearly resized to the image)
  to the Canny map (``pycompgen.ops.canny`` with ``data.canny_low/high``), against a PatchGAN:
  L_G = L_adv + λ·L1, L_D = L_adv (paper eqs 1-3), optionally + een_bce_weight·class-balanced BCE. VAE frozen.
  Its best.pt is picked by validation edge-F1.
- ``denoiser``: ``UNet2DConditionModel`` + ``ControlNetModel`` (edge map as control image, learned null
  embedding as the cross-attention context), ε-prediction MSE (eq 4) with diffusers' ``DDPMScheduler``, trained
  where the receiver uses it: timesteps drawn up to the receiver's largest start timestep t* (``t_sampling``,
  ``uniform_share`` of them over all of [0, T) for completion from pure noise), and ``quantised_share`` of each
  batch on real quantised latents at t* (input sqrt(ᾱ)·ŷ, target the noise that ŷ − y implies); conditioned on
  the EEN's edges of ŷ (``een_edge_share``; the rest true Canny edges), dropped to zeros with probability
  ``edge_dropout`` so the zero-edge input is the unconditional "SDC" model. With ``known_concat`` the denoiser
  also takes the received latent where known and the known mask (zeros when denoising), and ``complete_share`` of
  each batch trains completion: lost rectangles, t uniform over [0, T), the sender's true edges inside the lost
  regions and the EEN's of the zero fill elsewhere, lost and known values weighted equally (logged ``lost_mse``).
  best.pt by the ε-MSE on real quantised validation latents at t* of ``eval_bits`` (``val_loss``). VAE and EEN
  frozen.
- ``entropy``: the entropy models fitted again, every bit depth at every step, on the frozen encoder's posterior
  means (what the sender codes) with ``entropy_steps_per_batch`` Adam steps per batch at ``lr_entropy``. In the
  ``vae`` stage each bit depth's model sees a quarter of a few hundred steps of noisy samples at the VAE's learning
  rate, far too few for a factorised density that starts ±10 wide (measured: 1.10 bpp at 1 bit, above the 0.40 bpp
  of coding every value raw, log2(3 levels)/4; empirical entropy 0.18). The medians stay fixed (gradient only to the tail
  quantiles): they set the quantisation grid the EEN and denoiser were trained on. Last in the pipeline, so its
  checkpoint holds the whole receiver (what files are coded with); best.pt by the mean validation bpp over bit
  depths (``val_loss``).
- ``completer`` (beyond the paper): the ``filler`` regresses the lost latent cells from the received latent, the
  known mask, the bit depth and, for ``filler_edge_share`` of the samples, the sender's Canny map inside the holes
  (the rest get none, so one network serves both): MSE to the true latent over the lost cells, 1..complete_regions
  rectangles at a random bit depth. Everything else frozen; its checkpoint holds the whole receiver. best.pt by
  that MSE on validation faces with the holes' edges sent (``val_loss``); ``val_lost_mse_no_edges`` and
  ``val_edges_gain_db`` (PSNR with − without the holes' edges) beside it.
Receiver, channel, completion and bitstream: ``pycompgen.systems.edgediff.receiver``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from pycompgen.registry import register_system
from pycompgen.systems.base import StageSpec, System, adam, check_fields, latent_rate


@dataclass
class EdgeDiffConfig:
    vae_channels: list[int] = field(default_factory=lambda: [32, 64, 64])   # 3 levels: latent at H/4
    latent_channels: int = 4
    norm_groups: int = 8
    latent_range: float = 3.0      # R: the latent is squashed into (-R, R) before quantisation
    bits: list[int] = field(default_factory=lambda: [1, 2, 3, 4])  # quantisation bit depths (one entropy model each)
    eval_bits: int = 2             # bit depth of validation / reconstruct
    decoder_noise: bool = False    # the VAE decoder learns from the noisy latent (absorbs the quantisation error);
                                   # False: from the clean squashed latent, as the paper's VAE
    kl_weight: float = 1e-4
    recon_weight: float = 1.0
    rate_weight: float = 0.0
    lr_vae: float = 1e-3
    een_channels: int = 32
    een_depth: int = 4
    disc_channels: int = 32
    een_l1_weight: float = 100.0   # λ of eq 2 (pix2pix)
    een_bce_weight: float = 0.0    # class-balanced BCE (HED) added to eq 2; 0 = the paper's loss
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas_gan: list[float] = field(default_factory=lambda: [0.5, 0.999])
    unet_channels: list[int] = field(default_factory=lambda: [32, 64])
    cross_dim: int = 32
    head_dim: int = 8
    train_timesteps: int = 1000
    beta_schedule: str = "linear"
    edge_dropout: float = 0.15
    t_sampling: str = "matched"    # denoiser timesteps: "uniform" over [0, T) | "matched": up to the receiver's t*
    uniform_share: float = 0.2     # with "matched": this share still uniform over [0, T) (completion starts at T)
    quantised_share: float = 0.5   # share of each batch on real quantised latents at the receiver's start step
    een_edge_share: float = 0.7    # share conditioned on the EEN's edges of ŷ (what the receiver has); rest Canny
    project: bool = True           # receiver: each predicted clean latent kept inside ŷ's quantisation cell
    edge_concat: bool = False      # the edge map also enters the UNet and ControlNet as input channels
                                   # (pixel-unshuffled onto the latent grid: down² channels); see networks.build_all
    known_concat: bool = False     # completion conditioned on what arrived: the received latent where known and the
                                   # known mask (latent_channels + 1 channels) also enter the UNet and ControlNet
                                   # (as Stable Diffusion's inpainting UNet); zeros when denoising
    complete_share: float = 0.0    # share of each denoiser batch trained for completion (needs known_concat):
                                   # 1..complete_regions lost rectangles up to loss_max_frac of each side, t uniform
                                   # over [0, T), the sender's true edges in the lost regions and the EEN's elsewhere
    complete_regions: int = 8
    lr_denoiser: float = 2e-4
    lr_control: Optional[float] = None  # the ControlNet's own rate (default lr_denoiser): its zero convolutions
                                        # start the edge path at 0 and grow slowly ("sudden convergence" after
                                        # thousands of steps); measured at 500 steps: edges moved ε by ~0.005
    steps: int = 10                # DDIM steps from the matched timestep (receiver)
    complete_steps: int = 25       # DDIM steps of the completion (from pure noise, RePaint-style)
    val_steps: int = 4             # DDIM steps used in validation
    lr_entropy: float = 5e-3       # entropy stage: Adam learning rate of the entropy models
    entropy_steps_per_batch: int = 4  # entropy stage: updates per encoded batch (the encoder pass is the cost)
    loss_max_frac: float = 0.125   # lost region: up to this fraction of each latent side
    loss_regions: int = 3
    filler_width: int = 96         # the completer (stage ``completer``, beyond the paper): conv width and blocks
    filler_blocks: int = 5
    lr_filler: float = 1e-3
    filler_edge_share: float = 0.5  # share of completer samples whose holes' edges are sent (the rest: none)

    def validate(self, cfg) -> None:
        if len(self.vae_channels) < 2 or any(c < 1 for c in self.vae_channels):
            raise ValueError(f"edgediff.vae_channels must be >= 2 positive widths, got {self.vae_channels}")
        if not self.bits or any(not 1 <= b <= 16 for b in self.bits):
            raise ValueError(f"edgediff.bits must be bit depths in 1..16, got {self.bits}")
        if self.eval_bits not in self.bits:
            raise ValueError(f"edgediff.eval_bits={self.eval_bits} must be one of edgediff.bits={self.bits}")
        if self.latent_range <= 0:
            raise ValueError("edgediff.latent_range must be > 0")
        check_fields("edgediff", self, ">= 0", "kl_weight", "recon_weight", "rate_weight", "een_l1_weight",
                     "een_bce_weight")
        check_fields("edgediff", self, "> 0", "lr_vae", "lr_g", "lr_d", "lr_denoiser", "lr_entropy", "lr_filler")
        check_fields("edgediff", self, ">= 1", "filler_width", "filler_blocks")
        if self.lr_control is not None and not self.lr_control > 0:
            raise ValueError(f"edgediff.lr_control must be > 0 (or null: lr_denoiser), got {self.lr_control}")
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"edgediff.beta_schedule must be linear, scaled_linear or squaredcos_cap_v2, "
                             f"got {self.beta_schedule!r}")
        if not 0 <= self.edge_dropout < 1:
            raise ValueError("edgediff.edge_dropout must be in [0, 1)")
        if self.t_sampling not in ("uniform", "matched"):
            raise ValueError(f"edgediff.t_sampling must be 'uniform' or 'matched', got {self.t_sampling!r}")
        for k in ("uniform_share", "quantised_share", "een_edge_share", "complete_share", "filler_edge_share"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"edgediff.{k} must be in [0, 1], got {getattr(self, k)}")
        if not 0 < self.loss_max_frac <= 1 or self.loss_regions < 0:
            raise ValueError("edgediff.loss_max_frac must be in (0, 1] and loss_regions >= 0")
        if self.complete_share > 0 and not self.known_concat:
            raise ValueError("edgediff.complete_share > 0 needs edgediff.known_concat=true (the denoiser must see "
                             "what arrived)")
        if self.complete_regions < 1:
            raise ValueError(f"edgediff.complete_regions must be >= 1, got {self.complete_regions}")
        check_fields("edgediff", self, ">= 1", "steps", "complete_steps", "val_steps", "entropy_steps_per_batch")
        for c in self.vae_channels + self.unet_channels:
            if c % self.norm_groups:
                raise ValueError(f"edgediff: widths must be multiples of norm_groups={self.norm_groups}, got {c}")
        down = 2 ** (len(self.vae_channels) - 1)
        if cfg.data.image_size % (down * 2 ** (len(self.unet_channels) - 1)):
            raise ValueError(f"edgediff: data.image_size={cfg.data.image_size} must be divisible by the VAE's x{down} "
                             f"downsampling times the UNet's")


class DenoiserBatch(NamedTuple):
    """One denoiser training batch: x_t, t, the target noise, the edge map, the completion condition
    (``receiver.known_input``; None without ``known_concat``), per-value loss weights, which samples are completion
    samples (N,) and their known masks (N, 1, h, w)."""
    xt: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    edges: torch.Tensor
    known_cond: Optional[torch.Tensor]
    weight: torch.Tensor
    complete: torch.Tensor
    known: torch.Tensor


def canny_target(x, cfg):
    from pycompgen.ops import canny
    d = cfg.data
    return canny(x.float().contiguous(), d.canny_low, d.canny_high, blur_sigma=d.blur_sigma)


@register_system
class EdgeDiff(System):
    name = "edgediff"
    description = "edge-guided diffusion compression (paper 002)"
    section = EdgeDiffConfig
    stages = {
        "vae": StageSpec("vae", ("vae", "eb"), ("vae", "eb"), (), 20,
                         "KL VAE + uniform quantisation (noise in training) + entropy models per bit depth"),
        "een": StageSpec("een", ("vae", "eb", "een", "D"), ("een", "D"), ("vae", "eb"), 10,
                         "Edge Estimation Network (pix2pix U-Net) vs PatchGAN; VAE frozen",
                         select=("val_edge_f1", "max")),   # val SSIM is the frozen VAE's: constant
        "denoiser": StageSpec("denoiser", ("vae", "eb", "een", "unet", "control", "null"),
                              ("unet", "control", "null"), ("vae", "eb", "een"), 20,
                              "ControlNet-conditioned latent denoiser, ε-prediction with DDPM; VAE, EEN frozen",
                              select=("val_loss", "min")),     # ε-MSE on quantised validation latents at t*
        "entropy": StageSpec("entropy", ("vae", "eb", "een", "unet", "control", "null"), ("eb",),
                             ("vae", "eb", "een", "unet", "control", "null"), 2,
                             "entropy models of every bit depth fitted on the frozen encoder's latents (medians "
                             "fixed); the whole receiver in one checkpoint",
                             select=("val_loss", "min")),      # mean validation bpp over the bit depths
        "completer": StageSpec("completer", ("vae", "eb", "een", "unet", "control", "null", "filler"), ("filler",),
                               ("vae", "eb", "een", "unet", "control", "null"), 12,
                               "the completer (beyond the paper): lost latent cells regressed from what arrived and "
                               "the holes' sender-side edges; the whole receiver in one checkpoint",
                               select=("val_loss", "min")),    # MSE of the lost latent values, holes' edges sent
    }

    def __init__(self, cfg, device, init=None, *, resume_state=None, wrap_module=lambda m: m):
        # No DDP wrappers: the VAE is called through encode()/decode() (not forward) and only one entropy model of
        # the bank is used per step, which DDP (without find_unused_parameters) cannot handle. Gradients are
        # averaged across ranks in ``step`` instead (every parameter of the optimiser, missing ones as zeros).
        super().__init__(cfg, device, init, resume_state=resume_state, wrap_module=lambda m: m)

    def filter_init(self, init: dict) -> dict:
        """Handed-over weights; a UNet / ControlNet without edge input channels starts one with them
        (``edge_concat``) with those channels' input weights at zero, so it begins as the handed-over denoiser
        (as Stable Diffusion's inpainting UNet extends its conv_in)."""
        init = super().filter_init(init)
        from .networks import denoiser_in_channels
        want = denoiser_in_channels(self.cfg.edgediff)
        for k in ("unet", "control"):
            w = (init.get(k) or {}).get("conv_in.weight")
            if w is not None and w.shape[1] < want:
                pad = w.new_zeros(w.shape[0], want - w.shape[1], *w.shape[2:])
                init[k] = {**init[k], "conv_in.weight": torch.cat([w, pad], 1)}
        return init

    def load_training_state(self, state: dict) -> None:
        """As the harness; a denoiser checkpoint from before ``lr_control`` (one parameter group over unet, control,
        null) resumes into the two groups (unet + null, control), each parameter keeping its Adam moments."""
        sd = (state.get("optimizers") or {}).get("main")
        cur = self.optimizers.get("main")
        if self.spec.name == "denoiser" and sd and len(sd["param_groups"]) == 1 and len(cur.param_groups) == 2:
            n = [len(list(self.models[k].parameters())) for k in ("unet", "control", "null")]
            unet, control, null = range(n[0]), range(n[0], n[0] + n[1]), range(n[0] + n[1], sum(n))
            order = [*unet, *null, *control]          # new index i holds old index order[i]
            hyper = [{k: v for k, v in g.items() if k != "params"} for g in cur.param_groups]
            split = n[0] + n[2]
            sd = {"state": {i: sd["state"][o] for i, o in enumerate(order) if o in sd["state"]},
                  "param_groups": [{**hyper[0], "params": list(range(split))},
                                   {**hyper[1], "params": list(range(split, len(order)))}]}
            state = {**state, "optimizers": {**state["optimizers"], "main": sd}}
        super().load_training_state(state)

    def step(self, loss, optimizer: str = "main", inputs=None) -> None:
        opt = self.optimizers[optimizer]
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs)
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
            ps = [p for g in opt.param_groups for p in g["params"]]
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            for p, g in zip(ps, _unflatten_dense_tensors(flat, grads)):
                p.grad = g
        opt.step()

    @classmethod
    def build_networks(cls, cfg) -> dict:
        from .networks import build_all
        return build_all(cfg.edgediff, cfg.data.image_size)

    def configure_optimizers(self) -> dict:
        c, s = self.cfg.edgediff, self.spec.name
        ps = lambda *ks: [p for k in ks for p in self.models[k].parameters()]
        if s == "vae":
            return {"main": adam(ps("vae", "eb"), lr=c.lr_vae)}
        if s == "een":
            return {"G": adam(ps("een"), lr=c.lr_g, betas=tuple(c.betas_gan)),
                    "D": adam(ps("D"), lr=c.lr_d, betas=tuple(c.betas_gan))}
        if s == "entropy":
            return {"main": adam(ps("eb"), lr=c.lr_entropy)}
        if s == "completer":
            return {"main": adam(ps("filler"), lr=c.lr_filler)}
        groups = [{"params": ps("unet", "null")}, {"params": ps("control"), "lr": c.lr_control or c.lr_denoiser}]
        return {"main": torch.optim.AdamW(groups, lr=c.lr_denoiser, weight_decay=0.0)}

    # -- stages -------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        return getattr(self, f"_step_{self.spec.name}")(batch)

    def _step_vae(self, batch):
        from . import receiver as R
        c, x = self.cfg.edgediff, batch["x"]
        bits = c.bits[int(torch.randint(len(c.bits), (1,)))]
        delta = R.step_size(c, bits)
        with self.autocast():
            post = self.nets["vae"].encode(2 * x - 1).latent_dist
            z = R.squash(post.sample().float(), c.latent_range)
        y_hat, bpp, rate = latent_rate(self.models["eb"].get(bits), z / delta, c.rate_weight, x.shape[-1] * x.shape[-2])
        with self.autocast():
            x_hat = (self.nets["vae"].decode(y_hat * delta if c.decoder_noise else z).sample.float() + 1) / 2
        rec = (x_hat - x).abs().mean()
        kl = post.kl().float().mean() / x[0].numel()
        loss = c.recon_weight * rec + c.kl_weight * kl + rate / x.shape[0] + self.models["eb"].loss()
        self.step(loss)
        return {"loss": rec.detach(), "kl": kl.detach(), "bpp": (bpp / x.shape[0]).detach()}

    def _step_een(self, batch):
        from . import receiver as R
        c, x = self.cfg.edgediff, batch["x"]
        n = x.shape[0]
        with torch.no_grad():
            bits = c.bits[int(torch.randint(len(c.bits), (1,)))]
            y_hat = R.quantise(self.models, c, R.encode(self.models, c, x), bits)[0]
            cond = R.latent_to_image(y_hat, x.shape[-1])
            target = canny_target(x, self.cfg)
        with self.autocast():
            logits_e = self.nets["een"](cond).float()
            fake = torch.sigmoid(logits_e)
            d_in = torch.cat([torch.cat([cond, target], 1), torch.cat([cond, fake.detach()], 1)])
            logits = self.nets["D"](d_in).float()
        lab = torch.cat([torch.ones_like(logits[:n]), torch.zeros_like(logits[n:])])
        loss_d = F.binary_cross_entropy_with_logits(logits, lab)           # eq 3
        self.step(loss_d, "D")
        with self.autocast():
            fl = self.models["D"](torch.cat([cond, fake], 1)).float()
        adv = F.binary_cross_entropy_with_logits(fl, torch.ones_like(fl))  # eq 1
        l1 = (fake - target).abs().mean()
        loss_g = adv + c.een_l1_weight * l1                                # eq 2
        logs = {}
        if c.een_bce_weight:
            # L1 on sparse binary targets is minimised by "no edge" wherever p(edge) < 0.5; weighting each class
            # by the other's share (HED) makes missing an edge cost as much in total as a false one
            pos = target.mean()
            w = torch.where(target > 0.5, 1 - pos, pos) * 2
            bce = F.binary_cross_entropy_with_logits(logits_e, target, weight=w)
            loss_g = loss_g + c.een_bce_weight * bce
            logs["bce"] = bce.detach()
        self.step(loss_g, "G", inputs=list(self.models["een"].parameters()))
        return {"loss": l1.detach(), "loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "adv": adv.detach(),
                **logs}

    def _step_entropy(self, batch):
        from pycompgen.codec.entropy import EntropyBottleneck
        from . import receiver as R
        c, x = self.cfg.edgediff, batch["x"]
        with torch.no_grad():
            y = R.encode(self.models, c, x)
        pixels = x.shape[0] * x.shape[-1] * x.shape[-2]
        for _ in range(c.entropy_steps_per_batch):
            bpp = {}
            for b in c.bits:
                with torch.autocast(y.device.type, enabled=False):
                    _, lik = self.models["eb"].get(b)(y / R.step_size(c, b))
                bpp[b] = EntropyBottleneck.rate_bits(lik) / pixels
            loss = sum(bpp.values()) + sum(eb.loss(tails_only=True) for eb in self.models["eb"].bank.values())
            self.step(loss)
        return {"loss": (sum(bpp.values()) / len(bpp)).detach(), **{f"bpp_{b}": v.detach() for b, v in bpp.items()}}

    def _lost_regions(self, shape, dev, generator=None) -> torch.Tensor:
        """A training known mask (N, 1, h, w): 1..complete_regions lost rectangles up to loss_max_frac of each side."""
        from . import receiver as R
        c = self.cfg.edgediff
        regions = int(torch.randint(1, c.complete_regions + 1, (1,), device=dev, generator=generator))
        seed = int(torch.randint(2 ** 31 - 1, (1,), device=dev, generator=generator))
        return R.drop_regions(shape, c.loss_max_frac, regions, seed=seed).to(dev)

    def _completer_batch(self, x, generator=None, bits=None, edge_share=None):
        """(true latent y, received ŷ, known mask (N, 1, h, w), the sender's Canny map, which samples send the
        holes' edges (N,), bits): 1..complete_regions lost rectangles up to loss_max_frac of each side at a random
        configured bit depth; ``bits`` and ``edge_share`` fixed for validation."""
        from . import receiver as R
        c, n, dev = self.cfg.edgediff, x.shape[0], x.device
        with torch.no_grad():
            y = R.encode(self.models, c, x)
            if bits is None:
                bits = c.bits[int(torch.randint(len(c.bits), (1,), device=dev, generator=generator))]
            y_hat = R.quantise(self.models, c, y, bits)[0]
            known = self._lost_regions(y.shape, dev, generator)
            share = c.filler_edge_share if edge_share is None else edge_share
            sent = torch.rand(n, device=dev, generator=generator) < share
            return y, y_hat, known, canny_target(x, self.cfg), sent, bits

    @staticmethod
    def _lost_mse(pred, y, known):
        lost = (~known).to(pred.dtype).expand_as(pred)
        return (((pred - y) ** 2) * lost).sum() / lost.sum().clamp_min(1)

    def _step_completer(self, batch):
        from . import receiver as R
        c = self.cfg.edgediff
        y, y_hat, known, edges, sent, bits = self._completer_batch(batch["x"])
        with self.autocast():
            pred = R.filler_predict(self.nets, c, y_hat, known, bits, edges, sent).float()
        loss = self._lost_mse(pred, y, known)
        self.step(loss)
        R._m(self.models, "filler").steps += 1
        return {"loss": loss.detach()}

    def _t_start(self, bits: int) -> int:
        """The receiver's start timestep at ``bits`` (computed once per bit depth, not every step)."""
        from . import receiver as R
        cache = self.__dict__.setdefault("_t_starts", {})
        if bits not in cache:
            cache[bits] = R.start_timestep(self.cfg.edgediff, bits)
        return cache[bits]

    def _denoiser_batch(self, x, generator=None, bits=None, quantised_share=None, complete_share=None):
        """One denoiser batch (``DenoiserBatch``; see the module docstring); ``bits``, ``quantised_share`` and
        ``complete_share`` fixed for validation."""
        from . import receiver as R
        c, n, dev = self.cfg.edgediff, x.shape[0], x.device
        rand = lambda *s: torch.rand(*s, device=dev, generator=generator)  # noqa: E731
        sched = R.ddpm(c)
        T = sched.config.num_train_timesteps
        comp_share = c.complete_share if complete_share is None else complete_share
        comp = rand(n) < comp_share if comp_share > 0 else torch.zeros(n, dtype=torch.bool, device=dev)
        with torch.no_grad():
            y0 = R.encode(self.models, c, x)
            if bits is None:
                bits = c.bits[int(torch.randint(len(c.bits), (1,), device=dev, generator=generator))]
            y_hat = R.quantise(self.models, c, y0, bits)[0]
            known = torch.ones(n, 1, *y0.shape[-2:], dtype=torch.bool, device=dev)
            if bool(comp.any()):   # completion samples: lost rectangles, what arrived as the condition
                drop = self._lost_regions(y0.shape, dev, generator)
                known = torch.where(comp.view(n, 1, 1, 1), drop, known)
            y_rx = torch.where(known, y_hat, torch.zeros_like(y_hat))    # the zero fill of what arrived
            true = canny_target(x, self.cfg)
            edges = true
            if c.een_edge_share > 0 or bool(comp.any()):
                een = R.een_edges(self.models, y_rx, x.shape[-1])
                use = (rand(n, 1, 1, 1) < c.een_edge_share) | comp.view(n, 1, 1, 1)
                edges = torch.where(use, een, true)
            lost = R.lost_pixels(known, x.shape[-1]) > 0              # the sender's true edges where lost
            edges = torch.where(lost, true, edges)
            edges = edges * (rand(n, 1, 1, 1) >= c.edge_dropout).float()
        t = torch.randint(0, T, (n,), device=dev, generator=generator)
        if c.t_sampling == "matched":
            t_max = max([self._t_start(b) for b in c.bits] + [0])
            near = torch.randint(0, t_max + 1, (n,), device=dev, generator=generator)
            t = torch.where(rand(n) < c.uniform_share, t, near)
            if bool(comp.any()):   # completion runs from start·T down: every timestep
                t = torch.where(comp, torch.randint(0, T, (n,), device=dev, generator=generator), t)
        noise = torch.randn(y0.shape, device=dev, generator=generator)
        xt = sched.add_noise(y0, noise, t)
        share = c.quantised_share if quantised_share is None else quantised_share
        t_q = self._t_start(bits)
        if share > 0 and t_q >= 0:  # the received latent at the receiver's start step, and the noise it implies
            a = sched.alphas_cumprod[t_q].to(y0)
            q = (rand(n) < share) & ~comp
            qv = q.view(n, 1, 1, 1)
            xt = torch.where(qv, a.sqrt() * y_hat, xt)
            noise = torch.where(qv, a.sqrt() * (y_hat - y0) / (1 - a).sqrt(), noise)
            t = torch.where(q, torch.full_like(t, t_q), t)
        cond = None
        weight = torch.ones(n, 1, *y0.shape[-2:], device=dev)
        if c.known_concat:
            cond = torch.where(comp.view(n, 1, 1, 1), R.known_input(y_rx, known), torch.zeros(()).to(y0))
            # a completion sample weighs its lost and its known values equally (the lost ones are few)
            kf = known.float()
            n_lost = (1 - kf).sum((2, 3), keepdim=True).clamp_min(1)
            n_known = kf.sum((2, 3), keepdim=True).clamp_min(1)
            hw = kf.shape[-1] * kf.shape[-2]
            w = 0.5 * hw * (kf / n_known + (1 - kf) / n_lost)
            weight = torch.where(comp.view(n, 1, 1, 1), w, weight)
        return DenoiserBatch(xt, t, noise, edges, cond, weight, comp, known)

    def _step_denoiser(self, batch):
        from . import receiver as R
        b = self._denoiser_batch(batch["x"])
        with self.autocast():
            eps = R.predict_eps(self.nets, b.xt, b.t, b.edges, known=b.known_cond).float()
        err = (eps - b.noise) ** 2
        loss = (err * b.weight).mean()                                     # eq 4 (weighted for completion)
        self.step(loss)
        logs = {"loss": loss.detach()}
        if bool(b.complete.any()):
            lost = (~b.known).expand_as(err) & b.complete.view(-1, 1, 1, 1)
            logs["lost_mse"] = err[lost].mean().detach() if bool(lost.any()) else err.new_zeros(())
        return logs

    def _denoiser_val_loss(self, x, quantised_share: float) -> torch.Tensor:
        from . import receiver as R
        g = torch.Generator(x.device).manual_seed(0)
        b = self._denoiser_batch(x, g, self.cfg.edgediff.eval_bits, quantised_share, complete_share=0.0)
        with self.autocast():
            return F.mse_loss(R.predict_eps(self.nets, b.xt, b.t, b.edges, known=b.known_cond).float(), b.noise)

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict:
        from . import receiver as R
        c, x, s = self.cfg.edgediff, batch["x"], self.spec.name
        y = R.encode(self.models, c, x)
        y_hat, bpp = R.quantise(self.models, c, y, c.eval_bits)
        out = {"bpp": bpp.mean()}
        if s == "entropy":
            for b in c.bits:
                out[f"bpp_{b}"] = bpp.mean() if b == c.eval_bits else R.quantise(self.models, c, y, b)[1].mean()
            out["loss"] = sum(out[f"bpp_{b}"] for b in c.bits) / len(c.bits)
            x_hat = R.decode(self.models, y_hat)
        elif s == "vae":
            x_hat = R.decode(self.models, y_hat)
            out["loss"] = (x_hat - x).abs().mean()
        elif s == "een":
            e = R.een_edges(self.models, y_hat, x.shape[-1])
            target = canny_target(x, self.cfg)
            out["loss"] = (e - target).abs().mean()
            out["edge_f1"] = R.edge_f1(e, target).mean()
            x_hat = R.decode(self.models, y_hat)
        elif s == "completer":
            # the bench's operating point: eval_bits, complete_regions rectangles, holes' edges sent or not
            g = torch.Generator(x.device).manual_seed(0)
            y, y_hat, known, edges, _, bits = self._completer_batch(x, g, c.eval_bits, 1.0)
            with_e = R.fill(self.models, c, y_hat, known, bits, edges)
            without = R.fill(self.models, c, y_hat, known, bits)
            out["loss"] = self._lost_mse(with_e, y, known)
            out["lost_mse_no_edges"] = self._lost_mse(without, y, known)
            x_hat = R.decode(self.models, with_e)
            from pycompgen.metrics import psnr
            out["edges_gain_db"] = (psnr(x_hat, x) - psnr(R.decode(self.models, without), x)).mean()
        else:
            # the error where the receiver works: ε-MSE on the real quantised latents at t* (best.pt by it)
            out["eps_mse"] = self._denoiser_val_loss(x, 0.0)  # over the training timesteps
            out["loss"] = self._denoiser_val_loss(x, 1.0) if self._t_start(c.eval_bits) >= 0 else out["eps_mse"]
            x_hat = R.receive(self.models, c, y_hat, c.eval_bits, mode="full", steps=c.val_steps, seed=0)
            from pycompgen.metrics import psnr
            out["gain_db"] = (psnr(x_hat, x) - psnr(R.decode(self.models, y_hat), x)).mean()
        out["x_hat"] = x_hat
        return out

    @classmethod
    def reconstruct(cls, stage: str, models: dict, batch: dict) -> torch.Tensor:
        """W/O decoding for stages vae / een, the full receiver (EEN edges, DDIM) for denoiser and entropy."""
        from . import receiver as R
        c = R._m(models, "eb").receiver_config()
        y_hat, _ = R.quantise(models, c, R.encode(models, c, batch["x"]), c.eval_bits)
        if stage in ("denoiser", "entropy", "completer"):
            return R.receive(models, c, y_hat, c.eval_bits, mode="full", steps=c.steps, seed=0)
        return R.decode(models, y_hat)

    @classmethod
    def latent(cls, models: dict, x: torch.Tensor) -> torch.Tensor:
        from . import receiver as R
        return R.encode(models, R._m(models, "eb").receiver_config(), x)


SYSTEM = EdgeDiff
__all__ = ["EdgeDiff", "EdgeDiffConfig"]
