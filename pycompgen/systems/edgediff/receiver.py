"""Sender, channel and receiver of the edge-guided diffusion compressor.

- ``encode``: posterior mean of the VAE squashed into (-R, R) by ``squash`` (R·tanh(·/R), the same map as in
  training). ``quantise``: ŷ = Δ·(round(y/Δ − m) + m) with
  Δ = 2R/2^bits and m the entropy model's per-channel median (uniform grid; what ``compress`` codes exactly).
- ``receive``: ŷ -> EEN edges -> DDIM reverse process started at the timestep t* whose noise-to-signal ratio
  sqrt((1−ᾱ_t)/ᾱ_t) is closest to the quantisation noise std Δ/√12, from x_t* = sqrt(ᾱ_t*)·ŷ (the quantisation
  error plays the diffusion noise) -> VAE decoder. Each step's predicted clean latent is kept inside ŷ's
  quantisation cell [ŷ − Δ/2, ŷ + Δ/2] (``project``: the true latent lies there, so the estimate stays consistent
  with what was received). Modes: "wo" (no denoising), "sdc" (zero edges: the unconditional model, trained by
  edge dropout), "full" (EEN edges); explicit ``edges`` (e.g. the oracle Canny map of the original) replace
  the EEN's.
- ``drop_regions``: the channel that loses rectangles of the latent (seeded); ``complete``: RePaint-style
  edge-guided inpainting from pure noise, known latent values replaced (re-noised) at every step and put back
  exactly at the end (bit-exact); a denoiser built with ``known_concat`` also sees the received latent and the
  known mask at every step (``known_input``). With a trained completer (``fill``, beyond the paper) the lost
  cells are regressed instead. ``pixel_inpaint``: OpenCV inpainting of the decoded image instead.
- ``compress`` / ``decompress``: the quantised latent range-coded by the bit depth's entropy model inside the
  ``.pcg`` container (system, weights hash, CRC).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def step_size(c, bits: int) -> float:
    return 2.0 * c.latent_range / 2 ** int(bits)


def _m(models, k):
    m = models[k]
    return getattr(m, "module", m)


def squash(z: torch.Tensor, r: float) -> torch.Tensor:
    """R·tanh(z/R): the latent inside the quantiser's range (-R, R), smoothly and identically in training and at
    inference (a clip applied only at inference cut a quarter of an unbounded VAE latent's values: ~7 dB)."""
    return r * torch.tanh(z / r)


def encode(models, c, x: torch.Tensor) -> torch.Tensor:
    y = _m(models, "vae").encode(2 * x - 1).latent_dist.mean.float()
    return squash(y, c.latent_range)


def quantise(models, c, y: torch.Tensor, bits: int):
    """(ŷ dequantised, bits per pixel per image (N,)) on the grid of ``bits``."""
    eb = _m(models, "eb").get(bits)
    d = step_size(c, bits)
    m = eb.medians.to(y).reshape(1, -1, 1, 1)
    q = torch.round(y / d - m) + m
    bpp = -torch.log2(eb._likelihood(q)).flatten(1).sum(1) / image_size(models, y) ** 2
    return q * d, bpp


def decode(models, y_hat: torch.Tensor) -> torch.Tensor:
    return ((_m(models, "vae").decode(y_hat).sample.float() + 1) / 2).clamp(0, 1)


def latent_to_image(y: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)


def een_edges(models, y_hat: torch.Tensor, size: int, binary: bool = True) -> torch.Tensor:
    p = torch.sigmoid(_m(models, "een")(latent_to_image(y_hat, size)).float())
    return (p > 0.5).float() if binary else p


def edge_f1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = (pred > 0.5).flatten(1).float(), (target > 0.5).flatten(1).float()
    tp = (p * t).sum(1)
    return 2 * tp / (p.sum(1) + t.sum(1)).clamp_min(1)


def ddpm(c):
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule)


def ddim(c):
    from diffusers import DDIMScheduler
    return DDIMScheduler.from_config(ddpm(c).config, clip_sample=False, set_alpha_to_one=True)


def known_input(y_hat: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The completion condition (N, C + 1, h, w): the received latent where known (zeros elsewhere) and the known
    mask; all zeros (nothing given) when denoising."""
    k = known.to(y_hat.dtype).expand(y_hat.shape[0], 1, *y_hat.shape[-2:])
    return torch.cat([y_hat * k, k], 1)


def predict_eps(nets, xt, t, edges, scale: float = 1.0, known=None) -> torch.Tensor:
    """ε from the ControlNet-conditioned UNet. A UNet with edge input channels (``edge_concat``) also takes the edge
    map pixel-unshuffled onto the latent grid; one with known-latent channels (``known_concat``) takes ``known``
    (``known_input``; None: zeros, as when denoising)."""
    n = xt.shape[0]
    if not torch.is_tensor(t) or t.dim() == 0:
        t = torch.full((n,), int(t), device=xt.device, dtype=torch.long)
    blocks = _m(nets, "unet").input_blocks   # set by networks.build_all
    parts = [xt]
    if blocks[1]:
        parts.append(F.pixel_unshuffle(edges.to(xt), edges.shape[-1] // xt.shape[-1]))
    if blocks[2]:
        parts.append(torch.zeros(n, blocks[2], *xt.shape[-2:], device=xt.device, dtype=xt.dtype) if known is None
                     else known.to(xt))
    xt = torch.cat(parts, 1) if len(parts) > 1 else xt
    ctx = nets["null"](n)
    down, mid = nets["control"](xt, t, encoder_hidden_states=ctx, controlnet_cond=edges, conditioning_scale=scale,
                                return_dict=False)
    return nets["unet"](xt, t, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample


def receiver_timesteps(c, bits: int, steps: int | None = None):
    """(DDIM scheduler, the timesteps the receiver runs at ``bits``): img2img-style, a schedule of
    ~steps·T/t* steps of which the ~steps at or below t* are run; empty when t* is below the first."""
    sched = ddim(c)
    steps = steps or c.steps
    T = sched.config.num_train_timesteps
    t_star = matched_timestep(sched, step_size(c, bits) / math.sqrt(12))
    sched.set_timesteps(min(T, max(steps, math.ceil(steps * T / (t_star + 1)))))
    return sched, sched.timesteps[sched.timesteps <= t_star]


def start_timestep(c, bits: int, steps: int | None = None) -> int:
    """The timestep the receiver starts from at ``bits`` (−1: no denoising step at this bit depth)."""
    ts = receiver_timesteps(c, bits, steps)[1]
    return int(ts[0]) if len(ts) else -1


def cell(c, y_hat: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The quantisation cell of ŷ: the true (squashed) latent lies in [lo, hi]."""
    d = step_size(c, bits) / 2
    r = c.latent_range
    return (y_hat - d).clamp(-r, r), (y_hat + d).clamp(-r, r)


def matched_timestep(sched, sigma: float) -> int:
    """The training timestep whose sqrt((1-ᾱ)/ᾱ) is closest to ``sigma`` (latent units)."""
    a = sched.alphas_cumprod.double()
    ratio = ((1 - a) / a).sqrt()
    return int((ratio - sigma).abs().argmin())


def _edges_for(models, c, y_hat, mode, size):
    if mode == "full":
        return een_edges(models, y_hat, size)
    return torch.zeros(y_hat.shape[0], 1, size, size, device=y_hat.device)


def image_size(models, y_hat) -> int:
    vae = _m(models, "vae")
    return y_hat.shape[-1] * 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def denoise(models, c, y_hat, bits: int, mode: str = "full", steps: int | None = None, edges=None,
            project: bool | None = None):
    """The denoised latent (deterministic DDIM, eta = 0) from the received ŷ; ``mode`` in wo / sdc / full;
    ``edges`` (N, 1, H, W) replace the EEN's; ``project`` (default: the model's) keeps every predicted clean latent
    in ŷ's quantisation cell."""
    if mode not in ("wo", "sdc", "full"):
        raise ValueError(f"edgediff: mode must be 'wo', 'sdc' or 'full', got {mode!r}")
    if mode == "wo":
        return y_hat
    size = image_size(models, y_hat)
    if edges is None:
        edges = _edges_for(models, c, y_hat, mode, size)
    elif tuple(edges.shape) != (y_hat.shape[0], 1, size, size):
        raise ValueError(f"edgediff: edges must be ({y_hat.shape[0]}, 1, {size}, {size}), got {tuple(edges.shape)}")
    sched, ts = receiver_timesteps(c, bits, steps)
    if len(ts) == 0:
        return y_hat
    project = bool(getattr(c, "project", False)) if project is None else project
    lo, hi = cell(c, y_hat, bits)
    a = sched.alphas_cumprod.to(y_hat)
    x = a[int(ts[0])].sqrt() * y_hat
    for i, t in enumerate(ts):
        eps = predict_eps(models, x, t, edges.to(y_hat)).float()
        at = a[int(t)]
        ap = a[int(ts[i + 1])] if i + 1 < len(ts) else torch.ones_like(at)  # set_alpha_to_one at the end
        x0 = (x - (1 - at).sqrt() * eps) / at.sqrt()
        if project:
            x0 = torch.minimum(torch.maximum(x0, lo), hi)
            eps = (x - at.sqrt() * x0) / (1 - at).sqrt()
        x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
    return x


@torch.no_grad()
def receive(models, c, y_hat, bits: int, mode: str = "full", steps: int | None = None, seed: int = 0, edges=None,
            project: bool | None = None):
    """Decoded image in [0, 1] from the received latent (seeded; DDIM is deterministic)."""
    with torch.random.fork_rng(devices=[y_hat.device] if y_hat.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return decode(models, denoise(models, c, y_hat, bits, mode, steps, edges, project))


# -- the lossy channel and completion ----------------------------------------------------------------------------
def drop_regions(shape, max_frac: float = 0.125, regions: int = 3, seed: int = 0) -> torch.Tensor:
    """Known mask (N, 1, h, w) bool: True = received. ``regions`` rectangles per image, each side up to
    ``max_frac`` of the latent side (at least 1), placed uniformly (seeded, CPU)."""
    n, _, h, w = shape
    g = torch.Generator().manual_seed(seed)
    known = torch.ones(n, 1, h, w, dtype=torch.bool)
    mh, mw = max(1, int(round(max_frac * h))), max(1, int(round(max_frac * w)))
    for i in range(n):
        for _ in range(regions):
            rh = int(torch.randint(1, mh + 1, (1,), generator=g))
            rw = int(torch.randint(1, mw + 1, (1,), generator=g))
            r0 = int(torch.randint(0, h - rh + 1, (1,), generator=g))
            c0 = int(torch.randint(0, w - rw + 1, (1,), generator=g))
            known[i, 0, r0:r0 + rh, c0:c0 + rw] = False
    return known


def check_mask(known: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    n, _, h, w = y_hat.shape
    if not torch.is_tensor(known) or known.dim() != 4 or tuple(known.shape) not in ((n, 1, h, w), tuple(y_hat.shape)):
        raise ValueError(f"edgediff: the lost-region mask must have shape ({n}, 1, {h}, {w}) (or the latent's "
                         f"{tuple(y_hat.shape)}), got {tuple(known.shape) if torch.is_tensor(known) else known!r}")
    return known.to(device=y_hat.device, dtype=torch.bool)


def filler_trained(models) -> bool:
    """Whether ``models`` hold a trained completer (``filler``; a freshly built one has ``steps`` 0)."""
    return "filler" in models and int(_m(models, "filler").steps) > 0


def filler_predict(models, c, y_hat, known, bits: int, edges=None, sent=None) -> torch.Tensor:
    """The completer's raw latent (N, C, h, w) from ŷ where ``known`` (N, 1, h, w), the holes' ``edges`` (image
    size; only their lost-region values are read) for the samples in ``sent`` (N,) bool (default: all when
    ``edges`` are given, none otherwise) and the bit depth."""
    k = known.to(y_hat.dtype)
    n, size = y_hat.shape[0], image_size(models, y_hat)
    if sent is None:
        sent = torch.full((n,), edges is not None, dtype=torch.bool, device=y_hat.device)
    s = sent.to(y_hat.dtype).view(n, 1, 1, 1)
    e = (torch.zeros(n, 1, size, size, device=y_hat.device, dtype=y_hat.dtype) if edges is None
         else edges.to(y_hat) * lost_pixels(known, size).to(y_hat) * s)
    d = torch.full_like(k, step_size(c, bits) / c.latent_range)
    inp = torch.cat([y_hat * k, k, F.pixel_unshuffle(e, size // y_hat.shape[-1]), (1 - k) * s, d], 1)
    return _m(models, "filler")(inp)


@torch.no_grad()
def fill(models, c, y_hat, known, bits: int, edges=None) -> torch.Tensor:
    """Completion by the completer: lost cells regressed (conditioned on the holes' ``edges`` when given, e.g.
    ``sender_edges``), clamped into (−R, R); known values returned bit-exactly."""
    known = check_mask(known, y_hat)
    pred = filler_predict(models, c, y_hat, known.all(1, keepdim=True), bits, edges).float()
    return torch.where(known.expand_as(y_hat), y_hat, pred.clamp(-c.latent_range, c.latent_range))


@torch.no_grad()
def complete(models, c, y_hat, known, mode: str = "full", steps: int | None = None, seed: int = 0, edges=None,
             start: float = 1.0, method: str = "auto", bits: int | None = None):
    """Fill the lost latent (``known`` False) by edge-guided (mode "full") or unconditional ("sdc") completion;
    "zeros" leaves zeros. ``method`` "diffusion": RePaint-style inpainting, ``edges`` replacing the EEN's estimate
    (e.g. sender-side edges of the lost regions, ``sender_edges``); ``start`` < 1 starts at timestep start·T from the
    zero-filled latent noised to that level (SDEdit) instead of from pure noise, running about ``steps`` steps
    either way. "filler": the trained completer (``fill``; "full" uses ``edges`` in the holes when given, none
    otherwise: the EEN's estimate from a zero fill holds nothing there; ``bits``: ŷ's bit depth, default
    ``c.eval_bits``). "auto": the completer when trained, else diffusion. The filled values are kept inside the
    quantiser's range (−R, R), where every true latent lies; known values are returned bit-exactly."""
    if not 0 < start <= 1:
        raise ValueError(f"edgediff: completion start must be in (0, 1], got {start}")
    if method not in ("auto", "diffusion", "filler"):
        raise ValueError(f"edgediff: completion method must be 'auto', 'diffusion' or 'filler', got {method!r}")
    known = check_mask(known, y_hat).expand_as(y_hat)
    y0 = torch.where(known, y_hat, torch.zeros_like(y_hat))
    if mode == "zeros":
        return y0
    if mode not in ("sdc", "full"):
        raise ValueError(f"edgediff: completion mode must be 'zeros', 'sdc' or 'full', got {mode!r}")
    if method == "filler" and not filler_trained(models):
        raise ValueError("edgediff: completion method 'filler' needs a trained completer (the completer stage's "
                         "checkpoint)")
    if method == "filler" or (method == "auto" and filler_trained(models)):
        return fill(models, c, y_hat, known, c.eval_bits if bits is None else bits,
                    edges if mode == "full" else None)
    size = image_size(models, y_hat)
    edges = _edges_for(models, c, y0, mode, size) if edges is None else edges.to(y_hat)
    sched = ddim(c)
    steps = steps or c.complete_steps
    T = sched.config.num_train_timesteps
    sched.set_timesteps(min(T, math.ceil(steps / start)))
    ts = sched.timesteps[sched.timesteps < round(start * T)]   # start = 1: every timestep (all below T)
    if not len(ts):
        raise ValueError(f"edgediff: completion start {start} is below the first DDIM timestep of {T}")
    g = torch.Generator(y_hat.device).manual_seed(seed)
    x = torch.randn(y_hat.shape, generator=g, device=y_hat.device)
    if start < 1:
        x = sched.add_noise(y0, x, ts[:1])
    cond = known_input(y0, known.all(1, keepdim=True))  # y0: zeros wherever lost
    for t in ts:
        noise = torch.randn(y_hat.shape, generator=g, device=y_hat.device)
        x = torch.where(known, sched.add_noise(y0, noise, t.reshape(1)), x)
        eps = predict_eps(models, x, t, edges, known=cond).float()
        x = sched.step(eps, t, x, eta=0.0).prev_sample
    return torch.where(known, y_hat, x.clamp(-c.latent_range, c.latent_range))


def lost_pixels(known: torch.Tensor, size: int) -> torch.Tensor:
    """The lost latent regions as an image-size mask (N, 1, size, size), 1 = lost."""
    return F.interpolate((~known[:, :1]).float(), size=(size, size), mode="nearest")


def sender_edges(models, c, y_hat, known, x: torch.Tensor, canny_fn) -> tuple[torch.Tensor, list]:
    """Sender-side edges for completion: the true Canny map (``canny_fn(x)``) inside the lost regions, the EEN's
    estimate from the received latent elsewhere; and the coded edge bytes per image (the lost regions' Canny map,
    ``pycompgen.codec.edges``), which count in the file's rate."""
    from pycompgen.codec.edges import encode_edges
    known = check_mask(known, y_hat)
    size = x.shape[-1]
    lost = lost_pixels(known, size).to(x)
    true = canny_fn(x) * lost
    y0 = torch.where(known.expand_as(y_hat), y_hat, torch.zeros_like(y_hat))
    edges = torch.where(lost > 0, true, een_edges(models, y0, size))
    sizes = [len(encode_edges(true[i, 0].cpu())) for i in range(x.shape[0])]
    return edges, sizes


def pixel_inpaint(x_img: torch.Tensor, known: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """OpenCV (Telea) inpainting of the decoded images where the latent was lost (mask upsampled)."""
    import cv2
    size = x_img.shape[-1]
    lost = lost_pixels(known.cpu(), size)[:, 0].numpy() > 0
    out = []
    for i in range(x_img.shape[0]):
        u8 = (x_img[i].detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        r = cv2.inpaint(np.ascontiguousarray(u8), lost[i].astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
        out.append(torch.from_numpy(r).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(x_img.device)


# -- files -------------------------------------------------------------------------------------------------------
def _decoding_nets(models):
    return {k: _m(models, k) for k in ("vae", "eb", "een", "unet", "control", "null") if k in models}


def ensure_tables(models) -> None:
    """(Re)build every bit depth's code tables when missing or stale (deterministic in the weights, so sender and
    receiver holding the same checkpoint get the same tables and the same weights hash)."""
    for eb in _m(models, "eb").bank.values():
        if not eb.has_tables or not torch.equal(eb.table_medians, eb.quantiles.detach()[:, 0, 1]):
            eb.update(force=True)


def compress(models, c, x: torch.Tensor, bits: int) -> bytes:
    """Images (N, 3, H, W) in [0, 1] -> one ``.pcg`` file holding the quantised latent at ``bits``."""
    return compress_each(models, c, x, bits, per_image=False)[0]


def compress_each(models, c, x: torch.Tensor, bits: int, per_image: bool = True) -> list:
    """Images (N, 3, H, W) -> one ``.pcg`` file per image (``per_image``; else one for all), from one encoder
    pass and one weights hash for the whole batch."""
    from pycompgen.codec.container import pack, weights_hash
    ensure_tables(models)
    eb = _m(models, "eb").get(bits)
    with torch.no_grad():
        y = encode(models, c, x)
    d = step_size(c, bits)
    h = weights_hash(_decoding_nets(models))
    parts = [y[i:i + 1] for i in range(y.shape[0])] if per_image else [y]
    return [pack(eb.compress(v / d), system="edgediff", weights_hash=h, height=x.shape[-2], width=x.shape[-1],
                 count=v.shape[0], kind="latent", params={"latent_shape": list(y.shape[1:]), "precision": int(bits)})
            for v in parts]


def decompress(models, c, data: bytes, name: str = "file") -> tuple[torch.Tensor, int]:
    """``.pcg`` bytes -> (ŷ dequantised (N, C, h, w), bits); a foreign or corrupted file raises a one-line error."""
    from pycompgen.codec.container import unpack, weights_hash
    ensure_tables(models)
    hdr, payload = unpack(data, expect_system="edgediff", expect_hash=weights_hash(_decoding_nets(models)), name=name)
    if hdr.kind != "latent" or "latent_shape" not in hdr.params or "precision" not in hdr.params:
        raise ValueError(f"{name} is not an edgediff latent file")
    bits = int(hdr.params["precision"])
    eb = _m(models, "eb").get(bits)
    try:
        q = eb.decompress(payload, (hdr.count, *hdr.params["latent_shape"]))
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: {str(e).splitlines()[0]}") from None
    return q * step_size(c, bits), bits
