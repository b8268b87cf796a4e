"""The package's import graph has no circle, counting the imports inside functions.

A circle held together by imports inside functions works until someone moves one of them to the top of
a file; it also makes a reader climb back into a module they have just left. So every `import` and
`from ... import` of `attnbench` is an edge here, wherever it is written (module level, inside a function,
a method, a `try`), with relative imports resolved against the importing module. Not counted:
- imports under `if TYPE_CHECKING:` (they never run; a type annotation is not an import);
- `importlib.import_module` by name (the task and mechanism registries, the report's section
  discovery): those load a module chosen at run time, below the module that asks for it.
`cli.py` imports most of the package inside its command functions, to keep each job's start-up short;
no module of the package imports `cli`, so those imports close no circle and need no exception.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "attnbench"


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__)."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                return []
        # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
    out = []
    for name in names:
        while name not in known and "." in name:   # `import attnbench.x.y` of a name inside a module
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}."""
    found = modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in found}
    for module, (path, is_package) in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                for target in _targets(module, is_package, node, set(found)):
                    graph[module].setdefault(target, node.lineno)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    # a module-level and a function-level import are both seen, relative imports resolved
    assert "attnbench.config" in graph["attnbench.training"]
    assert "attnbench.report.aggregate" in graph["attnbench.cli"]       # inside cmd_aggregate
    assert "attnbench.errors" in graph["attnbench.config"]


def test_no_import_circle():
    graph = import_graph()
    found = circles(graph)
    described = ["; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in c for b in c if b in graph[a]) for c in found]
    assert not found, "import circle(s), counting imports inside functions:\n" + "\n".join(described)


def test_the_grid_module_is_the_low_floor():
    """config (the grid: runs, hashes, the per-dataset view) imports nothing of the package but errors;
    the checks against the registries are validation's, which nothing below the CLI and the report imports."""
    graph = import_graph()
    assert set(graph["attnbench.config"]) <= {"attnbench.errors"}
    importers = {m for m, targets in graph.items() if "attnbench.validation" in targets}
    assert not {m for m in importers if m.startswith(("attnbench.tasks", "attnbench.models", "attnbench.attention"))
                or m in ("attnbench.training", "attnbench.datasets", "attnbench.config")}
