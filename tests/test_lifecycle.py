"""Worktree lifecycle: spin, supervised runs, stop, wait, report, clean, doctor, hostile input.

Agents here are small real programs (Python scripts run through the ``shell`` preset's ``run:``
field, or through manifests written by the test); orch runs as a real process on real git.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import Orch, Run, git, let_agent_write, status_of, wait_state, write_plan

AGENT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    mode = sys.argv[1]
    print("task", os.environ["ORCH_TASK"], "in", os.environ["ORCH_WORKTREE"], flush=True)
    assert os.getcwd() == os.environ["ORCH_WORKTREE"]
    assert os.path.isfile(os.environ["ORCH_CONTEXT"])
    os.makedirs("src", exist_ok=True)
    if mode == "commit":
        open("src/done.txt", "w").write("done\\n")
        subprocess.run(["git", "add", "src/done.txt"], check=True)
        subprocess.run(["git", "commit", "-q", "-m", "agent work"], check=True)
    elif mode == "dirty":
        open("src/wip.txt", "w").write("work in progress\\n")
    elif mode == "fail":
        print("giving up", flush=True)
        sys.exit(3)
    elif mode == "hang":
        open("src/wip.txt", "w").write("half done\\n")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("hanging", flush=True)
        time.sleep(600)
    elif mode == "report":
        subprocess.run([sys.executable, "-m", "orch", "report", "PROGRESS", "--note", "halfway"], check=True)
        subprocess.run([sys.executable, "-m", "orch", "report", "BLOCKED", "--note", "need the API key"], check=True)
    elif mode == "tokens":
        import json
        for n in range(1000):
            usage = {"input_tokens": 400, "cached_input_tokens": 0, "output_tokens": 100}
            print(json.dumps({"type": "turn.completed", "usage": usage}), flush=True)
            time.sleep(0.2)
    """
)


@pytest.fixture
def agent_script(tmp_path: Path) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(AGENT)
    return path


def task(task_id: str, run: str | None = None, *, extra: str = "", deps: str = "none") -> str:
    lines = [f"## {task_id}: Task {task_id}", "- scope: ^src/", f"- deps: {deps}", "- agent: shell"]
    if run:
        lines.append(f"- run: {run}")
    return "\n".join(lines) + ("\n" + extra if extra else "") + f"\n\nBrief of {task_id}.\n\n"


def agent_run(script: Path, mode: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode}"


def plan(repo: Path, *tasks: str) -> None:
    write_plan(repo, "# Plan: lifecycle\n\n" + "".join(tasks))
    git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def spin_hanging_agent(project: Path, orch: Orch, agent_script: Path) -> dict:
    """Spin T1 with an agent that hangs (ignoring SIGTERM); its status once the agent is up."""
    plan(project, task("T1", agent_run(agent_script, "hang")))
    orch.ok("spin", "T1")
    log = project / ".orch/run/tasks/T1/agent.log"
    wait_for(lambda: log.exists() and "hanging" in log.read_text() and status_of(project, "T1").get("pid"))
    return status_of(project, "T1")


# -- spin and supervised runs ------------------------------------------------------------------------


def test_spin_runs_agent_that_commits(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit"), extra="- accept: test -f src/done.txt"))
    main_head = git(project, "rev-parse", "HEAD")
    r = orch.ok("spin", "T1")
    wt = project / ".orch/worktrees/T1"
    assert f"T1: orch/T1 at {wt} (shell, running)" in r.stdout
    assert "[1/1] T1: worktree .orch/worktrees/T1" in r.stderr
    assert wait_state(orch, "T1") == "SUCCESS"
    st = status_of(project, "T1")
    assert st["exit_code"] == 0 and st["accept"]["exit_code"] == 0
    assert st["base_sha"] == main_head
    assert st["head_sha"] == git(project, "rev-parse", "orch/T1")
    assert git(project, "log", "-1", "--format=%s", "orch/T1") == "agent work"
    assert git(project, "rev-parse", "refs/orch/base/T1") == main_head
    manifest = yaml.safe_load((project / ".orch/run/tasks/T1/manifest.yaml").read_text())
    assert manifest["branch"] == "orch/T1" and manifest["scope"] == "^src/" and manifest["base_sha"] == main_head
    context = (project / ".orch/run/tasks/T1/context.md").read_text()
    assert "Brief of T1." in context and "`^src/`" in context and "orch report BLOCKED" in context
    assert "AGENTS.md" in context and "test -f src/done.txt" in context
    log = (project / ".orch/run/tasks/T1/agent.log").read_text()
    assert f"task T1 in {wt}" in log
    events = (project / ".orch/run/log").read_text()
    for action in ("| SPIN |", "| START |", "| EXIT |", "| ACCEPT | PASS", "| DONE |"):
        assert action in events
    # the person's checkout is untouched
    assert git(project, "rev-parse", "HEAD") == main_head
    assert git(project, "status", "--porcelain") == ""


def test_uncommitted_work_becomes_a_snapshot_commit(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "dirty")))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    st = status_of(project, "T1")
    assert st["snapshot_sha"] == st["head_sha"] == git(project, "rev-parse", "orch/T1")
    assert git(project, "log", "-1", "--format=%an <%ae>|%s", "orch/T1") == (
        "orch <orch@localhost>|orch: snapshot of task T1 (left uncommitted when the agent ended)"
    )
    assert git(project, "show", "orch/T1:src/wip.txt") == "work in progress"


def test_nonzero_exit_and_failing_accept_are_failed(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(
        project,
        task("T1", agent_run(agent_script, "fail")),
        task("T2", agent_run(agent_script, "dirty"), extra="- accept: test -f src/missing.txt"),
    )
    orch.ok("spin", "T1", "T2")
    r = orch("wait", "T1", "T2", "--timeout", "60")
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["T1: FAILED", "T2: BLOCKED"]  # T2: the loop ran out (tests/test_loop.py)
    st1, st2 = status_of(project, "T1"), status_of(project, "T2")
    assert st1["exit_code"] == 3 and st1["reason"] == "the agent exited with code 3"
    assert "giving up" in (project / ".orch/run/tasks/T1/agent.log").read_text()
    assert st2["exit_code"] == 0 and st2["reason"].startswith("the loop is exhausted")
    assert "the accept command failed (exit 1)" in (project / ".orch/run/tasks/T2/progress.md").read_text()


def test_stop_ends_a_hanging_agent_and_keeps_its_work(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "hang")))
    orch.ok("spin", "T1")
    log = project / ".orch/run/tasks/T1/agent.log"
    wait_for(lambda: log.exists() and "hanging" in log.read_text())
    assert orch("wait", "T1", "--timeout", "0.5").stdout == "T1: RUNNING (still running: timed out waiting)\n"
    r = orch.ok("stop", "T1", "--grace", "1")  # the agent ignores SIGTERM: SIGKILL after the grace period
    assert r.stdout.startswith("T1: FAILED (stopped by orch stop")
    st = status_of(project, "T1")
    assert st["state"] == "FAILED" and st["stop_requested_at"]
    assert git(project, "show", "orch/T1:src/wip.txt") == "half done"
    assert orch("stop", "T1").returncode == 3  # not running any more


def test_manifest_timeout_bounds_a_run(project: Path, orch: Orch, agent_script: Path) -> None:
    agents = project / ".orch/agents"
    (agents / "quick.yaml").write_text(
        f"command: [{json.dumps(sys.executable)}, {json.dumps(str(agent_script))}, hang]\ntimeout: 1\n"
    )
    plan(project, task("T1").replace("- agent: shell", "- agent: quick"))
    orch.ok("spin", "T1")
    # SIGTERM is ignored by this agent, so the run ends by SIGKILL after the supervisor's grace period
    assert wait_state(orch, "T1", timeout=90) == "FAILED"
    assert status_of(project, "T1")["reason"] == "timed out after 1s"


def test_budget_bounds_a_run_from_streamed_usage(project: Path, orch: Orch, agent_script: Path) -> None:
    (project / ".orch/agents/streamer.yaml").write_text(
        f"command: [{json.dumps(sys.executable)}, {json.dumps(str(agent_script))}, tokens]\n"
        "usage: codex-jsonl\nmax_tokens: 1000\n"
    )
    plan(project, task("T1").replace("- agent: shell", "- agent: streamer"))
    orch.ok("spin", "T1")
    # 100% of the budget: the running agent is stopped at once and the task PAUSED for a person
    assert wait_state(orch, "T1", timeout=90) == "PAUSED"
    st = status_of(project, "T1")
    assert st["reason"].startswith("the budget is spent: ") and "of 1,000 tokens used" in st["reason"]
    assert "orch resume T1 --budget" in st["reason"]
    assert st["tokens"]["total"] >= 1000 and st["tokens"]["input"] == st["tokens"]["total"] * 4 // 5
    assert st["usage"]["tokens"] == st["tokens"]["total"] and st["budget"] == {"tokens": 1000, "usd": None}
    r = orch.ok("status")
    assert "needs a person:" in r.stdout and "T1 PAUSED: the budget is spent" in r.stdout


def test_killed_supervisor_becomes_crashed_and_keeps_work(project: Path, orch: Orch, agent_script: Path) -> None:
    st = spin_hanging_agent(project, orch, agent_script)
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    os.killpg(st["pid"], signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{st['pid']}").exists() or "Z" in Path(f"/proc/{st['pid']}/stat").read_text())
    r = orch.ok("status", "--json")
    row = json.loads(r.stdout)["tasks"][0]
    assert row["state"] == "CRASHED"
    wip = project / ".orch/worktrees/T1/src/wip.txt"
    assert wip.read_text() == "half done\n"
    r = orch("doctor")
    assert r.returncode == 1 and "[found] crashed: T1:" in r.stdout
    orch.ok("doctor", "--fix")
    assert git(project, "show", "orch/T1:src/wip.txt") == "half done"
    assert "[info] crashed: T1" in orch.ok("doctor").stdout


def test_report_blocked_from_inside_the_worktree(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "report")))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    st = status_of(project, "T1")
    assert st["reason"] == "the agent reported BLOCKED: need the API key"
    assert [n["text"] for n in st["notes"]] == ["halfway", "need the API key"]
    assert "need the API key" in (project / ".orch/run/tasks/T1/BLOCKER_REPORT.md").read_text()
    # a person can report too, from a subfolder of the worktree, with an artifact
    sub = project / ".orch/worktrees/T1/src"
    (sub / "notes.txt").write_text("n\n")
    r = orch.ok("report", "PROGRESS", "--note", "checked", "--artifact", "notes.txt", cwd=sub)
    assert r.stdout == "T1: reported PROGRESS (task is BLOCKED)\n"
    assert status_of(project, "T1")["artifacts"] == ["src/notes.txt"]
    r = orch("report", "BLOCKED", cwd=sub)
    assert r.returncode == 2 and "needs a reason" in r.stderr
    r = orch("report", "PROGRESS", "--note", "x")
    assert r.returncode == 3 and "not inside a task's worktree" in r.stderr  # a state, not a usage error


def test_spin_refuses_unmerged_deps_and_respin(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit")), task("T2", "true", deps="T1"))
    r = orch("spin", "T2", "--no-start")
    assert r.returncode == 3 and "depends on T1, not merged yet" in r.stderr
    assert not (project / ".orch/worktrees/T2").exists()
    assert git(project, "branch", "--list", "orch/*") == ""
    r = orch.ok("spin", "--ready", "--no-start")
    assert r.stdout == f"T1: orch/T1 at {project}/.orch/worktrees/T1 (shell, not started)\n"
    r = orch("spin", "T1")
    assert r.returncode == 3 and "already spun" in r.stderr
    orch.ok("spin", "T2", "--force", "--no-start")
    orch.ok("start", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"


@pytest.mark.parametrize("bad", ["--x", "../x", "$(touch p)", "a\nb", "a@{b", "x..y", "T1.lock"])
def test_hostile_ids_are_refused_and_nothing_is_created(project: Path, orch: Orch, bad: str) -> None:
    plan(project, task("T1", "true"))
    r = orch("spin", "--no-start", "--", "T1", bad)
    assert r.returncode == 3, r.output
    assert "refused task id" in r.stderr and "Traceback" not in r.output
    assert not (project / "p").exists() and not (project / ".orch/worktrees").exists()
    assert git(project, "for-each-ref", "refs/heads/orch/", "refs/orch/") == ""
    assert orch("clean", "--", bad).returncode == 3
    assert orch("stop", "--", bad).returncode == 3


# -- agents as data ----------------------------------------------------------------------------------


def test_agents_listing_and_broken_manifest_only_fails_its_tasks(project: Path, orch: Orch) -> None:
    (project / ".orch/agents/broken.yaml").write_text("command: [x]\nmodle: y\n")
    infos = {i["name"]: i for i in json.loads(orch("agents", "--json").stdout)}
    assert set(infos) == {"aider", "broken", "claude", "codex", "gemini", "shell"}
    assert infos["shell"]["valid"] and infos["claude"]["usage"] == "claude-json"
    assert not infos["broken"]["valid"]
    assert infos["broken"]["error"].startswith(".orch/agents/broken.yaml:2: unknown field 'modle'")
    assert "did you mean 'model'?" in infos["broken"]["error"]
    plan(project, task("T1", "true").replace("- agent: shell", "- agent: broken"), task("T2", "true"))
    r = orch("spin", "T1", "T2", "--no-start")
    assert r.returncode == 3
    assert "orch: T1: .orch/agents/broken.yaml:2: unknown field 'modle'" in r.stderr
    assert "T2: orch/T2" in r.stdout
    assert (project / ".orch/worktrees/T2").is_dir() and not (project / ".orch/worktrees/T1").exists()


def test_manifest_added_while_tasks_run_is_used_at_once(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "hang")), task("T2"))
    orch.ok("spin", "T1")
    r = orch("spin", "T2", "--agent", "fresh")
    assert r.returncode == 3 and "no agent 'fresh'" in r.stderr
    (project / ".orch/agents/fresh.yaml").write_text(
        f"command: [{json.dumps(sys.executable)}, {json.dumps(str(agent_script))}, commit]\n"
    )
    orch.ok("spin", "T2", "--agent", "fresh")
    assert wait_state(orch, "T2") == "SUCCESS"
    assert status_of(project, "T2")["agent"] == "fresh"
    assert status_of(project, "T1")["state"] == "RUNNING"
    orch.ok("stop", "T1", "--kill")


# -- clean -------------------------------------------------------------------------------------------


def test_clean_dirty_worktree_keeps_a_restorable_snapshot(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit")))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    wt = project / ".orch/worktrees/T1"
    (wt / "src/later.txt").write_text("written after the run\n")
    (wt / "src/done.txt").write_text("changed\n")
    tip = git(project, "rev-parse", "orch/T1")
    r = orch.ok("clean", "T1")
    assert not wt.exists()
    snap = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/")
    assert snap.startswith("refs/orch/snapshots/T1/")
    assert f"kept uncommitted work as {snap}" in r.stdout
    assert f"restore: git worktree add --detach .orch/worktrees/T1 {snap}" in r.stdout
    assert "kept branch orch/T1" in r.stdout
    assert git(project, "rev-parse", "orch/T1") == tip  # the unmerged branch keeps its commits
    assert git(project, "rev-parse", f"{snap}^") == tip
    git(project, "worktree", "add", "--detach", ".orch/worktrees/T1", snap)
    assert (wt / "src/later.txt").read_text() == "written after the run\n"
    assert (wt / "src/done.txt").read_text() == "changed\n"
    st = status_of(project, "T1")
    assert st["state"] == "CLEANED" and st["previous_state"] == "SUCCESS" and snap in st["kept_refs"]
    assert git(project, "status", "--porcelain") == ""


def test_clean_force_hides_an_unmerged_branch_under_a_kept_ref(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit")))
    orch.ok("spin", "T1")
    wait_state(orch, "T1")
    tip = git(project, "rev-parse", "orch/T1")
    r = orch.ok("clean", "--all", "--force")
    kept = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/kept/T1/")
    assert git(project, "rev-parse", kept) == tip
    assert git(project, "branch", "--list", "orch/T1") == ""
    assert f"restore: git branch orch/T1 {kept}" in r.stdout
    assert orch.ok("clean", "--all").stdout == "nothing to clean\n"


def test_clean_merged_by_default_keeps_the_merge_record(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit")), task("T2", agent_run(agent_script, "commit")))
    orch.ok("spin", "T1", "T2")
    orch.ok("wait", "T1", "T2")
    git(project, "merge", "-q", "--no-ff", "-m", "merge T1", "orch/T1")
    path = project / ".orch/run/tasks/T1/status.yaml"
    st = yaml.safe_load(path.read_text())
    st.update(state="MERGED", merge={"outcome": "MERGED", "sha": st["head_sha"]})
    path.write_text(yaml.safe_dump(st))
    r = orch.ok("clean")
    assert r.stdout.startswith(
        "T1: cleaned (was MERGED)\n  removed worktree .orch/worktrees/T1\n  deleted branch orch/T1"
    )
    assert "T2" not in r.stdout
    assert git(project, "branch", "--list", "orch/*", "--format=%(refname:short)") == "orch/T2"
    st = status_of(project, "T1")
    assert st["state"] == "CLEANED" and st["merge"]["outcome"] == "MERGED"
    rows = {row["id"]: row for row in json.loads(orch.ok("status", "--json").stdout)["tasks"]}
    assert rows["T1"]["state"] == "CLEANED"


def test_clean_of_a_symlinked_worktree_removes_only_the_link(project: Path, orch: Orch, tmp_path: Path) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    wt = project / ".orch/worktrees/T1"
    moved = tmp_path / "elsewhere"
    wt.rename(moved)
    wt.symlink_to(moved)
    (moved / "src").mkdir()
    (moved / "src/mine.txt").write_text("keep me\n")
    git(project, "update-ref", "refs/heads/main", git(project, "rev-parse", "main"))  # no-op, repo sane
    r = orch.ok("clean", "T1")
    assert not wt.is_symlink() and not wt.exists()
    assert (moved / "src/mine.txt").read_text() == "keep me\n"
    assert f"removed the link .orch/worktrees/T1; kept the folder it pointed to: {moved}" in r.stdout
    snap = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/")
    assert git(project, "show", f"{snap}:src/mine.txt") == "keep me"


def test_clean_refuses_a_running_task(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "hang")))
    orch.ok("spin", "T1")
    r = orch("clean", "T1")
    assert r.returncode == 3 and "stop it first: orch stop T1" in r.stderr
    assert (project / ".orch/worktrees/T1").is_dir()
    orch.ok("stop", "T1", "--kill")


# -- doctor ------------------------------------------------------------------------------------------


def test_doctor_finds_and_repairs_half_spun_tasks(project: Path, orch: Orch) -> None:
    plan(project, task("T1", "true"), task("T2", "true"))
    base = git(project, "rev-parse", "HEAD")
    git(project, "update-ref", "refs/heads/orch/T1", base)  # spin killed after the refs
    git(project, "update-ref", "refs/orch/base/T1", base)
    git(project, "worktree", "add", "-q", "-b", "orch/T2", ".orch/worktrees/T2")  # killed before the status
    gone = project / ".orch/worktrees/T3"
    git(project, "worktree", "add", "-q", "--detach", str(gone))
    import shutil

    shutil.rmtree(gone)
    lock = project / ".git/index.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    r = orch("doctor")
    assert r.returncode == 1
    assert "[found] branch-without-worktree: orch/T1:" in r.stdout
    assert f"[found] unknown-worktree: {project}/.orch/worktrees/T2:" in r.stdout
    assert f"[found] prunable: {gone}" in r.stdout
    assert "[found] stale-index-lock: .git/index.lock" in r.stdout
    r = orch.ok("doctor", "--fix")
    assert "[fixed]" in r.stdout and "[found]" not in r.stdout
    assert git(project, "branch", "--list", "orch/T1") == "" and not lock.exists()
    assert status_of(project, "T2")["state"] == "CRASHED"
    assert orch.ok("doctor").stdout.startswith("[info] crashed: T2")
    orch.ok("clean", "T2")
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"


# -- tmux --------------------------------------------------------------------------------------------

needs_tmux = pytest.mark.skipif(
    not any((Path(p) / "tmux").exists() for p in os.environ["PATH"].split(":")), reason="no tmux"
)


@pytest.fixture
def tmux_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tmux server of the test's own (its socket in a temp folder), killed afterwards."""
    import subprocess

    sock = tmp_path / "tmux"
    sock.mkdir()
    env = {"TMUX_TMPDIR": str(sock)}
    yield env
    subprocess.run(["tmux", "kill-server"], env={**os.environ, **env}, capture_output=True, check=False)


@needs_tmux
def test_tmux_run_completes_and_attach_needs_tmux(
    project: Path, orch: Orch, agent_script: Path, tmux_env: dict[str, str]
) -> None:
    env = tmux_env
    plan(project, task("T1", agent_run(agent_script, "dirty")), task("T2", "true"))
    r = orch.ok("spin", "T1", "--tmux", env=env)
    assert "tmux orch-T1" in r.stdout
    assert orch("wait", "T1", "--timeout", "60", env=env).stdout == "T1: SUCCESS\n"
    assert git(project, "show", "orch/T1:src/wip.txt") == "work in progress"
    assert "task T1 in" in (project / ".orch/run/tasks/T1/agent.log").read_text()
    orch.ok("spin", "T2", "--no-start")
    r = orch("attach", "T2", env=env)
    assert r.returncode == 3 and "does not run in tmux" in r.stderr


# -- pure parts --------------------------------------------------------------------------------------


def test_render_command_drops_flags_without_values() -> None:
    from orch.agents.manifest import render_command

    template = ["claude", "-p", "{prompt}", "--model", "{model}", "--max-turns", "{max_turns}", "x{task}y"]
    assert render_command(template, {"prompt": "do it; rm -rf /", "model": None, "max_turns": "5", "task": "T1"}) == [
        "claude", "-p", "do it; rm -rf /", "--max-turns", "5", "xT1y",
    ]  # fmt: skip
    assert render_command(["sh", "-c", "{run}", "${HOME}"], {"run": "make"}) == ["sh", "-c", "make", "${HOME}"]


def test_pane_filter_cleans_line_ends_split_across_reads() -> None:
    from orch.agents.ptylog import clean

    text, held = clean(b"one\r\ntwo\r")  # the "\n" of the last line comes in the next read
    assert (text, held) == (b"one\ntwo", b"\r")
    text, held = clean(b"\nth\0ree\r\r\n50%\r60%", held)
    assert (text, held) == (b"\nthree\n50%\r60%", b"")  # a lone "\r" (a progress line) is kept


def test_usage_parsers() -> None:
    from orch.agents.manifest import parse_usage

    claude = json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "total_cost_usd": 0.25,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 20,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
            },
        },
        indent=2,
    )
    u = parse_usage("claude-json", "noise\n" + claude)
    assert (u.input, u.output, u.cached, u.total, u.cost_usd) == (15, 20, 100, 135, 0.25)
    codex = "\n".join(
        json.dumps(e)
        for e in [
            {"type": "thread.started"},
            {"type": "turn.completed", "usage": {"input_tokens": 50, "cached_input_tokens": 10, "output_tokens": 5}},
            {"type": "turn.completed", "usage": {"input_tokens": 30, "cached_input_tokens": 0, "output_tokens": 5}},
        ]
    )
    u = parse_usage("codex-jsonl", codex)
    assert (u.input, u.cached, u.output, u.cost_usd) == (70, 10, 10, None)
    aider = "\n".join(
        json.dumps(
            {"event": "message_send", "properties": {"prompt_tokens": p, "completion_tokens": 3, "total_cost": c}}
        )
        for p, c in [(100, 0.01), (200, 0.03)]
    )
    u = parse_usage("aider-analytics", "", aider)
    assert (u.input, u.output, u.cost_usd) == (300, 6, 0.03)
    gemini = json.dumps(
        {"response": "ok", "stats": {"models": {"g": {"tokens": {"prompt": 40, "candidates": 7, "cached": 4}}}}}
    )
    u = parse_usage("gemini-json", gemini)
    assert (u.input, u.cached, u.output) == (36, 4, 7)
    assert not parse_usage("claude-json", "not json at all").found


def test_max_parallel_bounds_the_agents_started(project: Path, orch: Orch, agent_script: Path) -> None:
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", "max_parallel: 1"))
    plan(project, task("T1", agent_run(agent_script, "hang")), task("T2", "true"))
    r = orch.ok("spin", "T1", "T2")  # past the slots a task is spun and QUEUED, not refused
    why = "waits for a slot: 1 agents run already (max_parallel): T1"
    assert f"T2: orch/T2 at {project / '.orch/worktrees/T2'} (shell, queued: {why})" in r.stdout
    assert f"[2/2] T2: queued: {why}" in r.stderr
    assert status_of(project, "T2")["state"] == "QUEUED" and (project / ".orch/worktrees/T2").is_dir()
    orch.ok("stop", "T1", "--kill")  # T1's run ends: the next queued task starts by itself
    assert wait_state(orch, "T2") == "SUCCESS"


def test_concurrent_starts_never_exceed_max_parallel(project: Path, orch: Orch, agent_script: Path) -> None:
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", "max_parallel: 2"))
    ids = ["T1", "T2", "T3", "T4"]
    plan(project, *(task(t, agent_run(agent_script, "hang")) for t in ids))
    orch.ok("spin", *ids, "--no-start")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orch", "start", t], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for t in ids
    ]
    codes = [p.wait(timeout=60) for p in procs]
    outputs = [p.stdout.read().decode() for p in procs if p.stdout is not None]
    try:
        running = [t for t in ids if status_of(project, t)["state"] == "RUNNING"]
        assert len(running) == 2, (codes, outputs)
        assert codes == [0, 0, 0, 0], outputs  # past the slots, a start queues
        queued = [o for o in outputs if "queued: waits for a slot: 2 agents run already (max_parallel)" in o]
        assert len(queued) == 2
        assert all(status_of(project, t)["state"] == "QUEUED" for t in ids if t not in running)
    finally:
        for t in ids:
            orch("dequeue", t)  # before any stop: a stopped run would start the next
        for t in ids:
            orch("stop", t, "--kill")


# -- regressions: work loss, the user's checkout, bounded runs ---------------------------------------


def test_doctor_never_adopts_or_commits_in_the_users_checkout(project: Path, orch: Orch) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    orch.ok("clean", "T1", "--force")
    git(project, "checkout", "-q", "-b", "orch/T1")  # the user works on a branch of the task's name
    (project / "mine.txt").write_text("my uncommitted work\n")
    head = git(project, "rev-parse", "HEAD")
    for _ in range(2):
        orch("doctor", "--fix")
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain") == "?? mine.txt"
    st = status_of(project, "T1")
    assert st["state"] == "CLEANED" and st["worktree"] is None


def test_clean_never_deletes_a_branch_a_worktree_has_checked_out(project: Path, orch: Orch) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    wt = project / ".orch/worktrees/T1"
    git(wt, "checkout", "-q", "--detach")
    git(project, "checkout", "-q", "orch/T1")  # the user's checkout is on the task's branch
    r = orch.ok("clean", "T1", "--force")
    assert "kept branch orch/T1 (checked out in" in r.stdout, r.stdout
    assert git(project, "symbolic-ref", "HEAD") == "refs/heads/orch/T1"
    assert git(project, "rev-parse", "--verify", "refs/heads/orch/T1")


def test_commits_on_a_detached_head_are_brought_to_the_branch(project: Path, orch: Orch, tmp_path: Path) -> None:
    script = tmp_path / "detach.sh"
    script.write_text(
        "set -e\ngit checkout -q --detach\nmkdir -p src\necho x > src/x.txt\n"
        "git add src/x.txt\ngit commit -q -m 'detached work'\n"
    )
    plan(project, task("T1", f"sh {shlex.quote(str(script))}"))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    st = status_of(project, "T1")
    assert git(project, "log", "-1", "--format=%s", "orch/T1") == "detached work"
    assert st["head_sha"] == git(project, "rev-parse", "orch/T1")
    assert "moved forward" in st["reason"]
    wt = project / ".orch/worktrees/T1"
    assert git(wt, "symbolic-ref", "HEAD") == "refs/heads/orch/T1"


def test_clean_keeps_commits_only_a_detached_head_holds(project: Path, orch: Orch) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    wt = project / ".orch/worktrees/T1"
    git(wt, "checkout", "-q", "--detach")
    (wt / "src").mkdir()
    (wt / "src/y.txt").write_text("y\n")
    git(wt, "add", "src/y.txt")
    git(wt, "commit", "-q", "-m", "lost?")
    sha = git(wt, "rev-parse", "HEAD")
    r = orch.ok("clean", "T1")
    kept = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/kept/T1/")
    assert kept and git(project, "rev-parse", kept) == sha
    assert f"kept its commits as {kept}" in r.stdout
    assert kept in status_of(project, "T1")["kept_refs"]


def test_killing_only_the_supervisor_ends_the_agent(project: Path, orch: Orch, agent_script: Path) -> None:
    st = spin_hanging_agent(project, orch, agent_script)
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: "Z" in _proc_state(st["supervisor_pid"]))
    assert json.loads(orch.ok("status", "--json").stdout)["tasks"][0]["state"] == "CRASHED"
    wait_for(lambda: "Z" in _proc_state(st["pid"]), timeout=15)  # the agent (SIGTERM-proof) is ended too
    wait_for(lambda: _group_gone(st["pid"]), timeout=15)  # and all it started: nothing is left running


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return all(
        "Z" in _proc_state(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == pgid
    )


def _pgid(proc: Path) -> int | None:
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[2])


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "Z (gone)"
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_supervisor_does_not_import_code_from_the_worktree(project: Path, orch: Orch, agent_script: Path) -> None:
    (project / "orch").mkdir()
    (project / "orch/__init__.py").write_text("raise SystemExit('imported the worktree copy')\n")
    (project / "orch/runner.py").write_text("raise SystemExit('imported the worktree copy')\n")
    (project / "docs").mkdir()
    (project / "docs/.keep").write_text("")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a package named orch")
    plan(project, task("T1", agent_run(agent_script, "dirty")))
    docs = project / "docs"  # not the root: `python -m orch` there would import the repo's orch/
    orch.ok("spin", "T1", cwd=docs)
    assert wait_state(Orch(docs), "T1") == "SUCCESS"


def test_the_old_supervisor_command_line_runs_todays_supervisor(tmp_path: Path) -> None:
    # `python -m orch.runner ROOT ID` is how orch 0.1 started a supervisor (a tmux session may still
    # run one): it is today's supervisor, down to its usage line and exit code for bad usage.
    usage = "usage: python -m orch.agents.supervisor ROOT TASK_ID [--tmux]\n"
    for module in ("orch.runner", "orch.agents.supervisor"):
        r = subprocess.run(
            [sys.executable, "-m", module], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60
        )
        assert (r.returncode, r.stdout, r.stderr) == (2, "", usage), module


def test_stop_ends_a_long_accept_command(project: Path, orch: Orch, agent_script: Path) -> None:
    gateless = "- accept: echo accepting; sleep 60\n- tdd_gate: false"
    plan(project, task("T1", agent_run(agent_script, "dirty"), extra=gateless))
    orch.ok("spin", "T1")
    accept_log = project / ".orch/run/tasks/T1/accept.log"
    wait_for(lambda: accept_log.exists() and "accepting" in accept_log.read_text())
    began = time.monotonic()
    r = orch.ok("stop", "T1", "--grace", "1")
    assert time.monotonic() - began < 15
    assert r.stdout.startswith("T1: FAILED (stopped by orch stop"), r.stdout
    assert status_of(project, "T1")["accept"]["exit_code"] is None


def test_respin_starts_fresh_run_files_and_keeps_the_old_ones(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "report")))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    orch.ok("clean", "T1", "--force")
    orch.ok("spin", "T1", "--no-start")
    folder = project / ".orch/run/tasks/T1"
    assert not (folder / "BLOCKER_REPORT.md").exists() and not (folder / "agent.log").exists()
    assert "need the API key" in (folder / "run-1/BLOCKER_REPORT.md").read_text()
    assert "task T1" in (folder / "run-1/agent.log").read_text()
    assert status_of(project, "T1")["state"] == "PENDING"


def test_clean_uses_the_task_branch_whatever_the_status_says(project: Path, orch: Orch) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    path = project / ".orch/run/tasks/T1/status.yaml"
    st = yaml.safe_load(path.read_text())
    st["branch"] = "main"
    path.write_text(yaml.safe_dump(st))
    r = orch("clean", "T1", "--force")
    assert r.returncode == 3 and "branch" in r.stderr
    assert git(project, "rev-parse", "--verify", "refs/heads/main")


def test_lost_spin_race_spins_the_other_tasks(project: Path, orch: Orch, tmp_path: Path) -> None:
    plan(project, task("T1", "true"), task("T2", "true"))
    # A concurrent spin wins orch/T2 between orch's check and its transaction: the first spin waits
    # right before its claim while a second, real one spins T2. (This was a reference-transaction
    # hook in orch's transaction; orch's git runs no hook any more: tests/test_escapes_git.py.)
    env = {**os.environ, "ORCH_TEST_PAUSE_AT": f"claim:{tmp_path}"}
    argv = [sys.executable, "-m", "orch", "spin", "--no-start", "T1", "T2"]
    first = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "paused").exists(), timeout=60)
    orch.ok("spin", "--no-start", "T2")
    (tmp_path / "go").touch()
    stdout, stderr = first.communicate(timeout=120)
    r = Run(first.returncode, stdout, stderr)
    assert r.returncode == 3, r.output
    assert "T2: task T2 already spun" in r.stderr and "Traceback" not in r.output
    assert "T1: orch/T1" in r.stdout
    assert (project / ".orch/worktrees/T1").is_dir()


def test_wait_without_ids_judges_tasks_that_already_ended(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "fail")))
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "FAILED"
    r = orch("wait")
    assert r.returncode == 1 and r.stdout == "T1: FAILED\n"


def test_agent_finds_orch_and_empty_commands_are_refused(project: Path, orch: Orch, tmp_path: Path) -> None:
    (project / ".orch/agents/empty.yaml").write_text('command: ["{model}"]\n')
    out = let_agent_write(project, tmp_path / "records") / "seen.txt"
    plan(
        project,
        task("T1", f'command -v orch > {shlex.quote(str(out))}; echo "$ORCH" >> {shlex.quote(str(out))}'),
        task("T2").replace("- agent: shell", "- agent: empty"),
    )
    env = {"PATH": "/usr/bin:/bin"}  # orch run by its full path: its folder is not on PATH
    orch.ok("spin", "T1", env=env)
    assert wait_state(orch, "T1") == "SUCCESS"
    where, command = out.read_text().splitlines()
    assert os.path.dirname(where) == os.path.dirname(sys.executable) or where.endswith("/orch")
    assert command == where  # $ORCH names the launcher PATH finds (the orch that started the task)
    r = orch("spin", "T2")
    assert r.returncode == 3 and "renders to an empty command" in r.stderr, r.output
    assert "Traceback" not in r.output


def test_clean_json_exit_code_matches_text(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "hang")), task("T2", "true"))
    orch.ok("spin", "T2", "--no-start")
    path = project / ".orch/run/tasks/T2/status.yaml"
    st = yaml.safe_load(path.read_text())
    st["state"] = "LOCK_VIOLATION"
    path.write_text(yaml.safe_dump(st))
    git(project / ".orch/worktrees/T2", "worktree", "lock", str(project / ".orch/worktrees/T2"))
    assert orch("clean", "T2").returncode == 1
    assert orch("clean", "T2", "--json").returncode == 1


def test_doctor_leaves_the_parked_integration_branch_alone(project: Path, orch: Orch) -> None:
    git(project, "branch", "orch/integration")
    git(project, "commit", "-q", "--allow-empty", "-m", "more")
    git(project, "update-ref", "refs/heads/orch/integration", git(project, "rev-parse", "HEAD"))
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"


@needs_tmux
def test_tmux_agent_gets_our_environment_and_ctrl_c_spares_the_supervisor(
    project: Path, orch: Orch, agent_script: Path, tmp_path: Path, tmux_env: dict[str, str]
) -> None:
    import subprocess

    env = {**tmux_env, "ORCH_TEST_SECRET": "s3cret"}
    seen = let_agent_write(project, tmp_path / "records") / "secret.txt"
    hang = agent_run(agent_script, "hang")
    plan(project, task("T1", f'echo "$ORCH_TEST_SECRET" > {shlex.quote(str(seen))}; {hang}'))
    orch.ok("spin", "T1", "--tmux", env=env)
    log = project / ".orch/run/tasks/T1/agent.log"
    wait_for(lambda: log.exists() and "hanging" in log.read_text())
    assert seen.read_text() == "s3cret\n"
    assert not (project / ".orch/run/tasks/T1/launch-env.json").exists()
    subprocess.run(["tmux", "send-keys", "-t", "=orch-T1:", "C-c"], env={**os.environ, **env}, check=True)
    assert orch("wait", "T1", "--timeout", "60", env=env).stdout.startswith("T1: FAILED")
    st = status_of(project, "T1")
    assert st["reason"].startswith("the agent exited with code"), st["reason"]
    assert git(project, "show", "orch/T1:src/wip.txt") == "half done"  # completed, with its snapshot


def test_clean_of_a_link_to_a_foreign_folder_only_unlinks(project: Path, orch: Orch, tmp_path: Path) -> None:
    plan(project, task("T1", "true"))
    orch.ok("spin", "T1", "--no-start")
    wt = project / ".orch/worktrees/T1"
    git(project, "worktree", "remove", str(wt))
    foreign = tmp_path / "not-a-repo"
    foreign.mkdir()
    (foreign / "f.txt").write_text("theirs\n")
    wt.symlink_to(foreign)
    r = orch.ok("clean", "T1")
    assert not wt.is_symlink() and (foreign / "f.txt").read_text() == "theirs\n"
    assert "kept the folder it pointed to" in r.stdout
    assert git(project, "for-each-ref", "refs/orch/snapshots/") == ""


def test_spin_refuses_a_worktree_root_git_does_not_ignore(project: Path, orch: Orch) -> None:
    config = project / ".orch/config.yaml"
    text = config.read_text()
    assert "worktree_root:" in text
    config.write_text(
        "\n".join("worktree_root: ." if ln.startswith("worktree_root:") else ln for ln in text.splitlines())
    )
    plan(project, task("T1", "true"))
    r = orch("spin", "T1", "--no-start")
    assert r.returncode == 3 and "git does not ignore it" in r.stderr, r.output
    assert not (project / "T1").exists() and git(project, "branch", "--list", "orch/*") == ""
    (project / ".gitignore").write_text("/T1/\n")
    orch.ok("spin", "T1", "--no-start")


def test_agent_and_accept_see_the_users_path_and_reach_orch_by_a_launcher(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    # The user's PATH starts with a python3 of their own: orch's interpreter folder (a venv that is
    # not on PATH, as pipx installs orch) must not come before it for the agent or its accept.
    userbin = tmp_path / "userbin"
    userbin.mkdir()
    (userbin / "python3").write_text("#!/bin/sh\necho the-users-python3\n")
    (userbin / "python3").chmod(0o755)
    records = let_agent_write(project, tmp_path / "records")
    seen, accepted = records / "seen.txt", records / "accepted.txt"
    q = shlex.quote
    run = (
        f"python3 -c 'import sys; print(sys.executable)' > {q(str(seen))}; "
        # A worktree with an orch/ package of its own must not shadow the orch the launcher runs.
        "mkdir -p orch && echo 'raise SystemExit(99)' > orch/__init__.py && "
        '"$ORCH" report PROGRESS --note via-launcher && orch report PROGRESS --note via-path && '
        f'command -v orch >> {q(str(seen))} && echo "$ORCH" >> {q(str(seen))}'
    )
    plan(project, task("T1", run, extra=f"- accept: python3 > {q(str(accepted))}\n- tdd_gate: false"))
    env = {"PATH": f"{userbin}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    orch.ok("spin", "T1", env=env)
    assert wait_state(orch, "T1") == "SUCCESS", status_of(project, "T1")
    assert accepted.read_text() == "the-users-python3\n"
    python3, where, launcher = seen.read_text().splitlines()
    assert python3 == "the-users-python3"
    assert where == launcher and os.path.isabs(launcher) and os.access(launcher, os.X_OK)
    assert os.listdir(os.path.dirname(launcher)) == ["orch"]  # the folder holds the launcher only
    assert [n["text"] for n in status_of(project, "T1")["notes"]] == ["via-launcher", "via-path"]


def test_wait_on_a_merged_task_is_a_success(project: Path, orch: Orch, agent_script: Path) -> None:
    plan(project, task("T1", agent_run(agent_script, "commit")), task("T2", agent_run(agent_script, "fail")))
    orch.ok("spin", "T1", "T2")
    assert orch("wait", "T1", "T2", "--timeout", "60").returncode == 1
    orch.ok("merge", "T1")
    assert status_of(project, "T1")["state"] == "MERGED"
    r = orch("wait", "T1", "--timeout", "60")
    assert (r.returncode, r.stdout) == (0, "T1: MERGED\n"), r.output
    orch.ok("clean", "T1")
    r = orch("wait", "T1", "--timeout", "60")
    assert (r.returncode, r.stdout) == (0, "T1: CLEANED (merged)\n"), r.output
    r = orch("wait", "T1", "T2", "--timeout", "60")  # a FAILED task still fails the wait
    assert (r.returncode, r.stdout) == (1, "T1: CLEANED (merged)\nT2: FAILED\n"), r.output
    orch.ok("clean", "T2", "--force")
    r = orch("wait", "T2", "--timeout", "60")  # cleaned without a merge: not a success
    assert r.returncode == 1 and r.stdout == "T2: CLEANED\n", r.output


@needs_tmux
def test_tmux_agent_log_has_plain_line_ends_and_no_nul_bytes(
    project: Path, orch: Orch, tmux_env: dict[str, str]
) -> None:
    # The pane is a terminal: what the agent prints reaches agent.log through it ("\n" as "\r\n",
    # and NUL padding), and agent.log must read like the log of a run without tmux.
    run = "printf 'first line\\nsecond line\\n'; printf 'a\\000b\\r\\n'; sleep 0.3; echo last line"
    plan(project, task("T1", run))
    orch.ok("spin", "T1", "--tmux", env=tmux_env)
    assert orch("wait", "T1", "--timeout", "60", env=tmux_env).stdout == "T1: SUCCESS\n"
    log = project / ".orch/run/tasks/T1/agent.log"
    wait_for(lambda: b"last line" in log.read_bytes())
    data = log.read_bytes()
    assert b"\r" not in data and b"\0" not in data, data
    assert b"first line\nsecond line\nab\nlast line\n" in data, data


def test_spin_progress_comes_in_plan_order(project: Path, orch: Orch) -> None:
    # Worktrees are checked out in parallel; T1's checkout is made the slowest (a post-checkout hook
    # that sleeps there), and the progress must still come task by task in the order asked for.
    ids = ["T1", "T2", "T3", "T4", "T5"]
    plan(project, *(task(i, "true", deps="T1" if i == "T3" else "none") for i in ids))
    hook = project / ".git/hooks/post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text('#!/bin/sh\ncase "$(pwd)" in */T1) sleep 2;; esac\nexit 0\n')
    hook.chmod(0o755)
    r = orch("spin", *ids)
    assert r.returncode == 3, r.output
    progress = [line for line in r.stderr.splitlines() if line.startswith("[")]
    spun = [(n, i) for n, i in enumerate(ids, 1) if i != "T3"]
    assert progress == [
        "[3/5] T3: refused: task T3 depends on T1, not merged yet",
        *(f"[{n}/5] {i}: worktree .orch/worktrees/{i}" for n, i in spun),
        *(f"[{n}/5] {i}: started" for n, i in spun),
    ], r.stderr
    orch.ok("wait", "T1", "T2", "T4", "T5", "--timeout", "60")


def test_doctor_json_lists_the_findings_with_the_same_exit_codes(project: Path, orch: Orch) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parent.parent / "schemas" / "doctor.schema.json").read_text())
    plan(project, task("T1", "true"), task("T2", "true"))
    base = git(project, "rev-parse", "HEAD")
    git(project, "update-ref", "refs/heads/orch/T1", base)  # spin killed after the refs
    git(project, "update-ref", "refs/orch/base/T1", base)
    git(project, "worktree", "add", "-q", "-b", "orch/T2", ".orch/worktrees/T2")  # killed before the status
    lock = project / ".git/index.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    r = orch("doctor", "--json")
    assert r.returncode == 1 and r.stderr == "", r.output
    data = json.loads(r.stdout)
    jsonschema.validate(data, schema)
    assert data["ok"] is False
    found = {f["kind"]: f for f in data["findings"]}
    assert sorted(found) == ["branch-without-worktree", "stale-index-lock", "unknown-worktree"]
    t1, t2, stale = found["branch-without-worktree"], found["unknown-worktree"], found["stale-index-lock"]
    assert (t1["task"], t1["path"], t1["fixable"], t1["fixed"]) == ("T1", None, True, False)
    assert (t2["task"], t2["path"]) == ("T2", str(project / ".orch/worktrees/T2"))
    assert "orch has no status for task T2" in t2["message"] and t2["fix"].startswith("adopt it")
    assert (stale["task"], stale["path"]) == (None, str(lock))
    r = orch("doctor", "--fix", "--json")
    assert r.returncode == 0, r.output
    data = json.loads(r.stdout)
    jsonschema.validate(data, schema)
    assert data["ok"] is True and all(f["fixed"] for f in data["findings"]) and len(data["findings"]) == 3
    orch.ok("clean", "T2")
    r = orch("doctor", "--json")
    assert (r.returncode, json.loads(r.stdout)) == (0, {"findings": [], "ok": True})
