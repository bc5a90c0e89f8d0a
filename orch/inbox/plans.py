"""``plan`` items: a task's plan, which a person approves before any code is written.

A task with ``- approve: plan`` (or ``approve_plan: true`` in the config's defaults) first runs a
planning run (``orch.agents.planphase``), which ends AWAITING_APPROVAL with its plan in the run folder
(``plan-<n>.md``) and a ``plan`` item. ``orch approve T1`` (the task id answers its open plan item;
the item's own id, ``A3``, works too) puts the plan in the brief (``## The approved plan``) and starts
the work; ``orch reject T1 --note TEXT`` runs the planning again, the note and the plan rejected in
its brief. Either way the task starts as ``orch start`` starts it: with every agent slot taken it
stays PENDING, and ``orch start T1`` starts it later (the approval, logged, still holds).
"""

from __future__ import annotations

from orch.core import state
from orch.core.context import Ctx
from orch.core.errors import OrchError
from orch.inbox.decide import STILL_WAITS, Answer, Item, handles


@handles("plan")
def _answer(ctx: Ctx, item: Item, answer: Answer) -> str:
    from orch.agents import launch, planphase

    task_id = str(item.get("task") or "")
    planphase.answered(ctx.project, ctx.store, task_id, item, answer.approve, answer.note)
    said = "approved" if answer.approve else "rejected"
    try:
        launch.start(ctx, task_id, phase="work" if answer.approve else "plan")
    except OrchError as exc:
        then = "starts the work" if answer.approve else "plans again"
        return f"{said}; {task_id} is PENDING, not started: {exc.message} (orch start {task_id} {then})"
    if answer.approve:
        return f"approved; {task_id} runs with the plan in its brief"
    return f"rejected; {task_id} plans again" + (", your note in its brief" if answer.note else "")


def _still_waits(item: Item, st: state.Status | None) -> bool:
    """The task still waits for this plan (a retry, a clean or a person's report moved it on)."""
    record = (st or {}).get("plan") or {}
    return (
        (st or {}).get("state") in ("RUNNING", "AWAITING_APPROVAL")
        and record.get("state") == "waiting"
        and record.get("item") == item.get("id")
    )


STILL_WAITS["plan"] = _still_waits
