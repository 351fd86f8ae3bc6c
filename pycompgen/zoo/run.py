"""Evaluation of a loaded zoo entry: the same channel-PSNR sweep (``pycompgen-sweep/1``) as
``pycompgen.evaluation.sweep.sweep``, from already-loaded networks instead of checkpoint paths."""
from __future__ import annotations


def sweep_pretrained(cfg, pre, data=None, psnrs=None, out_dir="eval", *, split=None, device=None, max_images=None,
                     batch_size=None, seed=None, edge_tolerance: int = 0, n_grid: int = 6,
                     progress: bool = False) -> dict:
    """Sweep every approach of the Pretrained ``pre`` plus its step-1 auto-encoder; writes sweep.json/.md, the
    plot and grids into ``out_dir`` and returns the sweep dict."""
    from pycompgen.evaluation.sweep import sweep_loaded

    return sweep_loaded(cfg, dict(pre.stages), data, psnrs, out_dir, split=split, device=device,
                        max_images=max_images, batch_size=batch_size, seed=seed, edge_tolerance=edge_tolerance,
                        n_grid=n_grid, progress=progress, trained=f"pretrained model {pre.name!r} was",
                        meta={"pretrained": pre.name, "model_config": pre.config.to_dict()["model"]})
