"""Work that reached the base outside a ceremony: a hand merge, or a parked result landed by hand.

What ``orch merge`` shows as MERGED is recorded MERGED, and a dependency whose verified commit is
in the base counts as merged for ``orch plan``, ``orch status`` and ``orch spin`` however it got
there, but only if verification judged it OK before it reached the base.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from ceremony_helpers import add_tasks_to_plan, finished_task, run_as_printed, status_of
from conftest import Orch, git


def _outcomes(stdout: str) -> dict[str, tuple[str, str | None]]:
    return {t["task"]: (t["outcome"], t.get("detail")) for t in json.loads(stdout)["tasks"]}


def _ready(orch: Orch) -> dict[str, bool]:
    return {t["id"]: t["ready"] for t in json.loads(orch.ok("plan", "--json").stdout)["tasks"]}


def _status_ready(orch: Orch) -> dict[str, bool]:
    return {t["id"]: t["ready"] for t in json.loads(orch.ok("status", "--json").stdout)["tasks"]}


def _plan(repo: Path, tasks: list[tuple[str, str, list[str]]]) -> None:
    add_tasks_to_plan(repo, tasks, run="true")


def _two_tasks(project: Path) -> None:
    _plan(project, [("A", "^", []), ("B", "^", ["A"])])
    finished_task(project, "A", {"a.txt": "A\n"})


def test_a_hand_merged_task_is_recorded_merged_by_orch_merge(project: Path, orch: Orch) -> None:
    _two_tasks(project)
    git(project, "merge", "-q", "--no-ff", "-m", "merge A by hand", "orch/A")
    r = orch("merge", "A", "--json")
    assert r.returncode == 0, r.output
    assert _outcomes(r.stdout) == {"A": ("MERGED", "already contained in the base")}
    st = status_of(project, "A")
    assert st["state"] == "MERGED" and st["merge"]["outcome"] == "MERGED"
    assert st["verdict"]["result"] == "OK"
    assert "state:      MERGED" in orch.ok("status", "A").stdout
    assert _ready(orch)["B"] and _status_ready(orch)["B"]
    spun = orch.ok("spin", "B", "--no-start")
    assert "B: orch/B at" in spun.stdout
    cleaned = orch.ok("clean").stdout
    assert cleaned.startswith("A: cleaned (was MERGED)\n  removed worktree .orch/worktrees/A\n  deleted branch orch/A")
    assert git(project, "branch", "--list", "orch/A") == ""


def test_a_parked_result_landed_with_the_printed_command(project: Path, orch: Orch) -> None:
    _two_tasks(project)
    (project / "a.txt").write_text("my unsaved file, in the way of A's\n")
    parked = orch("merge", "--json")
    data = json.loads(parked.stdout)
    assert data["landed"] == "parked", parked.output
    command = data["message"].rsplit("land it with: ", 1)[1]
    assert command.endswith("merge --ff-only orch/integration")
    (project / "a.txt").unlink()
    run_as_printed(project, command)
    # The parked ceremony verified A at the sha now in the base: B is ready before anything else runs.
    assert status_of(project, "A")["state"] == "SUCCESS"
    assert _ready(orch)["B"] and _status_ready(orch)["B"]
    again = orch("merge", "A", "--json")
    assert again.returncode == 0, again.output
    assert _outcomes(again.stdout) == {"A": ("MERGED", "already contained in the base")}
    assert json.loads(again.stdout)["test_runs"] == 0
    assert status_of(project, "A")["state"] == "MERGED"
    assert "state:      MERGED" in orch.ok("status", "A").stdout
    orch.ok("spin", "B", "--no-start")
    assert orch.ok("clean").stdout.startswith("A: cleaned (was MERGED)")


def test_a_verified_dependency_merged_by_hand_counts_without_orch_merge(project: Path, orch: Orch) -> None:
    _two_tasks(project)
    assert orch("verify", "A").returncode == 0
    assert not _ready(orch)["B"]
    git(project, "merge", "-q", "--no-ff", "-m", "merge A by hand", "orch/A")
    assert _ready(orch)["B"] and _status_ready(orch)["B"]
    assert "ready to spin: B" in orch.ok("plan").stdout
    r = orch.ok("spin", "--ready", "--no-start")
    assert r.stdout.startswith("B: orch/B at")
    assert orch.ok("clean").stdout.startswith("A: cleaned (was SUCCESS)\n  removed worktree")


def test_an_unverified_or_violating_dependency_does_not_count(project: Path, orch: Orch) -> None:
    _plan(project, [("A", "^docs/", []), ("B", "^", ["A"]), ("C", "^", []), ("D", "^", ["C"])])
    finished_task(project, "A", {"src/outside.txt": "out of scope\n"})
    finished_task(project, "C", {"c.txt": "C\n"})
    assert orch("verify", "A").returncode == 1  # a scope violation
    git(project, "merge", "-q", "--no-ff", "-m", "merge A by hand", "orch/A")
    git(project, "merge", "-q", "--no-ff", "-m", "merge C by hand", "orch/C")  # C never verified
    assert not _ready(orch)["B"] and not _ready(orch)["D"]
    r = orch("spin", "B", "D", "--no-start")
    assert r.returncode == 3
    assert "depends on A, not merged yet" in r.stderr and "depends on C, not merged yet" in r.stderr
    # A verdict made after the commit was in the base judged nothing: it does not count either.
    assert orch("verify", "C").returncode == 0
    assert status_of(project, "C")["verdict"]["sha"] == status_of(project, "C")["verdict"]["base_sha"]
    assert not _ready(orch)["D"]
    # A status file anyone can write cannot make a dependency merged with a made-up sha.
    path = project / ".orch/run/tasks/C/status.yaml"
    st = yaml.safe_load(path.read_text())
    st["verdict"].update(sha="f" * 40, base_sha="e" * 40)
    path.write_text(yaml.safe_dump(st))
    assert not _ready(orch)["D"]


def test_a_named_dependent_merges_when_its_verified_dependency_was_merged_by_hand(project: Path, orch: Orch) -> None:
    _two_tasks(project)
    finished_task(project, "B", {"b.txt": "B\n"}, base="orch/A")
    assert orch("verify", "A").returncode == 0
    git(project, "merge", "-q", "--no-ff", "-m", "merge A by hand", "orch/A")
    forecast = orch("merge", "B", "--dry-run", "--json")
    assert _outcomes(forecast.stdout)["B"][0] == "CLEAN", forecast.output
    r = orch("merge", "B", "--json")
    assert r.returncode == 0, r.output
    assert _outcomes(r.stdout) == {"B": ("MERGED", None)}
    assert status_of(project, "B")["state"] == "MERGED"
