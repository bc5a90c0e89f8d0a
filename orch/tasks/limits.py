"""The loop's limits and the budget a spin freezes into a task's manifest (``orch.tasks.spin``)."""

from __future__ import annotations

import contextlib
from typing import Any

from orch.agents import manifest as agents
from orch.core.context import Ctx
from orch.core.plan import Task


def task_limits(ctx: Ctx, task: Task, agent: agents.Agent) -> dict[str, Any]:
    """The ``limits`` of a task's frozen manifest: each the strictest of the plan task's, the agent
    manifest's and the config ``defaults``' (``orch run``'s flags tighten them further)."""
    defaults = ctx.config.defaults
    budget = task.budget
    default_budget = None
    if defaults.get("budget"):
        from orch.core.plan import parse_budget

        with contextlib.suppress(ValueError):
            default_budget = parse_budget(str(defaults["budget"]))
    # The strictest of the plan task's, the agent's and the config's budget (each part on its own).
    tokens = _least(budget.tokens if budget else None, agent.budget_tokens)
    usd = _least(budget.usd if budget else None, agent.budget_usd)

    def strictest(key: str, task_value: int | None) -> Any:  # validated numbers: plan task, agent, config
        return _least(task_value, agent.data.get(key), defaults.get(key))

    return {
        "max_iterations": strictest("max_iterations", task.max_iterations),
        "max_per_strategy": strictest("max_per_strategy", task.max_per_strategy),
        "max_strategies": strictest("max_strategies", task.max_strategies),
        "task_timeout": strictest("task_timeout", task.task_timeout),  # seconds; a float in the config too
        "max_tokens": _least(tokens, default_budget.tokens if default_budget else None),
        "budget_usd": _least(usd, default_budget.usd if default_budget else None),
        "timeout": agent.timeout or defaults.get("timeout"),
    }


def _least(*values: Any) -> Any:
    found = [v for v in values if v]
    return min(found) if found else None
