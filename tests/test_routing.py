"""Routing (.orch/routing.yaml): rules pick the agent and model of a task that names none, by kind,
level and the paths its scope reaches; the most specific rule wins, a tie is a question for a
person, and only the version committed on the base branch counts. Real git, real orch processes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Orch, commit_file, git, write_plan

ROUTING = textwrap.dedent(
    """\
    rules:
      - name: docs
        match: {kind: docs}
        agent: scribe
        model: small-model
      - name: backend
        match: {paths: "^src/api/"}
        agent: claude
      - name: frontend
        match: {paths: "^src/web/"}
        agent: gemini
      - name: design-features
        match: {kind: design, level: feature}
        agent: codex
        model: strong-model
      - name: design
        match: {kind: design}
        agent: aider
    order:
      - [design, implement]
    """
)

PLAN = textwrap.dedent(
    """\
    # Plan

    ## D1: Write the docs
    - scope: ^docs/
    - kind: docs
    - run: true

    ## A1: The API
    - scope: ^src/api/

    ## W1: The web pages
    - scope: ^src/web/

    ## T7: Both sides
    - scope: ^src/

    ## F1: Design a feature
    - scope: ^docs/
    - kind: design
    - level: feature

    ## G1: Design
    - scope: ^docs/
    - kind: design

    ## O1: Own agent
    - scope: ^src/
    - agent: shell
    - run: true

    ## N1: Nothing matches
    - scope: ^README
    - kind: test

    ## I1: Implement it
    - scope: ^src/api/
    - kind: implement
    """
)


@pytest.fixture
def routed(project: Path) -> Path:
    """A project whose routing.yaml and plan are committed, with files under src/api, src/web, docs."""
    for rel in ("src/api/app.py", "src/web/index.html", "docs/guide.md"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("x\n")
    agents = project / ".orch" / "agents"
    (agents / "scribe.yaml").write_text((agents / "shell.yaml").read_text().replace("name: shell", "name: scribe"))
    (project / ".orch" / "routing.yaml").write_text(ROUTING)
    write_plan(project, PLAN)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "routing")
    return project


def route(orch: Orch, task_id: str) -> dict:
    r = orch("route", task_id, "--json")
    assert r.returncode in (0, 3), r.output
    return yaml.safe_load(r.stdout)


def test_rules_pick_by_kind_level_and_paths(routed: Path, orch: Orch) -> None:
    assert route(orch, "D1")["agent"] == "scribe" and route(orch, "D1")["model"] == "small-model"
    assert route(orch, "A1")["agent"] == "claude"
    assert route(orch, "W1")["agent"] == "gemini"
    assert route(orch, "G1")["agent"] == "aider"
    assert route(orch, "N1")["agent"] is None  # no rule: the config's default agent


def test_the_most_specific_rule_wins(routed: Path, orch: Orch) -> None:
    d = route(orch, "F1")  # design (1 key) and design-features (2 keys) both match
    assert (d["agent"], d["model"], d["rule"]) == ("codex", "strong-model", "design-features")
    r = orch.ok("route", "F1")
    assert "rule design (main:.orch/routing.yaml:16): matches (1 key(s): kind)" in r.stdout, r.stdout
    assert "winner: rule design-features: agent codex, model strong-model" in r.stdout, r.stdout
    assert "rule docs (main:.orch/routing.yaml:2): no: kind is design, not docs" in r.stdout, r.stdout


def test_the_tasks_own_agent_wins(routed: Path, orch: Orch) -> None:
    r = orch.ok("route", "O1")
    assert r.stdout.strip() == "O1 names its agent: shell", r.stdout
    orch.ok("spin", "O1", "--no-start")
    manifest = yaml.safe_load((routed / ".orch" / "run" / "tasks" / "O1" / "manifest.yaml").read_text())
    assert manifest["agent"] == "shell"


def test_spin_freezes_the_routed_agent_and_model(routed: Path, orch: Orch) -> None:
    orch.ok("spin", "D1", "--no-start")
    manifest = yaml.safe_load((routed / ".orch" / "run" / "tasks" / "D1" / "manifest.yaml").read_text())
    assert (manifest["agent"], manifest["model"]) == ("scribe", "small-model")


def test_a_tie_refuses_spin_with_the_question_and_shows_in_status(routed: Path, orch: Orch) -> None:
    question = (
        "T7 matches both the `backend` and the `frontend` rule: which agent? add `- agent: NAME` to T7 in .orch/plan.md"
    )
    r = orch("spin", "T7", "--no-start")
    assert r.returncode == 3, r.output
    assert question in r.stderr, r.stderr
    assert not git(routed, "branch", "--list", "orch/T7")  # nothing was made
    r = orch("route", "T7")
    assert r.returncode == 3 and question in r.stdout, r.output
    status = orch.ok("status")
    assert f"T7 PENDING: {question}" in status.stdout.split("needs a person:")[1], status.stdout
    rows = {row["id"]: row for row in yaml.safe_load(orch.ok("status", "--json").stdout)["tasks"]}
    assert rows["T7"]["question"] == question and rows["A1"]["question"] is None
    # naming the agent answers it
    write_plan(routed, PLAN.replace("## T7: Both sides\n", "## T7: Both sides\n- agent: shell\n"))
    assert orch.ok("route", "T7").stdout.strip() == "T7 names its agent: shell"
    assert "needs a person" not in orch.ok("status").stdout


def test_an_uncommitted_edit_of_routing_does_not_count(routed: Path, orch: Orch) -> None:
    path = routed / ".orch" / "routing.yaml"
    path.write_text(ROUTING.replace("agent: scribe", "agent: shell"))
    r = orch.ok("route", "D1")
    assert "winner: rule docs: agent scribe" in r.stdout, r.stdout
    assert "differs from main:.orch/routing.yaml" in r.stderr, r.stderr
    path.unlink()  # removing it does not loosen it either
    assert route(orch, "D1")["agent"] == "scribe"
    git(routed, "rm", "-q", "--", ".orch/routing.yaml")
    git(routed, "commit", "-q", "-m", "no routing")
    assert route(orch, "D1")["agent"] is None


def test_a_new_routing_file_counts_once_committed(project: Path, orch: Orch) -> None:
    (project / ".orch" / "routing.yaml").write_text(ROUTING)
    write_plan(project, PLAN)
    assert route(orch, "D1")["agent"] is None
    commit_file(project, ".orch/routing.yaml", ROUTING)
    assert route(orch, "D1")["agent"] == "scribe"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - name: a\n    match: {kind: poetry}\n    agent: x\n", "main:.orch/routing.yaml:3"),
        (
            "rules:\n  - name: a\n    match: {paths: '(['}\n    agent: x\n",
            "main:.orch/routing.yaml:2: rules[0].match.paths",
        ),
        (
            "rules:\n  - name: a\n    match: {kind: docs}\n    agent: x\n  - name: a\n    match: {level: code}\n"
            "    agent: y\n",
            "main:.orch/routing.yaml:5: rules[1]: a second rule named 'a'",
        ),
        ("rules:\n  - name: a\n    match: {}\n    agent: x\n", "main:.orch/routing.yaml:3"),
    ],
)
def test_a_bad_routing_file_is_named_with_its_line(project: Path, orch: Orch, text: str, expected: str) -> None:
    write_plan(project, PLAN)
    commit_file(project, ".orch/routing.yaml", text)
    for command in (("route", "D1"), ("spin", "D1", "--no-start"), ("plan",)):
        r = orch(*command)
        assert r.returncode == 3, (command, r.output)
        assert expected in r.stderr and "Traceback" not in r.stderr, (command, r.stderr)
    orch.ok("status")  # shows the tasks still; the commands above name the file


def test_a_bad_kind_in_the_plan_is_refused(project: Path, orch: Orch) -> None:
    write_plan(project, "# Plan\n\n## A: a\n- scope: ^src/\n- kind: poetry\n")
    r = orch("plan")
    assert r.returncode == 3, r.output
    assert ".orch/plan.md:5" in r.stderr and "bad kind 'poetry'" in r.stderr, r.stderr


def test_plan_warns_when_an_implement_task_depends_on_no_design_task(routed: Path, orch: Orch) -> None:
    r = orch.ok("plan")
    warning = "implement task I1 depends on no design task (F1, G1)"
    assert warning in r.stderr, r.stderr
    write_plan(routed, PLAN.replace("- kind: implement\n", "- kind: implement\n- deps: G1\n"))
    assert warning not in orch.ok("plan").stderr


def test_two_rules_giving_the_same_agent_and_model_are_no_question(routed: Path, orch: Orch) -> None:
    commit_file(routed, ".orch/routing.yaml", ROUTING.replace("agent: gemini", "agent: claude"))
    d = route(orch, "T7")
    assert (d["agent"], d["question"], d["rule"]) == ("claude", None, "backend"), d
