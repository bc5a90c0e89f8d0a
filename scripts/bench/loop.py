"""Loop: what an iteration of ``orch run`` costs, against a plain shell loop doing the same work.

    .venv/bin/python scripts/bench/loop.py [--iterations 5] [--files 2000] [--runs 5] [--json]

A no-op agent: the ``shell`` agent with ``run: echo x >> src/log.txt``, and an ``accept`` that
passes once that file has N lines, so the loop ends SUCCESS after exactly N iterations. A failing
accept prints the lines so far: each failure reads differently, as a test's output does while an
agent makes progress (the same output three times in a row would end the strategy, and no setting
lets one strategy run more than 5 iterations). The baseline is a ``sh`` loop in a worktree of its
own doing what orch does: the accept on the untouched tree first (orch's TDD gate; it must fail),
then N times the agent command, ``git add -A && git commit``, the accept command.

Per iteration (target <= 1.3x) is the difference between a run of N iterations and a run of one,
divided by N - 1, for orch and for the baseline: what a run pays once (Python's start and imports,
the supervisor, the TDD gate, noticing the end) cancels out, and the loop's own work is left. The
whole run of N iterations is given too, without a target.

Each timed run starts from a tree checked out over a second before, untimed (``orch spin
--no-start``, whose task ``orch run`` then starts; ``git worktree add`` for the baseline), and its
index written again after that second (``git update-index --refresh``). A tree checked out less than
a second ago has every file "racily clean" to git, which reads them all again at each ``git add``:
with a no-op agent that would be most of both figures, and no real agent ends that fast.

The box is on by default wherever bubblewrap works, so both are measured, like for like: orch in
its box against the baseline's agent and accept commands in ``bwrap`` with the flags of orch's box
(``orch.core.box.wrap``: user, PID, IPC, UTS and network namespaces, the file system read-only but
the worktree, a private ``/tmp``); and ``sandbox: off`` (an agent manifest of its own) against the
plain loop. On both sides the commits are made outside the box; orch also seeds the box's shadow git
folder before each iteration and reads its refs after it, which the baseline has no part of. Without
bubblewrap only the ``sandbox: off`` rows are given. No git hooks are installed: neither side runs any.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import BenchError, Row, Target, env, main, orch_argv, rounds, run, scratch, timed

DEFAULT_RUNS = 5
PER_STRATEGY = 5  # the most iterations one strategy runs (orch.agents.loop; no setting raises it)
AGENT = "date +%s%N >> src/clock.txt; echo x >> src/log.txt"
TARGET = Target(1.3)
RACY = 1.05  # seconds: git reads every file again while its index is no older than them
BOX_FLAGS = [
    "--die-with-parent", "--unshare-user", "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc",
    "--unshare-uts", "--unshare-cgroup-try", "--unshare-net", "--new-session",
    "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
]  # fmt: skip
UNBOXED = """\
description: the shell preset with the box off (scripts/bench/loop.py)
command: ["sh", "-c", "{run}"]
usage: none
network: "off"
sandbox: "off"
timeout: 3600
"""


def accept(count: int) -> str:
    return f"test \"$(wc -l < src/log.txt)\" -ge {count} || {{ tr -d '\\n' < src/log.txt; echo; exit 1; }}"


def bwrap_works() -> bool:
    """Whether bubblewrap can make a box here (orch's own probe: ``orch.core.box``)."""
    argv = ["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    try:
        return subprocess.run([*argv, "true"], env=env(), capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def box_argv(tree: Path) -> list[str]:
    """A box like orch's around one command of the baseline: the worktree its only writable path."""
    identity = ["--uid", "1000", "--gid", "1000"] if os.geteuid() == 0 else []
    masked = [a for m in ("/tmp", "/var/tmp", "/run") if Path(m).is_dir() for a in ("--tmpfs", m)]
    return ["bwrap", *BOX_FLAGS, *identity, *masked, "--bind", str(tree), str(tree), "--chdir", str(tree), "--"]


def make_repo(root: Path, files: int, tasks: list[tuple[str, str, int]]) -> None:
    """The repository, ``orch init``'d, with one task per (id, agent, iterations) in its plan."""
    run(["git", "init", "-q", "-b", "main"], root)
    for i in range(files):
        folder = root / "src" / f"pkg{i // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"mod{i:05d}.py").write_text(f"VALUE = {i}\n")
    (root / "src/log.txt").write_text("")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "files"], root)
    run([*orch_argv(), "init", "--no-hooks", "--test-cmd", "true"], root)
    (root / ".orch/agents/unboxed.yaml").write_text(UNBOXED)
    (root / ".orch/plan.md").write_text(
        "# Plan: bench\n\n"
        + "".join(
            f"## {i}: loop {i}\n- scope: ^src/\n- agent: {agent}\n- run: {AGENT}\n- accept: {accept(count)}\n\n"
            for i, agent, count in tasks
        )
    )
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "orch"], root)


def shell_loop(tree: Path, logs: Path, count: int, most: int, boxed: bool) -> str:
    """The baseline, in a worktree: the accept that must fail, then agent, commit, accept until it passes."""
    box = shlex.join(box_argv(tree)) + " " if boxed else ""
    agent, check = shlex.quote(AGENT), shlex.quote(accept(count))
    return f"""set -e
cd {shlex.quote(str(tree))}
if {box}sh -c {check} >{logs}/tdd.log 2>&1; then exit 3; fi
i=0
while :; do
  i=$((i + 1))
  {box}sh -c {agent} >>{logs}/agent.log 2>&1
  git add -A
  git commit -q -m "snapshot $i"
  if {box}sh -c {check} >{logs}/accept.log 2>&1; then break; fi
  [ "$i" -lt {most} ] || exit 5
done
echo "$i"
"""


def per_iteration(clock: Path, count: int) -> float:
    """Seconds from the first agent's start to the last one's, per iteration, from the agent's clock."""
    try:
        stamps = [int(line) for line in clock.read_text().split()]
    except (OSError, ValueError) as exc:
        raise BenchError(f"the agents' clock {clock} cannot be read ({exc}): `date +%s%N` needs GNU date") from exc
    if len(stamps) != count:
        raise BenchError(f"{clock} has {len(stamps)} agent starts, not {count}")
    return (stamps[-1] - stamps[0]) / 1e9 / (count - 1)


def rows(runs: int, iterations: int = PER_STRATEGY, files: int = 2000) -> list[Row]:
    if not 2 <= iterations <= PER_STRATEGY:
        raise BenchError(f"--iterations must be from 2 to {PER_STRATEGY} (one strategy's iterations)")
    orch = orch_argv()
    kinds = {"box": "shell", "off": "unboxed"} if bwrap_works() else {"off": "unboxed"}
    ids = {(kind, n): f"{kind[0].upper()}{n}" for kind in kinds for n in range(runs + 1)}
    per: dict[str, list[float]] = {}
    with scratch("loop") as name:
        tmp = Path(name)
        root = tmp / "repo"
        root.mkdir()
        make_repo(root, files, [(i, kinds[kind], iterations) for (kind, _), i in ids.items()])
        logs = tmp / "logs"
        logs.mkdir()
        ready: set[int] = set()

        def orch_tree(kind: str, n: int) -> Path:
            return root / ".orch/worktrees" / ids[(kind, n)]

        def plain_tree(kind: str, n: int) -> Path:
            return tmp / f"plain-{kind}-{n}"

        def prepare(n: int) -> None:
            """Round n's trees, checked out a second before its runs (untimed): the tasks spun, the
            baseline's worktrees added, every index written again after that second."""
            if n in ready:
                return
            ready.add(n)
            run([*orch, "spin", "--no-start", *(ids[(kind, n)] for kind in kinds)], root)
            plain = [plain_tree(kind, n) for kind in kinds]
            for tree in plain:
                run(["git", "worktree", "add", "-q", "-b", f"plain/{tree.name}", str(tree), "main"], root)
            time.sleep(RACY)
            for tree in [*plain, *(orch_tree(kind, n) for kind in kinds)]:
                run(["git", "update-index", "-q", "--refresh"], tree)

        def finished(case: str, n: int, tree: Path, branch: str) -> None:
            """The run's figure per iteration kept (after the warm-up round), its tree removed."""
            if n:
                per.setdefault(case, []).append(per_iteration(tree / "src/clock.txt", iterations))
            run(["rm", "-rf", "--", str(tree)], root)
            run(["git", "worktree", "prune"], root)
            run(["git", "branch", "-q", "-D", branch], root)

        def orch_run(kind: str) -> Callable[[int], float]:
            def case(n: int) -> float:
                prepare(n)
                task = ids[(kind, n)]
                out: list[str] = []
                elapsed = timed(lambda: out.append(run([*orch, "run", task], root)))
                done = f"{task}: SUCCESS after {iterations} iterations"
                if done not in out[0].splitlines():
                    raise BenchError(f"orch run {task} did not end as planned ({done!r}):\n{out[0]}")
                finished(f"orch {kind}", n, orch_tree(kind, n), f"orch/{task}")
                return elapsed

            return case

        def plain(kind: str) -> Callable[[int], float]:
            def case(n: int) -> float:
                prepare(n)
                tree = plain_tree(kind, n)
                script = shell_loop(tree, logs, iterations, iterations, kind == "box")
                out: list[str] = []
                elapsed = timed(lambda: out.append(run(["sh", "-c", script], root)))
                if out[0].strip() != str(iterations):
                    raise BenchError(f"the shell loop took {out[0].strip()} iterations, not {iterations}")
                finished(f"sh {kind}", n, tree, f"plain/{tree.name}")
                return elapsed

            return case

        cases: dict[str, Callable[[int], float]] = {}
        for kind in kinds:
            cases[f"orch {kind}"] = orch_run(kind)
            cases[f"sh {kind}"] = plain(kind)
        whole = rounds(cases, runs)

    def one(case: str) -> float:
        return statistics.median(per[case]) * 1000

    names = {"box": ("in the box", "`sh` loop, agent and accept in `bwrap`"), "off": ("`sandbox: off`", "`sh` loop")}
    out = [
        Row(f"one iteration of `orch run`, {names[k][0]}", one(f"orch {k}"), one(f"sh {k}"), names[k][1], target=TARGET)
        for k in kinds
    ]
    out += [
        Row(f"`orch run` of a spun task, {iterations} iterations, {names[k][0]}", whole[f"orch {k}"], whole[f"sh {k}"],
            names[k][1])
        for k in kinds
    ]  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS, iterations=PER_STRATEGY, files=2000))
