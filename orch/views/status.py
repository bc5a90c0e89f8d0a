"""``orch status``: the plan joined with each task's runtime state."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from orch.core import refs, state
from orch.core.context import Ctx


def _age(since: str | None) -> float | None:
    if not since:
        return None
    try:
        when = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - when.timestamp())


def rows(ctx: Ctx, task_id: str | None = None) -> list[dict[str, Any]]:
    plan = ctx.plan
    statuses = state.read_all(ctx.project, ctx.store)
    if task_id is not None and plan.get(task_id) is None and task_id not in statuses:
        plan.require(task_id)  # raises with a did-you-mean hint
    heads = refs.branch_heads(ctx.project.root) if any(s.get("verdict") for s in statuses.values()) else {}
    ids = plan.ids() + [i for i in statuses if plan.get(i) is None]
    ready = state.ready_ids(ctx.project, plan.tasks, statuses, lambda: ctx.config.base_branch)
    from orch.tasks import routing

    unspun = [t for t in plan.tasks if (statuses.get(t.id) or {}).get("state", "PENDING") == "PENDING"]
    asked: dict[str, str] = {}
    # Routing questions only where a routing file is there (a cheap look: a warm status runs no git);
    # spin itself always asks the committed file.
    if (ctx.project.orch_dir / routing.ROUTING).exists():
        asked = routing.questions(ctx, [t for t in unspun if task_id is None or t.id == task_id])
    out: list[dict[str, Any]] = []
    for tid in ids:
        if task_id is not None and tid != task_id:
            continue
        task = plan.get(tid)
        st = statuses.get(tid) or {}
        verdict = st.get("verdict") or {}
        tokens = st.get("tokens") or {}
        total = tokens.get("total") if tokens else None
        if total is None and tokens:
            total = int(tokens.get("input", 0)) + int(tokens.get("output", 0))
        branch = st.get("branch")
        out.append(
            {
                "id": tid,
                "title": task.title if task else "(not in the plan any more)",
                "state": st.get("state", "PENDING"),
                "reason": st.get("reason") or asked.get(tid),
                "question": asked.get(tid),
                "deps": task.deps if task else [],
                "ready": task is not None and tid in ready,
                "agent": st.get("agent") or (task.agent if task else None),
                "branch": branch,
                "started_at": st.get("started_at"),
                "age_seconds": _age(st.get("started_at") or st.get("created_at")),
                "iterations": st.get("iterations"),
                "iteration": st.get("iteration"),
                "max_iterations": st.get("max_iterations"),
                "strategy": st.get("strategy"),
                "tokens": total,
                "cost_usd": st.get("cost_usd"),
                "usage": _usage(st),
                "budget": st.get("budget"),
                "outcome": (st.get("merge") or {}).get("outcome"),
                "verdict": verdict.get("result"),
                "verdict_sha": verdict.get("sha"),
                "verdict_stale": (heads.get(branch) != verdict.get("sha")) if verdict and branch in heads else None,
                "in_plan": task is not None,
            }
        )
    return out


def _usage(st: state.Status) -> dict[str, Any] | None:
    """What the task spent (a status from before budgets: its tokens and cost)."""
    usage = st.get("usage")
    if isinstance(usage, dict):
        return {"tokens": usage.get("tokens"), "cost_usd": usage.get("cost_usd")}
    tokens = st.get("tokens") or {}
    if not tokens and st.get("cost_usd") is None:
        return None
    return {"tokens": tokens.get("total") if tokens else None, "cost_usd": st.get("cost_usd")}


def needs_a_person(rows: list[dict[str, Any]]) -> list[str]:
    """One line per task that waits for a person: PAUSED (resume it), BLOCKED (read its report) or
    AWAITING_APPROVAL (read its plan), is a person's (HUMAN: orch release gives it back), or waits
    for a person to name its agent (two routing rules tie: orch.tasks.routing)."""
    out = []
    for r in rows:
        reason = r["reason"] or ""
        if r["state"] == "PAUSED":
            hint = "" if "orch resume" in reason else f" (to go on: orch resume {r['id']})"
            out.append(f"{r['id']} PAUSED: {reason or 'paused'}{hint}")
        elif r["state"] == "BLOCKED":
            out.append(f"{r['id']} BLOCKED: {reason or 'blocked'} (to start over: orch retry {r['id']} --note TEXT)")
        elif r["state"] == "AWAITING_APPROVAL":
            out.append(f"{r['id']} AWAITING_APPROVAL: {reason or 'its plan waits (orch inbox)'}")
        elif r.get("question"):
            out.append(f"{r['id']} PENDING: {r['question']}")
        elif r["state"] == "HUMAN":
            back = f"orch release {r['id']} --note TEXT, or --done"
            out.append(f"{r['id']} HUMAN: {reason or 'a person works on it'} (to give it back: {back})")
    return out


def breaker_lines(ctx: Ctx) -> list[str]:
    """One line per agent whose queue the circuit breaker paused (``orch.agents.breaker``)."""
    from orch.agents.breaker import tripped

    return list(tripped(state.read_all(ctx.project, ctx.store)).values())


def up_line(ctx: Ctx) -> str | None:
    """``orch up runs (pid 4242, since ..., lands: ask)`` while one runs, else None."""
    from orch.schedule import upfile

    record = upfile.running(ctx.project, ctx.store)
    if record is None:
        return None
    log = f"; its output: {record['log']}" if record.get("log") else ""
    lands = f", lands: {record['land']}" if record.get("land") else ""
    return f"orch up runs (pid {record['pid']}, since {record.get('started_at') or '?'}{lands}){log}"


def queued_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per QUEUED task and why it waits (``orch.agents.queue`` starts it when it can)."""
    return [f"{r['id']} QUEUED: {r['reason'] or 'waits for a slot'}" for r in rows if r["state"] == "QUEUED"]


def base_notice(ctx: Ctx) -> str | None:
    """One line when the base branch holds a task's work that no merge ceremony landed (someone moved
    the base itself); at most one cheap git call, and only when the refs changed since the last look."""
    from orch.integrate.basecheck import notice

    return notice(ctx, state.read_all(ctx.project, ctx.store))


def detail_text(ctx: Ctx, task_id: str) -> str:
    """Everything known about one task, for ``orch status ID``."""
    from orch.core import text

    row = rows(ctx, task_id)[0]
    st = state.read(ctx.project, ctx.store, task_id) or {}
    task = ctx.plan.get(task_id)
    lines = [
        f"{row['id']}: {row['title']}",
        f"  state:      {row['state']}" + (" (ready to spin)" if row["ready"] else ""),
    ]
    if row["reason"]:
        lines.append(f"  reason:     {row['reason']}")
    if task is not None:
        lines.append(f"  deps:       {', '.join(task.deps) or 'none'}")
        lines.append(f"  scope:      {task.scope or '(none: may touch anything not locked)'}")
        if task.accept:
            lines.append(f"  accept:     {task.accept}")
    for label, key in [
        ("agent", "agent"),
        ("branch", "branch"),
        ("worktree", "worktree"),
        ("base", "base_sha"),
        ("pid", "pid"),
        ("sandbox", "sandbox"),
        ("exit code", "exit_code"),
        ("started", "started_at"),
        ("finished", "finished_at"),
    ]:
        value = st.get(key) if key in st else row.get(key)
        if value not in (None, ""):
            lines.append(f"  {label + ':':<11} {value}")
    if row["age_seconds"] is not None:
        lines.append(f"  age:        {text.age(row['age_seconds'])}")
    if row["iteration"] is not None:
        strategy = f", strategy {row['strategy']}" if row["strategy"] else ""
        lines.append(f"  iteration:  {row['iteration']}/{row['max_iterations'] or '-'}{strategy}")
    elif row["iterations"] is not None:
        lines.append(f"  iterations: {row['iterations']}")
    if row["tokens"] is not None or row["cost_usd"] is not None:
        cost = "" if row["cost_usd"] is None else f", ${row['cost_usd']:.2f}"
        lines.append(f"  usage:      {row['tokens'] or 0:,} tokens{cost}")
    budget = row.get("budget") or {}
    if budget.get("tokens") or budget.get("usd"):
        lines.append(f"  budget:     {text.budget_text(row)}")
    verdict = st.get("verdict")
    if verdict:
        stale = " (stale: the branch moved since)" if row["verdict_stale"] else ""
        lines.append(f"  verdict:    {verdict['result']} at {verdict['sha'][:12]}{stale}")
        for v in verdict.get("violations") or []:
            lines.append(f"    - {v['path']}: {v['rule']}")
    plan = st.get("plan") or {}
    if plan.get("file"):  # a task whose plan a person approves first (orch.agents.planphase)
        where = ctx.project.rel(ctx.project.task_dir(task_id) / str(plan["file"]))
        lines.append(f"  plan:       {where} ({plan.get('item')}, {plan.get('state')})")
    merge = st.get("merge")
    if merge:
        lines.append(f"  merge:      {merge.get('outcome')} {merge.get('detail') or ''}".rstrip())
    for note in (st.get("notes") or [])[-5:]:  # a note's own lines, indented: never a line of orch's
        said = "".join(c if c.isprintable() or c == "\n" else " " for c in str(note["text"]))
        lines.append(f"  note {note['at']}: " + said.replace("\n", "\n    | "))
    return "\n".join(lines)
