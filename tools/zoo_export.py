#!/usr/bin/env python
"""Export a trained Compgen run into the model zoo (pycompgen/zoo, or $PYCOMPGEN_ZOO_DIR / --zoo-dir).

    python tools/zoo_export.py --run-dir runs/quality-cpu2 --name compgen-64 \
        --results bench/results/quality-cpu2.json --description "Compgen, paper recipe, 64x64 CelebA"

Another system's one-stage checkpoint (the benches call ``export_system`` with their card facts and metrics):

    python tools/zoo_export.py --checkpoint runs/began-A/train/best.pt --name began-64-a --description "..."

A Sketch2face variant (``export_sketch2face``: the stage's E_s, G_s, E_f, G_f and, for "latent", T_sf, T_fs; no
critics) and the edge-guided diffusion compressor's last stage (entropy) with one rate point per bit depth
(``export_edgediff``: one weights file, ``--quality`` k = the k-th smallest bit depth):

    python tools/zoo_export.py --run-dir runs/sketch2face-cpu2 --variant latent --name sketch2face-64
    python tools/zoo_export.py --checkpoint runs/edgediff-cpu4/entropy/best.pt --name edgediff-64

For each stage's best.pt (step1, approach1-3): stores the networks as a float16 state dict (a part identical to an
earlier stage's, e.g. the frozen f, or approach 2's frozen h, is stored once and referred to), checks that SSIM of
every stage's reconstruction moves by less than --tolerance (0.002) between float32 and float16 on --check-images
images (synthetic faces, or --data/--split; approaches at 50, 0 and -5 dB), and keeps float32 for a stage that
fails (--strict: refuse instead). Then writes the manifest entry and the model card cards/<name>.md from the
results JSON (bench/quality.py's, or a plain sweep.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def write_card(zdir: Path, name: str, text: str) -> Path:
    """The model card of entry ``name`` written to ``zdir``/cards/<name>.md; returns its path."""
    cpath = Path(zdir) / "cards" / f"{name}.md"
    cpath.parent.mkdir(parents=True, exist_ok=True)
    cpath.write_text(text)
    return cpath

def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def ssim_change(lc, stored: dict, x: torch.Tensor, psnrs, seed: int = 0) -> float:
    """Largest |mean SSIM(fp32 x̂, x) - mean SSIM(stored-precision x̂, x)| over ``psnrs`` (AE: one value)."""
    import copy
    from pycompgen.data import EdgeChannel
    from pycompgen.ops import ssim
    from pycompgen.systems.compgen.system import decode_edges, make_hint
    from pycompgen.zoo.core import to_float32

    m32 = lc.models
    m16 = {k: copy.deepcopy(v) for k, v in m32.items()}
    for part, sd in stored.items():
        m16[part].load_state_dict(to_float32(sd))
    for m in list(m16.values()) + list(m32.values()):
        m.eval()
    if not lc.has_elm:
        return abs(float(ssim(m32["g"](m32["f"](x)), x)) - float(ssim(m16["g"](m16["f"](x)), x)))
    c = lc.config.data
    ch = EdgeChannel(canny_low=c.canny_low, canny_high=c.canny_high, blur_sigma=c.blur_sigma, psnr=float("inf"))
    z = ch.edges(x)
    worst = 0.0
    for i, p in enumerate(psnrs):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        zn = ch.noisy(z, psnr=float(p), generator=g)
        t = make_hint(m32, x, float(p), torch.Generator().manual_seed(seed * 1000 + i + 500))  # None: edges only
        a = float(ssim(decode_edges(m32, zn, t).clamp(0, 1), x))
        b = float(ssim(decode_edges(m16, zn, t).clamp(0, 1), x))
        worst = max(worst, abs(a - b))
    return worst


def check_faces(cfg, data, split, n):
    from pycompgen.data import load_faces
    from pycompgen.evaluation.sweep import face_batch
    faces = load_faces(data, split=split, image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir,
                       synthetic_count=max(n * 8, 64), seed=cfg.train.seed)
    n = min(n, len(faces))
    x = face_batch(faces, 0, n).float() / 255.0
    return x, ("synthetic" if data is None else f"{Path(data).name} ({split})"), n  # no machine's paths


def export(run_dir, name, results_path=None, description="", zoo_dir=None, check_images=64, data=None,
           split="val", tolerance=0.002, strict=False, psnrs=(50.0, 0.0, -5.0), log=print) -> dict:
    from pycompgen.models import STAGES, load_for_eval, resolve_checkpoints
    from pycompgen.systems.compgen.networks import compgen_latent_shape
    from pycompgen.models.checkpoint import save_checkpoint
    from pycompgen.zoo import card as cardmod
    from pycompgen.zoo.core import (DEFAULT_NAME, FORMAT, read_manifest, sha256_file, to_storage, write_manifest,
                                    zoo_dir as default_zoo)

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad entry name {name!r}")
    zdir = Path(zoo_dir) if zoo_dir else default_zoo()
    ckpts = resolve_checkpoints([str(run_dir)])
    stages = [s for s in STAGES if s in ckpts]
    if not stages:
        raise ValueError(f"{run_dir} has no stage checkpoints (found: {sorted(ckpts)})")
    base = stages[0]
    results = {}
    if results_path:
        results = json.loads(Path(results_path).read_text())
        if results.get("format") == "pycompgen-sweep/1":  # a bare sweep.json
            results = {"sweep": results}
    loaded = {s: load_for_eval(ckpts[s], label=s) for s in stages}
    x, source, n = check_faces(loaded[base].config, data, split, check_images)
    own: dict = {}  # {stage: parts stored in its own file}: later stages refer to identical parts there
    wdir = zdir / "weights" / name
    wdir.mkdir(parents=True, exist_ok=True)
    entries, cfgs = {}, {}
    for s in stages:
        lc = loaded[s]
        cfgs[s] = lc.config
        full = {p: lc.models[p].state_dict() for p in lc.parts}
        dtype = torch.float16
        stored = {p: to_storage(sd, dtype) for p, sd in full.items()}
        delta = ssim_change(lc, stored, x, psnrs)
        if delta >= tolerance:
            msg = (f"{s}: SSIM moves by {delta:.5f} >= {tolerance} in float16")
            if strict:
                raise ValueError(msg + "; refusing to export (--strict)")
            log(msg + "; keeping float32 for this stage")
            dtype = torch.float32
            stored = {p: to_storage(sd, dtype) for p, sd in full.items()}
            delta = 0.0
        shared = {}
        for p in list(stored):
            src = next((t for t, sds in own.items() if p in sds and _same(stored[p], sds[p])), None)
            if src is not None:
                shared[p] = src
                del stored[p]
        own[s] = stored
        payload = {"format": FORMAT, "model": lc.model_name, "stage": s, "epoch": lc.epoch,
                   "config": lc.config.to_dict(), "dtype": str(dtype).replace("torch.", ""), "models": stored,
                   "shared": shared,
                   "metrics": {k: float(v) for k, v in lc.metrics.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        f = save_checkpoint(wdir / f"{s}.pt", payload)
        entries[s] = {"file": f.relative_to(zdir).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size,
                      "dtype": payload["dtype"], "parts": sorted(full), "shared": shared, "epoch": lc.epoch,
                      "val_ssim": lc.metrics.get("best_val_ssim", lc.metrics.get("val_ssim")),
                      "ssim_change": round(delta, 6)}
        log(f"{s}: {entries[s]['file']} {payload['dtype']} {entries[s]['bytes'] / 1e6:.2f} MB, parts "
            f"{','.join(sorted(stored))}" + ("".join(f" (+{p} from {t})" for p, t in shared.items()))
            + f", SSIM change {delta:.5f}")
    last = cfgs[stages[-1]]
    lat = [int(v) for v in compgen_latent_shape(last.model, last.data.image_size)]
    export_info = {"dtype": "float16", "tolerance": tolerance, "check_images": n, "check_source": source,
                   "check_psnrs": list(psnrs), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    desc = description or f"Compgen ({', '.join(stages)}) exported from {run_dir}"
    text = cardmod.render(name, desc, results, entries, cfgs, lat, export_info)
    cpath = write_card(zdir, name, text)
    tr = cardmod.training_psnr(last)
    man = read_manifest(zdir)
    man.setdefault("default", DEFAULT_NAME)
    man["entries"][name] = {
        "name": name, "description": desc, "model": loaded[base].model_name,
        "image_size": int(last.data.image_size), "latent_shape": lat, "training": tr,
        "stages": entries, "metrics": {**cardmod.metrics_summary(results.get("sweep") or {}),
                                       **({"train_subset": cardmod.metrics_summary(results["train_sweep"])}
                                          if results.get("train_sweep") else {})},
        "card": cpath.relative_to(zdir).as_posix(),
        "source": {"run_dir": _rel(run_dir), "results": _rel(results_path) if results_path else None,
                   "machine": results.get("machine"), "date_utc": results.get("date_utc")},
        "export": export_info}
    write_manifest(man, zdir)
    log(f"zoo: entry {name!r} -> {zdir / 'manifest.json'}, card {cpath}, "
        f"{sum(e['bytes'] for e in entries.values()) / 1e6:.2f} MB in {wdir}")
    return man["entries"][name]


def export_bench_run(run_dir, name, description, report: dict, sweeps: dict, data: dict, curves: dict,
                     train_wall_s: float) -> dict:
    """A bench's Compgen run (``run_dir``/step1 and /approach3) -> zoo entry ``name`` through ``export``: the
    stages linked into ``run_dir``/export, the card's facts (``report``'s machine, command and date; ``sweeps``
    {"val", "train"}; ``data``; learning ``curves`` per stage; training wall time) written to
    ``run_dir``/export_results.json. Used by bench/generalise.py and bench/color_hint.py."""
    from pycompgen.evaluation.sweep import write_json
    run_dir = Path(run_dir)
    sel = run_dir / "export"
    sel.mkdir(exist_ok=True)
    for stage in ("step1", "approach3"):
        link = sel / stage
        if not link.exists():
            link.symlink_to(run_dir / stage, target_is_directory=True)
    results = {"machine": report["machine"], "command": report["command"], "date_utc": report["date_utc"],
               "machine_info": {k: report.get(k) for k in ("cpu", "cores", "threads", "torch")},
               "sweep": sweeps["val"], "train_sweep": sweeps["train"], "data": data,
               "stages": {"approach3": {"epochs": report["budget"]["approach3_epochs"],
                                        "wall_s": sum(r["epoch_time_s"] or 0 for r in curves["approach3"])}},
               "curves": dict(curves), "wall_s": {"train": train_wall_s}}
    path = run_dir / "export_results.json"
    write_json(path, results)
    return export(sel, name, str(path), description=description, data=data["path"], check_images=256)


@torch.no_grad()
def output_change(lc, stored: dict, x: torch.Tensor) -> float:
    """|mean SSIM(fp32 output, x) − mean SSIM(stored-precision output, x)| of the system's ``reconstruct``
    (Sketch2face: the face cycle of x)."""
    import copy
    from pycompgen.ops import ssim
    from pycompgen.registry import get_system
    from pycompgen.zoo.core import to_float32
    cls = get_system(lc.model_name)
    m16 = {k: copy.deepcopy(v).eval() for k, v in lc.models.items()}
    for part, sd in stored.items():
        m16[part].load_state_dict(to_float32(sd))
    b = ({"x": x} if lc.model_name == "sketch2face"  # its training batches pair faces with sketches
         else cls.example_batch(lc.config, (x * 255).round().to(torch.uint8), torch.Generator().manual_seed(0)))
    a = cls.reconstruct(lc.stage, lc.models, b).float().clamp(0, 1)
    c = cls.reconstruct(lc.stage, m16, b).float().clamp(0, 1)
    return abs(float(ssim(a, b["x"])) - float(ssim(c, b["x"])))


def _rel(path) -> str:
    """A path as the manifest stores it: relative to the repository when inside it (no machine's absolute paths)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def export_system(checkpoint, name, description, *, facts=None, metrics=None, metrics_md="", use=None,
                  zoo_dir=None, check_images=64, tolerance=0.002, parts=None, extra=None, log=print) -> dict:
    """A one-stage checkpoint of any system (its eval weights: the generator EMA where kept) -> zoo entry
    ``name``: float16 weights (float32 when the output's SSIM moves by >= ``tolerance``) of ``parts`` (default:
    every network the checkpoint holds), manifest entry with ``metrics`` ({"summary": str, ...}) and ``extra``
    keys, and a card from ``facts`` / ``metrics_md`` / ``use``."""
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.models import load_for_eval
    from pycompgen.models.checkpoint import save_checkpoint
    from pycompgen.zoo import card as cardmod
    from pycompgen.zoo.core import FORMAT, read_manifest, sha256_file, to_storage, write_manifest, \
        zoo_dir as default_zoo

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad entry name {name!r}")
    zdir = Path(zoo_dir) if zoo_dir else default_zoo()
    lc = load_for_eval(checkpoint, expect_model=None)
    size = lc.image_size
    x = to_float01(synthetic_faces(check_images, size, seed=7))
    keep = lc.parts if parts is None else [p for p in parts if p in lc.parts]
    full = {p: lc.models[p].state_dict() for p in keep}
    dtype = torch.float16
    stored = {p: to_storage(sd, dtype) for p, sd in full.items()}
    delta = output_change(lc, stored, x)
    if delta >= tolerance:
        log(f"{name}: SSIM moves by {delta:.5f} >= {tolerance} in float16; keeping float32")
        dtype, delta = torch.float32, 0.0
        stored = {p: to_storage(sd, dtype) for p, sd in full.items()}
    wdir = zdir / "weights" / name
    payload = {"format": FORMAT, "model": lc.model_name, "stage": lc.stage, "epoch": lc.epoch,
               "config": lc.config.to_dict(), "dtype": str(dtype).replace("torch.", ""), "models": stored,
               "shared": {}, "metrics": {k: float(v) for k, v in lc.metrics.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    f = save_checkpoint(wdir / f"{lc.stage}.pt", payload)
    ent = {"file": f.relative_to(zdir).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size,
           "dtype": payload["dtype"], "parts": sorted(full), "shared": {}, "epoch": lc.epoch,
           "val_ssim": lc.metrics.get("val_ssim"), "ssim_change": round(delta, 6)}
    export_info = {"dtype": payload["dtype"], "tolerance": tolerance, "check_images": check_images,
                   "check_source": "synthetic", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = cardmod.render_system(name, description, lc.model_name, lc.stage, lc.config, ent, dict(facts or {}),
                                 metrics_md, list(use or []), export_info)
    cpath = write_card(zdir, name, text)
    man = read_manifest(zdir)
    man["entries"][name] = {"name": name, "description": description, "model": lc.model_name,
                            "image_size": int(size), **dict(extra or {}), "stages": {lc.stage: ent},
                            "metrics": dict(metrics or {}), "card": cpath.relative_to(zdir).as_posix(),
                            "source": {"checkpoint": _rel(checkpoint)}, "export": export_info}
    write_manifest(man, zdir)
    log(f"zoo: entry {name!r} ({lc.model_name}, {payload['dtype']}, {ent['bytes'] / 1e6:.2f} MB, SSIM change "
        f"{delta:.5f}) -> {zdir / 'manifest.json'}, card {cpath}")
    return man["entries"][name]


def export_rate_points(checkpoints, name, description, *, faces=None, faces_label="synthetic", facts=None,
                       metrics_md="", zoo_dir=None, check_images=64, tolerance=0.002, log=print) -> dict:
    """Latent-codec checkpoints of one system trained at several rate weights -> one zoo entry with rate points,
    quality 1 = the lowest rate (ordered by the bpp of real files on ``faces``, N×3×H×W in [0, 1], default
    synthetic faces). Each point is a float16 weights file (float32 when SSIM moves by >= ``tolerance``)."""
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.models import load_for_eval
    from pycompgen.models.checkpoint import save_checkpoint
    from pycompgen.zoo import card as cardmod
    from pycompgen.zoo.core import FORMAT, read_manifest, sha256_file, to_storage, write_manifest, \
        zoo_dir as default_zoo

    zdir = Path(zoo_dir) if zoo_dir else default_zoo()
    loaded = [load_for_eval(p, expect_model=None) for p in checkpoints]
    for p, lc in zip(checkpoints, loaded):
        if "eb" not in lc.parts:
            raise ValueError(f"{p}: not a latent codec (no entropy bottleneck 'eb')")
    size = loaded[0].image_size
    if faces is None:
        faces = to_float01(synthetic_faces(check_images, size, seed=7))
    from pycompgen.evaluation.rd import latent_point  # real .pcg files, one per face
    keep = ("n", "bytes_mean", "bpp", "bpp_payload", "ssim", "ms_ssim", "psnr")
    pts = sorted((({k: v for k, v in latent_point(str(p), p, faces, log=lambda *a: None).items() if k in keep}, p, lc)
                  for p, lc in zip(checkpoints, loaded)), key=lambda t: t[0]["bpp"])
    wdir = zdir / "weights" / name
    points = []
    for q, (fp, path, lc) in enumerate(pts, 1):
        full = {k: lc.models[k].state_dict() for k in lc.parts}
        dtype = torch.float16
        stored = {k: to_storage(sd, dtype) for k, sd in full.items()}
        delta = output_change(lc, stored, faces[:check_images])
        if delta >= tolerance:
            dtype, delta = torch.float32, 0.0
            stored = {k: to_storage(sd, dtype) for k, sd in full.items()}
        payload = {"format": FORMAT, "model": lc.model_name, "stage": lc.stage, "epoch": lc.epoch,
                   "config": lc.config.to_dict(), "dtype": str(dtype).replace("torch.", ""), "models": stored,
                   "shared": {}, "metrics": {k: float(v) for k, v in lc.metrics.items()
                                             if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        f = save_checkpoint(wdir / f"q{q}.pt", payload)
        points.append({"quality": q, "stage": lc.stage, "rate_weight": float(lc.config.train.rate_weight),
                       "file": f.relative_to(zdir).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size,
                       "dtype": payload["dtype"], "parts": sorted(full), "shared": {}, "epoch": lc.epoch,
                       "ssim_change": round(delta, 6), "source": _rel(path),
                       **{k: round(v, 5) if isinstance(v, float) else v for k, v in fp.items()}})
        log(f"{name} quality {q}: λ={points[-1]['rate_weight']:g}, {fp['bpp']:.3f} bpp, SSIM {fp['ssim']:.4f} on "
            f"{fp['n']} {faces_label} faces, {payload['dtype']} {points[-1]['bytes'] / 1e6:.2f} MB")
    default = (len(points) + 1) // 2
    export_info = {"dtype": "float16", "tolerance": tolerance, "check_images": min(check_images, len(faces)),
                   "check_source": faces_label, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows = ["| quality | rate weight λ | bpp (file, header included) | SSIM | PSNR | size |", "|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {p['quality']} | {p['rate_weight']:g} | {p['bpp']:.3f} | {p['ssim']:.4f} | {p['psnr']:.2f} | "
             f"{p['bytes'] / 1e6:.2f} MB |" for p in points]
    lc = pts[default - 1][2]
    text = cardmod.render_system(
        name, description, lc.model_name, lc.stage, lc.config, points[default - 1], dict(facts or {}),
        f"Real files on {faces_label} faces, one per face:\n\n" + "\n".join(rows) + ("\n\n" + metrics_md
                                                                                  if metrics_md else ""),
        [f"pycompgen compress --pretrained {name} --quality {default} faces/ -o out/",
         f"pycompgen decompress out/*.pcg -o decoded/   # finds {name} and its rate point from the file"],
        export_info)
    cpath = write_card(zdir, name, text)
    man = read_manifest(zdir)
    best = points[default - 1]
    man["entries"][name] = {
        "name": name, "description": description, "model": lc.model_name, "image_size": int(size),
        "stages": {best["stage"]: best}, "rate_points": points, "default_quality": default,
        "metrics": {"summary": ", ".join(f"q{p['quality']} {p['bpp']:.2f} bpp SSIM {p['ssim']:.3f}" for p in points),
                    "faces": faces_label},
        "card": cpath.relative_to(zdir).as_posix(), "export": export_info}
    write_manifest(man, zdir)
    log(f"zoo: entry {name!r} with {len(points)} rate points -> {zdir / 'manifest.json'}")
    return man["entries"][name]


def export_sketch2face(run_dir, variant=None, name="sketch2face-64", description="", *, facts=None, metrics=None,
                       metrics_md="", zoo_dir=None, check_images=64, tolerance=0.002, log=print) -> dict:
    """A Sketch2face run's ``variant`` stage (pretrain | cycle | stitched | latent: ``run_dir``/<variant>/best.pt,
    else last.pt; or ``run_dir`` a checkpoint file, its stage the variant) -> zoo entry ``name`` through
    ``export_system``: the translators E_s, G_s, E_f, G_f (+ T_sf, T_fs for "latent"), no critics; the card and
    the manifest (``variant``) state the variant. Use: ``pycompgen generate --pretrained NAME --sketches DIR``."""
    from pycompgen.models import load_checkpoint, stage_checkpoint
    from pycompgen.systems.sketch2face import LATENT, VAES, Sketch2Face
    path = Path(run_dir)
    if not path.is_file():
        if variant not in Sketch2Face.stages:
            raise ValueError(f"variant must be one of {', '.join(Sketch2Face.stages)}, got {variant!r}")
        path = stage_checkpoint(Path(run_dir) / variant)
        if path is None:
            raise FileNotFoundError(f"no checkpoint of variant {variant!r} in {run_dir} (expected "
                                    f"{Path(run_dir) / variant / 'best.pt'})")
    ck = load_checkpoint(path)
    if ck.get("model") != "sketch2face":
        raise ValueError(f"{path} holds model {ck.get('model')!r}, not a Sketch2face checkpoint")
    stage = str(ck.get("stage"))
    if variant is not None and stage != variant:
        raise ValueError(f"{path} is variant {stage!r}, not {variant!r}")
    spec = Sketch2Face.stages[stage]
    ms = {k: float(v) for k, v in (ck.get("metrics") or {}).items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}
    size = int(ck["config"]["data"]["image_size"])
    desc = description or f"Sketch2face (seed 004), variant {stage}: sketch -> face, {size}x{size}"
    val = {k: ms[k] for k in ("val_loss", "val_l1_sketch_cycle", "val_l1_face_cycle") if k in ms}
    summary = f"variant {stage}" + (f", validation cycle L1 {val['val_loss']:.4f}" if "val_loss" in val else "")
    md = metrics_md or ("| metric (validation, latent means) | value |\n|---|---:|\n"
                        + "\n".join(f"| {k} | {v:.4f} |" for k, v in val.items()))
    return export_system(path, name, desc, facts={"variant": f"{stage}: {spec.description}", **dict(facts or {})},
                         metrics={"summary": summary, **val, **dict(metrics or {})}, metrics_md=md,
                         use=[f"pycompgen generate --pretrained {name} --sketches DIR --out DIR   # one PNG per "
                              f"sketch"], zoo_dir=zoo_dir, check_images=check_images, tolerance=tolerance,
                         parts=[p for p in VAES + LATENT if p in spec.uses], extra={"variant": stage}, log=log)


def _edgediff_point(lc, bits: int, faces: torch.Tensor) -> dict:
    """Real files of ``faces`` (one per face) at ``bits``: bpp with header and SSIM of each decoding."""
    from pycompgen.inference import edgediff
    from pycompgen.ops import ssim
    lc.bits = bits
    files = edgediff.compress_batch(lc, faces)
    blobs = [(f"face{i}", d) for i, d in enumerate(files)]
    n, h, w = faces.shape[0], faces.shape[-2], faces.shape[-1]
    out = {"n": n, "bytes_mean": sum(map(len, files)) / n, "bpp": 8 * sum(map(len, files)) / (n * h * w)}
    for mode, key in (("none", "ssim_wo"), ("sdc", "ssim_sdc"), ("full", "ssim")):
        x_hat = torch.cat([x for x, _ in edgediff.decompress_batch(lc, blobs, mode)])
        out[key] = float(ssim(x_hat.clamp(0, 1), faces))
    return out


def export_edgediff(checkpoint, name="edgediff-64", description="", *, faces=None, faces_label="synthetic",
                    facts=None, metrics_md="", zoo_dir=None, check_images=64, tolerance=0.002, log=print) -> dict:
    """The edge-guided diffusion compressor's last stage (``checkpoint``: its best.pt, or a run folder with
    completer/, entropy/ or denoiser/best.pt) -> zoo entry ``name``: one weights file (vae, eb, een, unet, control,
    null and the completer's filler when trained; float16 unless
    the full receiver's SSIM moves by >= ``tolerance``) and one rate point per bit depth, quality 1 = the fewest
    bits, sharing it; default quality: the trained ``eval_bits``. Each point's bpp and SSIM (decoded with
    --denoise none / sdc / full) are measured on real files of ``faces`` (N×3×H×W in [0, 1]; default synthetic)."""
    from pycompgen.data import synthetic_faces, to_float01
    from pycompgen.inference import edgediff
    from pycompgen.models import load_for_eval
    from pycompgen.models.checkpoint import save_checkpoint
    from pycompgen.zoo import card as cardmod
    from pycompgen.zoo.core import FORMAT, read_manifest, sha256_file, to_storage, write_manifest, \
        zoo_dir as default_zoo

    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad entry name {name!r}")
    path = Path(checkpoint)
    if path.is_dir():
        path = edgediff.run_checkpoint(path)[1]
    zdir = Path(zoo_dir) if zoo_dir else default_zoo()
    lc = edgediff.check_model(load_for_eval(path, expect_model="edgediff"))
    size = lc.image_size
    if faces is None:
        faces = to_float01(synthetic_faces(check_images, size, seed=7))
    full = {k: lc.models[k].state_dict() for k in edgediff.PARTS + (("filler",) if "filler" in lc.parts else ())}
    dtype = torch.float16
    stored = {k: to_storage(sd, dtype) for k, sd in full.items()}
    delta = output_change(lc, stored, faces[:check_images])
    if delta >= tolerance:
        log(f"{name}: SSIM moves by {delta:.5f} >= {tolerance} in float16; keeping float32")
        dtype, delta = torch.float32, 0.0
        stored = {k: to_storage(sd, dtype) for k, sd in full.items()}
    payload = {"format": FORMAT, "model": "edgediff", "stage": lc.stage, "epoch": lc.epoch,
               "config": lc.config.to_dict(), "dtype": str(dtype).replace("torch.", ""), "models": stored,
               "shared": {}, "metrics": {k: float(v) for k, v in lc.metrics.items()
                                         if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    f = save_checkpoint(zdir / "weights" / name / f"{lc.stage}.pt", payload)
    file_info = {"file": f.relative_to(zdir).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size,
                 "dtype": payload["dtype"], "parts": sorted(full), "shared": {}, "epoch": lc.epoch,
                 "ssim_change": round(delta, 6)}
    c = edgediff.receiver_config(lc)
    points = []
    for q, bits in enumerate(sorted(lc.models["eb"].bits), 1):
        fp = _edgediff_point(lc, bits, faces)
        points.append({"quality": q, "stage": lc.stage, "bits": bits, **file_info,
                       **{k: round(v, 5) if isinstance(v, float) else v for k, v in fp.items()}})
        log(f"{name} quality {q}: {bits} bits, {fp['bpp']:.3f} bpp, SSIM {fp['ssim_wo']:.4f} / {fp['ssim_sdc']:.4f}"
            f" / {fp['ssim']:.4f} (none / sdc / full) on {fp['n']} {faces_label} faces")
    default = next(p["quality"] for p in points if p["bits"] == c.eval_bits)
    export_info = {"dtype": payload["dtype"], "tolerance": tolerance, "check_images": min(check_images, len(faces)),
                   "check_source": faces_label, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows = ["| quality | bits | bpp (file, header included) | SSIM --denoise none | sdc | full |",
            "|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {p['quality']} | {p['bits']} | {p['bpp']:.3f} | {p['ssim_wo']:.4f} | {p['ssim_sdc']:.4f} | "
             f"{p['ssim']:.4f} |" for p in points]
    text = cardmod.render_system(
        name, description or f"Edge-guided diffusion compression (paper 002), {size}x{size}", "edgediff", lc.stage,
        lc.config, points[default - 1], {"rate points": f"one set of weights; --quality 1..{len(points)} = "
                                         f"{', '.join(str(p['bits']) for p in points)} bits", **dict(facts or {})},
        f"Real files on {faces_label} faces, one per face ({c.steps} DDIM steps):\n\n" + "\n".join(rows)
        + ("\n\n" + metrics_md if metrics_md else ""),
        [f"pycompgen compress --pretrained {name} --quality {default} faces/ -o out/",
         f"pycompgen decompress out/*.pcg -o decoded/ [--denoise none|sdc|full]   # finds {name} from the file"],
        export_info)
    cpath = write_card(zdir, name, text)
    man = read_manifest(zdir)
    man["entries"][name] = {
        "name": name, "description": description or f"Edge-guided diffusion compression (paper 002), {size}x{size}",
        "model": "edgediff", "image_size": int(size), "stages": {lc.stage: points[default - 1]},
        "rate_points": points, "default_quality": default,
        "metrics": {"summary": ", ".join(f"q{p['quality']} {p['bits']} bits {p['bpp']:.2f} bpp SSIM {p['ssim']:.3f}"
                                         for p in points), "faces": faces_label},
        "card": cpath.relative_to(zdir).as_posix(), "source": {"checkpoint": _rel(path)}, "export": export_info}
    write_manifest(man, zdir)
    log(f"zoo: entry {name!r} ({payload['dtype']}, {file_info['bytes'] / 1e6:.2f} MB, SSIM change {delta:.5f}) with "
        f"{len(points)} rate points -> {zdir / 'manifest.json'}, card {cpath}")
    return man["entries"][name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", help="Compgen run folder with <stage>/best.pt; with --variant a Sketch2face run; "
                                      "one with denoiser/ an edgediff run (its entropy/ stage when present)")
    ap.add_argument("--checkpoint", help="another system's one-stage checkpoint (e.g. runs/began-A/train/best.pt, "
                                         "an edgediff entropy/best.pt, a Sketch2face <variant>/best.pt)")
    ap.add_argument("--variant", help="Sketch2face: the stage to export (pretrain, cycle, stitched, latent)")
    ap.add_argument("--name", required=True, help="zoo entry name, e.g. compgen-64")
    ap.add_argument("--results", help="results JSON (bench/quality.py output, or a sweep.json) for the card")
    ap.add_argument("--description", default="", help="one-line description")
    ap.add_argument("--zoo-dir", help="zoo folder (default $PYCOMPGEN_ZOO_DIR or pycompgen/zoo)")
    ap.add_argument("--check-images", type=int, default=64, help="images for the fp16 SSIM check (default 64)")
    ap.add_argument("--data", help="face data for the check (default: synthetic faces)")
    ap.add_argument("--split", default="val", help="split of --data for the check (default val)")
    ap.add_argument("--tolerance", type=float, default=0.002, help="largest allowed SSIM change (default 0.002)")
    ap.add_argument("--strict", action="store_true", help="refuse to export when fp16 fails (default: keep fp32)")
    a = ap.parse_args(argv)
    if bool(a.run_dir) == bool(a.checkpoint):
        ap.error("give --run-dir (a Compgen run) or --checkpoint (another system's checkpoint)")
    common = dict(zoo_dir=a.zoo_dir, check_images=a.check_images, tolerance=a.tolerance)
    try:
        src = a.checkpoint or a.run_dir
        model = None
        if a.checkpoint and not a.variant:
            from pycompgen.models import load_checkpoint
            model = load_checkpoint(a.checkpoint).get("model")
        if a.variant or model == "sketch2face":
            export_sketch2face(src, a.variant, a.name, a.description, **common)
        elif model == "edgediff" or (a.run_dir and (Path(a.run_dir) / "denoiser").is_dir()):
            export_edgediff(src, a.name, a.description, **common)
        elif a.checkpoint:
            export_system(a.checkpoint, a.name, a.description, **common)
        else:
            export(a.run_dir, a.name, a.results, a.description, a.zoo_dir, a.check_images, a.data, a.split,
                   a.tolerance, a.strict)
    except (ValueError, FileNotFoundError) as e:
        print(f"zoo_export: error: {e}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
