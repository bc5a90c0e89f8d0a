"""Escapes, item 5: git config, hooks and attributes an agent plants never run under orch's git.

An agent runs as the same user as orch: without a sandbox it can write the shared git folder
(``.git/config``, ``.git/hooks``, ``.git/info/attributes``), its worktree's own ``config.worktree``
and the user's ``~/.gitconfig``. Each test plants one mechanism as such an agent would, naming a
program that appends to a marker file, then runs orch for real (spin, a supervised run's snapshot,
merge, clean): orch runs with the mechanism switched off, or refuses and names it. The marker must
never appear. The marker is read before the test runs any git of its own (which would run it).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from ceremony_helpers import add_tasks_to_plan, finished_task
from conftest import Orch, commit_file, git, no_box

HOOKS = [
    "pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "pre-merge-commit", "post-merge",
    "post-checkout", "reference-transaction", "post-index-change", "post-rewrite", "pre-auto-gc",
]  # fmt: skip


class Evil:
    """A program that records each run in ``marker`` and passes its input through (a working filter)."""

    def __init__(self, tmp: Path) -> None:
        self.marker = tmp / "ran"
        self.script = tmp / "evil.sh"
        self.script.write_text(f'#!/bin/sh\necho "$0 $*" >> {shlex.quote(str(self.marker))}\ncat\n')
        self.script.chmod(0o755)

    def ran(self) -> str:
        return self.marker.read_text() if self.marker.exists() else ""

    def hooks(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in HOOKS:
            (folder / name).write_text(f"#!/bin/sh\necho hook {name} >> {shlex.quote(str(self.marker))}\n")
            (folder / name).chmod(0o755)


def config(repo: Path, *pairs: tuple[str, str], file: Path | None = None) -> None:
    """Write config as an agent would (plain ``git config``, no orch involved)."""
    for key, value in pairs:
        where = ["--file", str(file)] if file else []
        git(repo, "config", *where, key, value)


# What an agent plants. The switched-off kind: orch just works, and nothing runs.
def plant_hooks(repo: Path, evil: Evil) -> None:
    evil.hooks(repo / ".git" / "hooks")
    config(repo, ("commit.gpgSign", "true"), ("tag.gpgSign", "true"), ("gpg.program", str(evil.script)))


def plant_hooks_path(repo: Path, evil: Evil) -> None:
    evil.hooks(evil.script.parent / "planted-hooks")
    config(repo, ("core.hooksPath", str(evil.script.parent / "planted-hooks")), ("commit.gpgSign", "true"))
    config(repo, ("gpg.program", str(evil.script)), ("merge.verifySignatures", "true"))


Planter = Callable[[Path, Evil], None]
NamingPlanter = Callable[[Path, Evil], str]  # returns what orch's refusal must name
SWITCHED_OFF = {"hooks+signing": plant_hooks, "hooksPath+signing": plant_hooks_path}


# The refused kind: a filter (or merge driver) that attributes select, defined where git reads config.
def _attributes(repo: Path, line: str) -> None:
    info = repo / ".git" / "info"
    info.mkdir(exist_ok=True)
    (info / "attributes").write_text(line + "\n")


def plant_filter(repo: Path, evil: Evil) -> str:
    config(repo, ("filter.evil.clean", str(evil.script)), ("filter.evil.smudge", str(evil.script)))
    _attributes(repo, "* filter=evil")
    return "filter.evil.clean"


def plant_include(repo: Path, evil: Evil) -> str:
    included = evil.script.parent / "included.cfg"
    included.write_text(f'[filter "inc"]\n\tclean = {evil.script}\n\tsmudge = {evil.script}\n')
    config(repo, ("include.path", str(included)))
    _attributes(repo, "* filter=inc")
    return f"filter.inc.clean='{evil.script}' (set in {included})"


def plant_global(repo: Path, evil: Evil) -> str:
    home = Path(os.environ["HOME"])
    planted = [("filter.home.smudge", str(evil.script)), ("filter.home.clean", str(evil.script))]
    config(repo, *planted, file=home / ".gitconfig")
    _attributes(repo, "* filter=home")
    return f"set in {home / '.gitconfig'}"


def plant_merge_driver(repo: Path, evil: Evil) -> str:
    config(repo, ("merge.evil.driver", f"{evil.script} %O %A %B && echo PLANTED > %A"))
    _attributes(repo, "* merge=evil")
    return "merge.evil.driver"


REFUSED = {"filter": plant_filter, "include": plant_include, "global": plant_global, "merge-driver": plant_merge_driver}


# -- orch spin ---------------------------------------------------------------------------------------


def one_task(repo: Path, task_id: str = "T1", run: str = "true") -> None:
    heading = f"## {task_id}: Task {task_id}\n- scope: ^src/\n- deps: none\n- agent: shell\n- run: {run}\n"
    (repo / ".orch" / "plan.md").write_text(f"# Plan: escapes\n\n{heading}\nBrief of {task_id}.\n")
    git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


@pytest.mark.parametrize("plant", SWITCHED_OFF.values(), ids=SWITCHED_OFF.keys())
def test_spin_runs_no_planted_hook(project: Path, orch: Orch, tmp_path: Path, plant: Planter) -> None:
    evil = Evil(tmp_path)
    one_task(project)
    plant(project, evil)
    r = orch("spin", "T1", "--no-start")
    assert evil.ran() == ""
    assert r.returncode == 0, r.output
    assert (project / ".orch/worktrees/T1/README.md").is_file()


@pytest.mark.parametrize("plant", REFUSED.values(), ids=REFUSED.keys())
def test_spin_refuses_a_planted_filter_and_creates_nothing(
    project: Path, orch: Orch, tmp_path: Path, plant: NamingPlanter
) -> None:
    evil = Evil(tmp_path)
    one_task(project)
    named = plant(project, evil)
    r = orch("spin", "T1", "--no-start")
    assert evil.ran() == ""
    assert r.returncode == 4, r.output
    assert "git config names a program orch has not accepted" in r.stderr and named in r.stderr
    assert "orch spin changed nothing" in r.stderr
    assert "hint: if you, a person, set it up: orch doctor --accept-git-config" in r.stderr
    assert git(project, "branch", "--list", "orch/T1") == ""
    assert not (project / ".orch/worktrees/T1").exists()


# -- the supervisor's snapshot of what an agent left uncommitted ---------------------------------------

# The hostile agent: plants a mechanism while it runs (as any agent could), leaves work uncommitted.
AGENT = textwrap.dedent(
    """
    import os, subprocess, sys
    how, script = sys.argv[1], sys.argv[2]
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True).stdout.strip()
    def config(*args):
        subprocess.run(["git", "config", *args], check=True)
    if how in ("hooks", "hooksPath"):  # detached first: orch then moves the branch (reference-transaction)
        subprocess.run(["git", "checkout", "-q", "--detach"], check=True)
        hooks = os.path.join(common, "hooks") if how == "hooks" else script + ".hooks"
        os.makedirs(hooks, exist_ok=True)
        for name in sys.argv[3:]:
            path = os.path.join(hooks, name)
            open(path, "w").write("#!/bin/sh\\necho hook " + name + " >> " + script + ".marker\\n")
            os.chmod(path, 0o755)
        if how == "hooksPath":
            config("core.hooksPath", hooks)
        config("commit.gpgSign", "true")
        config("gpg.program", script)
    elif how == "filter":
        config("filter.evil.clean", script)
        open(".gitattributes", "w").write("* filter=evil\\n")
    elif how == "include":
        open(script + ".cfg", "w").write('[filter "inc"]\\n\\tclean = ' + script + "\\n")
        config("include.path", script + ".cfg")
        open(".gitattributes", "w").write("* filter=inc\\n")
    elif how == "merge-driver":
        config("merge.evil.driver", script + " %O %A %B")
        open(".gitattributes", "w").write("* merge=evil\\n")
    elif how == "worktree-config":  # seen only from inside this worktree
        config("extensions.worktreeConfig", "true")
        config("--worktree", "filter.mine.clean", script)
        open(".gitattributes", "w").write("* filter=mine\\n")
    os.makedirs("src", exist_ok=True)
    open("src/wip.txt", "w").write("work in progress\\n")
    """
)


def run_hostile_agent(project: Path, orch: Orch, tmp_path: Path, evil: Evil, how: str) -> dict:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    argv = [sys.executable, str(agent), how, str(evil.script), *HOOKS]
    no_box(project)  # what orch's own git does about it; in the box the agent cannot plant it at all
    one_task(project, run=shlex.join(argv))
    orch.ok("spin", "T1")
    r = orch("wait", "T1", "--timeout", "90")
    assert r.returncode in (0, 1), r.output
    return yaml.safe_load((project / ".orch/run/tasks/T1/status.yaml").read_text())


@pytest.mark.parametrize("how", ["hooks", "hooksPath"])
def test_snapshot_runs_no_hook_and_signs_nothing_an_agent_planted(
    project: Path, orch: Orch, tmp_path: Path, how: str
) -> None:
    evil = Evil(tmp_path)
    st = run_hostile_agent(project, orch, tmp_path, evil, how)
    assert evil.ran() == ""  # gpg.program
    hooks_ran = Path(str(evil.script) + ".marker")  # where the agent's hooks write
    assert not hooks_ran.exists(), hooks_ran.read_text()
    assert st["state"] == "SUCCESS", st
    assert st["snapshot_sha"] == git(project, "rev-parse", "orch/T1")
    assert git(project, "show", "orch/T1:src/wip.txt") == "work in progress"


KEYS = {"filter": "filter.evil.clean", "include": "filter.inc.clean", "merge-driver": "merge.evil.driver"}


@pytest.mark.parametrize("how", ["filter", "include", "merge-driver", "worktree-config"])
def test_snapshot_refuses_a_filter_an_agent_planted(project: Path, orch: Orch, tmp_path: Path, how: str) -> None:
    evil = Evil(tmp_path)
    st = run_hostile_agent(project, orch, tmp_path, evil, how)
    assert evil.ran() == ""
    if how == "merge-driver":  # a snapshot (add, write-tree, commit-tree) merges nothing: no driver can run
        assert st.get("snapshot_sha") == git(project, "rev-parse", "orch/T1"), st
        return
    key = KEYS.get(how, "filter.mine.clean")
    assert (
        f"uncommitted work could not be snapshotted: git config names a program orch has not accepted: {key}="
        in (st["reason"])
    ), st
    assert st.get("snapshot_sha") is None
    assert (project / ".orch/worktrees/T1/src/wip.txt").read_text() == "work in progress\n"  # left where it was


# -- orch merge ----------------------------------------------------------------------------------------


@pytest.fixture
def merge_ready(project: Path) -> Path:
    """T1 finished on its branch; main has moved on in the same file, so merging T1 merges content."""
    commit_file(project, "src/a.py", "A = 1\n\n\n\nB = 1\n")
    add_tasks_to_plan(project, [("T1", "^src/", [])])
    finished_task(project, "T1", {"src/a.py": "A = 2\n\n\n\nB = 1\n"})
    commit_file(project, "src/a.py", "A = 1\n\n\n\nB = 2\n")
    return project


@pytest.mark.parametrize("plant", SWITCHED_OFF.values(), ids=SWITCHED_OFF.keys())
def test_merge_runs_no_planted_hook(merge_ready: Path, orch: Orch, tmp_path: Path, plant: Planter) -> None:
    evil = Evil(tmp_path)
    plant(merge_ready, evil)
    r = orch("merge", "T1", "--json")
    assert evil.ran() == ""
    assert r.returncode == 0, r.output
    assert json.loads(r.stdout)["tasks"][0]["outcome"] == "MERGED"
    assert git(merge_ready, "show", "main:src/a.py") == "A = 2\n\n\n\nB = 2"


@pytest.mark.parametrize("plant", REFUSED.values(), ids=REFUSED.keys())
def test_merge_refuses_a_planted_filter_or_driver(
    merge_ready: Path, orch: Orch, tmp_path: Path, plant: NamingPlanter
) -> None:
    evil = Evil(tmp_path)
    before = git(merge_ready, "rev-parse", "main")
    named = plant(merge_ready, evil)
    r = orch("merge", "T1")
    assert evil.ran() == ""
    assert r.returncode == 4, r.output
    assert named in r.stderr and "orch merge changed nothing" in r.stderr
    assert git(merge_ready, "rev-parse", "main") == before
    assert "PLANTED" not in git(merge_ready, "show", "main:src/a.py")
    assert not (merge_ready / ".orch/run/merges/journal.json").exists()


def test_merge_forecast_refuses_a_planted_merge_driver(merge_ready: Path, orch: Orch, tmp_path: Path) -> None:
    evil = Evil(tmp_path)
    plant_merge_driver(merge_ready, evil)
    r = orch("merge", "--dry-run", "T1")
    assert evil.ran() == ""
    assert r.returncode == 4 and "merge.evil.driver" in r.stderr and "orch did not run `git merge-tree`" in r.stderr


def test_a_planted_promisor_remote_fetches_nothing(merge_ready: Path, orch: Orch, tmp_path: Path) -> None:
    """A commit naming a blob the repository lacks, and a promisor remote whose URL runs a program:
    git would fetch the blob through it from any command (even rev-parse); orch's git opens no
    transport at all."""
    evil = Evil(tmp_path)
    wt = merge_ready / ".orch/worktrees/T1"
    ghost = "1234567890abcdef1234567890abcdef12345678"
    listing = git(wt, "ls-tree", "HEAD")
    src = git(wt, "rev-parse", "HEAD:src")
    inner = git(wt, "ls-tree", src) + f"\n100644 blob {ghost}\tghost.py\n"
    listing = listing.replace(src, git(wt, "mktree", "--missing", input=inner))
    tree = git(wt, "mktree", "--missing", input=listing + "\n")
    commit = git(wt, "commit-tree", tree, "-p", "HEAD", "-m", "ghost")
    git(wt, "update-ref", "refs/heads/orch/T1", commit)
    config(merge_ready, ("remote.evil.promisor", "true"), ("protocol.ext.allow", "always"))
    fetcher = tmp_path / "fetch.sh"  # what the transport runs: records itself, then fails the fetch
    fetcher.write_text(f"#!/bin/sh\necho fetch >> {shlex.quote(str(evil.marker))}\nexit 1\n")
    fetcher.chmod(0o755)
    config(merge_ready, ("remote.evil.url", f"ext::{fetcher}"))
    r = orch("merge", "T1")
    assert evil.ran() == ""
    assert r.returncode != 0
    assert "src/ghost.py" not in git(merge_ready, "ls-tree", "-r", "--name-only", "main")


# -- orch clean ----------------------------------------------------------------------------------------


@pytest.fixture
def dirty_task(project: Path) -> Path:
    """T1 finished, with uncommitted work left in its worktree (clean snapshots it)."""
    add_tasks_to_plan(project, [("T1", "^src/", [])])
    finished_task(project, "T1", {"src/a.py": "A = 1\n"})
    wt = project / ".orch/worktrees/T1"
    (wt / "src/later.py").write_text("L = 1\n")
    return wt


@pytest.mark.parametrize("plant", SWITCHED_OFF.values(), ids=SWITCHED_OFF.keys())
def test_clean_runs_no_planted_hook(
    project: Path, dirty_task: Path, orch: Orch, tmp_path: Path, plant: Planter
) -> None:
    evil = Evil(tmp_path)
    plant(project, evil)
    r = orch("clean", "T1", "--force")
    assert evil.ran() == ""
    assert r.returncode == 0, r.output
    assert not dirty_task.exists()
    snap = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/")
    assert git(project, "show", f"{snap}:src/later.py") == "L = 1"


@pytest.mark.parametrize("plant", REFUSED.values(), ids=REFUSED.keys())
def test_clean_refuses_a_planted_filter_and_keeps_the_worktree(
    project: Path, dirty_task: Path, orch: Orch, tmp_path: Path, plant: NamingPlanter
) -> None:
    evil = Evil(tmp_path)
    named = plant(project, evil)
    r = orch("clean", "T1", "--force")
    assert evil.ran() == ""
    assert r.returncode == 4, r.output
    assert named in r.stderr and "orch clean changed nothing" in r.stderr
    assert (dirty_task / "src/later.py").is_file()
    assert git(project, "branch", "--list", "orch/T1") != ""


def test_clean_refuses_config_only_its_worktree_sees(
    project: Path, dirty_task: Path, orch: Orch, tmp_path: Path
) -> None:
    """Config the main checkout does not see (the task worktree's own): each git orch runs there checks."""
    evil = Evil(tmp_path)
    config(project, ("extensions.worktreeConfig", "true"))
    git(dirty_task, "config", "--worktree", "filter.mine.clean", str(evil.script))
    (dirty_task / ".gitattributes").write_text("* filter=mine\n")
    r = orch("clean", "T1", "--force")
    assert evil.ran() == ""
    assert r.returncode == 4, r.output
    assert "filter.mine.clean=" in r.stderr and "orch did not run `git status`" in r.stderr
    assert (dirty_task / "src/later.py").is_file()


# -- what a person set up, and attributes alone ------------------------------------------------------


def test_a_committed_gitattributes_naming_no_configured_program_runs_nothing(
    merge_ready: Path, orch: Orch, tmp_path: Path
) -> None:
    """git ignores an attribute whose filter or driver no config defines, so orch need not refuse
    one; once an agent defines it in config, orch refuses."""
    evil = Evil(tmp_path)  # (a task's own .gitattributes never gets this far: verify refuses it)
    commit_file(merge_ready, ".gitattributes", "* filter=evil merge=evil diff=evil\n")
    r = orch("merge", "T1", "--json")
    assert r.returncode == 0, r.output
    assert json.loads(r.stdout)["tasks"][0]["outcome"] == "MERGED"
    assert git(merge_ready, "show", "main:src/a.py") == "A = 2\n\n\n\nB = 2"
    one_task(merge_ready, "T2")
    plant_filter(merge_ready, evil)
    (merge_ready / ".git/info/attributes").unlink()  # the committed .gitattributes names it now
    r = orch("spin", "T2", "--no-start")
    assert evil.ran() == ""
    assert r.returncode == 4 and "filter.evil.clean" in r.stderr


def test_a_program_a_person_accepts_runs_and_no_other(project: Path, orch: Orch, tmp_path: Path) -> None:
    evil = Evil(tmp_path)
    one_task(project)
    plant_filter(project, evil)  # this time a person did it, after orch init
    r = orch("doctor", "--json")
    assert r.returncode == 1
    found = [f for f in json.loads(r.stdout)["findings"] if f["kind"] == "git-config"]
    assert [f["subject"] for f in found] == ["filter.evil.clean", "filter.evil.smudge"]
    assert found[0]["fix"].endswith(f"git config --file {project / '.git/config'} --unset-all filter.evil.clean")
    r = orch.ok("doctor", "--accept-git-config")
    assert f"accepted filter.evil.clean='{evil.script}'" in r.stdout
    assert "git config names 2 program(s); orch's git may run these, and no other" in r.stdout
    assert json.loads(orch("doctor", "--json").stdout)["findings"] == []
    orch.ok("spin", "T1", "--no-start")
    assert evil.ran() != ""  # the person's filter: orch's checkout ran it, as git would
    (project / ".git/info/attributes").write_text("* filter=evil merge=other\n")
    config(project, ("filter.evil.smudge", f"{evil.script} --changed"), ("merge.other.driver", "true"))
    r = orch("doctor")
    assert r.returncode == 1
    assert "git-config: filter.evil.smudge:" in r.stdout and "git-config: merge.other.driver:" in r.stdout
    assert "filter.evil.clean" not in r.stdout


def test_init_accepts_what_git_config_names_and_says_so(repo: Path, orch: Orch, tmp_path: Path) -> None:
    evil = Evil(tmp_path)
    config(repo, ("filter.lfs.process", "git-lfs filter-process"), ("diff.pdf.textconv", str(evil.script)))
    r = orch.ok("init", "--no-hooks")
    assert "git      accepted diff.pdf.textconv=" in r.stdout
    assert "git      accepted filter.lfs.process='git-lfs filter-process'" in r.stdout
    assert "git      kept     filter.lfs.process=" in orch.ok("init", "--no-hooks").stdout
    baseline = json.loads(git(repo, "cat-file", "blob", "refs/orch-git-baseline"))
    assert baseline == {
        "version": 1,
        "programs": {"diff.pdf.textconv": str(evil.script), "filter.lfs.process": "git-lfs filter-process"},
    }


def test_a_deleted_baseline_refuses_every_program(project: Path, orch: Orch, tmp_path: Path) -> None:
    """Removing the baseline ref (an agent could) makes orch stricter, never looser."""
    evil = Evil(tmp_path)
    one_task(project)
    plant_filter(project, evil)
    orch.ok("doctor", "--accept-git-config")
    git(project, "update-ref", "-d", "refs/orch-git-baseline")
    r = orch("spin", "T1", "--no-start")
    assert evil.ran() == ""
    assert r.returncode == 4 and "filter.evil.clean" in r.stderr


# -- what stays fast -----------------------------------------------------------------------------------


def test_status_and_the_git_hook_list_no_config(project: Path, orch: Orch, tmp_path: Path) -> None:
    """The checks cost a `git config --list` before the commands that need one: never in orch status,
    nor in the pre-commit hook a person's every commit runs."""
    evil = Evil(tmp_path)
    plant_filter(project, evil)
    (project / ".git/info/attributes").unlink()
    orch.ok("hooks", "install")
    trace = tmp_path / "trace"
    env = {"GIT_TRACE": str(trace)}
    orch.ok("status", env=env)
    commit = subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=project, env={**os.environ, **env}, capture_output=True
    )
    assert commit.returncode == 0, commit.stderr
    ran = trace.read_text() if trace.exists() else ""
    assert "orch.hookmain" in ran or "pre-commit" in ran
    assert "config --list" not in ran and "git-baseline" not in ran


def test_doctor_reports_config_only_a_crashed_tasks_worktree_sees(project: Path, orch: Orch, tmp_path: Path) -> None:
    evil = Evil(tmp_path)
    add_tasks_to_plan(project, [("T1", "^src/", [])])
    finished_task(project, "T1", {"src/a.py": "A = 1\n"}, state="CRASHED")
    wt = project / ".orch/worktrees/T1"
    (wt / "src/a.py").write_text("A = 2\n")  # same size: git status would read it through the filter
    config(project, ("extensions.worktreeConfig", "true"))
    git(wt, "config", "--worktree", "filter.mine.clean", str(evil.script))
    (wt / ".gitattributes").write_text("* filter=mine\n")
    r = orch("doctor")
    assert evil.ran() == ""
    assert r.returncode == 1, r.output
    assert "orch did not look for uncommitted work: git config names a program orch has not accepted: " in r.stdout
    assert (
        f"git config --file {project / '.git/worktrees/T1/config.worktree'} --unset-all filter.mine.clean" in r.stdout
    )
