"""Sketch2face benchmark (seed 004): per-domain VAE-GAN pretraining and the paper's three CycleGAN variants
("cycle": from scratch, "stitched": pretrained and trained whole, "latent": pretrained, frozen, only the latent
linear layers trained) within an epoch budget, then the paper's Table 1 analogue and cycle grids.

    python bench/sketch2face.py --data ../shared/data/celeba --sketches ../shared/data/cufsf --epochs 10
    python bench/sketch2face.py --tiny --results /tmp/s2f-results --run-dir /tmp/s2f-run     # smoke test

Training goes through ``run_pipeline`` into runs/sketch2face-<machine>/<stage>/ (``--resume`` skips finished
stages and continues an interrupted one from its last epoch). ``--pretrain-set KEY=VALUE`` (repeatable) applies
overrides to the pretraining only, e.g. a reconstruction weight for the VAEs other than the variants' one.
Evaluation on the validation split (at most ``--eval-images`` of each domain), with the latent means: the paper's
Table 1 measure, FD between inputs and their cycle reconstructions (in the judge's feature space, non-standard: no
Inception weights here), and mean L1 (on [0, 1] images) and SSIM between them, sketch -> face -> sketch and face ->
sketch -> face (the first 120 training sketches' and 256 training faces' FD beside), and the spread
of sketch -> face outputs over VAE samples of one input vs over different inputs.

Writes bench/results/sketch2face-<machine>.json / .md (budget, wall time, machine, load average, every number).
Cycle grids show dataset pixels when the data are real: then they go under runs/sketch2face-<machine>/figures/;
with synthetic data (no dataset pixels) under bench/results/sketch2face-<machine>/.
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

from pycompgen.evaluation.machine import machine_name, runtime_info  # noqa: E402  (the quality bench's labels)

VARIANTS = ("cycle", "stitched", "latent")
LABELS = {"pretrain": "per-domain VAE-GANs (pretraining)", "cycle": "trained from scratch",
          "stitched": "whole model (pretrained)", "latent": "only latent layers (pretrained, frozen)"}


def eval_domains(cfg, n: int, split: str = "val"):
    """The first ``n`` sketches and faces of ``split`` (validation, or a fixed training subset), in [-1, 1]
    (no flips)."""
    from pycompgen.systems import get_system
    system = get_system("sketch2face")
    ds = system.datasets(cfg, split)
    n = min(n, len(ds))
    b = system.split_batch(cfg, torch.stack([ds[i] for i in range(n)]), "cpu")
    return b["sketch"][:min(n, ds.n_sketches)], b["face"][:min(n, ds.n_faces)]


@torch.no_grad()
def cycle_grid(models, sketches, faces, title: str, path: Path, rows: int = 8) -> str:
    from pycompgen.evaluation.figures import compose_grid, write_png
    from pycompgen.systems.sketch2face import Sketch2Face as S
    s, f = sketches[:rows], faces[:rows]
    n = min(len(s), len(f))
    s, f = s[:n], f[:n]
    fake_f = S.translate(models, "s", s, False)[0]
    rec_s = S.translate(models, "f", fake_f, False)[0]
    fake_s = S.translate(models, "f", f, False)[0]
    rec_f = S.translate(models, "s", fake_s, False)[0]
    v = lambda t: ((t.float().clamp(-1, 1) + 1) / 2).expand(-1, 3, -1, -1)  # noqa: E731
    cols = [("sketch", v(s)), ("-> face", v(fake_f)), ("-> sketch", v(rec_s)),
            ("face", v(f)), ("-> sketch", v(fake_s)), ("-> face", v(rec_f))]
    return write_png(path, compose_grid(cols, title=title))


def _stage_seconds(stage_dir: Path):
    """Training seconds of a stage: the sum of its epoch times in metrics.jsonl (survives resumption)."""
    p = stage_dir / "metrics.jsonl"
    if not p.is_file():
        return None
    total = 0.0
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        total += float(rec.get("epoch_time_s", rec.get("time_s", 0.0)) or 0.0)
    return total or None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="face data (CelebA root); default: synthetic faces")
    ap.add_argument("--sketches", default=None, help="CUFSF root or sketch folder (sketch_source=cufsf)")
    ap.add_argument("--sketch-source", default="cufsf", choices=("cufsf", "canny"))
    ap.add_argument("--image-size", type=int, default=64, choices=(32, 64))
    ap.add_argument("--epochs", type=int, default=10, help="epoch budget per stage (pretrain and each variant)")
    ap.add_argument("--tiny", action="store_true", help="configs/sketch2face-tiny.yaml (smoke test, synthetic)")
    ap.add_argument("--eval-images", type=int, default=256)
    ap.add_argument("--spread-samples", type=int, default=8)
    ap.add_argument("--features", default="zoo:compgen-64",
                    help="the judge's feature space for sketch -> face realism (checkpoint or zoo:ENTRY)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--machine", default=None, help="machine label in file names (default cpu<N> / gpu-<name>)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--run-dir", default=None, help="checkpoints (default runs/sketch2face-<machine>)")
    ap.add_argument("--resume", action="store_true", help="skip finished stages, continue an interrupted one")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="variants to train and evaluate after the pretraining (comma-separated; the Table 1 "
                         "ordering needs all three)")
    ap.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the pretraining stage only (repeatable; after the positional ones)")
    ap.add_argument("overrides", nargs="*", help="extra config overrides key=value")
    args = ap.parse_args(argv)
    bad = [o for o in args.pretrain_set if "=" not in o]
    if bad:
        ap.error(f"--pretrain-set: expected KEY=VALUE, got {bad[0]!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        ap.error(f"--variants: expected some of {', '.join(VARIANTS)}, got {args.variants!r}")
    variants = [v for v in VARIANTS if v in variants]

    from pycompgen.config import load_config
    from pycompgen.evaluation import sketch2face as S2F
    from pycompgen.evaluation.judge import resolve_features
    from pycompgen.systems.sketch2face import cycle_distances, sample_spread
    from pycompgen.tracking.artifacts import models_from_payload
    from pycompgen.training import load_checkpoint, run_pipeline, stage_checkpoint
    from pycompgen.training.loop import resolve_device

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    machine = args.machine or machine_name(device)
    if args.tiny:
        base, ovs = str(ROOT / "configs" / "sketch2face-tiny.yaml"), [f"train.device={device.type}"]
    else:
        base = None
        ovs = ["model.name=sketch2face", f"data.image_size={args.image_size}", f"train.epochs={args.epochs}",
               f"train.device={device.type}", f"sketch2face.sketch_source={args.sketch_source}"]
        if args.data:
            ovs.append(f"data.path={args.data}")
        if args.sketches:
            ovs.append(f"sketch2face.sketch_path={args.sketches}")
    cfg = load_config(base, ovs + list(args.overrides))
    cfg_pre = load_config(base, ovs + list(args.overrides) + list(args.pretrain_set)) if args.pretrain_set else cfg
    run_dir = Path(args.run_dir or ROOT / "runs" / f"sketch2face-{machine}")
    cfg.out = cfg_pre.out = str(run_dir)
    synthetic = cfg.data.path in (None, "synthetic") and (cfg.sketch2face.sketch_path is None
                                                          or cfg.sketch2face.sketch_source == "canny")
    results = Path(args.results)
    fig_dir = results / f"sketch2face-{machine}" if synthetic else run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    print(f"sketch2face on {machine}: faces {cfg.data.path or 'synthetic'}, sketches "
          f"{cfg.sketch2face.sketch_source}:{cfg.sketch2face.sketch_path or 'synthetic'}, "
          f"{cfg.data.image_size}x{cfg.data.image_size}, run dir {run_dir}, figures {fig_dir}", flush=True)

    t0 = time.perf_counter()
    if args.pretrain_set:  # the pretraining with its own overrides, then the variants (they read its best.pt)
        train = run_pipeline(cfg_pre, stages=["pretrain"], resume=args.resume)
        train.update(run_pipeline(cfg, stages=variants, resume=args.resume))
    else:
        train = run_pipeline(cfg, stages=["pretrain", *variants], resume=args.resume)
    train_s = time.perf_counter() - t0

    sketches, faces = eval_domains(cfg, args.eval_images)
    train_sketches, train_faces = eval_domains(cfg, args.eval_images, "train")  # the gap: as many training ones
    train_sketches, train_faces = train_sketches[:len(sketches)], train_faces[:len(faces)]
    features = resolve_features(args.features)
    reference = S2F.real_reference(faces, features)
    rows, figures = {}, {}
    for stage in ("pretrain", *variants):
        stage_dir = run_dir / stage
        ck = stage_checkpoint(stage_dir) or stage_dir / "last.pt"  # (missing: load_checkpoint names it)
        payload = load_checkpoint(ck, expect_model="sketch2face")
        _, models = models_from_payload(payload)
        row = {"label": LABELS[stage], "checkpoint": str(ck), "epochs": int(payload["epoch"]),
               "wall_time_s": _stage_seconds(stage_dir),
               "train_metrics": {k: v for k, v in (train.get(stage) or {}).items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        row["prior_realism"] = S2F.prior_realism(models, faces, features)
        row["reconstruction_realism"] = S2F.prior_realism(models, faces, features, source="reconstruction")
        if stage != "pretrain":
            row.update(cycle_distances(models, sketches, faces))
            row.update(S2F.cycle_fd(models, sketches, faces, features))
            row["cycle_fd_train"] = S2F.cycle_fd(models, train_sketches, train_faces, features)
            row.update(sample_spread(models, sketches[:64], samples=args.spread_samples))
            row["realism"] = S2F.realism(models, sketches, faces, features)
            row["realism_train"] = S2F.realism(models, train_sketches, train_faces, features)
            figures[stage] = cycle_grid(models, sketches, faces,
                                        f"sketch2face {stage} ({LABELS[stage]}), {row['epochs']} epochs, {machine}",
                                        fig_dir / f"cycle-{stage}.png")
        rows[stage] = row
        print(f"{stage}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                       if isinstance(v, float)), flush=True)

    wall = time.perf_counter() - t_start
    c = cfg.sketch2face
    report = {
        "benchmark": "sketch2face", "machine": machine, "machine_info": runtime_info(device),
        "command": " ".join([sys.executable, *sys.argv]),
        "budget": {"epochs_per_stage": {s: cfg.epochs_for(s) for s in ("pretrain", *variants)},
                   "stages": ["pretrain", *variants],
                   "max_steps_per_epoch": cfg.train.max_steps_per_epoch, "batch_size": cfg.train.batch_size},
        "data": {"faces": cfg.data.path or "synthetic", "sketch_source": c.sketch_source,
                 "sketches": c.sketch_path or ("canny" if c.sketch_source == "canny" else "synthetic"),
                 "image_size": cfg.data.image_size, "eval_sketches": int(len(sketches)),
                 "eval_faces": int(len(faces))},
        "config": cfg.to_dict()["sketch2face"] if "sketch2face" in cfg.to_dict() else {},
        "pretrain_overrides": list(args.pretrain_set),
        "wall_time_s": {"train": round(train_s, 1), "total": round(wall, 1),
                        "train_recorded": round(sum(r["wall_time_s"] or 0.0 for r in rows.values()), 1)},
        "load_average": {"start": [round(v, 2) for v in load_start], "end": [round(v, 2) for v in os.getloadavg()]},
        "table1": rows, "figures": figures, "real_reference": reference,
        "ordering": S2F.ordering(rows) if len(variants) == len(VARIANTS) else None,
        "notes": "Table 1 analogue: cycle FD between inputs and reconstructions (the paper's measure, in the judge's "
                 "non-standard feature space; no Inception weights here), cycle L1 (lower is better) and SSIM "
                 "(higher is better), with latent means. "
                 "spread_ratio = output std over VAE samples of one sketch / std over different sketches.",
    }
    results.mkdir(parents=True, exist_ok=True)
    out_json = results / f"sketch2face-{machine}.json"
    out_json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    budget = ", ".join(f"{k} {v}" for k, v in report["budget"]["epochs_per_stage"].items())
    lines = [f"# Sketch2face on {machine}", "",
             f"Budget (epochs): {budget}; batch {cfg.train.batch_size}"
             + (f", at most {cfg.train.max_steps_per_epoch} steps per epoch" if cfg.train.max_steps_per_epoch else "")
             + (f"; pretraining with {', '.join(args.pretrain_set)}" if args.pretrain_set else "")
             + f"; {cfg.data.image_size}x{cfg.data.image_size}; faces {report['data']['faces']}, sketches "
             f"{report['data']['sketches']}. Wall time of this invocation {wall / 60:.1f} min (training "
             f"{train_s / 60:.1f} min; the stages' recorded epochs {report['wall_time_s']['train_recorded'] / 60:.1f} "
             f"min, across resumptions); load "
             f"average {report['load_average']['start'][0]} -> {report['load_average']['end'][0]}.", "",
             "Table 1 analogue (validation, latent means). The paper's measure is the FD between the inputs and "
             f"their cycle reconstructions (here in {features.label}; sketches as grey RGB; the training sketches' and "
             "faces' FD in brackets):", "",
             "| variant | sketch cycle FD | face cycle FD | sketch cycle L1 | sketch cycle SSIM | face cycle L1 | "
             "face cycle SSIM | spread within / across inputs |", "|---|---|---|---|---|---|---|---|"]
    for stage in variants:
        r = rows[stage]
        t = r["cycle_fd_train"]
        lines.append(f"| {stage}: {r['label']} | {r['sketch_cycle_fd']:.1f} ({t['sketch_cycle_fd']:.1f}) | "
                     f"{r['face_cycle_fd']:.1f} ({t['face_cycle_fd']:.1f}) | {r['sketch_cycle_l1']:.4f} | "
                     f"{r['sketch_cycle_ssim']:.4f} | {r['face_cycle_l1']:.4f} | {r['face_cycle_ssim']:.4f} | "
                     f"{r['spread_within_input']:.4f} / {r['spread_across_inputs']:.4f} "
                     f"(ratio {r['spread_ratio']:.3f}) |")
    o = report["ordering"]
    yn = lambda k: "yes" if o[k] else "no"  # noqa: E731
    lines += ["", "Paper's ordering (only latent layers < whole < from scratch): " + (
              f"by cycle FD (the paper's measure) sketch cycle {yn('sketch_cycle_as_paper_fd')}, face cycle "
              f"{yn('face_cycle_as_paper_fd')}; by cycle L1 sketch cycle {yn('sketch_cycle_as_paper')}, face cycle "
              f"{yn('face_cycle_as_paper')}." if o else "not measured (not every variant run)."),
              "", f"Realism (sketch -> face against {len(faces)} real validation faces; {features.label}) and "
              "face -> sketch diversity (pixel space, against the real sketches):", "",
              "| variant | FD | spread / real | near-dup share | collapse | sharpness / real | "
              "sketch spread / real | sketch near-dup share | sketch collapse |", "|---|---|---|---|---|---|---|---|---|"]
    for stage in variants:
        r = rows[stage]["realism"]
        lines.append(f"| {stage} | {r['fd']:.1f} | {r['spread_ratio']:.3f} | {r['near_duplicate_share']:.3f} | "
                     f"{'**yes**' if r['collapse'] else 'no'} | {r['sharpness_ratio']:.3f} | "
                     f"{r['sketch_spread_ratio']:.3f} | {r['sketch_near_duplicate_share']:.3f} | "
                     f"{'**yes**' if r['sketch_collapse'] else 'no'} |")
    lines.append(f"| real faces (half against half) | {reference['fd_half_split']:.1f} | "
                 f"{reference['spread_ratio']:.3f} | | | {reference['sharpness_ratio']:.3f} | | | |")
    lines += ["", f"The same on the first {len(train_sketches)} training sketches against the first "
              f"{len(train_faces)} training faces, beside validation (a gap says the translation memorised its "
              "training sketches):", "",
              "| variant | FD train / val | spread / real, train / val | near-dup share, train / val | "
              "sharpness / real, train / val | sketch near-dup share, train / val |", "|---|---|---|---|---|---|"]
    for stage in variants:
        r, v = rows[stage]["realism_train"], rows[stage]["realism"]
        lines.append(f"| {stage} | {r['fd']:.1f} / {v['fd']:.1f} | {r['spread_ratio']:.3f} / {v['spread_ratio']:.3f} | "
                     f"{r['near_duplicate_share']:.3f} / {v['near_duplicate_share']:.3f} | "
                     f"{r['sharpness_ratio']:.3f} / {v['sharpness_ratio']:.3f} | "
                     f"{r['sketch_near_duplicate_share']:.3f} / {v['sketch_near_duplicate_share']:.3f} |")
    lines += ["", "The face decoder on prior samples, G_f(z), z ~ N(0, I) (what a translation relies on: the sketch "
              "encoder's latents are drawn to the same prior), against the same real faces:", "",
              "| stage | FD | spread / real | near-dup share | collapse | sharpness / real |", "|---|---|---|---|---|---|"]
    for stage in rows:
        r = rows[stage]["prior_realism"]
        lines.append(f"| {stage} | {r['fd']:.1f} | {r['spread_ratio']:.3f} | {r['near_duplicate_share']:.3f} | "
                     f"{'**yes**' if r['collapse'] else 'no'} | {r['sharpness_ratio']:.3f} |")
    if any("reconstruction_realism" in rows[s] for s in rows):
        lines += ["", "The face VAE's own reconstructions, G_f(μ_f(x)) of the same real faces (a translation's bound: "
                  "what G_f makes of a face's own encoding):", "",
                  "| stage | FD | spread / real | near-dup share | collapse | sharpness / real |",
                  "|---|---|---|---|---|---|"]
        for stage in rows:
            r = rows[stage].get("reconstruction_realism")
            if r:
                lines.append(f"| {stage} | {r['fd']:.1f} | {r['spread_ratio']:.3f} | "
                             f"{r['near_duplicate_share']:.3f} | {'**yes**' if r['collapse'] else 'no'} | "
                             f"{r['sharpness_ratio']:.3f} |")
    lines += ["", "Wall time per stage (s, from the run's epoch records): "
              + ", ".join(f"{k} {rows[k]['wall_time_s']:.0f}" for k in rows if rows[k]['wall_time_s']), ""]
    lines += ["", f"{len(sketches)} sketches and {len(faces)} faces; spread over {args.spread_samples} VAE samples "
              f"of each of {min(64, len(sketches))} sketches.", "",
              "Cycle grids (sketch -> face -> sketch, face -> sketch -> face): "
              + ", ".join(f"`{Path(p).relative_to(ROOT) if Path(p).is_relative_to(ROOT) else p}`"
                          for p in figures.values())]
    out_md = results / f"sketch2face-{machine}.md"
    out_md.write_text("\n".join(lines) + "\n")
    print(f"wrote {out_json} and {out_md} ({wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
