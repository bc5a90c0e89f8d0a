"""What every command needs: the project, its store, and (read on demand) config and plan."""

from __future__ import annotations

import functools
from pathlib import Path

from orch import config as config_mod
from orch import eventlog
from orch import plan as plan_mod
from orch.repo import Project, find_project
from orch.store import Store


class Ctx:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.store = Store(project.root, project.orch_dir)

    @functools.cached_property
    def config(self) -> config_mod.Config:
        return config_mod.load(self.project, self.store)

    @functools.cached_property
    def plan(self) -> plan_mod.Plan:
        return plan_mod.load(self.project.plan_path)

    def log(
        self,
        state: str,
        action: str,
        result: str = "",
        *,
        task: str | None = None,
        iteration: int | None = None,
        artifacts: list[str] | tuple[str, ...] = (),
    ) -> eventlog.Event:
        return eventlog.append(
            self.project.log_path,
            state=state,
            action=action,
            result=result,
            task=task,
            iteration=iteration,
            artifacts=artifacts,
        )


def open_ctx(start: Path | str | None = None) -> Ctx:
    return Ctx(find_project(start))
