"""Trainable systems, one per paper, registered by name (``model.name`` / ``pycompgen train --system NAME``).

| name | paper | module |
|---|---|---|
| compgen | Compgen: faces from edge maps (step 1, approaches 1-3) | ``pycompgen/systems/compgen/`` |
| cvae | CVAE face compressor (face-reconstruction study) | ``pycompgen/systems/cvae.py`` |
| dcgan | DCGAN face compressor (face-reconstruction study) | ``pycompgen/systems/dcgan.py`` |
| edgediff | edge-guided diffusion compression (VAE, EEN, ControlNet denoiser) | ``pycompgen/systems/edgediff/`` |
| sketch2face | Sketch2face (seed 004): unpaired sketch <-> face CycleGAN, VAE generators, WGAN-GP critics | ``pycompgen/systems/sketch2face.py`` |
| began | BEGAN image refiner (seed 003): downscaled image in, refined face out | ``pycompgen/systems/began.py`` |

Each system holds its networks, losses and ``train_step``; the harness (``pycompgen.training``) trains any of them
in a plain loop or on Ray Train. System modules are imported on first lookup (no import cost for the others).
"""
from __future__ import annotations

import importlib

from .base import StageSpec, System

# name -> module defining the system class ``SYSTEM``
_MODULES = {
    "compgen": "pycompgen.systems.compgen.system",
    "cvae": "pycompgen.systems.cvae",
    "dcgan": "pycompgen.systems.dcgan",
    "edgediff": "pycompgen.systems.edgediff.system",
    "sketch2face": "pycompgen.systems.sketch2face",
    "began": "pycompgen.systems.began",
}
SYSTEMS: dict[str, type] = {}


def register_system(cls: type, module: str | None = None) -> type:
    """Register ``cls`` (a System subclass) under ``cls.name``; usable as a class decorator."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in SYSTEMS and SYSTEMS[cls.name] is not cls:
        raise ValueError(f"system {cls.name!r} is already registered")
    SYSTEMS[cls.name] = cls
    if cls.section is not None:
        from pycompgen.config import register_section
        register_section(cls.name, cls.section)
    return cls


def load_all() -> dict:
    """Import every known system module (registering the systems and their config sections)."""
    for mod in _MODULES.values():
        importlib.import_module(mod)
    return SYSTEMS


def names() -> list:
    return sorted(_MODULES)


def get_system(name: str) -> type:
    if name not in SYSTEMS:
        if name not in _MODULES:
            raise ValueError(f"unknown system {name!r} (registered: {', '.join(names())})")
        importlib.import_module(_MODULES[name])
    return SYSTEMS[name]


def build_system(cfg, device, init=None, **kw) -> System:
    """The system of ``cfg.model.name`` for stage ``cfg.train.stage`` (see ``System.__init__``)."""
    return get_system(cfg.model.name)(cfg, device, init, **kw)


def build_networks(cfg) -> dict:
    """All networks of ``cfg.model.name`` (untrained), e.g. for loading a checkpoint."""
    return get_system(cfg.model.name).build_networks(cfg)


__all__ = ["System", "StageSpec", "SYSTEMS", "register_system", "get_system", "build_system", "build_networks",
           "load_all", "names"]
