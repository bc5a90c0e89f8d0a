"""``orch up`` against what others leave or plant: a forged ``up.yaml`` pid, a merge lock held by
another process, spins killed half-way, things in the fifo's place, a budget spread over retries, a
person's "no". Real processes and git, as in ``tests/test_up.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import Orch, git, status_of
from test_up import agent_like_shell, background, kill, log, open_items, plan, task, task_of, wait_for, writes


def test_orch_down_never_signals_a_pid_forged_into_up_yaml(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")))
    up = background(project)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        wait_for(lambda: open_items(project, "landing"), what="orch up to wait for a person")
        record_path = project / ".orch/run/up.yaml"
        record = yaml.safe_load(record_path.read_text())
        record.update(pid=victim.pid, pid_start=None)
        record_path.write_text(yaml.safe_dump(record))
        r = orch.ok("down")
        assert f"pid {up.pid}" in r.stdout, r.stdout  # the process that holds the lock, not the record's
        up.wait(timeout=30)
        assert victim.poll() is None  # untouched
    finally:
        victim.kill()
        victim.wait()
        kill(up)


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
os.ftruncate(fd, 0)
"""


def test_a_ceremony_held_elsewhere_is_waited_for_not_given_up(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")), task("B", writes("B"), deps="A"))
    lock = project / ".orch/run/locks/merge.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "6"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = orch("up", "--land", "auto", "--until-idle", timeout=180)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 0, r.output
    assert "a merge ceremony is running" in r.stdout
    assert {status_of(project, t)["state"] for t in "AB"} == {"MERGED"}


def test_spins_killed_half_way_are_taken_up_again(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")), task("B", writes("B")), task("C", writes("C"), deps="A"))
    r = orch("up", "--land", "auto", env={"ORCH_FAILPOINT": "spin.after_claim:A"})
    assert r.returncode < 0 or r.returncode == 137, r.output  # killed
    r = orch("up", "--land", "auto", env={"ORCH_FAILPOINT": "store.after_replace:status.yaml"})
    assert r.returncode < 0 or r.returncode == 137, r.output
    r = orch("up", "--land", "auto", "--until-idle", timeout=180)
    assert r.returncode == 0, r.output
    assert {status_of(project, t)["state"] for t in "ABC"} == {"MERGED"}
    starts = [task_of(e) for e in log(project) if e.action == "START"]
    assert sorted(starts) == ["A", "B", "C"], starts


def test_whatever_sits_in_the_fifos_place_is_replaced(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")))
    (project / ".orch/run").mkdir(parents=True, exist_ok=True)
    (project / ".orch/run/up.wake").mkdir()
    r = orch("up", "--land", "auto", "--until-idle", timeout=120)
    assert r.returncode == 0, r.output
    assert (project / ".orch/run/up.wake").is_fifo()
    (project / ".orch/run/up.wake").unlink()
    (project / ".orch/run/up.wake").write_text("not a fifo\n")
    plan(project, task("A", writes("A")), task("B", writes("B")))
    r = orch("up", "--land", "auto", "--until-idle", timeout=120)
    assert r.returncode == 0, r.output
    assert status_of(project, "B")["state"] == "MERGED"


def test_the_runs_budget_counts_every_run_of_a_retried_task(project: Path, orch: Orch) -> None:
    agent_like_shell(project, "pricey", usage="claude-json")
    line = '{"type":"result","total_cost_usd":0.4,"usage":{"input_tokens":10,"output_tokens":5}}'
    plan(project, task("P", f"echo '{line}'; exit 1").replace("agent: shell", "agent: pricey"))
    r = orch("up", "--land", "auto", "--until-idle", "--budget", "$5", timeout=120)
    assert "$0.40 of $5" in r.stdout, r.output
    orch.ok("retry", "P")
    orch("wait", "P", timeout=120)
    r = orch("up", "--land", "auto", "--until-idle", "--budget", "$5", timeout=120)
    assert "$0.80 of $5" in r.stdout, r.output


def test_a_person_saying_no_to_the_budget_ends_the_run_without_waiting(project: Path, orch: Orch) -> None:
    agent_like_shell(project, "pricey", usage="claude-json")
    line = '{"type":"result","total_cost_usd":0.9,"usage":{"input_tokens":10,"output_tokens":5}}'
    first = task("P", writes("P", f"echo '{line}'")).replace("agent: shell", "agent: pricey")
    plan(project, first, task("Q", writes("Q"), deps="P"))
    orch("up", "--land", "auto", "--until-idle", "--budget", "$1", timeout=120)
    (item,) = open_items(project, "budget")
    orch.ok("reject", item["id"])
    r = orch("up", "--land", "auto", "--budget", "$1", timeout=60)  # no --until-idle: still it stops
    assert r.returncode == 1, r.output
    assert "a person said to dispatch nothing more" in r.stdout
    assert not (project / ".orch/run/tasks/Q").exists()
    assert git(project, "show", "main:src/P/f") == "P"


def test_a_task_the_tdd_gate_sent_back_waits_for_a_person(project: Path, orch: Orch) -> None:
    git(project, "show", "HEAD:README.md")  # the accept below passes on the base already
    gated = task("A", writes("A")).replace("- agent: shell", "- agent: shell\n- accept: test -f README.md")
    plan(project, gated)
    r = orch("up", "--land", "auto", "--until-idle", timeout=120)
    assert r.returncode == 1, r.output
    assert "orch start A runs it again" in r.stdout
    assert [task_of(e) for e in log(project) if e.action == "START"] == ["A"]  # started once, not again and again


def test_a_run_budget_never_lets_the_queue_pass_it(project: Path, orch: Orch) -> None:
    agent_like_shell(project, "pricey", usage="claude-json")
    line = '{"type":"result","total_cost_usd":0.45,"usage":{"input_tokens":10,"output_tokens":5}}'
    tasks = [task(t, writes(t, f"echo '{line}'")).replace("agent: shell", "agent: pricey") for t in ("P1", "P2", "P3")]
    plan(project, *tasks, max_parallel=1)
    r = orch("up", "--land", "auto", "--until-idle", "--budget", "$1", timeout=180)
    assert r.returncode == 1, r.output
    starts = [task_of(e) for e in log(project) if e.action == "START"]
    assert starts == ["P1", "P2"], starts  # at 90% the third is not dispatched, queued or not
    assert "nothing new is dispatched until a person answers" in r.stdout
