"""The package's dependency direction (docs/architecture.md): the layers, in packages.

This test is the truth about who may import whom; module docstrings say what
a module is for, not what it imports.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

import crawler

PACKAGE = Path(crawler.__file__).parent
# The top level: the vocabulary (every layer may use it) and the two faces.
VOCABULARY = {"errors", "records", "stats", "config", "values", "extract", "escapes"}
VOCABULARY |= {"offload", "heap", "runtime"}
RANKS = {
    "demo": 0,
    "web": 0,
    "vocabulary": 1,
    "net": 2,
    "frontier": 2,
    "output": 2,
    "loop": 3,
    "procs": 4,
    "api": 5,
    "cli": 6,
    "flags": 6,
    "option_groups": 6,
    "terminal": 6,
    "check_formats": 6,
    "logs": 6,
    "__main__": 7,
    "__init__": 7,
}
# Packages of one rank that must not know each other.
STRANGERS = {("frontier", "output"), ("output", "frontier"), ("net", "frontier")}
STRANGERS |= {("net", "output"), ("frontier", "net"), ("output", "net")}


def modules() -> dict[str, Path]:
    """Every module, by dotted name below crawler (``crawl.engine``, ``cli``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def group(module: str) -> str:
    """The layer a module belongs to: its package, or vocabulary, or itself."""
    top = module.split(".")[0]
    return "vocabulary" if top in VOCABULARY else top


def crawler_imports(module: str) -> set[str]:
    """The modules of crawler that ``module`` imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "crawler":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("crawler."):
                imported = node.module.removeprefix("crawler.")
                submodules = (f"{imported}.{alias.name}" for alias in node.names)
                names.update(name for name in submodules if name in MODULES)
                names.add(imported)
        elif isinstance(node, ast.Import):
            names.update(
                alias.name.removeprefix("crawler.")
                for alias in node.names
                if alias.name.startswith("crawler.")
            )
    return {name for name in names if name in MODULES and name != module}


def test_every_module_has_a_layer() -> None:
    assert {group(module) for module in MODULES} <= set(RANKS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer_or_a_stranger(module: str) -> None:
    mine = group(module)
    for imported in crawler_imports(module):
        theirs = group(imported)
        assert RANKS[theirs] <= RANKS[mine], f"{module} imports higher layer {imported}"
        assert (mine, theirs) not in STRANGERS, f"{module} imports {imported}"


def test_web_imports_nothing_from_crawler() -> None:
    for module in MODULES:
        if group(module) == "web":
            assert crawler_imports(module) == set(), module


def test_demo_imports_nothing_from_crawler() -> None:
    assert crawler_imports("demo") == set()


def test_no_import_cycles() -> None:
    graph = {module: crawler_imports(module) - {"__init__"} for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_every_module_opens_with_a_docstring_of_its_role() -> None:
    for module, path in MODULES.items():
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, f"{module} has no docstring"
        # What a module imports is this test's to say, not a list kept by hand.
        assert not re.search(r"Layer \d", docstring), f"{module}'s docstring lists its layer"


def test_no_subpackage_hides_a_public_name() -> None:
    """Importing crawler.X makes X an attribute of crawler: a subpackage named like a
    public function would replace it (crawler.crawl once was)."""
    for module in MODULES:
        importlib.import_module(f"crawler.{module}" if module != "__init__" else "crawler")
    for name in crawler.__all__:
        assert not isinstance(getattr(crawler, name), types.ModuleType), name
