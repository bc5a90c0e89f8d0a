"""orch merge interrupted by Ctrl-C, run twice at once, and aborted: exit codes, messages, no process
left behind (field report, items 2 and 3)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from ceremony_helpers import add_tasks_to_plan, finished_task, set_test_command, status_of, with_check
from conftest import Orch, git, no_box

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
# The two ways orch merge runs: the typer CLI, and the entry point's fast path that skips it.
TYPER_PATH = [sys.executable, "-c", "import sys\nfrom orch.cli.main import main\nmain(sys.argv[1:])\n"]
FAST_PATH = [sys.executable, "-m", "orch"]


@pytest.fixture
def hanging(project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A project with task T1 whose test command, while ``<flags>/hang`` exists, records its pid and
    the pid of a child it starts in ``<flags>``, and waits for that child (5 minutes)."""
    repo = with_check(project)
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "hang").write_text("")
    no_box(repo)  # the pids it records are the ones signals reach: outside a PID namespace
    set_test_command(
        repo,
        f"if [ -e '{flags}/hang' ]; then sleep 300 & echo $! > '{flags}/child.pid'; echo $$ > '{flags}/test.pid'; "
        "wait; fi; sh check.sh",
    )
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    return repo, flags


def start_merge(repo: Path, how: list[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*how, "merge", *args], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen[str]) -> int:
    """The pid written into ``path``, once the test run has written it."""
    for _ in range(600):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def running(pid: int) -> bool:
    """Is ``pid`` a process that runs (a zombie waiting for a reaper has finished)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def interrupt(repo: Path, flags: Path, how: list[str]) -> tuple[int, str]:
    for name in ("test.pid", "child.pid"):
        (flags / name).unlink(missing_ok=True)
    merge = start_merge(repo, how)
    test_pid = wait_for(flags / "test.pid", merge)
    child_pid = wait_for(flags / "child.pid", merge)
    assert running(test_pid) and running(child_pid)
    merge.send_signal(signal.SIGINT)  # to orch alone, not to its process group: orch must pass it on
    _, stderr = merge.communicate(timeout=60)
    try:
        assert gone(test_pid) and gone(child_pid), "the test run outlived orch merge"
    finally:
        for pid in (test_pid, child_pid):
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    return merge.returncode, stderr


def test_ctrl_c_during_the_tests_ends_them_and_says_how_to_go_on(hanging: tuple[Path, Path], orch: Orch) -> None:
    repo, flags = hanging
    before = git(repo, "rev-parse", "main")
    said = {}
    for name, how in (("typer", TYPER_PATH), ("fast", FAST_PATH)):
        code, stderr = interrupt(repo, flags, how)
        assert code == 130, stderr
        assert "orch merge --resume" in stderr and "orch merge --abort" in stderr, stderr
        assert "interrupted: merge ceremony" in stderr and "its test run was stopped" in stderr
        assert f"main stays at {before[:12]}" in stderr
        assert git(repo, "rev-parse", "main") == before
        said[name] = re.sub(r"\d{8}T\d{6}Z(-\d+)?", "<id>", stderr)
        if name == "typer":
            aborted = orch("merge", "--abort")
            assert aborted.returncode == 0, aborted.output
    assert said["typer"] == said["fast"]
    # --resume does what the hint says: it merges and tests T1 again, then lands.
    (flags / "hang").unlink()
    resumed = orch("merge", "--resume", "--json")
    assert resumed.returncode == 0, resumed.output
    assert [(t["task"], t["outcome"]) for t in json.loads(resumed.stdout)["tasks"]] == [("T1", "MERGED")]
    assert status_of(repo, "T1")["state"] == "MERGED"


def test_a_second_merge_says_at_once_that_one_is_running(hanging: tuple[Path, Path], orch: Orch) -> None:
    repo, flags = hanging
    first = start_merge(repo, FAST_PATH)
    try:
        wait_for(flags / "test.pid", first)
        for args in ((), ("--resume",), ("--abort",), ("--batch", "T1")):
            started = time.monotonic()
            second = orch("merge", *args)
            waited = time.monotonic() - started
            assert second.returncode == 3, (args, second.output)
            assert f"a merge ceremony is running (pid {first.pid})" in second.stderr, second.stderr
            assert waited < 4.5, f"it waited {waited:.1f}s for the lock"  # it used to wait 5 s, then exit 4
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130


def test_a_killed_ceremonys_pid_blocks_nothing(hanging: tuple[Path, Path], orch: Orch) -> None:
    repo, flags = hanging
    (flags / "hang").unlink()
    killed = orch("merge", env={"ORCH_FAILPOINT": "ceremony.testing:T1"})
    assert killed.returncode == -9
    lock = repo / ".orch" / "run" / "locks" / "merge.lock"
    assert lock.read_text().split("\n")[0].isdigit()  # the dead ceremony's pid is still written there
    blocked = orch("merge")
    assert blocked.returncode == 3 and "--resume" in blocked.stderr and "is running" not in blocked.stderr
    resumed = orch("merge", "--resume")
    assert resumed.returncode == 0, resumed.output
    assert lock.read_text() == ""  # a finished ceremony leaves no pid behind


def test_abort_exits_0_when_it_rolled_back(hanging: tuple[Path, Path], orch: Orch) -> None:
    repo, flags = hanging
    (flags / "hang").unlink()
    before = git(repo, "rev-parse", "main")
    assert orch("merge", env={"ORCH_FAILPOINT": "ceremony.decided:T1"}).returncode == -9
    aborted = orch("merge", "--abort", "--json")
    assert aborted.returncode == 0, aborted.output
    data = json.loads(aborted.stdout)
    jsonschema.validate(data, json.loads((SCHEMAS / "merge_report.schema.json").read_text()))
    assert data["landed"] == "aborted" and data["base_after"] == before == git(repo, "rev-parse", "main")
    assert "rolled back" in data["message"]
    assert not (repo / ".orch" / "run" / "merges" / "journal.json").exists()
    assert status_of(repo, "T1")["state"] == "SUCCESS"
    # In words, and a second --abort has nothing left to roll back.
    assert orch("merge", env={"ORCH_FAILPOINT": "ceremony.decided:T1"}).returncode == -9
    words = orch("merge", "--abort")
    assert words.returncode == 0 and "rolled back" in words.stdout, words.output
    again = orch("merge", "--abort")
    assert again.returncode == 3 and "no interrupted merge ceremony" in again.stderr
