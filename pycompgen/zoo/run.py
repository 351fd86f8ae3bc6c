"""Evaluation of a loaded zoo entry: the same channel-PSNR sweep (``pycompgen-sweep/1``) as
``pycompgen.evaluation.sweep.sweep``, from already-loaded networks instead of checkpoint paths."""
from __future__ import annotations

import os


def sweep_pretrained(cfg, pre, data=None, psnrs=None, out_dir="eval", *, split=None, device=None, max_images=None,
                     batch_size=None, seed=None, edge_tolerance: int = 0, n_grid: int = 6,
                     progress: bool = False) -> dict:
    """Sweep every approach of the Pretrained ``pre`` plus its step-1 auto-encoder; writes sweep.json/.md, the
    plot and grids into ``out_dir`` and returns the sweep dict."""
    from pycompgen.data import load_faces
    from pycompgen.evaluation.sweep import face_batch, resolve_device, sweep_models

    ev = cfg.eval
    psnrs = list(ev.psnrs if psnrs is None else psnrs)
    split = split or ev.split
    seed = ev.seed if seed is None else seed
    dev = resolve_device(device or cfg.train.device)
    loaded = dict(pre.stages)
    mcfg = pre.config
    image_size = pre.image_size
    ae_src = loaded.get("step1")
    if ae_src is None and "approach1" in loaded:  # approach 1 holds step 1's frozen f and g
        ae_src = loaded["approach1"]
    approaches = {lab: lc.models for lab, lc in loaded.items() if lc.has_elm}
    ae = {k: ae_src.models[k] for k in ("f", "g", "eb") if k in ae_src.parts or k in ("f", "g")} if ae_src else None
    if data is None or isinstance(data, (str, os.PathLike)):
        path = cfg.data.path if data is None else str(data)
        faces = load_faces(path, split=split, image_size=image_size, cache_dir=cfg.data.cache_dir,
                           synthetic_count=cfg.data.synthetic_count, seed=cfg.train.seed)
        source = getattr(faces, "source", path)
    else:
        faces, source = data, getattr(data, "source", type(data).__name__)
    fsize = getattr(faces, "image_size", None) or int(face_batch(faces, 0, 1).shape[-1])
    if int(fsize) != image_size:
        raise ValueError(f"faces are {fsize}×{fsize} but pretrained model {pre.name!r} was trained on "
                         f"{image_size}×{image_size} images")
    meta = {"split": split, "data": str(source), "device": str(dev), "pretrained": pre.name,
            "ae_source": ae_src.label if ae_src is not None else None,
            "checkpoints": {lab: lc.info() for lab, lc in loaded.items()},
            "model_config": mcfg.to_dict()["model"]}
    return sweep_models(approaches, faces, out_dir, ae=ae, psnrs=psnrs, canny_low=mcfg.data.canny_low,
                        canny_high=mcfg.data.canny_high, blur_sigma=mcfg.data.blur_sigma, device=dev,
                        batch_size=batch_size or ev.batch_size,
                        max_images=max_images if max_images is not None else ev.max_images, seed=seed,
                        edge_tolerance=edge_tolerance, n_grid=n_grid, meta=meta, progress=progress)
