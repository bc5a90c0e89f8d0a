"""The supervisor: the process that runs one agent to its end and completes the task.

``orch.agents.launch.start`` spawns it as ``python -m orch.agents.supervisor ROOT ID [--tmux]``, in
a session of its own (or in tmux session ``orch-<id>``), with its cwd in the task's run folder, never
the worktree (``python -m`` puts the cwd first on ``sys.path``, and a worktree must not shadow orch's
modules). It runs the agent in the task's worktree in its own process group, with output in
``agent.log``, enforces the timeout and the token/money budget, and when the agent ends: commits
uncommitted work as a snapshot (author ``orch``, hooks bypassed), records the exit code and usage,
runs the task's ``accept`` command, sets SUCCESS or FAILED and appends to the event log.

``finish`` (those completion steps) is also called by ``orch stop`` when the supervisor is gone, and
``snapshot_commit`` by ``orch doctor``. ``python -m orch.runner`` (the command line of orch 0.1) runs
this module's ``main`` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.agents import manifest as agents
from orch.agents.procgroup import end_group, terminate
from orch.agents.taskfiles import TaskFiles, files
from orch.core import eventlog, git, procs, refs, state
from orch.core.repo import Project
from orch.core.store import Store

BUDGET_POLL = 2.0  # how often a running agent's usage is checked against its budget
SNAPSHOT_ATTEMPTS = 3
ACCEPT_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for an accept command that must end


class _Flags:
    terminated = False


def supervise(root: Path, task_id: str, *, in_tmux: bool = False) -> int:
    """Run one agent to its end and complete the task; the body of ``python -m orch.agents.supervisor``."""
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
                ["tmux", "pipe-pane", "-t", os.environ["TMUX_PANE"], "-o", _pane_to_log(f)],
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
        end_group(proc.pid)
    finish(project, store, task_id, exit_code=code, reason=reason, flags=flags)
    return 0


def _pane_to_log(f: TaskFiles) -> str:
    """The shell command tmux pipes the pane into: ``orch.agents.ptylog`` (plain line ends, no NUL
    bytes), from the run folder (``-m`` imports from the working folder); ``cat`` if it cannot start."""
    log = shell_quote(str(f.log))
    python = shell_quote(sys.executable)
    return f"cd {shell_quote(str(f.folder))} && {python} -m orch.agents.ptylog {log} || exec cat >> {log}"


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
            terminate(proc, group=not in_tmux)
            return "the supervisor was told to stop (SIGTERM)"
        if deadline is not None and now >= deadline:
            terminate(proc, group=not in_tmux)
            return f"timed out after {limit:g}s"
        if now >= next_budget:
            next_budget = now + BUDGET_POLL
            over = _over_budget(launch, f)
            if over:
                terminate(proc, group=not in_tmux)
                return over


def shell_quote(text: str) -> str:
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
    if refs.checkout_marker(worktree) is not None:
        return None  # a killed spin's half checkout: what it lacks was never there, orch doctor --fix finishes it
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
                terminate(proc, group=True, grace=ACCEPT_GRACE)
                log.write(f"\norch: the accept command {ended_why}\n".encode())
                code = None
                break
        end_group(proc.pid)  # whatever it left running in its group
    return {"command": command, "exit_code": code, "log": project.rel(f.accept_log)}


# -- entry point of the supervisor process ----------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m orch.agents.supervisor ROOT TASK_ID [--tmux]\n")
        return 2
    root, task_id = Path(argv[0]), argv[1]
    return supervise(root, task_id, in_tmux="--tmux" in argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
