"""The queue: tasks past the slots wait QUEUED and start by themselves as runs end (no daemon), with
the config's and each agent's ``max_parallel``, the plan's ``priority``, ``orch dequeue``, several
ids to ``orch start``, one file one owner (``overlap: ok``) and two runs ending at once. Real
processes, scripted shell agents; how many ran at once is read from the event log."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from conftest import Orch, commit_file, git, let_agent_write, status_of, write_plan

from orch.core import eventlog

DONE = {"SUCCESS", "FAILED", "BLOCKED", "PAUSED", "CRASHED"}


def task(task_id: str, run: str, *lines: str, scope: str | None = None) -> str:
    fields = [f"- scope: {scope or f'^src/{task_id}/'}", "- agent: shell", f"- run: {run}", *lines]
    return f"## {task_id}: Task {task_id}\n" + "\n".join(fields) + f"\n\nBrief of {task_id}.\n\n"


def plan(project: Path, *tasks: str, max_parallel: int = 4) -> None:
    write_plan(project, "# Plan: queue\n\n" + "".join(tasks))
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", f"max_parallel: {max_parallel}"))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


def agent_cap(project: Path, name: str, cap: int | None, *, copy_of: str = "shell") -> None:
    """Give agent ``name`` (a copy of ``copy_of``'s manifest) its own ``max_parallel``."""
    data = yaml.safe_load((project / ".orch/agents" / f"{copy_of}.yaml").read_text())
    if cap is not None:
        data["max_parallel"] = cap
    (project / ".orch/agents" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"agent {name}")


def ended(project: Path, ids: list[str], timeout: float = 150) -> dict[str, str]:
    """Wait (reading the status files, running no orch command) until every task's run ended."""
    deadline = time.monotonic() + timeout
    while True:
        states = {}
        for t in ids:
            path = project / ".orch/run/tasks" / t / "status.yaml"
            states[t] = (yaml.safe_load(path.read_text()) or {}).get("state") if path.exists() else None
        if all(s in DONE for s in states.values()):
            return states
        assert time.monotonic() < deadline, f"not all ended: {states}"
        time.sleep(0.2)


def events(project: Path) -> list[eventlog.Event]:
    return eventlog.read(project / ".orch/run/log")


def task_of(e: eventlog.Event) -> str:
    return e.iteration.split(".i")[0]


def starts(project: Path) -> list[str]:
    return [task_of(e) for e in events(project) if e.action == "START"]


def most_at_once(project: Path, agent: str | None = None) -> int:
    """The most runs between their START and EXIT at any point of the event log (a run is RUNNING
    before its START is written and its EXIT is written before it leaves RUNNING, so this never
    counts more than ran)."""
    running: set[str] = set()
    most = 0
    for e in events(project):
        if e.action == "START" and (agent is None or f"agent={agent} " in e.result):
            running.add(task_of(e))
        elif e.action == "EXIT":
            running.discard(task_of(e))
        most = max(most, len(running))
    return most


def gone(pid: int, timeout: float = 60) -> None:
    """Wait until process ``pid`` has exited (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return
        except (FileNotFoundError, IndexError):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")


def test_spin_ready_queues_past_max_parallel_and_the_queue_drains_by_itself(project: Path, orch: Orch) -> None:
    ids = [f"T{n}" for n in range(1, 9)]
    plan(project, *(task(t, "sleep 1") for t in ids), max_parallel=2)
    r = orch.ok("spin", "--ready")
    assert r.stdout.count("queued: waits for a slot: 2 agents run already (max_parallel)") == 6, r.output
    assert sum(status_of(project, t)["state"] == "QUEUED" for t in ids) >= 5  # one may have started already
    assert all((project / ".orch/worktrees" / t).is_dir() for t in ids)  # spun, if not started
    assert ended(project, ids) == dict.fromkeys(ids, "SUCCESS")  # no other orch command ran
    assert sorted(starts(project)) == ids  # each once
    assert most_at_once(project) == 2  # never more, and the slots were used
    log = (project / ".orch/run/log").read_text()
    assert log.count("| QUEUE |") == 6


def test_an_agents_own_max_parallel(project: Path, orch: Orch) -> None:
    agent_cap(project, "shell", 1)
    agent_cap(project, "solo", None)
    ids = ["T1", "T2", "T3", "T4"]
    plan(project, *(task(t, "sleep 2") for t in ids[:3]), task("T4", "sleep 4").replace("agent: shell", "agent: solo"))
    r = orch.ok("spin", *ids)
    assert "T2: queued: waits for agent shell: it runs T1 already (its max_parallel: 1)" in r.stderr, r.output
    assert status_of(project, "T4")["state"] == "RUNNING"  # another agent, another allowance
    assert ended(project, ids) == dict.fromkeys(ids, "SUCCESS")
    assert most_at_once(project, "shell") == 1
    assert most_at_once(project) == 2


def test_priority_then_plan_order(project: Path, orch: Orch) -> None:
    plan(
        project,
        task("T1", "true", "- priority: -1"),
        task("T2", "true"),
        task("T3", "true", "- priority: 5"),
        task("T4", "true", "- priority: 2"),
        max_parallel=1,
    )
    orch.ok("spin", "--ready")
    assert ended(project, ["T1", "T2", "T3", "T4"]) == dict.fromkeys(["T1", "T2", "T3", "T4"], "SUCCESS")
    assert starts(project) == ["T3", "T4", "T2", "T1"]
    write_plan(project, (project / ".orch/plan.md").read_text().replace("priority: 5", "priority: high"))
    r = orch("plan")
    assert r.returncode == 3 and "bad priority 'high': a whole number (higher runs first)" in r.stderr


def test_dequeue_takes_a_task_back_out(project: Path, orch: Orch, tmp_path: Path) -> None:
    gate = let_agent_write(project, tmp_path / "gate")
    hold = f"while [ ! -e {gate}/go ]; do sleep 0.05; done"
    plan(project, task("T1", hold), task("T2", "true"), max_parallel=1)
    orch.ok("spin", "T1", "T2")
    assert status_of(project, "T2")["state"] == "QUEUED"
    r = orch.ok("dequeue", "T2")
    assert r.stdout == "T2: taken out of the queue (PENDING, still spun: orch start T2)\n"
    st = status_of(project, "T2")
    assert st["state"] == "PENDING" and st["branch"] == "orch/T2"
    r = orch("dequeue", "T1")
    assert r.returncode == 3 and "task T1 is RUNNING, not QUEUED: nothing to dequeue" in r.stderr
    supervisor = status_of(project, "T1")["supervisor_pid"]
    (gate / "go").touch()
    gone(supervisor)  # T1's supervisor has ended, and had its chance to start the next
    assert status_of(project, "T1")["state"] == "SUCCESS"
    assert status_of(project, "T2")["state"] == "PENDING"
    orch.ok("start", "T2")
    assert ended(project, ["T2"]) == {"T2": "SUCCESS"}


def test_start_takes_several_ids_and_wait_waits_for_the_queue(project: Path, orch: Orch) -> None:
    plan(project, *(task(t, "sleep 1") for t in ("T1", "T2", "T3")), max_parallel=1)
    orch.ok("spin", "T1", "T2", "T3", "--no-start")
    r = orch.ok("start", "T1", "T2", "T3")
    assert r.stdout.splitlines() == [
        "T1: started (shell)",
        "T2: queued: waits for a slot: 1 agents run already (max_parallel): T1",
        "T3: queued: waits for a slot: 1 agents run already (max_parallel): T1",
    ]
    status = orch.ok("status").stdout
    assert "queued (each starts when a run ends and it may):" in status
    assert "  T2 QUEUED: waits for a slot: 1 agents run already (max_parallel): T1" in status
    r = orch.ok("wait", "--timeout", "120")  # no ids: the queued ones too, until they have run
    assert r.stdout.splitlines() == ["T1: SUCCESS", "T2: SUCCESS", "T3: SUCCESS"]
    assert starts(project) == ["T1", "T2", "T3"] and most_at_once(project) == 1


def test_scopes_that_reach_one_file_never_run_together(project: Path, orch: Orch, tmp_path: Path) -> None:
    commit_file(project, "src/api/app.py", "app\n")
    commit_file(project, "docs/guide.md", "guide\n")
    gate = let_agent_write(project, tmp_path / "gate")
    hold = f"while [ ! -e {gate}/go ]; do sleep 0.05; done"  # T1 runs until the test has looked
    plan(
        project,
        task("T1", hold, scope="^src/api/"),
        task("T2", "true", scope="^src/"),
        task("T3", "true", scope="^docs/"),
    )
    r = orch.ok("plan")
    assert "overlap: T1 and T2 both reach src/api/app.py (never run at once; 'overlap: ok' allows it)" in r.stdout
    assert "overlap: T1 and T3" not in r.stdout and "overlap: T2 and T3" not in r.stdout
    r = orch.ok("spin", "T1", "T2", "T3")
    assert "T2: queued: waits for T1: both reach src/api/app.py" in r.stderr, r.output
    assert status_of(project, "T2")["reason"] == "waits for T1: both reach src/api/app.py"
    assert "  T2 QUEUED: waits for T1: both reach src/api/app.py" in orch.ok("status").stdout
    assert ended(project, ["T3"]) == {"T3": "SUCCESS"}  # beside T1, which still runs
    assert status_of(project, "T2")["state"] == "QUEUED"
    (gate / "go").touch()
    assert ended(project, ["T1", "T2", "T3"]) == dict.fromkeys(["T1", "T2", "T3"], "SUCCESS")
    log = [(task_of(e), e.action) for e in events(project) if e.action in ("START", "EXIT")]
    assert log.index(("T1", "EXIT")) < log.index(("T2", "START"))
    assert log.index(("T3", "START")) < log.index(("T1", "EXIT"))  # T3 reaches other files: it ran beside


def test_overlap_ok_lets_them_run_together(project: Path, orch: Orch) -> None:
    commit_file(project, "src/api/app.py", "app\n")
    plan(project, task("T1", "sleep 2", scope="^src/api/"), task("T2", "sleep 2", "- overlap: ok", scope=None))
    r = orch.ok("plan")
    assert "overlap:" not in r.stdout
    orch.ok("spin", "T1", "T2")
    assert ended(project, ["T1", "T2"]) == {"T1": "SUCCESS", "T2": "SUCCESS"}
    assert most_at_once(project) == 2


def test_two_runs_ending_at_once_never_start_a_task_twice(project: Path, orch: Orch, tmp_path: Path) -> None:
    gate = let_agent_write(project, tmp_path / "gate")
    hold = f"while [ ! -e {gate}/go ]; do sleep 0.01; done"
    queued = ["T3", "T4", "T5", "T6", "T7"]
    plan(project, task("T1", hold), task("T2", hold), *(task(t, "sleep 0.5") for t in queued), max_parallel=2)
    orch.ok("spin", "--ready")
    assert [status_of(project, t)["state"] for t in ("T1", "T2")] == ["RUNNING", "RUNNING"]
    assert all(status_of(project, t)["state"] == "QUEUED" for t in queued)
    (gate / "go").touch()  # both runs end together: two supervisors take the next tasks at once
    ids = ["T1", "T2", *queued]
    assert ended(project, ids) == dict.fromkeys(ids, "SUCCESS")
    assert sorted(starts(project)) == ids  # nothing started twice
    assert most_at_once(project) == 2
    logs = [(project / ".orch/run/tasks" / t / "supervisor.log").read_text() for t in ("T1", "T2")]
    assert any("started from the queue" in text for text in logs), logs  # the supervisors drained it
