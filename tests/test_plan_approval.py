"""Plans a person approves first (``- approve: plan``): the planning run, AWAITING_APPROVAL and its
``plan`` item, ``orch reject --note`` (planning again, the note in the brief), ``orch approve`` (the
work, the plan in the brief), the hook that denies writes while the agent plans, the config's
``approve_plan``, and what a forged approval does not buy. Scripted agents act on ``$ORCH_PHASE``
and their brief, as real processes on real git (the box on, where bubblewrap works)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, let_agent_write, status_of, wait_state, write_plan
from vhelpers import make_task, setup_project

AGENT = textwrap.dedent(
    """
    import os, subprocess, sys
    mode = sys.argv[1]
    phase = os.environ.get("ORCH_PHASE", "-")
    brief = open(os.environ["ORCH_CONTEXT"]).read()
    if mode == "silent":
        pass  # ends its run without a word
    elif phase == "plan":
        plan = "# Plan\\n\\n1. write src/done.txt\\n"
        if "missing the migration" in brief:
            plan += "2. the migration, as the note asks\\n"
        if "1. write src/done.txt" in brief:
            plan += "(the rejected plan was in my brief)\\n"
        open("PLAN.md", "w").write(plan)
        if mode == "eager":  # writes code anyway, and commits it with the plan
            os.makedirs("src", exist_ok=True)
            open("src/early.py", "w").write("x = 1\\n")
            subprocess.run(["git", "add", "-A"], check=True)
            subprocess.run(["git", "commit", "-qm", "too early"], check=True)
    else:
        os.makedirs("src", exist_ok=True)
        open("src/brief.txt", "w").write(brief)
        open("src/phase.txt", "w").write(phase + "\\n")
        open("src/done.txt", "w").write("done\\n")
    """
)


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    path = tmp_path / "plan_agent.py"
    path.write_text(AGENT)
    return path


def plan(project: Path, agent: Path, mode: str = "good", *, approve: str | None = "plan", ids: str = "T1") -> None:
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(agent))} {mode}"
    text = "# Plan: approvals\n"
    for task_id in ids.split(","):
        fields = ["- scope: ^src/", "- agent: shell", f"- run: {run}", "- accept: test -f src/done.txt"]
        fields += [f"- approve: {approve}"] if approve else []
        text += f"\n## {task_id}: Make it\n" + "\n".join(fields) + "\n\nMake src/done.txt.\n"
    write_plan(project, text)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")


def items(orch: Orch) -> list[dict]:
    return json.loads(orch.ok("inbox", "--json").stdout)["items"]


def item_file(project: Path, item_id: str) -> dict:
    return yaml.safe_load((project / ".orch/run/inbox" / f"{item_id}.yaml").read_text())


def on_branch(project: Path, task_id: str = "T1") -> list[str]:
    return git(project, "ls-tree", "-r", "--name-only", f"orch/{task_id}").split()


def test_plan_rejected_then_approved_then_done(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent)
    folder = project / ".orch/run/tasks/T1"
    orch.ok("spin", "T1")
    r = orch("wait", "T1", "--timeout", "90")
    assert r.returncode == 1 and r.stdout == "T1: AWAITING_APPROVAL (its plan waits for a person: orch inbox)\n"
    st = status_of(project, "T1")
    assert st["plan"]["state"] == "waiting" and st["plan"]["file"] == "plan-1.md" and st["plan"]["item"] == "A1"
    assert (folder / "plan-1.md").read_text() == "# Plan\n\n1. write src/done.txt\n"
    assert "## Planning run: a plan only" in (folder / "plan-brief.md").read_text()
    assert "## Planning run" not in (folder / "context.md").read_text()  # the task's own brief, as spun
    # nothing on the branch, nothing left in the worktree: PLAN.md went to the run folder
    assert git(project, "rev-parse", "orch/T1").strip() == st["base_sha"]
    assert not (Path(st["worktree"]) / "PLAN.md").exists()
    [item] = items(orch)
    assert (item["id"], item["kind"], item["task"], item["state"]) == ("A1", "plan", "T1", "open")
    assert item["answer_with"] == "orch approve T1 | orch reject T1 --note TEXT"
    assert ".orch/run/tasks/T1/plan-1.md" in item["asked"]
    status = orch.ok("status").stdout
    assert "T1 AWAITING_APPROVAL: its plan waits for a person: read .orch/run/tasks/T1/plan-1.md" in status
    assert "notice:" not in status  # a branch still at its start holds no work landed by hand
    assert "plan:       .orch/run/tasks/T1/plan-1.md (A1, waiting)" in orch.ok("status", "T1").stdout

    r = orch.ok("reject", "T1", "--note", "missing the migration")
    assert r.stdout == "A1 (plan, task T1): rejected; T1 plans again, your note in its brief\n"
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    brief = (folder / "plan-brief.md").read_text()
    assert "### Your last plan was rejected" in brief and "> missing the migration" in brief
    second = (folder / "plan-2.md").read_text()
    assert "2. the migration, as the note asks" in second and "(the rejected plan was in my brief)" in second
    rejected = item_file(project, "A1")
    assert rejected["state"] == "rejected" and rejected["note"] == "missing the migration"
    assert [i["id"] for i in items(orch)] == ["A2"]

    r = orch.ok("approve", "T1")
    assert r.stdout == "A2 (plan, task T1): approved; T1 runs with the plan in its brief\n"
    assert wait_state(orch, "T1") == "SUCCESS"
    wt = Path(status_of(project, "T1")["worktree"])
    seen = (wt / "src/brief.txt").read_text()
    assert "## The approved plan" in seen and "2. the migration, as the note asks" in seen
    assert "inbox item A2" in seen and "## Planning run" not in seen
    assert (wt / "src/phase.txt").read_text() == "work\n"
    assert sorted(p.name for p in folder.glob("plan-*.md")) == ["plan-1.md", "plan-2.md", "plan-brief.md"]
    files = on_branch(project)
    assert "PLAN.md" not in files and "src/done.txt" in files
    assert items(orch) == []
    log = (project / ".orch/run/log").read_text()
    assert "| REJECT | A1 plan by " in log and "| APPROVE | A2 plan by " in log
    assert "| TDD_GATE | ok: accept fails before any work" in log  # the work ran the loop as ever
    assert status_of(project, "T1")["plan"]["state"] == "approved"


def test_what_a_planning_run_changes_is_set_aside(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "eager")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    st = status_of(project, "T1")
    # its commit (PLAN.md and src/early.py) is kept aside; the branch and the worktree are at the start
    assert git(project, "rev-parse", "orch/T1").strip() == st["base_sha"]
    kept = git(project, "ls-tree", "-r", "--name-only", "refs/orch/attempts/T1/1").split()
    assert "src/early.py" in kept
    wt = Path(st["worktree"])
    assert git(wt, "status", "--porcelain") == "" and not (wt / "src").exists()
    [item] = items(orch)
    assert "set aside under refs/orch/attempts/T1/1" in item["asked"]
    assert (project / ".orch/run/tasks/T1/plan-1.md").read_text().startswith("# Plan")
    orch.ok("approve", item["id"])  # the item's own id answers it too
    assert wait_state(orch, "T1") == "SUCCESS"
    assert "PLAN.md" not in on_branch(project) and "src/early.py" not in on_branch(project)


def test_a_planning_run_without_a_plan_fails(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, "silent")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "FAILED"
    assert "the planning run ended without a plan: no PLAN.md" in status_of(project, "T1")["reason"]
    assert items(orch) == []


def test_approve_plan_in_the_config_applies_to_every_task(project: Path, orch: Orch, agent: Path) -> None:
    config = project / ".orch/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["defaults"]["approve_plan"] = True
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    plan(project, agent, approve=None, ids="T1,T2")
    text = (project / ".orch/plan.md").read_text() + (
        "\n## T3: Trusted\n- scope: ^src/\n- agent: shell\n- approve: none\n"
        f"- run: {shlex.quote(sys.executable)} {shlex.quote(str(agent))} good\n- accept: test -f src/done.txt\n"
    )
    write_plan(project, text)
    git(project, "commit", "-qam", "T3 opts out")
    orch.ok("spin", "T1", "T2", "T3")
    assert [wait_state(orch, t) for t in ("T1", "T2", "T3")] == ["AWAITING_APPROVAL", "AWAITING_APPROVAL", "SUCCESS"]
    assert sorted(i["task"] for i in items(orch)) == ["T1", "T2"]  # (numbered as their runs ended)
    assert (Path(status_of(project, "T3")["worktree"]) / "src/phase.txt").read_text() == "-\n"


def test_an_uncommitted_edit_cannot_drop_the_approval(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent)
    path = project / ".orch/plan.md"
    path.write_text(path.read_text().replace("- approve: plan\n", ""))  # what an agent could do
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"


def test_a_forged_approval_plans_again(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    status = project / ".orch/run/tasks/T1/status.yaml"
    st = yaml.safe_load(status.read_text())
    st["state"] = "PENDING"
    st["plan"]["state"] = "approved"
    status.write_text(yaml.safe_dump(st))
    item = project / ".orch/run/inbox/A1.yaml"
    forged = yaml.safe_load(item.read_text())
    forged.update(state="approved", answered_by="boss@example.com", answered_at="2026-12-01T00:00:00Z")
    item.write_text(yaml.safe_dump(forged))
    orch.ok("start", "T1")  # no APPROVE in the event log: a planning run again, not the work
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    assert status_of(project, "T1")["plan"]["file"] == "plan-2.md"
    assert "src/done.txt" not in on_branch(project)


def test_a_retry_withdraws_the_plan_waiting_and_plans_again(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    orch.ok("retry", "T1", "--note", "start over")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    assert [i["id"] for i in items(orch)] == ["A2"]
    assert item_file(project, "A1")["state"] == "withdrawn"
    r = orch("approve", "A1")
    assert r.returncode == 3 and "is withdrawn already" in r.stderr
    orch.ok("approve", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"


def test_approving_a_task_with_no_plan_waiting_says_so(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, approve=None)
    r = orch("approve", "T1")  # never spun
    assert r.returncode == 3 and "no inbox item 'T1'" in r.stderr and "orch inbox" in r.stderr
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    r = orch("approve", "T1")
    assert r.returncode == 3 and "Traceback" not in r.output
    assert "task T1 has no plan waiting for approval (it is SUCCESS)" in r.stderr, r.stderr
    assert "approve: plan" in r.stderr
    r = orch("reject", "T1", "--note", "no")
    assert r.returncode == 3 and "has no plan waiting" in r.stderr


def test_a_bad_approve_field_is_refused(project: Path, orch: Orch, agent: Path) -> None:
    plan(project, agent, approve="yes")
    r = orch("spin", "T1")
    assert r.returncode == 3 and ".orch/plan.md:8: bad approve 'yes': plan" in r.stderr, r.stderr


# -- the hook while the agent plans -----------------------------------------------------------------


def claude_input(wt: Path, tool: str, tool_input: dict[str, object], mode: str = "plan") -> str:
    """What Claude Code sends a PreToolUse hook on stdin."""
    return json.dumps(
        {
            "session_id": "5f2c9a1e-7d3b-4c2a-9e61-2b8f0d4a6c11",
            "transcript_path": "/home/ada/.claude/projects/-repo/5f2c9a1e.jsonl",
            "cwd": str(wt),
            "permission_mode": mode,
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
        }
    )


def hook(wt: Path, name: str, stdin: str, phase: str | None = "plan") -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "ORCH_PHASE"} | ({"ORCH_PHASE": phase} if phase else {})
    argv = [sys.executable, "-m", "orch.hookmain", name]
    return subprocess.run(argv, cwd=wt, input=stdin, capture_output=True, text=True, check=False, env=env)


def test_the_hook_denies_writes_while_the_agent_plans(repo: Path, orch: Orch) -> None:
    proj = setup_project(repo, orch)
    wt = make_task(proj, "T1")  # scope ^src/auth/
    code = claude_input(wt, "Write", {"file_path": str(wt / "src/auth/new.py"), "content": "x = 1\n"})
    assert hook(wt, "claude-pretool", code, phase=None).returncode == 0  # in scope: fine while it works
    denied = hook(wt, "claude-pretool", code)
    assert denied.returncode == 2 and "this run is for a plan only, and it writes src/auth/new.py" in denied.stderr
    assert "Write your plan to PLAN.md" in denied.stderr
    plan_md = claude_input(wt, "Write", {"file_path": str(wt / "PLAN.md"), "content": "# Plan\n"})
    assert hook(wt, "claude-pretool", plan_md).returncode == 0  # the plan itself (out of scope, never committed)
    assert hook(wt, "claude-pretool", plan_md, phase=None).returncode == 2  # while it works: out of scope
    edit = claude_input(
        wt, "Edit", {"file_path": str(wt / "src/auth/cart.py"), "old_string": "import", "new_string": "#"}
    )
    assert hook(wt, "claude-pretool", edit).returncode == 2
    tmp = claude_input(wt, "Write", {"file_path": "/tmp/scratch.txt", "content": ""})
    assert hook(wt, "claude-pretool", tmp).returncode == 2  # no write anywhere but the plan
    patch = "*** Begin Patch\n*** Add File: {}\n+x\n*** End Patch\n"
    codex = {"cwd": str(wt), "hook_event_name": "PreToolUse", "tool_name": "apply_patch"}
    denied = hook(wt, "codex-pretool", json.dumps({**codex, "tool_input": {"command": patch.format("src/auth/x.py")}}))
    assert denied.returncode == 2 and "plan only" in denied.stderr
    ok = hook(wt, "codex-pretool", json.dumps({**codex, "tool_input": {"command": patch.format("PLAN.md")}}))
    assert ok.returncode == 0
    gemini = {"cwd": str(wt), "hook_event_name": "BeforeTool", "tool_name": "write_file"}
    denied = hook(wt, "gemini-pretool", json.dumps({**gemini, "tool_input": {"file_path": "src/auth/y.py"}}))
    assert denied.returncode == 2 and "plan only" in denied.stderr


# -- Claude Code: plan mode, the plan as its final answer -----------------------------------------

# Claude Code -p --output-format json: in plan mode it only reads and its final answer is the plan;
# with acceptEdits it edits (each Write through the PreToolUse hooks of .claude/settings.json).
FAKE_CLAUDE = """
argv = sys.argv[1:]
prompt = argv[argv.index("-p") + 1]
mode = argv[argv.index("--permission-mode") + 1]
settings = json.load(open(".claude/settings.json"))
def pre_tool(tool, tool_input):
    event = {"session_id": "s", "transcript_path": "/tmp/t.jsonl", "cwd": os.getcwd(), "permission_mode": mode,
             "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input}
    for group in settings["hooks"]["PreToolUse"]:
        if re.fullmatch(group["matcher"], tool):
            for hook in group["hooks"]:
                r = subprocess.run(["sh", "-c", hook["command"]], input=json.dumps(event), text=True,
                                   capture_output=True, timeout=hook["timeout"])
                if r.returncode == 2:
                    return r.stderr
    return None
target = os.path.abspath("src/auth/new.py")
refused = pre_tool("Write", {"file_path": target, "content": "x = 1\\n"})
if refused is None:
    open(target, "w").write("x = 1\\n")
runs = json.load(open(RECORD)) if os.path.exists(RECORD) else []
runs.append({"mode": mode, "refused": refused, "approved": "## The approved plan" in prompt,
             "phase": os.environ.get("ORCH_PHASE")})
json.dump(runs, open(RECORD, "w"))
answer = "# Plan\\n\\n1. add src/auth/new.py\\n" if mode == "plan" else "done"
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": answer,
                  "total_cost_usd": 0.25, "usage": {"input_tokens": 100, "output_tokens": 10}}))
"""


def test_claude_plans_in_plan_mode_and_its_answer_is_the_plan(repo: Path, orch: Orch, tmp_path: Path) -> None:
    proj = setup_project(repo, orch)
    write_plan(proj, "# Plan\n\n## T1: Session expiry\n- scope: ^src/auth/\n- approve: plan\n\nTouch auth only.\n")
    git(proj, "commit", "-qam", "approve T1's plan first")
    record = let_agent_write(proj, tmp_path / "records", "claude") / "claude-record.json"
    script = tmp_path / "fake-claude"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, re, subprocess, sys\nRECORD = {str(record)!r}\n" + FAKE_CLAUDE
    )
    script.chmod(0o755)
    manifest = proj / ".orch/agents/claude.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["command"][0] = str(script)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    orch.ok("spin", "T1", "--agent", "claude")
    assert wait_state(orch, "T1") == "AWAITING_APPROVAL"
    assert (proj / ".orch/run/tasks/T1/plan-1.md").read_text() == "# Plan\n\n1. add src/auth/new.py\n"
    [planning] = json.loads(record.read_text())
    assert planning["mode"] == "plan" and planning["phase"] == "plan" and not planning["approved"]
    assert "this run is for a plan only" in planning["refused"]  # the hook, should plan mode let a write by
    orch.ok("approve", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    _, work = json.loads(record.read_text())
    assert work == {"mode": "acceptEdits", "refused": None, "approved": True, "phase": "work"}
    assert git(proj, "diff", "--name-only", "main", "orch/T1").split() == ["src/auth/new.py"]
    assert status_of(proj, "T1")["usage"]["cost_usd"] == pytest.approx(0.5)  # both runs count


def test_a_planning_run_completed_without_its_driver_keeps_plan_md_off_the_branch(repo: Path, orch: Orch) -> None:
    from orch.agents import planphase
    from orch.core.repo import find_project

    proj = setup_project(repo, orch)
    wt = make_task(proj, "T1")
    (wt / "PLAN.md").write_text("# Plan\n\n1. the work\n")
    project = find_project(proj)
    base = git(proj, "rev-parse", "orch/T1").strip()
    launch = {"plan_phase": "plan", "cwd": str(wt)}
    planphase.left_behind(project, "T1", {**launch, "plan_phase": "work"}, {"base_sha": base}, None)
    assert (wt / "PLAN.md").exists()  # the work's run: none of its business
    planphase.left_behind(project, "T1", launch, {"base_sha": base}, None)
    assert not (wt / "PLAN.md").exists()
    assert (proj / ".orch/run/tasks/T1/plan-1.md").read_text() == "# Plan\n\n1. the work\n"
