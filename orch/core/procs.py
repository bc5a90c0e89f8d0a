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


def wait_exit(pids: list[int], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for one of ``pids`` to end, waking the moment one does (a pidfd
    each: Linux 5.3 and later). False at once when no pidfd could be had (another system, an older
    kernel, a seccomp filter, no such process): the caller then waits its own way."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or not pids:
        return False
    import select

    fds: list[int] = []
    try:
        for pid in pids:
            with contextlib.suppress(OSError):
                fds.append(opener(pid))
        if not fds:
            return False
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(max(0, int(timeout * 1000)))
        return True
    finally:
        for fd in fds:
            os.close(fd)


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


# Fault injection for the crash tests, like git's GIT_TEST_* variables: ``ORCH_FAILPOINT=<name>`` makes
# the process SIGKILL itself at the first point of that name it reaches, ``<name>:<detail>`` at the first
# one with that detail (a task id, a file name, the rest of a journal step: ``ceremony.testing:T1``).
# Every point is named here, and only here: a test checks the code calls no other name and the fault
# matrix (tests/test_faults.py) kills a real command at each one.
FAILPOINT = "ORCH_FAILPOINT"
FAILPOINTS: tuple[str, ...] = (
    "store.before_replace",  # an atomic write: its temp file written and fsynced, not renamed yet (file name)
    "store.after_replace",  # an atomic write: renamed over the file, its folder not fsynced yet (file name)
    "spin.after_claim",  # the task's branch and base ref created, no worktree yet (task id)
    "spin.after_worktree_add",  # git worktree add --no-checkout done and marked, no file checked out (task id)
    "spin.before_status",  # checked out, manifest and brief written, no status yet (task id)
    "supervisor.after_agent",  # the agent ended; its work not snapshotted, its run not recorded (task id)
    "ceremony.triaged",  # the merge ceremony's journal steps, each right after its journal write
    "ceremony.worktree_add",  # inside git worktree add of the integration worktree (journal.fault_hooks)
    "ceremony.merging",  # (task id, or "T1 (batch of 3)")
    "ceremony.testing",  # (task id, "batch-3", "resumed")
    "ceremony.decided",  # (task id, or "T1, T2" in batch mode)
    "ceremony.landing",
    "ceremony.fast_forward",  # inside the fast-forward of the person's checkout (journal.fault_hooks)
    "ceremony.landed",
    "ceremony.reported",  # the report written, no status updated yet
    "ceremony.recorded",  # statuses and event log written, the journal not deleted yet
    "clean.after_snapshot",  # uncommitted work kept under refs/orch/snapshots/, the worktree still there (task id)
    "clean.before_branch_delete",  # the worktree removed, the branch not deleted or kept aside yet (task id)
    "clean.before_status",  # worktree and branch done, the status not marked CLEANED yet (task id)
)
_KNOWN = frozenset(FAILPOINTS)


def failpoint_armed(name: str, detail: str = "") -> bool:
    """Does ``ORCH_FAILPOINT`` name this point (and this detail, if it gives one)?"""
    wanted = os.environ.get(FAILPOINT)
    if not wanted:
        return False
    if name not in _KNOWN:  # a programming error: the list above is the one place points are named
        raise ValueError(f"fail point {name!r} is not in orch.core.procs.FAILPOINTS")
    point, sep, want = wanted.partition(":")
    return point == name and (not sep or want == detail)


def fault_point(name: str, detail: str = "") -> None:
    """Die here as abruptly as a power cut would when ``ORCH_FAILPOINT`` names this point."""
    if failpoint_armed(name, detail):
        os.kill(os.getpid(), signal.SIGKILL)


def check_failpoint() -> None:
    """Refuse a fail point the environment asks for that is no point of orch's: a misspelt name would
    kill nothing, and a crash test would pass without its crash. orch checks before any command runs."""
    from orch.core.errors import InputError

    names = ", ".join(FAILPOINTS)
    if os.environ.get("ORCH_TEST_KILL_AT"):
        raise InputError(
            "ORCH_TEST_KILL_AT is gone: fail points are named by ORCH_FAILPOINT now",
            where="ORCH_TEST_KILL_AT",
            hint=f"set ORCH_FAILPOINT=<point>[:<detail>] (ceremony.testing:T1 for 'testing T1'); points: {names}",
        )
    point = os.environ.get(FAILPOINT, "").partition(":")[0]
    if not os.environ.get(FAILPOINT) or point in _KNOWN:
        return
    import difflib

    close = difflib.get_close_matches(point, FAILPOINTS, n=1)
    raise InputError(
        f"unknown fail point {point!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        where=FAILPOINT,
        hint=f"ORCH_FAILPOINT=<point>[:<detail>], where the point is one of: {names}",
    )


def pause_point(step: str) -> None:
    """The race tests' way in (as ``ORCH_FAILPOINT`` is the crash tests'): with
    ``ORCH_TEST_PAUSE_AT=<step>:<folder>``, create ``<folder>/paused`` here and wait (60 s at most) for
    ``<folder>/go``, while the test runs a concurrent orch. (It used to be a reference-transaction
    hook; orch's git runs no hook now.)"""
    name, _, folder = os.environ.get("ORCH_TEST_PAUSE_AT", "").partition(":")
    if name != step or not folder:
        return
    Path(folder, "paused").touch()
    deadline = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
