"""The package's dependency direction (DESIGN.md §2): lower layers never import higher."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crawler

PACKAGE = Path(crawler.__file__).parent
LAYERS = {
    "demo": 0,
    "errors": 0,
    "records": 0,
    "urls": 0,
    "robots": 0,
    "parser": 0,
    "stats": 0,
    "sitemaps": 0,
    "redis_scripts": 0,
    "channel": 0,
    "config": 1,
    "extract": 1,
    "fetcher": 2,
    "politeness": 2,
    "frontier": 2,
    "shared_frontier": 2,
    "output": 2,
    "engine": 3,
    "visit": 3,
    "hosts": 3,
    "journal": 2,
    "state": 2,
    "report": 2,
    "warc": 2,
    "procs": 4,
    "worker": 4,
    "api": 5,
    "cli": 6,
    "__main__": 7,
    "__init__": 7,
}


def crawler_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if module == "crawler":
                names.update(alias.name for alias in node.names)
            elif module.startswith("crawler."):
                names.add(module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("crawler."))
    return names


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules == set(LAYERS)


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    for imported in crawler_imports(PACKAGE / f"{module}.py"):
        assert LAYERS[imported] <= LAYERS[module], f"{module} imports higher layer {imported}"


def test_demo_imports_nothing_from_crawler() -> None:
    assert crawler_imports(PACKAGE / "demo.py") == set()


def test_every_module_opens_with_a_docstring() -> None:
    for path in PACKAGE.glob("*.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} has no docstring"
