"""plan.md: the format of DESIGN.md, every error at once with its line, and `orch plan add`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Orch, write_plan

from orch.core import plan as plan_mod
from orch.core.errors import ManyErrors

DESIGN_EXAMPLE = """\
# Plan: checkout revamp

Free text for humans.

## T1: Add session expiry
- scope: ^src/auth/
- deps: none
- agent: claude
- accept: python -m pytest tests/test_session.py -q

The brief for the agent, in free Markdown, up to the next task heading.

## T2: Dashboard widgets
- scope: ^(src/dashboard/|tests/test_dashboard\\.py$)
- deps: T1
- agent: codex
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ManyErrors) as info:
        plan_mod.parse(text)
    return info.value.problems


def test_parses_the_design_example_with_line_numbers() -> None:
    plan = plan_mod.parse(DESIGN_EXAMPLE)
    assert plan.title == "checkout revamp"
    assert plan.preamble == "# Plan: checkout revamp\n\nFree text for humans.\n\n"
    assert plan.ids() == ["T1", "T2"]
    t1, t2 = plan.tasks
    assert (t1.line, t2.line) == (5, 13)
    assert t1.title == "Add session expiry"
    assert t1.fields == {
        "scope": "^src/auth/",
        "deps": "none",
        "agent": "claude",
        "accept": "python -m pytest tests/test_session.py -q",
    }
    assert t1.field_lines == {"scope": 6, "deps": 7, "agent": 8, "accept": 9}
    assert t1.deps == []
    assert t1.brief_text() == "The brief for the agent, in free Markdown, up to the next task heading."
    assert t2.deps == ["T1"]
    assert t2.scope == r"^(src/dashboard/|tests/test_dashboard\.py$)"
    assert t2.brief == ""
    assert plan_mod.render(plan) == DESIGN_EXAMPLE


def test_typed_fields() -> None:
    plan = plan_mod.parse(
        "## T1: x\n- max_iterations: 4\n- budget: 200k tokens, $5\n- level: feature\n- model: opus\n- run: make\n"
    )
    task = plan.tasks[0]
    assert task.max_iterations == 4
    assert task.budget == plan_mod.Budget(tokens=200_000, usd=5.0)
    assert (task.level, task.model, task.run) == ("feature", "opus", "make")


def test_the_loops_limits_as_fields() -> None:
    fields = "- max_per_strategy: 2\n- max_strategies: 4\n- task_timeout: 15m\n"
    task = plan_mod.parse(f"## T1: x\n{fields}\n## T2: y\n- task_timeout: 90\n").tasks[0]
    assert (task.max_per_strategy, task.max_strategies, task.task_timeout) == (2, 4, 900)
    assert plan_mod.parse("## T2: y\n- task_timeout: 90\n").tasks[0].task_timeout == 90
    assert plan_mod.parse("## T2: y\n").tasks[0].task_timeout is None


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), (" 3 h ", 10800)])
def test_durations(text: str, seconds: int) -> None:
    assert plan_mod.parse_duration(text) == seconds


def test_bad_limit_fields_are_reported_with_their_line() -> None:
    text = (
        "# Plan\n\n## T1: x\n- max_per_strategy: 0\n- max_strategies: two\n- task_timeout: 0m\n\n"
        "## T2: y\n- task_timeout: 1.5h\n- max_strategies: " + "9" * 5000 + "\n- max_per_strategy: -1\n"
    )
    with pytest.raises(ManyErrors) as caught:
        plan_mod.parse(text)
    unit = "seconds above 0, or a whole number with s, m or h (90s, 15m, 2h)"
    assert caught.value.problems == [
        ".orch/plan.md:4: bad max_per_strategy '0': a whole number above 0",
        ".orch/plan.md:5: bad max_strategies 'two': a whole number above 0",
        f".orch/plan.md:6: bad task_timeout '0m': {unit}",
        f".orch/plan.md:9: bad task_timeout '1.5h': {unit}",
        f".orch/plan.md:10: bad max_strategies '{'9' * 5000}': too large",
        ".orch/plan.md:11: bad max_per_strategy '-1': a whole number above 0",
    ]


@pytest.mark.parametrize(
    ("text", "tokens", "usd"),
    [("200k tokens", 200_000, None), ("1.5M tokens", 1_500_000, None), ("$5", None, 5.0), ("2.5 usd", None, 2.5),
     ("300 tokens, $0.5", 300, 0.5)],
)  # fmt: skip
def test_budgets(text: str, tokens: int | None, usd: float | None) -> None:
    assert plan_mod.parse_budget(text) == plan_mod.Budget(tokens, usd)


@pytest.mark.parametrize("text", ["lots", "5", "$0", "-3 tokens", "0k tokens", "5 euros"])
def test_bad_budgets(text: str) -> None:
    with pytest.raises(ValueError):
        plan_mod.parse_budget(text)


BROKEN = """\
# Plan: broken

## T1: A
- scope: ^src/(
- deps: T2, Tx9
- agnt: claude

## 1bad: B
- budget: lots
- max_iterations: 0
- level: epic

## T2: C
- deps: T3, T1x

## T3: D
- deps: T2
- max_iterations: ²

## T1: again
## Notes
"""


def test_every_error_is_reported_at_once_with_its_line(project: Path, orch: Orch) -> None:
    write_plan(project, BROKEN)
    before = (project / ".orch/plan.md").read_bytes()
    r = orch("plan")
    assert r.returncode == 3, r.output
    assert "Traceback" not in r.output
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines == [
        "orch: .orch/plan.md:4: invalid scope regex '^src/(': missing ), unterminated subpattern at position 5",
        ".orch/plan.md:5: unknown dependency 'Tx9' of T1 (known ids: T1, 1bad, T2, T3)",
        ".orch/plan.md:6: unknown field 'agnt' (did you mean 'agent'?)",
        ".orch/plan.md:8: bad task id '1bad': ids start with a letter, then letters, digits, '-' or '_', "
        "at most 40 characters",
        ".orch/plan.md:9: bad budget 'lots': cannot read budget part 'lots' (write e.g. '200k tokens', '$5', or both)",
        ".orch/plan.md:10: bad max_iterations '0': a whole number above 0",
        ".orch/plan.md:11: bad level 'epic': one of goal, feature, component, code",
        ".orch/plan.md:14: unknown dependency 'T1x' of T2 (did you mean 'T1'?)",
        ".orch/plan.md:14: dependency cycle: T2 -> T3 -> T2 (each depends on the next)",
        ".orch/plan.md:18: bad max_iterations '²': a whole number above 0",
        ".orch/plan.md:20: duplicate task id 'T1' (first defined at line 3)",
        ".orch/plan.md:21: '## Notes' is not a task heading: expected '## ID: Title' (use '###' for a heading "
        "inside a brief)",
        "  hint: fix the plan by hand; the format is in the README (section 'plan.md')",
    ]
    assert (project / ".orch/plan.md").read_bytes() == before  # reported, never rewritten


def test_a_cycle_is_named_in_full_once() -> None:
    text = "## A: a\n- deps: C\n\n## B: b\n- deps: A\n\n## C: c\n- deps: B\n\n## D: d\n- deps: D\n"
    assert problems(text) == [
        ".orch/plan.md:2: dependency cycle: A -> C -> B -> A (each depends on the next)",
        ".orch/plan.md:11: dependency cycle: D -> D (each depends on the next)",
    ]


def test_more_field_problems() -> None:
    text = (
        "## T1: x\n- scope:\n- agent: bad name!\n- deps: T1 ,\n- scope: again\n\n"
        "## T2: y\n- deps: none\n- deps: T1\n\n## T3: z\n- scope ^src\n"
    )
    assert problems(text) == [
        ".orch/plan.md:2: field 'scope' of T1 has no value",
        ".orch/plan.md:3: bad agent name 'bad name!': letters, digits, '.', '_', '-'",
        ".orch/plan.md:4: dependency cycle: T1 -> T1 (each depends on the next)",
        ".orch/plan.md:5: field 'scope' given twice in T1 (first at line 2)",
        ".orch/plan.md:9: field 'deps' given twice in T2 (first at line 8)",
    ]


def test_a_bullet_that_is_no_field_starts_the_brief() -> None:
    plan = plan_mod.parse("## T1: x\n- Note: the brief starts with a list\n- second item\n")
    assert plan.tasks[0].fields == {}
    assert plan.tasks[0].brief == "- Note: the brief starts with a list\n- second item\n"


def test_a_misspelt_first_field_still_opens_the_field_list() -> None:
    assert problems("## T1: x\n- scpe: ^src/\n") == [".orch/plan.md:2: unknown field 'scpe' (did you mean 'scope'?)"]


def test_fenced_code_in_a_brief_is_brief() -> None:
    text = (
        "# Plan\n\n## T1: Fences\n- scope: ^docs/\n\nExample of a plan inside a brief:\n\n"
        "````markdown\n## T9: not a task\n- scope: (\n```\n## T8: still not a task\n```\n````\n\n"
        "~~~\n## T7: nor this\n~~~\n\n### A sub-heading is fine\n\n## T2: Real\n- deps: T1\n"
    )
    plan = plan_mod.parse(text)
    assert plan.ids() == ["T1", "T2"]
    assert "## T9: not a task" in plan.tasks[0].brief
    assert "## T8: still not a task" in plan.tasks[0].brief
    assert "## T7: nor this" in plan.tasks[0].brief
    assert plan.tasks[1].line == text.splitlines().index("## T2: Real") + 1
    assert plan_mod.render(plan) == text


def test_crlf_plans_parse_and_keep_their_bytes() -> None:
    text = DESIGN_EXAMPLE.replace("\n", "\r\n")
    plan = plan_mod.parse(text)
    assert plan.tasks[0].fields["scope"] == "^src/auth/"
    assert plan.tasks[1].deps == ["T1"]
    assert plan.preamble.endswith("\r\n")


def test_conflict_markers_are_reported(project: Path, orch: Orch) -> None:
    write_plan(project, "## T1: x\n<<<<<<< HEAD\n- scope: a\n=======\n- scope: b\n>>>>>>> other\n")
    r = orch("plan")
    assert r.returncode == 3
    assert "orch: .orch/plan.md:2: unresolved merge conflict marker" in r.stderr


def test_missing_plan(project: Path, orch: Orch) -> None:
    (project / ".orch/plan.md").unlink()
    r = orch("plan")
    assert r.returncode == 3
    assert "orch: .orch/plan.md: missing" in r.stderr


# -- orch plan add ------------------------------------------------------------------------------------

HAND_WRITTEN = "# Plan: mine\n\nNotes with trailing spaces   \n\n## T1: First\n- scope: ^a/\n\nBrief\tone.\n"


def test_plan_add_appends_and_keeps_every_byte(project: Path, orch: Orch) -> None:
    write_plan(project, HAND_WRITTEN)
    r = orch.ok(
        "plan", "add", "T2", "--title", "Second task", "--scope", "^b/", "--deps", "T1", "--agent", "shell",
        "--accept", "test -f b/x", "--run", "mkdir -p b && touch b/x", "--budget", "$2", "--max-iterations", "3",
        "--model", "m1", "--brief", "Do the second thing.",
    )  # fmt: skip
    text = (project / ".orch/plan.md").read_text()
    assert text.startswith(HAND_WRITTEN)
    assert text[len(HAND_WRITTEN) :] == (
        "\n## T2: Second task\n- scope: ^b/\n- deps: T1\n- agent: shell\n- accept: test -f b/x\n- model: m1\n"
        "- run: mkdir -p b && touch b/x\n- budget: $2\n- max_iterations: 3\n\nDo the second thing.\n"
    )
    assert r.stdout == "added T2 at .orch/plan.md:10\n"
    task = plan_mod.parse(text).tasks[1]
    assert (task.line, task.deps, task.budget, task.max_iterations) == (10, ["T1"], plan_mod.Budget(None, 2.0), 3)
    log = (project / ".orch/run/log").read_text()
    assert "| PENDING | T2 | PLAN_ADD | Second task | -" in log


@pytest.mark.parametrize(
    ("existing", "added"),
    [("", "## A1: t\n"), ("# P\n", "\n## A1: t\n"), ("# P\n\n", "## A1: t\n"), ("# P", "\n\n## A1: t\n"),
     ("x\r\n", "\r\n## A1: t\r\n"), ("x\r\n\r\n", "## A1: t\r\n")],
)  # fmt: skip
def test_plan_add_separates_without_touching_the_end(project: Path, orch: Orch, existing: str, added: str) -> None:
    (project / ".orch/plan.md").write_bytes(existing.encode())
    orch.ok("plan", "add", "A1", "--title", "t")
    assert (project / ".orch/plan.md").read_bytes() == (existing + added).encode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["T1", "--title", "again"], "orch: .orch/plan.md:5: a task 'T1' exists already"),
        (["1x", "--title", "t"], "orch: bad task id '1x'"),
        (["a" * 41, "--title", "t"], "bad task id"),
        (["T2", "--title", "two\nlines"], "orch: --title must be a single line"),
        (["T2", "--title", "t", "--scope", "a\nb"], "orch: --scope must be a single line"),
        (["T2", "--title", "  "], "orch: --title must not be empty"),
        (
            ["T2", "--title", "t", "--deps", "T9"],
            "orch: .orch/plan.md:11: unknown dependency 'T9' of T2 (known ids: T1, T2)\n  hint: T2 was not added",
        ),
        (["T2", "--title", "t", "--scope", "(x"], "invalid scope regex '(x'"),
        (["T2", "--title", "t", "--brief", "a\n## T3: sneaky"], "would not read back as one task"),
        (["T2", "--title", "t", "--brief", "- scope: x"], "would not read back as one task"),
    ],
)
def test_plan_add_refuses_and_leaves_the_file(project: Path, orch: Orch, args: list[str], message: str) -> None:
    write_plan(project, HAND_WRITTEN)
    r = orch("plan", "add", *args)
    assert r.returncode == 3, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert (project / ".orch/plan.md").read_text() == HAND_WRITTEN


def test_plan_add_refuses_a_broken_plan(project: Path, orch: Orch) -> None:
    broken = HAND_WRITTEN + "\n## T1: dup\n"
    write_plan(project, broken)
    r = orch("plan", "add", "T2", "--title", "t")
    assert r.returncode == 3
    assert "orch: .orch/plan.md:10: duplicate task id 'T1' (first defined at line 5)" in r.stderr
    assert (project / ".orch/plan.md").read_text() == broken


def test_plan_add_inside_an_open_fence_is_refused(project: Path, orch: Orch) -> None:
    write_plan(project, HAND_WRITTEN + "```\ncode never closed\n")
    r = orch("plan", "add", "T2", "--title", "t")
    assert r.returncode == 3
    assert "open ``` code block" in r.stderr
    assert (project / ".orch/plan.md").read_text().endswith("code never closed\n")


def test_plan_add_usage_errors_exit_2(project: Path, orch: Orch) -> None:
    r = orch("plan", "add", "T2")
    assert r.returncode == 2
    assert "--title" in r.stderr
    r = orch("plan", "add", "T2", "--title", "t", "--max-iterations", "0")
    assert r.returncode == 2


# -- every line that looks like a heading or a field counts, or is an error with its line ------------


def test_a_byte_order_mark_is_read_past() -> None:
    plan = plan_mod.parse("\ufeff# Plan: with a BOM\n\n## T1: First\n- scope: ^a/\n")
    assert (plan.title, plan.ids(), plan.tasks[0].scope, plan.tasks[0].line) == ("with a BOM", ["T1"], "^a/", 3)
    assert plan_mod.parse("\ufeff## T1: First\n- deps: none\n").ids() == ["T1"]


def test_plan_add_keeps_a_byte_order_mark(project: Path, orch: Orch) -> None:
    (project / ".orch/plan.md").write_bytes("\ufeff## T1: First\n- scope: ^a/\n".encode())
    orch.ok("plan", "add", "T2", "--title", "Second", "--deps", "T1")
    data = (project / ".orch/plan.md").read_bytes()
    assert data == "\ufeff## T1: First\n- scope: ^a/\n\n## T2: Second\n- deps: T1\n".encode()
    assert orch.ok("plan", "--json").stdout.count('"id"') == 2


@pytest.mark.parametrize(
    "bullet", ["-\tscope: ^src/", "  - scope: ^src/", "\t- scope: ^src/", "* scope: ^src/", "+ scope: ^src/"]
)
def test_field_bullets_as_markdown_writes_them_count(bullet: str) -> None:
    plan = plan_mod.parse(f"## T1: x\n- deps: none\n{bullet}\n- agent: shell\n")
    assert plan.tasks[0].fields == {"deps": "none", "scope": "^src/", "agent": "shell"}
    assert plan.tasks[0].field_lines["scope"] == 3


def test_an_indented_deps_bullet_keeps_its_dependency() -> None:
    plan = plan_mod.parse("## T1: a\n- scope: ^a/\n\n## T2: b\n- scope: ^b/\n  - deps: T1\n")
    assert plan.get("T2") is not None and plan.get("T2").deps == ["T1"]  # type: ignore[union-attr]


@pytest.mark.parametrize("heading", ["##\tT3: x", "   ## T3: x", "## \tT3: x"])
def test_headings_with_a_tab_or_indented_count(heading: str) -> None:
    plan = plan_mod.parse(f"## T1: a\n\n{heading}\n- deps: T1\n")
    assert plan.ids() == ["T1", "T3"]
    assert (plan.tasks[1].title, plan.tasks[1].deps, plan.tasks[1].line) == ("x", ["T1"], 3)


def test_a_heading_without_its_space_is_an_error() -> None:
    assert problems("## T1: a\n\n##T2: b\n") == [
        ".orch/plan.md:3: '##T2: b' looks like a task heading: write '## ID: Title' (a space after '##')"
    ]


def test_a_field_cut_off_by_a_blank_line_is_an_error() -> None:
    assert problems("## T1: a\n- scope: ^a/\n\n- deps: T0\n\nBrief.\n") == [
        ".orch/plan.md:4: field 'deps' of T1 is cut off from its field list by a blank line or a line above it "
        "(it would be read as the brief): move it up into the list"
    ]
