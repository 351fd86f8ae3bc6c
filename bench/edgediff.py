#!/usr/bin/env python
"""Edge-guided diffusion compression (issue 11, paper 002) on faces: train the three stages within an epoch budget
(resumable), then measure on validation faces.

    python bench/edgediff.py --data ../shared/data/celeba                  # train what is missing, then measure
    python bench/edgediff.py --data ../shared/data/celeba --eval-only      # measure the models in --run-dir
    python bench/edgediff.py --tiny --out-dir /tmp/edb --run-dir /tmp/edr  # smoke test (synthetic, seconds)

Training: ``run_pipeline`` (plain loop, this machine) of stages vae -> een -> denoiser into RUN_DIR/<stage>/,
``--epochs-*`` epochs each (a budget, stated in the results; the paper used pretrained Stable Diffusion and
ControlNet at 512x512, here everything is trained from scratch at 64x64). Re-running the command resumes.

Measurement (validation partition, ``--n-val`` faces):
- ablation per bit depth: W/O (VAE + quantisation), SDC (unconditional denoising: zero edges), full (EEN edges):
  real bpp (one ``.pcg`` file per face, with and without the header), PSNR, SSIM, MS-SSIM, and the same on the face
  region (``pycompgen.evaluation.masks.face_ellipse_mask``: SSIM/MS-SSIM of masked images, PSNR over the mask);
- quality vs share of latent lost (rectangles up to F of each side, R regions) for zeros / completion without
  edges / completion with EEN edges / OpenCV inpainting of the decoded image;
- EEN edge-F1 against the true Canny map per bit depth;
- wall time per image: encoding (VAE + quantisation + range coding) and decoding per mode (DDIM steps stated).
Writes bench/results/edgediff-<machine>.json/.md and edgediff-<machine>/*.png (plots only; face grids go to
RUN_DIR/grids/).
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
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

LOSS_FRACS = [0.0, 1 / 16, 1 / 8]          # max side of each lost rectangle (fraction of the latent side)
LOSS_REGIONS = [1, 2, 4, 8]


def log(msg):
    print(f"[edgediff] {msg} (load average {os.getloadavg()[0]:.2f})", flush=True)


def make_cfg(args):
    from pycompgen.config import load_config
    if args.tiny:
        over = [f"out={args.run_dir}", "train.epochs=1"]
        return load_config(str(ROOT / "configs" / "edgediff-tiny.yaml"), over + list(args.set))
    over = ["model.name=edgediff", f"out={args.run_dir}", "data.image_size=64", f"train.batch_size={args.batch}",
            "train.device=" + args.device]
    if args.data:
        over.append(f"data.path={Path(args.data).resolve()}")
    return load_config(None, over + list(args.set))


def train(cfg, args):
    """One resumable pipeline run (vae -> een -> denoiser); each stage gets its ``--epochs-*`` budget."""
    from pycompgen.training import pipeline as P
    budget = {"vae": args.epochs_vae, "een": args.epochs_een, "denoiser": args.epochs_denoiser}
    if args.tiny:
        P.run_pipeline(cfg, resume=True, verbose=False)
        return {k: cfg.train.epochs for k in budget}
    orig_local, orig_done = P.train_local, P.stage_done

    def done(path, c):                     # called first for each stage with the copy train_local gets
        c.train.epochs = budget[c.train.stage]
        return orig_done(path, c)

    def with_budget(c, *a, **k):
        c.train.epochs = budget[c.train.stage]
        log(f"stage {c.train.stage}: {c.train.epochs} epochs")
        return orig_local(c, *a, **k)
    P.train_local, P.stage_done = with_budget, done
    try:
        P.run_pipeline(cfg, resume=True, verbose=True)
    finally:
        P.train_local, P.stage_done = orig_local, orig_done
    return budget


def load_models(cfg, run_dir: Path, een: str | None = None):
    """Every network from the stage that trains it: VAE, entropy models and denoiser from RUN_DIR/denoiser, the EEN
    from ``een`` (default RUN_DIR/een/best.pt). The denoiser's checkpoint carries a frozen copy of the EEN it was
    handed, which its training never uses (it is conditioned on true Canny edges), so an EEN trained again later is
    taken from its own stage. Returns (networks, {role: {"path", "epoch"}})."""
    from pycompgen.systems import build_networks
    from pycompgen.systems.base import load_net
    from pycompgen.training import load_checkpoint, stage_checkpoint

    paths = {"denoiser": stage_checkpoint(run_dir / "denoiser") or run_dir / "denoiser" / "last.pt"}
    e = Path(een) if een else stage_checkpoint(run_dir / "een")
    if e is not None and e.is_file():
        paths["een"] = e
    nets = build_networks(cfg)
    used = {}
    for role, path in paths.items():
        ck = load_checkpoint(path, expect_model="edgediff")
        for k, sd in ck["models"].items():
            if (role == "een") == (k == "een"):
                load_net(k, nets[k], sd, str(path))  # one line naming the network if the widths differ
        used[role] = {"path": str(path), "epoch": int(ck["epoch"]),
                      **({ck["best_metric"]: ck["best_value"]} if "best_metric" in ck else {})}
    for m in nets.values():
        m.eval()
    return nets, used


def metrics(x, x_hat, mask):
    from pycompgen import ssim
    from pycompgen.metrics import ms_ssim, psnr
    from pycompgen.evaluation.masks import table1_metrics
    t = table1_metrics(x, x_hat, mask, lp_mean="mask")["mean"]
    return {"psnr": float(psnr(x_hat, x).mean()), "ssim": float(ssim(x_hat, x, reduction="none").mean()),
            "ms_ssim": float(ms_ssim(x_hat, x).mean()),
            "face_psnr": float(-10 * np.log10(max(t["l2"], 1e-10))), "face_ssim": 1 - t["1-ssim"],
            "face_ms_ssim": 1 - t["1-ms_ssim"]}


@torch.no_grad()
def evaluate(cfg, models, x, args):
    from pycompgen.evaluation.masks import face_ellipse_mask
    from pycompgen.systems.edgediff import receiver as R
    from pycompgen.systems.edgediff.system import canny_target
    c = cfg.edgediff
    mask = face_ellipse_mask(x.shape[-1])
    n, hw = x.shape[0], x.shape[-1] * x.shape[-2]
    res = {"ablation": [], "completion": [], "edge_f1": [], "timing": {}}
    grids = {}
    target = canny_target(x, cfg)
    for bits in c.bits:
        files = [R.compress(models, c, x[i:i + 1], bits) for i in range(n)]
        from pycompgen.codec.container import header_size
        nbytes = np.array([len(f) for f in files])
        hdr = np.array([header_size(f) for f in files])
        y_hat = torch.cat([R.decompress(models, c, f)[0] for f in files])
        edges = R.een_edges(models, y_hat, x.shape[-1])
        res["edge_f1"].append({"bits": bits, "bpp": float((8 * nbytes / hw).mean()),
                               "edge_f1": float(R.edge_f1(edges, target).mean())})
        for mode in ("wo", "sdc", "full"):
            x_hat = R.receive(models, c, y_hat, bits, mode, steps=args.steps, seed=0)
            grids[f"{mode}_{bits}b"] = x_hat[:8]
            res["ablation"].append({"bits": bits, "mode": {"wo": "W/O", "sdc": "SDC", "full": "full"}[mode],
                                    "bpp": float((8 * nbytes / hw).mean()),
                                    "bpp_payload": float((8 * (nbytes - hdr) / hw).mean()),
                                    "steps": 0 if mode == "wo" else args.steps, **metrics(x, x_hat, mask)})
            log(f"{bits} bits {mode}: {res['ablation'][-1]}")
    bits = c.eval_bits
    y_hat, _ = R.quantise(models, c, R.encode(models, c, x), bits)
    for frac in LOSS_FRACS:
        for regions in (LOSS_REGIONS if frac > 0 else [0]):
            known = R.drop_regions(y_hat.shape, frac if frac > 0 else 0.01, regions, seed=1)
            share = float((~known).float().mean())
            zeros = R.complete(models, c, y_hat, known, "zeros")
            outs = {"zeros": R.decode(models, zeros),
                    "complete_no_edges": R.decode(models, R.complete(models, c, y_hat, known, "sdc",
                                                                     steps=args.complete_steps, seed=0)),
                    "complete_edges": R.decode(models, R.complete(models, c, y_hat, known, "full",
                                                                  steps=args.complete_steps, seed=0))}
            outs["pixel_inpaint"] = R.pixel_inpaint(outs["zeros"], known)
            for k, v in outs.items():
                m = metrics(x, v, mask)
                res["completion"].append({"max_frac": frac, "regions": regions, "share_lost": share, "strategy": k,
                                          "psnr": m["psnr"], "ssim": m["ssim"], "ms_ssim": m["ms_ssim"]})
            if frac == LOSS_FRACS[-1] and regions == LOSS_REGIONS[1]:
                grids.update({f"lost_{k}": v[:8] for k, v in outs.items()})
            log(f"lost {frac:.3f}x{regions}: share {share:.3f}")
    # wall time per image (batch of one, median of a few)
    xi = x[:1]

    def t_of(fn, reps=3):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))
    f1 = R.compress(models, c, xi, bits)
    res["timing"]["encode_s"] = t_of(lambda: R.compress(models, c, xi, bits))
    for mode in ("wo", "sdc", "full"):
        res["timing"][f"decode_{mode}_s"] = t_of(lambda: R.receive(models, c, R.decompress(models, c, f1)[0], bits,
                                                                    mode, steps=args.steps))
    res["timing"]["steps"] = args.steps
    res["timing"]["complete_steps"] = args.complete_steps
    return res, grids


def plot(res, out_dir: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = []
    for metric in ("psnr", "ssim", "ms_ssim"):
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for mode in ("W/O", "SDC", "full"):
            pts = sorted((r["bpp"], r[metric]) for r in res["ablation"] if r["mode"] == mode)
            ax.plot(*zip(*pts), "o-", label=mode)
        ax.set_xlabel("bpp (file)"), ax.set_ylabel(metric), ax.legend(), ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out_dir / f"ablation_{metric}.png"
        fig.savefig(p, dpi=120), plt.close(fig)
        figs.append(p)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for s in ("zeros", "complete_no_edges", "complete_edges", "pixel_inpaint"):
        pts = sorted((r["share_lost"], r["psnr"]) for r in res["completion"] if r["strategy"] == s)
        ax.plot(*zip(*pts), "o-", label=s)
    ax.set_xlabel("share of latent lost"), ax.set_ylabel("PSNR (dB)"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "completion_psnr.png"
    fig.savefig(p, dpi=120), plt.close(fig)
    return figs + [p]


def rd_overlay(res, n_val: int, machine: str, out_dir: Path, note=print) -> list:
    """The system's points on the project's rate-distortion plot: bench/rd.py's points of the same machine
    (rd-<machine>.json) plus W/O and full at each bit depth, when both were measured on the same first ``n_val``
    validation faces; otherwise nothing (a note says why)."""
    from rd import plot as rd_plot
    src = ROOT / "bench" / "results" / f"rd-{machine}.json"
    if not src.is_file():
        note(f"no {src}: edgediff not overlaid on the rate-distortion plot")
        return []
    rd = json.loads(src.read_text())
    if int(rd.get("val_images", -1)) != n_val:
        note(f"{src} measured {rd.get('val_images')} faces, this run {n_val}: not overlaid (use --n-val "
             f"{rd.get('val_images')})")
        return []
    points = dict(rd["points"])
    for mode, label in (("W/O", "edge-guided diffusion: VAE + quantisation (W/O)"),
                        ("full", "edge-guided diffusion: full (EEN edges + ControlNet denoising)")):
        points[label] = [{**a, "codec": label} for a in res["ablation"] if a["mode"] == mode]
    return rd_plot(points, out_dir / "rd")


def save_grids(grids, x, run_dir: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [x[:8]] + list(grids.values())
    img = torch.cat([torch.cat(list(r), -1) for r in rows], -2).permute(1, 2, 0).cpu().numpy()
    (run_dir / "grids").mkdir(parents=True, exist_ok=True)
    plt.imsave(run_dir / "grids" / "edgediff.png", img.clip(0, 1))
    (run_dir / "grids" / "rows.txt").write_text("\n".join(["original", *grids]) + "\n")


def markdown(doc) -> str:
    r = doc["results"]
    L = [f"# Edge-guided diffusion compression on {doc['machine']['name']}", "",
         f"Budget: {doc['budget']} epochs; {doc['n_val']} validation faces; DDIM steps {r['timing']['steps']} "
         f"(completion {r['timing']['complete_steps']}). Command: `{doc['command']}`", "",
         "| bits | mode | bpp | PSNR | SSIM | MS-SSIM | face PSNR | face SSIM | face MS-SSIM |", "|---|---|---|---|---|---|---|---|---|"]
    for a in r["ablation"]:
        L.append(f"| {a['bits']} | {a['mode']} | {a['bpp']:.3f} | {a['psnr']:.2f} | {a['ssim']:.4f} | "
                 f"{a['ms_ssim']:.4f} | {a['face_psnr']:.2f} | {a['face_ssim']:.4f} | {a['face_ms_ssim']:.4f} |")
    L += ["", "| max side fraction | regions | share lost | strategy | PSNR | SSIM | MS-SSIM |", "|---|---|---|---|---|---|---|"]
    for a in r["completion"]:
        L.append(f"| {a['max_frac']:.4f} | {a['regions']} | {a['share_lost']:.3f} | {a['strategy']} | "
                 f"{a['psnr']:.2f} | {a['ssim']:.4f} | {a['ms_ssim']:.4f} |")
    L += ["", "| bits | bpp | EEN edge-F1 |", "|---|---|---|"]
    L += [f"| {a['bits']} | {a['bpp']:.3f} | {a['edge_f1']:.3f} |" for a in r["edge_f1"]]
    L += ["", "Wall time per image (s): " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in r["timing"].items()), ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="CelebA folder (default: synthetic faces)")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "edgediff"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--machine", default=f"cpu{os.cpu_count()}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny config on synthetic faces (smoke test)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="train what is missing, then stop")
    ap.add_argument("--een", default=None, help="EEN checkpoint to measure with (default RUN_DIR/een/best.pt)")
    ap.add_argument("--epochs-vae", type=int, default=10)
    ap.add_argument("--epochs-een", type=int, default=5)
    ap.add_argument("--epochs-denoiser", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the receiver")
    ap.add_argument("--complete-steps", type=int, default=25, help="DDIM steps of the completion")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n_val, args.steps, args.complete_steps = min(args.n_val, 8), min(args.steps, 2), min(args.complete_steps, 3)
    torch.manual_seed(0)
    cfg = make_cfg(args)
    run_dir = Path(args.run_dir)
    budget = None if args.eval_only else train(cfg, args)
    if args.train_only:
        return 0
    models, used = load_models(cfg, run_dir, args.een)
    log("networks from " + ", ".join(f"{k} {v['path']} (epoch {v['epoch']})" for k, v in used.items()))
    from pycompgen.data import load_faces
    val = load_faces(str(Path(args.data).resolve()) if args.data else None, "val", cfg.data.image_size,
                     **({} if args.data else {"synthetic_count": max(args.n_val, 8)}))
    x = torch.from_numpy(np.asarray(val.images[:args.n_val])).permute(0, 3, 1, 2).float().div(255)
    log(f"measuring on {x.shape[0]} faces")
    res, grids = evaluate(cfg, models, x, args)
    save_grids(grids, x, run_dir)
    name = f"edgediff-{args.machine}"
    out = Path(args.out_dir)
    figs = plot(res, out / name)
    figs += [Path(f) for f in rd_overlay(res, int(x.shape[0]), args.machine, out / name, note=log)]
    doc = {"command": shlex.join(sys.argv), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "machine": {"name": args.machine, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__},
           "budget": budget or {"eval_only": True}, "checkpoints": used, "n_val": int(x.shape[0]),
           "data": args.data or "synthetic",
           "config": cfg.to_dict(), "figures": [str(p.relative_to(out)) for p in figs], "results": res}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=1))
    (out / f"{name}.md").write_text(markdown(doc))
    log(f"wrote {out / name}.json, .md and {len(figs)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
