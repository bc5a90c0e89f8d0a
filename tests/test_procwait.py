"""Waiting for a child without polling: ``procs.wait_exit`` (a pidfd per process, Linux) and
``procgroup.wait_for``, how the supervisor waits for an agent and an accept command, with real
processes. The bounds on time are generous: they tell "woke when the process ended" from "slept the
whole timeout", never how fast a machine is."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from orch.agents.procgroup import wait_for
from orch.core import procs

pidfds = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd_open on this system")


def test_wait_for_gives_the_exit_code_or_none_while_it_runs() -> None:
    proc = subprocess.Popen(["sh", "-c", "exit 3"])
    start = time.monotonic()
    assert wait_for(proc, 30) == 3
    assert time.monotonic() - start < 10  # woke when it ended, not after the timeout
    assert wait_for(proc, 30) == 3  # already reaped: the same code at once
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert wait_for(proc, 0.05) is None
        assert proc.returncode is None
    finally:
        proc.kill()
        proc.wait()


@pidfds
def test_wait_exit_wakes_when_one_of_the_processes_ends() -> None:
    slow = subprocess.Popen(["sleep", "30"])
    quick = subprocess.Popen(["sh", "-c", "sleep 0.1"])
    try:
        start = time.monotonic()
        assert procs.wait_exit([slow.pid, quick.pid], 30) is True
        assert time.monotonic() - start < 10
        assert quick.poll() == 0 and slow.poll() is None
        assert procs.wait_exit([slow.pid], 0.05) is True  # the timeout: the caller looks again
    finally:
        slow.kill()
        slow.wait()


def test_wait_exit_without_a_process_to_wait_for_says_so_at_once() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    start = time.monotonic()
    assert procs.wait_exit([], 30) is False
    assert procs.wait_exit([gone.pid], 30) is False  # no such process (or no pidfd here): sleep your own way
    assert time.monotonic() - start < 10
