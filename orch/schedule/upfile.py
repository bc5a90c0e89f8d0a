"""One ``orch up`` at a time: the ``up`` lock, held for its whole life, and ``.orch/run/up.yaml``,
which says who holds it (pid, start, how it was started) for a second ``orch up`` and ``orch down``.

The lock is ``flock`` on ``.orch/run/locks/up.lock``: the kernel drops it when the holder dies, even
by SIGKILL, so a killed ``orch up`` never blocks the next one. ``up.yaml`` is only a record (anyone
can write ``.orch/run/``): the lock decides whether one runs; the record's pid is believed only when
that process still runs and started when the record says.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.core import eventlog, procs
from orch.core.errors import EnvError, InputError, OrchError
from orch.core.repo import Project
from orch.core.store import Store

NAME = "up"


def record_path(project: Project) -> Path:
    return project.run_dir / "up.yaml"


def log_path(project: Project) -> Path:
    return project.run_dir / "up.log"


@dataclass
class Claim:
    fd: int
    record: dict[str, Any]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing drops the flock; the lock file stays (never deleted)


def _lock_fd(store: Store) -> int:
    store.lock_dir.mkdir(parents=True, exist_ok=True)
    return os.open(store.lock_dir / f"{NAME}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def claim(project: Project, store: Store, **how: Any) -> Claim:
    """Hold the ``up`` lock for this process and write its record; refused (exit 3) while another
    ``orch up`` holds it, naming its pid."""
    fd = _lock_fd(store)
    for _attempt in range(50):  # a look by running() holds it shared for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.01)
    else:
        os.close(fd)
        other = running(project, store)
        who = f" (pid {other['pid']}, since {other.get('started_at')})" if other else ""
        raise InputError(
            f"orch up runs already{who}",
            hint="watch it with orch status, or stop it with orch down (its agents keep running)",
        )
    record = {
        "pid": os.getpid(),
        "pid_start": procs.start_time(os.getpid()),
        "started_at": eventlog.utcnow(),
        **how,
    }
    try:
        with store.lock(NAME + "-record"):
            store.dump(record_path(project), record, "up")
    except OSError as exc:
        os.close(fd)
        raise EnvError(
            f"cannot write {project.rel(record_path(project))}: {exc.strerror}", hint="remove what is in its place"
        ) from None
    return Claim(fd, record)


def running(project: Project, store: Store) -> dict[str, Any] | None:
    """The record of the ``orch up`` that runs now, or None when none holds the lock.

    The record's pid is believed only when that very process holds the lock (``/proc/locks``): anyone
    can write ``up.yaml``, and ``orch down`` signals the pid it names. Where the kernel does not say
    who holds it, the record carries ``unverified`` and ``orch down`` signals nobody."""
    fd = _lock_fd(store)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: one runs
        else:
            return None
        st = os.fstat(fd)
        inode, device = st.st_ino, (os.major(st.st_dev), os.minor(st.st_dev))
    finally:
        os.close(fd)
    try:
        record: dict[str, Any] = store.load(record_path(project), "up")
    except (OSError, OrchError):
        record = {}
    holders = lock_holders(inode, device)
    if holders is None:
        return {**record, "unverified": True} if record else {"pid": 0, "unverified": True}
    pid = int(record.get("pid") or 0)
    if pid in holders and procs.alive(pid, record.get("pid_start")):
        return record
    if not holders:
        return None
    real = min(holders)  # the record was not written by the holder: name the holder, not the record
    return {"pid": real, "pid_start": procs.start_time(real), "started_at": "?", "note": "up.yaml did not name it"}


def lock_holders(inode: int, device: tuple[int, int] | None = None) -> set[int] | None:
    """The pids holding a ``flock`` on the file with this inode (on this device), from ``/proc/locks``
    (None where there is no such file)."""
    try:
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    pids = set()
    for line in text.splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
            major, minor, ino = fields[5].split(":")
            dev = (int(major, 16), int(minor, 16))
        except (ValueError, IndexError):
            continue
        if int(ino) == inode and (device is None or dev == device):
            pids.add(pid)
    return pids


def down(project: Project, store: Store, *, grace: float = 10.0) -> dict[str, Any] | None:
    """Stop the running ``orch up`` (SIGTERM, then SIGKILL after ``grace`` seconds); its record, or
    None when none runs. Its agents are not touched here. A holder the kernel cannot name is not
    signalled (an ``EnvError`` says so)."""
    record = running(project, store)
    if record is None:
        return None
    if record.get("unverified"):
        raise EnvError(
            "orch up runs, but this system does not say which process holds its lock (no /proc/locks)",
            hint="stop it where it runs (Ctrl-C), or kill the pid .orch/run/up.yaml names once you checked it",
        )
    pid = int(record["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while procs.alive(pid, record.get("pid_start")) and time.monotonic() < deadline:
        if not procs.wait_exit([pid], min(0.5, max(0.0, deadline - time.monotonic()))):
            time.sleep(0.05)
    if procs.alive(pid, record.get("pid_start")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        procs.wait_exit([pid], 2.0)
    return record
