"""The merge ceremony on real git: order, tests after each merge, undo, conflicts, landing, crashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ceremony_helpers import CHECK, add_tasks_to_plan, finished_task, set_test_command, status_of
from conftest import Orch, assert_fast_path_agrees, commit_file, git, no_box


@pytest.fixture
def ceremony_repo(project: Path) -> Path:
    commit_file(project, "check.sh", CHECK, "add the test")
    set_test_command(project, "sh check.sh")
    assert 'test_command: "sh check.sh"' in (project / ".orch" / "config.yaml").read_text()
    return project


def head(repo: Path, ref: str = "main") -> str:
    return git(repo, "rev-parse", ref)


def outcomes(result_json: str) -> dict[str, str]:
    return {t["task"]: t["outcome"] for t in json.loads(result_json)["tasks"]}


def test_ceremony_merges_in_order_reverts_breakage_and_keeps_the_rest(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    # T2 comes first in the plan but depends on T1: dependency order wins, plan order breaks ties.
    add_tasks_to_plan(repo, [("T2", "^src/", ["T1"]), ("T1", "^src/", []), ("T3", "^", []), ("T4", "^docs/", [])])
    finished_task(repo, "T1", {"src/a.py": "A = 1\n"})
    finished_task(repo, "T3", {"fail-T3": "boom\n"})
    finished_task(repo, "T4", {"docs/x.md": "x\n", "src/sneaky.py": "S = 1\n"})
    # T2 builds on T1's branch, as an agent spun after T1 merged would.
    finished_task(repo, "T2", {"src/b.py": "from a import A\n"}, base="orch/T1")
    before = head(repo)

    r = orch("merge", "--json")
    assert r.returncode == 1, r.output  # partial success is still a failed check
    data = json.loads(r.stdout)
    assert outcomes(r.stdout) == {"T4": "QUARANTINED", "T1": "MERGED", "T3": "REVERTED", "T2": "MERGED"}
    order = [t["task"] for t in data["tasks"] if t["outcome"] in ("MERGED", "REVERTED")]
    assert order == ["T1", "T2", "T3"]
    assert data["test_runs"] == 3
    assert data["landed"] == "fast-forward"
    after = head(repo)
    assert after == data["base_after"] != before
    # The base holds T1 and T2, not T3 or T4; the user's checkout came along.
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "src/a.py" in files and "src/b.py" in files
    assert "fail-T3" not in files and "src/sneaky.py" not in files
    assert (repo / "src" / "b.py").is_file()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    # Every merge is a --no-ff merge commit naming its task, merged at the verified sha.
    subjects = git(repo, "log", "--format=%s", f"{before}..main").splitlines()
    assert [s.split(":")[1].strip() for s in subjects if s.startswith("orch: merge")] == ["merge T2", "merge T1"]
    # Statuses, report, rollback ref, event log.
    assert status_of(repo, "T1")["state"] == "MERGED"
    assert status_of(repo, "T3")["state"] == "REVERTED"
    assert status_of(repo, "T4")["state"] == "QUARANTINED"
    assert head(repo, data["pre_ref"]) == before
    report = (repo / data["report"]).read_text()
    assert "| T3 | task T3 | REVERTED |" in report
    assert "## Test runs" in report and "| 3 | T3 | FAIL |" in report
    import jsonschema

    schema = json.loads((Path(__file__).parent.parent / "schemas" / "merge_report.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert "broken by fail-T3" in report
    assert "src/sneaky.py" in report
    assert f"reset --keep {data['pre_ref']}" in report
    assert not (repo / ".orch" / "run" / "merges" / "journal.json").exists()
    log = (repo / ".orch" / "run" / "log").read_text()
    assert "| REVERTED | T3 | MERGE |" in log and "MERGE_DONE" in log
    # The rollback command the report gives really rolls back.
    git(repo, "reset", "--keep", data["pre_ref"])
    assert head(repo) == before


def test_conflicting_tasks(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    commit_file(repo, "src/shared.py", "x = 1\n")
    add_tasks_to_plan(repo, [("T1", "^src/", []), ("T2", "^src/", [])])
    finished_task(repo, "T1", {"src/shared.py": "x = 2\n"})
    finished_task(repo, "T2", {"src/shared.py": "x = 3\n"})

    dry = orch("merge", "--dry-run", "--json")
    assert dry.returncode == 1, dry.output  # a forecast conflict is a failed check
    forecast = json.loads(dry.stdout)
    assert outcomes(dry.stdout) == {"T1": "CLEAN", "T2": "CONFLICT"}
    assert forecast["tasks"][1]["conflicts_with"] == ["T1"]
    assert forecast["tasks"][1]["paths"] == ["src/shared.py"]
    assert not (repo / ".orch" / "worktrees" / "_integration").exists()  # a forecast touches no worktree

    pairs = orch("conflicts")
    assert pairs.returncode == 1
    assert "T1 x T2: 1 conflicting path(s)" in pairs.stdout and "src/shared.py" in pairs.stdout

    r = orch("merge", "--json")
    assert outcomes(r.stdout) == {"T1": "MERGED", "T2": "CONFLICT"}
    t2 = next(t for t in json.loads(r.stdout)["tasks"] if t["task"] == "T2")
    assert t2["paths"] == ["src/shared.py"]
    assert (repo / "src" / "shared.py").read_text() == "x = 2\n"
    integration = repo / ".orch" / "worktrees" / "_integration"
    assert not (Path(git(integration, "rev-parse", "--absolute-git-dir")) / "MERGE_HEAD").exists()


def test_a_reverted_dependency_skips_its_dependents(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", ["T1"]), ("T3", "^", ["T2"]), ("T4", "^", [])])
    finished_task(repo, "T1", {"fail-T1": "x\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"}, base="orch/T1")
    finished_task(repo, "T3", {"three.txt": "3\n"}, base="orch/T2")
    finished_task(repo, "T4", {"four.txt": "4\n"})
    r = orch("merge", "--json")
    assert outcomes(r.stdout) == {"T1": "REVERTED", "T2": "SKIPPED", "T3": "SKIPPED", "T4": "MERGED"}
    detail = {t["task"]: t["detail"] for t in json.loads(r.stdout)["tasks"]}
    assert detail["T2"] == "dependency T1 is not merged (REVERTED)"
    assert detail["T3"] == "dependency T2 is not merged (SKIPPED)"
    assert json.loads(r.stdout)["test_runs"] == 2


def test_base_moved_during_the_ceremony(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    # The test command commits to main behind orch's back, as a person might meanwhile.
    no_box(repo)  # the test command acts as a person would, outside any box
    sneaky = f"git -C '{repo}' commit -q --allow-empty -m meanwhile && sh check.sh"
    set_test_command(repo, sneaky)
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    r = orch("merge", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["landed"] == "base-moved"
    assert "moved" in data["message"]
    assert git(repo, "log", "-1", "--format=%s", "main") == "meanwhile"  # their commit is intact
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "orch/integration")  # ours is parked
    assert status_of(repo, "T1")["state"] == "SUCCESS"  # not merged, so merged next time


def test_dirty_checkout_is_left_alone(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    # The merge changes the file the person has uncommitted edits to (a dirty file it does not touch
    # no longer stops it landing: tests/test_ceremony_land.py).
    finished_task(repo, "T1", {"one.txt": "1\n", "README.md": "from T1\n"})
    before = head(repo)
    (repo / "README.md").write_text("my unsaved edit\n")
    r = orch("merge", "--json")
    assert r.returncode == 1  # nothing landed
    data = json.loads(r.stdout)
    assert data["landed"] == "parked"
    assert "merge --ff-only orch/integration" in data["message"]
    assert head(repo) == before
    assert (repo / "README.md").read_text() == "my unsaved edit\n"
    assert not (repo / "one.txt").exists()
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "orch/integration")
    # Once the person is ready, the parked result lands as the message says, and the next
    # ceremony recognises the task as merged without testing it again.
    git(repo, "checkout", "--", "README.md")
    git(repo, "merge", "--ff-only", "-q", "orch/integration")
    again = orch("merge", "--json")
    assert outcomes(again.stdout) == {"T1": "MERGED"}
    assert json.loads(again.stdout)["test_runs"] == 0


def test_base_not_checked_out_moves_by_compare_and_swap(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    git(repo, "checkout", "-q", "-b", "elsewhere")
    r = orch("merge", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 0, r.output
    assert data["landed"] == "update-ref"
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "main")
    assert not (repo / "one.txt").exists()  # the checkout on 'elsewhere' was not touched
    assert data["rollback"] == f"git update-ref refs/heads/main {data['pre_ref']} {data['base_after']}"


def test_resume_without_an_interrupted_ceremony(ceremony_repo: Path, orch: Orch) -> None:
    r = orch("merge", "--resume")
    assert r.returncode == 3
    assert "no interrupted merge ceremony" in r.stderr


STEPS = [
    "ceremony.triaged",
    "ceremony.merging:T1",
    "ceremony.testing:T1",
    "ceremony.decided:T1",
    "ceremony.merging:T2",
    "ceremony.testing:T2",
    "ceremony.decided:T2",
    "ceremony.landing",
    "ceremony.landed",
    "ceremony.reported",
    "ceremony.recorded",
]


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_every_step_then_resume(ceremony_repo: Path, orch: Orch, step: str) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", []), ("T9", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"fail-T2": "x\n"})
    finished_task(repo, "T9", {"nine.txt": "9\n"}, state="FAILED")
    before = head(repo)

    killed = orch("merge", env={"ORCH_FAILPOINT": step})
    assert killed.returncode == -9, killed.output
    now = head(repo)
    assert now == before or "one.txt" in git(repo, "ls-tree", "--name-only", now)
    gitdir = repo / ".git"
    assert not (gitdir / "MERGE_HEAD").exists() and not (gitdir / "index.lock").exists()
    blocked = orch("merge")
    assert blocked.returncode == 3 and "--resume" in blocked.stderr

    r = orch("merge", "--resume", "--json")
    assert r.returncode == 1, r.output
    assert outcomes(r.stdout) == {"T9": "NOT_READY", "T1": "MERGED", "T2": "REVERTED"}
    files = git(repo, "ls-tree", "--name-only", "main").splitlines()
    assert "one.txt" in files and "fail-T2" not in files
    assert (repo / "one.txt").is_file()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert status_of(repo, "T1")["state"] == "MERGED"
    assert not (repo / ".orch" / "run" / "merges" / "journal.json").exists()


def _batch_scenario(repo: Path, n: int, failing: set[int]) -> None:
    add_tasks_to_plan(repo, [(f"T{i}", "^", []) for i in range(1, n + 1)])
    for i in range(1, n + 1):
        name = f"fail-T{i}" if i in failing else f"file-{i}.txt"
        finished_task(repo, f"T{i}", {name: f"{i}\n"})


@pytest.mark.parametrize("failing", [set(), {3}, {1, 6}, {2, 3, 5, 7}])
def test_batch_equals_sequential(ceremony_repo: Path, tmp_path: Path, failing: set[int]) -> None:
    n = 8
    _batch_scenario(ceremony_repo, n, failing)
    twin = tmp_path / "twin"
    shutil.copytree(ceremony_repo, twin, symlinks=True)
    git(twin, "worktree", "repair")  # the copy's worktrees point back at the copy
    for i in range(1, n + 1):
        wt = twin / ".orch" / "worktrees" / f"T{i}"
        git(twin, "worktree", "repair", str(wt))
    seq = Orch(ceremony_repo)("merge", "--json")
    bat = Orch(twin)("merge", "--batch", "--json")
    seq_data, bat_data = json.loads(seq.stdout), json.loads(bat.stdout)
    assert outcomes(bat.stdout) == outcomes(seq.stdout)
    assert git(twin, "rev-parse", "main^{tree}") == git(ceremony_repo, "rev-parse", "main^{tree}")
    assert seq_data["test_runs"] == n
    if not failing:
        assert bat_data["test_runs"] == 1
    if len(failing) <= 1:
        assert bat_data["test_runs"] <= n + 1
    assert bat_data["mode"] == "batch"


def test_batch_of_sixteen_with_one_failure(ceremony_repo: Path, orch: Orch) -> None:
    _batch_scenario(ceremony_repo, 16, {11})
    r = orch("merge", "--batch", "--json")
    data = json.loads(r.stdout)
    assert data["test_runs"] <= 9
    assert outcomes(r.stdout)["T11"] == "REVERTED"
    assert sum(1 for o in outcomes(r.stdout).values() if o == "MERGED") == 15


# -- findings of the adversarial review, each pinned by a test ---------------------------------------


def test_a_test_command_that_deletes_the_integration_git_file_cannot_reach_the_user(
    ceremony_repo: Path, orch: Orch
) -> None:
    repo = ceremony_repo
    set_test_command(repo, "rm -f .git; exit 1")
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "README.md").write_text("unsaved work\n")
    before = head(repo, "feature")
    r = orch("merge", "--json")
    assert outcomes(r.stdout) == {"T1": "REVERTED", "T2": "REVERTED"}, r.output
    assert (repo / "README.md").read_text() == "unsaved work\n"
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "feature"
    assert head(repo, "feature") == before


def test_the_task_id_integration_is_reserved(project: Path, orch: Orch) -> None:
    r = orch("plan", "add", "integration", "--title", "x")
    assert r.returncode == 3
    assert "reserved" in r.stderr


def test_resume_after_landing_finishes_even_if_the_base_moved_since(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    assert orch("merge", env={"ORCH_FAILPOINT": "ceremony.landed"}).returncode == -9
    git(repo, "commit", "-q", "--allow-empty", "-m", "a person commits meanwhile")
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 0, r.output
    assert outcomes(r.stdout) == {"T1": "MERGED"}
    assert status_of(repo, "T1")["state"] == "MERGED"
    assert (repo / json.loads(r.stdout)["report"]).is_file()


def test_batch_merges_a_dependency_and_its_dependent_together(ceremony_repo: Path, tmp_path: Path) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", ["T1"]), ("T3", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"}, base="orch/T1")
    finished_task(repo, "T3", {"fail-T3": "3\n"})
    twin = tmp_path / "twin"
    shutil.copytree(repo, twin, symlinks=True)
    seq = Orch(repo)("merge", "--json")
    bat = Orch(twin)("merge", "--batch", "--json")
    assert outcomes(seq.stdout) == outcomes(bat.stdout) == {"T1": "MERGED", "T2": "MERGED", "T3": "REVERTED"}


def test_a_task_dropped_from_the_plan_does_not_block_the_others(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"})  # spun, then removed from the plan by a person
    r = orch("merge", "--json")
    assert r.returncode == 0, r.output
    assert outcomes(r.stdout) == {"T2": "NOT_READY", "T1": "MERGED"}
    assert "no longer in .orch/plan.md" in r.stdout


def test_resume_stops_the_test_run_a_killed_ceremony_left_behind(ceremony_repo: Path, orch: Orch) -> None:
    import os
    import signal

    repo = ceremony_repo
    set_test_command(repo, "sleep 60; sh check.sh")
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    assert orch("merge", env={"ORCH_FAILPOINT": "ceremony.testing:T1"}).returncode == -9
    pid = json.loads((repo / ".orch" / "run" / "merges" / "journal.json").read_text())["test_pid"]
    os.killpg(pid, 0)  # the orphaned test run is alive
    set_test_command(repo, "sh check.sh")  # the journal keeps the command it started with
    resumed = orch("merge", "--abort")
    assert resumed.returncode == 0 and "rolled back" in resumed.stdout  # a successful abort is not a failure
    try:
        os.killpg(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    if alive:  # a zombie waiting for its reaper is not running
        os.killpg(pid, signal.SIGKILL)
    assert not alive or Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def test_fast_forward_never_overwrites_an_ignored_file(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    commit_file(repo, ".gitignore", "secrets.env\n")
    (repo / "secrets.env").write_text("MINE\n")
    add_tasks_to_plan(repo, [("T1", "^", [])])
    worktree_file = {"secrets.env": "FROM_TASK\n"}
    wt = repo / ".orch" / "worktrees" / "T1"
    git(repo, "worktree", "add", "-q", "-b", "orch/T1", str(wt), "main")
    (wt / "secrets.env").write_text(worktree_file["secrets.env"])
    git(wt, "add", "-f", "secrets.env")
    git(wt, "commit", "-q", "-m", "T1")
    status = repo / ".orch" / "run" / "tasks" / "T1" / "status.yaml"
    status.parent.mkdir(parents=True)
    status.write_text("id: T1\nstate: SUCCESS\nbranch: orch/T1\n")
    r = orch("merge", "--json")
    assert json.loads(r.stdout)["landed"] == "parked", r.output
    assert (repo / "secrets.env").read_text() == "MINE\n"


def test_a_named_reverted_task_is_tried_again(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"fail-T1": "x\n"})
    assert outcomes(orch("merge", "--json").stdout) == {"T1": "REVERTED"}
    unnamed = orch("merge", "--json")
    assert outcomes(unnamed.stdout) == {} and unnamed.returncode == 0
    named = orch("merge", "T1", "--json")
    assert outcomes(named.stdout) == {"T1": "REVERTED"} and named.returncode == 1
    assert json.loads(named.stdout)["test_runs"] == 1


def test_dry_run_exit_code_and_dependencies(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    commit_file(repo, "src/shared.py", "x = 1\n")
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", ["T9"]), ("T9", "^", []), ("T3", "^", [])])
    finished_task(repo, "T1", {"src/shared.py": "x = 2\n"})
    finished_task(repo, "T9", {"nine.txt": "9\n"}, state="FAILED")
    finished_task(repo, "T2", {"two.txt": "2\n"}, base="orch/T9")
    finished_task(repo, "T3", {"src/shared.py": "x = 3\n"})
    r = orch("merge", "--dry-run", "--json")
    assert r.returncode == 1
    assert outcomes(r.stdout) == {"T9": "NOT_READY", "T1": "CLEAN", "T2": "SKIPPED", "T3": "CONFLICT"}


def test_clean_leaves_alone_what_an_interrupted_ceremony_holds(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    assert orch("merge", env={"ORCH_FAILPOINT": "ceremony.landed"}).returncode == -9
    cleaned = orch("clean", "T1")
    assert "interrupted merge ceremony holds it" in cleaned.output
    assert git(repo, "rev-parse", "--verify", "-q", "orch/T1", check=False)
    assert orch("merge", "--resume").returncode == 0
    assert status_of(repo, "T1")["state"] == "MERGED"


def test_resume_and_abort_take_no_other_arguments(ceremony_repo: Path, orch: Orch) -> None:
    for args in (["--resume", "T1"], ["--resume", "--batch"], ["--abort", "--into", "x"], ["--resume", "--abort"]):
        r = orch("merge", *args)
        assert r.returncode == 2, args


BATCH_STEPS = [
    "ceremony.merging:T1 (batch of 3)",
    "ceremony.testing:batch-3",
    "ceremony.testing:T3",
    "ceremony.decided:T3",
    "ceremony.landing",
    "ceremony.reported",
]


@pytest.mark.parametrize("step", BATCH_STEPS)
def test_sigkill_in_batch_mode_then_resume(ceremony_repo: Path, orch: Orch, step: str) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", []), ("T3", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"})
    finished_task(repo, "T3", {"fail-T3": "3\n"})
    killed = orch("merge", "--batch", env={"ORCH_FAILPOINT": step})
    assert killed.returncode == -9, killed.output
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 1, r.output
    assert outcomes(r.stdout) == {"T1": "MERGED", "T2": "MERGED", "T3": "REVERTED"}
    files = git(repo, "ls-tree", "--name-only", "main").splitlines()
    assert "one.txt" in files and "two.txt" in files and "fail-T3" not in files


def test_commits_after_a_merge_are_pointed_out_not_merged(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", ["T1"])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"}, base="orch/T1")
    first = orch("merge", "T2", "--json")
    assert outcomes(first.stdout) == {"T2": "SKIPPED"}
    assert "not part of this merge: name it too" in first.stdout
    assert outcomes(orch("merge", "T1", "--json").stdout) == {"T1": "MERGED"}
    commit_file(repo / ".orch" / "worktrees" / "T1", "late.txt", "late\n")
    again = orch("merge", "--json")
    assert outcomes(again.stdout)["T1"] == "NOT_READY"
    assert "has commits since, which orch does not merge" in again.stdout
    assert "late.txt" not in git(repo, "ls-tree", "--name-only", "main")


def test_merge_skips_the_cli_framework_and_answers_as_the_cli_does(ceremony_repo: Path, orch: Orch) -> None:
    repo = ceremony_repo
    add_tasks_to_plan(repo, [("T1", "^src/", []), ("T2", "^src/", [])])
    finished_task(repo, "T1", {"src/a.py": "A = 1\n"})
    finished_task(repo, "T2", {"src/a.py": "A = 2\n"})  # conflicts with T1
    for args in [
        ("--dry-run",),
        ("--dry-run", "--json", "T2", "T1"),
        ("--dry-run", "--into", "main"),
        ("--resume", "--abort"),
        ("--dry-run", "--batch"),
        ("--resume", "T1"),
        ("--abort",),
        ("NOPE",),
    ]:
        assert_fast_path_agrees(repo, "merge", *args, heavy=("typer", "click"))
    # What the fast path leaves to the CLI still works there: --into=VALUE, a repeated --into, --help.
    assert orch.ok("merge", "--help").stdout.startswith("Usage: orch merge [OPTIONS] [ID]...")
    r = orch("merge", "--into", "main", "--into", "main", "--json", "T1")
    assert r.returncode == 0 and outcomes(r.stdout) == {"T1": "MERGED"}, r.output
    r = orch("merge", "--into=main", "--json")
    assert r.returncode == 1 and outcomes(r.stdout) == {"T2": "CONFLICT"}, r.output
