"""The bounded loop: iterations with feedback, the kill criterion, strategy shifts, exhaustion, the
TDD gate and the cheap checks, played by scripted agents that act by iteration number
(``$ORCH_ITERATION``), with real processes on real git."""

from __future__ import annotations

import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Orch, events, git, status_of, wait_state, write_plan

from orch.agents import loopnotes

AGENT = textwrap.dedent(
    """
    import os, sys, time
    n = int(os.environ.get("ORCH_ITERATION", "0"))
    mode = sys.argv[1]
    os.makedirs("src", exist_ok=True)
    brief = open(os.environ["ORCH_CONTEXT"]).read()
    open("src/seen-%d.txt" % n, "w").write(brief)
    if mode == "third":
        if n >= 3:
            open("src/done.txt", "w").write("done\\n")
        open("REFLECTION.md", "w").write("iteration %d: the file is missing\\n" % n)
    elif mode == "never":
        pass
    elif mode == "vary":
        open("src/try-" + "abcdefghijklmnop"[n], "w").write("x\\n")
    elif mode == "nothing":
        os.remove("src/seen-%d.txt" % n)
    elif mode == "hang":
        if n == 1:
            time.sleep(600)
        open("src/done.txt", "w").write("done\\n")
    elif mode == "hang2":
        if n == 2:
            open("src/wip.txt", "w").write("half done\\n")
            print("hanging", flush=True)
            time.sleep(600)
    elif mode == "lint":
        if n == 1:
            open("src/lint-bad", "w").write("x\\n")
        elif os.path.exists("src/lint-bad"):
            os.remove("src/lint-bad")
        open("src/done.txt", "w").write("done\\n")
    """
)


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "loop_agent.py"
    path.write_text(AGENT)
    return path


def plan(project: Path, agent: Path, mode: str, *extra: str, config: str = "") -> None:
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(agent))} {mode}"
    lines = ["# Plan: loop", "", "## T1: Loop task", "- scope: ^src/", "- agent: shell", f"- run: {run}", *extra]
    write_plan(project, "\n".join(lines) + "\n\nMake src/done.txt.\n")
    if config:
        import yaml

        path = project / ".orch/config.yaml"
        data = yaml.safe_load(path.read_text())
        data["defaults"].update(yaml.safe_load(config))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


def test_signature_ignores_times_paths_addresses_and_numbers() -> None:
    one = "2026-12-01T17:54:03Z FAIL at 0x7f3a2c in /tmp/pytest-of-x/t1/a.py line 12 took 0.31s (abc1234f)"
    two = "2027-01-02T01:02:03Z FAIL at 0x0011ff in /tmp/other/b.py line 99 took 12.5s (deadbeef99)"
    assert loopnotes.signature(one) == loopnotes.signature(two)
    assert loopnotes.signature(one) != loopnotes.signature(one.replace("FAIL", "ERROR"))
    assert loopnotes.normalise("12:01:02 x  7") == "<TIME> x <N>"
    assert len(loopnotes.signature("")) == 12


def test_excerpt_keeps_the_tail() -> None:
    text = "\n".join(f"line {n}" for n in range(100))
    out = loopnotes.excerpt(text)
    assert out.splitlines()[-1] == "line 99" and len(out.splitlines()) == loopnotes.EXCERPT_LINES


def test_succeeds_on_the_third_try(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "third", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    st = status_of(project, "T1")
    assert st["iteration"] == 3 and st["strategy"] == "1/3"
    iterate = events(project, "ITERATE")
    assert len(iterate) == 2 and "T1.i1" in iterate[0] and "T1.i2" in iterate[1] and "FAIL sig=" in iterate[0]
    assert "run/tasks/T1/iter-2.log" in iterate[1]
    assert len(events(project, "ACCEPT")) == 3
    progress = (project / ".orch/run/tasks/T1/progress.md").read_text()
    assert "## Iteration 1/" in progress and "## Iteration 2/" in progress and "## Iteration 3" not in progress
    assert "> iteration 2: the file is missing" in progress  # the reflection, moved in
    files = git(project, "ls-tree", "-r", "--name-only", "orch/T1").split()
    assert "REFLECTION.md" not in files and "src/done.txt" in files  # never committed
    wt = Path(st["worktree"])
    brief3 = (wt / "src/seen-3.txt").read_text()
    assert "## Feedback (iteration 3" in brief3 and "Am I repeating the same approach?" in brief3
    assert "iteration 1 (strategy 1)" in brief3 and "iteration 2 (strategy 1)" in brief3
    assert "accept command failed" in brief3
    assert "## Feedback" not in (wt / "src/seen-1.txt").read_text()


def test_never_succeeds_blocks_with_a_report(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "never", "- accept: test -f src/done.txt", config="max_iterations: 10\n")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    st = status_of(project, "T1")
    assert st["iteration"] <= 10 and st["strategy"] == "3/3"
    assert len(events(project, "STRATEGY_SHIFT")) == 2
    # each strategy: the same failure 3 times in a row ends it
    assert len(events(project, "ITERATE")) == 9
    report = (project / ".orch/run/tasks/T1/BLOCKER_REPORT.md").read_text()
    for n in (1, 2, 3):
        assert f"strategy {n}: iterations" in report and f"refs/orch/attempts/T1/{n}" in report
        assert git(project, "rev-parse", "--verify", f"refs/orch/attempts/T1/{n}").strip()
    assert "### Iteration 9" in report and "Hypothesis" in report and "recurred" in report
    assert "Recommended manual intervention" in report
    wt = Path(st["worktree"])
    base = st["base_sha"]
    assert git(project, "rev-parse", "orch/T1").strip() == base
    assert git(wt, "status", "--porcelain").strip() == ""
    assert not (wt / "src").exists()
    # the attempts hold the work
    assert "src/seen-3.txt" in git(project, "ls-tree", "-r", "--name-only", "refs/orch/attempts/T1/1")
    # a branch back at its start holds no work of its own: main does not "hold work of T1"
    assert "notice" not in orch.ok("status").output


def test_same_failure_three_times_ends_the_strategy(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "same", "- accept: test -f src/done.txt", config="max_strategies: 1\nmax_iterations: 10\n")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    assert len(events(project, "ITERATE")) == 3
    assert "3 iterations in a row" in status_of(project, "T1")["reason"]


def test_an_iteration_that_changes_nothing_ends_the_strategy(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "nothing", "- accept: test -f src/done.txt", config="max_iterations: 10\n")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    shifts = events(project, "STRATEGY_SHIFT")
    assert len(shifts) == 2 and "changed nothing" in shifts[0]
    assert len(events(project, "ITERATE")) == 3


def test_a_hanging_iteration_times_out_and_the_loop_goes_on(project: Path, orch: Orch, agent: Path) -> None:
    path = project / ".orch/agents/shell.yaml"
    kept = [ln for ln in path.read_text().splitlines() if not ln.startswith("timeout:")]
    path.write_text("\n".join([*kept, "timeout: 2", ""]))
    plan(project, agent, "hang", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    assert "timed out" in (project / ".orch/run/tasks/T1/progress.md").read_text()
    assert status_of(project, "T1")["iteration"] == 2


def test_the_tdd_gate_refuses_an_accept_that_already_passes(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "third", "- accept: test -f README.md")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "PENDING"
    st = status_of(project, "T1")
    assert "TDD gate" in st["reason"]
    assert events(project, "TDD_GATE")
    assert not (Path(st["worktree"]) / "src").exists()  # no iteration ran


def test_tdd_gate_false_skips_the_gate(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "third", "- accept: test -f README.md", "- tdd_gate: false")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    assert not events(project, "TDD_GATE")


def test_a_failing_check_costs_no_accept_run(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "lint", "- accept: test -f src/done.txt", "- check: test ! -e src/lint-bad")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    progress = (project / ".orch/run/tasks/T1/progress.md").read_text()
    assert "check 1 `test ! -e src/lint-bad` failed" in progress
    accepts = events(project, "ACCEPT")
    assert not any("T1.i1 " in ln for ln in accepts) and any("T1.i2 " in ln for ln in accepts)


def test_status_shows_the_iteration(project: Path, orch: Orch, agent: Path) -> None:
    import json

    plan(project, agent, "third", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    row = json.loads(orch.ok("status", "--json").stdout)["tasks"][0]
    assert (row["iteration"], row["max_iterations"], row["strategy"], row["iterations"]) == (3, 10, "1/3", 3)
    assert " 3/10 " in orch.ok("status").stdout
    assert "iteration:  3/10, strategy 1/3" in orch.ok("status", "T1").stdout


def test_orch_run_follows_to_the_end(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "third", "- accept: test -f src/done.txt")
    r = orch("run", "T1")
    assert r.returncode == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines if " ITERATE " in ln] == [["T1.i1", "ITERATE"], ["T1.i2", "ITERATE"]]
    assert lines[-1] == "T1: SUCCESS after 3 iterations"


def test_orch_run_limits_and_exit_code(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "never", "- accept: test -f src/done.txt")
    r = orch("run", "T1", "--max-iterations", "2")
    assert r.returncode == 1, r.output
    assert "T1: BLOCKED after 2 iterations" in r.stdout
    assert orch("run", "T1", "--max-iterations", "0").returncode == 2


def test_orch_run_no_tdd_gate(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "third", "- accept: test -f README.md")
    r = orch("run", "T1")
    assert r.returncode == 1 and "T1: PENDING" in r.stdout and "TDD gate" in r.stdout, r.output
    r = orch("run", "T1", "--no-tdd-gate")
    assert r.returncode == 0, r.output
    assert "T1: SUCCESS after 1 iteration" in r.stdout


def test_orch_stop_ends_the_loop(project: Path, orch: Orch, agent: Path) -> None:
    import time

    plan(project, agent, "hang2", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1")
    deadline = time.monotonic() + 30
    log = project / ".orch/run/tasks/T1/agent.log"
    while not (log.exists() and "hanging" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    orch.ok("stop", "T1")
    assert wait_state(orch, "T1") == "FAILED"
    st = status_of(project, "T1")
    assert "stop" in st["reason"] and st["iteration"] == 2
    assert len(events(project, "ITERATE")) == 1  # the first iteration's; none after the stop
    time.sleep(1)
    assert status_of(project, "T1")["iteration"] == 2 and len(events(project, "ITERATE")) == 1
    assert "src/wip.txt" in git(project, "ls-tree", "-r", "--name-only", "orch/T1")  # the work is kept


def test_a_brief_in_the_argv_is_the_new_one(project: Path, orch: Orch, tmp_path: Path) -> None:
    script = tmp_path / "inline.py"
    script.write_text(
        "import os, sys\n"
        "n = int(os.environ['ORCH_ITERATION'])\n"
        "os.makedirs('src', exist_ok=True)\n"
        "open('src/argv-%d.txt' % n, 'w').write(sys.argv[1])\n"
        "if n >= 2:\n    open('src/done.txt', 'w').write('done')\n"
    )
    (project / ".orch/agents/inline.yaml").write_text(
        f"command: [{sys.executable!r}, {str(script)!r}, '{{prompt}}']\nusage: none\n"
    )
    fields = "- scope: ^src/\n- agent: inline\n- accept: test -f src/done.txt\n"
    write_plan(project, f"# Plan\n\n## T1: Inline\n{fields}\nDo.\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    wt = Path(status_of(project, "T1")["worktree"])
    assert "## Feedback" not in (wt / "src/argv-1.txt").read_text()
    assert "## Feedback (iteration 2" in (wt / "src/argv-2.txt").read_text()


def test_the_task_timeout_bounds_the_whole_loop(project: Path, orch: Orch, agent: Path) -> None:
    import time

    plan(project, agent, "hang", "- accept: test -f src/done.txt", config="task_timeout: 2\n")
    began = time.monotonic()
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    assert time.monotonic() - began < 30
    st = status_of(project, "T1")
    assert st["iteration"] == 1 and "the task's timeout ran out" in st["reason"]
    assert "the agent timed out after" in (project / ".orch/run/tasks/T1/progress.md").read_text()


def test_a_varying_failure_runs_to_the_limits(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "vary", "- accept: ls src; test -f src/done.txt")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    st = status_of(project, "T1")
    assert st["iteration"] == 10 and st["strategy"] == "2/3" and "10 iterations without a pass" in st["reason"]
    shifts = events(project, "STRATEGY_SHIFT")
    assert len(shifts) == 1 and "5 iterations without a pass" in shifts[0] and "T1.i5 " in shifts[0]
    sigs = {ln.split("sig=")[1].split()[0] for ln in events(project, "ITERATE")}
    assert len(sigs) == 10
    for n in (1, 2):
        assert git(project, "rev-parse", "--verify", f"refs/orch/attempts/T1/{n}").strip()
    assert git(project, "rev-parse", "orch/T1").strip() == st["base_sha"]


def test_a_new_spin_keeps_the_loops_files_aside(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "same", "- accept: test -f src/done.txt", config="max_strategies: 1\n")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    folder = project / ".orch/run/tasks/T1"
    progress = (folder / "progress.md").read_text()
    orch.ok("clean", "T1", "--force")
    orch.ok("spin", "T1", "--no-start")
    assert (folder / "run-1/progress.md").read_text() == progress
    assert (folder / "run-1/iter-3.log").is_file() and (folder / "run-1/BLOCKER_REPORT.md").is_file()
    assert not (folder / "progress.md").exists() and not list(folder.glob("iter-*.log"))


def test_a_supervisor_killed_in_the_loop_leaves_the_task_crashed(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "never", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1", env={"ORCH_FAILPOINT": "supervisor.after_agent:T1"})
    assert wait_state(orch, "T1") == "CRASHED"
    assert (Path(status_of(project, "T1")["worktree"]) / "src/seen-1.txt").is_file()  # the work stays


def test_a_link_put_where_accept_logs_fails_the_run(project: Path, orch: Orch, agent: Path) -> None:
    from conftest import no_box

    no_box(project)  # in the box the check could not write the run folder at all
    readme = (project / "README.md").read_text()
    link = 'ln -s "$(dirname "$ORCH_HOME")/README.md" "$ORCH_HOME/run/tasks/T1/accept.log"'
    plan(project, agent, "lint", "- accept: echo ACCEPTED; test -f src/done.txt", f"- check: {link}")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "FAILED"
    st = status_of(project, "T1")
    assert "accept.log was a symbolic link" in st["reason"], st["reason"]
    assert (project / "README.md").read_text() == readme
    assert events(project, "REFUSE")


def test_orch_run_detach_and_a_task_without_accept(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "never")
    r = orch("run", "T1", "--detach")
    assert r.returncode == 0 and r.stdout == "T1: running (orch wait T1)\n", r.output
    assert "no accept command: it runs once (the loop needs one to iterate)" in r.stderr
    assert wait_state(orch, "T1") == "SUCCESS"
    st = status_of(project, "T1")
    assert st.get("iteration") is None and st["iterations"] == 1
    wt = Path(st["worktree"])
    assert (wt / "src/seen-0.txt").is_file()  # one run, no ORCH_ITERATION: not the loop


def test_the_plan_tasks_limits_and_the_strictest_wins(project: Path, orch: Orch, agent: Path) -> None:
    import yaml

    manifest = project / ".orch/agents/shell.yaml"
    manifest.write_text(manifest.read_text() + "task_timeout: 600\nmax_strategies: 5\n")
    fields = ("- max_per_strategy: 4", "- max_strategies: 3", "- task_timeout: 15m", "- accept: test -f src/done.txt")
    plan(project, agent, "third", *fields, config="max_strategies: 2\nmax_per_strategy: 6\n")
    orch.ok("spin", "T1", "--no-start")
    path = project / ".orch/run/tasks/T1/manifest.yaml"
    limits = yaml.safe_load(path.read_text())["limits"]
    assert (limits["max_per_strategy"], limits["max_strategies"], limits["task_timeout"]) == (4, 2, 600)
    r = orch("run", "T1", "--max-per-strategy", "9", "--max-strategies", "1", "--timeout", "5m")
    assert r.returncode == 0, r.output  # a flag only tightens: 9 leaves 4
    limits = yaml.safe_load(path.read_text())["limits"]
    assert (limits["max_per_strategy"], limits["max_strategies"], limits["task_timeout"]) == (4, 1, 300)
    assert orch("run", "T1", "--max-per-strategy", "0").returncode == 2
    assert orch("run", "T1", "--timeout", "soon").returncode == 2


def test_orch_run_max_per_strategy_shifts_sooner(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "vary", "- accept: test -f src/done.txt", "- max_strategies: 2")
    r = orch("run", "T1", "--max-per-strategy", "2")
    assert r.returncode == 1, r.output
    assert "T1: BLOCKED after 4 iterations" in r.stdout
    shifts = events(project, "STRATEGY_SHIFT")
    assert len(shifts) == 1 and "T1.i2 " in shifts[0], shifts
    assert status_of(project, "T1")["strategy"] == "2/2"
