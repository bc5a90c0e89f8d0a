"""``orch timeline``: real runs of scripted agents (a loop task that passes on its third iteration,
verified and merged with ``orch merge``; an inbox item answered), read back as spans: the text Gantt,
``--json`` (schemas/timeline.schema.json), ``--mermaid``; a narrow terminal, unknown ids, an empty
log, and a log with older lines, unknown actions, a task with no end and hostile text."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import Orch, git, status_of, wait_state, write_plan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_loop import AGENT
from test_status import run_in_pty
from vhelpers import commit_in, make_task, setup_project

from orch.views import timeline as view

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas/timeline.schema.json").read_text())
WIDE = {"COLUMNS": "100"}
# One Mermaid gantt task line: a name without ':', '#' or ';', tags, an id, a start and a duration.
TASK_LINE = re.compile(
    r"^    [^:#;\n]+ :(?:(?:done|active|crit), )?[a-z][a-z0-9_]*, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, \d+s$"
)


def timeline_json(orch: Orch, *ids: str) -> dict:
    data = json.loads(orch.ok("timeline", "--json", *ids).stdout)
    jsonschema.validate(data, SCHEMA)
    return data


def check_mermaid(text: str) -> list[str]:
    """The chart's structure as Mermaid's gantt grammar wants it; returns the task lines."""
    lines = text.splitlines()
    assert lines[0] == "gantt"
    assert "    dateFormat YYYY-MM-DD HH:mm:ss" in lines
    tasks, section = [], False
    for line in lines[1:]:
        if line.startswith("    section "):
            section = True
            assert not re.search(r"[:#;]", line[len("    section ") :]), line
        elif line.startswith(("    title ", "    dateFormat ", "    axisFormat ")):
            assert not section, "settings come before the sections"
        else:
            assert section and TASK_LINE.match(line), line
            tasks.append(line)
    ids = [ln.split(":", 1)[1].split(", ")[1] for ln in tasks]
    assert len(set(ids)) == len(ids)
    return tasks


@pytest.fixture
def merged(project: Path, orch: Orch, tmp_path: Path) -> Path:
    """T1: a loop task that passes on its third iteration, verified and merged with ``orch merge``."""
    agent = tmp_path / "loop_agent.py"
    agent.write_text(AGENT)
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(agent))} third"
    plan = f"# Plan: t\n\n## T1: Loop task\n- scope: ^src/\n- agent: shell\n- run: {run}\n"
    write_plan(project, plan + "- accept: test -f src/done.txt\n\nMake src/done.txt.\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    orch.ok("verify", "T1")
    orch.ok("merge", "T1")
    return project


def test_a_loop_task_verified_and_merged(merged: Path, orch: Orch) -> None:
    data = timeline_json(orch)
    [task] = data["tasks"]
    assert (task["id"], task["title"], task["state"]) == ("T1", "Loop task", "MERGED")
    spans = task["spans"]
    kinds = [s["kind"] for s in spans]
    # orch verify, then the ceremony's own (one span when in the same second)
    assert kinds[:3] == ["iteration"] * 3 and set(kinds[3:-1]) == {"verify"} and kinds[-1] == "merge"
    starts = [s["start"] for s in spans]
    assert starts == sorted(starts) and all(not s["open"] and s["end"] >= s["start"] for s in spans)
    one, two, three = spans[:3]
    assert [s["iteration"] for s in (one, two, three)] == [1, 2, 3]
    assert [s["outcome"] for s in (one, two, three)] == ["FAIL", "FAIL", "SUCCESS"]
    folder = ".orch/run/tasks/T1"
    # what each saw: its brief, and from the second on the feedback of the one before
    assert one["saw"] == {"brief": f"{folder}/context.md", "feedback": None}
    assert two["saw"]["feedback"] == f"{folder}/iter-1.log" and three["saw"]["feedback"] == f"{folder}/iter-2.log"
    # what each returned: the exit, a snapshot, its diffstat, the accept result, its iteration's log
    for s in (one, two, three):
        got = s["returned"]
        assert got["exit"] == "code=0" and re.fullmatch(r"[0-9a-f]{12}", got["snapshot"])
        assert "changed" in got["diffstat"]
    assert [s["returned"]["accept"] for s in (one, two, three)] == ["FAIL exit=1", "FAIL exit=1", "PASS"]
    assert two["returned"]["from_sha"] == one["returned"]["snapshot"]
    assert one["returned"]["log"] == f"{folder}/iter-1.log" and "log" not in three["returned"]
    assert three["returned"]["snapshot"] == git(merged, "rev-parse", "--short=12", "orch/T1").strip()
    # what orch did with it
    assert one["did"]["verdict"].startswith("FAIL sig=") and "accept command failed" in one["did"]["why"]
    assert one["did"]["tdd_gate"].startswith("ok:")
    assert three["did"]["verdict"] == "PASS" and three["did"]["end"].startswith("SUCCESS head=")
    for s in (one, two, three):
        for path in [*s["saw"].values(), s["returned"].get("log")]:
            assert path is None or (merged / path).is_file()
    verify, merge = spans[3], spans[-1]
    assert verify["outcome"] == "OK" and verify["sha"] == three["returned"]["snapshot"]
    assert merge["outcome"] == "MERGED" and "into main" in merge["detail"]
    assert [t["result"] for t in merge["tests"]] == ["T1: pass (run 1)"]
    assert (merged / merge["tests"][0]["log"]).is_file()

    text = orch.ok("timeline", env=WIDE).stdout
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith("T1 "))
    bar = row[len("T1  ") : -len(" MERGED")]
    assert row.endswith(" MERGED") and re.fullmatch(r"1+2+3+ *(?:v+ *)+m+", bar.strip()), row
    assert all(len(ln) <= 100 for ln in lines[: lines.index(row) + 3])  # the axis, the rows, the legend
    assert any(ln.startswith(". queued") and "m merge" in ln for ln in lines)  # the legend
    assert f"saw      {folder}/context.md, feedback {folder}/iter-1.log" in text
    assert "accept PASS" in text and "orch     PASS; SUCCESS head=" in text
    assert re.search(r"merge +\S+  MERGED [0-9a-f]{12} into main; test T1: pass \(run 1\)", text)

    tasks = check_mermaid(orch.ok("timeline", "--mermaid").stdout)
    names = ["iteration 1 FAIL", "iteration 2 FAIL", "iteration 3 SUCCESS", *["verify OK"] * (len(kinds) - 4)]
    assert [t.split(" :")[0].strip() for t in tasks] == [*names, "merge MERGED"]
    assert ":crit, " in tasks[0] and ":done, " in tasks[2]

    # a narrow terminal: the chart still fits, every span still has a cell
    narrow = orch.ok("timeline", env={"COLUMNS": "24"}).stdout.splitlines()
    row = next(ln for ln in narrow if ln.startswith("T1 "))
    assert len(row) <= 24 and re.fullmatch(r"T1 +1+2+3+ *(?:v+ *)+m+(?: MERGED)?", row), row
    legend = narrow[narrow.index(row) + 1 : narrow.index("")]
    assert len(legend) > 2 and all(len(ln) <= 24 for ln in legend) and legend[0].startswith(". queued")
    assert orch.ok("timeline", "T1", "--json").stdout == orch.ok("timeline", "--json").stdout

    r = orch("timeline", "t1")
    assert r.returncode == 3 and "no task 't1'" in r.stderr and "did you mean 'T1'?" in r.stderr
    r = orch("timeline", "T1", "--json", "--mermaid")
    assert r.returncode == 2 and "cannot be given together" in r.stderr


def test_an_inbox_item_answered_is_a_wait_for_a_person(repo: Path, orch: Orch) -> None:
    proj = setup_project(repo, orch)
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    assert orch("verify", "T3").returncode == 1  # the soft lock waits for an ack: item K1
    assert orch.ok("inbox", "--json").stdout.count('"id": "K1"') == 1
    waiting = timeline_json(orch, "T3")["tasks"][0]["spans"]
    assert [s["kind"] for s in waiting] == ["verify", "waiting"] and waiting[1]["open"] and waiting[1]["end"] is None
    row = next(ln for ln in orch.ok("timeline", env=WIDE).stdout.splitlines() if ln.startswith("T3 "))
    assert re.search(r"v *\?*> *PENDING$", row), row  # still waiting at the log's end (the span may be 0 wide)
    orch.ok("approve", "K1", "--note", "fine")
    orch.ok("verify", "T3")
    data = timeline_json(orch, "T3")
    kinds = [s["kind"] for s in data["tasks"][0]["spans"]]
    assert kinds == ["verify", "waiting", "verify"]
    wait = data["tasks"][0]["spans"][1]
    assert wait["item"] == "K1" and wait["outcome"] == "approved" and not wait["open"]
    assert "soft lock L4" in wait["label"] and wait["answer"].startswith("K1 ack by ")
    assert "waiting" in orch.ok("timeline", "T3").stdout
    check_mermaid(orch.ok("timeline", "--mermaid").stdout)
    r = orch("timeline", "T9")
    assert r.returncode == 3 and "no task 'T9'" in r.stderr


def test_an_empty_log(project: Path, orch: Orch) -> None:
    assert orch.ok("timeline").stdout == "the event log holds no events of any task yet (.orch/run/log)\n"
    write_plan(project, "# Plan: p\n\n## T1: Not run yet\n- scope: ^src/\n")
    assert orch.ok("timeline", "T1").stdout == "the event log holds no events of T1 yet (.orch/run/log)\n"
    data = timeline_json(orch)
    assert data["tasks"] == [] and data["start"] is None
    assert check_mermaid(orch.ok("timeline", "--mermaid").stdout) == []


def test_old_lines_unknown_actions_no_end_and_hostile_text(project: Path, orch: Orch) -> None:
    write_plan(project, "# Plan: hostile\n\n## T1: fix [/api] a:b#c;d [bold]\n- scope: ^src/\n")
    log = project / ".orch/run/log"
    log.parent.mkdir(parents=True, exist_ok=True)
    evil = "\x1b[31mred\x1b[0m [/api] [bold]x:y#z;w"
    log.write_text(
        "2026-11-01T10:00:00Z RUNNING T1 START\n"  # an older version's line: not six fields
        "2026-11-01T10:00:00Z | PENDING | T1 | SPIN | branch=orch/T1 base=0123456789ab | -\n"
        "2026-11-01T10:00:01Z | RUNNING | T1 | START | agent=shell box=on | -\n"
        "2026-11-01T10:00:02Z | RUNNING | T1 | WHIRL | what a newer version writes | -\n"
        f"2026-11-01T10:00:03Z | RUNNING | T1 | SNAPSHOT | {evil} | -\n"
        f"2026-11-01T10:00:04Z | RUNNING | T1.i1 | ITERATE | FAIL {evil} | ../../../etc/passwd\n"
        "yesterday | RUNNING | T1 | DONE | - | -\n"
        "2026-11-01T10:00:05Z | RUNNING | T1 | EXIT | code=1 | -\n"
        "2026-11-01T10:00:09Z | RUNNING | ../x | START | - | -\n"
    )
    data = timeline_json(orch)
    [task] = data["tasks"]
    one, two = task["spans"]
    assert one["outcome"] == "FAIL" and "\x1b" not in one["did"]["verdict"]
    assert "\\u001b[31mred" in one["did"]["verdict"] and "snapshot" not in one["returned"]
    assert "log" not in one["returned"]  # a path the log names is not read
    assert two["iteration"] == 2 and two["open"] and two["end"] is None and two["returned"]["exit"] == "code=1"
    assert data["other_events"] == {"WHIRL": 1, "(unreadable time)": 1, "(bad task id)": 1}
    text = orch.ok("timeline", env=WIDE).stdout
    assert "\x1b" not in text and "\\u001b[31mred\\u001b[0m [/api] [bold]x:y#z;w" in text
    assert "not shown: (bad task id) x1, (unreadable time) x1, WHIRL x1" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("T1 "))
    assert row.rstrip().endswith("> RUNNING") and "1" in row
    chart = orch.ok("timeline", "--mermaid").stdout
    tasks = check_mermaid(chart)
    assert tasks[-1].startswith("    iteration 2 open :active, ")
    assert chart.splitlines()[4] == "    section T1 fix /api a b c d bold"
    assert "[/api]" not in chart and "#" not in chart
    # at a terminal: rich, each cell styled, the titles and results shown as written (Text, never markup)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="100")
    shown = run_in_pty(["timeline"], project, env)
    assert "\x1b[" in shown and "\x1b[31mred" not in shown  # rich's colours; never the log's escapes
    assert "T1  RUNNING  fix [/api] a:b#c;d [bold]" in shown and "\\u001b[31mred" in shown


def test_a_retried_task_links_each_run_to_its_own_files(project: Path, orch: Orch, tmp_path: Path) -> None:
    import test_retry

    agent = tmp_path / "retry_agent.py"
    agent.write_text(test_retry.AGENT)
    test_retry.plan(
        project, agent, "never", "- accept: test -f src/done.txt", config="max_strategies: 1\nmax_per_strategy: 2\n"
    )
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    orch.ok("retry", "T1", "--note", f"Say {test_retry.MAGIC}.")
    assert wait_state(orch, "T1") == "SUCCESS"
    spans = timeline_json(orch, "T1")["tasks"][0]["spans"]
    got = [(s["kind"], s.get("run"), s.get("iteration"), s.get("outcome")) for s in spans]
    assert got == [("iteration", 1, 1, "FAIL"), ("iteration", 1, 2, "FAIL"), ("iteration", 2, 1, "SUCCESS")]
    first, second, third = spans
    old, new = ".orch/run/tasks/T1/run-1", ".orch/run/tasks/T1"
    assert first["saw"] == {"brief": f"{old}/context.md", "feedback": None}
    assert second["saw"] == {"brief": f"{old}/context.md", "feedback": f"{old}/iter-1.log"}
    assert second["returned"]["log"] == f"{old}/iter-2.log" and second["did"]["end"].startswith("BLOCKED ")
    assert third["saw"] == {"brief": f"{new}/context.md", "feedback": None}
    assert test_retry.MAGIC in (project / third["saw"]["brief"]).read_text()
    assert third["returned"]["from_sha"] == status_of(project, "T1")["base_sha"][:12]
    text = orch.ok("timeline", "T1", env=WIDE).stdout
    assert "  iter 1     " in text and "SUCCESS (run 2)" in text


_ACTIONS = sorted(view.KNOWN) + ["WHIRL", "merge", ""]
_FIELD = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_EVENT = st.tuples(
    st.sampled_from([f"2026-11-01T10:00:0{n}Z" for n in range(10)] + ["yesterday", ""]),
    st.sampled_from(["RUNNING", "SUCCESS", "MERGED", "INBOX", "-", "CRASHED"]),
    st.sampled_from(["T1", "T1.i1", "T1.i2", "T2", "T2.i7", "-", "../x", "T1.i99999999999"]),
    st.sampled_from(_ACTIONS),
    st.one_of(
        _FIELD,
        st.sampled_from(
            ["K1 ack: x", "K1 ack by a", "FAIL sig=1", "PASS", "into main at 1; queue: T1, T2", "T1: pass"]
        ),
        st.sampled_from(["base=0123456789ab", "sha=0123456789ab", "0123456789ab", "code=0"]),
    ),
    st.lists(_FIELD, max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_EVENT, _FIELD), max_size=25), st.integers(min_value=1, max_value=140))
def test_any_log_gives_a_timeline(project: Path, lines: list, width: int) -> None:
    """Whatever the log holds (events in any order, torn lines, hostile text), the timeline is built,
    matches its schema, fits the width (or its minimum) and gives a Mermaid chart of the right shape."""
    from orch.core import eventlog
    from orch.core.context import open_ctx
    from orch.views import timelineout

    text = ""
    for line in lines:
        if isinstance(line, tuple):
            ts, state, it, action, result, arts = line
            text += eventlog.Event(ts, state, it, action, result, tuple(arts)).line()
        else:
            text += line.replace("\n", " ") + "\n"
    log = project / ".orch/run/log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text, encoding="utf-8", errors="surrogateescape")
    data = view.build(open_ctx(project))
    jsonschema.validate(json.loads(json.dumps(data)), SCHEMA)
    if data["tasks"]:
        rows, id_w, bar = timelineout.gantt(data, width)
        for row in rows:
            line = f"{row.task:<{id_w}} {''.join(c for c, _ in row.cells)} {row.state}".rstrip()
            assert len(line) <= max(width, id_w + 1 + timelineout.MIN_BAR), line
        assert all(len(ln) <= max(width, 30) for ln in timelineout.legend(width))
        timelineout.details(data)
    check_mermaid(timelineout.mermaid(data))


def test_a_queued_task_waits_until_its_start(project: Path, orch: Orch) -> None:
    """A queue's events (issue 15's QUEUED, before or after the spin's): the wait is a span of its own."""
    (project / ".orch/run").mkdir(parents=True, exist_ok=True)
    (project / ".orch/run/log").write_text(
        "2026-11-01T10:00:00Z | QUEUED | T1 | QUEUED | waits for a slot | -\n"
        "2026-11-01T10:00:01Z | PENDING | T1 | SPIN | branch=orch/T1 base=0123456789ab | -\n"
        "2026-11-01T10:00:05Z | RUNNING | T1 | START | agent=shell box=on | -\n"
        "2026-11-01T10:00:09Z | SUCCESS | T1 | DONE | head=0123456789ab | -\n"
    )
    spans = timeline_json(orch, "T1", "T1")["tasks"][0]["spans"]
    assert [(s["kind"], s["start"][-3:-1], s["end"][-3:-1], s.get("outcome")) for s in spans] == [
        ("queued", "00", "05", None),
        ("iteration", "05", "09", "SUCCESS"),
    ]
    row = next(ln for ln in orch.ok("timeline", env={"COLUMNS": "60"}).stdout.splitlines() if ln.startswith("T1 "))
    assert re.fullmatch(r"T1 +\.+1+ SUCCESS", row) and len(row) <= 60, row
