"""The files of a task's run folder, ``run/tasks/<id>/``, and how a new run moves the last one's aside.

Both sides of a run name these files: the launch side (``orch.agents.launch``) writes the manifest,
the brief and the launch, the supervisor (``orch.agents.supervisor``) writes the agent's log, its
usage and the accept log, and a new spin rotates an earlier run's files into ``run-<n>/``. They live
in a module of their own, below both: the launch side imports the supervisor (``orch stop`` completes
a run whose supervisor is gone), so the supervisor cannot import the launch side.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from orch.core.repo import Project


@dataclass(frozen=True)
class TaskFiles:
    folder: Path

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.yaml"

    @property
    def context(self) -> Path:
        return self.folder / "context.md"

    @property
    def status(self) -> Path:
        return self.folder / "status.yaml"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    @property
    def launch(self) -> Path:
        return self.folder / "launch.json"

    @property
    def usage(self) -> Path:
        return self.folder / "usage.jsonl"

    @property
    def accept_log(self) -> Path:
        return self.folder / "accept.log"

    @property
    def supervisor_log(self) -> Path:
        return self.folder / "supervisor.log"

    @property
    def launch_env(self) -> Path:
        """The caller's environment for a supervisor started in tmux (read once, then deleted)."""
        return self.folder / "launch-env.json"

    @property
    def launcher(self) -> Path:
        """The ``orch`` launcher on the agent's PATH (``$ORCH``); its folder holds nothing else."""
        return self.folder / "bin" / "orch"


# What one run leaves in the task folder; a new spin moves them to run-<n>/ (``rotate_run_files``).
RUN_FILES = (
    "agent.log", "usage.jsonl", "accept.log", "supervisor.log", "launch.json", "BLOCKER_REPORT.md",
    "context.md", "manifest.yaml", "status.yaml",
)  # fmt: skip


def rotate_run_files(folder: Path) -> Path | None:
    """Move the files of an earlier run into ``run-<n>/`` (kept, never deleted); the folder used."""
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if not present:
        return None
    numbers = [int(p.name[4:]) for p in folder.glob("run-*") if p.name[4:].isdigit()]
    target = folder / f"run-{max(numbers, default=0) + 1}"
    target.mkdir()
    for name in present:
        if name == "status.yaml":  # the status stays (its kept refs carry over); a copy goes along
            shutil.copy2(folder / name, target / name)
        else:
            os.replace(folder / name, target / name)
    return target


def files(project: Project, task_id: str) -> TaskFiles:
    return TaskFiles(project.task_dir(task_id))
