"""``orch timeline``: the event log read back as spans, one row of them per task.

Which agent ran, what it saw, what it returned, what orch did with it: each task's spans (queued,
planning, each iteration, verify, waiting for a person, merge) on one time axis. An iteration links
its brief (``context.md`` of its run: the run folder, or ``run-<n>/`` once a retry moved it), the
feedback it was given (the previous iteration's ``iter-<n>.log``), what it returned (the agent's exit,
its snapshot and the diffstat from the work before it, the accept result, its ``iter-<n>.log``) and
orch's verdict. ``orch.views.timelineout`` draws them; ``schemas/timeline.schema.json`` is their JSON.

The log is anyone's text: lines from older versions, unknown actions and tasks that never ended are
read as far as they go, never refused. Every string taken from the log stays text (``printable``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.core import eventlog, git
from orch.core.context import Ctx
from orch.core.errors import OrchError
from orch.core.plan import ID_RE
from orch.core.text import printable

SCHEMA_VERSION = 1
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_SHA = re.compile(r"[0-9a-f]{7,40}")
_ENDS = {"DONE"}  # a run's last word; a CRASHED CHECK (the supervisor gone) ends one too
# Actions the timeline reads; any other is counted, not shown (older and newer versions write more).
KNOWN = frozenset(
    {
        "SPIN", "QUEUED", "QUEUE", "DEQUEUE", "START", "RESUME", "RETRY", "TDD_GATE", "PLANNING", "PLAN", "EXIT",
        "SNAPSHOT", "ACCEPT", "ITERATE", "STRATEGY_SHIFT", "DONE", "VERIFY", "ASK", "APPROVE", "REJECT",
        "MERGE_START", "MERGE", "TEST", "MERGE_DONE", "MERGE_ROLLBACK", "CHECK", "STOP", "REFUSE",
    }
)  # fmt: skip


@dataclass
class _Task:
    id: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    state: str | None = None
    run: int = 0
    iteration: int = 0  # the last iteration number seen in this run
    base: str | None = None  # the commit the run started from (SPIN's base=)
    last_sha: str | None = None  # the work before the next iteration: its diffstat's left side
    current: dict[str, Any] | None = None  # the iteration under way
    next_from: str | None = None  # a failed iteration's end: the next one starts there
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # inbox item id -> its span
    queued: dict[str, Any] | None = None
    merge: dict[str, Any] | None = None


def build(ctx: Ctx, ids: list[str] | None = None) -> dict[str, Any]:
    """The timeline of ``ids`` (every task in the log when None or empty); unknown ids are refused
    (``InputError`` with a did-you-mean, exit 3)."""
    events = eventlog.read(ctx.project.log_path)
    tasks, other = _read(events)
    if ids:
        for task_id in ids:
            if task_id not in tasks:
                _require_known(ctx, task_id)
    chosen = [tasks[i] for i in dict.fromkeys(ids or tasks) if i in tasks]
    titles = _titles(ctx)
    for t in chosen:
        _links(ctx, t)
    stamps = [s[k] for t in chosen for s in t.spans for k in ("start", "end") if s.get(k)]
    return {
        "version": SCHEMA_VERSION,
        "start": min(stamps, default=None),
        "end": max(stamps, default=None),
        "tasks": [
            {"id": t.id, "title": printable(titles.get(t.id, "")), "state": t.state, "spans": t.spans} for t in chosen
        ],
        "other_events": other,
    }


def _require_known(ctx: Ctx, task_id: str) -> None:
    """A task the log never names is fine when the plan or the run state knows it (it has not run
    yet); else the plan's own refusal (exit 3, with a did-you-mean)."""
    if ID_RE.fullmatch(task_id) and (ctx.project.run_dir / "tasks" / task_id).is_dir():
        return
    ctx.plan.require(task_id)


def _titles(ctx: Ctx) -> dict[str, str]:
    try:
        return {t.id: t.title for t in ctx.plan.tasks}
    except OrchError:  # a broken plan still leaves the log to read
        return {}


def _read(events: list[eventlog.Event]) -> tuple[dict[str, _Task], dict[str, int]]:
    tasks: dict[str, _Task] = {}
    other: dict[str, int] = {}
    merging: list[str] = []
    for e in events:
        if not _TS.fullmatch(e.ts):
            other["(unreadable time)"] = other.get("(unreadable time)", 0) + 1
            continue
        if e.action not in KNOWN:
            key = printable(e.action)[:40]
            other[key] = other.get(key, 0) + 1
            continue
        if e.task is None:
            merging = _ceremony(e, tasks, merging)
            continue
        if not ID_RE.fullmatch(e.task):
            other["(bad task id)"] = other.get("(bad task id)", 0) + 1
            continue
        t = tasks.setdefault(e.task, _Task(e.task))
        if e.state not in ("-", "INBOX", "GATE", ""):
            t.state = printable(e.state)
        _event(t, e)
    return tasks, other


def _span(kind: str, start: str, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "start": start, "end": None, "open": True, **more}


def _close(span: dict[str, Any], ts: str, outcome: str | None = None) -> None:
    span.update(end=ts, open=False)
    if outcome is not None:
        span["outcome"] = printable(outcome)


def _iteration_number(e: eventlog.Event) -> int | None:
    m = re.fullmatch(r".*\.i(\d{1,6})", e.iteration)
    return int(m[1]) if m else None


def _open_iteration(t: _Task, start: str, number: int | None = None) -> dict[str, Any]:
    t.iteration = number if number is not None else t.iteration + 1
    span = _span("iteration", start, iteration=t.iteration, run=max(t.run, 1), saw={}, returned={}, did={})
    span["returned"]["from_sha"] = t.last_sha or t.base
    t.spans.append(span)
    t.current, t.next_from = span, None
    return span


def _iteration_for(t: _Task, e: eventlog.Event) -> dict[str, Any]:
    """The iteration this event belongs to: the one under way, or the next one (its start is the
    previous one's end: the loop starts it at once)."""
    number = _iteration_number(e)
    cur = t.current
    if cur is not None and (number is None or number == cur["iteration"]):
        return cur
    if cur is not None:
        _close(cur, e.ts)
    return _open_iteration(t, t.next_from or e.ts, number)


def _event(t: _Task, e: eventlog.Event) -> None:
    result = printable(e.result)
    arts = [printable(a) for a in e.artifacts]
    a = e.action
    span: dict[str, Any] | None
    if a in ("SPIN", "RETRY"):
        t.run += 1
        t.iteration, t.current, t.next_from = 0, None, None
        m = re.search(r"base=([0-9a-f]{7,40})", e.result)
        if m:
            t.base = m[1]
        t.last_sha = t.base  # a retry starts over from the task's base too
    elif a in ("QUEUED", "QUEUE"):
        t.queued = _span("queued", e.ts, label=result)
        t.spans.append(t.queued)
    elif a == "DEQUEUE" and t.queued is not None:
        _close(t.queued, e.ts, "dequeued")
        t.queued = None
    elif a in ("START", "RESUME"):
        if t.queued is not None:
            _close(t.queued, e.ts)
            t.queued = None
        if t.current is not None:  # a run that never said DONE (killed): the new one starts here
            _close(t.current, e.ts)
        span = _open_iteration(t, e.ts)
        span["agent"] = result
    elif a == "PLANNING":
        span = _span("planning", e.ts, label=result, links=arts)
        t.spans.append(span)
    elif a == "PLAN":
        for s in reversed(t.spans):
            if s["kind"] == "planning" and s["open"]:
                _close(s, e.ts, result)
                break
    elif a == "TDD_GATE":
        if t.current is not None:
            t.current["did"]["tdd_gate"] = result
    elif a == "EXIT":
        _iteration_for(t, e)["returned"]["exit"] = result
    elif a == "SNAPSHOT":
        span = _iteration_for(t, e)
        if _SHA.fullmatch(e.result):
            span["returned"]["snapshot"] = e.result
            t.last_sha = e.result
    elif a == "ACCEPT":
        span = _iteration_for(t, e)
        span["returned"]["accept"] = result
        span["returned"]["accept_log"] = arts[0] if arts else None
        if result == "PASS":
            span["did"]["verdict"] = "PASS"
    elif a == "ITERATE":
        span = _iteration_for(t, e)
        span["did"]["verdict"] = result  # its log is found in the run folder (_links), not taken from here
        _close(span, e.ts, "FAIL")
        t.current, t.next_from = None, e.ts
    elif a == "STRATEGY_SHIFT":
        last = next((s for s in reversed(t.spans) if s["kind"] == "iteration"), None)
        if last is not None:
            last["did"]["strategy_shift"] = result
        t.last_sha = t.base  # the worktree went back to the task's base
    elif a in ("REFUSE", "STOP"):
        if t.current is not None:
            t.current["did"].setdefault("notes", []).append(f"{a} {result}")
    elif a in _ENDS or (a == "CHECK" and e.state == "CRASHED"):
        said = f"{printable(e.state)} {result}".strip()
        if t.current is not None:
            t.current["did"]["end"] = said
            _close(t.current, e.ts, printable(e.state))
        elif t.next_from is not None:  # the loop ended after a failed iteration (BLOCKED, PAUSED)
            last = next((s for s in reversed(t.spans) if s["kind"] == "iteration"), None)
            if last is not None:
                last["did"]["end"] = said
        t.current, t.next_from = None, None
    elif a == "VERIFY":
        _verify(t, e, result)
    elif a == "ASK":
        item = e.result.split(" ", 1)[0].rstrip(":")
        t.waiting[item] = _span("waiting", e.ts, item=printable(item), label=result)
        t.spans.append(t.waiting[item])
    elif a in ("APPROVE", "REJECT"):
        item = e.result.split(" ", 1)[0]
        span = t.waiting.pop(item, None)
        if span is None:  # asked before the log began, or by an older version
            span = _span("waiting", e.ts, item=printable(item), label="")
            t.spans.append(span)
        _close(span, e.ts, a.lower() + "d" if a == "APPROVE" else "rejected")
        span["answer"] = result
    elif a == "MERGE":
        span = t.merge
        if span is None:  # decided before the ceremony began (triage: a conflict, a quarantine)
            span = _span("merge", e.ts, tests=[])
            t.spans.append(span)
        _close(span, e.ts, printable(e.state))
        span["detail"] = result
        if arts:
            span["log"] = arts[0]
        t.merge = None


def _verify(t: _Task, e: eventlog.Event, result: str) -> None:
    sha = re.search(r"sha=([0-9a-f]{7,40})", e.result)
    last = t.spans[-1] if t.spans else None
    same = last is not None and last["kind"] == "verify" and last.get("sha") == (sha[1] if sha else None)
    if same and last is not None and last["end"] == e.ts:  # the ceremony's triage, at once: one span
        return
    span = _span("verify", e.ts, sha=sha[1] if sha else None, label=result)
    _close(span, e.ts, result.split(" ", 1)[0])
    t.spans.append(span)


def _ceremony(e: eventlog.Event, tasks: dict[str, _Task], merging: list[str]) -> list[str]:
    """The ceremony's task-less events: who is in its queue, their test runs, its end."""
    if e.action == "MERGE_START":
        queue = e.result.split("queue: ", 1)[1] if "queue: " in e.result else ""
        merging = [q for q in (s.strip() for s in queue.split(",")) if ID_RE.fullmatch(q)]
        for q in merging:
            t = tasks.setdefault(q, _Task(q))
            t.merge = _span("merge", e.ts, tests=[])
            t.spans.append(t.merge)
    elif e.action == "TEST":
        for q in merging:
            got = tasks.get(q)
            if got is not None and got.merge is not None and e.result.startswith(f"{q}:"):
                got.merge["tests"].append(
                    {"result": printable(e.result), "log": printable(e.artifacts[0]) if e.artifacts else None}
                )
    elif e.action in ("MERGE_DONE", "MERGE_ROLLBACK"):
        for q in merging:
            got = tasks.get(q)
            if got is not None and got.merge is not None:
                _close(got.merge, e.ts, "REVERTED" if e.action == "MERGE_ROLLBACK" else None)
                got.merge = None
        merging = []
    return merging


def _links(ctx: Ctx, t: _Task) -> None:
    """What each iteration saw and returned, as files that exist and the diffstat git gives."""
    folder = ctx.project.task_dir(t.id)
    for span in t.spans:
        if span["kind"] != "iteration":
            continue
        run = int(span.get("run") or 1)
        where = folder if run >= t.run else folder / f"run-{run}"
        n = int(span["iteration"])
        brief = where / "context.md"
        span["saw"] = {
            "brief": _rel(ctx, brief),
            "feedback": _rel(ctx, where / f"iter-{n - 1}.log") if n > 1 else None,
        }
        got = span["returned"]
        own = where / f"iter-{n}.log"  # read only orch's own file: the log's paths are anyone's text
        if _rel(ctx, own):
            got["log"] = _rel(ctx, own)
            why = _first_line(own)
            if why:
                span["did"]["why"] = why
        got["diffstat"] = _diffstat(ctx, got.get("from_sha"), got.get("snapshot"))


def _rel(ctx: Ctx, path: Path) -> str | None:
    return printable(ctx.project.rel(path)) if path.is_file() and not path.is_symlink() else None


def _first_line(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            line = handle.readline(400).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return printable(line) or None


def _diffstat(ctx: Ctx, before: str | None, after: str | None) -> str | None:
    if not (before and after and _SHA.fullmatch(before) and _SHA.fullmatch(after)):
        return None
    r = git.run(["diff-tree", "--no-renames", "--shortstat", before, after, "--"], cwd=ctx.project.root, check=False)
    return printable(r.stdout.strip()) if r.ok and r.stdout.strip() else ("no change" if r.ok else None)
