"""At 100% of an ``orch up`` run's budget its running agents are paused: each RUNNING task of the plan
gets ``pause_requested`` (why) in its status; its supervisor, which looks every few seconds, stops the
running iteration, keeps its work and ends the task PAUSED (``orch resume`` goes on from there)."""

from __future__ import annotations

import functools

from orch.core import state
from orch.core.context import Ctx


def pause_all(ctx: Ctx, statuses: dict[str, state.Status], why: str) -> list[str]:
    """Ask every running task of the plan to pause; the ids asked now (not asked before)."""
    asked: list[str] = []
    for task in ctx.plan.tasks:
        st = statuses.get(task.id) or {}
        if st.get("state") != "RUNNING" or st.get("pause_requested"):
            continue
        now: list[bool] = []
        state.update(ctx.project, ctx.store, task.id, functools.partial(_ask, why=why, now=now), create=False)
        if now and now[-1]:
            ctx.log("RUNNING", "PAUSE", why, task=task.id)
            asked.append(task.id)
    return asked


def _ask(st: state.Status, why: str, now: list[bool]) -> None:
    now.append(st.get("state") == "RUNNING" and not st.get("pause_requested"))
    if now[-1]:
        st["pause_requested"] = why
