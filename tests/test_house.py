"""The house rules, checked on the source: packages by stage, imports only go down, no circles.

Every import statement counts, the ones inside functions included (a lazy import is still a
dependency). A failure names the offending import with its file and line, or the whole circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import git, run_orch

ORCH = Path(__file__).resolve().parent.parent / "orch"

# Stages, lowest first: a module may import its own package and the packages before it.
RANKS = ["core", "verify", "agents", "integrate", "tasks", "inbox", "schedule", "views", "cli"]
# Modules at the top of the package: process entry points whose names hooks, tmux sessions and
# `python -m` invocations written by older versions still use.
ENTRY_SHIMS = {"orch", "orch.__main__", "orch.hookmain", "orch.runner", "orch.entry"}
MAX_LINES = 500
# Only the CLI talks to people and decides the exit code; these calls are how a module would.
OUTPUT_CALLS = {
    "print", "exit", "quit", "SystemExit", "sys.exit", "os._exit", "typer.Exit", "typer.echo", "click.echo",
    "sys.stdout.write", "sys.stderr.write", "sys.stdout.buffer.write", "sys.stderr.buffer.write",
    "sys.__stdout__.write", "sys.__stderr__.write",
}  # fmt: skip
# Names whose mere mention outside the CLI means output to a person (``echo=print`` as a default).
OUTPUT_NAMES = {"print", "sys.stdout", "sys.stderr", "sys.__stdout__", "sys.__stderr__"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ORCH.rglob("*.py")):
        parts = path.relative_to(ORCH.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import of an orch module in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    result = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and dotted(node.func) in ("importlib.import_module", "__import__"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                result.append((arg.value, node.lineno))
        elif isinstance(node, ast.Import):
            result += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                result.append((candidate if candidate in MODULES else base, node.lineno))
    return [(m, line) for m, line in result if m == "orch" or m.startswith("orch.")]


def stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else None


def test_every_module_lives_in_a_stage_or_is_an_entry_shim() -> None:
    strays = [n for n in MODULES if n not in ENTRY_SHIMS and stage(n) not in RANKS]
    assert not strays, f"modules outside the stages {RANKS}: {strays} (see AGENTS.md, ARCH_DECISIONS)"


def test_imports_only_go_down() -> None:
    wrong = []
    for name, path in MODULES.items():
        mine = stage(name)
        if mine is None:
            continue
        for target, line in imports(name, path):
            theirs = stage(target)
            if target == "orch":  # the package itself: __version__
                continue
            if target in ENTRY_SHIMS or theirs is None:
                wrong.append(f"{path.relative_to(ORCH.parent)}:{line}: {name} imports the entry shim {target}")
            elif RANKS.index(theirs) > RANKS.index(mine):
                wrong.append(f"{path.relative_to(ORCH.parent)}:{line}: {name} ({mine}) imports {target} ({theirs})")
    assert not wrong, "imports must only go down the stages " + " < ".join(RANKS) + ":\n" + "\n".join(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph``, as the list of modules around it, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, BLACK) == GREY:
                return stack[stack.index(nxt) :] + [nxt]
            if colour.get(nxt) == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles() -> None:
    graph = {name: {t for t, _ in imports(name, path) if t in MODULES and t != name} for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_subpackage_inits_stay_empty() -> None:
    # Importing a stage must cost nothing: no re-exports, no side effects.
    full = [str(p.relative_to(ORCH.parent)) for p in ORCH.glob("*/__init__.py") if p.read_text().strip()]
    assert not full, f"keep these empty: {full}"


def test_no_module_is_over_about_500_lines() -> None:
    sizes = {str(p.relative_to(ORCH.parent)): len(p.read_text().splitlines()) for p in MODULES.values()}
    big = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not big, f"split these along their seams: {big}"


def aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound by imports, to what they name: ``_s`` -> ``sys``, ``exit`` -> ``sys.exit``."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    return names


def resolved(node: ast.expr, names: dict[str, str]) -> str:
    head, _, rest = dotted(node).partition(".")
    full = names.get(head, head)
    return f"{full}.{rest}" if rest else full


def output_uses(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) for every call or mention that prints or exits, aliases resolved."""
    names = aliases(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = resolved(node.func, names)
            if name in OUTPUT_CALLS:
                found.append((node.lineno, f"{name}(...)"))
            elif (
                name == "os.write"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in (1, 2)
            ):
                found.append((node.lineno, "os.write(1|2, ...)"))
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if resolved(exc, names) == "SystemExit":
                found.append((node.lineno, "raise SystemExit"))
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
            if resolved(node, names) in OUTPUT_NAMES:
                found.append((node.lineno, resolved(node, names)))
    return sorted(set(found))


def entry_nodes(tree: ast.Module) -> set[int]:
    """Nodes of a process entry point: the ``__main__`` guard and the module's ``main``."""
    entry: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    if entry:
        entry += [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    return {inner.lineno for node in entry for inner in ast.walk(node) if hasattr(inner, "lineno")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if stage(n) not in (None, "cli")))
def test_only_the_cli_prints_or_exits(name: str) -> None:
    """Outside ``orch/cli/`` modules return values; a module run as a process of its own (with a
    ``__main__`` guard: the supervisor) may report its usage errors from its ``main`` and the guard."""
    tree = ast.parse(MODULES[name].read_text())
    allowed = entry_nodes(tree)
    found = [
        f"{MODULES[name].relative_to(ORCH.parent)}:{line}: {what}"
        for line, what in output_uses(tree)
        if line not in allowed
    ]
    assert not found, "only orch/cli/ prints or exits; return a value instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import sys as _s\n_s.exit(2)\n",
        "from sys import exit\nexit(3)\n",
        "raise SystemExit(3)\n",
        "import sys\nsys.stdout.buffer.write(b'x')\n",
        "import os\nos.write(1, b'x')\n",
        "import sys\nsys.__stderr__.write('x')\n",
        "def f(echo=print):\n    pass\n",
        "import typer\ntyper.echo('x')\n",
    ],
)
def test_the_output_check_sees_through_aliases(source: str) -> None:
    assert output_uses(ast.parse(source)), source


def test_the_import_walk_sees_dynamic_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\nimportlib.import_module('orch.cli.output')\n__import__('orch.core.git')\n")
    assert [m for m, _ in imports("orch.core.probe", probe)] == ["orch.cli.output", "orch.core.git"]


def test_the_package_init_holds_only_the_version() -> None:
    tree = ast.parse((ORCH / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(
        isinstance(n, ast.Assign)
        and [dotted(t) for t in n.targets] == ["__version__"]
        or isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        for n in body
    ), "orch/__init__.py: keep it to __version__ (it runs on every import of orch)"


def imported(cwd: Path, *argv: str) -> set[str]:
    """The modules a real process of ``argv`` imported (``python -X importtime``)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd, capture_output=True, text=True)
    return {line.rpartition("|")[2].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


HEAVY = {"yaml", "jsonschema", "rich", "pathspec", "pydantic"}


def test_the_hot_paths_import_nothing_heavy(project: Path) -> None:
    """Speed is kept by what is not imported: help, the git hook (caches warm) and status."""
    git(project, "add", "-A")
    run_orch(project, "status")  # warms the validation and parse caches
    help_modules = imported(project, "-m", "orch", "--help")
    assert not help_modules & HEAVY, help_modules & HEAVY
    assert not {m for m in help_modules if m.startswith("orch.") and not m.startswith(("orch.cli", "orch.core"))}
    assert not {"orch.core.git", "orch.core.store", "orch.core.plan"} & help_modules
    imported(project, "-m", "orch.hookmain", "pre-commit")  # the first run compiles the locks
    hook = imported(project, "-m", "orch.hookmain", "pre-commit")
    assert not hook & (HEAVY | {"typer", "click"}), hook & (HEAVY | {"typer", "click"})
    assert not {m for m in hook if m.startswith(("orch.agents", "orch.integrate", "orch.tasks", "orch.views"))}
    status = imported(project, "-m", "orch", "status")
    assert not status & {"jsonschema", "yaml", "pathspec"}, status & HEAVY


def test_status_with_a_pending_loosening_imports_nothing_heavy_once_warm(project: Path) -> None:
    """orch status names uncommitted edits that loosen the rules; with the caches warm it reads both
    versions of each file without PyYAML, jsonschema or pathspec."""
    for name, old, new in [
        ("locks.yaml", "agents_md_lock: true", "agents_md_lock: false"),
        ("config.yaml", "test_command: 'true'", "test_command: 'exit 0'"),
    ]:
        path = project / ".orch" / name
        assert old in path.read_text(), path.read_text()
        path.write_text(path.read_text().replace(old, new))
    plan = project / ".orch" / "plan.md"
    plan.write_text(plan.read_text().replace("- scope: ^docs/", "- scope: ^"))
    first = run_orch(project, "status")  # warms the caches, the committed files' included
    assert "note: uncommitted edits loosen the rules" in first.stderr, first.stderr
    status = imported(project, "-m", "orch", "status")
    assert not status & {"jsonschema", "yaml", "pathspec"}, status & HEAVY
