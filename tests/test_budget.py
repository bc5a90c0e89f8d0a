"""Budgets over the loop's iterations: usage summed from what each iteration's agent reports, the
budget left in every brief, PAUSED at 85% after an iteration and at 100% during one, and
``orch resume`` going on from where the loop stopped. Scripted agents print Codex-style
``turn.completed`` usage lines and act by iteration number; real processes on real git."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Orch, events, git, status_of, wait_state, write_plan

from orch.agents import budget
from orch.agents.manifest import Usage

AGENT = textwrap.dedent(
    """
    import json, os, sys, time
    n = int(os.environ.get("ORCH_ITERATION", "0"))
    mode = sys.argv[1]
    os.makedirs("src", exist_ok=True)
    open("src/seen-%d.txt" % n, "w").write(open(os.environ["ORCH_CONTEXT"]).read())
    def spend(tokens):
        usage = {"input_tokens": tokens - tokens // 4, "cached_input_tokens": 0, "output_tokens": tokens // 4}
        print(json.dumps({"type": "turn.completed", "usage": usage}), flush=True)
    if mode == "fourth":  # 300 tokens an iteration; the work is done in the 4th
        spend(300)
        if n >= 4:
            open("src/done.txt", "w").write("done\\n")
    elif mode == "burn":  # the 2nd iteration spends without end; the 3rd does the work
        if n == 2:
            open("src/wip.txt", "w").write("half done\\n")
            while True:
                spend(200)
                time.sleep(0.2)
        spend(100)
        if n >= 3:
            open("src/done.txt", "w").write("done\\n")
    elif mode == "ask":
        spend(100)
        if n == 2:
            subprocess = __import__("subprocess")
            subprocess.run([os.environ["ORCH"], "report", "BLOCKED", "--note", "which API version?"], check=True)
    """
)


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "budget_agent.py"
    path.write_text(AGENT)
    return path


def plan(project: Path, agent: Path, mode: str, *extra: str) -> None:
    (project / ".orch/agents/meter.yaml").write_text(
        f"command: [{json.dumps(sys.executable)}, {json.dumps(str(agent))}, {mode}]\nusage: codex-jsonl\n"
    )
    lines = ["# Plan: budget", "", "## T1: Budget task", "- scope: ^src/", "- agent: meter", *extra]
    write_plan(project, "\n".join(lines) + "\n\nMake src/done.txt.\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


def test_shares_and_lines() -> None:
    cap = budget.Budget(tokens=1000, usd=5.0)
    spent = budget.Spent().plus(Usage(input=600, output=250, found=True, cost_usd=1.0))
    assert spent.tokens == 850 and budget.share(spent, cap) == pytest.approx(0.85)
    assert budget.nearly(spent, cap) and not budget.over(spent, cap)
    assert budget.over(spent.plus(Usage(output=150, found=True)), cap)
    assert budget.left_line(spent, cap).startswith("Budget left for this task: 150 of 1,000 tokens and $4.00 of $5.")
    assert budget.share(spent, budget.Budget()) is None and budget.left_line(spent, budget.Budget()) is None
    again = budget.Spent.load(spent.as_json())
    assert (again.tokens, again.cost_usd, again.found) == (850, 1.0, True)
    # a status any process could write: odd values count as nothing spent
    odd = budget.Spent.load({"tokens": 5, "input": -3, "output": "9", "cost_usd": True})
    assert (odd.tokens, odd.cost_usd) == (0, None)


def test_eighty_five_percent_pauses_then_resume_with_more_finishes(project: Path, orch: Orch, agent: Path) -> None:
    # `ls src`: a failure that grows each time, so no strategy ends as stuck before the budget speaks
    plan(project, agent, "fourth", "- accept: ls src && test -f src/done.txt", "- budget: 1000 tokens")
    r = orch("run", "T1")
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines()[-1].startswith("T1: PAUSED after 3 iterations: 90% of the budget is used")
    st = status_of(project, "T1")
    assert st["state"] == "PAUSED" and st["usage"]["tokens"] == 900 and st["budget"]["tokens"] == 1000
    assert "orch resume T1 --budget" in st["reason"]
    wt = Path(st["worktree"])
    assert "Budget left for this task: 1,000 of 1,000 tokens" in (wt / "src/seen-1.txt").read_text()
    assert "Budget left for this task: 400 of 1,000 tokens" in (wt / "src/seen-3.txt").read_text()
    assert len(events(project, "ITERATE")) == 3
    listed = orch.ok("status").stdout
    assert "needs a person:" in listed and "T1 PAUSED: 90% of the budget is used" in listed
    as_json = json.loads(orch.ok("status", "--json").stdout)["tasks"][0]
    assert as_json["usage"] == {"tokens": 900, "cost_usd": None} and as_json["budget"] == {"tokens": 1000, "usd": None}

    refused = orch("resume", "T1")  # the same budget would pause it again at once
    assert refused.returncode == 3 and "would pause again at once" in refused.stderr
    assert "orch resume T1 --budget" in refused.stderr
    assert orch("resume", "T1", "--budget", "lots").returncode == 2

    r = orch("resume", "T1", "--budget", "3000 tokens")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "T1: SUCCESS after 4 iterations"
    st = status_of(project, "T1")
    assert st["iteration"] == 4 and st["usage"]["tokens"] == 1200 and st["budget"]["tokens"] == 3000
    brief4 = (wt / "src/seen-4.txt").read_text()
    assert "## Feedback (iteration 4" in brief4 and "iteration 3 (strategy 1)" in brief4
    assert "Budget left for this task: 2,100 of 3,000 tokens" in brief4  # the raised budget
    assert len(events(project, "RESUME")) == 1 and "set by a person: 3,000 tokens" in events(project, "BUDGET")[0]
    assert orch("resume", "T1").returncode == 3  # SUCCESS: nothing to resume


def test_a_spent_budget_stops_the_running_iteration(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "burn", "- accept: test -f src/done.txt", "- budget: 2000 tokens")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1", timeout=90) == "PAUSED"
    st = status_of(project, "T1")
    assert st["iteration"] == 2 and st["reason"].startswith("the budget is spent: ")
    assert st["usage"]["tokens"] >= 2000
    assert git(project, "show", "orch/T1:src/wip.txt") == "half done"  # its work snapshotted
    progress = (project / ".orch/run/tasks/T1/progress.md").read_text()
    assert "- stopped: the budget is spent" in progress
    assert len(events(project, "ACCEPT")) == 1  # no acceptance run for the stopped iteration
    r = orch("resume", "T1", "--budget", "50k tokens")
    assert r.returncode == 0, r.stderr
    st = status_of(project, "T1")
    assert st["state"] == "SUCCESS" and st["iteration"] == 3 and st["budget"]["tokens"] == 50_000


def test_an_agent_that_asks_a_person_blocks_with_its_question(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "ask", "- accept: test -f src/done.txt")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1", timeout=90) == "BLOCKED"
    st = status_of(project, "T1")
    assert "which API version?" in st["reason"] and "BLOCKER_REPORT.md" in st["reason"]
    report = (project / ".orch/run/tasks/T1/BLOCKER_REPORT.md").read_text()
    assert "> which API version?" in report and "orch retry T1" in report
    assert "### Iteration 1 (strategy 1)" in report  # what was tried before it asked
    listed = orch.ok("status").stdout
    assert "T1 BLOCKED: the agent reported BLOCKED: which API version?" in listed


def test_the_strictest_budget_is_frozen_at_spin(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "fourth", "- accept: test -f src/done.txt", "- budget: 5000 tokens, $1")
    with open(project / ".orch/agents/meter.yaml", "a") as handle:
        handle.write("budget: 2k tokens\n")  # the agent's is stricter on tokens, the task's on dollars
    import yaml

    config = project / ".orch/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["defaults"]["budget"] = "$3"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    git(project, "commit", "-qam", "budgets")
    orch.ok("spin", "T1", "--no-start")
    limits = yaml.safe_load((project / ".orch/run/tasks/T1/manifest.yaml").read_text())["limits"]
    assert (limits["max_tokens"], limits["budget_usd"]) == (2000, 1.0)


def test_resume_never_runs_past_the_limits(project: Path, orch: Orch, agent: Path) -> None:
    # PAUSED at 100% in iteration 2 of at most 2: nothing left to resume (retry starts it over)
    plan(project, agent, "burn", "- accept: test -f src/done.txt", "- budget: 2000 tokens", "- max_iterations: 2")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1", timeout=90) == "PAUSED"
    r = orch("resume", "T1", "--budget", "1M tokens")
    assert r.returncode == 3 and "no iteration left to resume" in r.stderr and "orch retry T1" in r.stderr
    assert status_of(project, "T1")["state"] == "PAUSED"
    assert "1000000" not in (project / ".orch/run/tasks/T1/manifest.yaml").read_text()  # nothing changed


def test_resume_after_the_strategys_last_iteration_shifts_first(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "burn", "- accept: test -f src/done.txt", "- budget: 2000 tokens", "- max_per_strategy: 2")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1", timeout=90) == "PAUSED"
    wip = git(project, "rev-parse", "orch/T1")
    orch.ok("resume", "T1", "--budget", "1M tokens")
    st = status_of(project, "T1")
    assert st["state"] == "SUCCESS" and st["iteration"] == 3 and st["strategy"] == "2/3"
    shift = events(project, "STRATEGY_SHIFT")
    assert len(shift) == 1 and "2 iterations without a pass" in shift[0]
    assert git(project, "rev-parse", "refs/orch/attempts/T1/1") == wip  # the paused work, kept


def test_odd_usage_and_budgets_are_bounded(project: Path, orch: Orch, agent: Path) -> None:
    from orch.agents.manifest import parse_usage

    line = '{"type":"turn.completed","usage":{"input_tokens":Infinity,"output_tokens":-290}}\n'
    assert parse_usage("codex-jsonl", line).total == 0
    claude = '{"type":"result","usage":{"input_tokens":5},"total_cost_usd":NaN}\n'
    assert parse_usage("claude-json", claude).cost_usd is None
    plan(project, agent, "fourth", "- accept: test -f src/done.txt", "- budget: " + "9" * 400 + " tokens")
    r = orch("plan")
    assert r.returncode == 3 and "too large" in r.stderr and "Traceback" not in r.output
    r = orch("run", "T1", "--timeout", "nan")
    assert r.returncode == 2 and "--timeout needs a number above 0" in r.stderr
