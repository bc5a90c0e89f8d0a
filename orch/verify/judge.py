"""Judging a task: its exact commit checked against its scope, the locks and the always-forbidden;
the ``Verdict`` recorded in its status; a person's acks of soft locks.

The change set is every path changed between merge-base(base, commit) and the commit
(``changeset``), checked by the same ``rules`` the hooks apply early, then by the requirement
checks (``requirements``, imported only when there are requirement locks). Rules and locks come
from the main checkout only. Hooks are early warnings; this module's ``verify_task`` is the
guarantee.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from orch.core import git, refs
from orch.core.errors import InputError
from orch.verify import inforce
from orch.verify.changeset import parse_stream, task_changes
from orch.verify.rules import Checker, Violation, result_of

TYPE_CHECKING = False  # as in the modules git hooks import: typing for mypy only (it reads this as typing's)
if TYPE_CHECKING:
    from typing import Any

    from orch.core.context import Ctx
    from orch.core.repo import Project


class Verdict:
    """What verification said about one exact commit."""

    def __init__(
        self,
        task_id: str,
        result: str,
        sha: str,
        base_sha: str | None,
        violations: list[Violation],
        pending_acks: list[str],
        at: str,
        changed: int = 0,
    ) -> None:
        self.task_id = task_id
        self.result = result
        self.sha = sha
        self.base_sha = base_sha
        self.violations = violations
        self.pending_acks = pending_acks
        self.at = at
        self.changed = changed

    @property
    def mergeable(self) -> bool:
        """No hard violation and no soft lock still waiting for ``orch ack``."""
        return not any(v.mode == "hard" for v in self.violations) and not self.pending_acks

    def to_dict(self) -> dict[str, Any]:
        """The form stored in status.yaml (schemas/task_status.schema.json ``verdict``)."""
        return {
            "result": self.result,
            "sha": self.sha,
            "base_sha": self.base_sha,
            "at": self.at,
            "violations": [v.to_dict() for v in self.violations],
            "pending_acks": list(self.pending_acks),
        }

    def to_json(self) -> dict[str, Any]:
        return {"id": self.task_id, **self.to_dict(), "mergeable": self.mergeable, "changed_paths": self.changed}


def _check_task_id(task_id: str) -> None:
    from orch.core.plan import ID_RE, ID_RULE

    if not ID_RE.fullmatch(task_id):
        raise InputError(f"'{task_id}' is not a task id", hint=ID_RULE)


def _resolved(
    pair: git.CommitPair, task_id: str, sha: str | None, base: str, config_of_base: Project | None
) -> tuple[str, str]:
    """(the full sha to judge, its merge-base with the base branch), or why there is none.
    ``config_of_base``: the project whose config.yaml names ``base`` (None: a caller chose it)."""
    base_tip, found, bases = pair.result()
    if found is None:
        if sha is None:
            raise InputError(
                f"task {task_id} has no branch {refs.branch_name(task_id)}",
                hint=f"spin it first (orch spin {task_id}), or pass the commit to verify",
            )
        raise InputError(f"'{sha}' names no commit in this repository")
    if base_tip is None:
        from orch.core.config import key_where

        where = key_where(config_of_base, "base_branch") if config_of_base is not None else None
        raise InputError(f"the base branch '{base}' does not exist", where=where, hint="fix base_branch there")
    if not bases:
        raise InputError(f"{refs.branch_name(task_id)} at {found[:12]} shares no history with {base}")
    return found, bases[0]  # with several (criss-cross merges), the one `git merge-base` names


def verify_task(
    ctx: Ctx,
    task_id: str,
    *,
    sha: str | None = None,
    record: bool = True,
    base_tip: str | None = None,
) -> Verdict:
    """Judge the exact commit ``sha`` (default: the tip of ``orch/<id>``) of task ``task_id``.

    ``base_tip`` is the commit the change set is measured from (through the merge-base); default: the
    tip of the configured base branch (the merge ceremony passes the tip of the branch it merges into).
    Config, plan and locks are read from their files, never from the caches (``Ctx.judging``).
    """
    from orch.core import state
    from orch.core.eventlog import utcnow

    _check_task_id(task_id)
    ctx = ctx.judging()
    project = ctx.project
    root = project.root
    ctx.read_committed()  # the base branch's committed rules, read by git while the commits resolve
    base = ctx.working_config.base_branch
    # git works on the other core while the rules load: first the commit, the base tip and their
    # merge-base (while the plan is read), then the diff (while the locks are read). The locks still
    # fail closed, exit 3, before anything else is reported.
    pair = git.CommitPair(
        base_tip or f"refs/heads/{base}", f"refs/heads/{refs.branch_name(task_id)}" if sha is None else sha, cwd=root
    )
    try:
        task = ctx.plan.require(task_id)
    except BaseException:
        pair.cancel()
        raise
    try:
        commit, base_sha = _resolved(pair, task_id, sha, base, None if base_tip else project)
    except InputError as exc:
        unresolved: InputError | None = exc  # told once the locks have loaded: they are reported first
        diff = None
    else:
        unresolved, diff = None, task_changes(root, base_sha, commit)
    try:
        lockset = inforce.locks(ctx)
        if unresolved is not None:
            raise unresolved
        assert diff is not None
        sha = commit
        checker = Checker(lockset=lockset, scope=task.scope, agent=True, committed_scope=task.committed_scope)
        changed = 0
        for batch in parse_stream(diff):
            checker.scan(batch)
            changed += len(batch)
    finally:
        if diff is not None:
            diff.cancel()
    violations = checker.finish(lambda shas: git.cat_blobs(shas, cwd=root))
    status = state.read(project, ctx.store, task_id, refresh=False) or {}
    acks = acked_locks(status, sha)
    if lockset.of_kind("requirement", agents=False):
        from orch.verify.requirements import checkout_at, run_requirements

        with checkout_at(ctx, task_id, sha) as where:
            for failure in run_requirements(ctx, lockset, where, timeout=ctx.config.test_timeout):
                excerpt = failure.output.strip().splitlines()[-1:] or [""]
                violations.append(
                    Violation(
                        f"(requirement {failure.lock_id})",
                        "requirement",
                        f"'{failure.text}' failed: `{failure.check}` exited {failure.exit_code}: {excerpt[0][:200]}",
                        lock=failure.lock_id,
                        mode=failure.mode,
                    )
                )
    pending = sorted({v.lock for v in violations if v.mode == "soft" and v.lock and v.lock not in acks})
    verdict = Verdict(task_id, result_of(violations), sha, base_sha, violations, pending, utcnow(), changed)
    if record:
        _record(ctx, verdict)
    return verdict


def _record(ctx: Ctx, verdict: Verdict) -> None:
    from orch.core import state

    new_state: str | None = None

    def change(st: state.Status) -> None:
        nonlocal new_state
        st["verdict"] = verdict.to_dict()
        if not st.get("branch"):  # so `orch status` can tell when a later commit makes the verdict stale
            st["branch"] = refs.branch_name(verdict.task_id)
        if verdict.result != "OK" and st.get("state") not in ("MERGED", "CLEANED"):
            st["state"] = verdict.result
            n = len([v for v in verdict.violations if v.mode == "hard"])
            plural = "s" if n != 1 else ""
            st["reason"] = f"verify: {n} violation{plural} at {verdict.sha[:12]} (orch verify {verdict.task_id})"
        new_state = st.get("state")

    state.update(ctx.project, ctx.store, verdict.task_id, change, check=False)  # built from a validated status
    hard = len([v for v in verdict.violations if v.mode == "hard"])
    result = f"{verdict.result} sha={verdict.sha[:12]} violations={hard}"
    if verdict.pending_acks:
        result += f" needs-ack={','.join(verdict.pending_acks)}"
    ctx.log(new_state or "PENDING", "VERIFY", result, task=verdict.task_id)


def verify_many(ctx: Ctx, task_ids: Sequence[str], *, all_tasks: bool = False) -> list[Verdict]:
    """``orch verify``: the named tasks, or (``all_tasks``) every task in the plan with a branch."""
    ctx = ctx.judging()
    if all_tasks:
        heads = refs.branch_heads(ctx.project.root)
        task_ids = [t for t in ctx.plan.ids() if refs.branch_name(t) in heads]
    if not task_ids:
        raise InputError("no task to verify", hint="name tasks (orch verify T1 T2) or spin one first")
    for tid in task_ids:
        _check_task_id(tid)
        ctx.plan.require(tid)
    return [verify_task(ctx, tid) for tid in task_ids]


def ack_entry(lock_id: str, sha: str) -> str:
    """How status.yaml ``acks`` records an ack: the lock and the exact commit it was given for."""
    return f"{lock_id}@{sha}"


def acked_locks(status: dict[str, Any], sha: str) -> set[str]:
    """The soft locks a person acked for commit ``sha`` (an ack holds for one exact commit; entries
    without a commit, written by older versions, count for none)."""
    out = set()
    for entry in status.get("acks") or []:
        lock_id, at, acked_sha = str(entry).partition("@")
        if at and acked_sha == sha:
            out.add(lock_id)
    return out


def ack(ctx: Ctx, task_id: str, lock_id: str) -> dict[str, Any]:
    """``orch ack``: a person accepts task ``task_id``'s change to soft lock ``lock_id`` at the exact
    commit of its latest verdict (which must still be the branch tip): a later commit needs a new ack."""
    from orch.core import state

    _check_task_id(task_id)
    ctx = ctx.judging()
    ctx.plan.require(task_id)
    lockset = inforce.locks(ctx)
    versions = [lk for lk in lockset.for_agents() if lk.id == lock_id]  # both, when an edit is uncommitted
    if not versions:
        known = ", ".join(dict.fromkeys(lk.id for lk in lockset.locks)) or "none"
        raise InputError(f"no lock '{lock_id}' in .orch/locks.yaml", hint=f"known locks: {known}")
    if any(lk.mode != "soft" for lk in versions):
        committed = any(lk.note for lk in versions if lk.mode != "soft")
        branch = ctx.committed().branch
        raise InputError(
            f"{lock_id} is a hard lock"
            + (f" as committed on {branch} (the uncommitted edit counts once committed)" if committed else "")
            + ": it cannot be acked",
            hint=f"fix the branch, or (a person decides) make it soft in .orch/locks.yaml and commit that on "
            f"{branch}, or: orch lock rm {lock_id} and commit",
        )

    tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=ctx.project.root)
    status = state.read(ctx.project, ctx.store, task_id, refresh=False) or {}
    judged = (status.get("verdict") or {}).get("sha")
    if not judged:
        raise InputError(
            f"task {task_id} has no verdict to ack", hint=f"verify it first (orch verify {task_id}), then ack"
        )
    if tip != judged:
        where = f"is at {tip[:12]}" if tip else "is gone"
        raise InputError(
            f"{refs.branch_name(task_id)} {where}, not at {judged[:12]} where it was verified: "
            "an ack holds for one exact commit",
            hint=f"verify it again (orch verify {task_id}), then ack what that verdict shows",
        )
    sha = judged
    entry = ack_entry(lock_id, sha)

    def change(st: state.Status) -> None:
        acks = list(st.get("acks") or [])
        if entry not in acks:
            acks.append(entry)
        st["acks"] = acks
        verdict = st.get("verdict")
        if verdict and verdict.get("sha") == sha and lock_id in (verdict.get("pending_acks") or []):
            verdict["pending_acks"] = [a for a in verdict["pending_acks"] if a != lock_id]

    st = state.update(ctx.project, ctx.store, task_id, change)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "someone"
    ctx.log(str(st.get("state")), "ACK", f"{lock_id} at {sha[:12]} by {user}", task=task_id)
    verdict = st.get("verdict") or {}
    return {
        "task": task_id,
        "lock": lock_id,
        "sha": sha,
        "acks": st["acks"],
        "pending_acks": verdict.get("pending_acks") or [],
    }


def verdict_text(v: Verdict) -> str:
    head = f"{v.task_id}: {v.result} at {v.sha[:12]} (base {str(v.base_sha)[:12]}, {v.changed} changed paths)"
    lines = [head]
    for x in v.violations:
        tag = " [soft]" if x.mode == "soft" else ""
        lines.append(f"  {x.path}: {x.rule}{tag}: {x.message}")
    if v.pending_acks:
        acks = " ".join(f"orch ack {v.task_id} {a}" for a in v.pending_acks)
        lines.append(f"  needs a person's ack before the merge: {acks}")
    elif v.mergeable:
        lines.append("  mergeable")
    return "\n".join(lines)
