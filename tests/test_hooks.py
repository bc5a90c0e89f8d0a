from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git
from vhelpers import CART, commit_in, make_task, setup_project


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def try_commit(cwd: Path, rel: str, text: str, *git_opts: str) -> subprocess.CompletedProcess[str]:
    path = cwd / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(cwd, "add", "--", rel)
    return subprocess.run(
        ["git", *git_opts, "commit", "-q", "-m", f"edit {rel}"], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_init_installs_the_hook_unless_no_hooks(repo: Path, orch: Orch) -> None:
    r = orch.ok("init", "--test-cmd", "true")
    hook = repo / ".git/hooks/pre-commit"
    assert f"hooks    installed pre-commit hook in {repo / '.git/hooks'}" in r.stdout
    assert "orch-hook: managed by git-orch" in hook.read_text()
    assert os.access(hook, os.X_OK)
    assert orch.ok("hooks", "status").stdout == "pre-commit: installed\n"
    hook.unlink()
    orch.ok("init", "--no-hooks")
    assert not hook.exists()


def test_install_keeps_a_foreign_hook_as_legacy_and_uninstall_restores_it(proj: Path, orch: Orch) -> None:
    hooks = proj / ".git/hooks"
    hooks.mkdir(exist_ok=True)
    mine = "#!/bin/sh\necho legacy-ran >&2\n"
    (hooks / "pre-commit").write_text(mine)
    (hooks / "pre-commit").chmod(0o755)
    r = orch.ok("hooks", "install")
    assert "kept your pre-commit hook as pre-commit.legacy (it still runs first)" in r.stdout
    assert (hooks / "pre-commit.legacy").read_text() == mine
    assert orch.ok("hooks", "status").stdout == "pre-commit: installed (runs pre-commit.legacy first)\n"
    orch.ok("hooks", "install")  # again: our own shim is replaced, the legacy hook stays
    assert (hooks / "pre-commit.legacy").read_text() == mine
    done = try_commit(proj, "notes.txt", "n\n")
    assert done.returncode == 0 and "legacy-ran" in done.stderr
    assert orch.ok("hooks", "uninstall").stdout == "pre-commit: restored your original hook\n"
    assert (hooks / "pre-commit").read_text() == mine and not (hooks / "pre-commit.legacy").exists()
    assert orch.ok("hooks", "uninstall").stdout == "pre-commit: left alone (not orch's)\n"


def test_a_failing_legacy_hook_still_refuses(proj: Path, orch: Orch) -> None:
    hooks = proj / ".git/hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 7\n")
    (hooks / "pre-commit").chmod(0o755)
    orch.ok("hooks", "install")
    assert try_commit(proj, "notes.txt", "n\n").returncode != 0


def test_core_hooks_path_makes_install_refuse_politely(proj: Path, orch: Orch) -> None:
    git(proj, "config", "core.hooksPath", ".githooks")
    r = orch("hooks", "install")
    assert r.returncode == 3
    assert "core.hooksPath is set (.githooks)" in r.stderr
    assert "git config --unset core.hooksPath" in r.stderr
    assert not (proj / ".git/hooks/pre-commit").exists()
    assert orch.ok("hooks", "status").stdout == "pre-commit: inactive: core.hooksPath is set (.githooks)\n"


def test_commit_through_the_hook_in_a_task_worktree(proj: Path, orch: Orch) -> None:
    orch.ok("hooks", "install")
    wt = make_task(proj, "T1")
    ok = try_commit(wt, "src/auth/session.py", "TTL = 5\n")
    assert ok.returncode == 0, ok.stderr
    bad = try_commit(wt, "src/dashboard/w.py", "W = 9\n")
    assert bad.returncode == 1
    assert "orch: commit refused: 1 staged change(s) break the rules for task T1 (scope ^src/auth/):" in bad.stderr
    assert "src/dashboard/w.py: scope: outside the task's scope ^src/auth/" in bad.stderr
    git(wt, "reset", "-q", "--", "src/dashboard/w.py")
    region = try_commit(wt, "src/auth/cart.py", CART.replace("sum(self.items)", "sum(self.items) * 3"))
    assert region.returncode == 1 and "src/auth/cart.py: region-lock: region edited" in region.stderr
    git(wt, "reset", "-q", "--", "src/auth/cart.py")
    tamper = try_commit(wt, ".orch/locks.yaml", "version: 1\nlocks: []\n")
    assert tamper.returncode == 1 and ".orch/locks.yaml: orch-state" in tamper.stderr
    git(wt, "reset", "-q", "--", ".orch/locks.yaml")
    # `git commit -a` stages through a temporary index: the hook sees what is really committed
    (wt / "src/billing/pricing.py").write_text("PRICE = 1\n")
    all_ = subprocess.run(["git", "commit", "-aqm", "all"], cwd=wt, capture_output=True, text=True, check=False)
    assert all_.returncode == 1 and "src/billing/pricing.py: path-lock" in all_.stderr


def test_commit_through_the_hook_in_the_main_checkout(proj: Path, orch: Orch) -> None:
    orch.ok("hooks", "install")
    bad = try_commit(proj, "src/billing/pricing.py", "PRICE = 11\n")
    assert bad.returncode == 1
    assert "break the rules for the main checkout" in bad.stderr
    assert "git commit --no-verify" in bad.stderr
    git(proj, "reset", "-q", "--", "src/billing/pricing.py")
    # people curate AGENTS.md and the plan: no agent rules in the main checkout
    assert try_commit(proj, "AGENTS.md", "curated\n").returncode == 0
    assert try_commit(proj, ".orch/plan.md", (proj / ".orch/plan.md").read_text() + "\n").returncode == 0
    soft = try_commit(proj, "docs/guide.md", "more\n")
    assert soft.returncode == 0 and "warning: docs/guide.md: path-lock" in soft.stderr


def test_broken_locks_make_the_hook_refuse(proj: Path, orch: Orch) -> None:
    orch.ok("hooks", "install")
    (proj / ".orch/locks.yaml").write_text("locks: [\n")
    r = try_commit(proj, "notes.txt", "x\n")
    assert r.returncode == 1 and "not valid YAML" in r.stderr


@pytest.mark.parametrize(
    "bypass",
    [
        ("--no-verify",),
        ("-c", "core.hooksPath=/dev/null"),
        ("chmod",),
    ],
)
def test_hook_bypasses_are_caught_by_verify(proj: Path, orch: Orch, bypass: tuple[str, ...]) -> None:
    orch.ok("hooks", "install")
    wt = make_task(proj, "T1")
    if bypass == ("chmod",):
        (proj / ".git/hooks/pre-commit").chmod(0o644)
        done = try_commit(wt, "src/billing/pricing.py", "PRICE = 0\n")
    elif bypass[0] == "--no-verify":
        (wt / "src/billing/pricing.py").write_text("PRICE = 0\n")
        git(wt, "add", "-A")
        done = subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "x"], cwd=wt, capture_output=True, text=True)
    else:
        done = try_commit(wt, "src/billing/pricing.py", "PRICE = 0\n", *bypass)
    assert done.returncode == 0, done.stderr
    r = orch("verify", "T1", "--json")
    assert r.returncode == 1
    got = {(v["path"], v["rule"]) for v in json.loads(r.stdout)["verdicts"][0]["violations"]}
    assert got == {("src/billing/pricing.py", "scope"), ("src/billing/pricing.py", "path-lock")}


def test_pre_commit_framework_manifest() -> None:
    manifest = yaml.safe_load((Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text())
    assert manifest == [
        {
            "id": "orch-locks",
            "name": "orch locks and task scope",
            "description": manifest[0]["description"],
            "entry": "orch hook pre-commit",
            "language": "python",
            "pass_filenames": False,
            "always_run": True,
            "stages": ["pre-commit"],
        }
    ]


# -- agent hooks ------------------------------------------------------------------------------------


def claude_input(wt: Path, tool: str, tool_input: dict[str, object]) -> str:
    """What Claude Code sends a PreToolUse hook on stdin."""
    return json.dumps(
        {
            "session_id": "5f2c9a1e-7d3b-4c2a-9e61-2b8f0d4a6c11",
            "transcript_path": "/home/ada/.claude/projects/-repo/5f2c9a1e.jsonl",
            "cwd": str(wt),
            "permission_mode": "acceptEdits",
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
        }
    )


def run_hook(cwd: Path, name: str, stdin: str, *, via_cli: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "orch", "hook", name] if via_cli else [sys.executable, "-m", "orch.hookmain", name]
    return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, check=False)


def test_claude_hook_denies_locked_and_out_of_scope_writes(proj: Path) -> None:
    wt = make_task(proj, "T1")
    allowed = run_hook(wt, "claude-pretool", claude_input(wt, "Write", {"file_path": str(wt / "src/auth/new.py"),
                                                                         "content": "x = 1\n"}))  # fmt: skip
    assert (allowed.returncode, allowed.stderr) == (0, "")
    out = run_hook(
        wt, "claude-pretool", claude_input(wt, "Write", {"file_path": str(wt / "src/dashboard/w.py"), "content": ""})
    )
    assert out.returncode == 2
    assert "src/dashboard/w.py: scope: outside the task's scope ^src/auth/" in out.stderr
    edit = claude_input(
        wt,
        "Edit",
        {"file_path": str(wt / "src/auth/cart.py"), "old_string": "sum(self.items)", "new_string": "0"},
    )
    denied = run_hook(wt, "claude-pretool", edit, via_cli=True)
    assert denied.returncode == 2 and "src/auth/cart.py: region-lock: region edited" in denied.stderr
    elsewhere = claude_input(
        wt,
        "MultiEdit",
        {
            "file_path": str(wt / "src/auth/cart.py"),
            "edits": [{"old_string": "len(self.items)", "new_string": "len(self.items) + 0"}],
        },
    )
    assert run_hook(wt, "claude-pretool", elsewhere).returncode == 0
    main_file = claude_input(wt, "Write", {"file_path": str(proj / "src/auth/session.py"), "content": ""})
    outside = run_hook(wt, "claude-pretool", main_file)
    assert outside.returncode == 2 and "outside your task worktree" in outside.stderr
    tmp = claude_input(wt, "Write", {"file_path": "/tmp/scratch.txt", "content": ""})
    assert run_hook(wt, "claude-pretool", tmp).returncode == 0
    agents = claude_input(wt, "Edit", {"file_path": str(wt / "AGENTS.md"), "old_string": "", "new_string": "x"})
    assert run_hook(wt, "claude-pretool", agents).returncode == 2
    assert run_hook(wt, "claude-pretool", "not json").returncode == 2


def test_codex_hook_reads_paths_from_the_patch(proj: Path) -> None:
    wt = make_task(proj, "T1")
    patch = (
        "*** Begin Patch\n*** Update File: src/auth/cart.py\n@@\n     def count(self):\n"
        "-        return len(self.items)\n+        return len(self.items) + 0\n*** Add File: src/auth/x.py\n+x = 1\n"
        "*** End Patch\n"
    )
    data = {"cwd": str(wt), "hook_event_name": "PreToolUse", "tool_name": "apply_patch",
            "tool_input": {"command": patch}}  # fmt: skip
    assert run_hook(wt, "codex-pretool", json.dumps(data)).returncode == 0
    data["tool_input"] = {"command": patch.replace("src/auth/x.py", "src/billing/pricing.py")}
    r = run_hook(wt, "codex-pretool", json.dumps(data))
    assert r.returncode == 2 and "src/billing/pricing.py: scope" in r.stderr
    region = patch.replace("def count(self):\n-        return len", "def total(self):\n-        return sum")
    region = region.replace("+        return len(self.items) + 0", "+        return 0")
    data["tool_input"] = {"command": region}
    r = run_hook(wt, "codex-pretool", json.dumps(data), via_cli=True)
    assert r.returncode == 2 and "region-lock" in r.stderr
    moved = "*** Begin Patch\n*** Update File: src/auth/session.py\n*** Move to: src/dashboard/s.py\n*** End Patch\n"
    data["tool_input"] = {"command": moved}
    r = run_hook(wt, "codex-pretool", json.dumps(data))
    assert r.returncode == 2 and "src/dashboard/s.py: scope" in r.stderr


def test_write_agent_hooks_merges_settings_and_stays_out_of_git(proj: Path) -> None:
    from orch.core.context import open_ctx
    from orch.verify import hooks

    ctx = open_ctx(proj)
    wt = make_task(proj, "T1")
    (wt / ".claude").mkdir()
    theirs = {"permissions": {"allow": ["Bash(ls:*)"]}, "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": []}]}}
    (wt / ".claude/settings.json").write_text(json.dumps(theirs))
    hooks.write_agent_hooks(ctx, "T1", wt)
    hooks.write_agent_hooks(ctx, "T1", wt)  # idempotent
    settings = json.loads((wt / ".claude/settings.json").read_text())
    assert settings["permissions"] == theirs["permissions"]
    entries = settings["hooks"]["PreToolUse"]
    assert [e["matcher"] for e in entries] == ["Bash", "Edit|Write|MultiEdit|NotebookEdit|Bash"]
    command = entries[1]["hooks"][0]["command"]
    assert command.endswith("-m orch.hookmain claude-pretool")
    codex = json.loads((wt / ".codex/hooks.json").read_text())
    assert codex["hooks"]["PreToolUse"][0]["hooks"][0]["command"].endswith("codex-pretool")
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    # the command Claude Code would run, fed what Claude Code sends
    stdin = claude_input(wt, "Write", {"file_path": str(wt / "src/billing/pricing.py"), "content": ""})
    r = subprocess.run(["sh", "-c", command], cwd=wt, input=stdin, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "path-lock" in r.stderr


def test_write_agent_hooks_with_tracked_settings_uses_skip_worktree(proj: Path) -> None:
    from orch.core.context import open_ctx
    from orch.verify import hooks

    commit_in(proj, ".claude/settings.json", '{"model": "opus"}\n')
    wt = make_task(proj, "T2")
    hooks.write_agent_hooks(open_ctx(proj), "T2", wt)
    assert json.loads((wt / ".claude/settings.json").read_text())["model"] == "opus"
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    git(wt, "add", "-A")
    assert git(wt, "diff", "--cached", "--name-only") == ""


def test_codex_hook_reads_patches_the_way_codex_applies_them(proj: Path) -> None:
    wt = make_task(proj, "T3")

    def codex(patch: str) -> subprocess.CompletedProcess[str]:
        data = {"cwd": str(wt), "hook_event_name": "PreToolUse", "tool_name": "apply_patch",
                "tool_input": {"command": patch}}  # fmt: skip
        return run_hook(wt, "codex-pretool", json.dumps(data))

    # "Add File" on a file that exists overwrites it: a locked test, a locked region
    r = codex("*** Begin Patch\n*** Add File: tests/unit/test_checkout_flow.py\n+def test_flow():\n+    pass\n"
              "*** End Patch\n")  # fmt: skip
    assert r.returncode == 2 and "test-lock" in r.stderr, r.stderr
    body = "".join(f"+{line}\n" for line in CART.replace("return sum(self.items)", "return 0").splitlines())
    r = codex(f"*** Begin Patch\n*** Add File: src/auth/cart.py\n{body}*** End Patch\n")
    assert r.returncode == 2 and "region-lock" in r.stderr, r.stderr
    r = codex("*** Begin Patch\n*** Add File: tests/unit/test_checkout_new.py\n+x = 1\n*** End Patch\n")
    assert r.returncode == 0, r.stderr  # a new test is fine
    # Codex trims the marker lines
    r = codex("*** Begin Patch\n  *** Update File: AGENTS.md  \n@@\n-# agents\n+# mine\n *** End Patch\n")
    assert r.returncode == 2 and "AGENTS.md" in r.stderr, r.stderr
    r = codex("*** Begin Patch\n\t*** Delete File: src/billing/pricing.py\n*** End Patch\n")
    assert r.returncode == 2 and "path-lock" in r.stderr, r.stderr


def test_agent_hooks_see_through_a_symlinked_folder(proj: Path) -> None:
    wt = make_task(proj, "T3")
    (wt / "src/bl").symlink_to("billing")
    write = claude_input(wt, "Write", {"file_path": str(wt / "src/bl/pricing.py"), "content": "PRICE = 0\n"})
    r = run_hook(wt, "claude-pretool", write)
    assert r.returncode == 2 and "src/billing/pricing.py: path-lock" in r.stderr, r.stderr
    (wt / "src/main").symlink_to(proj / "src")  # a folder of the main checkout
    write = claude_input(wt, "Write", {"file_path": str(wt / "src/main/new.py"), "content": "x = 1\n"})
    r = run_hook(wt, "claude-pretool", write)
    assert r.returncode == 2 and "outside your task worktree" in r.stderr, r.stderr
    patch = "*** Begin Patch\n*** Update File: src/bl/pricing.py\n@@\n-PRICE = 10\n+PRICE = 0\n*** End Patch\n"
    data = {"cwd": str(wt), "hook_event_name": "PreToolUse", "tool_name": "apply_patch",
            "tool_input": {"command": patch}}  # fmt: skip
    r = run_hook(wt, "codex-pretool", json.dumps(data))
    assert r.returncode == 2 and "src/billing/pricing.py: path-lock" in r.stderr, r.stderr


# What orch 0.1 (before the house: one flat package) wrote into repositories, verbatim. An upgrade
# must not break a repository whose hooks an older orch installed.
OLD_SHIM = """#!/bin/sh
# orch-hook: managed by git-orch (pre-commit); `orch hooks uninstall` removes it and restores any hook kept as pre-commit.legacy.
# An early warning only: orch verify judges every task branch before a merge.
here=$(dirname "$0")
if [ -x "$here/pre-commit.legacy" ]; then
    "$here/pre-commit.legacy" "$@" || exit $?
fi
if [ -x PYTHON ]; then
    exec PYTHON -m orch.hookmain pre-commit "$@"
elif command -v orch >/dev/null 2>&1; then
    exec orch hook pre-commit "$@"
fi
echo "orch: pre-commit hook skipped: orch is not installed here (reinstall it, or: orch hooks uninstall)" >&2
exit 0
"""  # noqa: E501
OLD_AGENT_HOOK = "PYTHON -m orch.hookmain {hook}"


def test_hooks_an_older_orch_installed_keep_working(proj: Path) -> None:
    import shlex

    py = shlex.quote(sys.executable)
    hook = Path(git(proj, "rev-parse", "--git-common-dir")) / "hooks" / "pre-commit"
    if not hook.is_absolute():
        hook = proj / hook
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(OLD_SHIM.replace("PYTHON", py))
    hook.chmod(0o755)
    bad = try_commit(proj, "src/billing/pricing.py", "PRICE = 11\n")  # a real git commit through the old shim
    assert bad.returncode == 1 and "break the rules for the main checkout" in bad.stderr, bad.stderr
    git(proj, "reset", "-q", "--", "src/billing/pricing.py")
    assert try_commit(proj, "notes.txt", "fine\n").returncode == 0
    wt = make_task(proj, "T1")
    assert try_commit(wt, "src/dashboard/w.py", "x = 1\n").returncode == 1  # out of scope, in a worktree
    # the agent hook commands written into .claude/settings.json and .codex/hooks.json by orch 0.1
    stdin = claude_input(wt, "Write", {"file_path": str(wt / "src/billing/pricing.py"), "content": ""})
    command = OLD_AGENT_HOOK.format(hook="claude-pretool").replace("PYTHON", py)
    r = subprocess.run(["sh", "-c", command], cwd=wt, input=stdin, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "path-lock" in r.stderr
    patch = "*** Begin Patch\n*** Add File: src/billing/x.py\n+x = 1\n*** End Patch\n"
    stdin = json.dumps({"cwd": str(wt), "tool_name": "apply_patch", "tool_input": {"command": patch}})
    command = OLD_AGENT_HOOK.format(hook="codex-pretool").replace("PYTHON", py)
    r = subprocess.run(["sh", "-c", command], cwd=wt, input=stdin, capture_output=True, text=True, check=False)
    assert r.returncode == 2, r.stderr


def test_a_plan_in_the_middle_of_an_edit_does_not_fail_an_agents_commit(proj: Path, orch: Orch) -> None:
    orch.ok("hooks", "install")
    wt = make_task(proj, "T1")
    with (proj / ".orch/plan.md").open("a") as plan:
        plan.write("\n## a heading a person is still typing\n")
    ok = try_commit(wt, "src/auth/session.py", "TTL = 5\n")
    assert ok.returncode == 0, ok.stderr
    assert "orch: warning: the task's scope is not checked here:" in ok.stderr and "plan.md:" in ok.stderr
    tamper = try_commit(wt, ".orch/locks.yaml", "version: 1\nlocks: []\n")  # the locks still hold
    assert tamper.returncode == 1 and ".orch/locks.yaml: orch-state" in tamper.stderr
