"""Output for people: rich tables on a terminal, plain aligned text elsewhere, JSON on request."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from orch.core.text import age, budget_text, plain_table, printable

STATE_STYLE = {
    "PENDING": "dim", "RUNNING": "cyan", "SUCCESS": "green", "MERGED": "bold green", "CLEANED": "dim green",
    "FAILED": "red", "CRASHED": "red", "REVERTED": "yellow", "CONFLICT": "yellow", "BLOCKED": "magenta",
    "PAUSED": "magenta", "SKIPPED": "dim yellow", "SCOPE_VIOLATION": "bold red", "LOCK_VIOLATION": "bold red",
    "QUARANTINED": "bold red", "AWAITING_APPROVAL": "bold magenta", "QUEUED": "cyan", "HUMAN": "bold blue",
}  # fmt: skip


# Columns a narrow terminal may cut (with an ellipsis); every other column is shown whole.
_SHRINK = frozenset({"TITLE", "BRANCH", "SCOPE", "MESSAGE", "PATH"})


def fancy() -> bool:
    """Rich output only for a person at a terminal who did not ask for plain text."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> str | None:
    """Print a table; returns the plain text (or None after printing a rich table)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    title = printable(title) if title else title
    if fancy():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console()
        widths = [max([len(h), *(len(row[n]) for row in rows)]) for n, h in enumerate(headers)]
        needed = sum(3 if h in _SHRINK else w for h, w in zip(headers, widths, strict=True)) + 2 * len(headers)
        if needed > console.width:  # too narrow to show every column: let the terminal wrap plain lines
            return plain_table(headers, rows, title=title)
        # Every column whole but the shrinkable ones, which share what is left (rich would otherwise
        # squeeze every column, and cut a state to '(CONFLI…').
        shrink = [n for n, h in enumerate(headers) if h in _SHRINK]
        spare = console.width - 2 * len(headers) - sum(w for n, w in enumerate(widths) if n not in shrink)
        for n in sorted(shrink, key=lambda n: widths[n]):
            widths[n] = max(3, min(widths[n], spare // max(1, len(shrink))))
            spare -= widths[n]
            shrink = [m for m in shrink if m != n]
        # Cells are Text, never markup: a title such as 'fix [/api]' is shown as written (as markup it
        # would vanish, or stop the command).
        t = Table(title=Text(title) if title else None, header_style="bold", box=None, pad_edge=False)
        for h, w in zip(headers, widths, strict=True):
            t.add_column(h, overflow="ellipsis", no_wrap=True, width=w)
        state = list(headers).index("STATE") if "STATE" in headers else None
        for row in rows:
            cells = [Text(cell) for cell in row]
            style = STATE_STYLE.get(row[state].split()[0] if state is not None and row[state] else "")
            if state is not None and style:
                cells[state].stylize(style)
            t.add_row(*cells)
        console.print(t)
        return None
    return plain_table(headers, rows, title=title)


def status_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["ID", "STATE", "AGENT", "BRANCH", "AGE", "ITER", "TOKENS", "COST", "BUDGET", "VERDICT", "TITLE"]
    out = []
    for r in rows:
        state = r["state"] + (" (ready)" if r["ready"] else "")
        if r["state"] == "CLEANED" and r.get("outcome"):
            state += f" ({r['outcome']})"
        verdict = r["verdict"] or "-"
        if r["verdict"] and r["verdict_stale"]:
            verdict += " (stale)"
        out.append(
            [
                r["id"],
                state,
                r["agent"] or "-",
                r["branch"] or "-",
                age(r["age_seconds"]),
                iteration(r),
                "-" if r["tokens"] is None else f"{r['tokens']:,}",
                "-" if r["cost_usd"] is None else f"${r['cost_usd']:.2f}",
                budget_text(r),
                verdict,
                r["title"],
            ]
        )
    return headers, out


def iteration(r: dict[str, Any]) -> str:
    """The ITER column: ``3/10`` for a task the loop runs, else how many runs it had."""
    if r.get("iteration") is not None:
        return f"{r['iteration']}/{r.get('max_iterations') or '-'}"
    return "-" if r["iterations"] is None else str(r["iterations"])


def mermaid(plan: Any, states: dict[str, str]) -> str:
    """The dependency graph as Mermaid ``graph TD`` (GitHub renders it in Markdown)."""
    lines = ["graph TD"]
    for task in plan.tasks:
        label = f"{task.id}: {task.title}".replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        st = states.get(task.id)
        if st:
            label += f"<br/>{st}"
        lines.append(f'  {_node(task.id)}["{label}"]')
    for task in plan.tasks:
        for dep in task.deps:
            lines.append(f"  {_node(dep)} --> {_node(task.id)}")
    classes = {
        "done": ("MERGED", "CLEANED"),
        "good": ("SUCCESS",),
        "active": ("RUNNING",),
        "bad": ("FAILED", "CRASHED", "REVERTED", "CONFLICT", "QUARANTINED", "SCOPE_VIOLATION", "LOCK_VIOLATION"),
    }
    colors = {"done": "#2e7d32", "good": "#66bb6a", "active": "#29b6f6", "bad": "#ef5350"}
    for cls, members in classes.items():
        ids = [_node(t.id) for t in plan.tasks if states.get(t.id) in members]
        if ids:
            lines.append(f"  classDef {cls} fill:{colors[cls]},color:#fff")
            lines.append(f"  class {','.join(ids)} {cls}")
    return "\n".join(lines)


def _node(task_id: str) -> str:
    # Mermaid node ids: letters, digits, '_'; a '-' would read as an edge. Every '_' of ours starts an
    # escape ('_u' for '_', '_d' for '-'), so two different task ids never share a node.
    return "t_" + task_id.replace("_", "_u").replace("-", "_d")


class _Progress:
    """A one-line progress display on a terminal (rich), plain lines on stderr otherwise."""

    def __init__(self) -> None:
        self.status: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty() and "NO_COLOR" not in os.environ:
            from rich.console import Console

            self.status = Console(stderr=True).status("starting")
            self.status.__enter__()
        return self

    def __call__(self, message: str) -> None:
        if self.status is not None:
            from rich.text import Text

            self.status.update(Text(printable(message)))  # Text, never markup: a file name may hold '[/'
        else:
            sys.stderr.write(f"orch: {printable(message)}\n")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)


def progress() -> _Progress:
    return _Progress()


def merge_outcome(o: Any) -> str:
    headers = ["TASK", "OUTCOME", "DETAIL"]
    rows = []
    for r in o.results:
        detail = r.detail or ""
        if r.paths and r.outcome in ("CONFLICT", "QUARANTINED"):
            detail += ": " + ", ".join(r.paths[:5]) + (" ..." if len(r.paths) > 5 else "")
        rows.append([r.task, o.outcome_word(r), detail])
    lines = []
    if o.mode == "dry-run":
        lines.append(f"forecast for merging into {o.into} at {o.base_before[:12]} (nothing changed):")
    elif o.landed == "aborted":
        return f"merge ceremony {o.id} into {o.into}: aborted\n{o.message}"
    else:
        lines.append(f"merge ceremony {o.id} into {o.into}: {o.mode}, {o.test_runs} test run(s)")
    lines.append(plain_table(headers, rows) if rows else "nothing to merge")
    if o.mode != "dry-run":
        if o.is_landed:
            lines.append(f"\nLANDED on {o.into}: {o.base_before[:12]} -> {(o.base_after or '')[:12]}")
        elif o.parked_on:
            lines.append(f"\nPARKED on {o.parked_on}: {o.into} is unchanged at {(o.base_after or '')[:12]}")
        if o.message:
            lines.append(f"\n{o.message}" if not o.parked_on else o.message)
        if o.report:
            lines.append(f"report: {o.report}")
        if o.rollback:
            lines.append(f"roll back with: {o.rollback}")
    return "\n".join(lines)
