"""The event log: escaping that round-trips, `orch log` and its filters (many writers at once:
``tests/test_concurrency.py``)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import Orch
from hypothesis import given
from hypothesis import strategies as st

from orch.core import eventlog
from orch.core.errors import UsageError

field = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(lambda s: s != "-")
artifact = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(lambda s: s != "-")  # ',' too


@given(field, field, field, field, st.one_of(st.just(""), field), st.lists(artifact, max_size=3))
def test_escaping_round_trips(ts: str, state: str, iteration: str, action: str, result: str, arts: list[str]) -> None:
    event = eventlog.Event(ts, state, iteration, action, result, tuple(arts))
    line = event.line()
    assert line.endswith("\n") and line.count("\n") == 1 and "\r" not in line
    assert eventlog.parse_line(line) == event


def test_artifact_paths_with_commas_and_backslashes() -> None:
    event = eventlog.Event("t", "S", "T1", "A", "r", ("a,b.log", "c\\,d", "plain.log"))
    assert eventlog.parse_line(event.line()) == event


def test_escape_examples() -> None:
    assert eventlog.escape("a|b\\c\nd\re") == "a\\|b\\\\c\\nd\\re"
    assert eventlog.unescape("a\\|b\\\\c\\nd\\re") == "a|b\\c\nd\re"
    assert eventlog.parse_line("not an event\n") is None
    assert eventlog.parse_line("a | b | c\n") is None


def test_the_log_line_format(tmp_path: Path) -> None:
    log = tmp_path / "log"
    event = eventlog.append(
        log, state="RUNNING", task="T1", iteration=2, action="ITERATE", result="FAIL sig=3fa2c1",
        artifacts=["run/tasks/T1/iter-2.log"],
    )  # fmt: skip
    eventlog.append(log, state="MERGED", action="CEREMONY")
    text = log.read_text()
    assert text == (
        f"{event.ts} | RUNNING | T1.i2 | ITERATE | FAIL sig=3fa2c1 | run/tasks/T1/iter-2.log\n"
        f"{eventlog.read(log)[1].ts} | MERGED | - | CEREMONY | - | -\n"
    )
    assert datetime.strptime(event.ts, "%Y-%m-%dT%H:%M:%SZ")
    assert eventlog.read(log)[1] == eventlog.Event(eventlog.read(log)[1].ts, "MERGED", "-", "CEREMONY", "", ())


def test_read_from_skips_torn_lines_and_waits_for_the_newline(tmp_path: Path) -> None:
    log = tmp_path / "log"
    eventlog.append(log, state="RUNNING", task="T1", action="A")
    with log.open("ab") as handle:
        handle.write(b"garbage that is no event\n2026-01-01T00:00:00Z | RUNNING | T2 | B")
    events, offset = eventlog.read_from(log)
    assert [e.action for e in events] == ["A"]
    with log.open("ab") as handle:
        handle.write(b" | done | -\n")
    events, offset2 = eventlog.read_from(log, offset)
    assert [(e.task, e.action, e.result) for e in events] == [("T2", "B", "done")]
    assert offset2 == log.stat().st_size
    assert eventlog.read_from(tmp_path / "missing") == ([], 0)


def test_parse_since() -> None:
    now = datetime(2026, 11, 21, 14, 0, 0, tzinfo=timezone.utc)
    assert eventlog.parse_since("10m", now=now) == "2026-11-21T13:50:00Z"
    assert eventlog.parse_since("2h", now=now) == "2026-11-21T12:00:00Z"
    assert eventlog.parse_since("3d", now=now) == "2026-11-18T14:00:00Z"
    assert eventlog.parse_since("1w", now=now) == "2026-11-14T14:00:00Z"
    assert eventlog.parse_since("2026-11-21T14:02:11Z") == "2026-11-21T14:02:11Z"
    assert eventlog.parse_since("2026-11-21T16:02:11+02:00") == "2026-11-21T14:02:11Z"
    assert eventlog.parse_since("2026-11-21") == "2026-11-21T00:00:00Z"
    try:
        eventlog.parse_since("yesterday")
    except UsageError as exc:
        assert "--since: cannot read 'yesterday'" in exc.render()
    else:
        raise AssertionError("no error")


def ts(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_log(project: Path) -> list[str]:
    lines = [
        f"{ts(timedelta(days=3))} | RUNNING | T1 | SPIN | started | run/tasks/T1/agent.log",
        f"{ts(timedelta(days=2))} | FAILED | T1.i1 | ITERATE | exit 1 \\| tests failed | -",
        f"{ts(timedelta(hours=1))} | RUNNING | T10 | SPIN | started | -",
        f"{ts(timedelta(minutes=5))} | SUCCESS | T1.i2 | ITERATE | ok | a.log,b.log",
    ]
    log = project / ".orch/run/log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("\n".join(lines) + "\n")
    return lines


def test_orch_log_of_an_unknown_task_is_an_error(project: Path, orch: Orch) -> None:
    lines = seed_log(project)  # T10 is in the log only: a task since taken off the plan still shows
    assert orch.ok("log", "--task", "T10").stdout.splitlines() == [lines[2]]
    r = orch("log", "--task", "NOPE")
    assert (r.returncode, r.stdout) == (3, "")
    assert r.stderr == "orch: no task 'NOPE' in .orch/plan.md\n  hint: see the tasks with: orch plan\n"
    assert orch("log", "--task", "../../etc").returncode == 3


def test_orch_log_and_filters(project: Path, orch: Orch) -> None:
    lines = seed_log(project)
    assert orch.ok("log").stdout.splitlines() == lines
    assert orch.ok("log", "--task", "T1").stdout.splitlines() == [lines[0], lines[1], lines[3]]
    assert orch.ok("log", "--since", "2h").stdout.splitlines() == lines[2:]
    assert orch.ok("log", "--task", "T1", "--since", "30m").stdout.splitlines() == [lines[3]]
    assert orch.ok("log", "--since", lines[1][:20]).stdout.splitlines() == lines[1:]
    records = [json.loads(line) for line in orch.ok("log", "--json", "--task", "T1").stdout.splitlines()]
    assert records[1] == {
        "ts": lines[1][:20],
        "state": "FAILED",
        "iteration": "T1.i1",
        "action": "ITERATE",
        "result": "exit 1 | tests failed",
        "artifacts": [],
        "task": "T1",
    }
    assert records[2]["artifacts"] == ["a.log", "b.log"]


def test_orch_log_with_no_log_yet_and_a_bad_since(project: Path, orch: Orch) -> None:
    assert orch.ok("log").stdout == ""
    r = orch("log", "--since", "last tuesday")
    assert r.returncode == 2
    assert "orch: usage: --since: cannot read 'last tuesday'" in r.stderr
    assert "hint: use a duration" in r.stderr


def read_line(proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no line within {timeout}s (so far: {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"orch log exited early: {data!r}")
        data += chunk
    return data.decode()


def test_orch_log_follow_sees_events_appended_later(project: Path) -> None:
    lines = seed_log(project)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch", "log", "--follow", "--task", "T1"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert [read_line(proc) for _ in range(3)] == [lines[0] + "\n", lines[1] + "\n", lines[3] + "\n"]
        log = project / ".orch/run/log"
        eventlog.append(log, state="RUNNING", task="T10", action="OTHER")  # filtered out
        eventlog.append(log, state="MERGED", task="T1", action="CEREMONY", result="merged at abc123")
        assert read_line(proc).endswith(" | MERGED | T1 | CEREMONY | merged at abc123 | -\n")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == b"orch: interrupted\n"  # typer's own Ctrl-C handling is silent; orch says what happened


def test_what_a_terminal_would_act_on_is_written_as_text(tmp_path: Path) -> None:
    log = tmp_path / "log"
    eventlog.append(log, state="INBOX", action="ASK", result="G1 gate: rm \x1b[2K\rx\u202e")
    raw = log.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw and "\u202e".encode() not in raw
    assert eventlog.read_from(log)[0][0].result == "G1 gate: rm \\u001b[2K\\u000dx\\u202e"
