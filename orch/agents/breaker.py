"""The circuit breaker: when three tasks of one agent fail in a row, that agent's queue is paused.

Read off the statuses alone (no state of its own): for each agent, its tasks' runs that ended, by
when they ended; three FAILED or CRASHED last in a row trip it. While tripped, the queue
(``orch.agents.slots``) starts none of that agent's QUEUED tasks and ``orch up`` spins none, and
``orch status`` says why. A person closes it by giving one of those tasks another run (``orch retry``:
a run that does not fail breaks the row), by naming another agent for the waiting tasks, or by
cleaning the failed ones. BLOCKED and PAUSED runs asked for a person: they count neither way.
"""

from __future__ import annotations

from collections.abc import Mapping

from orch.core import state

IN_A_ROW = 3
FAILED = frozenset({"FAILED", "CRASHED"})
NEITHER = frozenset({"BLOCKED", "PAUSED", "PENDING", "QUEUED", "RUNNING", "HUMAN", "CLEANED"})


def tripped(statuses: Mapping[str, state.Status]) -> dict[str, str]:
    """Each agent whose breaker is open, with the line that says why."""
    ended: dict[str, list[tuple[str, str, str]]] = {}
    for task_id, st in statuses.items():
        agent, finished, now = st.get("agent"), st.get("finished_at"), str(st.get("state"))
        if not agent or not finished or now in NEITHER:
            continue
        ended.setdefault(str(agent), []).append((str(finished), task_id, now))
    out = {}
    for agent, runs in ended.items():
        runs.sort()
        row = []
        for _finished, task_id, now in reversed(runs):
            if now not in FAILED:
                break
            row.append(task_id)
        if len(row) >= IN_A_ROW:
            names = ", ".join(reversed(row[:IN_A_ROW]))
            out[agent] = (
                f"agent {agent}'s queue is paused: {names} failed in a row "
                f"(orch retry one of them, or give the waiting tasks another agent)"
            )
    return out
