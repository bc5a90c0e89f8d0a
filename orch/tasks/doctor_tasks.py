"""``orch doctor``'s look at task worktrees and cleaned tasks: half-checked-out worktrees a killed
spin left, and finished work cleaned before it was merged. Split from ``orch.tasks.doctor``, which
runs every check and repairs what it can.
"""

from __future__ import annotations

from pathlib import Path

from orch.core import eventlog, git, state
from orch.core.context import Ctx
from orch.core.plan import ID_RE, RESERVED_IDS
from orch.tasks import halfspun
from orch.tasks.clean import snapshot_ref
from orch.tasks.finding import Finding


def half_spun(
    ctx: Ctx,
    listing: dict[str, dict[str, str]],
    statuses: dict[str, state.Status],
    findings: list[Finding],
    *,
    fix: bool,
) -> dict[str, bool]:
    """Worktrees a killed ``orch spin`` left half filled (``orch.tasks.halfspun``): by path, whether
    repaired. Never snapshotted as work: the checkout is finished, and the spin undone while its
    branch has no commits of its own (``orch spin`` then starts over)."""
    from orch.core.refs import BASE_PREFIX, branch_name

    root = ctx.project.root
    found: dict[str, bool] = {}
    with ctx.store.lock("git-worktree-add"):  # spin adds and marks worktrees under this lock
        for listed, info in listing.items():
            task_id = task_of_branch(info)
            wt = Path(listed)
            common = ctx.project.common_dir
            if task_id is None or not under_worktree_root(ctx, wt) or (h := halfspun.pending(wt, common)) is None:
                continue
            branch = branch_name(task_id)
            st = statuses.get(task_id)
            tip = git.rev_parse(f"refs/heads/{branch}", cwd=root)
            spun = st is not None and st.get("state") in ("PENDING", "QUEUED") and bool(st.get("branch"))
            undo = not spun and tip is not None and tip == git.rev_parse(f"{BASE_PREFIX}/{task_id}", cwd=root)
            f = Finding(
                "half-checked-out",
                listed,
                f"orch spin {task_id} was killed while it checked out this worktree: no agent ran in it, and "
                "the files it lacks were never checked out (nobody deleted them)",
                f"finish the checkout and undo the spin (remove the worktree, {branch} has no commits of its "
                f"own): orch spin {task_id} starts over"
                if undo
                else "finish the checkout (what differs from the branch is kept under refs/orch/snapshots/ "
                "first); the worktree stays",
                task=task_id,
                path=listed,
            )
            if h.spinner is not None or h.git_busy:
                who = f"orch spin (pid {h.spinner})" if h.spinner is not None else "a git process"
                f.detail = f"{who} is checking out this worktree right now"
                f.fix = "nothing: let it finish (run orch doctor again if it never does)"
                f.fixable, f.info = False, True
            findings.append(f)
            found[listed] = False
            if not fix or not f.fixable:
                continue
            # every file of the branch is there now; what still differs is kept
            halfspun.restore(wt, ctx.project.common_dir)
            kept = snapshot_ref(wt, task_id, why="found in a worktree a killed orch spin had not finished")
            halfspun.finish(wt, ctx.project.common_dir)
            if kept:
                f.fix += f"; what differed from {branch} is kept as {kept}"
            if undo:
                git.run(["worktree", "remove", "--force", str(wt)], cwd=root)
                git.run(["update-ref", "-d", f"refs/heads/{branch}", tip or ""], cwd=root)
                git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
                if st is not None and st.get("state") in ("PENDING", "CRASHED"):
                    state.update(ctx.project, ctx.store, task_id, forget)
                ctx.log("-", "UNSPIN", f"removed the half checked-out worktree {ctx.project.rel(wt)}", task=task_id)
            found[listed] = f.fixed = True
    return found


def task_of_branch(info: dict[str, str]) -> str | None:
    """The task whose branch a worktree of ``git worktree list`` has checked out, if any."""
    branch = info.get("branch", "").removeprefix("refs/heads/")
    task_id = branch.removeprefix("orch/") if branch.startswith("orch/") else None
    return task_id if task_id and ID_RE.fullmatch(task_id) and task_id not in RESERVED_IDS else None


def merged_after_clean(st: state.Status) -> bool:
    """Cleaned, then merged by name from the branch clean kept: MERGED with no worktree of orch's."""
    return st.get("state") == "MERGED" and not st.get("worktree") and bool(st.get("cleaned_at"))


def cleaned_before_merge(ctx: Ctx, statuses: dict[str, state.Status]) -> list[Finding]:
    """Cleaned tasks whose finished work (SUCCESS, SKIPPED) never reached the base: on the branch orch
    clean kept, ``orch merge ID`` still merges it (info); hidden under ``refs/orch/kept/`` by
    ``clean --force``, nothing orch runs can see it any more: stranded, until its branch is restored."""
    from orch.core.refs import KEPT_PREFIX, branch_heads, branch_name

    cleaned = [
        i
        for i, st in statuses.items()
        if st.get("state") == "CLEANED" and st.get("previous_state") in state.AWAITING_MERGE and not state.merged(st)
    ]
    if not cleaned:
        return []
    root = ctx.project.root
    heads = branch_heads(root)
    kept: dict[str, list[tuple[str, str]]] = {}
    listed = git.out(["for-each-ref", "--format=%(refname) %(objectname)", f"{KEPT_PREFIX}/"], cwd=root)
    for line in listed.splitlines():
        ref, _, sha = line.partition(" ")
        kept.setdefault(ref.removeprefix(f"{KEPT_PREFIX}/").split("/", 1)[0], []).append((ref, sha))
    shas = [heads.get(branch_name(i), "") for i in cleaned] + [sha for i in cleaned for _, sha in kept.get(i, [])]
    inside = git.contained(shas, f"refs/heads/{ctx.config.base_branch}", cwd=root)
    base = ctx.config.base_branch
    findings = []
    for task_id in cleaned:
        tip = heads.get(branch_name(task_id))
        previous = statuses[task_id].get("previous_state")
        if tip is not None:
            if tip not in inside:
                findings.append(
                    Finding(
                        "cleaned-unmerged",
                        task_id,
                        f"cleaned ({previous}) before it was merged; its branch {branch_name(task_id)} holds work "
                        f"not in {base}",
                        f"orch merge {task_id} merges it (verified again at its exact commit), or orch clean --force "
                        f"{task_id} hides it under {KEPT_PREFIX}/{task_id}/",
                        fixable=False,
                        info=True,
                    )
                )
            continue
        out = sorted(ref for ref, sha in kept.get(task_id, []) if sha not in inside)
        if out:
            findings.append(
                Finding(
                    "stranded-work",
                    task_id,
                    f"cleaned with --force ({previous}) before it was merged: its work is only under {out[-1]}, "
                    f"which orch merge {task_id} cannot see",
                    f"restore its branch and merge it: git branch {branch_name(task_id)} {out[-1]} && orch merge "
                    f"{task_id}; or, if you do not want it: git update-ref -d {out[-1]}",
                    fixable=False,
                )
            )
    return findings


def under_worktree_root(ctx: Ctx, path: Path) -> bool:
    """Inside orch's worktree folder, and not the main checkout (nor a folder holding it)."""
    resolved, root = path.resolve(), ctx.project.root.resolve()
    if resolved == root or root.is_relative_to(resolved):
        return False
    return resolved.is_relative_to(ctx.config.worktree_root.resolve())


def forget(st: state.Status) -> None:
    st["previous_state"] = st.get("state")
    st["state"] = "CLEANED"
    st["worktree"] = None
    st["cleaned_at"] = eventlog.utcnow()
