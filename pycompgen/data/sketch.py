"""Hand-drawn sketches (dark lines on light paper) -> the edge-map domain of the models (1-px {0,1} strokes).

Pipeline per image (grayscale uint8), see docs/data.md:
 1. center square crop (optionally the central `crop` fraction) + resize to image_size with INTER_AREA, as faces
    are (CUFSF 200x200 sketches are not CelebA-aligned: they are only cropped square and resized);
 2. invert the dark-on-light ink into a stroke-strength map with a morphological black-hat (closing - image),
    which keeps thin dark strokes and drops paper texture, shading gradients and large dark areas;
 3. Otsu binarisation of the stroke map (with a floor so blank paper stays empty), united with the Canny outline
    of the large dark areas (hair) that the black-hat drops;
 4. Zhang-Suen thinning to 1-px strokes, like Canny's non-maximum suppression output.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .cache import center_square_resize
from .folder import IMAGE_EXTS


def zhang_suen_thin(mask: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Zhang-Suen thinning of a binary image or batch (..., H, W) -> bool skeleton (vectorised numpy)."""
    img = np.asarray(mask).astype(bool)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[None]
    img = np.pad(img, ((0, 0), (1, 1), (1, 1))).astype(np.uint8)
    for _ in range(max_iter):
        changed = False
        for step in (0, 1):
            p = img
            c = p[:, 1:-1, 1:-1]
            n_ = p[:, :-2, 1:-1]; ne = p[:, :-2, 2:]; e = p[:, 1:-1, 2:]; se = p[:, 2:, 2:]  # noqa: E702
            s = p[:, 2:, 1:-1]; sw = p[:, 2:, :-2]; w = p[:, 1:-1, :-2]; nw = p[:, :-2, :-2]  # noqa: E702
            ring = (n_, ne, e, se, s, sw, w, nw, n_)
            b = sum(ring[:8])  # neighbours set
            a = sum(((ring[k] == 0) & (ring[k + 1] == 1)).astype(np.uint8) for k in range(8))  # 0->1 transitions
            if step == 0:
                cond = (n_ * e * s == 0) & (e * s * w == 0)
            else:
                cond = (n_ * e * w == 0) & (n_ * s * w == 0)
            rm = (c == 1) & (b >= 2) & (b <= 6) & (a == 1) & cond
            if rm.any():
                c[rm] = 0
                changed = True
        if not changed:
            break
    out = img[:, 1:-1, 1:-1].astype(bool)
    return out[0] if squeeze else out


def _crop_center(img: np.ndarray, crop: float) -> np.ndarray:
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    if crop == 1.0:
        return img
    h, w = img.shape[:2]
    s = max(1, int(round(min(h, w) * crop)))
    top, left = (h - s) // 2, (w - s) // 2
    return img[top:top + s, left:left + s]


def sketch_stages(gray: np.ndarray, image_size: int = 64, crop: float = 1.0, region_edges: bool = True,
                  min_contrast: float = 12.0) -> dict:
    """The preprocessing of one sketch stage by stage (for figures): dict of uint8/bool (image_size, image_size)
    arrays "resized", "strokes" (black-hat ink strength), "binary" (strokes and dark-area outlines), "edges"."""
    import cv2
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    g = center_square_resize(_crop_center(np.ascontiguousarray(gray), float(crop)), image_size)
    k = max(3, int(round(image_size / 16)) | 1)  # structuring element a bit wider than a stroke
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    ink = cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, se)  # inverted: strokes bright, paper ~0
    binary = np.zeros(g.shape, bool)
    if int(ink.max()) >= min_contrast:
        t, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        binary = ink > max(float(t), min_contrast)
    if region_edges:
        # closing erases thin strokes and keeps dark masses; their Canny outline joins the strokes
        masses = cv2.GaussianBlur(cv2.morphologyEx(g, cv2.MORPH_CLOSE, se), (0, 0), 1.0)
        binary |= cv2.Canny(masses, 0.3 * 255, 0.6 * 255, L2gradient=True) > 0
    return {"resized": g, "strokes": ink, "binary": binary, "edges": zhang_suen_thin(binary)}


def sketch_to_edges(gray: np.ndarray, image_size: int = 64, crop: float = 1.0, region_edges: bool = True,
                    min_contrast: float = 12.0) -> np.ndarray:
    """One grayscale (or BGR) uint8 sketch -> bool (image_size, image_size) 1-px stroke map.

    crop < 1 keeps the central fraction of the square first (zooms in on faces drawn small in the frame).
    region_edges adds the outlines of large dark areas (hair, dark clothes) that Canny would find in a photo but
    the stroke detector leaves out.
    """
    return sketch_stages(gray, image_size, crop, region_edges, min_contrast)["edges"]


def _sketch_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def load_sketches(folder: str | os.PathLike, image_size: int = 64, limit: int | None = None,
                  return_names: bool = False, crop: float = 1.0, region_edges: bool = True):
    """Hand-drawn sketches of a folder (sorted by name) -> float32 {0,1} tensor (N, 1, image_size, image_size)
    in the Canny edge-map domain. Unreadable files are skipped with one warning line. With return_names, also
    the list of file names kept. crop and region_edges: see sketch_to_edges."""
    import cv2
    folder = Path(os.path.expanduser(str(folder)))
    if not folder.is_dir():
        raise FileNotFoundError(f"sketch folder not found: {folder}")
    files = _sketch_files(folder)
    if limit is not None:
        files = files[:int(limit)]
    if not files:
        raise FileNotFoundError(f"no image files in sketch folder {folder}")
    maps, names, bad = [], [], []
    for p in files:
        img = cv2.imdecode(np.fromfile(str(p), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            bad.append(p.name)
            continue
        maps.append(sketch_to_edges(img, image_size, crop=crop, region_edges=region_edges))
        names.append(p.name)
    if bad:
        import logging
        logging.getLogger("pycompgen.data").warning("pycompgen.data: skipped %d unreadable sketch(es) in %s, e.g. %s",
                                                    len(bad), folder, ", ".join(bad[:3]))
    if not maps:
        raise ValueError(f"no readable sketch in {folder}")
    out = torch.from_numpy(np.stack(maps).astype(np.float32)).unsqueeze(1)
    return (out, names) if return_names else out
