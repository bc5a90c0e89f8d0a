"""The budget of a whole ``orch up`` run (``orch up --budget "$20"``, else ``budget:`` in the config):
what the plan's tasks spent so far, summed from their statuses (``usage``), and what that allows.

Below 85% everything goes. At 85% ``orch up`` dispatches nothing new and asks a person (a ``budget``
inbox item): approved, it goes on to 100%; rejected, it dispatches nothing more. At 100% the running
agents are paused (the supervisor stops the running iteration and the task ends PAUSED, resumable
with ``orch resume``), and nothing new starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orch.agents import budget as budgets
from orch.core import state
from orch.core.planvalues import Budget as PlanBudget


@dataclass
class RunBudget:
    limit: budgets.Budget
    text: str  # as the person wrote it

    @classmethod
    def parsed(cls, value: PlanBudget, text: str) -> RunBudget:
        return cls(budgets.Budget(value.tokens, value.usd), text)


def spent(statuses: Mapping[str, state.Status], ids: Iterable[str]) -> budgets.Spent:
    """What the tasks ``ids`` spent, over all their runs, as their statuses say."""
    total = budgets.Spent()
    for task_id in ids:
        one = budgets.Spent.load((statuses.get(task_id) or {}).get("usage"))
        cost = total.cost_usd
        if one.cost_usd is not None:
            cost = (cost or 0.0) + one.cost_usd
        total = budgets.Spent(
            total.input + one.input,
            total.output + one.output,
            total.cached + one.cached,
            cost,
            total.found or one.found,
        )
    return total


def line(used: budgets.Spent, run: RunBudget | None) -> str:
    """``spent: 12,400 tokens, $0.31`` (and ``of $20 (2%)`` with a budget): always shown."""
    parts = [f"{used.tokens:,} tokens" if used.found else "no tokens reported"]
    if used.cost_usd is not None:
        parts.append(f"${used.cost_usd:.2f}")
    text = "spent: " + ", ".join(parts)
    if run is not None:
        share = budgets.share(used, run.limit) or 0.0
        text += f" of {run.text} ({share:.0%})"
    return text


def level(used: budgets.Spent, run: RunBudget | None) -> str:
    """``ok``, ``nearly`` (85%: dispatch nothing new until a person says so) or ``spent`` (100%)."""
    if run is None:
        return "ok"
    share = budgets.share(used, run.limit) or 0.0
    if share >= 1.0:
        return "spent"
    return "nearly" if share >= budgets.NEARLY else "ok"
