"""What every command needs: the project, its store, and (read on demand) config and plan."""

from __future__ import annotations

import functools
from pathlib import Path

from orch.core import config as config_mod
from orch.core import eventlog, planfile
from orch.core import plan as plan_mod
from orch.core.repo import Project, find_project
from orch.core.store import Store


class Ctx:
    """``from_source``: config, plan (and, through ``verify``, locks) are parsed and validated from
    their files, never taken from the caches in ``.orch/run/cache/``: untracked files an agent can
    write. Verification and the merge ceremony judge with such a context (``judging``)."""

    def __init__(self, project: Project, *, from_source: bool = False) -> None:
        self.project = project
        self.from_source = from_source
        self.store = Store(project.root, project.orch_dir, cache=not from_source)
        self._judging: Ctx | None = self if from_source else None

    @functools.cached_property
    def config(self) -> config_mod.Config:
        return config_mod.load(self.project, self.store)

    @functools.cached_property
    def plan(self) -> plan_mod.Plan:
        return planfile.load(self.project.plan_path, cache=not self.from_source)

    def judging(self) -> Ctx:
        """This context if it reads from source, else one for the same project that does."""
        if self._judging is None:
            self._judging = Ctx(self.project, from_source=True)
        return self._judging

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


def open_ctx(start: Path | str | None = None, *, from_source: bool = False) -> Ctx:
    return Ctx(find_project(start), from_source=from_source)
