"""The package layering: each layer of fomm imports only the layers below it, and no modules
import each other in a circle (the contracts are in pyproject.toml, ``[tool.importlinter]``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="the dev extra (import-linter) is not installed")
pytest.importorskip("importlinter.cli")

ROOT = Path(__file__).resolve().parents[1]


def test_layers_contract_is_kept() -> None:
    # in a process of its own: import-linter's console output binds the streams it starts with
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("level", ["packages", "modules"])
def test_no_import_cycles(level: str) -> None:
    """No cycles between fomm's packages, nor between any two of its modules (a package's
    ``__init__`` and its own modules included: the acyclic-siblings contract skips those)."""
    graph = grimp.build_graph("fomm", exclude_type_checking_imports=True, cache_dir=None)

    def node(module: str) -> str:
        # packages: fomm.x (the root package's own lazy re-exports are not a layer)
        return ".".join(module.split(".")[:2]) if level == "packages" else module

    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = node(module), node(imported)
            if a != b and (level == "modules" or "fomm" not in (a, b)):
                edges.setdefault(a, set()).add(b)
    assert len(edges) > 5  # the graph was found
    assert _cycles(edges) == []
