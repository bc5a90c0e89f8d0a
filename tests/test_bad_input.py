"""Bad input that used to crash or mislead: one clear line (what, where, how to fix) and its exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Orch, git, write_plan

NESTED = "(" * 1000 + "src/" + ")" * 1000


def plan_with(repo: Path, scope: str = "^src/", *, commit: bool = True) -> None:
    write_plan(
        repo,
        "# Plan: bad input\n\n"
        f"## T1: Task one\n- scope: {scope}\n- deps: none\n- agent: shell\n- run: true\n\nBrief.\n",
    )
    if commit:
        git(repo, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")


def first_error(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith("orch: ")), stderr)


def test_agents_lists_a_manifest_without_a_description(project: Path, orch: Orch) -> None:
    (project / ".orch/agents/plain.yaml").write_text('command: ["true"]\n')
    r = orch("agents")
    assert r.returncode == 0, r.output
    row = next(line for line in r.stdout.splitlines() if line.startswith("plain "))
    assert row.split()[1:] == ["ok", "none", "-"]
    assert "Traceback" not in r.output and "internal error" not in r.output


@pytest.mark.parametrize("command", [["plan"], ["status"], ["verify", "T1"], ["merge"], ["merge", "--dry-run"]])
def test_a_scope_nested_a_thousand_deep_is_bad_input(project: Path, orch: Orch, command: list[str]) -> None:
    plan_with(project, NESTED)
    r = orch(*command)
    assert r.returncode == 3, r.output
    line = first_error(r.stderr)
    assert line.startswith(
        "orch: .orch/plan.md:4: scope '((((((((((((((((((((((((((((((((((((((((... (2004 characters)'"
    )
    assert line.endswith(
        "is too deeply nested: 1000 levels of groups, at most 100 (write the alternatives side by side: ^(a/|b/|c/))"
    )
    assert "hint: fix the plan by hand" in r.stderr and "internal error" not in r.output


def test_a_scope_with_a_huge_repeat_count_is_bad_input(project: Path, orch: Orch) -> None:
    plan_with(project, "^src/a{99999999999}")
    r = orch("plan")
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == (
        "orch: .orch/plan.md:4: invalid scope regex '^src/a{99999999999}': the repetition number is too large"
    )


def test_report_with_an_artifact_name_too_long_is_refused(project: Path, orch: Orch) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    name = "a" * 300
    r = orch("report", "PROGRESS", "--artifact", name, cwd=project / ".orch/worktrees/T1")
    assert r.returncode == 3, r.output
    assert r.stderr == (
        f"orch: artifact {'a' * 40}... (300 characters): File name too long\n"
        "  hint: name a file that exists, by a shorter path (most file systems allow 255 bytes per name)\n"
    )


def test_clean_all_says_a_task_folder_name_is_too_long(project: Path, orch: Orch) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    name = "T" * 250
    folder = project / ".orch/run/tasks" / name
    folder.mkdir()
    (folder / "status.yaml").write_text("id: T1\nstate: FAILED\n")
    r = orch("clean", "--all")
    assert r.returncode == 0, r.output
    assert "T1: cleaned (was PENDING)" in r.stdout
    assert (
        f"{name}: skipped: .orch/run/tasks/{'T' * 40}...: the folder's name is not a task id (250 characters; "
        "ids start with a letter, then letters, digits, '-' or '_', at most 40 characters); orch leaves it alone: "
        "remove it, or rename it to the task's id"
    ) in r.stdout
    assert "permissions" not in r.output and folder.is_dir()


@pytest.mark.parametrize("args", [["--into", ""], ["--into="], ["--into", " "], ["--dry-run", "--into", ""]])
def test_merge_into_an_empty_branch_name_is_a_usage_error(project: Path, orch: Orch, args: list[str]) -> None:
    plan_with(project)
    before = git(project, "rev-parse", "main")
    r = orch("merge", *args)
    assert r.returncode == 2, r.output
    assert r.stderr.startswith(
        "orch: usage: --into needs a branch name; an empty one would merge into the base branch\n"
    )
    assert git(project, "rev-parse", "main") == before
    assert not (project / ".orch/run/merges").exists() or not any((project / ".orch/run/merges").glob("*.md"))


@pytest.mark.parametrize("args", [["--dry-run"], []])
def test_merge_into_a_missing_base_branch_names_the_config_line(project: Path, orch: Orch, args: list[str]) -> None:
    plan_with(project)
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("base_branch: main", "base_branch: trunk"))
    r = orch("merge", *args)
    assert r.returncode == 3, r.output
    assert r.stderr == (
        "orch: .orch/config.yaml:2: base_branch: no branch 'trunk' to merge into\n"
        "  hint: set base_branch to an existing branch (git branch lists them), or merge elsewhere with --into\n"
    )
    r = orch("merge", "--dry-run", "--into", "nowhere")
    assert r.returncode == 3 and first_error(r.stderr) == "orch: --into nowhere: no branch 'nowhere' to merge into"


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("'bad name!'", "agent: 'bad name!' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"),
        ("nosuch", "no agent 'nosuch' (no .orch/agents/nosuch.yaml)"),
    ],
)
def test_start_with_a_bad_agent_in_the_task_manifest_names_it(
    project: Path, orch: Orch, agent: str, message: str
) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    manifest = project / ".orch/run/tasks/T1/manifest.yaml"
    lines = manifest.read_text().splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines, 1) if line.startswith("agent: "))
    lines[number - 1] = f"agent: {agent}\n"
    manifest.write_text("".join(lines))
    r = orch("start", "T1")
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == f"orch: .orch/run/tasks/T1/manifest.yaml:{number}: {message}"
