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
from orch.core import inbox, state
from orch.core.context import Ctx
from orch.core.planvalues import Budget as PlanBudget
from orch.core.repo import Project


@dataclass
class RunBudget:
    limit: budgets.Budget
    text: str  # as the person wrote it

    @classmethod
    def parsed(cls, value: PlanBudget, text: str) -> RunBudget:
        return cls(budgets.Budget(value.tokens, value.usd), text)


def spent(project: Project, statuses: Mapping[str, state.Status], ids: Iterable[str]) -> budgets.Spent:
    """What the tasks ``ids`` spent, over all their runs: the status's usage (summed over iterations
    and resumes) and that of each run ``orch retry`` set aside (``run-<n>/status.yaml``)."""
    total = budgets.Spent()
    for task_id in ids:
        usages = [(statuses.get(task_id) or {}).get("usage")]
        if statuses.get(task_id) is not None:
            usages += _earlier_runs(project, task_id)
        for usage in usages:
            total = _plus(total, budgets.Spent.load(usage))
    return total


def _plus(total: budgets.Spent, one: budgets.Spent) -> budgets.Spent:
    cost = total.cost_usd
    if one.cost_usd is not None:
        cost = (cost or 0.0) + one.cost_usd
    found = total.found or one.found
    return budgets.Spent(total.input + one.input, total.output + one.output, total.cached + one.cached, cost, found)


def _earlier_runs(project: Project, task_id: str) -> list[object]:
    """The usage of each earlier run kept in the task's run folder (read as plain YAML: a broken or
    odd file counts as nothing spent, as ``Spent.load`` reads odd values)."""
    folder = project.task_dir(task_id)
    try:
        runs = [p for p in folder.iterdir() if p.name.startswith("run-") and p.name[4:].isdigit()]
    except OSError:
        return []
    out = []
    for run in runs:
        path = run / "status.yaml"
        if path.is_symlink() or not path.is_file():
            continue
        try:
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")[: 1 << 20])
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            out.append(data.get("usage"))
    return out


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


def of_config(ctx: Ctx) -> RunBudget | None:
    """``budget:`` in the config, or None."""
    from orch.core.plan import parse_budget

    text = ctx.config.budget
    return RunBudget.parsed(parse_budget(text), text) if text else None


def hold(ctx: Ctx, run: RunBudget | None, level_now: str, spent_line: str, asked: list[str]) -> tuple[str, bool] | None:
    """Why nothing new may be dispatched, and whether that is for good in this run (``True``: spent,
    or a person said no; ``False``: a person is asked, ``asked`` gets the item's id), or None."""
    if run is None or level_now == "ok":
        return None
    if level_now == "spent":
        return f"the run's budget is spent ({spent_line}): nothing new starts", True
    answer = _answer(ctx, run, spent_line, asked)
    if answer == "approved":
        return None
    if answer == "rejected":
        return f"{spent_line}: a person said to dispatch nothing more", True
    return f"{spent_line}: nothing new is dispatched until a person answers (orch inbox)", False


def _answer(ctx: Ctx, run: RunBudget, spent_line: str, asked: list[str]) -> str:
    """A person's answer to going past 85% of this budget: ``approved``, ``rejected`` or ``open``
    (asked now if it was not yet)."""
    from orch.inbox import decide

    key = f"budget:{run.text}"
    for item in inbox.read_all(ctx.project, ctx.store):
        if item.get("key") != key or item.get("kind") != "budget":
            continue
        if item.get("state") == "open":
            return "open"
        if item.get("state") in ("approved", "rejected") and decide.answered_by_a_person(ctx, item):
            return str(item["state"])
    item = inbox.post(
        ctx.project,
        ctx.store,
        "budget",
        task=None,
        asked=f"orch up has {spent_line}: go on to 100% (approve), or dispatch nothing more (reject)?",
        data={"budget": run.text},
        key=key,
    )
    asked.append(str(item["id"]))
    return "open"
