"""Verification and the pre-commit hook, as ratios against baselines from the same run.

    .venv/bin/python scripts/bench/verify.py [--files 20000] [--locks 200] [--runs 15] [--json]

1. ``orch verify`` of a task branch changing N files with L path locks and a scope, against the
   shell pipeline ``git diff --name-only BASE...TASK | grep -vE "$scope"`` (target <= 1.5x).
   Given for ``verify_task`` in-process (the work itself) and for the whole ``orch verify``
   process, which also pays what the pipeline never does: a Python interpreter, the CLI, recording
   the verdict (a schema-validated status write and an event-log line). The floor of any Python
   process doing this work is shown too: ``python -c pass`` plus the one ``git diff-tree`` orch must
   run, and that ``git diff-tree`` alone (with and without the modes and shas orch needs).
2. ``git commit`` with the pre-commit hook installed against ``git commit --no-verify``.
3. The hook process (``python -m orch.hookmain pre-commit``) against ``python -c pass`` with the same
   interpreter (target <= 4x), and the installed shim (``sh`` running that process).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from _common import Row, Target, command, main, medians, orch_argv, run, scratch

DEFAULT_RUNS = 15
PIPELINE = 'git diff --name-only main...orch/T1 | grep -vE "$1"'


def build(root: Path, files: int, nlocks: int) -> str:
    run(["git", "init", "-q", "-b", "main"], root)
    (root / "README.md").write_text("bench\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "init"], root)
    run([sys.executable, "-m", "orch", "init", "--test-cmd", "true", "--no-hooks"], root)
    scope = "^src/"
    (root / ".orch/plan.md").write_text(f"# Plan: bench\n\n## T1: Big change\n- scope: {scope}\n")
    lines = ["version: 1", "agents_md_lock: true", "locks:"]
    for i in range(nlocks):
        pattern = f"locked/area{i}/**" if i % 2 else f"src/m{i}/locked_*.py"
        lines += [f"  - id: L{i}", "    kind: path", "    mode: hard", f"    pattern: {pattern}"]
    (root / ".orch/locks.yaml").write_text("\n".join(lines) + "\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "orch"], root)
    run(["git", "checkout", "-q", "-b", "orch/T1"], root)
    per_dir = 100
    for d in range(files // per_dir):
        folder = root / "src" / f"m{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (folder / f"f{f}.py").write_text(f"x = {d * per_dir + f}\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "big"], root)
    run(["git", "checkout", "-q", "main"], root)
    return scope


def rows(runs: int, files: int = 20_000, locks: int = 200) -> list[Row]:
    from orch.core import git
    from orch.core.context import open_ctx
    from orch.verify import changeset, judge

    with scratch("verify") as name:
        root = Path(name) / "repo"
        root.mkdir()
        scope = build(root, files, locks)

        def verify_inproc(record: bool) -> Callable[[], None]:
            def fn() -> None:
                v = judge.verify_task(open_ctx(root), "T1", record=record)
                assert v.result == "OK" and v.changed == files, (v.result, v.changed)

            return fn

        base_tip, tip = git.rev_parse("main", cwd=root), git.rev_parse("orch/T1", cwd=root)
        assert base_tip and tip
        diff_tree = ["git", *git.HARDENED, *changeset.DIFF, "--merge-base", base_tip, tip, "--"]
        names = ["git", *git.HARDENED, *changeset.DIFF, "--name-only", "--merge-base", base_tip, tip, "--"]
        got = medians(
            {
                "pipeline": command(["sh", "-c", PIPELINE, "sh", scope], root, ok=(0, 1)),  # grep: 1 = nothing out
                "python": command([sys.executable, "-c", "pass"], root),
                "diff-tree": command(diff_tree, root),
                "names": command(names, root),
                "process": command([*orch_argv(), "verify", "T1"], root),
                "inproc": verify_inproc(False),
                "inproc-record": verify_inproc(True),
            },
            runs,
        )
        pipe = got["pipeline"]
        pipeline = "`git diff --name-only` piped to `grep -vE`"
        out = [
            Row(
                f"`verify_task` in-process, {files:,} files, {locks} locks",
                got["inproc"],
                pipe,
                pipeline,
                target=Target(1.5),
            ),
            Row("`verify_task` in-process, recording the verdict", got["inproc-record"], pipe, pipeline),
            Row("`orch verify T1`, the whole process", got["process"], pipe, pipeline, target=Target(1.5)),
            Row("floor: `python -c pass` + orch's `git diff-tree`", got["python"] + got["diff-tree"], pipe, pipeline),
            Row("`git diff-tree -r -z --no-renames` alone", got["diff-tree"], pipe, pipeline),
            Row("the same `git diff-tree` with `--name-only`", got["names"], pipe, pipeline),
        ]

        # -- the pre-commit hook -------------------------------------------------------------------
        run([*orch_argv(), "hooks", "install"], root)
        hook = root / ".git/hooks/pre-commit"
        assert os.access(hook, os.X_OK)
        counter = [0]

        def commit(no_verify: bool) -> None:
            counter[0] += 1
            (root / "src").mkdir(exist_ok=True)
            (root / "src/bench.py").write_text(f"n = {counter[0]}\n")
            run(["git", "add", "src/bench.py"], root)
            run(["git", "commit", "-q", *(["--no-verify"] if no_verify else []), "-m", f"c{counter[0]}"], root)

        commits = medians({"plain": lambda: commit(True), "hooked": lambda: commit(False)}, runs)
        (root / "src/bench.py").write_text("n = -1\n")
        run(["git", "add", "src/bench.py"], root)
        got = medians(
            {
                "python": command([sys.executable, "-c", "pass"], root),
                "hook": command([sys.executable, "-m", "orch.hookmain", "pre-commit"], root),
                "shim": command([str(hook)], root),
            },
            runs,
        )
    python = "`python -c pass`"
    return [
        *out,
        Row(
            "`git commit` with orch's pre-commit hook", commits["hooked"], commits["plain"], "`git commit --no-verify`"
        ),
        Row(
            "pre-commit hook process (`python -m orch.hookmain`)", got["hook"], got["python"], python, target=Target(4)
        ),
        Row("installed hook shim (`sh` running that process)", got["shim"], got["python"], python),
    ]


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS, files=20_000, locks=200))
