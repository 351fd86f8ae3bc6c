#!/usr/bin/env python
"""The BEGAN image refiner (seed 003) on CelebA: trains variants A, B, C within an epoch budget, then the paper's
Fig. 3 analogue (input / A / B / C side by side) on three kinds of crude faces. Not a test: it trains for real.

    python bench/refiner.py --data ../shared/data/celeba --epochs 5                 # budget: 5 epochs per variant
    python bench/refiner.py --data ../shared/data/celeba --epochs 5 --compgen-run runs/celeba
    python bench/refiner.py --data ../shared/data/celeba --epochs 10                # later: continues to 10 epochs
    python bench/refiner.py --smoke                                                  # seconds: tiny, synthetic faces

Training: one run per variant via ``run_pipeline`` into ``runs/began-<variant>/train/`` (``--run-prefix``), always
resumable: a finished run is skipped, an interrupted one continues from its last.pt, and re-running with a larger
``--epochs`` continues training (``--fresh`` starts over). Paper recipe by default (64x64, Adam 1e-3, batch 25,
channels 64, betas (0.5, 0.999); γ, λ_k, λ_r from the began config section); ``key=value`` arguments override
any config field (e.g. ``train.max_steps_per_epoch=200 began.channels=32`` for a CPU budget).

Figures (refined by ``pycompgen.systems.began.refine`` with each variant's best.pt):
  (a) the project's synthetic faces (they play the paper's rendered game characters): input / A / B / C;
  (b) CelebA validation faces degraded by downscaling (``--degrade 16``: 64 -> 16 -> 64 bilinear):
      original / degraded input / A / B / C;
  (c) with ``--compgen-run DIR``: Compgen approach-3 outputs (DIR/approach3/best.pt; edge map + channel at that
      run's ``train.psnr``, decoded with ``decode_edges``): original / edge map / Compgen / A / B / C.
Only (a) (synthetic pixels) is written to bench/results/refiner-<machine>/; figures holding CelebA pixels ((b), (c))
go to runs/refiner-figures/<machine>/ (dataset pixels stay out of the repository).

Writes bench/results/refiner-<machine>.json: budget (epochs, steps, batch), wall time (per variant, this invocation
and accumulated over resumed invocations from metrics.jsonl), machine and load average, per variant the final k_t
and M_global (last training step, from the checkpoint's extra state, and the last epoch's averages), validation
metrics, and per input set the faithfulness SSIM between the output downscaled to ``--ssim-size`` and the input
downscaled likewise (for (b) also SSIM of the output to the clean original).
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
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

VARIANTS = ("A", "B", "C")
SMOKE = ["began.channels=8", "began.embedding=16", "data.image_size=32", "data.synthetic_count=64",
         "train.batch_size=16", "train.max_steps_per_epoch=2", "train.max_val_batches=1", "train.device=cpu"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="CelebA root (img_align_celeba/ + list_eval_partition.txt); "
                                                 "required unless --smoke")
    ap.add_argument("--epochs", type=int, default=5, help="epoch budget per variant (total, across resumes)")
    ap.add_argument("--variants", default="A,B,C")
    ap.add_argument("--config", default=None, help="base config file (default: config defaults = paper recipe)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--run-prefix", default=str(ROOT / "runs" / "began"), help="runs go to <prefix>-<variant>/")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--private-figures", default=str(ROOT / "runs" / "refiner-figures"),
                    help="where figures holding dataset pixels go (<dir>/<machine>/)")
    ap.add_argument("--compgen-run", default=None, help="a Compgen pipeline folder with approach3/best.pt")
    ap.add_argument("--degrade", type=int, default=16, help="resolution of the degraded CelebA inputs (b)")
    ap.add_argument("--ssim-size", type=int, default=None, help="resolution of the faithfulness SSIM "
                                                               "(default image_size // 2)")
    ap.add_argument("--n-show", type=int, default=8, help="faces per figure")
    ap.add_argument("--n-eval", type=int, default=200, help="faces per input set for the SSIM figures")
    ap.add_argument("--features", default=None, help="the judge's feature space for FD (default zoo:compgen-64; "
                                                     "--smoke: the smoke run's own refiner is not an encoder, so "
                                                     "a random-init tiny Compgen encoder)")
    ap.add_argument("--pool", type=int, default=2, metavar="K",
                    help="pool the judge's features to KxK before FD (default 2: 64 values; 0 = flattened, 1,024 "
                         "values, which needs thousands of faces: with a few hundred, FD ranks blur above detail)")
    ap.add_argument("--n-fd", type=int, default=1000, help="synthetic faces, and real validation faces, for FD")
    ap.add_argument("--zoo", action="store_true",
                    help="measure the zoo's began-<size>-<variant> entries instead of runs (no training) -> "
                         "refiner-<machine>-zoo.{json,md}")
    ap.add_argument("--export", action="store_true", help="export each variant into the zoo as began-<size>-<v>")
    ap.add_argument("--fresh", action="store_true", help="start the runs over instead of resuming")
    ap.add_argument("--no-train", action="store_true", help="only the figures, from existing runs")
    ap.add_argument("--smoke", action="store_true", help="tiny widths, 32x32 synthetic faces, 2 steps per epoch; "
                                                        "outputs under runs/refiner-smoke/ unless given")
    ap.add_argument("overrides", nargs="*", help="config key=value overrides")
    args = ap.parse_args(argv)
    if args.zoo and (args.export or args.smoke):
        ap.error("--zoo measures the shipped entries: it takes neither --export nor --smoke")
    if args.zoo:
        args.no_train = True
    if args.smoke:
        smoke_root = ROOT / "runs" / "refiner-smoke"
        if args.run_prefix == ap.get_default("run_prefix"):
            args.run_prefix = str(smoke_root / "began")
        if args.results == ap.get_default("results"):
            args.results = str(smoke_root / "results")
        if args.private_figures == ap.get_default("private_figures"):
            args.private_figures = str(smoke_root / "figures")
        args.overrides = SMOKE + list(args.overrides)
        args.n_eval = min(args.n_eval, 16)
        args.n_fd = min(args.n_fd, 64)
    elif args.data is None:
        ap.error("--data is required (the refiner is trained on real faces); use --smoke for a synthetic check")
    return args


def variant_cfg(args, variant: str):
    from pycompgen.config import load_config
    over = ["model.name=began", "train.stage=train", f"began.variant={variant}", f"train.epochs={args.epochs}",
            "train.batch_size=25", "data.image_size=64",  # the paper's recipe; key=value arguments override
            *([f"data.path={args.data}"] if args.data else []), *args.overrides]
    cfg = load_config(args.config, over)
    cfg.out = f"{args.run_prefix}-{variant}"
    return cfg


def train_variant(args, variant: str) -> dict:
    from pycompgen.training import run_pipeline
    cfg = variant_cfg(args, variant)
    t0 = time.perf_counter()
    run_pipeline(cfg, resume=not args.fresh, verbose=True)
    return {"wall_s_this_invocation": time.perf_counter() - t0}


def load_variant(args, variant: str, device):
    from pycompgen.models import load_checkpoint, load_for_eval, stage_checkpoint
    if args.zoo:
        from pycompgen import zoo
        name = f"began-{variant_cfg(args, variant).data.image_size}-{variant.lower()}"
        lc = zoo.load(name)["train"]
        return lc.config, {k: m.to(device) for k, m in lc.models.items()}, {
            "checkpoint": f"zoo:{name}", "inject": list(lc.models["g"].inject), "curve": []}
    d = Path(f"{args.run_prefix}-{variant}") / "train"
    path = stage_checkpoint(d)
    if path is None:
        raise SystemExit(f"no checkpoint of variant {variant} in {d} (train it first: drop --no-train)")
    lc = load_for_eval(path, expect_model="began", device=device)  # the generator's EMA where the run kept one
    payload = load_checkpoint(path, expect_model="began")
    last = load_checkpoint(d / "last.pt", expect_model="began") if (d / "last.pt").is_file() else payload
    hist = []
    if (d / "metrics.jsonl").is_file():
        by_epoch = {}
        for line in (d / "metrics.jsonl").read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_epoch[r["epoch"]] = r  # a resumed epoch: the last record wins
        hist = [by_epoch[e] for e in sorted(by_epoch)]
    m = last.get("metrics", {})
    info = {"checkpoint": str(path), "checkpoint_epoch": int(payload.get("epoch", 0)),
            "selected_by": payload.get("best_metric"), "selected_value": payload.get("best_value"),
            "ema": bool(payload.get("ema")), "epochs_done": int(last.get("epoch", 0)),
            "inject": list(lc.models["g"].inject),
            "recipe": {"gamma": lc.config.began.gamma, "lambda_k": lc.config.began.lambda_k,
                       "lambda_r": lc.config.began.lambda_r, "embedding": lc.config.began.embedding,
                       "rcn_px": lc.config.began.rcn_resolution(lc.config.data.image_size)},
            "k_t_final": float(last.get("extra", {}).get("k_t", float("nan"))),
            "m_global_final": float(last.get("extra", {}).get("m_global", float("nan"))),
            "k_t_last_epoch_mean": m.get("train_k_t"), "m_global_last_epoch_mean": m.get("train_m_global"),
            "val": {k: v for k, v in m.items() if k.startswith("val_")},
            "train_time_s_total": sum(h.get("epoch_time_s", 0.0) for h in hist),
            "curve": [{k: h.get(k) for k in ("epoch", "lr_g", "train_k_t", "train_m_global", "train_l_real",
                                              "train_l_fake", "train_l_rcn", "val_ssim", "val_l_rcn",
                                              "val_m_global")}
                      for h in hist]}
    return lc.config, lc.models, info


def compgen_outputs(run: str, x_uint8: torch.Tensor, device):
    """(edge maps, Compgen approach-3 outputs in [0, 1]) for faces ``x_uint8`` (N,3,H,W) at the run's size."""
    from pycompgen.models import load_for_eval, stage_checkpoint
    from pycompgen.systems.compgen import system as cg
    p = stage_checkpoint(Path(run) / "approach3")
    if p is None:
        raise SystemExit(f"--compgen-run {run}: no approach3/best.pt or last.pt")
    lc = load_for_eval(p, expect_model="compgen", device=device)
    cfg, models = lc.config, lc.models
    size = cfg.data.image_size
    if x_uint8.shape[-1] != size:
        raise SystemExit(f"--compgen-run {run} was trained on {size}x{size} faces, the refiner on "
                         f"{x_uint8.shape[-1]}x{x_uint8.shape[-1]}")
    gen = torch.Generator().manual_seed(1234)
    b = cg.Compgen.example_batch(cfg, x_uint8, gen)
    z = b["z_noisy"].to(device)
    with torch.no_grad():
        out = cg.decode_edges(models, z)
    return b.get("z", z).float().cpu(), out.float().clamp(0, 1).cpu(), {"checkpoint": str(p),
                                                                        "psnr_db": cfg.train.psnr}


def plot_curves(report: dict, path: Path) -> str:
    """k_t, M_global (train and validation) and the learning rate per epoch, one line per variant."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=100)
    for v, r in report["variants"].items():
        c = r["curve"]
        ep = [h["epoch"] for h in c]
        axes[0].plot(ep, [h["train_k_t"] for h in c], marker=".", label=f"{v}")
        axes[1].plot(ep, [h["train_m_global"] for h in c], marker=".", label=f"{v} train")
        axes[1].plot(ep, [h["val_m_global"] for h in c], ls="--", label=f"{v} val")
        axes[2].plot(ep, [h["lr_g"] for h in c], marker=".", label=f"{v}")
    for ax, t in zip(axes, ("k_t (epoch mean)", "M_global", "learning rate (G)")):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def metrics_table(r: dict) -> str:
    """Markdown of one variant's figures: validation beside the training subset, and synthetic faces."""
    f = r["figures"]
    v, t, s = f["val"], f["train_subset"], f["synthetic"]
    rows = ["| faces (degraded to {} px) | SSIM at {} px to the input | sharpness ratio | SSIM to the original |"
            .format(v["degrade_px"], v["degrade_px"]), "|---|---:|---:|---:|"]
    for label, d in (("validation", v), ("training subset", t)):
        rows.append(f"| {label} ({d['n']}) | {d['ssim_lowres']:.3f} | {d['sharpness_ratio']:.3f} | "
                    f"{d['ssim_to_original']:.3f} |")
    rows.append(f"| the degraded input itself | 1 | {v['input_sharpness_ratio']:.3f} | "
                f"{v['input_ssim_to_original']:.3f} |")
    rows += ["", f"Synthetic faces ({s['n']}): FD to real validation faces {s['fd_refined_to_real']:.3f} refined, "
                 f"{s['fd_input_to_real']:.3f} unrefined ({s['feature_space']}); spread {s['spread_ratio']:.3f} of "
                 f"real faces'; SSIM at {s['ssim_size']} px to the input {s['ssim_lowres']:.3f}; sharpness ratio "
                 f"{s['sharpness_ratio']:.3f} (input {s['input_sharpness_ratio']:.3f}).",
             "", "Sharpness ratio: mean Laplacian energy of the outputs over that of real 64x64 faces "
                 "(pycompgen.metrics.laplacian_energy; project metric, not from the paper)."]
    return "\n".join(rows)


def report_markdown(report: dict) -> str:
    """The committed summary: budget, per variant the equilibrium (k_t, M_global), validation beside the training
    subset, and the synthetic faces' FD (refined vs unrefined)."""
    b = report["budget"]
    L = [f"# BEGAN refiner on CelebA ({b['image_size']}x{b['image_size']})", "",
         f"`{report.get('command')}` — {report.get('date')}, {report.get('cpu_model')} ({report.get('cpu_cores')} "
         f"cores), torch {report.get('torch')}, load average at start {report.get('load_average_at_start')}", "",
         f"Budget per variant: {b['epochs_per_variant']} epochs of {b['max_steps_per_epoch'] or 'all'} steps, batch "
         f"{b['batch_size']}, channels {b['channels']}, λ_r {b['lambda_r']} (γ, λ_k and the resolution of L_RCN per "
         f"variant in the table), lr G/D {b['lr_g']}/{b['lr_d']} (halved on val M_global plateaus), G EMA 0.999; "
         "best.pt by val M_global.",
         "", "| variant | injects | γ | λ_k | L_RCN at | epochs | k_t (last epoch mean) | M_global train / val (last) "
             "| best epoch | wall time |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v, r in report["variants"].items():
        c = r["curve"][-1] if r["curve"] else {}
        rc = r.get("recipe", {})
        L.append(f"| {v} | {r['inject']} | {rc.get('gamma')} | {rc.get('lambda_k')} | {rc.get('rcn_px')} px | "
                 f"{r['epochs_done']} | {r['k_t_last_epoch_mean'] or float('nan'):.4f} | "
                 f"{c.get('train_m_global') or float('nan'):.4f} / {c.get('val_m_global') or float('nan'):.4f} | "
                 f"{r['checkpoint_epoch']} | {r['train_time_s_total'] / 60:.1f} min |")
    L += ["", "Per-epoch k_t: " + "; ".join(f"{v}: " + " ".join(f"{h['train_k_t']:.3f}" for h in r["curve"])
                                           for v, r in report["variants"].items()), ""]
    for v, r in report["variants"].items():
        L += [f"## Variant {v}", "", metrics_table(r), ""]
    return "\n".join(L) + "\n"


def zoo_markdown(report: dict) -> str:
    """The summary of ``--zoo``: each shipped entry's figures (no training table: the entries' cards hold it)."""
    L = ["# BEGAN refiner zoo entries, re-measured", "",
         f"`{report.get('command')}` — {report.get('date')}, {report.get('cpu_model')} ({report.get('cpu_cores')} "
         f"cores), torch {report.get('torch')}, load average at start {report.get('load_average_at_start')}", ""]
    for v, r in report["variants"].items():
        L += [f"## {r['checkpoint']}", "", metrics_table(r), ""]
    return "\n".join(L) + "\n"


def export_variants(args, report: dict) -> None:
    """Each variant's best.pt (G's EMA) -> zoo entry began-<size>-<variant>, its card from this report."""
    sys.path.insert(0, str(ROOT / "tools"))
    from zoo_export import export_system
    b = report["budget"]
    for v, r in report["variants"].items():
        f = r["figures"]
        facts = {"data": "CelebA aligned faces, official train partition (validation partition for the figures)",
                 "recipe": f"BEGAN refiner variant {v} (injects {r['inject']}), {r['epochs_done']} epochs of "
                           f"{b['max_steps_per_epoch'] or 'all'} steps, batch {b['batch_size']}, channels "
                           f"{b['channels']} (the paper: 64), gamma {r['recipe']['gamma']}, lambda_k "
                           f"{r['recipe']['lambda_k']}, lambda_r {r['recipe']['lambda_r']}, L_RCN at "
                           f"{r['recipe']['rcn_px']} px, embedding {r['recipe']['embedding']}",
                 "checkpoint": f"epoch {r['checkpoint_epoch']}, chosen by {r['selected_by']} "
                               f"({r['selected_value']:.4f}); generator EMA: {r['ema']}",
                 "k_t / M_global (last step)": f"{r['k_t_final']:.4f} / {r['m_global_final']:.4f}",
                 "training wall time": f"{r['train_time_s_total'] / 60:.1f} min",
                 "machine": f"{report.get('cpu_model')} ({report.get('cpu_cores')} cores), torch "
                            f"{report.get('torch')}", "command": report.get("command"), "date": report.get("date")}
        summary = (f"val {f['val']['degrade_px']}px: SSIM@{f['val']['degrade_px']} {f['val']['ssim_lowres']:.3f}, "
                   f"sharpness {f['val']['sharpness_ratio']:.2f}; FD synth {f['synthetic']['fd_refined_to_real']:.2f}"
                   f" (input {f['synthetic']['fd_input_to_real']:.2f})")
        export_system(r["checkpoint"], f"began-{b['image_size']}-{v.lower()}",
                      f"BEGAN refiner (seed 003), variant {v}: refines crude {b['image_size']}x{b['image_size']} "
                      f"faces", facts=facts, metrics={"summary": summary, **f}, metrics_md=metrics_table(r),
                      use=[f"pycompgen refine --pretrained began-{b['image_size']}-{v.lower()} IMAGES... -o DIR"])


def main(argv=None) -> dict:
    args = parse_args(argv)
    from pycompgen.evaluation.machine import load_average, machine_info
    from pycompgen.data import load_faces, synthetic_faces
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.evaluation.judge import resolve_features
    from pycompgen.evaluation.refiner import degrade, refiner_report, ssim_lowres
    from pycompgen.systems.began import refine
    from pycompgen.training import resolve_device

    variants = [v.strip().upper() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants: unknown {bad} (A, B, C)")
    cfg0 = variant_cfg(args, variants[0])
    device = resolve_device(cfg0.train.device)
    info = machine_info(str(device))
    t_start = time.perf_counter()
    report: dict = {"machine": args.machine, **info,  # info: date, command, load_average_at_start
                    "budget": {"epochs_per_variant": args.epochs, "batch_size": cfg0.train.batch_size,
                               "max_steps_per_epoch": cfg0.train.max_steps_per_epoch,
                               "image_size": cfg0.data.image_size, "channels": cfg0.began.channels,
                               "gamma": cfg0.began.gamma, "lambda_k": cfg0.began.lambda_k,
                               "lambda_r": cfg0.began.lambda_r, "rcn_size": cfg0.began.rcn_size,
                               "embedding": cfg0.began.embedding, "lr_g": cfg0.began.lr_g, "lr_d": cfg0.began.lr_d,
                               "data": args.data or "synthetic", "overrides": args.overrides},
                    "variants": {}, "sets": {}}
    wall: dict = {}
    if not args.no_train:
        for v in variants:
            wall[v] = train_variant(args, v)
    loaded = {}
    for v in variants:
        _, models, vinfo = load_variant(args, v, device)
        loaded[v] = models
        report["variants"][v] = {**vinfo, **wall.get(v, {})}

    size = cfg0.data.image_size
    ssim_size = args.ssim_size or size // 2
    name = f"refiner-{args.machine}" + ("-zoo" if args.zoo else "")
    public = Path(args.results) / name
    private = Path(args.private_figures) / args.machine
    figures = {}

    def refine_all(inp: torch.Tensor) -> dict:
        return {v: refine(loaded[v], inp).cpu() for v in variants}

    if args.smoke and not args.features:  # 32x32: no zoo encoder fits; a random tiny one checks the plumbing
        from pycompgen.config import load_config
        from pycompgen.evaluation.judge import EncoderFeatures
        from pycompgen.systems.compgen.networks import build_compgen
        torch.manual_seed(0)
        f = build_compgen(load_config(str(ROOT / "configs" / "tiny.yaml"), []).model, size)["f"].eval()
        feats = EncoderFeatures(f, name="random tiny encoder (smoke only)", image_size=size)
    else:
        feats = resolve_features(args.features, pool=args.pool, device=str(device))
    # (a) synthetic faces -> bench/results (no dataset pixels)
    syn = torch.from_numpy(synthetic_faces(max(args.n_eval, args.n_show, args.n_fd), size, seed=2026)).permute(
        0, 3, 1, 2)
    x = syn.float() / 255
    outs = refine_all(x)
    k = args.n_show
    figures["synthetic"] = write_png(public / "synthetic.png", compose_grid(
        [("synthetic input", x[:k])] + [(f"model {v}", o[:k]) for v, o in outs.items()],
        title=f"BEGAN refiner on synthetic faces ({args.epochs} epochs/variant)"))

    # held-out faces and a fixed subset of training faces, degraded by downscaling
    def faces(split, n=None):
        ds = load_faces(args.data, split, size, cache_dir=cfg0.data.cache_dir,
                        synthetic_count=cfg0.data.synthetic_count, seed=cfg0.train.seed)
        n = min(len(ds), n or max(args.n_eval, args.n_show))
        return torch.from_numpy(ds.images[:n]).permute(0, 3, 1, 2).contiguous()
    real_fd = faces("val", max(args.n_fd, 2)).float() / 255
    orig_u8 = faces("val")
    orig = orig_u8.float() / 255
    train_x = faces("train").float() / 255
    report["sets"] = {"features": feats.label, "degrade_px": args.degrade, "ssim_size_synthetic": ssim_size,
                      "fd_faces": {"synthetic": int(x.shape[0]), "real_validation": int(real_fd.shape[0])}}
    for v in variants:
        fn = (lambda m: lambda t: refine(m, t))(loaded[v])
        report["variants"][v]["figures"] = refiner_report(fn, orig, train_x, x, feats, args.degrade, ssim_size,
                                                          real_fd=real_fd)
    crude = degrade(orig, args.degrade)
    outs = refine_all(crude)
    figures["downscaled"] = write_png(private / "downscaled.png", compose_grid(
        [("original", orig[:k]), (f"input ({args.degrade}px)", crude[:k])] +
        [(f"model {v}", o[:k]) for v, o in outs.items()],
        title=f"BEGAN refiner on {args.degrade}x{args.degrade} -> {size}x{size} faces"))

    # (c) Compgen approach-3 outputs -> runs/ (dataset pixels)
    if args.compgen_run:
        from pycompgen.ops import ssim
        n = orig.shape[0]
        z, xc, cinfo = compgen_outputs(args.compgen_run, orig_u8, device)
        outs = refine_all(xc)
        report["sets"]["compgen"] = {
            "n": n, **cinfo, "ssim_size": ssim_size,
            "ssim_down_output_vs_input": {v: ssim_lowres(o, xc, ssim_size) for v, o in outs.items()},
            "ssim_output_vs_original": {v: float(ssim(o, orig)) for v, o in outs.items()},
            "ssim_compgen_vs_original": float(ssim(xc, orig))}
        figures["compgen"] = write_png(private / "compgen.png", compose_grid(
            [("original", orig[:k]), ("edge map", z[:k].clamp(0, 1)), ("Compgen", xc[:k])] +
            [(f"model {v}", o[:k]) for v, o in outs.items()],
            title="BEGAN refiner after Compgen approach 3"))
    if not args.zoo:
        figures["curves"] = plot_curves(report, public / "curves.png")

    report["figures"] = figures
    report["wall_s_this_invocation"] = time.perf_counter() - t_start
    report["load_average_at_end"] = load_average()
    Path(args.results).mkdir(parents=True, exist_ok=True)
    path = Path(args.results) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    path.with_suffix(".md").write_text(zoo_markdown(report) if args.zoo else report_markdown(report))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    for kind, f in figures.items():
        print(f"  {kind}: {f}")
    if args.export:
        export_variants(args, report)
    for v, r in report["variants"].items():
        f = r["figures"]
        if args.zoo:
            print(f"  {r['checkpoint']}: " + next(ln for ln in metrics_table(r).splitlines() if ln.startswith("Synthetic")))
            continue
        print(f"  model {v} (inject {r['inject']}): {r['epochs_done']} epochs (figures: epoch {r['checkpoint_epoch']}, "
              f"{r['selected_by']}), k_t {r['k_t_final']:.4f}, M_global {r['m_global_final']:.4f}; val "
              f"{args.degrade}px: SSIM@{args.degrade} {f['val']['ssim_lowres']:.3f}, sharpness "
              f"{f['val']['sharpness_ratio']:.3f} (train subset {f['train_subset']['ssim_lowres']:.3f}, "
              f"{f['train_subset']['sharpness_ratio']:.3f}); synthetic FD {f['synthetic']['fd_refined_to_real']:.2f} "
              f"(input {f['synthetic']['fd_input_to_real']:.2f}), SSIM@{ssim_size} "
              f"{f['synthetic']['ssim_lowres']:.3f}")
    return report


if __name__ == "__main__":
    main()
