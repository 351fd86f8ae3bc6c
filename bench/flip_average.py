#!/usr/bin/env python
"""Mirror averaging at the receiver for Compgen's edges-only zoo entries (issue 17): approach-3 SSIM of
x̂ = g(h(z + n)) and of ``decode_edges(..., flip_average=True)`` (the mean of x̂ and the mirrored decoding of the
mirrored noisy edge map: twice the decoding cost, nothing sent), on the fixed training subset and on validation
faces, at channel PSNRs 50 / 0 / −5 dB. Both decodings see the same noise draw. Not a test: it reads real data.

    python bench/flip_average.py --data ../shared/data/celeba --entries compgen-64-plus,compgen-64

Writes bench/results/flip-average-<machine>.{json,md}. ``--ensemble A,B,...`` (approach-3 checkpoints or zoo:NAME,
one channel and image size) instead scores each model, the mean of their decodings (an ensemble: variance
reduction at the receiver, K times the decoding cost, nothing sent) and that mean mirror-averaged, on validation
faces: how much of the gap to a goal averaging can close.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = os.path.relpath(Path(__file__), ROOT)  # as the results files name it
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

PSNRS = (50.0, 0.0, -5.0)


@torch.no_grad()
def decode_pair(models, z: torch.Tensor) -> tuple:
    """(x_hat, the mirror of the decoding of the mirrored z): decode_edges(flip_average=True) is their mean, so
    both figures come from one pair of decodings."""
    from pycompgen.systems.compgen.system import decode_edges
    return decode_edges(models, z), decode_edges(models, z.flip(-1)).flip(-1)


def mean_ssim(models, channel, faces, psnr: float, seed: int, batch: int = 256) -> tuple:
    """(plain, mirror-averaged) mean SSIM over ``faces`` (N, 3, H, W) in [0, 1] at channel ``psnr``."""
    from pycompgen.ops import awgn, ssim
    g = torch.Generator().manual_seed(seed)
    s = [0.0, 0.0]
    for i in range(0, len(faces), batch):
        x = faces[i:i + batch]
        z = awgn(channel.edges(x), psnr, generator=g)
        plain, mirrored = decode_pair(models, z)
        for k, x_hat in enumerate((plain, (plain + mirrored) / 2)):
            s[k] += float(ssim(x_hat.clamp(0, 1), x, reduction="none").sum())
    return s[0] / len(faces), s[1] / len(faces)


@torch.no_grad()
def ensemble_ssim(loaded: list, channel, faces, psnr: float, seed: int, batch: int = 256) -> dict:
    """Mean SSIM over ``faces`` at channel ``psnr`` of each model in ``loaded`` (LoadedCheckpoints), of the mean of
    their decodings and of that mean mirror-averaged; every model sees the same noisy edge maps."""
    from pycompgen.ops import awgn, ssim
    g = torch.Generator().manual_seed(seed)
    s = torch.zeros(len(loaded) + 2, dtype=torch.float64)
    for i in range(0, len(faces), batch):
        x = faces[i:i + batch]
        z = awgn(channel.edges(x), psnr, generator=g)
        pairs = [decode_pair(lc.models, z) for lc in loaded]
        outs = torch.stack([p.clamp(0, 1) for p, _ in pairs])
        avg = torch.stack([((p + m) / 2).clamp(0, 1) for p, m in pairs]).mean(0)
        for k, o in enumerate([*outs, outs.mean(0), avg]):
            s[k] += ssim(o, x, reduction="none").sum().double()
    s = (s / len(faces)).tolist()
    return {"single": s[:-2], "ensemble": s[-2], "ensemble_flip_average": s[-1]}


def load_ensemble(specs: list) -> list:
    """LoadedCheckpoints of approach-3 checkpoints or zoo:NAME entries, which must share image size and edge
    channel (one line naming the first that does not)."""
    from pycompgen import zoo
    from pycompgen.models import load_for_eval
    ch = lambda c: (c.data.image_size, c.data.canny_low, c.data.canny_high, c.data.blur_sigma)  # noqa: E731
    out = []
    for spec in specs:
        lc = (zoo.load(spec[4:], stages=["approach3"])["approach3"] if spec.startswith("zoo:")
              else load_for_eval(spec, label=spec))
        if not lc.has_elm or getattr(lc.config.model, "hint_size", 0):
            raise SystemExit(f"flip_average: {spec} is not an edges-only approach-3 model")
        for m in lc.models.values():
            m.eval()
        if out and ch(lc.config) != ch(out[0].config):
            raise SystemExit(f"flip_average: {spec} has image size / Canny thresholds / blur {ch(lc.config)}, "
                             f"the first model {ch(out[0].config)}: an ensemble needs one edge channel")
        out.append(lc)
    return out


def run_ensemble(args, specs: list) -> int:
    from pycompgen.data import EdgeChannel, load_faces, to_float01
    from pycompgen.evaluation.machine import bench_header
    from pycompgen.evaluation.sweep import write_json
    loaded = load_ensemble(specs)
    c = loaded[0].config
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    val = to_float01(load_faces(args.data, "val", image_size=c.data.image_size))
    channel = EdgeChannel(canny_low=c.data.canny_low, canny_high=c.data.canny_high, blur_sigma=c.data.blur_sigma,
                          psnr=float("inf"))
    rows = {}
    for j, p in enumerate(PSNRS):
        rows[f"{p:g}"] = ensemble_ssim(loaded, channel, val, p, seed=1000 + j)
        print(f"{p:g} dB: {rows[f'{p:g}']}", flush=True)
    report = {**bench_header("flip_average/ensemble", args.machine, SCRIPT, load0), "models": specs,
              "faces": {"val": len(val)}, "psnrs": list(PSNRS), "ssim": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    out = Path(args.results)
    write_json(out / f"flip-average-{args.machine}.json", report)
    lines = [f"# Ensembles at the receiver ({args.machine}, {report['date_utc']})", "",
             f"Command: `{report['command']}`; {report['cpu']}, load {report['load_average']['start']} -> "
             f"{report['load_average']['end']}. Approach-3 SSIM on {len(val)} validation faces; every model decodes "
             "the same noisy edge maps.", "", "| model | " + " | ".join(f"val @{p:g} dB" for p in PSNRS) + " |",
             "|---|" + "---:|" * len(PSNRS)]
    for k, spec in enumerate(specs):
        lines.append(f"| `{spec}` | " + " | ".join(f"{rows[f'{p:g}']['single'][k]:.3f}" for p in PSNRS) + " |")
    for key, label in (("ensemble", f"mean of the {len(specs)} decodings"),
                       ("ensemble_flip_average", "the same, mirror-averaged")):
        lines.append(f"| {label} | " + " | ".join(f"**{rows[f'{p:g}'][key]:.3f}**" for p in PSNRS) + " |")
    (out / f"flip-average-{args.machine}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--entries", default="compgen-64-plus,compgen-64", help="edges-only Compgen zoo entries")
    ap.add_argument("--train-images", type=int, default=1000, help="fixed training faces (default 1000)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--ensemble", default=None, metavar="CKPT,...",
                    help="approach-3 checkpoints or zoo:NAME to average at the receiver (replaces --entries)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"flip_average: data folder not found: {args.data} (pass --data CELEBA_ROOT)", file=sys.stderr)
        return 2
    if args.ensemble:
        return run_ensemble(args, [e.strip() for e in args.ensemble.split(",") if e.strip()])
    from pycompgen import zoo
    from pycompgen.data import EdgeChannel, load_faces, to_float01
    from pycompgen.evaluation.generalise import train_subset
    from pycompgen.evaluation.machine import bench_header
    from pycompgen.evaluation.sweep import write_json

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows, faces_of = {}, {}  # faces_of: {(image size, seed): (train subset, val)}, read once for all entries
    for name in [e.strip() for e in args.entries.split(",") if e.strip()]:
        lc = zoo.load(name, stages=["approach3"])["approach3"]
        c = lc.config
        if getattr(c.model, "hint_size", 0):
            print(f"flip_average: {name} takes a colour hint; this bench covers edges-only entries", file=sys.stderr)
            return 2
        for m in lc.models.values():
            m.eval()
        key = (lc.image_size, c.train.seed)
        if key not in faces_of:
            train_faces = train_subset(load_faces(args.data, "train", image_size=key[0]), args.train_images,
                                       seed=key[1])
            faces_of[key] = (to_float01(train_faces), to_float01(load_faces(args.data, "val", image_size=key[0])))
        train, val = faces_of[key]
        channel = EdgeChannel(canny_low=c.data.canny_low, canny_high=c.data.canny_high,
                              blur_sigma=c.data.blur_sigma, psnr=float("inf"))
        rows[name] = {}
        for split, faces in (("train", train), ("val", val)):
            for j, p in enumerate(PSNRS):
                plain, avg = mean_ssim(lc.models, channel, faces, p, seed=1000 + j)
                rows[name][f"{split}@{p:g}"] = {"plain": plain, "flip_average": avg}
                print(f"{name} {split} {p:g} dB: {plain:.4f} -> {avg:.4f}", flush=True)
    report = {**bench_header("flip_average", args.machine, SCRIPT, load0),
              "faces": {"train_subset": len(train), "val": len(val)}, "psnrs": list(PSNRS), "entries": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    out = Path(args.results)
    write_json(out / f"flip-average-{args.machine}.json", report)
    head = " | ".join(f"{s} @{p:g} dB" for s in ("val", "train") for p in PSNRS)
    lines = [f"# Mirror averaging at the receiver ({args.machine}, {report['date_utc']})", "",
             f"Command: `{report['command']}`; {report['cpu']}, load {report['load_average']['start']} -> "
             f"{report['load_average']['end']}. Approach-3 SSIM, plain -> mirror-averaged, on {len(val)} validation "
             f"faces and {len(train)} fixed training faces (the same noise draw for both decodings).", "",
             f"| entry | {head} | gap @50 dB |", "|---|" + "---:|" * (2 * len(PSNRS) + 1)]
    for name, r in rows.items():
        cells = [f"{r[f'{s}@{p:g}']['plain']:.3f} → {r[f'{s}@{p:g}']['flip_average']:.3f}"
                 for s in ("val", "train") for p in PSNRS]
        gap = [r["train@50"][k] - r["val@50"][k] for k in ("plain", "flip_average")]
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {gap[0]:.3f} → {gap[1]:.3f} |")
    (out / f"flip-average-{args.machine}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
