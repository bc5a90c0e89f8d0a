"""orch clean never strands finished work: what it keeps stays mergeable, and what it prints works.

``clean --all`` keeps finished tasks whose branch holds work not yet merged (``--force`` cleans
them); a cleaned task whose branch was kept is merged by naming it; every restore line and hint orch
prints is followed here literally, then the task is merged or spun; ``orch doctor`` reports work
that only ``refs/orch/kept/`` still holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from ceremony_helpers import add_tasks_to_plan, finished_task, run_as_printed, status_of
from conftest import Orch, git


def _outcomes(stdout: str) -> dict[str, tuple[str, str | None]]:
    return {t["task"]: (t["outcome"], t.get("detail")) for t in json.loads(stdout)["tasks"]}


def _lines(text: str, prefix: str) -> list[str]:
    return [line.strip().removeprefix(prefix) for line in text.splitlines() if line.strip().startswith(prefix)]


def test_clean_all_keeps_finished_work_that_is_not_merged(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("TM", "^", []), ("TF", "^", []), ("TH", "^", [])], run="true")
    finished_task(project, "TM", {"tm.txt": "TM\n"})
    finished_task(project, "TF", {"tf.txt": "TF\n"}, state="FAILED")
    finished_task(project, "TH", {"th.txt": "TH\n"})
    git(project, "merge", "-q", "--no-ff", "-m", "merge TH by hand", "orch/TH")  # all of TH is in main
    r = orch.ok("clean", "--all")
    assert (
        "TM: skipped: kept: SUCCESS and not merged yet, its branch orch/TM holds work not in main (merge it: "
        "orch merge TM; or clean it anyway: orch clean --all --force, which keeps its commits under "
        "refs/orch/kept/TM/)"
    ) in r.stdout
    assert "TF: cleaned (was FAILED)" in r.stdout and "TH: cleaned (was SUCCESS)" in r.stdout
    assert status_of(project, "TM")["state"] == "SUCCESS"
    assert (project / ".orch/worktrees/TM/tm.txt").is_file()
    data = json.loads(orch.ok("clean", "--all", "--json").stdout)
    assert [e["id"] for e in data["skipped"]] == ["TM"] and data["cleaned"] == []
    assert orch("merge", "TM").returncode == 0
    assert status_of(project, "TM")["state"] == "MERGED"
    forced = orch.ok("clean", "--all", "--force")
    assert forced.stdout.startswith("TM: cleaned (was MERGED)")


def test_a_cleaned_task_stays_mergeable_and_its_restore_line_works(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("TM", "^", []), ("TD", "^", ["TM"])], run="true")
    finished_task(project, "TM", {"tm.txt": "TM\n"})
    r = orch.ok("clean", "TM")
    assert "kept branch orch/TM (not merged yet: orch merge TM merges it; orch clean --force TM hides it" in r.stdout
    doctor = orch.ok("doctor")
    assert "[info] cleaned-unmerged: TM: cleaned (SUCCESS) before it was merged" in doctor.stdout
    restore = _lines(r.stdout, "restore: ")
    assert restore == ["git worktree add .orch/worktrees/TM orch/TM   # 1 commit(s) not in main"]
    run_as_printed(project, restore[0])
    merged = orch("merge", "TM", "--json")
    assert merged.returncode == 0, merged.output
    assert _outcomes(merged.stdout)["TM"][0] == "MERGED"
    assert "tm.txt" in git(project, "ls-tree", "--name-only", "main")
    st = status_of(project, "TM")
    assert st["state"] == "MERGED" and st["verdict"]["result"] == "OK"
    orch.ok("spin", "TD", "--no-start")
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"
    # Cleaning again takes the worktree the restore line put back, and the branch, merged now.
    again = orch.ok("clean").stdout
    assert again.startswith("TM: cleaned (was MERGED)\n  removed worktree .orch/worktrees/TM\n  deleted branch orch/TM")
    assert not (project / ".orch/worktrees/TM").exists()
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"


def test_clean_force_strands_nothing_doctor_says_so_and_the_restore_line_works(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("TM", "^", [])], run="true")
    tip = finished_task(project, "TM", {"tm.txt": "TM\n"})
    r = orch.ok("clean", "--all", "--force")
    kept = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/kept/TM/")
    assert git(project, "rev-parse", kept) == tip
    named = orch("merge", "TM", "--json")
    assert named.returncode == 1
    outcome, detail = _outcomes(named.stdout)["TM"]
    assert outcome == "NOT_READY" and f"git branch orch/TM {kept}" in (detail or "")
    doctor = orch("doctor")
    assert doctor.returncode == 1
    assert f"[manual] stranded-work: TM: cleaned with --force (SUCCESS) before it was merged: its work is only " \
        f"under {kept}, which orch merge TM cannot see" in doctor.stdout
    assert f"fix: restore its branch and merge it: git branch orch/TM {kept} && orch merge TM" in doctor.stdout
    run_as_printed(project, _lines(r.stdout, "restore: ")[0])
    merged = orch("merge", "TM", "--json")
    assert merged.returncode == 0, merged.output
    assert _outcomes(merged.stdout)["TM"][0] == "MERGED"
    assert status_of(project, "TM")["state"] == "MERGED"
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"


def test_the_fix_doctor_prints_for_stranded_work_works(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("TM", "^", [])], run="true")
    finished_task(project, "TM", {"tm.txt": "TM\n"})
    orch.ok("clean", "TM", "--force")
    fix = _lines(orch("doctor").stdout, "fix: restore its branch and merge it: ")
    run_as_printed(project, fix[0].split("; or,", 1)[0])
    assert status_of(project, "TM")["state"] == "MERGED"
    assert "tm.txt" in git(project, "ls-tree", "--name-only", "main")


def test_a_cleaned_task_with_a_kept_branch_is_spun_again_as_the_error_says(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("TM", "^", [])], run="true")
    tip = finished_task(project, "TM", {"tm.txt": "TM\n"})
    cleaned = orch.ok("clean", "TM")
    run_as_printed(project, _lines(cleaned.stdout, "restore: ")[0])  # the worktree is back, on orch/TM
    r = orch("spin", "TM", "--no-start")
    assert r.returncode == 3
    assert "task TM was cleaned, but its branch orch/TM is still there (1 commit(s) not in main)" in r.stderr
    hint = r.stderr.split("hint: ", 1)[1].strip()
    assert hint.startswith("merge them: orch merge TM; or start over from main: orch clean --force TM (")
    assert "git branch -D" not in r.stderr  # never a hint that throws the work away
    run_as_printed(project, hint.split("start over from main: ", 1)[1].split(" (", 1)[0])  # orch clean --force TM
    assert not (project / ".orch/worktrees/TM").exists()  # the restored worktree went too
    kept = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/kept/TM/")
    assert git(project, "rev-parse", kept) == tip
    spun = orch.ok("spin", "TM", "--no-start")
    assert spun.stdout.startswith("TM: orch/TM at")
    st = status_of(project, "TM")
    assert st["state"] == "PENDING" and kept in st["kept_refs"]
    assert git(project, "rev-parse", "orch/TM") == git(project, "rev-parse", "main")


def test_clean_never_deletes_the_branch_a_task_branch_was_made_to_name(project: Path, orch: Orch) -> None:
    """A hostile agent made orch/T1 a symbolic ref to main: deleting 'orch/T1' must not delete main."""
    add_tasks_to_plan(project, [("T1", "^", [])], run="true")
    finished_task(project, "T1", {"t1.txt": "T1\n"})
    assert orch("merge", "T1").returncode == 0
    main = git(project, "rev-parse", "main")
    git(project, "symbolic-ref", "refs/heads/orch/T1", "refs/heads/main")
    orch("clean", "T1")
    assert git(project, "rev-parse", "main") == main


# -- a finished task's branch deleted after its run (by another agent, say) --------------------------


def _deleted_after_its_run(project: Path) -> str:
    add_tasks_to_plan(project, [("TD", "^", [])], run="true")
    sha = finished_task(project, "TD", {"td.txt": "TD\n"})
    git(project, "update-ref", "-d", "refs/heads/orch/TD")  # no ref holds its commit now
    assert git(project, "for-each-ref", "--contains", sha) == ""
    return sha


def test_clean_puts_a_deleted_branch_back_before_it_removes_the_worktree(project: Path, orch: Orch) -> None:
    sha = _deleted_after_its_run(project)
    r = orch.ok("clean", "--all", "--force")
    said = f"orch/TD was deleted after its run: orch restored it at {sha[:12]} (from the worktree's HEAD log)"
    assert said in r.stdout, r.stdout
    kept = _lines(r.stdout, "kept its commits as ")
    assert len(kept) == 1 and git(project, "rev-parse", kept[0]) == sha  # the worktree (and its HEAD log) is gone
    assert not (project / ".orch/worktrees/TD").exists()
    assert f"| RESTORE | {said}" in (project / ".orch/run/log").read_text()


def test_merge_puts_a_deleted_branch_back_merges_it_and_says_so(project: Path, orch: Orch) -> None:
    sha = _deleted_after_its_run(project)
    r = orch("merge", "--json")
    assert r.returncode == 0, r.output
    said = f"orch/TD was deleted after its run: orch restored it at {sha[:12]} (from the worktree's HEAD log)"
    assert _outcomes(r.stdout) == {"TD": ("MERGED", said)}
    assert said in (project / json.loads(r.stdout)["report"]).read_text()
    assert status_of(project, "TD")["reason"] == said
    assert git(project, "merge-base", "--is-ancestor", sha, "main") == ""
