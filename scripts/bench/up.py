"""Up: ``orch up`` draining a plan, against a shell script doing the same spins, waits and merges.

    .venv/bin/python scripts/bench/up.py [--runs 2] [--chains 10] [--length 5] [--json]

A plan of ``chains`` x ``length`` tasks (50 by default: 10 dependency chains of 5), each with a no-op
agent (the ``shell`` agent, ``run:`` writing the time it started into the task's own file),
``accept: true`` and the test command ``true``. ``orch up --land auto --until-idle`` drains it, against
a ``sh`` script that does it in the best order a script can know: spin the first task of every chain,
``orch wait``, ``orch merge --batch``, then the second of every chain, and so on (target: at most 1.5x).

The delay from a dependency landing to its dependent starting (target: median at most 1 s) is
measured for both: the base branch's ref file is watched every few milliseconds from the benchmark
(when its tip changes, every task merged in between has landed), and each agent writes the clock
(``date +%s%N``) first thing; the delay is the second minus the first, for every task with a
dependency. Its baseline is the script's own delay (its next wave starts after the whole wave has
landed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import BenchError, Row, Target, env, main, orch_argv, rounds, run, scratch

DEFAULT_RUNS = 2
TARGET = Target(1.5)
DELAY = Target(1000.0, of_ratio=False)  # ms


def task_id(chain: int, step: int) -> str:
    return f"C{chain:02d}S{step}"


def make_repo(root: Path, chains: int, length: int) -> None:
    run(["git", "init", "-q", "-b", "main"], root)
    (root / "README").write_text("bench\n")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "init"], root)
    run([*orch_argv(), "init", "--no-hooks", "--test-cmd", "true"], root)
    config = root / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", f"max_parallel: {chains}"))
    tasks = []
    for step in range(length):
        for chain in range(chains):
            me = task_id(chain, step)
            deps = task_id(chain, step - 1) if step else "none"
            tasks.append(
                f"## {me}: chain {chain} step {step}\n- scope: ^src/{me}$\n- deps: {deps}\n- agent: shell\n"
                f"- tdd_gate: false\n- accept: true\n- run: mkdir -p src && date +%s%N > src/{me}\n\n"
            )
    (root / ".orch/plan.md").write_text("# Plan: bench up\n\n" + "".join(tasks))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "plan"], root)


def script(chains: int, length: int) -> str:
    """The baseline: each wave spun, waited for and merged in one batch, by orch's own commands."""
    orch = " ".join(orch_argv())
    waves = []
    for step in range(length):
        ids = " ".join(task_id(c, step) for c in range(chains))
        waves.append(
            f"{orch} spin {ids} >/dev/null\n{orch} wait {ids} >/dev/null\n{orch} merge --batch {ids} >/dev/null"
        )
    return "set -e\n" + "\n".join(waves) + "\n"


class Landings:
    """When the base branch's tip changed, read off its ref file every ``every`` seconds."""

    def __init__(self, root: Path, every: float = 0.005) -> None:
        self.ref = root / ".git/refs/heads/main"
        self.every = every
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Landings:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                sha = self.ref.read_text().strip()
            except OSError:
                sha = None
            if sha and sha != last:
                self.seen.append((time.time(), sha))
                last = sha
            self._stop.wait(self.every)

    def landed_at(self, root: Path) -> dict[str, float]:
        """Each task id: when the first tip holding its file appeared."""
        out: dict[str, float] = {}
        for when, sha in self.seen:
            listing = run(["git", "ls-tree", "--name-only", sha, "src/"], root).split()
            for name in listing:
                out.setdefault(name.removeprefix("src/"), when)
        return out


def delays(root: Path, landed: dict[str, float], chains: int, length: int) -> list[float]:
    """Seconds from each dependency's landing to its dependent's agent starting."""
    out = []
    for chain in range(chains):
        for step in range(1, length):
            me, dep = task_id(chain, step), task_id(chain, step - 1)
            started = int(run(["git", "show", f"main:src/{me}"], root).strip()) / 1e9
            if dep not in landed:
                raise BenchError(f"{dep} never landed on main")
            out.append(started - landed[dep])
    return out


def rows(runs: int, chains: int = 10, length: int = 5) -> list[Row]:
    if chains < 1 or length < 2:
        raise BenchError("--chains must be at least 1 and --length at least 2")
    waits: dict[str, list[float]] = {"orch": [], "sh": []}
    with scratch("up") as name:
        tmp = Path(name)

        def case(kind: str, argv: Callable[[], list[str]]) -> Callable[[int], float]:
            def one(n: int) -> float:
                root = tmp / f"{kind}-{n}"
                root.mkdir()
                make_repo(root, chains, length)
                with Landings(root) as landings:
                    start = time.perf_counter()
                    proc = subprocess.run(argv(), cwd=root, env=env(), capture_output=True, text=True, check=False)
                    elapsed = time.perf_counter() - start
                if proc.returncode != 0:
                    raise BenchError(f"{kind} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
                landed = landings.landed_at(root)
                if len(landed) != chains * length:
                    raise BenchError(f"{kind}: {len(landed)} of {chains * length} tasks landed")
                if n:
                    waits[kind] += delays(root, landed, chains, length)
                run(["rm", "-rf", "--", str(root)], tmp)
                return elapsed

            return one

        cases = {
            "orch": case("orch", lambda: [*orch_argv(), "up", "--land", "auto", "--until-idle"]),
            "sh": case("sh", lambda: ["sh", "-c", script(chains, length)]),
        }
        whole = rounds(cases, runs)
    total = chains * length
    return [
        Row(
            f"`orch up --land auto --until-idle`, {total} tasks in {chains} chains",
            whole["orch"],
            whole["sh"],
            "`sh`: spin, wait, merge --batch per wave",
            target=TARGET,
        ),
        Row(
            "median delay from a dependency landing to its dependent's agent starting",
            statistics.median(waits["orch"]) * 1000,
            statistics.median(waits["sh"]) * 1000,
            "the same in the `sh` waves",
            target=DELAY,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, DEFAULT_RUNS, chains=10, length=5))
