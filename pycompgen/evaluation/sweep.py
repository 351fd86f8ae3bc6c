"""Channel-PSNR sweep: mean SSIM, MS-SSIM, image PSNR, L1, L2 and edge-F1 of x̂ vs x on a split.

- AE row: x̂ = g(f(x)) of the step-1 compression model (independent of the channel).
- One row per approach and channel PSNR: x̂ = g(h(awgn(z))), z = Canny(x) with the training run's thresholds,
  awgn with peak 1.0 and power normalisation (the paper's channel, Sec. 2.1 / 4.3).
Noise is deterministic: each PSNR has its own generator seeded from ``seed`` and its index, and every approach sees
the same noisy edge maps. Writes sweep.json, sweep.md, ssim_vs_psnr.png and grids/psnr_<p>.png.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from pycompgen.inference import check_image_size
from pycompgen.metrics import METRIC_NAMES, compute_metrics
from pycompgen.models import load_for_eval
from pycompgen.systems.compgen.system import elm_forward, make_hint

from . import figures
from .figures import psnr_key

DEFAULT_PSNRS = (50.0, 25.0, 10.0, 0.0, -2.0, -5.0)
SWEEP_FORMAT = "pycompgen-sweep/1"


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- faces -----------------------------------------------------------------------------------------------------
def _num_faces(faces) -> int:
    return len(faces)


def face_batch(faces, start: int, stop: int) -> torch.Tensor:
    """uint8 (N,3,H,W) batch from a FaceArray (``.images`` N×H×W×3), a Dataset of uint8 (3,H,W) items, a uint8
    tensor N×3×H×W or a numpy array N×H×W×3."""
    if isinstance(faces, torch.Tensor):
        return faces[start:stop]
    if isinstance(faces, np.ndarray):
        return torch.from_numpy(np.array(faces[start:stop])).permute(0, 3, 1, 2).contiguous()
    arr = getattr(faces, "images", None)
    if isinstance(arr, np.ndarray) and arr.ndim == 4 and arr.shape[-1] == 3:
        return torch.from_numpy(np.array(arr[start:stop])).permute(0, 3, 1, 2).contiguous()
    return torch.stack([torch.as_tensor(faces[i]) for i in range(start, stop)])


def _to_float(u8: torch.Tensor) -> torch.Tensor:
    if u8.dtype == torch.uint8:
        return u8.float() / 255.0
    return u8.float()


# -- sweep on built models ---------------------------------------------------------------------------------------
class _Acc:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, m: dict[str, torch.Tensor]):
        for k, v in m.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.double().sum())
        self.n += next(iter(m.values())).shape[0]

    def mean(self) -> dict[str, float]:
        return {k: (self.sums[k] / self.n if self.n else float("nan")) for k in METRIC_NAMES if k in self.sums}


@torch.no_grad()
def sweep_models(approaches: dict[str, dict], faces, out_dir: str | os.PathLike, *, ae: dict | None = None,
                 psnrs: Sequence[float] = DEFAULT_PSNRS, canny_low: float = 0.1, canny_high: float = 0.2,
                 blur_sigma: float | None = 1.0, device: str | torch.device = "cpu", batch_size: int = 100,
                 max_images: int | None = None, seed: int = 0, edge_tolerance: int = 0, n_grid: int = 6,
                 latent_mode: str = "mosaic", meta: dict | None = None, progress: bool = False) -> dict:
    """Sweep already-built models. ``approaches``: {label: {"f", "g", "h"}} evaluated as g(h(awgn(z)));
    ``ae``: {"f", "g"} evaluated as g(f(x)) (one channel-independent row), or None. Returns the sweep.json dict."""
    from pycompgen.data import EdgeChannel

    if not approaches and ae is None:
        raise ValueError("sweep: nothing to evaluate (no approach checkpoints and no auto-encoder)")
    t0 = time.time()
    dev = resolve_device(device)
    psnrs = [float(p) for p in psnrs]
    if not psnrs and approaches:
        raise ValueError("sweep: empty PSNR list")
    keys = [psnr_key(p) for p in psnrs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sweep: duplicate channel PSNRs in {psnrs}")
    n_total = _num_faces(faces)
    if max_images is not None:
        n_total = min(n_total, int(max_images))
    if n_total <= 0:
        raise ValueError("sweep: the split holds no images")
    for part in list(approaches.values()) + ([ae] if ae is not None else []):
        for m in part.values():
            m.to(dev).eval()
    ref_f = (ae or next(iter(approaches.values())))["f"]
    channel = EdgeChannel(canny_low=canny_low, canny_high=canny_high, blur_sigma=blur_sigma, psnr=float("inf"))
    mkw = dict(edge_fn=channel.edges, edge_tolerance=edge_tolerance)

    gens = []
    for i in range(len(psnrs)):
        g = torch.Generator(device=dev)
        g.manual_seed(int(seed) * 1_000_003 + 7919 * (i + 1))
        gens.append(g)
    hint_gens = {}  # a colour hint's noise: one generator per (PSNR, approach), independent of the others
    for i in range(len(psnrs)):
        for j, lab in enumerate(approaches):
            g = torch.Generator(device=dev)
            g.manual_seed(int(seed) * 1_000_003 + 7919 * (i + 1) + 104_729 * (j + 1))
            hint_gens[i, lab] = g
    ae_acc = _Acc()
    accs = {lab: {k: _Acc() for k in keys} for lab in approaches}
    grid: dict[str, Any] = {}
    latent_shape = None
    it: Iterable[int] = range(0, n_total, batch_size)
    if progress:
        from tqdm import tqdm
        it = tqdm(list(it), desc="evaluate", unit="batch")
    image_size = None
    for start in it:
        u8 = face_batch(faces, start, min(start + batch_size, n_total))
        if u8.dim() != 4 or u8.shape[1] != 3:
            raise ValueError(f"faces must be RGB N×3×H×W, got a batch of shape {tuple(u8.shape)}")
        if image_size is None:
            image_size = int(u8.shape[-1])
            check_image_size(u8, image_size, "face batch")
        x = _to_float(u8).to(dev)
        z = channel.edges(x)
        y = ref_f(x)
        latent_shape = tuple(y.shape[1:])
        first = start == 0
        if first:
            k = min(n_grid, x.shape[0])
            grid = {"x": x[:k].cpu(), "z": z[:k].cpu(), "y": y[:k].cpu(), "noisy": {}, "out": {}}
        if ae is not None:
            y_a = ae["f"](x)  # with an entropy bottleneck: what a decoder gets from a file (rounded y)
            xa = ae["g"](ae["eb"](y_a)[0] if "eb" in ae else y_a)
            ae_acc.add(compute_metrics(xa, x, z, **mkw))
            if first:
                grid["ae"] = xa[:k].cpu()
        if not approaches:
            continue
        for i, (p, key) in enumerate(zip(psnrs, keys)):
            zn = channel.noisy(z, p, generator=gens[i])
            if first:
                grid["noisy"][key] = zn[:k].cpu()
            for lab, mods in approaches.items():  # a colour hint goes through the channel with its own noise
                yh, xh = elm_forward(mods, zn, make_hint(mods, x, p, hint_gens[i, lab]))
                accs[lab][key].add(compute_metrics(xh, x, z, **mkw))
                if first:
                    grid["out"][(lab, key)] = (yh[:k].cpu(), xh[:k].cpu())

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c, h, w = latent_shape
    n_lat = c * h * w
    lat_txt = f"latent y {c}x{h}x{w} = {n_lat} values ({3 * image_size * image_size / n_lat:.1f}x fewer than x)"
    res: dict[str, Any] = {
        "format": SWEEP_FORMAT,
        "n_images": n_total,
        "image_size": image_size,
        "latent_shape": [c, h, w],
        "latent_values": n_lat,
        "compression_ratio": 3 * image_size * image_size / n_lat,
        "psnrs": psnrs,
        "seed": int(seed),
        "channel": {"peak": 1.0, "normalize": True},
        "edge": {"canny_low": canny_low, "canny_high": canny_high, "blur_sigma": blur_sigma,
                 "f1_tolerance_px": int(edge_tolerance)},
        "metrics": list(METRIC_NAMES),
        "ae": ae_acc.mean() if ae is not None else None,
        "approaches": {lab: {k: accs[lab][k].mean() for k in keys} for lab in approaches},
    }
    rows = []
    if ae is not None:
        rows.append({"approach": "ae", "channel_psnr": None, **res["ae"]})
    for lab in approaches:
        for p, k in zip(psnrs, keys):
            rows.append({"approach": lab, "channel_psnr": p, **res["approaches"][lab][k]})
    res["rows"] = rows
    res.update(meta or {})

    # figures
    title_tail = f"{lat_txt}; n={n_total}" + (f"; split {res['split']}" if "split" in res else "")
    figs: dict[str, Any] = {"grids": {}}
    figures.plot_ssim_vs_psnr(res, out / "ssim_vs_psnr.png", title=f"SSIM vs channel PSNR — {title_tail}")
    figs["ssim_vs_psnr"] = "ssim_vs_psnr.png"
    if approaches and n_grid > 0:  # n_grid=0: no grids (e.g. dataset faces that must stay out of results)
        for p, k in zip(psnrs, keys):
            cols = _grid_columns(grid, k, list(approaches), image_size, latent_mode)
            img = figures.compose_grid(cols, title=f"channel PSNR {k} dB | {title_tail}")
            rel = f"grids/psnr_{k}.png"
            figures.write_png(out / rel, img)
            figs["grids"][k] = rel
    if ae is not None and n_grid > 0:
        cols = [("original\nx", grid["x"]), ("latent y\n" + latent_mode, figures.latent_vis(grid["y"], image_size,
                                                                                              latent_mode)),
                ("AE\ng(f(x))", grid["ae"])]
        figures.write_png(out / "grids/ae.png", figures.compose_grid(cols, title=f"AE | {title_tail}"))
        figs["ae_grid"] = "grids/ae.png"
    res["figures"] = figs
    res["wall_s"] = round(time.time() - t0, 3)
    write_json(out / "sweep.json", res)
    _atomic_text(out / "sweep.md", format_markdown(res))
    return res


def _grid_columns(grid: dict, key: str, labels: list[str], size: int, latent_mode: str):
    cols = [("original\nx", grid["x"]), ("noisy edges\nz+n", figures.edge_map_vis(grid["noisy"][key])),
            ("latent y\nf(x)", figures.latent_vis(grid["y"], size, latent_mode))]
    for lab in labels:
        yh, xh = grid["out"][(lab, key)]
        cols.append((f"{lab}\ny_hat=h(z+n)", figures.latent_vis(yh, size, latent_mode)))
        cols.append((f"{lab}\nx_hat", xh))
    if "ae" in grid:
        cols.append(("AE\ng(f(x))", grid["ae"]))
    return cols


# -- reports -------------------------------------------------------------------------------------------------------
def _fmt(v, digits=4):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def format_pivot(res: dict, metric: str = "ssim", markdown: bool = True) -> str:
    """Rows = approaches (+ AE), columns = channel PSNRs, cells = mean ``metric``."""
    keys = [psnr_key(p) for p in res["psnrs"]]
    head = ["approach"] + [f"{k} dB" for k in keys]
    body = []
    if res.get("ae") is not None:
        body.append(["AE g(f(x)), no channel"] + [_fmt(res["ae"].get(metric))] * len(keys))
    for lab, per in res.get("approaches", {}).items():
        body.append([lab] + [_fmt(per[k].get(metric)) for k in keys])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(keys)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt_row = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([fmt_row(head)] + [fmt_row(r) for r in body])


def format_markdown(res: dict) -> str:
    c, h, w = res["latent_shape"]
    lines = [
        "# Channel-PSNR sweep",
        "",
        f"- images: {res['n_images']} ({res.get('split', 'given faces')}), {res['image_size']}×{res['image_size']}",
        f"- latent y: {c}×{h}×{w} = {res['latent_values']} values "
        f"({res['compression_ratio']:.1f}× fewer than the RGB image)",
        f"- channel: AWGN, peak 1.0, power-normalised; noise seed {res['seed']}",
        f"- edges: Canny low {res['edge']['canny_low']}, high {res['edge']['canny_high']}, blur σ "
        f"{res['edge']['blur_sigma']}; edge-F1 tolerance {res['edge']['f1_tolerance_px']} px",
        "",
        "## SSIM per channel PSNR",
        "",
        format_pivot(res, "ssim"),
        "",
        "## Edge-F1 (Canny(x̂) vs clean z) per channel PSNR",
        "",
        format_pivot(res, "edge_f1"),
        "",
        "## All metrics",
        "",
        "| approach | channel PSNR (dB) | SSIM | MS-SSIM | PSNR (dB) | L1 | L2 | edge-F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        p = "—" if r["channel_psnr"] is None else psnr_key(r["channel_psnr"])
        lines.append(f"| {r['approach']} | {p} | {_fmt(r.get('ssim'))} | {_fmt(r.get('ms_ssim'))} | "
                     f"{_fmt(r.get('psnr'), 2)} | {_fmt(r.get('l1'))} | {_fmt(r.get('l2'), 5)} | "
                     f"{_fmt(r.get('edge_f1'))} |")
    return "\n".join(lines) + "\n"


def _json_safe(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return _json_safe(o.item())
    return o


def _atomic_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    _atomic_text(Path(path), json.dumps(_json_safe(obj), indent=2) + "\n")


# -- sweep on checkpoints ------------------------------------------------------------------------------------------
def sweep(cfg, checkpoints: dict[str, str], data=None, psnrs: Sequence[float] | None = None,
          out_dir: str | os.PathLike = "eval", *, split: str | None = None, device=None,
          max_images: int | None = None, batch_size: int | None = None, seed: int | None = None,
          edge_tolerance: int = 0, n_grid: int = 6, progress: bool = False) -> dict:
    """Evaluate training checkpoints {label: path} over channel PSNRs; see the module docstring.

    ``data``: a FaceArray (or uint8 N×3×H×W tensor), or a data path for ``load_faces`` (None -> cfg.data.path).
    The auto-encoder row uses the step-1 checkpoint (or, without one, approach 1's f and g, which are step 1's,
    frozen). Edge maps use the Canny thresholds of the checkpoints' training config.
    """

    dev = resolve_device(device or cfg.train.device)
    if not checkpoints:
        raise ValueError("sweep: no checkpoints given")
    loaded = {lab: load_for_eval(p, label=lab, expect_model=cfg.model.name, device=dev)
              for lab, p in checkpoints.items()}
    return sweep_loaded(cfg, loaded, data, psnrs, out_dir, split=split, device=dev, max_images=max_images,
                        batch_size=batch_size, seed=seed, edge_tolerance=edge_tolerance, n_grid=n_grid,
                        progress=progress)


def sweep_loaded(cfg, loaded: dict, data=None, psnrs: Sequence[float] | None = None,
                 out_dir: str | os.PathLike = "eval", *, split: str | None = None, device=None,
                 max_images: int | None = None, batch_size: int | None = None, seed: int | None = None,
                 edge_tolerance: int = 0, n_grid: int = 6, progress: bool = False,
                 trained: str = "the checkpoints were", meta: dict | None = None) -> dict:
    """``sweep`` of already-loaded checkpoints {label: LoadedCheckpoint} (e.g. a zoo entry's stages). ``trained``
    names them in the image-size error; ``meta`` adds to (or overrides) the sweep's metadata."""
    ev = cfg.eval
    psnrs = list(ev.psnrs if psnrs is None else psnrs)
    split = split or ev.split
    seed = ev.seed if seed is None else seed
    batch_size = batch_size or ev.batch_size
    max_images = max_images if max_images is not None else ev.max_images
    dev = resolve_device(device or cfg.train.device)
    sizes = {lab: lc.image_size for lab, lc in loaded.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"checkpoints were trained on different image sizes: {sizes}")
    image_size = next(iter(sizes.values()))
    users = {lab: lc for lab, lc in loaded.items() if lc.has_elm} or loaded  # step 1 never sees an edge map
    edge_cfgs = {lab: (lc.config.data.canny_low, lc.config.data.canny_high, lc.config.data.blur_sigma)
                 for lab, lc in users.items()}
    if len(set(edge_cfgs.values())) != 1:
        raise ValueError(f"checkpoints were trained with different Canny settings (low, high, blur): {edge_cfgs}")
    canny_low, canny_high, blur_sigma = next(iter(edge_cfgs.values()))

    ae_src = next((lc for lc in loaded.values() if lc.stage == "step1" and {"f", "g"} <= set(lc.parts)), None)
    if ae_src is None:
        ae_src = next((lc for lc in loaded.values() if lc.stage == "approach1" and {"f", "g"} <= set(lc.parts)),
                      None)
    if not any(lc.has_elm for lc in loaded.values()) and ae_src is None:
        raise ValueError(f"nothing to evaluate in {sorted(loaded)}: no step-1 auto-encoder and no approach "
                         f"checkpoint with a trained ELM h")
    if any("f" not in lc.parts for lc in loaded.values() if lc.has_elm) and ae_src is None:
        raise ValueError("the approach checkpoints hold no trained encoder f (needed to show y = f(x)); add the "
                         "step1 checkpoint")
    approaches = {lab: lc.models for lab, lc in loaded.items() if lc.has_elm}
    ae = ({k: ae_src.models[k] for k in ("f", "g", "eb") if k in ae_src.parts or k in ("f", "g")}
          if ae_src is not None else None)

    if data is None or isinstance(data, (str, os.PathLike)):
        from pycompgen.data import load_faces
        path = cfg.data.path if data is None else str(data)
        faces = load_faces(path, split=split, image_size=image_size, cache_dir=cfg.data.cache_dir,
                           synthetic_count=cfg.data.synthetic_count, seed=cfg.train.seed)
        source = getattr(faces, "source", path)
    else:
        faces = data
        source = getattr(faces, "source", type(faces).__name__)
    fsize = getattr(faces, "image_size", None)
    if fsize is None:
        fsize = int(face_batch(faces, 0, 1).shape[-1])
    if int(fsize) != image_size:
        raise ValueError(f"faces are {fsize}×{fsize} but {trained} trained on {image_size}×{image_size} "
                         f"images (set data.image_size={image_size})")
    meta = {"split": split, "data": str(source), "device": str(dev),
            "ae_source": ae_src.label if ae_src is not None else None,
            "checkpoints": {lab: lc.info() for lab, lc in loaded.items()},
            "model_config": next(iter(loaded.values())).config.to_dict()["model"], **(meta or {})}
    return sweep_models(approaches, faces, out_dir, ae=ae, psnrs=psnrs, canny_low=canny_low,
                        canny_high=canny_high, blur_sigma=blur_sigma, device=dev, batch_size=batch_size,
                        max_images=max_images, seed=seed, edge_tolerance=edge_tolerance, n_grid=n_grid,
                        meta=meta, progress=progress)


def sweep_pretrained(cfg, pre, data=None, psnrs=None, out_dir="eval", *, split=None, device=None, max_images=None,
                     batch_size=None, seed=None, edge_tolerance: int = 0, n_grid: int = 6,
                     progress: bool = False) -> dict:
    """``sweep_loaded`` of every approach of the zoo entry ``pre`` (pycompgen.zoo.Pretrained) plus its step-1
    auto-encoder; writes sweep.json/.md, the plot and grids into ``out_dir`` and returns the sweep dict."""
    return sweep_loaded(cfg, dict(pre.stages), data, psnrs, out_dir, split=split, device=device,
                        max_images=max_images, batch_size=batch_size, seed=seed, edge_tolerance=edge_tolerance,
                        n_grid=n_grid, progress=progress, trained=f"pretrained model {pre.name!r} was",
                        meta={"pretrained": pre.name, "model_config": pre.config.to_dict()["model"]})
