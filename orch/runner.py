"""Start, supervise, stop and wait for agent processes.

``start`` writes the launch (argv, env, bounds) to ``run/tasks/<id>/launch.json`` and spawns a small
supervisor, ``python -m orch.runner ROOT ID``, in a session of its own (or in tmux session
``orch-<id>``). The supervisor runs the agent in the task's worktree in its own process group, with
output in ``agent.log``, enforces the timeout and the token/money budget, and when the agent ends:
commits uncommitted work as a snapshot (author ``orch``, hooks bypassed), records the exit code and
usage, runs the task's ``accept`` command, sets SUCCESS or FAILED and appends to the event log.

The status file names the supervisor (pid and process start time) or the tmux session, so a task
whose supervisor died is seen as CRASHED by the next command that looks (``orch.state``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch import agents, eventlog, git, procs, state
from orch.context import Ctx
from orch.errors import EnvError, InputError, UsageError
from orch.repo import Project
from orch.store import Store, atomic_write

GRACE = 10.0  # seconds between SIGTERM and SIGKILL
BUDGET_POLL = 2.0  # how often a running agent's usage is checked against its budget
SNAPSHOT_ATTEMPTS = 3


def tmux_session_name(task_id: str) -> str:
    return f"orch-{task_id}"


@dataclass(frozen=True)
class TaskFiles:
    folder: Path

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.yaml"

    @property
    def context(self) -> Path:
        return self.folder / "context.md"

    @property
    def status(self) -> Path:
        return self.folder / "status.yaml"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    @property
    def launch(self) -> Path:
        return self.folder / "launch.json"

    @property
    def usage(self) -> Path:
        return self.folder / "usage.jsonl"

    @property
    def accept_log(self) -> Path:
        return self.folder / "accept.log"

    @property
    def supervisor_log(self) -> Path:
        return self.folder / "supervisor.log"


def files(project: Project, task_id: str) -> TaskFiles:
    return TaskFiles(project.task_dir(task_id))


# -- launching --------------------------------------------------------------------------------------


def build_launch(ctx: Ctx, task_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The argv, environment and bounds of one run, from the frozen task manifest and the agent."""
    project = ctx.project
    f = files(project, task_id)
    agent = agents.load(project, ctx.store, manifest.get("agent") or ctx.config.default_agent)
    limits = manifest.get("limits") or {}
    worktree = manifest["worktree"]
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
    }
    env = dict(agent.env)
    env.update(
        {
            "ORCH_TASK": task_id,
            "ORCH_WORKTREE": worktree,
            "ORCH_CONTEXT": str(f.context),
            "ORCH_HOME": str(project.orch_dir),
        }
    )
    return {
        "agent": agent.name,
        "argv": agents.render_command(agent.command, values),
        "env": env,
        "cwd": worktree,
        "timeout": limits.get("timeout"),
        "usage": agent.usage,
        "usage_file": str(f.usage),
        "max_tokens": limits.get("max_tokens"),
        "budget_usd": limits.get("budget_usd"),
        "accept": manifest.get("accept"),
        "accept_timeout": ctx.config.test_timeout,
        "branch": manifest["branch"],
    }


def start(ctx: Ctx, task_id: str, *, tmux: bool = False) -> state.Status:
    """Start the agent of a spun task under a supervisor; returns the RUNNING status."""
    project, store = ctx.project, ctx.store
    f = files(project, task_id)
    try:
        manifest = store.load(f.manifest, "task_manifest")
    except FileNotFoundError:
        raise InputError(
            f"task {task_id} is not spun (no {project.rel(f.manifest)})", hint=f"orch spin {task_id}"
        ) from None
    launch = build_launch(ctx, task_id, manifest)
    if tmux and not _which("tmux"):
        raise EnvError("tmux is not installed or not on PATH", hint="install tmux, or spin without --tmux")
    atomic_write(f.launch, json.dumps(launch, indent=2) + "\n")
    me = os.getpid()
    problem: list[str] = []

    def claim(st: state.Status) -> None:
        if st.get("state") != "PENDING":
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
        )

    state.update(project, store, task_id, claim)
    if problem:
        raise InputError(f"task {task_id} is {problem[0]}, not ready to start", hint=f"see: orch status {task_id}")
    cmd = [sys.executable, "-m", "orch.runner", str(project.root), task_id]
    session = tmux_session_name(task_id)
    try:
        if tmux:
            tmux_argv = ["tmux", "new-session", "-d", "-s", session, "-c", launch["cwd"]]
            for key in ("PATH", "HOME", "VIRTUAL_ENV"):
                if key in os.environ:
                    tmux_argv += ["-e", f"{key}={os.environ[key]}"]
            r = subprocess.run([*tmux_argv, "--", *cmd, "--tmux"], capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise EnvError(f"tmux could not start session {session}: {r.stderr.strip()}")
            child_pid, child_start = None, None
        else:
            with open(f.supervisor_log, "ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    cwd=launch["cwd"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    close_fds=True,
                )
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
    ctx.log("RUNNING", "START", f"agent={launch['agent']}" + (f" tmux={session}" if tmux else ""), task=task_id)
    return status


def _fail_start(st: state.Status, me: int, reason: str) -> None:
    if st.get("state") == "RUNNING" and st.get("supervisor_pid") == me:
        st.update(state="FAILED", reason=reason, finished_at=eventlog.utcnow(), supervisor_pid=None)


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


# -- the supervisor ---------------------------------------------------------------------------------


class _Flags:
    terminated = False


def supervise(root: Path, task_id: str, *, in_tmux: bool = False) -> int:
    """Run one agent to its end and complete the task; the body of ``python -m orch.runner``."""
    from orch.repo import find_project

    project = find_project(root)
    store = Store(project.root, project.orch_dir)
    f = files(project, task_id)
    launch = json.loads(f.launch.read_text(encoding="utf-8"))
    env = git.clean_env(launch["env"])
    env.pop("GIT_TERMINAL_PROMPT", None)
    flags = _Flags()

    def on_term(signum: int, frame: Any) -> None:
        flags.terminated = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if not in_tmux else on_term)
    if in_tmux and os.environ.get("TMUX_PANE"):
        with contextlib.suppress(OSError):
            subprocess.run(
                ["tmux", "pipe-pane", "-t", os.environ["TMUX_PANE"], "-o", f"cat >> {_shell_quote(str(f.log))}"],
                check=False,
                capture_output=True,
            )
    log = None
    try:
        if in_tmux:  # the pane is the terminal: a person can watch and type
            proc = subprocess.Popen(launch["argv"], cwd=launch["cwd"], env=env)
        else:
            log = open(f.log, "ab")
            proc = subprocess.Popen(
                launch["argv"],
                cwd=launch["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        if log is not None:
            log.write(f"orch: could not start {launch['argv'][0]}: {exc}\n".encode())
            log.close()
        finish(project, store, task_id, exit_code=127, reason=f"could not start the agent: {exc.strerror or exc}")
        return 0
    agent_start = procs.start_time(proc.pid)

    def record(st: state.Status) -> None:
        if st.get("state") == "RUNNING":
            st.update(pid=proc.pid, pid_start=agent_start)

    state.update(project, store, task_id, record)
    reason = _watch(proc, launch, f, flags, in_tmux=in_tmux)
    if log is not None:
        log.close()
    code = proc.returncode
    if not in_tmux:
        _end_group(proc.pid)
    finish(project, store, task_id, exit_code=code, reason=reason)
    return 0


def _watch(
    proc: subprocess.Popen[bytes], launch: dict[str, Any], f: TaskFiles, flags: _Flags, *, in_tmux: bool
) -> str | None:
    """Wait for the agent within its bounds; return why it was ended early, or None."""
    timeout = launch.get("timeout")
    deadline = time.monotonic() + float(timeout) if timeout else None
    limit = float(timeout or 0)
    next_budget = time.monotonic() + BUDGET_POLL
    while True:
        try:
            proc.wait(timeout=0.2)
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if flags.terminated:
            _terminate(proc, group=not in_tmux)
            return "the supervisor was told to stop (SIGTERM)"
        if deadline is not None and now >= deadline:
            _terminate(proc, group=not in_tmux)
            return f"timed out after {limit:g}s"
        if now >= next_budget:
            next_budget = now + BUDGET_POLL
            over = _over_budget(launch, f)
            if over:
                _terminate(proc, group=not in_tmux)
                return over


def _terminate(proc: subprocess.Popen[bytes], *, group: bool, grace: float = GRACE) -> None:
    """SIGTERM to the agent's process group, SIGKILL after the grace period."""
    send = (lambda s: os.killpg(proc.pid, s)) if group else proc.send_signal
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(signal.SIGKILL)
        proc.wait()


def _end_group(pgid: int) -> None:
    """Stop what the agent left running in its group, so the snapshot sees a quiet worktree."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _read_tail(path: Path, limit: int = 8 << 20) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def usage_of(launch: dict[str, Any], f: TaskFiles) -> agents.Usage:
    kind = launch.get("usage") or "none"
    if kind == "none":
        return agents.Usage()
    usage_text = _read_tail(Path(launch["usage_file"])) if kind == "aider-analytics" else None
    return agents.parse_usage(kind, _read_tail(f.log), usage_text)


def _over_budget(launch: dict[str, Any], f: TaskFiles) -> str | None:
    max_tokens, max_usd = launch.get("max_tokens"), launch.get("budget_usd")
    if not max_tokens and not max_usd:
        return None
    usage = usage_of(launch, f)
    if max_tokens and usage.found and usage.total > int(max_tokens):
        return f"over budget: {usage.total:,} tokens used, the limit is {int(max_tokens):,}"
    if max_usd and usage.cost_usd is not None and usage.cost_usd > float(max_usd):
        return f"over budget: ${usage.cost_usd:.2f} spent, the limit is ${float(max_usd):g}"
    return None


# -- completion -------------------------------------------------------------------------------------


def snapshot_commit(worktree: Path, task_id: str, why: str) -> str | None:
    """Commit everything uncommitted in ``worktree`` on its branch as author ``orch``; the new sha."""
    if not worktree.is_dir() or not git.worktree_is_dirty(cwd=worktree):
        return None
    git.run(["add", "-A", "--", "."], cwd=worktree, no_hooks=True)
    staged = git.run(["diff", "--cached", "--quiet"], cwd=worktree, check=False)
    if staged.ok:
        return None
    git.run(
        [
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--no-verify",
            "--quiet",
            "-m",
            f"orch: snapshot of task {task_id} ({why})",
        ],
        cwd=worktree,
        no_hooks=True,
        env=git.ORCH_IDENT,
    )
    return git.out(["rev-parse", "HEAD"], cwd=worktree)


def _reported_state(st: state.Status) -> tuple[str, str] | None:
    """The last BLOCKED / FAILED / PAUSED the agent reported during this run."""
    started = st.get("started_at") or ""
    for note in reversed(st.get("notes") or []):
        if note.get("at", "") < started:
            break
        if note.get("state") in ("BLOCKED", "FAILED", "PAUSED"):
            return note["state"], note["text"]
    return None


def finish(project: Project, store: Store, task_id: str, *, exit_code: int | None, reason: str | None) -> state.Status:
    """The completion steps of a run; idempotent (a task no longer RUNNING is left alone)."""
    f = files(project, task_id)
    with store.lock(f"finish-{task_id}"):
        st = state.read(project, store, task_id, refresh=False) or {}
        if st.get("state") != "RUNNING":
            return st
        launch = json.loads(f.launch.read_text(encoding="utf-8"))
        if st.get("stop_requested_at") and reason is None:
            reason = "stopped by orch stop"
        elif st.get("stop_requested_at"):
            reason = f"stopped by orch stop ({reason})"
        worktree = Path(launch["cwd"])
        snap_error = None
        snapshot = None
        for attempt in range(SNAPSHOT_ATTEMPTS):  # a killed git may still hold index.lock a moment
            try:
                snapshot = snapshot_commit(worktree, task_id, "left uncommitted when the agent ended")
                snap_error = None
                break
            except Exception as exc:  # the run must still be recorded, whatever git says
                snap_error = str(exc).splitlines()[0]
                time.sleep(0.5 * (attempt + 1))
        head = git.rev_parse(f"refs/heads/{launch['branch']}", cwd=project.root)
        usage = usage_of(launch, f)
        eventlog.append(project.log_path, state="RUNNING", task=task_id, action="EXIT", result=f"code={exit_code}")
        if snapshot:
            eventlog.append(project.log_path, state="RUNNING", task=task_id, action="SNAPSHOT", result=snapshot[:12])
        accept_result: dict[str, Any] | None = None
        over = _over_budget(launch, f)
        if launch.get("accept") and exit_code == 0 and reason is None and not over:
            accept_result = _run_accept(project, launch, f)
            eventlog.append(
                project.log_path,
                state="RUNNING",
                task=task_id,
                action="ACCEPT",
                result="PASS" if accept_result["exit_code"] == 0 else f"FAIL exit={accept_result['exit_code']}",
                artifacts=[project.rel(f.accept_log)],
            )
        reported = _reported_state(st)
        final, why = "SUCCESS", None
        if reason is not None:
            final, why = "FAILED", reason
        elif reported is not None:
            final, why = reported[0], f"the agent reported {reported[0]}: {reported[1]}"
        elif exit_code != 0:
            final, why = "FAILED", f"the agent exited with code {exit_code}"
        elif over:
            final, why = "FAILED", over
        elif accept_result is not None and accept_result["exit_code"] != 0:
            final, why = "FAILED", f"the accept command failed (exit {accept_result['exit_code']})"
        if snap_error:
            why = (why + "; " if why else "") + f"uncommitted work could not be snapshotted: {snap_error}"

        def complete(s: state.Status) -> None:
            if s.get("state") != "RUNNING":
                return
            s.update(
                state=final,
                reason=why,
                exit_code=exit_code,
                finished_at=eventlog.utcnow(),
                head_sha=head,
                supervisor_pid=None,
                supervisor_start=None,
            )
            if snapshot:
                s["snapshot_sha"] = snapshot
            if usage.found:
                s["tokens"] = usage.tokens()
            if usage.cost_usd is not None:
                s["cost_usd"] = round(usage.cost_usd, 6)
            if accept_result is not None:
                s["accept"] = accept_result
            s["iterations"] = int(s.get("iterations") or 0) + 1

        new = state.update(project, store, task_id, complete)
        eventlog.append(
            project.log_path,
            state=final,
            task=task_id,
            action="DONE",
            result=why or f"head={(head or '')[:12]}",
            artifacts=[project.rel(f.log)],
        )
        return new


def _run_accept(project: Project, launch: dict[str, Any], f: TaskFiles) -> dict[str, Any]:
    env = git.clean_env(launch["env"])
    command = str(launch["accept"])
    with open(f.accept_log, "wb") as log:
        try:
            r = subprocess.run(
                ["sh", "-c", command],
                cwd=launch["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=float(launch.get("accept_timeout") or 900),
                check=False,
                start_new_session=True,
            )
            code: int | None = r.returncode
        except subprocess.TimeoutExpired:
            log.write(b"\norch: the accept command timed out\n")
            code = None
    return {"command": command, "exit_code": code, "log": project.rel(f.accept_log)}


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


def wait(ctx: Ctx, ids: list[str] | None = None, timeout: float | None = None, *, poll: float = 0.25) -> dict[str, str]:
    """Wait until the tasks (default: every RUNNING one) leave RUNNING; id -> state at return."""
    project, store = ctx.project, ctx.store
    if ids is None:
        ids = [i for i, s in state.read_all(project, store).items() if s.get("state") == "RUNNING"]
    for task_id in ids:
        if state.read(project, store, task_id, refresh=False) is None:
            raise InputError(f"task {task_id} was never spun", hint=f"orch spin {task_id}")
    deadline = time.monotonic() + timeout if timeout is not None else None
    while True:
        states = {i: str((state.read(project, store, i) or {}).get("state", "PENDING")) for i in ids}
        if all(s != "RUNNING" for s in states.values()):
            return states
        if deadline is not None and time.monotonic() >= deadline:
            return states
        time.sleep(poll)


def attach_argv(ctx: Ctx, task_id: str) -> list[str]:
    """The tmux command that attaches to a task started with --tmux."""
    st = state.read(ctx.project, ctx.store, task_id)
    if st is None:
        raise InputError(f"task {task_id} was never spun", hint=f"orch spin --tmux {task_id}")
    session = st.get("tmux_session")
    if not session:
        log = ctx.project.rel(files(ctx.project, task_id).log)
        raise UsageError(
            f"task {task_id} does not run in tmux",
            hint=f"spin it with --tmux to attach; its output is in {log} (tail -f it)",
        )
    if not procs.tmux_alive(session):
        raise InputError(f"tmux session {session} is gone (task {task_id} is {st.get('state')})")
    return ["tmux", "attach-session", "-t", f"={session}"]


# -- report (called by agents from inside their worktree) -----------------------------------------

REPORT_STATES = ("PROGRESS", "SUCCESS", "BLOCKED", "PAUSED", "FAILED")
ENDED = ("SUCCESS", "FAILED", "CRASHED", "BLOCKED", "PAUSED")


def find_task_here(ctx: Ctx, cwd: Path) -> str:
    """The task whose worktree holds ``cwd``: its private marker, its branch, or $ORCH_TASK."""
    from orch import worktrees

    here = ctx.project.here
    if here is not None and here.resolve() != ctx.project.root.resolve():
        found = worktrees.task_of_worktree(here)
        if found is None:
            branch = git.current_branch(cwd=here) or ""
            found = branch.removeprefix("orch/") if branch.startswith("orch/") else None
        if found is not None:
            return found
    env_task = os.environ.get("ORCH_TASK")
    if env_task:
        return env_task
    raise UsageError(
        f"{cwd} is not inside a task's worktree",
        hint="run orch report from the worktree orch made for the task (or set ORCH_TASK)",
    )


def report(
    ctx: Ctx, cwd: Path, what: str, *, note: str | None = None, artifacts: list[str] | None = None
) -> state.Status:
    """Record an agent's progress note, artifacts or BLOCKED/PAUSED/FAILED; the run's end decides."""
    from orch import worktrees

    kind = what.upper()
    if kind not in REPORT_STATES:
        raise UsageError(f"cannot report {what!r}", hint=f"report one of: {', '.join(REPORT_STATES)}")
    if kind in ("BLOCKED", "FAILED", "PAUSED") and not (note and note.strip()):
        raise UsageError(f"reporting {kind} needs a reason", hint=f'orch report {kind} --note "what stops you"')
    task_id = find_task_here(ctx, cwd)
    worktrees.check_id(task_id, cwd=ctx.project.root)
    project, store = ctx.project, ctx.store
    current = state.read(project, store, task_id)
    if current is None:
        raise InputError(f"task {task_id} was never spun")
    base = Path(current.get("worktree") or cwd)
    paths: list[str] = []
    for item in artifacts or []:
        path = (cwd / item).resolve()
        if not path.exists():
            raise InputError(f"artifact not found: {item}", hint="name a file that exists (relative to where you are)")
        try:
            paths.append(str(path.relative_to(base.resolve())))
        except ValueError:
            paths.append(str(path))
    now = eventlog.utcnow()
    text = (note or "").strip() or (f"artifacts: {', '.join(paths)}" if paths else kind.lower())

    def apply(st: state.Status) -> None:
        st.setdefault("notes", []).append({"at": now, "state": None if kind == "PROGRESS" else kind, "text": text})
        if paths:
            st["artifacts"] = list(dict.fromkeys([*(st.get("artifacts") or []), *paths]))
        # After the run ended (a person reporting by hand), BLOCKED / PAUSED / FAILED apply at once.
        if st.get("state") in ENDED and kind in ("BLOCKED", "PAUSED", "FAILED"):
            st["state"] = kind
            st["reason"] = text

    new = state.update(project, store, task_id, apply)
    if kind == "BLOCKED":
        atomic_write(
            project.task_dir(task_id) / "BLOCKER_REPORT.md",
            f"# Blocker report: {task_id}\n\nReported {now} by the agent.\n\n{text}\n",
        )
    ctx.log(str(new.get("state")), "REPORT", f"{kind}: {text}", task=task_id, artifacts=paths)
    return new


# -- entry point of the supervisor process ----------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m orch.runner ROOT TASK_ID [--tmux]\n")
        return 2
    root, task_id = Path(argv[0]), argv[1]
    return supervise(root, task_id, in_tmux="--tmux" in argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
