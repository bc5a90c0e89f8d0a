"""``orch resume ID [--budget TEXT]``: a PAUSED task goes on from where it stopped.

A task is PAUSED when its budget ran low (85% used after an iteration, or 100% during one: that
iteration was stopped and its work snapshotted) or when its agent reported PAUSED. Resuming starts a
new supervisor whose loop goes on from ``loop.json`` (the iteration and strategy counts, the history
the briefs quote, the attempts kept) and from what the status says was spent; the next iteration's
brief is the one already written. ``--budget`` is a person's word: it replaces the frozen budget's
token and/or dollar part (it may raise it), and the change is in the event log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orch.agents import budget, launch, loopstate
from orch.agents.taskfiles import files
from orch.core import eventlog, state
from orch.core.context import Ctx
from orch.core.errors import InputError, UsageError
from orch.core.refs import check_id


def resume(ctx: Ctx, task_id: str, budget_text: str | None = None, *, tmux: bool = False) -> state.Status:
    """Start the PAUSED task ``task_id`` again where its loop stopped; returns the RUNNING status."""
    from orch.core.plan import parse_budget

    project, store = ctx.project, ctx.store
    check_id(task_id, cwd=project.root)
    new = None
    if budget_text is not None:
        try:
            new = parse_budget(budget_text)
        except ValueError as exc:
            hint = "write e.g. '500k tokens', '$10', or both: '500k tokens, $10'"
            raise UsageError(f"bad --budget '{budget_text}': {exc}", hint=hint) from None
    # One at a time with orch retry and another orch resume (the same lock): nothing changes under them.
    with store.lock(f"retry-{task_id}"):
        st = _paused(ctx, task_id)
        f = files(project, task_id)
        try:
            manifest = store.load(f.manifest, "task_manifest")
        except FileNotFoundError:
            raise InputError(
                f"task {task_id} cannot be resumed: {project.rel(f.manifest)} is gone", hint=f"orch retry {task_id}"
            ) from None
        limits: dict[str, Any] = dict(manifest.get("limits") or {})
        if new is not None:
            if new.tokens is not None:
                limits["max_tokens"] = new.tokens
            if new.usd is not None:
                limits["budget_usd"] = new.usd
        if manifest.get("accept") and (f.folder / loopstate.SAVED).exists():
            _loop_left(ctx, task_id, f.folder / loopstate.SAVED, limits)
        spent, cap = budget.Spent.load(st.get("usage")), budget.Budget.of(limits)
        nearly = budget.nearly(spent, cap)
        if nearly:
            raise InputError(
                f"task {task_id} would pause again at once: {nearly}",
                hint=f"give it more: orch resume {task_id} --budget AMOUNT (e.g. '{_more(spent, cap)}')",
            )
        if new is not None:

            def raise_budget(data: dict[str, Any]) -> dict[str, Any]:
                keys = ("max_tokens", "budget_usd")
                data.setdefault("limits", {}).update({k: limits[k] for k in keys if k in limits})
                return data

            store.update(f.manifest, "task_manifest", raise_budget)
            ctx.log("PAUSED", "BUDGET", f"set by a person: {_words(cap)}", task=task_id)

        def mark(s: state.Status) -> None:  # what the agent reported before is not the new run's report
            note = {"at": eventlog.utcnow(), "state": "RESUME", "text": "resumed by a person"}
            s.setdefault("notes", []).append(note)

        state.update(project, store, task_id, mark)
        return launch.start(ctx, task_id, resume=True, tmux=tmux)


def _paused(ctx: Ctx, task_id: str) -> state.Status:
    """The task's status if it is PAUSED and no supervisor of it lives, else a clear refusal."""
    from orch.tasks.retry import _still_supervised

    st = state.read(ctx.project, ctx.store, task_id)
    if st is None:
        raise InputError(f"task {task_id} was never spun: nothing to resume", hint=f"orch run {task_id}")
    now = st.get("state")
    if now != "PAUSED":
        hint = {
            "RUNNING": f"it runs: follow it with orch run {task_id}",
            "PENDING": f"start it: orch run {task_id}",
            "BLOCKED": f"start it over with what it needs: orch retry {task_id} --note TEXT",
            "FAILED": f"start it over: orch retry {task_id}",
            "CRASHED": f"start it over: orch retry {task_id}",
            "HUMAN": f"a person works on it; give it back: orch release {task_id} --note TEXT (or --done)",
        }.get(str(now), f"see: orch status {task_id}")
        raise InputError(f"task {task_id} is {now}, not PAUSED: nothing to resume", hint=hint)
    _still_supervised(task_id, "PAUSED", st)  # a status an agent rewrote to PAUSED while it still runs
    return st


def _loop_left(ctx: Ctx, task_id: str, path: Path, limits: dict[str, Any]) -> None:
    """Refuse a loop that cannot go on: its saved state unreadable, or its limits spent."""
    where = ctx.project.rel(path)
    try:
        data = loopstate.load_saved(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"cannot resume task {task_id}: {where} is unreadable ({exc})", hint=f"start it over: orch retry {task_id}"
        ) from None
    spent = loopstate.left(data, loopstate.limits({"loop": limits}))
    if spent:
        raise InputError(
            f"task {task_id} has no iteration left to resume: {spent}",
            hint=f"start it over: orch retry {task_id} --note TEXT (or raise the limits in .orch/plan.md, "
            f"then orch clean {task_id} --force and orch run {task_id})",
        )


def _words(cap: budget.Budget) -> str:
    parts = []
    if cap.tokens:
        parts.append(f"{cap.tokens:,} tokens")
    if cap.usd:
        parts.append(f"${cap.usd:g}")
    return " and ".join(parts) or "none"


def _more(spent: budget.Spent, cap: budget.Budget) -> str:
    """A budget twice what was spent (of the part that ran out), as the hint's example."""
    token_share = spent.tokens / cap.tokens if cap.tokens else 0.0
    usd_share = (spent.cost_usd or 0.0) / cap.usd if cap.usd else 0.0
    if cap.usd and usd_share >= token_share:
        return f"${max((spent.cost_usd or 0) * 2, cap.usd * 2):.2f}"
    tokens = max(spent.tokens * 2, (cap.tokens or 0) * 2, 1000)
    return f"{tokens // 1000}k tokens" if tokens >= 10_000 else f"{tokens} tokens"
