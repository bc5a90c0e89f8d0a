"""Forecasts that touch nothing: ``orch merge --dry-run`` and ``orch conflicts``.

Both merge in memory with ``git merge-tree`` (``integration.merge_tree``): no worktree, no test
run, no journal. ``dry_run`` triages and verifies as the ceremony does, then forecasts each queued
task against the base and the tasks ahead of it; ``conflicts`` pairs every task branch in flight
with each other and with the base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.core import git, state
from orch.core.config import BASE_HINT, base_where
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.text import quoted
from orch.integrate.integration import merge_tree
from orch.integrate.report import Outcome, utc_stamp
from orch.integrate.triage import (
    Result,
    branch_tip,
    branch_tips,
    deps,
    merge_order,
    merged_outside,
    reverify,
    task_title,
    triage,
)


def dry_run(ctx: Ctx, ids: list[str] | None = None, *, into: str | None = None) -> Outcome:
    """Forecast every queued task's merge against the base and the tasks ahead; touches nothing."""
    root = ctx.project.root
    target = into or ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if base is None:
        raise InputError(f"no branch {quoted(target)} to merge into", where=None if into else base_where(ctx.project))
    tri = triage(ctx, ids)
    mergeable = reverify(ctx, tri, log=False, base_tip=base)
    order = merge_order(ctx, mergeable)
    results = list(tri.results)
    sim = base
    ahead: list[str] = []
    for task_id in order:
        sha = tri.shas[task_id]
        missing = [d for d in deps(ctx, task_id) if d not in ahead and not merged_outside(ctx, d, base)]
        if missing:
            results.append(Result(task_id, "SKIPPED", f"dependency {missing[0]} would not be merged", sha=sha))
            continue
        _, with_base = merge_tree(root, base, sha)
        if with_base:
            results.append(Result(task_id, "CONFLICT", "would conflict with the base", sha=sha, paths=with_base))
            continue
        tree, with_sim = merge_tree(root, sim, sha)
        if tree is None:
            culprits = [other for other in ahead if merge_tree(root, tri.shas[other], sha)[0] is None]
            results.append(
                Result(
                    task_id,
                    "CONFLICT",
                    "would conflict with " + (", ".join(culprits) or "the tasks ahead"),
                    sha=sha,
                    paths=with_sim,
                    conflicts_with=culprits,
                )
            )
            continue
        sim = git.out(
            ["commit-tree", tree, "-p", sim, "-p", sha, "-m", f"orch forecast: {task_id}"], cwd=root, env=git.ORCH_IDENT
        )
        ahead.append(task_id)
        results.append(Result(task_id, "CLEAN", "would merge cleanly (tests not run)", sha=sha))
    titles = {r.task: task_title(ctx, r.task) for r in results}
    return Outcome(
        id=utc_stamp(),
        into=target,
        mode="dry-run",
        base_before=base,
        base_after=base,
        pre_ref=None,
        landed="forecast",
        message=None,
        test_command=ctx.config.test_command,
        test_runs=0,
        results=results,
        report=None,
        rollback=None,
        titles=titles,
        named=tri.named,
    )


@dataclass
class Clash:
    a: str
    b: str  # a task id, or the base branch name
    paths: list[str]
    with_base: bool = False  # b is the base branch, not a task


@dataclass
class Forecast:
    """What ``orch conflicts`` found: the tasks in flight (merge order) and the clashes among them."""

    base: str
    base_sha: str
    tasks: list[str]
    clashes: list[Clash]

    def to_json(self) -> dict[str, Any]:
        """The shape of ``orch conflicts --json`` (``schemas/conflicts.schema.json``)."""
        return {
            "base": self.base,
            "base_sha": self.base_sha,
            "tasks": self.tasks,
            "pairs": [{"tasks": [c.a, c.b], "paths": c.paths} for c in self.clashes if not c.with_base],
            "with_base": [{"task": c.a, "paths": c.paths} for c in self.clashes if c.with_base],
        }


def conflicts(ctx: Ctx) -> Forecast:
    """Pairwise forecast for tasks still in flight: which pairs (and which with the base) would conflict."""
    root = ctx.project.root
    statuses = state.read_all(ctx.project, ctx.store)
    base_name = ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{base_name}", cwd=root)
    if base is None:
        raise InputError(f"base_branch: no branch '{base_name}'", where=base_where(ctx.project), hint=BASE_HINT)
    tips: dict[str, str] = {}
    heads = branch_tips(ctx)
    for task_id, st in statuses.items():
        if st.get("state") in ("MERGED", "CLEANED", "PENDING", "QUEUED"):
            continue
        tip = branch_tip(heads, task_id)
        if tip is not None:
            tips[task_id] = tip
    ids = merge_order(ctx, list(tips))
    clashes: list[Clash] = []
    for i, a in enumerate(ids):
        tree, paths = merge_tree(root, base, tips[a])
        if tree is None:
            clashes.append(Clash(a, base_name, paths, with_base=True))
        for b in ids[i + 1 :]:
            tree, paths = merge_tree(root, tips[a], tips[b])
            if tree is None:
                clashes.append(Clash(a, b, paths))
    return Forecast(base_name, base, ids, clashes)
