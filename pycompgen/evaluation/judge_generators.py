"""Generator adapters for ``pycompgen.evaluation.judge``: every generator of the project as a row of one table.

An adapter is a function ``(models, batch) -> images`` (N×3×H×W in [0, 1]). ``batch`` is built from real faces:

    {"x": faces (N,3,H,W) [0,1], "z": clean Canny edge map (N,1,H,W) {0,1} (the checkpoint's channel thresholds),
     "z_noisy": awgn(z) at the row's PSNR, "sketch": the edge map / sketch the generator is fed (N,1,H,W) [0,1]}

A ``GeneratorSpec`` names the row, holds the models, the adapter, which batch entries serve as faithfulness
references (``source``: "x" -> SSIM/MS-SSIM, or a refiner's low-res SSIM; ``sketch``: "z"/"sketch" -> edge-F1),
and the channel PSNR. ``discover(run_dir, zoo=...)`` lists what exists and prints a note for what is absent.

Systems being written elsewhere plug in through ``ADAPTERS`` (name -> adapter) and ``register_adapter``:
``began`` (the refiner: ``BEGAN.refine(models, x)``; faithfulness = SSIM of the output and the input, both
downscaled to 16×16), ``sketch2face`` (``SYSTEM.sketch_to_face(models, s)`` with the edge map drawn as dark lines on white in [-1, 1],
its tanh output mapped to [0, 1]; edge-F1 of Canny(output) against the edge map).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

Adapter = Callable[[dict, dict], torch.Tensor]
PSNRS = (50.0, -5.0)


@dataclass
class GeneratorSpec:
    name: str
    system: str
    models: dict
    adapter: Adapter
    psnr: Optional[float] = None          # channel PSNR of z_noisy (None: no channel)
    source: Optional[str] = None          # batch key compared with SSIM / MS-SSIM (or low-res SSIM)
    source_kind: str = "image"
    lowres_size: Optional[int] = None
    sketch: Optional[str] = None          # batch key compared by edge-F1
    pure_noise: bool = False              # z = 0 before the channel (unconditional generation)
    channel: object = None                # pycompgen.data.EdgeChannel of the checkpoint (Canny thresholds)
    inputs: Optional[torch.Tensor] = None  # own inputs instead of the real faces' (e.g. CUFSF sketches N×1×H×W [0, 1])
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- adapters
def compgen_elm(models: dict, batch: dict) -> torch.Tensor:
    """x̂ = decode_edges(models, z_noisy): Compgen's reconstruction from the noisy edge map (with a colour-hint
    model, also from the face's hint through the channel at the batch's PSNR, seeded)."""
    from pycompgen.systems.compgen.system import decode_edges, hint_spec, make_hint
    hint = None
    if hint_spec(models)[0]:
        if batch.get("pure_noise"):
            raise ValueError("a colour-hint model has no unconditional generation: noise carries no hint")
        x = batch["x"]
        g = torch.Generator(device=x.device).manual_seed(7919)
        hint = make_hint(models, x, batch.get("psnr"), g)
    return decode_edges(models, batch["z_noisy"], hint)


def compgen_ae(models: dict, batch: dict) -> torch.Tensor:
    return models["g"](models["f"](batch["x"]))


def system_reconstruct(system: str, stage: str = "train") -> Adapter:
    def fn(models, batch):
        from pycompgen.registry import get_system
        return get_system(system).reconstruct(stage, models, batch)
    fn.__name__ = f"{system}_reconstruct"
    return fn


def began_refine(models: dict, batch: dict) -> torch.Tensor:
    from pycompgen.registry import get_system
    cls = get_system("began")
    if hasattr(cls, "refine"):
        return cls.refine(models, batch["x"])
    return cls.reconstruct("train", models, batch)


def sketch2face(models: dict, batch: dict) -> torch.Tensor:
    """Edge map z (1 = edge) drawn as dark lines on white in [-1, 1] (the sketch domain) -> face, mapped to [0, 1]."""
    from pycompgen.registry import get_system
    cls = get_system("sketch2face")
    if hasattr(cls, "sketch_to_face"):
        if "sketch_image" in batch:  # a sketch image (luminance in [0, 1], dark lines on white)
            s = batch["sketch_image"].float() * 2 - 1
        else:
            s = (1.0 - batch["sketch"].float()) * 2 - 1
        y = cls.sketch_to_face(models, s)
        return ((y.float() + 1) / 2).clamp(0, 1)   # the paper's tanh outputs in [-1, 1]
    return cls.reconstruct("cycle", models, batch).float()


ADAPTERS: dict = {"compgen-elm": compgen_elm, "compgen-ae": compgen_ae, "cvae": system_reconstruct("cvae"),
                  "dcgan": system_reconstruct("dcgan"), "began": began_refine, "sketch2face": sketch2face}


def register_adapter(name: str, fn: Adapter) -> None:
    ADAPTERS[name] = fn


# ----------------------------------------------------------------------------------------------- batches
def make_batch(x: torch.Tensor, spec: GeneratorSpec, seed: int = 0, device="cpu") -> dict:
    """Faces x (N,3,H,W) [0,1] -> the batch an adapter reads (see module docstring)."""
    from pycompgen.data import EdgeChannel
    ch = spec.channel or EdgeChannel(canny_low=0.30, canny_high=0.60, blur_sigma=None, psnr=50.0)
    x = x.to(device).float()
    z = ch.edges(x.clamp(0, 1).contiguous())
    b = {"x": x, "z": z, "sketch": z}
    if spec.psnr is not None:
        g = torch.Generator(device=device).manual_seed(int(seed))
        zin = torch.zeros_like(z) if spec.pure_noise else z
        b["z_noisy"] = ch.noisy(zin, psnr=float(spec.psnr), generator=g)
        b["psnr"], b["pure_noise"] = float(spec.psnr), bool(spec.pure_noise)
    return b


@torch.no_grad()
def generate(spec: GeneratorSpec, x: torch.Tensor, batch_size: int = 100, seed: int = 0, device="cpu"):
    """Run the adapter over faces x in batches -> (outputs, sources or None, sketches or None), all on CPU.
    A spec with its own ``inputs`` runs over those instead (one output each; no source, no sketch reference)."""
    outs, srcs, sks = [], [], []
    if spec.inputs is not None:
        for s in range(0, spec.inputs.shape[0], batch_size):
            y = spec.adapter(spec.models, {"sketch_image": spec.inputs[s:s + batch_size].to(device)})
            outs.append(y.float().cpu())
        return torch.cat(outs), None, None
    for i, s in enumerate(range(0, x.shape[0], batch_size)):
        b = make_batch(x[s:s + batch_size], spec, seed + i, device)
        y = spec.adapter(spec.models, b)
        outs.append(y.float().cpu())
        if spec.source:
            srcs.append(b[spec.source].float().cpu())
        if spec.sketch:
            sks.append(b[spec.sketch].float().cpu())
    cat = (lambda v: torch.cat(v) if v else None)
    return cat(outs), cat(srcs), cat(sks)


# ----------------------------------------------------------------------------------------------- discovery
def _channel(cfg):
    from pycompgen.data import EdgeChannel
    return EdgeChannel(canny_low=cfg.data.canny_low, canny_high=cfg.data.canny_high,
                       blur_sigma=cfg.data.blur_sigma, psnr=50.0)


def compgen_specs(models_of: Callable[[str], Optional[dict]], cfg, prefix: str, info: dict,
                  psnrs=PSNRS, noise_psnr: float = -5.0) -> list:
    """Rows of one Compgen run: step 1 (g(f(x))), each approach at each PSNR and from pure noise (not for a
    colour-hint model)."""
    from pycompgen.systems.compgen.system import hint_spec
    ch = _channel(cfg) if cfg is not None else None
    out = []
    s1 = models_of("step1")
    if s1 is not None and {"f", "g"} <= set(s1):
        out.append(GeneratorSpec(f"{prefix}step1 g(f(x))", "compgen", s1, ADAPTERS["compgen-ae"], None, "x",
                                 channel=ch, info=info))
    for stage in ("approach1", "approach2", "approach3"):
        m = models_of(stage)
        if m is None or not {"g", "h"} <= set(m):
            continue
        for p in psnrs:
            out.append(GeneratorSpec(f"{prefix}{stage} @{p:g} dB", "compgen", m, ADAPTERS["compgen-elm"], p, "x",
                                     sketch="z", channel=ch, info=info))
        if hint_spec(m)[0]:
            continue  # noise carries no colour hint: no unconditional row for a hint model
        out.append(GeneratorSpec(f"{prefix}{stage} pure noise @{noise_psnr:g} dB", "compgen", m,
                                 ADAPTERS["compgen-elm"], noise_psnr, pure_noise=True, channel=ch, info=info))
    return out


def _load(path, expect=None, device="cpu"):
    from pycompgen.models import load_for_eval
    return load_for_eval(path, expect_model=expect, device=device)


def discover(run_dir: Optional[str] = None, zoo: Optional[str] = None, extra: Optional[dict] = None,
             device="cpu", note=print) -> list:
    """GeneratorSpecs for what exists: Compgen runs (``run_dir/compgen/<stage>/``) and the zoo entry ``zoo``,
    ``run_dir/cvae``, ``run_dir/dcgan``, ``run_dir/began``, ``run_dir/sketch2face``; ``extra``: {label: checkpoint}
    for any other (its system picks the adapter). Absent ones are skipped with a printed note."""
    from pycompgen.models import stage_checkpoint
    specs = []
    rd = Path(run_dir) if run_dir else None
    if zoo:
        try:
            from pycompgen import zoo as Z
            from .judge import zoo_models
            pre = Z.load(zoo, device=device)
            cfg = getattr(pre, "config", None)
            specs += compgen_specs(lambda s: zoo_models(pre, s), cfg, f"zoo:{zoo} ", {"source": f"zoo:{zoo}"})
        except Exception as e:  # noqa: BLE001 -- a missing/unbuilt zoo entry is a note, not a failure
            note(f"judge: skipping zoo entry {zoo!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    if rd is not None:
        cg = rd / "compgen"
        if cg.is_dir():
            loaded = {}
            for st in ("step1", "approach1", "approach2", "approach3"):
                p = stage_checkpoint(cg / st)
                if p is not None:
                    loaded[st] = _load(p, "compgen", device)
            if loaded:
                cfg = next(iter(loaded.values())).config
                specs += compgen_specs(lambda s: loaded[s].models if s in loaded else None, cfg, "compgen ",
                                       {"source": str(cg), "checkpoints": {k: v.path for k, v in loaded.items()}})
        else:
            note(f"judge: no Compgen run in {cg}: skipped")
        for name in ("cvae", "dcgan"):
            p = stage_checkpoint(rd / name)
            if p is None:
                note(f"judge: no {name} checkpoint in {rd / name}: skipped")
                continue
            ck = _load(p, name, device)
            specs.append(GeneratorSpec(name, name, ck.models, ADAPTERS[name], None, "x", info={"checkpoint": str(p)}))
        for name in ("began", "sketch2face"):
            p = stage_checkpoint(rd / name)
            if p is None:
                note(f"judge: no {name} checkpoint in {rd / name}: skipped")
                continue
            specs += _plugin_specs(name, p, device, note)
    for label, path in (extra or {}).items():
        specs += loaded_specs(_load(path, None, device), label, str(path), device, note)
    return specs


def pretrained_specs(names, device="cpu", note=print) -> list:
    """GeneratorSpecs of zoo entries of any system (``pycompgen judge --pretrained NAME``): Compgen's stages, a
    refiner, a latent codec at its default rate point."""
    from pycompgen import zoo as Z
    specs = []
    for n in names or ():
        pre = Z.load(n, device=device)
        if pre[next(iter(pre))].model_name == "compgen" and "eb" not in pre[next(iter(pre))].parts:
            from .judge import zoo_models
            specs += compgen_specs(lambda s, pre=pre: zoo_models(pre, s), pre.config, f"zoo:{n} ",
                                   {"source": f"zoo:{n}"})
            continue
        for lc in pre.stages.values():
            specs += loaded_specs(lc, f"zoo:{n}", f"zoo:{n}", device, note)
    return specs


def loaded_specs(ck, label: str, path: str, device="cpu", note=print) -> list:
    """GeneratorSpecs of one loaded model (a checkpoint or a zoo stage): its system picks the adapter."""
    name = ck.model_name
    if name == "compgen" and "eb" in ck.parts:  # Compgen's autoencoder as a latent codec
        return [GeneratorSpec(label, name, ck.models, ADAPTERS["compgen-ae"], None, "x", info={"checkpoint": path})]
    if name == "compgen":
        return compgen_specs(lambda s: ck.models if s == ck.stage else None, ck.config, f"{label} ",
                             {"checkpoint": str(path)})
    if name in ("began", "sketch2face"):
        return _plugin_specs(name, path, device, note, label, loaded=ck)
    if name in ADAPTERS:
        return [GeneratorSpec(label, name, ck.models, ADAPTERS[name], None, "x", info={"checkpoint": str(path)})]
    note(f"judge: no adapter for system {name!r} ({path}): skipped (register_adapter)")
    return []


def _plugin_specs(name, path, device, note, label=None, loaded=None) -> list:
    try:
        ck = loaded if loaded is not None else _load(path, name, device)
    except Exception as e:  # noqa: BLE001 -- a system still being written: note and go on
        note(f"judge: cannot load {name} checkpoint {path} ({type(e).__name__}: {e}): skipped")
        return []
    info = {"checkpoint": str(path)}
    if name == "began":
        # the refiner sees downscaled inputs: compare at 16×16 (SSIM of the downscaled output and input)
        return [GeneratorSpec(label or "began refiner (CelebA input)", name, ck.models, ADAPTERS[name], None, "x",
                              source_kind="lowres", lowres_size=16, info=info)]
    label = label or "sketch2face"
    specs = [GeneratorSpec(f"{label} (Canny edge-map sketches)", name, ck.models, ADAPTERS[name], None,
                           sketch="sketch", info=info)]
    c = getattr(ck.config, "sketch2face", None)
    if c is not None and c.sketch_source == "cufsf" and c.sketch_path and Path(c.sketch_path).expanduser().is_dir():
        from pycompgen.data.unpaired import load_sketch_images
        sk = load_sketch_images(c.sketch_path, "val", ck.config.data.image_size)
        specs.append(GeneratorSpec(f"{label} (CUFSF val sketches)", name, ck.models, ADAPTERS[name], None,
                                   inputs=torch.from_numpy(sk)[:, None].float() / 255,
                                   info={**info, "inputs": f"{len(sk)} CUFSF validation sketches"}))
    return specs


__all__ = ["GeneratorSpec", "ADAPTERS", "register_adapter", "make_batch", "generate", "discover", "compgen_specs",
           "pretrained_specs", "loaded_specs",
           "compgen_elm", "compgen_ae", "began_refine", "sketch2face", "PSNRS"]


# ----------------------------------------------------------------------------------------------- table
def judge_all(specs: list, real: torch.Tensor, features, *, n_boot: int = 200, seed: int = 0, batch_size: int = 100,
              device="cpu", note=print) -> list:
    """Judge every spec on the faces ``real`` (N,3,H,W) [0,1]: the outputs from those faces (or, for pure-noise
    rows, from noise) against the same real faces. A row that fails is reported with its error, not raised."""
    from .judge import judge
    rf = features.extract(real)
    rows = []
    for spec in specs:
        try:
            y, src, sk = generate(spec, real, batch_size, seed, device)
            res = judge(y, real, src, sk, features=features, real_features=rf, source_kind=spec.source_kind,
                        lowres_size=spec.lowres_size, n_boot=n_boot, seed=seed)
            rows.append({"generator": spec.name, "system": spec.system, "psnr_db": spec.psnr,
                         "pure_noise": spec.pure_noise, "info": spec.info, **res})
        except Exception as e:  # noqa: BLE001 -- one broken generator must not lose the table
            note(f"judge: {spec.name}: {type(e).__name__}: {e}")
            rows.append({"generator": spec.name, "system": spec.system, "error": f"{type(e).__name__}: {e}"})
    return rows


def _f(v, nd=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{nd}g}" if abs(v) >= 1e3 or abs(v) < 1e-2 else f"{v:.{nd}f}"


def _ci(d, key="ci", nd=3):
    lo, hi = d.get(key, [None, None])
    return f"[{_f(lo, nd)}, {_f(hi, nd)}]" if lo is not None else ""


def format_table(rows: list) -> str:
    """Markdown table: realism (FD, KD with CIs), faithfulness, diversity, counts per generator."""
    ok = [r for r in rows if "error" not in r]
    label = ok[0]["realism"]["label"] if ok else "no rows"
    fdn = ok[0]["realism"]["fd_name"] if ok else "FD"
    kdn = ok[0]["realism"]["kd_name"] if ok else "KD"
    # KID of Inception features is ~1e-3 and conventionally shown x10³; other feature spaces have their own scale
    # (the polynomial kernel is not normalised), so their KD is shown as it is
    kd_scale = 1e3 if ok and ok[0]["realism"].get("standard") else 1.0
    kd_head = f"{kdn} ×10³" if kd_scale != 1.0 else kdn
    lines = [f"Realism: **{label}**. {fdn} on all n, and the mean over 200 random half-size subsets (n/2, without "
             "replacement) with its 95 % interval in brackets (FD grows as n shrinks: compare rows at equal n); "
             f"{kdn} (unbiased) likewise. Faithfulness: per-image means, 95 % bootstrap intervals.", "",
             f"| generator | n gen / real | {fdn} (n) | {fdn} (n/2) | {kd_head} (n/2) | SSIM | MS-SSIM | "
             f"SSIM low-res | edge-F1 (1 px) | diversity / real | near-dup share | collapse |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['generator']} | error: {r['error'][:80]} |" + " |" * 10)
            continue
        re_, fa, di = r["realism"], r["faithfulness"], r["diversity"]
        kd = {"kd_ci": [None if v is None else v * kd_scale for v in re_["kd_ci"]]}

        def fm(k):
            return f"{_f(fa[k]['mean'])} {_ci(fa[k])}" if k in fa else "–"
        ef = f"{_f(fa['edge_f1']['mean'])} ({_f(fa['edge_f1_1px']['mean'])})" if "edge_f1" in fa else "–"
        lines.append(f"| {r['generator']} | {re_['n_generated']} / {re_['n_real']} | {_f(re_['fd'])} | "
                     f"{_f(re_['fd_sub'])} {_ci(re_, 'fd_ci')} | {_f(re_['kd_sub'] * kd_scale)} {_ci(kd, 'kd_ci')} | "
                     f"{fm('ssim')} | "
                     f"{fm('ms_ssim')} | {fm('ssim_lowres')} | {ef} | {_f(di['ratio_to_real'])} | "
                     f"{_f(di['near_duplicate_share'])} | {'**yes**' if di['collapse'] else 'no'} |")
    noted = [r for r in ok if r["realism"].get("fd_note")]
    if noted:
        lines += ["", f"{fdn} of {', '.join(r['generator'] for r in noted)}: {noted[0]['realism']['fd_note']}."]
    return "\n".join(lines) + "\n"


__all__ += ["judge_all", "format_table"]


# ----------------------------------------------------------------------------------------------- command line
def real_faces(data: Optional[str], n: int, image_size: int = 64, split: str = "test", seed: int = 0) -> torch.Tensor:
    """n faces of ``split`` (synthetic when ``data`` is None) as float (n,3,H,W) in [0,1] (evenly spaced)."""
    import numpy as np
    from pycompgen.data import load_faces
    fa = load_faces(data, split=split, image_size=image_size, synthetic_count=max(8 * n, 64), seed=seed)
    total = len(fa)
    if total < 2:
        raise ValueError(f"judge: only {total} faces in {data or 'synthetic'} ({split})")
    idx = np.linspace(0, total - 1, min(n, total)).round().astype(np.int64)
    arr = np.ascontiguousarray(fa.images[idx].transpose(0, 3, 1, 2))
    return torch.from_numpy(arr).float().div_(255.0)


def run(args, note=print) -> dict:
    """Run the judge for parsed ``pycompgen judge`` arguments (also used by bench/judge.py); returns {"features", "rows", "markdown", ...}."""
    from .judge import resolve_features
    feats = resolve_features(args.features, args.inception_weights, args.pool, args.device)
    real = real_faces(args.data, args.n, args.image_size, args.split, args.seed)
    extra = {}
    for item in args.checkpoint:
        if "=" not in item:
            raise ValueError(f"--checkpoint {item!r}: use LABEL=PATH")
        k, v = item.split("=", 1)
        extra[k] = v
    specs = discover(args.run_dir, args.zoo, extra, args.device, note)
    specs += pretrained_specs(getattr(args, "pretrained", None), args.device, note)
    if not specs:
        raise ValueError("judge: no generators found (give --run-dir, --pretrained NAME or --checkpoint LABEL=PATH)")
    rows = judge_all(specs, real, feats, n_boot=args.bootstraps, seed=args.seed, device=args.device, note=note)
    return {"feature_space": feats.name, "label": feats.label, "standard": feats.standard,
            "real": {"data": args.data or "synthetic", "split": args.split, "n": int(real.shape[0]),
                     "image_size": args.image_size},
            "rows": rows, "markdown": format_table(rows)}


__all__ += ["run", "real_faces"]
