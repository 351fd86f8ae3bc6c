#!/usr/bin/env python
"""Compgen's noisy-channel claim against separation: SSIM against channel SNR for Compgen's analog edge map and for
separated schemes (an ideal channel code at capacity + a source codec) over the same 4,096 channel uses per face.

    python bench/separation.py --data ../shared/data/celeba            # 500 validation faces, SNR -10..20 dB

Compgen: the zoo entries' approach 3 (``--compgen``), the edge map sent as analog values (see
pycompgen.evaluation.separation). Separated: WebP, JPEG XL and JPEG over their quality ladders, a raw RGB thumbnail
(k x k at b bits, upsampled; the only scheme that fits budgets of a few dozen bytes) and the zoo's latent codec
``compgen-ae-64`` (all its rate points), each face coded at the best setting whose complete file fits the
capacity budget; a face nothing fits gets the mean training face. Writes bench/results/separation-<machine>.{json,md}
and separation-<machine>.png. Nothing trains; the codecs' ladders are measured once and reused for every SNR.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

LADDERS = {"webp": list(range(0, 101, 5)), "jpegxl": list(range(5, 100, 5)), "jpeg": list(range(5, 101, 5))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--images", type=int, default=500, help="validation faces (the first N; default 500)")
    ap.add_argument("--snrs", default="-10,-5,0,5,10,15,20", help="average-power channel SNRs (dB)")
    ap.add_argument("--compgen", default="compgen-64,compgen-64-plus,compgen-64-color",
                    help="zoo entries sent as edge maps (a colour-hint entry: edge map + hint, analog)")
    ap.add_argument("--latent", default="compgen-ae-64", help="zoo latent codec (all rate points); '' = none")
    ap.add_argument("--codecs", default=",".join(LADDERS), help=f"comma list of {', '.join(LADDERS)}")
    ap.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                    help="leave out the raw RGB thumbnail ladder (k x k at b bits, the plainest codec under 100 bytes)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    from pycompgen import zoo
    from pycompgen.data import load_faces, to_float01
    from pycompgen.evaluation.generalise import train_subset
    from pycompgen.evaluation.machine import bench_header, machine_summary
    from pycompgen.evaluation import separation as S
    from pycompgen.systems.compgen.system import hint_space, hint_spec
    from pycompgen.evaluation.sweep import write_json
    from pycompgen.inference.codec import prepare_codec

    snrs = [float(s) for s in args.snrs.split(",") if s.strip()]
    load_start = os.getloadavg()
    print(f"separation: {machine_summary()['cpu']}, {torch.get_num_threads()} threads, load {load_start}")
    val = load_faces(args.data, "val", image_size=64)
    n = min(args.images, len(val))
    x_u8 = np.array(val.images[:n])
    x = to_float01(x_u8)
    mean_face = torch.from_numpy(train_subset(load_faces(args.data, "train", image_size=64), 1000).images
                                 .astype(np.float64).mean(0)).permute(2, 0, 1).float() / 255.0
    t0 = time.perf_counter()
    compgen, wall = {}, {}
    for name in [s for s in args.compgen.split(",") if s]:
        t = time.perf_counter()
        pre = zoo.load(name)
        st = pre.elm_stage()
        hs = hint_spec(pre.models(st))[0]
        sp = hint_space(pre.models(st)) if hs else "rgb"
        uses = 4096 + (3 * hs * hs if sp == "rgb" else hs * hs * 3 // 2)
        what = f"edge map + {hs}x{hs} {sp} hint, {uses} uses" if hs else "edge map"
        compgen[f"Compgen {name} (analog {what})"] = S.compgen_over_channel(pre.models(st), pre[st].config.data,
                                                                            x, snrs)
        wall[name] = round(time.perf_counter() - t, 1)
    ladders = {}
    for c in [s for s in args.codecs.split(",") if s]:
        t = time.perf_counter()
        ladders[f"separated: {c} at capacity"] = S.codec_ladder(x_u8, c, LADDERS[c])
        wall[c] = round(time.perf_counter() - t, 1)
    if args.thumbnails:
        t = time.perf_counter()
        ladders["separated: RGB thumbnail at capacity"] = S.thumbnail_ladder(x)
        wall["thumbnail"] = round(time.perf_counter() - t, 1)
    if args.latent:
        t = time.perf_counter()
        points = {q: prepare_codec(next(iter(zoo.load(args.latent, quality=q).stages.values())))
                  for q in zoo.qualities(zoo.entry(args.latent))}
        ladders[f"separated: {args.latent} at capacity"] = S.latent_ladder(points, x)
        wall[args.latent] = round(time.perf_counter() - t, 1)
    table = S.compare(x, snrs, compgen, ladders, mean_face)
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    smallest = {lab: int(min(r["bytes"].min() for r in lad)) for lab, lad in ladders.items()}
    report = {
        **bench_header("separation", args.machine, rel(Path(__file__)), load_start),
        "faces": f"the first {n} CelebA validation faces, 64x64",
        "fallback": "mean of 1,000 fixed training faces (SSIM counted when nothing fits the budget)",
        "ladders": {lab: [{"quality": r["quality"], "bytes_mean": float(r["bytes"].mean()),
                           "ssim": float(r["ssim"].mean())} for r in lad] for lab, lad in ladders.items()},
        "smallest_file_bytes": smallest, "winners": S.winners(table), **table,
        "wall_s": {**wall, "total": round(time.perf_counter() - t0, 1)},
    }
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    write_json(res / f"separation-{args.machine}.json", report)
    S.plot(table, res / f"separation-{args.machine}.png", f"Compgen vs separation, {n} validation faces")
    lines = [f"# Compgen against separation over an AWGN channel ({args.machine}, {report['date_utc']})", "",
             f"Command: `{report['command']}`; {report['cpu']}, load at start {report['load_average']['start']}.",
             f"{report['faces']}; {table['uses']} real channel uses per face; SNR = average signal power per use / "
             f"noise variance; the paper's peak PSNR is the mean over faces of s - 10·log10(edge density). "
             f"Separated schemes: an ideal code at capacity ½·log2(1 + SNR) bits per use, the best setting that fits "
             f"per face; a face nothing fits gets the mean training face (SSIM {table['fallback_ssim']:.3f}).", "",
             *S.markdown(table), "",
             "Smallest file of each separated scheme (bytes, over these faces): "
             + ", ".join(f"{k.split(': ')[1].split(' at')[0]} {v}" for k, v in smallest.items()) + ".", "",
             f"![SSIM vs channel SNR](separation-{args.machine}.png)"]
    (res / f"separation-{args.machine}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
