"""Benchmarks for verification and the pre-commit hook, as ratios against baselines from the same run.

    .venv/bin/python scripts/bench/verify.py [--files 20000] [--locks 200] [--runs 15]

1. ``orch verify`` of a task branch changing N files with L path locks and a scope, against the
   shell pipeline ``git diff --name-only BASE...TASK | grep -vE "$scope"`` (target <= 1.5x).
   Printed for ``verify_task`` in-process (the work itself) and for the whole ``orch verify``
   process, which also pays what the pipeline never does: a Python interpreter, the CLI, recording
   the verdict (a schema-validated status write and an event-log line). The floor of any Python
   process doing this work is shown too: ``python -c pass`` plus the one ``git diff-tree`` orch must
   run.
2. ``git commit`` with the pre-commit hook installed against a plain ``git commit``.
3. The hook process (``python -m orch.hookmain pre-commit``) against ``python -c pass`` with the same
   interpreter (target <= 4x); ``python3`` on PATH is shown too (it may be a slow version-manager
   shim).

Every figure is the median of interleaved runs (each round runs every contender once), so a load
spike from another process hits all of them alike. Bytecode is cached in a temp folder as an
installed package has it: a PYTHONDONTWRITEBYTECODE in the environment would otherwise make every
run compile orch from source and measure the compiler.
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

PIPELINE = 'git diff --name-only main...orch/T1 | grep -vE "$1"'
PYCACHE = Path(tempfile.gettempdir()) / "orch-bench-pycache"
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(PYCACHE),
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(argv: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]


def medians(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each case over ``runs`` rounds that run every case once, in turn."""
    for fn in cases.values():
        fn()  # warm caches (page cache, bytecode, orch's compiled-locks and validation caches)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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


def line(name: str, seconds: float, base: float | None = None, note: str = "") -> str:
    ratio = f"  {seconds / base:5.2f}x" if base else "        "
    return f"  {name:<44} {seconds * 1000:7.1f} ms{ratio}{note}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--locks", type=int, default=200)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        os.environ.update({k: v for k, v in ENV.items() if k.startswith("GIT_")})
        scope = build(root, args.files, args.locks)

        def run(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
            r = subprocess.run(argv, cwd=root, env=ENV, capture_output=True, check=False)
            assert r.returncode in ok, (argv, r.returncode, r.stderr)

        from orch.core import git
        from orch.core.context import open_ctx
        from orch.verify import changeset, judge

        def verify_inproc(record: bool) -> Callable[[], None]:
            def fn() -> None:
                v = judge.verify_task(open_ctx(root), "T1", record=record)
                assert v.result == "OK" and v.changed == args.files, (v.result, v.changed)

            return fn

        base_tip, tip = git.rev_parse("main", cwd=root), git.rev_parse("orch/T1", cwd=root)
        assert base_tip and tip
        diff_tree = ["git", *git.HARDENED, *changeset.DIFF, "--merge-base", base_tip, tip, "--"]
        names = ["git", *git.HARDENED, *changeset.DIFF, "--name-only", "--merge-base", base_tip, tip, "--"]
        script = Path(sys.executable).with_name("orch")  # the console script, as a user runs it
        orch_argv = [str(script)] if script.is_file() else [sys.executable, "-m", "orch"]
        got = medians(
            {
                "pipeline": lambda: run(["sh", "-c", PIPELINE, "sh", scope], ok=(0, 1)),  # grep: 1 = nothing out
                "python": lambda: run([sys.executable, "-c", "pass"]),
                "diff-tree": lambda: run(diff_tree),
                "names": lambda: run(names),
                "process": lambda: run([*orch_argv, "verify", "T1"]),
                "inproc": verify_inproc(False),
                "inproc-record": verify_inproc(True),
            },
            args.runs,
        )
        pipe = got["pipeline"]
        floor = got["python"] + got["diff-tree"]
        print(f"verify: {args.files} changed files, {args.locks} path locks, scope {scope} (median of {args.runs})")
        print(line("pipeline: git diff --name-only | grep -vE", pipe))
        print(line("verify_task in-process", got["inproc"], pipe, "  (target <= 1.5x)"))
        print(line("verify_task in-process, recording the verdict", got["inproc-record"], pipe))
        whole = f"{Path(orch_argv[-1]).name} verify T1, the whole process"
        print(line(whole, got["process"], pipe, "  (target <= 1.5x)"))
        print(line("  floor: python -c pass + orch's git diff-tree", floor, pipe))
        print(line("    python -c pass", got["python"], pipe))
        print(line("    git diff-tree -r -z --no-renames (to a pipe)", got["diff-tree"], pipe))
        print(line("      the same with --name-only (no modes)", got["names"], pipe))

        # -- the pre-commit hook -------------------------------------------------------------------
        sh([sys.executable, "-m", "orch", "hooks", "install"], root)
        hook = root / ".git/hooks/pre-commit"
        assert os.access(hook, os.X_OK)
        counter = [0]

        def commit(no_verify: bool) -> None:
            counter[0] += 1
            (root / "src").mkdir(exist_ok=True)
            (root / "src/bench.py").write_text(f"n = {counter[0]}\n")
            sh(["git", "add", "src/bench.py"], root)
            extra = ["--no-verify"] if no_verify else []
            sh(["git", "commit", "-q", *extra, "-m", f"c{counter[0]}"], root)

        commits = medians({"plain": lambda: commit(True), "hooked": lambda: commit(False)}, args.runs)
        print("pre-commit hook")
        print(line("git commit --no-verify", commits["plain"]))
        print(line("git commit with the orch hook", commits["hooked"], commits["plain"]))

        (root / "src/bench.py").write_text("n = -1\n")
        sh(["git", "add", "src/bench.py"], root)
        got = medians(
            {
                "python": lambda: run([sys.executable, "-c", "pass"]),
                "python3": lambda: run(["python3", "-c", "pass"]),
                "hook": lambda: run([sys.executable, "-m", "orch.hookmain", "pre-commit"]),
                "shim": lambda: run([str(hook)]),
            },
            args.runs,
        )
        bare = got["python"]
        print(line("python3 -c pass (on PATH)", got["python3"], bare))
        print(line("python -c pass (same python)", bare, bare))
        print(line("hook process (python -m orch.hookmain)", got["hook"], bare, "  (target <= 4x)"))
        print(line("installed shim (sh + hook)", got["shim"], bare))


if __name__ == "__main__":
    main()
