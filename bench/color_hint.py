#!/usr/bin/env python
"""Compgen with a colour hint (beyond the paper): train it, measure real files against the codecs on the same faces,
and export it as the zoo entry ``compgen-64-color``. Not a test: it trains (resumable).

    python bench/color_hint.py --data ../shared/data/celeba --resume --export compgen-64-color

The sender adds a quantised RGB thumbnail of the face (``--hint-size`` x ``--hint-size`` block means at ``--bits``,
predicted and range-coded: ``pycompgen.codec.hint``) to the edge map in the same ``.pcg`` file; h takes edge map
and hint. Training starts from the step 1 (f, g) of ``--start`` (frozen) with that entry's recipe (flips, h's
dropout, weight decay, gated skips, channel PSNR drawn from [-5, 50] dB per image): approach 1 (a fresh h, MSE to
f(x)) then approach 3 (h, g); the hint's bits are drawn per image from ``model.hint_bits`` so one network serves
every rate point, and the hint travels through the channel as analog values with the edge map's noise.

Measured on the first ``--val-images`` validation faces and on ``--train-images`` fixed training faces: one real
file per face (header included) at each bit depth (the entry's ``--quality`` 1..4), beside WebP and JPEG XL
ladders, the edges-only ``compgen-64-plus`` and the latent codec ``compgen-ae-64`` on the same faces; the channel
sweep at 50 / 0 / -5 dB (train, val, gap); against separation over the AWGN channel: bench/separation.py. Writes
bench/results/<tag>-<machine>.{json,md} and <tag>-<machine>/rd_ssim.png (plus a synthetic-face grid); runs in
runs/<tag>-<machine>/ (``--tag``, default ``color``).
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

PSNRS = [50.0, 0.0, -5.0]
GOAL = {"ssim": 0.80, "bpp": 0.60}


def log(msg):
    print(f"[color] {msg} (load average {os.getloadavg()[0]:.2f})", flush=True)


@torch.no_grad()
def codec_points(lc, x, label: str, batch_size: int = 100) -> dict:
    """One RD point of a loaded codec stage (edges or latent payload): one real file per face."""
    from pycompgen.evaluation.rd import point
    from pycompgen.inference import compress_batch, decompress_batch
    files = []
    for i in range(0, x.shape[0], batch_size):
        files += compress_batch(lc, x[i:i + batch_size])
    dec = decompress_batch(lc, [(f"face {i}", f) for i, f in enumerate(files)], batch_size=batch_size)
    return point(label, [len(f) for f in files], dec[0][1].nbytes, torch.cat([d[0] for d in dec]), x)


def faces_u8(faces, n: int) -> np.ndarray:
    from pycompgen.evaluation.sweep import face_batch
    return face_batch(faces, 0, min(n, len(faces))).permute(0, 2, 3, 1).contiguous().numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "celeba"))
    ap.add_argument("--start", default="compgen-64-plus", help="zoo entry whose step 1 and recipe are used")
    ap.add_argument("--hint-size", type=int, default=8)
    ap.add_argument("--bits", default="2,3,4,5", help="hint bit depths trained and measured (the rate points)")
    ap.add_argument("--hint-space", default="rgb", choices=("rgb", "ycocg420"),
                    help="the hint's colour space (ycocg420: luma at --hint-size, chroma at half size, one bit fewer)")
    ap.add_argument("--epochs1", type=int, default=12, help="approach-1 epochs (default 12)")
    ap.add_argument("--epochs3", type=int, default=12, help="approach-3 epochs (default 12)")
    ap.add_argument("--val-images", type=int, default=500, help="validation faces for the RD points (500)")
    ap.add_argument("--train-images", type=int, default=1000, help="fixed training faces (1000)")
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--tag", default="color", help="names the results (bench/results/<tag>-<machine>.*) and runs")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--run-dir", default=None, help="default runs/<tag>-<machine>")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export", metavar="NAME", default=None, help="export the model as zoo entry NAME")
    args = ap.parse_args(argv)

    from pycompgen import zoo
    from pycompgen.codec.baselines import at_equal_bytes, sweep as codec_sweep
    from pycompgen.config import Config, apply_overrides
    from pycompgen.data import load_faces
    from pycompgen.evaluation import rd
    from pycompgen.evaluation.curves import read_curves
    from pycompgen.evaluation.generalise import levers_table, train_subset, train_val_sweep
    from pycompgen.evaluation.machine import bench_header, machine_summary
    from pycompgen.evaluation.sweep import face_batch, write_json
    from pycompgen.inference import load_checkpoint_for_codec, prepare_codec
    from pycompgen.models import load_for_eval
    from pycompgen.training import run_pipeline

    bits = [int(b) for b in args.bits.split(",")]
    pre = zoo.load(args.start, stages=["step1", "approach3"])
    run_dir = Path(args.run_dir or ROOT / "runs" / f"{args.tag}-{args.machine}")
    load_start = os.getloadavg()
    log(f"{machine_summary()['cpu']}, {torch.get_num_threads()} threads; start zoo:{args.start}/step1")
    s1 = run_dir / "step1" / "best.pt"
    if not s1.is_file():
        pre.to_checkpoint("step1", s1)
    cfg = Config.from_dict(pre["approach3"].config.to_dict())
    apply_overrides(cfg, ["train.progress=false", "train.approach3_init=approach1", "train.init=null",
                          "train.epochs=null", f"model.hint_size={args.hint_size}",
                          f"model.hint_space={args.hint_space}",
                          f"model.hint_bits=[{','.join(map(str, bits))}]"] + list(args.overrides))
    cfg.data.path = str(Path(args.data).resolve())
    cfg.out = str(run_dir)
    t0 = time.perf_counter()
    for stage, epochs in (("approach1", args.epochs1), ("approach3", args.epochs3)):
        c = cfg.copy()
        c.train.epochs = epochs
        run_pipeline(c, stages=[stage], resume=args.resume)
    train_s = time.perf_counter() - t0
    curves = {s: [{k: r.get(k) for k in ("epoch", "val_ssim", "trainsub_ssim", "gap_ssim", "epoch_time_s")}
                  for r in rows] for s, rows in read_curves(run_dir, ["approach1", "approach3"]).items()}
    wall = round(sum(r["epoch_time_s"] or 0 for rs in curves.values() for r in rs), 1)

    train_all = load_faces(cfg.data.path, "train", image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir)
    train_faces = train_subset(train_all, args.train_images, seed=cfg.train.seed)
    val = load_faces(cfg.data.path, "val", image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir)
    t = time.perf_counter()
    ckpt = run_dir / "approach3" / "best.pt"
    lc = load_for_eval(ckpt, label="approach3")
    sweep_res = train_val_sweep(cfg, {"step1": load_for_eval(s1, label="step1"), "approach3": lc}, train_faces,
                                val, PSNRS, run_dir / "sweep")
    codec = load_checkpoint_for_codec(ckpt)
    xv = face_batch(val, 0, min(args.val_images, len(val))).float() / 255.0
    xt = face_batch(train_faces, 0, min(args.val_images, len(train_faces))).float() / 255.0
    points = {"Compgen + colour hint": rd.hint_points(codec, xv, bits, log=log)}
    train_points = rd.hint_points(codec, xt, bits, log=lambda m: log("train faces: " + m))
    plus = prepare_codec(zoo.load("compgen-64-plus", stages="approach3")["approach3"])
    points["compgen-64-plus (edges only)"] = [codec_points(plus, xv, "compgen-64-plus")]
    ae = zoo.entry("compgen-ae-64")
    points["compgen-ae-64 (latent)"] = [
        dict(codec_points(prepare_codec(zoo.load("compgen-ae-64", quality=q)["step1"]), xv, f"q{q}"), quality=q)
        for q in zoo.qualities(ae)]
    u8 = faces_u8(val, xv.shape[0])
    for name, qs in (("webp", list(range(0, 101, 10))), ("jpegxl", list(range(5, 100, 10)))):
        points[name] = codec_sweep(u8, name, qs)
        log(f"{name}: {len(qs)} qualities measured")
    equal = {p["codec"]: {c: at_equal_bytes(points[c], p["bpp"]) for c in ("webp", "jpegxl")}
             for p in points["Compgen + colour hint"]}
    eval_s = time.perf_counter() - t

    res_dir = Path(args.results)
    fig_dir = res_dir / f"{args.tag}-{args.machine}"
    rd.plot(points, fig_dir)
    grid = synthetic_grid(codec, bits, fig_dir / "synthetic.png")
    rel = lambda p: os.path.relpath(p, ROOT)  # noqa: E731
    best = [p for p in points["Compgen + colour hint"] if p["bpp"] <= GOAL["bpp"]]
    report = {
        **bench_header("color_hint", args.machine, rel(Path(__file__)), load_start),
        "budget": {"start": f"zoo:{args.start}/step1 (f, g frozen)", "approach1_epochs": args.epochs1,
                   "approach3_epochs": args.epochs3, "hint_size": args.hint_size, "hint_bits": bits,
                   "hint_space": args.hint_space,
                   "train_psnr_range_db": cfg.train.psnr_range, "selection": "best.pt by val_ssim",
                   "wall_s_epochs": wall},
        "faces": {"rd_val": int(xv.shape[0]), "rd_train": int(xt.shape[0]), "sweep_train": len(train_faces),
                  "sweep_val": sweep_res["val"]["n_images"]},
        "points": points, "train_points": train_points, "equal_bytes": equal,
        "sweep": {"train": sweep_res["train"]["approaches"], "val": sweep_res["val"]["approaches"],
                  "gap": sweep_res["gap"]},
        "goal": {**GOAL, "met": any(p["ssim"] >= GOAL["ssim"] for p in best),
                 "best_at_or_below_bpp": max(best, key=lambda p: p["ssim"]) if best else None},
        "curves": curves, "figures": {"rd": f"{args.tag}-{args.machine}/rd_ssim.png", "synthetic": grid},
        "wall_s": {"train": round(train_s, 1), "eval": round(eval_s, 1)},
    }
    write_json(res_dir / f"{args.tag}-{args.machine}.json", report)
    md = markdown(report, levers_table({"colour hint": sweep_res}, PSNRS))
    (res_dir / f"{args.tag}-{args.machine}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if args.export:
        export_entry(run_dir, args.export, report, sweep_res, cfg, len(train_all), len(val))
    return 0


@torch.no_grad()
def synthetic_grid(codec, bits, path: Path) -> str:
    """Synthetic faces (no dataset pixels): original, edge map, hint (upsampled), x̂ at every bit depth."""
    import torch.nn.functional as F
    from pycompgen.codec.hint import quantised_thumbnail
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.evaluation import figures
    from pycompgen.inference import compress_batch, decompress_batch
    from pycompgen.ops import canny
    x = to_float01(synthetic_faces(6, codec.image_size, seed=3))
    d = codec.config.data
    size = codec.models["h"].hint_size
    own = codec.models["h"].hint_bits
    cols = [("face x", x), ("edge map z", figures.edge_map_vis(canny(x, d.canny_low, d.canny_high)))]
    try:
        for b in bits:
            codec.models["h"].hint_bits = b
            hint = quantised_thumbnail(x, size, b, codec.models["h"].hint_space)
            files = compress_batch(codec, x, "edges+hint")
            out = torch.cat([r[0] for r in decompress_batch(codec, [(str(i), f) for i, f in enumerate(files)])])
            cols += [(f"hint {b} bits", F.interpolate(hint, size=x.shape[-2:], mode="nearest")),
                     (f"x_hat ({np.mean([len(f) for f in files]):.0f} B)", out)]
    finally:
        codec.models["h"].hint_bits = own
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.write_png(path, figures.compose_grid(cols, title="Compgen + colour hint on synthetic faces"))
    return os.path.relpath(path, path.parent.parent)


def _space_words(space: str) -> str:
    return "RGB" if space == "rgb" else "YCoCg 4:2:0 (luma; chroma at half size, one bit fewer)"


def _analog_values(cfg) -> str:
    s = cfg.model.hint_size
    return f"3x{s}x{s}" if cfg.model.hint_space == "rgb" else f"{s}x{s} + 2x{s // 2}x{s // 2}"


def markdown(r: dict, gap_lines: list) -> list:
    pts = r["points"]
    b = r["budget"]
    md = [f"# Compgen with a colour hint ({r['machine']}, {r['date_utc']})", "",
          f"Command: `{r['command']}`; {r['cpu']}, load at start {r['load_average']['start']}, end "
          f"{r['load_average']['end']}. Training: {b['start']}, approach 1 {b['approach1_epochs']} + approach 3 "
          f"{b['approach3_epochs']} epochs ({b['wall_s_epochs'] / 60:.1f} min of epochs), hint "
          f"{b['hint_size']}x{b['hint_size']} {_space_words(b.get('hint_space', 'rgb'))} at {b['hint_bits']} bits "
          f"(drawn per image), channel PSNR drawn "
          f"from {b['train_psnr_range_db']} dB; {b['selection']}.", "",
          f"## Real files on {r['faces']['rd_val']} validation faces (one `.pcg` per face, header included)", "",
          "| codec | setting | bpp (file) | bpp (payload) | SSIM | MS-SSIM | PSNR | SSIM on training faces |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    train = {p["hint_bits"]: p for p in r["train_points"]}
    for name, ps in pts.items():
        for p in sorted(ps, key=lambda p: p["bpp"]):
            setting = (f"{p['hint_bits']} bits" if "hint_bits" in p else p.get("quality", "default"))
            tr = f"{train[p['hint_bits']]['ssim']:.4f}" if "hint_bits" in p else ""
            md.append(f"| {name} | {setting} | {p['bpp']:.3f} | {p.get('bpp_payload', p['bpp']):.3f} | "
                      f"{p['ssim']:.4f} | {p['ms_ssim']:.4f} | {p['psnr']:.2f} | {tr} |")
    g = r["goal"]
    bb = g["best_at_or_below_bpp"]
    md += ["", f"Goal: SSIM >= {g['ssim']} at <= {g['bpp']} bpp: **{'met' if g['met'] else 'not met'}**" +
           (f" (best at or below {g['bpp']} bpp: {bb['codec']}, {bb['bpp']:.3f} bpp, SSIM {bb['ssim']:.4f})"
            if bb else ""), "", "## At equal bytes", "",
           "| colour-hint point | bpp | SSIM | WebP SSIM | JPEG XL SSIM |", "|---|---:|---:|---:|---:|"]
    for p in pts["Compgen + colour hint"]:
        e = r["equal_bytes"][p["codec"]]
        cell = lambda c: f"{e[c]['ssim']:.4f}" if e[c]["in_range"] else "not reachable"  # noqa: E731
        md.append(f"| {p['codec']} | {p['bpp']:.3f} | {p['ssim']:.4f} | {cell('webp')} | {cell('jpegxl')} |")
    md += ["", f"## Channel sweep (peak PSNR), {r['faces']['sweep_train']} training faces beside "
               f"{r['faces']['sweep_val']} validation faces, hint at {max(b['hint_bits'])} bits", "", *gap_lines, "",
           f"![rate-distortion]({r['figures']['rd']})", "",
           f"![synthetic faces]({r['figures']['synthetic']})"]
    return md


def export_entry(run_dir: Path, name: str, report: dict, sweep_res: dict, cfg, n_train: int, n_val: int) -> None:
    """step 1 + approach 3 as zoo entry ``name``, one rate point per hint bit depth (one shared weights file)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from zoo_export import export_bench_run
    from pycompgen.zoo.core import read_manifest, write_manifest, zoo_dir
    data = {"path": cfg.data.path, "train_images": n_train, "val_images": n_val}
    bits = cfg.model.hint_bits
    desc = (f"Compgen with a colour hint (beyond the paper): edge map + {cfg.model.hint_size}x{cfg.model.hint_size} "
            f"{_space_words(cfg.model.hint_space)} thumbnail at {min(bits)}-{max(bits)} bits in one .pcg file, "
            f"from compgen-64-plus's step 1 and "
            f"recipe")
    export_bench_run(run_dir, name, desc, report, sweep_res, data, report["curves"],
                     report["budget"]["wall_s_epochs"])
    man = read_manifest()
    e = man["entries"][name]
    a3 = e["stages"]["approach3"]
    pts = sorted(report["points"]["Compgen + colour hint"], key=lambda p: p["bpp"])
    train = {p["hint_bits"]: p for p in report["train_points"]}
    keep = ("n", "bytes_mean", "bpp", "bpp_payload", "ssim", "ms_ssim", "psnr")
    e["rate_points"] = [{"quality": q, "stage": "approach3", **a3, "hint_bits": p["hint_bits"],
                         **{k: round(p[k], 5) if isinstance(p[k], float) else p[k] for k in keep},
                         "train_ssim": round(train[p["hint_bits"]]["ssim"], 5)} for q, p in enumerate(pts, 1)]
    fit = [p for p in e["rate_points"] if p["bpp"] <= GOAL["bpp"]] or e["rate_points"][:1]
    best = max(p["ssim"] for p in fit)  # default: the cheapest point within 0.005 SSIM of the best one that fits
    e["default_quality"] = min(p["quality"] for p in fit if p["ssim"] >= best - 0.005)
    e["stages"]["approach3"] = {**a3, "hint_bits": e["rate_points"][e["default_quality"] - 1]["hint_bits"]}
    e["metrics"]["rate_points"] = ", ".join(f"q{p['quality']} {p['bpp']:.2f} bpp SSIM {p['ssim']:.3f}"
                                            for p in e["rate_points"])
    write_manifest(man)
    rows = ["", "## Rate points (`--quality`, real files on "
                f"{report['faces']['rd_val']} validation faces, header included)", "",
            "| quality | hint bits | bpp | SSIM | PSNR | SSIM on training faces |", "|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {p['quality']} | {p['hint_bits']} | {p['bpp']:.3f} | {p['ssim']:.4f} | {p['psnr']:.2f} | "
             f"{p['train_ssim']:.4f} |" for p in e["rate_points"]]
    rows += ["", f"Default quality {e['default_quality']}. Use: `pycompgen compress --pretrained {name} --quality Q "
                 f"faces/ -o out/`, then `pycompgen decompress out/*.pcg -o decoded/`. Over a noisy channel the "
                 f"hint travels as {_analog_values(cfg)} analog values beside the edge map "
                 f"(`--psnr` adds the same noise to both). Measured by `{report['command']}`."]
    card = zoo_dir() / e["card"]
    card.write_text(card.read_text().rstrip("\n") + "\n" + "\n".join(rows) + "\n")
    log(f"exported {name}: rate points {e['metrics']['rate_points']}")


if __name__ == "__main__":
    sys.exit(main())
