"""Face masks and the masked metrics of the face-reconstruction study's Table 1 (1−SSIM, 1−MS-SSIM, l1, l2, each
with and without a face mask).

The mask is a **fixed ellipse from CelebA's aligned landmark positions**: the same ellipse for every image, not a
per-image face detector or parser. CelebA's "Align&Cropped" faces (178×218) are warped so that the five landmarks
sit at nearly fixed positions, so one ellipse placed from the typical landmark positions covers the face of an
aligned image; faces that are turned, tilted or unusually large or small are covered less well.

Placement (coordinates in the 178×218 aligned image, pixel indices, x right, y down):

- landmarks (``CELEBA_ALIGNED_LANDMARKS``): left eye (69, 111), right eye (108, 111), nose (88, 136), left mouth
  corner (72, 152), right mouth corner (105, 152). These are the rounded typical positions of CelebA's aligned
  landmarks (``list_landmarks_align_celeba.txt``, not shipped with the data here) as listed in the header of
  ``align_faces.py`` of github.com/podgorskiy/ALAE; they sit on the eyes, nose tip and mouth corners of real
  validation faces (checked by overlay).
- with d_ee = 39 (eye to eye) and d_em = 41 (eye line to mouth line): centre (88.5, 111 + 0.25·d_em) =
  (88.5, 121.25), horizontal semi-axis 1.0·d_ee = 39, vertical semi-axis 1.5·d_em = 61.5, i.e. x 49.5…127.5
  (cheek to cheek), y 59.75…182.75 (forehead to chin). The factors were fitted to the region where at least 30 %
  of 3,000 CelebA training faces have skin colour (skin colour taken per image from the cheeks below the eyes;
  eyes, brows and mouth filled in): intersection over union 0.89, 99 % of that region covered.

pycompgen's data layer crops the central 178×178 square (rows 20…197) and resizes it (``center_square_resize``),
so at 64×64 the ellipse has centre (31.5, 36.1), semi-axes 14.0 × 22.1 px and covers 24 % of the image.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from pycompgen import metrics as _m

CELEBA_ALIGNED_SIZE = (178, 218)  # width, height of img_align_celeba
CELEBA_ALIGNED_LANDMARKS = {  # (x, y) pixel indices in the 178x218 aligned image; source in the module docstring
    "left_eye": (69.0, 111.0), "right_eye": (108.0, 111.0), "nose": (88.0, 136.0),
    "left_mouth": (72.0, 152.0), "right_mouth": (105.0, 152.0),
}
# ellipse from the landmarks: centre below the eye line by CY_EM·d_em, semi-axes A_EE·d_ee and B_EM·d_em
ELLIPSE_CY_EM, ELLIPSE_A_EE, ELLIPSE_B_EM = 0.25, 1.0, 1.5
MASK_SOURCES = ("celeba-aligned",)
SOFT_SUBSAMPLES = 8  # soft mask: fraction of 8x8 sub-pixel samples inside the ellipse
TABLE1_METRICS = ("1-ssim", "1-ms_ssim", "l1", "l2")


def _crop_map(image_size: int, src_w: int, src_h: int):
    """(scale, left, top) of pycompgen.data.cache.center_square_resize: source pixel index p maps to
    (p + 0.5 - offset)·scale − 0.5 in the resized image."""
    s = min(src_w, src_h)
    return image_size / s, (src_w - s) // 2, (src_h - s) // 2


def _check_source(source: str) -> None:
    if source not in MASK_SOURCES:
        raise ValueError(f"face mask: unknown source {source!r}; supported: {', '.join(MASK_SOURCES)}")


def _check_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"face mask: image_size must be an integer >= 8, got {image_size!r}")
    return int(image_size)


def celeba_landmarks(image_size: int = 64, source: str = "celeba-aligned") -> dict[str, tuple[float, float]]:
    """The typical aligned landmark positions mapped into pycompgen's image_size×image_size crop (pixel indices)."""
    _check_source(source)
    size = _check_size(image_size)
    scale, left, top = _crop_map(size, *CELEBA_ALIGNED_SIZE)
    return {k: ((x + 0.5 - left) * scale - 0.5, (y + 0.5 - top) * scale - 0.5)
            for k, (x, y) in CELEBA_ALIGNED_LANDMARKS.items()}


def face_ellipse(image_size: int = 64, source: str = "celeba-aligned") -> tuple[float, float, float, float]:
    """(cx, cy, a, b) of the fixed face ellipse in pixel indices of an image_size×image_size face: centre x, y and
    the horizontal and vertical semi-axes. See the module docstring for the derivation."""
    _check_source(source)
    size = _check_size(image_size)
    lm = CELEBA_ALIGNED_LANDMARKS
    eye_x = (lm["left_eye"][0] + lm["right_eye"][0]) / 2
    eye_y = (lm["left_eye"][1] + lm["right_eye"][1]) / 2
    mouth_y = (lm["left_mouth"][1] + lm["right_mouth"][1]) / 2
    d_ee = lm["right_eye"][0] - lm["left_eye"][0]
    d_em = mouth_y - eye_y
    cx, cy = eye_x, eye_y + ELLIPSE_CY_EM * d_em
    scale, left, top = _crop_map(size, *CELEBA_ALIGNED_SIZE)
    return ((cx + 0.5 - left) * scale - 0.5, (cy + 0.5 - top) * scale - 0.5,
            ELLIPSE_A_EE * d_ee * scale, ELLIPSE_B_EM * d_em * scale)


def face_ellipse_mask(image_size: int = 64, source: str = "celeba-aligned", soft: bool = False) -> torch.Tensor:
    """Face mask (1, 1, H, W) float32: a fixed ellipse from CelebA's aligned landmark positions.

    Not a per-image detector: the same ellipse for every image, valid for CelebA "Align&Cropped" faces as
    pycompgen crops and resizes them (central square, then image_size×image_size). ``soft=False``: 1 where the
    pixel centre lies inside the ellipse, else 0; ``soft=True``: the fraction of the pixel covered by the ellipse
    (anti-aliased edge, 8×8 sub-samples per pixel)."""
    cx, cy, a, b = face_ellipse(image_size, source)
    size = int(image_size)
    k = SOFT_SUBSAMPLES if soft else 1
    t = (np.arange(size * k, dtype=np.float64) + 0.5) / k - 0.5  # sample positions in pixel indices
    inside = ((t[None, :] - cx) / a) ** 2 + ((t[:, None] - cy) / b) ** 2 <= 1.0
    m = inside.reshape(size, k, size, k).mean(axis=(1, 3))
    return torch.from_numpy(m.astype(np.float32)).view(1, 1, size, size)


def _prepare_mask(mask, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    n, c, h, w = x.shape
    m = mask.to(device=x.device, dtype=torch.float32)
    if m.dim() == 2:
        m = m.view(1, 1, *m.shape)
    if m.dim() != 4 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, n) or m.shape[1] not in (1, c):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, which does not fit images of shape {tuple(x.shape)} "
                         f"(expected H×W, 1×1×H×W, N×1×H×W or N×C×H×W with H×W = {h}×{w})")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("mask values must lie in [0, 1]")
    return m


def table1_metrics(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor | None = None, *,
                   lp_mean: str = "image") -> dict:
    """The study's Table 1 metrics of x_hat against x: 1−SSIM, 1−MS-SSIM, l1 (MAE), l2 (MSE).

    x, x_hat: N×C×H×W in [0, 1]. With a ``mask`` (H×W, 1×1×H×W, N×1×H×W or N×C×H×W, values in [0, 1], e.g.
    ``face_ellipse_mask()``), both images are multiplied by it before every metric (background set to 0 in both;
    for l1 and l2 this equals replacing x_hat's background by x's). SSIM and MS-SSIM are the project's
    (``pycompgen.metrics``: 11×11 Gaussian window, valid padding; MS-SSIM with 3 scales at 64 px).
    ``lp_mean``: l1 and l2 are means over all N·C·H·W values ("image", the study's MAE/MSE over its n data
    points), or over the mask's pixels only ("mask": sum of mask·error / (C·sum of mask); without a mask the
    same as "image"). With "image" a binary mask can only lower l1 and l2.

    Returns {"per_image": {name: tensor (N,)}, "mean": {name: float}, "masked": bool} for the names
    "1-ssim", "1-ms_ssim", "l1", "l2"."""
    if not isinstance(x, torch.Tensor) or not isinstance(x_hat, torch.Tensor):
        raise ValueError("table1_metrics: x and x_hat must be torch tensors")
    if x.shape != x_hat.shape:
        raise ValueError(f"table1_metrics: x_hat has shape {tuple(x_hat.shape)} but x has shape {tuple(x.shape)}")
    if x.dim() != 4:
        raise ValueError(f"table1_metrics: images must be N×C×H×W, got shape {tuple(x.shape)}")
    if lp_mean not in ("image", "mask"):
        raise ValueError(f"table1_metrics: lp_mean must be 'image' or 'mask', got {lp_mean!r}")
    x, x_hat = x.float(), x_hat.float()
    for name, t in (("x", x), ("x_hat", x_hat)):
        if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
            raise ValueError(f"table1_metrics: {name} must be finite and in [0, 1] "
                             f"(got min {t.min().item():.4g}, max {t.max().item():.4g})")
    if mask is not None:
        m = _prepare_mask(mask, x)
        x, x_hat = x * m, x_hat * m
    d = x_hat - x
    if mask is not None and lp_mean == "mask":
        area = (m.expand_as(x).flatten(1).sum(1)).clamp_min(1e-12)
        l1 = d.abs().flatten(1).sum(1) / area  # d is already mask-weighted (zero outside the mask)
        l2 = d.pow(2).flatten(1).sum(1) / area
    else:
        l1, l2 = _m.l1(x_hat, x), _m.mse(x_hat, x)
    per = {"1-ssim": 1.0 - _m.ssim(x_hat, x), "1-ms_ssim": 1.0 - _m.ms_ssim(x_hat, x), "l1": l1, "l2": l2}
    mean = {k: (float(v.mean()) if v.numel() else math.nan) for k, v in per.items()}
    return {"per_image": per, "mean": mean, "masked": mask is not None}
