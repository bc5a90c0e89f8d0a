"""Benchmark: `orch spin --no-start` against `git worktree add -b` on a 20,000-file repository.

    .venv/bin/python scripts/bench/spin.py [--files 20000] [--runs 5]

Both are timed as whole processes in the same run on the same repository; the figure is the ratio
of medians (target <= 1.3). A second figure spins 10 tasks in one `orch spin` against 10
`git worktree add -b` run one after the other. Worktrees are removed between runs, untimed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sh(argv: list[str], cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def make_repo(root: Path, files: int) -> None:
    sh(["git", "init", "-q", "-b", "main"], root)
    for i in range(files):
        folder = root / "src" / f"pkg{i // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"VALUE = {i}\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=b@x", "commit", "-q", "-m", "files"], root)


def remove(root: Path, path: Path, branch: str) -> None:
    sh(["git", "worktree", "remove", "--force", str(path)], root)
    sh(["git", "branch", "-D", branch], root)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where to make the repository (e.g. /dev/shm: less disk noise)")
    args = parser.parse_args()
    orch = [sys.executable, "-m", "orch"]
    env_id = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
              "GIT_COMMITTER_EMAIL": "b@x"}  # fmt: skip
    os.environ.update(env_id)
    # Bytecode as an installed package has it (a PYTHONDONTWRITEBYTECODE in the environment would make
    # every orch process compile its modules again).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "orch-bench-pycache")
    with tempfile.TemporaryDirectory(prefix="orch-bench-", dir=args.dir) as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        t0 = time.perf_counter()
        make_repo(root, args.files)
        sh([*orch, "init", "--test-cmd", "true"], root)
        ids = [f"S{i}" for i in range(args.runs)] + [f"M{i}" for i in range(10)]
        plan = root / ".orch/plan.md"
        plan.write_text(
            "# Plan: bench\n\n"
            + "".join(f"## {i}: bench {i}\n- scope: ^src/\n- agent: shell\n- run: true\n\n" for i in ids)
        )
        sh(["git", "add", "-A"], root)
        sh(["git", "commit", "-q", "-m", "orch"], root)
        print(f"repository: {args.files} files, made in {time.perf_counter() - t0:.1f}s")
        wt_root = root / ".orch/worktrees"

        git_times, orch_times = [], []
        for n in range(args.runs):  # alternate which goes first, so neither always follows a removal
            path, task = Path(tmp) / f"plain{n}", f"S{n}"
            for which in ("git", "orch") if n % 2 == 0 else ("orch", "git"):
                if which == "git":
                    git_times.append(
                        timed(["git", "worktree", "add", "-q", "-b", f"plain/{n}", str(path), "main"], root)
                    )
                    remove(root, path, f"plain/{n}")
                else:
                    orch_times.append(timed([*orch, "spin", "--no-start", task], root))
                    remove(root, wt_root / task, f"orch/{task}")
        g, o = statistics.median(git_times), statistics.median(orch_times)
        print(f"one task:  git worktree add -b {g * 1000:.0f} ms, orch spin --no-start {o * 1000:.0f} ms, "
              f"ratio {o / g:.2f}x (target <= 1.3x; median of {args.runs})")  # fmt: skip

        start = time.perf_counter()
        for n in range(10):
            sh(["git", "worktree", "add", "-q", "-b", f"many/{n}", str(Path(tmp) / f"many{n}"), "main"], root)
        g10 = time.perf_counter() - start
        o10 = timed([*orch, "spin", "--no-start", *[f"M{i}" for i in range(10)]], root)
        print(f"ten tasks: 10 x git worktree add -b {g10 * 1000:.0f} ms, one orch spin of 10 {o10 * 1000:.0f} ms, "
              f"ratio {o10 / g10:.2f}x ({o10 / 10 * 1000:.0f} ms per task)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
