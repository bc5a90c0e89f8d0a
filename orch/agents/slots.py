"""Whether a spun task may run now, or why it waits QUEUED: the queue's rules (``orch.agents.queue``).

A task waits while ``max_parallel`` agents run (the config's), while its agent's circuit breaker is
open (``orch.agents.breaker``: three of its tasks failed in a row), while its agent runs its own
``max_parallel`` tasks already (the agent manifest's), and while a running task's scope reaches a
tracked file its scope reaches too (one file, one owner; ``overlap: ok`` on either task allows it).
Callers decide under the ``agent-slots`` store lock, with the statuses read under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from orch.core import git, state
from orch.core.context import Ctx
from orch.core.errors import OrchError

LOCK = "agent-slots"


class Slots:
    """The running tasks as read under the lock, and what they reach (the tracked files, read once)."""

    def __init__(self, ctx: Ctx, statuses: dict[str, state.Status]) -> None:
        self.ctx = ctx
        self.statuses = statuses
        self._files: list[str] | None = None
        self._breakers: dict[str, str] | None = None

    def running(self, but: str = "") -> list[str]:
        return sorted(t for t, st in self.statuses.items() if st.get("state") == "RUNNING" and t != but)

    def tracked(self) -> list[str]:
        if self._files is None:
            self._files = tracked_files(self.ctx)
        return self._files

    def why_wait(self, task_id: str, agent: str | None) -> str | None:
        """None when ``task_id`` (run by ``agent``) may start now; else why it waits, in one line."""
        if self._breakers is None:
            from orch.agents.breaker import tripped

            self._breakers = tripped(self.statuses)
        if agent and agent in self._breakers:
            return f"waits: {self._breakers[agent]}"
        running = self.running(but=task_id)
        limit = self.ctx.config.max_parallel
        if len(running) >= limit:
            return f"waits for a slot: {limit} agents run already (max_parallel): {', '.join(running)}"
        cap = agent_cap(self.ctx, agent)
        if cap is not None and agent:
            mine = [t for t in running if self.statuses[t].get("agent") == agent]
            if len(mine) >= cap:
                return f"waits for agent {agent}: it runs {', '.join(mine)} already (its max_parallel: {cap})"
        task = self.ctx.plan.get(task_id)
        if task is None or task.overlap_ok:
            return None
        for other_id in running:
            other = self.ctx.plan.get(other_id)
            if other is None or other.overlap_ok:
                continue
            common = first_common(task.scope, other.scope, self.tracked())
            if common is not None:
                return f"waits for {other_id}: both reach {common}"
        return None


def agent_cap(ctx: Ctx, agent: str | None) -> int | None:
    """The agent manifest's ``max_parallel``, or None (no limit of its own, or no readable manifest:
    starting the task reports a broken manifest better than the queue could)."""
    if not agent:
        return None
    from orch.agents import manifest as agents

    try:
        value = agents.load(ctx.project, ctx.store, agent).data.get("max_parallel")
    except OrchError:
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def tracked_files(ctx: Ctx) -> list[str]:
    """The files tracked on the base branch (what scopes are matched against)."""
    base = ctx.config.base_branch
    r = git.run(["ls-tree", "-r", "-z", "--name-only", f"refs/heads/{base}"], cwd=ctx.project.root, check=False)
    return [name for name in r.stdout.split("\0") if name] if r.returncode == 0 else []


def first_common(scope_a: str | None, scope_b: str | None, files: Iterable[str]) -> str | None:
    """The first tracked file both scopes reach (a task without a scope reaches every file)."""
    a = re.compile(scope_a).search if scope_a else None
    b = re.compile(scope_b).search if scope_b else None
    for name in files:
        if (a is None or a(name)) and (b is None or b(name)):
            return name
    return None


def overlapping_pairs(ctx: Ctx, tasks: list[Any]) -> list[tuple[str, str, str]]:
    """Every pair of plan tasks whose scopes reach a common tracked file and that no ``overlap: ok``
    lets run together: (first id, second id, a file both reach), in plan order (``orch plan``)."""
    files = tracked_files(ctx)
    pairs = []
    for i, a in enumerate(tasks):
        for b in tasks[i + 1 :]:
            if a.overlap_ok or b.overlap_ok:
                continue
            common = first_common(a.scope, b.scope, files)
            if common is not None:
                pairs.append((a.id, b.id, common))
    return pairs


def queue_order(ctx: Ctx, ids: Iterable[str]) -> list[str]:
    """``ids`` by the plan task's ``priority`` (higher first), then plan order (tasks gone from the
    plan last, by id)."""
    index = {t.id: n for n, t in enumerate(ctx.plan.tasks)}

    def key(task_id: str) -> tuple[int, int, str]:
        task = ctx.plan.get(task_id)
        return (-(task.priority if task else 0), index.get(task_id, len(index)), task_id)

    return sorted(ids, key=key)
