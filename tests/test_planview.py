"""`orch plan [--json] [--graph]`: validation, readiness from runtime state, the Mermaid graph."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Orch, write_plan

from orch.core import state
from orch.core.repo import find_project
from orch.core.store import Store

PLAN = """\
# Plan: graph

## T1: Base "thing" <b>
- scope: ^a/

## T2: Next
- scope: ^b/
- deps: T1
- agent: shell
- budget: 200k tokens, $3
- max_iterations: 2
- level: code

## my-task: Third
- deps: T1, T2

## my_task: Fourth
- scope: ^d/
"""


def set_state(repo: Path, task_id: str, new_state: str) -> None:
    """Runtime state written the way orch writes it: validated, atomic, under the lock."""
    project = find_project(repo)
    state.update(project, Store(project.root, project.orch_dir), task_id, lambda s: s.update(state=new_state))


def test_plan_shows_tasks_and_readiness(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    r = orch.ok("plan")
    assert r.stdout.splitlines() == [
        "Plan: graph",
        "ID       STATE            DEPS    SCOPE  AGENT      TITLE",
        'T1       PENDING (ready)  -       ^a/    (default)  Base "thing" <b>',
        "T2       PENDING          T1      ^b/    shell      Next",
        "my-task  PENDING          T1, T2  (any)  (default)  Third",
        "my_task  PENDING (ready)  -       ^d/    (default)  Fourth",
        "4 tasks; ready to spin: T1, my_task",
    ]
    assert r.stderr == (
        "warning: .orch/plan.md:14: task my-task has no scope: it may change any file that is not locked "
        "(add '- scope: REGEX')\n"
        # The committed plan (orch init's) has a T1 with scope ^docs/: until this plan is committed,
        # judging holds T1 to both scopes, and orch plan says so.
        "note: uncommitted edits loosen the rules (.orch/plan.md: T1 scope); orch verify and orch merge keep "
        "judging by the rules committed on main until these edits are committed there\n"
    )


def test_readiness_follows_merged_deps(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    set_state(project, "T1", "MERGED")
    view = json.loads(orch.ok("plan", "--json").stdout)
    assert {t["id"]: (t["state"], t["ready"]) for t in view["tasks"]} == {
        "T1": ("MERGED", False),
        "T2": ("PENDING", True),
        "my-task": ("PENDING", False),
        "my_task": ("PENDING", True),
    }
    set_state(project, "T2", "SUCCESS")  # finished but not merged: my-task still waits
    view = json.loads(orch.ok("plan", "--json").stdout)
    assert [t["id"] for t in view["tasks"] if t["ready"]] == ["my_task"]
    set_state(project, "T2", "MERGED")
    view = json.loads(orch.ok("plan", "--json").stdout)
    assert [t["id"] for t in view["tasks"] if t["ready"]] == ["my-task", "my_task"]


def test_plan_json_fields(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    view = json.loads(orch.ok("plan", "--json").stdout)
    assert view["title"] == "graph"
    assert view["tasks"][1] == {
        "id": "T2",
        "title": "Next",
        "line": 6,
        "scope": "^b/",
        "deps": ["T1"],
        "agent": "shell",
        "accept": None,
        "model": None,
        "level": "code",
        "max_iterations": 2,
        "max_per_strategy": None,
        "max_strategies": None,
        "task_timeout": None,
        "budget": {"tokens": 200000, "usd": 3.0},
        "state": "PENDING",
        "ready": False,
    }
    assert view["warnings"] == [
        ".orch/plan.md:14: task my-task has no scope: it may change any file that is not locked (add '- scope: REGEX')"
    ]


def test_plan_json_has_the_loops_limits(project: Path, orch: Orch) -> None:
    write_plan(project, "# Plan\n\n## T1: x\n- max_per_strategy: 2\n- max_strategies: 3\n- task_timeout: 2h\n")
    task = json.loads(orch.ok("plan", "--json").stdout)["tasks"][0]
    assert (task["max_per_strategy"], task["max_strategies"], task["task_timeout"]) == (2, 3, 7200)


def test_plan_graph_is_mermaid(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    set_state(project, "T1", "MERGED")
    set_state(project, "T2", "FAILED")
    r = orch.ok("plan", "--graph")
    assert r.stdout == (
        "graph TD\n"
        '  t_T1["T1: Base #quot;thing#quot; #lt;b#gt;<br/>MERGED"]\n'
        '  t_T2["T2: Next<br/>FAILED"]\n'
        '  t_my_dtask["my-task: Third<br/>PENDING"]\n'
        '  t_my_utask["my_task: Fourth<br/>PENDING"]\n'
        "  t_T1 --> t_T2\n"
        "  t_T1 --> t_my_dtask\n"
        "  t_T2 --> t_my_dtask\n"
        "  classDef done fill:#2e7d32,color:#fff\n"
        "  class t_T1 done\n"
        "  classDef bad fill:#ef5350,color:#fff\n"
        "  class t_T2 bad\n"
    )


def test_empty_plan(project: Path, orch: Orch) -> None:
    write_plan(project, "# Plan: nothing yet\n")
    r = orch.ok("plan")
    assert r.stdout == "the plan has no tasks yet (add one: orch plan add ID --title ...)\n"
    assert json.loads(orch.ok("plan", "--json").stdout) == {
        "title": "nothing yet",
        "tasks": [],
        "warnings": [],
        "overlaps": [],
    }


def test_template_plan_is_valid(project: Path, orch: Orch) -> None:
    r = orch.ok("plan")
    assert "T1  PENDING (ready)  -     ^docs/  shell  Describe the first task" in r.stdout
    assert r.stderr == ""


def test_an_agent_without_a_manifest_is_an_error(project: Path, orch: Orch) -> None:
    write_plan(project, "## T1: a\n- agent: shel\n\n## T2: b\n- agent: nosuch\n\n## T3: c\n- agent: shell\n")
    r = orch("plan")
    assert (r.returncode, r.stdout) == (3, "")
    agents = "aider, claude, codex, gemini, shell"
    assert r.stderr == (
        f"orch: .orch/plan.md:2: task T1 names agent 'shel', which has no manifest in .orch/agents/ "
        f"(did you mean 'shell'? agents: {agents})\n"
        f".orch/plan.md:5: task T2 names agent 'nosuch', which has no manifest in .orch/agents/ (agents: {agents})\n"
        "  hint: fix the agent field, or add .orch/agents/NAME.yaml (see: orch agents)\n"
    )
    (project / ".orch/agents/nosuch.yaml").write_text((project / ".orch/agents/shell.yaml").read_text())
    write_plan(project, "## T2: b\n- agent: nosuch\n")
    assert orch.ok("plan").stdout.startswith("ID")


def test_graph_and_json_together_are_a_usage_error(project: Path, orch: Orch) -> None:
    r = orch("plan", "--graph", "--json")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "orch: usage: --graph prints a Mermaid graph and --json prints JSON: pass one of them\n"
