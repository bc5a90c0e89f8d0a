"""The task lifecycle: spin, start, retry, agents, wait, stop, report, attach, clean, doctor."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from orch.cli.app import app, ctx, typer
from orch.cli.output import err, out
from orch.core.errors import ExitCode, UsageError

# -- worktree lifecycle: spin, start, retry, agents, wait, stop, report, attach, clean, doctor --------


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
    from orch.cli import render
    from orch.tasks import spin as spin_mod

    if bool(ids) == ready:
        raise UsageError("name the tasks to spin, or pass --ready, not both", hint="orch spin T1, or orch spin --ready")
    c = ctx()
    chosen = list(ids) if ids else spin_mod.ready_ids(c)
    if not chosen:
        out("no task is ready to spin (see: orch plan)")
        return 0
    position = {task_id: n for n, task_id in enumerate(dict.fromkeys(chosen), 1)}

    def progress(task_id: str, message: str) -> None:
        err(f"[{position.get(task_id, 0)}/{len(position)}] {task_id}: {message}")

    results = spin_mod.spin(
        c, chosen, agent=agent, start=not no_start, tmux=use_tmux, force=force, progress=None if as_json else progress
    )
    if as_json:
        out(render.dumps([r.to_json() for r in results]))
    else:
        for r in results:
            if r.ok:
                how = "not started" if no_start else (f"tmux {r.tmux_session}" if r.tmux_session else "running")
                how = f"queued: {r.queued}" if r.queued else how
                out(f"{r.id}: {r.branch} at {r.worktree} ({r.agent}, {how})")
            else:
                err(f"orch: {r.id}: {r.error}")
    _box_notice(c, [r.id for r in results if r.ok and not no_start])
    failed = [r.exit_code for r in results if not r.ok]
    return max(failed) if failed else 0


@app.command()
def start(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Tasks to start (past the free slots they queue)."),
    use_tmux: bool = typer.Option(False, "--tmux", help="Run the agent in tmux session orch-ID."),
) -> int:
    """Start the agents of tasks spun with --no-start; past the free slots a task waits QUEUED and
    starts when a run ends (orch dequeue ID takes it back out)."""
    from orch.agents import queue

    c = ctx()
    for task_id in ids:
        _check_id(task_id, c)
    codes = []
    for task_id, st in queue.start_many(c, list(ids), tmux=use_tmux):
        if not isinstance(st, dict) and len(ids) == 1:
            raise st  # one task: its error as any command's
        if not isinstance(st, dict):
            err(f"orch: {task_id}: {st.render()}")
            codes.append(int(st.exit_code))
        elif st.get("state") == "QUEUED":
            out(f"{task_id}: queued: {st.get('reason')}")
        else:
            tmux = f", tmux {st['tmux_session']}" if st.get("tmux_session") else ""
            out(f"{task_id}: started ({st.get('agent')}{tmux})")
    _box_notice(c, list(ids))
    return max(codes) if codes else 0


@app.command()
def dequeue(task_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Take a QUEUED task out of the queue: it stays spun, PENDING, until orch start ID."""
    from orch.agents import queue

    c = ctx()
    _check_id(task_id, c)
    queue.dequeue(c, task_id)
    out(f"{task_id}: taken out of the queue (PENDING, still spun: orch start {task_id})")


@app.command()
def retry(
    task_id: str = typer.Argument(..., metavar="ID"),
    note: str | None = typer.Option(None, "--note", help="A note for the agent, put in its brief as a quote."),
    use_tmux: bool = typer.Option(False, "--tmux", help="Run the agent in tmux session orch-ID."),
) -> None:
    """Start a FAILED, BLOCKED, CRASHED or PAUSED task over from its start, the last run's blocker
    report and your note in its brief (its work is kept under refs/orch/attempts/ID/N)."""
    from orch.tasks import retry as retry_mod

    c = ctx()
    _check_id(task_id, c)
    done = retry_mod.retry(c, task_id, note=note, tmux=use_tmux)
    st = done.status
    how = f"tmux {st['tmux_session']}" if st.get("tmux_session") else "running"
    how = f"queued: {st.get('reason')}" if st.get("state") == "QUEUED" else how
    out(f"{task_id}: retried (was {done.previous}): {how} ({st.get('agent')})")
    for ref in done.kept:
        out(f"  kept the last run's work as {ref}")
    if done.run_files:
        out(f"  the last run's files: {done.run_files}")
    for line in done.notes:
        out(f"  note: {line}")
    out(f"  follow it: orch run {task_id} (or orch wait {task_id})")
    _box_notice(c, [task_id])


def _box_notice(c: Any, ids: list[str]) -> None:
    """The one-line notice when agents started outside the box because bubblewrap does not work here."""
    from orch.agents import boxrun
    from orch.core import state

    line = boxrun.box_notice([st for i in ids if (st := state.read(c.project, c.store, i, refresh=False))])
    if line:
        err(f"orch: note: {line}")


@app.command("agents")
def agents_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> int:
    """List the agent manifests in .orch/agents/ and whether each is valid."""
    from orch.agents import manifest as agents
    from orch.cli import render

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
            error = (i.error or "").splitlines()
            rows.append([i.name, status, i.usage or "-", i.description or (error[0] if error else "-")])
        empty = "no agents (orch init adds the presets)"
        out(render.plain_table(["AGENT", "STATUS", "USAGE", "DESCRIPTION"], rows) if rows else empty)
        for i in infos:
            if not i.valid:
                err(f"orch: {i.error}")
    return 3 if any(not i.valid for i in infos) else 0


@app.command()
def wait(
    ids: list[str] = typer.Argument(
        None, metavar="ID", help="Tasks to wait for (default: every running or queued one)."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Give up after this many seconds."),
) -> int:
    """Wait until tasks finish (queued ones too: until they have run and ended); exit 0 if all
    succeeded or were merged, 1 otherwise (or on timeout)."""
    from orch.agents import launch

    c = ctx()
    for task_id in ids or []:
        _check_id(task_id, c)
    statuses = launch.wait(c, list(ids) if ids else None, timeout)
    if not statuses:
        out("no task is running or waiting to be merged")
    for task_id, st in statuses.items():
        now = st.get("state")
        if now in ("RUNNING", "QUEUED"):
            out(f"{task_id}: {now} (still {now.lower()}: timed out waiting)")
        else:
            merged = now not in ("SUCCESS", "MERGED") and launch.succeeded(st)  # CLEANED after its merge
            plan = " (its plan waits for a person: orch inbox)" if now == "AWAITING_APPROVAL" else ""
            out(f"{task_id}: {now}" + (" (merged)" if merged else "") + plan)
    return 0 if all(launch.succeeded(st) for st in statuses.values()) else 1


@app.command()
def stop(
    task_id: str = typer.Argument(..., metavar="ID"),
    kill: bool = typer.Option(False, "--kill", help="SIGKILL at once instead of SIGTERM first."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a running agent (SIGTERM to its process group, SIGKILL after a grace period)."""
    from orch.agents import launch

    c = ctx()
    _check_id(task_id, c)
    st = launch.stop(c, task_id, kill=kill, grace=grace)
    out(f"{task_id}: {st.get('state')}" + (f" ({st['reason']})" if st.get("reason") else ""))


@app.command()
def report(
    what: str = typer.Argument(..., metavar="STATE", help="PROGRESS, SUCCESS, BLOCKED, PAUSED or FAILED."),
    note: str | None = typer.Option(None, "--note", help="What happened, or what blocks you."),
    artifact: list[str] = typer.Option(None, "--artifact", help="A file to hand on (repeatable)."),
) -> None:
    """For agents: report progress or a blocker from inside the task's worktree."""
    from orch.agents import launch

    c = ctx()
    st = launch.report(c, Path(os.getcwd()), what, note=note, artifacts=list(artifact or []))
    out(f"{st['id']}: reported {what.upper()} (task is {st.get('state')})")


@app.command()
def propose(
    to: str = typer.Option(..., "--to", metavar="AGENT", help="The agent that should do it (.orch/agents/AGENT.yaml)."),
    title: str = typer.Option(..., "--title", help="The task's one-line title."),
    brief: str = typer.Option(..., "--brief", help="What the task is, for the agent that gets it."),
    scope: str | None = typer.Option(None, "--scope", metavar="REGEX", help="Regex of the paths it may change."),
    artifact: list[str] = typer.Option(
        None,
        "--artifact",
        metavar="PATH",
        help="A committed file or folder it builds on (repeatable).",
    ),
    precondition: list[str] = typer.Option(
        None, "--precondition", metavar="TEXT", help="What must hold before it starts (repeatable)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why you propose it."),
    confidence: str = typer.Option(..., "--confidence", metavar="0.0-1.0", help="How sure you are it is worth doing."),
) -> None:
    """For agents: propose a task for another agent; a person decides (orch inbox). Nothing runs."""
    from orch.inbox import handoff

    fields = {
        "to": to,
        "title": title,
        "brief": brief,
        "scope": scope,
        "artifacts": list(artifact or []),
        "preconditions": list(precondition or []),
        "reason": reason,
        "confidence": confidence,
    }
    task_id, item = handoff.propose(ctx(), Path(os.getcwd()), fields)
    if item is None:
        out(f"{task_id}: proposed {title.strip()!r} for agent {to}; it reaches the inbox when this run ends")
    else:
        out(f"{item['id']}: {task_id} proposed {title.strip()!r} for agent {to}; a person decides (orch inbox)")


@app.command()
def attach(task_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Attach to the tmux session of a task spun with --tmux (watch it or take over)."""
    from orch.agents import launch

    c = ctx()
    _check_id(task_id, c)
    argv = launch.attach_argv(c, task_id)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command()
def clean(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to clean (default: merged ones)."),
    merged: bool = typer.Option(False, "--merged", help="Every merged task (the default without ids)."),
    all_: bool = typer.Option(
        False, "--all", help="Every finished task, but finished work not merged yet (SUCCESS) needs --force."
    ),
    force: bool = typer.Option(
        False, "--force", help="Delete unmerged branches too (a ref still keeps them); with --all, clean SUCCESS too."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> int:
    """Remove worktrees and branches of finished tasks; keeps a ref to every commit and change."""
    from orch.cli import render
    from orch.tasks import clean as clean_mod

    if ids and (merged or all_):
        raise UsageError("name tasks, or pass --merged / --all, not both")
    c = ctx()
    rep = clean_mod.clean(c, list(ids) if ids else None, merged=merged, all=all_, force=force)
    if as_json:
        out(render.dumps(rep.to_json()))
    else:
        out(clean_mod.clean_text(rep) if rep.entries else "nothing to clean")
    return 1 if ids and rep.skipped else 0


@app.command()
def doctor(
    fix: bool = typer.Option(False, "--fix", help="Repair or adopt what can be repaired safely."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (schemas/doctor.schema.json)."),
    accept_git_config: bool = typer.Option(
        False,
        "--accept-git-config",
        help="Accept the programs git config names now (filters, merge and diff drivers) as set up by you, "
        "a person; orch refuses to run git while config names one not accepted (orch init accepts them too).",
    ),
) -> int:
    """Find worktrees, branches and statuses out of step, stale locks and temp files, crashes, planted git config."""
    from orch.tasks import doctor as doctor_mod

    c = ctx()
    if accept_git_config:
        now, before = doctor_mod.accept_git_config(c)
        for key, value in now.items():
            out(f"{'accepted' if before.get(key) != value else 'kept    '} {key}={value!r}")
        for key in sorted(before.keys() - now.keys()):
            out(f"dropped  {key} (no longer in git config)")
        out(f"git config names {len(now)} program(s); orch's git may run these, and no other")
        return 0
    findings = doctor_mod.run(c, fix=fix)
    if as_json:
        from orch.cli import render

        out(render.dumps(doctor_mod.to_json(findings)))
    elif not findings:
        out("all good: worktrees, branches and statuses agree")
    else:
        out(doctor_mod.text(findings))
    return 0 if doctor_mod.ok(findings) else 1


def _check_id(task_id: str, c: Any) -> None:
    from orch.core import refs  # not at import: `orch --help` loads this module

    refs.check_id(task_id, cwd=c.project.root)


@app.command("run")
def run_cmd(
    ids: list[str] = typer.Argument(..., metavar="ID", help="Tasks to run."),
    max_iterations: str | None = typer.Option(None, "--max-iterations", metavar="N", help="At most N iterations."),
    max_per_strategy: str | None = typer.Option(
        None, "--max-per-strategy", metavar="N", help="At most N iterations per strategy."
    ),
    max_strategies: str | None = typer.Option(None, "--max-strategies", metavar="N", help="At most N strategies."),
    timeout: str | None = typer.Option(
        None, "--timeout", metavar="S", help="The whole task's wall clock: seconds, or 90s, 15m, 2h."
    ),
    no_tdd_gate: bool = typer.Option(False, "--no-tdd-gate", help="Skip the TDD gate (accept must fail first)."),
    detach: bool = typer.Option(False, "--detach", help="Start the tasks and return at once."),
) -> int:
    """Run tasks through the loop (spinning them if needed) and follow them to their end (a live table
    at a terminal, one line per event elsewhere); exit 0 only when every one ended SUCCESS."""
    from orch.tasks import runloop

    overrides = runloop.Overrides(
        max_iterations=_positive(max_iterations, "--max-iterations", int),
        max_per_strategy=_positive(max_per_strategy, "--max-per-strategy", int),
        max_strategies=_positive(max_strategies, "--max-strategies", int),
        timeout=_positive(timeout, "--timeout", float),
        tdd_gate=not no_tdd_gate,
    )
    c = ctx()
    offset = runloop.log_offset(c)
    started = runloop.start(c, list(ids), overrides)
    for note in started.notes:
        err(f"orch: note: {note}")
    for task_id, error, _code in started.errors:
        err(f"orch: {task_id}: {error}")
    if detach:
        for task_id in started.ids:
            out(f"{task_id}: running (orch wait {task_id})")
        return max([code for _i, _e, code in started.errors], default=0)
    return _follow(c, started.ids, offset, ok=not started.errors)


def _follow(c: Any, ids: list[str], offset: int, *, ok: bool = True) -> int:
    """Follow ``ids`` until each has ended (a live table at a terminal, one line per loop event
    elsewhere): 0 only when every one ended SUCCESS; Ctrl-C: 130, and the tasks run on."""
    from orch.cli import render
    from orch.core import state
    from orch.tasks import runloop

    try:
        if render.fancy() and ids:
            from orch.cli import live

            live.follow(c, ids, offset)
        else:
            for line in runloop.follow(c, ids, offset):
                out(line)
    except KeyboardInterrupt:
        # The supervisors run in sessions of their own: Ctrl-C reaches this command only, as before.
        running = [i for i in ids if (state.read(c.project, c.store, i) or {}).get("state") == "RUNNING"]
        names = " ".join(running)
        hint = f": {names} run on, detached (follow: orch wait {names}; end one: orch stop ID)" if running else ""
        err(f"orch: interrupted{hint}")
        return int(ExitCode.INTERRUPTED)
    for task_id in ids:
        st = state.read(c.project, c.store, task_id) or {}
        out(runloop.ended_line(task_id, st))
        ok = ok and st.get("state") == "SUCCESS"
    return 0 if ok else 1


@app.command()
def resume(
    task_id: str = typer.Argument(..., metavar="ID"),
    budget: str | None = typer.Option(
        None, "--budget", metavar="TEXT", help="The task's budget from now on: '500k tokens', '$10', or both."
    ),
    detach: bool = typer.Option(False, "--detach", help="Start it and return at once."),
    tmux: bool = typer.Option(False, "--tmux", help="Run it in tmux session orch-ID (orch attach ID)."),
) -> int:
    """Go on with a PAUSED task from where its loop stopped, and follow it. Refused when the budget
    would pause it again at once, or when its limits (iterations, strategies, its timeout) are spent:
    then orch retry starts it over."""
    from orch.tasks import resume as resume_mod
    from orch.tasks import runloop

    c = ctx()
    offset = runloop.log_offset(c)
    resume_mod.resume(c, task_id, budget, tmux=tmux)
    if detach:
        out(f"{task_id}: running again (orch wait {task_id})")
        return 0
    return _follow(c, [task_id], offset)


def _positive(value: str | None, flag: str, kind: Any) -> Any:
    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError:
        number = 0
        if kind is float:  # seconds: 90, or 90s, 15m, 2h as in the plan's task_timeout
            from orch.core.plan import parse_duration

            with contextlib.suppress(ValueError):
                number = parse_duration(value)
    import math

    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{flag} needs a number above 0, not '{value}'")
    return number
