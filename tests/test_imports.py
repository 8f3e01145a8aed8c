"""What importing nstkit costs: validating a recipe imports no torch, and no module of the
package takes part in an import cycle.

``nstkit --help``, ``nstkit validate`` and ``nstkit recipes schema`` run on the light modules
(pydantic, pluggy, typer); torch loads only when a stylisation is built. The cycle check reads
the source with :mod:`ast`, so it sees an import that only some code path would execute.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "kornia", "nstkit.runner")
VALIDATE_GATYS = """\
import nstkit, nstkit.plugins, nstkit.config, nstkit.config_schema, nstkit.recipe
host = nstkit.plugins.PluginHost(autoload=False)
host.losses; host.optimizers; host.extractors; host.executors
nstkit.recipe.load_recipe("gatys", host=host)
"""

Graph = dict[str, set[str]]


# --- what a fresh interpreter imports ----------------------------------------------------------
def heavy_modules_after(code: str) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_validating_a_recipe_imports_no_torch_and_no_runner() -> None:
    assert heavy_modules_after(VALIDATE_GATYS) == []


@pytest.mark.slow
def test_the_probe_sees_a_module_that_imports_torch() -> None:
    assert "torch" in heavy_modules_after("import nstkit.result")


# --- the import graph --------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    """``root/nstkit/a/b.py`` -> ``nstkit.a.b``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is imported: not those inside functions, nor
    under ``if TYPE_CHECKING:`` (its ``else:`` branch runs, so it counts)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.orelse:
            yield from module_level_imports(child)
    elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        for child in ast.iter_child_nodes(node):
            yield from module_level_imports(child)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
                     modules: set[str]) -> set[str]:
    """The modules of ``modules`` that an import statement imports: ``from a import b`` is
    module ``a.b`` when that is a module, else ``a``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & modules
    base = _absolute(node, module, is_package)
    found = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
             for alias in node.names}
    return found & modules


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the modules of the same package it imports at module level (no self-edges)."""
    paths = sorted((root / package).rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    graph: Graph = {}
    for path in paths:
        module, tree = module_name(path, root), ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        graph[module] = {target for node in module_level_imports(tree)
                         for target in imported_modules(node, module, is_package, modules)}
        graph[module].discard(module)
    return graph


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


def _shortest_cycle(graph: Mapping[str, set[str]], start: str) -> list[str]:
    """``[start, ..., start]`` along imports, breadth first (``start`` must be on a cycle)."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for following in sorted(graph.get(current, ())):
            if following == start:
                path = [current]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if following not in parents:
                parents[following] = current
                queue.append(following)
    raise ValueError(f"{start} is on no cycle")


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per group of modules that import each other (a strongly connected
    component), as ``[a, b, ..., a]`` where each module imports the next."""
    reach = {node: _reachable(graph, node) for node in graph}
    cycles, seen = [], set()
    for node in sorted(graph):
        if node in seen or node not in reach[node]:
            continue
        seen |= {other for other in reach[node] if node in reach.get(other, ())}
        cycles.append(_shortest_cycle(graph, node))
    return cycles


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_graph_resolves_imports_as_python_does(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.sub import thing\n",
        "pkg/sub/__init__.py": "from . import leaf\nfrom .leaf import thing\n",
        "pkg/sub/leaf.py": "import os\nfrom .. import other as o\nthing = 1\n",
        "pkg/other.py": "import pkg.sub.leaf\nfrom pkg import sub, missing\n",
    })
    assert import_graph(tmp_path, "pkg") == {
        "pkg": {"pkg.sub"},
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.other"},
        "pkg.other": {"pkg.sub.leaf", "pkg.sub", "pkg"},
    }


def test_a_cycle_is_found_and_deferred_imports_are_not_edges(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "try:\n    import pkg.c\nexcept ImportError:\n    pass\n",
        "pkg/c.py": "class C:\n    from pkg.a import x\n",
        "pkg/d.py": """\
            from typing import TYPE_CHECKING
            import typing
            import pkg.a
            if TYPE_CHECKING:
                from pkg import e
            if typing.TYPE_CHECKING:
                import pkg.e
            else:
                import pkg.f
            """,
        "pkg/e.py": "def f():\n    import pkg.d\nlazy = lambda: __import__('pkg.d')\n",
        "pkg/f.py": "",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.d"] == {"pkg.a", "pkg.f"}
    assert graph["pkg.e"] == set()
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert import_cycles({**graph, "pkg.a": set()}) == []


def test_the_nstkit_graph_is_read() -> None:
    graph = import_graph(ROOT, "nstkit")
    assert "nstkit.registry" in graph["nstkit.plugins"]
    assert "nstkit.hookspecs" in graph["nstkit"]
    assert "nstkit.recipe.loader" in graph["nstkit.recipe"]


def test_no_nstkit_module_takes_part_in_an_import_cycle() -> None:
    cycles = import_cycles(import_graph(ROOT, "nstkit"))
    assert not cycles, "import cycles (each module imports the next):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)
