"""``pycompgen evaluate --pretrained NAME`` for the zoo entries that are not Compgen edge models: the natural
figures of each kind of entry, written to ``eval.json`` and ``eval.md`` (Compgen entries keep their channel-PSNR
sweep, ``pycompgen.evaluation.sweep``).

- **latent codecs** (a stage holding an entropy bottleneck ``eb`` and no ELM: compgen-ae-64, cvae-64, dcgan-64):
  at every rate point (``zoo.qualities``, or the entry's one point) each face of the split becomes one real
  ``.pcg`` file through ``pycompgen.inference.compress_batch`` and is decoded with ``decompress_batch`` (what
  ``pycompgen compress`` / ``decompress`` run): mean bpp of the whole file (header included; also without it),
  PSNR, SSIM and MS-SSIM (``pycompgen.metrics``) of the clamped decoding; points sorted by bpp.
- **edgediff entries**: the same per rate point (latent bit depth) and per ``--denoise`` mode (none, sdc, full);
  the files are written once per point and decoded in each mode (seed ``eval.seed``).
- **refiners** (the BEGAN refiner, began-64-*): ``refiner.degraded_set`` on the split's faces degraded to 16 px:
  ``ssim_lowres`` (faithful to the input), ``sharpness_ratio`` (detail over the real faces'), ``ssim_to_original``,
  and the same figures of the unrefined inputs.
- **Sketch2face entries**: the cycle distances (``systems.sketch2face.cycle_distances``: sketch -> face -> sketch
  and face -> sketch -> face, L1 and SSIM, latent means) on the split's sketches and faces, and the realism figures
  of ``evaluation.sketch2face.realism`` in the judge's default feature space (``judge.resolve_features(None)``,
  zoo:compgen-64; other image sizes are resized). Sketches: a given folder (all its sketches), else the entry's
  ``sketch2face.sketch_path`` split when the faces are real (``--data``) and the folder exists (Canny sketches for
  an entry trained on ``sketch_source=canny``), else synthetic sketches.

Beside a non-training split, the same figures on N fixed training faces (``generalise.train_subset``) and the
gap (train - split), except for edgediff (diffusion decoding of every face in three modes is not cheap: evaluate
``--split train`` instead).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pycompgen import metrics as M

from .sweep import _atomic_text, face_batch, resolve_device, write_json

FORMAT = "pycompgen-eval/1"
DENOISE_MODES = ("none", "sdc", "full")
REFINER_PX = 16
CODEC_METRICS = ("bpp", "bpp_payload", "psnr", "ssim", "ms_ssim")
REFINER_METRICS = ("ssim_lowres", "sharpness_ratio", "ssim_to_original")
S2F_METRICS = ("sketch_cycle_l1", "sketch_cycle_ssim", "face_cycle_l1", "face_cycle_ssim", "fd", "sharpness_ratio")
KIND_TEXT = {"latent-codec": "latent codec", "edgediff": "edge-guided diffusion codec", "refiner": "refiner",
             "sketch2face": "Sketch2face translator"}


# -- which evaluation ------------------------------------------------------------------------------------------------
def entry_kind(pre) -> str | None:
    """The kind of zoo entry ``pre`` (pycompgen.zoo.Pretrained): "latent-codec", "edgediff", "refiner",
    "sketch2face", or None for a Compgen edge model (its channel-PSNR sweep); a one-line error otherwise."""
    from pycompgen.registry import get_system
    lcs = list(pre.stages.values())
    models = {lc.model_name for lc in lcs}
    if "edgediff" in models:
        return "edgediff"
    if any("eb" in lc.parts for lc in lcs) and not any(lc.has_elm for lc in lcs):
        return "latent-codec"
    if "sketch2face" in models:
        return "sketch2face"
    cls = get_system(lcs[0].model_name)
    if hasattr(cls, "refine"):
        return "refiner"
    if getattr(cls, "psnr_sweep", False):
        return None
    raise ValueError(f"evaluate has no evaluation for pretrained model {pre.name!r} (a {lcs[0].model_name!r} "
                     f"entry with stages {', '.join(pre.stages)})")


def parse_list(values, flag: str, cast=str) -> list | None:
    """``--flag A,B --flag C`` -> [A, B, C] (None when not given); a one-line error for a bad value."""
    if not values:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    out = []
    for v in values:
        for s in str(v).replace(",", " ").split():
            try:
                out.append(cast(s))
            except ValueError:
                raise ValueError(f"{flag}: bad value {s!r}") from None
    if not out:
        raise ValueError(f"{flag}: no value given")
    return list(dict.fromkeys(out))


# -- faces -----------------------------------------------------------------------------------------------------------
def _load(cfg, data, split: str, size: int):
    from pycompgen.data import load_faces
    faces = load_faces(data, split=split, image_size=size, cache_dir=cfg.data.cache_dir,
                       synthetic_count=cfg.data.synthetic_count, seed=cfg.train.seed)
    return faces, str(getattr(faces, "source", data))


def _is_synthetic(data) -> bool:
    return data is None or str(data) == "synthetic"


def _float(faces, a: int, b: int) -> torch.Tensor:
    return face_batch(faces, a, b).float().div_(255.0)


def _train_faces(cfg, data, size: int, n: int):
    from .generalise import train_subset
    faces, _ = _load(cfg, data, "train", size)
    sub = train_subset(faces, n, seed=cfg.train.seed)
    return sub, str(sub.source)


def _iter(n: int, batch: int, progress: bool, desc: str):
    it = range(0, n, batch)
    if progress:
        from tqdm import tqdm
        it = tqdm(list(it), desc=desc, unit="batch")
    return it


def _device(lc) -> torch.device:
    return next(p for m in lc.models.values() for p in m.parameters()).device


def _gap(train: dict, val: dict, keys: Sequence[str]) -> dict:
    return {k: train[k] - val[k] for k in keys
            if isinstance(train.get(k), (int, float)) and isinstance(val.get(k), (int, float))}


# -- latent codecs and edgediff: real files --------------------------------------------------------------------------
@torch.no_grad()
def codec_figures(lc, faces, n: int, modes: Sequence[str | None] = (None,), batch_size: int = 100, seed: int = 0,
                  progress: bool = False, desc: str = "evaluate") -> dict:
    """The first ``n`` faces, one ``.pcg`` file each (``compress_batch``), decoded by ``decompress_batch`` in each
    of ``modes`` (an edgediff model's --denoise; None: the model's only decoding): {mode: {n, bytes_mean,
    header_bytes_mean, bpp, bpp_payload, psnr, ssim, ms_ssim}} (means over the faces)."""
    from pycompgen.codec.container import unpack
    from pycompgen.inference import compress_batch, decompress_batch
    nbytes = nhead = 0
    sums = {m: {"psnr": 0.0, "ssim": 0.0, "ms_ssim": 0.0} for m in modes}
    h = w = None
    for a in _iter(n, batch_size, progress, desc):
        x = _float(faces, a, min(a + batch_size, n))
        h, w = x.shape[-2:]
        files = compress_batch(lc, x)
        nbytes += sum(len(f) for f in files)
        nhead += sum(unpack(f)[0].nbytes for f in files)
        blobs = [(f"face {a + i}", f) for i, f in enumerate(files)]
        for m in modes:
            dec = decompress_batch(lc, blobs, None, seed, batch_size, m)
            x_hat = torch.cat([d[0] for d in dec]).float().clamp(0, 1)
            s = sums[m]
            s["psnr"] += float(M.psnr(x_hat, x).double().sum())
            s["ssim"] += float(M.ssim(x_hat, x).double().sum())
            s["ms_ssim"] += float(M.ms_ssim(x_hat, x).double().sum())
    if h is None:
        raise ValueError("evaluate: the split holds no faces")
    hw = int(h) * int(w)
    base = {"n": int(n), "bytes_mean": nbytes / n, "header_bytes_mean": nhead / n, "bpp": 8 * nbytes / (n * hw),
            "bpp_payload": 8 * (nbytes - nhead) / (n * hw)}
    return {m: {**base, **{k: v / n for k, v in sums[m].items()}} for m in modes}


def _codec_stage(pre, kind: str):
    from pycompgen.inference import prepare_codec
    for lc in pre.stages.values():
        if kind == "edgediff" and lc.model_name == "edgediff":
            return prepare_codec(lc)
        if kind == "latent-codec" and "eb" in lc.parts:
            return prepare_codec(lc)
    raise ValueError(f"pretrained model {pre.name!r} has no stage that codes files")


def _rate_points(pre, qualities) -> list:
    """[(quality, manifest rate point or {})] to measure: ``qualities`` (default: every point)."""
    from pycompgen import zoo
    qs = zoo.qualities(pre.entry)
    want = list(qualities) if qualities else (qs or [1])
    return [(int(q), zoo.rate_point({**pre.entry, "name": pre.name}, int(q))) for q in want]


def evaluate_codec(cfg, pre, kind: str, faces, n: int, *, qualities=None, denoise=None, train=None,
                   device=None, progress: bool = False, note: Callable = print) -> dict:
    """Every rate point of a latent codec or edgediff entry on ``faces`` (and ``train``: (faces, n) or None)."""
    from pycompgen import zoo
    if kind != "edgediff" and denoise:
        raise ValueError(f"--denoise applies to edgediff entries; {pre.name!r} is a {pre.config.model.name!r} "
                         f"latent codec with one decoding")
    modes = list(denoise or DENOISE_MODES) if kind == "edgediff" else [None]
    bad = [m for m in modes if m is not None and m not in DENOISE_MODES]
    if bad:
        raise ValueError(f"--denoise must be among {', '.join(DENOISE_MODES)}, got {bad[0]!r}")
    ev = cfg.eval
    rows, train_rows = [], []
    default_q = pre.entry.get("default_quality")
    for q, point in _rate_points(pre, qualities):
        p = pre if (not point or q == default_q) else zoo.load(pre.name, device=device, quality=q, root=pre.root)
        lc = _codec_stage(p, kind)
        info = {"quality": q, **{k: point[k] for k in ("rate_weight", "bits", "hint_bits") if k in point}}
        if kind == "edgediff":
            from pycompgen.inference.edgediff import bits_of
            info["bits"] = bits_of(lc)
        t0 = time.perf_counter()
        res = codec_figures(lc, faces, n, modes, ev.batch_size, ev.seed, progress, f"quality {q}")
        for m, r in res.items():
            rows.append({**info, **({"denoise": m} if m is not None else {}), **r,
                         "wall_s": round(time.perf_counter() - t0, 3)})
        if train is not None:
            tres = codec_figures(lc, train[0], train[1], modes, ev.batch_size, ev.seed, progress,
                                 f"quality {q} (train subset)")
            for m, r in tres.items():
                train_rows.append({**info, **({"denoise": m} if m is not None else {}), **r})
        r0 = res[modes[0]]
        note(f"quality {q}: {r0['bpp']:.4f} bpp, " + ", ".join(
            f"{'SSIM' if m is None else m + ' SSIM'} {res[m]['ssim']:.4f}" for m in modes))
    order = lambda r: (r["bpp"], r["quality"], DENOISE_MODES.index(r["denoise"]) if "denoise" in r else 0)  # noqa
    rows.sort(key=order)
    out = {"rate_points": rows, "denoise_modes": [m for m in modes if m is not None] or None}
    if train is not None:
        train_rows.sort(key=order)
        key = lambda r: (r["quality"], r.get("denoise"))  # noqa: E731
        by = {key(r): r for r in rows}
        out["train_subset"] = {"n_images": train[1], "source": train[2], "rate_points": train_rows,
                               "gap": [{"quality": r["quality"], **({"denoise": r["denoise"]} if "denoise" in r
                                                                     else {}),
                                        **_gap(r, by[key(r)], CODEC_METRICS)} for r in train_rows]}
    return out


# -- refiners --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def refiner_figures(refine: Callable, faces, n: int, size: int = REFINER_PX, chunk: int = 1024,
                    batch: int = 100) -> dict:
    """``refiner.degraded_set`` of the first ``n`` faces, ``chunk`` faces at a time (means combined exactly)."""
    from .refiner import degraded_set
    acc: dict = {}
    le_real = le_out = le_in = 0.0
    for a in range(0, n, chunk):
        x = _float(faces, a, min(a + chunk, n))
        r, _ = degraded_set(refine, x, size, batch)
        k = x.shape[0]
        real = float(M.laplacian_energy(x).double().sum())
        le_real += real
        le_out += r["sharpness_ratio"] * real  # the ratio's numerator of this chunk (exact)
        le_in += r["input_sharpness_ratio"] * real
        for key in ("ssim_lowres", "ssim_to_original", "input_ssim_to_original"):
            acc[key] = acc.get(key, 0.0) + r[key] * k
    if not acc:
        raise ValueError("evaluate: the split holds no faces")
    out = {"n": int(n), "degrade_px": int(size), **{k: v / n for k, v in acc.items()}}
    out["sharpness_ratio"] = le_out / le_real if le_real > 0 else float("nan")
    out["input_sharpness_ratio"] = le_in / le_real if le_real > 0 else float("nan")
    return out


def evaluate_refiner(cfg, pre, faces, n: int, *, train=None, note: Callable = print) -> dict:
    from pycompgen.inference import refiner_of
    lc = pre[next(iter(pre))]
    fn = refiner_of(lc)
    dev = _device(lc)
    refine = lambda x: fn(x.to(dev))  # noqa: E731
    res = {"refiner": refiner_figures(refine, faces, n, batch=cfg.eval.batch_size)}
    r = res["refiner"]
    note(f"refined: ssim_lowres {r['ssim_lowres']:.4f}, sharpness_ratio {r['sharpness_ratio']:.4f}, "
         f"ssim_to_original {r['ssim_to_original']:.4f}")
    if train is not None:
        t = refiner_figures(refine, train[0], train[1], batch=cfg.eval.batch_size)
        res["train_subset"] = {"n_images": train[1], "source": train[2], "refiner": t,
                               "gap": _gap(t, r, REFINER_METRICS)}
    return res


# -- Sketch2face -----------------------------------------------------------------------------------------------------
def _sketches(cfg, lc, data, split: str, n_faces: int, sketches_dir=None) -> tuple[np.ndarray, str]:
    """uint8 (N, H, W) sketches and where they come from (see the module docstring)."""
    from pycompgen.data.unpaired import (canny_sketches, load_sketch_images, read_sketches,
                                         synthetic_sketch_images)
    size = lc.image_size
    if sketches_dir is not None:
        sk, files = read_sketches(sketches_dir, size)
        return sk, f"folder {sketches_dir} ({len(files)} sketches, all of them)"
    c = lc.config.sketch2face
    split_seed = int(cfg.train.seed) * 3 + {"train": 0, "val": 1, "valid": 1, "test": 2}.get(split, 1)
    if not _is_synthetic(data):
        if c.sketch_source == "canny":
            faces, _ = _load(cfg, data, split, size)
            return canny_sketches(np.asarray(faces.images[:max(n_faces, 1) * 2]), seed=split_seed), \
                f"Canny sketches of {split} faces (the entry's sketch_source=canny)"
        if c.sketch_path and Path(os.path.expanduser(str(c.sketch_path))).is_dir():
            return load_sketch_images(c.sketch_path, split, size), \
                f"the entry's sketch2face.sketch_path {c.sketch_path} ({split} split: every 10th file is val)"
        why = "no sketch2face.sketch_path" if not c.sketch_path else f"{c.sketch_path} not found"
        return synthetic_sketch_images(n_faces, size, seed=split_seed + 5003), \
            f"synthetic sketches ({why}; give --sketches DIR)"
    return synthetic_sketch_images(n_faces, size, seed=split_seed + 5003), \
        "synthetic sketches (synthetic faces: no --data; give --sketches DIR for real ones)"


def _pm1(u8: np.ndarray | torch.Tensor, channels: int) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(u8))
    if channels == 1:
        t = t[:, None]
    return t.float().div(255.0).mul(2).sub(1)


def _features(device):
    from .judge import resolve_features
    try:
        return resolve_features(None, device=device), None
    except (ValueError, FileNotFoundError) as e:
        return None, f"the judge's feature space (zoo:compgen-64) is unavailable: {e}"


@torch.no_grad()
def sketch2face_figures(lc, sketches: np.ndarray, faces, n: int, features, seed: int = 0,
                        batch_size: int = 64) -> dict:
    """Cycle distances and (with ``features``) realism of the Sketch2face stage ``lc`` on sketches uint8 (N, H, W)
    and the first ``n`` faces."""
    from pycompgen.systems.sketch2face import cycle_distances
    from .sketch2face import realism
    dev = _device(lc)
    s = _pm1(sketches[:n], 1).to(dev)
    f = (face_batch(faces, 0, n).float().div(255.0).mul(2).sub(1)).to(dev)
    out = {"cycle": cycle_distances(lc.models, s, f, batch_size)}
    if features is not None and min(len(s), len(f)) < 2:
        out["realism_skipped"] = f"needs at least 2 sketches and 2 faces, got {len(s)} and {len(f)}"
    elif features is not None:
        out["realism"] = realism(lc.models, s, f, features, seed=seed)
    return out


def evaluate_sketch2face(cfg, pre, data, split: str, faces, n: int, *, sketches_dir=None, train=None,
                         device=None, note: Callable = print) -> dict:
    lc = pre[next(iter(pre))]
    if sketches_dir is not None and not Path(sketches_dir).is_dir():
        raise FileNotFoundError(f"sketch folder not found: {sketches_dir}")
    sk, sk_src = _sketches(cfg, lc, data, split, n, sketches_dir)
    cap = cfg.eval.max_images
    n_sk = len(sk) if cap is None else min(len(sk), int(cap))
    features, why = _features(device or "cpu")
    r = sketch2face_figures(lc, sk[:n_sk], faces, n, features, cfg.eval.seed, cfg.eval.batch_size)
    res = {"variant": lc.stage, "sketches": {"source": sk_src, "n": int(n_sk)}, **r}
    why = why or r.get("realism_skipped")
    if why:
        res["realism_skipped"] = why
        note(f"realism: skipped ({why})")
    c = r["cycle"]
    note(f"cycle: sketch L1 {c['sketch_cycle_l1']:.4f} SSIM {c['sketch_cycle_ssim']:.4f}, face L1 "
         f"{c['face_cycle_l1']:.4f} SSIM {c['face_cycle_ssim']:.4f}")
    if train is not None:
        tsk, tsrc = (sk, sk_src + " (the same sketches)") if sketches_dir is not None else \
            _sketches(cfg, lc, data, "train", train[1])
        tn = min(train[1], len(tsk))
        t = sketch2face_figures(lc, tsk[:tn], train[0], train[1], features, cfg.eval.seed, cfg.eval.batch_size)
        flat_t, flat_v = _flat_s2f(t), _flat_s2f(r)
        res["train_subset"] = {"n_images": train[1], "source": train[2], "sketches": {"source": tsrc, "n": tn},
                               **t, "gap": _gap(flat_t, flat_v, S2F_METRICS)}
    return res


def _flat_s2f(r: dict) -> dict:
    out = dict(r["cycle"])
    if "realism" in r:
        out.update(fd=r["realism"]["fd"], sharpness_ratio=r["realism"]["sharpness_ratio"])
    return out


# -- the entry point -------------------------------------------------------------------------------------------------
def evaluate_entry(cfg, pre, out_dir, *, split: str | None = None, data=None, qualities=None, denoise=None,
                   sketches=None, train_subset: int = 0, device=None, progress: bool = False,
                   note: Callable = print) -> dict:
    """The evaluation of zoo entry ``pre`` by its kind (module docstring) on ``split`` of ``data`` (None:
    ``cfg.data.path``; synthetic faces without one), at most ``cfg.eval.max_images`` faces; ``train_subset`` N > 0
    adds N fixed training faces and the gap (not for edgediff, nor with split "train"). Writes ``out_dir``/eval.json
    and eval.md and returns the eval.json dict."""
    kind = entry_kind(pre)
    if kind is None:
        raise ValueError(f"{pre.name!r} is a Compgen edge model: evaluate it with its channel-PSNR sweep "
                         f"(pycompgen.evaluation.sweep.sweep_pretrained)")
    t0 = time.perf_counter()
    split = split or cfg.eval.split
    data = cfg.data.path if data is None else data
    dev = resolve_device(device or cfg.train.device)
    if int(train_subset) < 0:
        raise ValueError(f"--train-subset must be >= 0, got {train_subset}")
    if qualities and kind not in ("latent-codec", "edgediff"):
        raise ValueError(f"--quality picks rate points of a latent codec; {pre.name!r} is a {KIND_TEXT[kind]}")
    if denoise and kind != "edgediff":
        raise ValueError(f"--denoise applies to edgediff entries; {pre.name!r} is a {KIND_TEXT[kind]}")
    if sketches and kind != "sketch2face":
        raise ValueError(f"--sketches applies to Sketch2face entries; {pre.name!r} is a {KIND_TEXT[kind]}")
    size = pre.image_size
    faces, source = _load(cfg, data, split, size)
    cap = cfg.eval.max_images
    n = len(faces) if cap is None else min(len(faces), int(cap))
    if n <= 0:
        raise ValueError(f"evaluate: the {split!r} split holds no faces" if cap is None or cap > 0 else
                         f"eval.max_images must be >= 1, got {cap}")
    train = None
    skipped = None
    if train_subset and split != "train":
        if kind == "edgediff":
            skipped = ("not measured for edgediff entries (diffusion decoding of every face in every mode is "
                       "costly): evaluate --split train instead")
        else:
            tf, tsrc = _train_faces(cfg, data, size, int(train_subset))
            train = (tf, len(tf), tsrc)
    lc0 = pre[next(iter(pre))]
    res = {"format": FORMAT, "pretrained": pre.name, "kind": kind, "system": lc0.model_name,
           "stages": list(pre.stages), "split": split, "data": source, "synthetic_faces": _is_synthetic(data),
           "n_images": int(n), "image_size": int(size), "device": str(dev)}
    if kind in ("latent-codec", "edgediff"):
        res.update(evaluate_codec(cfg, pre, kind, faces, n, qualities=qualities, denoise=denoise, train=train,
                                  device=dev, progress=progress, note=note))
    elif kind == "refiner":
        res.update(evaluate_refiner(cfg, pre, faces, n, train=train, note=note))
    else:
        res.update(evaluate_sketch2face(cfg, pre, data, split, faces, n, sketches_dir=sketches, train=train,
                                        device=dev, note=note))
    if skipped:
        res["train_subset_skipped"] = skipped
    res["wall_s"] = round(time.perf_counter() - t0, 3)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval.json", res)
    _atomic_text(out / "eval.md", format_markdown(res))
    return res


# -- reports ---------------------------------------------------------------------------------------------------------
def _f(v, d: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.{d}f}"


def _table(head: list, rows: list, markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa
    return "\n".join([line(head)] + [line(r) for r in rows])


def _codec_table(res: dict, markdown: bool) -> str:
    ed = res["kind"] == "edgediff"
    head = ["quality"] + (["bits", "denoise"] if ed else []) + ["bpp (file)", "bpp (payload)", "PSNR (dB)", "SSIM",
                                                                 "MS-SSIM"]
    ts = res.get("train_subset")
    gaps = {}
    if ts:
        head += ["train SSIM", "gap SSIM"]
        gaps = {(g["quality"], g.get("denoise")): g for g in ts["gap"]}
        trains = {(t["quality"], t.get("denoise")): t for t in ts["rate_points"]}
    rows = []
    for r in res["rate_points"]:
        row = [str(r["quality"])] + ([str(r.get("bits", "—")), r["denoise"]] if ed else [])
        row += [_f(r["bpp"]), _f(r["bpp_payload"]), _f(r["psnr"], 2), _f(r["ssim"]), _f(r["ms_ssim"])]
        if ts:
            k = (r["quality"], r.get("denoise"))
            row += [_f(trains.get(k, {}).get("ssim")), _f(gaps.get(k, {}).get("ssim"), 4)]
        rows.append(row)
    return _table(head, rows, markdown)


def _refiner_table(res: dict, markdown: bool) -> str:
    r = res["refiner"]
    ts = res.get("train_subset")
    head = ["figure", "refined", f"input ({r['degrade_px']} px, upscaled)"] + (["train refined", "gap"] if ts else [])
    rows = []
    for k, ik in (("ssim_lowres", None), ("sharpness_ratio", "input_sharpness_ratio"),
                  ("ssim_to_original", "input_ssim_to_original")):
        row = [k, _f(r[k]), _f(r[ik]) if ik else "1 (by definition)"]
        if ts:
            row += [_f(ts["refiner"][k]), _f(ts["gap"].get(k))]
        rows.append(row)
    return _table(head, rows, markdown)


def _s2f_table(res: dict, markdown: bool) -> str:
    ts = res.get("train_subset")
    head = ["figure", res["split"]] + (["train", "gap"] if ts else [])
    v = _flat_s2f(res)
    t = _flat_s2f(ts) if ts else {}
    extra = {}
    if "realism" in res:
        extra = {k: res["realism"][k] for k in ("spread_ratio", "near_duplicate_share", "collapse",
                                                "sketch_spread_ratio", "sketch_collapse")}
    rows = []
    for k in S2F_METRICS:
        if k not in v:
            continue
        name = f"fd ({res['realism']['fd_label']})" if k == "fd" else k
        rows.append([name, _f(v[k])] + ([_f(t.get(k)), _f(ts["gap"].get(k))] if ts else []))
    for k, val in extra.items():
        rows.append([k, _f(val)] + (["", ""] if ts else []))
    return _table(head, rows, markdown)


def format_table(res: dict, markdown: bool = False) -> str:
    """The result's figures as a table (plain text for the console, or markdown)."""
    return {"latent-codec": _codec_table, "edgediff": _codec_table, "refiner": _refiner_table,
            "sketch2face": _s2f_table}[res["kind"]](res, markdown)


def describe(res: dict) -> str:
    """One line: what was measured on which faces."""
    src = "synthetic faces: no --data" if res["synthetic_faces"] else res["data"]
    faces = f"{res['n_images']} {res['split']} faces ({src}, {res['image_size']}x{res['image_size']})"
    kind = res["kind"]
    if kind in ("latent-codec", "edgediff"):
        what = ("one .pcg file per face (compress_batch), decoded by decompress_batch"
                + (f" with --denoise {', '.join(res['denoise_modes'])}" if res.get("denoise_modes") else ""))
    elif kind == "refiner":
        what = f"refining the faces degraded to {res['refiner']['degrade_px']} px (refiner.degraded_set)"
    else:
        what = (f"cycle distances{' and realism' if 'realism' in res else ''} of variant {res['variant']!r}; "
                f"sketches: {res['sketches']['source']}, "
                f"{res['sketches']['n']} used")
    return f"{res['pretrained']} ({KIND_TEXT[kind]}, {res['system']}): {what}; {faces}"


def format_markdown(res: dict) -> str:
    lines = [f"# Evaluation of `{res['pretrained']}`", "", f"- {describe(res)}", f"- device: {res['device']}"]
    ts = res.get("train_subset")
    if ts:
        lines.append(f"- beside it: {ts['n_images']} fixed training faces ({ts['source']}); gap = train - "
                     f"{res['split']}")
    if res.get("train_subset_skipped"):
        lines.append(f"- training subset: {res['train_subset_skipped']}")
    if res.get("realism_skipped"):
        lines.append(f"- realism: skipped ({res['realism_skipped']})")
    if res["kind"] in ("latent-codec", "edgediff"):
        lines.append("- bpp = 8 x file bytes / pixels (header included; 'payload': without the container header); "
                     "PSNR, SSIM, MS-SSIM of the decoding clamped to [0, 1]; rows ordered by bpp")
    if res["kind"] == "refiner":
        lines.append("- ssim_lowres: output vs input both at the input's resolution; sharpness_ratio: Laplacian "
                     "energy over the real faces'; ssim_to_original: full-size SSIM to the face before degradation")
    if res["kind"] == "sketch2face":
        lines.append("- cycles with latent means: sketch -> face -> sketch and face -> sketch -> face (L1 on [0, 1] "
                     "images, SSIM on grey images); realism: sketch -> face outputs against the real faces")
    lines += ["", format_table(res, markdown=True), "", f"wall time {res['wall_s']:.1f} s", ""]
    return "\n".join(lines)


__all__ = ["FORMAT", "DENOISE_MODES", "entry_kind", "parse_list", "codec_figures", "refiner_figures",
           "sketch2face_figures", "evaluate_codec", "evaluate_refiner", "evaluate_sketch2face", "evaluate_entry",
           "format_table", "format_markdown", "describe"]
