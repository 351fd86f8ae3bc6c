"""Compgen's noisy-channel claim against separation (issue 17 §3).

One 64x64 face, ``uses`` = 4,096 real channel uses of an AWGN channel at average-power SNR s (signal power per
use / noise variance):

- **Compgen** (joint source-channel coding): the edge map z (4,096 values in {0, 1}) is sent as analog values.
  Its average power is P = mean(z²) (the edge density), so the noise is σ² = P / 10^(s/10) and the paper's peak
  PSNR is 10·log10(max z² / σ²) = s - 10·log10(P) per face (about s + 8 dB at CelebA's ~16 % edge pixels). The
  receiver runs g(h((z + n) / max(1, σ))) as in training. With a colour hint (``model.hint_size`` s) the
  quantised hint's plane values travel as analog values too, with the same noise (the power counts both), so
  that row uses 4,096 + 3·s² channel uses in RGB (4,288 for 8 × 8: 4.7 % more than the separated schemes get)
  or 4,096 + 1.5·s² with ``model.hint_space=ycocg420`` (4,480 for 16 × 16: 9.4 % more).
- **Separation**: an ideal capacity-achieving channel code (the separated scheme's upper bound) delivers
  ``uses`` · ½·log2(1 + 10^(s/10)) error-free bits; the sender spends them on a source codec, choosing per face the
  best setting whose complete file (header included) fits, or nothing. A face whose smallest file does not fit is
  not decoded: the receiver shows the zero-rate guess, the mean training face (its SSIM is counted; ``decoded``
  says how often a file fitted).

Figures are mean SSIM over the faces, per SNR; nothing here trains.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from pycompgen import metrics as M
from pycompgen.data import to_float01

SNRS_DB = [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0]


def capacity_bits(snr_db: float, uses: int) -> float:
    """Bits an ideal code carries over ``uses`` real AWGN channel uses at average-power SNR ``snr_db``."""
    return uses * 0.5 * math.log2(1.0 + 10.0 ** (snr_db / 10.0))


def psnr_for_snr(z: torch.Tensor, snr_db: float, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image peak PSNR (dB, float64 (N,)) of the paper's channel that gives average-power SNR ``snr_db`` for the
    edge maps ``z`` (N, 1, H, W) (+inf for an empty edge map: nothing is sent); ``extra`` (N, ...): more analog
    values sent with the same noise (a colour hint), counted in the average power."""
    zf = z.double().flatten(1)
    if extra is not None:
        zf = torch.cat([zf, extra.double().flatten(1)], 1)
    power = zf.pow(2).mean(1)
    peak = zf.pow(2).amax(1)
    out = torch.full_like(power, math.inf)
    ok = power > 0
    out[ok] = snr_db + 10.0 * torch.log10(peak[ok] / power[ok])
    return out


@torch.no_grad()
def compgen_over_channel(models: dict, data_cfg, x: torch.Tensor, snrs: Sequence[float], seed: int = 0,
                         batch: int = 250) -> dict:
    """{snr: {"ssim", "psnr_db" (mean paper PSNR)}} of Compgen's edge path (``models``: f, g, h) on faces x
    (N, 3, H, W) in [0, 1] over the AWGN channel at each average-power SNR."""
    from pycompgen.ops import awgn, canny
    from pycompgen.systems.compgen.system import decode_edges, hint_from_planes, hint_planes
    for m in models.values():
        m.eval()
    out = {}
    for j, s in enumerate(snrs):
        g = torch.Generator().manual_seed(int(seed) * 7919 + j)
        ss, ps = [], []
        for i in range(0, x.shape[0], batch):
            xb = x[i:i + batch]
            z = canny(xb, data_cfg.canny_low, data_cfg.canny_high, blur_sigma=data_cfg.blur_sigma)
            t = hint_planes(models, xb)  # a colour hint: more analog uses at the same noise (None: edges only)
            p = psnr_for_snr(z, s, None if t is None else torch.cat([v.flatten(1) for v in t], 1))
            zn = awgn(z, p, normalize=True, peak=1.0, generator=g)
            tn = None if t is None else hint_from_planes(
                models, [awgn(v, p, normalize=True, peak=1.0, generator=g) for v in t])
            ss.append(M.ssim(decode_edges(models, zn, tn).clamp(0, 1).float(), xb))
            ps.append(p[torch.isfinite(p)])
        out[f"{s:g}"] = {"ssim": float(torch.cat(ss).mean()), "psnr_db": float(torch.cat(ps).mean())}
    return out


def codec_ladder(x_u8: np.ndarray, codec, qualities) -> list:
    """Per quality of a baseline codec (``pycompgen.codec.baselines``): {"quality", "bytes" (N,), "ssim" (N,)}."""
    from pycompgen.codec.baselines import get_codec
    c = get_codec(codec)
    ref = to_float01(x_u8)
    out = []
    for q in qualities:
        sizes, dec = [], np.empty_like(x_u8)
        for i in range(x_u8.shape[0]):
            data = c.encode(x_u8[i], q)
            sizes.append(len(data))
            dec[i] = c.decode(data)
        rec = to_float01(dec)
        out.append({"quality": q, "bytes": np.asarray(sizes), "ssim": M.ssim(rec, ref).numpy()})
    return out


THUMBNAILS = [(k, b) for k in (2, 3, 4, 6, 8, 12, 16) for b in (3, 4, 5, 6)]


@torch.no_grad()
def thumbnail_ladder(x: torch.Tensor, settings=THUMBNAILS) -> list:
    """The plainest low-rate codec: a k x k RGB thumbnail (area average) at b bits per value, sent raw
    (ceil(3·k²·b / 8) bytes, no header: both ends know k and b), upsampled bicubically. Covers budgets below
    every image codec's smallest file."""
    import torch.nn.functional as F
    h, w = x.shape[-2:]
    out = []
    for k, b in settings:
        levels = 2 ** b - 1
        t = F.interpolate(x, size=(k, k), mode="area")
        t = torch.round(t.clamp(0, 1) * levels) / levels
        up = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        nbytes = math.ceil(3 * k * k * b / 8)
        out.append({"quality": f"{k}x{k}@{b}b", "bytes": np.full(x.shape[0], nbytes), "ssim": M.ssim(up, x).numpy()})
    return out


@torch.no_grad()
def latent_ladder(loaded_points: dict, x: torch.Tensor) -> list:
    """Per rate point {quality: LoadedCheckpoint} of a latent codec: real ``.pcg`` files, one per face."""
    from pycompgen.inference import compress_images, decompress_bytes
    out = []
    for q, lc in loaded_points.items():
        sizes, rec = [], []
        for i in range(x.shape[0]):
            f = compress_images(lc, x[i:i + 1], payload="latent")
            sizes.append(len(f))
            rec.append(decompress_bytes(lc, f)[0])
        out.append({"quality": q, "bytes": np.asarray(sizes), "ssim": M.ssim(torch.cat(rec).clamp(0, 1), x).numpy()})
    return out


def separated(ladder: list, budget_bytes: float, fallback_ssim: np.ndarray) -> dict:
    """Mean SSIM when each face gets the best ladder rung whose file fits ``budget_bytes``, or the fallback when
    nothing fits or the fallback is better (sending nothing is always an option); ``decoded``: share of faces
    some rung fits."""
    fb = np.asarray(fallback_ssim, dtype=np.float64)
    best = np.full(fb.shape, -np.inf)
    for rung in ladder:
        best = np.where(rung["bytes"] <= budget_bytes, np.maximum(best, rung["ssim"]), best)
    decoded = np.isfinite(best)
    return {"ssim": float(np.maximum(best, fb).mean()), "decoded": float(decoded.mean())}


def compare(x: torch.Tensor, snrs: Sequence[float], compgen: dict, ladders: dict, fallback: torch.Tensor,
            uses: int | None = None, log: Callable = print) -> dict:
    """The comparison table: ``compgen`` {label: compgen_over_channel result}, ``ladders`` {label: ladder}
    (separated schemes), ``fallback`` the zero-rate guess (3, H, W). ``uses`` defaults to H·W (the edge map)."""
    uses = int(uses or x.shape[-1] * x.shape[-2])
    fb = M.ssim(fallback.expand_as(x).contiguous(), x).numpy()
    rows = {}
    for s in snrs:
        k = f"{s:g}"
        bits = capacity_bits(s, uses)
        row = {"capacity_bits": bits, "budget_bytes": math.floor(bits / 8), "bpp": bits / (x.shape[-1] * x.shape[-2]),
               "schemes": {}}
        for lab, res in compgen.items():
            row["schemes"][lab] = {"ssim": res[k]["ssim"], "paper_psnr_db": res[k]["psnr_db"], "decoded": 1.0}
        for lab, lad in ladders.items():
            row["schemes"][lab] = separated(lad, row["budget_bytes"], fb)
        rows[k] = row
        log(f"SNR {s:+g} dB: budget {row['budget_bytes']} B; " + ", ".join(
            f"{lab} {v['ssim']:.3f}" for lab, v in row["schemes"].items()))
    return {"uses": uses, "snrs_db": list(snrs), "fallback_ssim": float(fb.mean()), "rows": rows}


def winners(table: dict) -> dict:
    """{snr: best scheme} of a ``compare`` table."""
    return {k: max(r["schemes"], key=lambda lab: r["schemes"][lab]["ssim"]) for k, r in table["rows"].items()}


def plot(table: dict, path, title: str = "") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    snrs = table["snrs_db"]
    labels = list(next(iter(table["rows"].values()))["schemes"])
    fig, ax = plt.subplots(figsize=(7, 5.6), dpi=110)
    for lab in labels:
        ys = [table["rows"][f"{s:g}"]["schemes"][lab]["ssim"] for s in snrs]
        ax.plot(snrs, ys, marker="o" if lab.startswith("Compgen") else ".",
                ls="-" if lab.startswith("Compgen") else "--", label=lab)
    ax.axhline(table["fallback_ssim"], color="grey", lw=0.8, ls=":", label="mean face (nothing decoded)")
    ax.set_xlabel(f"channel SNR (dB, average power; {table['uses']} real channel uses per face)")
    ax.set_ylabel("SSIM (validation faces)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)  # below: the curves fill the axes
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def markdown(table: dict) -> list:
    labels = list(next(iter(table["rows"].values()))["schemes"])
    lines = ["| SNR (dB) | paper PSNR (dB) | budget (bytes) | " + " | ".join(labels) + " | best |",
             "|---:|---:|---:|" + "---:|" * len(labels) + "---|"]
    best = winners(table)
    for k, r in table["rows"].items():
        psnr = next((v["paper_psnr_db"] for v in r["schemes"].values() if "paper_psnr_db" in v), float("nan"))
        cells = []
        for lab in labels:
            v = r["schemes"][lab]
            dec = "" if v.get("decoded", 1.0) >= 1.0 else f" ({100 * v['decoded']:.0f} % decoded)"
            cells.append(f"{v['ssim']:.3f}{dec}")
        lines.append(f"| {k} | {psnr:.1f} | {r['budget_bytes']} | " + " | ".join(cells) + f" | {best[k]} |")
    return lines


__all__ = ["SNRS_DB", "capacity_bits", "psnr_for_snr", "compgen_over_channel", "codec_ladder", "latent_ladder",
           "thumbnail_ladder", "THUMBNAILS",
           "separated", "compare", "winners", "plot", "markdown"]
