"""``orch clean``: remove finished tasks' worktrees and branches without losing a commit or a change.

Uncommitted work goes to a snapshot commit under ``refs/orch/snapshots/<id>/<timestamp>`` (made with
a temporary index: the branch and the worktree are not touched), the worktree is removed (or only
the link, if the folder was replaced by a symlink), and a branch whose commits are not in the base is
kept (as ``orch/<id>``, or with ``--force`` as ``refs/orch/kept/<id>/<timestamp>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.agents.taskgit import restore_deleted
from orch.core import eventlog, git, procs, refs, state
from orch.core.config import BASE_HINT, base_where
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.plan import ID_RE, ID_RULE
from orch.core.refs import (
    BASE_PREFIX,
    KEPT_PREFIX,
    SNAPSHOT_PREFIX,
    branch_name,
    check_id,
    checked_out_elsewhere,
    git_worktrees,
    same_repo,
    task_of_worktree,
    timestamp,
)
from orch.tasks import halfspun
from orch.tasks.spin import worktree_path

CLEANABLE = frozenset(
    state.FINISHED | state.VIOLATIONS | {"MERGED", "REVERTED", "CONFLICT", "SKIPPED", "PENDING", "QUEUED"}
)


@dataclass
class CleanEntry:
    id: str
    previous_state: str
    removed_worktree: str | None = None
    link_only: bool = False
    kept_folder: str | None = None
    snapshot_ref: str | None = None
    deleted_branch: str | None = None
    kept_branch: str | None = None
    kept_refs: list[str] = field(default_factory=list)
    restore: list[str] = field(default_factory=list)
    skipped: str | None = None
    branch_note: str | None = None
    restored: str | None = None  # its branch was deleted after the run: orch put it back first

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CleanReport:
    entries: list[CleanEntry] = field(default_factory=list)

    @property
    def cleaned(self) -> list[CleanEntry]:
        return [e for e in self.entries if e.skipped is None]

    @property
    def skipped(self) -> list[CleanEntry]:
        return [e for e in self.entries if e.skipped is not None]

    def to_json(self) -> dict[str, Any]:
        return {"cleaned": [e.to_json() for e in self.cleaned], "skipped": [e.to_json() for e in self.skipped]}


def clean(
    ctx: Ctx,
    ids: list[str] | None = None,
    *,
    merged: bool = False,
    all: bool = False,
    force: bool = False,
) -> CleanReport:
    """Remove worktrees and branches of finished tasks, keeping a ref to every commit and change.

    Without ids: merged tasks (``--merged``, also the default), or every finished task (``--all``).
    A RUNNING task is never cleaned.
    """
    project, store = ctx.project, ctx.store
    statuses = state.read_all(project, store)
    if git.rev_parse(f"refs/heads/{ctx.config.base_branch}", cwd=project.root) is None:  # before anything moves
        raise InputError(
            f"base_branch: no branch '{ctx.config.base_branch}' to tell merged work from work to keep",
            where=base_where(ctx.project),
            hint=BASE_HINT,
        )
    waiting: set[str] = set()
    if ids:
        for task_id in ids:
            check_id(task_id, cwd=project.root)
            if task_id not in statuses:
                raise InputError(f"task {task_id} was never spun: nothing to clean")
            if statuses[task_id].get("state") == "RUNNING":
                raise InputError(f"task {task_id} is RUNNING", hint=f"stop it first: orch stop {task_id}")
        selected = list(dict.fromkeys(ids))
    elif all:
        selected = [i for i, s in statuses.items() if s.get("state") not in ("RUNNING", "CLEANED")]
        if not force:
            waiting = _waiting_to_merge(ctx, statuses, selected)
    else:  # merged however it got there: by a ceremony, or its verified commit merged by hand
        left = [i for i, s in statuses.items() if s.get("state") != "CLEANED"]
        merged_ids = state.merged_tasks(project, statuses, left, lambda: f"refs/heads/{ctx.config.base_branch}")
        selected = [i for i in left if i in merged_ids]
    report = CleanReport()
    if selected:  # before any worktree is touched: snapshotting one runs its filters
        git.check_programs(cwd=project.root, command="clean")
    listing = git_worktrees(project.root)
    from orch.integrate.journal import pending

    journal = pending(ctx)
    held = set(journal["queue"]) if journal else set()
    for task_id in selected:
        if not ID_RE.fullmatch(task_id):  # a folder someone made under .orch/run/tasks/, not a task's
            entry = CleanEntry(task_id, str(statuses[task_id].get("state", "PENDING")))
            folder = project.rel(project.task_dir(task_id))
            entry.skipped = (
                f"{folder if len(task_id) <= 60 else folder[: -len(task_id)] + task_id[:40] + '...'}: "
                f"the folder's name is not a task id ({len(task_id)} characters; {ID_RULE}); "
                "orch leaves it alone: remove it, or rename it to the task's id"
            )
            report.entries.append(entry)
            continue
        if task_id in waiting:
            entry = CleanEntry(task_id, str(statuses[task_id].get("state")), kept_branch=branch_name(task_id))
            entry.skipped = (
                f"kept: {entry.previous_state} and not merged yet, its branch {branch_name(task_id)} holds work "
                f"not in {ctx.config.base_branch} (merge it: orch merge {task_id}; or clean it anyway: orch clean "
                f"--all --force, which keeps its commits under {KEPT_PREFIX}/{task_id}/)"
            )
            report.entries.append(entry)
            continue
        if task_id in held:
            entry = CleanEntry(task_id, str(statuses[task_id].get("state", "PENDING")))
            entry.skipped = "an interrupted merge ceremony holds it (orch merge --resume or --abort first)"
            report.entries.append(entry)
            continue
        with store.lock(f"finish-{task_id}"):
            st = state.read(project, store, task_id) or {}
            report.entries.append(_clean_one(ctx, task_id, st, listing, force=force))
    return report


def _waiting_to_merge(ctx: Ctx, statuses: dict[str, state.Status], ids: list[str]) -> set[str]:
    """The tasks among ``ids`` that finished well (SUCCESS, or SKIPPED by a ceremony) and whose branch
    holds commits the base does not: work waiting to be merged, which ``clean --all`` keeps."""
    waiting = [i for i in ids if statuses[i].get("state") in state.AWAITING_MERGE]
    if not waiting:
        return set()
    root = ctx.project.root
    heads = refs.branch_heads(root)
    tips = {i: heads[branch_name(i)] for i in waiting if branch_name(i) in heads}
    inside = git.contained(tips.values(), f"refs/heads/{ctx.config.base_branch}", cwd=root)
    return {i for i, tip in tips.items() if tip not in inside}


def _clean_one(
    ctx: Ctx, task_id: str, st: state.Status, listing: dict[str, dict[str, str]], *, force: bool
) -> CleanEntry:
    project = ctx.project
    root = project.root
    previous = str(st.get("state", "PENDING"))
    entry = CleanEntry(task_id, previous)
    if previous == "RUNNING":
        entry.skipped = f"RUNNING (stop it first: orch stop {task_id})"
        return entry
    if previous not in CLEANABLE and previous != "CLEANED":
        entry.skipped = f"state {previous}"
        if previous == "HUMAN":
            entry.skipped += f" (a person works on it: orch release {task_id} first)"
        return entry
    branch = branch_name(task_id)  # never the status's word for it: a status is a file anyone can edit
    own = worktree_path(ctx, task_id)
    if previous != "CLEANED" and own.is_dir() and not own.is_symlink():
        # Its branch deleted after the run: put back before the worktree, and git's log of its HEAD, go.
        entry.restored = restore_deleted(project, task_id, own, last_seen=st.get("head_sha"))
        if entry.restored:
            ctx.log(previous, "RESTORE", entry.restored, task=task_id)
    wt_text = st.get("worktree") or _restored(ctx, task_id, listing)
    worktree_gone = True
    if wt_text:
        wt = Path(wt_text)
        worktree_gone = _remove_worktree(ctx, task_id, wt, listing, entry)
    if entry.skipped:
        return entry
    tip = git.rev_parse(f"refs/heads/{branch}", cwd=root)
    holder = checked_out_elsewhere(root, branch) if tip is not None and worktree_gone else None
    if holder is not None:
        entry.kept_branch = branch
        entry.branch_note = f"checked out in {holder}; orch never deletes a branch a worktree has checked out"
    elif tip is not None and worktree_gone:
        base_tip = git.rev_parse(f"refs/heads/{ctx.config.base_branch}", cwd=root)
        in_base = base_tip is not None and git.is_ancestor(tip, base_tip, cwd=root)
        if in_base or force:
            procs.fault_point("clean.before_branch_delete", task_id)
        if in_base:
            git.run(["update-ref", "--no-deref", "-d", f"refs/heads/{branch}", tip], cwd=root)
            git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
            entry.deleted_branch = branch
        elif force:
            kept = f"{KEPT_PREFIX}/{task_id}/{timestamp()}"
            git.run(
                ["update-ref", "--no-deref", "--stdin"],
                cwd=root,
                input=f"create {kept} {tip}\ndelete refs/heads/{branch} {tip}\n",
            )
            git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
            entry.deleted_branch = branch
            entry.kept_refs.append(kept)
            entry.restore.append(f"git branch {branch} {kept}")
        else:
            entry.kept_branch = branch
            before = st.get("previous_state") if previous == "CLEANED" else previous
            if before in state.AWAITING_MERGE and not state.merged(st):
                entry.branch_note = (
                    f"not merged yet: orch merge {task_id} merges it; orch clean --force {task_id} hides it under "
                    f"{KEPT_PREFIX}/"
                )
            n = git.out(["rev-list", "--count", f"{ctx.config.base_branch}..{tip}"], cwd=root)
            entry.restore.append(
                f"git worktree add {project.rel(worktree_path(ctx, task_id))} {branch}   # {n} commit(s) not in "
                f"{ctx.config.base_branch}"
            )
    elif tip is not None:
        entry.kept_branch = branch
    if previous == "CLEANED" and not (entry.deleted_branch or entry.removed_worktree or entry.snapshot_ref):
        entry.skipped = "already cleaned"
        return entry

    # Every ref holding this task's work, those of a clean killed before it recorded them included.
    kept_now = git.out(
        ["for-each-ref", "--format=%(refname)", f"{KEPT_PREFIX}/{task_id}/", f"{SNAPSHOT_PREFIX}/{task_id}/"], cwd=root
    ).split()

    def mark(s: state.Status) -> None:
        if s.get("state") != "CLEANED":
            s["previous_state"] = s.get("state")
            s["state"] = "CLEANED"
        s["cleaned_at"] = eventlog.utcnow()
        s["worktree"] = None
        s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *sorted({*kept_now, *entry.kept_refs})]))

    procs.fault_point("clean.before_status", task_id)
    state.update(project, ctx.store, task_id, mark)
    what = []
    if entry.removed_worktree:
        what.append("removed the link" if entry.link_only else "removed the worktree")
    if entry.deleted_branch:
        what.append(f"deleted {entry.deleted_branch}")
    if entry.kept_branch:
        what.append(f"kept {entry.kept_branch}")
    ctx.log("CLEANED", "CLEAN", "; ".join(what) or "nothing to remove", task=task_id, artifacts=entry.kept_refs)
    return entry


def _restored(ctx: Ctx, task_id: str, listing: dict[str, dict[str, str]]) -> str | None:
    """A worktree a person put back at the task's place after a clean (the restore lines of
    ``clean_text``): on the task's branch or detached. Cleaning again removes it the same way."""
    path = str(worktree_path(ctx, task_id))
    info = listing.get(path)
    if info is None or info.get("branch", f"refs/heads/{branch_name(task_id)}") != f"refs/heads/{branch_name(task_id)}":
        return None
    return path


def _remove_worktree(ctx: Ctx, task_id: str, wt: Path, listing: dict[str, dict[str, str]], entry: CleanEntry) -> bool:
    """Snapshot and remove one task's worktree; False if it had to stay."""
    project = ctx.project
    root = project.root
    known = listing.get(str(wt))
    if wt.is_symlink():
        target = wt.resolve()
        # Only this task's own worktree, moved and linked back, is read through the link; any other
        # folder is not orch's to look into. The folder stays either way: only the link goes.
        ours = target.is_dir() and task_of_worktree(target) == task_id and same_repo(target, project.common_dir)
        if ours:
            _snapshot_into(ctx, task_id, wt, entry)
            _keep_head(ctx, task_id, wt, entry)
        wt.unlink()
        if ours:  # git still records the link's path: point it at the folder (prune would drop it)
            git.run(["worktree", "repair", "--", str(target)], cwd=root, check=False)
        entry.removed_worktree = project.rel(wt)
        entry.link_only = True
        entry.kept_folder = str(target)
        return True
    if not wt.exists():
        if known is not None:
            git.run(["worktree", "prune"], cwd=root)
        return True
    resolved = wt.resolve()
    if resolved == root.resolve() or root.resolve().is_relative_to(resolved):
        entry.skipped = f"{wt} is the main checkout or holds it; orch never removes that"
        return False
    if known is None:
        entry.skipped = f"{project.rel(wt)} is not a git worktree git knows; left as it is (see: orch doctor)"
        return False
    if "locked" in known:
        entry.skipped = f"worktree {project.rel(wt)} is locked (git worktree unlock {project.rel(wt)} to allow it)"
        return False
    with ctx.store.lock("git-worktree-add"):  # spin adds and marks worktrees under this lock
        half = halfspun.pending(wt, ctx.project.common_dir)
    if half is not None and not half.idle:
        entry.skipped = f"orch spin is still checking out {project.rel(wt)}; clean it when that is done"
        return False
    if half is not None:  # a killed spin's: the files it lacks were never checked out, not deleted
        # the snapshot then holds only what differs from the branch with every file there
        halfspun.restore(wt, ctx.project.common_dir)
    _bring_in_box(ctx, task_id, wt, entry)
    _put_gitfile_back(ctx, task_id, wt, entry)
    _snapshot_into(ctx, task_id, wt, entry)
    _keep_head(ctx, task_id, wt, entry)
    procs.fault_point("clean.after_snapshot", task_id)
    git.run(["worktree", "remove", "--force", str(wt)], cwd=root)
    entry.removed_worktree = project.rel(wt)
    return True


def _bring_in_box(ctx: Ctx, task_id: str, wt: Path, entry: CleanEntry) -> None:
    """Commits a boxed run left in its own git folder (a run whose supervisor died before it brought
    them in): into the repository first, so the branch and the snapshot hold them."""
    from orch.agents import boxgit

    brought = boxgit.bring_in(ctx.project, task_id, wt)
    entry.kept_refs += brought.kept


def _put_gitfile_back(ctx: Ctx, task_id: str, wt: Path, entry: CleanEntry) -> None:
    """The snapshot and the HEAD check below go through the worktree's ``.git`` file: if someone
    pointed it elsewhere (a repository of an agent's, whose config names another work tree), it is
    put back first, so that git works on this worktree and this repository only."""
    from orch.agents import taskgit

    tg = taskgit.open_worktree(ctx.project, task_id, wt)
    if tg is not None and tg.admin is not None and tg.problem:
        note = taskgit.repair_gitfile(tg)
        if note:
            entry.restore.append(f"# {note} (it said: {tg.problem})")


def _keep_head(ctx: Ctx, task_id: str, wt: Path, entry: CleanEntry) -> None:
    """Commits on the worktree's HEAD that its branch does not hold (a detached HEAD) get a ref."""
    root = ctx.project.root
    head = git.rev_parse("HEAD", cwd=wt)
    if head is None:
        return
    tip = git.rev_parse(f"refs/heads/{branch_name(task_id)}", cwd=root)
    if tip is not None and git.is_ancestor(head, tip, cwd=root):
        return
    kept = f"{KEPT_PREFIX}/{task_id}/{timestamp()}"
    git.run(["update-ref", kept, head, "0" * len(head)], cwd=root)
    entry.kept_refs.append(kept)
    entry.restore.append(f"git branch {branch_name(task_id)}-head {kept}   # commits its HEAD had off its branch")


def _snapshot_into(ctx: Ctx, task_id: str, wt: Path, entry: CleanEntry) -> None:
    ref = snapshot_ref(wt, task_id, why="before orch clean")
    if ref is not None:
        entry.snapshot_ref = ref
        entry.kept_refs.append(ref)
        entry.restore.append(f"git worktree add --detach {ctx.project.rel(worktree_path(ctx, task_id))} {ref}")


def snapshot_ref(worktree: Path, task_id: str, *, why: str) -> str | None:
    """Commit the uncommitted state of ``worktree`` to ``refs/orch/snapshots/<id>/<ts>``; the ref.

    A temporary copy of the index is used, so the worktree, its index and its branch stay exactly as
    they were. Untracked files are included; ignored ones are not.
    """
    if not git.worktree_is_dirty(cwd=worktree):
        return None
    index = Path(git.out(["rev-parse", "--path-format=absolute", "--git-path", "index"], cwd=worktree))
    tree = git.worktree_tree(worktree, index=index if index.exists() else None, tmpdir=index.parent)
    head = git.rev_parse("HEAD", cwd=worktree)
    parents = ["-p", head] if head else []
    message = f"orch: snapshot of uncommitted work in task {task_id} ({why})"
    commit = git.out(["commit-tree", tree, *parents, "-m", message], cwd=worktree, env=git.ORCH_IDENT)
    ref = f"{SNAPSHOT_PREFIX}/{task_id}/{timestamp()}"
    git.run(["update-ref", ref, commit, "0" * len(commit)], cwd=worktree)
    return ref


def clean_text(report: CleanReport) -> str:
    """What was removed, what was kept and how to get it back."""
    lines: list[str] = []
    for e in report.entries:
        if e.skipped:
            lines.append(f"{e.id}: skipped: {e.skipped}")
            continue
        lines.append(f"{e.id}: cleaned (was {e.previous_state})")
        if e.restored:
            lines.append(f"  {e.restored}")
        if e.removed_worktree:
            if e.link_only:
                lines.append(f"  removed the link {e.removed_worktree}; kept the folder it pointed to: {e.kept_folder}")
            else:
                lines.append(f"  removed worktree {e.removed_worktree}")
        if e.snapshot_ref:
            lines.append(f"  kept uncommitted work as {e.snapshot_ref}")
        if e.deleted_branch:
            lines.append(f"  deleted branch {e.deleted_branch}")
        for ref in e.kept_refs:
            if ref != e.snapshot_ref:
                lines.append(f"  kept its commits as {ref}")
        if e.kept_branch and e.branch_note:
            lines.append(f"  kept branch {e.kept_branch} ({e.branch_note})")
        elif e.kept_branch:
            lines.append(
                f"  kept branch {e.kept_branch} (not merged; orch clean --force {e.id} hides it under refs/orch/kept/)"
            )
        for command in e.restore:
            lines.append(f"  restore: {command}")
    return "\n".join(lines)
