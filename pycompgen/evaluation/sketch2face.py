"""Measuring Sketch2face (seed 004, bench/sketch2face.py) beyond the paper's cycle distances: do sketch -> face
outputs look like faces, and are they different faces for different sketches? Does face -> sketch give different
sketches for different faces?

Per variant (``realism``), from validation sketches and faces, latent means:
- sketch -> face against real faces, through the judge (``pycompgen.evaluation.judge``; FD in the Compgen encoder's
  features, non-standard): FD, the feature-space spread of the outputs over the real faces' (``spread_ratio``),
  the near-duplicate share and the collapse flag; and the Laplacian energy of the outputs over that of real faces
  (``sharpness_ratio``; 1 = as much detail as real faces, a bicubic 16-px face ~0.03);
- face -> sketch against real sketches, in pixel space (no feature space exists for sketches): the mean pairwise
  distance of the fake sketches over the real sketches' (``sketch_spread_ratio``; ≈ 0 = one generic sketch) and
  the same scale-free near-duplicate test (``sketch_collapse``).
"""
from __future__ import annotations

import torch

from pycompgen.evaluation.judge import collapse_check, judge, mean_pairwise_distance
from pycompgen.evaluation.refiner import sharpness_ratio


def _01(x: torch.Tensor) -> torch.Tensor:
    return ((x.float().clamp(-1, 1) + 1) / 2)


def _fit(x: torch.Tensor, features) -> torch.Tensor:
    """Images resized (bilinear) to the feature space's input size, if it has one (32-px models, 64-px encoder)."""
    s = getattr(features, "image_size", None)
    if s is None or x.shape[-1] == s:
        return x
    return torch.nn.functional.interpolate(x, size=(s, s), mode="bilinear", align_corners=False).clamp(0, 1)


@torch.no_grad()
def translate_all(models: dict, src: str, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    from pycompgen.systems.sketch2face import Sketch2Face
    return torch.cat([Sketch2Face.translate(models, src, x[a:a + batch], False)[0].float()
                      for a in range(0, len(x), batch)])


@torch.no_grad()
def realism(models: dict, sketches: torch.Tensor, faces: torch.Tensor, features, seed: int = 0) -> dict:
    """The figures of the module docstring for one variant's networks; ``sketches`` (N,1,H,W) and ``faces``
    (M,3,H,W) in [-1, 1] (validation), ``features`` a judge ``FeatureExtractor``."""
    fake_f = _01(translate_all(models, "s", sketches))
    real_f = _01(faces)
    j = judge(_fit(fake_f, features), _fit(real_f, features), features=features, n_boot=50, seed=seed)
    fake_s = _01(translate_all(models, "f", faces)).flatten(1).double()
    real_s = _01(sketches).flatten(1).double()
    sk = collapse_check(fake_s, real_s, seed=seed)
    return {"fd": j["realism"]["fd"], "fd_label": j["realism"]["label"],
            "spread_ratio": j["diversity"]["ratio_to_real"],
            "near_duplicate_share": j["diversity"]["near_duplicate_share"], "collapse": j["diversity"]["collapse"],
            "sharpness_ratio": sharpness_ratio(fake_f, real_f),
            "sketch_spread_ratio": mean_pairwise_distance(fake_s) / max(mean_pairwise_distance(real_s), 1e-12),
            "sketch_near_duplicate_share": sk["near_duplicate_share"], "sketch_collapse": sk["collapse"],
            "n_sketches": int(len(sketches)), "n_faces": int(len(faces))}


@torch.no_grad()
def prior_realism(models: dict, faces: torch.Tensor, features, n: int = 256, seed: int = 0,
                  source: str = "prior") -> dict:
    """The face decoder on prior samples, G_f(z), z ~ N(0, I), against real faces (same figures as ``realism``'s
    sketch -> face ones). A translation hands G_f the sketch encoder's latents: if G_f draws no face from the prior,
    it has no reason to draw one from them. ``source="reconstruction"``: G_f(μ_f(face)) of the same real faces
    instead, the face VAE's own reconstructions (a translation's bound: what G_f makes of a face's own encoding)."""
    from pycompgen.systems.sketch2face import Sketch2Face
    if source == "reconstruction":
        fake = torch.cat([_01(Sketch2Face.autoencode(models, "f", faces[a:a + 64], sample=False)[0].float())
                          for a in range(0, len(faces), 64)])
    elif source == "prior":
        shape = Sketch2Face.encode(models, "f", faces[:1], False)[0].shape[1:]
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, *shape, generator=g)
        fake = torch.cat([_01(models["G_f"](z[a:a + 64]).float()) for a in range(0, n, 64)])
    else:
        raise ValueError(f"prior_realism: source must be prior or reconstruction, got {source!r}")
    real = _01(faces)
    j = judge(_fit(fake, features), _fit(real, features), features=features, n_boot=50, seed=seed)
    return {"fd": j["realism"]["fd"], "spread_ratio": j["diversity"]["ratio_to_real"],
            "near_duplicate_share": j["diversity"]["near_duplicate_share"], "collapse": j["diversity"]["collapse"],
            "sharpness_ratio": sharpness_ratio(fake, real), "n_samples": int(len(fake))}


def real_reference(faces: torch.Tensor, features) -> dict:
    """The same figures for real faces against themselves split in halves (what a perfect generator scores)."""
    f = _01(faces)
    h = len(f) // 2
    j = judge(_fit(f[:h], features), _fit(f[h:2 * h], features), features=features, n_boot=50)
    return {"fd_half_split": j["realism"]["fd"], "spread_ratio": j["diversity"]["ratio_to_real"],
            "sharpness_ratio": sharpness_ratio(f[:h], f[h:2 * h])}


def ordering(rows: dict) -> dict:
    """The paper's Table 1 ordering (only-latent-layers < whole model < from scratch) per cycle, by cycle L1 and,
    where the rows carry it, by the paper's own measure, the FD between inputs and reconstructions (``cycle_fd``)."""
    out = {}
    for cyc in ("sketch", "face"):
        for key, suffix in ((f"{cyc}_cycle_l1", ""), (f"{cyc}_cycle_fd", "_fd")):
            if all(key in rows[k] for k in ("latent", "stitched", "cycle")):
                v = [rows[k][key] for k in ("latent", "stitched", "cycle")]
                out[f"{cyc}_cycle_as_paper{suffix}"] = bool(v[0] < v[1] < v[2])
    return out


@torch.no_grad()
def cycle_fd(models: dict, sketches: torch.Tensor, faces: torch.Tensor, features, batch: int = 64) -> dict:
    """The paper's Table 1 measure: FD between the inputs and their cycle reconstructions (latent means),
    sketch -> face -> sketch and face -> sketch -> face, in ``features`` (the judge's; sketches enter as grey RGB,
    so for them this is a face encoder's space: non-standard twice over). Inputs in [-1, 1]."""
    from pycompgen.evaluation.judge import frechet_distance
    from pycompgen.systems.sketch2face import Sketch2Face
    out = {"cycle_fd_label": features.label}
    for d, x in (("sketch", sketches), ("face", faces)):
        rec = torch.cat([Sketch2Face.cycle(models, d[0], x[a:a + batch]).float() for a in range(0, len(x), batch)])
        src, rec = _01(x), _01(rec)
        if src.shape[1] == 1:
            src, rec = src.expand(-1, 3, -1, -1), rec.expand(-1, 3, -1, -1)
        out[f"{d}_cycle_fd"] = frechet_distance(features.extract(_fit(rec, features)),
                                                features.extract(_fit(src, features)))
        out[f"{d}_cycle_fd_n"] = int(len(x))
    return out


__all__ = ["realism", "prior_realism", "real_reference", "ordering", "translate_all", "cycle_fd"]
