"""The timeline (``orch.views.timeline``) as text: a Gantt chart of cells, each iteration's links, and
a Mermaid ``gantt`` chart. Pure functions over the spans; ``orch.cli.timeline_cmds`` prints them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LEGEND = (
    (".", "queued"), ("p", "planning"), ("1-9", "nth iteration"), ("v", "verify"),
    ("?", "waiting for a person"), ("m", "merge"), (">", "open at the log's end"),
)  # fmt: skip
_CHAR = {"queued": ".", "planning": "p", "verify": "v", "waiting": "?", "merge": "m"}
MIN_BAR = 10


@dataclass
class Row:
    task: str
    state: str
    cells: list[tuple[str, str]]  # (character, style name) per time slice; " " is nothing


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def style_of(span: dict[str, Any]) -> str:
    """A style name (``rich``'s) for a span: how it ended."""
    outcome = str(span.get("outcome") or "")
    if span.get("open"):
        return "cyan"
    if span["kind"] == "iteration":
        return "red" if outcome in ("FAIL", "FAILED", "CRASHED") else "green" if outcome == "SUCCESS" else "yellow"
    if span["kind"] == "verify":
        return "green" if outcome == "OK" else "red"
    if span["kind"] == "merge":
        return "bold green" if outcome == "MERGED" else "yellow"
    return {"waiting": "magenta", "queued": "dim", "planning": "blue"}.get(span["kind"], "")


def gantt(data: dict[str, Any], width: int) -> tuple[list[Row], int, int]:
    """One row per task; returns the rows, the id column's width and the bar's width (cells).

    Time runs left to right over the bar; every span gets at least one cell, and a span that would
    share its first cell with the span before it in its row moves right (times are whole seconds: a
    fast loop's iterations fall in one), so no span is ever hidden by another."""
    tasks = data["tasks"]
    id_w = min(max([len(t["id"]) for t in tasks] + [4]), 16)
    state_w = max([len(t["state"] or "-") for t in tasks] + [5])
    bar = width - id_w - state_w - 2
    if bar < MIN_BAR:  # too narrow for the state column: the bar keeps what is left
        state_w, bar = 0, max(MIN_BAR, width - id_w - 1)
    t0 = _when(data["start"]) if data.get("start") else 0.0
    t1 = _when(data["end"]) if data.get("end") else t0
    scale = (bar - 1) / (t1 - t0) if t1 > t0 else 0.0
    rows = []
    for t in tasks:
        cells = [(" ", "")] * bar
        cursor = 0
        spans = t["spans"][-bar:]  # a row cannot show more spans than it has cells: the latest
        for k, span in enumerate(spans):
            room = bar - (len(spans) - k)  # the last cell this span may take: one is left for each after it
            first = int((_when(span["start"]) - t0) * scale)
            last = int((_when(span["end"] or data["end"]) - t0) * scale)
            first = min(max(first, cursor), room)
            last = min(max(last, first), room)
            char = str(span["iteration"] % 10) if span["kind"] == "iteration" else _CHAR.get(span["kind"], "*")
            for c in range(first, last + 1):
                cells[c] = (char, style_of(span))
            if span.get("open"):
                cells[last] = (">", "cyan")
            cursor = last + 1
        rows.append(Row(t["id"][:id_w], (t["state"] or "-")[:state_w] if state_w else "", cells))
    return rows, id_w, bar


def axis(data: dict[str, Any], id_w: int, bar: int) -> str:
    """The line above the bars: the first and last time, and how long one cell is."""
    if not data.get("start"):
        return ""
    start, end = data["start"][11:19], data["end"][11:19]
    seconds = _when(data["end"]) - _when(data["start"])
    per = f"1 cell = {seconds / max(bar - 1, 1):.3g}s" if seconds else "all within one second"
    middle = f" {per} "
    if len(start) + len(middle) + len(end) > bar:
        middle = " "
    line = start + middle.center(max(bar - len(start) - len(end), len(middle))) + end
    return " " * (id_w + 1) + line[:bar]


def legend(width: int) -> list[str]:
    """The legend's entries, as many to a line as ``width`` holds."""
    lines = [""]
    for c, what in LEGEND:
        entry = f"{c} {what}"
        if lines[-1] and len(lines[-1]) + 2 + len(entry) > width:
            lines.append("")
        lines[-1] += ("  " if lines[-1] else "") + entry
    return lines


def details(data: dict[str, Any]) -> list[str]:
    """Each task's spans, each iteration with what it saw, returned and what orch did with it."""
    lines: list[str] = []
    for t in data["tasks"]:
        lines.append("")
        lines.append(f"{t['id']}  {t['state'] or '-'}  {t['title']}".rstrip())
        for s in t["spans"]:
            lines.extend(_span_lines(s))
    if data.get("other_events"):
        said = ", ".join(f"{k} x{v}" for k, v in sorted(data["other_events"].items()))
        lines += ["", f"not shown: {said}"]
    return lines


def _clock(s: dict[str, Any]) -> str:
    end = "..." if s.get("open") else (s["end"] or "")[11:19]
    return f"{s['start'][11:19]}-{end}"


def _span_lines(s: dict[str, Any]) -> list[str]:
    kind, when = s["kind"], _clock(s)
    if kind != "iteration":
        what = s.get("label") or ""
        if kind == "waiting":
            what = f"{s.get('label') or s.get('item')}" + (f" -> {s['answer']}" if s.get("answer") else "")
        elif kind == "merge":
            what = f"{s.get('outcome') or 'unfinished'} {s.get('detail') or ''}".strip()
            what += "".join(f"; test {x['result']}" + (f" ({x['log']})" if x.get("log") else "") for x in s["tests"])
        return [f"  {kind:<10} {when}  {what}".rstrip()]
    run = f" (run {s['run']})" if s.get("run", 1) > 1 else ""
    agent = f"  {s['agent']}" if s.get("agent") else ""
    out = [f"  iter {s['iteration']:<5} {when}  {s.get('outcome') or ('running' if s.get('open') else '')}{run}{agent}"]
    saw, got, did = s["saw"], s["returned"], s["did"]
    seen = [x for x in (saw.get("brief"), saw.get("feedback") and f"feedback {saw['feedback']}") if x]
    if seen:
        out.append(f"      saw      {', '.join(seen)}")
    back = [got.get("exit") and f"exit {got['exit'].removeprefix('code=')}"]
    back += [got.get("snapshot") and f"snapshot {got['snapshot']}", got.get("diffstat")]
    back += [got.get("accept") and f"accept {got['accept']}", got.get("log")]
    if any(back):
        out.append(f"      returned {', '.join(x for x in back if x)}")
    done = [did.get("tdd_gate") and f"TDD gate {did['tdd_gate']}", did.get("verdict"), did.get("why")]
    done += [did.get("strategy_shift") and f"strategy shift: {did['strategy_shift']}", did.get("end")]
    done += did.get("notes") or []
    if any(done):
        out.append(f"      orch     {'; '.join(x for x in done if x)}")
    return out


# -- Mermaid ------------------------------------------------------------------------------------------

_UNSAFE_MERMAID = re.compile(r"[^A-Za-z0-9 _.,()/+=@-]")


def mermaid_text(text: str) -> str:
    """Text safe inside a Mermaid gantt name: ':' ends a name, '#' and ';' start comments and
    entities, and a newline a new statement; what is not plain is a space."""
    return re.sub(r" +", " ", _UNSAFE_MERMAID.sub(" ", text)).strip() or "-"


def mermaid(data: dict[str, Any]) -> str:
    lines = ["gantt", "    title orch timeline", "    dateFormat YYYY-MM-DD HH:mm:ss", "    axisFormat %H:%M:%S"]
    for n, t in enumerate(data["tasks"]):
        lines.append(f"    section {mermaid_text(t['id'] + ' ' + t['title'])}")
        for m, s in enumerate(t["spans"]):
            name = f"iteration {s['iteration']}" if s["kind"] == "iteration" else s["kind"]
            name = mermaid_text(f"{name} {s.get('outcome') or ('open' if s.get('open') else '')}")
            tags = {"FAIL": "crit, ", "FAILED": "crit, ", "CRASHED": "crit, "}.get(str(s.get("outcome")), "")
            if s.get("open"):
                tags = "active, "
            elif not tags:
                tags = "done, "
            seconds = max(1, int(_when(s["end"] or data["end"]) - _when(s["start"])))
            start = s["start"].replace("T", " ").rstrip("Z")
            lines.append(f"    {name} :{tags}s{n}_{m}, {start}, {seconds}s")
    return "\n".join(lines)
