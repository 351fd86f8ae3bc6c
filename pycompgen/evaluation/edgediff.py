"""Measuring edge-guided diffusion compression (paper 002, bench/edgediff.py) on faces: the networks of a run, the
ablation per bit depth on real files (W/O: VAE + quantisation; SDC: unconditional denoising; full: EEN edges;
oracle: the original's Canny edges, an upper bound no receiver has) with the headroom decode(y) − decode(ŷ), the
quality vs share of latent lost (completion without edges, with the EEN's, with sender-side edges whose bits are
counted, with the original's Canny map as the bound; PSNR of the whole image and of the lost pixels), the EEN's
edge-F1, wall times per image; the plots (also on the project's RD plot, ``pycompgen.evaluation.rd``), the face
grids and the markdown report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

LOSS_FRACS = [0.0, 1 / 16, 1 / 8]          # max side of each lost rectangle (fraction of the latent side)
LOSS_REGIONS = [1, 2, 4, 8]
MODE_LABELS = {"wo": "W/O", "sdc": "SDC", "full": "full", "oracle": "oracle edges"}
STRATEGIES = ("zeros", "complete_no_edges", "complete_edges", "complete_sender_edges", "complete_oracle_edges",
              "pixel_inpaint", "true_latent")
FILL_STRATEGIES = ("fill_no_edges", "fill_sender_edges")  # with a trained completer (it reads edges in the holes
                                                          # only, where sender and oracle edges are the same map)


def load_models(cfg, run_dir: Path, een: str | None = None):
    """Every network from the last stage that holds it: VAE, entropy models, denoiser (and the completer) from
    RUN_DIR/completer, else RUN_DIR/entropy (the entropy models fitted again), else RUN_DIR/denoiser; the EEN from
    ``een`` (default RUN_DIR/een/best.pt: the same weights as the later stages' frozen copy unless the EEN was
    trained again after them), else the last stage's copy.
    Returns (networks, {role: {"path", "epoch"}})."""
    from pycompgen.inference.edgediff import run_checkpoint
    from pycompgen.systems import build_networks
    from pycompgen.systems.base import load_net
    from pycompgen.training import load_checkpoint, stage_checkpoint

    run_dir = Path(run_dir)
    last, path = run_checkpoint(run_dir)
    paths = {last: path}
    e = Path(een) if een else stage_checkpoint(run_dir / "een")
    if e is not None and e.is_file():
        paths["een"] = e
    nets = build_networks(cfg)
    used = {}
    for role, path in paths.items():
        ck = load_checkpoint(path, expect_model="edgediff")
        for k, sd in ck["models"].items():
            # the EEN from its own checkpoint when there is one, else the last stage's frozen copy
            if (k == "een") == (role == "een") or (k == "een" and "een" not in paths):
                load_net(k, nets[k], sd, str(path))  # one line naming the network if the widths differ
        used[role] = {"path": str(path), "epoch": int(ck["epoch"]),
                      **({ck["best_metric"]: ck["best_value"]} if "best_metric" in ck else {})}
    for m in nets.values():
        m.eval()
    return nets, used


def metrics(x, x_hat, mask) -> dict:
    """PSNR, SSIM, MS-SSIM of the whole images and on the face region (``mask``: SSIM/MS-SSIM of masked images,
    PSNR over the mask)."""
    from pycompgen.ops import ssim
    from pycompgen.metrics import ms_ssim, psnr
    from pycompgen.evaluation.masks import table1_metrics
    t = table1_metrics(x, x_hat, mask, lp_mean="mask")["mean"]
    return {"psnr": float(psnr(x_hat, x).mean()), "ssim": float(ssim(x_hat, x, reduction="none").mean()),
            "ms_ssim": float(ms_ssim(x_hat, x).mean()),
            "face_psnr": float(-10 * np.log10(max(t["l2"], 1e-10))), "face_ssim": 1 - t["1-ssim"],
            "face_ms_ssim": 1 - t["1-ms_ssim"]}


def _median_s(fn, reps: int = 3) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


@torch.no_grad()
def evaluate(cfg, models, x, steps: int, complete_steps: int, log=print, completion: str = "all",
             complete_start: float = 1.0):
    """The measurements on faces ``x`` (N,3,H,W in [0,1]) with ``steps`` DDIM steps of the receiver and
    ``complete_steps`` of the completion, started at ``complete_start``·T (``receiver.complete``). Returns
    ({"ablation", "completion", "edge_f1", "timing", "complete_start"}, {row: the first
    8 reconstructions} for ``save_grids``)."""
    from pycompgen.codec.container import header_size
    from pycompgen.evaluation.masks import face_ellipse_mask
    from pycompgen.systems.edgediff import receiver as R
    from pycompgen.systems.edgediff.system import canny_target
    c = cfg.edgediff
    mask = face_ellipse_mask(x.shape[-1])
    n, hw = x.shape[0], x.shape[-1] * x.shape[-2]
    res = {"ablation": [], "completion": [], "edge_f1": [], "timing": {}, "complete_start": complete_start}
    grids = {}
    target = canny_target(x, cfg)
    clean = metrics(x, R.decode(models, R.encode(models, c, x)), mask)  # decode(y): no quantisation at all
    res["clean"] = clean
    grids["clean"] = R.decode(models, R.encode(models, c, x[:8]))
    for bits in c.bits:
        files = [R.compress(models, c, x[i:i + 1], bits) for i in range(n)]
        nbytes = np.array([len(f) for f in files])
        hdr = np.array([header_size(f) for f in files])
        y_hat = torch.cat([R.decompress(models, c, f)[0] for f in files])
        edges = R.een_edges(models, y_hat, x.shape[-1])
        res["edge_f1"].append({"bits": bits, "bpp": float((8 * nbytes / hw).mean()),
                               "edge_f1": float(R.edge_f1(edges, target).mean())})
        for mode in ("wo", "sdc", "full", "oracle"):
            x_hat = torch.cat([R.receive(models, c, y_hat[a:a + 100], bits, "full" if mode == "oracle" else mode,
                                         steps=steps, seed=0, edges=target[a:a + 100] if mode == "oracle" else None)
                               for a in range(0, n, 100)])
            if bits == min(c.bits) or mode != "oracle":
                grids[f"{mode}_{bits}b"] = x_hat[:8]
            row = {"bits": bits, "mode": MODE_LABELS[mode], "bpp": float((8 * nbytes / hw).mean()),
                   "bpp_payload": float((8 * (nbytes - hdr) / hw).mean()),
                   "steps": 0 if mode == "wo" else len(R.receiver_timesteps(c, bits, steps)[1]),
                   "start_timestep": -1 if mode == "wo" else R.start_timestep(c, bits, steps),
                   **metrics(x, x_hat, mask)}
            if mode == "wo":
                row["headroom_psnr"] = clean["psnr"] - row["psnr"]
                row["headroom_ssim"] = clean["ssim"] - row["ssim"]
            res["ablation"].append(row)
            log(f"{bits} bits {mode}: {row}")
    bits = c.eval_bits
    y = R.encode(models, c, x)
    y_hat, _ = R.quantise(models, c, y, bits)
    settings = [(f, r) for f in LOSS_FRACS for r in (LOSS_REGIONS if f > 0 else [0])]
    if completion == "largest":  # the operating point only: 1/8 of each side, 8 regions
        settings = [(LOSS_FRACS[-1], LOSS_REGIONS[-1])]
    elif completion != "all":
        raise ValueError(f"completion must be 'all' or 'largest', got {completion!r}")
    for frac, regions in settings:
        known = R.drop_regions(y_hat.shape, frac if frac > 0 else 0.01, regions, seed=1)
        share = float((~known).float().mean())
        zeros = R.complete(models, c, y_hat, known, "zeros")
        sent, sizes = R.sender_edges(models, c, y_hat, known, x, lambda im: canny_target(im, cfg))
        runs = {"complete_no_edges": ("sdc", None), "complete_edges": ("full", None),
                "complete_sender_edges": ("full", sent), "complete_oracle_edges": ("full", target)}
        outs = {"zeros": R.decode(models, zeros),
                **{k: R.decode(models, R.complete(models, c, y_hat, known, mode, steps=complete_steps, seed=0,
                                                  edges=e, start=complete_start, method="diffusion"))
                   for k, (mode, e) in runs.items()}}
        outs["pixel_inpaint"] = R.pixel_inpaint(outs["zeros"], known)
        # a bound no receiver reaches: the true (unquantised) latent in the lost cells
        outs["true_latent"] = R.decode(models, torch.where(known.expand_as(y_hat), y_hat, y))
        if R.filler_trained(models):
            for k, e in (("fill_no_edges", None), ("fill_sender_edges", sent)):
                outs[k] = R.decode(models, R.fill(models, c, y_hat, known, bits, e))
        lost = R.lost_pixels(known, x.shape[-1]).expand_as(x)
        for k, v in outs.items():
            m = metrics(x, v, mask)
            extra = float(8 * np.mean(sizes) / hw) if k.endswith("_sender_edges") else 0.0
            row = {"max_frac": frac, "regions": regions, "share_lost": share, "strategy": k, "psnr": m["psnr"],
                   "ssim": m["ssim"], "ms_ssim": m["ms_ssim"], "extra_bpp": extra}
            if bool(lost.any()):   # no lost pixels (the lossless setting): no such figure
                lost_mse = float((((v - x) ** 2) * lost).sum() / lost.sum())
                row["lost_psnr"] = -10 * float(np.log10(max(lost_mse, 1e-10)))
            res["completion"].append(row)
        if frac == LOSS_FRACS[-1] and regions == (LOSS_REGIONS[1] if len(settings) > 1 else regions):
            grids.update({f"lost_{k}": v[:8] for k, v in outs.items()})
        log(f"lost {frac:.3f}x{regions}: share {share:.3f}")
    # wall time per image (batch of one, median of a few)
    xi = x[:1]
    f1 = R.compress(models, c, xi, bits)
    res["timing"]["encode_s"] = _median_s(lambda: R.compress(models, c, xi, bits))
    for mode in ("wo", "sdc", "full"):
        res["timing"][f"decode_{mode}_s"] = _median_s(lambda: R.receive(models, c, R.decompress(models, c, f1)[0],
                                                                         bits, mode, steps=steps))
    kn1 = R.drop_regions((1, *y_hat.shape[1:]), LOSS_FRACS[-1], LOSS_REGIONS[-1], seed=1)
    yi = y_hat[:1]
    res["timing"]["complete_diffusion_s"] = _median_s(lambda: R.complete(
        models, c, yi, kn1, "sdc", steps=complete_steps, start=complete_start, method="diffusion"))
    if R.filler_trained(models):
        res["timing"]["complete_fill_s"] = _median_s(lambda: R.fill(models, c, yi, kn1, bits))
    res["timing"]["steps"] = steps
    res["timing"]["complete_steps"] = complete_steps
    return res, grids


def plot(res, out_dir: Path) -> list:
    """ablation_{psnr,ssim,ms_ssim}.png (each mode against bpp) and completion_psnr.png (each strategy against the
    share of latent lost) in ``out_dir``; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = []
    for metric in ("psnr", "ssim", "ms_ssim"):
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for mode in ("W/O", "SDC", "full", "oracle edges"):
            pts = sorted((r["bpp"], r[metric]) for r in res["ablation"] if r["mode"] == mode)
            ax.plot(*zip(*pts), "o-", label=mode)
        ax.set_xlabel("bpp (file)"), ax.set_ylabel(metric), ax.legend(), ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out_dir / f"ablation_{metric}.png"
        fig.savefig(p, dpi=120), plt.close(fig)
        figs.append(p)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for s in STRATEGIES + FILL_STRATEGIES:
        pts = sorted((r["share_lost"], r["psnr"]) for r in res["completion"] if r["strategy"] == s)
        if pts:
            ax.plot(*zip(*pts), "o-", label=s)
    ax.set_xlabel("share of latent lost"), ax.set_ylabel("PSNR (dB)"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "completion_psnr.png"
    fig.savefig(p, dpi=120), plt.close(fig)
    return figs + [p]


def rd_overlay(res, n_val: int, rd_json: Path, out_dir: Path, note=print) -> list:
    """The system's points on the project's rate-distortion plot: the points of ``rd_json`` (bench/rd.py's
    rd-<machine>.json) plus W/O and full at each bit depth, when both were measured on the same first ``n_val``
    validation faces; otherwise nothing (a note says why). The plots go to ``out_dir``/rd."""
    from pycompgen.evaluation.rd import plot as rd_plot
    src = Path(rd_json)
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
    return rd_plot(points, Path(out_dir) / "rd")


def save_grids(grids, x, run_dir: Path) -> None:
    """RUN_DIR/grids/edgediff.png: the originals, then one row per entry of ``grids``; rows.txt names the rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run_dir = Path(run_dir)
    rows = [x[:8]] + list(grids.values())
    img = torch.cat([torch.cat(list(r), -1) for r in rows], -2).permute(1, 2, 0).cpu().numpy()
    (run_dir / "grids").mkdir(parents=True, exist_ok=True)
    plt.imsave(run_dir / "grids" / "edgediff.png", img.clip(0, 1))
    (run_dir / "grids" / "rows.txt").write_text("\n".join(["original", *grids]) + "\n")


def markdown(doc) -> str:
    """The report edgediff-<machine>.md of a result document (bench/edgediff.py's JSON)."""
    r = doc["results"]
    faces = "training-subset" if doc.get("split") == "train" else "validation"
    L = [f"# Edge-guided diffusion compression on {doc['machine']['name']}", "",
         f"Budget: {doc['budget']} epochs; {doc['n_val']} {faces} faces; DDIM steps {r['timing']['steps']} "
         f"(completion {r['timing']['complete_steps']}). Command: `{doc['command']}`", ""]
    if "clean" in r:
        cl = r["clean"]
        L += [f"No quantisation at all, decode(y): {cl['psnr']:.2f} dB / SSIM {cl['ssim']:.4f}. Headroom = "
              "decode(y) − W/O. Oracle edges: the original's Canny map (an upper bound; no receiver has it). "
              "Steps: DDIM steps run from the start timestep t*.", ""]
    L += ["| bits | mode | bpp | t* | steps | PSNR | SSIM | MS-SSIM | face PSNR | face SSIM | face MS-SSIM | headroom dB |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in r["ablation"]:
        hr = f"{a['headroom_psnr']:.2f}" if "headroom_psnr" in a else ""
        L.append(f"| {a['bits']} | {a['mode']} | {a['bpp']:.3f} | {a.get('start_timestep', '')} | {a['steps']} | "
                 f"{a['psnr']:.2f} | {a['ssim']:.4f} | {a['ms_ssim']:.4f} | {a['face_psnr']:.2f} | "
                 f"{a['face_ssim']:.4f} | {a['face_ms_ssim']:.4f} | {hr} |")
    start = r.get("complete_start", 1.0)
    L += ["", "Completion at the validation bit depth, " + ("from pure noise" if start >= 1 else
          f"from the zero-filled latent noised to t = {start:g}·T") + "; sender edges: the original's Canny map of "
          "the lost regions coded losslessly beside the file (extra bpp; the rectangles' coordinates are not "
          "counted). complete_*: diffusion (RePaint); fill_*: the completer (regression, beyond the paper); "
          "true_latent: the unquantised latent in the lost cells (a bound no receiver reaches).", "",
          "| max side fraction | regions | share lost | strategy | PSNR | SSIM | MS-SSIM | PSNR of the lost pixels | "
          "extra bpp |",
          "|---|---|---|---|---|---|---|---|---|"]
    for a in r["completion"]:
        lp = f"{a['lost_psnr']:.2f}" if "lost_psnr" in a else ""
        L.append(f"| {a['max_frac']:.4f} | {a['regions']} | {a['share_lost']:.3f} | {a['strategy']} | "
                 f"{a['psnr']:.2f} | {a['ssim']:.4f} | {a['ms_ssim']:.4f} | {lp} | {a.get('extra_bpp', 0.0):.3f} |")
    L += ["", "| bits | bpp | EEN edge-F1 |", "|---|---|---|"]
    L += [f"| {a['bits']} | {a['bpp']:.3f} | {a['edge_f1']:.3f} |" for a in r["edge_f1"]]
    L += ["", "Wall time per image (s): " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in r["timing"].items()), ""]
    return "\n".join(L)
