#!/usr/bin/env python
"""Beyond the paper: Compgen's approach 3 against improvements of it, on one fixed budget. Not a test: it trains.

    python bench/quality.py --data ../shared/data/celeba --paper          # first: step 1 and approach 1
    python bench/beyond.py --data ../shared/data/celeba --from-run runs/quality-cpu2 --epochs 12

Every variant trains approach 3 for ``--epochs`` epochs from the same start (step 1's f, g and approach 1's h of
``--from-run``), on the same data, channel (per-image PSNR drawn from [-5, 50] dB), batch and machine:

- ``paper``: the paper's approach 3 (h, g trained jointly with 0.5(1 - SSIM)).
- ``skips``: gated skip features from h's convolutions into g (``model.elm_skips``; see
  pycompgen.systems.compgen.networks.ELM): spatial detail bypasses the FC bottleneck when the edges are clean, a
  gate computed from h's own features closes when they are noisy.
- ``ssim+l1``: the distortion 0.84·(1 - SSIM) + 0.16·L1 (the SSIM + L1 mix of Zhao et al., with SSIM for MS-SSIM,
  which needs larger images than 64x64).
- ``skips+ssim+l1``: both.

Then SSIM, MS-SSIM, PSNR and edge-F1 at 50 / 0 / -5 dB on the validation faces (the recipe's own approach 3 as a
reference row). Writes bench/results/beyond-<machine>.json/.md; checkpoints in runs/beyond-<machine>/<variant>/
(``--resume`` continues). Latent: the paper's y (16x8x8 = 1024 values) for every variant; the skip path adds no
transmitted values (h runs at the receiver).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

VARIANTS = {
    "paper": [],
    "skips": ["model.elm_skips=true"],
    "ssim+l1": ["train.w_ssim=1.68", "train.w_l1=0.16"],
    "skips+ssim+l1": ["model.elm_skips=true", "train.w_ssim=1.68", "train.w_l1=0.16"],
}
PSNRS = [50.0, 0.0, -5.0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every variant")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--from-run", default=str(ROOT / "runs" / "quality-cpu2"),
                    help="run dir holding step1/ and approach1/ (bench/quality.py's)")
    ap.add_argument("--epochs", type=int, default=12, help="approach-3 epochs of every variant (default 12)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--val-images", type=int, default=None, help="validation faces evaluated (default: all)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--run-dir", default=None, help="default runs/beyond-<machine>")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    from pycompgen.evaluation.curves import read_curves
    from pycompgen.evaluation.machine import cpu_model
    from pycompgen.config import load_config
    from pycompgen.data import load_faces
    from pycompgen.evaluation.figures import psnr_key
    from pycompgen.evaluation.sweep import format_pivot, sweep, write_json
    from pycompgen.training import run_pipeline

    src = Path(args.from_run).resolve()
    for stage in ("step1", "approach1"):
        if not (src / stage / "best.pt").is_file():
            ap.error(f"--from-run {src}: no {stage}/best.pt (run bench/quality.py first)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; expected some of {', '.join(VARIANTS)}")
    run_dir = Path(args.run_dir or ROOT / "runs" / f"beyond-{args.machine}")
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    print(f"beyond: {cpu_model()}, {torch.get_num_threads()} threads, load {load_start}; from {src}")

    base_cfg = src / "approach3" / "config.yaml"
    if not base_cfg.is_file():
        base_cfg = src / "approach1" / "config.yaml"
    trained, wall = {}, {}
    for v in variants:
        out = run_dir / v
        out.mkdir(parents=True, exist_ok=True)
        for stage in ("step1", "approach1"):  # the common start, shared (not copied)
            link = out / stage
            if not link.exists():
                link.symlink_to(src / stage, target_is_directory=True)
        cfg = load_config(str(base_cfg), ["train.stage=approach3", f"train.epochs={args.epochs}",
                                          "train.progress=false", "train.approach3_init=approach1"]
                          + VARIANTS[v] + list(args.overrides))
        cfg.data.path = str(Path(args.data).resolve())
        cfg.out = str(out)
        t = time.perf_counter()
        print(f"--- variant {v}: {' '.join(VARIANTS[v]) or '(paper)'}, {args.epochs} epochs")
        run_pipeline(cfg, stages=["approach3"], resume=args.resume)
        wall[v] = round(time.perf_counter() - t, 1)
        trained[v] = str(out / "approach3" / "best.pt")
    train_s = time.perf_counter() - t0

    ckpts = dict(trained)
    if (src / "approach3" / "best.pt").is_file():
        ckpts["paper (recipe)"] = str(src / "approach3" / "best.pt")
    val = load_faces(cfg.data.path, "val", image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir)
    t = time.perf_counter()
    sw = sweep(cfg, ckpts, data=val, psnrs=PSNRS, out_dir=run_dir / "sweep", split="val",
               max_images=args.val_images, n_grid=0)
    eval_s = time.perf_counter() - t

    curves = {v: [r["val_ssim"] for r in read_curves(run_dir / v, ["approach3"])["approach3"]] for v in variants}
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    report = {
        "benchmark": "beyond", "machine": args.machine, "cpu": cpu_model(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": "python " + " ".join(shlex.quote(a) for a in [rel(Path(__file__))] + sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "budget": {"approach3_epochs": args.epochs, "start": f"{rel(src)} step1 f, g + approach1 h",
                   "train_psnr_range_db": cfg.train.psnr_range, "batch_size": cfg.train.batch_size},
        "variants": {v: {"overrides": VARIANTS[v], "wall_s": wall[v], "val_ssim_per_epoch": curves[v]}
                     for v in variants},
        "reference": "paper (recipe): the recipe's own approach 3 (40 epochs)" if "paper (recipe)" in ckpts else None,
        "n_images": sw["n_images"], "psnrs": PSNRS, "approaches": sw["approaches"],
        "wall_s": {"train": round(train_s, 1), "eval": round(eval_s, 1)},
    }
    res = Path(args.results)
    write_json(res / f"beyond-{args.machine}.json", report)
    lines = [f"# Beyond the paper: approach 3 variants ({args.machine}, {report['date_utc']})", "",
             f"Budget: {args.epochs} epochs of approach 3 each from {report['budget']['start']}; training PSNR drawn "
             f"from {cfg.train.psnr_range} dB; {sw['n_images']} validation faces; load at start {load_start}.", "",
             "| variant | " + " | ".join(f"{m} @{p:g} dB" for p in PSNRS for m in ("SSIM", "MS-SSIM", "PSNR", "edge-F1"))
             + " |", "|---|" + "---|" * (4 * len(PSNRS))]
    for lab, rows in sw["approaches"].items():
        cells = []
        for p in PSNRS:
            r = rows.get(psnr_key(p), {})
            cells += [f"{r.get(m, float('nan')):.4f}" if m != "psnr" else f"{r.get(m, float('nan')):.2f}"
                      for m in ("ssim", "ms_ssim", "psnr", "edge_f1")]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    (res / f"beyond-{args.machine}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(format_pivot(sw, "ssim", markdown=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
