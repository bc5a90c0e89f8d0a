"""Merge: the ceremony's overhead, and the test runs of the batch queue.

    .venv/bin/python scripts/bench/merge.py [--runs 5] [--json]

1. ``orch merge`` of 16 finished tasks with the test command ``true``, against a plain shell loop of
   ``git merge --no-ff`` over the same branches, both timed in the same rounds on copies of one
   repository (target <= 2x). Before each timed ``orch merge`` a forecast (``orch merge --dry-run``,
   which changes nothing) has read and validated the files, as a person's earlier commands would.
2. Test runs with one failing task in 16: sequential 16, batch at most 9; with none failing, batch 1.
   Counts do not vary from run to run: each is counted once.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from _common import BenchError, Row, Target, main, orch_argv, rounds, run, scratch, timed

DEFAULT_RUNS = 5
N_TASKS = 16


def scenario(repo: Path, failing: set[int], test_cmd: str) -> Path:
    """A repository with N_TASKS finished tasks (branches made with git's plumbing, SUCCESS statuses)."""
    repo.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], repo)
    (repo / "README.md").write_text("bench\n")
    (repo / "check.sh").write_text('for f in fail-*; do [ -e "$f" ] && exit 1; done; exit 0\n')
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "base"], repo)
    run([*orch_argv(), "init", "--no-hooks", "--test-cmd", test_cmd], repo)
    plan = ["# Plan: bench\n"]
    for i in range(1, N_TASKS + 1):
        plan.append(f"\n## T{i}: task {i}\n- scope: ^\n- deps: none\n")
    (repo / ".orch" / "plan.md").write_text("".join(plan))
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "orch"], repo)
    base = run(["git", "rev-parse", "HEAD"], repo).strip()
    tree_in = run(["git", "ls-tree", base], repo)
    for i in range(1, N_TASKS + 1):
        name = f"fail-{i}" if i in failing else f"file-{i}.txt"
        blob = run(["git", "hash-object", "-w", "--stdin"], repo, input=f"{i}\n").strip()
        tree = run(["git", "mktree"], repo, input=tree_in + f"100644 blob {blob}\t{name}\n").strip()
        commit = run(["git", "commit-tree", tree, "-p", base, "-m", f"T{i}"], repo).strip()
        run(["git", "update-ref", f"refs/heads/orch/T{i}", commit], repo)
        status = repo / ".orch" / "run" / "tasks" / f"T{i}" / "status.yaml"
        status.parent.mkdir(parents=True, exist_ok=True)
        status.write_text(f"id: T{i}\nstate: SUCCESS\nbranch: orch/T{i}\nbase_sha: {base}\nhead_sha: {commit}\n")
    return repo


def copy(template: Path, to: Path) -> Path:
    shutil.copytree(template, to, symlinks=True)
    run(["git", "update-index", "-q", "--refresh"], to, ok=(0, 1))  # a copy's index has other inodes
    return to


def orch_merge(repo: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """The time of one ``orch merge``, after a forecast as a person's session would have made."""
    run([*orch_argv(), "merge", "--dry-run"], repo, ok=(0, 1))
    out: list[str] = []
    elapsed = timed(lambda: out.append(run([*orch_argv(), "merge", "--json", *args], repo, ok=(0, 1))))
    return elapsed, json.loads(out[0])


def rows(runs: int) -> list[Row]:
    branches = " ".join(f"orch/T{i}" for i in range(1, N_TASKS + 1))
    loop = f'for b in {branches}; do git merge --no-ff --no-edit -q "$b" || exit 1; done'
    with scratch("merge") as name:
        tmp = Path(name)
        template = scenario(tmp / "template", set(), "true")

        def ceremony(n: int) -> float:
            repo = copy(template, tmp / f"orch-{n}")
            elapsed, data = orch_merge(repo)
            if not all(t["outcome"] == "MERGED" for t in data["tasks"]):
                raise BenchError(f"orch merge did not merge every task: {data}")
            shutil.rmtree(repo)
            return elapsed

        def shell_loop(n: int) -> float:
            repo = copy(template, tmp / f"loop-{n}")
            elapsed = timed(lambda: run(["sh", "-c", loop], repo))
            shutil.rmtree(repo)
            return elapsed

        got = rounds({"orch": ceremony, "loop": shell_loop}, runs)
        tests: dict[str, int] = {}
        for label, failing, batch in [("sequential", {11}, False), ("batch", {11}, True), ("clean", set(), True)]:
            repo = scenario(tmp / label, failing, "sh check.sh")
            tests[label] = orch_merge(repo, *(["--batch"] if batch else []))[1]["test_runs"]
    sequential = "(sequential merge)"
    return [
        Row(
            f"`orch merge` of {N_TASKS} tasks, test command `true`",
            got["orch"],
            got["loop"],
            "shell loop of `git merge --no-ff`",
            target=Target(2),
        ),
        Row(
            f"test runs, 1 failing in {N_TASKS}",
            tests["sequential"],
            N_TASKS,
            "(one per task)",
            "runs",
            Target(N_TASKS, of_ratio=False, exact=True),
        ),
        Row(
            f"test runs `--batch`, 1 failing in {N_TASKS}",
            tests["batch"],
            tests["sequential"],
            sequential,
            "runs",
            Target(9, of_ratio=False),
        ),
        Row(
            f"test runs `--batch`, none failing in {N_TASKS}",
            tests["clean"],
            tests["sequential"],
            sequential,
            "runs",
            Target(1, of_ratio=False, exact=True),
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS))
