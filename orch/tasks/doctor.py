"""``orch doctor``: find (and with ``--fix`` repair or adopt) what is out of step.

* worktrees git knows on an ``orch/<id>`` branch that orch has no status for, and the reverse;
* a spin killed half-way: a branch without a worktree, a worktree without a status, a worktree
  whose checkout never finished (``orch.tasks.halfspun``: finished, and the spin undone, never
  snapshotted as if an agent had deleted the files it lacks);
* prunable worktrees (their folder is gone);
* stale ``index.lock`` files whose owner is gone, and temp files of orch's own writes (under
  ``.orch/``) whose writer was killed before it renamed them;
* CRASHED tasks with uncommitted work in their worktree;
* the merge ceremony's integration worktree half made by a killed ``git worktree add``;
* work on the base branch that no merge ceremony landed (``orch.integrate.basecheck``).
* programs git config names (filters, merge and diff drivers) that no person accepted
  (``--accept-git-config`` accepts them: ``orch.core.gitsafety``).

Repairs never delete work: a half-spun branch is deleted only while it still points at the base
commit it was made from; anything with commits is adopted (worktree and status recreated) instead.
"""

from __future__ import annotations

import time
from pathlib import Path

from orch.core import eventlog, git, gitsafety, procs, state
from orch.core.atomic import leftover_temp_files
from orch.core.context import Ctx
from orch.core.plan import ID_RE, RESERVED_IDS
from orch.tasks.doctor_tasks import (
    cleaned_before_merge,
    forget,
    half_spun,
    merged_after_clean,
    task_of_branch,
    under_worktree_root,
)
from orch.tasks.finding import Finding

STALE_LOCK_AGE = 5.0  # seconds: younger index.lock files may belong to a git that is just starting


def run(ctx: Ctx, *, fix: bool = False) -> list[Finding]:
    project = ctx.project
    root = project.root
    from orch.agents import learnings, taskgit
    from orch.core.refs import BASE_PREFIX, branch_name, git_worktrees

    findings: list[Finding] = [
        Finding(
            "git-config",
            u.key,
            f"git config names a program orch has not accepted: {u.shown(key=False)}",
            f"if you, a person, set it up: {gitsafety.ACCEPT}; if not (an agent may have planted it): {u.removal()}",
            fixable=False,
        )
        for u in git.unaccepted_programs(cwd=root)
    ]
    listing = git_worktrees(root)
    statuses = state.read_all(project, ctx.store)  # also turns dead RUNNING tasks CRASHED

    prunable = [p for p, info in listing.items() if "prunable" in info]
    for gone in prunable:
        f = Finding(
            "prunable",
            gone,
            "git still lists this worktree but its folder is gone",
            "git worktree prune (committed work stays on its branch)",
            task=task_of_branch(listing[gone]),
            path=gone,
        )
        findings.append(f)
    if fix and prunable:
        git.run(["worktree", "prune"], cwd=root)
        for f in findings:
            f.fixed = True
        listing = git_worktrees(root)

    by_task: dict[str, str] = {}
    half = half_spun(ctx, listing, statuses, findings, fix=fix)  # before anything reads those trees as work
    if fix and half:
        listing = git_worktrees(root)
        statuses = state.read_all(project, ctx.store)
    for listed, info in listing.items():
        branch = info.get("branch", "").removeprefix("refs/heads/")
        if not branch.startswith("orch/"):
            continue
        task_id = branch.removeprefix("orch/")
        if task_id in RESERVED_IDS:
            continue  # the merge ceremony's parked branch, not a task
        by_task[task_id] = listed
        if listed in half and not half[listed]:
            continue  # reported above, not repaired
        if not under_worktree_root(ctx, Path(listed)):
            # The main checkout (or a worktree a person made elsewhere) on a task's branch: orch
            # never adopts it, and never commits there.
            findings.append(
                Finding(
                    "branch-checked-out",
                    listed,
                    f"{branch} is checked out here, outside orch's worktree folder "
                    f"({project.rel(ctx.config.worktree_root)})",
                    f"nothing for orch to do: switch that checkout to another branch when you are done with {branch}",
                    fixable=False,
                    info=True,
                    task=task_id,
                    path=listed,
                )
            )
            continue
        st = statuses.get(task_id)
        if st is not None and st.get("worktree") and Path(st["worktree"]).resolve() == Path(listed).resolve():
            continue
        if st is not None and (st.get("state") in ("RUNNING", "CLEANED") or merged_after_clean(st)):
            continue  # a cleaned task's branch checked out again by hand is a person's, not orch's
        f = Finding(
            "unknown-worktree",
            listed,
            f"git has a worktree on {branch} but orch has no status for task {task_id} there "
            "(a spin killed half-way, or made by hand)",
            f"adopt it: write a status for {task_id} (state CRASHED) so orch status, clean and merge see it",
            fixable=bool(ID_RE.fullmatch(task_id)),
            task=task_id,
            path=listed,
        )
        if fix and f.fixable:
            _adopt(ctx, task_id, Path(listed), branch)
            f.fixed = True
        findings.append(f)

    heads = git.out(["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/orch/"], cwd=root).splitlines()
    for line in heads:
        ref, _, tip = line.partition(" ")
        task_id = ref.removeprefix("refs/heads/orch/")
        if task_id in by_task or not ID_RE.fullmatch(task_id) or task_id in RESERVED_IDS:
            continue
        st = statuses.get(task_id)
        if st is not None and (st.get("state") == "CLEANED" or merged_after_clean(st)):
            continue  # a branch clean kept on purpose (orch clean deletes it once it is merged)
        if st is not None and st.get("worktree"):
            continue  # reported below as a missing worktree
        base = git.rev_parse(f"{BASE_PREFIX}/{task_id}", cwd=root)
        empty = base == tip
        f = Finding(
            "branch-without-worktree",
            f"orch/{task_id}",
            "a branch orch made, with no worktree and no status (a spin killed half-way)",
            "delete it: it has no commits of its own"
            if empty
            else f"adopt it: recreate its worktree at {project.rel(ctx.config.worktree_root / task_id)} and a status",
            task=task_id,
        )
        if fix:
            if empty:
                git.run(["update-ref", "--no-deref", "-d", ref, tip], cwd=root)
                git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
            else:
                new = ctx.config.worktree_root / task_id
                new.parent.mkdir(parents=True, exist_ok=True)
                git.run(["worktree", "add", "--quiet", str(new), branch_name(task_id)], cwd=root)
                _adopt(ctx, task_id, new, branch_name(task_id))
            f.fixed = True
        findings.append(f)

    for task_id, st in statuses.items():
        wt = st.get("worktree")
        if not wt or st.get("state") in ("CLEANED", "RUNNING"):
            continue
        if Path(wt).is_symlink() or wt in listing or task_id in by_task:
            continue
        branch = branch_name(task_id)
        has_branch = git.rev_parse(f"refs/heads/{branch}", cwd=root) is not None
        f = Finding(
            "missing-worktree",
            task_id,
            f"status names worktree {wt} but git has no such worktree",
            f"recreate it from {branch}" if has_branch else "forget it (the branch is gone too): mark the task CLEANED",
            task=task_id,
            path=wt,
        )
        target = Path(wt)
        if has_branch and not (target.is_absolute() and under_worktree_root(ctx, target)):
            # The status names a folder elsewhere (a status anyone can write, or an old worktree_root):
            # orch makes worktrees in its worktree folder only.
            f.fixable = False
            f.fix = (
                f"nothing orch does by itself: {wt} is outside its worktree folder "
                f"({project.rel(ctx.config.worktree_root)}); if it belongs there, git worktree add {wt} {branch}"
            )
        elif fix:
            if has_branch and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                git.run(["worktree", "add", "--quiet", str(target), branch], cwd=root)
                f.fixed = True
            elif not has_branch:
                state.update(project, ctx.store, task_id, forget)
                f.fixed = True
            else:
                f.fixable = False
                f.fix = f"{wt} exists but is not a worktree of this repository: move it away by hand"
        findings.append(f)

    for folder in [str(root), *listing]:
        lock = _index_lock(Path(folder), project.common_dir, root)
        if lock is None or not _stale(lock, Path(folder)):
            continue
        f = Finding(
            "stale-index-lock",
            project.rel(lock) if lock.is_relative_to(root) else str(lock),
            f"no git process is working in {folder}; the lock was left by a git that was killed",
            "remove the stale index.lock",
            task=task_of_branch(listing.get(folder, {})),
            path=str(lock),
        )
        if fix:
            lock.unlink(missing_ok=True)
            f.fixed = True
        findings.append(f)
    findings += _leftover_temp_files(ctx, statuses, fix=fix)

    unfinished = {p for p, done in half.items() if not done}
    for task_id, st in statuses.items():
        if st.get("state") != "CRASHED" or st.get("worktree") in unfinished:
            continue
        wt = Path(st.get("worktree") or "")
        if st.get("worktree") and not _is_task_worktree(ctx, task_id, wt, listing):
            findings.append(
                Finding(
                    "crashed",
                    task_id,
                    f"its status names {wt}, which is not this task's worktree under "
                    f"{project.rel(ctx.config.worktree_root)}; orch leaves that folder alone",
                    f"look at it by hand; orch clean {task_id} forgets the task (the branch is kept)",
                    fixable=False,
                    task=task_id,
                    path=str(wt),
                )
            )
            continue
        try:
            dirty = bool(st.get("worktree")) and taskgit.is_dirty(project, task_id, wt)
        except gitsafety.UnknownProgram as exc:  # git status there could start it (config seen from there)
            findings.append(
                Finding(
                    "crashed",
                    task_id,
                    f"{st.get('reason') or 'its process is gone'}; orch did not look for uncommitted work: "
                    + exc.message,
                    f"{exc.hint}; then run orch doctor again",
                    fixable=False,
                    task=task_id,
                    path=str(wt),
                )
            )
            continue
        f = Finding(
            "crashed",
            task_id,
            (st.get("reason") or "its process is gone")
            + (" and its worktree has uncommitted work" if dirty else "; its work is on its branch"),
            "commit the uncommitted work on its branch as a snapshot (author orch)"
            if dirty
            else f"nothing to repair: orch clean {task_id}, or look at its work first",
            fixable=dirty,
            info=not dirty,
            task=task_id,
            path=str(wt) if st.get("worktree") else None,
        )
        if fix and dirty:
            learnings.propose(project, ctx.store, task_id, learnings.take(wt), "CRASHED")  # never snapshotted
            # Through orch's own knowledge of the worktree's git, never its .git file (taskgit).
            settled = taskgit.settle(
                project, task_id, wt, "found uncommitted by orch doctor after a crash", base_hint=st.get("base_sha")
            )
            _record_snapshot(ctx, task_id, settled.snapshot, settled.kept)
            for action, result in settled.events:
                ctx.log("CRASHED", action, result, task=task_id)
            ctx.log("CRASHED", "SNAPSHOT", (settled.snapshot or settled.snapshot_ref or "")[:12], task=task_id)
            f.fixed = settled.error is None
        findings.append(f)
    findings += cleaned_before_merge(ctx, statuses)
    from orch.tasks import doctor_merge

    findings += doctor_merge.integration_worktree(ctx, fix=fix)
    findings += doctor_merge.base_outside_ceremony(ctx)
    if fix and any(f.fixed for f in findings):
        ctx.log("-", "DOCTOR", f"fixed {sum(f.fixed for f in findings)} of {len(findings)}")
    return findings


def accept_git_config(ctx: Ctx) -> tuple[dict[str, str], dict[str, str]]:
    """``orch doctor --accept-git-config``: the programs git config names now become the baseline
    (as ``orch init`` records it); (accepted now, accepted before)."""
    now, before = git.accept_programs(cwd=ctx.project.root)
    added = [f"{k}={v!r}" for k, v in now.items() if before.get(k) != v]
    ctx.log("-", "ACCEPT_GIT_CONFIG", "; ".join(added) or "nothing new")
    return now, before


def _is_task_worktree(ctx: Ctx, task_id: str, wt: Path, listing: dict[str, dict[str, str]]) -> bool:
    """A worktree git knows, under the worktree root, on this task's branch or detached."""
    if not wt.is_dir() or wt.is_symlink() or not under_worktree_root(ctx, wt):
        return False
    info = next((i for p, i in listing.items() if Path(p).resolve() == wt.resolve()), None)
    if info is None:
        return False
    return info.get("branch", f"refs/heads/orch/{task_id}") == f"refs/heads/orch/{task_id}"


def _record_snapshot(ctx: Ctx, task_id: str, sha: str | None, kept: list[str]) -> None:
    def record(s: state.Status) -> None:
        if sha is not None:
            s.update(snapshot_sha=sha, head_sha=sha)
        if kept:
            s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *kept]))

    if sha is not None or kept:
        state.update(ctx.project, ctx.store, task_id, record)


def _adopt(ctx: Ctx, task_id: str, path: Path, branch: str) -> None:
    from orch.core.refs import BASE_PREFIX

    root = ctx.project.root
    base = git.rev_parse(f"{BASE_PREFIX}/{task_id}", cwd=root)
    if base is None:
        base_tip = git.rev_parse(f"refs/heads/{ctx.config.base_branch}", cwd=root)
        base = git.out(["merge-base", base_tip or "HEAD", branch], cwd=root, check=False) or None
    head = git.rev_parse(f"refs/heads/{branch}", cwd=root)

    def adopt(st: state.Status) -> None:
        if st.get("state") in ("CLEANED", "RUNNING", "MERGED", "HUMAN"):
            return  # never overwrite what a finished (or live) task's status records
        st.update(
            state="CRASHED",
            reason="adopted by orch doctor: orch had lost track of this worktree",
            branch=branch,
            worktree=str(path),
            base_sha=base,
            head_sha=head,
            finished_at=eventlog.utcnow(),
        )

    state.update(ctx.project, ctx.store, task_id, adopt)
    ctx.log("CRASHED", "ADOPT", f"worktree={ctx.project.rel(path)}", task=task_id)


def _leftover_temp_files(ctx: Ctx, statuses: dict[str, state.Status], *, fix: bool) -> list[Finding]:
    """Temp files of orch's atomic writes under .orch/ left by a process killed before its rename.
    A running task's folder is left alone: its boxed agent writes its outbox with pids orch cannot see."""
    project = ctx.project
    tasks = project.orch_dir / "run" / "tasks"
    findings = []
    for path, target in leftover_temp_files(project.orch_dir, skip=ctx.config.worktree_root):
        task_id = path.relative_to(tasks).parts[0] if path.is_relative_to(tasks) else None
        if task_id is not None and (statuses.get(task_id) or {}).get("state") == "RUNNING":
            continue
        f = Finding(
            "stale-temp-file",
            project.rel(path),
            f"left by an orch process killed while it wrote {target}, which is as it was before that write",
            "remove the temp file",
            task=task_id,
            path=str(path),
        )
        if fix:
            path.unlink(missing_ok=True)
            f.fixed = True
        findings.append(f)
    return findings


def _index_lock(worktree: Path, common_dir: Path, root: Path) -> Path | None:
    if worktree.resolve() == root.resolve():
        lock = common_dir / "index.lock"
    else:
        try:
            text = (worktree / ".git").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        gitdir = Path(text.removeprefix("gitdir: "))
        lock = (gitdir if gitdir.is_absolute() else worktree / gitdir) / "index.lock"
    return lock if lock.exists() else None


def _stale(lock: Path, worktree: Path) -> bool:
    """Old enough, and no git process runs in that worktree."""
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < STALE_LOCK_AGE:
        return False
    working = procs.git_working_in(worktree)
    if working is None:
        return age > 600  # no way to see other processes' folders: only very old locks count
    return not working


def ok(findings: list[Finding]) -> bool:
    """Nothing left to repair: what ``orch doctor`` exits 0 for."""
    return all(f.fixed or f.info for f in findings)


def to_json(findings: list[Finding]) -> dict[str, object]:
    """``orch doctor --json`` (schemas/doctor.schema.json)."""
    return {"findings": [f.to_json() for f in findings], "ok": ok(findings)}


def text(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        mark = "fixed" if f.fixed else ("info" if f.info else ("found" if f.fixable else "manual"))
        lines.append(f"[{mark}] {f.kind}: {f.subject}: {f.detail}")
        lines.append(f"    {'did' if f.fixed else 'fix'}: {f.fix}")
    todo = [f for f in findings if not f.fixed and f.fixable and not f.info]
    if todo:
        lines.append(f"\n{len(todo)} problem(s) orch doctor --fix can repair")
    return "\n".join(lines)
