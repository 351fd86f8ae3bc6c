"""``pycompgen evaluate`` and ``pycompgen generate`` (called by pycompgen.cli with the parsed config and arguments).

Checkpoints: ``--checkpoint [LABEL=]PATH`` (repeatable; a file or a run folder with <stage>/best.pt), default the
run folder ``out``. Outputs go to ``--out`` when checkpoints are named explicitly, else to ``<out>/eval`` or
``<out>/generate`` inside the run folder.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from .figures import psnr_key


def _get(args, name, default=None):
    return getattr(args, name, default) if args is not None else default


def _checkpoint_spec(args):
    spec = _get(args, "checkpoints") or _get(args, "checkpoint")
    if isinstance(spec, str):
        spec = [spec]
    return list(spec) if spec else []


def _psnrs(cfg, args) -> list[float]:
    p = _get(args, "psnrs")
    if p is None or p == [] or p == "":
        return [float(v) for v in cfg.eval.psnrs]
    if isinstance(p, str):
        p = [s for s in p.replace(",", " ").split()]
    try:
        return [float(v) for v in p]
    except ValueError:
        raise ValueError(f"--psnrs must be numbers of dB (e.g. 50,25,10,0,-2,-5), got {p!r}") from None


def _out_dir(cfg, args, spec, sub: str) -> Path:
    if spec and _get(args, "out"):
        return Path(args.out)
    return Path(cfg.out) / sub


def _pretrained(cfg, args):
    """``--pretrained NAME`` -> the loaded zoo entry (pycompgen.zoo.Pretrained), or None without the flag."""
    name = _get(args, "pretrained")
    if not name:
        return None
    if _checkpoint_spec(args):
        raise ValueError("--pretrained and --checkpoint are mutually exclusive: give one of them")
    from pycompgen import zoo
    from .sweep import resolve_device
    return zoo.load(name, device=resolve_device(cfg.train.device))


def _pretrained_out(args, pre, sub: str) -> Path:
    return Path(args.out) if _get(args, "out") else Path("runs") / "pretrained" / pre.name / sub


def cli_evaluate(cfg, args) -> int:
    """Channel-PSNR sweep of the checkpoints; prints the SSIM table and writes sweep.json/.md, plot, grids."""
    from .inference import resolve_checkpoints
    from .sweep import format_pivot, sweep

    pre = _pretrained(cfg, args)
    spec = _checkpoint_spec(args)
    ckpts = dict(pre.stages) if pre is not None else resolve_checkpoints(spec, default_dir=cfg.out)
    from pycompgen.systems import get_system
    from pycompgen.training.checkpoint import load_checkpoint
    for label, path in ckpts.items():
        if pre is not None:
            break
        name = load_checkpoint(path).get("model")
        if not get_system(name).psnr_sweep:
            raise ValueError(f"{path} is a {name!r} checkpoint: evaluate runs Compgen's channel-PSNR sweep; measure "
                             f"{name} with bench/rd.py --model {label}={path} --models-only")
    out = _out_dir(cfg, args, spec, "eval") if pre is None else _pretrained_out(args, pre, "eval")
    split = _get(args, "split") or cfg.eval.split
    t0 = time.perf_counter()
    if pre is not None:
        from pycompgen.zoo.run import sweep_pretrained
        res = sweep_pretrained(cfg, pre, data=cfg.data.path, psnrs=_psnrs(cfg, args), out_dir=out, split=split,
                               progress=bool(getattr(cfg.train, "progress", False)))
    else:
        res = sweep(cfg, ckpts, data=cfg.data.path, psnrs=_psnrs(cfg, args), out_dir=out, split=split,
                    progress=bool(getattr(cfg.train, "progress", False)))
    c, h, w = res["latent_shape"]
    print(f"\nSSIM of x_hat vs x, {res['n_images']} {split} images, latent {c}x{h}x{w}, channel PSNR in dB:")
    print(format_pivot(res, "ssim", markdown=False))
    if res.get("approaches"):
        print("\nedge-F1 (Canny(x_hat) vs clean edges):")
        print(format_pivot(res, "edge_f1", markdown=False))
    best = _best_line(res)
    print(f"\nevaluate: {len(ckpts)} checkpoint(s) in {time.perf_counter() - t0:.1f} s{best} -> {out}/sweep.json, "
          f"sweep.md, ssim_vs_psnr.png, grids/")
    return 0


def _best_line(res) -> str:
    parts = []
    if res.get("ae") is not None:
        parts.append(f"AE SSIM {res['ae']['ssim']:.4f}")
    for lab, per in res.get("approaches", {}).items():
        ks = list(per)
        if ks:
            parts.append(f"{lab} SSIM {per[ks[0]]['ssim']:.4f} @ {ks[0]} dB .. {per[ks[-1]]['ssim']:.4f} "
                         f"@ {ks[-1]} dB")
    return (": " + "; ".join(parts)) if parts else ""


def cli_generate(cfg, args) -> int:
    """Faces from ``--sketches DIR`` and/or ``--unconditional N`` with an approach checkpoint (default:
    <out>/approach3/best.pt), channel at ``--psnr`` (default −5 dB)."""
    from .generate import DEFAULT_GEN_PSNR, run_sketches, run_unconditional
    from .inference import load_for_eval, resolve_checkpoints
    from .sweep import resolve_device, write_json

    sketches, n_unc = _get(args, "sketches"), _get(args, "unconditional")
    if not sketches and n_unc is None:
        raise ValueError("nothing to generate: give --sketches DIR and/or --unconditional N")
    if n_unc is not None and int(n_unc) < 1:
        raise ValueError(f"--unconditional needs N >= 1, got {n_unc}")
    if sketches and not Path(sketches).is_dir():
        raise FileNotFoundError(f"sketch folder not found: {sketches}")
    spec = _checkpoint_spec(args)
    pre = _pretrained(cfg, args)
    if pre is not None:
        stage = pre.elm_stage()
        ckpts = {stage: pre[stage].path}
    elif spec:
        ckpts = resolve_checkpoints(spec)
        if len(ckpts) > 1:
            ckpts = {k: v for k, v in ckpts.items() if k != "step1"}
    else:
        default = Path(cfg.out) / "approach3" / "best.pt"
        if not default.is_file():
            raise FileNotFoundError(f"checkpoint not found: {default} (train the pipeline into {cfg.out} or pass "
                                    f"--checkpoint PATH)")
        ckpts = {"approach3": str(default)}
    psnr = float(_get(args, "psnr")) if _get(args, "psnr") is not None else DEFAULT_GEN_PSNR
    if math.isnan(psnr):
        raise ValueError("--psnr must be a number of dB")
    out = _out_dir(cfg, args, spec, "generate") if pre is None else _pretrained_out(args, pre, "generate")
    dev = resolve_device(cfg.train.device)
    seed = int(cfg.eval.seed)
    summary = {"psnr": psnr, "seed": seed, "checkpoints": {}, "outputs": {}}
    t0 = time.perf_counter()
    for label, path in ckpts.items():
        lc = pre[label] if pre is not None else load_for_eval(path, label=label, expect_model=cfg.model.name,
                                                              device=dev)
        if not lc.has_elm:
            raise ValueError(f"checkpoint {path} is from stage {lc.stage!r}, which has no trained ELM h: "
                             f"generate needs an approach1/2/3 checkpoint")
        from pycompgen.models import latent_shape
        lat = "x".join(str(v) for v in latent_shape(lc.config.model, lc.image_size))
        title = f"{label} (latent {lat})"
        sub = out if len(ckpts) == 1 else out / label
        res = {}
        if sketches:
            res["sketches"] = run_sketches(lc.models, sketches, sub, lc.image_size, psnr=psnr, seed=seed,
                                           title=title)
            res["sketches"].pop("names", None)
        if n_unc is not None:
            res["unconditional"] = run_unconditional(lc.models, int(n_unc), sub, lc.image_size, psnr=psnr,
                                                     seed=seed, title=title)
        summary["checkpoints"][label] = lc.info() | {"latent_shape": [int(v) for v in lat.split("x")]}
        if pre is not None:
            summary["checkpoints"][label]["pretrained"] = pre.name
        summary["outputs"][label] = res
        files = (res.get("sketches", {}).get("grids", []) + ([res["unconditional"]["grid"]]
                                                              if "unconditional" in res else []))
        print(f"{label}: " + ", ".join(files))
    write_json(out / "generate.json", summary)
    print(f"generate: {len(ckpts)} checkpoint(s), channel PSNR {psnr_key(psnr)} dB, "
          f"{time.perf_counter() - t0:.1f} s -> {out}")
    return 0
