"""Spin: ``orch spin --no-start`` against ``git worktree add -b`` on a 20,000-file repository.

    .venv/bin/python scripts/bench/spin.py [--files 20000] [--runs 5] [--json]

Both are timed as whole processes in the same rounds on the same repository; the figure is the ratio
of medians (target <= 1.3x). A second figure spins 10 tasks in one ``orch spin`` against 10
``git worktree add -b`` run one after the other. Worktrees are removed after each run, untimed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import Row, Target, main, orch_argv, rounds, run, scratch, timed

DEFAULT_RUNS = 5
MANY = 10


def make_repo(root: Path, files: int) -> None:
    run(["git", "init", "-q", "-b", "main"], root)
    for i in range(files):
        folder = root / "src" / f"pkg{i // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"VALUE = {i}\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "files"], root)


def remove(root: Path, paths: list[Path], branches: list[str]) -> None:
    # What `git worktree remove --force` leaves, at a fraction of its time (it reads every file first).
    run(["rm", "-rf", "--", *map(str, paths)], root)
    run(["git", "worktree", "prune"], root)
    run(["git", "branch", "-q", "-D", *branches], root)


def rows(runs: int, files: int = 20_000) -> list[Row]:
    orch = orch_argv()
    with scratch("spin") as name:
        tmp = Path(name)
        root = tmp / "repo"
        root.mkdir()
        make_repo(root, files)
        run([*orch, "init", "--test-cmd", "true"], root)
        ids = [f"S{n}" for n in range(runs + 1)] + [f"M{n}x{i}" for n in range(runs + 1) for i in range(MANY)]
        (root / ".orch/plan.md").write_text(
            "# Plan: bench\n\n"
            + "".join(f"## {i}: bench {i}\n- scope: ^src/\n- agent: shell\n- run: true\n\n" for i in ids)
        )
        run(["git", "add", "-A"], root)
        run(["git", "commit", "-q", "-m", "orch"], root)
        worktrees = root / ".orch/worktrees"

        def git_add(n: int, count: int) -> float:
            names = [f"plain{n}x{i}" for i in range(count)]

            def add() -> None:
                for name in names:
                    run(["git", "worktree", "add", "-q", "-b", f"plain/{name}", str(tmp / name), "main"], root)

            elapsed = timed(add)
            remove(root, [tmp / name for name in names], [f"plain/{name}" for name in names])
            return elapsed

        def orch_spin(ids: list[str]) -> float:
            elapsed = timed(lambda: run([*orch, "spin", "--no-start", *ids], root))
            remove(root, [worktrees / i for i in ids], [f"orch/{i}" for i in ids])
            return elapsed

        one = rounds({"git": lambda n: git_add(n, 1), "orch": lambda n: orch_spin([f"S{n}"])}, runs)
        many = rounds(
            {
                "git": lambda n: git_add(n, MANY),
                "orch": lambda n: orch_spin([f"M{n}x{i}" for i in range(MANY)]),
            },
            runs,
        )
    return [
        Row(
            f"`orch spin --no-start`, {files:,} files",
            one["orch"],
            one["git"],
            "`git worktree add -b`",
            target=Target(1.3),
        ),
        Row(f"one `orch spin` of {MANY} tasks", many["orch"], many["git"], f"{MANY} x `git worktree add -b`"),
    ]


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS, files=20_000))
