"""The append-only event log, ``.orch/run/log``.

One event per line::

    2026-11-21T14:02:11Z | RUNNING | T1.i2 | ITERATE | FAIL sig=3fa2c1 | run/tasks/T1/iter-2.log

Fields: UTC timestamp, state, iteration id (``TASK.iN``, a task id for a task-wide event, or ``-``),
action, result, artifacts (comma-separated paths). Inside a field ``\\`` ``|`` and newlines are escaped,
so a line always splits back into exactly six fields. Each event is one ``write`` on an ``O_APPEND``
descriptor under ``flock``: lines from many concurrent writers never interleave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from orch.core.errors import EnvError, UsageError


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n").replace("\r", "\\r")


def unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Event:
    ts: str
    state: str
    iteration: str
    action: str
    result: str
    artifacts: tuple[str, ...] = ()

    @property
    def task(self) -> str | None:
        if self.iteration in ("", "-"):
            return None
        return re.sub(r"\.i\d+$", "", self.iteration)

    def line(self) -> str:
        # Within the artifacts field a ',' separates paths, so one inside a path is escaped first.
        paths = ",".join(a.replace("\\", "\\\\").replace(",", "\\,") for a in self.artifacts)
        fields = [self.ts, self.state, self.iteration, self.action, self.result, paths]
        return " | ".join(escape(f) or "-" for f in fields) + "\n"

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["artifacts"] = list(self.artifacts)
        data["task"] = self.task
        return data


def _split_paths(text: str) -> tuple[str, ...]:
    """The artifacts field split at its unescaped commas (see ``Event.line``)."""
    paths: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if c == ",":
            paths.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    paths.append("".join(current))
    return tuple(p for p in paths if p)


def parse_line(line: str) -> Event | None:
    """The event on one line, or None for a line that is not one (a torn or foreign line)."""
    line = line.rstrip("\n")
    parts = line.split(" | ")  # a '|' inside a field is escaped, so this split is exact
    if len(parts) != 6:
        return None
    ts, state, iteration, action, result, artifacts = (unescape(p) for p in parts)
    arts = _split_paths(artifacts) if artifacts != "-" else ()
    return Event(ts, state, iteration, action, "" if result == "-" else result, arts)


def append(
    log_path: Path,
    *,
    state: str,
    action: str,
    result: str = "",
    task: str | None = None,
    iteration: int | None = None,
    artifacts: list[str] | tuple[str, ...] = (),
) -> Event:
    from orch.core.text import printable

    it = "-" if task is None else (f"{task}.i{iteration}" if iteration is not None else task)
    # What a terminal would act on (an agent's escape sequences in a command it ran) is written as
    # \uXXXX text: `tail` of the log shows it, never runs it.
    event = Event(utcnow(), state, it, action, printable(result), tuple(printable(a) for a in artifacts))
    data = event.line().encode("utf-8", "surrogateescape")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd, replaced = _open_log(log_path)
    if replaced:  # the new log says first what orch refused
        note = Event(event.ts, "-", "-", "REFUSE", f"{log_path.name} was {replaced}: orch started a new log")
        data = note.line().encode("utf-8", "surrogateescape") + data
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:  # a short write is rare but legal: finish the line while holding the lock
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)  # closing releases the flock
    nudge(log_path.parent / WAKE)
    return event


WAKE = "up.wake"  # the fifo ``orch up`` reads (``orch.schedule.wake``): each event wakes it at once


def nudge(fifo: Path) -> None:
    """Wake ``orch up`` if one listens: one byte into its fifo, never blocking, never into anything
    but a fifo (anyone can put a file there). No fifo, or no reader: nothing happens."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # none there (ENOENT), nobody reading (ENXIO), a link (ELOOP)
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, b".")
    except OSError:  # the fifo is full (EAGAIN): orch up has wakes waiting already
        pass
    finally:
        os.close(fd)


def _open_log(log_path: Path) -> tuple[int, str | None]:
    """The log opened to append, never through a link: a symbolic or hard link (or a fifo) found in
    its place is removed, never written through, and a new log begins (anyone can write .orch/run/).
    Returns the descriptor and what was removed (None: the log was orch's own)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    replaced = None
    for _attempt in range(5):
        try:
            fd = os.open(log_path, flags, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):
                raise
            replaced = replaced or "a symbolic link" + (f" to {os.readlink(log_path)}" if log_path.is_symlink() else "")
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                os.set_blocking(fd, True)
                return fd, replaced
            os.close(fd)
            replaced = replaced or ("a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a plain file")
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.unlink(log_path)
    raise EnvError(f"refused to append to {log_path}: it keeps being replaced by a link", hint="remove it")


def read(log_path: Path) -> list[Event]:
    return read_from(log_path)[0]


def read_from(log_path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """The complete events from byte ``offset`` on, and the offset just after the last whole line.

    Lines that are not events (torn by a crash, written by hand) are skipped; a last line without
    its newline yet is left for the next read.
    """
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        event = parse_line(raw.decode("utf-8", "surrogateescape"))
        if event is not None:
            events.append(event)
    return events, offset + end


def parse_since(value: str, *, now: datetime | None = None) -> str:
    """``10m``, ``2h``, ``3d``, ``45s`` ago, or an ISO date/time; returns a comparable UTC timestamp."""
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"(\d+)\s*([smhdw])", value.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
        when = now - timedelta(**{unit: int(m[1])})
    else:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"--since: cannot read '{value}'",
                hint="use a duration (30s, 10m, 2h, 3d, 1w) or an ISO time (2026-11-21T14:00:00Z)",
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(event: Event, *, task: str | None, since: str | None) -> bool:
    if task is not None and event.task != task:
        return False
    return since is None or event.ts >= since


def follow(log_path: Path, *, poll: float = 0.25, offset: int | None = None) -> Iterator[Event]:
    """Yield events as they are appended (like ``tail -f``), from byte ``offset`` (default: the end).

    Pass the offset ``read_from`` returned to continue exactly where a read stopped, so no event
    appended in between is lost or shown twice.
    """
    while offset is None:
        try:
            offset = log_path.stat().st_size
        except FileNotFoundError:
            time.sleep(poll)
    while True:
        events, offset = read_from(log_path, offset)
        yield from events
        if not events:
            time.sleep(poll)
