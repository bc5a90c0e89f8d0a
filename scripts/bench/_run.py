"""Run every benchmark in scripts/bench/ and print one table (what ``scripts/bench/run`` runs).

    scripts/bench/run [--runs N] [--only NAME]... [--json] [--check]

A benchmark is a module here whose name does not start with ``_`` (see ``_common.py``). Exit 0 when
the table is printed, targets missed or not; with ``--check``, 1 when a target is missed. 2 for a
bad option, 4 when a benchmark could not run (the others still print).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BenchError, Row, report  # noqa: E402  (found through the line above)


def benchmarks() -> dict[str, Path]:
    return {p.stem: p for p in sorted(HERE.glob("*.py")) if not p.name.startswith("_")}


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "rows", None)) or not isinstance(getattr(module, "DEFAULT_RUNS", None), int):
        raise BenchError(f"{path.name} defines no rows(runs) and DEFAULT_RUNS (see _common.py)")
    return module


def main(argv: list[str]) -> int:
    found = benchmarks()
    parser = argparse.ArgumentParser(prog="scripts/bench/run", description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--runs", type=int, help="rounds after the warm-up, for every benchmark (default: each one's own)"
    )
    parser.add_argument("--only", action="append", metavar="NAME", help=f"run only this one ({', '.join(found)})")
    parser.add_argument("--json", action="store_true", help="the table as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure misses its target")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    unknown = [name for name in args.only or [] if name not in found]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} (there are: {', '.join(found)})")
    if importlib.util.find_spec("orch") is None:
        print(f"scripts/bench/run: {sys.executable} cannot import orch: run scripts/test first (it makes .venv/)",
              file=sys.stderr)  # fmt: skip
        return 4
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    runs: dict[str, int] = {}
    broken = False
    for name, path in found.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            module = load(name, path)
            runs[name] = args.runs or module.DEFAULT_RUNS
            rows += [replace(row, bench=name) for row in module.rows(runs[name])]
        except BenchError as e:
            print(f"scripts/bench/run: {name} could not run: {e}", file=sys.stderr)
            broken = True
            continue
        except Exception:  # a bug in that benchmark: its traceback, and the others still run
            traceback.print_exc()
            print(f"scripts/bench/run: {name} could not run (above)", file=sys.stderr)
            broken = True
            continue
        print(f"scripts/bench/run: {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(report(rows, runs, load_before, args.json))
    if broken:
        return 4
    return 1 if args.check and any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
