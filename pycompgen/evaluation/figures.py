"""Figures of the evaluation: image grids (OpenCV) and the SSIM-vs-channel-PSNR plot (matplotlib, Agg).

Grids follow the paper's figure order (Sec. 4.1): original x, noisy edge map z + n, latent y = f(x), ŷ = h(z + n),
reconstruction x̂ = g(ŷ). Latents are shown as a channel mosaic (each channel an h×w tile, min-max normalised per
image over all channels, nearest-neighbour upsampled to the image size) or as the mean over channels. Noisy edge
maps are shown clipped to [0, 1], the range of a clean edge map.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

PAD = 2
HEADER_H = 30
TITLE_H = 22


def to_uint8_rgb(t: torch.Tensor) -> np.ndarray:
    """(C,H,W) float in [0,1] (C = 1 or 3) -> (H,W,3) uint8 RGB."""
    a = (t.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    if a.shape[0] == 1:
        a = a.expand(3, -1, -1)
    return a.permute(1, 2, 0).contiguous().numpy()


def edge_map_vis(z: torch.Tensor) -> torch.Tensor:
    """Noisy or clean edge maps (N,1,H,W) -> displayable (N,1,H,W) in [0,1] (clipped)."""
    return z.detach().float().clamp(0, 1)


def latent_vis(y: torch.Tensor, size: int, mode: str = "mosaic") -> torch.Tensor:
    """Latents (N,C,h,w) -> (N,1,size,size) images in [0,1] (see module docstring)."""
    y = y.detach().float().cpu()
    n, c, h, w = y.shape
    if mode == "mean":
        img = y.mean(1, keepdim=True)
    elif mode == "mosaic":
        cols = math.ceil(math.sqrt(c))
        rows = math.ceil(c / cols)
        flat = y.flatten(1)
        lo = flat.amin(1).view(n, 1, 1, 1)
        img = torch.full((n, 1, rows * h, cols * w), float("nan"))
        for k in range(c):
            r, q = divmod(k, cols)
            img[:, 0, r * h:(r + 1) * h, q * w:(q + 1) * w] = y[:, k]
        img = torch.nan_to_num(img, nan=0.0) + torch.isnan(img).float() * lo  # empty tiles at the minimum
    else:
        raise ValueError(f"latent visualisation must be 'mosaic' or 'mean', got {mode!r}")
    flat = img.flatten(1)
    lo, hi = flat.amin(1).view(n, 1, 1, 1), flat.amax(1).view(n, 1, 1, 1)
    img = (img - lo) / (hi - lo).clamp_min(1e-8)
    return torch.nn.functional.interpolate(img, size=(size, size), mode="nearest")


def _text(canvas: np.ndarray, text: str, org, scale: float = 0.4) -> None:
    import cv2
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def compose_grid(columns: Sequence[tuple[str, torch.Tensor]], title: str = "", scale: int = 2,
                 max_rows: int | None = None) -> np.ndarray:
    """Columns of images [(header, (N,C,H,W) in [0,1])] -> one RGB uint8 canvas with headers and a title.

    A header may hold two lines separated by "\\n". Every column must have the same N, H, W.
    """
    import cv2
    if not columns:
        raise ValueError("compose_grid: no columns")
    n, _, h, w = columns[0][1].shape
    for name, t in columns:
        if t.shape[0] != n or t.shape[-2:] != (h, w):
            raise ValueError(f"compose_grid: column {name!r} has shape {tuple(t.shape)}, expected N={n}, {h}×{w}")
    rows = n if max_rows is None else min(n, max_rows)
    th, tw = h * scale, w * scale
    width = len(columns) * (tw + PAD) + PAD
    top = (TITLE_H if title else 0) + HEADER_H
    canvas = np.full((top + rows * (th + PAD) + PAD, max(width, 10), 3), 255, np.uint8)
    if title:
        # long titles are shrunk to fit the canvas width
        (tw_px, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        _text(canvas, title, (PAD + 2, 15), 0.45 * min(1.0, (width - 8) / max(tw_px, 1)))
    for j, (name, t) in enumerate(columns):
        x0 = PAD + j * (tw + PAD)
        for li, line in enumerate(name.split("\n")[:2]):
            (lw, _), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            s = 0.4 * min(1.0, (tw - 2) / max(lw, 1))
            _text(canvas, line, (x0 + 1, top - HEADER_H + 12 + 13 * li), s)
        for i in range(rows):
            tile = to_uint8_rgb(t[i])
            if scale != 1:
                tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_NEAREST)
            y0 = top + PAD + i * (th + PAD)
            canvas[y0:y0 + th, x0:x0 + tw] = tile
    return canvas


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> str:
    """Write an RGB uint8 array as PNG with OpenCV (atomic: temp file + rename)."""
    import cv2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
    os.replace(tmp, path)
    return str(path)


def plot_ssim_vs_psnr(results: dict, path: str | os.PathLike, title: str = "",
                      metric: str = "ssim") -> str:
    """One line per approach (metric vs channel PSNR), the auto-encoder as a horizontal line.

    ``results``: {"approaches": {label: {psnr_key: {metric: value}}}, "ae": {metric: value} | None,
    "psnrs": [float, ...]} (the layout of sweep.json).
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    psnrs = [float(p) for p in results["psnrs"]]
    for label, per in results.get("approaches", {}).items():
        xs = [p for p in psnrs if psnr_key(p) in per]
        ys = [per[psnr_key(p)][metric] for p in xs]
        ax.plot(xs, ys, marker="o", label=label)
    ae = results.get("ae")
    if ae is not None:
        ax.axhline(ae[metric], color="k", linestyle="--", label=f"AE g(f(x)) ({ae[metric]:.3f})")
    if psnrs:
        ax.set_xlim(min(psnrs) - 2, max(psnrs) + 2)
    ax.set_xlabel("channel PSNR (dB)")
    ax.set_ylabel(metric.upper().replace("_", "-"))
    ax.set_ylim(0, 1.0 if metric in ("ssim", "ms_ssim", "edge_f1") else None)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        import textwrap
        ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)


def psnr_key(p: float) -> str:
    """Stable text form of a channel PSNR: 50.0 -> "50", -2.5 -> "-2.5", inf -> "inf"."""
    p = float(p)
    if math.isinf(p):
        return "inf" if p > 0 else "-inf"
    return f"{p:g}"
