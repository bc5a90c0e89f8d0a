"""Property: any valid plan survives render -> parse unchanged, and so does every byte of free text."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.core import plan as plan_mod

# No line or paragraph separators: str.splitlines() would split on them, as it does on '\n'.
CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
ids = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,39}\Z")
one_line = st.text(CHARS, min_size=1, max_size=30).map(str.strip).filter(bool)


def prose_ok(line: str) -> bool:
    """A line that is plain prose wherever it stands: no heading, no bullet, no fence."""
    head = line.lstrip(" ")
    return not (line.startswith("#") or head.startswith(("-", "```", "~~~")) or not line.strip())


prose = st.text(CHARS, min_size=1, max_size=40).filter(prose_ok)
FENCED = [
    "```markdown\n## T99: not a task\n- scope: (\n```\n",
    "~~~~\n## Notes\n~~~\n~~~~\n",
    "    ```python\n    indented: four spaces is code, not a fence\n",
]
body_line = st.one_of(
    prose.map(lambda s: s + "\n"),
    st.just("\n"),
    st.just("   \n"),
    prose.map(lambda s: f"- {s}\n"),
    prose.map(lambda s: f"### {s}\n"),
    st.sampled_from(FENCED),
)


@st.composite
def free_text(draw: st.DrawFn) -> str:
    """Free Markdown whose first line is prose, so nothing reads it as a field list or a heading."""
    first = draw(prose) + "\n"
    return first + "".join(draw(st.lists(body_line, max_size=6)))


def field_values(earlier: list[str]) -> st.SearchStrategy[dict[str, str]]:
    values: dict[str, st.SearchStrategy[str]] = {
        "scope": st.sampled_from(["^src/", r"^(src/a/|tests/test_a\.py$)", r"\.md$", "docs"]),
        "agent": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"),
        "accept": one_line,
        "model": one_line,
        "run": one_line,
        "level": st.sampled_from(plan_mod.LEVELS),
        "max_iterations": st.integers(1, 99).map(str),
        "budget": st.sampled_from(["200k tokens", "$5", "1.5M tokens, $2", "7 usd"]),
    }
    if earlier:
        values["deps"] = st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True).map(", ".join)
    else:
        values["deps"] = st.just("none")
    return st.fixed_dictionaries({}, optional=values)


@st.composite
def plans(draw: st.DrawFn) -> plan_mod.Plan:
    preamble = draw(st.one_of(st.just(""), st.builds(lambda t, rest: f"# Plan: {t}\n{rest}", one_line, free_text())))
    task_ids = draw(st.lists(ids, max_size=5, unique=True))
    tasks = []
    for n, task_id in enumerate(task_ids):
        fields = draw(field_values(task_ids[:n]))
        gap = draw(st.integers(0, 2)) if fields else 0
        brief = draw(st.one_of(st.just(""), free_text(), free_text().map(lambda t: "\n" + t)))
        tasks.append(plan_mod.Task(id=task_id, title=draw(one_line), fields=fields, brief=brief, gap=gap))
    return plan_mod.Plan(preamble=preamble, tasks=tasks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_parse_render_round_trip(plan: plan_mod.Plan) -> None:
    text = plan_mod.render(plan)
    parsed = plan_mod.parse(text)
    assert parsed == plan
    assert plan_mod.render(parsed) == text  # every byte of preamble and briefs survives
    lines = text.splitlines()
    for task in parsed.tasks:  # line numbers point at the heading and at each field
        assert lines[task.line - 1] == f"## {task.id}: {task.title}"
        for key, line in task.field_lines.items():
            assert lines[line - 1] == f"- {key}: {task.fields[key]}"


@settings(max_examples=200, deadline=None)
@given(plans(), st.sampled_from(["\n", "\r\n"]))
def test_free_text_survives_in_either_line_ending(plan: plan_mod.Plan, newline: str) -> None:
    text = plan_mod.render(plan).replace("\n", newline)
    parsed = plan_mod.parse(text)
    assert parsed.preamble == plan.preamble.replace("\n", newline)
    assert [(t.id, t.title, t.fields, t.gap) for t in parsed.tasks] == [
        (t.id, t.title, t.fields, t.gap) for t in plan.tasks
    ]
    assert [t.brief for t in parsed.tasks] == [t.brief.replace("\n", newline) for t in plan.tasks]
