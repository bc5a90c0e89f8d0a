"""Start, supervise, stop and wait for agent processes.

``start`` writes the launch (argv, env, bounds) to ``run/tasks/<id>/launch.json`` and spawns a small
supervisor, ``python -m orch.agents.runner ROOT ID``, in a session of its own (or in tmux session
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
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.agents import manifest as agents
from orch.core import eventlog, git, procs, refs, state
from orch.core.context import Ctx
from orch.core.errors import EnvError, InputError, UsageError
from orch.core.repo import Project
from orch.core.store import Store, atomic_write

GRACE = 10.0  # seconds between SIGTERM and SIGKILL
BUDGET_POLL = 2.0  # how often a running agent's usage is checked against its budget
SNAPSHOT_ATTEMPTS = 3
ACCEPT_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for an accept command that must end


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

    @property
    def launch_env(self) -> Path:
        """The caller's environment for a supervisor started in tmux (read once, then deleted)."""
        return self.folder / "launch-env.json"


# What one run leaves in the task folder; a new spin moves them to run-<n>/ (``rotate_run_files``).
RUN_FILES = (
    "agent.log", "usage.jsonl", "accept.log", "supervisor.log", "launch.json", "BLOCKER_REPORT.md",
    "context.md", "manifest.yaml", "status.yaml",
)  # fmt: skip


def rotate_run_files(folder: Path) -> Path | None:
    """Move the files of an earlier run into ``run-<n>/`` (kept, never deleted); the folder used."""
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if not present:
        return None
    numbers = [int(p.name[4:]) for p in folder.glob("run-*") if p.name[4:].isdigit()]
    target = folder / f"run-{max(numbers, default=0) + 1}"
    target.mkdir()
    for name in present:
        if name == "status.yaml":  # the status stays (its kept refs carry over); a copy goes along
            shutil.copy2(folder / name, target / name)
        else:
            os.replace(folder / name, target / name)
    return target


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


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
    argv = agents.render_command(agent.command, values)
    if not argv or not argv[0]:
        raise InputError(
            f"agent '{agent.name}' renders to an empty command for task {task_id}",
            where=project.rel(project.orch_dir / "agents" / f"{agent.name}.yaml"),
            hint="the command's first word must not be a placeholder without a value (e.g. {model} with no model)",
        )
    env = dict(agent.env)
    # The agent must find this very orch for `orch report`, however orch itself was started.
    bin_dirs = [os.path.dirname(sys.executable)]
    if os.path.basename(sys.argv[0]) in ("orch", "git-orch"):
        bin_dirs.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
    path = env.get("PATH") or os.environ.get("PATH") or ""
    env.update(
        {
            "ORCH_TASK": task_id,
            "ORCH_WORKTREE": worktree,
            "ORCH_CONTEXT": str(f.context),
            "ORCH_HOME": str(project.orch_dir),
            "ORCH": _shell_quote(sys.executable) + " -m orch",
            "PATH": os.pathsep.join(dict.fromkeys([*bin_dirs, *([path] if path else [])])),
        }
    )
    return {
        "agent": agent.name,
        "argv": argv,
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
    if problem:
        raise InputError(f"task {task_id} is {problem[0]}, not ready to start", hint=f"see: orch status {task_id}")
    cmd = [sys.executable, "-m", "orch.agents.runner", str(project.root), task_id]
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
            with open(f.supervisor_log, "ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    cwd=f.folder,
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
    """Run one agent to its end and complete the task; the body of ``python -m orch.agents.runner``."""
    from orch.core.repo import find_project

    project = find_project(root)
    store = Store(project.root, project.orch_dir)
    f = files(project, task_id)
    launch = json.loads(f.launch.read_text(encoding="utf-8"))
    if in_tmux:
        _adopt_caller_env(f.launch_env)
    env = git.clean_env(launch["env"])
    env.pop("GIT_TERMINAL_PROMPT", None)
    flags = _Flags()

    def on_term(signum: int, frame: Any) -> None:
        flags.terminated = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN if not in_tmux else on_term)
    # Ctrl-C in an attached tmux pane is for the agent; the supervisor must live on to complete the
    # run. A handler (not SIG_IGN, which the agent would inherit) is reset to the default at exec.
    signal.signal(signal.SIGINT, _ignore)
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
    finish(project, store, task_id, exit_code=code, reason=reason, flags=flags)
    return 0


def _ignore(signum: int, frame: Any) -> None:
    return None


def _adopt_caller_env(path: Path) -> None:
    """Take the environment of the orch that started this tmux session (API keys and all)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    if isinstance(saved, dict):
        keep = {k: os.environ[k] for k in ("TMUX", "TMUX_PANE", "TERM") if k in os.environ}
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in saved.items()})
        os.environ.update(keep)


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


def _bring_branch_along(project: Project, worktree: Path, task_id: str, branch: str) -> tuple[str | None, str | None]:
    """If the agent left HEAD off its branch, bring the branch to HEAD or keep HEAD under a ref.

    Returns a note for the status (or None) and the ref that keeps HEAD (or None). The branch moves
    only forward (HEAD descends from it) and only while no other worktree has it checked out.
    """
    if not worktree.is_dir():
        return None, None
    head = git.rev_parse("HEAD", cwd=worktree)
    on = git.run(["symbolic-ref", "-q", "HEAD"], cwd=worktree, check=False).stdout.strip()
    ref = f"refs/heads/{branch}"
    if head is None or on == ref:
        return None, None
    tip = git.rev_parse(ref, cwd=project.root)
    where = f"on {on.removeprefix('refs/heads/')}" if on else "detached"
    if tip == head:
        if not on:
            git.run(["symbolic-ref", "HEAD", ref], cwd=worktree, check=False)
        return None, None

    elsewhere = refs.checked_out_elsewhere(project.root, branch, worktree)
    if tip is not None and elsewhere is None and git.is_ancestor(tip, head, cwd=project.root):
        moved = git.run(["update-ref", ref, head, tip], cwd=project.root, check=False)
        if moved.ok:
            if not on:  # re-attach: HEAD and the branch now name the same commit
                git.run(["symbolic-ref", "HEAD", ref], cwd=worktree, check=False)
            return f"the agent left HEAD {where}; {branch} was moved forward to it ({head[:12]})", None
    kept = f"refs/orch/kept/{task_id}/{refs.timestamp()}"
    git.run(["update-ref", kept, head, "0" * len(head)], cwd=project.root)
    return f"the agent left HEAD {where} at {head[:12]}, not on {branch}: kept as {kept}", kept


def _reported_state(st: state.Status) -> tuple[str, str] | None:
    """The last BLOCKED / FAILED / PAUSED the agent reported during this run."""
    started = st.get("started_at") or ""
    for note in reversed(st.get("notes") or []):
        if note.get("at", "") < started:
            break
        if note.get("state") in ("BLOCKED", "FAILED", "PAUSED"):
            return note["state"], note["text"]
    return None


def finish(
    project: Project,
    store: Store,
    task_id: str,
    *,
    exit_code: int | None,
    reason: str | None,
    flags: _Flags | None = None,
) -> state.Status:
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
        branch = refs.branch_name(task_id)
        head_note, head_kept = _bring_branch_along(project, worktree, task_id, branch)
        head = git.rev_parse(f"refs/heads/{branch}", cwd=project.root)
        usage = usage_of(launch, f)
        eventlog.append(project.log_path, state="RUNNING", task=task_id, action="EXIT", result=f"code={exit_code}")
        if snapshot:
            eventlog.append(project.log_path, state="RUNNING", task=task_id, action="SNAPSHOT", result=snapshot[:12])
        accept_result: dict[str, Any] | None = None
        over = _over_budget(launch, f)
        if launch.get("accept") and exit_code == 0 and reason is None and not over:

            def stop_asked() -> bool:
                if flags is not None and flags.terminated:
                    return True
                now = state.read(project, store, task_id, refresh=False) or {}
                return bool(now.get("stop_requested_at"))

            accept_result = _run_accept(project, launch, f, stop_asked)
            if flags is not None and flags.terminated:
                reason = "the supervisor was told to stop (SIGTERM) while the accept command ran"
            elif stop_asked():
                reason = "stopped by orch stop while the accept command ran"
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
        if head_note:
            why = (why + "; " if why else "") + head_note

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
            if head_kept:
                s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), head_kept]))
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


def _run_accept(
    project: Project, launch: dict[str, Any], f: TaskFiles, stop_asked: Callable[[], bool]
) -> dict[str, Any]:
    """Run the accept command in a process group of its own; a stop or the timeout ends the group."""
    env = git.clean_env(launch["env"])
    command = str(launch["accept"])
    limit = float(launch.get("accept_timeout") or 900)
    code: int | None = None
    with open(f.accept_log, "wb") as log:
        proc = subprocess.Popen(
            ["sh", "-c", command],
            cwd=launch["cwd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + limit
        next_check = 0.0
        ended_why = None
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now >= deadline:
                ended_why = "timed out"
            elif now >= next_check:
                next_check = now + 0.5
                if stop_asked():
                    ended_why = "was stopped"
            if ended_why:
                _terminate(proc, group=True, grace=ACCEPT_GRACE)
                log.write(f"\norch: the accept command {ended_why}\n".encode())
                code = None
                break
        _end_group(proc.pid)  # whatever it left running in its group
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
    """Wait until the tasks leave RUNNING; id -> state at return.

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
        raise InputError(
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
        sys.stderr.write("usage: python -m orch.agents.runner ROOT TASK_ID [--tmux]\n")
        return 2
    root, task_id = Path(argv[0]), argv[1]
    return supervise(root, task_id, in_tmux="--tmux" in argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
