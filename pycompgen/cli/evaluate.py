"""``pycompgen evaluate``: the channel-PSNR sweep of trained Compgen checkpoints or a zoo entry; any other zoo
entry (``--pretrained NAME``: a latent codec, edgediff, a refiner, Sketch2face) gets the evaluation of its kind
(``pycompgen.evaluation.entries``: eval.json and eval.md).

Checkpoints: ``--checkpoint [LABEL=]PATH`` (repeatable; a file or a run folder with <stage>/best.pt), default the
run folder ``out``. Outputs go to ``--out`` when checkpoints are named explicitly, else to ``<out>/eval`` inside
the run folder (``runs/pretrained/<name>/eval`` for ``--pretrained``).
"""
from __future__ import annotations

import time

from .common import _checkpoint_spec, _get, _out_dir, _pretrained, _pretrained_out, _psnrs, add_common


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="PSNR sweep of trained checkpoints (SSIM, MS-SSIM, PSNR, L1, L2, edge-F1), "
                       "or the evaluation of any --pretrained zoo entry's kind")
    add_common(e)
    e.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]PATH",
                   help="checkpoint to evaluate (repeatable; default: the run folder's stages)")
    e.add_argument("--split", help="data split (sets eval.split)")
    e.add_argument("--psnrs", metavar="DB,DB,...", help="channel PSNRs in dB, e.g. 50,25,10,0,-2,-5 "
                   "(default eval.psnrs)")
    e.add_argument("--pretrained", metavar="NAME", help="evaluate a pretrained zoo model (see 'pycompgen zoo list'); "
                   "not with --checkpoint")
    e.add_argument("--train-subset", type=int, default=1000, metavar="N",
                   help="also sweep N fixed training faces and report the train - val gap (default 1000; 0: off)")
    e.add_argument("--quality", action="append", metavar="Q[,Q...]",
                   help="rate points of a --pretrained latent codec or edgediff entry to measure (default: all; "
                   "1 = the lowest rate)")
    e.add_argument("--denoise", action="append", metavar="MODE[,MODE...]",
                   help="decodings of a --pretrained edgediff entry to measure: none, sdc, full (default: all three)")
    e.add_argument("--sketches", metavar="DIR", help="sketches for a --pretrained Sketch2face entry (default: the "
                   "entry's sketch2face.sketch_path with real --data, else synthetic sketches)")


def run(cfg, args) -> int:
    """Channel-PSNR sweep of the checkpoints; prints the SSIM table and writes sweep.json/.md, plot, grids."""
    from pycompgen.evaluation.sweep import format_pivot, resolve_device, sweep_loaded, sweep_pretrained
    from pycompgen.models import load_checkpoint, load_for_eval, resolve_checkpoints
    from pycompgen.registry import get_system

    pre = _pretrained(cfg, args)
    if pre is not None:
        from pycompgen.evaluation.entries import entry_kind
        if entry_kind(pre) is not None:
            return _run_entry(cfg, args, pre)
    for flag, kind in (("quality", "latent codec or edgediff"), ("denoise", "edgediff"), ("sketches", "Sketch2face")):
        if _get(args, flag):
            raise ValueError(f"--{flag} applies to a --pretrained {kind} entry; " + (
                f"{pre.name!r} is a Compgen edge model (channel-PSNR sweep)" if pre else "not to --checkpoint"))
    spec = _checkpoint_spec(args)
    ckpts = dict(pre.stages) if pre is not None else resolve_checkpoints(spec, default_dir=cfg.out)
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
        res = sweep_pretrained(cfg, pre, data=cfg.data.path, psnrs=_psnrs(cfg, args), out_dir=out, split=split,
                               progress=bool(getattr(cfg.train, "progress", False)))
    else:  # loaded once: the sweep and the training-subset sweep share them
        dev = resolve_device(cfg.train.device)
        loaded = {lab: load_for_eval(p, label=lab, expect_model=cfg.model.name, device=dev)
                  for lab, p in ckpts.items()}
        res = sweep_loaded(cfg, loaded, data=cfg.data.path, psnrs=_psnrs(cfg, args), out_dir=out, split=split,
                           device=dev, progress=bool(getattr(cfg.train, "progress", False)))
    n_sub = int(_get(args, "train_subset", 0) or 0)
    if n_sub < 0:
        raise ValueError(f"--train-subset must be >= 0, got {n_sub}")
    if n_sub and split != "train":
        from pycompgen.evaluation.generalise import add_train_subset
        add_train_subset(cfg, dict(pre.stages) if pre is not None else loaded, res, out, n_sub)
    c, h, w = res["latent_shape"]
    print(f"\nSSIM of x_hat vs x, {res['n_images']} {split} images, latent {c}x{h}x{w}, channel PSNR in dB:")
    print(format_pivot(res, "ssim", markdown=False))
    if res.get("train_subset"):
        ts = res["train_subset"]
        print(f"\nSSIM on {ts['n_images']} fixed training faces (gap = train - {split}):")
        print(format_pivot({**res, "ae": ts["ae"], "approaches": ts["approaches"]}, "ssim", markdown=False))
        for lab, per in ts["gap"].items():
            if lab != "ae":
                print(f"gap {lab}: " + ", ".join(f"{k} dB {v['ssim']:+.4f}" for k, v in per.items()))
    if res.get("approaches"):
        print("\nedge-F1 (Canny(x_hat) vs clean edges):")
        print(format_pivot(res, "edge_f1", markdown=False))
    best = _best_line(res)
    print(f"\nevaluate: {len(ckpts)} checkpoint(s) in {time.perf_counter() - t0:.1f} s{best} -> {out}/sweep.json, "
          f"sweep.md, ssim_vs_psnr.png, grids/")
    return 0


def _run_entry(cfg, args, pre) -> int:
    """A zoo entry other than a Compgen edge model: the evaluation of its kind (pycompgen.evaluation.entries)."""
    from pycompgen.evaluation.entries import describe, evaluate_entry, format_table, parse_list
    if _get(args, "psnrs"):
        raise ValueError(f"--psnrs sets Compgen's channel-PSNR sweep; {pre.name!r} has no channel")
    out = _pretrained_out(args, pre, "eval")
    split = _get(args, "split") or cfg.eval.split
    t0 = time.perf_counter()
    res = evaluate_entry(cfg, pre, out, split=split, data=cfg.data.path,
                         qualities=parse_list(_get(args, "quality"), "--quality", int),
                         denoise=parse_list(_get(args, "denoise"), "--denoise"), sketches=_get(args, "sketches"),
                         train_subset=int(_get(args, "train_subset", 0) or 0),
                         progress=bool(getattr(cfg.train, "progress", False)), note=lambda *a: None)
    print(f"\n{describe(res)}")
    print(format_table(res))
    if res.get("train_subset"):
        ts = res["train_subset"]
        print(f"train: {ts['n_images']} fixed training faces ({ts['source']}); gap = train - {split}")
    for k, what in (("train_subset_skipped", "training subset"), ("realism_skipped", "realism")):
        if res.get(k):
            print(f"{what}: {res[k]}")
    print(f"\nevaluate: {pre.name} in {time.perf_counter() - t0:.1f} s -> {out}/eval.json, eval.md")
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
