"""Generation with a trained ELM + decoder (paper Sec. 4.4–4.5).

- Sketches: hand-drawn sketches mapped into the edge-map domain (``pycompgen.data.load_sketches``), sent through
  the channel at ``psnr`` (paper: −5 dB for its generation results), x̂ = g(h(awgn(sketch))).
- Unconditional: an all-zero edge map through the channel at ``psnr`` (noise peak 1.0), i.e. pure noise in,
  x̂ = g(h(awgn(0))).
Noise is seeded, so the same seed gives the same faces.
- Sketch2face (``run_sketch2face``): sketches read as its training data reads them (grayscale in [-1, 1], no
  edge-map preprocessing), translated to faces with the latent means (no noise, deterministic).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from . import figures
from pycompgen.inference import check_image_size
from pycompgen.systems.compgen.system import decode_edges, hint_spec

DEFAULT_GEN_PSNR = -5.0


def _noisy(z: torch.Tensor, psnr: float, generator: torch.Generator) -> torch.Tensor:
    from pycompgen.ops import awgn
    return awgn(z, float(psnr), normalize=True, peak=1.0, generator=generator)


def _edges_only(models: dict) -> None:
    if hint_spec(models)[0]:
        raise ValueError("this model decodes edge maps with a colour hint (model.hint_size): sketches and noise "
                         "carry none, so generate needs an edges-only model (e.g. --pretrained compgen-64-plus)")


def _gen(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


@torch.no_grad()
def generate_from_edges(models: dict, z: torch.Tensor, psnr: float = DEFAULT_GEN_PSNR, seed: int = 0,
                        image_size: int | None = None, batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge maps / sketches (N,1,H,W) {0,1} -> (noisy input, x̂ (N,3,H,W)) with x̂ = g(h(awgn(z)))."""
    h, g = models["h"], models["g"]
    _edges_only(models)
    dev = next(h.parameters()).device
    if z.dim() != 4 or z.shape[1] != 1:
        raise ValueError(f"edge maps must be N×1×H×W, got shape {tuple(z.shape)}")
    if image_size is not None:
        check_image_size(z, image_size, "edge map")
    h.eval()
    g.eval()
    gen = _gen(dev, seed)
    noisy, outs = [], []
    for s in range(0, z.shape[0], batch_size):
        zn = _noisy(z[s:s + batch_size].to(dev).float(), psnr, gen)
        noisy.append(zn.cpu())
        outs.append(decode_edges(models, zn).cpu())
    return torch.cat(noisy), torch.cat(outs)


@torch.no_grad()
def generate_unconditional(models: dict, n: int, image_size: int, psnr: float = DEFAULT_GEN_PSNR, seed: int = 0,
                           batch_size: int = 100) -> torch.Tensor:
    """N faces from pure noise: z = 0, awgn at ``psnr`` with peak 1.0, x̂ = g(h(z + n))."""
    if int(n) < 1:
        raise ValueError(f"--unconditional needs N >= 1, got {n}")
    z = torch.zeros(int(n), 1, image_size, image_size)
    return generate_from_edges(models, z, psnr, seed, image_size, batch_size)[1]


def tile(images: torch.Tensor, ncols: int, scale: int = 2, title: str = "") -> np.ndarray:
    """(N,C,H,W) in [0,1] -> RGB canvas with ``ncols`` columns (row-major)."""
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    pad = torch.ones((nrows * ncols - n,) + tuple(images.shape[1:]))
    full = torch.cat([images.float().cpu(), pad]) if pad.shape[0] else images.float().cpu()
    if full.shape[1] == 1:
        full = full.expand(-1, 3, -1, -1)
    cols = [("", full[j::ncols]) for j in range(ncols)]
    return figures.compose_grid(cols, title=title, scale=scale)


def sketch_pairs_grids(sketches: torch.Tensor, faces: torch.Tensor, out_dir: str | os.PathLike, title: str,
                       per_page: int = 32, pairs_per_row: int = 4, stem: str = "sketches") -> list[str]:
    """sketch | face pairs, ``per_page`` pairs per PNG: <stem>_p000.png, ... (paths returned)."""
    paths = []
    n = sketches.shape[0]
    sk3 = sketches.float().expand(-1, 3, -1, -1)
    for page, s in enumerate(range(0, n, per_page)):
        e = min(n, s + per_page)
        inter = torch.stack([sk3[s:e], faces[s:e].float().cpu()], 1).flatten(0, 1)  # s0, f0, s1, f1, ...
        img = tile(inter, 2 * pairs_per_row, title=f"{title} | sketch | face, {s + 1}-{e} of {n}")
        paths.append(figures.write_png(Path(out_dir) / f"{stem}_p{page:03d}.png", img))
    return paths


def run_sketches(models: dict, folder: str | os.PathLike, out_dir: str | os.PathLike, image_size: int,
                 psnr: float = DEFAULT_GEN_PSNR, seed: int = 0, limit: int | None = None, title: str = "",
                 stem: str = "sketches") -> dict:
    """Load a sketch folder, generate faces, write pair grids and one PNG per sketch (``out_dir/faces/<the
    sketch's stem>.png``). Returns a summary dict."""
    from pycompgen.data import load_sketches
    from pycompgen.inference.images import output_names, write_pngs
    sk, names = load_sketches(folder, image_size=image_size, limit=limit, return_names=True)
    dests = output_names([Path(n) for n in names], Path(out_dir) / "faces")
    _, faces = generate_from_edges(models, sk, psnr=psnr, seed=seed, image_size=image_size)
    t = f"{title} | sketches at channel PSNR {figures.psnr_key(psnr)} dB".strip(" |")
    paths = sketch_pairs_grids(sk, faces, out_dir, t, stem=stem)
    write_pngs(faces, dests)
    return {"folder": str(folder), "n": int(sk.shape[0]), "psnr": float(psnr), "seed": int(seed),
            "names": names, "grids": paths, "faces": str(Path(out_dir) / "faces")}


def run_unconditional(models: dict, n: int, out_dir: str | os.PathLike, image_size: int,
                      psnr: float = DEFAULT_GEN_PSNR, seed: int = 0, title: str = "",
                      stem: str = "unconditional") -> dict:
    faces = generate_unconditional(models, n, image_size, psnr=psnr, seed=seed)
    t = f"{title} | unconditional, pure noise at {figures.psnr_key(psnr)} dB".strip(" |")
    path = figures.write_png(Path(out_dir) / f"{stem}.png", tile(faces, math.ceil(math.sqrt(n)), title=t))
    return {"n": int(n), "psnr": float(psnr), "seed": int(seed), "grid": path,
            "pixel_std_across_samples": float(faces.std(0).mean()) if n > 1 else 0.0}


@torch.no_grad()
def run_sketch2face(models: dict, folder: str | os.PathLike, out_dir: str | os.PathLike, image_size: int,
                    title: str = "", batch_size: int = 64, stem: str = "sketches") -> dict:
    """A Sketch2face model's faces from a folder of sketches (``pycompgen.data.unpaired.read_sketches``: grayscale,
    centre square crop and resize, [-1, 1]; latent means): one PNG per sketch in ``out_dir`` named by the sketch's
    stem, and sketch | face grids (<stem>_p000.png, ...). Returns a summary dict."""
    import re
    from pycompgen.data.unpaired import read_sketches
    from pycompgen.inference.images import output_names, write_pngs
    from pycompgen.systems.sketch2face import Sketch2Face
    sk, files = read_sketches(folder, image_size)
    dests = output_names(files, out_dir)
    clash = [p.name for p in files if re.fullmatch(rf"{re.escape(stem)}_p\d{{3}}", p.stem)]
    if clash:
        raise ValueError(f"sketch {clash[0]} would be overwritten by the grid of the same name: rename it")
    dev = next(models["E_s"].parameters()).device
    x = torch.from_numpy(sk)[:, None].float().div(255.0) * 2 - 1
    faces = torch.cat([Sketch2Face.sketch_to_face(models, x[a:a + batch_size].to(dev)).float().cpu()
                       for a in range(0, len(x), batch_size)])
    faces = ((faces + 1) / 2).clamp(0, 1)
    paths = sketch_pairs_grids((x + 1) / 2, faces, out_dir, f"{title} | sketch -> face".strip(" |"), stem=stem)
    write_pngs(faces, dests)
    return {"folder": str(folder), "n": int(len(x)), "names": [p.name for p in files], "grids": paths,
            "faces": str(out_dir)}
