"""``orch run`` at a terminal: a live table of the followed tasks (rich ``Live``, about four frames a
second) and the loop's last events under it. On a pipe ``orch run`` prints one line per event instead.

Every cell is a rich ``Text``, never markup: ids, states and results are anyone's to write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from orch.cli.render import STATE_STYLE, budget_text, iteration
from orch.core.text import printable

HEADERS = ("ID", "STATE", "ITER", "STRATEGY", "BUDGET", "LAST EVENT", "ELAPSED")
EVENTS_SHOWN = 5  # the loop's last event lines under the table
POLL = 0.25  # seconds between looks at the statuses and the event log: the view's frame rate


def follow(c: Any, ids: list[str], offset: int) -> None:
    """Draw the view until none of the tasks is RUNNING; the last frame stays on the screen."""
    from rich.console import Console
    from rich.live import Live

    from orch.tasks import runloop
    from orch.views import runview

    recent: deque[str] = deque(maxlen=EVENTS_SHOWN)
    last: dict[str, Any] = {}  # each task's last loop event
    # Frames are drawn here, after each look (no refresh thread): Ctrl-C stops the view between two.
    with Live(console=Console(), auto_refresh=False, transient=False) as live:
        for events in runloop.watch(c, ids, offset, poll=POLL):
            for event in events:
                last[event.task or ""] = event  # a followed event always names its task
                recent.append(runloop.event_line(event))
            live.update(frame(runview.rows(c, ids, last), recent), refresh=True)


def frame(rows: Sequence[dict[str, Any]], recent: Sequence[str]) -> Any:
    """The table, then the last event lines (dim)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    running = sum(1 for r in rows if r.get("state") == "RUNNING")
    title = Text(f"orch run: {running} of {len(rows)} running", style="bold")
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for header in HEADERS:
        wide = header == "LAST EVENT"
        table.add_column(header, no_wrap=True, overflow="ellipsis", min_width=None if wide else len(header))
    for r in rows:
        cells = [Text(printable(cell)) for cell in cells_of(r)]
        style = STATE_STYLE.get(str(r.get("state")))
        if style:
            cells[1].stylize(style)
        table.add_row(*cells)
    lines = [Text(printable(line), style="dim", no_wrap=True, overflow="ellipsis") for line in recent]
    return Group(table, *lines)


def cells_of(r: dict[str, Any]) -> list[str]:
    """One row's cells, in the order of ``HEADERS``."""
    return [
        str(r["id"]),
        str(r.get("state") or "PENDING"),
        iteration({"iterations": None, **r}),
        str(r.get("strategy") or "-"),
        budget_text(r),
        str(r.get("last_event") or "-"),
        clock(r.get("elapsed_seconds")),
    ]


def clock(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1:02:09``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    hours, rest = divmod(s, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
