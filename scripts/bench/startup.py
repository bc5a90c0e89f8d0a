"""Startup benchmark: how many times slower than ``python -c pass`` are the everyday commands?

    .venv/bin/python scripts/bench/startup.py [--runs N]

Builds two throw-away repositories in a temp folder (a plan of 100 tasks, each with runtime state,
and a plan of 500 tasks), then times ``orch --help``, ``orch status`` and ``orch plan`` as real
processes. Every figure is the median of several runs divided by the median of ``python -c pass``
measured in the same run, so the ratios hold on a slow or a fast machine.

Targets: ``orch status`` <= 10x, ``orch --help`` <= 8x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"orch --help": 8.0, "orch status (100 tasks)": 10.0}
STATES = ["MERGED", "SUCCESS", "FAILED", "RUNNING", "PENDING", "CRASHED", "SCOPE_VIOLATION", "BLOCKED"]


PYCACHE = Path(tempfile.gettempdir()) / "orch-bench-pycache"


def env() -> dict[str, str]:
    # Bytecode as an installed package has it: a PYTHONDONTWRITEBYTECODE left in the environment
    # would make every run compile orch from source and measure the compiler, not orch.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"}
    clean["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    clean.update(
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        NO_COLOR="1",
    )
    return clean


def orch_argv() -> list[str]:
    script = Path(sys.executable).with_name("orch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orch"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env(), check=True, capture_output=True)


def make_repo(folder: Path, tasks: int, with_state: bool) -> Path:
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    (folder / "README.md").write_text("bench\n")
    git(folder, "add", "README.md")
    git(folder, "commit", "-q", "-m", "initial")
    subprocess.run([*orch_argv(), "init", "--test-cmd", "true"], cwd=folder, env=env(), check=True, capture_output=True)
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


def once(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def medians(cases: dict[str, tuple[list[str], Path]], runs: int) -> dict[str, float]:
    """Median wall time of every case; rounds interleave the cases so load spikes hit all of them."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (argv, cwd) in cases.items():
            times[name].append(once(argv, cwd))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (the median counts)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    try:
        small = make_repo(tmp / "status100", 100, with_state=True)
        big = make_repo(tmp / "plan500", 500, with_state=False)
        orch = orch_argv()
        cases = {
            "orch --help": (orch + ["--help"], small),
            "orch status (100 tasks)": (orch + ["status"], small),
            "orch status --json (100 tasks)": (orch + ["status", "--json"], small),
            "orch plan (500 tasks)": (orch + ["plan"], big),
        }
        for argv, cwd in cases.values():  # warm the validation cache, the bytecode and the page cache
            once(argv, cwd)
        results = medians({"python -c pass": ([sys.executable, "-c", "pass"], tmp), **cases}, args.runs)
        baseline = results.pop("python -c pass")
        print(f"baseline: python -c pass  {baseline * 1000:7.1f} ms (median of {args.runs} interleaved runs)")
        failed = False
        for name, median in results.items():
            ratio = median / baseline
            target = TARGETS.get(name)
            verdict = ""
            if target is not None:
                ok = ratio <= target
                failed |= not ok
                verdict = f"  target <= {target:g}x: {'ok' if ok else 'MISSED'}"
            print(f"{name:<32} {median * 1000:7.1f} ms  {ratio:5.1f}x{verdict}")
        return 1 if failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
