#!/usr/bin/env python
"""Export a trained Compgen run into the model zoo (pycompgen/zoo, or $PYCOMPGEN_ZOO_DIR / --zoo-dir).

    python tools/zoo_export.py --run-dir runs/quality-cpu2 --name compgen-64 \
        --results bench/results/quality-cpu2.json --description "Compgen, paper recipe, 64x64 CelebA"

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


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and torch.equal(a[k], b[k]) for k in a)


@torch.no_grad()
def ssim_change(lc, stored: dict, x: torch.Tensor, psnrs, seed: int = 0) -> float:
    """Largest |mean SSIM(fp32 x̂, x) - mean SSIM(stored-precision x̂, x)| over ``psnrs`` (AE: one value)."""
    import copy
    from pycompgen.data import EdgeChannel
    from pycompgen.ops import ssim
    from pycompgen.systems.compgen.system import decode_edges
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
        a = float(ssim(decode_edges(m32, zn).clamp(0, 1), x))
        b = float(ssim(decode_edges(m16, zn).clamp(0, 1), x))
        worst = max(worst, abs(a - b))
    return worst


def check_faces(cfg, data, split, n):
    from pycompgen.data import load_faces
    from pycompgen.evaluation.sweep import face_batch
    faces = load_faces(data, split=split, image_size=cfg.data.image_size, cache_dir=cfg.data.cache_dir,
                       synthetic_count=max(n * 8, 64), seed=cfg.train.seed)
    n = min(n, len(faces))
    x = face_batch(faces, 0, n).float() / 255.0
    return x, ("synthetic" if data is None else f"{data} ({split})"), n


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
    cpath = zdir / "cards" / f"{name}.md"
    cpath.parent.mkdir(parents=True, exist_ok=True)
    cpath.write_text(text)
    tr = cardmod.training_psnr(last)
    man = read_manifest(zdir)
    man.setdefault("default", DEFAULT_NAME)
    man["entries"][name] = {
        "name": name, "description": desc, "model": loaded[base].model_name,
        "image_size": int(last.data.image_size), "latent_shape": lat, "training": tr,
        "stages": entries, "metrics": cardmod.metrics_summary(results.get("sweep") or {}),
        "card": cpath.relative_to(zdir).as_posix(),
        "source": {"run_dir": str(run_dir), "results": str(results_path) if results_path else None,
                   "machine": results.get("machine"), "date_utc": results.get("date_utc")},
        "export": export_info}
    write_manifest(man, zdir)
    log(f"zoo: entry {name!r} -> {zdir / 'manifest.json'}, card {cpath}, "
        f"{sum(e['bytes'] for e in entries.values()) / 1e6:.2f} MB in {wdir}")
    return man["entries"][name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="run folder with <stage>/best.pt")
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
    try:
        export(a.run_dir, a.name, a.results, a.description, a.zoo_dir, a.check_images, a.data, a.split,
               a.tolerance, a.strict)
    except (ValueError, FileNotFoundError) as e:
        print(f"zoo_export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
