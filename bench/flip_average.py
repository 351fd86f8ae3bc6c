#!/usr/bin/env python
"""Mirror averaging at the receiver for Compgen's edges-only zoo entries (issue 17): approach-3 SSIM of
x̂ = g(h(z + n)) and of ``decode_edges(..., flip_average=True)`` (the mean of x̂ and the mirrored decoding of the
mirrored noisy edge map: twice the decoding cost, nothing sent), on the fixed training subset and on validation
faces, at channel PSNRs 50 / 0 / −5 dB. Both decodings see the same noise draw. Not a test: it reads real data.

    python bench/flip_average.py --data ../shared/data/celeba --entries compgen-64-plus,compgen-64

Writes bench/results/flip-average-<machine>.{json,md}.
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

import torch  # noqa: E402

PSNRS = (50.0, 0.0, -5.0)


@torch.no_grad()
def mean_ssim(models, channel, faces, psnr: float, seed: int, batch: int = 256) -> tuple:
    """(plain, mirror-averaged) mean SSIM over ``faces`` (N, 3, H, W) in [0, 1] at channel ``psnr``."""
    from pycompgen.ops import awgn, ssim
    from pycompgen.systems.compgen.system import decode_edges
    g = torch.Generator().manual_seed(seed)
    s = [0.0, 0.0]
    for i in range(0, len(faces), batch):
        x = faces[i:i + batch]
        z = awgn(channel.edges(x), psnr, generator=g)
        for k, avg in enumerate((False, True)):
            x_hat = decode_edges(models, z, flip_average=avg).clamp(0, 1)
            s[k] += float(ssim(x_hat, x, reduction="none").sum())
    return s[0] / len(faces), s[1] / len(faces)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--entries", default="compgen-64-plus,compgen-64", help="edges-only Compgen zoo entries")
    ap.add_argument("--train-images", type=int, default=1000, help="fixed training faces (default 1000)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    from pycompgen import zoo
    from pycompgen.data import EdgeChannel, load_faces, to_float01
    from pycompgen.evaluation.generalise import train_subset
    from pycompgen.evaluation.machine import machine_summary
    from pycompgen.evaluation.sweep import write_json

    if not Path(args.data).is_dir():
        print(f"flip_average: data folder not found: {args.data} (pass --data CELEBA_ROOT)", file=sys.stderr)
        return 2
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
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    report = {"benchmark": "flip_average", "machine": args.machine, **machine_summary(),
              "command": "python " + " ".join(shlex.quote(a) for a in [rel(Path(__file__))] + sys.argv[1:]),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "load_average": {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in os.getloadavg()]},
              "faces": {"train_subset": len(train), "val": len(val)}, "psnrs": list(PSNRS), "entries": rows,
              "wall_s": round(time.perf_counter() - t0, 1)}
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
