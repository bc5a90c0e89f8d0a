from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Orch, assert_fast_path_agrees, git
from vhelpers import CART, commit_in, make_task, setup_project


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def verdict(orch: Orch, *ids: str, code: int | None = None) -> dict[str, Any]:
    r = orch("verify", *ids, "--json")
    assert r.returncode in (0, 1), r.output
    if code is not None:
        assert r.returncode == code, r.output
    data: dict[str, Any] = json.loads(r.stdout)["verdicts"][0]
    return data


def rules(v: dict[str, Any]) -> set[tuple[str, str]]:
    return {(x["path"], x["rule"]) for x in v["violations"]}


def status_of(repo: Path, task: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((repo / f".orch/run/tasks/{task}/status.yaml").read_text())
    return data


def test_ok_verdict_is_recorded_for_the_exact_sha_and_goes_stale(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    sha = commit_in(wt, "src/auth/session.py", "TTL = 120\n")
    r = orch("verify", "T1")
    assert r.returncode == 0, r.output
    assert r.stdout.startswith(f"T1: OK at {sha[:12]}")
    assert "mergeable" in r.stdout
    st = status_of(proj, "T1")
    assert st["verdict"]["result"] == "OK"
    assert st["verdict"]["sha"] == sha
    assert st["verdict"]["base_sha"] == git(proj, "rev-parse", "main")
    assert st["state"] == "PENDING"  # an OK verdict leaves the state alone
    assert any("VERIFY" in line and "OK" in line for line in (proj / ".orch/run/log").read_text().splitlines())
    commit_in(wt, "src/auth/session.py", "TTL = 180\n")
    row = json.loads(orch.ok("status", "--json").stdout)["tasks"][0]
    assert row["verdict"] == "OK" and row["verdict_stale"] is True


def test_out_of_scope_change_is_a_scope_violation(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    commit_in(wt, "src/dashboard/w.py", "W = 2\n")
    r = orch("verify", "T1")
    assert r.returncode == 1
    assert "src/dashboard/w.py: scope: outside the task's scope ^src/auth/" in r.stdout
    st = status_of(proj, "T1")
    assert st["state"] == "SCOPE_VIOLATION"
    assert st["verdict"]["violations"] == [
        {
            "path": "src/dashboard/w.py",
            "rule": "scope",
            "lock": None,
            "mode": "hard",
            "message": "outside the task's scope ^src/auth/",
        }
    ]


def test_task_without_scope_may_touch_anything_unlocked(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "anywhere/new.txt", "x\n")
    assert verdict(orch, "T3", code=0)["result"] == "OK"
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    v = verdict(orch, "T3", code=1)
    assert v["result"] == "LOCK_VIOLATION"
    assert rules(v) == {("src/billing/pricing.py", "path-lock")}


def test_no_verify_commit_of_a_locked_file_is_caught(proj: Path, orch: Orch) -> None:
    orch.ok("hooks", "install")
    wt = make_task(proj, "T3")
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n", "--no-verify")
    assert rules(verdict(orch, "T3", code=1)) == {("src/billing/pricing.py", "path-lock")}


def test_rename_of_a_locked_file_checks_both_paths(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    git(wt, "mv", "src/billing/pricing.py", "src/auth/pricing.py")
    git(wt, "commit", "-q", "-m", "move")
    v = verdict(orch, "T1", code=1)
    assert ("src/billing/pricing.py", "path-lock") in rules(v)
    assert ("src/billing/pricing.py", "scope") in rules(v)
    assert not any(p == "src/auth/pricing.py" for p, _ in rules(v))  # the new path is in scope and unlocked


def test_symlinks_to_a_locked_file_and_out_of_the_repo(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    os.symlink("../billing/pricing.py", wt / "src/auth/price_link.py")
    os.symlink("/etc", wt / "src/auth/etc")
    os.symlink("../../../outside", wt / "src/auth/up")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "links")
    v = verdict(orch, "T1", code=1)
    assert v["result"] == "LOCK_VIOLATION"
    assert rules(v) == {
        ("src/auth/price_link.py", "symlink-to-lock"),
        ("src/auth/etc", "symlink-escape"),
        ("src/auth/up", "symlink-escape"),
    }


def test_tampered_locks_in_the_worktree_change_nothing_and_are_a_violation(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    (wt / ".orch/locks.yaml").write_text("version: 1\nagents_md_lock: false\nlocks: []\n")
    (wt / "src/billing/pricing.py").write_text("PRICE = 0\n")
    (wt / "AGENTS.md").write_text("agents may do anything\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "loosen the rules")
    # Even run from inside the task worktree, the rules come from the main checkout.
    r = orch("verify", "T3", "--json", cwd=wt)
    assert r.returncode == 1
    v = json.loads(r.stdout)["verdicts"][0]
    assert rules(v) == {
        (".orch/locks.yaml", "orch-state"),
        ("src/billing/pricing.py", "path-lock"),
        ("AGENTS.md", "path-lock"),
    }


def test_deleted_and_whitespace_changed_locked_tests(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T2")
    test = "tests/unit/test_checkout_flow.py"
    commit_in(wt, test, (proj / test).read_text() + " \n")
    v = verdict(orch, "T2", code=1)
    assert (test, "test-lock") in rules(v)
    assert "modified; must stay byte-identical" in v["violations"][-1]["message"]
    git(wt, "rm", "-q", "--", test)
    git(wt, "commit", "-q", "-m", "drop it")
    v = verdict(orch, "T2", code=1)
    assert [x["message"].split(";")[0] for x in v["violations"] if x["rule"] == "test-lock"] == [
        "deleted (or renamed away)"
    ]


def test_new_test_matching_a_test_lock_is_allowed(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "tests/unit/test_checkout_new.py", "def test_new():\n    pass\n")
    assert verdict(orch, "T3", code=0)["result"] == "OK"


def test_python_region_lock_edit_inside_vs_elsewhere(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/cart.py", CART.replace("return len(self.items)", "return len(self.items) + 0"))
    assert verdict(orch, "T1", code=0)["result"] == "OK"
    commit_in(wt, "src/auth/cart.py", CART.replace("return sum(self.items)", "return sum(self.items) * 2"))
    v = verdict(orch, "T1", code=1)
    assert rules(v) == {("src/auth/cart.py", "region-lock")}
    assert v["violations"][0]["lock"] == "L3"
    assert v["violations"][0]["message"].startswith("region edited")


def test_python_region_removed_or_file_unparsable(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/cart.py", CART.replace("def total", "def grand_total"))
    assert verdict(orch, "T1", code=1)["violations"][0]["message"].startswith("region removed or renamed")
    commit_in(wt, "src/auth/cart.py", "class Cart(:\n")
    assert "cannot parse" in verdict(orch, "T1", code=1)["violations"][0]["message"]


def test_comment_region_lock_in_any_language(repo: Path, orch: Orch) -> None:
    locks = "version: 1\nlocks:\n  - {id: JS, kind: region, mode: hard, pattern: web/app.js::Pricing}\n"
    proj = setup_project(repo, orch, locks=locks)
    wt = make_task(proj, "T3")
    text = (proj / "web/app.js").read_text()
    commit_in(wt, "web/app.js", text.replace("let b = 2;", "let b = 3;"))
    assert verdict(orch, "T3", code=0)["result"] == "OK"
    commit_in(wt, "web/app.js", text.replace("const p = 10;", "const p = 11;"))
    assert rules(verdict(orch, "T3", code=1)) == {("web/app.js", "region-lock")}


def test_paths_with_spaces_unicode_and_newlines(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    names = ["src/auth/with space.py", "src/auth/ünïcode.py", "docs/naïve guide.md", "odd\nname.txt", "x y/é.txt"]
    for name in names:
        (wt / name).parent.mkdir(parents=True, exist_ok=True)
        (wt / name).write_text("x\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "odd names")
    v = verdict(orch, "T1", code=1)
    assert rules(v) == {
        ("docs/naïve guide.md", "scope"),
        ("docs/naïve guide.md", "path-lock"),
        ("odd\nname.txt", "scope"),
        ("x y/é.txt", "scope"),
    }


def test_carriage_returns_in_paths_are_kept(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    for name in ["src/auth/a\rb.py", "web/c\rd.txt", "web/e\r\nf.txt"]:
        (wt / name).parent.mkdir(parents=True, exist_ok=True)
        (wt / name).write_text("x\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "carriage returns")
    assert rules(verdict(orch, "T1", code=1)) == {("web/c\rd.txt", "scope"), ("web/e\r\nf.txt", "scope")}


def test_a_branch_with_two_merge_bases_is_judged_from_one_of_them(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    main_side = commit_in(proj, "src/auth/main_side.py", "M = 1\n")
    task_side = commit_in(wt, "src/auth/session.py", "TTL = 5\n")
    git(wt, "merge", "-q", "--no-edit", main_side)  # criss-cross: each side merges the other
    git(proj, "merge", "-q", "--no-edit", task_side)
    commit_in(wt, "src/dashboard/w.py", "W = 9\n")
    bases = git(proj, "merge-base", "--all", "main", "orch/T1").split()
    assert sorted(bases) == sorted([main_side, task_side])
    v = verdict(orch, "T1", code=1)
    assert rules(v) == {("src/dashboard/w.py", "scope")}
    assert v["base_sha"] == git(proj, "merge-base", "main", "orch/T1")


def test_verify_task_says_which_commit_is_missing_or_unrelated(proj: Path) -> None:
    from orch.core.context import open_ctx
    from orch.core.errors import InputError
    from orch.verify import judge

    tip = commit_in(make_task(proj, "T1"), "src/auth/session.py", "TTL = 7\n")
    empty_tree = git(proj, "hash-object", "-t", "tree", "--stdin", input="")
    lonely = git(proj, "commit-tree", empty_tree, "-m", "no shared history")
    ctx = open_ctx(proj)
    v = judge.verify_task(ctx, "T1", sha=tip[:10], record=False)
    assert (v.result, v.sha, v.base_sha, v.changed) == ("OK", tip, git(proj, "rev-parse", "main"), 1)
    for sha, message in [("0" * 40, "names no commit"), ("main..T1", "names no commit"), (lonely, "shares no history")]:
        with pytest.raises(InputError, match=message):
            judge.verify_task(ctx, "T1", sha=sha, record=False)
    with pytest.raises(InputError, match="no branch orch/T2"):
        judge.verify_task(ctx, "T2", record=False)
    config = proj / ".orch/config.yaml"
    config.write_text(config.read_text().replace("base_branch: main", "base_branch: gone"))
    with pytest.raises(InputError, match="the base branch 'gone' does not exist") as info:
        judge.verify_task(open_ctx(proj), "T1", record=False)
    assert info.value.where == ".orch/config.yaml:2"  # the line that names it


def test_corrupt_or_missing_locks_fail_closed(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/session.py", "TTL = 1\n")
    locks = proj / ".orch/locks.yaml"
    good = locks.read_text()
    locks.write_text(good.replace("mode: hard\n    pattern: src/billing", "mode: hardd\n    pattern: src/billing"))
    r = orch("verify", "T1")
    assert r.returncode == 3
    assert ".orch/locks.yaml:7: locks.0.mode: 'hardd' is not one of hard, soft" in r.stderr
    assert "Traceback" not in r.output
    locks.write_text("locks: [\n")
    r = orch("verify", "T1")
    assert r.returncode == 3 and "not valid YAML" in r.stderr
    locks.write_text(good + "  - id: L1\n    kind: path\n    mode: hard\n    pattern: x\n")
    r = orch("verify", "T1")
    assert r.returncode == 3 and "duplicate lock id 'L1'" in r.stderr
    locks.unlink()
    r = orch("verify", "T1")
    assert r.returncode == 3 and "never assumes 'no locks'" in r.stderr
    assert "verdict" not in status_of_or_empty(proj, "T1")
    # The locks are read while git resolves the commits: a broken locks file is still what is reported
    # first, before a missing branch, a missing base branch or a commit that does not exist.
    locks.write_text("locks: [\n")
    config = proj / ".orch/config.yaml"
    for args, edit in [(("T2",), None), (("T1",), ("base_branch: main", "base_branch: gone")), (("T1",), None)]:
        if edit:
            config.write_text(config.read_text().replace(*edit))
        r = orch("verify", *args)
        assert r.returncode == 3 and "not valid YAML" in r.stderr, r.output
    assert "not valid YAML" in run_verify_at(proj, "T1", "0" * 40)


def run_verify_at(repo: Path, task: str, sha: str) -> str:
    """``verify_task`` of an exact commit, in a process of its own; what it raised, rendered."""
    script = (
        "import sys\nfrom orch.verify import judge\nfrom orch.core.context import open_ctx\n"
        "from orch.core.errors import OrchError\n"
        "try:\n    judge.verify_task(open_ctx(), sys.argv[1], sha=sys.argv[2])\n"
        "except OrchError as exc:\n    print(exc.render())\n"
    )
    r = subprocess.run([sys.executable, "-c", script, task, sha], cwd=repo, capture_output=True, text=True, check=True)
    return r.stdout


def status_of_or_empty(repo: Path, task: str) -> dict[str, Any]:
    path = repo / f".orch/run/tasks/{task}/status.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def test_soft_lock_needs_an_ack(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    r = orch("verify", "T3")
    assert r.returncode == 1
    assert "needs a person's ack before the merge: orch ack T3 L4" in r.stdout
    v = verdict(orch, "T3")
    assert v["result"] == "OK" and v["pending_acks"] == ["L4"] and v["mergeable"] is False
    r = orch("ack", "T3", "L1")
    assert r.returncode == 3 and "hard lock" in r.stderr
    r = orch("ack", "T3", "L9")
    assert r.returncode == 3 and "known locks: L1, L2, L3, L4" in r.stderr
    sha = v["sha"]
    assert orch.ok("ack", "T3", "L4").stdout == (
        f"acked L4 for T3 at {sha[:12]} (holds for that exact commit only); still waiting for an ack: none\n"
    )
    assert status_of(proj, "T3")["acks"] == [f"L4@{sha}"]
    assert "ACK" in (proj / ".orch/run/log").read_text()
    v = verdict(orch, "T3", code=0)
    assert v["pending_acks"] == [] and v["mergeable"] is True


def test_an_ack_holds_for_one_exact_commit(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    r = orch("ack", "T3", "L4")
    assert r.returncode == 3 and "no verdict to ack" in r.stderr
    commit_in(wt, "docs/guide.md", "better guide\n")
    assert verdict(orch, "T3", code=1)["pending_acks"] == ["L4"]
    orch.ok("ack", "T3", "L4")
    assert verdict(orch, "T3", code=0)["mergeable"] is True
    # a later commit to the soft-locked area is not covered by the earlier ack
    commit_in(wt, "docs/guide.md", "a guide rewritten after the ack\n")
    assert verdict(orch, "T3", code=1)["pending_acks"] == ["L4"]
    # nor is an ack given after the branch moved on from the verdict a person saw
    commit_in(wt, "docs/guide.md", "and again\n")
    r = orch("ack", "T3", "L4")
    assert r.returncode == 3 and "an ack holds for one exact commit" in r.stderr
    # an entry without a commit (as older versions wrote) counts for nothing
    st_path = proj / ".orch/run/tasks/T3/status.yaml"
    st = status_of(proj, "T3")
    st["acks"] = ["L4"]
    st_path.write_text(yaml.safe_dump(st))
    assert verdict(orch, "T3", code=1)["pending_acks"] == ["L4"]


def test_requirement_locks_run_in_a_fresh_tree_of_the_exact_commit(proj: Path, orch: Orch) -> None:
    orch.ok("lock", "require", "TTL stays positive", "--check", "grep -q 'TTL = [1-9]' src/auth/session.py",
            "--via", "static")  # fmt: skip
    git(proj, "commit", "-q", "-am", "requirement")
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/session.py", "TTL = 5\n")
    assert verdict(orch, "T1", code=0)["result"] == "OK"
    commit_in(wt, "src/auth/session.py", "TTL = 0\n")
    v = verdict(orch, "T1", code=1)
    assert v["result"] == "LOCK_VIOLATION"
    assert rules(v) == {("(requirement R1)", "requirement")}
    # the worktree moves on and is dirty: the check still sees the exact commit, in a tree removed afterwards
    (wt / "src/auth/session.py").write_text("TTL = 9\n")
    assert verdict(orch, "T1", code=1)["result"] == "LOCK_VIOLATION"
    assert not (proj / ".orch/run/verify").exists() or not any((proj / ".orch/run/verify").iterdir())
    assert "verify" not in git(proj, "worktree", "list")


def test_check_requirements_in_a_given_folder(proj: Path, orch: Orch, tmp_path: Path) -> None:
    from orch.core.context import open_ctx
    from orch.verify import requirements

    orch.ok("lock", "require", "has a README", "--check", "test -f README.md", "--via", "static")
    orch.ok("lock", "require", "soft one", "--check", "exit 3", "--via", "test", "--soft")
    ctx = open_ctx(proj)
    assert requirements.check_requirements(ctx, proj) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    failures = requirements.check_requirements(ctx, empty)
    assert [(f.lock_id, f.exit_code, f.mode) for f in failures] == [("R1", 1, "hard")]
    failures = requirements.check_requirements(ctx, empty, hard_only=False)
    assert [(f.lock_id, f.exit_code) for f in failures] == [("R1", 1), ("R2", 3)]


def test_submodule_gitattributes_and_gitmodules_need_an_explicit_scope(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, ".gitattributes", "*.py diff=python\n")
    sub_sha = git(proj, "rev-parse", "HEAD")
    git(wt, "update-index", "--add", "--cacheinfo", f"160000,{sub_sha},vendor/lib")
    git(wt, "commit", "-q", "-m", "submodule")
    v = verdict(orch, "T3", code=1)
    assert v["result"] == "SCOPE_VIOLATION"
    assert rules(v) == {(".gitattributes", "gitattributes"), ("vendor/lib", "submodule")}
    text = (
        (proj / ".orch/plan.md")
        .read_text()
        .replace("## T3: Anything\n", "## T3: Anything\n- scope: ^(\\.gitattributes|vendor/lib)$\n")
    )
    (proj / ".orch/plan.md").write_text(text)
    assert verdict(orch, "T3", code=0)["result"] == "OK"


def test_agents_md_is_locked_unless_switched_off(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "AGENTS.md", "rewritten by an agent\n")
    v = verdict(orch, "T3", code=1)
    assert [(x["path"], x["lock"]) for x in v["violations"]] == [("AGENTS.md", "AGENTS_MD")]
    locks = proj / ".orch/locks.yaml"
    locks.write_text(locks.read_text().replace("agents_md_lock: true", "agents_md_lock: false"))
    # Switching the lock off loosens the rules: it counts for judging once committed on the base branch.
    assert [x["lock"] for x in verdict(orch, "T3", code=1)["violations"]] == ["AGENTS_MD"]
    git(proj, "commit", "-q", "-am", "AGENTS.md is no longer locked")
    assert verdict(orch, "T3", code=0)["result"] == "OK"


def test_planted_git_config_runs_nothing_during_verify(proj: Path, orch: Orch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    script.chmod(0o755)
    orch.ok("lock", "require", "readme", "--check", "test -f README.md", "--via", "static")
    git(proj, "commit", "-q", "-am", "req")
    wt = make_task(proj, "T1")
    (wt / ".gitattributes").write_text("* filter=evil diff=evil\n")
    commit_in(wt, "src/auth/session.py", "TTL = 3\n")
    git(wt, "add", ".gitattributes")
    git(wt, "commit", "-q", "-m", "attrs")
    for key, value in [
        ("diff.external", str(script)),
        ("diff.evil.textconv", str(script)),
        ("filter.evil.smudge", str(script)),
        ("filter.evil.clean", str(script)),
        ("core.fsmonitor", str(script)),
        ("core.hooksPath", str(tmp_path)),
    ]:
        git(proj, "config", key, value)
    (tmp_path / "post-checkout").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "post-checkout").chmod(0o755)
    (wt / "dirty.txt").write_text("x")  # forces the temporary checkout for the requirement check
    v = verdict(orch, "T1", code=1)
    assert rules(v) == {(".gitattributes", "scope"), (".gitattributes", "gitattributes")}
    assert not marker.exists(), marker.read_text()


def test_verify_all_and_unknown_tasks(proj: Path, orch: Orch) -> None:
    commit_in(make_task(proj, "T1"), "src/auth/session.py", "TTL = 2\n")
    commit_in(make_task(proj, "T2"), "src/auth/session.py", "TTL = 3\n")
    r = orch("verify", "--all", "--json")
    assert r.returncode == 1
    got = {v["id"]: v["result"] for v in json.loads(r.stdout)["verdicts"]}
    assert got == {"T1": "OK", "T2": "SCOPE_VIOLATION"}
    r = orch("verify", "T9")
    assert r.returncode == 3 and "T9" in r.stderr
    r = orch("verify", "T3")
    assert r.returncode == 3 and "no branch orch/T3" in r.stderr
    r = orch("verify")
    assert r.returncode == 2 and "name the tasks to verify" in r.stderr


def test_a_decoy_copy_of_a_comment_region_does_not_hide_an_edit(repo: Path, orch: Orch) -> None:
    locks = "version: 1\nlocks:\n  - {id: JS, kind: region, mode: hard, pattern: web/app.js::Pricing}\n"
    proj = setup_project(repo, orch, locks=locks)
    wt = make_task(proj, "T3")
    text = (proj / "web/app.js").read_text()
    decoy = "/*\n// orch-lock: begin Pricing\nconst p = 10;\n// orch-lock: end Pricing\n*/\n"
    commit_in(wt, "web/app.js", decoy + text.replace("const p = 10;", "const p = 0;"))
    v = verdict(orch, "T3", code=1)
    assert rules(v) == {("web/app.js", "region-lock")}
    assert "2 begin and 2 end markers" in v["violations"][0]["message"]
    commit_in(wt, "web/app.js", text.replace("// orch-lock: end Pricing\n", ""))  # unterminated now
    assert rules(verdict(orch, "T3", code=1)) == {("web/app.js", "region-lock")}


def test_a_second_definition_of_a_locked_python_function_is_a_violation(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    shadow = CART + "\n    def total(self):\n        return 0\n"
    commit_in(wt, "src/auth/cart.py", shadow)
    v = verdict(orch, "T1", code=1)
    assert rules(v) == {("src/auth/cart.py", "region-lock")}
    assert "bound 2 times" in v["violations"][0]["message"]
    commit_in(wt, "src/auth/cart.py", CART + "\nCart.total = property(lambda self: 0)\n")
    assert "reassigned" in verdict(orch, "T1", code=1)["violations"][0]["message"]
    commit_in(wt, "src/auth/cart.py", CART + "\nsetattr(Cart, 'total', 0)\n")
    assert "setattr" in verdict(orch, "T1", code=1)["violations"][0]["message"]
    commit_in(wt, "src/auth/cart.py", CART + "\n\nclass Cart:\n    pass\n")
    assert "bound 2 times" in verdict(orch, "T1", code=1)["violations"][0]["message"]


@pytest.mark.parametrize("plant", ["gitmodules", "config"])
def test_a_submodule_change_is_seen_whatever_ignore_setting_is_planted(proj: Path, orch: Orch, plant: str) -> None:
    head = git(proj, "rev-parse", "HEAD")
    git(proj, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib")
    gitmodules = '[submodule "lib"]\n\tpath = vendor/lib\n\turl = ./lib\n'
    if plant == "gitmodules":
        gitmodules += "\tignore = all\n"
    (proj / ".gitmodules").write_text(gitmodules)
    git(proj, "add", ".gitmodules")
    git(proj, "commit", "-q", "-m", "vendor a submodule")
    if plant == "config":
        git(proj, "config", "submodule.lib.ignore", "all")
        git(proj, "config", "diff.ignoreSubmodules", "all")
    wt = make_task(proj, "T3")
    git(wt, "update-index", "--cacheinfo", f"160000,{git(proj, 'rev-parse', 'HEAD')},vendor/lib")
    tree = git(wt, "write-tree")  # git commit itself would say "nothing to commit"
    git(wt, "update-ref", "refs/heads/orch/T3", git(wt, "commit-tree", tree, "-p", "HEAD", "-m", "move the submodule"))
    v = verdict(orch, "T3", code=1)
    assert rules(v) == {("vendor/lib", "submodule")}
    assert v["changed_paths"] == 1


def _plant(cache: Path, kind: str, change: Any) -> int:
    """Rewrite every entry of one of orch's caches with ``change(data)``; how many there were."""
    n = 0
    for entry in (cache / kind).iterdir() if (cache / kind).is_dir() else []:
        try:
            data = json.loads(entry.read_text())
        except ValueError:
            continue
        entry.write_text(json.dumps(change(entry.name, data)))
        n += 1
    return n


def test_verify_builds_its_rules_from_the_files_not_the_caches(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T1")
    commit_in(wt, "src/billing/pricing.py", "PRICE = 0\n")
    assert verdict(orch, "T1", code=1)["result"] == "LOCK_VIOLATION"
    orch.ok("status")
    cache = proj / ".orch/run/cache"

    def no_locks(name: str, data: Any) -> Any:
        return {"locks": [], "agents_md_lock": False}

    def no_scopes(name: str, data: Any) -> Any:
        if isinstance(data, dict) and "tasks" in data:
            for t in data["tasks"]:
                t["fields"].pop("scope", None)
            return data
        return {k: None for k in data}

    def base_is_the_task(name: str, data: Any) -> Any:
        return {**data, "base_branch": "orch/T1"} if name.startswith("config-") else data

    assert _plant(cache, "locks", no_locks) >= 1
    assert _plant(cache, "plan", no_scopes) >= 1
    assert _plant(cache, "valid", base_is_the_task) >= 1
    v = verdict(orch, "T1", code=1)
    assert v["result"] == "LOCK_VIOLATION"
    assert rules(v) == {("src/billing/pricing.py", "path-lock"), ("src/billing/pricing.py", "scope")}
    assert v["base_sha"] == git(proj, "rev-parse", "main")
    # an entry of the wrong shape is recompiled, not an internal error (the hooks read the cache)
    assert _plant(cache, "locks", lambda name, data: {}) >= 1
    (wt / "src/billing/pricing.py").write_text("PRICE = 1\n")
    git(wt, "add", "-A")
    r = subprocess.run([sys.executable, "-m", "orch.hookmain", "pre-commit"], cwd=wt, capture_output=True, text=True)
    assert r.returncode == 1 and "path-lock" in r.stderr, r.stderr


def test_requirement_checks_ignore_ignored_files_in_the_task_worktree(proj: Path, orch: Orch) -> None:
    check = f"{sys.executable} -c \"import sys; sys.path.insert(0, 'src/auth'); import ttl; sys.exit(ttl.TTL <= 0)\""
    orch.ok("lock", "require", "TTL stays positive", "--check", check, "--via", "test")
    git(proj, "commit", "-q", "-am", "requirement")
    wt = make_task(proj, "T1")
    commit_in(wt, "src/auth/ttl.py", "TTL = 0\n")
    # an ignored package beside the committed module shadows it, and the worktree still counts as clean
    (wt / "src/auth/ttl").mkdir()
    (wt / "src/auth/ttl/__init__.py").write_text("TTL = 5\n")
    (proj / ".git/info").mkdir(exist_ok=True)
    (proj / ".git/info/exclude").write_text("src/auth/ttl/\n")
    assert git(wt, "status", "--porcelain") == ""
    v = verdict(orch, "T1", code=1)
    assert v["result"] == "LOCK_VIOLATION" and rules(v) == {("(requirement R1)", "requirement")}


def test_the_tree_for_requirement_checks_is_written_without_git_checkout(
    proj: Path, orch: Orch, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "smudge.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    script.chmod(0o755)
    orch.ok("lock", "require", "session and tool are there", "--check",
            "test -f src/auth/session.py && test -x bin/tool && test -L link", "--via", "static")  # fmt: skip
    git(proj, "commit", "-q", "-am", "requirement")
    wt = make_task(proj, "T3")
    (wt / "bin").mkdir()
    (wt / "bin/tool").write_text("#!/bin/sh\n")
    (wt / "bin/tool").chmod(0o755)
    (wt / "link").symlink_to("bin/tool")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "tool")
    # config reached only from a linked worktree's git dir, and an attribute in the shared info folder
    (tmp_path / "evil.cfg").write_text(f'[filter "x"]\n\tsmudge = {script}\n\tclean = {script}\n')
    git(proj, "config", "includeIf.gitdir:**/.git/worktrees/**.path", str(tmp_path / "evil.cfg"))
    (proj / ".git/info").mkdir(exist_ok=True)
    (proj / ".git/info/attributes").write_text("* filter=x\n")
    (wt / "dirty.txt").write_text("x")
    v = verdict(orch, "T3", code=0)
    assert v["result"] == "OK", v
    assert not marker.exists()
    assert "verify" not in git(proj, "worktree", "list")


def test_a_symlink_to_a_folder_holding_locked_files_is_a_violation(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    os.symlink("billing", wt / "src/bl")  # src/bl/pricing.py is the locked src/billing/pricing.py
    os.symlink("../auth", wt / "src/billing/au")  # holds the file of region lock L3
    os.symlink(".", wt / "here")  # the whole repository
    os.symlink("dashboard", wt / "src/dash")  # nothing locked in there
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "folder links")
    v = verdict(orch, "T3", code=1)
    assert v["result"] == "LOCK_VIOLATION"
    got = {(x["path"], x["rule"], x["lock"]) for x in v["violations"]}
    assert ("src/bl", "symlink-to-lock", "L1") in got
    assert ("src/billing/au", "symlink-to-lock", "L3") in got
    # L4 (docs/) may match at any depth: what a folder holds is not looked at, so it is not counted
    assert {lock for path, rule, lock in got if path == "here"} == {"L1", "L2", "L3", "AGENTS_MD"}
    assert not any(path == "src/dash" for path, _, _ in got)
    assert {path for path, _, _ in got} == {"src/bl", "src/billing/au", "here"}


@pytest.mark.parametrize(
    "args",
    [("T1",), ("T1", "T2", "--json"), ("--all",), ("--json", "--all"), (), ("T1", "--all"), ("NOPE",), ("bad id",)],
)
def test_verify_skips_the_cli_framework_and_answers_as_the_cli_does(proj: Path, args: tuple[str, ...]) -> None:
    commit_in(make_task(proj, "T1"), "src/auth/session.py", "TTL = 120\n")
    commit_in(make_task(proj, "T2"), "src/billing/pricing.py", "PRICE = 11\n")
    # Checked the second time, with the files validated once and no test-suite checks on writes, as
    # users run it: no typer, click, jsonschema, rich, what made verify slow to start.
    heavy = ("typer", "click", "jsonschema", "rich", "filelock")
    code = assert_fast_path_agrees(proj, "verify", *args, heavy=heavy, warm=True, env={"ORCH_CHECK_WRITES": "0"})
    assert code in (0, 1, 2, 3)


def test_verify_help_and_unknown_flags_go_to_the_cli(proj: Path, orch: Orch) -> None:
    assert orch.ok("verify", "--help").stdout.startswith("Usage: orch verify [OPTIONS] [ID]")
    r = orch("verify", "--jsn", "T1")
    assert r.returncode == 2 and "No such option: --jsn" in r.stderr


def test_checks_see_the_users_environment_whichever_path_runs_verify(proj: Path, orch: Orch) -> None:
    # typer is configured through an environment variable; it must not leak into what orch runs.
    check = 'test "${TYPER_USE_RICH-unset}" = unset'
    orch.ok("lock", "require", "no leaked settings", "--check", check, "--via", "static")
    git(proj, "commit", "-qam", "lock")
    commit_in(make_task(proj, "T1"), "src/auth/session.py", "TTL = 120\n")
    for args in (("T1",), ("--", "T1")):  # the fast path, then the CLI's
        r = orch("verify", *args)
        assert r.returncode == 0 and "mergeable" in r.stdout, r.output
