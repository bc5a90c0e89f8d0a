"""Start a spun task's agent under a supervisor: the launch (argv, env, bounds) and the spawn.

``start`` writes the launch to ``run/tasks/<id>/launch.json`` and spawns a small supervisor,
``python -m orch.agents.supervisor ROOT ID``, in a session of its own (or in tmux session
``orch-<id>``). Past the slots (``max_parallel``, an agent's own, a running task whose scope reaches
the same files) the task waits QUEUED instead (``orch.agents.queue``). This module imports no
supervisor code, so the supervisor can start the next queued task when its run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orch.agents import boxrun, planphase, slots
from orch.agents import manifest as agents
from orch.agents.pane import shell_quote
from orch.agents.taskfiles import files, open_run_file, run_folder_problem
from orch.core import eventlog, procs, refs, state
from orch.core.config import key_where
from orch.core.context import Ctx
from orch.core.errors import EnvError, InputError, OrchError
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
    me = os.getpid()
    problem: list[str] = []

    def claim(st: state.Status) -> None:
        if st.get("state") not in (("PAUSED",) if resume else ("PENDING", "QUEUED")):
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
            pause_requested=None,
            sandbox=boxrun.box_word(launch["box"]),
            resumed_at=eventlog.utcnow() if resume else None,
            queued_at=None,
        )

    # Counting the running agents and claiming this one is one step under one lock: two spins or
    # starts (or supervisors taking the next queued task) at once cannot both take the last slot.
    with store.lock(slots.LOCK):
        why = slots.Slots(ctx, state.read_all(project, store)).why_wait(task_id, launch["agent"])
        if why and resume:
            raise InputError(
                f"task {task_id} not resumed: it {why}",
                where=".orch/config.yaml",
                hint=f"wait for one to finish (orch wait), then orch resume {task_id}; or raise max_parallel",
            )
        if why:
            return queue_it(ctx, task_id, why)
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
        atomic_write(f.launch, json.dumps(launch, indent=2) + "\n")
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


def own(project: Any, store: Any, task_id: str, *, in_tmux: bool) -> state.Status:
    """The supervisor, as it starts, writes itself in as the run's owner: the process that started it
    (``start`` above) may be killed before its ``hand_over``, and a RUNNING task whose owner is dead
    reads as CRASHED. In tmux the session owns the run (``hand_over`` names it)."""
    me = os.getpid()

    def mine(st: state.Status) -> None:
        if st.get("state") == "RUNNING" and not in_tmux and st.get("supervisor_pid") != me:
            st.update(supervisor_pid=me, supervisor_start=procs.start_time(me))

    try:
        return state.update(project, store, task_id, mine, create=False)
    except OrchError:
        return state.read(project, store, task_id, refresh=False) or {}


def queue_it(ctx: Ctx, task_id: str, why: str) -> state.Status:
    """Make a PENDING task QUEUED (or say anew why a QUEUED one waits); the caller holds the slots lock.
    A task in any other state is left as it is (``start`` says why it cannot start)."""
    was: list[str] = []

    def change(st: state.Status) -> None:
        was.append(str(st.get("state")))
        if st.get("state") not in ("PENDING", "QUEUED") or (st.get("state") == "QUEUED" and st.get("reason") == why):
            return
        st.update(state="QUEUED", reason=why, queued_at=st.get("queued_at") or eventlog.utcnow())

    st = state.update(ctx.project, ctx.store, task_id, change)
    if was and was[0] == "PENDING":
        ctx.log("QUEUED", "QUEUE", why, task=task_id)
    if st.get("state") != "QUEUED":
        raise InputError(f"task {task_id} is {st.get('state')}, not ready to start", hint=f"see: orch status {task_id}")
    return st


def _fail_start(st: state.Status, me: int, reason: str) -> None:
    if st.get("state") == "RUNNING" and st.get("supervisor_pid") == me:
        st.update(state="FAILED", reason=reason, finished_at=eventlog.utcnow(), supervisor_pid=None)


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None
