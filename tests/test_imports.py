"""The package's import graph, read from the source with `ast`: no cycles, the config
schemas at the bottom, and the model's maths free of Lightning.

Every `import` and `from ... import` counts, wherever it sits: at the top of a module,
inside a function, or under `if TYPE_CHECKING:` (an import there is still an arrow a
reader follows, and mypy resolves it). Relative imports are resolved against the package
they are written in. An edge goes to the module named, or to `pkg.name` where `from pkg
import name` names a module; the `__init__` of a package that is passed through on the
way is not counted as imported (the arrows are the ones the code writes).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = "vae_lab"
SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package under `src`."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """The dotted names module `name` (at `path`) imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x, from ..y import z
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (each name cut back to the longest
    prefix that is a module of the package)."""
    known = modules(src)
    graph = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_names(name, path):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) through each strongly connected component of more than
    one module (Tarjan 1972, iterative), as the path that closes it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_cycle_within(graph, component) for component in components]


def _cycle_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({**graph, "c": {"d"}}) == []


def test_no_module_of_the_package_imports_itself_round_a_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_config_schemas_import_nothing_of_the_package() -> None:
    schemas = f"{PACKAGE}.config.schemas"
    path = modules()[schemas]
    assert not {n for n in imported_names(schemas, path) if n.split(".")[0] == PACKAGE}


def test_the_models_maths_and_its_components_import_no_lightning() -> None:
    known = modules()
    names = [f"{PACKAGE}.models.core", f"{PACKAGE}.models.interface"]
    names += [n for n in known if n.startswith(f"{PACKAGE}.models.components.")]
    for name in names:
        lightning = {n for n in imported_names(name, known[name]) if n.split(".")[0] == "lightning"}
        assert not lightning, f"{name} imports {sorted(lightning)}"


def test_a_name_that_left_vae_lab_config_says_in_one_line_where_it_is_now() -> None:
    import vae_lab.config

    for name, module in vae_lab.config.MOVED.items():
        with pytest.raises(ImportError, match=rf"^vae_lab.config.{name} is now {module}.{name}$"):
            __import__("vae_lab.config", fromlist=[name])  # `from vae_lab.config import <name>`
        assert hasattr(importlib.import_module(module), name)
    assert vae_lab.config.MODEL_GROUPS is vae_lab.config.schemas.MODEL_GROUPS  # re-exported
