#!/usr/bin/env python
"""Edge-guided diffusion compression (issue 11, paper 002) on faces: train the five stages within an epoch budget
(resumable), then measure on validation faces.

    python bench/edgediff.py --data ../shared/data/celeba                  # train what is missing, then measure
    python bench/edgediff.py --data ../shared/data/celeba --eval-only      # measure the models in --run-dir
    python bench/edgediff.py --tiny --out-dir /tmp/edb --run-dir /tmp/edr  # smoke test (synthetic, seconds)
    python bench/edgediff.py --data ../shared/data/celeba --pretrained edgediff-64 --split train --n-val 500
                                                                        # a zoo entry on its fixed training subset

Training: ``run_pipeline`` (plain loop, this machine) of stages vae -> een -> denoiser -> entropy -> completer into
RUN_DIR/<stage>/,
``--epochs-*`` epochs each (a budget, stated in the results; the paper used pretrained Stable Diffusion and
ControlNet at 512x512, here everything is trained from scratch at 64x64). Re-running the command resumes.

Measurement (``pycompgen.evaluation.edgediff``; validation partition, ``--n-val`` faces):
- ablation per bit depth: W/O (VAE + quantisation), SDC (unconditional denoising: zero edges), full (EEN edges),
  oracle edges (the original's Canny map: the upper bound): real bpp (one ``.pcg`` file per face, with and without
  the header), PSNR, SSIM, MS-SSIM, and the same on the face region
  (``pycompgen.evaluation.masks.face_ellipse_mask``: SSIM/MS-SSIM of masked images, PSNR over the mask); the
  headroom decode(y) − W/O;
- quality vs share of latent lost (rectangles up to F of each side, R regions) for zeros / completion without
  edges / with EEN edges / with sender-side edges (bits counted) / OpenCV inpainting of the decoded image, the
  completer's regression (without / with sender-side edges; when trained) and the true latent in the lost
  cells (a bound);
- EEN edge-F1 against the true Canny map per bit depth;
- wall time per image: encoding (VAE + quantisation + range coding) and decoding per mode (DDIM steps stated).
``--split train`` measures the same on the fixed training subset (``train_subset``: ``--n-val`` faces drawn with
``train.seed``), beside validation, so the train − validation gap can be read; ``--pretrained NAME`` measures a zoo
entry instead of RUN_DIR's checkpoints (its stored config).
Writes bench/results/edgediff-<machine>[-train].json/.md and edgediff-<machine>/*.png (plots only; face grids go to
RUN_DIR/grids/).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from pycompgen.evaluation.edgediff import evaluate, load_models, markdown, plot, rd_overlay, save_grids  # noqa: E402
from pycompgen.evaluation.machine import machine_summary  # noqa: E402


def log(msg):
    print(f"[edgediff] {msg} (load average {os.getloadavg()[0]:.2f})", flush=True)


def make_cfg(args):
    from pycompgen.config import load_config
    if args.tiny:
        over = [f"out={args.run_dir}", "train.epochs=1"]
        return load_config(str(ROOT / "configs" / "edgediff-tiny.yaml"), over + list(args.set))
    over = ["model.name=edgediff", f"out={args.run_dir}", "data.image_size=64", f"train.batch_size={args.batch}",
            "train.device=" + args.device]
    if args.data:
        over.append(f"data.path={Path(args.data).resolve()}")
    return load_config(None, over + list(args.set))


def train(cfg, args):
    """One resumable pipeline run (vae -> een -> denoiser -> entropy -> completer); each stage gets its
    ``--epochs-*`` budget (``train.stage_epochs``)."""
    from pycompgen.training import pipeline as P
    if args.tiny:
        P.run_pipeline(cfg, resume=True, verbose=False)
        return {k: cfg.train.epochs for k in P.pipeline_stages(cfg)}
    budget = {"vae": args.epochs_vae, "een": args.epochs_een, "denoiser": args.epochs_denoiser,
              "entropy": args.epochs_entropy, "completer": args.epochs_completer}
    cfg.train.stage_epochs = dict(budget)
    log("budget " + ", ".join(f"{k} {v} epochs" for k, v in budget.items()))
    P.run_pipeline(cfg, resume=True, verbose=True)
    return budget


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="CelebA folder (default: synthetic faces)")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "edgediff"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny config on synthetic faces (smoke test)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="train what is missing, then stop")
    ap.add_argument("--een", default=None, help="EEN checkpoint to measure with (default RUN_DIR/een/best.pt)")
    ap.add_argument("--epochs-vae", type=int, default=10)
    ap.add_argument("--epochs-een", type=int, default=5)
    ap.add_argument("--epochs-denoiser", type=int, default=10)
    ap.add_argument("--epochs-entropy", type=int, default=2)
    ap.add_argument("--epochs-completer", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the receiver")
    ap.add_argument("--complete-steps", type=int, default=25, help="DDIM steps of the completion")
    ap.add_argument("--complete-start", type=float, default=0.5,
                    help="completion starts at this fraction of T from the zero-filled latent (1: pure noise)")
    ap.add_argument("--completion", default="all", choices=("all", "largest"),
                    help="lost-region settings measured: all, or only 1/8 of each side x 8 regions")
    ap.add_argument("--export", metavar="NAME", help="after measuring, export RUN_DIR's last stage as zoo entry NAME "
                                                     "(its rate points measured on the first --check-images faces)")
    ap.add_argument("--export-only", action="store_true", help="with --export: export without measuring again")
    ap.add_argument("--export-note", default="", help="recipe note for the entry's card (e.g. how a stage started)")
    ap.add_argument("--check-images", type=int, default=64)
    ap.add_argument("--split", default="val", choices=("val", "train"),
                    help="faces measured: validation, or the fixed training subset (--n-val faces, train.seed)")
    ap.add_argument("--pretrained", metavar="NAME", help="measure the zoo entry NAME (implies --eval-only)")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n_val, args.steps, args.complete_steps = min(args.n_val, 8), min(args.steps, 2), min(args.complete_steps, 3)
    if args.pretrained and (args.export or args.train_only):
        ap.error("--pretrained measures a zoo entry: it cannot be combined with --export or --train-only")
    torch.manual_seed(0)
    run_dir = Path(args.run_dir)
    if args.pretrained:
        from pycompgen import zoo
        pre = zoo.load(args.pretrained)
        stage = next(reversed(pre.stages))
        cfg, models, budget = pre.config, pre.models(stage), {"eval_only": True}
        used = {stage: {"path": f"zoo:{args.pretrained}/{stage}", "epoch": int(pre[stage].epoch)}}
    else:
        cfg = make_cfg(args)
        budget = None if args.eval_only else train(cfg, args)
        if args.train_only:
            return 0
        models, used = load_models(cfg, run_dir, args.een)
    log("networks from " + ", ".join(f"{k} {v['path']} (epoch {v['epoch']})" for k, v in used.items()))
    from pycompgen.data import load_faces, to_float01
    faces = load_faces(str(Path(args.data).resolve()) if args.data else None, args.split, cfg.data.image_size,
                       **({} if args.data else {"synthetic_count": max(args.n_val, 8)}))
    if args.split == "train":
        from pycompgen.evaluation.generalise import train_subset
        faces = train_subset(faces, args.n_val, seed=int(cfg.train.seed))
    x = to_float01(faces.images[:args.n_val])
    name = f"edgediff-{args.machine}" + ("-train" if args.split == "train" else "")
    out = Path(args.out_dir)
    if args.export_only:
        if not args.export:
            ap.error("--export-only needs --export NAME")
        export(args, run_dir, x, used, out / f"{name}.md")
        return 0
    log(f"measuring on {x.shape[0]} faces")
    res, grids = evaluate(cfg, models, x, args.steps, args.complete_steps, log=log, completion=args.completion,
                          complete_start=args.complete_start)
    if not args.pretrained:
        save_grids(grids, x, run_dir)
    figs = plot(res, out / name)
    rd_json = ROOT / "bench" / "results" / f"rd-{args.machine}.json"  # bench/rd.py's points of this machine
    if args.split == "val":  # the rate-distortion plot's points are validation faces
        figs += [Path(f) for f in rd_overlay(res, int(x.shape[0]), rd_json, out / name, note=log)]
    doc = {"command": shlex.join(sys.argv), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "machine": {"name": args.machine, **{k: v for k, v in machine_summary().items() if k != "cpu"}},
           "budget": budget or {"eval_only": True}, "checkpoints": used, "n_val": int(x.shape[0]),
           "split": args.split,
           "data": args.data or "synthetic",
           "config": cfg.to_dict(), "figures": [str(p.relative_to(out)) for p in figs], "results": res}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1))
    (out / f"{name}.md").write_text(markdown(doc))
    log(f"wrote {out / name}.json, .md and {len(figs)} plots")
    if args.export:
        export(args, run_dir, x, used, out / f"{name}.md")
    return 0


def stage_minutes(run_dir: Path) -> dict:
    """{stage: (epochs, wall minutes)} of each pipeline stage from its metrics.jsonl."""
    from pycompgen.evaluation.curves import read_curves
    from pycompgen.systems.edgediff.system import EdgeDiff
    return {s: (rows[-1]["epoch"], sum(r["epoch_time_s"] or 0 for r in rows) / 60)
            for s, rows in read_curves(run_dir, EdgeDiff.pipeline()).items() if rows}


def export(args, run_dir: Path, x, used, results_md: Path):
    sys.path.insert(0, str(ROOT / "tools"))
    from zoo_export import export_edgediff
    m = machine_summary()
    facts = {"data": f"CelebA aligned, official partition: training faces; figures on {args.check_images} "
                     f"validation faces ({args.data})",
             "recipe": ", ".join(f"{k} {e} epochs ({t:.1f} min)" for k, (e, t) in stage_minutes(run_dir).items())
                       + f", batch {args.batch}" + (f"; {args.export_note}" if args.export_note else ""),
             "machine": f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores), torch {m.get('torch', '?')}",
             "checkpoints": ", ".join(f"{k}: {v['path']} (epoch {v['epoch']})" for k, v in used.items()),
             "results": f"bench/results/{results_md.name} (validation faces: ablation, completion, timing)"}
    export_edgediff(run_dir, args.export, "", faces=x[:args.check_images], faces_label="CelebA validation",
                    facts=facts, check_images=args.check_images, log=log)


if __name__ == "__main__":
    sys.exit(main())
