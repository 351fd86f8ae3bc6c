#!/usr/bin/env python
"""Rate–distortion benchmark on real files: Compgen's edge maps, learned latent codecs (Compgen's AE at several λ,
the study's CVAE and DCGAN) and the image codecs people use (JPEG, WebP, JPEG 2000, AVIF, JPEG XL), on the same
validation faces (64x64); plus the face-reconstruction study's Table 1 (with and without the face mask).

    python bench/rd.py --data ../shared/data/celeba                 # train what is missing (resumable), measure
    python bench/rd.py --data ../shared/data/celeba --eval-only     # measure the models already in --run-dir
    python bench/rd.py --data DIR --model mine=runs/x/best.pt --models-only   # your own checkpoints beside the codecs

Training (plain loop on this machine, resumable: re-run the same command; finished runs are skipped) uses the CPU
preset (``pycompgen.evaluation.presets``) for Compgen and the study's widths for the CVAE / DCGAN, on the whole
CelebA train partition, for the epochs given by the ``--epochs-*`` options (a budget, not the papers' recipes: stated
in the results). Measurement (``pycompgen.evaluation.rd``): every face becomes one real file (``pycompgen.codec``
container; sizes with and without its header), bpp = 8·bytes/(64·64); Compgen at several Canny thresholds (the edge
path's rate knob) decoded by its one approach-3 decoder (trained at the default thresholds, clean channel at test
time).

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

from pycompgen.evaluation.machine import machine_summary  # noqa: E402
from pycompgen.evaluation.presets import CPU_PRESET, PSNR_RANGE  # noqa: E402
from pycompgen.evaluation.rd import (STUDY_TABLE1, channel_grid, edge_points, equal_bytes, latent_point,  # noqa: E402
                                     plot, plot_grid, rd_markdown, table1, table1_markdown)

AE_LAMBDAS = [0.0, 0.05, 0.3]
# codec settings down to each codec's smallest files, so they reach Compgen's rates where they can
QUALITIES = {"jpeg": [1, 3, 5, 10, 20, 30, 50, 70, 85, 95], "webp": [0, 1, 3, 5, 10, 25, 50, 75, 90],
             "jpeg2k": [16, 18, 20, 22, 24, 28, 32, 36], "avif": [0, 5, 10, 20, 35, 50, 65, 80],
             "jpegxl": [1, 3, 5, 10, 30, 50, 70, 85, 95]}
GRID_TRAIN = [50.0, 10.0, 0.0, -5.0]  # approach 3 trained at each of these channel PSNRs (the channel grid's rows)


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

    from pycompgen.codec.baselines import available_codecs, sweep
    from pycompgen.data import load_faces
    from pycompgen.evaluation.sweep import face_batch

    run_dir = Path(args.run_dir)
    t0 = time.perf_counter()
    machine = machine_summary()
    log(f"machine {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}")
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
        points[label] = [latent_point(label, path, x, log=log)] if has_eb else edge_points(path, x, log=log)
    if not args.models_only:
        points["Compgen (edge map, approach 3)"] = edge_points(ckpts["compgen"], x, log=log)
        points["Compgen AE + entropy bottleneck (λ sweep)"] = [latent_point(k, v, x, log=log)
                                                               for k, v in ckpts.items() if k.startswith("AE λ")]
        for k in ("CVAE", "DCGAN"):
            points[f"{k} + entropy bottleneck"] = [latent_point(k, ckpts[k], x, log=log)]
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
    equal = equal_bytes(points, codecs)
    t1 = table1(ckpts, x)
    figs = plot(points, ROOT / "bench" / "results" / f"rd-{args.machine}")
    grid = channel_grid(ckpts, x, log=log)
    figs.append(plot_grid(grid, ROOT / "bench" / "results" / f"rd-{args.machine}" / "channel_grid.png"))

    res_dir = ROOT / "bench" / "results"
    cmd = "python bench/rd.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    doc = {"benchmark": "rd", "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": cmd,
           "machine": machine_summary(),
           "val_images": n, "budget": {k: getattr(args, k) for k in vars(args) if k.startswith("epochs_")},
           "train_seconds": trained["train_seconds"], "checkpoints": ckpts, "points": points,
           "equal_bytes": equal, "channel_grid": grid, "figures": figs, "wall_s": round(time.perf_counter() - t0, 1)}
    (res_dir / f"rd-{args.machine}.json").write_text(json.dumps(doc, indent=1))
    md = rd_markdown(points, equal, grid, n, cmd, doc["date"], doc["machine"])
    (res_dir / f"rd-{args.machine}.md").write_text("\n".join(md) + "\n")
    t1doc = {"date": doc["date"], "command": cmd, "val_images": n, "mask": "fixed face ellipse from CelebA's "
             "aligned landmark positions (pycompgen.evaluation.masks)", "ours": t1, "study": STUDY_TABLE1}
    (res_dir / f"table1-{args.machine}.json").write_text(json.dumps(t1doc, indent=1))
    tmd = table1_markdown(t1)
    (res_dir / f"table1-{args.machine}.md").write_text("\n".join(tmd) + "\n")
    log(f"done in {doc['wall_s']:.0f} s -> {res_dir}/rd-{args.machine}.json, .md, table1-{args.machine}.md")
    print("\n".join(md + [""] + tmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
