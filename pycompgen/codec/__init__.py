"""Real bitstreams: the container format, entropy coders for edge maps and latents, and baseline image codecs.

| module | what |
|---|---|
| ``container`` | ``.pcg`` files: magic, version, system, weights hash, sizes, coder parameters, payload, CRC32 |
| ``edges`` | lossless context-adaptive arithmetic coding of binary edge maps; bilevel baselines |
| ``hint`` | Compgen's colour hint: a quantised thumbnail, predicted and range-coded |
| ``entropy`` | ``EntropyBottleneck``: factorised prior (Ballé et al. 2018) with range coding |

Codecs import no system and no evaluation: a trained model's codec (faces ↔ ``.pcg`` with its networks, behind
``pycompgen compress`` / ``decompress``) is ``pycompgen.inference``.

Names are imported lazily (``from pycompgen.codec import encode_edges``), so importing the package is cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "pack": "container", "unpack": "container", "weights_hash": "container", "Header": "container",
    "encode_edges": "edges", "decode_edges": "edges", "edge_baselines": "edges",
    "EntropyBottleneck": "entropy", "encode_hint": "hint", "decode_hint": "hint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
