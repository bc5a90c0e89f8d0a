"""Ending a child's process group: SIGTERM, a grace period, SIGKILL, then whatever the group left.

The supervisor ends the agent this way (a timeout, a budget, its own SIGTERM) and the task's accept
command too (a stop, its timeout). Moved out of ``orch.agents.supervisor`` to keep that module
small; ``GRACE`` is also the default wait of ``orch stop`` (``orch.agents.launch``) between its
SIGTERM and its SIGKILL. ``wait_for`` is how both wait for their child: it wakes when the child ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from orch.core import procs

GRACE = 10.0  # seconds between SIGTERM and SIGKILL


def terminate(proc: subprocess.Popen[bytes], *, group: bool, grace: float = GRACE) -> None:
    """SIGTERM to the agent's process group, SIGKILL after the grace period."""
    send = (lambda s: os.killpg(proc.pid, s)) if group else proc.send_signal
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(signal.SIGKILL)
        proc.wait()


def wait_for(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """``proc``'s exit code once it has ended, waiting up to ``timeout`` seconds for that; None while it
    runs. On Linux the wait ends the moment the process does (``procs.wait_exit``): ``Popen.wait``
    with a timeout looks after sleeps that double up to 50 ms (at 1, 3, 7, 15, 31, 63 ms), so a
    command of 32 ms was seen ended after 63, twice per loop iteration (the agent, then its accept)."""
    if proc.returncode is None and procs.wait_exit([proc.pid], timeout):
        return proc.poll()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def end_group(pgid: int) -> None:
    """Stop what the agent left running in its group, so the snapshot sees a quiet worktree."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
