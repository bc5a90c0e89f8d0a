"""``orch takeover`` and ``orch release``: a person drives a task for a while (HUMAN), then gives it back
from their commits; played by scripted agents on real git, with real supervisors. The person's commits
are never lost and never rewritten."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import Orch, git, status_of, wait_state, write_plan

MAGIC = "MAGIC-WORD-77"
SUBJECT = "person: the parser reads tabs"

# Before a person worked on it, the agent commits, leaves a file uncommitted and waits (mode hang) or
# does nothing (mode idle). Once its brief says a person worked on it, with the note and their commit
# quoted, it writes src/done.txt.
AGENT = textwrap.dedent(
    f"""
    import os, subprocess, sys, time
    n = os.environ.get("ORCH_ITERATION", "0")
    mode = sys.argv[1]
    brief = open(os.environ["ORCH_CONTEXT"]).read()
    os.makedirs("src", exist_ok=True)
    if "## A person worked on this" in brief:
        open("src/seen-%s.txt" % n, "w").write(brief)
        told = any(line.startswith("> ") and "{MAGIC}" in line for line in brief.splitlines())
        if told and "{SUBJECT}" in brief:
            open("src/done.txt", "w").write("done\\n")
        sys.exit(0)
    if mode == "hang":
        open("src/agent.txt", "w").write("the agent's\\n")
        subprocess.run(["git", "add", "src/agent.txt"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", "agent work"], check=True)
        open("src/wip.txt", "w").write("half done\\n")
        time.sleep(600)
    sys.exit(0)
    """
)
ACCEPT = "- accept: test -f src/person.txt && test -f src/done.txt || { echo ACCEPT-SAYS-NO; exit 1; }"


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "takeover_agent.py"
    path.write_text(AGENT)
    return path


def plan(project: Path, agent: Path, mode: str, *extra: str) -> None:
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(agent))} {mode}"
    lines = ["# Plan: takeover", "", "## T1: Takeover task", "- scope: ^src/", "- agent: shell", f"- run: {run}"]
    write_plan(project, "\n".join([*lines, *extra]) + "\n\nMake src/done.txt.\n")
    import yaml

    path = project / ".orch/config.yaml"
    data = yaml.safe_load(path.read_text())
    data["defaults"].update({"max_strategies": 1, "max_per_strategy": 1})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


def events(project: Path, action: str) -> list[str]:
    return [ln for ln in (project / ".orch/run/log").read_text().splitlines() if f"| {action} |" in ln]


def person_commits(wt: Path, rel: str, text: str, subject: str = SUBJECT) -> str:
    (wt / rel).parent.mkdir(parents=True, exist_ok=True)
    (wt / rel).write_text(text)
    git(wt, "add", "--", rel)
    git(wt, "commit", "-q", "-m", subject)
    return git(wt, "rev-parse", "HEAD")


def holds(project: Path, commit: str, ref: str = "orch/T1") -> bool:
    """``ref``'s history holds ``commit``, unchanged (the same sha: never rewritten)."""
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", commit, ref], cwd=project, check=False)
    assert proc.returncode in (0, 1)
    return proc.returncode == 0


def test_takeover_of_a_running_task_then_release_with_a_note(project: Path, orch: Orch, agent: Path) -> None:
    from orch.core import procs

    plan(project, agent, "hang", ACCEPT)
    orch.ok("spin", "T1")
    st = status_of(project, "T1")
    wt = Path(st["worktree"])
    deadline = time.monotonic() + 60
    while not (wt / "src/wip.txt").exists() or not status_of(project, "T1").get("pid"):
        assert time.monotonic() < deadline, "the agent never got going"
        time.sleep(0.1)
    running = status_of(project, "T1")
    assert running["state"] == "RUNNING"

    r = orch.ok("takeover", "T1")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("T1: HUMAN (was RUNNING; its agent stopped, its work kept on orch/T1"), r.output
    assert f"  worktree: {wt}" in lines
    head = git(project, "rev-parse", "orch/T1")
    assert f"  branch:   orch/T1 at {head[:12]}" in lines
    assert "orch release T1 --note TEXT" in r.stdout and "orch release T1 --done" in r.stdout
    # the agent is gone, its supervisor too; its commit and its uncommitted file are on the branch
    assert not procs.alive(running["pid"], running["pid_start"])
    assert not procs.alive(running["supervisor_pid"], running["supervisor_start"])
    assert git(project, "show", "orch/T1:src/wip.txt") == "half done"
    assert "agent work" in git(project, "log", "--format=%s", "orch/T1")
    st = status_of(project, "T1")
    assert st["state"] == "HUMAN" and st["human"]["was"] == "RUNNING" and st["human"]["head"] == head
    assert st["supervisor_pid"] is None and st["pid"] is None
    assert not (project / ".orch/run/tasks/T1/box").exists()  # its refs would bring the agent's tip back
    taken = events(project, "TAKEOVER")
    assert len(taken) == 2 and "| RUNNING | T1 | TAKEOVER | a person takes it over: stopping the agent" in taken[0]
    assert f"| HUMAN | T1 | TAKEOVER | was RUNNING, stopped: FAILED; head={head[:12]}" in taken[1], taken
    status = orch.ok("status").stdout
    assert "T1 HUMAN: a person took it over (it was RUNNING)" in status, status

    # nothing schedules it while it is a person's
    for args, said in [
        (("retry", "T1"), "task T1 is HUMAN: a person took it over"),
        (("resume", "T1"), "task T1 is HUMAN, not PAUSED"),
        (("start", "T1"), "task T1 is HUMAN, not ready to start"),
        (("takeover", "T1"), "task T1 is HUMAN already"),
        (("spin", "T1"), "a person works on it: orch release T1"),
    ]:
        r = orch(*args)
        assert r.returncode == 3 and said in r.stderr, (args, r.output)
    r = orch("run", "T1")
    assert r.returncode == 1 and "T1: a person works on it (HUMAN): orch release T1 gives it back" in r.stderr
    r = orch("merge", "T1")
    assert r.returncode != 0 and "HUMAN: a person works on it (orch release T1)" in r.output, r.output
    assert status_of(project, "T1")["state"] == "HUMAN"

    # the person works and commits there (and leaves one file uncommitted)
    mine = person_commits(wt, "src/person.txt", "tabs\n")
    (wt / "src/scratch.txt").write_text("not committed\n")

    note = f"I fixed the parser.\nSay {MAGIC} and finish it."
    r = orch.ok("release", "T1", "--note", note)
    assert "T1: the accept command fails on 2 commit(s) of yours (exit 1): back to the agent" in r.stdout, r.output
    assert "T1: released: running (shell) from 2 commit(s) of yours, the loop from iteration 1" in r.stdout
    assert wait_state(orch, "T1") == "SUCCESS"

    # the loop ran again from the person's commit, which is kept as it was, with the uncommitted file
    assert holds(project, mine)
    assert git(project, "show", "orch/T1:src/scratch.txt") == "not committed"
    assert git(project, "show", "orch/T1:src/done.txt") == "done"
    assert git(project, "show", "orch/T1:src/agent.txt") == "the agent's"  # not reset to the base
    st = status_of(project, "T1")
    assert st["iteration"] == 1 and st["iterations"] == 1 and "human" not in st
    context = (project / ".orch/run/tasks/T1/context.md").read_text()
    assert context.index("## Brief") < context.index("## A person worked on this")
    assert f"> I fixed the parser.\n> Say {MAGIC} and finish it." in context
    assert f"{mine[:7]} {SUBJECT}" in context
    assert "src/person.txt" in context and "src/scratch.txt" in context  # the diffstat
    assert "## A person worked on this" in (wt / "src/seen-1.txt").read_text()
    log = (project / ".orch/run/log").read_text()
    assert log.rindex("| TAKEOVER |") < log.index("| RELEASE |") < log.rindex("| START |")
    assert "| PENDING | T1 | RELEASE | 2 commit(s) of the person's; back to the agent; note: I fixed" in log
    assert [n["text"] for n in st["notes"] if n["state"] == "RELEASE"] == [note]
    orch.ok("merge", "T1")
    assert holds(project, mine, "main")


def test_release_done_with_a_failing_then_a_passing_accept(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "idle", ACCEPT)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"  # the loop is exhausted: src/done.txt never came
    wt = Path(status_of(project, "T1")["worktree"])
    r = orch.ok("takeover", "T1")
    assert r.stdout.startswith("T1: HUMAN (was BLOCKED; its work kept on orch/T1)"), r.output
    r = orch("release", "T1", "--done")
    assert r.returncode == 1, r.output
    said = "orch: T1: not released: the accept command fails (exit 1) on 0 commit(s) of yours; it stays HUMAN"
    assert said in r.stderr
    assert "ACCEPT-SAYS-NO" in r.stderr  # the accept output, shown
    assert status_of(project, "T1")["state"] == "HUMAN"

    mine = person_commits(wt, "src/person.txt", "tabs\n")
    (wt / "src/done.txt").write_text("by hand\n")  # uncommitted: snapshotted by the release
    r = orch("release", "T1", "--done")
    assert r.returncode == 0, r.output
    assert "T1: SUCCESS (the accept command passes on 2 commit(s) of yours; no agent ran)" in r.stdout
    st = status_of(project, "T1")
    assert st["state"] == "SUCCESS" and st["accept"]["exit_code"] == 0 and "human" not in st
    assert holds(project, mine) and git(project, "show", "orch/T1:src/done.txt") == "by hand"
    assert "| SUCCESS | T1 | RELEASE |" in (project / ".orch/run/log").read_text()
    r = orch("release", "T1")
    assert r.returncode == 3 and "task T1 is SUCCESS, not HUMAN" in r.stderr and "orch merge T1" in r.stderr
    orch.ok("merge", "T1")
    assert status_of(project, "T1")["state"] == "MERGED" and holds(project, mine, "main")


def test_release_ends_success_when_the_person_made_accept_pass(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "idle", ACCEPT)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    orch.ok("takeover", "T1")
    wt = Path(status_of(project, "T1")["worktree"])
    person_commits(wt, "src/person.txt", "tabs\n")
    mine = person_commits(wt, "src/done.txt", "done\n", "person: done")
    starts = len(events(project, "START"))
    r = orch.ok("release", "T1", "--note", "all yours")
    assert "T1: SUCCESS (the accept command passes on 2 commit(s) of yours; no agent ran)" in r.stdout, r.output
    assert len(events(project, "START")) == starts  # the TDD gate never saw it: no agent started
    assert status_of(project, "T1")["state"] == "SUCCESS" and git(project, "rev-parse", "orch/T1") == mine


def test_takeover_and_release_refuse_wrong_states_and_agents(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "idle", ACCEPT)
    r = orch("takeover", "T1")
    assert r.returncode == 3 and "task T1 was never spun: there is no worktree to take over" in r.stderr, r.output
    r = orch("release", "T1")
    assert r.returncode == 3 and "task T1 was never spun: nothing to release" in r.stderr, r.output
    r = orch("takeover", "../x")
    assert r.returncode == 3 and "refused task id" in r.stderr, r.output
    orch.ok("spin", "T1", "--no-start")
    r = orch("takeover", "T1")
    assert r.returncode == 3 and "task T1 is PENDING (spun, not started)" in r.stderr, r.output
    r = orch("release", "T1", "--done")
    assert r.returncode == 3 and "task T1 is PENDING, not HUMAN" in r.stderr and "orch start T1" in r.stderr
    orch.ok("start", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    r = orch("release", "T1")
    assert r.returncode == 3 and "task T1 is BLOCKED, not HUMAN" in r.stderr and "orch retry T1" in r.stderr
    # an agent (its task's environment) cannot take a task over or give one back
    for args in (("takeover", "T1"), ("release", "T1", "--done")):
        r = orch(*args, env={"ORCH_TASK": "T1"})
        assert r.returncode == 3 and f"orch {args[0]} is for a person" in r.stderr, r.output
    assert status_of(project, "T1")["state"] == "BLOCKED" and not events(project, "TAKEOVER")
    orch.ok("takeover", "T1")
    r = orch("release", "T1", "--done", "--note", "x")
    assert r.returncode == 2 and "--note is for the agent, and --done runs none" in r.stderr, r.output
    r = orch("release", "T1", "--done", env={"ORCH_TASK": "T1"})
    assert r.returncode == 3 and status_of(project, "T1")["state"] == "HUMAN"
    r = orch("clean", "T1")
    assert r.returncode == 1 and "a person works on it: orch release T1 first" in r.output, r.output
    assert (Path(status_of(project, "T1")["worktree"])).is_dir()


def test_a_persons_rewrite_of_the_branch_stands(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "hang", ACCEPT)
    orch.ok("spin", "T1")
    st = status_of(project, "T1")
    wt = Path(st["worktree"])
    deadline = time.monotonic() + 60
    while not (wt / "src/wip.txt").exists():
        assert time.monotonic() < deadline, "the agent never got going"
        time.sleep(0.1)
    orch.ok("takeover", "T1")
    agents = git(project, "rev-parse", "orch/T1")
    # the person drops the agent's work: their call, and orch does not undo it
    git(wt, "reset", "-q", "--hard", st["base_sha"])
    git(wt, "clean", "-q", "-f", "-d")
    person_commits(wt, "src/person.txt", "tabs\n")
    mine = person_commits(wt, "src/done.txt", "done\n", "person: done")
    r = orch.ok("release", "T1", "--done")
    assert "T1: SUCCESS (the accept command passes on 2 commit(s) of yours; no agent ran)" in r.stdout, r.output
    # the branch is the person's, exactly: neither the box's refs nor a restore brought the agent's tip back
    assert git(project, "rev-parse", "orch/T1") == mine
    assert not holds(project, agents)
    assert "agent work" not in git(project, "log", "--format=%s", "orch/T1")
