"""Many orch processes at once, and a lock holder killed: nothing torn, nothing lost, nothing stuck.

Real processes, started together (each waits on a pipe the test closes, so they all leave the gate
at the same moment): 32 updating 32 task statuses through ``orch.core.state.update`` while
``orch status --json`` reads them, 8 ``orch spin T1`` racing for one task, 50 appending to the event
log, and a holder of orch's locks (a status file's, the agent slots', the event log's) killed with
SIGKILL while a real ``orch start`` waits for it. (One ceremony at a time, and a killed ceremony's
lock: ``tests/test_ceremony_signals.py``.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, status_of, wait_state, write_plan

from orch.core import eventlog


class Gate:
    """Processes that start at once: each reads its stdin to the end, which comes when ``open`` closes it."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def open(self, timeout: float = 180) -> list[tuple[int, str, str]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.stdin = None  # closed: communicate must not flush it
        results = []
        for proc in self.procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
        return results


GATED = "import sys\nsys.stdin.read()\n"  # the first lines of every gated Python worker


def task_block(task_id: str, run: str = "true") -> str:
    return f"## {task_id}: Task {task_id}\n- scope: ^src/\n- deps: none\n- agent: shell\n- run: {run}\n\nBrief.\n\n"


def plan_tasks(repo: Path, ids: list[str]) -> None:
    write_plan(repo, "# Plan: concurrency\n\n" + "".join(task_block(t) for t in ids))
    git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


# -- 32 statuses -------------------------------------------------------------------------------------

UPDATER = GATED + """
from orch.core import state
from orch.core.repo import find_project
from orch.core.store import Store

project = find_project(sys.argv[1])
store = Store(project.root, project.orch_dir)
task = sys.argv[2]
for n in range(1, 6):
    def change(s, n=n):
        s["iterations"] = n
        s["reason"] = f"{task} round {n} " + "padding " * 200  # big enough that a torn file would show
        s.setdefault("notes", []).append({"at": f"round {n}", "text": f"{task} wrote round {n}"})
    state.update(project, store, task, change)
"""

READER = GATED + """
import json, subprocess
for _ in range(int(sys.argv[2])):
    r = subprocess.run([sys.executable, "-m", "orch", "status", "--json"], cwd=sys.argv[1], capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"orch status exited {r.returncode}: {r.stderr}")
    json.loads(r.stdout)
"""


def test_32_processes_update_32_statuses_at_once(project: Path, orch: Orch) -> None:
    ids = [f"T{n}" for n in range(1, 33)]
    plan_tasks(project, ids)
    gate = Gate()
    for task_id in ids:
        gate.start([sys.executable, "-c", UPDATER, str(project), task_id])
    for _ in range(2):  # meanwhile, orch status reads them all: never a torn or half-written file
        gate.start([sys.executable, "-c", READER, str(project), "3"])
    results = gate.open()
    assert [r[0] for r in results] == [0] * 34, [r[2] for r in results if r[0]]
    for task_id in ids:  # all 32 there, each whole: five rounds, every note, valid against the schema
        status = status_of(project, task_id)
        assert status["iterations"] == 5 and status["reason"].startswith(f"{task_id} round 5 ")
        assert [n["text"] for n in status["notes"]] == [f"{task_id} wrote round {n}" for n in range(1, 6)]
        assert sorted(os.listdir(project / ".orch/run/tasks" / task_id)) == ["status.yaml"]  # no temp file left
    rows = json.loads(orch.ok("status", "--json").stdout)["tasks"]
    assert [(row["id"], row["iterations"]) for row in rows] == [(task_id, 5) for task_id in ids]
    locks = set(os.listdir(project / ".orch/run/locks"))
    assert {f".orch%run%tasks%{task_id}%status.yaml.lock" for task_id in ids} <= locks


# -- 8 spins of one task -----------------------------------------------------------------------------


def test_eight_concurrent_spins_of_one_task_one_wins(project: Path, orch: Orch) -> None:
    plan_tasks(project, ["T1"])
    gate = Gate()
    for _ in range(8):  # orch spin T1 itself: the winner starts its agent too
        gate.start([sys.executable, "-c", GATED + "from orch.cli.entry import main\nmain(['spin', 'T1'])\n"], project)
    results = gate.open()
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, results
    assert winners[0][1].startswith(f"T1: orch/T1 at {project}/.orch/worktrees/T1 (shell, running)")
    for code, _stdout, stderr in losers:
        assert code == 3, stderr
        message = [line for line in stderr.splitlines() if line.startswith("orch: T1: ")]
        assert message and "task T1 already spun" in message[0], stderr
        assert "orch status T1" in stderr and "orch attach T1" in stderr, stderr
        assert "branch -D" not in stderr and "delete" not in stderr.lower(), stderr
        assert "Traceback" not in stderr and "internal error" not in stderr
    # Exactly one branch, one base ref, one worktree, one task folder, one agent run.
    assert git(project, "for-each-ref", "--format=%(refname)", "refs/heads/", "refs/orch/").split() == [
        "refs/heads/main",
        "refs/heads/orch/T1",
        "refs/orch/base/T1",
    ]
    listing = git(project, "worktree", "list", "--porcelain").splitlines()
    assert [line for line in listing if line.startswith("worktree ")] == [
        f"worktree {project}",
        f"worktree {project}/.orch/worktrees/T1",
    ]
    assert os.listdir(project / ".orch/worktrees") == ["T1"]
    assert os.listdir(project / ".orch/run/tasks") == ["T1"]
    assert wait_state(orch, "T1") == "SUCCESS"
    starts = [e for e in eventlog.read(project / ".orch/run/log") if e.action in ("SPIN", "START")]
    assert [(e.task, e.action) for e in starts] == [("T1", "SPIN"), ("T1", "START")]
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"


# -- 50 writers of the event log ---------------------------------------------------------------------

WRITER = GATED + """
from pathlib import Path
from orch.core import eventlog

log, who = Path(sys.argv[1]), sys.argv[2]
for n in range(20):
    size = 5000 if n % 5 == 0 else 200  # some lines longer than a pipe's atomic write
    eventlog.append(log, state="RUNNING", task=f"W{who}", iteration=n, action="WRITE",
                    result=f"writer {who} line {n} | with a pipe,\\na newline and some padding " + "x" * size,
                    artifacts=[f"run/{who}/{n}.log", "a,b.log"])
"""


def test_fifty_writers_leave_a_thousand_whole_lines(project: Path, orch: Orch) -> None:
    log = project / ".orch/run/log"
    gate = Gate()
    for who in range(50):
        gate.start([sys.executable, "-c", WRITER, str(log), str(who)])
    results = gate.open()
    assert [r[0] for r in results] == [0] * 50, [r[2] for r in results if r[0]]
    raw = log.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode().split("\n")[:-1]
    assert len(lines) == 1000
    assert all(eventlog.parse_line(line) is not None for line in lines)
    records = [json.loads(line) for line in orch.ok("log", "--json").stdout.splitlines()]  # what orch reads back
    assert len(records) == 1000
    seen = {(r["task"], r["iteration"]) for r in records}
    assert seen == {(f"W{who}", f"W{who}.i{n}") for who in range(50) for n in range(20)}
    for r in records:
        who, n = r["task"][1:], int(r["iteration"].rsplit(".i", 1)[1])
        size = 5000 if n % 5 == 0 else 200
        assert r["result"] == f"writer {who} line {n} | with a pipe,\na newline and some padding " + "x" * size
        assert r["artifacts"] == [f"run/{who}/{n}.log", "a,b.log"]
    assert len(orch.ok("log").stdout.splitlines()) == 1000


# -- a lock holder killed ----------------------------------------------------------------------------

HOLDER = """
import fcntl, os, sys, time
from pathlib import Path
from orch.core.store import Store

root = Path(sys.argv[1])
store = Store(root, root / ".orch")
which = sys.argv[2]
if which == "log":  # the event log is locked by a flock on the log itself
    fd = os.open(root / ".orch/run/log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held = None
else:
    held = store.lock(store.lock_name(root / ".orch/run/tasks/T1/status.yaml") if which == "status" else which)
    held.__enter__()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("held", ["agent-slots", "status", "log"])
def test_a_lock_holder_killed_lets_the_next_command_through(project: Path, orch: Orch, held: str) -> None:
    plan_tasks(project, ["T1"])
    orch.ok("spin", "T1", "--no-start")
    locks = project / ".orch/run/locks"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(project), held], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = set(os.listdir(locks))
        start = subprocess.Popen(
            [sys.executable, "-m", "orch", "start", "T1"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        assert start.poll() is None, start.communicate()  # orch start waits for the lock
        assert held == "log" or status_of(project, "T1")["state"] == "PENDING"
    finally:
        holder.kill()  # SIGKILL: no cleanup of any kind runs; the kernel drops the flock with the process
        holder.wait()
    out, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    assert out == "T1: started (shell)\n"
    assert wait_state(orch, "T1") == "SUCCESS"
    assert [e.action for e in eventlog.read(project / ".orch/run/log") if e.task == "T1"][1] == "START"
    after = set(os.listdir(locks))
    assert before <= after  # no lock file was deleted: one deleted while a process waits on it lets two in
    assert {"agent-slots.lock", ".orch%run%tasks%T1%status.yaml.lock"} <= after
    assert yaml.safe_load((project / ".orch/run/tasks/T1/status.yaml").read_text())["exit_code"] == 0
