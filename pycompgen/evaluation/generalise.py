"""Does a model generalise? The same channel-PSNR sweep on a fixed subset of its training faces and on validation
faces, and the train - val gap per model and channel PSNR (bench/generalise.py's levers table, the model cards).

The training subset is ``pycompgen.training.loop.train_subset_indices`` of the training split (the same faces the
harness validates beside val every epoch as ``trainsub_ssim``), so the figures of a run's curves and of its final
sweep are of the same faces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pycompgen.data import FaceArray
from pycompgen.training.loop import train_subset_indices

from .curves import plot_rows
from .figures import psnr_key
from .sweep import format_pivot, sweep_loaded

METRICS = ("ssim", "ms_ssim", "psnr", "edge_f1")


def train_subset(faces, n: int = 1000, seed: int = 0) -> FaceArray:
    """The fixed ``n`` training faces (a FaceArray) that ``train.train_subset`` validates with ``train.seed``."""
    idx = train_subset_indices(len(faces), n, n, seed)
    if not idx:
        raise ValueError(f"train_subset: need n >= 1 and a non-empty split, got n={n} of {len(faces)} faces")
    return FaceArray(faces.images[idx], source=f"{getattr(faces, 'source', 'faces')} (train subset of {len(idx)})")


def train_val_sweep(cfg, loaded: dict, train_faces, val_faces, psnrs: Sequence[float], out_dir,
                    *, max_val: int | None = None, device=None) -> dict:
    """``sweep_loaded`` of ``loaded`` ({label: LoadedCheckpoint}) on the training subset and on validation faces;
    returns {"train": sweep, "val": sweep, "gap": {label: {psnr_key: {metric: train - val}}}} (AE row: "ae")."""
    out = Path(out_dir)
    res = {}
    for split, faces, cap in (("train", train_faces, None), ("val", val_faces, max_val)):
        res[split] = sweep_loaded(cfg, loaded, faces, psnrs, out / split, split=split, device=device,
                                  max_images=cap, n_grid=0)
    res["gap"] = gaps(res["train"], res["val"])
    return res


def add_train_subset(cfg, loaded: dict, res: dict, out_dir, n: int = 1000, data=None, device=None) -> dict:
    """The sweep ``res`` (of ``loaded`` on a non-training split) with the same sweep on the fixed ``n`` training
    faces beside it: ``res["train_subset"]`` = {"n_images", "ae", "approaches", "gap"}; written into
    ``out_dir``/sweep.json, the training sweep itself into ``out_dir``/train_subset/. Returns ``res``."""
    from pycompgen.data import load_faces
    from .sweep import write_json
    path = cfg.data.path if data is None else data
    size = next(iter(loaded.values())).image_size
    faces = load_faces(path, split="train", image_size=size, cache_dir=cfg.data.cache_dir,
                       synthetic_count=cfg.data.synthetic_count, seed=cfg.train.seed)
    sub = train_subset(faces, n, seed=cfg.train.seed)
    tsw = sweep_loaded(cfg, loaded, sub, res.get("psnrs"), Path(out_dir) / "train_subset", split="train",
                       device=device, n_grid=0)
    res["train_subset"] = {"n_images": tsw["n_images"], "ae": tsw.get("ae"), "approaches": tsw.get("approaches"),
                           "gap": gaps(tsw, res)}
    write_json(Path(out_dir) / "sweep.json", res)
    md = Path(out_dir) / "sweep.md"
    if md.is_file():
        gap = {**res, "ae": {"ssim": res["train_subset"]["gap"].get("ae", {}).get("ssim")},
               "approaches": {k: v for k, v in res["train_subset"]["gap"].items() if k != "ae"}}
        md.write_text(md.read_text().rstrip("\n") + "\n\n" + "\n".join([
            f"## SSIM on {tsw['n_images']} fixed training faces", "", format_pivot(tsw, "ssim"), "",
            "## Gap: training faces - this split (SSIM)", "", format_pivot(gap, "ssim"), ""]))
    return res


def gaps(train: dict, val: dict) -> dict:
    """{label: {psnr_key: {metric: train - val}}} over the approaches both sweeps hold, plus "ae"."""
    out: dict = {}
    for lab, rows in val.get("approaches", {}).items():
        trows = train.get("approaches", {}).get(lab, {})
        out[lab] = {k: {m: trows[k][m] - r[m] for m in METRICS if m in r and m in trows.get(k, {})}
                    for k, r in rows.items() if k in trows}
    if val.get("ae") and train.get("ae"):
        out["ae"] = {m: train["ae"][m] - val["ae"][m] for m in METRICS if m in val["ae"] and m in train["ae"]}
    return out


def levers_table(results: dict, psnrs: Sequence[float], label: str = "approach3", metric: str = "ssim") -> list:
    """Markdown lines: one row per lever of ``results`` ({lever: train_val_sweep dict}) with train / val / gap of
    ``metric`` at each channel PSNR for approach ``label``."""
    head = "| lever | " + " | ".join(f"train @{p:g} dB | val @{p:g} dB | gap @{p:g} dB" for p in psnrs) + " |"
    lines = [head, "|---|" + "---:|" * (3 * len(psnrs))]
    for lever, r in results.items():
        cells = []
        for p in psnrs:
            k = psnr_key(p)
            t = r["train"]["approaches"].get(label, {}).get(k, {}).get(metric)
            v = r["val"]["approaches"].get(label, {}).get(k, {}).get(metric)
            cells += [_f(t), _f(v), _f(None if t is None or v is None else t - v)]
        lines.append(f"| {lever} | " + " | ".join(cells) + " |")
    return lines


def plot_lever_curves(levers: dict, path, stages=("approach1", "approach3")) -> str:
    """One panel per stage: validation SSIM per epoch (solid) and the training subset's (dashed) for every lever
    ({lever: {"curves": {stage: [{epoch, val_ssim, trainsub_ssim}, ...]}}})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4.2), dpi=110)
    for ax, stage in zip(list(getattr(axes, "flat", [axes])), stages):
        for lever, v in levers.items():
            plot_rows(ax, lever, v["curves"].get(stage, []))
        ax.set_title(f"{stage}: solid validation, dashed training subset", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("SSIM (over the training PSNR range)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


__all__ = ["train_subset", "train_val_sweep", "add_train_subset", "plot_lever_curves", "gaps", "levers_table", "METRICS"]
