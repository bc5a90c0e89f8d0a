"""Startup: how many times slower than ``python -c pass`` are the everyday commands?

    .venv/bin/python scripts/bench/startup.py [--runs N] [--json]

Builds two throw-away repositories (a plan of 100 tasks, each with runtime state, and a plan of
500 tasks), then times ``orch --help``, ``orch status`` and ``orch plan`` as real processes. Every
figure is a median divided by the median of ``python -c pass`` measured in the same rounds, so the
ratios hold on a slow or a fast machine.

Targets: ``orch status`` <= 10x, ``orch --help`` <= 8x.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _common import Row, Target, command, main, medians, orch_argv, run, scratch

DEFAULT_RUNS = 15
TARGETS = {"`orch --help`": Target(8), "`orch status`, 100 tasks": Target(10)}
STATES = ["MERGED", "SUCCESS", "FAILED", "RUNNING", "PENDING", "CRASHED", "SCOPE_VIOLATION", "BLOCKED"]


def make_repo(folder: Path, tasks: int, with_state: bool) -> Path:
    folder.mkdir()
    run(["git", "init", "-q", "-b", "main"], folder)
    (folder / "README.md").write_text("bench\n")
    run(["git", "add", "README.md"], folder)
    run(["git", "commit", "-q", "-m", "initial"], folder)
    run([*orch_argv(), "init", "--test-cmd", "true"], folder)
    lines = ["# Plan: benchmark\n\nA generated plan.\n"]
    for n in range(1, tasks + 1):
        deps = f"T{n - 1}" if n > 1 and n % 3 else "none"
        lines.append(
            f"\n## T{n}: Task number {n}\n- scope: ^src/part{n}/\n- deps: {deps}\n- agent: shell\n"
            f"- accept: python -m pytest tests/test_part{n}.py -q\n\nDo part {n} carefully.\n"
        )
    (folder / ".orch" / "plan.md").write_text("".join(lines))
    if with_state:
        me = os.getpid()
        start = Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19] if Path("/proc").is_dir() else None
        for n in range(1, tasks + 1):
            state = STATES[n % len(STATES)]
            task_dir = folder / ".orch" / "run" / "tasks" / f"T{n}"
            task_dir.mkdir(parents=True)
            text = (
                f"id: T{n}\nstate: {state}\nagent: shell\nbranch: orch/T{n}\n"
                f"worktree: .orch/worktrees/T{n}\nbase_sha: {'a' * 40}\n"
                f"created_at: '2026-01-01T00:00:00Z'\nstarted_at: '2026-01-01T00:00:05Z'\n"
                f"iterations: {n % 4}\ntokens:\n  input: {n * 1000}\n  output: {n * 100}\ncost_usd: {n / 100}\n"
            )
            if state == "RUNNING":  # alive for as long as the benchmark runs: no CRASHED rewrite
                text += f"pid: {me}\npid_start: '{start}'\n" if start else f"pid: {me}\n"
            if state in ("SUCCESS", "SCOPE_VIOLATION"):
                result = "OK" if state == "SUCCESS" else "SCOPE_VIOLATION"
                text += f"verdict:\n  result: {result}\n  sha: {'b' * 40}\n  at: '2026-01-01T00:10:00Z'\n"
            (task_dir / "status.yaml").write_text(text)
    return folder


def rows(runs: int) -> list[Row]:
    with scratch("startup") as name:
        tmp = Path(name)
        small = make_repo(tmp / "status100", 100, with_state=True)
        big = make_repo(tmp / "plan500", 500, with_state=False)
        orch = orch_argv()
        got = medians(
            {
                "python": command([sys.executable, "-c", "pass"], tmp),
                "`orch --help`": command([*orch, "--help"], small),
                "`orch status`, 100 tasks": command([*orch, "status"], small),
                "`orch status --json`, 100 tasks": command([*orch, "status", "--json"], small),
                "`orch plan`, 500 tasks": command([*orch, "plan"], big),
            },
            runs,
        )
    base = got.pop("python")
    return [Row(name, ms, base, "`python -c pass`", target=TARGETS.get(name)) for name, ms in got.items()]


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS))
