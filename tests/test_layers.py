"""The tree is the architecture: no import circles, and no import from a lower layer up into a higher one.

Every import counts: at module level, inside functions (lazy imports of
optional dependencies) and under ``TYPE_CHECKING``, since each is a
dependency a reader has to follow. The layers, lowest first, are
:data:`LAYERS`; a module belongs to the first entry that its dotted name
starts with. A module may import its own layer or any below it.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pixel_middleware", "flask_pixel")

#: (prefix, layer), lowest layer first. The first prefix a module's name starts with places it.
LAYERS: Tuple[Tuple[str, int], ...] = (
    ("pixel_middleware._version", 0),
    ("pixel_middleware.core", 0),            # the canonical event, its GIF, its signals
    ("pixel_middleware.sinks", 1),           # delivery
    ("pixel_middleware.pipeline.dialects", 1),
    ("pixel_middleware.pipeline.steps", 1),  # signing, agents, crawlers, privacy, dedup
    ("pixel_middleware.options", 2),         # the options table: checks values into dialects and sinks
    ("pixel_middleware.pipeline", 3),        # the collector, clicks, URL building, metrics
    ("pixel_middleware.middleware", 4),      # the front doors
    ("pixel_middleware.asgi", 4),
    ("pixel_middleware.templates", 4),
    ("pixel_middleware.links", 4),
    ("pixel_middleware.django", 4),
    ("pixel_middleware.server", 5),          # serve, its workers, ops port, CLI
    ("pixel_middleware.__main__", 5),
    ("flask_pixel", 5),
)
#: The package's face: it hands on the public names of every layer below the server, and
#: nothing inside the package may import it (the front doors outside it, flask_pixel, may).
FACADE = ("pixel_middleware", 4)


def _modules() -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: Set[str]) -> List[str]:
    """The package's own modules that ``name`` imports, anywhere in its text."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            origin = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # "from . import clicks" imports a module
                candidate = f"{origin}.{alias.name}"
                targets.append(candidate if candidate in modules else origin)
    own = []
    for target in targets:
        while target and target not in modules:  # "a.b.Name" -> the module "a.b"
            target = target.rpartition(".")[0]
        if target and target != name:
            own.append(target)
    return sorted(set(own))


def _layer(name: str) -> int:
    if name == FACADE[0]:
        return FACADE[1]
    for prefix, layer in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{name} is in no layer: add it to LAYERS (tests/test_layers.py)")


@pytest.fixture(scope="module")
def graph() -> Dict[str, List[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_module_has_a_layer(graph: Dict[str, List[str]]) -> None:
    for name in graph:
        _layer(name)


def test_no_import_runs_up_a_layer(graph: Dict[str, List[str]]) -> None:
    upward = [f"{name} ({_layer(name)}) -> {target} ({_layer(target)})"
              for name, targets in graph.items() for target in targets if _layer(target) > _layer(name)]
    assert not upward, "imports up a layer:\n" + "\n".join(upward)


def test_nothing_in_the_package_imports_its_face(graph: Dict[str, List[str]]) -> None:
    inside = [name for name, targets in graph.items()
              if name.startswith("pixel_middleware.") and FACADE[0] in targets]
    assert not inside, f"modules importing pixel_middleware's __init__ (import the module itself): {inside}"


def test_no_import_circle(graph: Dict[str, List[str]]) -> None:
    state: Dict[str, int] = {}  # 1: on the path, 2: done
    path: List[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in graph.get(name, []):
            if state.get(target) == 1:
                loop = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(loop))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_walk_sees_what_it_must() -> None:
    """The checks above are only as good as the import walk: it finds relative, lazy and TYPE_CHECKING imports."""
    modules = _modules()
    collector = "pixel_middleware.pipeline.collector"
    found = _imports(collector, modules[collector], set(modules))
    assert "pixel_middleware.pipeline.metrics" in found  # imported inside a function, only with metrics on
    assert "pixel_middleware.options" in found
    assert "pixel_middleware.core.events" in found
