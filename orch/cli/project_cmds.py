"""``orch init``, ``orch plan``, ``orch status``, ``orch log``: the project and its plan."""

from __future__ import annotations

import sys
from typing import Any

from orch.cli.app import app, ctx, plan_app, typer
from orch.cli.output import StdoutClosed, err, out
from orch.core.errors import UsageError

# -- init -------------------------------------------------------------------------------------------


@app.command()
def init(
    test_cmd: str | None = typer.Option(None, "--test-cmd", help="Integration test command (default: detected)."),
    base: str | None = typer.Option(None, "--base", help="Base branch (default: the current branch)."),
    force: bool = typer.Option(False, "--force", help="Rewrite defaults, saving each edited file as .bak."),
    no_hooks: bool = typer.Option(False, "--no-hooks", help="Do not install the git pre-commit hook."),
) -> None:
    """Set up .orch/ in this repository (safe to run again: it keeps what you edited)."""
    from orch.tasks import init as init_mod

    result = init_mod.run(base_branch=base, test_command=test_cmd, force=force, hooks=not no_hooks)
    for rel in result.created:
        out(f"created  {rel}")
    for rel in result.rewritten:
        out(f"rewrote  {rel} (your version is in {rel}.bak)")
    for rel in result.kept:
        out(f"kept     {rel}")
    for line in result.hooks:
        out(f"hooks    {line}")
    for key, value in result.git_programs.items():
        note = "accepted" if key in result.git_programs_new else "kept    "
        out(f"git      {note} {key}={value!r} (a program your git config names; see: orch doctor)")
    out(f"\nbase branch: {result.base_branch}")
    out(f"test command: {result.test_command or '(none: set test_command in .orch/config.yaml)'}")
    if result.not_applied:
        out(
            f"note: .orch/config.yaml was kept, so {' and '.join(result.not_applied)} "
            f"{'was' if len(result.not_applied) == 1 else 'were'} not applied "
            "(edit the file, or run orch init --force to rewrite it)"
        )
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
    from orch.cli import render
    from orch.views import planview

    if as_json and graph:
        raise UsageError("--graph prints a Mermaid graph and --json prints JSON: pass one of them")
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
    _rules_notice(c)


def _rules_notice(c: Any) -> None:
    """One line on stderr while uncommitted edits loosen a rule (they do not count for judging yet)."""
    from orch.verify import inforce

    line = inforce.notice(c)
    if line:
        err(line)


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
    from orch.core import planfile

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
    task = planfile.add_task(c.project.plan_path, c.store, task_id=task_id, title=title, fields=fields, brief=brief)
    c.log("PENDING", "PLAN_ADD", task.title, task=task.id)
    out(f"added {task.id} at .orch/plan.md:{task.line}")


@app.command()
def route(
    task_id: str = typer.Argument(..., metavar="ID", help="The task to route."),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> int:
    """Which agent and model .orch/routing.yaml (as committed) gives a task, rule by rule, and why."""
    from orch.cli import render
    from orch.tasks import routing

    c = ctx()
    task = c.plan.require(task_id)
    rules = None if task.agent else routing.in_force(c)
    d = routing.decide(c, task, rules)
    if as_json:
        keys = ("agent", "model", "rule", "question", "own", "lines")
        out(render.dumps({"id": task.id, **{k: getattr(d, k) for k in keys}}))
    else:
        for line in d.lines:
            out(line)
        if not d.own and not d.question:
            out(f"{task.id} runs agent {d.agent or c.config.default_agent}" + (" (the default)" if not d.agent else ""))
    pending = routing.pending_edit(c)
    if pending:
        err(f"note: {pending}")
    return 3 if d.question else 0  # a tie: bad input until the task names its agent


# -- status and log ---------------------------------------------------------------------------------


@app.command()
def status(
    task_id: str | None = typer.Argument(None, metavar="[ID]", help="Show one task in detail."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON (schemas/status.schema.json)."),
) -> None:
    """One row per task: state, agent, branch, age, iterations, tokens, cost, verdict."""
    from orch.cli import render
    from orch.views import status as status_mod

    c = ctx()
    rows = status_mod.rows(c, task_id)
    if as_json:
        out(render.dumps({"tasks": rows}))
    elif task_id is not None:
        out(status_mod.detail_text(c, task_id))
    elif not rows:
        out("no tasks in .orch/plan.md yet (add one: orch plan add ID --title ...)")
    else:
        headers, cells = render.status_rows(rows)
        text = render.table(headers, cells)
        if text is not None:
            out(text)
        waiting = status_mod.needs_a_person(rows) + status_mod.breaker_lines(c)
        if waiting:
            out("\nneeds a person:\n" + "\n".join(f"  {line}" for line in waiting))
        queued = status_mod.queued_lines(rows)
        if queued:
            out("\nqueued (each starts when a run ends and it may):\n" + "\n".join(f"  {line}" for line in queued))
        notice = status_mod.base_notice(c)
        if notice:
            out(notice)
        from orch.inbox import decide

        asked = decide.count(c)
        if asked:
            out(f"inbox: {asked} item{' waits' if asked == 1 else 's wait'} for a person (orch inbox)")
        running_up = status_mod.up_line(c)
        if running_up:
            out(running_up)
    _rules_notice(c)


@app.command()
def log(
    task: str | None = typer.Option(None, "--task", help="Only events of this task."),
    since: str | None = typer.Option(None, "--since", help="Duration (10m, 2h, 3d) or ISO time."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
) -> None:
    """Print the event log (.orch/run/log)."""
    import json

    from orch.core import eventlog

    c = ctx()
    cutoff = eventlog.parse_since(since) if since else None

    def show(event: eventlog.Event) -> None:
        if eventlog.matches(event, task=task, since=cutoff):
            out(json.dumps(event.to_json(), ensure_ascii=False) if as_json else event.line().rstrip("\n"))

    events, offset = eventlog.read_from(c.project.log_path)
    if task is not None and not _known_task(c, task, events):
        c.plan.require(task)  # an id nobody ever used: say so (exit 3), with a did-you-mean
    for event in events:
        show(event)
    if follow:
        sys.stdout.flush()
        for event in eventlog.follow(c.project.log_path, offset=offset):
            show(event)
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                raise StdoutClosed() from None


def _known_task(c: Any, task_id: str, events: list[Any]) -> bool:
    """Is ``task_id`` in the plan, in the run state, or in the log (a task since taken off the plan)?"""
    from orch.core.plan import ID_RE

    if c.plan.get(task_id) is not None:
        return True
    if ID_RE.fullmatch(task_id) and (c.project.run_dir / "tasks" / task_id).is_dir():
        return True
    return any(e.task == task_id for e in events)
