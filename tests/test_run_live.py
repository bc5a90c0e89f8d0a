"""``orch run`` at a terminal: the live table of the followed tasks, played on a real pseudo-terminal
by a scripted shell agent acting on ``$ORCH_ITERATION``; and the BUDGET texts it shares with ``orch status``."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import Orch, git, status_of, wait_state, write_plan

from orch.cli import render
from orch.cli.live import cells_of, clock
from orch.core.text import budget_text

# Fails twice (the accept command finds no src/done.txt), then makes it; each iteration changes the tree.
THIRD = (
    'mkdir -p src && echo "$ORCH_ITERATION" > "src/n-$ORCH_ITERATION.txt"'
    ' && if [ "$ORCH_ITERATION" -ge 3 ]; then echo done > src/done.txt; fi'
)
HANG = "sleep 600"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


def plan(project: Path, run: str, *extra: str) -> None:
    fields = ["- scope: ^src/", "- agent: shell", f"- run: {run}", "- accept: test -f src/done.txt", *extra]
    write_plan(project, "# Plan: live\n\n## T1: Live [/bold] task\n" + "\n".join(fields) + "\n\nMake it.\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


class Terminal:
    """``orch ARGS`` on a pseudo-terminal it controls (Ctrl-C there reaches it), 140 columns wide."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env.update(TERM="xterm", COLUMNS="140", LINES="40")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orch", *args],
            cwd=cwd,
            stdin=follower,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # Ctrl-C written there reaches orch
        )
        os.close(follower)
        self.raw = b""

    def read_until(self, done: object, timeout: float = 120) -> str:
        """Read until ``done(text)`` (the text without escapes) is true, or the program has closed it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(done) and done(self.text):
                break
            ready, _, _ = select.select([self.leader], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # EIO: every holder of the other side closed it
                break
            if not chunk:
                break
            self.raw += chunk
        return self.text

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace")).replace("\r\n", "\n")

    def finish(self) -> tuple[int, str]:
        self.read_until(None)
        code = self.proc.wait(timeout=60)
        os.close(self.leader)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()


def test_a_live_table_follows_the_loop_to_success(project: Path) -> None:
    plan(project, THIRD)
    term = Terminal(project, "run", "T1")
    code, stderr = term.finish()
    out = term.text
    assert code == 0, out + stderr
    header = next(ln for ln in out.splitlines() if ln.lstrip().startswith("ID "))
    assert header.split() == ["ID", "STATE", "ITER", "STRATEGY", "BUDGET", "LAST", "EVENT", "ELAPSED"], out
    assert "orch run: " in out and "\x1b[" in term.raw.decode()  # the rich view, not the plain lines
    assert re.search(r"T1 +SUCCESS +3/10 +1/3 +- +ACCEPT PASS +\d+:\d\d", out), out  # the last frame stays
    assert re.search(r"T1\.i2 ITERATE FAIL sig=[0-9a-f]{12}", out), out  # the events under the table
    assert out.rstrip().splitlines()[-1] == "T1: SUCCESS after 3 iterations"
    assert "\x1b[?25h" in term.raw.decode()  # the cursor is shown again


def test_ctrl_c_leaves_the_view_and_the_task_runs_on(project: Path, orch: Orch) -> None:
    plan(project, HANG)
    term = Terminal(project, "run", "T1")
    term.read_until(lambda text: "RUNNING" in text and "LAST EVENT" in text, timeout=60)
    os.write(term.leader, b"\x03")  # Ctrl-C, through the terminal's line discipline
    code, stderr = term.finish()
    assert code == 130, term.text + stderr
    assert "orch: interrupted: T1 run on, detached (follow: orch wait T1; end one: orch stop ID)" in stderr
    assert "\x1b[?25h" in term.raw.decode()  # the view left the cursor shown
    assert status_of(project, "T1")["state"] == "RUNNING"  # its supervisor never saw the Ctrl-C
    orch.ok("stop", "T1", "--kill")
    assert wait_state(orch, "T1") == "FAILED"


def test_a_pipe_keeps_one_line_per_event(project: Path, orch: Orch) -> None:
    plan(project, THIRD)
    r = orch("run", "T1", env={"TERM": "xterm"})
    assert r.returncode == 0, r.output
    assert "ELAPSED" not in r.stdout and "\x1b[" not in r.stdout
    assert [ln.split()[:2] for ln in r.stdout.splitlines() if " ITERATE " in ln] == [
        ["T1.i1", "ITERATE"],
        ["T1.i2", "ITERATE"],
    ]


@pytest.mark.parametrize(
    ("row", "text"),
    [
        ({}, "-"),
        ({"tokens": 5000, "cost_usd": 1.0}, "-"),  # used, but no budget
        ({"usage": {"tokens": 5000}, "budget": {"tokens": None, "usd": None}}, "-"),
        ({"usage": {"tokens": 122_000}, "budget": {"tokens": 200_000}}, "61% of 200k tokens"),
        ({"usage": {"cost_usd": 1.2}, "budget": {"usd": 5}}, "$1.20 of $5 (24%)"),
        ({"usage": {"cost_usd": 4.2, "tokens": 122_000}, "budget": {"usd": 5.5, "tokens": 200_000}},
         "$4.20 of $5.50 (76%), 61% of 200k tokens"),  # the larger share first
        ({"usage": {"cost_usd": 0.5, "tokens": 1_800_000}, "budget": {"usd": 5, "tokens": 1_500_000}},
         "120% of 1.5M tokens, $0.50 of $5 (10%)"),
        ({"usage": None, "budget": {"tokens": 999_999, "usd": 2}}, "? of 1M tokens, ? of $2"),  # usage unknown
        ({"tokens": 50, "budget": {"tokens": 100}}, "50% of 100 tokens"),  # status rows before usage{}
    ],
)  # fmt: skip
def test_budget_text(row: dict[str, object], text: str) -> None:
    assert budget_text(row) == text
    assert render.budget_text is budget_text  # what the status table and the live view use


def test_the_status_table_has_a_budget_column() -> None:
    base = {"state": "RUNNING", "ready": False, "agent": "shell", "branch": "orch/T1", "age_seconds": 90.0}
    base.update(iteration=2, max_iterations=10, iterations=2, tokens=50_000, cost_usd=None, verdict=None)
    rows = [
        {**base, "id": "T1", "title": "One", "budget": {"tokens": 200_000, "usd": None}},
        {**base, "id": "T2", "title": "Two [/x]"},
    ]
    headers, cells = render.status_rows(rows)
    assert headers[6:10] == ["TOKENS", "COST", "BUDGET", "VERDICT"]
    assert cells[0][6:9] == ["50,000", "-", "25% of 200k tokens"]
    assert cells[1][8] == "-"


def test_the_live_rows_cells() -> None:
    row = {"id": "T1", "state": "RUNNING", "iteration": 3, "max_iterations": 10, "strategy": "2/3"}
    row.update(last_event="ITERATE FAIL sig=ab12cd9f0e1d", elapsed_seconds=3725.2, budget={"usd": 5}, usage={})
    assert cells_of(row) == ["T1", "RUNNING", "3/10", "2/3", "? of $5", "ITERATE FAIL sig=ab12cd9f0e1d", "1:02:05"]
    bare = {"id": "T2", "state": "PENDING", "last_event": None, "elapsed_seconds": None}
    assert cells_of(bare) == ["T2", "PENDING", "-", "-", "-", "-", "-"]
    assert (clock(0), clock(42.9), clock(725)) == ("0:00", "0:42", "12:05")


def test_the_live_frame_shows_hostile_text_as_written() -> None:
    from rich.console import Console

    from orch.cli.live import frame

    row = {"id": "T1", "state": "FAILED", "last_event": "ITERATE [/bold] [red]x\x1b[2J", "elapsed_seconds": 5}
    console = Console(record=True, width=140, color_system=None)
    console.print(frame([row], ["T1.i1 ITERATE [/api]"]))
    shown = console.export_text()
    assert "ITERATE [/bold] [red]x\\u001b[2J" in shown and "T1.i1 ITERATE [/api]" in shown
    assert "orch run: 0 of 1 running" in shown


def test_orch_status_shows_the_budget_a_run_used(project: Path, orch: Orch) -> None:
    plan(project, THIRD, "- budget: 200k tokens, $5")
    assert orch("run", "T1").returncode == 0
    row = json.loads(orch.ok("status", "--json").stdout)["tasks"][0]
    assert row["budget"] == {"tokens": 200_000, "usd": 5.0}, row
    shown = budget_text(row)
    assert shown == "? of 200k tokens, ? of $5", row  # the shell agent reports no usage
    assert f"  budget:     {shown}\n" in orch.ok("status", "T1").stdout
    header, line = orch.ok("status").stdout.splitlines()[:2]
    assert line[header.index("BUDGET") :].startswith(shown), (header, line)
