"""Escapes through the ceremony's own files: a forged journal, forged statuses.

An agent runs as the person does and can write anything under .orch/run/: the journal of an
interrupted ceremony and every task's status.yaml. Each test writes one forged file the way a hostile
agent would and checks that ``orch merge`` (``--resume``, ``--abort``) lands, runs and removes
nothing on its word.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ceremony_helpers import add_tasks_to_plan, finished_task, status_of, with_check
from conftest import Orch, commit_file, git

LOCKS = """\
version: 1
locks:
  - id: L1
    kind: path
    mode: hard
    pattern: check.sh
    reason: the integration test is the contract
"""


@pytest.fixture
def repo(project: Path) -> Path:
    with_check(project)
    commit_file(project, ".orch/locks.yaml", LOCKS, "lock the test")
    return project


def journal_path(repo: Path) -> Path:
    return repo / ".orch" / "run" / "merges" / "journal.json"


def interrupted(repo: Path, orch: Orch, step: str = "ceremony.triaged") -> dict[str, Any]:
    """A real ceremony killed at ``step``: its journal, for the forger to edit."""
    killed = orch("merge", env={"ORCH_FAILPOINT": step})
    assert killed.returncode == -9, killed.output
    data: dict[str, Any] = json.loads(journal_path(repo).read_text())
    return data


def plant(repo: Path, journal: dict[str, Any]) -> None:
    path = journal_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(journal, indent=1))


def agent_commit(repo: Path, files: dict[str, str], message: str = "agent") -> str:
    """A commit on top of main made with plumbing, as an agent in its worktree could (no branch moved)."""
    base = git(repo, "rev-parse", "main")
    index = repo / ".git" / "agent-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}

    def run(*args: str, input: str | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, input=input, capture_output=True, text=True, check=True
        ).stdout.strip()

    run("read-tree", base)
    for rel, text in files.items():
        blob = run("hash-object", "-w", "--stdin", input=text)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}")
    tree = run("write-tree")
    index.unlink()
    return run("commit-tree", tree, "-p", base, "-m", message)


def forged_landing(repo: Path, good: str, **more: Any) -> dict[str, Any]:
    """A journal written from nothing, with its pre-merge ref, claiming ``good`` was tested."""
    base = git(repo, "rev-parse", "main")
    cid = "20260101T000000Z"
    git(repo, "update-ref", f"refs/orch/pre-merge/{cid}", base)
    journal = {
        "id": cid,
        "target": "main",
        "base_sha": base,
        "pre_ref": f"refs/orch/pre-merge/{cid}",
        "integration": str(repo / ".orch" / "worktrees" / "_integration"),
        "test_command": "sh check.sh",
        "queue": [],
        "shas": {},
        "results": [],
        "good": good,
        "step": "decided T1",
    }
    journal.update(more)
    plant(repo, journal)
    return journal


# -- item 2: a forged journal --------------------------------------------------------------------------


def test_a_planted_journal_cannot_land_the_agents_commit(repo: Path, orch: Orch) -> None:
    """The issue's attack: main fast-forwarded to the agent's commit (a hard-locked test edited), no test run."""
    before = git(repo, "rev-parse", "main")
    evil = agent_commit(repo, {"check.sh": "exit 0\n", "fail-now": "x\n"})
    forged_landing(repo, evil)
    r = orch("merge", "--resume")
    assert r.returncode == 3, r.output
    assert "journal does not add up" in r.stderr and f"its tested head {evil[:12]}" in r.stderr
    assert "orch merge --abort" in r.stderr
    assert git(repo, "rev-parse", "main") == before
    aborted = orch("merge", "--abort")
    assert aborted.returncode == 0, aborted.output
    assert "set it aside" in aborted.stdout and "changed nothing else" in aborted.stdout
    assert git(repo, "rev-parse", "main") == before
    assert not journal_path(repo).exists()
    assert list((repo / ".orch" / "run" / "merges").glob("refused-*.json"))


def forge_merged(repo: Path, task_id: str, sha: str) -> None:
    """A journal claiming ``task_id`` was merged (git's own merge, made aside) and tested."""
    integration = repo / ".orch" / "worktrees" / "scratch"
    git(repo, "worktree", "add", "-q", "--detach", str(integration), git(repo, "rev-parse", "main"))
    git(integration, "merge", "-q", "--no-ff", "-m", f"orch: merge {task_id}", sha)
    good = git(integration, "rev-parse", "HEAD")
    result = {"task": task_id, "outcome": "MERGED", "sha": sha, "merged_sha": good}
    forged_landing(repo, good, queue=[task_id], shas={task_id: sha}, results=[result])


def test_a_forged_merge_of_a_violating_task_is_verified_again(repo: Path, orch: Orch) -> None:
    """The journal says T5 was merged and tested; T5 edits the locked test: resume refuses."""
    add_tasks_to_plan(repo, [("T5", "^", [])])
    sha = finished_task(repo, "T5", {"check.sh": "exit 0\n"})
    before = git(repo, "rev-parse", "main")
    forge_merged(repo, "T5", sha)
    r = orch("merge", "--resume")
    assert r.returncode == 3, r.output
    assert f"T5 at {sha[:12]} does not verify now (LOCK_VIOLATION: check.sh)" in r.stderr
    assert git(repo, "rev-parse", "main") == before


def test_a_forged_tested_result_is_tested_again_before_it_lands(repo: Path, orch: Orch) -> None:
    """T1 breaks the tests, within its scope; the journal says it merged and passed: resume tests it."""
    add_tasks_to_plan(repo, [("T1", "^", [])])
    sha = finished_task(repo, "T1", {"fail-T1": "x\n"})
    before = git(repo, "rev-parse", "main")
    forge_merged(repo, "T1", sha)
    r = orch("merge", "--resume")
    assert r.returncode == 1, r.output
    assert "failed the tests when run again before landing" in r.stderr
    assert git(repo, "rev-parse", "main") == before
    assert "fail-T1" not in git(repo, "ls-tree", "--name-only", "main")
    assert not journal_path(repo).exists()


def test_the_journals_integration_folder_is_never_removed(repo: Path, orch: Orch, tmp_path: Path) -> None:
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    journal = interrupted(repo, orch)
    journal["integration"] = str(precious)
    plant(repo, journal)
    r = orch("merge", "--resume")
    assert r.returncode == 3, r.output
    assert f"its integration worktree '{precious}' is not orch's" in r.stderr
    assert (precious / "thesis.tex").read_text() == "years of work\n"
    aborted = orch("merge", "--abort")
    assert aborted.returncode == 0, aborted.output
    assert (precious / "thesis.tex").read_text() == "years of work\n"
    assert orch("merge").returncode == 0  # starts afresh and merges T1
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "main")


def test_the_journals_test_command_is_never_run(repo: Path, orch: Orch, tmp_path: Path) -> None:
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    pwned = tmp_path / "pwned"
    journal = interrupted(repo, orch)
    journal["test_command"] = f"touch {pwned}"
    plant(repo, journal)
    r = orch("merge", "--resume")
    assert r.returncode == 3, r.output
    assert "its test command" in r.stderr and "is not test_command in .orch/config.yaml" in r.stderr
    assert orch("merge", "--abort").returncode == 0
    assert not pwned.exists()


def test_the_journals_test_pid_is_not_signalled(repo: Path, orch: Orch, tmp_path: Path) -> None:
    """A journal naming some other process of the person's as its orphaned test run: left alone."""
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    journal = interrupted(repo, orch)
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path, start_new_session=True
    )
    try:
        time.sleep(0.2)
        stat = Path(f"/proc/{victim.pid}/stat").read_text()
        journal["test_pid"] = victim.pid
        journal["test_start"] = stat[stat.rindex(")") + 2 :].split()[19]
        plant(repo, journal)
        assert orch("merge", "--abort").returncode == 0
        assert victim.poll() is None, "orch signalled a process that is not its test run"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("id", "../../../../escape", "is not a ceremony's"),
        ("base_sha", "--output=/tmp/orch-escape", "is not a commit id"),
        ("target", "orch/T1", "is not a branch orch merges into"),
        ("queue", ["../T1"], "task ids that are not ids"),
    ],
)
def test_each_forged_field_is_refused_by_name(repo: Path, orch: Orch, field: str, value: Any, said: str) -> None:
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    before = git(repo, "rev-parse", "main")
    journal = interrupted(repo, orch)
    journal[field] = value
    plant(repo, journal)
    r = orch("merge", "--resume")
    assert r.returncode == 3, r.output
    assert said in r.stderr
    assert orch("merge", "--abort").returncode == 0
    assert git(repo, "rev-parse", "main") == before
    assert not Path("/tmp/orch-escape").exists()


def test_a_real_interrupted_ceremony_resumes_without_an_extra_test_run(repo: Path, orch: Orch) -> None:
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "2\n"})
    interrupted(repo, orch, "ceremony.decided:T1")
    r = orch("merge", "--resume", "--json")
    assert r.returncode == 0, r.output
    data = json.loads(r.stdout)
    assert {t["task"]: t["outcome"] for t in data["tasks"]} == {"T1": "MERGED", "T2": "MERGED"}
    assert [run["label"] for run in data["runs"]] == ["T1", "T2"]  # T2's run tested the tree that landed


# -- item 3: forged statuses --------------------------------------------------------------------------


def _forge_status(repo: Path, task_id: str, **fields: Any) -> None:
    path = repo / ".orch" / "run" / "tasks" / task_id / "status.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_status_naming_another_tasks_branch_merges_its_own_branch(repo: Path, orch: Orch) -> None:
    """T4's out-of-scope commit is quarantined; T1's status says its branch is orch/T4: T1's own is merged."""
    add_tasks_to_plan(repo, [("T1", "^", []), ("T4", "^docs/", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T4", {"docs/x.md": "x\n", "src/sneaky.py": "S = 1\n"})
    assert orch("verify", "T4").returncode == 1  # quarantined
    _forge_status(repo, "T1", branch="orch/T4", head_sha=git(repo, "rev-parse", "orch/T4"))
    r = orch("merge", "--json")
    outcomes = {t["task"]: (t["outcome"], t.get("sha")) for t in json.loads(r.stdout)["tasks"]}
    assert outcomes["T1"] == ("MERGED", git(repo, "rev-parse", "orch/T1")), r.output
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "one.txt" in files and "src/sneaky.py" not in files


def test_a_failed_run_rewritten_to_success_is_judged_by_its_accept_command(repo: Path, orch: Orch) -> None:
    """T2's accept command failed in its run (FAILED); the agent rewrote the status to SUCCESS. The
    ceremony runs T2's accept on the merged tree: REVERTED, not merged."""
    plan = repo / ".orch" / "plan.md"
    plan.write_text(
        "# Plan\n\n## T1: good\n- scope: ^\n- accept: test -f one.txt\n\n"
        "## T2: claims success\n- scope: ^\n- accept: test -f two-done.txt\n"
    )
    git(repo, "commit", "-qam", "plan with accept commands")
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"two.txt": "half done\n"}, state="FAILED")
    _forge_status(repo, "T2", state="SUCCESS")
    r = orch("merge", "--json")
    assert r.returncode == 1, r.output
    data = json.loads(r.stdout)
    outcomes = {t["task"]: t["outcome"] for t in data["tasks"]}
    assert outcomes == {"T1": "MERGED", "T2": "REVERTED"}
    t2 = next(t for t in data["tasks"] if t["task"] == "T2")
    assert "the accept command of T2 failed on the merged tree" in t2["excerpt"]
    assert "two.txt" not in git(repo, "ls-tree", "--name-only", "main")
    assert status_of(repo, "T2")["state"] == "REVERTED"
