"""Levels: ``level set|list``, ``view`` (tasks at their level) and ``topology`` (the trust topology)."""

from __future__ import annotations

from orch.cli.app import app, ctx, typer
from orch.cli.output import out

level_app = typer.Typer(help="How closely to watch each area: goal, feature, component or code.", no_args_is_help=True)
app.add_typer(level_app, name="level")


@level_app.command("set")
def level_set(
    path: str = typer.Argument(
        ..., metavar="PATH", help="A gitignore-style glob from the repository's root (wherever you run it): src/auth/."
    ),
    level: str = typer.Argument(..., metavar="LEVEL", help="goal, feature, component or code (coarse to fine)."),
) -> None:
    """Set the level of the paths PATH matches: a line appended under levels: in .orch/config.yaml (or
    the value changed on PATH's own line); nothing else in the file changes."""
    from orch.views import levels

    result = levels.set_level(ctx(), path, level)
    was = f" (was {result['previous']})" if result["previous"] else ""
    out(f"{result['glob']}: {result['level']}{was} at {result['where']}")


@level_app.command("list")
def level_list(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every glob under levels: with its level, its line and how many tracked files it decides (the most
    specific matching glob wins)."""
    from orch.cli import render
    from orch.core.text import plain_table
    from orch.views import levels

    rows = levels.list_levels(ctx())
    if as_json:
        out(render.dumps({"levels": rows, "default": levels.DEFAULT}))
        return
    if not rows:
        out(f"no levels: every task shows at {levels.DEFAULT} (set one: orch level set PATH LEVEL)")
        return
    cells = [[r["glob"], r["level"], str(r["files"]), r["where"]] for r in rows]
    out(plain_table(["GLOB", "LEVEL", "FILES", "WHERE"], cells))
    out(f"elsewhere: {levels.DEFAULT}")


@app.command()
def view(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to show (default: every task in the plan)."),
    level: str | None = typer.Option(None, "--level", help="Show every task at this level instead of its own."),
    as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON (schemas/view.schema.json)."),
) -> None:
    """Each task at its level (orch level list): goal (progress), feature (acceptance, verdict, inbox
    answers, blocker, strategy shifts), component (folders, files, definitions, manifests, lock pressure)
    or code (the diff, locked lines marked); each level adds to the coarser ones."""
    from orch.cli import render
    from orch.views import taskview, taskviewtext

    cards = taskview.view(ctx(), list(ids or []), level)
    out(
        render.dumps({"version": taskview.SCHEMA_VERSION, "tasks": cards})
        if as_json
        else taskviewtext.cards_text(cards)
    )


@app.command()
def topology(
    path: str = typer.Argument(
        None, metavar="PATH", help="A tracked folder or file, from the repository's root (default: all of it)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the lock pressure and the tree as JSON (schemas/topology.schema.json)."
    ),
) -> None:
    """The trust topology: the base branch's tracked files as a tree (folded where nothing below differs),
    each path with its level, its locks and the tasks in flight whose scope reaches it; the lock pressure
    (blocking, routing around, clear) at the top."""
    from orch.cli import render
    from orch.views import topology as view

    c = ctx()
    tree = view.build(c, path)
    pressure = view.pressure(c)
    if as_json:
        out(render.dumps({"version": view.SCHEMA_VERSION, "pressure": pressure, "tree": tree}))
        return
    out(view.tree_text(tree, pressure["counts"]))
