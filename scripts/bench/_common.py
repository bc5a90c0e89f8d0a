"""What the benchmarks in scripts/bench/ share: the environment orch runs in, timing, and the table.

A benchmark is a module here whose name does not start with ``_``. It defines ``DEFAULT_RUNS`` and
``rows(runs) -> list[Row]``: each row is one figure of orch's, the baseline measured in the same
run, and the target if there is one. ``scripts/bench/run`` finds every such module and prints one
table; ``python scripts/bench/NAME.py`` prints that module's rows alone (``main`` below).

Timings are medians of ``runs`` rounds after one warm-up round (bytecode, page cache, orch's
validation caches). Each round runs every case once, in reverse order every other round, so a load
spike from another process hits all of them and no case always follows the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# Bytecode as an installed package has it. A PYTHONDONTWRITEBYTECODE left in the environment (some
# machines set it) would make every orch process compile its modules again and measure the compiler.
PYCACHE = Path(tempfile.gettempdir()) / "orch-bench-pycache"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


class BenchError(Exception):
    """A command a benchmark needs failed: the benchmark cannot give a figure."""


def env() -> dict[str, str]:
    """The environment every process of a benchmark runs in: orch as a user has it (no ORCH_* test
    switches such as the test suite's ORCH_CHECK_WRITES, no GIT_* leaks, bytecode cached)."""
    drop = ("GIT_", "ORCH_", "PYTHONDONTWRITEBYTECODE")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    clean.update(IDENTITY, PYTHONPYCACHEPREFIX=str(PYCACHE), GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1")
    return clean


def orch_argv() -> list[str]:
    """orch as a user runs it: the console script next to this Python, else ``python -m orch``."""
    script = Path(sys.executable).with_name("orch")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orch"]


def run(argv: Sequence[str], cwd: Path, ok: tuple[int, ...] = (0,), input: str | None = None) -> str:
    """Run a command of the benchmark's own (not timed); its standard output, or BenchError."""
    proc = subprocess.run(list(argv), cwd=cwd, env=env(), capture_output=True, text=True, input=input, check=False)
    if proc.returncode not in ok:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode} in {cwd}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def command(argv: Sequence[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> Callable[[], None]:
    """A case for ``medians``: run ``argv`` in ``cwd``, output discarded, exit code checked."""

    def case() -> None:
        proc = subprocess.run(list(argv), cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode not in ok:
            raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")

    return case


def scratch_dir() -> str:
    """Where benchmarks make their repositories: ``$ORCH_BENCH_DIR``, else ``/dev/shm`` where it is
    writable (memory: the figures measure orch and git, not the disk's writeback), else the system's
    temp folder."""
    if os.environ.get("ORCH_BENCH_DIR"):
        return os.environ["ORCH_BENCH_DIR"]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def scratch(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"orch-bench-{prefix}-", dir=scratch_dir())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rounds(cases: Mapping[str, Callable[[int], float]], runs: int) -> dict[str, float]:
    """Median in milliseconds of each case over ``runs`` rounds, after one warm-up round (round 0).

    A case gets the round's number and returns the seconds it measured, so the setting up and
    cleaning up it does around the timed part stay out of the figure."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for n in range(runs + 1):
        for name in order if n % 2 == 0 else order[::-1]:
            elapsed = cases[name](n)
            if n:
                times[name].append(elapsed)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def medians(cases: Mapping[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """``rounds`` for cases that are timed whole."""
    return rounds({name: (lambda n, fn=fn: timed(fn)) for name, fn in cases.items()}, runs)


@dataclass(frozen=True)
class Target:
    """The most a figure (``of_ratio=False``) or its ratio to the baseline may be; exactly that if ``exact``."""

    limit: float
    of_ratio: bool = True
    exact: bool = False

    def met(self, figure: float, ratio: float) -> bool:
        # Judged on the ratio as printed: a "1.30x" row never reads as a miss of "<= 1.3x".
        value = round(ratio, 2) if self.of_ratio else figure
        return value == self.limit if self.exact else value <= self.limit

    def __str__(self) -> str:
        return f"{'=' if self.exact else '<='} {self.limit:g}{'x' if self.of_ratio else ''}"


@dataclass(frozen=True)
class Row:
    """One line of the table. ``unit`` is ``ms`` (a median wall time) or ``runs`` (a count)."""

    name: str
    figure: float
    baseline: float
    baseline_name: str
    unit: str = "ms"
    target: Target | None = None
    bench: str = ""

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.figure, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            figure=round(self.figure, 3),
            baseline=round(self.baseline, 3),
            ratio=round(self.ratio, 4),
            target=None if self.target is None else str(self.target),
            met=self.met,
        )
        return out


def amount(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"
    return f"{value:g}" if unit == "runs" else f"{value:g} {unit}"


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table, padded so it reads as well in a terminal as in the README."""
    head = ["benchmark", "orch", "baseline", "ratio", "target", "met"]
    body = [
        [
            f"{row.bench}: {row.name}" if row.bench else row.name,
            amount(row.figure, row.unit),
            f"{amount(row.baseline, row.unit)} {row.baseline_name}",
            f"{row.ratio:.2f}x",
            "-" if row.target is None else str(row.target),
            {None: "-", True: "yes", False: "NO"}[row.met],
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    right = {1, 3}  # figures and ratios line up on the right

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i in right else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule, *(line(r) for r in body)])


def context(runs: Mapping[str, int], rows: Sequence[Row], load_before: float) -> str:
    """What to compare before comparing two tables: runs, machine, load, versions, where the repositories were."""
    groups: dict[int, list[str]] = {}
    for name, n in runs.items():
        groups.setdefault(n, []).append(name)
    per = ", ".join(f"{n} run{'s' * (n != 1)} ({', '.join(names)})" for n, names in groups.items())
    counts = "; test-run counts are counted once" if any(row.unit == "runs" for row in rows) else ""
    version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.split()
    return (
        f"Median of {per} after one warm-up{counts}. {os.cpu_count()} CPUs, load average "
        f"{load_before:.2f} before and {os.getloadavg()[0]:.2f} after (1 min), Python {sys.version.split()[0]}, "
        f"git {version[-1] if version else '?'}, repositories in {scratch_dir()}."
    )


def report(rows: Sequence[Row], runs: Mapping[str, int], load_before: float, as_json: bool) -> str:
    """The table (or its JSON) with the line that says how it was made."""
    about = context(runs, rows, load_before)
    if as_json:
        return json.dumps({"about": about, "runs": dict(runs), "rows": [r.as_dict() for r in rows]}, indent=2)
    return about + "\n\n" + table(rows)


def main(doc: str, rows: Callable[..., list[Row]], default_runs: int, **options: int) -> int:
    """A benchmark run alone: ``python scripts/bench/NAME.py [--runs N] [--json] [--OPTION N]``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--runs", type=int, default=default_runs, help=f"rounds after the warm-up ({default_runs})")
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    for name, default in options.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=f"default {default}")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    bench, load = Path(sys.argv[0]).stem, os.getloadavg()[0]
    try:
        got = rows(args.runs, **{name: getattr(args, name) for name in options})
    except BenchError as e:
        print(f"{bench}: {e}", file=sys.stderr)
        return 4
    print(report([replace(r, bench=bench) for r in got], {bench: args.runs}, load, args.json))
    return 0
