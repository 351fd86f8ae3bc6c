#!/usr/bin/env python
"""Compgen's edge path against the number of training faces (issue 17): reads ``bench/generalise.py`` results of
one recipe trained on nested subsets of the training split (``data.train_limit``; a result without it counts as the
whole split), tabulates approach-3 SSIM on the training subset and on validation faces per channel PSNR, fits
validation SSIM = a + b·log2(N) by least squares and says how many faces that line needs for ``--goal`` (an
extrapolation beyond the data: an estimate, not a measurement). Not a test: it reads committed results.

    python bench/generalise_datasize.py --results cpu2-n2000,cpu2-n4000,cpu2-n8000,cpu2-paperelm-d5ema

Writes bench/results/generalise-datasize-<name>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def points(machines: list, results: Path) -> list:
    """[(N, lever, {split: {psnr: ssim}}, the result's date)] sorted by N, one per results file (its first lever)."""
    out = []
    for m in machines:
        p = results / f"generalise-{m}.json"
        if not p.is_file():
            raise SystemExit(f"generalise_datasize: no {p} (run bench/generalise.py --machine {m} first)")
        r = json.loads(p.read_text())
        lever, lv = next(iter(r["levers"].items()))
        n = r["faces"].get("trained_on", {}).get(lever, r["faces"]["train_split"])
        ssim = {s: {k: v["ssim"] for k, v in lv[s]["approach3"].items()} for s in ("train", "val")}
        out.append((int(n), lever, ssim, r.get("date_utc", "")))
    return sorted(out)


def fit(ns: list, ys: list) -> tuple:
    """Least-squares a, b of y = a + b·log2(n)."""
    xs = [math.log2(n) for n in ns]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="comma list of generalise-<machine> names (without prefix)")
    ap.add_argument("--name", default="cpu2", help="output name: generalise-datasize-<name>.*")
    ap.add_argument("--goal", type=float, default=0.62, help="validation SSIM at 50 dB to solve the fit for")
    ap.add_argument("--dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    pts = points([m.strip() for m in args.results.split(",") if m.strip()], Path(args.dir))
    if len({n for n, *_ in pts}) < 2:
        raise SystemExit("generalise_datasize: need results at two or more training-set sizes")
    psnrs = list(pts[0][2]["val"])
    ns = [n for n, *_ in pts]
    fits = {p: fit(ns, [s["val"][p] for _, _, s, _ in pts]) for p in psnrs}
    a, b = fits["50"]
    need = 2 ** ((args.goal - a) / b) if b > 0 else None
    doc = {"command": "python " + shlex.join([str(Path(__file__).relative_to(ROOT))] + sys.argv[1:]),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "points": [{"n": n, "lever": lever, "ssim": s, "result_date": d} for n, lever, s, d in pts],
           "fit_val": {p: {"a": fa, "b_per_doubling": fb} for p, (fa, fb) in fits.items()},
           "goal_50db": args.goal, "faces_for_goal_estimate": need}
    out = Path(args.dir)
    stem = f"generalise-datasize-{args.name}"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    head = " | ".join(f"{s} @{p} dB" for p in psnrs for s in ("train", "val"))
    lines = [f"# Compgen's edge path against the number of training faces ({doc['date_utc']})", "",
             f"Command: `{doc['command']}`. Approach-3 SSIM on 1,000 fixed faces of the training faces used and on "
             "the validation faces; one recipe, the same number of optimiser steps at every size.", "",
             f"| training faces | {head} |", "|---:|" + "---:|" * (2 * len(psnrs))]
    for n, _, s, _ in pts:
        lines.append(f"| {n:,} | " + " | ".join(f"{s[k][p]:.3f}" for p in psnrs for k in ("train", "val")) + " |")
    lines += ["", "Least-squares line through the validation points, SSIM = a + b·log2(N): "
              + "; ".join(f"{p} dB b = {fb:+.4f} per doubling" for p, (_, fb) in fits.items()) + "."]
    if need:
        lines.append(f"Extrapolated (an estimate beyond the data): the 50 dB line reaches {args.goal} at about "
                     f"{need:,.0f} training faces.")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for p, col in zip(psnrs, ("C0", "C1", "C2", "C3")):
        ax.plot(ns, [s["train"][p] for _, _, s, _ in pts], "--o", color=col, alpha=0.6, label=f"train @{p} dB")
        ax.plot(ns, [s["val"][p] for _, _, s, _ in pts], "-o", color=col, label=f"val @{p} dB")
    ax.axhline(args.goal, color="grey", lw=0.8, ls=":", label=f"goal @50 dB ({args.goal})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training faces")
    ax.set_ylabel("approach-3 SSIM")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
