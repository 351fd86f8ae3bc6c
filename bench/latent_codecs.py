#!/usr/bin/env python
"""The learned latent codecs as pretrained entries: Compgen's autoencoder with an entropy bottleneck at several
rate weights λ (zoo entry ``compgen-ae-64``, ``--quality 1..K``, 1 = the lowest rate), and the study's CVAE and
DCGAN compressors (``cvae-64``, ``dcgan-64``). Not a test: it trains for real, resumably (re-run the same command;
finished runs are skipped, an interrupted one continues from its last.pt).

    python bench/latent_codecs.py --data ../shared/data/celeba --export
    python bench/latent_codecs.py --data ../shared/data/celeba --systems ae --lambdas 0.02,0.1,0.4 --epochs-ae 3

The autoencoder starts from a trained step 1 (default: the ``compgen-64`` zoo entry's f and g, written once as a
training checkpoint into the run folder) and fine-tunes f, g and the bottleneck at each λ for ``--epochs-ae``
epochs (the end state is kept: with λ > 0 the best-SSIM epoch is the least compressed one). CVAE and DCGAN train
from scratch at the study's widths, batch 100. Measurement: one real ``.pcg`` file per face (header included) on
``--val-images`` validation faces and, beside them, on a fixed subset of ``--train-images`` training faces.

Writes bench/results/latent-<machine>.json and .md (points, train − val gap, wall times, machine, load average,
command, date); ``--export`` writes the zoo entries and their cards.
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
sys.path.insert(0, str(ROOT / "tools"))



def log(msg):
    print(f"[latent] {msg} (load average {os.getloadavg()[0]:.2f})", flush=True)


def step1_init(args, run_dir: Path) -> Path:
    """A training checkpoint of step 1 (f, g) to fine-tune from: a checkpoint path, or zoo:NAME's step-1 stage."""
    if not args.init.startswith("zoo:"):
        return Path(args.init)
    from pycompgen import zoo
    from pycompgen.models import save_checkpoint
    path = run_dir / f"step1-{args.init[4:]}.pt"
    if not path.is_file():
        lc = zoo.load(args.init[4:], stages="step1")["step1"]
        save_checkpoint(path, {"model": "compgen", "stage": "step1", "epoch": lc.epoch,
                               "config": lc.config.to_dict(), "models": {k: lc.models[k].state_dict()
                                                                         for k in ("f", "g")}})
    return path


def train_all(args, run_dir: Path) -> tuple[dict, dict]:
    from pycompgen.config import load_config
    from pycompgen.evaluation.presets import CPU_PRESET
    from pycompgen.training import stage_done, train_local
    data = ["train.progress=false", "train.device=cpu", f"data.path={Path(args.data).resolve()}"] + \
        (["train.max_steps_per_epoch=3", "train.max_val_batches=1"] if args.smoke else [])
    runs, secs = {}, {}
    systems = args.systems.split(",")
    if "ae" in systems:
        init = step1_init(args, run_dir)
        for lam in [float(v) for v in args.lambdas.split(",")]:
            out = run_dir / f"ae-eb-{lam:g}"
            c = load_config(None, CPU_PRESET + data + ["model.entropy_bottleneck=true", f"train.rate_weight={lam}",
                                                       f"train.epochs={args.epochs_ae}", f"out={out}",
                                                       f"train.init={init}"])
            if not stage_done(out / "last.pt", c):
                t = time.perf_counter()
                train_local(c, resume=True)
                secs[f"ae-eb-{lam:g}"] = round(time.perf_counter() - t, 1)
                log(f"AE λ={lam:g}: trained in {secs[f'ae-eb-{lam:g}']:.0f} s")
            runs[f"AE λ={lam:g}"] = str(out / "last.pt")
    for system, ep in (("cvae", args.epochs_cvae), ("dcgan", args.epochs_dcgan)):
        if system not in systems:
            continue
        out = run_dir / system
        c = load_config(None, data + [f"model.name={system}", f"train.epochs={ep}", "train.batch_size=100",
                                      f"out={out}"])
        if not stage_done(out / "last.pt", c):
            t = time.perf_counter()
            train_local(c, resume=True)
            secs[system] = round(time.perf_counter() - t, 1)
            log(f"{system}: trained in {secs[system]:.0f} s")
        runs[system.upper()] = str(out / "best.pt")
    return runs, secs


def epoch_seconds(ckpt: str) -> float:
    """Training wall time summed over a run's metrics.jsonl (across resumed invocations; last record per epoch)."""
    p = Path(ckpt).parent / "metrics.jsonl"
    by = {}
    if p.is_file():
        for line in p.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by[r["epoch"]] = r.get("epoch_time_s", 0.0)
    return round(sum(by.values()), 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "latent"))
    ap.add_argument("--systems", default="ae,cvae,dcgan")
    ap.add_argument("--init", default="zoo:compgen-64", help="step-1 start of the AE: a checkpoint or zoo:NAME")
    ap.add_argument("--lambdas", default="0.02,0.06,0.15,0.4", help="rate weights of the AE's rate points")
    ap.add_argument("--epochs-ae", type=int, default=3)
    ap.add_argument("--epochs-cvae", type=int, default=10)
    ap.add_argument("--epochs-dcgan", type=int, default=30)
    ap.add_argument("--val-images", type=int, default=500)
    ap.add_argument("--train-images", type=int, default=500, help="fixed training subset measured beside val")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--export", action="store_true", help="write the zoo entries and cards")
    ap.add_argument("--smoke", action="store_true", help="check the script: 3 steps an epoch, 1 epoch, 8 faces")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs_ae = args.epochs_cvae = args.epochs_dcgan = 1
        args.val_images = args.train_images = 8

    from pycompgen.data import load_faces
    from pycompgen.evaluation.machine import load_average, machine_summary
    from pycompgen.evaluation.rd import latent_point
    from pycompgen.evaluation.sweep import face_batch

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = load_average()
    log(f"machine {machine_summary()}")
    runs, secs = train_all(args, run_dir)
    faces = {}
    for split, n in (("val", args.val_images), ("train", args.train_images)):
        ds = load_faces(str(Path(args.data).resolve()), split, 64)
        faces[split] = face_batch(ds, 0, min(n, len(ds))).float() / 255
    points = {}
    for label, path in runs.items():
        v = latent_point(label, path, faces["val"], log=log)
        t = latent_point(label + " (train subset)", path, faces["train"], log=lambda *a: None)
        points[label] = {"checkpoint": path, "train_wall_s": epoch_seconds(path), "val": v, "train_subset": t,
                         "ssim_train_minus_val": t["ssim"] - v["ssim"], "bpp_train_minus_val": t["bpp"] - v["bpp"]}
    res = ROOT / "bench" / "results" if not args.smoke else run_dir
    prev_path = res / f"latent-{args.machine}.json"
    if prev_path.is_file():  # points of systems not run now stay, marked with the command and date that measured them
        prev = json.loads(prev_path.read_text())
        for label, p in prev.get("points", {}).items():
            if label not in points:
                points[label] = {**p, "measured_by": p.get("measured_by", prev.get("command")),
                                 "measured_date": p.get("measured_date", prev.get("date"))}
    cmd = "python bench/latent_codecs.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                              else sys.argv[1:]))
    doc = {"benchmark": "latent_codecs", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": cmd, "machine": machine_summary(), "load_average": {"start": load0, "end": load_average()},
           "budget": {k: getattr(args, k) for k in ("lambdas", "epochs_ae", "epochs_cvae", "epochs_dcgan", "init")},
           "val_images": faces["val"].shape[0], "train_images": faces["train"].shape[0],
           "train_seconds_this_invocation": secs, "points": points, "wall_s": round(time.perf_counter() - t0, 1)}
    md = ["# Learned latent codecs: real files on CelebA faces (64x64)\n",
          f"`{cmd}` — {doc['date']}, {doc['machine']}, load average {load0}\n",
          "| model | val bpp | val SSIM | val PSNR | train-subset bpp | train-subset SSIM | SSIM train − val | "
          "training wall time |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, p in points.items():
        v, t = p["val"], p["train_subset"]
        md.append(f"| {label} | {v['bpp']:.3f} | {v['ssim']:.4f} | {v['psnr']:.2f} | {t['bpp']:.3f} | "
                  f"{t['ssim']:.4f} | {p['ssim_train_minus_val']:+.4f} | {p['train_wall_s'] / 60:.1f} min |")
    if any("measured_by" in p for p in points.values()):
        md.append("")
        by: dict = {}
        for label, p in points.items():
            if "measured_by" in p:
                by.setdefault((p["measured_by"], p["measured_date"]), []).append(label)
        md += [f"{', '.join(labels)}: measured by `{cmd}` ({date})" for (cmd, date), labels in by.items()]
    (res / f"latent-{args.machine}.json").write_text(json.dumps(doc, indent=1))
    (res / f"latent-{args.machine}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.export:
        export(args, doc, {k: p for k, p in points.items() if k in runs}, faces["val"], md)
    return 0


def export(args, doc, points, val, md) -> None:
    from zoo_export import export_rate_points
    facts = {"data": "CelebA aligned faces (official train partition; figures on the validation partition and a "
                     "fixed training subset)", "machine": str(doc["machine"]), "command": doc["command"],
             "date": doc["date"]}
    table = "\n".join(md[2:])
    ae = [p["checkpoint"] for k, p in points.items() if k.startswith("AE λ")]
    if ae:
        wall = sum(p["train_wall_s"] for k, p in points.items() if k.startswith("AE λ"))
        export_rate_points(ae, "compgen-ae-64", "Compgen's autoencoder (step 1) with an entropy bottleneck: a latent "
                           "codec at several rates", faces=val, faces_label="CelebA validation",
                           facts={**facts, "recipe": f"step 1 of {args.init} fine-tuned with an entropy bottleneck at "
                                  f"λ ∈ {{{args.lambdas}}}, {args.epochs_ae} epochs each, CPU widths",
                                  "training wall time": f"{wall / 60:.1f} min (all rate points)"},
                           metrics_md="Validation beside a training subset:\n\n" + table)
    for key, name, what in (("CVAE", "cvae-64", "the study's CVAE compressor"),
                            ("DCGAN", "dcgan-64", "the study's DCGAN compressor")):
        if key in points:
            p = points[key]
            ep = args.epochs_cvae if key == "CVAE" else args.epochs_dcgan
            export_rate_points([p["checkpoint"]], name, f"{what} (seed 001) with an entropy bottleneck", faces=val,
                               faces_label="CelebA validation",
                               facts={**facts, "recipe": f"{ep} epochs, batch 100, the study's widths",
                                      "training wall time": f"{p['train_wall_s'] / 60:.1f} min"},
                               metrics_md="Validation beside a training subset:\n\n" + table)


if __name__ == "__main__":
    sys.exit(main())
