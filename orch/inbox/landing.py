"""``landing`` items: ``orch up --land ask`` asks a person before it lands a task's work.

The item names the exact commit (``data.sha``), the verdict and the merge forecast. ``orch approve
M1`` runs the merge ceremony for that task then and there (tests, undo on failure, compare-and-swap
of the base: as ``orch merge T1`` would), so the person sees what happened; a branch that moved
since the question was asked is not landed (``orch up`` asks again for the new commit). ``orch reject
M1`` leaves the task as it is: ``orch up`` does not ask again for that commit, ``orch merge T1``
still lands it by hand.
"""

from __future__ import annotations

from orch.core import git, refs, state
from orch.core.context import Ctx, open_ctx
from orch.core.errors import InputError
from orch.inbox.decide import STILL_WAITS, Answer, Item, handles


@handles("landing")
def _answer(ctx: Ctx, item: Item, answer: Answer) -> str:
    from orch.integrate import ceremony

    task_id = str(item.get("task") or "")
    sha = str((item.get("data") or {}).get("sha") or "")
    if not answer.approve:
        return f"not landed: {task_id} stays as it is (orch merge {task_id} lands it by hand)"
    tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=ctx.project.root)
    if tip != sha:
        raise InputError(
            f"{item['id']} asked to land {task_id} at {sha[:12]}, but its branch is at {str(tip)[:12]} now",
            hint=f"orch up asks again for the new commit; orch merge {task_id} lands it by hand",
        )
    outcome = ceremony.merge(open_ctx(ctx.project.root, from_source=True), [task_id])
    for r in outcome.results:
        if r.task == task_id:
            word = outcome.outcome_word(r)
            landed = f" on {outcome.into}" if r.outcome == "MERGED" and outcome.is_landed else ""
            return f"{word}{landed}" + (f": {r.detail}" if r.detail else "")
    return f"the ceremony did not take {task_id} ({outcome.landed})"


def _still_waits(item: Item, st: state.Status | None) -> bool:
    """The task still waits to land (not merged, not retried since)."""
    return (st or {}).get("state") in ("SUCCESS", "SKIPPED")


STILL_WAITS["landing"] = _still_waits
