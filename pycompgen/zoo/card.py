"""Model cards for zoo entries, generated from a quality-results JSON (bench/quality.py) or a sweep.json."""
from __future__ import annotations

import math
from pathlib import Path

LICENCE = ("CelebA is released by its authors for **non-commercial research purposes only**; these weights were "
           "trained on it and inherit that restriction. Do not use them commercially.")


def training_psnr(cfg) -> dict:
    """The channel PSNR the approaches were trained at: a fixed value or a uniform range."""
    rng = getattr(cfg.train, "psnr_range", None)
    if rng:
        lo, hi = float(rng[0]), float(rng[1])
        return {"psnr_range": [lo, hi],
                "psnr_summary": f"channel PSNR drawn uniformly per image in [{lo:g}, {hi:g}] dB"}
    p = float(cfg.train.psnr)
    return {"psnr": p, "psnr_summary": f"fixed channel PSNR {p:g} dB"}


def _f(v, d=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def sweep_table(sw: dict) -> str:
    """Markdown: one row per (approach, channel PSNR) plus the AE row; SSIM, MS-SSIM, PSNR, edge-F1."""
    if not sw:
        return "_no sweep in the results_\n"
    rows = ["| model | channel PSNR (dB) | SSIM | MS-SSIM | PSNR (dB) | edge-F1 |", "|---|---:|---:|---:|---:|---:|"]
    ae = sw.get("ae")
    if ae:
        rows.append(f"| AE (step 1, g(f(x))) | – | {_f(ae.get('ssim'))} | {_f(ae.get('ms_ssim'))} | "
                    f"{_f(ae.get('psnr'), 2)} | {_f(ae.get('edge_f1'))} |")
    for lab, per in (sw.get("approaches") or {}).items():
        for k, m in per.items():
            rows.append(f"| {lab} | {k} | {_f(m.get('ssim'))} | {_f(m.get('ms_ssim'))} | {_f(m.get('psnr'), 2)} | "
                        f"{_f(m.get('edge_f1'))} |")
    return "\n".join(rows) + "\n"


def _stage_wall(r: dict):
    """A stage's training seconds: its epochs' own times summed (right across resumed sessions), else the
    invocation's wall time; None when neither was recorded (e.g. a stage reused from an earlier run)."""
    return r.get("epochs_wall_s") or r.get("wall_s") or None


def gap_table(train: dict, val: dict) -> str:
    """Markdown: SSIM on the training subset beside validation and their difference, per AE / approach row."""
    rows = ["| model | channel PSNR (dB) | SSIM, training faces | SSIM, validation faces | gap |",
            "|---|---:|---:|---:|---:|"]
    if train.get("ae") and val.get("ae"):
        t, v = train["ae"]["ssim"], val["ae"]["ssim"]
        rows.append(f"| AE (step 1, g(f(x))) | – | {_f(t)} | {_f(v)} | {_f(t - v)} |")
    for lab, per in (val.get("approaches") or {}).items():
        for k, m in per.items():
            t = ((train.get("approaches") or {}).get(lab) or {}).get(k, {}).get("ssim")
            rows.append(f"| {lab} | {k} | {_f(t)} | {_f(m.get('ssim'))} | "
                        f"{_f(None if t is None else t - m['ssim'])} |")
    return "\n".join(rows) + "\n"


def metrics_summary(sw: dict) -> dict:
    out = {}
    if not sw:
        return out
    if sw.get("ae"):
        out["ae_ssim"] = sw["ae"].get("ssim")
    for lab, per in (sw.get("approaches") or {}).items():
        out[f"{lab}_ssim"] = {k: m.get("ssim") for k, m in per.items()}
        out[f"{lab}_edge_f1"] = {k: m.get("edge_f1") for k, m in per.items()}
    parts = []
    if "ae_ssim" in out and out["ae_ssim"] is not None:
        parts.append(f"AE SSIM {out['ae_ssim']:.3f}")
    a3 = out.get("approach3_ssim") or {}
    for k in ("50", "0", "-5"):
        if a3.get(k) is not None:
            parts.append(f"approach3 SSIM {a3[k]:.3f} @ {k} dB")
    out["summary"] = ", ".join(parts)
    out["n_images"] = sw.get("n_images")
    out["split"] = sw.get("split")
    return out


def _mb(n):
    return f"{n / 1e6:.2f} MB"


def render_system(name: str, description: str, system: str, stage: str, cfg, entry: dict, facts: dict,
                  metrics_md: str, use: list, export: dict) -> str:
    """The card of a one-stage entry of any system: ``facts`` {label: text} (data, recipe, epochs, wall time,
    machine, command, date), ``metrics_md`` (markdown: validation beside training-subset figures), ``use``
    (command lines)."""
    L = [f"# Model card: `{name}`", "", description, "", "## Use", "", "```bash", *use, "```", "",
         "```python", "import pycompgen.zoo as zoo", f'pre = zoo.load("{name}")   # pre["{stage}"].models',
         "```", "", "## Data, recipe, machine", ""]
    L += [f"- {k}: {v}" for k, v in facts.items()]
    sec = cfg.sections.get(system)
    if sec is not None:
        import dataclasses
        L.append(f"- `{system}` settings: " + ", ".join(f"{f.name} {getattr(sec, f.name)}"
                                                         for f in dataclasses.fields(sec)))
    t = cfg.train
    L.append(f"- harness: batch {t.batch_size}, generator EMA {t.ema_decay or 0:g}, lr schedule "
             f"{t.lr_schedule or 'none'} (x{t.lr_gamma:g}), best.pt by {t.select or 'the stage selection metric'}")
    L += ["", "## Metrics", "", metrics_md, "", "## Files", "", "| stage | file | stored | size | sha256 | change vs fp32 |",
          "|---|---|---|---:|---|---:|",
          f"| {stage} | `{entry['file']}` | {entry['dtype']} ({', '.join(entry['parts'])}) | {_mb(entry['bytes'])} | "
          f"`{entry['sha256'][:16]}…` | {entry.get('ssim_change', float('nan')):.5f} SSIM |", "",
          f"Weights are stored as {entry['dtype']} and loaded as float32; the SSIM change of the output was measured "
          f"on {export.get('check_images')} {export.get('check_source')} images (limit {export.get('tolerance')}).",
          "", "## Licence", "", LICENCE, ""]
    return "\n".join(L)


def render(name: str, description: str, results: dict, stages: dict, cfgs: dict, latent_shape, export: dict) -> str:
    """The card's markdown. ``stages``: manifest stage entries; ``cfgs``: {stage: Config}."""
    last = cfgs[next(reversed(cfgs))]
    tr = training_psnr(last)
    sw = results.get("sweep") or {}
    data = results.get("data") or {}
    L = [f"# Model card: `{name}`", "", description, ""]
    L += ["**Training condition:** the approaches (ELM h, decoder g) were trained with a "
          f"{tr['psnr_summary']} (AWGN on the Canny edge map); step 1 (f, g) sees no channel.", ""]
    hint = int(getattr(last.model, "hint_size", 0) or 0)
    gen = ([f"pycompgen compress --pretrained {name} --quality Q faces/ -o out/   # edge map + colour hint",
            "pycompgen decompress out/*.pcg -o decoded/ [--psnr 0]   # both through the channel with --psnr"]
           if hint else [f"pycompgen generate --pretrained {name} --sketches DIR",
                         f"pycompgen generate --pretrained {name} --unconditional 16"])
    L += ["## Use", "", "```bash", *gen,
          f"pycompgen evaluate --pretrained {name} --data DIR --split val --psnrs 50,25,10,0,-2,-5", "```", "",
          "```python", "import pycompgen.zoo as zoo",
          f'pre = zoo.load("{name}")   # pre["approach3"].models -> f, g, h',
          "```", ""]
    L += ["## Data and split", ""]
    path = data.get("path", last.data.path)
    path = Path(path).name if path else None  # the folder name, not this machine's absolute path
    L.append(f"- data: `{path or 'synthetic faces'}` (CelebA aligned faces when `celeba`), {last.data.image_size}×"
             f"{last.data.image_size} faces")
    if data.get("train_images") is not None:
        L.append(f"- training split: {data['train_images']} images; validation split: {data.get('val_images')} images")
    L.append(f"- validation metrics below: split `{sw.get('split', 'val')}`, {sw.get('n_images', '?')} images; "
             "the test partition was not used for training or tuning")
    L.append(f"- edge maps: Canny low {last.data.canny_low}, high {last.data.canny_high}, blur "
             f"{last.data.blur_sigma}")
    L += ["", "## Recipe", "", "| stage | trains | epochs | batch | lr | training PSNR | wall time | val SSIM (best) |",
          "|---|---|---:|---:|---:|---|---:|---:|"]
    trains = {"step1": "f, g (SSIM loss)", "approach1": "h (latent MSE, g frozen)",
              "approach2": "g on h's output", "approach3": "h and g end to end"}
    rs = results.get("stages") or {}
    for s, c in cfgs.items():
        r = rs.get(s) or {}
        ep = r.get("epochs", r.get("epoch", stages[s].get("epoch")))
        ep = int(ep) if isinstance(ep, float) and ep.is_integer() else ep
        wall = _stage_wall(r)
        tp = "–" if s == "step1" else training_psnr(c)["psnr_summary"]
        L.append(f"| {s} | {trains.get(s, '')} | {ep} | {c.train.batch_size} | {c.train.lr:g} | {tp} | "
                 f"{'–' if wall is None else f'{wall / 60:.1f} min'} | {_f(stages[s].get('val_ssim'))} |")
    m = last.model
    L += ["", f"Networks: channels {m.channels}, num_res {m.num_res}, num_mult {m.num_mult}, latent channels "
              f"{m.latent_channels}, ELM channels {m.elm_channels}, ELM blocks {m.elm_num_res}, ELM hidden "
              f"{m.elm_hidden}"
              + ("; gated skip features from h's convolutions into g (model.elm_skips, beyond the paper)"
                 if getattr(m, "elm_skips", False) else "")
              + (f", {m.elm_skip_blocks} residual blocks on each skip (model.elm_skip_blocks)"
                 if getattr(m, "elm_skip_blocks", 0) else "")
              + (f"; h normalised by {m.elm_norm} norm (model.elm_norm, beyond the paper)"
                 if getattr(m, "elm_norm", "batch") != "batch" else "")
              + (f"; a {m.hint_size}x{m.hint_size} colour hint into h at {m.hint_bits} bits, "
                 + ("RGB" if getattr(m, "hint_space", "rgb") == "rgb" else
                    f"luma at {m.hint_size}x{m.hint_size}, chroma at half size and one bit fewer (YCoCg 4:2:0)")
                 + " (model.hint_size, "
                 "beyond the paper; no generation from sketches or noise)" if getattr(m, "hint_size", 0) else "")
              + ".", ""]
    L += ["## Machine and time", ""]
    mi = results.get("machine_info")
    if isinstance(mi, dict):
        mi = ", ".join(f"{k} {v}" for k, v in mi.items() if k in ("device", "cpu_count", "torch_threads", "torch",
                                                                   "gpu", "device_name", "cpu"))
    L.append(f"- machine: `{results.get('machine', '?')}`" + (f" ({mi})" if mi else ""))
    L.append(f"- command: `{results.get('command', '?')}`")
    L.append(f"- finished: {results.get('date_utc', '?')}")
    # the run's training time, or the stages' epoch times where larger (a resumed run's last invocation may have
    # trained nothing); a stage without a time was reused from an earlier run
    walls = {s: _stage_wall(rs.get(s) or {}) for s in cfgs}
    run = (results.get("wall_s") or {}).get("train") if isinstance(results.get("wall_s"), dict) else None
    tot = max(run or 0, sum(w for w in walls.values() if w))
    missing = [s for s, w in walls.items() if not w] if tot > (run or 0) else []
    if tot:
        L.append(f"- training wall time: {tot / 3600:.2f} h"
                 + (f" ({', '.join(missing)} not timed in this run: reused from an earlier one)" if missing else ""))
    c, h, w = latent_shape
    L += ["", "## Latent", "", f"y = f(x) is {c}×{h}×{w} = {c * h * w} values per {last.data.image_size}×"
                                   f"{last.data.image_size} face.", ""]
    L += ["## Validation metrics (full channel-PSNR sweep)", "",
          "SSIM / MS-SSIM / PSNR of x̂ vs x; edge-F1 of Canny(x̂) vs the clean edge map. Approach rows: x̂ from the "
          "noisy edge map at each channel PSNR; the AE row is step 1's g(f(x)).", "", sweep_table(sw)]
    tsw = results.get("train_sweep") or {}
    if tsw and sw:
        L += ["## Training faces beside validation", "",
              f"The same sweep on {tsw.get('n_images', '?')} fixed training faces (the harness's training subset, "
              f"`train.train_subset`) and on the validation faces: a gap says the model memorised its training "
              f"faces.", "", gap_table(tsw, sw)]
    curves = results.get("curves") or {}
    if curves:
        L += ["## Learning curves (validation SSIM per epoch; training subset where measured)", ""]
        for st, rows in curves.items():
            vals = [r.get("val_ssim") for r in rows if isinstance(r, dict) and r.get("val_ssim") is not None]
            if vals:
                L.append(f"- {st}: " + " ".join(f"{v:.3f}" for v in vals))
            subs = [r.get("trainsub_ssim") for r in rows if isinstance(r, dict) and r.get("trainsub_ssim") is not None]
            if subs:
                L.append(f"- {st}, training subset: " + " ".join(f"{v:.3f}" for v in subs))
        L.append("")
    # figures in the repository only (sample grids with dataset pixels are written by the benchmark, not committed)
    repo = Path(__file__).resolve().parents[2]
    figs = [f for f in results.get("figures") or [] if isinstance(f, str) and (repo / f).is_file()
            and "/grids/" not in f and "sketches_" not in f]
    if figs:
        L += ["## Figures", ""] + [f"- [`{f}`](../../../{f})" for f in figs] + [""]
    L += ["## Files", "", "| stage | file | stored | size | sha256 | SSIM change vs fp32 |",
          "|---|---|---|---:|---|---:|"]
    for s, e in stages.items():
        shared = ", ".join(f"{p} from {src}" for p, src in (e.get("shared") or {}).items())
        L.append(f"| {s} | `{e['file']}` | {e['dtype']} ({', '.join(e['parts'])}" + (f"; {shared}" if shared else "")
                 + f") | {_mb(e['bytes'])} | `{e['sha256'][:16]}…` | {e.get('ssim_change', float('nan')):.5f} |")
    L += ["", f"Total {_mb(sum(e['bytes'] for e in stages.values()))}. Weights are stored as {export.get('dtype')} "
              f"and loaded as float32; the SSIM change was measured on {export.get('check_images')} "
              f"{export.get('check_source')} images (limit {export.get('tolerance')}).", ""]
    L += ["## Licence", "", LICENCE, ""]
    return "\n".join(L)
