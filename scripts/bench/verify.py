"""Benchmarks for verification and the pre-commit hook, as ratios against baselines from the same run.

    .venv/bin/python scripts/bench/verify.py [--files 20000] [--locks 200] [--runs 7]

1. ``orch verify`` of a task branch changing N files with L path locks and a scope, against the
   shell pipeline ``git diff --name-only BASE...TASK | grep -vE "$scope"`` (target <= 1.5x).
   Printed twice: the whole ``orch verify`` process, and ``verify_task`` in-process (the work
   itself, without the interpreter and CLI start-up the pipeline does not pay).
2. ``git commit`` with the pre-commit hook installed against a plain ``git commit``.
3. The hook process (``python -m orch.hookmain pre-commit``) against ``python -c pass`` with the same
   interpreter (target <= 4x); ``python3`` on PATH is shown too (it may be a slow version-manager shim).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(argv: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches (page cache, orch's compiled-locks cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(root: Path, files: int, nlocks: int) -> str:
    sh(["git", "init", "-q", "-b", "main", str(root)], root.parent)
    (root / "README.md").write_text("bench\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "init"], root)
    sh([sys.executable, "-m", "orch", "init", "--test-cmd", "true", "--no-hooks"], root)
    scope = "^src/"
    (root / ".orch/plan.md").write_text(f"# Plan: bench\n\n## T1: Big change\n- scope: {scope}\n")
    lines = ["version: 1", "agents_md_lock: true", "locks:"]
    for i in range(nlocks):
        pattern = f"locked/area{i}/**" if i % 2 else f"src/m{i}/locked_*.py"
        lines += [f"  - id: L{i}", "    kind: path", "    mode: hard", f"    pattern: {pattern}"]
    (root / ".orch/locks.yaml").write_text("\n".join(lines) + "\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "orch"], root)
    sh(["git", "checkout", "-q", "-b", "orch/T1"], root)
    per_dir = 100
    for d in range(files // per_dir):
        folder = root / "src" / f"m{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (folder / f"f{f}.py").write_text(f"x = {d * per_dir + f}\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "big"], root)
    sh(["git", "checkout", "-q", "main"], root)
    return scope


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--locks", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        os.environ.update({k: v for k, v in ENV.items() if k.startswith("GIT_")})
        scope = build(root, args.files, args.locks)
        pipeline = median_time(
            lambda: subprocess.run(
                ["sh", "-c", 'git diff --name-only main...orch/T1 | grep -vE "$1"', "sh", scope],
                cwd=root,
                env=ENV,
                capture_output=True,
                check=False,
            ),
            args.runs,
        )

        def verify_process() -> None:
            r = subprocess.run([sys.executable, "-m", "orch", "verify", "T1"], cwd=root, env=ENV, capture_output=True)
            assert r.returncode == 0, r.stderr

        process = median_time(verify_process, args.runs)

        from orch import verify
        from orch.context import open_ctx

        def verify_inproc() -> None:
            v = verify.verify_task(open_ctx(root), "T1", record=False)
            assert v.result == "OK" and v.changed == args.files, (v.result, v.changed)

        inproc = median_time(verify_inproc, args.runs)
        print(f"verify: {args.files} changed files, {args.locks} path locks, scope {scope}")
        print(f"  pipeline (git diff | grep -vE)   {pipeline * 1000:7.1f} ms")
        print(f"  orch verify process             {process * 1000:7.1f} ms  ratio {process / pipeline:.2f}x")
        print(f"  verify_task in-process          {inproc * 1000:7.1f} ms  ratio {inproc / pipeline:.2f}x (<= 1.5x)")

        # -- the pre-commit hook ---------------------------------------------------------------------
        sh([sys.executable, "-m", "orch", "hooks", "install"], root)
        hook = root / ".git/hooks/pre-commit"
        counter = [0]

        def commit(no_verify: bool) -> None:
            counter[0] += 1
            (root / "src").mkdir(exist_ok=True)
            (root / "src/bench.py").write_text(f"n = {counter[0]}\n")
            sh(["git", "add", "src/bench.py"], root)
            extra = ["--no-verify"] if no_verify else []
            sh(["git", "commit", "-q", *extra, "-m", f"c{counter[0]}"], root)

        plain = median_time(lambda: commit(True), args.runs)
        hooked = median_time(lambda: commit(False), args.runs)
        print("pre-commit hook")
        print(f"  git commit --no-verify          {plain * 1000:7.1f} ms")
        print(f"  git commit with the orch hook   {hooked * 1000:7.1f} ms  ratio {hooked / plain:.2f}x")
        assert os.access(hook, os.X_OK)
        bare = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.runs)
        path_python = median_time(lambda: subprocess.run(["python3", "-c", "pass"], check=True), args.runs)
        (root / "src/bench.py").write_text("n = -1\n")
        sh(["git", "add", "src/bench.py"], root)
        hook_proc = median_time(
            lambda: subprocess.run(
                [sys.executable, "-m", "orch.hookmain", "pre-commit"], cwd=root, env=ENV, check=True
            ),
            args.runs,
        )
        shim = median_time(lambda: subprocess.run([str(hook)], cwd=root, env=ENV, check=True), args.runs)
        print(f"  python3 -c pass (on PATH)       {path_python * 1000:7.1f} ms")
        print(f"  python -c pass (same python)    {bare * 1000:7.1f} ms")
        print(f"  hook process (orch.hookmain)    {hook_proc * 1000:7.1f} ms  ratio {hook_proc / bare:.2f}x (<= 4x)")
        print(f"  installed shim (sh + hook)      {shim * 1000:7.1f} ms  ratio {shim / bare:.2f}x")


if __name__ == "__main__":
    main()
