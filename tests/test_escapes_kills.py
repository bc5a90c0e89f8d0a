"""``orch merge`` killed (SIGKILL) in the middle of a git command: the worktree add of its integration
worktree, and the fast-forward of the person's checkout. The next ``--resume``, ``--abort`` or
``doctor --fix`` repairs what the killed git left, and touches nothing of the person's.

The kills are real: ``ORCH_FAILPOINT=ceremony.worktree_add`` and ``=ceremony.fast_forward`` make git
run a hook that SIGKILLs orch and git right when git updates the ref
(``orch.integrate.journal.fault_hooks``); the last test kills them from a smudge filter while git
writes the person's files.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ceremony_helpers import add_tasks_to_plan, finished_task, status_of, with_check
from conftest import Orch, commit_file, git


@pytest.fixture
def proj(project: Path) -> Path:
    """The project with the check as its test command and task T1 finished (one.txt, sub/two.txt)."""
    with_check(project)
    add_tasks_to_plan(project, [("T1", "^", [])])
    finished_task(project, "T1", {"one.txt": "1\n", "sub/two.txt": "2\n"})
    return project


def rev_list_all(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "rev-list", "--all"], cwd=repo, capture_output=True, text=True, check=False)


def porcelain(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True, text=True
    )
    return out.stdout.splitlines()


# -- item 9: killed during git worktree add ----------------------------------------------------------


def kill_in_worktree_add(repo: Path, orch: Orch) -> Path:
    killed = orch("merge", env={"ORCH_FAILPOINT": "ceremony.worktree_add"})
    assert killed.returncode == -9, killed.output
    admin = repo / ".git" / "worktrees" / "_integration"
    assert (admin / "locked").read_text().startswith("initializing")
    assert (admin / "HEAD.lock").exists()
    broken = rev_list_all(repo)
    assert broken.returncode != 0 and "worktrees/_integration/HEAD" in broken.stderr
    return admin


def test_killed_in_the_worktree_add_then_resume(proj: Path, orch: Orch) -> None:
    repo = proj
    admin = kill_in_worktree_add(repo, orch)
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 0, r.output
    assert {t["task"]: t["outcome"] for t in json.loads(r.stdout)["tasks"]} == {"T1": "MERGED"}
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "main")
    assert rev_list_all(repo).returncode == 0
    assert not (admin / "locked").exists() and not (admin / "HEAD.lock").exists()
    git(repo, "fsck", "--no-progress", "--no-dangling")


def test_killed_in_the_worktree_add_then_abort(proj: Path, orch: Orch) -> None:
    repo = proj
    kill_in_worktree_add(repo, orch)
    before = git(repo, "rev-parse", "main")
    aborted = orch("merge", "--abort")
    assert aborted.returncode == 0, aborted.output
    assert git(repo, "rev-parse", "main") == before
    assert rev_list_all(repo).returncode == 0
    assert orch("merge").returncode == 0


def test_doctor_finds_and_repairs_the_half_made_worktree(proj: Path, orch: Orch) -> None:
    repo = proj
    kill_in_worktree_add(repo, orch)
    found = orch("doctor")
    assert found.returncode == 1, found.output
    assert "half-made-integration-worktree" in found.stdout
    fixed = orch("doctor", "--fix")
    assert "[fixed] half-made-integration-worktree" in fixed.stdout, fixed.output
    assert rev_list_all(repo).returncode == 0
    assert git(repo, "gc", "--quiet") == ""
    r = orch("merge", "--resume")
    assert r.returncode == 0, r.output


# -- item 10: killed while fast-forwarding the person's checkout --------------------------------------


def mine(repo: Path) -> None:
    """The person's own uncommitted work, on paths the merge does not touch."""
    (repo / "README.md").write_text("my unsaved edit\n")
    (repo / "notes.txt").write_text("my notes\n")


MINE = [" M README.md", "?? notes.txt"]


def kill_in_fast_forward(repo: Path, orch: Orch) -> str:
    before = git(repo, "rev-parse", "main")
    mine(repo)
    killed = orch("merge", env={"ORCH_FAILPOINT": "ceremony.fast_forward"})
    assert killed.returncode == -9, killed.output
    assert git(repo, "rev-parse", "main") == before
    assert (repo / ".git" / "refs" / "heads" / "main.lock").exists()
    assert "A  one.txt" in porcelain(repo)  # staged files nobody edited: what the killed git wrote
    return before


def test_killed_while_fast_forwarding_then_resume(proj: Path, orch: Orch) -> None:
    repo = proj
    before = kill_in_fast_forward(repo, orch)
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 0, r.output
    data = json.loads(r.stdout)
    assert data["landed"] == "fast-forward" and data["base_before"] == before
    assert git(repo, "rev-parse", "main") == data["base_after"] != before
    assert porcelain(repo) == MINE
    assert (repo / "README.md").read_text() == "my unsaved edit\n" and (repo / "sub" / "two.txt").is_file()
    assert status_of(repo, "T1")["state"] == "MERGED"
    assert not (repo / ".git" / "refs" / "heads" / "main.lock").exists()


def test_killed_while_fast_forwarding_then_abort_and_merge_again(proj: Path, orch: Orch) -> None:
    repo = proj
    before = kill_in_fast_forward(repo, orch)
    aborted = orch("merge", "--abort")
    assert aborted.returncode == 0, aborted.output
    assert git(repo, "rev-parse", "main") == before
    assert porcelain(repo) == MINE
    assert not (repo / "one.txt").exists() and not (repo / "sub").exists()
    again = orch("merge", "--json")
    assert again.returncode == 0, again.output
    assert json.loads(again.stdout)["landed"] == "fast-forward"  # lands, does not park
    assert porcelain(repo) == MINE


KILLER = """#!/bin/sh
# smudge filter: the first time it runs in the person's checkout, SIGKILL orch and its git there
if [ "$(pwd -P)" = {root} ] && [ -e {once} ]; then
    rm -f {once}
    chain=""
    p=$PPID
    while [ "$p" -gt 1 ]; do
        case "$(cat /proc/$p/comm)" in
            git*) chain="$chain $p" ;;
            python*) kill -9 "$p" $chain; sleep 5; exit 1 ;;
        esac
        p=$(cut -d' ' -f4 /proc/$p/stat)
    done
fi
exec cat
"""


def test_killed_while_git_writes_the_files_then_resume(project: Path, orch: Orch, tmp_path: Path) -> None:
    """SIGKILL in the middle of the checkout: a.txt written, z.txt not, the index not written (index.lock)."""
    repo = with_check(project)
    once = tmp_path / "once"
    killer = tmp_path / "killer.sh"
    killer.write_text(KILLER.format(root=repo.resolve(), once=once))
    git(repo, "config", "filter.killer.smudge", f"sh {killer}")
    git(repo, "config", "filter.killer.clean", "cat")
    orch.ok("doctor", "--accept-git-config")  # a person's own filter: orch runs it once accepted
    commit_file(repo, ".gitattributes", "z.txt filter=killer\n")
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"a.txt": "a\n", "z.txt": "z\n"})
    before = git(repo, "rev-parse", "main")
    mine(repo)
    once.write_text("")
    killed = orch("merge")
    assert killed.returncode == -9, killed.output
    assert (repo / ".git" / "index.lock").exists() and (repo / "a.txt").is_file()
    assert git(repo, "rev-parse", "main") == before
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 0, r.output
    assert json.loads(r.stdout)["landed"] == "fast-forward"
    assert porcelain(repo) == MINE
    assert (repo / "z.txt").read_text() == "z\n"
