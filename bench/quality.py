#!/usr/bin/env python
"""Quality benchmark of Compgen on CelebA (64×64): step 1, approaches 1, 2, 3, then the channel-PSNR sweep on the
validation partition, sketches (CUFSF) and unconditional samples. Not a test: it trains for real.

    python bench/quality.py --data ../shared/data/celeba --budget-min 90     # 2-core CPU, fits the budget
    python bench/quality.py --data ../shared/data/celeba --paper             # paper recipe, CPU widths
    python bench/quality.py --data ../shared/data/celeba --paper --paper-widths   # paper recipe and widths (GPU)

Budget mode (default): a smaller model preset (``CPU_PRESET``, ``pycompgen.evaluation.presets``), batch 50, and a
training plan computed from the measured seconds per step of each stage on this machine
(``pycompgen.evaluation.budget``): after data loading and calibration, the remaining budget minus an evaluation
reserve is split step 1 40 %, approach 1 15 %, approach 2 15 %, approach 3 30 %; a stage with fewer steps than a
full epoch runs ``EPOCHS_SMALL`` "mini-epochs" of ``train.max_steps_per_epoch`` steps (each a fresh shuffle of the
whole train partition). Paper mode: the paper's schedule (Adam 1e-3, batch 100, 50 epochs of
step 1 and 40 of each approach, whole train partition, validation on the whole val partition every epoch); the
networks have the CPU preset's widths on a CPU and the paper's (config defaults) on a GPU or with --paper-widths. Both train the approaches with a per-image channel PSNR drawn from ``PSNR_RANGE`` so one model serves
the whole sweep. ``key=value`` arguments override any config field.

Writes bench/results/quality-<machine>.json (every figure, config, plan, latent shape, wall times, machine,
command, goals) and bench/results/quality-<machine>/ (sweep.json/.md, SSIM plot, grids per PSNR, sketch and
unconditional grids, learning curves curves.png; the curves are also in the JSON), and the same sweep on the fixed
training subset (``train.train_subset`` faces, ``train_sweep`` in the JSON; the model card shows the gap).
Checkpoints go to runs/quality-<machine>/ (``--resume`` skips finished stages and continues an interrupted one from
its last epoch).
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pycompgen.evaluation.budget import EVAL_RESERVE, calibrate, eval_seconds_per_image, plan_budget  # noqa: E402
from pycompgen.evaluation.curves import plot_curves, read_curves  # noqa: E402
from pycompgen.evaluation.machine import machine_name, runtime_info  # noqa: E402
from pycompgen.evaluation.presets import CPU_PRESET, PAPER_DROP, PSNR_RANGE  # noqa: E402

GOALS = {"ae_ssim": 0.95, "approach3_ssim_50db": 0.75, "approach3_ssim_0db": 0.65}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (after the preset)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"), help="CelebA root")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--budget-min", type=float, default=90.0, help="wall-clock budget in minutes (default 90)")
    mode.add_argument("--paper", action="store_true", help="paper recipe: batch 100, 50/40/40/40 epochs")
    ap.add_argument("--paper-widths", action="store_true",
                    help="with --paper: the paper's network widths (default on a GPU; a CPU uses the CPU preset's)")
    ap.add_argument("--sketches", default=str(ROOT.parent / "shared" / "data" / "cufsf" / "sketches"))
    ap.add_argument("--sketch-limit", type=int, default=32, help="sketches to run (default 32)")
    ap.add_argument("--unconditional", type=int, default=16, help="faces from pure noise (default 16)")
    ap.add_argument("--val-images", type=int, default=None,
                    help="validation images in the sweep (default: all with --paper; in budget mode as many as "
                         "the time left allows, at least 128)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"), help="results folder")
    ap.add_argument("--run-dir", default=None, help="checkpoints (default runs/quality-<machine>)")
    ap.add_argument("--machine", default=None, help="machine label in file names (default cpu<N> / gpu-<name>)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache-dir", default=None, help="decoded-image cache (default: pycompgen.data's)")
    ap.add_argument("--resume", action="store_true", help="skip finished stages, continue an interrupted one")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    load_start = os.getloadavg()
    from pycompgen.config import load_config
    from pycompgen.data import load_faces
    from pycompgen.evaluation import run_sketches, run_unconditional, sweep
    from pycompgen.models import load_for_eval, resolve_checkpoints
    from pycompgen.evaluation.sweep import format_pivot, resolve_device, write_json
    from pycompgen.evaluation.generalise import train_subset
    from pycompgen.systems.compgen.networks import compgen_latent_shape
    from pycompgen.training import run_pipeline

    if not Path(args.data).is_dir():
        print(f"quality: data folder not found: {args.data} (pass --data CELEBA_ROOT)", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    machine = args.machine or machine_name(device)
    mode = "paper" if args.paper else "budget"
    paper_widths = args.paper and (args.paper_widths or device.type == "cuda")
    if args.paper:
        preset = [] if paper_widths else [o for o in CPU_PRESET if not o.startswith(PAPER_DROP)]
    else:
        preset = list(CPU_PRESET)
    base = preset + [f"train.psnr_range=[{PSNR_RANGE[0]},{PSNR_RANGE[1]}]", f"train.device={device}",
                     "train.progress=false"] + list(args.overrides)
    cfg = load_config(None, base)
    cfg.data.path = str(Path(args.data).resolve())
    cfg.data.cache_dir = args.cache_dir
    run_dir = Path(args.run_dir or ROOT / "runs" / f"quality-{machine}")
    cfg.out = str(run_dir)
    fig_dir = Path(args.results) / f"quality-{machine}"
    val_images = args.val_images  # None: all (paper) / what the budget allows (budget mode)
    print(f"quality [{mode}] on {machine}: data {cfg.data.path}, run dir {run_dir}, figures {fig_dir}")

    # data (decoded once into the cache) -----------------------------------------------------------------------
    t = time.perf_counter()
    common = dict(image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir,
                  synthetic_count=cfg.data.synthetic_count, seed=cfg.train.seed)
    train_faces = load_faces(cfg.data.path, "train", **common)
    val_faces = load_faces(cfg.data.path, "val", **common)
    data_s = time.perf_counter() - t
    print(f"data: {len(train_faces)} train, {len(val_faces)} val faces at {cfg.data.image_size}px ({data_s:.1f} s)")

    # plan ------------------------------------------------------------------------------------------------------
    stages = ["step1", "approach1", "approach2", "approach3"]
    plan, calib = None, None
    if not args.paper:
        t = time.perf_counter()
        calib = calibrate(cfg, train_faces, device, stages)
        calib_s = time.perf_counter() - t
        budget_s = args.budget_min * 60.0
        train_s = max(0.0, budget_s * (1 - EVAL_RESERVE) - (time.perf_counter() - t_start))
        plan = plan_budget(cfg, calib, train_s, len(train_faces))
        print(f"calibration ({calib_s:.1f} s): " + ", ".join(f"{k} {v:.2f} s/step" for k, v in calib.items()))
        for k, p in plan.items():
            print(f"plan {k}: {p['epochs']} epoch(s) x {p['max_steps_per_epoch'] or 'all'} steps "
                  f"= {p['steps']} steps, {p['passes_over_train']} passes, ~{p['est_s']:.0f} s")

    # train -----------------------------------------------------------------------------------------------------
    stage_results, stage_times = {}, {}
    for name in stages:
        c = cfg.copy()
        if plan is not None:
            c.train.epochs = plan[name]["epochs"]
            c.train.max_steps_per_epoch = plan[name]["max_steps_per_epoch"]
        t = time.perf_counter()
        res = run_pipeline(c, stages=[name], resume=args.resume)
        stage_times[name] = round(time.perf_counter() - t, 1)
        stage_results[name] = {k: v for k, v in res[name].items() if isinstance(v, (int, float, str, bool))}
    train_wall = round(sum(stage_times.values()), 1)
    curves = read_curves(run_dir, stages)
    # wall time over all sessions of a resumed run: the epochs' own times (training + validation)
    epochs_wall = {k: round(sum(r.get("epoch_time_s") or 0.0 for r in v), 1) for k, v in curves.items()}
    curves_png = plot_curves(curves, fig_dir / "curves.png",
                             title=f"Compgen [{mode}] on {machine}: validation SSIM per epoch\n"
                                   f"(approaches: channel PSNR drawn per image from {PSNR_RANGE} dB)")

    # evaluate --------------------------------------------------------------------------------------------------
    t = time.perf_counter()
    ckpts = resolve_checkpoints([str(run_dir)])
    if val_images is None and not args.paper:
        # budget mode: as many validation images as the time left allows (at least 128, at most all)
        left = args.budget_min * 60.0 - (time.perf_counter() - t_start)
        per_img = eval_seconds_per_image(cfg, ckpts, val_faces, device, n_evals=1 + 3 * len(cfg.eval.psnrs))
        val_images = int(min(len(val_faces), max(128, 0.8 * left / per_img)))
        print(f"evaluation: ~{per_img:.3f} s per image, {left:.0f} s left -> {val_images} val images")
    sw = sweep(cfg, ckpts, data=val_faces, out_dir=fig_dir, split="val", device=device, max_images=val_images)
    # the same sweep on the fixed training subset the runs validate each epoch: the train - val gap
    sub = train_subset(train_faces, cfg.train.train_subset or 1000, seed=cfg.train.seed)
    tsw = sweep(cfg, ckpts, data=sub, out_dir=fig_dir / "train_subset", split="train", device=device, n_grid=0)
    eval_s = time.perf_counter() - t
    t = time.perf_counter()
    a3 = load_for_eval(ckpts["approach3"], label="approach3", expect_model=cfg.model.name, device=device)
    lat = compgen_latent_shape(a3.config.model, a3.image_size)
    title = f"approach3, latent {'x'.join(map(str, lat))}"
    gen = {}
    if args.sketches and Path(args.sketches).is_dir():
        for p in (-5.0, 50.0):
            gen[f"sketches_{p:g}dB"] = run_sketches(a3.models, args.sketches, fig_dir, a3.image_size, psnr=p,
                                                    limit=args.sketch_limit, title=title,
                                                    stem=f"sketches_{p:g}dB")
            gen[f"sketches_{p:g}dB"].pop("names", None)
    else:
        print(f"note: sketch folder {args.sketches} not found, skipping sketches")
    gen["unconditional"] = run_unconditional(a3.models, args.unconditional, fig_dir, a3.image_size, psnr=-5.0,
                                             title=title)
    gen_s = time.perf_counter() - t

    # report ----------------------------------------------------------------------------------------------------
    ae = sw["ae"]["ssim"] if sw.get("ae") else float("nan")
    a3r = sw["approaches"].get("approach3", {})
    got = {"ae_ssim": ae, "approach3_ssim_50db": a3r.get("50", {}).get("ssim", float("nan")),
           "approach3_ssim_0db": a3r.get("0", {}).get("ssim", float("nan"))}
    goals = {k: {"target": GOALS[k], "value": v, "met": bool(v >= GOALS[k])} for k, v in got.items()}
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    figures = [rel(Path(curves_png)), rel(fig_dir / "ssim_vs_psnr.png")] + [rel(fig_dir / g) for g in sw["figures"]["grids"].values()]
    figures += [rel(fig_dir / sw["figures"]["ae_grid"])] if "ae_grid" in sw["figures"] else []
    for v in gen.values():
        figures += [rel(p) for p in v.get("grids", [])] + ([rel(v["grid"])] if "grid" in v else [])
    total_s = round(time.perf_counter() - t_start, 1)
    report = {
        "benchmark": "quality", "mode": mode, "machine": machine, "machine_info": runtime_info(device),
        "command": "python " + " ".join(shlex.quote(a) for a in [rel(Path(__file__))] + sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": {"start": [round(v, 2) for v in load_start], "end": [round(v, 2) for v in os.getloadavg()]},
        "train_psnr_range_db": PSNR_RANGE,
        "budget_min": None if args.paper else args.budget_min,
        "data": {"path": cfg.data.path, "train_images": len(train_faces), "val_images": len(val_faces),
                 "image_size": cfg.data.image_size, "load_s": round(data_s, 1)},
        "latent_shape": list(lat), "latent_values": int(math.prod(lat)),
        "compression_ratio": 3 * cfg.data.image_size ** 2 / math.prod(lat),
        "config_overrides": base, "config": cfg.to_dict(),
        "calibration_s_per_step": calib, "plan": plan,
        "stages": {k: {"wall_s": stage_times[k], "epochs_wall_s": epochs_wall.get(k), **stage_results[k]}
                   for k in stages},
        "curves": curves, "paper_widths": paper_widths,
        "sweep": {k: sw[k] for k in ("n_images", "split", "psnrs", "seed", "edge", "ae", "approaches", "rows")},
        "train_sweep": {k: tsw[k] for k in ("n_images", "split", "psnrs", "seed", "ae", "approaches")},
        "sweep_files": rel(fig_dir / "sweep.json"),
        "generation": gen, "goals": goals, "figures": figures,
        "wall_s": {"data": round(data_s, 1), "train": train_wall, "eval": round(eval_s, 1),
                   "generation": round(gen_s, 1), "total": total_s},
    }
    out_json = Path(args.results) / f"quality-{machine}.json"
    write_json(out_json, report)
    print(f"\nSSIM on {sw['n_images']} val images (latent {'x'.join(map(str, lat))}), channel PSNR in dB:")
    print(format_pivot(sw, "ssim", markdown=False))
    print(f"SSIM on {tsw['n_images']} fixed training faces (the train - val gap):")
    print(format_pivot(tsw, "ssim", markdown=False))
    for k, g in goals.items():
        print(f"goal {k} >= {g['target']}: {g['value']:.4f} {'met' if g['met'] else 'NOT met'}")
    print(f"quality [{mode}]: {total_s / 60:.1f} min total (train {train_wall / 60:.1f} min) -> {rel(out_json)}, "
          f"{rel(fig_dir)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
