"""What ``orch up`` shows. At a terminal: a live view (rich ``Live``): landed of total, slots in use,
what waits for a person, the run's spending, a row per task left and the last events. Elsewhere (a
pipe, ``--detach``'s log): one line per event, and a line per task whose reason changed.

Every cell is a rich ``Text``, never markup: ids, titles and reasons are anyone's to write.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from orch.cli.output import out
from orch.cli.render import STATE_STYLE
from orch.core.text import printable

EVENTS_SHOWN = 6


class View:
    def __init__(self, *, live: bool) -> None:
        self.live = live
        self._live: Any = None
        self.recent: deque[str] = deque(maxlen=EVENTS_SHOWN)
        self.said: dict[str, str] = {}  # task -> the reason last printed (lines mode)
        self.header = ""
        self.pending: list[str] = []

    def __enter__(self) -> View:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(), auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def say(self, line: str) -> None:
        self.pending.append(f"orch up: {line}")  # shown after the events that led to it

    def show(self, look: Any, before: list[Any], after: list[Any]) -> None:
        """One look: the events that led to it, what orch up did, the events that came of it."""
        from orch.tasks.runloop import event_line

        lines = [event_line(e) for e in before] + self.pending + [event_line(e) for e in after]
        self.pending = []
        if self._live is None:
            for line in lines:
                out(line)
            header = head(look)
            if header != self.header:
                self.header = header
                out(f"orch up: {header}")
            for x in look.left:
                if self.said.get(x.task) != x.why:
                    self.said[x.task] = x.why
                    out(f"orch up: {x.task} {x.state}: {x.why}")
            for note in look.notes:
                out(f"orch up: {note}")
            return
        self.recent.extend(lines)
        self._live.update(frame(look, self.recent), refresh=True)


def head(look: Any) -> str:
    """``3 of 8 landed · 2 of 2 slots · 1 waits for a person (M1) · spent: 12,000 tokens``."""
    if look.broken:
        return f"waiting for a fix: {look.broken}"
    parts = [f"{look.merged} of {look.total} landed", f"{look.running} of {look.slots} slots in use"]
    if look.open_items:
        ids = ", ".join(str(i["id"]) for i in look.open_items[:6])
        parts.append(f"{len(look.open_items)} wait for a person ({ids})")
    parts.append(look.spent)
    return " · ".join(parts)


def frame(look: Any, recent: Any) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text("orch up: " + printable(head(look)), style="bold")
    table = Table(header_style="bold", box=None, pad_edge=False)
    for header in ("ID", "STATE", "WHY"):
        table.add_column(header, no_wrap=header != "WHY", overflow="fold" if header == "WHY" else "ellipsis")
    for x in look.left:
        cells = [Text(printable(x.task)), Text(printable(x.state)), Text(printable(x.why))]
        style = STATE_STYLE.get(x.state)
        if style:
            cells[1].stylize(style)
        table.add_row(*cells)
    lines = [Text(printable(line), style="dim", no_wrap=True, overflow="ellipsis") for line in recent]
    return Group(title, table, *lines) if look.left else Group(title, *lines)


def summary(look: Any) -> str:
    """What ``orch up`` prints when it stops: the count, then why for each task left."""
    if look.done:
        return f"orch up: all {look.total} tasks landed · {look.spent}"
    lines = [f"orch up: stopped, {look.merged} of {look.total} landed · {look.spent}"]
    if look.broken:
        lines.append(f"  {look.broken}")
    for x in look.left:
        lines.append(f"  {x.task} {x.state}: {x.why}")
    for note in look.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
