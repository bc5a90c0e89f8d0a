"""Landing the merge ceremony's result in the person's checkout: when it lands, when it parks, and
how the table, the JSON and the report say which (field report, item 1)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ceremony_helpers import add_tasks_to_plan, finished_task, status_of, with_check
from conftest import Orch, git, no_box

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.fixture
def ceremony_repo(project: Path) -> Path:
    return with_check(project)


def merged_json(orch: Orch, *args: str) -> tuple[int, dict[str, Any]]:
    r = orch("merge", "--json", *args)
    data = json.loads(r.stdout)
    jsonschema.validate(data, json.loads((SCHEMAS / "merge_report.schema.json").read_text()))
    return r.returncode, data


def porcelain(repo: Path) -> list[str]:
    return git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()


def test_lands_past_the_edits_plan_add_and_lock_add_leave_uncommitted(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    orch.ok("plan", "add", "T5", "--title", "Later work")
    orch.ok("lock", "add", "docs/contract.md", "--reason", "signed off")
    dirty = porcelain(repo)
    assert " M .orch/plan.md" in dirty, dirty

    code, data = merged_json(orch)
    assert code == 0, data
    assert data["landed"] == "fast-forward"
    assert data["parked_on"] is None and data["blocked_by"] == [] and data["land_command"] is None
    assert [(t["task"], t["outcome"], t.get("parked")) for t in data["tasks"]] == [("T1", "MERGED", False)]
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "main")
    assert (repo / "one.txt").read_text() == "1\n"
    # The person's uncommitted edits are as they were, still uncommitted.
    assert porcelain(repo) == dirty
    assert "## T5: Later work" in (repo / ".orch" / "plan.md").read_text()
    assert status_of(repo, "T1")["state"] == "MERGED"
    report = (repo / data["report"]).read_text()
    assert "| T1 | task T1 | MERGED |" in report and "- landed: yes" in report


def test_lands_past_unrelated_untracked_and_staged_files(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    (repo / "notes.txt").write_text("my notes\n")
    (repo / "README.md").write_text("staged edit\n")
    git(repo, "add", "README.md")
    dirty = porcelain(repo)

    r = orch("merge")
    assert r.returncode == 0, r.output
    assert "LANDED" in r.stdout and "PARKED" not in r.stdout and "(parked)" not in r.stdout
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "main") and (repo / "one.txt").is_file()
    assert porcelain(repo) == dirty
    assert git(repo, "diff", "--cached", "--name-only") == "README.md"
    assert (repo / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize("kind", ["modified", "staged", "untracked"])
def test_a_dirty_path_the_merge_changes_parks_the_result_and_names_it(
    ceremony_repo: Path, orch: Orch, kind: str
) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"README.md": "from T1\n", "one.txt": "1\n", "two.txt": "2\n"})
    before = git(repo, "rev-parse", "main")
    if kind == "untracked":  # in the way of a file the merge adds
        (repo / "one.txt").write_text("mine\n")
        (repo / "two.txt").write_text("mine too\n")
        in_the_way = ["one.txt", "two.txt"]
    else:
        (repo / "README.md").write_text("my edit\n")
        (repo / "one.txt").write_text("mine\n")  # untracked and in the way as well: every path is named
        if kind == "staged":
            git(repo, "add", "README.md")
        in_the_way = ["README.md", "one.txt"]
    (repo / "unrelated.txt").write_text("not in the way\n")
    dirty = porcelain(repo)

    table = orch("merge")
    assert table.returncode == 1, table.output
    assert "MERGED (parked)" in table.stdout
    assert "PARKED on orch/integration" in table.stdout and "LANDED" not in table.stdout
    assert all(path in table.stdout for path in in_the_way) and "unrelated.txt" not in table.stdout
    assert f"git -C {shlex.quote(str(repo))} merge --ff-only orch/integration" in table.stdout

    code, data = merged_json(orch)
    assert code == 1
    assert data["landed"] == "parked" and data["parked_on"] == "orch/integration"
    assert data["blocked_by"] == in_the_way
    assert [(t["task"], t["outcome"], t["parked"]) for t in data["tasks"]] == [("T1", "MERGED", True)]
    assert data["land_command"] == f"git -C {shlex.quote(str(repo))} merge --ff-only orch/integration"
    assert data["rollback"] is None
    report = (repo / data["report"]).read_text()
    assert "| T1 | task T1 | MERGED (parked) |" in report
    assert "- landed: no: PARKED on `orch/integration`" in report
    assert all(f"`{path}`" in report for path in in_the_way)
    assert data["land_command"] in report

    # Nothing of the person's moved, and the task waits to be merged.
    assert git(repo, "rev-parse", "main") == before
    assert porcelain(repo) == dirty
    assert status_of(repo, "T1")["state"] == "SUCCESS"
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "orch/integration")

    # The printed command lands the result once the changes in the way are put aside.
    git(repo, "stash", "push", "-q", "--include-untracked")
    landed = subprocess.run(shlex.split(data["land_command"]), capture_output=True, text=True, check=False)
    assert landed.returncode == 0, landed.stderr
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "orch/integration")
    assert (repo / "README.md").read_text() == "from T1\n"
    again = orch("merge", "--json")
    assert [(t["task"], t["outcome"]) for t in json.loads(again.stdout)["tasks"]] == [("T1", "MERGED")]
    assert json.loads(again.stdout)["test_runs"] == 0


def test_an_ignored_file_in_the_way_is_named_too(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    (repo / ".gitignore").write_text("secrets.env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore")
    add_tasks_to_plan(repo, [("T1", "^", [])])
    (repo / "secrets.env").write_text("MINE\n")
    wt = repo / ".orch" / "worktrees" / "T1"
    git(repo, "worktree", "add", "-q", "-b", "orch/T1", str(wt), "main")
    (wt / "secrets.env").write_text("FROM_TASK\n")
    git(wt, "add", "-f", "secrets.env")
    git(wt, "commit", "-q", "-m", "T1")
    status = repo / ".orch" / "run" / "tasks" / "T1" / "status.yaml"
    status.parent.mkdir(parents=True)
    status.write_text("id: T1\nstate: SUCCESS\nbranch: orch/T1\n")
    code, data = merged_json(orch)
    assert code == 1 and data["landed"] == "parked"
    assert data["blocked_by"] == ["secrets.env"]
    assert (repo / "secrets.env").read_text() == "MINE\n"


def test_a_moved_base_parks_without_a_land_command(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    from ceremony_helpers import set_test_command

    no_box(repo)  # the test command acts as a person would, outside any box
    set_test_command(repo, f"git -C {shlex.quote(str(repo))} commit -q --allow-empty -m meanwhile && sh check.sh")
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    code, data = merged_json(orch)
    assert code == 1 and data["landed"] == "base-moved"
    assert data["parked_on"] == "orch/integration" and data["land_command"] is None
    assert data["tasks"][0]["parked"] is True
    table = orch("merge")
    assert "MERGED (parked)" in table.stdout and "PARKED on orch/integration" in table.stdout


def test_a_merge_the_person_has_not_concluded_parks_with_gits_reason(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "side.txt").write_text("side\n")
    git(repo, "add", "side.txt")
    git(repo, "commit", "-qm", "side")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "--no-ff", "--no-commit", "-q", "side")  # the person is in the middle of a merge
    code, data = merged_json(orch)
    assert code == 1 and data["landed"] == "parked"
    assert data["blocked_by"] == [] and "MERGE_HEAD exists" in data["message"]
    assert data["land_command"] and data["land_command"] in data["message"]
    assert (repo / ".git" / "MERGE_HEAD").exists()  # their merge is as they left it
    assert git(repo, "diff", "--cached", "--name-only") == "side.txt"
