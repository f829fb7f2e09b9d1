"""The import graph has layers (issue 20): the contract and settings at the bottom; the
generator, ingest, warehouse, rendering and report helpers and the estimators in the middle;
the CLI and the Dagster code location (with the demo pipeline) at the top. Nothing below the
top imports upwards, and the estimators never import Dagster."""

from __future__ import annotations

import ast
from pathlib import Path

from sicp.settings import PROJECT_ROOT

TOP = ("sicp.cli", "dagster_project")
BOTTOM = ("sicp.contract", "sicp.settings")


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _graph(*packages: str) -> dict[str, set[str]]:
    return {
        _module(path): _imports(path)
        for package in packages
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
    }


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_nothing_below_the_top_imports_the_cli_or_dagster_project():
    graph = _graph("sicp", "analysis")
    upward = {
        (m, i)
        for m, imports in graph.items()
        if not _within(m, TOP)
        for i in imports
        if _within(i, TOP)
    }
    assert upward == set()
    assert len(graph) > 40


def test_the_estimators_never_import_dagster():
    assert {
        (m, i)
        for m, imports in _graph("analysis").items()
        for i in imports
        if _within(i, ("dagster", "dagster_dbt", "dagster_project"))
    } == set()


def test_the_contract_and_settings_import_nothing_of_the_project_above_them():
    graph = _graph("sicp")
    for module in BOTTOM:
        project = {i for i in graph[module] if _within(i, ("sicp", "analysis", "dagster_project"))}
        assert project <= set(BOTTOM), (module, project)
