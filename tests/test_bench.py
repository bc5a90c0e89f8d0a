"""scripts/bench/run: one table from the benchmarks in scripts/bench/.

Smoke tests on the cheapest benchmark (startup) with one run: the table's shape and that its columns
agree with each other; and the loop benchmark at its smallest, whose cases check that orch and the
shell loop each end after exactly the iterations planned. Never a wall time: the figures depend on
the machine and its load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orch.core import box

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"
STARTUP = {
    "startup: `orch --help`": "<= 8x",
    "startup: `orch status`, 100 tasks": "<= 10x",
    "startup: `orch status --json`, 100 tasks": "-",
    "startup: `orch plan`, 500 tasks": "-",
}


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    # The Python running the tests (it has orch installed), as scripts/bench/run picks a virtualenv.
    env = {**os.environ, "ORCH_VENV": sys.prefix}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


def cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |"), line
    return [cell.strip() for cell in line[2:-2].split(" | ")]


def ms(text: str) -> tuple[float, str]:
    """``12.3 ms`` or ``123 ms``, and what follows (the baseline's name)."""
    match = re.fullmatch(r"(\d+(?:\.\d)?) ms ?(.*)", text)
    assert match, text
    return float(match[1]), match[2]


def test_run_prints_one_table_whose_columns_agree() -> None:
    proc = bench(str(BENCH / "run"), "--runs", "1", "--only", "startup", "--check")
    assert proc.returncode in (0, 1), proc.stderr
    about, blank, *table = proc.stdout.splitlines()
    assert about.startswith("Median of 1 run (startup) after one warm-up. "), about
    assert "load average" in about and blank == ""
    assert len({len(line) for line in table}) == 1, "the columns are padded to one width"
    assert cells(table[0]) == ["benchmark", "orch", "baseline", "ratio", "target", "met"]
    assert re.fullmatch(r"\|-+\|-+:\|-+\|-+:\|-+\|-+\|", table[1]), table[1]
    body = [cells(line) for line in table[2:]]
    assert {row[0]: row[4] for row in body} == STARTUP
    missed = False
    for _, figure, baseline, ratio, target, met in body:
        assert ms(baseline)[1] == "`python -c pass`" and ms(figure)[1] == ""
        assert re.fullmatch(r"\d+\.\d\dx", ratio), ratio
        assert float(ratio[:-1]) == pytest.approx(ms(figure)[0] / ms(baseline)[0], rel=0.02)
        limit = re.fullmatch(r"<= (\d+)x", target)
        assert met == ("-" if limit is None else "yes" if float(ratio[:-1]) <= float(limit[1]) else "NO")
        missed |= met == "NO"
    assert proc.returncode == (1 if missed else 0), "--check exits 1 exactly when a target is missed"
    assert "startup took" in proc.stderr


def test_a_benchmark_still_runs_alone_and_gives_json() -> None:
    proc = bench(sys.executable, str(BENCH / "startup.py"), "--runs", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["runs"] == {"startup": 1}
    assert [f"{row['bench']}: {row['name']}" for row in data["rows"]] == list(STARTUP)
    for row in data["rows"]:
        assert row["unit"] == "ms" and row["baseline_name"] == "`python -c pass`"
        assert row["figure"] > 0 and row["baseline"] > 0
        assert row["ratio"] == pytest.approx(row["figure"] / row["baseline"], rel=1e-3)
        assert (row["target"] is None) == (row["met"] is None)


def test_the_loop_benchmark_runs_orch_and_its_baseline_to_the_same_end() -> None:
    # The smallest run: each case checks that its loop ended SUCCESS after exactly the iterations
    # planned (else the benchmark fails), so this proves the two sides do the same work.
    argv = ["--runs", "1", "--iterations", "2", "--files", "20", "--json"]
    proc = bench(sys.executable, str(BENCH / "loop.py"), *argv)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["runs"] == {"loop": 1}
    rows = {row["name"]: row for row in data["rows"]}
    kinds = ["in the box", "`sandbox: off`"] if box.unavailable() is None else ["`sandbox: off`"]
    assert list(rows) == [
        *(f"one iteration of `orch run`, {kind}" for kind in kinds),
        *(f"`orch run` of a spun task, 2 iterations, {kind}" for kind in kinds),
    ]
    for name, row in rows.items():
        assert row["unit"] == "ms" and row["bench"] == "loop"
        assert row["baseline_name"].startswith("`sh` loop")
        assert ("agent and accept in `bwrap`" in row["baseline_name"]) == name.endswith("in the box")
        assert row["target"] == ("<= 1.3x" if name.startswith("one iteration") else None)
        assert row["figure"] > 0 and row["baseline"] > 0  # an iteration: from one agent's start to the next's
    proc = bench(sys.executable, str(BENCH / "loop.py"), "--iterations", "6")
    assert proc.returncode == 4 and "--iterations must be from 2 to 5" in proc.stderr


def test_run_refuses_what_it_cannot_do() -> None:
    proc = bench(str(BENCH / "run"), "--only", "nosuch")
    assert proc.returncode == 2
    assert "no benchmark nosuch (there are: loop, merge, spin, startup, ui, up, verify)" in proc.stderr
    proc = bench(str(BENCH / "run"), "--runs", "0")
    assert proc.returncode == 2 and "--runs must be at least 1" in proc.stderr
