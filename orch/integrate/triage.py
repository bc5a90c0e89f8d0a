"""Which spun tasks a merge ceremony (or a forecast) takes, judged again, and in which order.

``triage`` sorts every spun task (or the ones named) into the queue, or into a ``Result`` that says
why it is not merged; ``reverify`` judges each queued task again at the exact sha to be merged;
``merge_order`` puts the rest in dependency order. ``Result`` is one task's outcome as the journal,
the report and the statuses record it. Shared by the ceremony and the forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orch.core import git, refs, state
from orch.core.context import Ctx
from orch.core.errors import InputError


@dataclass
class Result:
    task: str
    outcome: str  # MERGED REVERTED CONFLICT QUARANTINED SKIPPED NOT_READY
    detail: str | None = None
    sha: str | None = None
    merged_sha: str | None = None
    paths: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    excerpt: str | None = None
    log: str | None = None
    conflicts_with: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "conflicts_with"}
        if self.conflicts_with:
            data["conflicts_with"] = self.conflicts_with
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**data)


@dataclass
class Triage:
    queue: list[str]  # ready to verify and merge, in no particular order yet
    shas: dict[str, str]
    results: list[Result]  # decided without merging: not ready, quarantined
    statuses: dict[str, state.Status]
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # fresh verdicts, by task
    named: list[str] = field(default_factory=list)  # tasks the person asked for by id
    notes: dict[str, str] = field(default_factory=dict)  # what orch did on the way (a branch restored), by task


def branch_tip(tips: dict[str, str], task_id: str) -> str | None:
    """The tip of the task's branch ``orch/<id>`` as git has it: never the ``branch`` or a sha its
    status names (an agent can write its status, and name another task's branch there)."""
    return tips.get(refs.branch_name(task_id))


def branch_tips(ctx: Ctx) -> dict[str, str]:
    """The sha of every orch/* branch, from one git call."""

    return refs.branch_heads(ctx.project.root)


def triage(ctx: Ctx, ids: list[str] | None, outside: dict[str, Any] | None = None, *, restore: bool = False) -> Triage:
    """Sort every spun task (or the ``ids`` named) into the queue and the rest, with reasons.

    SUCCESS and SKIPPED go in the queue; so do REVERTED, CONFLICT and quarantined tasks whose branch
    has new commits since, or that are named explicitly (to try again). FAILED, BLOCKED, PAUSED,
    CRASHED and RUNNING are not ready. A task no longer in the plan is not merged.

    The status only says which of these a task is: what is merged is the tip of ``orch/<id>``, and
    ``reverify`` judges it again; a status rewritten to SUCCESS gets its tip judged, then tested with
    the test command and the task's own accept command on the merged tree (``Ceremony.test``).
    ``outside`` (``basecheck.outside_work``, by task): work the base holds though no ceremony landed
    it, judged clean; a task whose whole branch is in the base that way is MERGED, whatever its state.
    ``restore`` (the ceremony): a finished task whose branch someone deleted gets it back first
    (``taskgit.restore_deleted``), and ``notes`` says so.
    """
    statuses = state.read_all(ctx.project, ctx.store)  # turns dead RUNNING tasks CRASHED
    named = list(dict.fromkeys(ids or []))
    wanted = named if named else list(statuses)
    for task_id in named:
        if task_id not in statuses:
            ctx.plan.require(task_id)
            raise InputError(
                f"task {task_id} was never spun, so there is nothing to merge", hint=f"orch spin {task_id}"
            )
    queue: list[str] = []
    shas: dict[str, str] = {}
    results: list[Result] = []
    notes: dict[str, str] = {}
    tips = branch_tips(ctx)
    for task_id in wanted:
        st = statuses[task_id]
        current = st.get("state", "PENDING")
        if current == "CLEANED" and task_id in named and not state.merged(st):
            revived = _cleaned(task_id, st, tips, results)
            if revived is None:
                continue
            current = revived  # named: what its kept branch holds is judged as the task was before the clean
        tip = branch_tip(tips, task_id) if current not in ("PENDING", "QUEUED", "CLEANED", "MERGED") else None
        merge = st.get("merge") or {}
        verdict = st.get("verdict") or {}
        if current in ("MERGED", "CLEANED"):
            later = branch_tip(tips, task_id)
            if later is not None and merge.get("sha") and later != merge.get("sha"):
                results.append(
                    Result(
                        task_id,
                        "NOT_READY",
                        f"merged at {str(merge.get('sha'))[:12]}; its branch has commits since, which orch does "
                        "not merge (give them a task of their own)",
                        sha=later,
                    )
                )
            elif named:
                results.append(Result(task_id, "NOT_READY", f"already {current.lower()}"))
            continue
        if current in ("PENDING", "QUEUED"):
            if named:
                results.append(
                    Result(task_id, "NOT_READY", "not spun yet" if current == "PENDING" else "queued, not run yet")
                )
            continue
        if tip is None and restore and current != "RUNNING":
            tip = _restore(ctx, task_id, st, notes)
        if tip is None:
            gone = notes.get(task_id) or f"its branch {refs.branch_name(task_id)} is gone"
            results.append(Result(task_id, "NOT_READY", gone))
            continue
        if ctx.plan.get(task_id) is None:
            results.append(
                Result(task_id, "NOT_READY", "no longer in .orch/plan.md (add it back to merge it)", sha=tip)
            )
            continue
        if current in ("SUCCESS", "SKIPPED"):
            queue.append(task_id)
        elif current in ("REVERTED", "CONFLICT"):
            if merge.get("sha") != tip or named:  # new work since, or asked for: try again
                queue.append(task_id)
            else:
                continue  # reported by the ceremony that decided it
        elif current in state.VIOLATIONS:
            if verdict.get("sha") != tip or named:
                queue.append(task_id)  # changed since the verdict, or asked for: verification decides
            elif current != "QUARANTINED":
                results.append(_quarantined(task_id, tip, verdict))  # a fresh verdict: quarantine it now
            else:
                continue  # quarantined by an earlier ceremony and unchanged
        elif current == "RUNNING":
            results.append(Result(task_id, "NOT_READY", "still running"))
        elif current == "HUMAN":  # a person drives it: not merged until orch release says it is done
            results.append(Result(task_id, "NOT_READY", f"HUMAN: a person works on it (orch release {task_id})"))
        else:  # FAILED BLOCKED PAUSED CRASHED
            reason = st.get("reason")
            results.append(Result(task_id, "NOT_READY", current + (f": {reason}" if reason else "")))
        if task_id in queue:
            shas[task_id] = tip
    tri = Triage(queue, shas, results, statuses, named=named, notes=notes)
    for found in (outside or {}).values():
        _came_outside(tri, found, tips, wanted)
    return tri


def _restore(ctx: Ctx, task_id: str, st: state.Status, notes: dict[str, str]) -> str | None:
    """Put back the branch of a finished task that someone deleted, from git's record of its worktree's
    HEAD (or the tip its run ended at); its tip then, or None. Logged, and noted for the report."""
    from orch.agents.taskgit import restore_deleted

    worktree = ctx.config.worktree_root / task_id  # orch's place for it, never the status's word
    note = restore_deleted(ctx.project, task_id, worktree, last_seen=st.get("head_sha"))
    if note is None:
        return None
    notes[task_id] = note
    ctx.log(str(st.get("state", "-")), "RESTORE", note, task=task_id)
    return git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=ctx.project.root)


def _came_outside(tri: Triage, found: Any, tips: dict[str, str], wanted: list[str]) -> None:
    """A task whose whole branch reached the base outside a ceremony, and verified clean there, is
    MERGED (a person merged it by hand), even if its run FAILED or a ceremony had reverted it."""
    task_id = found.task
    st = tri.statuses.get(task_id)
    if not found.clean or st is None or task_id not in wanted or task_id in tri.queue or state.merged(st):
        return
    if (
        st.get("state") in ("PENDING", "QUEUED", "RUNNING", "CLEANED", "HUMAN")  # HUMAN: a person's until released
        or tips.get(refs.branch_name(task_id)) != found.sha
    ):
        return
    tri.results[:] = [r for r in tri.results if r.task != task_id]
    detail = "already contained in the base (it came in outside a merge ceremony; verified: its scope, the locks)"
    tri.results.append(Result(task_id, "MERGED", detail, sha=found.sha))
    tri.verdicts[task_id] = found.verdict.to_dict()


def _cleaned(task_id: str, st: state.Status, tips: dict[str, str], results: list[Result]) -> str | None:
    """A cleaned task named for merging: the state it had before the clean, to triage its kept branch
    as that; None (with the reason in ``results``) when orch clean removed the branch too."""
    previous = str(st.get("previous_state") or "PENDING")
    if tips.get(f"orch/{task_id}") is not None:
        return previous
    kept = [ref for ref in st.get("kept_refs") or [] if ref.startswith(f"{refs.KEPT_PREFIX}/{task_id}/")]
    where = f"its commits are kept as {kept[-1]}" if kept else f"see: git for-each-ref {refs.KEPT_PREFIX}/{task_id}/"
    results.append(
        Result(
            task_id,
            "NOT_READY",
            f"cleaned (was {previous}) and its branch orch/{task_id} removed; {where}: to merge them, "
            f"restore the branch (git branch orch/{task_id} {kept[-1] if kept else 'REF'}) and run orch merge "
            f"{task_id} again",
        )
    )
    return None


def in_the_base(ctx: Ctx, results: list[Result], tip: str | None) -> set[str]:
    """The tasks found MERGED whose commit is in ``tip``'s history (one git call): their work is in
    the base, so they are recorded MERGED even when the ceremony itself landed nothing."""
    shas = {r.task: r.sha for r in results if r.outcome == "MERGED" and r.sha}
    if tip is None or not shas:
        return set()
    inside = git.contained(shas.values(), tip, cwd=ctx.project.root)
    return {task_id for task_id, sha in shas.items() if sha in inside}


def merged_outside(ctx: Ctx, task_id: str, tip: str) -> bool:
    """Is this task merged (recorded so, or its verified commit in ``tip``'s history) though not by
    the ceremony at hand? (``state.merged_tasks``)"""
    status = state.read(ctx.project, ctx.store, task_id)
    return status is not None and task_id in state.merged_tasks(ctx.project, {task_id: status}, [task_id], lambda: tip)


def _quarantined(task_id: str, sha: str, verdict: dict[str, Any] | Any) -> Result:
    if isinstance(verdict, dict):
        violations = verdict.get("violations") or []
        result = verdict.get("result")
        paths = [v["path"] for v in violations]
        rules = [v["rule"] for v in violations]
    else:
        result = verdict.result
        paths = [v.path for v in verdict.violations]
        rules = [v.rule for v in verdict.violations]
    return Result(
        task_id, "QUARANTINED", f"{result}: {len(paths)} offending path(s)", sha=sha, paths=paths, rules=rules
    )


def reverify(ctx: Ctx, tri: Triage, *, log: bool, base_tip: str) -> list[str]:
    """Trust but verify: judge each queued task again at the exact sha that would be merged.

    The verdicts are kept in ``tri.verdicts`` and written to the statuses together with the outcome,
    one write per task.
    """
    from concurrent.futures import ThreadPoolExecutor

    from orch.verify.judge import verify_task

    def judge(task_id: str) -> Any:
        return verify_task(ctx, task_id, sha=tri.shas[task_id], record=False, base_tip=base_tip)

    # Each verdict is mostly two git processes; a few threads overlap them. Load what they share first.
    ctx.plan  # noqa: B018
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(tri.queue)))) as pool:
        verdicts = list(pool.map(judge, tri.queue))
    ok: list[str] = []
    for task_id, verdict in zip(tri.queue, verdicts, strict=True):
        sha = tri.shas[task_id]
        tri.verdicts[task_id] = verdict.to_dict()
        if log:
            ctx.log(
                tri.statuses[task_id].get("state", "PENDING"),
                "VERIFY",
                f"{verdict.result} sha={sha[:12]}",
                task=task_id,
            )
        if verdict.violations and verdict.result != "OK":
            tri.results.append(_quarantined(task_id, sha, verdict))
        elif not verdict.mergeable:
            pending = ", ".join(verdict.pending_acks)
            tri.results.append(
                Result(
                    task_id,
                    "SKIPPED",
                    f"soft lock(s) {pending} need acknowledging: orch ack {task_id} LOCK",
                    sha=sha,
                    rules=list(verdict.pending_acks),
                )
            )
        else:
            ok.append(task_id)
    return ok


def deps(ctx: Ctx, task_id: str) -> list[str]:
    """A queued task's dependencies (triage keeps tasks that left the plan out of the queue)."""
    task = ctx.plan.get(task_id)
    return task.deps if task else []


def task_title(ctx: Ctx, task_id: str) -> str:
    task = ctx.plan.get(task_id)
    return task.title if task else task_id


def merge_order(ctx: Ctx, ids: list[str]) -> list[str]:
    from orch.core.plan import topo_order

    in_plan = [i for i in topo_order(ctx.plan, ids)]
    return in_plan + [i for i in ids if i not in in_plan]
