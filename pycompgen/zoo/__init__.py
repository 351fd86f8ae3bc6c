"""Pretrained Compgen models shipped with pycompgen (issue 8 §3).

    import pycompgen.zoo as zoo
    zoo.list()                      # ['compgen-64', ...]
    pre = zoo.load("compgen-64")    # Pretrained: pre["approach3"] is a LoadedCheckpoint, pre.models("step1") ...
    x_hat = decode_edges(pre.models("approach3"), z_noisy)   # pycompgen.systems.compgen.system.decode_edges

Entries are described by ``manifest.json``; weights are fp16 state dicts checked by sha256 at load (see
``pycompgen.zoo.core``). ``PYCOMPGEN_ZOO_DIR`` points the zoo at another folder (tests, private models).
"""
from .core import (DEFAULT_NAME, ENV_DIR, FORMAT, STAGES, Pretrained, entry, load, names, qualities, rate_point,
                   read_manifest, sha256_file, verify_file, write_manifest, zoo_dir)


def info(name: str) -> dict:
    """The manifest entry of ``name`` (description, stages with files and hashes, training condition, metrics)."""
    return entry(name)


def entry_bytes(e: dict) -> int:
    """Bytes of an entry's weight files (each file counted once)."""
    infos = [*(e.get("stages") or {}).values(), *(e.get("rate_points") or [])]
    files = {info["file"]: int(info.get("bytes", 0)) for info in infos}
    return sum(files.values())


def format_list() -> str:
    """The zoo as a table: name, system, size, rate points, headline metrics."""
    m = read_manifest()
    if not m["entries"]:
        return f"no pretrained models in {zoo_dir()} (export one with tools/zoo_export.py)"
    rows = [("name", "system", "size", "rate points", "trained at", "headline metrics (validation faces)")]
    for n in sorted(m["entries"]):
        e = m["entries"][n]
        rows.append((n + (" (default)" if n == m.get("default") else ""), str(e.get("system", e.get("model", ""))),
                     f"{entry_bytes(e) / 1e6:.1f} MB", str(len(e.get("rate_points") or []) or 1),
                     str((e.get("training") or {}).get("psnr_summary", "")),
                     str((e.get("metrics") or {}).get("summary", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def card_text(name: str) -> str:
    """The model card of ``name`` (markdown); ValueError when the entry has none."""
    e = entry(name)
    p = zoo_dir() / e["card"] if e.get("card") else None
    if p is None or not p.is_file():
        raise ValueError(f"pretrained model {name!r} has no model card")
    return p.read_text()


def list():  # noqa: A001 - the zoo's public name, as in the issue: pycompgen.zoo.list()
    """Names of the pretrained entries."""
    return names()


__all__ = ["list", "load", "info", "qualities", "rate_point", "card_text", "entry_bytes", "format_list", "names", "entry", "Pretrained",
           "zoo_dir", "read_manifest", "write_manifest", "sha256_file", "verify_file", "FORMAT", "STAGES", "ENV_DIR", "DEFAULT_NAME"]
