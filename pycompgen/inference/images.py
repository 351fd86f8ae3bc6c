"""Image inputs and outputs of the verbs: files or folders in (any size, greyscale or RGBA as well as RGB; centre
square crop and resize as ``pycompgen.data`` does), PNGs out, nothing written until everything is computed."""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def expand_inputs(inputs) -> list[Path]:
    """Files as given, folders as their image files (sorted, not recursive); an empty folder or a missing path is
    an error naming it."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"image not found: {p}")
    return out


def output_names(paths, output) -> list[Path]:
    """One PNG per input in folder ``output``, named by the input's stem (two inputs with one stem: an error)."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file: this verb writes PNGs into a folder")
    names: dict[str, Path] = {}
    for p in paths:
        if p.stem in names:
            raise ValueError(f"inputs {names[p.stem]} and {p} would both write {out / (p.stem + '.png')}")
        names[p.stem] = p
    return [out / (p.stem + ".png") for p in paths]


def write_pngs(images, dests) -> list[Path]:
    """Float (N,3,H,W) images in [0, 1] -> PNG files ``dests`` (folder created)."""
    import cv2
    import numpy as np
    import torch
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for img, dst in zip(arr, dests):
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(dst), np.ascontiguousarray(img[:, :, ::-1])):
            raise RuntimeError(f"cannot write {dst}")
    return list(dests)


__all__ = ["IMAGE_SUFFIXES", "expand_inputs", "output_names", "write_pngs"]
