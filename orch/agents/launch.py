"""Start, stop, wait for and attach to agents, and take their reports: the orch command side of a run.

``start`` writes the launch (argv, env, bounds) to ``run/tasks/<id>/launch.json`` and spawns a small
supervisor, ``python -m orch.agents.supervisor ROOT ID``, in a session of its own (or in tmux session
``orch-<id>``); what the supervisor does is in ``orch.agents.supervisor``. ``stop`` signals the
agent's process group and, when nobody is left to complete the run, completes it here (``finish``).
``report`` is what an agent calls from inside its worktree (``orch report``).

The status file names the supervisor (pid and process start time) or the tmux session, so a task
whose supervisor died is seen as CRASHED by the next command that looks (``orch.core.state``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from orch.agents import outbox, queue
from orch.agents.procgroup import GRACE
from orch.agents.spawn import start, tmux_session_name, write_launcher  # noqa: F401 (callers use launch.start)
from orch.agents.supervisor import finish
from orch.agents.taskfiles import files
from orch.core import eventlog, git, procs, refs, state
from orch.core.context import Ctx
from orch.core.errors import InputError, UsageError

# -- stop, wait, attach -----------------------------------------------------------------------------


def stop(ctx: Ctx, task_id: str, *, kill: bool = False, grace: float = GRACE) -> state.Status:
    """SIGTERM to the agent's process group (SIGKILL after ``grace``, or at once with ``kill``)."""
    project, store = ctx.project, ctx.store
    st = state.read(project, store, task_id)
    if st is None:
        raise InputError(f"task {task_id} was never spun", hint="see the tasks with: orch status")
    if st.get("state") != "RUNNING":
        raise InputError(f"task {task_id} is {st.get('state')}, not RUNNING: nothing to stop")
    state.update(
        project,
        store,
        task_id,
        lambda s: s.update(stop_requested_at=eventlog.utcnow()) if s.get("state") == "RUNNING" else None,
    )
    ctx.log("RUNNING", "STOP", "SIGKILL" if kill else "SIGTERM", task=task_id)
    pid, began = st.get("pid"), st.get("pid_start")
    if procs.alive(pid, began):
        _signal_agent(pid, st, signal.SIGKILL if kill else signal.SIGTERM)
    for sig in (signal.SIGKILL,) if kill else (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            current = state.read(project, store, task_id, refresh=False) or {}
            if current.get("state") != "RUNNING":
                return current
            if not procs.alive(pid, began) and not state.owner_alive(current):
                deadline = 0.0  # nobody is left to complete the run: do it here
                break
            time.sleep(0.1)
        if deadline == 0.0:
            break
        if sig == signal.SIGTERM and procs.alive(pid, began):
            _signal_agent(pid, st, signal.SIGKILL)
    if st.get("tmux_session"):
        subprocess.run(["tmux", "kill-session", "-t", f"={st['tmux_session']}"], capture_output=True, check=False)
    ended = finish(project, store, task_id, exit_code=None, reason="stopped by orch stop")
    queue.drain(ctx)  # nobody else is left to start the next queued task
    return ended


def _signal_agent(pid: int | None, st: state.Status, sig: int) -> None:
    if not pid:
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if st.get("tmux_session") or pgid != pid:
            os.kill(pid, sig)  # in tmux the agent shares the pane's group with its supervisor
        else:
            os.killpg(pgid, sig)


def wait(
    ctx: Ctx, ids: list[str] | None = None, timeout: float | None = None, *, poll: float = 0.25
) -> dict[str, state.Status]:
    """Wait until the tasks leave RUNNING and QUEUED (a queued task has run and ended); id -> status
    at return (``succeeded`` judges each).

    Without ids: every task that runs, waits in the queue, or has ended but is not yet verified,
    merged or cleaned, so a run that ended badly before the wait began is still judged.
    """
    project, store = ctx.project, ctx.store
    if ids is None:
        ids = [i for i, s in state.read_all(project, store).items() if s.get("state") in ("RUNNING", "QUEUED", *ENDED)]
    for task_id in ids:
        if state.read(project, store, task_id, refresh=False) is None:
            raise InputError(f"task {task_id} was never spun", hint=f"orch spin {task_id}")
    deadline = time.monotonic() + timeout if timeout is not None else None
    while True:
        statuses = {i: state.read(project, store, i) or {"id": i, "state": "PENDING"} for i in ids}
        if all(s.get("state") not in ("RUNNING", "QUEUED") and not _supervised(s) for s in statuses.values()):
            return statuses
        if any(s.get("state") == "QUEUED" for s in statuses.values()) and not any(
            s.get("state") == "RUNNING" or _supervised(s) for s in statuses.values()
        ):
            queue.drain(ctx)  # a supervisor killed before it started the next must not stall the queue
        if deadline is not None and time.monotonic() >= deadline:
            return statuses
        time.sleep(poll)


def _supervised(st: state.Status) -> bool:
    """Its supervisor still lives: whatever the status says (an agent can rewrite it to MERGED), the
    run is not over until the supervisor completes it (and clears its pid)."""
    pid = st.get("supervisor_pid")
    return isinstance(pid, int) and pid > 0 and procs.alive(pid, st.get("supervisor_start"))


def succeeded(st: state.Status) -> bool:
    """A good end for ``orch wait``: the run ended SUCCESS, or its work was merged since (MERGED, or
    CLEANED after the merge)."""
    return st.get("state") == "SUCCESS" or state.merged(st)


def attach_argv(ctx: Ctx, task_id: str) -> list[str]:
    """The tmux command that attaches to a task started with --tmux."""
    st = state.read(ctx.project, ctx.store, task_id)
    if st is None:
        raise InputError(f"task {task_id} was never spun", hint=f"orch spin --tmux {task_id}")
    session = st.get("tmux_session")
    if not session:
        log = ctx.project.rel(files(ctx.project, task_id).log)
        raise InputError(
            f"task {task_id} does not run in tmux",
            hint=f"spin it with --tmux to attach; its output is in {log} (tail -f it)",
        )
    if not procs.tmux_alive(session):
        raise InputError(f"tmux session {session} is gone (task {task_id} is {st.get('state')})")
    return ["tmux", "attach-session", "-t", f"={session}"]


# -- report (called by agents from inside their worktree) -----------------------------------------

REPORT_STATES = outbox.REPORT_STATES
ENDED = outbox.ENDED


def find_task_here(ctx: Ctx, cwd: Path) -> str:
    """The task whose worktree holds ``cwd``: its private marker, its branch, or $ORCH_TASK."""

    here = ctx.project.here
    if here is not None and here.resolve() != ctx.project.root.resolve():
        found = refs.task_of_worktree(here)
        if found is None:
            branch = git.current_branch(cwd=here) or ""
            found = branch.removeprefix("orch/") if branch.startswith("orch/") else None
        if found is not None:
            return found
    env_task = os.environ.get("ORCH_TASK")
    if env_task:
        return env_task
    raise InputError(
        f"{cwd} is not inside a task's worktree",
        hint="run orch report from the worktree orch made for the task (or set ORCH_TASK)",
    )


def report(
    ctx: Ctx, cwd: Path, what: str, *, note: str | None = None, artifacts: list[str] | None = None
) -> state.Status:
    """Record an agent's progress note, artifacts or BLOCKED/PAUSED/FAILED; the run's end decides."""

    kind = what.upper()
    if kind not in REPORT_STATES:
        raise UsageError(f"cannot report {what!r}", hint=f"report one of: {', '.join(REPORT_STATES)}")
    if kind in ("BLOCKED", "FAILED", "PAUSED") and not (note and note.strip()):
        raise UsageError(f"reporting {kind} needs a reason", hint=f'orch report {kind} --note "what stops you"')
    task_id = find_task_here(ctx, cwd)
    refs.check_id(task_id, cwd=ctx.project.root)
    project, store = ctx.project, ctx.store
    current = state.read(project, store, task_id)
    if current is None:
        raise InputError(f"task {task_id} was never spun")
    base = Path(current.get("worktree") or cwd)
    paths: list[str] = []
    for item in artifacts or []:
        try:
            path = (cwd / item).resolve()
            found = path.exists()
        except (OSError, RuntimeError) as exc:  # a name too long for the file system, a loop of links
            shown = item if len(item) <= 60 else f"{item[:40]}... ({len(item)} characters)"
            raise InputError(
                f"artifact {shown}: {getattr(exc, 'strerror', None) or exc}",
                hint="name a file that exists, by a shorter path (most file systems allow 255 bytes per name)",
            ) from None
        if not found:
            raise InputError(f"artifact not found: {item}", hint="name a file that exists (relative to where you are)")
        try:
            paths.append(str(path.relative_to(base.resolve())))
        except ValueError:
            paths.append(str(path))
    text = (note or "").strip() or (f"artifacts: {', '.join(paths)}" if paths else kind.lower())
    said = outbox.Report(kind, text, tuple(paths))
    box = outbox.folder(project, task_id)
    if not os.access(project.task_dir(task_id), os.W_OK) and os.access(box, os.W_OK):
        outbox.post(box, said)  # in the box: the supervisor records it
        return {**current, "id": task_id}
    return outbox.record(project, store, task_id, said)
