#!/usr/bin/env python
"""Throughput of the codec verbs' library path: images/s of compress and decompress for every zoo entry that codes
faces (Compgen's edge maps, the latent codecs at each rate point) against WebP and JPEG XL in the same run, on the
same faces, one file per face (as ``pycompgen compress`` writes them): one face per forward pass, and in batches of
``--batch-size`` (what the verbs do since they batch). Not a test.

    python bench/throughput.py --data ../shared/data/celeba --n 200

Run alone (2 cores: anything else running halves every figure); the load average is printed with every figure and
stored. Writes bench/results/throughput-<machine>.json and .md.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402


def timed(fn, items) -> tuple[list, float]:
    t = time.perf_counter()
    out = [fn(v) for v in items]
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="CelebA root (default: synthetic faces)")
    ap.add_argument("--n", type=int, default=200, help="faces (default 200)")
    ap.add_argument("--codecs", default="webp:75,jpegxl:70", help="baseline codec:quality pairs")
    ap.add_argument("--batch-size", type=int, default=64, help="faces per forward pass, batched rows (64)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)

    from pycompgen import zoo
    from pycompgen.cli.common import pretrained_stage
    from pycompgen.codec.baselines import available_codecs, get_codec
    from pycompgen.data import load_faces, to_float01
    from pycompgen.evaluation.machine import load_average, machine_summary
    from pycompgen.inference import compress_batch, compress_images, decompress_batch, decompress_bytes

    ds = load_faces(args.data, "val", 64, synthetic_count=args.n)
    x8 = np.ascontiguousarray(ds.images[:args.n])
    x = to_float01(x8)
    faces = [x[i:i + 1] for i in range(x.shape[0])]
    rows = []

    def row(name, kind, files, t_enc, t_dec, batched=None):
        load = load_average()
        r = {"model": name, "kind": kind, "n": len(files), "compress_img_s": len(files) / t_enc,
             "decompress_img_s": len(files) / t_dec, "bpp": 8 * float(np.mean([len(f) for f in files])) / 4096,
             "load_average": load}
        if batched is not None:
            r["compress_batched_img_s"], r["decompress_batched_img_s"] = (len(files) / t for t in batched)
        rows.append(r)
        extra = (f"; batched {r['compress_batched_img_s']:.1f} / {r['decompress_batched_img_s']:.1f} img/s"
                 if batched is not None else "")
        print(f"{name:28s} {kind:8s} compress {r['compress_img_s']:8.1f} img/s, decompress "
              f"{r['decompress_img_s']:8.1f} img/s{extra}, {r['bpp']:.3f} bpp (load average {load[0]:.2f})",
              flush=True)

    torch.set_grad_enabled(False)
    for name in zoo.list():
        e = zoo.entry(name)
        if e.get("model") in ("began", "sketch2face"):  # a refiner and a translator, not codecs
            continue
        for q in zoo.qualities(e) or [None]:
            ck = pretrained_stage(name, quality=q)
            compress_images(ck, faces[0])  # warm-up
            files, te = timed(lambda f: compress_images(ck, f), faces)
            _, td = timed(lambda b: decompress_bytes(ck, b), files)
            bs = args.batch_size
            chunks = [x[i:i + bs] for i in range(0, x.shape[0], bs)]
            bfiles, tbe = timed(lambda c: compress_batch(ck, c), chunks)
            bfiles = [f for fs in bfiles for f in fs]
            _, tbd = timed(lambda i: decompress_batch(ck, [(str(j), f) for j, f in enumerate(bfiles[i:i + bs])],
                                                      batch_size=bs), range(0, len(bfiles), bs))
            payload = ("latent" if "eb" in ck.parts else
                       "edges + hint" if getattr(ck.config.model, "hint_size", 0) else "edges")
            row(name + (f" q{q}" if q else ""), payload, files, te, td,
                batched=(tbe, tbd))
    for spec in args.codecs.split(","):
        c, _, q = spec.partition(":")
        if c not in available_codecs():
            print(f"{c}: not available here, skipped")
            continue
        codec = get_codec(c)
        imgs = list(x8)
        files, te = timed(lambda im: codec.encode(im, float(q)), imgs)
        _, td = timed(codec.decode, files)
        row(f"{c} q{q}", "image", files, te, td)

    cmd = "python bench/throughput.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                           else sys.argv[1:]))
    doc = {"benchmark": "throughput", "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": cmd,
           "machine": machine_summary(), "faces": args.data or "synthetic", "n": args.n,
           "note": "one file per face, 64x64, library path of pycompgen compress/decompress (no PNG I/O); one "
                   "process, torch threads as machine; batched: --batch-size faces per forward pass",
           "batch_size": args.batch_size, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"throughput-{args.machine}.json").write_text(json.dumps(doc, indent=1))
    md = ["# Codec throughput (64x64 faces, one file each)\n", f"`{cmd}` — {doc['date']}, {doc['machine']}\n",
          f"| model | payload | compress img/s | decompress img/s | batched ({args.batch_size}) compress / decompress "
          "img/s | bpp | load average |", "|---|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['model']} | {r['kind']} | {r['compress_img_s']:.1f} | {r['decompress_img_s']:.1f} | "
           + (f"{r['compress_batched_img_s']:.1f} / {r['decompress_batched_img_s']:.1f}"
              if "compress_batched_img_s" in r else "–")
           + f" | {r['bpp']:.3f} | {r['load_average'][0]:.2f} |" for r in rows]
    (out / f"throughput-{args.machine}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
