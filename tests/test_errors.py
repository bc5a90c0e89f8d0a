"""Errors and exit codes: what, where, how for a person; one line and a crash log for a bug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Orch, run_orch

from orch.core.errors import ExitCode, GitError, InputError, ManyErrors, OrchError

CRASH = """
import sys
from orch.views import status
from orch.cli.main import main

def rows(*args, **kwargs):
    raise RuntimeError("boom: an orch function failed")

status.rows = rows
main(sys.argv[1:])
"""


def test_exit_codes_are_stable() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]


def test_render_says_what_where_and_how() -> None:
    err = InputError("bad budget 'lots'", where=".orch/plan.md:9", hint="write e.g. '$5'")
    assert err.render() == ".orch/plan.md:9: bad budget 'lots'\n  hint: write e.g. '$5'"
    assert OrchError("plain").render() == "plain"
    many = ManyErrors(["a.md:1: one", "a.md:2: two"], hint="fix them")
    assert many.render() == "a.md:1: one\na.md:2: two\n  hint: fix them"
    git_error = GitError(["git", "merge", "x"], 128, "", "fatal: one\nfatal: two\n")
    assert git_error.exit_code == ExitCode.GIT
    assert git_error.render() == "git failed (exit 128): git merge x\n    fatal: one\n    fatal: two"


def test_a_user_error_prints_what_where_how_without_a_traceback(tmp_path: Path) -> None:
    r = run_orch(tmp_path, "status")
    assert r.returncode == 3
    assert r.stdout == ""
    assert r.stderr == (
        f"orch: not inside a git repository: {tmp_path}\n"
        "  hint: run orch inside a git repository (git init, commit once, then orch init)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["status", "--bogus"], "No such option: --bogus"),
        (["plan", "add"], "Missing argument 'ID'"),
        ([], "Usage: orch"),
    ],
)
def test_usage_errors_exit_2(project: Path, orch: Orch, args: list[str], message: str) -> None:
    r = orch(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.output


def test_help_and_version(project: Path, orch: Orch) -> None:
    r = orch.ok("--help")
    for command in ("init", "plan", "status", "log"):
        assert f"\n  {command} " in r.stdout
    assert orch.ok("-h").stdout == r.stdout
    assert orch.ok("--version").stdout == "orch 0.1.0\n"
    assert "--title" in orch.ok("plan", "add", "--help").stdout


def test_git_missing_is_an_environment_error(project: Path) -> None:
    r = run_orch(project, "status", env={"PATH": str(project / "no-such-bin")})
    assert r.returncode == 4
    assert r.stderr == "orch: git is not installed or not on PATH\n  hint: install git >= 2.38\n"


def test_an_unexpected_exception_prints_one_line_and_a_crash_log(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, "status"], cwd=project, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 4
    assert proc.stdout == ""
    head, _, tail = proc.stderr.partition("\n  the traceback is in ")
    assert head == "orch: internal error: RuntimeError: boom: an orch function failed"
    path = Path(tail.removesuffix("; please report it\n"))
    assert path.parent == project / ".orch/run/crash"
    log = path.read_text()
    assert "Traceback (most recent call last)" in log
    assert '  File "<string>", line 7, in rows\nRuntimeError: boom: an orch function failed\n' in log
    assert log.startswith("orch status\n")
    assert "Traceback" not in proc.stderr


def test_a_crash_outside_a_project_logs_to_the_temp_folder(tmp_path: Path) -> None:
    script = CRASH.replace("status.rows = rows", "import orch.core.context\norch.core.context.open_ctx = rows")
    proc = subprocess.run(
        [sys.executable, "-c", script, "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 4
    path = Path(proc.stderr.split("the traceback is in ")[1].removesuffix("; please report it\n"))
    assert path.parent == tmp_path and path.name.startswith("orch-crash-")
    assert "RuntimeError: boom" in path.read_text()


def test_a_closed_pipe_is_not_an_error(project: Path) -> None:
    log = project / ".orch/run/log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"2026-01-01T00:00:00Z | RUNNING | T{n} | SPIN | {'x' * 100} | -\n" for n in range(5000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch", "log"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `orch log | head -1`
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"internal error" not in err


CLOSED_STDOUT = "import os, sys; os.close(1); os.execv(sys.executable, [sys.executable, '-m', 'orch', *sys.argv[1:]])"


@pytest.mark.parametrize("args", [["status"], ["--version"], ["verify", "--all"], ["plan"]])
def test_a_closed_stdout_is_one_line_and_exit_4(project: Path, args: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-c", CLOSED_STDOUT, *args], cwd=project, stderr=subprocess.PIPE, text=True, check=False
    )
    assert r.returncode == ExitCode.GIT
    assert r.stderr == "orch: standard output is closed; run it with >/dev/null to discard the output\n"


GONE_CWD = (
    "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); del sys.argv[1]\n"
    "from orch.cli.entry import main\nmain()\n"
)


def test_a_folder_that_no_longer_exists_is_one_line_and_exit_4(project: Path) -> None:
    gone = project / "gone"
    for args in (["status"], ["verify", "T1"], ["merge", "--dry-run"]):
        gone.mkdir()
        r = subprocess.run([sys.executable, "-c", GONE_CWD, str(gone), *args], capture_output=True, text=True)
        assert (r.returncode, r.stdout) == (ExitCode.GIT, ""), r.stderr
        assert r.stderr == (
            "orch: the current folder no longer exists (a task worktree that was cleaned?)\n"
            "  hint: cd into the repository and run the command again\n"
        )
