"""Rate–distortion on real files (bench/rd.py): every face becomes one real file (``pycompgen.codec`` container;
sizes with and without its header), bpp = 8·bytes/(H·W); Compgen's edge maps at several Canny thresholds (the edge
path's rate knob) decoded by approach 3, learned latent codecs (a system with an entropy bottleneck), the channel
grid of approach 3 (trained at one PSNR, tested at each), the face-reconstruction study's Table 1 (with and without
the face mask), the RD plots and the markdown tables."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from pycompgen.data import to_float01

THRESHOLDS = [(0.15, 0.30), (0.30, 0.60), (0.45, 0.90), (0.60, 1.00)]  # Canny (low, high) on [0, 1] intensities
DEFAULT_THRESHOLDS = [0.30, 0.60]  # Compgen's default edge map: the equal-bytes target
GRID_TEST = [50.0, 25.0, 10.0, 0.0, -2.0, -5.0]
STUDY_TABLE1 = {  # the study's Table 1 (its own models; 1-SSIM, 1-MS-SSIM, l1, l2)
    "CVAE": (0.307, 0.067, 0.439, 0.475), "CVAE+Mask": (0.215, 0.045, 0.323, 0.559),
    "DCGAN": (0.417, 0.150, 0.642, 0.943), "DCGAN+Mask": (0.274, 0.090, 0.456, 1.050),
    "JPEG": (0.004, 0.000, 0.003, 0.000), "JPEG+Mask": (0.004, 0.000, 0.323, 0.559)}


# -- points on real files ---------------------------------------------------------------------------------------------
def metrics(x_hat, x) -> dict:
    """Mean PSNR, SSIM and MS-SSIM of a batch (``pycompgen.metrics``)."""
    from pycompgen import metrics as M
    return {"psnr": float(M.psnr(x_hat, x).mean()), "ssim": float(M.ssim(x_hat, x).mean()),
            "ms_ssim": float(M.ms_ssim(x_hat, x).mean())}


def point(name, sizes, header, x_hat, x, **extra) -> dict:
    """One RD point: mean file size, bpp with and without the ``header`` bytes, and the metrics of ``x_hat``."""
    hw = x.shape[-2] * x.shape[-1]
    b = float(np.mean(sizes))
    return {"codec": name, "n": int(x.shape[0]), "bytes_mean": b, "bpp": 8 * b / hw,
            "bpp_payload": 8 * (b - header) / hw, "header_bytes": header, **metrics(x_hat.clamp(0, 1), x), **extra}


@torch.no_grad()
def edge_points(ckpt_path, x, log=print) -> list:
    """Compgen: Canny edge map -> one .pcg file per face -> approach 3's x̂ = g(h(z)), at several thresholds."""
    from pycompgen.inference import compress_images, decompress_bytes, load_checkpoint_for_codec
    lc = load_checkpoint_for_codec(ckpt_path)
    d = lc.config.data
    out = []
    for lo, hi in THRESHOLDS:
        d.canny_low, d.canny_high = lo, hi
        sizes, rec, t_enc, t_dec = [], [], 0.0, 0.0
        for i in range(x.shape[0]):
            t = time.perf_counter()
            f = compress_images(lc, x[i:i + 1], payload="edges")
            t_enc += time.perf_counter() - t
            t = time.perf_counter()
            xh, hdr = decompress_bytes(lc, f)
            t_dec += time.perf_counter() - t
            sizes.append(len(f))
            rec.append(xh)
        p = point(f"Compgen edges (approach 3) canny {lo:.2f}/{hi:.2f}", sizes, hdr.nbytes, torch.cat(rec), x,
                  canny=[lo, hi], ms_encode=1e3 * t_enc / x.shape[0], ms_decode=1e3 * t_dec / x.shape[0])
        out.append(p)
        log(f"{p['codec']}: {p['bpp']:.3f} bpp ({p['bpp_payload']:.3f} without header), SSIM {p['ssim']:.4f}")
    return out


@torch.no_grad()
def hint_points(lc, x, bits=None, label: str = "Compgen + colour hint", log=print, batch_size: int = 100) -> list:
    """Compgen with a colour hint (``lc``: a loaded approach-3 checkpoint or zoo stage with ``model.hint_size``):
    one edges+hint .pcg file per face at each hint bit depth in ``bits`` (default ``model.hint_bits``) ->
    x̂ = g(h(z, hint)); one RD point per bit depth (the rate knob), sorted by rate."""
    from pycompgen.inference import compress_batch, decompress_batch
    from pycompgen.systems.compgen.system import hint_spec
    size, own = hint_spec(lc.models)
    if not size:
        raise ValueError(f"hint_points: {lc.path} takes no colour hint (model.hint_size=0)")
    h = lc.models["h"]
    out = []
    try:
        for b in (bits or lc.config.model.hint_bits):
            h.hint_bits = int(b)
            files = []
            for i in range(0, x.shape[0], batch_size):
                files += compress_batch(lc, x[i:i + batch_size], "edges+hint")
            dec = decompress_batch(lc, [(f"face {i}", f) for i, f in enumerate(files)], batch_size=batch_size)
            hdr = dec[0][1]
            p = point(f"{label} {size}x{size} @ {b} bits", [len(f) for f in files], hdr.nbytes,
                      torch.cat([d[0] for d in dec]), x, hint_size=size, hint_bits=int(b))
            out.append(p)
            log(f"{p['codec']}: {p['bpp']:.3f} bpp ({p['bpp_payload']:.3f} without header), SSIM {p['ssim']:.4f}")
    finally:
        h.hint_bits = own
    return sorted(out, key=lambda p: p["bpp"])


@torch.no_grad()
def latent_point(label, ckpt_path, x, log=print) -> dict:
    """A system with an entropy bottleneck: its latent -> one .pcg file per face -> its decoder."""
    from pycompgen.inference import compress_images, decompress_bytes, load_checkpoint_for_codec
    lc = load_checkpoint_for_codec(ckpt_path)
    sizes, rec = [], []
    for i in range(x.shape[0]):
        f = compress_images(lc, x[i:i + 1], payload="latent")
        xh, hdr = decompress_bytes(lc, f)
        sizes.append(len(f))
        rec.append(xh)
    p = point(label, sizes, hdr.nbytes, torch.cat(rec), x, latent_values=int(np.prod(hdr.params["latent_shape"])))
    log(f"{label}: {p['bpp']:.3f} bpp ({p['bpp_payload']:.3f} without header), SSIM {p['ssim']:.4f}")
    return p


def equal_bytes(points: dict, codecs, key: str = "Compgen (edge map, approach 3)") -> dict:
    """Each codec at the file size of Compgen's default edge map (Canny 0.30/0.60, header included)."""
    from pycompgen.codec.baselines import at_equal_bytes
    ref = next(p for p in points[key] if p["canny"] == DEFAULT_THRESHOLDS)
    return {"target": "Compgen's default edge map (Canny 0.30/0.60), file with header", "bpp": ref["bpp"],
            "compgen": {k: ref[k] for k in ("bpp", "ssim", "ms_ssim", "psnr")},
            "codecs": {c: at_equal_bytes(points[c], ref["bpp"]) for c in codecs}}


# -- channel robustness -----------------------------------------------------------------------------------------------
@torch.no_grad()
def channel_grid(ckpts, x, log=print) -> dict:
    """SSIM of approach 3 trained at each PSNR (rows) and tested at each PSNR (columns), clean Canny edge maps through
    the AWGN channel; plus the average-power SNR of each test PSNR on these faces. ``ckpts``: "compgen" (trained
    across the range) and "approach3 @ <p> dB" (trained at p)."""
    from pycompgen.data import EdgeChannel
    from pycompgen import metrics as M
    from pycompgen.models import load_for_eval
    from pycompgen.systems.compgen.system import decode_edges, make_hint
    models = {"range -5:50 dB": ckpts["compgen"], **{k.split("@ ")[1]: v for k, v in ckpts.items()
                                                    if k.startswith("approach3 @")}}
    x8 = (x * 255).round().to(torch.uint8)
    rows, density = {}, None
    for label, path in models.items():
        lc = load_for_eval(path, expect_model="compgen")
        d = lc.config.data
        row = {}
        for p in GRID_TEST:
            b = EdgeChannel(d.canny_low, d.canny_high, d.blur_sigma, psnr=p)(x8, torch.device("cpu"),
                                                                             generator=torch.Generator().manual_seed(0))
            hint = make_hint(lc.models, b["x"], b["psnr"], torch.Generator().manual_seed(1))
            x_hat = decode_edges(lc.models, b["z_noisy"], hint).clamp(0, 1)
            row[f"{p:g}"] = float(M.ssim(x_hat, b["x"]).mean())
            density = float(b["z"].float().mean())
        rows[label] = row
        log(f"channel grid, trained {label}: " + ", ".join(f"{k} dB {v:.3f}" for k, v in row.items()))
    snr = {f"{p:g}": p + 10 * np.log10(density) for p in GRID_TEST}
    return {"ssim": rows, "test_psnr_db": GRID_TEST, "edge_density": density, "avg_power_snr_db": snr}


# -- Table 1 ----------------------------------------------------------------------------------------------------------
def table1(ckpts, x) -> dict:
    """The study's Table 1 on our models: 1-SSIM, 1-MS-SSIM, l1, l2 with and without the face ellipse mask.
    ``ckpts``: "CVAE", "DCGAN", "compgen-ae" (Compgen step 1) and "compgen" (approach 3)."""
    import cv2

    from pycompgen.models import load_for_eval
    from pycompgen.systems.compgen.system import decode_edges, make_hint
    from pycompgen.evaluation.masks import face_ellipse_mask, table1_metrics
    from pycompgen.ops import canny
    from pycompgen.systems import get_system
    mask = face_ellipse_mask(x.shape[-1])
    recs = {}
    with torch.no_grad():
        for label, key in (("CVAE", "CVAE"), ("DCGAN", "DCGAN"), ("Compgen AE", "compgen-ae")):
            lc = load_for_eval(ckpts[key], expect_model=None)
            recs[label] = get_system(lc.model_name).reconstruct(lc.stage, lc.models, {"x": x}).clamp(0, 1)
        lc = load_for_eval(ckpts["compgen"], expect_model="compgen")
        z = canny(x, lc.config.data.canny_low, lc.config.data.canny_high)
        recs["Compgen approach 3 (edges)"] = decode_edges(lc.models, z, make_hint(lc.models, x)).clamp(0, 1)
    u8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    jpeg = [cv2.imdecode(cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1], 1)[..., ::-1]
            for im in u8]
    recs["JPEG q85"] = to_float01(jpeg)
    rows = {}
    for label, r in recs.items():
        rows[label] = table1_metrics(x, r)["mean"]
        rows[label + "+Mask"] = table1_metrics(x, r, mask)["mean"]
    return rows


# -- figures ----------------------------------------------------------------------------------------------------------
def plot_grid(grid: dict, path: Path) -> str:
    """The channel grid (``channel_grid``) as a heat map of SSIM."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(grid["ssim"])
    cols = [f"{p:g}" for p in grid["test_psnr_db"]]
    a = np.array([[grid["ssim"][r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    im = ax.imshow(a, cmap="viridis", vmin=a.min(), vmax=a.max())
    ax.set_xticks(range(len(cols)), [f"{c} dB\n({grid['avg_power_snr_db'][c]:.1f} dB)" for c in cols], fontsize=7)
    ax.set_yticks(range(len(rows)), [f"train {r}" for r in rows], fontsize=8)
    ax.set_xlabel("test channel: peak PSNR (average-power SNR)")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, f"{a[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="SSIM")
    ax.set_title("approach 3: SSIM by training and test channel PSNR")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot(points_by_codec: dict, out_dir: Path) -> list:
    """rd_ssim.png, rd_ms_ssim.png, rd_psnr.png in ``out_dir``: each series' metric against bpp (file size)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for metric, label in (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM"), ("psnr", "PSNR (dB)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.set_prop_cycle(color=plt.cm.tab20.colors[::2] + plt.cm.tab20.colors[1::2])  # > 10 series, no repeats
        for name, pts in points_by_codec.items():
            pts = sorted(pts, key=lambda p: p["bpp"])
            style = "o-" if len(pts) > 1 else "*"
            ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], style, label=name,
                    markersize=9 if len(pts) == 1 else 4)
        ax.set_xlabel("bits per pixel (real file size, header included)")
        ax.set_ylabel(label)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"64x64 CelebA validation faces: {label} vs rate")
        f = out_dir / f"rd_{metric}.png"
        fig.tight_layout()
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(str(f))
    return files


# -- markdown ---------------------------------------------------------------------------------------------------------
def rd_markdown(points: dict, equal: dict, grid: dict, n: int, command: str, date: str, machine: dict) -> list:
    """The lines of rd-<machine>.md: every point, the codecs at equal bytes, the channel grid. ``machine``: a
    ``machine_summary()``."""
    md = [f"# Rate–distortion on {n} CelebA validation faces (64x64)\n", f"`{command}` — {date}, "
          f"{machine['cpu']}, {machine['threads']} threads\n",
          "| codec | setting | bpp (file) | bpp (payload) | SSIM | MS-SSIM | PSNR |", "|---|---|---|---|---|---|---|"]
    for name, pts in points.items():
        for p in sorted(pts, key=lambda p: p["bpp"]):
            setting = p.get("quality", p.get("canny", p["codec"]))
            md.append(f"| {name} | {setting} | {p['bpp']:.3f} | {p.get('bpp_payload', p['bpp']):.3f} | "
                      f"{p['ssim']:.4f} | {p['ms_ssim']:.4f} | {p['psnr']:.2f} |")
    ref = equal["compgen"]
    md += ["", f"## At equal bytes: {equal['bpp']:.3f} bpp ({equal['target']})", "",
           "| codec | quality setting | SSIM | MS-SSIM | PSNR |", "|---|---|---|---|---|",
           f"| Compgen | — | {ref['ssim']:.4f} | {ref['ms_ssim']:.4f} | {ref['psnr']:.2f} |"]
    for c, e in equal["codecs"].items():
        md.append(f"| {c} | " + (f"{e['quality']:.1f} | {e['ssim']:.4f} | {e['ms_ssim']:.4f} | {e['psnr']:.2f} |"
                                 if e["in_range"] else f"not reachable (its files span {e['bpp_range'][0]:.2f}–"
                                 f"{e['bpp_range'][1]:.2f} bpp) | | | |"))
    cols = [f"{p:g}" for p in grid["test_psnr_db"]]
    md += ["", f"## Channel robustness: approach 3 SSIM (rows: training PSNR; columns: test PSNR, edge density "
               f"{grid['edge_density']:.3f})", "",
           "| trained at | " + " | ".join(f"{c} dB (SNR {grid['avg_power_snr_db'][c]:.1f} dB)" for c in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for r, row in grid["ssim"].items():
        md.append(f"| {r} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + " |")
    return md


def table1_markdown(t1: dict) -> list:
    """The lines of table1-<machine>.md: our Table 1 (``table1``) beside the study's."""
    tmd = ["| model | 1−SSIM | 1−MS-SSIM | l1 | l2 | study (1−SSIM, 1−MS-SSIM, l1, l2) |",
           "|---|---|---|---|---|---|"]
    for k, v in t1.items():
        base = k.replace("Compgen AE", "").replace("Compgen approach 3 (edges)", "").replace(" q85", "")
        study = STUDY_TABLE1.get(base)
        tmd.append(f"| {k} | {v['1-ssim']:.3f} | {v['1-ms_ssim']:.3f} | {v['l1']:.4f} | {v['l2']:.4f} | "
                   f"{', '.join(f'{s:.3f}' for s in study) if study else '—'} |")
    return tmd
