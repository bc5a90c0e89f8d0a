"""The agent presets, orch's side of each real CLI: the argv orch builds, the files it writes, its
hooks run with the JSON each CLI sends, usage read from output in each CLI's documented shape.

The real CLIs are not installed here. Each test runs the preset as ``orch init`` writes it, with only
the program swapped for a stand-in script that does what /work/shared/ECOSYSTEM.md records the real
one doing with the flags it was given (Codex reads ``-c`` values as TOML and runs hook commands
through a shell; Aider edits .gitignore unless --no-gitignore; Gemini exits 55 in an untrusted
folder).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, let_agent_write
from vhelpers import make_task, setup_project


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def stand_in(project: Path, agent: str, tmp_path: Path, body: str) -> Path:
    """Point the preset ``agent`` at a Python script (everything else in the preset as shipped);
    the script's record goes to the returned path."""
    record = let_agent_write(project, tmp_path / "records", agent) / f"{agent}-record.json"
    script = tmp_path / f"fake-{agent}"
    prelude = f"import json, os, re, subprocess, sys\nRECORD = {str(record)!r}\n"
    script.write_text(f"#!{sys.executable}\n" + prelude + textwrap.dedent(body))
    script.chmod(0o755)
    path = project / ".orch" / "agents" / f"{agent}.yaml"
    data = yaml.safe_load(path.read_text())
    data["command"][0] = str(script)  # (its record folder is writable in the box: let_agent_write)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return record


def wait_done(orch: Orch, task_id: str) -> dict:
    r = orch("wait", task_id, "--timeout", "60")
    assert r.returncode in (0, 1), r.output
    return yaml.safe_load((orch.cwd / ".orch/run/tasks" / task_id / "status.yaml").read_text())


def odd_python(tmp_path: Path) -> Path:
    """This virtualenv's Python reached through a folder whose name has a space and both quotes."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("needs the tests to run in a virtualenv (scripts/test makes one)")
    root = tmp_path / "it's \"odd\" py"
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (root / "lib").symlink_to(Path(sys.prefix) / "lib")
    (root / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    return root / "bin" / "python"


# -- Codex ------------------------------------------------------------------------------------------

# Codex exec: `-c key=value` parses value as TOML; PreToolUse hooks whose matcher fits apply_patch run
# through a shell in the session's folder, with the hook JSON on stdin; exit 2 denies the patch.
FAKE_CODEX = """
import tomllib
argv = sys.argv[1:]
hooks = []
for i, arg in enumerate(argv):
    if arg == "-c":
        key, _, value = argv[i + 1].partition("=")
        assert key == "hooks.PreToolUse", key
        hooks = tomllib.loads("v = " + value)["v"]
cwd = argv[argv.index("-C") + 1]
seen = {}
for name, path in (("locked", "src/billing/pricing.py"), ("in_scope", "src/auth/new.py")):
    patch = f"*** Begin Patch\\n*** Add File: {path}\\n+x = 1\\n*** End Patch\\n"
    event = {"session_id": "s1", "cwd": cwd, "hook_event_name": "PreToolUse", "tool_name": "apply_patch",
             "tool_input": {"command": patch}}
    for group in hooks:
        if re.fullmatch(group["matcher"], "apply_patch"):
            for hook in group["hooks"]:
                r = subprocess.run(["sh", "-c", hook["command"]], cwd=cwd, input=json.dumps(event),
                                   capture_output=True, text=True, timeout=hook["timeout"])
                seen[name] = [r.returncode, r.stderr]
    if seen.get(name, [1])[0] == 0:
        os.makedirs(os.path.dirname(os.path.join(cwd, path)), exist_ok=True)
        open(os.path.join(cwd, path), "w").write("x = 1\\n")
json.dump({"argv": argv, "hooks": hooks, "seen": seen}, open(RECORD, "w"))
print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 9, "cached_input_tokens": 0,
                                                      "output_tokens": 1}}))
"""


def test_codex_preset_runs_orchs_hook_from_the_command_line(proj: Path, orch: Orch, tmp_path: Path) -> None:
    pytest.importorskip("tomllib")  # the stand-in reads TOML as Codex does (Python >= 3.11)
    record = stand_in(proj, "codex", tmp_path, FAKE_CODEX)
    python = odd_python(tmp_path)  # the hook command holds the interpreter's path: quotes and a space
    r = subprocess.run([str(python), "-m", "orch", "spin", "T1", "--agent", "codex"], cwd=proj,
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    st = wait_done(orch, "T1")
    assert st["state"] == "SUCCESS", st
    seen = json.loads(record.read_text())
    argv = seen["argv"]
    # Codex's own sandbox: off inside orch's box (which bounds it), workspace-write without it
    inner = "danger-full-access" if st["sandbox"] == "on" else "workspace-write"
    assert argv[:4] == ["exec", "--json", "-s", inner], st["sandbox"]
    assert "--add-dir" not in argv and "--dangerously-bypass-hook-trust" in argv
    override = argv[argv.index("-c") + 1]  # one argv element
    assert override.startswith('hooks.PreToolUse=[{matcher="apply_patch|Bash",hooks=[{type="command",command="')
    [group] = seen["hooks"]
    assert group["hooks"][0]["timeout"] == 30
    assert shlex.split(group["hooks"][0]["command"]) == [str(python), "-m", "orch.hookmain", "codex-pretool"]
    code, stderr = seen["seen"]["locked"]
    assert code == 2 and "src/billing/pricing.py: scope: outside the task's scope" in stderr, stderr
    assert "src/billing/pricing.py: path-lock" in stderr
    assert seen["seen"]["in_scope"] == [0, ""]
    # what the agent wrote is committed by orch when it exits (it cannot commit in its sandbox)
    assert git(proj, "diff", "--name-only", "main", "orch/T1").splitlines() == ["src/auth/new.py"]
    assert git(proj, "log", "-1", "--format=%an %s", "orch/T1").startswith("orch orch: snapshot of task T1")
    context = (proj / ".orch/run/tasks/T1/context.md").read_text()
    assert "orch commits them when you exit" in context and "final message and exit code are your report" in context


def test_codex_hooks_value_is_toml_whatever_the_command_holds() -> None:
    tomllib = pytest.importorskip("tomllib")
    from orch.verify import hooks

    for text in ['a "b" \\c', "tab\there\nnew\x7fdel\x01", "it's", "ünïcode"]:
        assert tomllib.loads("v = " + hooks.toml_string(text))["v"] == text
    value = tomllib.loads("v = " + hooks.codex_hooks_override().partition("=")[2])["v"]
    assert value == [
        {
            "matcher": "apply_patch|Bash",
            "hooks": [{"type": "command", "command": hooks.python_command() + " codex-pretool", "timeout": 30}],
        }
    ]


# -- Aider ------------------------------------------------------------------------------------------

# Aider 0.86: adds `.aider*` to .gitignore unless --no-gitignore; writes its chat and input history and
# its tags cache at the top of the repository it works in; appends analytics events to --analytics-log.
FAKE_AIDER = """
argv = sys.argv[1:]
if "--no-gitignore" not in argv:
    with open(".gitignore", "a") as handle:
        handle.write(".aider*\\n")
open(".aider.chat.history.md", "a").write("# aider chat started\\n")
open(".aider.input.history", "a").write("+do it\\n")
os.makedirs(".aider.tags.cache.v4", exist_ok=True)
open(".aider.tags.cache.v4/x", "w").write("cache")
os.makedirs("src/auth", exist_ok=True)
open("src/auth/aided.py", "w").write("A = 1\\n")
log = argv[argv.index("--analytics-log") + 1]
event = {"event": "message_send", "properties": {"prompt_tokens": 120, "completion_tokens": 30, "total_cost": 0.01}}
open(log, "a").write(json.dumps(event) + "\\n")
json.dump({"argv": argv}, open(RECORD, "w"))
"""


def test_aider_preset_is_headless_and_its_own_files_stay_off_the_branch(
    proj: Path, orch: Orch, tmp_path: Path
) -> None:
    record = stand_in(proj, "aider", tmp_path, FAKE_AIDER)
    orch.ok("spin", "T1", "--agent", "aider")
    st = wait_done(orch, "T1")
    assert st["state"] == "SUCCESS", st
    argv = json.loads(record.read_text())["argv"]
    for flag in ("--yes-always", "--no-gitignore", "--no-check-update", "--no-analytics", "--no-show-release-notes",
                 "--no-detect-urls"):  # fmt: skip
        assert flag in argv, flag
    assert argv[argv.index("--analytics-log") + 1] == str(proj / ".orch/run/tasks/T1/usage.jsonl")
    assert st["tokens"]["input"] == 120 and st["tokens"]["output"] == 30  # --no-analytics still logs
    # the snapshot holds the agent's work and nothing of Aider's own
    committed = git(proj, "diff", "--name-only", "main", "orch/T1").splitlines()
    assert committed == ["src/auth/aided.py"], committed
    wt = proj / ".orch/worktrees/T1"
    assert (wt / ".aider.tags.cache.v4/x").exists()
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    assert orch("verify", "T1").returncode == 0


# -- Gemini CLI -------------------------------------------------------------------------------------

STATS = {
    "response": "Done: added src/auth/gem.py.",
    "stats": {
        "models": {
            "gemini-2.5-pro": {
                "api": {"totalRequests": 3, "totalErrors": 0, "totalLatencyMs": 9120},
                "tokens": {
                    "prompt": 3900, "candidates": 250, "total": 4320, "cached": 1200, "thoughts": 120, "tool": 50,
                },  # fmt: skip
            },
            "gemini-2.5-flash": {
                "api": {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 800},
                "tokens": {"prompt": 300, "candidates": 20, "total": 330, "cached": 0, "thoughts": 10, "tool": 0},
            },
        },
        "tools": {"totalCalls": 2, "totalSuccess": 2, "totalFail": 0, "totalDurationMs": 40, "byName": {}},
        "files": {"totalLinesAdded": 1, "totalLinesRemoved": 0},
    },
}


def test_gemini_usage_counts_thoughts_as_output() -> None:
    from orch.agents.manifest import parse_usage

    u = parse_usage("gemini-json", "Loaded cached credentials.\n" + json.dumps(STATS, indent=2))
    assert (u.input, u.cached, u.output) == (3900 - 1200 + 50 + 300, 1200, 250 + 120 + 20 + 10)
    assert u.total == 4320 + 330  # what Gemini reports, model by model
    one = {"stats": {"models": {"m": {"tokens": {"prompt": 4000, "candidates": 200, "thoughts": 120, "total": 4320}}}}}
    assert parse_usage("gemini-json", json.dumps(one)).total == 4320


# Gemini CLI 0.61: headless in an untrusted folder exits 55 (GEMINI_CLI_TRUST_WORKSPACE or --skip-trust
# trust it); in a trusted one it runs the workspace's BeforeTool hooks (command through a shell, JSON on
# stdin, exit 2 blocks the tool).
FAKE_GEMINI = """
argv = sys.argv[1:]
trusted = "--skip-trust" in argv or os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") == "true"
json.dump({"argv": argv, "env": os.environ.get("GEMINI_CLI_TRUST_WORKSPACE")}, open(RECORD, "w"))
if not trusted:
    sys.exit(55)
settings = json.load(open(".gemini/settings.json"))
def before_tool(tool, tool_input):
    event = {"session_id": "s", "transcript_path": "/tmp/t.json", "cwd": os.getcwd(),
             "hook_event_name": "BeforeTool", "timestamp": "2026-01-01T00:00:00Z", "tool_name": tool,
             "tool_input": tool_input}
    for group in settings["hooks"]["BeforeTool"]:
        if re.fullmatch(group["matcher"], tool):
            for hook in group["hooks"]:
                r = subprocess.run(["sh", "-c", hook["command"]], input=json.dumps(event), text=True,
                                   capture_output=True, timeout=hook["timeout"] / 1000)
                if r.returncode == 2:
                    return False
    return True
if before_tool("write_file", {"file_path": os.path.abspath("src/dashboard/w.py"), "content": "W = 2\\n"}):
    open("src/dashboard/w.py", "w").write("W = 2\\n")
if before_tool("write_file", {"file_path": os.path.abspath("src/auth/gem.py"), "content": "G = 1\\n"}):
    open("src/auth/gem.py", "w").write("G = 1\\n")
print(json.dumps(STATS))
"""


def test_gemini_preset_trusts_the_worktree_and_its_hook_guards_edits(proj: Path, orch: Orch, tmp_path: Path) -> None:
    record = stand_in(proj, "gemini", tmp_path, f"STATS = {STATS!r}\n" + textwrap.dedent(FAKE_GEMINI))
    orch.ok("spin", "T1", "--agent", "gemini")
    st = wait_done(orch, "T1")
    seen = json.loads(record.read_text())
    assert "--skip-trust" in seen["argv"] and seen["env"] == "true"
    assert st["state"] == "SUCCESS" and st["exit_code"] == 0, st
    assert st["tokens"]["total"] == 4320 + 330
    # the hook refused the out-of-scope write; the in-scope one went through and was committed
    assert git(proj, "diff", "--name-only", "main", "orch/T1").splitlines() == ["src/auth/gem.py"]
    wt = proj / ".orch/worktrees/T1"
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""


def gemini_input(wt: Path, tool: str, tool_input: dict[str, object]) -> str:
    """What Gemini CLI sends a BeforeTool hook on stdin."""
    return json.dumps(
        {
            "session_id": "c0ffee00-1234-4abc-8def-0123456789ab",
            "transcript_path": "/home/ada/.gemini/tmp/abc/chats/session.json",
            "cwd": str(wt),
            "hook_event_name": "BeforeTool",
            "timestamp": "2026-01-01T00:00:00.000Z",
            "tool_name": tool,
            "tool_input": tool_input,
        }
    )


def run_hook(cwd: Path, stdin: str, *, via_cli: bool = False) -> subprocess.CompletedProcess[str]:
    name = "gemini-pretool"
    argv = [sys.executable, "-m", "orch", "hook", name] if via_cli else [sys.executable, "-m", "orch.hookmain", name]
    return subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, check=False)


def test_gemini_hook_judges_write_file_and_replace(proj: Path) -> None:
    wt = make_task(proj, "T1")
    ok = run_hook(wt, gemini_input(wt, "write_file", {"file_path": str(wt / "src/auth/new.py"), "content": "x\n"}))
    assert (ok.returncode, ok.stderr) == (0, "")
    out = run_hook(wt, gemini_input(wt, "write_file", {"file_path": str(wt / "src/dashboard/w.py"), "content": ""}))
    assert out.returncode == 2 and "src/dashboard/w.py: scope: outside the task's scope ^src/auth/" in out.stderr
    region = {"file_path": str(wt / "src/auth/cart.py"), "old_string": "sum(self.items)", "new_string": "0"}
    locked = run_hook(wt, gemini_input(wt, "replace", region), via_cli=True)
    assert locked.returncode == 2 and "src/auth/cart.py: region-lock: region edited" in locked.stderr, locked.stderr
    elsewhere = {"file_path": str(wt / "src/auth/cart.py"), "old_string": "len(self.items)", "new_string": "0"}
    assert run_hook(wt, gemini_input(wt, "replace", elsewhere)).returncode == 0
    first = {"file_path": "src/auth/cart.py", "old_string": "self.items", "new_string": "self.things"}
    assert run_hook(wt, gemini_input(wt, "replace", first)).returncode == 0  # only the first: __init__
    every = run_hook(wt, gemini_input(wt, "replace", {**first, "allow_multiple": True}))
    assert every.returncode == 2 and "region-lock" in every.stderr, every.stderr
    t3 = make_task(proj, "T3")
    price = {"file_path": str(t3 / "src/billing/pricing.py"), "old_string": "10", "new_string": "0"}
    denied = run_hook(t3, gemini_input(t3, "replace", price))
    assert denied.returncode == 2 and "src/billing/pricing.py: path-lock" in denied.stderr, denied.stderr
    main_file = run_hook(wt, gemini_input(wt, "write_file", {"file_path": str(proj / "x.py"), "content": ""}))
    assert main_file.returncode == 2 and "outside your task worktree" in main_file.stderr


def test_write_agent_hooks_writes_geminis_and_keeps_it_out_of_git(proj: Path) -> None:
    from orch.core.context import open_ctx
    from orch.verify import hooks

    wt = make_task(proj, "T1")
    (wt / ".gemini").mkdir()
    (wt / ".gemini/settings.json").write_text(json.dumps({"model": {"name": "gemini-2.5-pro"}}))
    hooks.write_agent_hooks(open_ctx(proj), "T1", wt)
    hooks.write_agent_hooks(open_ctx(proj), "T1", wt)  # idempotent
    settings = json.loads((wt / ".gemini/settings.json").read_text())
    assert settings["model"] == {"name": "gemini-2.5-pro"}
    [entry] = settings["hooks"]["BeforeTool"]
    assert entry["matcher"] == "write_file|replace|run_shell_command"
    [hook] = entry["hooks"]
    assert hook["type"] == "command" and hook["timeout"] == 30000  # Gemini's timeouts are in ms
    assert hook["command"].endswith("-m orch.hookmain gemini-pretool")
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    stdin = gemini_input(wt, "write_file", {"file_path": str(wt / "src/billing/pricing.py"), "content": ""})
    r = subprocess.run(["sh", "-c", hook["command"]], cwd=wt, input=stdin, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "path-lock" in r.stderr
    # Aider's files too: never committed by `git add -A` (what the snapshot does)
    for rel in (".aider.chat.history.md", ".aider.input.history", ".aider.tags.cache.v4/x"):
        (wt / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt / rel).write_text("aider\n")
    git(wt, "add", "-A")
    assert git(wt, "diff", "--cached", "--name-only") == ""
