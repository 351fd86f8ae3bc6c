"""Refining face images with a trained refiner (the BEGAN refiner, seed 003): ``pycompgen refine``."""
from __future__ import annotations

from .codec import read_images
from .images import expand_inputs, output_names, write_pngs


def refiner_of(lc):
    """The refine function of a loaded checkpoint or zoo stage (a system with ``refine``: the BEGAN refiner)."""
    from pycompgen.registry import get_system
    cls = get_system(lc.model_name)
    if not hasattr(cls, "refine"):
        raise ValueError(f"{lc.path}: model {lc.model_name!r} is not a refiner (refine takes a BEGAN refiner, "
                         f"e.g. --pretrained began-64-a)")
    return lambda x: cls.refine(lc.models, x)


def refine_files(lc, inputs, output, batch_size: int = 64, note=print) -> list:
    """Image files or folders -> one refined PNG per input in ``output`` (the input's stem), at the refiner's size;
    every image is read and refined before anything is written."""
    import torch
    paths = expand_inputs(inputs)
    dests = output_names(paths, output)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    fn = refiner_of(lc)
    outs = []
    for i in range(0, len(paths), batch_size):
        x = read_images(paths[i:i + batch_size], lc.image_size)
        outs.append(fn(x).float().cpu())
        if len(paths) > batch_size:
            note(f"refined {min(i + batch_size, len(paths))}/{len(paths)}")
    written = write_pngs(torch.cat(outs), dests)
    for p, d in zip(paths, written):
        note(f"{p} -> {d}")
    return written


__all__ = ["refine_files", "refiner_of"]
