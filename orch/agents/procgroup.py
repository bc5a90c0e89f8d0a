"""Ending a child's process group: SIGTERM, a grace period, SIGKILL, then whatever the group left.

The supervisor ends the agent this way (a timeout, a budget, its own SIGTERM) and the task's accept
command too (a stop, its timeout). Moved out of ``orch.agents.supervisor`` to keep that module
small; ``GRACE`` is also the default wait of ``orch stop`` (``orch.agents.launch``) between its
SIGTERM and its SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

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


def end_group(pgid: int) -> None:
    """Stop what the agent left running in its group, so the snapshot sees a quiet worktree."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
