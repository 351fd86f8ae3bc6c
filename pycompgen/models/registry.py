"""Model registry: configs name a model (``model.name``); later systems (CVAE, DCGAN, BEGAN, CycleGAN) register here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., dict]          # (model_cfg, image_size) -> {"f": ..., "g": ..., ...}
    latent_shape: Callable[..., tuple]  # (model_cfg, image_size) -> per-image latent shape


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, build: Callable[..., dict], latent_shape: Callable[..., tuple]) -> None:
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = ModelEntry(build, latent_shape)


def get_model(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (registered: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def build_model(model_cfg, image_size: int = 64) -> dict[str, nn.Module]:
    """Build the named model's networks, e.g. {"f": Encoder, "g": Decoder, "h": ELM} for "compgen"."""
    return get_model(model_cfg.name).build(model_cfg, image_size)


def latent_shape(model_cfg, image_size: int = 64) -> tuple:
    return tuple(get_model(model_cfg.name).latent_shape(model_cfg, image_size))
