"""``orch plan``: the validated plan with each task's state and readiness."""

from __future__ import annotations

from typing import Any

from orch.core import state
from orch.core.context import Ctx


def build(ctx: Ctx) -> dict[str, Any]:
    plan = ctx.plan
    statuses = state.read_all(ctx.project, ctx.store)
    tasks = []
    warnings = []
    ready_ids = state.ready_ids(ctx.project, plan.tasks, statuses, lambda: ctx.config.base_branch)
    for task in plan.tasks:
        st = statuses.get(task.id) or {}
        current = st.get("state", "PENDING")
        ready = task.id in ready_ids
        budget = task.budget
        tasks.append(
            {
                "id": task.id,
                "title": task.title,
                "line": task.line,
                "scope": task.scope,
                "deps": task.deps,
                "agent": task.agent,
                "accept": task.accept,
                "model": task.model,
                "level": task.level,
                "max_iterations": task.max_iterations,
                "max_per_strategy": task.max_per_strategy,
                "max_strategies": task.max_strategies,
                "task_timeout": task.task_timeout,
                "budget": {"tokens": budget.tokens, "usd": budget.usd} if budget else None,
                "state": current,
                "ready": ready,
            }
        )
        if task.scope is None:
            warnings.append(
                f".orch/plan.md:{task.line}: task {task.id} has no scope: it may change any file that is not "
                "locked (add '- scope: REGEX')"
            )
    _check_agents(ctx)
    from orch.tasks import routing

    warnings += routing.order_warnings(plan, routing.in_force(ctx))
    from orch.agents.slots import overlapping_pairs

    overlaps = [{"tasks": [a, b], "file": common} for a, b, common in overlapping_pairs(ctx, plan.tasks)]
    return {"title": plan.title, "tasks": tasks, "warnings": warnings, "overlaps": overlaps}


def _check_agents(ctx: Ctx) -> None:
    """Every ``agent:`` a task names has a manifest in .orch/agents/ (else spin would fail later)."""
    import difflib

    from orch.core.errors import ManyErrors

    folder = ctx.project.orch_dir / "agents"
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    problems = []
    for task in ctx.plan.tasks:
        if task.agent is not None and task.agent not in known:
            close = difflib.get_close_matches(task.agent, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            have = ", ".join(known) or "none"
            problems.append(
                f".orch/plan.md:{task.field_lines.get('agent', task.line)}: task {task.id} names agent "
                f"'{task.agent}', which has no manifest in .orch/agents/ ({hint}agents: {have})"
            )
    if problems:
        raise ManyErrors(problems, hint="fix the agent field, or add .orch/agents/NAME.yaml (see: orch agents)")


def text(view: dict[str, Any]) -> str:
    from orch.core.text import plain_table

    if not view["tasks"]:
        return "the plan has no tasks yet (add one: orch plan add ID --title ...)"
    rows = [
        [
            t["id"],
            t["state"] + (" (ready)" if t["ready"] else ""),
            ", ".join(t["deps"]) or "-",
            t["scope"] or "(any)",
            t["agent"] or "(default)",
            t["title"],
        ]
        for t in view["tasks"]
    ]
    ready = [t["id"] for t in view["tasks"] if t["ready"]]
    title = f"Plan: {view['title']}" if view["title"] else None
    table = plain_table(["ID", "STATE", "DEPS", "SCOPE", "AGENT", "TITLE"], rows, title=title)
    n = len(view["tasks"])
    summary = f"\n{n} task{'s' if n != 1 else ''}; ready to spin: {', '.join(ready) or 'none'}"
    for pair in view.get("overlaps") or []:  # one file, one owner: never run together (orch.agents.slots)
        a, b = pair["tasks"]
        summary += f"\noverlap: {a} and {b} both reach {pair['file']} (never run at once; 'overlap: ok' allows it)"
    return table + summary
