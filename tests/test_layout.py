"""The package's shape: no import cycle among module-level imports, no module over 400 lines, no
function over 80 lines (the limits of the design)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "snnkd_cli"
MODULES = sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = ["snnkd_cli", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Modules of this package imported at module level (imports inside functions load lazily)."""
    tree = ast.parse(path.read_text())
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found - {_name(path)}


def _cycles() -> list[list[str]]:
    known = {_name(p) for p in MODULES}
    graph = {_name(p): _imports(p, known) for p in MODULES}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.py").write_text("from snnkd_cli import b\n")
    (tmp_path / "b.py").write_text("import snnkd_cli.a\n")
    (tmp_path / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    monkeypatch.setattr(__import__(__name__), "MODULES", sorted(tmp_path.rglob("*.py")))
    assert _cycles() == [["snnkd_cli.a", "snnkd_cli.b", "snnkd_cli.a"]]


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in MODULES if (n := p.read_text().count("\n")) > 400}
    assert long == {}


def test_no_function_over_80_lines() -> None:
    long = {}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long[f"{path.relative_to(SRC)}:{node.name}"] = n
    assert long == {}
