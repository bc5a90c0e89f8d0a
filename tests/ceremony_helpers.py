"""Build task branches the way a finished agent leaves them, without running an agent.

The ceremony tests need many finished tasks quickly: a branch ``orch/<id>`` with the agent's commit,
a worktree, a status file in state SUCCESS and a task in plan.md. The commits and branches are real
git; only the agent's run is skipped.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import commit_file, git, status_of  # noqa: F401  (the ceremony tests import it from here)


def add_tasks_to_plan(repo: Path, tasks: list[tuple[str, str, list[str]]], *, run: str | None = None) -> None:
    """tasks: (id, scope, deps); ``run``: a ``run:`` line for each (so the shell agent can spin them)."""
    lines = ["# Plan: ceremony test\n"]
    extra = f"- run: {run}\n" if run else ""
    for task_id, scope, deps in tasks:
        lines.append(f"\n## {task_id}: task {task_id}\n- scope: {scope}\n{extra}- deps: {', '.join(deps) or 'none'}\n")
    (repo / ".orch" / "plan.md").write_text("".join(lines))
    git(repo, "add", ".orch/plan.md")
    git(repo, "commit", "-q", "-m", "plan")


def finished_task(
    repo: Path,
    task_id: str,
    files: dict[str, str | None],
    *,
    base: str = "main",
    state: str = "SUCCESS",
    message: str | None = None,
) -> str:
    """Create branch orch/<id> from ``base`` with one commit writing (or deleting, for None) ``files``."""
    worktree = repo / ".orch" / "worktrees" / task_id
    base_sha = git(repo, "rev-parse", base)
    git(repo, "worktree", "add", "-q", "-b", f"orch/{task_id}", str(worktree), base_sha)
    for rel, text in files.items():
        path = worktree / rel
        if text is None:
            git(worktree, "rm", "-q", "--", rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        git(worktree, "add", "--", rel)
    git(worktree, "commit", "-q", "-m", message or f"{task_id}: work")
    sha = git(worktree, "rev-parse", "HEAD")
    status_dir = repo / ".orch" / "run" / "tasks" / task_id
    status_dir.mkdir(parents=True, exist_ok=True)
    (status_dir / "status.yaml").write_text(
        yaml.safe_dump(
            {
                "id": task_id,
                "state": state,
                "agent": "shell",
                "branch": f"orch/{task_id}",
                "worktree": str(worktree),
                "base_sha": base_sha,
                "head_sha": sha,
                "exit_code": 0,
            },
            sort_keys=False,
        )
    )
    return sha


# The integration test: fails when any file named fail-* exists at the top of the tree.
CHECK = '#!/bin/sh\nfor f in fail-*; do [ -e "$f" ] && { echo "broken by $f"; exit 1; }; done\necho ok\n'


def set_test_command(repo: Path, command: str) -> None:
    """Point .orch/config.yaml's test_command at ``command`` and commit it."""
    import json

    config = repo / ".orch" / "config.yaml"
    text = config.read_text()
    line = next(line for line in text.splitlines() if line.startswith("test_command:"))
    config.write_text(text.replace(line, f"test_command: {json.dumps(command)}"))
    git(repo, "commit", "-qam", "test command")


def with_check(project: Path) -> Path:
    """The project with check.sh committed as its test command (what test_ceremony's fixture does)."""
    commit_file(project, "check.sh", CHECK, "add the test")
    set_test_command(project, "sh check.sh")
    return project


def run_as_printed(repo: Path, line: str) -> None:
    """Run a command line orch printed for a person (a restore line, a hint) exactly as printed."""
    import os
    import subprocess
    import sys

    # `orch` is the console script next to the interpreter running the tests (the editable install).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["sh", "-c", line], cwd=repo, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, f"{line!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
