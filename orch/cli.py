"""The command line: parse arguments, call one core function, render its result.

No file I/O and no git here. Errors are caught in one place, ``main``: an ``OrchError`` prints what,
where and how to fix and exits with its code; anything else prints one line and the path of a crash
log holding the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

# Rich help panels cost more to import than all of orch; plain help keeps `orch --help` fast.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer

from orch.errors import ExitCode, OrchError, UsageError

app = typer.Typer(
    name="orch",
    help="A git-native orchestrator for coding agents: plan, spin, verify, merge, clean.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
plan_app = typer.Typer(help="Show, check and extend .orch/plan.md.", invoke_without_command=True)
app.add_typer(plan_app, name="plan")


class _StdoutClosed(Exception):
    """The reader of our output went away (``orch log | head``): not an error, nothing more to say.

    Not an ``OSError``, so click does not turn it into exit code 1 on its way to ``main``.
    """


def out(text: str = "") -> None:
    try:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    except BrokenPipeError:
        raise _StdoutClosed() from None


def err(text: str) -> None:
    sys.stderr.write(text + ("\n" if not text.endswith("\n") else ""))


def ctx() -> Any:
    from orch.context import open_ctx

    return open_ctx()


def version_callback(value: bool) -> None:
    if value:
        from orch import __version__

        out(f"orch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """A git-native orchestrator for coding agents: plan, spin, verify, merge, clean."""


# -- init -------------------------------------------------------------------------------------------


@app.command()
def init(
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="Integration test command (default: detected)."),
    base: str | None = typer.Option(None, "--base", help="Base branch (default: the current branch)."),
    force: bool = typer.Option(False, "--force", help="Rewrite defaults, saving each edited file as .bak."),
) -> None:
    """Set up .orch/ in this repository (safe to run again: it keeps what you edited)."""
    from orch import init as init_mod

    result = init_mod.run(base_branch=base, test_command=test_cmd, force=force)
    for rel in result.created:
        out(f"created  {rel}")
    for rel in result.rewritten:
        out(f"rewrote  {rel} (your version is in {rel}.bak)")
    for rel in result.kept:
        out(f"kept     {rel}")
    out(f"\nbase branch: {result.base_branch}")
    out(f"test command: {result.test_command or '(none: set test_command in .orch/config.yaml)'}")
    out(
        "\nNext steps:\n"
        "  1. write your tasks in .orch/plan.md (or: orch plan add ID --title ... --scope ...)\n"
        "  2. orch plan            check the plan and see which tasks are ready\n"
        "  3. commit .orch/ and AGENTS.md so every worktree shares them"
    )


# -- plan -------------------------------------------------------------------------------------------


@plan_app.callback()
def plan_show(
    typer_ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the tasks as JSON."),
    graph: bool = typer.Option(False, "--graph", help="Print a Mermaid graph of the dependencies."),
) -> None:
    """Check the plan and show its tasks, their deps and which are ready."""
    if typer_ctx.invoked_subcommand is not None:
        return
    from orch import planview, render

    c = ctx()
    view = planview.build(c)
    if as_json:
        out(render.dumps(view))
    elif graph:
        out(render.mermaid(c.plan, {t["id"]: t["state"] for t in view["tasks"]}))
    else:
        out(planview.text(view))
    for warning in view["warnings"]:
        err(f"warning: {warning}")


@plan_app.command("add")
def plan_add(
    task_id: str = typer.Argument(..., metavar="ID", help="Task id: a letter, then letters, digits, '-', '_'."),
    title: str = typer.Option(..., "--title", help="One-line title."),
    scope: str | None = typer.Option(None, "--scope", help="Regex of the paths the task may change."),
    deps: str | None = typer.Option(None, "--deps", help="Comma-separated ids, or none."),
    agent: str | None = typer.Option(None, "--agent", help="Agent manifest name."),
    accept: str | None = typer.Option(None, "--accept", help="Acceptance command (run through sh -c)."),
    model: str | None = typer.Option(None, "--model"),
    run: str | None = typer.Option(None, "--run", help="Command for the shell agent."),
    budget: str | None = typer.Option(None, "--budget", help="e.g. '200k tokens', '$5'."),
    max_iterations: int | None = typer.Option(None, "--max-iterations", min=1),
    brief: str | None = typer.Option(None, "--brief", help="One paragraph of brief (edit plan.md for more)."),
) -> None:
    """Append a task to .orch/plan.md, leaving every byte you wrote untouched."""
    from orch import plan as plan_mod

    c = ctx()
    fields = {
        "scope": scope,
        "deps": deps,
        "agent": agent,
        "accept": accept,
        "model": model,
        "run": run,
        "budget": budget,
        "max_iterations": None if max_iterations is None else str(max_iterations),
    }
    task = plan_mod.add_task(c.project.plan_path, c.store, task_id=task_id, title=title, fields=fields, brief=brief)
    c.log("PENDING", "PLAN_ADD", task.title, task=task.id)
    out(f"added {task.id} at .orch/plan.md:{task.line}")


# -- status and log ---------------------------------------------------------------------------------


@app.command()
def status(
    task_id: str | None = typer.Argument(None, metavar="[ID]", help="Show one task in detail."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON (schemas/status.schema.json)."),
) -> None:
    """One row per task: state, agent, branch, age, iterations, tokens, cost, verdict."""
    from orch import render
    from orch import status as status_mod

    c = ctx()
    rows = status_mod.rows(c, task_id)
    if as_json:
        out(render.dumps({"tasks": rows}))
        return
    if task_id is not None:
        out(status_mod.detail_text(c, task_id))
        return
    if not rows:
        out("no tasks in .orch/plan.md yet (add one: orch plan add ID --title ...)")
        return
    headers, cells = render.status_rows(rows)
    text = render.table(headers, cells)
    if text is not None:
        out(text)


@app.command()
def log(
    task: str | None = typer.Option(None, "--task", help="Only events of this task."),
    since: str | None = typer.Option(None, "--since", help="Duration (10m, 2h, 3d) or ISO time."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
) -> None:
    """Print the event log (.orch/run/log)."""
    import json

    from orch import eventlog

    c = ctx()
    cutoff = eventlog.parse_since(since) if since else None

    def show(event: eventlog.Event) -> None:
        if eventlog.matches(event, task=task, since=cutoff):
            out(json.dumps(event.to_json(), ensure_ascii=False) if as_json else event.line().rstrip("\n"))

    events, offset = eventlog.read_from(c.project.log_path)
    for event in events:
        show(event)
    if follow:
        sys.stdout.flush()
        for event in eventlog.follow(c.project.log_path, offset=offset):
            show(event)
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                raise _StdoutClosed() from None


# -- entry point ------------------------------------------------------------------------------------


def _crash_log(exc: BaseException) -> str:
    import tempfile
    import traceback

    from orch.eventlog import utcnow

    text = f"orch {' '.join(sys.argv[1:])}\n{utcnow()}\n\n" + "".join(traceback.format_exception(exc))
    folder: Path
    try:
        from orch.repo import find_project

        folder = find_project(require_init=True).run_dir / "crash"
        folder.mkdir(parents=True, exist_ok=True)
    except Exception:
        folder = Path(tempfile.gettempdir())
    fd, path = tempfile.mkstemp(prefix="orch-crash-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit does not hit the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> NoReturn:
    from orch._click_compat import click_exceptions, command

    ClickException, Abort, Exit = click_exceptions()
    code: int = ExitCode.OK
    try:
        result = command(app).main(args=argv, standalone_mode=False, prog_name="orch")
        code = result if isinstance(result, int) else ExitCode.OK
    except OrchError as exc:
        err(f"orch: {exc.render()}" if not isinstance(exc, UsageError) else f"orch: usage: {exc.render()}")
        code = exc.exit_code
    except Exit as exc:
        code = exc.exit_code
    except ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except (KeyboardInterrupt, Abort):
        err("orch: interrupted")
        code = ExitCode.INTERRUPTED
    except (_StdoutClosed, BrokenPipeError):
        _silence_stdout()
        code = ExitCode.OK
    except Exception as exc:  # a bug: one line for the person, the traceback in a file
        path = _crash_log(exc)
        err(f"orch: internal error: {type(exc).__name__}: {exc}\n  the traceback is in {path}; please report it")
        code = ExitCode.GIT
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code)
