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
in a plain loop or on Ray Train. The registry (``pycompgen.registry``) imports a system module on first lookup.
"""
from __future__ import annotations

from pycompgen.registry import SYSTEMS, build_networks, get_system, load_all, names, register_system

from .base import StageSpec, System


def build_system(cfg, device, init=None, **kw) -> System:
    """The system of ``cfg.model.name`` for stage ``cfg.train.stage`` (see ``System.__init__``)."""
    return get_system(cfg.model.name)(cfg, device, init, **kw)


__all__ = ["System", "StageSpec", "SYSTEMS", "register_system", "get_system", "build_system", "build_networks",
           "load_all", "names"]
