"""``orch demo``: a whole orchestration, start to finish, in a throwaway repository.

It builds a small Python package with tests, writes a plan of five tasks run by scripted agents
(the ``shell`` agent: no model, no network) and then runs, as real commands, exactly what a person
would type: init, lock, spin, wait, verify, merge, spin of the dependent task, merge, clean, status.
Two tasks are good (one depends on the other), one breaks the tests (REVERTED), one edits outside
its scope and one edits a hard-locked test (both QUARANTINED). The demo checks that every task ended
where it should and fails loudly if not.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orch.core.errors import CheckFailed, EnvError, UsageError

EXPECTED = {"T1": "MERGED", "T2": "MERGED", "T3": "REVERTED", "T4": "QUARANTINED", "T5": "QUARANTINED"}

FILES = {
    "calc/__init__.py": '"""A tiny calculator package."""\n',
    "calc/core.py": textwrap.dedent(
        """\
        def add(a, b):
            return a + b


        def mul(a, b):
            return a * b
        """
    ),
    "tests/test_core.py": textwrap.dedent(
        """\
        from calc.core import add, mul


        def test_add():
            assert add(2, 3) == 5


        def test_mul():
            assert mul(4, 5) == 20
        """
    ),
    "docs/README.md": "# calc\n\nA tiny calculator.\n",
    "run_tests.py": textwrap.dedent(
        '''\
        """Runs the pytest-style tests with pytest when it is installed, or with this small runner."""
        import importlib.util
        import pathlib
        import sys
        import traceback

        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        try:
            import pytest
        except ImportError:
            pytest = None
        if pytest is not None:
            sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests"]))
        failed = passed = 0
        for path in sorted(pathlib.Path("tests").glob("test_*.py")):
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for name in sorted(dir(module)):
                if name.startswith("test_"):
                    try:
                        getattr(module, name)()
                        passed += 1
                    except Exception:
                        failed += 1
                        print(f"FAILED {path}::{name}")
                        traceback.print_exc()
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)
        '''
    ),
}

PLAN = """\
# Plan: calc gets smarter

A demonstration plan: five tasks run by scripted agents (the shell agent runs each task's `run:`).

## T1: Add subtraction
- scope: ^(calc/|tests/test_sub\\.py$)
- deps: none
- agent: shell
- accept: test -f calc/sub.py && {py} run_tests.py
- run: {py} -c "open('calc/sub.py','w').write('def sub(a, b):\\n    return a - b\\n'); open('tests/test_sub.py','w').write('from calc.sub import sub\\n\\n\\ndef test_sub():\\n    assert sub(5, 3) == 2\\n')"

Add `calc/sub.py` with `sub(a, b)` and a test for it.

## T2: Add negation on top of subtraction
- scope: ^(calc/|tests/test_neg\\.py$)
- deps: T1
- agent: shell
- run: {py} -c "open('calc/neg.py','w').write('from calc.sub import sub\\n\\n\\ndef neg(a):\\n    return sub(0, a)\\n'); open('tests/test_neg.py','w').write('from calc.neg import neg\\n\\n\\ndef test_neg():\\n    assert neg(4) == -4\\n')"

Add `calc/neg.py` with `neg(a)`, built on `sub` from T1.

## T3: Speed up multiplication
- scope: ^calc/
- deps: none
- agent: shell
- run: {py} -c "import pathlib; p = pathlib.Path('calc/core.py'); p.write_text(p.read_text().replace('return a * b', 'return a ** b'))"

An "optimisation" that breaks `mul`: the ceremony must undo it (REVERTED).

## T4: Document the package
- scope: ^docs/
- deps: none
- agent: shell
- run: {py} -c "open('docs/README.md','a').write('Now with more docs.\\n'); open('calc/core.py','a').write('\\n# tweaked while documenting\\n')"

Writes docs, but also edits `calc/core.py`, outside its scope (QUARANTINED).

## T5: Make the tests pass faster
- scope: ^tests/
- deps: none
- agent: shell
- run: {py} -c "import pathlib; p = pathlib.Path('tests/test_core.py'); p.write_text(p.read_text().replace('== 20', '== mul(4, 5)'))"

Edits `tests/test_core.py`, which is hard-locked (QUARANTINED).
"""


@dataclass
class DemoResult:
    folder: Path
    states: dict[str, str]
    seconds: float
    kept: bool


def run(folder: Path | None, *, echo: Callable[[str], None], keep: bool = False) -> DemoResult:
    start = time.monotonic()
    made_here = folder is None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="orch-demo-"))
    else:
        folder = folder.resolve()
        if folder.exists() and any(folder.iterdir()):
            raise UsageError(f"--dir {folder} is not empty", hint="name a new or empty folder")
        folder.mkdir(parents=True, exist_ok=True)
    repo = folder / "calc"
    try:
        states = _script(repo, echo)
    finally:
        if made_here and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.monotonic() - start
    wrong = {t: (states.get(t), want) for t, want in EXPECTED.items() if states.get(t) != want}
    if wrong:
        detail = ", ".join(f"{t} is {got} (expected {want})" for t, (got, want) in wrong.items())
        raise CheckFailed(f"the demo did not end as it should: {detail}")
    return DemoResult(
        folder=folder if (keep or not made_here) else folder, states=states, seconds=elapsed, kept=keep or not made_here
    )


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ORCH_"))}
    env.update(
        {
            "GIT_AUTHOR_NAME": "Demo Person",
            "GIT_AUTHOR_EMAIL": "demo@example.com",
            "GIT_COMMITTER_NAME": "Demo Person",
            "GIT_COMMITTER_EMAIL": "demo@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def _script(repo: Path, echo: Callable[[str], None]) -> dict[str, str]:
    py = shlex.quote(sys.executable)
    repo.mkdir(parents=True)
    env = _env(repo)

    def sh(*argv: str, ok: tuple[int, ...] = (0,), show: bool = True) -> str:
        if show:
            shown = " ".join(shlex.quote(a) for a in argv)
            shown = shown.replace(shlex.quote(sys.executable) + " -m orch", "orch")
            echo(f"\n$ {shown}")
        proc = subprocess.run(
            list(argv), cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        text = proc.stdout.rstrip()
        if show and text:
            echo(textwrap.indent(text, "  "))
        if proc.returncode not in ok:
            raise EnvError(f"demo step failed (exit {proc.returncode}): {' '.join(argv)}\n{text}")
        return proc.stdout

    def orch(*args: str, ok: tuple[int, ...] = (0,), show: bool = True) -> str:
        return sh(sys.executable, "-m", "orch", *args, ok=ok, show=show)

    echo(f"orch demo: a throwaway repository in {repo}")
    sh("git", "init", "-q", "-b", "main", show=False)
    sh("git", "config", "commit.gpgsign", "false", show=False)
    for rel, text in FILES.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sh("git", "add", "-A", show=False)
    sh("git", "commit", "-q", "-m", "calc: add and mul, with tests", show=False)

    orch("init", "--test-cmd", f"{py} run_tests.py")
    (repo / ".orch" / "plan.md").write_text(PLAN.format(py=py))
    echo("\n(wrote .orch/plan.md: five tasks for scripted agents)")
    orch("lock", "add", "tests/test_core.py", "--kind", "test", "--hard", "--reason", "the core contract")
    sh("git", "add", "-A", show=False)
    sh("git", "commit", "-q", "-m", "orch: plan and locks", show=False)
    orch("plan")
    orch("spin", "--ready")
    orch("wait", "T1", "T3", "T4", "T5", "--timeout", "60")
    orch("verify", "--all", ok=(0, 1))
    orch("merge", ok=(0, 1))
    orch("plan")
    orch("spin", "T2")
    orch("wait", "T2", "--timeout", "60")
    orch("verify", "T2")
    orch("merge", "T2")
    orch("clean", "--all")
    orch("status")
    reports = sorted((repo / ".orch" / "run" / "merges").glob("*.md"))
    if reports:
        echo(f"\n$ cat {reports[0].relative_to(repo)}")
        echo(textwrap.indent(reports[0].read_text().rstrip(), "  "))
    sh("git", "log", "--oneline", "--graph", "main")
    import json

    data = json.loads(orch("status", "--json", show=False))
    states = {}
    for row in data["tasks"]:
        st = row["state"]
        if st == "CLEANED":
            st = _merge_outcome(repo, row["id"]) or st
        states[row["id"]] = st
    return states


def _merge_outcome(repo: Path, task_id: str) -> str | None:
    """The ceremony outcome of a task that has since been cleaned."""
    import yaml

    path = repo / ".orch" / "run" / "tasks" / task_id / "status.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None
    merge = (data or {}).get("merge") or {}
    outcome = merge.get("outcome")
    return str(outcome) if outcome else None
