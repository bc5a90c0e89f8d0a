"""Bad input that used to crash or mislead: one clear line (what, where, how to fix) and its exit code."""

from __future__ import annotations

import re
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


# -- found by the property and hostile-name tests (tests/test_bad_input_property.py, test_hostile_names.py)


def test_a_control_character_in_a_yaml_file_is_reported_at_its_line(project: Path, orch: Orch) -> None:
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("max_parallel: 4", "max_parallel: \x1b[2J4"))
    r = orch("status")
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == (
        "orch: .orch/config.yaml:6: not valid YAML: control characters are not allowed: U+001B"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("base_branch", '"ma\\0in"', "base_branch: 'ma\\x00in' is not a valid branch name: git refuses '\\x00' "
         "in one"),
        ("base_branch", "x" * 300, "base_branch: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (300 characters) is "
         "not a valid branch name: a part of it is longer than a file name can be"),
        ("base_branch", "-b", "base_branch: '-b' is not a valid branch name: it starts with '-', which git reads as "
         "an option"),
        ("base_branch", "main.lock", "base_branch: 'main.lock' is not a valid branch name: a part of it ends with "
         "'.lock'"),
        ("worktree_root", '"wt\\0"', "worktree_root: 'wt\\x00' holds a control character"),
        ("test_command", '"tr\\0ue"', "test_command: holds a NUL character, which no command, path or environment can "
         "carry"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", [["status"], ["spin", "T1", "--no-start"], ["merge", "--dry-run"], ["doctor"]])
def test_a_config_value_no_command_can_carry_is_bad_input_at_its_line(
    project: Path, orch: Orch, key: str, value: str, message: str, command: list[str]
) -> None:
    plan_with(project)
    config = project / ".orch/config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines, 1) if line.startswith(f"{key}:"))
    lines[number - 1] = f"{key}: {value}\n"
    config.write_text("".join(lines))
    r = orch(*command)
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == f"orch: .orch/config.yaml:{number}: {message}"
    assert git(project, "for-each-ref", "refs/heads/orch/", "refs/orch/") == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('command: ["sh", "-c", "{run}", "a\\0b"]\n', "command.3: holds a NUL character"),
        ('env: {"A=B": "x"}\n', "env: 'A=B' does not match"),
        ('env: {"A": "x\\0"}\n', "env.A: holds a NUL character"),
        ('model: "x\\0"\n', "model: holds a NUL character"),
    ],
)
def test_an_agent_manifest_value_no_command_can_carry_refuses_the_spin(
    project: Path, orch: Orch, extra: str, message: str
) -> None:
    plan_with(project)
    manifest = project / ".orch/agents/shell.yaml"
    text = manifest.read_text()
    text = re.sub(r"(?m)^command:.*\n", "", text) if extra.startswith("command") else text
    manifest.write_text(text + extra)
    number = manifest.read_text().splitlines().index(extra.rstrip("\n")) + 1
    r = orch("spin", "T1")  # before: spun, then the agent never started and the task was CRASHED
    assert r.returncode == 3, r.output
    assert first_error(r.stderr).startswith(f"orch: T1: .orch/agents/shell.yaml:{number}: {message}")
    assert not (project / ".orch/run/tasks/T1").exists()


def test_a_requirement_check_no_shell_can_run_is_bad_input(project: Path, orch: Orch) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    locks = project / ".orch/locks.yaml"
    locks.write_text('version: 1\nlocks:\n- id: R1\n  kind: requirement\n  mode: hard\n  text: x\n  check: "tr\\0ue"\n')
    for command in (["verify", "T1"], ["lock", "list"]):
        r = orch(*command)
        assert r.returncode == 3, r.output
        assert first_error(r.stderr) == (
            "orch: .orch/locks.yaml:7: locks.0.check: holds a NUL character, which no command, path or environment "
            "can carry"
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pid", "1180591620717411303424", "pid: 1180591620717411303424 is greater than the maximum of 2147483647"),
        ("supervisor_pid", "1180591620717411303424", "supervisor_pid: 1180591620717411303424 is greater than"),
        ("tmux_session", '"orch-T1\\0"', "tmux_session: 'orch-T1\\x00' does not match"),
        ("worktree", '"/tmp/a\\0b"', "worktree: '/tmp/a\\x00b' does not match"),
        ("worktree", "/" + "x" * 300, "worktree: '/xxxxxxxxxxxxxxxx"),
    ],
)
@pytest.mark.parametrize("command", [["status"], ["doctor"], ["wait", "T1", "--timeout", "0"], ["stop", "T1"]])
def test_a_forged_status_value_no_process_can_use_is_bad_input(
    project: Path, orch: Orch, field: str, value: str, message: str, command: list[str]
) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    status = project / ".orch/run/tasks/T1/status.yaml"
    text = re.sub(rf"(?m)^({field}|state):.*\n", "", status.read_text())
    status.write_text(text + f"state: RUNNING\n{field}: {value}\n")  # a RUNNING task's owner is looked up
    number = len(text.splitlines()) + 2
    r = orch(*command)
    assert r.returncode == 3, r.output
    assert first_error(r.stderr).startswith(f"orch: .orch/run/tasks/T1/status.yaml:{number}: {message}")


def test_doctor_never_makes_a_worktree_where_a_forged_status_points(project: Path, orch: Orch, tmp_path: Path) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    orch.ok("clean", "--force", "T1")
    elsewhere = tmp_path / "elsewhere" / "T1"
    git(project, "branch", "orch/T1", "main")  # the branch is there, its worktree is not
    status = project / ".orch/run/tasks/T1/status.yaml"
    status.write_text(f"id: T1\nstate: FAILED\nbranch: orch/T1\nworktree: {elsewhere}\n")
    r = orch("doctor", "--fix")
    assert r.returncode == 1, r.output
    assert f"[manual] missing-worktree: T1: status names worktree {elsewhere} but git has no such worktree" in r.stdout
    assert f"nothing orch does by itself: {elsewhere} is outside its worktree folder (.orch/worktrees)" in r.stdout
    assert not elsewhere.parent.exists()


def test_an_agent_with_no_manifest_is_named_where_the_plan_names_it(project: Path, orch: Orch) -> None:
    plan_with(project)
    plan = project / ".orch/plan.md"
    plan.write_text(plan.read_text().replace("- agent: shell", "- agent: nosuch"))
    r = orch("spin", "T1", "--no-start")
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == "orch: T1: .orch/plan.md:6: no agent 'nosuch' (no .orch/agents/nosuch.yaml)"
    before = plan.read_bytes()
    r = orch("plan", "add", "T2", "--title", "Second", "--agent", "nosuch")  # orch plan would refuse the result
    assert r.returncode == 3, r.output
    assert first_error(r.stderr) == "orch: no agent 'nosuch' (no .orch/agents/nosuch.yaml)"
    assert plan.read_bytes() == before


def test_a_worktree_root_outside_the_checkout_is_cleaned_like_any(project: Path, orch: Orch, tmp_path: Path) -> None:
    plan_with(project, commit=False)
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("worktree_root: .orch/worktrees", "worktree_root: ../wt"))
    git(project, "commit", "-q", "-am", "worktrees beside the checkout")
    r = orch.ok("spin", "T1", "--no-start")
    assert r.stdout == f"T1: orch/T1 at {tmp_path}/wt/T1 (shell, not started)\n"  # not .../repo/../wt/T1
    assert orch.ok("doctor").stdout == "all good: worktrees, branches and statuses agree\n"
    r = orch.ok("clean", "T1")  # before: "../wt/T1 is not a git worktree git knows; left as it is"
    assert r.stdout.splitlines()[:2] == ["T1: cleaned (was PENDING)", f"  removed worktree {tmp_path}/wt/T1"]
    assert not (tmp_path / "wt/T1").exists() and git(project, "worktree", "list").count("\n") == 0


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["verify", "T1"], "the base branch 'gone' does not exist"),
        (["clean", "T1"], "base_branch: no branch 'gone' to tell merged work from work to keep"),
        (["conflicts"], "base_branch: no branch 'gone'"),
        (["ack-base", "HEAD"], "no branch 'gone'"),
    ],
)
def test_a_base_branch_that_does_not_exist_is_named_at_its_line(
    project: Path, orch: Orch, command: list[str], message: str
) -> None:
    plan_with(project)
    orch.ok("spin", "T1", "--no-start")
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("base_branch: main", "base_branch: gone"))
    r = orch(*command)
    assert r.returncode == 3, r.output  # clean: exit 4 (git failed) after it had removed the worktree
    assert first_error(r.stderr) == f"orch: .orch/config.yaml:2: {message}"
    assert (project / ".orch/worktrees/T1").is_dir()
