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

# Rich help panels cost more to import than all of orch; plain help keeps `orch --help` fast. typer
# reads the variable once, on import: it is taken out again, so the agents, tests and checks orch
# runs see the environment the user gave it, whichever path (this CLI or orch.entry's) ran them.
_RICH_SET = "TYPER_USE_RICH" not in os.environ
if _RICH_SET:
    os.environ["TYPER_USE_RICH"] = "0"

import typer  # noqa: E402

if _RICH_SET:
    del os.environ["TYPER_USE_RICH"]

from orch.errors import ExitCode, UsageError  # noqa: E402

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


from orch.entry import StdoutClosed as _StdoutClosed  # noqa: E402
from orch.entry import err, out  # noqa: E402


def ctx(*, from_source: bool = False) -> Any:
    """The project's context; ``from_source`` for commands that judge (verify, merge): config, plan
    and locks parsed from their files, not from the caches under .orch/run/."""
    from orch.context import open_ctx

    return open_ctx(from_source=from_source)


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
    no_hooks: bool = typer.Option(False, "--no-hooks", help="Do not install the git pre-commit hook."),
) -> None:
    """Set up .orch/ in this repository (safe to run again: it keeps what you edited)."""
    from orch import init as init_mod

    result = init_mod.run(base_branch=base, test_command=test_cmd, force=force, hooks=not no_hooks)
    for rel in result.created:
        out(f"created  {rel}")
    for rel in result.rewritten:
        out(f"rewrote  {rel} (your version is in {rel}.bak)")
    for rel in result.kept:
        out(f"kept     {rel}")
    for line in result.hooks:
        out(f"hooks    {line}")
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


# -- worktree lifecycle: spin, start, agents, wait, stop, report, attach, clean, doctor --------------


@app.command()
def spin(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to spin."),
    ready: bool = typer.Option(False, "--ready", help="Spin every task whose deps are merged."),
    agent: str | None = typer.Option(None, "--agent", help="Agent manifest to use instead of the task's."),
    use_tmux: bool = typer.Option(False, "--tmux", help="Run each agent in tmux session orch-ID (orch attach ID)."),
    no_start: bool = typer.Option(False, "--no-start", help="Create worktree, manifest and context only."),
    force: bool = typer.Option(False, "--force", help="Spin even if deps are not merged yet."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> int:
    """Give tasks a branch orch/ID and a worktree, write their context, start their agents."""
    from orch import render, worktrees

    if bool(ids) == ready:
        raise UsageError("name the tasks to spin, or pass --ready, not both", hint="orch spin T1, or orch spin --ready")
    c = ctx()
    chosen = list(ids) if ids else worktrees.ready_ids(c)
    if not chosen:
        out("no task is ready to spin (see: orch plan)")
        return 0
    position = {task_id: n for n, task_id in enumerate(dict.fromkeys(chosen), 1)}

    def progress(task_id: str, message: str) -> None:
        err(f"[{position.get(task_id, 0)}/{len(position)}] {task_id}: {message}")

    results = worktrees.spin(
        c, chosen, agent=agent, start=not no_start, tmux=use_tmux, force=force, progress=None if as_json else progress
    )
    if as_json:
        out(render.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            if r.ok:
                how = "not started" if no_start else (f"tmux {r.tmux_session}" if r.tmux_session else "running")
                out(f"{r.id}: {r.branch} at {r.worktree} ({r.agent}, {how})")
            else:
                err(f"orch: {r.id}: {r.error}")
    failed = [r.exit_code for r in results if not r.ok]
    return max(failed) if failed else 0


@app.command()
def start(
    task_id: str = typer.Argument(..., metavar="ID"),
    use_tmux: bool = typer.Option(False, "--tmux", help="Run the agent in tmux session orch-ID."),
) -> None:
    """Start the agent of a task spun with --no-start."""
    from orch import runner, worktrees

    c = ctx()
    worktrees.check_id(task_id, cwd=c.project.root)
    st = runner.start(c, task_id, tmux=use_tmux)
    out(f"{task_id}: started ({st.get('agent')}" + (f", tmux {st['tmux_session']})" if st.get("tmux_session") else ")"))


@app.command("agents")
def agents_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """List the agent manifests in .orch/agents/ and whether each is valid."""
    from orch import agents, render

    c = ctx()
    infos = agents.list_all(c.project, c.store)
    if as_json:
        out(render.dumps([i.to_json() for i in infos]))
    else:
        rows = []
        for i in infos:
            if i.valid:
                status = "ok" + ("" if i.installed else f" ({i.command[0]} not on PATH)")
            else:
                status = "INVALID"
            rows.append([i.name, status, i.usage or "-", i.description or (i.error or "").splitlines()[0]])
        empty = "no agents (orch init adds the presets)"
        out(render.plain_table(["AGENT", "STATUS", "USAGE", "DESCRIPTION"], rows) if rows else empty)
        for i in infos:
            if not i.valid:
                err(f"orch: {i.error}")
    return 3 if any(not i.valid for i in infos) else 0


@app.command()
def wait(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to wait for (default: every running one)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up after this many seconds."),
) -> int:
    """Wait until tasks finish; exit 0 if all succeeded, 1 otherwise (or on timeout)."""
    from orch import runner, worktrees

    c = ctx()
    for task_id in ids or []:
        worktrees.check_id(task_id, cwd=c.project.root)
    states = runner.wait(c, list(ids) if ids else None, timeout)
    if not states:
        out("no task is running or waiting to be merged")
    for task_id, st in states.items():
        out(f"{task_id}: {st}" + (" (still running: timed out waiting)" if st == "RUNNING" else ""))
    return 0 if all(s == "SUCCESS" for s in states.values()) else 1


@app.command()
def stop(
    task_id: str = typer.Argument(..., metavar="ID"),
    kill: bool = typer.Option(False, "--kill", help="SIGKILL at once instead of SIGTERM first."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a running agent (SIGTERM to its process group, SIGKILL after a grace period)."""
    from orch import runner, worktrees

    c = ctx()
    worktrees.check_id(task_id, cwd=c.project.root)
    st = runner.stop(c, task_id, kill=kill, grace=grace)
    out(f"{task_id}: {st.get('state')}" + (f" ({st['reason']})" if st.get("reason") else ""))


@app.command()
def report(
    what: str = typer.Argument(..., metavar="STATE", help="PROGRESS, SUCCESS, BLOCKED, PAUSED or FAILED."),
    note: str | None = typer.Option(None, "--note", help="What happened, or what blocks you."),
    artifact: list[str] = typer.Option(None, "--artifact", help="A file to hand on (repeatable)."),
) -> None:
    """For agents: report progress or a blocker from inside the task's worktree."""
    from orch import runner

    c = ctx()
    st = runner.report(c, Path(os.getcwd()), what, note=note, artifacts=list(artifact or []))
    out(f"{st['id']}: reported {what.upper()} (task is {st.get('state')})")


@app.command()
def attach(task_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Attach to the tmux session of a task spun with --tmux (watch it or take over)."""
    from orch import runner, worktrees

    c = ctx()
    worktrees.check_id(task_id, cwd=c.project.root)
    argv = runner.attach_argv(c, task_id)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command()
def clean(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to clean (default: merged ones)."),
    merged: bool = typer.Option(False, "--merged", help="Every merged task (the default without ids)."),
    all_: bool = typer.Option(False, "--all", help="Every finished task, merged or not."),
    force: bool = typer.Option(False, "--force", help="Delete unmerged branches too (a ref still keeps them)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> int:
    """Remove worktrees and branches of finished tasks; keeps a ref to every commit and change."""
    from orch import render, worktrees

    if ids and (merged or all_):
        raise UsageError("name tasks, or pass --merged / --all, not both")
    c = ctx()
    rep = worktrees.clean(c, list(ids) if ids else None, merged=merged, all=all_, force=force)
    if as_json:
        out(render.dumps(rep.to_json()))
    else:
        out(worktrees.clean_text(rep) if rep.entries else "nothing to clean")
    return 1 if ids and rep.skipped else 0


@app.command()
def doctor(fix: bool = typer.Option(False, "--fix", help="Repair or adopt what can be repaired safely.")) -> int:
    """Find worktrees, branches and statuses out of step, stale locks and crashed tasks."""
    from orch import doctor as doctor_mod

    c = ctx()
    findings = doctor_mod.run(c, fix=fix)
    if not findings:
        out("all good: worktrees, branches and statuses agree")
        return 0
    out(doctor_mod.text(findings))
    return 0 if all(f.fixed or f.info for f in findings) else 1


# -- verification: verify, ack, lock, hooks, hook --------------------------------------------------

lock_app = typer.Typer(help="Hard and soft locks on paths, tests, code regions and requirements.", no_args_is_help=True)
app.add_typer(lock_app, name="lock")
hooks_app = typer.Typer(help="The git pre-commit hook shared by every worktree.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
hook_app = typer.Typer(help="Run one hook (what the installed hooks call).", no_args_is_help=True)
app.add_typer(hook_app, name="hook")


def _mode(hard: bool, soft: bool) -> str:
    if hard and soft:
        raise UsageError("--hard and --soft exclude each other")
    return "soft" if soft else "hard"


@app.command()
def verify(
    task_ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to verify."),
    all_tasks: bool = typer.Option(False, "--all", help="Every task in the plan that has a branch."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> int:
    """Judge each task's branch tip against its scope and the locks; exit 1 unless all are mergeable."""
    from orch.entry import verify_command

    return verify_command(task_ids or [], all_tasks=all_tasks, as_json=as_json)


@app.command()
def ack(
    task_id: str = typer.Argument(..., metavar="ID"),
    lock_id: str = typer.Argument(..., metavar="LOCK_ID"),
) -> None:
    """Accept, as a person, a task's change to a soft lock at its verified commit (that commit only)."""
    from orch import verify as verify_mod

    result = verify_mod.ack(ctx(from_source=True), task_id, lock_id)
    pending = ", ".join(result["pending_acks"]) or "none"
    out(
        f"acked {lock_id} for {task_id} at {result['sha'][:12]} (holds for that exact commit only); "
        f"still waiting for an ack: {pending}"
    )


@lock_app.command("add")
def lock_add(
    pattern: str = typer.Argument(..., metavar="PATTERN", help="Glob (gitignore style) or path::Name for a region."),
    hard: bool = typer.Option(False, "--hard", help="Blocks the merge (the default)."),
    soft: bool = typer.Option(False, "--soft", help="Needs orch ack before the merge."),
    kind: str | None = typer.Option(None, "--kind", help="path, test or region (default: from PATTERN)."),
    reason: str | None = typer.Option(None, "--reason", help="Why it is locked (shown to agents)."),
    lock_id: str | None = typer.Option(None, "--id", help="Lock id (default: the next L<n>)."),
) -> None:
    """Lock paths, test files or a code region."""
    from orch import lockcmd

    result = lockcmd.add(ctx(), pattern, mode=_mode(hard, soft), kind=kind, reason=reason, lock_id=lock_id)
    item = result["lock"]
    covers = "" if item["kind"] == "region" else f"; covers {result['covered']} tracked file(s) on the base branch"
    out(f"added {item['mode']} {item['kind']} lock {item['id']}: {item['pattern']}{covers}")


@lock_app.command("require")
def lock_require(
    text: str = typer.Argument(..., metavar="TEXT", help="The requirement, in English."),
    check: str = typer.Option(..., "--check", help="Command that exits 0 when it holds (run through sh -c)."),
    via: str = typer.Option(..., "--via", help="schema, static, test or e2e."),
    hard: bool = typer.Option(False, "--hard", help="A failing check blocks the merge (the default)."),
    soft: bool = typer.Option(False, "--soft", help="A failing check needs orch ack."),
    reason: str | None = typer.Option(None, "--reason"),
    lock_id: str | None = typer.Option(None, "--id", help="Lock id (default: the next R<n>)."),
) -> None:
    """Add a requirement lock: checked on a fresh tree of the task's commit at verify time and after each merge."""
    from orch import lockcmd

    result = lockcmd.require(ctx(), text, check=check, via=via, mode=_mode(hard, soft), reason=reason, lock_id=lock_id)
    item = result["lock"]
    out(f"added {item['mode']} requirement {item['id']}: {item['text']} (check: {item['check']})")


@lock_app.command("rm")
def lock_rm(lock_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove a lock."""
    from orch import lockcmd

    removed = lockcmd.remove(ctx(), lock_id)
    out(f"removed {removed['mode']} {removed['kind']} lock {lock_id}")


@lock_app.command("list")
def lock_list(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every lock with its pressure: the tasks whose scope overlaps it (blocking, routing around, clear)."""
    from orch import lockcmd, render

    rows = lockcmd.pressure(ctx())
    out(render.dumps({"locks": rows}) if as_json else lockcmd.pressure_text(rows))


@hooks_app.command("install")
def hooks_install() -> None:
    """Install the pre-commit shim in the common hooks folder (an existing hook is kept as .legacy)."""
    from orch import hooks as hooks_mod

    for line in hooks_mod.install(ctx().project):
        out(line)


@hooks_app.command("uninstall")
def hooks_uninstall() -> None:
    """Remove orch's shims and restore the hooks they replaced."""
    from orch import hooks as hooks_mod

    for line in hooks_mod.uninstall(ctx().project):
        out(line)


@hooks_app.command("status")
def hooks_status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show whether the hooks are installed and active."""
    from orch import hooks as hooks_mod
    from orch import render

    rows = hooks_mod.status(ctx().project)
    if as_json:
        out(render.dumps({"hooks": rows}))
    else:
        for row in rows:
            legacy = f" (runs {row['hook']}.legacy first)" if row["legacy"] else ""
            out(f"{row['hook']}: {row['state']}{legacy}")


def _run_hook(name: str) -> int:
    from orch import hookrun

    return hookrun.main([name])


@hook_app.command("pre-commit")
def hook_pre_commit() -> int:
    """Check the staged change against the locks (and, in a task worktree, its scope)."""
    return _run_hook("pre-commit")


@hook_app.command("claude-pretool")
def hook_claude_pretool() -> int:
    """Claude Code PreToolUse hook: JSON on stdin; exit 2 with the reason on stderr denies the edit."""
    return _run_hook("claude-pretool")


@hook_app.command("codex-pretool")
def hook_codex_pretool() -> int:
    """Codex PreToolUse hook for apply_patch: exit 2 with the reason on stderr denies the patch."""
    return _run_hook("codex-pretool")


# -- merge ceremony ---------------------------------------------------------------------------------


@app.command()
def merge(
    ids: list[str] | None = typer.Argument(None, metavar="ID", help="Tasks to merge (default: every spun task)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Forecast conflicts with git merge-tree; change nothing."),
    batch: bool = typer.Option(False, "--batch", help="Test many merges at once and bisect failures."),
    resume: bool = typer.Option(False, "--resume", help="Finish (or roll back) an interrupted ceremony."),
    abort: bool = typer.Option(False, "--abort", help="Roll back an interrupted ceremony that has not landed."),
    into: str | None = typer.Option(None, "--into", help="Branch to merge into (default: the base branch)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON (schemas/merge_report.schema.json)."),
) -> int:
    """Merge verified work in dependency order, test after each merge, undo what breaks the tests."""
    from orch.entry import merge_command

    return merge_command(
        ids or [], dry_run=dry_run, batch=batch, resume=resume, abort=abort, into=into, as_json=as_json
    )


@app.command()
def conflicts() -> int:
    """Forecast conflicts between tasks still in flight, pairwise and with the base (git merge-tree)."""
    from orch import ceremony

    c = ctx()
    ids, clashes = ceremony.conflicts(c)
    if not ids:
        out("no task branches in flight")
        return ExitCode.OK
    if not clashes:
        out(f"no conflicts among {len(ids)} task branch(es): {', '.join(ids)}")
        return ExitCode.OK
    for clash in clashes:
        out(f"{clash.a} x {clash.b}: {len(clash.paths)} conflicting path(s)")
        for path in clash.paths:
            out(f"    {path}")
    return ExitCode.CHECK_FAILED


@app.command()
def demo(
    folder: Path | None = typer.Option(None, "--dir", help="Build the demo repository here (new or empty folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the throwaway repository to look around."),
) -> None:
    """Run a whole orchestration in a throwaway repository: scripted agents, no model, no network."""
    from orch import demo as demo_mod

    result = demo_mod.run(folder, keep=keep, echo=out)
    states = ", ".join(f"{t} {s}" for t, s in result.states.items())
    out(f"\ndemo finished in {result.seconds:.1f}s: {states}")
    if result.kept:
        out(f"the demo repository is in {result.folder / 'calc'}")


# -- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> NoReturn:
    """The typer app behind ``orch.entry.main``, inside its one error handler."""
    from orch.entry import guarded

    def body() -> int:
        from orch._click_compat import click_exceptions, command

        ClickException, Abort, Exit = click_exceptions()
        try:
            result = command(app).main(args=argv, standalone_mode=False, prog_name="orch")
        except Exit as exc:
            result = exc.exit_code
        except ClickException as exc:
            exc.show()
            return ExitCode.USAGE
        except Abort:
            raise KeyboardInterrupt from None
        if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into a silent 130: say it, as orch.entry does
            raise KeyboardInterrupt
        return int(result) if isinstance(result, int) else ExitCode.OK

    guarded(body)
