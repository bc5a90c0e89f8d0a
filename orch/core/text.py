"""Plain text for people, shared by every stage: aligned tables, short ages, values quoted for a
message, and text made safe to print on a terminal.

Pure functions over strings; only ``orch.cli`` prints what they return.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# What a terminal acts on rather than shows: control characters (newline and tab aside) and the
# bidirectional overrides that reorder the text around them.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe to print: each character a terminal would act on (an escape sequence from a task's
    title, a carriage return that hides a line) becomes ``\\uXXXX``, which is also how JSON writes it,
    so JSON output reads back the same."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text) if _UNSAFE.search(text) else text


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
