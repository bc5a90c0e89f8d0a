"""``orch up``: the whole plan drained with no command typed between, real agents (scripted shell
commands), real ceremonies, real git. What happened is read from the event log and the statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, status_of, write_plan

from orch.core import eventlog


def task(task_id: str, run: str = "true", *lines: str, deps: str = "none") -> str:
    fields = [f"- scope: ^src/{task_id}/", f"- deps: {deps}", "- agent: shell", f"- run: {run}", *lines]
    return f"## {task_id}: Task {task_id}\n" + "\n".join(fields) + f"\n\nBrief of {task_id}.\n\n"


def writes(task_id: str, then: str = "") -> str:
    """A run that adds the task's own file (and then does ``then``)."""
    return f"mkdir -p src/{task_id} && echo {task_id} > src/{task_id}/f" + (f" && {then}" if then else "")


def plan(project: Path, *tasks: str, max_parallel: int = 4, commit: bool = True) -> None:
    write_plan(project, "# Plan: up\n\n" + "".join(tasks))
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", f"max_parallel: {max_parallel}"))
    if commit:
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "plan")


def agent_like_shell(project: Path, name: str, **changes: object) -> None:
    """An agent manifest ``name``: the shell preset with ``changes`` (``usage="claude-json"``: it
    reports what a Claude JSON result line on its output says it spent)."""
    shell = yaml.safe_load((project / ".orch/agents/shell.yaml").read_text())
    shell.update(changes)
    (project / ".orch/agents" / f"{name}.yaml").write_text(yaml.safe_dump(shell, sort_keys=False))


def log(project: Path) -> list[eventlog.Event]:
    return eventlog.read(project / ".orch/run/log")


def task_of(e: eventlog.Event) -> str:
    return e.iteration.split(".i")[0]


def when(e: eventlog.Event) -> float:
    return datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()


def background(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orch", "up", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill(up: subprocess.Popen[str]) -> None:
    """A background ``orch up`` still running at the end of a test: killed with its session."""
    if up.poll() is None:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()


def wait_for(check, timeout: float = 90, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def open_items(project: Path, kind: str) -> list[dict]:
    folder = project / ".orch/run/inbox"
    if not folder.is_dir():
        return []
    items = [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))]
    return [i for i in items if i.get("kind") == kind and i.get("state") == "open"]


def merged_order(project: Path) -> list[str]:
    return [task_of(e) for e in log(project) if e.action == "MERGE"]


def test_a_chain_and_independent_tasks_land_in_dependency_order(project: Path, orch: Orch) -> None:
    chain = [task("A", writes("A", "sleep 0.5")), task("B", writes("B"), deps="A"), task("C", writes("C"), deps="B")]
    side = [task(t, writes(t)) for t in ("D", "E", "F", "G")]
    plan(project, *chain, *side, max_parallel=2)
    r = orch("up", "--land", "auto", timeout=240)
    assert r.returncode == 0, r.output
    assert "all 7 tasks landed" in r.stdout
    assert {status_of(project, t)["state"] for t in "ABCDEFG"} == {"MERGED"}
    order = merged_order(project)
    assert order.index("A") < order.index("B") < order.index("C")
    assert sorted(order) == list("ABCDEFG")  # each merged once
    # C starts within 2 s of B landing (the log's times are whole seconds)
    b_landed = next(e for e in log(project) if e.action == "MERGE" and task_of(e) == "B")
    c_started = next(e for e in log(project) if e.action == "START" and task_of(e) == "C")
    assert 0 <= when(c_started) - when(b_landed) <= 2
    # never more than max_parallel agents at once, from the log's START / EXIT
    running: set[str] = set()
    for e in log(project):
        if e.action == "START":
            running.add(task_of(e))
        elif e.action == "EXIT":
            running.discard(task_of(e))
        assert len(running) <= 2
    for t in "ABCDEFG":  # the work is on main
        assert git(project, "show", f"main:src/{t}/f") == t


def test_it_stops_when_nothing_moves_and_says_why(project: Path, orch: Orch) -> None:
    plan(project, task("OK", writes("OK")), task("BAD", "exit 3"), task("AFTER", writes("AFTER"), deps="BAD"))
    r = orch("up", "--land", "auto", "--until-idle", timeout=180)
    assert r.returncode == 1, r.output
    assert "stopped, 1 of 3 landed" in r.stdout
    assert "BAD FAILED: failed:" in r.stdout and "orch retry BAD" in r.stdout
    assert "AFTER PENDING: dependency BAD failed (FAILED)" in r.stdout
    assert status_of(project, "OK")["state"] == "MERGED"
    assert not (project / ".orch/run/tasks/AFTER").exists()  # never spun


def test_land_ask_waits_for_a_persons_approve(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")), task("B", writes("B"), deps="A"))
    main_before = git(project, "rev-parse", "main")
    up = background(project)  # --land ask is the default
    try:
        wait_for(lambda: open_items(project, "landing"), what="a landing item for A")
        (item,) = open_items(project, "landing")
        assert item["task"] == "A" and item["data"]["verdict"] == "OK"
        assert "would merge cleanly" in item["asked"]
        assert status_of(project, "A")["state"] == "SUCCESS"  # not landed while nobody answered
        assert git(project, "rev-parse", "main") == main_before
        assert not (project / ".orch/run/tasks/B").exists()
        # a second orch up is refused while this one runs, naming its pid
        second = orch("up")
        assert second.returncode == 3, second.output
        assert f"pid {up.pid}" in second.output
        assert f"orch up runs (pid {up.pid}" in orch.ok("status").stdout
        r = orch.ok("approve", item["id"])
        assert "MERGED on main" in r.stdout
        wait_for(lambda: [i for i in open_items(project, "landing") if i["task"] == "B"], what="B's landing item")
        (b_item,) = [i for i in open_items(project, "landing") if i["task"] == "B"]
        orch.ok("approve", b_item["id"])
        out, _ = up.communicate(timeout=60)
    finally:
        kill(up)
    assert up.returncode == 0, out
    assert "all 2 tasks landed" in out
    assert merged_order(project) == ["A", "B"]


def test_killed_with_sigkill_and_started_again_runs_nothing_twice(project: Path, orch: Orch) -> None:
    chain = [task("A", writes("A")), task("B", writes("B", "sleep 1"), deps="A"), task("C", writes("C"), deps="B")]
    plan(project, *chain, task("D", writes("D", "sleep 1")))
    up = background(project, "--land", "auto")
    try:
        wait_for(lambda: "B" in [task_of(e) for e in log(project) if e.action == "START"], what="B to start")
    finally:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
    r = orch("up", "--land", "auto", timeout=180)
    assert r.returncode == 0, r.output
    assert {status_of(project, t)["state"] for t in "ABCD"} == {"MERGED"}
    starts = [task_of(e) for e in log(project) if e.action == "START"]
    assert sorted(starts) == ["A", "B", "C", "D"], starts  # nothing ran twice
    assert sorted(merged_order(project)) == ["A", "B", "C", "D"]


def test_hot_reload_of_a_new_task_and_a_new_manifest(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")))
    up = background(project, "--land", "ask")
    try:
        wait_for(lambda: open_items(project, "landing"), what="A's landing item")
        # while it runs: a new agent manifest, and a task that uses it, added to plan.md by hand
        agent_like_shell(project, "fresh")
        text = (project / ".orch/plan.md").read_text()
        (project / ".orch/plan.md").write_text(text + task("N", writes("N")).replace("agent: shell", "agent: fresh"))
        wait_for(lambda: [i for i in open_items(project, "landing") if i["task"] == "N"], what="N to run and ask")
        assert status_of(project, "N")["agent"] == "fresh"
        for item in open_items(project, "landing"):
            orch.ok("approve", item["id"])
        out, _ = up.communicate(timeout=60)
    finally:
        kill(up)
    assert up.returncode == 0, out
    assert {status_of(project, t)["state"] for t in "AN"} == {"MERGED"}


def test_the_circuit_breaker_pauses_an_agents_queue(project: Path, orch: Orch) -> None:
    agent_like_shell(project, "flaky")
    bad = [task(t, "exit 1").replace("agent: shell", "agent: flaky") for t in ("F1", "F2", "F3")]
    later = task("F4", writes("F4")).replace("agent: shell", "agent: flaky")
    fine = task("S", writes("S"))
    plan(project, *bad, later, fine, max_parallel=1)
    # F4 comes after the three failures: with one slot, they run one by one in plan order
    r = orch("up", "--land", "auto", "--until-idle", timeout=180)
    assert r.returncode == 1, r.output
    assert "agent flaky's queue is paused: F1, F2, F3 failed in a row" in r.stdout
    assert status_of(project, "S")["state"] == "MERGED"  # another agent's work goes on
    st = status_of(project, "F4")
    assert st.get("state") in (None, "QUEUED", "PENDING")
    assert "F4" not in [task_of(e) for e in log(project) if e.action == "START"]
    status = orch.ok("status").stdout
    assert "agent flaky's queue is paused" in status


def test_a_routing_tie_waits_for_a_person(project: Path, orch: Orch) -> None:
    shell = (project / ".orch/agents/shell.yaml").read_text()
    (project / ".orch/agents/front.yaml").write_text(shell)
    (project / ".orch/routing.yaml").write_text(
        "rules:\n"
        "  - name: backend\n    match: {paths: '^src/T/'}\n    agent: shell\n"
        "  - name: frontend\n    match: {paths: '^src/T/'}\n    agent: front\n"
    )
    body = task("T", writes("T")).replace("- agent: shell\n", "")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "routing")
    (project / "src/T").mkdir(parents=True)
    (project / "src/T/f").write_text("x\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "src")
    plan(project, body)
    r = orch("up", "--land", "auto", "--until-idle", timeout=120)
    assert r.returncode == 1, r.output
    assert "T PENDING: not spun:" in r.stdout and "backend" in r.stdout and "frontend" in r.stdout
    assert not (project / ".orch/run/tasks/T/status.yaml").exists()


def test_detach_and_down(project: Path, orch: Orch) -> None:
    plan(project, task("A", writes("A")))
    r = orch.ok("up", "--detach")
    assert "runs in the background" in r.stdout
    record = yaml.safe_load((project / ".orch/run/up.yaml").read_text())
    wait_for(lambda: open_items(project, "landing"), what="the landing item")
    assert "orch up runs (pid" in orch.ok("status").stdout
    down = orch.ok("down")
    assert f"stopped orch up (pid {record['pid']}" in down.stdout
    assert "orch up runs" not in orch.ok("status").stdout
    text = (project / ".orch/run/up.log").read_text()
    assert "A SPIN" in text
    assert orch.ok("down").stdout.strip() == "no orch up runs"
    # run again: it picks up from the files (the landing asked once, not twice)
    up = background(project)
    try:
        wait_for(lambda: "UP started" in "".join(f"{e.action} {e.result}" for e in log(project)[-5:]), what="start")
        time.sleep(0.5)
        assert len(open_items(project, "landing")) == 1
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=30)
    assert up.returncode == 130


def test_bad_options_are_usage_errors(project: Path, orch: Orch) -> None:
    r = orch("up", "--land", "sometimes")
    assert r.returncode == 2 and "--land 'sometimes'" in r.output
    r = orch("up", "--budget", "lots")
    assert r.returncode == 2 and "--budget 'lots'" in r.output
    (project / ".orch/config.yaml").write_text((project / ".orch/config.yaml").read_text() + "budget: plenty\n")
    r = orch("up")
    assert r.returncode == 3 and ".orch/config.yaml:" in r.output and "budget" in r.output
    r = orch("up", env={"ORCH_TASK": "T1"})
    assert r.returncode == 3, r.output


@pytest.mark.parametrize("spent", [0.9, 1.2])
def test_the_runs_budget(project: Path, orch: Orch, spent: float) -> None:
    """A task that reports a cost (Claude's JSON result line) spends the run's budget: at 85% nothing new
    is dispatched and a budget item asks a person; at 100% nothing new starts either."""
    agent_like_shell(project, "pricey", usage="claude-json")
    line = '{"type":"result","total_cost_usd":' + str(spent) + ',"usage":{"input_tokens":10,"output_tokens":5}}'
    first = task("P", writes("P", f"echo '{line}'")).replace("agent: shell", "agent: pricey")
    plan(project, first, task("Q", writes("Q"), deps="P"))
    r = orch("up", "--land", "auto", "--until-idle", "--budget", "$1", timeout=120)
    assert r.returncode == 1, r.output
    assert status_of(project, "P")["state"] == "MERGED"
    assert not (project / ".orch/run/tasks/Q").exists()
    if spent < 1:
        assert "nothing new is dispatched until a person answers" in r.stdout
        (item,) = open_items(project, "budget")
        assert "$1" in item["asked"]
        orch.ok("approve", item["id"])
        r = orch("up", "--land", "auto", "--until-idle", "--budget", "$1", timeout=120)
        assert r.returncode == 0, r.output
        assert status_of(project, "Q")["state"] == "MERGED"
    else:
        assert "the run's budget is spent" in r.stdout
        assert not open_items(project, "budget")


def test_at_100_percent_of_the_runs_budget_running_agents_are_paused(project: Path, orch: Orch) -> None:
    agent_like_shell(project, "pricey", usage="claude-json")
    line = '{"type":"result","total_cost_usd":1.5,"usage":{"input_tokens":10,"output_tokens":5}}'
    pricey = task("P", writes("P", f"echo '{line}'")).replace("agent: shell", "agent: pricey")
    slow = task("L", writes("L", "sleep 60"))
    plan(project, pricey, slow)
    r = orch("up", "--land", "auto", "--until-idle", "--budget", "$1", timeout=120)
    assert r.returncode == 1, r.output
    st = status_of(project, "L")
    assert st["state"] == "PAUSED", st
    assert "the run's budget is spent" in st["reason"]
    assert "L PAUSED: paused:" in r.stdout
    assert any(e.action == "PAUSE" and task_of(e) == "L" for e in log(project))
