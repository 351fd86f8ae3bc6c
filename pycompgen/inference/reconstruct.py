"""Inference helpers: reconstruct x̂ from a face or a noisy edge map (trained models load with pycompgen.models)."""
from __future__ import annotations

import torch

from pycompgen.systems.compgen.system import decode_edges


@torch.no_grad()
def reconstruct(models: dict, x: torch.Tensor | None = None, z_noisy: torch.Tensor | None = None,
                mode: str = "ae", hint: torch.Tensor | None = None) -> torch.Tensor:
    """``ae``: x̂ = g(f(x)); ``elm``: x̂ = g(h(z_noisy)) (a colour-hint model: g(h(z_noisy, hint)), the hint from
    ``pycompgen.systems.compgen.system.make_hint``)."""
    if mode == "ae":
        if x is None:
            raise ValueError("reconstruct(mode='ae') needs x")
        return models["g"](models["f"](x))
    if mode == "elm":
        if z_noisy is None:
            raise ValueError("reconstruct(mode='elm') needs z_noisy")
        return decode_edges(models, z_noisy, hint)
    raise ValueError(f"reconstruct: mode must be 'ae' or 'elm', got {mode!r}")


def check_image_size(t: torch.Tensor, image_size: int, what: str = "image") -> None:
    """Raise a ValueError naming the shape when ``t`` (N×C×H×W) is not image_size × image_size."""
    if t.dim() != 4 or tuple(t.shape[-2:]) != (image_size, image_size):
        raise ValueError(f"{what} has shape {tuple(t.shape)}, but the model was trained on "
                         f"{image_size}×{image_size} images (N×C×{image_size}×{image_size} expected)")
