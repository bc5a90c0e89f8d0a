"""The factory line: ``orch up`` drains the whole plan; ``orch down`` stops it."""

from __future__ import annotations

import os
import sys
from typing import Any

from orch.cli.app import app, ctx, typer
from orch.cli.output import err, out
from orch.core.errors import ExitCode, OrchError, UsageError


class UpStopped(OrchError):
    exit_code = ExitCode.INTERRUPTED


@app.command()
def up(
    land: str = typer.Option("ask", "--land", help="auto: land verified work by itself; ask: a person approves each."),
    detach: bool = typer.Option(False, "--detach", help="Run in the background; its output goes to .orch/run/up.log."),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Stop as soon as nothing moves by itself (do not wait for people's answers)."
    ),
    budget: str | None = typer.Option(
        None, "--budget", help="The whole run's budget ('$20', '2M tokens'); else the config's."
    ),
    wait_for: str = typer.Option(
        "8h", "--wait-for-people", help="How long to wait with only people's answers left (90s, 15m, 8h)."
    ),
) -> int:
    """Drain the plan: spin every task whose dependencies landed (past the slots they queue), land what
    succeeds through the merge ceremony (--land ask: a person approves each landing in the inbox), and
    spin the dependents the moment it lands. Stops when everything landed or nothing more can move,
    and says why for each task left. Exit 0 only when every task landed."""
    from orch.core.planvalues import parse_budget, parse_duration
    from orch.schedule import runbudget, uprun
    from orch.schedule.look import Options

    if land not in ("auto", "ask"):
        raise UsageError(f"--land {land!r}: say auto or ask", hint="orch up --land auto, or orch up (asks)")
    run_budget = None
    if budget is not None:
        try:
            run_budget = runbudget.RunBudget.parsed(parse_budget(budget), budget)
        except ValueError as exc:
            raise UsageError(
                f"--budget {budget!r}: {exc}", hint="e.g. --budget '$20' or --budget '2M tokens, $20'"
            ) from None
    try:
        waiting = float(parse_duration(wait_for))
    except ValueError as exc:
        raise UsageError(f"--wait-for-people {wait_for!r}: {exc}") from None
    c = ctx()
    if detach:
        return _detach(c)
    options = Options(land=land, until_idle=until_idle, budget=run_budget)
    live = sys.stdout.isatty() and not os.environ.get("ORCH_UP_DETACHED")
    from orch.cli import uplive

    view = uplive.View(live=live)
    try:
        with view:
            look = uprun.run(c.project.root, options, say=view.say, on_look=view.show, wait_for_people=waiting)
    except KeyboardInterrupt as exc:
        stopped = "SIGTERM (orch down, or whoever sent it)" if isinstance(exc, uprun.Stopped) else "Ctrl-C"
        raise UpStopped(
            f"orch up stopped by {stopped}; the agents keep running",
            hint="orch up again goes on; orch status shows them",
        ) from None
    out(uplive.summary(look))
    return ExitCode.OK if look.done else ExitCode.CHECK_FAILED


def _detach(c: Any) -> int:
    """Start this ``orch up`` again in the background (its own session, output in run/up.log) and
    return once it holds the ``up`` lock, or has failed."""
    import subprocess
    import time

    from orch.core import procs
    from orch.schedule import upfile

    other = upfile.running(c.project, c.store)
    if other is not None:
        from orch.core.errors import InputError

        raise InputError(
            f"orch up runs already (pid {other['pid']}, since {other.get('started_at')})",
            hint="watch it with orch status, or stop it with orch down",
        )
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    log = upfile.log_path(c.project)
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_log(c, log)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "orch", *argv],
            cwd=c.project.root,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            env={**os.environ, "ORCH_UP_DETACHED": "1"},
        )
    finally:
        os.close(fd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = upfile.running(c.project, c.store)
        if mine is not None and int(mine["pid"]) == child.pid:
            out(f"orch up runs in the background (pid {child.pid}); its output: {c.project.rel(log)}")
            out("  stop it with: orch down   (its agents keep running unless: orch down --agents)")
            return ExitCode.OK
        if child.poll() is not None:
            err(f"orch up did not start (exit {child.returncode}); the end of {c.project.rel(log)}:")
            err("\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-10:]))
            return child.returncode or ExitCode.GIT
        procs.wait_exit([child.pid], 0.05)
    err(f"orch up (pid {child.pid}) has not said it runs after 30 s; see {c.project.rel(log)}")
    return ExitCode.GIT


def _open_log(c: Any, log: Any) -> int:
    """``run/up.log`` to append to, never through a link (anyone can write ``.orch/run/``)."""
    import stat

    from orch.core.errors import EnvError

    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise EnvError(
            f"cannot open {c.project.rel(log)}: {exc.strerror}", hint="remove what is in its place"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise EnvError(f"{c.project.rel(log)} is not a plain file of its own (a link?)", hint="remove it")
    os.set_blocking(fd, True)
    return fd


@app.command()
def down(
    agents: bool = typer.Option(False, "--agents", help="Stop the running agents too (their work is kept)."),
) -> int:
    """Stop the running orch up (its agents keep running unless --agents). orch up again goes on."""
    from orch.agents import launch
    from orch.core import state
    from orch.schedule import upfile

    c = ctx()
    record = upfile.down(c.project, c.store)
    if record is None:
        out("no orch up runs")
    else:
        out(f"stopped orch up (pid {record['pid']}, started {record.get('started_at')})")
    if not agents:
        return ExitCode.OK
    code = ExitCode.OK
    for task_id, st in sorted(state.read_all(c.project, c.store).items()):
        if st.get("state") != "RUNNING":
            continue
        try:
            launch.stop(c, task_id)
            out(f"{task_id}: stopped (its work kept)")
        except OrchError as exc:  # one task that cannot be stopped does not keep the others running
            err(f"orch: {task_id}: not stopped: {exc.message}")
            code = ExitCode.GIT
    return code
