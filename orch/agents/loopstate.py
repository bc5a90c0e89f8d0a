"""The loop's state between runs: ``run/tasks/<id>/loop.json``, written before and after every
iteration, read back by a resumed supervisor (``orch resume``).

It holds the counts (iteration, strategy, iterations in this strategy), the wall clock spent, the
attempts kept, the history the briefs and the blocker report quote, and the base brief. It is read
as anyone's file (an agent without the box can write the run folder): checked, and a resume never
gives the loop more than its limits leave (``left``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orch.agents import loopnotes
from orch.core.errors import OrchError

SAVED = "loop.json"
PER_STRATEGY, STRATEGIES, TOTAL = 5, 3, 10  # the field's defaults


def limits(launch: dict[str, Any]) -> dict[str, Any]:
    """The loop's limits as frozen at spin (the strictest of config, agent, plan task and flags), the
    field's defaults where none of them set one."""
    lim = launch.get("loop") or {}
    return {
        "max_iterations": int(lim.get("max_iterations") or TOTAL),
        "max_per_strategy": int(lim.get("max_per_strategy") or PER_STRATEGY),
        "max_strategies": int(lim.get("max_strategies") or STRATEGIES),
        "task_timeout": float(lim["task_timeout"]) if lim.get("task_timeout") else None,
    }


def save(loop: Any) -> None:  # an orch.agents.loop.Loop
    data = {
        "iteration": loop.iteration,
        "strategy": loop.strategy,
        "in_strategy": loop.in_strategy,
        "elapsed": round(loop.elapsed(), 3),
        "attempts": loop.attempts,
        "prev_tree": loop.prev_tree,
        "base_brief": loop.base_brief,
        "spent": loop.meter.before.as_json(),
        "history": [e.saved() for e in loop.history],
    }
    loop._write(loop.f.folder / SAVED, json.dumps(data, indent=1) + "\n", append=False)


def load_saved(path: Path) -> dict[str, Any]:
    """``loop.json`` read and checked (any process that can write the run folder could have)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for key in ("iteration", "strategy", "in_strategy"):
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool) or data[key] < 0:
            raise ValueError(f"'{key}' is not a count")
    elapsed = data.get("elapsed", 0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        raise ValueError("'elapsed' is not a number of seconds")
    if not isinstance(data.get("history") or [], list) or not isinstance(data.get("attempts") or [], list):
        raise ValueError("'history' and 'attempts' must be lists")
    data["history"] = [loopnotes.Entry.load(e) for e in data.get("history") or []]  # raises on a bad entry
    return data


def left(data: dict[str, Any], limits: dict[str, Any]) -> str | None:
    """Why a loop saved as ``data`` has nothing left to run under ``limits`` (None: it has)."""
    if data["iteration"] >= limits["max_iterations"]:
        return f"its {data['iteration']} iterations used the limit of {limits['max_iterations']}"
    if data["in_strategy"] >= limits["max_per_strategy"] and data["strategy"] >= limits["max_strategies"]:
        return f"its last strategy ({data['strategy']} of {limits['max_strategies']}) used all its iterations"
    timeout = limits.get("task_timeout")
    if timeout and float(data.get("elapsed") or 0) >= float(timeout):
        return f"its wall clock ({float(data.get('elapsed') or 0):.0f}s) used the task's timeout of {timeout:g}s"
    return None


def restore(loop: Any) -> None:
    """Go on from the saved state; a strategy whose iterations are spent ends first (a shift)."""
    path = loop.f.folder / SAVED
    try:
        data = load_saved(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        where = loop.project.rel(path)
        raise OrchError(f"cannot resume task {loop.task_id}: {where} is unreadable ({exc})") from None
    lim = limits(loop.launch)
    spent = left(data, lim)
    if spent:
        raise OrchError(f"cannot resume task {loop.task_id}: {spent}")
    loop.iteration, loop.strategy, loop.in_strategy = data["iteration"], data["strategy"], data["in_strategy"]
    loop.elapsed_before = float(data.get("elapsed") or 0)
    loop.attempts = [str(a) for a in data.get("attempts") or []]
    loop.prev_tree = data.get("prev_tree") or loop.prev_tree
    loop.base_brief = str(data.get("base_brief") or loop.base_brief)
    loop.history = data["history"]
    if loop.in_strategy >= loop.per_strategy:  # it paused on its strategy's last iteration: shift now
        loop.shift(f"{loop.per_strategy} iterations without a pass")
