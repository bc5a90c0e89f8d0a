"""A spin killed while it checks out its worktree.

Real git, real ``orch spin`` processes: one killed with SIGKILL right after ``git worktree add
--no-checkout`` (``ORCH_FAILPOINT=spin.after_worktree_add``). Eight spins racing for the same task:
``tests/test_concurrency.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, write_plan

FILES = 1000


def plan_one(repo: Path, *task_ids: str) -> None:
    text = "".join(
        f"## {t}: Task {t}\n- scope: ^src/\n- deps: none\n- agent: shell\n- run: true\n\nBrief.\n\n" for t in task_ids
    )
    write_plan(repo, "# Plan: spin crashes\n\n" + text)
    git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


def many_files(repo: Path) -> list[str]:
    names = [f"src/d{n % 20:02d}/f{n:04d}.txt" for n in range(FILES)]
    for name in names:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"line of {name}\n" * 20)
    git(repo, "add", "src")
    git(repo, "commit", "-q", "-m", f"{FILES} files")
    return names


def private_gitdir(worktree: Path) -> Path:
    return Path((worktree / ".git").read_text().strip().removeprefix("gitdir: "))


def deletions(repo: Path, base: str, rev: str) -> str:
    return git(repo, "diff", "--name-only", "--diff-filter=D", base, rev)


def killed_spin(project: Path, orch: Orch, filled: str, names: list[str]) -> tuple[Path, str]:
    """``orch spin T1`` killed right after ``git worktree add --no-checkout``; with ``filled="half"``,
    what a git checkout killed half-way leaves: some of the files (the last one cut short) and the
    lock of the index it never wrote."""
    base = git(project, "rev-parse", "HEAD")
    r = orch("spin", "T1", env={"ORCH_FAILPOINT": "spin.after_worktree_add"})
    assert r.returncode == -9, r.output
    wt = project / ".orch/worktrees/T1"
    assert wt.is_dir() and git(project, "rev-parse", "orch/T1") == base
    if filled == "half":
        half = names[: FILES // 2]
        git(wt, "restore", "--source=HEAD", "--worktree", "--", *half)
        (wt / half[-1]).write_text("line of")
        lock = private_gitdir(wt) / "index.lock"
        lock.write_text("")
        os.utime(lock, (time.time() - 60, time.time() - 60))
    return wt, base


@pytest.mark.parametrize("filled", ["empty", "half"])
def test_spin_killed_during_checkout_is_never_snapshotted_as_deletions(project: Path, orch: Orch, filled: str) -> None:
    names = many_files(project)
    plan_one(project, "T1")
    wt, base = killed_spin(project, orch, filled, names)
    assert not (project / ".orch/run/tasks/T1/status.yaml").exists()
    r = orch("doctor")
    assert r.returncode == 1
    assert f"[found] half-checked-out: {wt}: orch spin T1 was killed while it checked out" in r.stdout, r.stdout
    for _ in range(2):
        r = orch("doctor", "--fix")
        assert r.returncode == 0, r.output
        assert "Traceback" not in r.output
    # Nothing on orch/T1 (nor under any ref orch made) deletes the files the checkout never wrote.
    for ref in git(project, "for-each-ref", "--format=%(refname)", "refs/heads/orch/", "refs/orch/").split():
        assert deletions(project, base, ref) == "", ref
    assert not wt.exists() and git(project, "branch", "--list", "orch/T1") == ""
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"
    # The task spins again from scratch, complete and clean.
    orch.ok("spin", "T1", "--no-start")
    assert git(wt, "status", "--porcelain") == ""
    assert all((wt / name).is_file() for name in names)
    assert yaml.safe_load((project / ".orch/run/tasks/T1/status.yaml").read_text())["state"] == "PENDING"


def test_respin_killed_during_checkout_is_found_and_undone(project: Path, orch: Orch) -> None:
    names = many_files(project)
    plan_one(project, "T1")
    orch.ok("spin", "T1", "--no-start")
    orch.ok("clean", "T1")  # CLEANED: spinning it again is allowed
    wt, base = killed_spin(project, orch, "half", names)
    r = orch("doctor")
    assert r.returncode == 1 and "[found] half-checked-out:" in r.stdout, r.stdout
    r = orch("clean", "--all")  # a CLEANED task is left alone, never snapshotted
    assert "snapshot" not in r.stdout
    orch.ok("doctor", "--fix")
    assert git(project, "for-each-ref", "refs/orch/snapshots/") == ""
    assert not wt.exists()
    orch.ok("spin", "T1", "--no-start")
    assert git(wt, "status", "--porcelain") == "" and all((wt / name).is_file() for name in names)


def test_clean_finishes_a_half_checkout_instead_of_snapshotting_it(project: Path, orch: Orch) -> None:
    names = many_files(project)
    plan_one(project, "T1")
    wt, base = killed_spin(project, orch, "half", names)
    # A status written by an older orch doctor that adopted the half-filled worktree as CRASHED.
    status = project / ".orch/run/tasks/T1/status.yaml"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(yaml.safe_dump({"id": "T1", "state": "CRASHED", "branch": "orch/T1", "worktree": str(wt)}))
    (wt / "notes.txt").write_text("a person wrote this here after the crash\n")
    r = orch.ok("clean", "T1")
    assert "removed worktree .orch/worktrees/T1" in r.stdout
    snapshots = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/").split()
    assert len(snapshots) == 1  # the person's file, kept; the files the checkout never wrote are no deletion
    assert deletions(project, base, snapshots[0]) == ""
    assert git(project, "show", f"{snapshots[0]}:notes.txt") == "a person wrote this here after the crash"
    assert git(project, "show", f"{snapshots[0]}:{names[FILES // 2 - 1]}") == git(
        project, "show", f"HEAD:{names[FILES // 2 - 1]}"
    )


def test_doctor_leaves_a_checkout_in_progress_alone(project: Path, orch: Orch) -> None:
    plan_one(project, "T1")
    base = git(project, "rev-parse", "HEAD")
    git(project, "update-ref", "refs/heads/orch/T1", base)
    git(project, "update-ref", "refs/orch/base/T1", base)
    wt = project / ".orch/worktrees/T1"
    git(project, "worktree", "add", "-q", "--no-checkout", str(wt), "orch/T1")
    from orch.core.refs import mark_checkout

    mark_checkout(wt)  # this very (live) process is the spin filling it
    r = orch("doctor", "--fix")
    assert r.returncode == 0, r.output
    assert f"[info] half-checked-out: {wt}: orch spin (pid {os.getpid()}) is checking out this worktree" in r.stdout
    assert wt.is_dir() and git(project, "rev-parse", "orch/T1") == base
