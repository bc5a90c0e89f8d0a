"""Runtime state of tasks: ``.orch/run/tasks/<id>/status.yaml``.

The state machine (see the README): PENDING -> RUNNING -> SUCCESS | FAILED | BLOCKED | PAUSED |
CRASHED (a planning run: AWAITING_APPROVAL, then RUNNING again once a person answers; any of these can
become HUMAN, a person's, by orch takeover, and PENDING or SUCCESS again by orch release), then a verdict
(SCOPE_VIOLATION | LOCK_VIOLATION), then the ceremony (MERGED | REVERTED | CONFLICT | QUARANTINED |
SKIPPED), then CLEANED. A RUNNING task whose process is gone becomes CRASHED
the next time any command looks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from orch.core import eventlog, git, procs
from orch.core.repo import Project
from orch.core.store import Store

STATES = (
    "PENDING", "RUNNING", "SUCCESS", "FAILED", "BLOCKED", "PAUSED", "CRASHED",
    "SCOPE_VIOLATION", "LOCK_VIOLATION", "MERGED", "REVERTED", "CONFLICT", "QUARANTINED", "SKIPPED",
    "CLEANED", "AWAITING_APPROVAL", "QUEUED", "HUMAN",
)  # fmt: skip
# QUEUED: spun, waiting for a slot (orch.agents.queue); the supervisor of a run that ends starts it
# AWAITING_APPROVAL: a planning run ended with a plan a person approves (orch.agents.planphase)
FINISHED = frozenset({"SUCCESS", "FAILED", "BLOCKED", "PAUSED", "CRASHED", "AWAITING_APPROVAL"})
VIOLATIONS = frozenset({"SCOPE_VIOLATION", "LOCK_VIOLATION", "QUARANTINED"})
AWAITING_MERGE = frozenset({"SUCCESS", "SKIPPED"})  # finished well; the next orch merge takes them
RETRYABLE = FINISHED - {"SUCCESS"}  # a run that ended without its work done: orch retry starts it over
# HUMAN: a person took the task over (orch takeover, orch.tasks.takeover): nothing schedules, retries,
# resumes or merges it until orch release gives it back. Never in FINISHED.
TAKEABLE = frozenset({"RUNNING", *FINISHED})  # what orch takeover takes (a RUNNING one is stopped first)

Status = dict[str, Any]


def read(project: Project, store: Store, task_id: str, *, refresh: bool = True) -> Status | None:
    """The task's status, or None if it was never spun; a dead RUNNING task is turned CRASHED."""
    try:
        status: Status = store.load(project.task_dir(task_id) / "status.yaml", "task_status")
    except FileNotFoundError:
        return None
    # In the box (ORCH_BOXED), no process outside can be seen: liveness is the supervisor's to judge.
    if refresh and status.get("state") == "RUNNING" and not os.environ.get("ORCH_BOXED") and not _running(status):
        status = _mark_crashed(project, store, task_id)
    return status


_held: ContextVar[dict[str, dict[str, Status]] | None] = ContextVar("orch_state_held", default=None)


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within it, ``read_all`` reads the status files once per project and gives the same statuses
    again (a view built by several readers: ``orch ui``'s page). Never around a write or a decision."""
    token = _held.set({})
    try:
        yield
    finally:
        _held.reset(token)


def read_all(project: Project, store: Store) -> dict[str, Status]:
    """Every task with runtime state, by id (including tasks no longer in the plan)."""
    held = _held.get()
    if held is not None:
        key = str(project.tasks_dir)
        if key not in held:
            held[key] = _read_all(project, store)
        return dict(held[key])
    return _read_all(project, store)


def _read_all(project: Project, store: Store) -> dict[str, Status]:
    try:
        names = sorted(os.listdir(project.tasks_dir))
    except FileNotFoundError:
        return {}
    result: dict[str, Status] = {}
    for name in names:
        status = read(project, store, name)
        if status is not None:
            result[name] = status
    return result


def update(
    project: Project,
    store: Store,
    task_id: str,
    change: Callable[[Status], Status | None],
    *,
    durable: bool = True,
    check: bool = True,
    create: bool = True,
) -> Status:
    """Read-modify-write one status under its lock; ``change`` may mutate in place and return None.

    ``create=False`` (what a run notes while its agent runs: the agent may have moved the run folder
    away) writes nothing when the status is not there, and returns ``{}``: orch never makes a run
    folder anew where an agent took one away, and its end (``supervisor.finish``) says what happened.

    ``durable=False`` skips the fsyncs: for the many writes at the end of a merge ceremony, which a
    later ceremony re-derives from the base branch if a power cut loses them. ``check=False`` skips
    the schema check on write, for a hot path whose change is built by orch (``Store.dump``).
    """

    def apply(current: Status) -> Status:
        result = change(current)
        new = current if result is None else result
        new["updated_at"] = eventlog.utcnow()
        return new

    path = project.task_dir(task_id) / "status.yaml"

    def default() -> Status:
        if not create:
            raise _NoStatus
        return {"id": task_id, "state": "PENDING"}

    try:
        result: Status = store.update(path, "task_status", apply, default=default, durable=durable, check=check)
    except _NoStatus:
        return {}
    return result


class _NoStatus(Exception):
    """The status is not there, and the update must not create it."""


def _running(status: Status) -> bool:
    """Is the process that owns this RUNNING task still there (same pid, same start time)?"""
    if status.get("tmux_session"):
        return procs.tmux_alive(str(status["tmux_session"]))
    pid = status.get("supervisor_pid") or status.get("pid")
    start = status.get("supervisor_start") if status.get("supervisor_pid") else status.get("pid_start")
    return procs.alive(pid, start)


def owner_alive(status: Status) -> bool:
    """Public form of the check above, for commands that wait on or stop a task."""
    return _running(status)


def _mark_crashed(project: Project, store: Store, task_id: str) -> Status:
    changed = False

    def crash(status: Status) -> None:
        nonlocal changed
        if status.get("state") == "RUNNING" and not _running(status):  # re-check under the lock
            status["state"] = "CRASHED"
            status["reason"] = "its process is gone (orch found it not running); the work is kept on its branch"
            status["finished_at"] = eventlog.utcnow()
            changed = True

    status = update(project, store, task_id, crash)
    if changed:
        eventlog.append(project.log_path, state="CRASHED", task=task_id, action="CHECK", result="process gone")
        # The supervisor is gone but its agent may not be: nobody would bound it any more, and it
        # would go on writing into a worktree orch now treats as finished. End it.
        pid, started = status.get("pid"), status.get("pid_start")
        if started and pid and procs.alive(pid, started):
            procs.end(int(pid), str(started), own_group=not status.get("tmux_session"))
            eventlog.append(project.log_path, state="CRASHED", task=task_id, action="KILL", result=f"agent pid={pid}")
    return status


def merged(status: Status | None) -> bool:
    """Did this task's work reach the base by a ceremony (now MERGED, or merged and later CLEANED)?"""
    if not status:
        return False
    if status.get("state") == "MERGED":
        return True
    merge = status.get("merge") or {}
    return merge.get("outcome") == "MERGED"


def verified_sha(status: Status | None) -> str | None:
    """The commit verification judged mergeable (OK, no soft lock waiting for an ack) while it was
    still outside the base, or None.

    A verdict whose commit is its own merge-base (``base_sha``; orch always records it) was made when
    the commit was in the base already: it judged an empty change set, so it vouches for nothing; nor
    does one of the commit the task was spun from. A task still PENDING or RUNNING has no finished
    work to count.
    """
    if not status or status.get("state") in ("PENDING", "RUNNING", "QUEUED"):
        return None
    verdict = status.get("verdict") or {}
    sha = verdict.get("sha")
    if verdict.get("result") != "OK" or verdict.get("pending_acks") or not isinstance(sha, str):
        return None
    if any((v or {}).get("mode") == "hard" for v in verdict.get("violations") or []):
        return None
    if not verdict.get("base_sha") or sha in (verdict.get("base_sha"), status.get("base_sha")):
        return None
    return sha


def merged_tasks(project: Project, statuses: dict[str, Status], ids: Iterable[str], tip: Callable[[], str]) -> set[str]:
    """Which of ``ids`` are merged however their work got there: a ceremony recorded it (``merged``),
    or the commit verification judged OK (``verified_sha``) is in ``tip()``'s history (a merge by
    hand, a parked result landed by hand). ``tip`` (a ref or a sha) is asked for, and git run once,
    only when some status leaves the question open."""
    done: set[str] = set()
    open_: dict[str, str] = {}
    for task_id in dict.fromkeys(ids):
        status = statuses.get(task_id)
        if merged(status):
            done.add(task_id)
        elif (sha := verified_sha(status)) is not None:
            open_[task_id] = sha
    if open_:
        inside = git.contained(open_.values(), tip(), cwd=project.root)
        done.update(task_id for task_id, sha in open_.items() if sha in inside)
    return done


def never_spun(task_id: str, statuses: dict[str, Status]) -> bool:
    st = statuses.get(task_id)
    return st is None or (st.get("state") == "PENDING" and not st.get("branch"))


def ready(task: Any, statuses: dict[str, Status], merged_ids: set[str] | None = None) -> bool:
    """Never spun (no status, or PENDING without a branch) and every dependency merged (``merged_ids``,
    from ``merged_tasks``; without it, only what a ceremony recorded counts)."""
    if not never_spun(task.id, statuses):
        return False
    if merged_ids is None:
        return all(merged(statuses.get(dep)) for dep in task.deps)
    return all(dep in merged_ids for dep in task.deps)


def ready_ids(
    project: Project, tasks: Iterable[Any], statuses: dict[str, Status], base_branch: Callable[[], str]
) -> set[str]:
    """The ids of ``tasks`` ready to spin; at most one git call (see ``merged_tasks``)."""
    unspun = [t for t in tasks if never_spun(t.id, statuses)]
    done = merged_tasks(project, statuses, [d for t in unspun for d in t.deps], lambda: f"refs/heads/{base_branch()}")
    return {t.id for t in unspun if ready(t, statuses, done)}
