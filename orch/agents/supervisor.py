"""The supervisor: the process that runs one agent to its end and completes the task.

``orch.agents.launch.start`` spawns it as ``python -m orch.agents.supervisor ROOT ID [--tmux]``, in
a session of its own (or in tmux session ``orch-<id>``), with its cwd in the task's run folder, never
the worktree (``python -m`` puts the cwd first on ``sys.path``, and a worktree must not shadow orch's
modules). It runs the agent in the task's worktree in its own process group, with output in
``agent.log``, enforces the timeout and the token/money budget, and when the agent ends: restores
the task's branch if it was deleted or moved away, commits uncommitted work as a snapshot (author
``orch``, hooks bypassed; ``orch.agents.taskgit``, which never goes through the worktree's own
``.git`` file), records the exit code and usage, runs the task's ``accept`` command (a task with one
runs as the iterations of ``orch.agents.loop``), sets the end state and appends to the event log.
The agent can write the run folder: what the completion needs from before the run is kept in memory
(``RunMemory``), and orch's files there are never written through a link (``orch.agents.taskfiles``);
tampering found makes the run FAILED, saying what.

``finish`` (those completion steps) is also called by ``orch stop`` when the supervisor is gone, and
``taskgit.settle`` by ``orch doctor``. ``python -m orch.runner`` (the command line of orch 0.1) runs
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

from orch.agents import boxcmd, boxrun, budget, handoff, learnings, loop, outbox, pane, planphase, spawn, taskgit
from orch.agents.procgroup import end_group, terminate, wait_for
from orch.agents.taskfiles import files, guard_run_folder, open_run_file, run_folder_problem, sweep_run_files
from orch.core import eventlog, git, procs, refs, state
from orch.core.errors import EnvError, OrchError
from orch.core.repo import Project
from orch.core.store import Store

BUDGET_POLL = 2.0  # how often a running agent's usage (and its branch) is checked


class _Flags:
    terminated = False


class RunMemory:
    """What the supervisor knows of its run from before the agent started, kept in memory: the agent
    can rewrite every file of the run folder, so the completion takes these, not the files."""

    def __init__(self, launch: dict[str, Any], status: state.Status, watch: taskgit.BranchWatch, log: Path) -> None:
        self.launch = launch
        self.status = status
        self.watch = watch
        self.log_fd: int | None = None  # agent.log as the supervisor opened it
        self.notes: list[str] = []  # orch's files found replaced by links before the agent ran
        self.meter = budget.Meter(launch, log, budget.Spent.load(status.get("usage")))
        self.budget_stop: str | None = None  # why the running iteration was stopped for the budget


def supervise(root: Path, task_id: str, *, in_tmux: bool = False) -> int:
    """Run one agent to its end and complete the task; the body of ``python -m orch.agents.supervisor``."""
    from orch.core.repo import find_project

    project = find_project(root)
    store = Store(project.root, project.orch_dir)
    f = files(project, task_id)
    problem = run_folder_problem(project, task_id)
    if problem:
        raise EnvError(f"refused to run task {task_id}: {problem}; orch never writes through a link")
    launch = json.loads(f.launch.read_text(encoding="utf-8"))
    start_status = spawn.own(project, store, task_id, in_tmux=in_tmux)
    watch = taskgit.BranchWatch(project, task_id, start_status.get("base_sha"))
    run = RunMemory(launch, start_status, watch, f.log)
    if in_tmux:
        pane.adopt_caller_env(f.launch_env)
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
    if in_tmux:
        pane.pipe_to_log(f)
    resuming = bool(start_status.get("resumed_at"))
    it: loop.Loop | None = planphase.planning(project, store, task_id, launch, start_status.get("base_sha"), run.meter)
    if it is None and launch.get("accept"):
        it = loop.Loop(project, store, task_id, launch, start_status.get("base_sha"), run.meter)
    if it is not None and resuming:
        it.restore()
    elif it is not None:
        refused = it.gate(lambda: flags.terminated or _stop_requested(project, store, task_id))
        if refused:
            loop.back_to_pending(project, store, task_id, refused)
            return 0
    if not resuming and not launch.get("plan_phase"):  # a plan approved first: its runs share the budget
        run.meter.before = budget.Spent()
    while True:
        if it is not None and it.iteration and (flags.terminated or _stop_requested(project, store, task_id)):
            why = "the supervisor was told to stop (SIGTERM)" if flags.terminated else None
            finish(project, store, task_id, exit_code=None, reason=why, flags=flags, run=run)
            return 0  # stopped between iterations: none more
        if it is not None:
            this = it.begin(env)
        else:
            run.meter.begin()
            this = {**launch, "argv": loop.argv_now(launch, f.context, run.meter)}  # the dollars left
        if it is not None and it.iteration > 1:  # after a strategy shift the last tip seen is an attempt's
            run.watch = taskgit.BranchWatch(project, task_id, start_status.get("base_sha"))
        _iteration(project, store, task_id, this, env, run, flags, in_tmux, it)
        if it is None or not it.go_on:
            return 0


def _iteration(
    project: Project,
    store: Store,
    task_id: str,
    launch: dict[str, Any],
    env: dict[str, str],
    run: RunMemory,
    flags: _Flags,
    in_tmux: bool,
    it: loop.Loop | None,
) -> None:
    """One agent process to its end, then ``finish`` (which asks the loop, if any, what comes next)."""
    f = files(project, task_id)
    if it is not None:
        it.go_on = False
    argv = list(launch["argv"])
    if (launch.get("box") or {}).get("on"):
        try:
            argv = boxrun.boxed(project, task_id, launch, env, argv, terminal=in_tmux, git_of_its_own=True)
        except (OrchError, OSError) as exc:
            why = exc.message if isinstance(exc, OrchError) else str(exc)
            finish(project, store, task_id, exit_code=127, reason=f"could not box the agent: {why}", run=run)
            return
    try:
        if in_tmux:  # the pane is the terminal: a person can watch and type
            proc = subprocess.Popen(argv, cwd=launch["cwd"], env=env)
        else:
            run.log_fd, note = open_run_file(f.log, append=True, readable=True)  # never through a link
            run.notes += [note] if note else []
            proc = subprocess.Popen(
                argv,
                cwd=launch["cwd"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=run.log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        if run.log_fd is not None:
            os.write(run.log_fd, f"orch: could not start {launch['argv'][0]}: {exc}\n".encode())
        failed = f"could not start the agent: {exc.strerror or exc}"
        finish(project, store, task_id, exit_code=127, reason=failed, run=run)
        return
    agent_start = procs.start_time(proc.pid)

    def record(st: state.Status) -> None:
        if st.get("state") == "RUNNING":
            st.update(pid=proc.pid, pid_start=agent_start)

    # A run folder already replaced by a link, or moved away: finish sees to it. A status the agent
    # already forged is not the run's.
    with contextlib.suppress(EnvError):
        now = state.update(project, store, task_id, record, create=False)
        run.status = now if now.get("state") == "RUNNING" else run.status
    run.watch.poll()

    def tick() -> str | None:
        now = state.read(project, store, task_id, refresh=False) or {}
        if it is not None and now.get("stop_requested_at"):
            flags.terminated = True  # an orch stop that came between iterations signalled no agent
        outbox.drain(project, store, task_id)  # what the agent reported from the box
        if now.get("state") == "RUNNING" and now.get("pause_requested"):  # orch up's budget for the run
            run.budget_stop = str(now["pause_requested"])
            return run.budget_stop
        return _budget_tick(project, store, task_id, run)

    reason = _watch(proc, flags, run.watch, in_tmux=in_tmux, timeout=launch.get("timeout"), tick=tick)
    code = proc.returncode
    if not in_tmux:
        end_group(proc.pid)
    procs.fault_point("supervisor.after_agent", task_id)
    if it is not None:
        it.take_reflection()
        if run.budget_stop:
            it.paused(run.budget_stop)
    try:
        finish(project, store, task_id, exit_code=code, reason=reason, flags=flags, run=run, it=it)
    finally:
        if run.log_fd is not None:
            os.close(run.log_fd)
            run.log_fd = None


def _budget_tick(project: Project, store: Store, task_id: str, run: RunMemory) -> str | None:
    """While the agent runs: its usage so far into the status (when it grew); why it must stop (100%)."""
    now = run.meter.now()
    if now.as_json() != (run.status.get("usage") or budget.Spent().as_json()):
        run.status = {**run.status, "usage": now.as_json()}

        def note(st: state.Status) -> None:
            if st.get("state") == "RUNNING":
                st["usage"] = now.as_json()

        with contextlib.suppress(OrchError, OSError):
            state.update(project, store, task_id, note, create=False)
    over = budget.over(now, run.meter.budget) if run.meter.budget else None
    if over:
        run.budget_stop = over
    return over


def _stop_requested(project: Project, store: Store, task_id: str) -> bool:
    return bool((state.read(project, store, task_id, refresh=False) or {}).get("stop_requested_at"))


def _ignore(signum: int, frame: Any) -> None:
    return None


def _watch(
    proc: subprocess.Popen[bytes],
    flags: _Flags,
    branch: taskgit.BranchWatch,
    *,
    in_tmux: bool,
    timeout: float | None,
    tick: Callable[[], str | None] = lambda: None,
) -> str | None:
    """Wait for the agent within its bounds (noting its branch's tip); why it was ended early, or None.
    ``tick`` runs every ``BUDGET_POLL`` seconds; what it returns (the budget spent) ends the agent."""
    deadline = time.monotonic() + float(timeout) if timeout else None
    limit = float(timeout or 0)
    next_budget = time.monotonic() + BUDGET_POLL
    while True:
        if wait_for(proc, 0.2) is not None:
            return None
        now = time.monotonic()
        if flags.terminated:
            terminate(proc, group=not in_tmux)
            return "the supervisor was told to stop (SIGTERM)"
        if deadline is not None and now >= deadline:
            terminate(proc, group=not in_tmux)
            return f"timed out after {limit:g}s"
        if now >= next_budget:
            next_budget = now + BUDGET_POLL
            branch.poll()
            over = None
            with contextlib.suppress(OrchError, OSError):
                over = tick()
            if over:
                terminate(proc, group=not in_tmux)
                return over


# -- completion -------------------------------------------------------------------------------------


def _reported_state(st: state.Status) -> tuple[str, str] | None:
    """The last BLOCKED / FAILED / PAUSED the agent reported during this run (since ``orch retry``'s note)."""
    started = st.get("started_at") or ""
    for note in reversed(st.get("notes") or []):
        if note.get("at", "") < started or note.get("state") in ("RETRY", "RESUME"):  # an earlier run's
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
    run: RunMemory | None = None,
    it: loop.Loop | None = None,
) -> state.Status:
    """The completion steps of a run; idempotent (a task no longer RUNNING is left alone).

    Nothing is written through a link an agent put in the run folder, and no git command goes
    through the worktree's own ``.git`` file (``orch.agents.taskgit``). Tampering found on the way
    makes the run FAILED, with what orch refused in the reason and in the event log.
    """
    f = files(project, task_id)
    refused = guard_run_folder(project, store, task_id, run.status if run is not None else None)
    with store.lock(f"finish-{task_id}"):
        st = state.read(project, store, task_id, refresh=False) or {}
        forged = _forged_state(st, run)
        if st.get("state") != "RUNNING" and not forged:
            return st
        if forged:  # the supervisor lives, so the run is still RUNNING: nobody else moves it on
            st = {**st, "state": "RUNNING"}
            refused.append(forged)
        launch = run.launch if run is not None else json.loads(f.launch.read_text(encoding="utf-8"))
        if st.get("stop_requested_at") and reason is None:
            reason = "stopped by orch stop"
        elif st.get("stop_requested_at"):
            reason = f"stopped by orch stop ({reason})"
        refused += [*(run.notes if run is not None else []), *sweep_run_files(f, run.log_fd if run else None)]
        brought = boxrun.bring_in(project, task_id, launch)
        with contextlib.suppress(OrchError, OSError):  # what the agent reported from the box
            outbox.drain(project, store, task_id, looks=100)
            outbox.sweep(project, task_id)
            st = state.read(project, store, task_id, refresh=False) or st
        reflection = learnings.take(launch.get("cwd")) or (it.last_reflection if it else None)  # not snapshotted
        planphase.left_behind(project, task_id, launch, st, it)  # PLAN.md of a planning run stopped without it
        with handoff.Taken(project, store, task_id, launch):  # proposals out of the snapshot, posted after
            settled = _settle(project, task_id, launch, st, run)
        settled.events[:0] = brought.events
        settled.kept[:0] = brought.kept
        settled.notes += brought.notes
        refused += brought.problems
        head = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=project.root)
        if run is not None:
            meter = run.meter
        else:  # orch stop, the supervisor gone: what the status says was spent (its last look)
            meter = budget.Meter(launch, f.log, budget.Spent.load(st.get("usage")))
            meter.begin()
        spent = meter.end()
        budget_stop = run.budget_stop if run is not None else None
        log = project.log_path
        eventlog.append(log, state="RUNNING", task=task_id, action="EXIT", result=f"code={exit_code}")
        for note in refused:
            eventlog.append(log, state="RUNNING", task=task_id, action="REFUSE", result=note)
        for action, result in settled.events:
            eventlog.append(log, state="RUNNING", task=task_id, action=action, result=result)
        if settled.snapshot:
            eventlog.append(log, state="RUNNING", task=task_id, action="SNAPSHOT", result=settled.snapshot[:12])
        problems = [*refused, *settled.problems]
        accept_result: dict[str, Any] | None = None

        def stop_asked() -> bool:
            return bool(flags is not None and flags.terminated) or _stop_requested(project, store, task_id)

        judged = loop.Judged()
        reported = _reported_state(st)
        if it is not None and reported is not None and reported[0] == "BLOCKED" and not problems:
            judged = it.agent_blocked(reported[1])  # the question in a blocker report
        elif it is not None and not problems and not budget_stop and reported is None:
            judged = it.judge(exit_code, reason, stop_asked)  # the loop: checks, accept, what comes next
            if judged.go_on:
                return st
            accept_result, problems = judged.accept, [*problems, *judged.problems]
            for note in judged.problems:
                eventlog.append(log, state="RUNNING", task=task_id, action="REFUSE", result=note)
            head = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=project.root)
        elif it is None and launch.get("accept") and exit_code == 0 and not (reason or budget_stop or problems):
            accept_result, link_note = boxcmd.run(project, launch, f, str(launch["accept"]), f.accept_log, stop_asked)
            if link_note:
                problems.append(link_note)
                eventlog.append(log, state="RUNNING", task=task_id, action="REFUSE", result=link_note)
            eventlog.append(
                log,
                state="RUNNING",
                task=task_id,
                action="ACCEPT",
                result="PASS" if accept_result["exit_code"] == 0 else f"FAIL exit={accept_result['exit_code']}",
                artifacts=[project.rel(f.accept_log)],
            )
        if accept_result is not None and flags is not None and flags.terminated:
            reason = "the supervisor was told to stop (SIGTERM) while the accept command ran"
        elif accept_result is not None and stop_asked():
            reason = "stopped by orch stop while the accept command ran"
        reported = _reported_state(st)
        final, why = "SUCCESS", None
        if judged.final:
            final, why = judged.final, judged.why
        elif budget_stop and reason == budget_stop:
            final, why = "PAUSED", f"{budget_stop}: the running iteration was stopped; {loop.resume_hint(task_id)}"
        elif reason is not None:
            final, why = "FAILED", reason
        elif reported is not None:
            final, why = reported[0], f"the agent reported {reported[0]}: {reported[1]}"
        elif exit_code != 0:
            final, why = "FAILED", f"the agent exited with code {exit_code}"
        elif accept_result is not None and accept_result["exit_code"] != 0:
            final, why = "FAILED", f"the accept command failed (exit {accept_result['exit_code']})"
        if problems:  # what orch refused or could not keep comes first: it is why the run failed
            final, why = "FAILED", "; ".join([*problems, *([why] if why else [])])
        if settled.error:
            why = (why + "; " if why else "") + f"uncommitted work could not be snapshotted: {settled.error}"
        for note in settled.notes:
            why = (why + "; " if why else "") + note
        learnings.propose(project, store, task_id, reflection, final)  # its line asked of a person

        def complete(s: state.Status) -> None:
            if s.get("state") != "RUNNING" and not forged:
                return
            for key in ("merge", "verdict", "acks"):  # what a forged status brought along
                if forged:
                    s.pop(key, None)
            s.update(
                state=final,
                reason=why,
                exit_code=exit_code,
                finished_at=eventlog.utcnow(),
                head_sha=head,
                supervisor_pid=None,
                supervisor_start=None,
            )
            if settled.snapshot:
                s["snapshot_sha"] = settled.snapshot
            if settled.kept:
                s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *settled.kept]))
            if spent.found:
                s["tokens"] = spent.token_counts()
            if spent.cost_usd is not None:
                s["cost_usd"] = round(spent.cost_usd, 6)
            s["usage"], s["budget"] = spent.as_json(), meter.budget.as_json()
            if accept_result is not None:
                s["accept"] = accept_result
            s["iterations"] = int(s.get("iterations") or 0) + 1

        new = state.update(project, store, task_id, complete)
        eventlog.append(
            log,
            state=final,
            task=task_id,
            action="DONE",
            result=why or f"head={(head or '')[:12]}",
            artifacts=[project.rel(f.log)],
        )
        return new


def _forged_state(st: state.Status, run: RunMemory | None) -> str | None:
    """Why the status the supervisor finds is not its run's (None: it is). While the supervisor lives,
    only it ends the run: a status saying anything but RUNNING was written by someone else."""
    if run is None or st.get("state") in (None, "RUNNING") or run.status.get("state") != "RUNNING":
        return None
    return f"the status file said {st.get('state')} while the agent ran; orch did not write that"


def _settle(
    project: Project, task_id: str, launch: dict[str, Any], st: state.Status, run: RunMemory | None
) -> taskgit.Settled:
    """Restore the branch, snapshot the worktree, bring the branch along (``taskgit.settle``)."""
    base_hint = (run.status if run is not None else st).get("base_sha")
    try:
        return taskgit.settle(
            project,
            task_id,
            Path(launch["cwd"]) if launch.get("cwd") else None,
            "left uncommitted when the agent ended",
            last_seen=run.watch.last if run is not None else None,
            base_hint=base_hint,
        )
    except Exception as exc:  # the run must still be recorded, whatever git says
        return taskgit.Settled(error=(str(exc).splitlines() or [type(exc).__name__])[0])


# -- entry point of the supervisor process ----------------------------------------------------------


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: python -m orch.agents.supervisor ROOT TASK_ID [--tmux]\n")
        return 2
    root, task_id = Path(argv[0]), argv[1]
    try:
        return supervise(root, task_id, in_tmux="--tmux" in argv[2:])
    except OrchError as exc:  # one line in supervisor.log; the task shows as CRASHED, its work stays
        sys.stderr.write(f"orch: {exc.message}\n")
        return int(exc.exit_code)
    finally:
        sys.stderr.write(_start_next(root))


def _start_next(root: Path) -> str:
    """The run is over, its slot free: start the next queued tasks (``orch.agents.queue``; no daemon).
    What happened, for supervisor.log."""
    from orch.agents import queue
    from orch.core.context import open_ctx

    try:
        started = queue.drain(open_ctx(root))
    except OrchError as exc:
        return f"orch: the queue: {exc.message}\n"
    return f"orch: started from the queue: {', '.join(started)}\n" if started else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
