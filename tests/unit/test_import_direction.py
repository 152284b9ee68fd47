"""Dependencies run one way: ``keys`` <- ``engine`` <- ``reconciler`` / ``bench``.

Every module of the four packages is parsed with ``ast``; every import counts,
wherever it stands (module level, inside a function, under ``if
TYPE_CHECKING:``), because an upward arrow is wrong whether it runs at import
time, on first call, or only for the type checker. Inside ``engine`` the
modules' runtime imports must also form no cycle: a module imported for its
types only may sit under ``if TYPE_CHECKING:``, anything else is a real
dependency and has one direction.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("keys", "engine", "reconciler", "bench")
# package -> the packages it must not import (those above it)
FORBIDDEN = {
    "keys": {"engine", "reconciler", "bench"},
    "engine": {"reconciler", "bench"},
    "reconciler": {"bench"},
}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``
    in_function: bool  # runs on a call, not when the module is imported

    def __str__(self) -> str:
        where = "TYPE_CHECKING" if self.type_only else "function" if self.in_function else "module"
        return f"{self.importer}:{self.line} imports {self.target} ({where} level)"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class ImportReader(ast.NodeVisitor):
    """Collects every import of one module with where it stands."""

    def __init__(self, importer: str, is_package: bool, modules: set[str]) -> None:
        self.importer = importer
        self.package = importer if is_package else importer.rpartition(".")[0]
        self.modules = modules
        self.type_only = False
        self.in_function = False
        self.found: list[Import] = []

    def add(self, target: str, node: ast.stmt) -> None:
        self.found.append(Import(self.importer, target, node.lineno, self.type_only, self.in_function))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self.add(submodule if submodule in self.modules else base, node)

    def visit_If(self, node: ast.If) -> None:
        if not is_type_checking(node.test):
            self.generic_visit(node)
            return
        outer, self.type_only = self.type_only, True
        for child in node.body:
            self.visit(child)
        self.type_only = outer
        for child in node.orelse:
            self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        outer, self.in_function = self.in_function, True
        self.generic_visit(node)
        self.in_function = outer

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef


def read_imports() -> Iterator[Import]:
    files = module_files()
    for name, path in files.items():
        reader = ImportReader(name, path.name == "__init__.py", set(files))
        reader.visit(ast.parse(path.read_text(), filename=str(path)))
        yield from reader.found


def top(name: str) -> str:
    return name.split(".")[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def engine_graph(imports: list[Import], *, in_functions: bool) -> dict[str, set[str]]:
    """engine module -> the engine modules it imports outside ``if TYPE_CHECKING:``, at module level
    (and inside functions too when ``in_functions``)."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if top(imp.importer) == top(imp.target) == "engine" and not imp.type_only \
                and (in_functions or not imp.in_function):
            edges.setdefault(imp.importer, set()).add(imp.target)
    return edges


def test_the_reader_sees_imports_at_every_level():
    source = (
        "from typing import TYPE_CHECKING\nimport engine.app\nfrom engine import checks\n"
        "if TYPE_CHECKING:\n    from engine.flows import FlowBuilder\n"
        "def f():\n    from reconciler import Reconciler\n"
        "class C:\n    async def g(self):\n        import bench.cli\n"
    )
    reader = ImportReader("engine.example", False, set(module_files()))
    reader.visit(ast.parse(source))
    seen = {(imp.target, imp.type_only, imp.in_function) for imp in reader.found}
    assert seen == {("typing", False, False), ("engine.app", False, False), ("engine.checks", False, False),
                    ("engine.flows", True, False), ("reconciler", False, True), ("bench.cli", False, True)}


def test_the_cycle_finder_finds_a_circle_and_passes_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []
    assert cycles({"a": {"a"}}) == [["a"]]


def test_no_package_imports_a_package_above_it():
    wrong = dict.fromkeys(str(imp) for imp in read_imports() if top(imp.target) in FORBIDDEN.get(top(imp.importer), ()))
    assert not wrong, "imports against the direction:\n" + "\n".join(wrong)


def test_engine_modules_import_each_other_without_a_cycle():
    assert cycles(engine_graph(list(read_imports()), in_functions=False)) == []


def test_no_import_inside_an_engine_function_closes_a_cycle():
    """A lazy import is not a way around a circle: counted as an arrow, it still has one direction."""
    assert cycles(engine_graph(list(read_imports()), in_functions=True)) == []
