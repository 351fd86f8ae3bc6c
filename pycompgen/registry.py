"""The one registry of systems: name -> System class, loaded on first lookup.

The systems register themselves (``register_system``, a class decorator in each system module); ``_MODULES`` is
the table of the system modules by name, imported by ``get_system`` / ``load_all`` the first time a name is
looked up — the plugin point through which the lower rooms (``config``, ``models``) reach systems without
importing them. A system's own config section is its class attribute ``section``; ``pycompgen.config`` reads
the sections from here (``sections()``), so the configuration never imports the systems it configures.
"""
from __future__ import annotations

import importlib

# name -> module defining (and registering) the system class
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
    return cls


def unregister_system(name: str) -> None:
    """Remove a registered system (tests registering toy systems)."""
    SYSTEMS.pop(name, None)


def load_all() -> dict:
    """Import every known system module (registering the systems and their config sections)."""
    for mod in _MODULES.values():
        importlib.import_module(mod)
    return SYSTEMS


def names() -> list:
    return sorted(set(_MODULES) | set(SYSTEMS))


def get_system(name: str) -> type:
    if name not in SYSTEMS:
        if name not in _MODULES:
            raise ValueError(f"unknown system {name!r} (registered: {', '.join(names())})")
        importlib.import_module(_MODULES[name])
    return SYSTEMS[name]


def sections() -> dict:
    """System name -> dataclass of its own hyper-parameters (``cfg.<name>``), for every known system."""
    load_all()
    return {n: cls.section for n, cls in SYSTEMS.items() if cls.section is not None}


def build_networks(cfg) -> dict:
    """All networks of ``cfg.model.name`` (untrained), e.g. for loading a checkpoint."""
    return get_system(cfg.model.name).build_networks(cfg)


__all__ = ["SYSTEMS", "register_system", "unregister_system", "load_all", "names", "get_system", "sections",
           "build_networks"]
