"""`orch status [ID] [--json]`: the plan joined with runtime state, from anywhere in the repository."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Orch, git, write_plan

from orch.core import procs
from orch.core.store import schema

PLAN = """\
# Plan: status

## T1: First
- scope: ^a/
- accept: test -f a/x

## T2: Second
- deps: T1
- agent: shell
"""


def put_status(project: Path, task_id: str, text: str) -> Path:
    path = project / ".orch/run/tasks" / task_id / "status.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def status_json(orch: Orch, *args: str, cwd: Path | None = None) -> list[dict[str, object]]:
    import jsonschema

    data = json.loads(orch.ok("status", "--json", *args, cwd=cwd).stdout)
    jsonschema.validate(data, schema("status"))
    tasks: list[dict[str, object]] = data["tasks"]
    return tasks


def test_tasks_without_runtime_state_are_pending(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    r = orch.ok("status")
    assert r.stdout == (
        "ID  STATE            AGENT  BRANCH  AGE  ITER  TOKENS  COST  BUDGET  VERDICT  TITLE\n"
        "T1  PENDING (ready)  -      -       -    -     -       -     -       -        First\n"
        "T2  PENDING          shell  -       -    -     -       -     -       -        Second\n"
    )
    assert "\x1b[" not in r.stdout
    tasks = status_json(orch)
    assert [(t["id"], t["state"], t["ready"], t["in_plan"]) for t in tasks] == [
        ("T1", "PENDING", True, True),
        ("T2", "PENDING", False, True),
    ]


def test_status_joins_runtime_state(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    git(project, "branch", "orch/T1")
    head = git(project, "rev-parse", "HEAD")
    put_status(
        project,
        "T1",
        "id: T1\nstate: SUCCESS\nagent: shell\nbranch: orch/T1\nworktree: .orch/worktrees/T1\n"
        "started_at: '2026-01-01T00:00:00Z'\niterations: 2\ntokens: {input: 1200, output: 300}\ncost_usd: 0.25\n"
        f"verdict: {{result: OK, sha: '{head}', at: '2026-01-01T00:10:00Z'}}\n"
        "notes: [{at: '2026-01-01T00:00:00Z', text: looks good}]\n",
    )
    put_status(project, "OLD", "id: OLD\nstate: CLEANED\n")
    rows = orch.ok("status").stdout.splitlines()
    assert rows[1].split()[:8] == ["T1", "SUCCESS", "shell", "orch/T1", rows[1].split()[4], "2", "1,500", "$0.25"]
    assert rows[1].endswith("OK       First")
    assert rows[3].split(maxsplit=2)[:2] == ["OLD", "CLEANED"]
    assert rows[3].endswith("(not in the plan any more)")
    t1, t2, old = status_json(orch)
    assert t1["tokens"] == 1500 and t1["cost_usd"] == 0.25 and t1["iterations"] == 2
    assert t1["verdict"] == "OK" and t1["verdict_sha"] == head and t1["verdict_stale"] is False
    assert isinstance(t1["age_seconds"], float) and t1["age_seconds"] > 0
    assert (t2["state"], t2["ready"]) == ("PENDING", False)  # SUCCESS is not MERGED
    assert (old["in_plan"], old["title"]) == (False, "(not in the plan any more)")
    # the branch moves on after the verdict: the verdict is stale
    (project / "x.txt").write_text("x\n")
    git(project, "add", "x.txt")
    git(project, "commit", "-q", "-m", "x")
    git(project, "branch", "-f", "orch/T1", "HEAD")
    assert status_json(orch)[0]["verdict_stale"] is True
    assert "OK (stale)" in orch.ok("status").stdout

    detail = orch.ok("status", "T1").stdout.splitlines()
    assert detail[:9] == [
        "T1: First",
        "  state:      SUCCESS",
        "  deps:       none",
        "  scope:      ^a/",
        "  accept:     test -f a/x",
        "  agent:      shell",
        "  branch:     orch/T1",
        "  worktree:   .orch/worktrees/T1",
        "  started:    2026-01-01T00:00:00Z",
    ]
    assert detail[10:] == [
        "  iterations: 2",
        "  usage:      1,500 tokens, $0.25",
        f"  verdict:    OK at {head[:12]} (stale: the branch moved since)",
        "  note 2026-01-01T00:00:00Z: looks good",
    ]
    assert [t["id"] for t in status_json(orch, "T2")] == ["T2"]


def test_status_of_an_unknown_task(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    r = orch("status", "T3")
    assert r.returncode == 3
    assert r.stderr == "orch: no task 'T3' in .orch/plan.md\n  hint: see the tasks with: orch plan\n"
    r = orch("status", "t1")
    assert "hint: did you mean 'T1'?" in r.stderr


def finished_process() -> tuple[int, str]:
    """The pid and start time of a real process that has exited (and been reaped)."""
    proc = subprocess.Popen(["sleep", "30"])
    started = procs.start_time(proc.pid)
    assert started is not None
    proc.kill()
    proc.wait()
    return proc.pid, started


def test_a_running_task_whose_process_is_gone_turns_crashed(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    pid, started = finished_process()
    path = put_status(project, "T1", f"id: T1\nstate: RUNNING\npid: {pid}\npid_start: '{started}'\n")
    assert status_json(orch)[0]["state"] == "CRASHED"
    text = path.read_text()
    assert "state: CRASHED" in text and "reason: its process is gone" in text and "finished_at:" in text
    log = (project / ".orch/run/log").read_text().splitlines()
    assert [line.split(" | ")[1:] for line in log] == [["CRASHED", "T1", "CHECK", "process gone", "-"]]
    orch.ok("status")
    assert len((project / ".orch/run/log").read_text().splitlines()) == 1  # logged once, not on every look


def test_a_running_task_with_a_live_process_stays_running(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    proc = subprocess.Popen(["sleep", "60"])
    try:
        started = procs.start_time(proc.pid)
        put_status(project, "T1", f"id: T1\nstate: RUNNING\npid: {proc.pid}\npid_start: '{started}'\n")
        put_status(project, "T2", f"id: T2\nstate: RUNNING\npid: {proc.pid}\npid_start: 'not-its-start'\n")
        states = [t["state"] for t in status_json(orch)]
        assert states == ["RUNNING", "CRASHED"]  # same pid, other start time: a reused pid, not our agent
    finally:
        proc.kill()
        proc.wait()


def test_status_from_a_subfolder_and_from_a_linked_worktree(project: Path, orch: Orch, tmp_path: Path) -> None:
    write_plan(project, PLAN)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")
    put_status(project, "T1", "id: T1\nstate: FAILED\n")
    expected = orch.ok("status").stdout
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    assert orch.ok("status", cwd=sub).stdout == expected
    worktree = tmp_path / "elsewhere" / "wt"
    git(project, "worktree", "add", "-q", "-b", "feature", str(worktree))
    # the worktree's own copy of the plan is not the one that counts: an agent cannot change the rules
    (worktree / ".orch/plan.md").write_text(PLAN + "\n## T9: Sneaky\n")
    (worktree / "lib").mkdir()
    assert orch.ok("status", cwd=worktree).stdout == expected
    assert orch.ok("status", cwd=worktree / "lib").stdout == expected
    assert orch.ok("log", cwd=worktree).stdout == ""
    r = orch.ok("plan", "add", "T3", "--title", "from the worktree", cwd=worktree / "lib")
    assert r.stdout == "added T3 at .orch/plan.md:11\n"
    assert "## T3: from the worktree" in (project / ".orch/plan.md").read_text()
    assert "T3" not in (worktree / ".orch/plan.md").read_text()
    # inside the .git folder there is no worktree, but the project is still found
    assert orch.ok("status", cwd=project / ".git").stdout.splitlines()[0].startswith("ID")


def test_status_without_tasks(project: Path, orch: Orch) -> None:
    write_plan(project, "# Plan: empty\n")
    assert orch.ok("status").stdout == "no tasks in .orch/plan.md yet (add one: orch plan add ID --title ...)\n"
    assert status_json(orch) == []


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run orch with its stdout on a pseudo-terminal and return what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch", *args], cwd=cwd, stdout=follower, stderr=subprocess.PIPE, env=env
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else b""
    return out.decode()


@pytest.mark.parametrize("no_color", [False, True])
def test_rich_table_on_a_terminal_plain_with_no_color(project: Path, no_color: bool) -> None:
    write_plan(project, PLAN)
    put_status(project, "T1", "id: T1\nstate: FAILED\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="120")
    if no_color:
        env["NO_COLOR"] = "1"
    out = run_in_pty(["status"], project, env)
    assert "FAILED" in out and "Second" in out
    if no_color:
        assert "\x1b[" not in out
        assert out.replace("\r\n", "\n").startswith("ID  STATE    AGENT")
    else:
        assert "\x1b[" in out  # styled by rich


def test_a_narrow_terminal_cuts_titles_never_states(project: Path) -> None:
    write_plan(project, PLAN.replace("## T2: Second", "## T2: Second task with a title long enough to be cut"))
    put_status(project, "T1", "id: T1\nstate: CLEANED\nmerge:\n  outcome: CONFLICT\n")
    put_status(project, "T2", "id: T2\nstate: SCOPE_VIOLATION\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    import re

    for columns in ("80", "50"):
        out = re.sub(r"\x1b\[[0-9;]*m", "", run_in_pty(["status"], project, {**env, "COLUMNS": columns}))
        lines = out.replace("\r\n", "\n").splitlines()
        assert lines[0].split()[:3] == ["ID", "STATE", "AGENT"], out  # only titles and branches are cut
        assert lines[1].split()[:3] == ["T1", "CLEANED", "(CONFLICT)"], out
        assert lines[2].split()[:3] == ["T2", "SCOPE_VIOLATION", "shell"], out
    assert "Second task with a title long enough to be cut" in out  # too narrow: plain lines, wrapped


@pytest.mark.parametrize("terminal", [True, False])
def test_titles_are_shown_as_written_never_as_markup_or_control_sequences(
    project: Path, orch: Orch, terminal: bool
) -> None:
    # '[/api]' closes no rich markup tag (rich raised and orch status crashed on a terminal), '[bold]'
    # would vanish, and an escape sequence or a carriage return would act on the terminal.
    title = "fix [/api] routes [bold]now\x1b[2J"
    write_plan(project, PLAN.replace("## T1: First", f"## T1: {title}"))
    put_status(project, "T2", 'id: T2\nstate: FAILED\nreason: "all tests pass\\r\\e]52;c;cGF5bG9hZA==\\a"\n')
    if terminal:
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env.update(TERM="xterm-256color", COLUMNS="200")
        out = run_in_pty(["status"], project, env) + run_in_pty(["status", "T2"], project, env)
    else:
        out = orch.ok("status").stdout + orch.ok("status", "T2").stdout
    assert "fix [/api] routes [bold]now\\u001b[2J" in out
    assert "all tests pass\\u000d\\u001b]52;c;cGF5bG9hZA==\\u0007" in out
    assert "\x1b[2J" not in out and "\x1b]52" not in out and "\x07" not in out and "pass\r" not in out
