"""Plain text for people, shared by every stage: aligned tables, short ages, values quoted for a
message, and text made safe to print on a terminal.

Pure functions over strings; only ``orch.cli`` prints what they return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False  # no `typing` at import: the git hook's path prints through this module
if TYPE_CHECKING:
    from typing import Any

# What a terminal acts on rather than shows: control characters (newline and tab aside) and the
# bidirectional overrides that reorder the text around them.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe to print: each character a terminal would act on (an escape sequence from a task's
    title, a carriage return that hides a line) becomes ``\\uXXXX``, which is also how JSON writes it,
    so JSON output reads back the same."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text) if _UNSAFE.search(text) else text


def one_line(text: str) -> str:
    """``printable``, with newlines and tabs shown as ``\\n``, ``\\r`` and ``\\t`` too: a name (a file an
    agent committed) that must not start a line of its own in a listing."""
    return printable(text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


def quoted(text: str) -> str:
    """``text`` quoted for a message (``repr``: control characters escaped), cut short when long."""
    return repr(text) if len(text) <= 60 else f"{text[:40]!r}... ({len(text)} characters)"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [title] if title else []
    for row in [headers, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def budget_text(row: Mapping[str, Any]) -> str:
    """How much of a task's budget is used, from an ``orch status`` row: ``61% of 200k tokens``,
    ``$1.20 of $5 (24%)``, both (the larger share first) when both are set; ``-`` without a budget.
    Usage orch does not know (the agent reports none) shows as ``?``."""
    budget = row.get("budget") or {}
    usage = row.get("usage") or {}
    tokens = usage.get("tokens") if usage.get("tokens") is not None else row.get("tokens")
    cost = usage.get("cost_usd") if usage.get("cost_usd") is not None else row.get("cost_usd")
    parts: list[tuple[float, str]] = []  # (share used, text)
    if budget.get("tokens"):
        share = tokens / budget["tokens"] if tokens is not None else -1.0
        used = "?" if share < 0 else f"{share:.0%}"
        parts.append((share, f"{used} of {_short(budget['tokens'])} tokens"))
    if budget.get("usd"):
        share = cost / budget["usd"] if cost is not None else -1.0
        limit = f"${budget['usd']:.0f}" if float(budget["usd"]).is_integer() else f"${budget['usd']:.2f}"
        used = "?" if share < 0 else f"${cost:.2f}"
        parts.append((share, f"{used} of {limit}" + ("" if share < 0 else f" ({share:.0%})")))
    parts.sort(key=lambda p: -p[0])  # stable: tokens first on a tie
    return ", ".join(text for _share, text in parts) or "-"


def _short(n: float) -> str:
    """``200k``, ``1.5M``, ``950``: three significant digits at most."""
    value = float(n)
    for unit in ("", "k", "M"):
        text = f"{value:.3g}"
        if float(text) < 1000:
            return text + unit
        value /= 1000
    return f"{value:,.3g}B" if value < 1000 else f"{value:,.0f}B"
