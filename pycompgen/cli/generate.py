"""``pycompgen generate``: faces from hand-drawn sketches, or unconditionally from pure noise, with an approach
checkpoint or a zoo entry; a Sketch2face entry (``--pretrained sketch2face-64``) translates sketches only."""
from __future__ import annotations

import math
import time
from pathlib import Path

from pycompgen.evaluation.figures import psnr_key

from .common import _checkpoint_spec, _get, _out_dir, _pretrained, _pretrained_out, add_common


def add_parser(sub) -> None:
    g = sub.add_parser("generate", help="faces from hand-drawn sketches or unconditionally from pure noise")
    add_common(g)
    g.add_argument("--checkpoint", metavar="PATH", help="trained checkpoint (default: OUT/approach3/best.pt)")
    g.add_argument("--sketches", metavar="DIR", help="folder of hand-drawn sketches")
    g.add_argument("--unconditional", type=int, metavar="N", help="generate N faces from pure noise")
    g.add_argument("--psnr", type=float, metavar="DB", help="channel PSNR in dB (default: -5 for generation)")
    g.add_argument("--pretrained", metavar="NAME", help="generate with a pretrained zoo model (its approach3; see "
                   "'pycompgen zoo list'), or translate --sketches with a Sketch2face entry; not with --checkpoint")


def run(cfg, args) -> int:
    """Faces from ``--sketches DIR`` and/or ``--unconditional N`` with an approach checkpoint (default:
    <out>/approach3/best.pt), channel at ``--psnr`` (default −5 dB)."""
    from pycompgen.evaluation.generate import DEFAULT_GEN_PSNR, run_sketches, run_unconditional
    from pycompgen.evaluation.sweep import resolve_device, write_json
    from pycompgen.models import load_for_eval, resolve_checkpoints
    from pycompgen.systems.compgen.networks import compgen_latent_shape

    sketches, n_unc = _get(args, "sketches"), _get(args, "unconditional")
    if not sketches and n_unc is None:
        raise ValueError("nothing to generate: give --sketches DIR and/or --unconditional N")
    if n_unc is not None and int(n_unc) < 1:
        raise ValueError(f"--unconditional needs N >= 1, got {n_unc}")
    if sketches and not Path(sketches).is_dir():
        raise FileNotFoundError(f"sketch folder not found: {sketches}")
    spec = _checkpoint_spec(args)
    pre = _pretrained(cfg, args)
    if pre is not None and pre[next(iter(pre))].model_name == "sketch2face":
        return _sketch2face(args, pre, sketches, n_unc)
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
        lat = "x".join(str(v) for v in compgen_latent_shape(lc.config.model, lc.image_size))
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
        files = (res.get("sketches", {}).get("grids", []) + ([res["sketches"]["faces"] + "/ (one PNG per sketch)"]
                                                              if "sketches" in res else [])
                 + ([res["unconditional"]["grid"]] if "unconditional" in res else []))
        print(f"{label}: " + ", ".join(files))
    write_json(out / "generate.json", summary)
    print(f"generate: {len(ckpts)} checkpoint(s), channel PSNR {psnr_key(psnr)} dB, "
          f"{time.perf_counter() - t0:.1f} s -> {out}")
    return 0


def _sketch2face(args, pre, sketches, n_unc) -> int:
    """``--sketches DIR`` through a Sketch2face entry's sketch -> face translator (latent means): one PNG per sketch
    (its stem) and sketch | face grids in the output folder."""
    from pycompgen.evaluation.generate import run_sketch2face
    from pycompgen.evaluation.sweep import write_json
    if n_unc is not None:
        raise ValueError(f"--unconditional is not supported by {pre.name!r} (a Sketch2face model translates "
                         f"--sketches only)")
    if _get(args, "psnr") is not None:
        raise ValueError(f"--psnr sets Compgen's channel; {pre.name!r} (Sketch2face) has none")
    if not sketches:
        raise ValueError(f"{pre.name!r} translates sketches: give --sketches DIR")
    lc = pre[next(iter(pre))]
    out = _pretrained_out(args, pre, "generate")
    t0 = time.perf_counter()
    res = run_sketch2face(lc.models, sketches, out, lc.image_size, title=f"{pre.name} ({lc.stage})")
    res.pop("names", None)
    write_json(out / "generate.json", {"pretrained": pre.name, "variant": lc.stage, "sketches": res})
    print(f"{lc.stage}: " + ", ".join(res["grids"]) + f", {out}/ (one PNG per sketch)")
    print(f"generate: {res['n']} sketch(es) -> faces with {pre.name} ({lc.stage}), "
          f"{time.perf_counter() - t0:.1f} s -> {out}")
    return 0
