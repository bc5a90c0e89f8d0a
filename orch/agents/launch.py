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
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orch.agents import boxrun, outbox, planphase
from orch.agents import manifest as agents
from orch.agents.pane import shell_quote
from orch.agents.procgroup import GRACE
from orch.agents.supervisor import finish
from orch.agents.taskfiles import files, open_run_file, run_folder_problem
from orch.core import eventlog, git, procs, refs, state
from orch.core.config import key_where
from orch.core.context import Ctx
from orch.core.errors import EnvError, InputError, UsageError
from orch.core.store import atomic_write


def tmux_session_name(task_id: str) -> str:
    return f"orch-{task_id}"


def _write_new(path: Path, text: str, mode: int, *, tmp_dir: Path | None = None) -> None:
    """Write ``path`` atomically with ``mode``: a temp file of a fresh name (``O_EXCL``, so never a link
    someone put there), renamed over ``path`` (a link at ``path`` is replaced, not followed)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=tmp_dir or path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)  # whatever the umask took away
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    _write_new(path, text, 0o600)


# -- launching --------------------------------------------------------------------------------------

# The launcher runs orch's interpreter on orch, not `python -m orch`: the agent calls it from its
# worktree, and `-m` (like `-c`) puts the working folder first on sys.path, where a worktree's own
# orch/ package would be imported instead. The first line of the -c code takes that entry out.
_LAUNCHER = """#!/bin/sh
# orch's launcher for agents: the orch that started this task (written by orch spin / orch start)
exec {python} -c 'import sys
if sys.path and sys.path[0] == "": del sys.path[0]
from orch.cli.entry import main
main()' "$@"
"""


def write_launcher(path: Path) -> Path:
    """Write the executable ``orch`` launcher at ``path`` (its folder holds nothing else)."""
    if path.parent.is_symlink():  # the folder on the agent's PATH is orch's own, never a link to elsewhere
        path.parent.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file is made beside the PATH folder, not in it (parent.parent: the run folder).
    _write_new(path, _LAUNCHER.format(python=shell_quote(sys.executable)), 0o755, tmp_dir=path.parent.parent)
    return path


def build_launch(ctx: Ctx, task_id: str, manifest: dict[str, Any], phase: str | None = None) -> dict[str, Any]:
    """The argv, environment and bounds of one run, from the frozen task manifest and the agent."""
    project = ctx.project
    phase = planphase.phase_of(project, ctx.store, task_id, manifest, phase)
    f = files(project, task_id)
    name = manifest.get("agent")
    try:
        agent = agents.load(project, ctx.store, name or ctx.config.default_agent)
    except InputError as exc:
        if name and exc.where is None and not agents.manifest_path(project, name).is_file():
            exc.where = key_where(project, "agent", f.manifest)  # where the name was frozen at spin
        raise
    limits = manifest.get("limits") or {}
    worktree = manifest["worktree"]
    boxed = _box_of(ctx, agent, dict(agent.env))
    if "{run}" in " ".join(agent.command) and not manifest.get("run"):
        raise InputError(
            f"task {task_id} has no 'run:' field, which agent '{agent.name}' runs",
            hint=f"add '- run: COMMAND' under ## {task_id} in .orch/plan.md, or pick another agent with --agent",
        )
    values: dict[str, str | None] = {
        "prompt_file": str(f.context),
        "prompt": f.context.read_text(encoding="utf-8") if "{prompt}" in " ".join(agent.command) else None,
        "task": task_id,
        "worktree": worktree,
        "model": manifest.get("model"),
        "max_turns": str(agent.max_turns) if agent.max_turns else None,
        "run": manifest.get("run"),
        "tools": ",".join(agent.tools) or None,
        "usage_file": str(f.usage),
        "budget_usd": f"{limits['budget_usd']:g}" if limits.get("budget_usd") else None,
        "codex_hooks": agents.codex_hooks(),
        # Codex's own sandbox inside orch's box: orch's box already bounds what it writes, and Codex's
        # workspace-write would keep it from committing (a worktree's git folder is outside it).
        "codex_sandbox": "danger-full-access" if boxed["on"] else "workspace-write",
        "permission_mode": planphase.permission_mode(agent.data, phase),
    }
    argv = agents.render_command(agent.command, values)
    if not argv or not argv[0]:
        raise InputError(
            f"agent '{agent.name}' renders to an empty command for task {task_id}",
            where=key_where(project, "command", agent.path),
            hint="the command's first word must not be a placeholder without a value (e.g. {model} with no model)",
        )
    env = dict(agent.env)
    # The agent sees the user's PATH as it is, with one folder added that holds only an `orch`
    # launcher for this very orch: orch's own interpreter folder (a pipx venv, say) must never come
    # first, or `python3` in the agent or its accept command would be orch's Python.
    launcher = write_launcher(f.launcher)
    path = env.get("PATH") or os.environ.get("PATH") or ""
    env.update(
        {
            "ORCH_TASK": task_id,
            "ORCH_WORKTREE": worktree,
            "ORCH_CONTEXT": str(f.context),
            "ORCH_HOME": str(project.orch_dir),
            "ORCH": str(launcher),
            "PATH": os.pathsep.join([str(launcher.parent), *([path] if path else [])]),
            **({"ORCH_PHASE": phase} if phase else {}),  # plan or work: the hooks deny writes while it plans
        }
    )
    return {
        "agent": agent.name,
        "box": boxed,
        "argv": argv,
        "command": agent.command,  # the loop renders the argv anew each iteration: its brief, its budget
        "values": values,
        "env": env,
        "cwd": worktree,
        "timeout": limits.get("timeout"),
        "usage": agent.usage,
        "usage_file": str(f.usage),
        "max_tokens": limits.get("max_tokens"),
        "budget_usd": limits.get("budget_usd"),
        "accept": manifest.get("accept"),
        **{key: manifest.get(key) for key in ("check", "tdd_gate", "title")},
        "loop": limits,  # orch.agents.loop
        "plan_phase": phase,  # orch.agents.planphase
        "accept_timeout": ctx.config.test_timeout,
        "branch": manifest["branch"],
    }


def _box_of(ctx: Ctx, agent: agents.Agent, env: dict[str, str]) -> dict[str, Any]:
    """Whether the run is boxed, and what the box lets it write and see (``orch.core.box``)."""
    from orch.core import box

    # The config in force: an uncommitted 'sandbox: off' (an agent can write the checkout) is not.
    config = ctx.judging().config
    decision = box.decide(box.mode_of(config.sandbox, agent.data.get("sandbox")))
    home = env.get("HOME") or os.environ.get("HOME")
    project = ctx.project
    return {
        "on": decision.on,
        "mode": decision.mode,
        "notice": decision.notice,
        "network": box.network_of(agent.data.get("network")),
        "writable": [str(p) for p in box.expand([*config.writable, *(agent.data.get("writable") or [])], home)],
        "read_only": [str(p) for p in box.expand(agent.data.get("read_only") or [], home)],
        "readable": [
            str(p)
            for p in [
                project.root,
                project.common_dir,
                config.worktree_root,
                *box.expand(agent.data.get("readable") or [], home),
            ]
        ],
    }


def start(ctx: Ctx, task_id: str, *, tmux: bool = False, resume: bool = False, phase: str = "") -> state.Status:
    """Start the agent of a spun task under a supervisor; returns the RUNNING status. ``resume``: a
    PAUSED task, whose loop goes on (``orch resume``); ``phase="work"``: its plan approved (``orch approve``)."""
    project, store = ctx.project, ctx.store
    f = files(project, task_id)
    try:
        manifest = store.load(f.manifest, "task_manifest")
    except FileNotFoundError:
        raise InputError(
            f"task {task_id} is not spun (no {project.rel(f.manifest)})", hint=f"orch spin {task_id}"
        ) from None
    linked = run_folder_problem(project, task_id)
    if linked:
        raise EnvError(
            f"task {task_id} not started: {linked}; orch never writes through a link", hint="remove the link"
        )
    launch = build_launch(ctx, task_id, manifest, phase or None)
    if tmux and not _which("tmux"):
        raise EnvError("tmux is not installed or not on PATH", hint="install tmux, or spin without --tmux")
    atomic_write(f.launch, json.dumps(launch, indent=2) + "\n")
    me = os.getpid()
    problem: list[str] = []

    def claim(st: state.Status) -> None:
        if st.get("state") != ("PAUSED" if resume else "PENDING"):
            problem.append(str(st.get("state")))
            return
        # Until the supervisor exists, this process answers for the task: a task is never RUNNING
        # without a live owner, so a concurrent `orch status` cannot mistake it for CRASHED.
        st.update(
            state="RUNNING",
            reason=None,
            agent=launch["agent"],
            started_at=eventlog.utcnow(),
            finished_at=None,
            exit_code=None,
            supervisor_pid=me,
            supervisor_start=procs.start_time(me),
            pid=None,
            pid_start=None,
            tmux_session=None,
            stop_requested_at=None,
            sandbox=boxrun.box_word(launch["box"]),
            resumed_at=eventlog.utcnow() if resume else None,
        )

    # Counting the running agents and claiming this one is one step under one lock: two spins or
    # starts at once cannot both take the last slot.
    with store.lock("agent-slots"):
        limit = ctx.config.max_parallel
        running = sorted(t for t, st in state.read_all(project, store).items() if st.get("state") == "RUNNING")
        if len(running) >= limit and task_id not in running:
            raise InputError(
                f"task {task_id} not started: {limit} agents run already (max_parallel): {', '.join(running)}",
                where=".orch/config.yaml",
                hint=f"wait for one to finish (orch wait), then orch start {task_id}; or raise max_parallel",
            )
        state.update(project, store, task_id, claim)
    if problem and resume:
        raise InputError(f"task {task_id} is {problem[0]}, not PAUSED", hint=f"see: orch status {task_id}")
    if problem:
        raise InputError(f"task {task_id} is {problem[0]}, not ready to start", hint=f"see: orch status {task_id}")
    refs.clear_checkout(Path(launch["cwd"]))  # the checkout is done (a manifest, a status); a killed spin's mark goes
    cmd = [sys.executable, "-m", "orch.agents.supervisor", str(project.root), task_id]
    session = tmux_session_name(task_id)
    # The supervisor runs from the task's run folder, never from the worktree: `python -m` puts its
    # working folder first on sys.path, and the worktree's files (an orch/ or json.py) must not be
    # imported by orch. Only the agent runs in the worktree.
    try:
        if tmux:
            # A tmux session gets the tmux server's environment, not ours: hand ours over in a
            # private file the supervisor reads and deletes.
            _write_private(f.launch_env, json.dumps(dict(os.environ)))
            tmux_argv = ["tmux", "new-session", "-d", "-s", session, "-c", str(f.folder)]
            for key in ("PATH", "HOME", "VIRTUAL_ENV"):
                if key in os.environ:
                    tmux_argv += ["-e", f"{key}={os.environ[key]}"]
            r = subprocess.run([*tmux_argv, "--", *cmd, "--tmux"], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise EnvError(f"tmux could not start session {session}: {r.stderr.strip()}")
            child_pid, child_start = None, None
        else:
            log_fd, _note = open_run_file(f.supervisor_log, append=True)  # never through a link
            try:
                proc = subprocess.Popen(
                    cmd,
                    cwd=f.folder,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    start_new_session=True,
                    close_fds=True,
                )
            finally:
                os.close(log_fd)
            child_pid, child_start = proc.pid, procs.start_time(proc.pid)
    except BaseException as exc:
        reason = f"could not start the supervisor: {exc}"
        state.update(project, store, task_id, lambda st: _fail_start(st, me, reason))
        raise

    def hand_over(st: state.Status) -> None:
        if st.get("state") == "RUNNING" and st.get("supervisor_pid") == me:
            if tmux:
                st.update(tmux_session=session, supervisor_pid=None, supervisor_start=None)
            else:
                st.update(supervisor_pid=child_pid, supervisor_start=child_start)

    status = state.update(project, store, task_id, hand_over)
    boxed = "box=on" if launch["box"]["on"] else "box=off"
    word = "RESUME" if resume else "START"
    ctx.log("RUNNING", word, f"agent={launch['agent']} {boxed}" + (f" tmux={session}" if tmux else ""), task=task_id)
    return status


def _fail_start(st: state.Status, me: int, reason: str) -> None:
    if st.get("state") == "RUNNING" and st.get("supervisor_pid") == me:
        st.update(state="FAILED", reason=reason, finished_at=eventlog.utcnow(), supervisor_pid=None)


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


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
    pid, start = st.get("pid"), st.get("pid_start")
    if procs.alive(pid, start):
        _signal_agent(pid, st, signal.SIGKILL if kill else signal.SIGTERM)
    for sig in (signal.SIGKILL,) if kill else (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            current = state.read(project, store, task_id, refresh=False) or {}
            if current.get("state") != "RUNNING":
                return current
            if not procs.alive(pid, start) and not state.owner_alive(current):
                deadline = 0.0  # nobody is left to complete the run: do it here
                break
            time.sleep(0.1)
        if deadline == 0.0:
            break
        if sig == signal.SIGTERM and procs.alive(pid, start):
            _signal_agent(pid, st, signal.SIGKILL)
    if st.get("tmux_session"):
        subprocess.run(["tmux", "kill-session", "-t", f"={st['tmux_session']}"], capture_output=True, check=False)
    return finish(project, store, task_id, exit_code=None, reason="stopped by orch stop")


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
    """Wait until the tasks leave RUNNING; id -> status at return (``succeeded`` judges each).

    Without ids: every task that runs or has ended but is not yet verified, merged or cleaned, so
    a run that ended badly before the wait began is still judged.
    """
    project, store = ctx.project, ctx.store
    if ids is None:
        ids = [i for i, s in state.read_all(project, store).items() if s.get("state") in ("RUNNING", *ENDED)]
    for task_id in ids:
        if state.read(project, store, task_id, refresh=False) is None:
            raise InputError(f"task {task_id} was never spun", hint=f"orch spin {task_id}")
    deadline = time.monotonic() + timeout if timeout is not None else None
    while True:
        statuses = {i: state.read(project, store, i) or {"id": i, "state": "PENDING"} for i in ids}
        if all(s.get("state") != "RUNNING" and not _supervised(s) for s in statuses.values()):
            return statuses
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
