"""What ``orch ui`` shows, read from the files every command reads: one dict per page load.

Nothing here is kept between requests: each call opens the status files, the inbox, the locks and
the plan again (through their caches, as ``orch status`` does). Every string in the result may come
from an agent (titles, reasons, file names, log lines): the HTML side escapes all of it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from orch.core import git, refs, state
from orch.core.context import Ctx
from orch.core.errors import GitError
from orch.core.plan import ID_RE

# Card groups, in the order the page shows them: (heading, states).
GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Running", frozenset({"RUNNING", "QUEUED"})),
    ("Waiting for a person", frozenset({"BLOCKED", "PAUSED", "AWAITING_APPROVAL", "HUMAN"})),
    ("Stuck", frozenset({"FAILED", "CRASHED", "SCOPE_VIOLATION", "LOCK_VIOLATION", "QUARANTINED", "CONFLICT",
                         "REVERTED"})),
    ("Done, to merge", frozenset({"SUCCESS", "SKIPPED"})),
    ("Pending", frozenset({"PENDING"})),
    ("Merged", frozenset({"MERGED", "CLEANED"})),
)  # fmt: skip
ACTIVE = frozenset({"RUNNING", "QUEUED"})
BLOCKED = frozenset({"BLOCKED", "FAILED", "CRASHED", "CONFLICT", "REVERTED"}) | state.VIOLATIONS
PRESSURES = ("blocking", "routing around", "clear")
LOG_TAIL = 64 * 1024
DIFF_CAP = 1 << 20  # bytes of a diff shown; the rest is git diff BASE TIP away
DIFFS_KEPT = 16
_diffs: dict[tuple[str, str, str], tuple[str, bool]] = {}  # (root, base, tip) -> (text, cut): a commit never changes


def snapshot(ctx: Ctx) -> dict[str, Any]:
    """Everything the dashboard's main page shows (also served as ``/api/state.json``); the status
    files read once for all its readers (status rows, lock pressure, the inbox, the topology)."""
    from orch.views import levels

    with state.read_once(), levels.list_once():
        return _snapshot(ctx)


def _snapshot(ctx: Ctx) -> dict[str, Any]:
    from orch.inbox import decide
    from orch.verify import lockcmd
    from orch.views import status as status_view

    rows = status_view.rows(ctx)
    statuses = state.read_all(ctx.project, ctx.store)
    locks = lockcmd.pressure(ctx)
    inbox = [{**i, "answer_with": decide.answer_command(i), "phrase": decide.phrase(i)} for i in decide.waiting(ctx)]
    engaged: dict[str, list[dict[str, Any]]] = {}
    counts = dict.fromkeys(PRESSURES, 0)  # per lock, as orch topology counts (topology.pressure)
    for lock in locks:
        said = {t["pressure"] for t in lock["tasks"]}
        counts[next((p for p in PRESSURES[:2] if p in said), "clear")] += 1
        for t in lock["tasks"]:
            if t["pressure"] == "clear":
                continue
            st = statuses.get(t["id"]) or {}
            since = (st.get("verdict") or {}).get("at") if t["pressure"] == "blocking" else None
            engaged.setdefault(t["id"], []).append(
                {
                    "id": lock["id"],
                    "mode": lock["mode"],
                    "kind": lock["kind"],
                    "pressure": t["pressure"],
                    "since": since or st.get("started_at") or st.get("created_at"),
                }
            )
    from orch.views import levels

    leveled = levels.leveled_files(ctx)  # once, not once per task
    tasks = []
    for row in rows:
        task = ctx.plan.get(row["id"])
        level, why = level_of_task(ctx, task, leveled)
        tasks.append(
            {
                **{k: row[k] for k in ("id", "title", "state", "reason", "iteration", "max_iterations", "iterations")},
                **{k: row[k] for k in ("usage", "budget", "started_at", "agent", "verdict", "strategy")},
                "scope": task.scope if task is not None else None,
                "level": level,
                "level_why": why,
                "locks": engaged.get(row["id"], []),
                "has_branch": bool((statuses.get(row["id"]) or {}).get("branch")),
            }
        )
    groups = []
    for heading, states in GROUPS:
        ids = [t["id"] for t in tasks if t["state"] in states]
        if ids:
            groups.append({"name": heading, "tasks": ids})
    known = set().union(*(s for _, s in GROUPS))
    other = [t["id"] for t in tasks if t["state"] not in known]
    if other:
        groups.append({"name": "Other", "tasks": other})
    return {
        "project": ctx.project.root.name,
        "counts": {
            "active": sum(1 for t in tasks if t["state"] in ACTIVE),
            "blocked": sum(1 for t in tasks if t["state"] in BLOCKED),
            "waiting": len(inbox),
            "locks": len(locks),
            "tasks": len(tasks),
        },
        "pressure": counts,
        "tasks": tasks,
        "groups": groups,
        "locks": locks,
        "requirements": [lk for lk in locks if lk["kind"] == "requirement"],
        "levels": levels_overview(ctx, tasks),
        "topology": topology(ctx),
        "inbox": inbox,
    }


def level_of_task(ctx: Ctx, task: Any, leveled: list[Any] | None = None) -> tuple[str, str]:
    """A task's level and why (its ``level:`` field, the paths its scope reaches, or the default);
    ``leveled``: ``levels.leveled_files``, worked out once for every task."""
    from orch.views import levels

    if task is None:
        return levels.DEFAULT, "not in the plan any more"
    return levels.task_level(ctx, task, leveled=leveled)


def levels_overview(ctx: Ctx, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The configured globs and how many tasks are at each level."""
    from orch.views import levels

    by_level = dict.fromkeys(levels.LEVELS, 0)
    for t in tasks:
        by_level[t["level"]] = by_level.get(t["level"], 0) + 1
    return {"levels": list(levels.LEVELS), "rules": levels.list_levels(ctx), "tasks": by_level}


def topology(ctx: Ctx) -> dict[str, Any]:
    """The trust topology tree (``orch topology``'s)."""
    from orch.views import topology as topo

    return topo.build(ctx)


def diff(ctx: Ctx, task_id: str) -> dict[str, Any]:
    """A task's change: its branch tip against the commit it was spun from (``taskchange.span``: the
    manifest's base, checked as a commit; plumbing only: no textconv, no external diff), at most
    ``DIFF_CAP`` bytes (git is stopped there), kept by (base, tip) for the next request."""
    from orch.views import taskchange

    _check_id(task_id)
    st = state.read(ctx.project, ctx.store, task_id, refresh=False) or {}
    found = taskchange.span(ctx, task_id, st)
    if found is None:
        tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=ctx.project.root)
        return {"task": task_id, "base": None, "tip": tip, "text": "", "cut": False}
    base, tip = found
    key = (str(ctx.project.root), base, tip)
    held = _diffs.get(key)
    if held is None:
        args = ["diff-tree", "-p", "--no-color", "--no-renames", "--end-of-options", base, tip, "--"]
        try:
            held = git.Stream(args, cwd=ctx.project.root).head(DIFF_CAP)
        except GitError as exc:
            return {"task": task_id, "base": base, "tip": tip, "text": f"(git diff-tree failed: {exc})", "cut": False}
        while len(_diffs) >= DIFFS_KEPT:
            _diffs.pop(next(iter(_diffs)), None)
        _diffs[key] = held
    text, cut = held
    return {"task": task_id, "base": base, "tip": tip, "text": text, "cut": cut, "cut_at": f"{DIFF_CAP >> 20} MB"}


def log_tail(ctx: Ctx, task_id: str, limit: int = LOG_TAIL) -> dict[str, Any]:
    """The end of a task's ``agent.log``, read as an agent's file: a plain file only, never through a
    link or a fifo; undecodable bytes replaced."""
    _check_id(task_id)
    path = ctx.project.task_dir(task_id) / "agent.log"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return {"task": task_id, "text": "", "size": 0, "note": "no agent.log yet"}
    except OSError as exc:
        return {"task": task_id, "text": "", "size": 0, "note": f"not read: {exc.strerror}"}
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return {"task": task_id, "text": "", "size": 0, "note": "not read: not a plain file"}
        start = max(0, info.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        raw = os.read(fd, limit)
    finally:
        os.close(fd)
    text = raw.decode("utf-8", errors="replace")
    if start:
        text = text.partition("\n")[2]  # from the first whole line
    return {"task": task_id, "text": text, "size": info.st_size, "note": f"last {len(raw)} bytes" if start else ""}


def task_detail(ctx: Ctx, task_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task's card data (from ``data``, a ``snapshot``, when given), its diff and its log."""
    _check_id(task_id)
    data = snapshot(ctx) if data is None else data
    card = next((t for t in data["tasks"] if t["id"] == task_id), None)
    if card is None:
        ctx.plan.require(task_id)  # raises with a did-you-mean
    return {"task": card, "diff": diff(ctx, task_id), "log": log_tail(ctx, task_id), "counts": data["counts"]}


def _check_id(task_id: str) -> None:
    from orch.core.errors import InputError

    if not ID_RE.fullmatch(task_id):
        raise InputError(f"not a task id: {task_id!r}")
