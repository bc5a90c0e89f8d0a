"""What every command needs: the project, its store, and (read on demand) config and plan."""

from __future__ import annotations

import functools
from pathlib import Path

from orch.core import committed as committed_mod
from orch.core import config as config_mod
from orch.core import eventlog, planfile
from orch.core import plan as plan_mod
from orch.core.errors import InputError
from orch.core.repo import Project, find_project
from orch.core.store import Store


class Ctx:
    """``from_source``: config, plan (and, through ``verify``, locks) are parsed and validated from
    their files, never taken from the caches in ``.orch/run/cache/``: untracked files an agent can
    write. Verification and the merge ceremony judge with such a context (``judging``).

    A judging context gives the rules in force: the ones committed on the base branch (or on
    ``rules_branch``, the branch a ceremony merges into), made stricter, never looser, by the working
    copy (``committed``; ``config_mod.in_force``, ``plan_mod.in_force``; the locks:
    ``orch.verify.inforce``). An agent can edit the main checkout's files; only a commit on the base
    branch loosens a rule.
    """

    def __init__(self, project: Project, *, from_source: bool = False, rules_branch: str | None = None) -> None:
        self.project = project
        self.from_source = from_source
        self.rules_branch = rules_branch
        self.store = Store(project.root, project.orch_dir, cache=not from_source)
        self._judging: Ctx | None = self if from_source else None
        self._reading: committed_mod.Reading | None = None

    @functools.cached_property
    def working_config(self) -> config_mod.Config:
        """config.yaml as the working copy has it (the base branch's name comes from here)."""
        return config_mod.load(self.project, self.store)

    @functools.cached_property
    def config(self) -> config_mod.Config:
        """The config; in a judging context the one in force (the committed test command)."""
        if not self.from_source:
            return self.working_config
        committed = self.committed()
        text = _committed_text(committed, "config.yaml")
        data = None if text is None else self.store.loads(text, "config", where=committed.where("config.yaml"))
        return config_mod.in_force(self.working_config, data)

    @functools.cached_property
    def plan(self) -> plan_mod.Plan:
        """The plan; in a judging context each task is paired with its committed version."""
        mine = planfile.read(self.project.plan_path)
        working = planfile.loads(mine, self.project.orch_dir, where=".orch/plan.md", cache=not self.from_source)
        if not self.from_source:
            return working
        committed = self.committed()
        text = _committed_text(committed, "plan.md")
        if text is None or text == mine:  # not committed yet, or not edited: the working plan is the rule
            return working
        where = committed.where("plan.md")
        return plan_mod.in_force(working, planfile.loads(text, self.project.orch_dir, where=where, cache=False))

    def read_committed(self) -> None:
        """Start reading the rule files committed on the base branch: git works while the rest loads."""
        if self._reading is None:
            branch = self.rules_branch or self.working_config.base_branch
            self._reading = committed_mod.Reading(self.project.root, branch)

    def committed(self) -> committed_mod.Committed:
        """``.orch/``'s rule files as committed on the base branch (or ``rules_branch``)."""
        self.read_committed()
        assert self._reading is not None
        return self._reading.result()

    def judging(self) -> Ctx:
        """This context if it reads from source, else one for the same project that does."""
        if self._judging is None:
            self._judging = Ctx(self.project, from_source=True, rules_branch=self.rules_branch)
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


def open_ctx(start: Path | str | None = None, *, from_source: bool = False, rules_branch: str | None = None) -> Ctx:
    return Ctx(find_project(start), from_source=from_source, rules_branch=rules_branch)


def _committed_text(committed: committed_mod.Committed, name: str) -> str | None:
    raw = committed.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{committed.where(name)}: not UTF-8 text (byte {exc.start})") from None
