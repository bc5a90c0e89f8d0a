"""An agent moves the base branch itself (``git update-ref refs/heads/main <its commit>``).

orch knows where the base was (``refs/orch/landed/<branch>``, the bases tasks were spun from); a
task's own commits that reached the base outside a ceremony are verified against its scope and the
locks. Clean (a person's hand merge): recorded MERGED. Breaking a rule: ``orch merge`` stops until a
person reverts it or acknowledges it (``orch ack-base``); ``orch status`` and ``orch doctor`` say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ceremony_helpers import add_tasks_to_plan, finished_task, run_as_printed, status_of, with_check
from conftest import Orch, git


@pytest.fixture
def repo(project: Path) -> Path:
    return with_check(project)


def _outcomes(stdout: str) -> dict[str, str]:
    return {t["task"]: t["outcome"] for t in json.loads(stdout)["tasks"]}


def _sneaky(repo: Path) -> str:
    add_tasks_to_plan(repo, [("T1", "^", []), ("T4", "^docs/", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    return finished_task(repo, "T4", {"docs/x.md": "x\n", "src/sneaky.py": "S = 1\n"})


def test_an_agent_moving_the_base_stops_every_ceremony_until_reverted(repo: Path, orch: Orch) -> None:
    sneaky = _sneaky(repo)
    before = git(repo, "rev-parse", "main")
    git(repo / ".orch" / "worktrees" / "T4", "update-ref", "refs/heads/main", sneaky)  # from its own worktree

    blocked = orch("merge")
    assert blocked.returncode == 1, blocked.output
    assert (
        f"main holds work that came in outside a merge ceremony and breaks its task's rules: T4 at {sneaky[:12]}"
        in (blocked.stderr)
    )
    assert "SCOPE_VIOLATION: src/sneaky.py" in blocked.stderr
    assert f"orch ack-base {sneaky[:12]}" in blocked.stderr
    assert git(repo, "rev-parse", "main") == sneaky  # nothing merged on top
    assert status_of(repo, "T1")["state"] == "SUCCESS"
    assert orch("merge").returncode == 1  # every ceremony, until a person acts

    shown = orch.ok("status").stdout
    assert f"notice: main holds work of T4 ({sneaky[:12]}) that no merge ceremony landed" in shown
    doctor = orch("doctor")
    assert doctor.returncode == 1, doctor.output
    assert "base-outside-ceremony: T4" in doctor.stdout and "SCOPE_VIOLATION: src/sneaky.py" in doctor.stdout

    # The person reverts it with the command orch gave (the files of the checkout never moved).
    revert = blocked.stderr.split("revert it: ", 1)[1].split(" (or git revert", 1)[0]
    run_as_printed(repo, revert)
    assert git(repo, "rev-parse", "main") == before
    r = orch("merge", "--json")
    assert _outcomes(r.stdout) == {"T1": "MERGED", "T4": "QUARANTINED"}, r.output
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "one.txt" in files and "src/sneaky.py" not in files
    assert "notice:" not in orch.ok("status").stdout
    assert orch("doctor").returncode == 0


def test_a_person_acknowledges_a_violating_merge_made_by_hand(repo: Path, orch: Orch) -> None:
    sneaky = _sneaky(repo)
    git(repo, "merge", "-q", "--no-ff", "-m", "I want T4 as it is", "orch/T4")
    tip = git(repo, "rev-parse", "main")
    assert orch("merge").returncode == 1
    ack = orch("ack-base", tip[:12])
    assert ack.returncode == 0, ack.output
    assert f"main up to {tip[:12]} acknowledged" in ack.stdout
    r = orch("merge", "--json")
    assert r.returncode == 0, r.output
    assert _outcomes(r.stdout)["T1"] == "MERGED"
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "one.txt" in files and "src/sneaky.py" in files
    assert git(repo, "merge-base", "--is-ancestor", sneaky, "main") == ""
    bad = orch("ack-base", "orch/T1")
    assert bad.returncode == 0  # T1 is merged now: a commit main holds
    assert orch("ack-base", "no-such-commit").returncode == 3


def test_a_clean_hand_merge_of_a_failed_run_is_recorded_merged(repo: Path, orch: Orch) -> None:
    add_tasks_to_plan(repo, [("T2", "^", [])])
    finished_task(repo, "T2", {"two.txt": "2\n"}, state="FAILED")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge T2 by hand", "orch/T2")
    assert "notice: main holds work of T2" in orch.ok("status").stdout
    r = orch("merge", "--json")
    assert r.returncode == 0, r.output
    assert _outcomes(r.stdout) == {"T2": "MERGED"}
    assert status_of(repo, "T2")["state"] == "MERGED"
    assert "notice:" not in orch.ok("status").stdout


def test_status_looks_at_the_refs_only_when_they_changed(repo: Path, orch: Orch, tmp_path: Path) -> None:
    sneaky = _sneaky(repo)
    trace = tmp_path / "trace"

    def merged_calls() -> int:
        trace.unlink(missing_ok=True)
        orch.ok("status", env={"GIT_TRACE": str(trace)})
        return sum("--merged" in line for line in trace.read_text().splitlines() if "for-each-ref" in line)

    assert merged_calls() == 1
    assert merged_calls() == 0  # refs unchanged: no git call for the notice
    git(repo / ".orch" / "worktrees" / "T4", "update-ref", "refs/heads/main", sneaky)
    assert merged_calls() == 1
    assert "notice: main holds work of T4" in orch.ok("status").stdout
