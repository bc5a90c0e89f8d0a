"""Hostile agents against the supervisor: a worktree's .git pointed at the main repository, HEAD put on
main, another task's branch deleted while it runs, orch's run files replaced by links.

Each agent is a real shell script run through the ``shell`` preset's ``run:`` field; orch and git are
real processes. What is checked is what the user keeps: main's tip, their index and working tree,
their files, and every commit a task made. The box is off here: these are the defences for where
bubblewrap is missing; tests/scenarios runs the same attacks with the box on, where they fail at once.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

import pytest
from conftest import Orch, git, no_box, status_of, wait_state, write_plan


@pytest.fixture(autouse=True)
def _unboxed(project: Path) -> None:
    no_box(project)

BOUNDED_WAIT = 'n=0; while [ ! -e "$1" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done'


def task(task_id: str, script: Path, *, extra: str = "") -> str:
    lines = [f"## {task_id}: Task {task_id}", "- scope: ^src/", "- deps: none", "- agent: shell"]
    lines.append(f"- run: sh {shlex.quote(str(script))}")
    return "\n".join(lines) + ("\n" + extra if extra else "") + f"\n\nBrief of {task_id}.\n\n"


def plan(repo: Path, *tasks: str) -> None:
    write_plan(repo, "# Plan: escapes\n\n" + "".join(tasks))
    git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("set -e\n" + body)
    return path


def user_state(repo: Path) -> dict[str, str]:
    """What the user has: main's tip, the index, staged and unstaged changes, the README."""
    return {
        "main": git(repo, "rev-parse", "refs/heads/main"),
        "head": git(repo, "symbolic-ref", "HEAD"),
        "index": git(repo, "ls-files", "-s"),
        "staged": git(repo, "diff", "--cached", "--name-status"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "readme": (repo / "README.md").read_text(),
    }


def user_with_work_in_progress(repo: Path) -> None:
    """A user with a staged new file and an unstaged edit, as people have while agents run."""
    (repo / "staged.txt").write_text("staged by the user\n")
    git(repo, "add", "staged.txt")
    (repo / "README.md").write_text("hello\nthe user's unsaved line\n")


# -- 4: the worktree's git is orch's, not what its .git file says ----------------------------------


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (
            'printf "gitdir: %s\\n" "$(dirname "$ORCH_HOME")/.git" > .git',
            "the worktree's .git file was changed to point at",
        ),
        ("rm .git", "the worktree's .git file was deleted"),  # git would search upwards: the user's repository
    ],
    ids=["pointed-at-main", "deleted"],
)
def test_tampered_git_file_commits_nothing_through_it(
    project: Path, orch: Orch, tmp_path: Path, tamper: str, said: str
) -> None:
    agent = script(
        tmp_path, "gitfile.sh", f'mkdir -p src && echo work > src/work.txt\necho "agent edit" >> README.md\n{tamper}\n'
    )
    plan(project, task("T1", agent, extra="- accept: true\n- tdd_gate: false"))
    user_with_work_in_progress(project)
    base = git(project, "rev-parse", "HEAD")
    before = user_state(project)
    orch.ok("spin", "T1")
    state = wait_state(orch, "T1")
    assert user_state(project) == before  # main, the index (staged.txt still staged), the files
    assert state == "FAILED"
    assert before["staged"] == "A\tstaged.txt"
    assert git(project, "rev-parse", "orch/T1") == base  # nothing was committed through the .git file
    st = status_of(project, "T1")
    assert said in st["reason"], st["reason"]
    assert "orch ran no git through it" in st["reason"]
    snap = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/")
    assert snap and snap in st["reason"] and snap in st["kept_refs"]
    assert git(project, "show", f"{snap}:src/work.txt") == "work"
    assert git(project, "show", f"{snap}:README.md").endswith("agent edit")
    assert git(project, "rev-parse", f"{snap}^") == base
    assert "accept" not in st  # a tampered run is not accepted
    wt = project / ".orch/worktrees/T1"
    assert git(wt, "rev-parse", "--absolute-git-dir").endswith("/.git/worktrees/T1")  # put back
    assert "| REFUSE |" in (project / ".orch/run/log").read_text()


def test_doctor_fix_of_a_crashed_tampered_worktree_commits_nothing_on_main(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    agent = script(
        tmp_path,
        "crash.sh",
        'mkdir -p src && echo wip > src/wip.txt\nprintf "gitdir: %s\\n" "$(dirname "$ORCH_HOME")/.git" > .git\n'
        "echo hanging\nexec sleep 600\n",
    )
    plan(project, task("T1", agent))
    user_with_work_in_progress(project)
    base = git(project, "rev-parse", "HEAD")
    orch.ok("spin", "T1")
    log = project / ".orch/run/tasks/T1/agent.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "hanging" in log.read_text() and status_of(project, "T1").get("pid")):
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.1)
    st = status_of(project, "T1")
    os.kill(st["supervisor_pid"], signal.SIGKILL)
    os.killpg(st["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while status_of(project, "T1")["state"] != "CRASHED":
        orch("status")
        assert time.monotonic() < deadline, "not CRASHED"
        time.sleep(0.2)
    before = user_state(project)
    orch("doctor", "--fix")
    assert user_state(project) == before
    assert git(project, "rev-parse", "orch/T1") == base
    snap = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/")
    assert snap and git(project, "show", f"{snap}:src/wip.txt") == "wip"
    assert snap in status_of(project, "T1")["kept_refs"]


def test_head_put_on_main_never_moves_main(project: Path, orch: Orch, tmp_path: Path) -> None:
    agent = script(
        tmp_path, "head.sh", "mkdir -p src && echo work > src/work.txt\ngit symbolic-ref HEAD refs/heads/main\n"
    )
    plan(project, task("T1", agent))
    user_with_work_in_progress(project)
    before = user_state(project)
    orch.ok("spin", "T1")
    wait_state(orch, "T1")
    assert user_state(project) == before
    assert git(project, "show", "orch/T1:src/work.txt") == "work"  # the work is on the task's branch
    st = status_of(project, "T1")
    assert "the agent left HEAD on main; orch/T1 was moved forward" in st["reason"], st["reason"]
    assert git(project / ".orch/worktrees/T1", "symbolic-ref", "HEAD") == "refs/heads/orch/T1"


def test_branch_made_a_name_for_main_never_moves_main(project: Path, orch: Orch, tmp_path: Path) -> None:
    agent = script(
        tmp_path,
        "symref.sh",
        "mkdir -p src && echo work > src/work.txt\ngit symbolic-ref refs/heads/orch/T1 refs/heads/main\n",
    )
    plan(project, task("T1", agent))
    user_with_work_in_progress(project)
    base = git(project, "rev-parse", "HEAD")
    before = user_state(project)
    orch.ok("spin", "T1")
    state = wait_state(orch, "T1")
    assert user_state(project) == before  # main did not move
    assert state == "FAILED"
    assert git(project, "symbolic-ref", "-q", "refs/heads/orch/T1", check=False) == ""  # a branch again
    assert git(project, "rev-parse", "orch/T1^") == base
    assert git(project, "show", "orch/T1:src/work.txt") == "work"
    st = status_of(project, "T1")
    assert "orch/T1 was made a symbolic ref to refs/heads/main while the task ran" in st["reason"], st["reason"]


# -- 7: another task's branch deleted while it runs ------------------------------------------------


def _branch_deleting_pair(tmp_path: Path, *, commit_after: bool) -> tuple[Path, Path, Path]:
    flags = tmp_path / "flags"
    flags.mkdir()
    f = shlex.quote(str(flags))
    after = 'git add src/b2.txt && git commit -q -m "B work 2"\n' if commit_after else ""
    b = script(
        tmp_path,
        "b.sh",
        'mkdir -p src && echo one > src/b1.txt && git add src/b1.txt && git commit -q -m "B work 1"\n'
        f"git rev-parse HEAD > {f}/b1\n"
        f"wait_for() {{ {BOUNDED_WAIT}; }}\nwait_for {f}/deleted\n"
        "echo two > src/b2.txt\n" + after,
    )
    a = script(
        tmp_path,
        "a.sh",
        f"wait_for() {{ {BOUNDED_WAIT}; }}\nwait_for {f}/b1\n"
        "git branch -D orch/B 2>/dev/null || git update-ref -d refs/heads/orch/B\n"
        f"touch {f}/deleted\n",
    )
    return a, b, flags


def test_a_deleted_branch_is_restored_and_its_commits_survive_clean(project: Path, orch: Orch, tmp_path: Path) -> None:
    a, b, flags = _branch_deleting_pair(tmp_path, commit_after=False)
    plan(project, task("A", a), task("B", b))
    root = git(project, "rev-list", "--max-parents=0", "HEAD")
    orch.ok("spin", "A", "B")
    assert wait_state(orch, "A") == "SUCCESS"
    state = wait_state(orch, "B")
    b1 = (flags / "b1").read_text().strip()
    git(project, "merge-base", "--is-ancestor", b1, "orch/B")  # B's commit is on its branch
    assert git(project, "rev-list", "--max-parents=0", "orch/B") == root  # no parentless snapshot
    assert state == "SUCCESS"  # nothing was lost
    st = status_of(project, "B")
    assert "orch/B was deleted while the task ran: orch restored it at" in st["reason"], st["reason"]
    tip = git(project, "rev-parse", "orch/B")
    assert st["head_sha"] == tip
    assert git(project, "rev-parse", f"{tip}^") == b1  # the snapshot sits on B's own commit
    assert git(project, "show", f"{tip}:src/b2.txt") == "two"
    assert git(project, "rev-list", "--max-parents=0", tip) == root  # no parentless snapshot
    assert "| RESTORE |" in (project / ".orch/run/log").read_text()
    assert "B: skipped: kept: SUCCESS and not merged yet" in orch("clean", "--all").stdout
    orch.ok("clean", "B")  # by name it is cleaned; its branch, not merged, is kept
    assert status_of(project, "B")["state"] == "CLEANED"
    git(project, "merge-base", "--is-ancestor", b1, "orch/B")  # still reachable from orch/B


def test_a_commit_on_a_deleted_branch_is_kept_and_the_run_is_not_a_success(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    a, b, flags = _branch_deleting_pair(tmp_path, commit_after=True)
    plan(project, task("A", a), task("B", b))
    root = git(project, "rev-list", "--max-parents=0", "HEAD")
    orch.ok("spin", "A", "B")
    state = wait_state(orch, "B")
    b1 = (flags / "b1").read_text().strip()
    git(project, "merge-base", "--is-ancestor", b1, "orch/B")
    assert state == "FAILED"  # its branch was taken from under it: a person looks before a merge
    st = status_of(project, "B")
    assert "which does not hold its work" in st["reason"], st["reason"]
    kept = [r for r in st["kept_refs"] if r.startswith("refs/orch/kept/B/")]
    assert kept and git(project, "log", "-1", "--format=%s", kept[0]) == "B work 2"
    git(project, "merge-base", "--is-ancestor", b1, "orch/B")
    assert git(project, "rev-list", "--max-parents=0", "orch/B") == root
    assert git(project, "show", "orch/B:src/b2.txt") == "two"
    orch.ok("clean", "--all")
    git(project, "merge-base", "--is-ancestor", b1, "orch/B")
    assert git(project, "rev-parse", kept[0])


# -- 8: orch never writes through a link in its run folder ------------------------------------------


def test_linked_run_files_are_never_written_through(project: Path, orch: Orch, tmp_path: Path) -> None:
    agent = script(
        tmp_path,
        "links.sh",
        'run="$ORCH_HOME/run/tasks/$ORCH_TASK"\nreadme="$(dirname "$ORCH_HOME")/README.md"\n'
        'ln -sf "$readme" "$run/accept.log"\nln -sf "$readme" "$run/agent.log"\n'
        'ln -sf "$readme" "$ORCH_HOME/run/log"\n'
        "echo output after the links\nmkdir -p src && echo x > src/x.txt\n",
    )
    plan(project, task("T1", agent, extra="- accept: echo ACCEPTED\n- tdd_gate: false"))
    readme = (project / "README.md").read_text()
    orch.ok("spin", "T1")
    state = wait_state(orch, "T1")
    assert (project / "README.md").read_text() == readme
    assert state == "FAILED"
    st = status_of(project, "T1")
    link = f"a symbolic link to {project / 'README.md'}: orch removed it and never wrote through it"
    assert f"agent.log was {link}" in st["reason"], st["reason"]
    assert f"accept.log was {link}" in st["reason"]
    log = project / ".orch/run/tasks/T1/agent.log"
    assert not log.is_symlink() and "output after the links" in log.read_text()  # what the agent wrote
    events = project / ".orch/run/log"
    assert not events.is_symlink() and "| REFUSE | log was a symbolic link to" in events.read_text()
    assert "| REFUSE | accept.log was a symbolic link to" in events.read_text()
    assert git(project, "show", "orch/T1:src/x.txt") == "x"  # the work itself is kept as usual


def test_a_run_folder_replaced_by_a_link_is_not_written_through(project: Path, orch: Orch, tmp_path: Path) -> None:
    (project / "docs").mkdir()
    (project / "docs/guide.md").write_text("the user's guide\n")
    agent = script(
        tmp_path,
        "folder.sh",
        'run="$ORCH_HOME/run/tasks/$ORCH_TASK"\nmv "$run" "$run.moved"\n'
        'ln -s "$(dirname "$ORCH_HOME")/docs" "$run"\nmkdir -p src && echo x > src/x.txt\n',
    )
    plan(project, task("T1", agent, extra="- accept: echo ACCEPTED\n- tdd_gate: false"))
    orch.ok("spin", "T1")
    folder = project / ".orch/run/tasks/T1"
    deadline = time.monotonic() + 90  # `orch wait` reads the status through the link until orch replaces it
    while (
        folder.is_symlink() or not (folder / "status.yaml").exists() or status_of(project, "T1")["state"] == "RUNNING"
    ):
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)
    assert wait_state(orch, "T1") == "FAILED"
    assert sorted(p.name for p in (project / "docs").iterdir()) == ["guide.md"]
    assert (project / "docs/guide.md").read_text() == "the user's guide\n"
    assert folder.is_dir() and not folder.is_symlink()
    st = status_of(project, "T1")
    assert "the run folder .orch/run/tasks/T1 was a symbolic link to" in st["reason"], st["reason"]


def test_orchs_writers_never_follow_a_link(tmp_path: Path) -> None:
    from orch.agents.taskfiles import open_run_file
    from orch.core.errors import EnvError
    from orch.core.store import atomic_write

    mine = tmp_path / "user.txt"
    mine.write_text("the user's\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.yaml").symlink_to(mine)
    atomic_write(run / "status.yaml", "state: FAILED\n")  # the link is replaced, not followed
    assert mine.read_text() == "the user's\n" and not (run / "status.yaml").is_symlink()
    os.link(mine, run / "accept.log")  # a hard link: O_NOFOLLOW alone would write into the user's file
    fd, note = open_run_file(run / "accept.log", append=False)
    os.write(fd, b"accept output\n")
    os.close(fd)
    assert mine.read_text() == "the user's\n" and note == (
        "accept.log was a hard link to another file: orch removed it and never wrote through it"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    with pytest.raises(EnvError, match="its folder is a symbolic link"):
        atomic_write(tmp_path / "linked" / "status.yaml", "x\n")
    assert list(elsewhere.iterdir()) == []
