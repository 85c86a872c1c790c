"""Properties of the package as a whole, read from its source: the import graph has no
cycle, and only the CLI ends the process or decides an exit code."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from zoo import REPO

PACKAGE = REPO / "bnstat"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _known(name: str) -> str | None:
    """The module `name` is, or the one it lives in (`bnstat.x.Thing` -> `bnstat.x`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[str]:
    """Every bnstat module `module` imports, at the top or inside a function.

    `from pkg import sub` imports the submodule `pkg.sub` (not the package's
    `__init__`, which Python runs first but which `sub` does not depend on)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            found = _known(name) if name.startswith("bnstat") else None
            if found is not None:
                yield found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle():
    graph = {module: set(_imports(module, path)) for module, path in MODULES.items()}
    assert sum(len(targets) for targets in graph.values()) > 300  # the walk finds imports
    assert graph["bnstat.rules"] >= {"bnstat.rules.bn001_non_finite", "bnstat.rules.base"}
    assert _cycles(graph) == []


def test_a_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


FLOORS: tuple[tuple[str, ...], ...] = (
    # the data model and what every floor uses
    ("bnstat.version", "bnstat.errors", "bnstat.wording", "bnstat.dtypes", "bnstat.termination",
     "bnstat.phases", "bnstat.drift", "bnstat.layer_arrays", "bnstat.report", "bnstat.data_fit"),
    # reading checkpoints without running them, writing files
    ("bnstat.readers", "bnstat.tensor_ref", "bnstat.bulk_read", "bnstat.atomic", "bnstat.location",
     "bnstat.remote", "bnstat.leftovers"),
    # from files to the layers of each model: the reading stages (diagnose and run_rules
    # are stages too, on the floor of the rules they feed)
    ("bnstat.stages", "bnstat.layer_batch"),
    # running models on data, writing checkpoints
    ("bnstat.execution", "bnstat.writers"),
    # judging layers and estimating statistics
    ("bnstat.rules", "bnstat.settings", "bnstat.stages.diagnose", "bnstat.stages.run_rules",
     "bnstat.recalibrate", "bnstat.analysis", "bnstat.diff", "bnstat.baseline"),
    # what users call: the library's entry points, the output formats, the CLI
    ("bnstat.api", "bnstat.formats", "bnstat.cli", "bnstat.__main__"),
)  # fmt: skip


def floor(module: str) -> int:
    """The floor of a module: that of the longest declared prefix it falls under."""
    matches = [
        (len(prefix), level)
        for level, prefixes in enumerate(FLOORS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if module == "bnstat":  # the package re-exports the entry points
        return len(FLOORS) - 1
    assert matches, f"{module} sits on no declared floor"
    return max(matches)[1]


def test_no_import_runs_up_the_floors():
    graph = {module: set(_imports(module, path)) for module, path in MODULES.items()}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if floor(target) > floor(module)
    )
    assert upward == []


def test_the_floors_are_checked():
    assert floor("bnstat.execution.runtimes.eager.runtime") == 3
    assert floor("bnstat.stages.diagnose") == 4 > floor("bnstat.stages.read_layers")
    assert floor("bnstat.readers.torch_zip") < floor("bnstat.stages.open_checkpoint")


ENDS_THE_PROCESS = {"SystemExit", "exit", "quit", "_exit"}  # sys.exit, os._exit, builtins


def _exit_code_deciders(path: Path) -> list[str]:
    """What in a module ends the process, talks to the argument parser, or defines a
    function or constant about exit codes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ENDS_THE_PROCESS:
            found.append(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in ENDS_THE_PROCESS:
            found.append(node.attr)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            modules += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [m for m in modules if m.split(".")[0] in ("typer", "click")]
        elif isinstance(node, ast.FunctionDef) and "exit_code" in node.name.lower():
            found.append(f"def {node.name}")
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        found += [name for name in names if "EXIT" in name.upper()]
    return found


def test_only_the_cli_ends_the_process_or_decides_an_exit_code():
    outside = {m: p for m, p in MODULES.items() if not m.startswith("bnstat.cli")}
    assert len(outside) > 100
    assert {m: found for m, p in outside.items() if (found := _exit_code_deciders(p))} == {}
    assert _exit_code_deciders(MODULES["bnstat.cli.app"])  # what the check looks for is there


def test_no_other_cli_module_decides_an_exit_code():
    """In the CLI too, only `app` maps results and errors to exit codes."""
    cli = {
        m: p for m, p in MODULES.items() if m.startswith("bnstat.cli.") and m != "bnstat.cli.app"
    }
    found = {
        m: [f for f in _exit_code_deciders(p) if f.split(".")[0] != "typer"] for m, p in cli.items()
    }
    assert {m: f for m, f in found.items() if f} == {}


TERMINAL_RENDERERS = {
    "bnstat.formats.table",  # inspect and check
    "bnstat.formats.columns",  # the tables' widths
    "bnstat.formats.names",  # cell widths of names that are not ASCII
    "bnstat.formats.diff_table",
    "bnstat.formats.recalibration_table",
    "bnstat.cli.progress",  # the progress bar on stderr
}


def test_only_the_terminal_renderers_import_rich():
    def imports_rich(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "rich" for name in names):
                return True
        return False

    assert {module for module, path in MODULES.items() if imports_rich(path)} == TERMINAL_RENDERERS
