"""Is a process still the one we started?

A pid alone is not enough: pids are reused. We record the process start time next to the pid and
compare both; a process whose start time differs is someone else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def start_time(pid: int) -> str | None:
    """An opaque token for when ``pid`` started, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
        # Field 22 (starttime, clock ticks since boot) counted after the ')' that ends the command name.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            return None  # a zombie has finished: it is not running
        return fields[19]
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return None
    return out or None


def alive(pid: int | None, started: str | None) -> bool:
    """True if ``pid`` runs and is the process that started at ``started``."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    now = start_time(pid)
    if now is None:
        return False
    return started is None or now == started


def tmux_alive(session: str) -> bool:
    """True if tmux has a session of exactly this name."""
    try:
        r = subprocess.run(["tmux", "has-session", "-t", f"={session}"], capture_output=True, check=False)
    except OSError:
        return False
    return r.returncode == 0


def end(pid: int, started: str, *, own_group: bool = True, grace: float = 3.0) -> None:
    """SIGTERM to ``pid`` (its process group if it leads one), SIGKILL after ``grace`` seconds.

    Only while it is still the process that started at ``started``: a reused pid is left alone. A
    group is ended whole, even when its leader goes at the SIGTERM and a member ignores it (the
    kernel does not hand out a pid that still names a live group, so the number stays that group's).
    """
    if not alive(pid, started):
        return
    try:
        group = own_group and os.getpgid(pid) == pid
    except ProcessLookupError:
        return

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            elif alive(pid, started):
                os.kill(pid, sig)

    def done() -> bool:
        if not group:
            return not alive(pid, started)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)
    send(signal.SIGKILL)


def git_working_in(folder: Path, besides: Path | None = None) -> bool | None:
    """Does a git process have its working folder in ``folder`` (or below it), not counting those in
    ``besides``? None when this system has no /proc to tell: each caller decides what that means."""
    if not os.path.isdir("/proc/self"):
        return None
    target = folder.resolve()
    other = besides.resolve() if besides is not None else None

    def inside(cwd: Path, root: Path) -> bool:
        return cwd == root or root in cwd.parents

    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/comm", encoding="ascii", errors="replace") as handle:
                if not handle.read().strip().startswith("git"):
                    continue
            cwd = Path(os.readlink(f"/proc/{name}/cwd"))
        except OSError:
            continue
        if inside(cwd, target) and not (other is not None and inside(cwd, other)):
            return True
    return False


def fault_point(step: str) -> None:
    """Fault injection for the crash-safety tests (like git's GIT_TEST_* variables): with
    ``ORCH_TEST_KILL_AT`` naming this step, die as abruptly as a power cut would, right here."""
    if os.environ.get("ORCH_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
