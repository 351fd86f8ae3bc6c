#!/usr/bin/env python
"""Compgen's edge path on faces it never saw: levers against memorisation on one budget. Not a test: it trains.

    python bench/generalise.py --data ../shared/data/celeba                 # every lever, 12 + 12 epochs each
    python bench/generalise.py --data ../shared/data/celeba --levers base,aug --resume

Every lever starts from the same step 1 (f, g of the zoo entry ``--start``, frozen), trains approach 1 (a fresh h,
``--epochs1``) and then approach 3 (h and g, ``--epochs3``) with the entry's networks (``compgen-64-plus``: gated
skips) and channel (per-image PSNR drawn from [-5, 50] dB); best.pt by validation SSIM (early stopping). Then the
same sweep at 50 / 0 / -5 dB on a fixed subset of 1,000 training faces and on the validation faces: the train - val
gap is the figure that says whether h memorised. Writes bench/results/generalise-<machine>.{json,md}; runs in
runs/generalise-<machine>/<lever>/ (``--resume`` continues a killed run from the last finished epoch).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

AUG = ["data.augment_flip=true", "data.augment_shift=0.0625", "data.augment_scale=0.05", "data.augment_rotate=5"]
LEVERS = {
    "base": [],
    "flip": ["data.augment_flip=true"],
    "aug": AUG,                                             # flips + shifts/zooms/rotations
    "aug+jitter": AUG + ["data.augment_jitter=0.1"],
    "dropout": ["model.elm_dropout=0.3"],
    "wd": ["train.weight_decay=0.05"],
    "flip+dropout+wd": ["data.augment_flip=true", "model.elm_dropout=0.3", "train.weight_decay=0.05"],
    "flip+dropout+wd+jitter": ["data.augment_flip=true", "model.elm_dropout=0.3", "train.weight_decay=0.05",
                               "data.augment_jitter=0.1"],
    "all": AUG + ["data.augment_jitter=0.1", "model.elm_dropout=0.3", "train.weight_decay=0.05"],
}
FDWJ = LEVERS["flip+dropout+wd+jitter"]
PAPER_ELM = ["model.elm_channels=64", "model.elm_hidden=1024"]  # the paper's ELM widths (the zoo entries use 32 / 512)
EMA = ["train.ema_decay=0.999"]  # an average of h (and g in approach 3), used for validation and export
LEVERS["fdwj+paper-elm"] = FDWJ + PAPER_ELM
LEVERS["fdwj+narrow-elm+ema"] = FDWJ + ["model.elm_hidden=128"] + EMA  # a narrow FC: less room to memorise
LEVERS["fdwj+paper-elm+dropout0.5+ema"] = [o for o in FDWJ if not o.startswith("model.elm_dropout")] + PAPER_ELM + [
    "model.elm_dropout=0.5"] + EMA
# the paper's conv width with the FC at 512: between the narrow FC's small gap and the paper widths' validation SSIM
LEVERS["fdwj+paper-conv+fc512+dropout0.5+ema"] = [o for o in FDWJ if not o.startswith("model.elm_dropout")] + [
    "model.elm_channels=64", "model.elm_hidden=512", "model.elm_dropout=0.5"] + EMA
# per-image normalisation in h: a batch mixes channel PSNRs, BatchNorm mixes their statistics
LEVERS["fdwj+paper-elm+dropout0.5+ema+groupnorm"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + ["model.elm_norm=group"]
# depth on the skip path (convolutions, weights shared over positions) rather than width in the FC that memorises
LEVERS["fdwj+paper-elm+dropout0.5+ema+skipblocks2"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + [
    "model.elm_skip_blocks=2"]
# denser edge maps (Canny 0.15 / 0.30 instead of 0.30 / 0.60): more of the face in the map, more bits in a file
LEVERS["fdwj+paper-elm+dropout0.5+ema+canny0.15"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + [
    "data.canny_low=0.15", "data.canny_high=0.30"]
# an adversarial term (train.w_adv): a conditional critic d(z_noisy, x) in approach 3, its hinge loss on x_hat
LEVERS["fdwj+paper-elm+dropout0.5+ema+adv0.01"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + ["train.w_adv=0.01"]
# training channel PSNRs up to 25 dB instead of 50 (edge maps above ~20 dB are as good as clean): more of the
# budget on the noisy edge maps where 0 dB is judged
LEVERS["fdwj+paper-elm+dropout0.5+ema+psnr25"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + ["train.psnr_range=[-5,25]"]
# the same with another seed for approach 3 (data order, noise draws; its 1,000 training faces are another draw too)
LEVERS["fdwj+paper-elm+dropout0.5+ema+psnr25+seed1"] = LEVERS["fdwj+paper-elm+dropout0.5+ema+psnr25"] + ["train.seed=1"]
# fewer training faces (data.train_limit: nested fixed subsets) with the recipe of the row "the paper's ELM widths,
# dropout 0.5, EMA" (both approaches at channel PSNRs -5..50 dB): the learning curve over data size says whether
# validation SSIM is limited by the 15,979 faces. Run each for that row's number of steps: epochs, train.lr_step and
# train.val_every multiplied by 15,979 / N (docs/compgen.md has the commands).
for _n in (2000, 4000, 8000):
    LEVERS[f"fdwj+paper-elm+dropout0.5+ema+n{_n}"] = LEVERS["fdwj+paper-elm+dropout0.5+ema"] + [f"data.train_limit={_n}"]
PSNRS = [50.0, 0.0, -5.0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every lever")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--start", default="compgen-64-plus", help="zoo entry whose step 1 (f, g) every lever uses")
    ap.add_argument("--epochs1", type=int, default=12, help="approach-1 epochs (default 12)")
    ap.add_argument("--epochs3", type=int, default=12, help="approach-3 epochs (default 12)")
    ap.add_argument("--levers", default=",".join(LEVERS), help=f"comma list of {', '.join(LEVERS)}")
    ap.add_argument("--train-images", type=int, default=1000, help="fixed training faces evaluated (1000)")
    ap.add_argument("--val-images", type=int, default=None, help="validation faces evaluated (default: all)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--run-dir", default=None, help="default runs/generalise-<machine>")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", metavar="LEVER=NAME", default=None,
                    help="export that lever's step 1 + approach 3 as zoo entry NAME (e.g. all=compgen-64-plus)")
    ap.add_argument("--description", default="", help="the exported entry's description")
    args = ap.parse_args(argv)

    from pycompgen import zoo
    from pycompgen.config import Config, apply_overrides
    from pycompgen.data import limit_faces, load_faces
    from pycompgen.evaluation.curves import read_curves
    from pycompgen.evaluation.generalise import levers_table, plot_lever_curves, train_subset, train_val_sweep
    from pycompgen.evaluation.machine import bench_header, machine_summary
    from pycompgen.evaluation.sweep import write_json
    from pycompgen.models import load_for_eval
    from pycompgen.training import run_pipeline

    levers = [v.strip() for v in args.levers.split(",") if v.strip()]
    unknown = [v for v in levers if v not in LEVERS]
    if unknown:
        ap.error(f"unknown lever(s) {unknown}; expected some of {', '.join(LEVERS)}")
    pre = zoo.load(args.start, stages=["step1", "approach3"])
    run_dir = Path(args.run_dir or ROOT / "runs" / f"generalise-{args.machine}")
    load_start = os.getloadavg()
    print(f"generalise: {machine_summary()['cpu']}, {torch.get_num_threads()} threads, load {load_start}; "
          f"start zoo:{args.start}/step1")
    base = pre["approach3"].config.to_dict()
    t0 = time.perf_counter()
    wall, ckpts, cfgs = {}, {}, {}  # wall: a lever's epoch times summed (a resumed run counts each epoch once)
    for lever in levers:
        out = run_dir / lever
        s1 = out / "step1" / "best.pt"
        if not s1.is_file():
            pre.to_checkpoint("step1", s1)
        cfg = Config.from_dict(base)
        apply_overrides(cfg, ["train.progress=false", "train.approach3_init=approach1", "train.init=null",
                              "train.epochs=null"] + LEVERS[lever] + list(args.overrides))
        cfg.data.path = str(Path(args.data).resolve())
        cfg.out = str(out)
        print(f"--- lever {lever}: {' '.join(LEVERS[lever]) or '(none)'}; approach 1 {args.epochs1} + "
              f"approach 3 {args.epochs3} epochs", flush=True)
        for stage, epochs in (("approach1", args.epochs1), ("approach3", args.epochs3)):
            c = cfg.copy()
            c.train.epochs = epochs
            run_pipeline(c, stages=[stage], resume=args.resume)
        ckpts[lever], cfgs[lever] = out / "approach3" / "best.pt", cfg
    train_s = time.perf_counter() - t0

    train_all = load_faces(cfg.data.path, "train", image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir)
    val = load_faces(cfg.data.path, "val", image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir)
    subsets = {}  # (train_limit, seed): the fixed training faces a lever saw, drawn as its training loop drew them
    for c in cfgs.values():
        key = (c.data.train_limit, c.train.seed)
        if key not in subsets:
            subsets[key] = train_subset(limit_faces(train_all, key[0]), args.train_images, seed=key[1])
    results, curves = {}, {}
    t = time.perf_counter()
    for lever in levers:
        cfg = cfgs[lever]
        train_faces = subsets[(cfg.data.train_limit, cfg.train.seed)]
        cached = run_dir / lever / "train_val.json"  # a finished lever's sweep (kept by --resume)
        if args.resume and cached.is_file() and cached.stat().st_mtime > ckpts[lever].stat().st_mtime:
            results[lever] = json.loads(cached.read_text())
        else:
            lc = load_for_eval(ckpts[lever], label="approach3")
            lc_ae = load_for_eval(run_dir / lever / "step1" / "best.pt", label="step1")
            results[lever] = train_val_sweep(cfg, {"step1": lc_ae, "approach3": lc}, train_faces, val, PSNRS,
                                             run_dir / lever / "sweep", max_val=args.val_images)
            write_json(cached, results[lever])
        rows = read_curves(run_dir / lever, ["approach1", "approach3"])
        curves[lever] = {s: [{k: r.get(k) for k in ("epoch", "val_ssim", "trainsub_ssim", "gap_ssim",
                                                     "epoch_time_s")} for r in rows[s]] for s in rows}
        wall[lever] = round(sum(r["epoch_time_s"] or 0 for rs in curves[lever].values() for r in rs), 1)
    eval_s = time.perf_counter() - t

    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    report = {
        **bench_header("generalise", args.machine, rel(Path(__file__)), load_start),
        "budget": {"start": f"zoo:{args.start}/step1 (f, g frozen)", "approach1_epochs": args.epochs1,
                   "approach3_epochs": args.epochs3, "train_psnr_range_db": cfg.train.psnr_range,
                   "batch_size": cfg.train.batch_size, "selection": "best.pt by val_ssim (early stopping)"},
        "faces": {"train_subset": len(train_faces), "val": results[levers[0]]["val"]["n_images"],
                  "train_split": len(train_all),
                  "trained_on": {v: cfgs[v].data.train_limit or len(train_all) for v in levers}},
        "psnrs": PSNRS,
        "levers": {v: {"overrides": LEVERS[v], "wall_s": wall[v], "curves": curves[v],  # wall: sum of epoch times
                       "train": results[v]["train"]["approaches"], "val": results[v]["val"]["approaches"],
                       "ae": {"train": results[v]["train"]["ae"], "val": results[v]["val"]["ae"]},
                       "gap": results[v]["gap"]} for v in levers},
        "wall_s": {"train": round(train_s, 1), "eval": round(eval_s, 1)},
    }
    res = Path(args.results)
    write_json(res / f"generalise-{args.machine}.json", report)
    plot_lever_curves(report["levers"], res / f"generalise-{args.machine}" / "curves.png")
    lines = [f"# Compgen generalisation levers ({args.machine}, {report['date_utc']})", "",
             f"Command: `{report['command']}`; {report['cpu']}, load at start {load_start}, end "
             f"{report['load_average']['end']}.", "",
             f"Budget per lever: approach 1 (fresh h) {args.epochs1} epochs + approach 3 {args.epochs3} epochs from "
             f"{report['budget']['start']}; channel PSNR drawn from {cfg.train.psnr_range} dB; best.pt by val SSIM. "
             f"Approach-3 SSIM on {len(train_faces)} fixed training faces and {report['faces']['val']} validation "
             f"faces.", "", *levers_table({v: results[v] for v in levers}, PSNRS), "",
             "| lever | overrides | wall (min) |", "|---|---|---:|"]
    lines += [f"| {v} | {' '.join(LEVERS[v]) or '–'} | {wall[v] / 60:.1f} |" for v in levers]
    lines += ["", f"![learning curves](generalise-{args.machine}/curves.png)"]
    (res / f"generalise-{args.machine}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.export:
        lever, _, name = args.export.partition("=")
        if lever not in levers or not name:
            ap.error(f"--export {args.export!r}: expected LEVER=NAME with LEVER among {', '.join(levers)}")
        export_lever(run_dir / lever, name, args.description, report, lever, results[lever],
                     {"path": cfg.data.path, "train_images": len(train_all), "val_images": len(val)})
    return 0


def export_lever(lever_dir: Path, name: str, description: str, report: dict, lever: str, res: dict,
                 data: dict) -> None:
    """Step 1 + approach 3 of one lever's run into the zoo, its card with training-subset and validation sweeps."""
    sys.path.insert(0, str(ROOT / "tools"))
    from zoo_export import export_bench_run
    lv = report["levers"][lever]
    export_bench_run(lever_dir, name, description, report, res, data, lv["curves"], lv["wall_s"])


if __name__ == "__main__":
    sys.exit(main())
