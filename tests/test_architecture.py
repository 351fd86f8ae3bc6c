"""The package's layering (docs/architecture.md): every import — module-level and inside functions — runs from a
room to a room of a lower layer; no cycle between rooms; systems, codecs, configuration and the training loop keep
to their rules. The layer table is read from docs/architecture.md, so the written direction is the tested one."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pycompgen"
DOC = ROOT / "docs" / "architecture.md"

SYSTEM_MAY_IMPORT = {"ops", "data", "networks", "metrics", "codec", "registry", "config"}
RAY_MLFLOW_ROOMS = {"tracking", "distributed", "tune", "cli"}
EXTERNAL_EDGE = ("ray", "mlflow")


def read_layers(text: str) -> dict:
    """{room: layer} from the markdown table rows ``| N | `room` | ... |``."""
    layers = {}
    for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*`([\w.]+)`\s*\|", text, flags=re.M):
        layers[m.group(2)] = int(m.group(1))
    return layers


def room_of_module(mod: str) -> str | None:
    """``pycompgen.systems.cvae`` -> ``systems``; ``pycompgen`` -> ``__init__``; non-project modules -> None."""
    parts = mod.split(".")
    if parts[0] != "pycompgen":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def source_room(path: Path) -> str:
    rel = path.relative_to(PKG)
    if len(rel.parts) == 1:
        return rel.stem  # pycompgen/config.py -> config, pycompgen/__init__.py -> __init__
    return rel.parts[0]


def imports_of(path: Path):
    """(line, target module, imported names) of every import statement in the file, at any depth."""
    mod, is_pkg = module_name(path)
    package = mod if is_pkg else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target, tuple(a.name for a in node.names)


def project_edges():
    """[(source room, target room, "file:line")] for every import between two different rooms of pycompgen."""
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        src = source_room(path)
        for line, target, names in imports_of(path):
            dst = room_of_module(target)
            if dst is None:
                continue
            if dst == "__init__" and names:  # "from pycompgen import zoo" imports the room zoo
                for n in names:
                    is_room = (PKG / n).is_dir() or (PKG / f"{n}.py").is_file() or any(PKG.glob(f"{n}.*.so"))
                    r = n if is_room or n == "_C" else "__init__"
                    if r != src:
                        edges.append((src, r, f"{path.relative_to(ROOT)}:{line}"))
                continue
            if dst != src:
                edges.append((src, dst, f"{path.relative_to(ROOT)}:{line}"))
    return edges


LAYERS = read_layers(DOC.read_text())
EDGES = project_edges()


def test_the_layer_table_names_every_room():
    rooms = {source_room(p) for p in PKG.rglob("*.py")} | {"_C"}
    assert len(LAYERS) >= 20, "docs/architecture.md: layer table not found"
    missing = sorted(rooms - set(LAYERS))
    assert not missing, f"rooms missing from docs/architecture.md's layer table: {missing}"
    stale = sorted(set(LAYERS) - rooms)
    assert not stale, f"docs/architecture.md names rooms the package does not have: {stale}"


def test_imports_run_down_the_layers():
    bad = [f"{where}: {a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
           for a, b, where in EDGES if a in LAYERS and b in LAYERS and LAYERS[b] >= LAYERS[a]]
    assert not bad, "imports against the written direction (docs/architecture.md):\n" + "\n".join(bad)


def find_cycle(edges) -> list | None:
    graph = defaultdict(set)
    for a, b, _ in edges:
        graph[a].add(b)
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_cycle_between_rooms():
    cycle = find_cycle(EDGES)
    assert cycle is None, "import cycle between rooms: " + " -> ".join(cycle)


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The checker itself: imports inside functions count, and a two-room cycle is found."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from pycompgen.cli import main\n")
    src = ast.parse(f.read_text())
    assert [n.module for n in ast.walk(src) if isinstance(n, ast.ImportFrom)] == ["pycompgen.cli"]
    assert find_cycle([("a", "b", ""), ("b", "c", ""), ("c", "a", "")]) == ["a", "b", "c", "a"]
    assert find_cycle([("a", "b", ""), ("b", "c", "")]) is None
    assert any(a == "cli" and b == "zoo" for a, b, _ in EDGES)  # a lazy import inside a function


def test_systems_import_only_the_rooms_below_them():
    bad = [f"{where}: systems imports {b}" for a, b, where in EDGES if a == "systems" and b not in SYSTEM_MAY_IMPORT]
    assert not bad, "\n".join(bad)


def test_codecs_and_configuration_import_no_system():
    bad = [f"{where}: {a} imports {b}" for a, b, where in EDGES
           if (a == "codec" and b in {"systems", "evaluation", "inference", "models", "zoo"})
           or (a == "config" and b == "systems")]
    assert not bad, "\n".join(bad)


def test_ray_and_mlflow_stay_at_the_edges():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        room = source_room(path)
        if room in RAY_MLFLOW_ROOMS:
            continue
        for line, target, _ in imports_of(path):
            if target.split(".")[0] in EXTERNAL_EDGE:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {room} imports {target}")
    assert not bad, "Ray/MLflow outside tracking, distributed, tune and cli:\n" + "\n".join(bad)


def test_the_registry_is_the_one_plugin_point():
    from pycompgen import registry
    assert registry._MODULES and all(m.startswith("pycompgen.systems.") for m in registry._MODULES.values())
    by_name = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel in ("registry.py", "codec/__init__.py"):
            continue
        for _, target, _ in imports_of(path):
            if target == "importlib" or target.startswith("importlib."):
                by_name.append(rel)
    assert not by_name, f"modules importing by name outside the registry: {by_name}"
    for name in registry._MODULES:
        assert registry.get_system(name).name == name


@pytest.mark.parametrize("public", ["pycompgen.zoo.load", "pycompgen.ops.ssim", "pycompgen.ssim",
                                    "pycompgen.models.load_for_eval", "pycompgen.inference.compress_images",
                                    "pycompgen.training.fit", "pycompgen.systems.get_system",
                                    "pycompgen.evaluation.sweep", "pycompgen.cli.main"])
def test_public_names_keep_working(public):
    import importlib
    mod, name = public.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(mod), name))
