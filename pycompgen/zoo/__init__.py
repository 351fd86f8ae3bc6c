"""Pretrained Compgen models shipped with pycompgen (issue 8 §3).

    import pycompgen.zoo as zoo
    zoo.list()                      # ['compgen-64', ...]
    pre = zoo.load("compgen-64")    # Pretrained: pre["approach3"] is a LoadedCheckpoint, pre.models("step1") ...
    x_hat = decode_edges(pre.models("approach3"), z_noisy)   # pycompgen.systems.compgen.system.decode_edges

Entries are described by ``manifest.json``; weights are fp16 state dicts checked by sha256 at load (see
``pycompgen.zoo.core``). ``PYCOMPGEN_ZOO_DIR`` points the zoo at another folder (tests, private models).
"""
from .core import (DEFAULT_NAME, ENV_DIR, FORMAT, STAGES, Pretrained, entry, load, names, read_manifest,
                   sha256_file, verify_file, write_manifest, zoo_dir)


def info(name: str) -> dict:
    """The manifest entry of ``name`` (description, stages with files and hashes, training condition, metrics)."""
    return entry(name)


def format_list() -> str:
    """One line per entry: name, training PSNR, headline metrics, description."""
    m = read_manifest()
    if not m["entries"]:
        return f"no pretrained models in {zoo_dir()} (export one with tools/zoo_export.py)"
    lines = []
    for n in sorted(m["entries"]):
        e = m["entries"][n]
        tr = (e.get("training") or {}).get("psnr_summary", "")
        mt = (e.get("metrics") or {}).get("summary", "")
        star = " (default)" if n == m.get("default") else ""
        lines.append(f"{n}{star}: {e.get('description', '')}" + (f" | trained at {tr}" if tr else "")
                     + (f" | {mt}" if mt else ""))
    return "\n".join(lines)


def list():  # noqa: A001 - the zoo's public name, as in the issue: pycompgen.zoo.list()
    """Names of the pretrained entries."""
    return names()


__all__ = ["list", "load", "info", "format_list", "names", "entry", "Pretrained", "zoo_dir", "read_manifest",
           "write_manifest", "sha256_file", "verify_file", "FORMAT", "STAGES", "ENV_DIR", "DEFAULT_NAME"]
