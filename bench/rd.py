#!/usr/bin/env python
"""Rate–distortion benchmark on real files: Compgen's edge maps, learned latent codecs (Compgen's AE at several λ,
the study's CVAE and DCGAN) and the image codecs people use (JPEG, WebP, JPEG 2000, AVIF, JPEG XL), on the same
validation faces (64x64); plus the face-reconstruction study's Table 1 (with and without the face mask).

    python bench/rd.py --data ../shared/data/celeba                 # train what is missing (resumable), measure
    python bench/rd.py --data ../shared/data/celeba --eval-only     # measure the models already in --run-dir
    python bench/rd.py --data DIR --model mine=runs/x/best.pt --models-only   # your own checkpoints beside the codecs

Training (plain loop on this machine, resumable: re-run the same command; finished runs are skipped) uses the CPU
preset of bench/quality.py for Compgen and the study's widths for the CVAE / DCGAN, on the whole CelebA train
partition, for the epochs given by the ``--epochs-*`` options (a budget, not the papers' recipes: stated in the
results). Measurement: every face becomes one real file (``pycompgen.codec`` container; sizes with and without its
header), bpp = 8·bytes/(64·64); Compgen at several Canny thresholds (the edge path's rate knob) decoded by its one
approach-3 decoder (trained at the default thresholds, clean channel at test time).

Channel robustness (joint source–channel view): approach 3 trained at a fixed channel PSNR of 50, 10, 0 and −5 dB
(each fine-tuned from the same approach-1 start for ``--epochs-grid`` epochs) and across the range (the main model),
each tested at 50, 25, 10, 0, −2, −5 dB; the paper's peak PSNR and the average-power SNR (mean z² / σ², i.e. PSNR +
10·log10(edge density)) side by side.

Writes bench/results/rd-<machine>.json (every point, machine, command, date, budget), rd-<machine>.md (tables),
rd-<machine>/rd_{ssim,ms_ssim,psnr}.png and table1-<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from quality import CPU_PRESET, PSNR_RANGE  # noqa: E402

THRESHOLDS = [(0.15, 0.30), (0.30, 0.60), (0.45, 0.90), (0.60, 1.00)]  # Canny (low, high) on [0, 1] intensities
AE_LAMBDAS = [0.0, 0.05, 0.3]
# codec settings down to each codec's smallest files, so they reach Compgen's rates where they can
QUALITIES = {"jpeg": [1, 3, 5, 10, 20, 30, 50, 70, 85, 95], "webp": [0, 1, 3, 5, 10, 25, 50, 75, 90],
             "jpeg2k": [16, 18, 20, 22, 24, 28, 32, 36], "avif": [0, 5, 10, 20, 35, 50, 65, 80],
             "jpegxl": [1, 3, 5, 10, 30, 50, 70, 85, 95]}
GRID_TRAIN = [50.0, 10.0, 0.0, -5.0]
GRID_TEST = [50.0, 25.0, 10.0, 0.0, -2.0, -5.0]
STUDY_TABLE1 = {  # the study's Table 1 (its own models; 1-SSIM, 1-MS-SSIM, l1, l2)
    "CVAE": (0.307, 0.067, 0.439, 0.475), "CVAE+Mask": (0.215, 0.045, 0.323, 0.559),
    "DCGAN": (0.417, 0.150, 0.642, 0.943), "DCGAN+Mask": (0.274, 0.090, 0.456, 1.050),
    "JPEG": (0.004, 0.000, 0.003, 0.000), "JPEG+Mask": (0.004, 0.000, 0.323, 0.559)}


def log(msg):
    print(f"[rd] {msg} (load average {os.getloadavg()[0]:.2f})", flush=True)


# -- training ---------------------------------------------------------------------------------------------------------
def train_all(args, run_dir: Path) -> dict:
    from pycompgen.config import load_config
    from pycompgen.training import run_pipeline, stage_done, train_local
    data = ["train.progress=false", "train.device=cpu", f"data.path={Path(args.data).resolve()}"] + \
        (["train.max_steps_per_epoch=3", "train.max_val_batches=1"] if args.smoke else [])
    runs, secs = {}, {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        secs[name] = round(time.perf_counter() - t, 1)
        log(f"{name}: trained in {secs[name]:.0f} s")

    cfg = load_config(None, CPU_PRESET + data + [f"train.psnr_range=[{PSNR_RANGE[0]},{PSNR_RANGE[1]}]",
                                                 f"out={run_dir / 'compgen'}"])
    stages = {"step1": args.epochs_step1, "approach1": args.epochs_approach1, "approach3": args.epochs_approach3}
    for stage, ep in stages.items():
        c = cfg.copy()
        c.train.epochs = ep
        if not stage_done(run_dir / "compgen" / stage / "last.pt", _with_stage(c, stage)):
            timed(f"compgen-{stage}", lambda c=c, s=stage: run_pipeline(c, stages=[s], resume=True, verbose=True))
    runs["compgen"] = str(run_dir / "compgen" / "approach3" / "best.pt")
    runs["compgen-ae"] = str(run_dir / "compgen" / "step1" / "best.pt")
    for lam in AE_LAMBDAS:  # the AE with an entropy bottleneck, fine-tuned from step 1 at rate weight λ
        out = run_dir / f"ae-eb-{lam:g}"
        c = load_config(None, CPU_PRESET + data + ["model.entropy_bottleneck=true", f"train.rate_weight={lam}",
                                                   f"train.epochs={args.epochs_ae}", f"out={out}",
                                                   f"train.init={run_dir / 'compgen' / 'step1' / 'best.pt'}"])
        if not stage_done(out / "last.pt", c):
            timed(f"ae-eb-{lam:g}", lambda c=c: train_local(c, resume=True))
        # the end state: with λ > 0 the best-SSIM epoch is the least compressed one, not the λ trade-off
        runs[f"AE λ={lam:g}"] = str(out / "last.pt")
    step1 = torch.load(run_dir / "compgen" / "step1" / "best.pt", weights_only=True)["models"]
    a1 = torch.load(run_dir / "compgen" / "approach1" / "best.pt", weights_only=True)["models"]
    for p in GRID_TRAIN:  # approach 3 at one training PSNR (the channel grid)
        out = run_dir / f"approach3-psnr{p:g}"
        c = cfg.copy()
        c.train.stage, c.train.epochs, c.train.psnr, c.train.psnr_range, c.out = \
            "approach3", args.epochs_grid, p, None, str(out)
        if not stage_done(out / "last.pt", c):
            timed(f"approach3-psnr{p:g}", lambda c=c: train_local(c, resume=True, init={
                "f": step1["f"], "g": step1["g"], "h": a1["h"]}))
        runs[f"approach3 @ {p:g} dB"] = str(out / "best.pt")
    for system, ep in (("cvae", args.epochs_cvae), ("dcgan", args.epochs_dcgan)):
        out = run_dir / system
        c = load_config(None, data + [f"model.name={system}", f"train.epochs={ep}", "train.batch_size=100",
                                      f"out={out}"])
        if not stage_done(out / "last.pt", c):
            timed(system, lambda c=c: train_local(c, resume=True))
        runs[system.upper()] = str(out / "best.pt")
    return {"checkpoints": runs, "train_seconds": secs}


def _with_stage(cfg, stage):
    c = cfg.copy()
    c.train.stage = stage
    c.out = str(Path(cfg.out) / stage)
    return c


# -- measuring --------------------------------------------------------------------------------------------------------
def metrics(x_hat, x) -> dict:
    from pycompgen import metrics as M
    return {"psnr": float(M.psnr(x_hat, x).mean()), "ssim": float(M.ssim(x_hat, x).mean()),
            "ms_ssim": float(M.ms_ssim(x_hat, x).mean())}


def point(name, sizes, header, x_hat, x, **extra) -> dict:
    hw = x.shape[-2] * x.shape[-1]
    b = float(np.mean(sizes))
    return {"codec": name, "n": int(x.shape[0]), "bytes_mean": b, "bpp": 8 * b / hw,
            "bpp_payload": 8 * (b - header) / hw, "header_bytes": header, **metrics(x_hat.clamp(0, 1), x), **extra}


@torch.no_grad()
def edge_points(ckpt_path, x) -> list:
    """Compgen: Canny edge map -> one .pcg file per face -> approach 3's x̂ = g(h(z)), at several thresholds."""
    from pycompgen.inference import compress_images, decompress_bytes, load_checkpoint_for_codec
    from pycompgen.codec.container import unpack
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
def latent_point(label, ckpt_path, x) -> dict:
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


@torch.no_grad()
def channel_grid(ckpts, x) -> dict:
    """SSIM of approach 3 trained at each PSNR (rows) and tested at each PSNR (columns), clean Canny edge maps through
    the AWGN channel; plus the average-power SNR of each test PSNR on these faces."""
    from pycompgen.data import EdgeChannel
    from pycompgen import metrics as M
    from pycompgen.models import load_for_eval
    from pycompgen.systems.compgen.system import decode_edges
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
            x_hat = decode_edges(lc.models, b["z_noisy"]).clamp(0, 1)
            row[f"{p:g}"] = float(M.ssim(x_hat, b["x"]).mean())
            density = float(b["z"].float().mean())
        rows[label] = row
        log(f"channel grid, trained {label}: " + ", ".join(f"{k} dB {v:.3f}" for k, v in row.items()))
    snr = {f"{p:g}": p + 10 * np.log10(density) for p in GRID_TEST}
    return {"ssim": rows, "test_psnr_db": GRID_TEST, "edge_density": density, "avg_power_snr_db": snr}


def plot_grid(grid: dict, path: Path) -> str:
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


def table1(ckpts, x) -> dict:
    """The study's Table 1 on our models: 1-SSIM, 1-MS-SSIM, l1, l2 with and without the face ellipse mask."""
    import cv2

    from pycompgen.models import load_for_eval
    from pycompgen.systems.compgen.system import decode_edges
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
        recs["Compgen approach 3 (edges)"] = decode_edges(lc.models, z).clamp(0, 1)
    u8 = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    jpeg = [cv2.imdecode(cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1], 1)[..., ::-1]
            for im in u8]
    recs["JPEG q85"] = torch.from_numpy(np.stack(jpeg).copy()).permute(0, 3, 1, 2).float() / 255
    rows = {}
    for label, r in recs.items():
        rows[label] = table1_metrics(x, r)["mean"]
        rows[label + "+Mask"] = table1_metrics(x, r, mask)["mean"]
    return rows


def plot(points_by_codec: dict, out_dir: Path) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "rd"))
    ap.add_argument("--val-images", type=int, default=300)
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--epochs-step1", type=int, default=4)
    ap.add_argument("--epochs-approach1", type=int, default=3)
    ap.add_argument("--epochs-approach3", type=int, default=4)
    ap.add_argument("--epochs-ae", type=int, default=2)
    ap.add_argument("--epochs-cvae", type=int, default=6)
    ap.add_argument("--epochs-dcgan", type=int, default=6)
    ap.add_argument("--epochs-grid", type=int, default=2, help="epochs of each fixed-PSNR approach 3")
    ap.add_argument("--codecs", default="jpeg,webp,jpeg2k,avif,jpegxl")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--smoke", action="store_true", help="check the script: 3 steps an epoch, 1 epoch each, 8 faces")
    ap.add_argument("--model", action="append", default=[], metavar="LABEL=CHECKPOINT",
                    help="also measure this checkpoint (a system with an entropy bottleneck: its latent files; a "
                         "Compgen approach: its edge-map files at the Canny thresholds); repeatable")
    ap.add_argument("--models-only", action="store_true",
                    help="measure only the --model checkpoints and the codecs (no training, no Table 1, no grid)")
    args = ap.parse_args(argv)
    if args.smoke:
        for k in vars(args):
            if k.startswith("epochs_"):
                setattr(args, k, 1)
        args.val_images, args.codecs = 8, "jpeg,webp"

    from _timing import cpu_model
    from pycompgen.codec.baselines import at_equal_bytes, available_codecs, sweep
    from pycompgen.data import load_faces
    from pycompgen.evaluation.sweep import face_batch

    run_dir = Path(args.run_dir)
    t0 = time.perf_counter()
    log(f"machine {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    user = {}
    for item in args.model:
        label, _, path = item.rpartition("=")
        if not label or not Path(path).is_file():
            ap.error(f"--model {item!r}: expected LABEL=CHECKPOINT with an existing file")
        user[label] = path
    if args.models_only:
        trained = {"checkpoints": {}, "train_seconds": {}}
    elif args.eval_only:
        trained = json.loads((run_dir / "trained.json").read_text())
    else:
        trained = train_all(args, run_dir)
        (run_dir / "trained.json").write_text(json.dumps(trained, indent=1))
    ckpts = trained["checkpoints"]

    val = load_faces(str(Path(args.data).resolve()), "val", 64)
    n = min(args.val_images, len(val))
    x = face_batch(val, 0, n).float() / 255
    u8 = np.ascontiguousarray((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    log(f"{n} validation faces")
    points: dict = {}
    for label, path in user.items():
        from pycompgen.inference import load_checkpoint_for_codec
        has_eb = "eb" in load_checkpoint_for_codec(path).parts
        points[label] = [latent_point(label, path, x)] if has_eb else edge_points(path, x)
    if not args.models_only:
        points["Compgen (edge map, approach 3)"] = edge_points(ckpts["compgen"], x)
        points["Compgen AE + entropy bottleneck (λ sweep)"] = [latent_point(k, v, x) for k, v in ckpts.items()
                                                               if k.startswith("AE λ")]
        for k in ("CVAE", "DCGAN"):
            points[f"{k} + entropy bottleneck"] = [latent_point(k, ckpts[k], x)]
    codecs = [c for c in args.codecs.split(",") if c in available_codecs()]
    for c in codecs:
        t = time.perf_counter()
        points[c] = sweep(u8, c, QUALITIES.get(c))
        log(f"{c}: {len(points[c])} qualities in {time.perf_counter() - t:.0f} s")

    if args.models_only:
        figs = plot(points, ROOT / "bench" / "results" / f"rd-{args.machine}")
        out = ROOT / "bench" / "results" / f"rd-{args.machine}.json"
        out.write_text(json.dumps({"benchmark": "rd", "date": datetime.datetime.now().isoformat(timespec="seconds"),
                                   "val_images": n, "points": points, "figures": figs}, indent=1))
        log(f"-> {out}, {figs[0]}")
        return 0
    ref = next(p for p in points["Compgen (edge map, approach 3)"] if p["canny"] == [0.30, 0.60])
    equal = {"target": "Compgen's default edge map (Canny 0.30/0.60), file with header", "bpp": ref["bpp"],
             "compgen": {k: ref[k] for k in ("bpp", "ssim", "ms_ssim", "psnr")},
             "codecs": {c: at_equal_bytes(points[c], ref["bpp"]) for c in codecs}}
    t1 = table1(ckpts, x)
    figs = plot(points, ROOT / "bench" / "results" / f"rd-{args.machine}")
    grid = channel_grid(ckpts, x)
    figs.append(plot_grid(grid, ROOT / "bench" / "results" / f"rd-{args.machine}" / "channel_grid.png"))

    res_dir = ROOT / "bench" / "results"
    cmd = "python bench/rd.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc = {"benchmark": "rd", "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": cmd,
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__},
           "val_images": n, "budget": {k: getattr(args, k) for k in vars(args) if k.startswith("epochs_")},
           "train_seconds": trained["train_seconds"], "checkpoints": ckpts, "points": points,
           "equal_bytes": equal, "channel_grid": grid, "figures": figs, "wall_s": round(time.perf_counter() - t0, 1)}
    (res_dir / f"rd-{args.machine}.json").write_text(json.dumps(doc, indent=1))
    md = [f"# Rate–distortion on {n} CelebA validation faces (64x64)\n", f"`{cmd}` — {doc['date']}, "
          f"{doc['machine']['cpu']}, {doc['machine']['threads']} threads\n",
          "| codec | setting | bpp (file) | bpp (payload) | SSIM | MS-SSIM | PSNR |", "|---|---|---|---|---|---|---|"]
    for name, pts in points.items():
        for p in sorted(pts, key=lambda p: p["bpp"]):
            setting = p.get("quality", p.get("canny", p["codec"]))
            md.append(f"| {name} | {setting} | {p['bpp']:.3f} | {p.get('bpp_payload', p['bpp']):.3f} | "
                      f"{p['ssim']:.4f} | {p['ms_ssim']:.4f} | {p['psnr']:.2f} |")
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
    (res_dir / f"rd-{args.machine}.md").write_text("\n".join(md) + "\n")
    t1doc = {"date": doc["date"], "command": cmd, "val_images": n, "mask": "fixed face ellipse from CelebA's "
             "aligned landmark positions (pycompgen.evaluation.masks)", "ours": t1, "study": STUDY_TABLE1}
    (res_dir / f"table1-{args.machine}.json").write_text(json.dumps(t1doc, indent=1))
    tmd = ["| model | 1−SSIM | 1−MS-SSIM | l1 | l2 | study (1−SSIM, 1−MS-SSIM, l1, l2) |", "|---|---|---|---|---|---|"]
    for k, v in t1.items():
        base = k.replace("Compgen AE", "").replace("Compgen approach 3 (edges)", "").replace(" q85", "")
        study = STUDY_TABLE1.get(base)
        tmd.append(f"| {k} | {v['1-ssim']:.3f} | {v['1-ms_ssim']:.3f} | {v['l1']:.4f} | {v['l2']:.4f} | "
                   f"{', '.join(f'{s:.3f}' for s in study) if study else '—'} |")
    (res_dir / f"table1-{args.machine}.md").write_text("\n".join(tmd) + "\n")
    log(f"done in {doc['wall_s']:.0f} s -> {res_dir}/rd-{args.machine}.json, .md, table1-{args.machine}.md")
    print("\n".join(md + [""] + tmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
