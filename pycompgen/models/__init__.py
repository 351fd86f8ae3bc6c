"""Network registry: ``model.name`` -> a builder of the named system's networks (``MODELS``).

Each system's networks live with the system (``pycompgen/systems/<name>``); shared blocks in ``pycompgen.networks``.
"""
from pycompgen.systems.compgen.networks import ELM, Decoder, Encoder, build_compgen, compgen_latent_shape
from .registry import MODELS, build_model, get_model, latent_shape, register_model

register_model("compgen", build_compgen, compgen_latent_shape)

__all__ = ["MODELS", "build_model", "latent_shape", "register_model", "get_model", "Encoder", "Decoder", "ELM"]
