"""Rules only get stricter through an uncommitted edit (DESIGN.md, Invariants).

A hostile agent runs as the person's user and can write the main checkout's ``.orch/locks.yaml``,
``.orch/plan.md`` and ``.orch/config.yaml``. What judges (verify, ack, the merge ceremony) applies the
rules committed on the base branch made stricter by the working copy: removing a lock, widening a
scope or swapping the test command counts only once committed. The "agent" here is the test editing
the main checkout as an agent would, and once a real scripted agent process doing it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ceremony_helpers import CHECK, finished_task
from conftest import Orch, commit_file, git, no_box
from vhelpers import LOCKS, PLAN, commit_in, make_task, setup_project

L1_BLOCK = """\
  - id: L1
    kind: path
    mode: hard
    pattern: src/billing/pricing.py
    reason: prices are signed off by finance
"""


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def edit(path: Path, old: str, new: str) -> None:
    """Change the main checkout's file and leave it uncommitted, as a hostile agent would."""
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def drop_lock(path: Path, lock_id: str) -> None:
    """Remove a lock from the main checkout's locks.yaml, uncommitted, as a hostile agent would."""
    data = yaml.safe_load(path.read_text())
    data["locks"] = [lk for lk in data["locks"] if lk["id"] != lock_id]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def change_lock(path: Path, lock_id: str, **fields: str) -> None:
    """Edit one lock's fields in the main checkout's locks.yaml, uncommitted."""
    data = yaml.safe_load(path.read_text())
    for lock in data["locks"]:
        if lock["id"] == lock_id:
            lock.update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def verdict(orch: Orch, task: str, code: int) -> dict[str, Any]:
    r = orch("verify", task, "--json")
    assert r.returncode == code, r.output
    data: dict[str, Any] = json.loads(r.stdout)["verdicts"][0]
    return data


def locks_named(v: dict[str, Any]) -> set[tuple[str | None, str]]:
    return {(x["lock"], x["mode"]) for x in v["violations"]}


# -- (a) a lock removed in the working copy binds until the removal is committed ------------------------


def test_an_uncommitted_lock_removal_binds_until_committed(proj: Path, orch: Orch) -> None:
    locks = proj / ".orch/locks.yaml"
    edit(locks, L1_BLOCK, "")
    wt = make_task(proj, "T3")  # T3 has no scope: only the locks stand in its way
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    r = orch("verify", "T3")
    assert r.returncode == 1, r.output
    assert r.stdout.startswith("T3: LOCK_VIOLATION")
    assert "src/billing/pricing.py: path-lock: locked: hard path lock L1 (src/billing/pricing.py)" in r.stdout
    assert "as committed on main; an uncommitted edit of .orch/locks.yaml cannot loosen it" in r.stdout
    # A person commits the removal on the base branch: now it counts.
    git(proj, "commit", "-q", "-m", "pricing is no longer locked", "--", ".orch/locks.yaml")
    assert verdict(orch, "T3", 0)["result"] == "OK"


def test_hard_to_soft_or_a_narrowed_pattern_in_the_working_copy_still_binds(proj: Path, orch: Orch) -> None:
    change_lock(proj / ".orch/locks.yaml", "L1", mode="soft", pattern="src/billing/none.py")
    wt = make_task(proj, "T3")
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    v = verdict(orch, "T3", 1)
    assert v["result"] == "LOCK_VIOLATION"
    assert locks_named(v) == {("L1", "hard")}


def test_an_uncommitted_removal_of_agents_md_lock_binds(proj: Path, orch: Orch) -> None:
    edit(proj / ".orch/locks.yaml", "agents_md_lock: true", "agents_md_lock: false")
    wt = make_task(proj, "T3")
    commit_in(wt, "AGENTS.md", "rewritten by an agent\n")
    assert locks_named(verdict(orch, "T3", 1)) == {("AGENTS_MD", "hard")}


def test_a_git_replace_ref_does_not_swap_the_committed_locks(proj: Path, orch: Orch) -> None:
    locks = proj / ".orch/locks.yaml"
    drop_lock(locks, "L1")
    loosened = git(proj, "hash-object", "-w", "--", ".orch/locks.yaml")
    git(proj, "replace", git(proj, "rev-parse", "main:.orch/locks.yaml"), loosened)
    assert "id: L1" not in git(proj, "show", "main:.orch/locks.yaml")  # git itself now reads the swap
    wt = make_task(proj, "T3")
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    assert locks_named(verdict(orch, "T3", 1)) == {("L1", "hard")}


# -- (b) a scope widened in the working copy does not widen what the task may change -------------------


def test_an_uncommitted_wider_scope_does_not_count(proj: Path, orch: Orch) -> None:
    plan = proj / ".orch/plan.md"
    edit(plan, "- scope: ^src/auth/\n", "- scope: ^src/\n")
    wt = make_task(proj, "T1")
    commit_in(wt, "src/dashboard/w.py", "W = 2\n")
    r = orch("verify", "T1")
    assert r.returncode == 1, r.output
    assert r.stdout.startswith("T1: SCOPE_VIOLATION")
    assert "src/dashboard/w.py: scope: outside the task's scope ^src/auth/ as committed on the base branch" in r.stdout
    # Narrowing counts at once: both scopes bind.
    edit(plan, "- scope: ^src/\n", "- scope: ^src/auth/x/\n")
    commit_in(wt, "src/auth/session.py", "TTL = 1\n")
    v = verdict(orch, "T1", 1)
    assert {(x["path"], x["rule"]) for x in v["violations"]} == {
        ("src/dashboard/w.py", "scope"),
        ("src/auth/session.py", "scope"),
    }
    # Committed on the base branch, the wider scope is the rule.
    edit(plan, "- scope: ^src/auth/x/\n", "- scope: ^src/\n")
    git(proj, "commit", "-q", "-m", "T1 may touch all of src/", "--", ".orch/plan.md")
    assert verdict(orch, "T1", 0)["result"] == "OK"


def test_a_task_only_in_the_working_copy_uses_its_own_scope(proj: Path, orch: Orch) -> None:
    orch.ok("plan", "add", "T9", "--title", "Widgets", "--scope", "^src/dashboard/")
    wt = make_task(proj, "T9")
    commit_in(wt, "src/dashboard/w.py", "W = 2\n")
    assert verdict(orch, "T9", 0)["result"] == "OK"
    commit_in(wt, "src/auth/session.py", "TTL = 1\n")
    assert verdict(orch, "T9", 1)["result"] == "SCOPE_VIOLATION"


def test_removing_a_task_scope_in_the_working_copy_keeps_the_committed_one(proj: Path, orch: Orch) -> None:
    edit(proj / ".orch/plan.md", "- scope: ^src/auth/\n", "")
    wt = make_task(proj, "T1")
    commit_in(wt, "src/dashboard/w.py", "W = 2\n")
    assert verdict(orch, "T1", 1)["result"] == "SCOPE_VIOLATION"


# -- (c) stricter edits count at once, while loosening ones wait ----------------------------------------


def test_an_uncommitted_new_lock_counts_at_once_and_a_loosened_one_keeps_binding(proj: Path, orch: Orch) -> None:
    locks = proj / ".orch/locks.yaml"
    change_lock(locks, "L1", mode="soft")
    with locks.open("a") as handle:
        handle.write("- id: L9\n  kind: path\n  mode: hard\n  pattern: src/dashboard/\n")
    wt = make_task(proj, "T3")
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    commit_in(wt, "src/dashboard/w.py", "W = 2\n")
    v = verdict(orch, "T3", 1)
    assert v["result"] == "LOCK_VIOLATION"
    # L9 (new) binds at once; L1 binds both as the working copy has it (soft) and as committed (hard).
    assert locks_named(v) == {("L9", "hard"), ("L1", "hard"), ("L1", "soft")}
    # A hard lock cannot be acked, whichever version made it hard.
    r = orch("ack", "T3", "L1")
    assert r.returncode == 3, r.output
    assert "L1 is a hard lock as committed on main" in r.stderr


def test_an_uncommitted_requirement_edit_keeps_the_committed_check(proj: Path, orch: Orch) -> None:
    orch.ok("lock", "require", "no bad sessions", "--check", "! grep -q bad src/auth/session.py", "--via", "static")
    git(proj, "commit", "-q", "-m", "requirement", "--", ".orch/locks.yaml")
    edit(proj / ".orch/locks.yaml", "check: '! grep -q bad src/auth/session.py'", "check: 'true'")
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/session.py", "TTL = 'bad'\n")
    v = verdict(orch, "T1", 1)
    assert [(x["rule"], x["lock"]) for x in v["violations"]] == [("requirement", "R1")]


def test_a_committed_rules_file_that_does_not_validate_fails_closed(proj: Path, orch: Orch) -> None:
    locks = proj / ".orch/locks.yaml"
    good = locks.read_text()
    locks.write_text(good.replace("kind: path\n    mode: soft", "kind: pathh\n    mode: soft"))
    git(proj, "commit", "-q", "-m", "broken locks", "--", ".orch/locks.yaml")
    locks.write_text(good)
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/session.py", "TTL = 1\n")
    r = orch("verify", "T1")
    assert r.returncode == 3, r.output
    assert r.stderr.startswith("orch: main:.orch/locks.yaml:")
    assert "Traceback" not in r.stderr


# -- (d) orch lock rm says when the removal takes effect ----------------------------------------------


def test_lock_rm_says_the_removal_counts_once_committed(proj: Path, orch: Orch) -> None:
    r = orch.ok("lock", "rm", "L1")
    assert r.stdout.splitlines() == [
        "removed hard path lock L1",
        "  the removal takes effect for judging only once .orch/locks.yaml is committed on main: until then "
        "orch verify and orch merge still apply L1 as committed",
    ]
    # A lock that was never committed is simply gone.
    orch.ok("lock", "add", "src/dashboard/", "--id", "L7")
    assert orch.ok("lock", "rm", "L7").stdout == "removed hard path lock L7\n"


# -- (e) orch status and orch plan show what is pending ------------------------------------------------


def test_status_and_plan_show_a_pending_loosening(proj: Path, orch: Orch) -> None:
    assert orch.ok("status").stderr == ""
    # Stricter edits are not pending: they count at once.
    orch.ok("lock", "add", "src/dashboard/", "--id", "L7")
    orch.ok("plan", "add", "T9", "--title", "More", "--scope", "^src/x/")
    assert orch.ok("status").stderr == ""
    drop_lock(proj / ".orch/locks.yaml", "L1")
    edit(proj / ".orch/plan.md", "- scope: ^src/auth/\n", "- scope: ^src/\n")
    edit(proj / ".orch/config.yaml", "test_command: 'true'", "test_command: 'exit 0'")
    notice = (
        "note: uncommitted edits loosen the rules (.orch/locks.yaml: L1 removed; .orch/plan.md: T1 scope; "
        ".orch/config.yaml: test_command); orch verify and orch merge keep judging by the rules committed on "
        "main until these edits are committed there\n"
    )
    assert orch.ok("status").stderr == notice
    assert orch.ok("status", "T1").stderr == notice
    assert orch.ok("plan").stderr.endswith(notice)
    git(proj, "commit", "-q", "-am", "a person commits the edits")
    assert orch.ok("status").stderr == ""


# -- (f) the merge ceremony merges none of it ------------------------------------------------------------


def test_the_ceremony_quarantines_what_only_an_uncommitted_edit_allowed(proj: Path, orch: Orch) -> None:
    before = git(proj, "rev-parse", "main")
    finished_task(proj, "T3", {"src/billing/pricing.py": "PRICE = 0\n"})
    finished_task(proj, "T1", {"src/dashboard/w.py": "W = 2\n"})
    finished_task(proj, "T2", {"src/dashboard/ok.py": "OK = 1\n"})
    edit(proj / ".orch/locks.yaml", L1_BLOCK, "")
    edit(proj / ".orch/plan.md", "- scope: ^src/auth/\n", "- scope: ^src/\n")
    r = orch("merge", "--json")
    assert r.returncode == 1, r.output
    data = json.loads(r.stdout)
    assert {t["task"]: t["outcome"] for t in data["tasks"]} == {
        "T3": "QUARANTINED",
        "T1": "QUARANTINED",
        "T2": "MERGED",
    }
    # the uncommitted rule edits are not in the fast-forward's way: T2 lands, the edits stay uncommitted
    assert data["landed"] != "parked" and git(proj, "rev-parse", "main") != before
    merged = git(proj, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "src/dashboard/ok.py" in merged
    assert git(proj, "show", "main:src/dashboard/w.py") == "W = 1"
    assert git(proj, "show", "main:src/billing/pricing.py") == "PRICE = 10"
    assert "- scope: ^src/\n" in (proj / ".orch/plan.md").read_text()


def test_the_ceremony_runs_the_committed_test_command(proj: Path, orch: Orch) -> None:
    commit_file(proj, "check.sh", CHECK, "add the test")
    config = proj / ".orch/config.yaml"
    edit(config, "test_command: 'true'", "test_command: sh check.sh")
    git(proj, "commit", "-q", "-m", "test command", "--", ".orch/config.yaml")
    finished_task(proj, "T3", {"fail-T3": "boom\n"})
    edit(config, "test_command: sh check.sh", "test_command: 'true'")  # the agent's edit: pass anything
    r = orch("merge", "--json")
    assert r.returncode == 1, r.output
    data = json.loads(r.stdout)
    assert [(t["task"], t["outcome"]) for t in data["tasks"]] == [("T3", "REVERTED")]
    assert data["test_command"] == "sh check.sh"
    assert (
        "orch: note: test_command in .orch/config.yaml is an uncommitted edit; the ceremony runs the one committed "
        "on main: `sh check.sh` (commit the edit to use it)"
    ) in r.stderr
    assert "fail-T3" not in git(proj, "ls-tree", "-r", "--name-only", "main")


def test_the_ceremony_into_another_branch_takes_that_branch_s_rules(proj: Path, orch: Orch) -> None:
    git(proj, "branch", "release")
    edit(proj / ".orch/locks.yaml", L1_BLOCK, "")
    git(proj, "commit", "-q", "-m", "main drops L1", "--", ".orch/locks.yaml")
    finished_task(proj, "T3", {"src/billing/pricing.py": "PRICE = 0\n"}, base="release")
    r = orch("merge", "--into", "release", "--json")
    assert r.returncode == 1, r.output
    assert [(t["task"], t["outcome"]) for t in json.loads(r.stdout)["tasks"]] == [("T3", "QUARANTINED")]


# -- the accept command ----------------------------------------------------------------------------------


def test_spin_runs_the_committed_accept_command_too(proj: Path, orch: Orch) -> None:
    plan = proj / ".orch/plan.md"
    edit(plan, "- scope: ^src/auth/\n", "- scope: ^src/auth/\n- run: true\n- accept: test -f src/auth/done\n")
    git(proj, "commit", "-q", "-m", "accept", "--", ".orch/plan.md")
    edit(plan, "- accept: test -f src/auth/done\n", "- accept: true\n")
    orch.ok("spin", "T1", "--no-start")
    manifest = yaml.safe_load((proj / ".orch/run/tasks/T1/manifest.yaml").read_text())
    assert manifest["accept"] == "sh -c 'test -f src/auth/done' && sh -c true"


# -- a real agent process --------------------------------------------------------------------------------


def test_a_hostile_agent_process_cannot_loosen_its_rules(repo: Path, orch: Orch, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import os, pathlib\n"
        "# unlock what the task must not touch, in the main checkout, and leave it uncommitted\n"
        "locks = pathlib.Path(os.environ['ORCH_HOME']) / 'locks.yaml'\n"
        f"locks.write_text(locks.read_text().replace({L1_BLOCK!r}, ''))\n"
        "pathlib.Path('src/billing/pricing.py').write_text('PRICE = 0\\n')\n"
    )
    attack = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    plan = PLAN.replace("## T3: Anything\n", f"## T3: Anything\n- agent: shell\n- run: {attack}\n")
    proj = setup_project(repo, orch, locks=LOCKS, plan=plan)
    no_box(proj)  # in the box the write itself fails (tests/scenarios)
    orch.ok("spin", "T3")
    assert orch("wait", "T3", "--timeout", "60").stdout.strip() == "T3: SUCCESS"
    assert "id: L1" not in (proj / ".orch/locks.yaml").read_text()  # the agent did edit the main checkout
    r = orch("verify", "T3")
    assert r.returncode == 1 and "path-lock: locked: hard path lock L1" in r.stdout, r.output
    assert "L1 removed" in orch.ok("status").stderr
    r = orch("merge", "--json")
    assert [(t["task"], t["outcome"]) for t in json.loads(r.stdout)["tasks"]] == [("T3", "QUARANTINED")]
    assert git(proj, "show", "main:src/billing/pricing.py") == "PRICE = 10"


def test_the_pending_notice_costs_a_warm_status_no_git_process(proj: Path, orch: Orch, tmp_path: Path) -> None:
    """The notice is display only: answered from a cache keyed by the base's ref file and the files."""
    import shutil

    real = shutil.which("git")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    drop_lock(proj / ".orch/locks.yaml", "L1")
    first = orch("status", env=env)
    assert "L1 removed" in first.stderr and "cat-file" in calls.read_text()
    calls.write_text("")
    again = orch("status", env=env)
    assert again.stderr == first.stderr
    assert "cat-file" not in calls.read_text(), calls.read_text()  # only finding the repository is left
    git(proj, "commit", "-q", "-am", "a person commits the removal")  # the base moves: asked again
    assert orch("status", env=env).stderr == "" and "cat-file" in calls.read_text()
