"""Model zoo of pycompgen; ``MODELS`` maps a config's ``model.name`` to its builder."""
from .compgen import ELM, Decoder, Encoder, build_compgen, compgen_latent_shape
from .registry import MODELS, build_model, get_model, latent_shape, register_model

register_model("compgen", build_compgen, compgen_latent_shape)

__all__ = ["MODELS", "build_model", "latent_shape", "register_model", "get_model", "Encoder", "Decoder", "ELM"]
