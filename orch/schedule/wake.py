"""What wakes ``orch up``: every event any orch process logs, at once, and an edit of the files it
reads (plan, config, routing, agent manifests), within a second.

Each ``eventlog.append`` writes one byte into the fifo ``.orch/run/up.wake`` when someone reads it
(``eventlog.nudge``); ``orch up`` reads it here, so a supervisor ending a run or a ceremony landing
wakes it in the same instant, not at the next tick of a poll. Files a person edits log nothing: their
sizes and times are looked at every ``LOOK`` seconds (a few ``stat`` calls), and a change wakes it too.
Anyone can write ``.orch/run/``: a planted file in the fifo's place is replaced, and a wake nobody
meant only makes ``orch up`` read the files again.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time
from pathlib import Path

from orch.core.errors import EnvError
from orch.core.eventlog import WAKE
from orch.core.repo import Project

LOOK = 1.0  # seconds between looks at the files a person edits


class Waker:
    """The reading end of the fifo (and a writing end of its own, so it never reads as closed)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.fifo = project.run_dir / WAKE
        self._read_fd = self._write_fd = -1
        self._inode = -1
        self._seen = self._files()
        self._open()

    def _open(self) -> None:
        """Make the fifo (whatever else is in its place goes: anyone can write ``.orch/run/``) and open
        both ends of it."""
        self.fifo.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = os.lstat(self.fifo).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISFIFO(mode):
            try:
                if stat.S_ISDIR(mode):
                    os.rename(self.fifo, self.fifo.with_name(f"{self.fifo.name}.moved-{os.getpid()}"))
                else:
                    os.unlink(self.fifo)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise EnvError(
                    f"cannot make the fifo {self.project.rel(self.fifo)}: {exc.strerror}",
                    hint="remove what is in its place",
                ) from None
            mode = None
        if mode is None:
            with contextlib.suppress(FileExistsError):  # another orch up made it meanwhile: it is one
                os.mkfifo(self.fifo, 0o600)
        flags = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._read_fd = os.open(self.fifo, os.O_RDONLY | flags)
            self._write_fd = os.open(self.fifo, os.O_WRONLY | flags)
        except OSError as exc:
            raise EnvError(f"cannot open the fifo {self.project.rel(self.fifo)}: {exc.strerror}") from None
        self._inode = os.fstat(self._read_fd).st_ino

    def _still_ours(self) -> bool:
        """The fifo at the path is the one this reads (someone may have replaced it)."""
        try:
            return os.lstat(self.fifo).st_ino == self._inode
        except OSError:
            return False

    def poke(self) -> None:
        """Wake the wait at once (a signal handler's way out of ``select``)."""
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"!")

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read_fd = self._write_fd = -1

    def wait(self, timeout: float) -> str:
        """Sleep until an event is logged, a watched file changes, or ``timeout`` seconds pass; says
        which (``event``, ``edit``, ``timeout``)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            left = deadline - time.monotonic()
            if self._read_fd < 0:  # the fifo could not be made again: look at the files only
                with contextlib.suppress(EnvError):
                    self._open()
            fds = [self._read_fd] if self._read_fd >= 0 else []
            ready, _, _ = select.select(fds, [], [], max(0.0, min(LOOK, left)))
            if ready:
                self._drain()
                return "event"
            if not self._still_ours():  # replaced: the writers write elsewhere now
                self.close()
                with contextlib.suppress(EnvError):
                    self._open()
                return "event"
            files = self._files()
            if files != self._seen:
                self._seen = files
                return "edit"
            if left <= 0:
                return "timeout"

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self._read_fd, 4096):
                pass

    def _files(self) -> tuple[tuple[str, int, int], ...]:
        return edited(self.project)


EDITED = ("plan.md", "config.yaml", "routing.yaml", "locks.yaml", "agents")


def edited(project: Project, names: tuple[str, ...] = EDITED) -> tuple[tuple[str, int, int], ...]:
    """Size and time of each file a person edits under ``.orch/`` (and of each agent manifest: the
    agents folder's own time says one was added)."""
    orch = project.orch_dir
    paths = [orch / n for n in names]
    if "agents" in names:
        with contextlib.suppress(OSError):
            paths += sorted((orch / "agents").iterdir())
    return tuple(_look(p) for p in paths)


def _look(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_size, st.st_mtime_ns)
