"""``orch view``: each task at its level (``orch.views.levels``), from coarse to fine.

Each level adds to the coarser ones: a card at ``component`` holds the ``goal``, ``feature`` and
``component`` sections.

* ``goal``: progress only: the state, iteration n/m and strategy, the checks of the last iteration
  (passing or not), the time and what it cost (``status.yaml``'s usage and budget, ``loop.json``).
* ``feature``: completion and decisions: the acceptance result, the verdict, the task's inbox items
  and how each was answered, the blocker question (``BLOCKER_REPORT.md``), the strategy shifts.
* ``component``: the architectural change from the task's base to its branch tip
  (``orch.views.taskchange``): folders and modules touched, files added or deleted, top-level
  definitions added or removed, dependency manifests changed, and the lock pressure on the task.
* ``code``: the diff itself, with the lines inside locked regions and the paths under locks marked.

Every file read here is anyone's (an agent can write the run folder): what does not parse is left
out, never a reason to fail the view.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from orch.agents.taskfiles import read_plain
from orch.core import eventlog, state
from orch.core import inbox as inbox_mod
from orch.core.context import Ctx
from orch.core.plan import ID_RE, LEVELS
from orch.core.text import printable
from orch.views import levels as levels_mod

SCHEMA_VERSION = 1
MAX_LOOP_JSON = 16 << 20  # loop.json holds each failed iteration's output excerpt
MAX_REPORT = 4 << 20


def view(ctx: Ctx, ids: list[str] | None, level: str | None = None) -> list[dict[str, Any]]:
    """A card per task of ``ids`` (every task of the plan, and any spun task it lost, when empty), each
    at ``level`` when given, else at its own level. Unknown ids and levels raise ``InputError``."""
    if level is not None:
        levels_mod.check_level(level)
    statuses = state.read_all(ctx.project, ctx.store)
    plan = ctx.plan
    for task_id in ids or []:
        if plan.get(task_id) is None and task_id not in statuses:
            plan.require(task_id)  # raises, with a did-you-mean
    chosen = list(dict.fromkeys(ids or [*plan.ids(), *(i for i in statuses if plan.get(i) is None)]))
    leveled = levels_mod.leveled_files(ctx) if level is None else []
    events = eventlog.read(ctx.project.log_path)
    items = inbox_mod.read_all(ctx.project, ctx.store)
    pressure: list[dict[str, Any]] | None = None
    cards = []
    for task_id in chosen:
        task = plan.get(task_id)
        st = statuses.get(task_id) or {}
        if level is not None:
            at, why = level, "asked for with --level"
        elif task is not None:
            at, why = levels_mod.task_level(ctx, task, leveled=leveled)
        else:
            at, why = levels_mod.DEFAULT, "not in the plan any more: the default"
        rank = LEVELS.index(at)
        card: dict[str, Any] = {
            "id": task_id,
            "title": printable(task.title) if task else "(not in the plan any more)",
            "state": st.get("state", "PENDING"),
            "level": at,
            "level_why": why,
            "scope": task.scope if task else None,
            "goal": progress(ctx, task_id, st),
        }
        if rank >= 1:
            card["feature"] = feature(ctx, task_id, st, events, items)
        if rank >= 2:
            from orch.views import taskchange

            if pressure is None:
                from orch.verify import lockcmd

                pressure = lockcmd.pressure(ctx)
            card["component"] = taskchange.component(ctx, task_id, st, pressure)
        if rank >= 3:
            from orch.views import taskchange

            card["code"] = taskchange.code(ctx, task_id, st)
        cards.append(card)
    return cards


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        began = datetime.fromisoformat(str(start).replace("Z", "+00:00")).timestamp()
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00")).timestamp() if end else time.time()
    except (TypeError, ValueError):
        return None
    return max(0.0, round(ended - began, 1))


def loop_state(ctx: Ctx, task_id: str) -> dict[str, Any]:
    """``loop.json`` as far as it reads (an empty dict when it does not)."""
    if not ID_RE.fullmatch(task_id):
        return {}
    try:  # an agent's file: a plain one only (a fifo would hang the view), capped
        data = json.loads(read_plain(ctx.project.task_dir(task_id) / "loop.json", MAX_LOOP_JSON))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def history(loop: dict[str, Any]) -> list[dict[str, Any]]:
    """``loop.json``'s iterations that failed, as far as they read."""
    past = loop.get("history")
    return [h for h in past if isinstance(h, dict)] if isinstance(past, list) else []


def _ran(entry: dict[str, Any]) -> list[list[Any]]:
    """What one iteration ran: ``[name, exit code]`` pairs."""
    ran = entry.get("ran")
    return [r for r in ran if isinstance(r, list) and len(r) == 2] if isinstance(ran, list) else []


def progress(ctx: Ctx, task_id: str, st: state.Status) -> dict[str, Any]:
    """The goal level: state, iteration n/m, checks passing, time, cost."""
    loop = loop_state(ctx, task_id)
    past = history(loop)
    checks: list[dict[str, Any]] = []
    last = past[-1] if past else None
    if isinstance(st.get("accept"), dict):  # written when a run passes
        checks.append({"name": "accept", "passed": st["accept"].get("exit_code") == 0})
    elif last is not None:  # else the last failed iteration: what it ran, and how each ended
        checks += [{"name": str(name), "passed": code == 0} for name, code in _ran(last) if name != "agent"]
    usage: dict[str, Any] = st["usage"] if isinstance(st.get("usage"), dict) else {}
    tokens = usage.get("tokens")
    if tokens is None and (usage.get("input") or usage.get("output")):
        tokens = int(usage.get("input") or 0) + int(usage.get("output") or 0)
    elapsed = loop.get("elapsed")
    return {
        "state": st.get("state", "PENDING"),
        "reason": st.get("reason"),
        "iteration": st.get("iteration"),
        "max_iterations": st.get("max_iterations"),
        "strategy": st.get("strategy"),
        "checks": checks,
        "checks_passing": sum(c["passed"] for c in checks),
        "started_at": st.get("started_at"),
        "finished_at": st.get("finished_at"),
        "seconds": _seconds(st.get("started_at"), st.get("finished_at")) if st.get("started_at") else None,
        "agent_seconds": elapsed if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) else None,
        "tokens": tokens,
        "cost_usd": usage.get("cost_usd"),
        "budget": st.get("budget"),
    }


def feature(
    ctx: Ctx, task_id: str, st: state.Status, events: list[eventlog.Event], items: list[inbox_mod.Item]
) -> dict[str, Any]:
    """The feature level: acceptance, verdict, inbox items and answers, blocker question, strategy shifts."""
    accept = st.get("accept") if isinstance(st.get("accept"), dict) else None
    if accept is None:  # a run that ended without passing keeps its last accept in loop.json's history
        task = ctx.plan.get(task_id)
        for h in reversed(history(loop_state(ctx, task_id))):
            ran = [r for r in _ran(h) if r[0] == "accept"]
            if ran:
                accept = {"command": task.accept if task else None, "exit_code": ran[-1][1], "log": None}
                break
    verdict = st.get("verdict") if isinstance(st.get("verdict"), dict) else None
    shifts = [
        {"at": e.ts, "iteration": _number(e.iteration), "why": printable(e.result)}
        for e in events
        if e.task == task_id and e.action == "STRATEGY_SHIFT"
    ]
    return {
        "accept": None
        if accept is None
        else {"command": accept.get("command"), "passed": accept.get("exit_code") == 0, "log": accept.get("log")},
        "verdict": None
        if verdict is None
        else {
            "result": verdict.get("result"),
            "sha": verdict.get("sha"),
            # as ``judge.Verdict.mergeable``: no hard violation, no soft lock waiting for an ack
            "mergeable": not any(
                isinstance(v, dict) and v.get("mode") == "hard" for v in verdict.get("violations") or []
            )
            and not verdict.get("pending_acks"),
            "violations": [
                {"path": v.get("path"), "rule": v.get("rule"), "lock": v.get("lock")}
                for v in verdict.get("violations") or []
                if isinstance(v, dict)
            ],
            "pending_acks": list(verdict.get("pending_acks") or []),
        },
        "merge": st["merge"].get("outcome") if isinstance(st.get("merge"), dict) else None,
        "inbox": [
            {
                "id": i["id"],
                "kind": i.get("kind"),
                "asked": printable(str(i.get("asked") or "")),
                "state": i.get("state"),
                "answered_by": i.get("answered_by"),
                "answered_at": i.get("answered_at"),
                "note": i.get("note"),
                "outcome": i.get("outcome"),
            }
            for i in items
            if i.get("task") == task_id
        ],
        "blocker": blocker(ctx, task_id),
        "strategy_shifts": shifts,
    }


def _number(iteration: str) -> int | None:
    """``T1.i3`` -> 3 (an event of the task as a whole: None)."""
    head, sep, n = iteration.rpartition(".i")
    return int(n) if sep and n.isdigit() else None


def blocker(ctx: Ctx, task_id: str) -> dict[str, Any] | None:
    """From ``BLOCKER_REPORT.md``: why orch stopped the task and the question it leaves a person (the
    report's hypothesis: the agent's own question when it asked one)."""
    if not ID_RE.fullmatch(task_id):
        return None
    path = ctx.project.task_dir(task_id) / "BLOCKER_REPORT.md"
    try:  # orch writes a plain file there: a link could show any file of the person's, a fifo hang
        text = read_plain(path, MAX_REPORT).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
    if not text:
        return None
    said = next((ln for ln in text.splitlines() if ln.startswith("orch stopped this task: ")), "")
    why = said[len("orch stopped this task: ") :].removesuffix(" It needs a person.").rstrip(".")
    _, _, rest = text.partition("## Hypothesis of the root cause")
    question = rest.split("\n## ", 1)[0].strip()
    return {"report": ctx.project.rel(path), "why": printable(why), "question": printable(question)}
