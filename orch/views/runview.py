"""``orch run``'s live view: one row per followed task, its ``orch status`` row with the loop's last
event and the time it has run (``orch.cli.live`` draws them)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orch.core import eventlog, state
from orch.core.context import Ctx
from orch.core.errors import OrchError


def rows(ctx: Ctx, ids: list[str], last: Mapping[str, eventlog.Event]) -> list[dict[str, Any]]:
    """The followed tasks' rows, in the order of ``ids``; ``last``: each task's last loop event seen.

    Each is the task's ``orch status`` row (usage and budget included) plus ``last_event``
    (``ITERATE FAIL sig=ab12cd9f0e1d``, or None) and ``elapsed_seconds`` (from its start to its end, or
    to now while it runs). A status ``orch status`` cannot read (another task's, broken) does not stop
    the view: the rows are then made from the followed tasks' own statuses.
    """
    from orch.views import status

    try:
        known = {r["id"]: r for r in status.rows(ctx)}
    except OrchError:
        known = {}
    out = []
    for task_id in ids:
        st = state.read(ctx.project, ctx.store, task_id, refresh=False) or {}
        row = dict(known.get(task_id) or _bare(task_id, st))
        event = last.get(task_id)
        row["last_event"] = f"{event.action} {event.result}".rstrip() if event else None
        ended = st.get("finished_at") if st.get("state") != "RUNNING" else None  # not an earlier run's
        row["elapsed_seconds"] = _elapsed(st.get("started_at"), ended)
        out.append(row)
    return out


def _bare(task_id: str, st: state.Status) -> dict[str, Any]:
    keys = ("iteration", "max_iterations", "strategy", "iterations", "cost_usd")
    return {"id": task_id, "state": st.get("state", "PENDING"), "tokens": None, **{k: st.get(k) for k in keys}}


def _elapsed(started: str | None, finished: str | None) -> float | None:
    start = _when(started)
    if start is None:
        return None
    end = _when(finished) if finished else None
    return max(0.0, (end if end is not None else time.time()) - start)


def _when(stamp: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else None
    except ValueError:
        return None
