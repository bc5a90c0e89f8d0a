"""``orch run``: spin tasks if needed, with the loop's limits tightened from the command line, and
follow them until each has ended (one line per iteration from the event log)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from orch.agents import launch
from orch.agents.taskfiles import files
from orch.core import eventlog, procs, state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.refs import check_id

FOLLOWED = ("TDD_GATE", "ITERATE", "STRATEGY_SHIFT", "ACCEPT")


@dataclass
class Overrides:
    max_iterations: int | None = None
    max_per_strategy: int | None = None
    max_strategies: int | None = None
    timeout: float | None = None  # the whole task's wall clock (the loop's task_timeout)
    tdd_gate: bool = True

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Tighten the frozen manifest's limits (the strictest wins; a flag never loosens one)."""
        limits = manifest.setdefault("limits", {})
        for key, value in (
            ("max_iterations", self.max_iterations),
            ("max_per_strategy", self.max_per_strategy),
            ("max_strategies", self.max_strategies),
            ("task_timeout", self.timeout),
        ):
            if value is not None:
                limits[key] = min(value, limits[key]) if limits.get(key) else value
        if not self.tdd_gate:
            manifest["tdd_gate"] = False
        return manifest


@dataclass
class Started:
    ids: list[str] = field(default_factory=list)  # tasks now followed
    notes: list[str] = field(default_factory=list)  # one line each for a person
    errors: list[tuple[str, str, int]] = field(default_factory=list)  # (id, error, exit code)


def start(ctx: Ctx, ids: list[str], overrides: Overrides) -> Started:
    """Spin (or start) each task that is not running yet, its manifest tightened by ``overrides``."""
    from orch.tasks import spin as spin_mod

    project, store = ctx.project, ctx.store
    for task_id in ids:
        check_id(task_id, cwd=project.root)
    out = Started()
    for task_id in dict.fromkeys(ids):
        st = state.read(project, store, task_id) or {}
        now = st.get("state")
        if now in (None, "CLEANED"):
            result = spin_mod.spin(ctx, [task_id], start=False)[0]
            if not result.ok:
                out.errors.append((task_id, str(result.error), result.exit_code))
                continue
            now = "PENDING"
        if now == "PENDING":
            f = files(project, task_id)
            if not f.manifest.is_file():
                raise InputError(f"task {task_id} is PENDING but not spun", hint=f"orch spin {task_id}")
            manifest = store.update(f.manifest, "task_manifest", overrides.apply)
            if not manifest.get("accept"):
                out.notes.append(f"{task_id}: no accept command: it runs once (the loop needs one to iterate)")
            launch.start(ctx, task_id)
        elif now == "HUMAN":
            out.notes.append(f"{task_id}: a person works on it (HUMAN): orch release {task_id} gives it back")
        elif now == "AWAITING_APPROVAL":
            out.notes.append(f"{task_id}: its plan waits for a person: orch approve {task_id} (or orch reject)")
        elif now in state.RETRYABLE:
            on = f"orch resume {task_id} goes on, " if now == "PAUSED" else ""
            out.notes.append(f"{task_id}: {now} already (not run again): {on}orch retry {task_id} starts it over")
        out.ids.append(task_id)
    return out


def log_offset(ctx: Ctx) -> int:
    """Where the event log ends now: ``follow`` reads from there."""
    try:
        return ctx.project.log_path.stat().st_size
    except OSError:
        return 0


def watch(ctx: Ctx, ids: list[str], offset: int, *, poll: float = 0.2) -> Iterator[list[eventlog.Event]]:
    """The tasks' loop events written since the last look, one list (maybe empty) every ``poll``
    seconds, until none of the tasks is RUNNING (the last list holds what came before it ended).

    Between two looks it waits ``poll`` seconds, or less: until a running task's supervisor ends
    (``procs.wait_exit``), so the command returns when the last run does, not up to ``poll`` later."""
    project, store = ctx.project, ctx.store
    while True:
        running = [st for st in (state.read(project, store, i) or {} for i in ids) if st.get("state") == "RUNNING"]
        events, offset = eventlog.read_from(project.log_path, offset)
        yield [e for e in events if e.task in ids and e.action in FOLLOWED]
        if not running:
            return
        pids = [s["supervisor_pid"] for s in running if procs.alive(s.get("supervisor_pid"), s.get("supervisor_start"))]
        if not procs.wait_exit(pids, poll):
            time.sleep(poll)


def follow(ctx: Ctx, ids: list[str], offset: int, *, poll: float = 0.2) -> Iterator[str]:
    """Lines for a person while the tasks run (their loop's events), until none is RUNNING."""
    for events in watch(ctx, ids, offset, poll=poll):
        yield from (event_line(e) for e in events)


def event_line(event: eventlog.Event) -> str:
    """``T1.i2 ITERATE FAIL sig=5d0c8e11a2b4``: one loop event, as ``orch run`` prints it."""
    return f"{event.iteration} {event.action} {event.result}".rstrip()


def ended_line(task_id: str, st: state.Status) -> str:
    it = st.get("iteration")
    after = f" after {it} iteration{'s' if it != 1 else ''}" if it else ""
    reason = f": {st['reason']}" if st.get("reason") else ""
    return f"{task_id}: {st.get('state', 'PENDING')}{after}{reason}"
