"""Why each task of the plan is not landed yet, and whether it moves by itself (``moving``), waits for
a person (``person``) or can go no further without a new run (``ended``): ``orch up`` stops when
nothing moves (and, without ``--until-idle``, nothing waits for a person), and prints these lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orch.core import state
from orch.core.plan import Plan, topo_order

MOVING, PERSON, ENDED = "moving", "person", "ended"


@dataclass
class Left:
    task: str
    state: str
    why: str
    kind: str  # MOVING, PERSON or ENDED

    def to_json(self) -> dict[str, str]:
        return {"task": self.task, "state": self.state, "why": self.why, "kind": self.kind}


@dataclass
class Known:
    """What ``orch up`` knows besides the statuses, per task: why it did not spin one (a refusal, a
    breaker, the budget), the open inbox items, and what landing waits on."""

    held: Mapping[str, tuple[str, str]]  # task -> (why, kind): not spun by orch up
    items: Mapping[str, list[str]]  # task -> open inbox item ids
    landing: Mapping[str, tuple[str, str]]  # task -> (why, kind): a SUCCESS task not landed
    breakers: Mapping[str, str] = field(default_factory=dict)  # agent -> why its queue is paused


def left(plan: Plan, statuses: dict[str, state.Status], merged: set[str], known: Known) -> list[Left]:
    """One ``Left`` per plan task not merged, in plan order."""
    out: dict[str, Left] = {}
    for task in (plan.require(i) for i in topo_order(plan)):  # a task's deps are decided before it
        if task.id in merged:
            continue
        st = statuses.get(task.id) or {}
        now = str(st.get("state") or "PENDING")
        asked = known.items.get(task.id) or []
        items = f" (inbox: {', '.join(asked)})" if asked else ""
        reason = str(st.get("reason") or "")
        if state.never_spun(task.id, statuses):
            if task.id in known.held:
                why, kind = known.held[task.id]
                out[task.id] = Left(task.id, now, why, kind)
                continue
            waiting = [d for d in task.deps if d not in merged]
            if not waiting:
                out[task.id] = Left(task.id, now, "ready: spins on the next look", MOVING)
                continue
            dep = waiting[0]
            first = out.get(dep)
            if first is None or first.kind == MOVING:
                out[task.id] = Left(task.id, now, f"waits for {dep} to land", MOVING)
            elif first.kind == PERSON:
                out[task.id] = Left(task.id, now, f"waits for {dep}, which waits for a person", PERSON)
            elif first.state in ("PENDING", "QUEUED"):  # held for good (the run's budget, a person's no)
                out[task.id] = Left(task.id, now, f"waits for {dep}, which will not run in this run", ENDED)
            else:
                out[task.id] = Left(task.id, now, f"dependency {dep} failed ({first.state})", ENDED)
            continue
        if now == "RUNNING":
            at = f" iteration {st.get('iteration')}" if st.get("iteration") else ""
            out[task.id] = Left(task.id, now, "runs" + at, MOVING)
        elif now == "QUEUED" and str(st.get("agent")) in known.breakers:
            out[task.id] = Left(task.id, now, known.breakers[str(st.get("agent"))], PERSON)
        elif now == "QUEUED":
            kind = PERSON if reason.startswith("waits: agent") else MOVING
            out[task.id] = Left(task.id, now, reason or "queued", kind)
        elif now == "PENDING" and task.id in known.held:
            why, kind = known.held[task.id]
            out[task.id] = Left(task.id, now, why, kind)
        elif now == "PENDING" and "orch dequeue" in reason:
            out[task.id] = Left(task.id, now, f"taken out of the queue: orch start {task.id}", PERSON)
        elif now == "PENDING":
            out[task.id] = Left(task.id, now, "spun: starts on the next look", MOVING)
        elif now == "AWAITING_APPROVAL":
            out[task.id] = Left(task.id, now, f"its plan waits for a person{items}", PERSON)
        elif now == "HUMAN":
            out[task.id] = Left(task.id, now, f"a person drives it (orch release {task.id})", PERSON)
        elif now == "BLOCKED":
            out[task.id] = Left(task.id, now, f"blocked: {reason}{items}", PERSON)
        elif now == "PAUSED":
            out[task.id] = Left(task.id, now, f"paused: {reason}", PERSON)
        elif now in ("SUCCESS", "SKIPPED"):
            why, kind = known.landing.get(task.id, ("lands on the next look", MOVING))
            out[task.id] = Left(task.id, now, why + items, kind)
        elif now in ("FAILED", "CRASHED"):
            out[task.id] = Left(task.id, now, f"{now.lower()}: {reason} (orch retry {task.id})", ENDED)
        elif now in state.VIOLATIONS:
            out[task.id] = Left(task.id, now, f"quarantined: {reason or 'its change breaks a rule'}{items}", ENDED)
        elif now in ("REVERTED", "CONFLICT"):
            merge = st.get("merge") or {}
            out[task.id] = Left(task.id, now, f"{now.lower()}: {merge.get('detail') or reason}", ENDED)
        else:  # CLEANED without a merge
            out[task.id] = Left(task.id, now, f"{now.lower()} without landing", ENDED)
    return [out[t.id] for t in plan.tasks if t.id in out]
