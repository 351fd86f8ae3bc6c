"""Learning curves of a run: each stage's ``metrics.jsonl`` read back per epoch, and validation SSIM per epoch
plotted one line per stage (bench/quality.py, beyond.py)."""
from __future__ import annotations

import json
from pathlib import Path


def read_curves(run_dir: Path, stages) -> dict:
    """{stage: [{epoch, val_ssim, val_loss, train_loss, epoch_time_s, images_per_s, trainsub_ssim, gap_ssim}, ...]}
    (the last two where the run validated a training subset, else None) from each stage's
    metrics.jsonl (a resumed run may repeat an epoch: the last record of an epoch wins)."""
    out = {}
    for name in stages:
        path = Path(run_dir) / name / "metrics.jsonl"
        if not path.is_file():
            continue
        by_epoch = {}
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_epoch[int(r["epoch"])] = {k: r.get(k) for k in ("epoch", "val_ssim", "val_loss", "train_loss",
                                                                     "epoch_time_s", "images_per_s",
                                                                     "trainsub_ssim", "gap_ssim")}
        out[name] = [by_epoch[e] for e in sorted(by_epoch)]
    return out


def plot_rows(ax, label: str, rows: list, sub_label: str | None = None) -> None:
    """On ``ax``: validation SSIM per epoch of ``rows`` (read_curves records), and dashed in the same colour the
    training subset's where measured."""
    pts = [(r["epoch"], r["val_ssim"]) for r in rows if r.get("val_ssim") is not None]
    if not pts:
        return
    line, = ax.plot(*zip(*pts), marker=".", label=label)
    sub = [(r["epoch"], r["trainsub_ssim"]) for r in rows if r.get("trainsub_ssim") is not None]
    if sub:
        ax.plot(*zip(*sub), ls="--", color=line.get_color(), label=sub_label)


def plot_curves(curves: dict, path: Path, title: str = "") -> str:
    """Validation SSIM per epoch, one line per stage (approaches: averaged over the training PSNR range), and dashed
    in the same colour the fixed training subset's SSIM where the run measured it (the gap is memorisation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, rows in curves.items():
        plot_rows(ax, name, rows, sub_label=f"{name} (training subset)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("SSIM (validation; dashed: training subset)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return str(path)
