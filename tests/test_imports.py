"""The import graph of the project's own modules: no cycles, and the core stays below tools and benchmarks.

Every module of ``refine_agent/``, ``tools/`` (``refine_agent.tools``) and ``benchmarks/``
(``refine_agent.benchmarks``) is parsed with ``ast``; every import counts, including those inside functions: a
lazy import hides a cycle, it does not remove it. ``from package import name`` counts as an import of
``package.name`` when that is a module, else of ``package``. A package's ``__init__`` importing its own
submodules is not a cycle by itself (a submodule does not import its parent unless it says so).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folder in the repository -> the import package it installs as (pyproject.toml's package-dir).
FOLDERS = {"refine_agent": "refine_agent", "tools": "refine_agent.tools", "benchmarks": "refine_agent.benchmarks"}
OUTER = ("refine_agent.tools", "refine_agent.benchmarks")  # what the core may not import
CLI = "refine_agent.cli"  # the one part of refine_agent that reaches into benchmarks (and tools)

# Cycles still being broken elsewhere: a cycle among these modules only is excused, any other fails.
def inside(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in packages)


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _resolve(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) import in ``module`` (defined in ``path``)."""
    if level == 0:
        return name or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``module`` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node.level, node.module)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` or an unknown leaf name: the nearest project module it names
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop through a component, e.g. ``a -> b -> a``, to show in the failure."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return " -> ".join([*path, start])
        fresh = [w for w in nxt if w not in seen]
        if not fresh:  # loops back to an earlier module, not the start
            w = nxt[0]
            return " -> ".join([*path[path.index(w):], w])
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_graph_sees_every_package_and_lazy_imports() -> None:
    graph = import_graph()
    for name in ("refine_agent", "refine_agent.cli", "refine_agent.tools", "refine_agent.benchmarks",
                 "refine_agent.benchmarks.datasets", "refine_agent.tools.judges"):
        assert name in graph, name
    # imports inside functions count: the CLI reaches into benchmarks only lazily, inside commands
    assert any(inside(m, "refine_agent.benchmarks") for cli in graph if inside(cli, CLI) for m in graph[cli])


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "__init__.py"
    pkg.write_text("from . import b\n", encoding="utf-8")
    lazy = tmp_path / "b.py"
    lazy.write_text("def f():\n    from . import helper\n    from .. import other\n", encoding="utf-8")
    known = {"p", "p.b", "p.helper", "other"}
    assert imports_of("p", pkg, known) == {"p.b"}
    assert imports_of("p.b", lazy, known) == {"p.helper"}  # ``..`` names no project module here
    graph = {"p": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p"}, "p.d": {"p"}}
    assert cycles(graph) == [["p", "p.b", "p.c"]]
    assert cycle_path(graph, ["p", "p.b", "p.c"]) == "p -> p.b -> p.c -> p"


def test_no_import_cycles_among_the_projects_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(cycle_path(graph, c) for c in found)


def test_the_core_never_imports_tools_or_benchmarks() -> None:
    graph = import_graph()
    core = [m for m in graph if not inside(m, *OUTER, CLI)]
    bad = sorted(f"{m} -> {t}" for m in core for t in graph[m] if inside(t, *OUTER))
    assert not bad, "the core imports tools or benchmarks (only refine_agent.cli may, lazily):\n" + "\n".join(bad)
    # and nothing but ``python -m refine_agent`` imports the CLI: the library never depends on its front end
    users = sorted(f"{m} -> {t}" for m in graph if not inside(m, CLI) for t in graph[m] if inside(t, CLI))
    assert users == ["refine_agent.__main__ -> refine_agent.cli"], users
