"""``orch spin`` and ``orch clean``: a worktree and a branch per task, and their removal without loss.

spin: branch ``orch/<id>`` and the rollback ref ``refs/orch/base/<id>`` are created in one
``git update-ref --stdin`` transaction from the base branch's current commit (the ``create`` is the
claim: two spins of one task cannot both win), then ``git worktree add`` checks the branch out at
``<worktree_root>/<id>``; the frozen ``manifest.yaml``, ``context.md`` and ``status.yaml`` follow,
then the agent starts (``orch.agents.runner``). A spin killed half-way leaves a branch without a worktree
or a worktree without a status: ``orch doctor`` finds both.

clean: uncommitted work goes to a snapshot commit under ``refs/orch/snapshots/<id>/<timestamp>``
(made with a temporary index: the branch and the worktree are not touched), the worktree is removed
(or only the link, if the folder was replaced by a symlink), and a branch whose commits are not in
the base is kept (as ``orch/<id>``, or with ``--force`` as ``refs/orch/kept/<id>/<timestamp>``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import string
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.agents import manifest as agents
from orch.core import eventlog, git, state
from orch.core.context import Ctx
from orch.core.errors import GitError, InputError, OrchError
from orch.core.plan import Task
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
    worktree_gitdir,
)

Progress = Callable[[str, str], None]  # (task id, what happened)

CLEANABLE = frozenset(state.FINISHED | state.VIOLATIONS | {"MERGED", "REVERTED", "CONFLICT", "SKIPPED", "PENDING"})


def worktree_path(ctx: Ctx, task_id: str) -> Path:
    return ctx.config.worktree_root / task_id


# -- spin -------------------------------------------------------------------------------------------


@dataclass
class SpinResult:
    id: str
    ok: bool = False
    branch: str | None = None
    worktree: str | None = None
    base_sha: str | None = None
    agent: str | None = None
    started: bool = False
    tmux_session: str | None = None
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Prepared:
    task: Task
    agent: agents.Agent
    result: SpinResult
    path: Path


def ready_ids(ctx: Ctx) -> list[str]:
    """Tasks never spun whose deps are all merged, in dependency order."""
    from orch.core.plan import topo_order

    statuses = state.read_all(ctx.project, ctx.store)
    return topo_order(ctx.plan, [t.id for t in ctx.plan.tasks if state.ready(t, statuses)])


def spin(
    ctx: Ctx,
    ids: list[str],
    *,
    agent: str | None = None,
    start: bool = True,
    tmux: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> list[SpinResult]:
    """Give each task a branch, a worktree, a manifest and a context; start its agent unless not ``start``.

    Hostile ids and an unknown agent name refuse the whole call before anything is created. Other
    problems (deps not merged, already spun, a broken manifest) fail only the task they concern.
    """
    project, store = ctx.project, ctx.store
    root = project.root
    seen: list[str] = []
    for task_id in ids:
        check_id(task_id, cwd=root)
        if task_id not in seen:
            seen.append(task_id)
    if agent is not None:
        agents.check_name(agent)
    note = progress or (lambda _id, _msg: None)
    plan = ctx.plan
    config = ctx.config
    statuses = {i: state.read(project, store, i) for i in seen}
    base_sha = git.rev_parse(f"refs/heads/{config.base_branch}", cwd=root)
    if base_sha is None:
        raise InputError(
            f"the base branch '{config.base_branch}' does not exist",
            where=".orch/config.yaml",
            hint="set base_branch to an existing branch",
        )
    _check_worktree_root(ctx, seen)
    existing = set(
        git.out(["for-each-ref", "--format=%(refname)", "refs/heads/orch/"], cwd=root, optional_locks=False).split()
    )
    results: list[SpinResult] = []
    prepared: list[_Prepared] = []
    slots = config.max_parallel
    if start:
        slots -= sum(1 for s in state.read_all(project, store).values() if s.get("state") == "RUNNING")
    for task_id in seen:
        result = SpinResult(task_id, branch=branch_name(task_id), base_sha=base_sha)
        results.append(result)
        try:
            task = plan.require(task_id)
            st = statuses[task_id]
            if st is not None and st.get("state") not in ("PENDING", "CLEANED"):
                raise InputError(
                    f"task {task_id} is already spun ({st.get('state')})",
                    hint=f"see: orch status {task_id}; to start over: orch clean {task_id}, then spin it again",
                )
            if st is not None and st.get("state") == "PENDING" and st.get("branch"):
                raise InputError(
                    f"task {task_id} is already spun (not started)", hint=f"start it: orch start {task_id}"
                )
            missing = [d for d in task.deps if not state.merged(statuses.get(d) or state.read(project, store, d))]
            if missing and not force:
                raise InputError(
                    f"task {task_id} depends on {', '.join(missing)}, not merged yet",
                    hint="merge those first, or pass --force to spin it from the current base anyway",
                )
            name = agent or task.agent or config.default_agent
            manifest = agents.load(project, store, name)
            result.agent = name
            if "{run}" in " ".join(manifest.command) and not task.run:
                raise InputError(
                    f".orch/plan.md:{task.line}: task {task_id} has no 'run:' field, which agent '{name}' runs",
                    hint="add '- run: COMMAND' under the task heading, or pick another agent with --agent",
                )
            path = worktree_path(ctx, task_id)
            result.worktree = str(path)
            if f"refs/heads/{branch_name(task_id)}" in existing:
                raise InputError(
                    f"branch {branch_name(task_id)} exists already",
                    hint="a spin killed half-way or a branch kept by orch clean: run orch doctor, "
                    f"or delete it (git branch -D {branch_name(task_id)}) if you do not need it",
                )
            if path.exists() or path.is_symlink():
                raise InputError(f"{project.rel(path)} exists already", hint="run orch doctor to see what it is")
            if start and slots <= 0:
                raise InputError(
                    f"task {task_id} not spun: {config.max_parallel} agents run already (max_parallel)",
                    where=".orch/config.yaml",
                    hint="wait for one to finish (orch wait), or raise max_parallel",
                )
            slots -= 1
            prepared.append(_Prepared(task, manifest, result, path))
        except OrchError as exc:
            result.error = exc.render()
            result.exit_code = int(exc.exit_code)
            note(task_id, f"refused: {exc.message.splitlines()[0]}")
    if not prepared:
        return results

    prepared = _claim(ctx, prepared, base_sha, note)
    if not prepared:
        return results
    for p in prepared:
        ctx.log("PENDING", "SPIN", f"branch={branch_name(p.task.id)} base={base_sha[:12]}", task=p.task.id)

    def add_worktree(p: _Prepared) -> None:
        try:
            p.path.parent.mkdir(parents=True, exist_ok=True)
            # git races when worktrees are added at once ("failed to read .../commondir"): register
            # them one at a time (fast, no files yet), then check the files out in parallel.
            with ctx.store.lock("git-worktree-add"):
                git.run(["worktree", "add", "--quiet", "--no-checkout", str(p.path), branch_name(p.task.id)], cwd=root)
            git.run(["checkout", "--force", "--quiet"], cwd=p.path)
            _write_task_files(ctx, p, base_sha)
            p.result.ok = True
            note(p.task.id, f"worktree {project.rel(p.path)}")
        except OrchError as exc:
            p.result.error = exc.render()
            p.result.exit_code = int(exc.exit_code)
            note(p.task.id, f"failed: {exc.message.splitlines()[0]}")

    workers = max(1, min(len(prepared), os.cpu_count() or 1, 4))
    if workers == 1:
        for p in prepared:
            add_worktree(p)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(add_worktree, prepared))

    if start:
        from orch.agents import runner

        for p in prepared:
            if not p.result.ok:
                continue
            try:
                st = runner.start(ctx, p.task.id, tmux=tmux)
                p.result.started = True
                p.result.tmux_session = st.get("tmux_session")
                note(p.task.id, "started" + (f" in tmux session {p.result.tmux_session}" if tmux else ""))
            except OrchError as exc:
                p.result.ok = False
                p.result.error = exc.render()
                p.result.exit_code = int(exc.exit_code)
                note(p.task.id, f"not started: {exc.message.splitlines()[0]}")
    return results


def _check_worktree_root(ctx: Ctx, ids: list[str]) -> None:
    """Worktrees inside the user's checkout must be ignored by git, or they show up as untracked."""
    root = ctx.project.root.resolve()
    wt_root = ctx.config.worktree_root.resolve()
    if not wt_root.is_relative_to(root):
        return
    rels = [f"{(wt_root / task_id).relative_to(root)}/" for task_id in ids]  # a folder: "/"-only rules match
    r = git.run(["check-ignore", "--no-index", "--stdin", "-z"], cwd=root, input="\0".join(rels) + "\0", check=False)
    ignored = {p for p in r.stdout.split("\0") if p}
    if any(rel not in ignored for rel in rels):
        raise InputError(
            f"the worktree root {ctx.project.rel(ctx.config.worktree_root) or '.'} is inside your checkout and "
            "git does not ignore it: task worktrees would show up there as untracked folders",
            where=".orch/config.yaml",
            hint="use the default worktree_root (.orch/worktrees, ignored by .orch/.gitignore), a folder "
            "outside the repository, or add the folder to .gitignore",
        )


CLAIM_ATTEMPTS = 5


def _claim(ctx: Ctx, prepared: list[_Prepared], base_sha: str, note: Progress) -> list[_Prepared]:
    """Create every task's branch and base ref in one transaction; the tasks that won their claim.

    A concurrent spin may create one of the branches first: that task is reported as already spun
    (exit 3) and the transaction is tried again without it, so the others are still spun.
    """
    root = ctx.project.root
    last: OrchError | None = None
    for attempt in range(CLAIM_ATTEMPTS):
        if not prepared:
            return prepared
        stdin = "".join(
            f"create refs/heads/{branch_name(p.task.id)} {base_sha}\nupdate {BASE_PREFIX}/{p.task.id} {base_sha}\n"
            for p in prepared
        )
        r = git.run(["update-ref", "--stdin"], cwd=root, input=stdin, check=False)
        if r.ok:
            return prepared
        last = GitError(r.argv, r.returncode, r.stdout, r.stderr)
        existing = set(
            git.out(["for-each-ref", "--format=%(refname)", "refs/heads/orch/"], cwd=root, optional_locks=False).split()
        )
        lost = [p for p in prepared if f"refs/heads/{branch_name(p.task.id)}" in existing]
        for p in lost:
            exc = InputError(
                f"task {p.task.id} already spun: a concurrent orch spin created {branch_name(p.task.id)} first",
                hint=f"see: orch status {p.task.id}",
            )
            p.result.error = exc.render()
            p.result.exit_code = int(exc.exit_code)
            note(p.task.id, f"refused: {exc.message}")
        prepared = [p for p in prepared if p not in lost]
        if not lost:  # a ref lock held for a moment by another git: try again shortly
            time.sleep(0.05 * (attempt + 1))
    assert last is not None
    raise last


def _limits(ctx: Ctx, task: Task, agent: agents.Agent) -> dict[str, Any]:
    defaults = ctx.config.defaults
    budget = task.budget
    default_budget = None
    if defaults.get("budget"):
        from orch.core.plan import parse_budget

        with contextlib.suppress(ValueError):
            default_budget = parse_budget(str(defaults["budget"]))
    tokens = (budget.tokens if budget else None) or agent.budget_tokens
    usd = (budget.usd if budget else None) or agent.budget_usd
    return {
        "max_iterations": task.max_iterations or agent.max_iterations or defaults.get("max_iterations"),
        "max_tokens": tokens or (default_budget.tokens if default_budget else None),
        "budget_usd": usd or (default_budget.usd if default_budget else None),
        "timeout": agent.timeout or defaults.get("timeout"),
    }


def _write_task_files(ctx: Ctx, p: _Prepared, base_sha: str) -> None:
    project, store = ctx.project, ctx.store
    task, folder = p.task, project.task_dir(p.task.id)
    folder.mkdir(parents=True, exist_ok=True)
    from orch.agents.runner import rotate_run_files

    rotate_run_files(folder)  # an earlier run's log, usage and blocker report must not count for this one
    now = eventlog.utcnow()
    manifest = {
        "id": task.id,
        "title": task.title,
        "scope": task.scope,
        "deps": task.deps,
        "agent": p.agent.name,
        "model": task.model or p.agent.model or ctx.config.defaults.get("model"),
        "accept": task.accept,
        "run": task.run,
        "level": task.level,
        "limits": _limits(ctx, task, p.agent),
        "base_branch": ctx.config.base_branch,
        "base_sha": base_sha,
        "branch": branch_name(task.id),
        "worktree": str(p.path),
        "spun_at": now,
        "brief": task.brief_text(),
    }
    # Built here from a validated plan and manifest; not checked again on write (jsonschema costs
    # more than the rest of a spin), and remembered as valid (Store.dump).
    store.save(folder / "manifest.yaml", manifest, "task_manifest", check=False)
    store.write_text(folder / "context.md", render_context(ctx, manifest))
    prepare_worktree(ctx, task, p.path)

    def fresh(old: state.Status) -> state.Status:
        kept = list(old.get("kept_refs") or [])
        new: state.Status = {
            "id": task.id,
            "state": "PENDING",
            "agent": p.agent.name,
            "branch": branch_name(task.id),
            "worktree": str(p.path),
            "base_sha": base_sha,
            "head_sha": base_sha,
            "created_at": now,
            "iterations": 0,
        }
        if kept:
            new["kept_refs"] = kept
        return new

    state.update(project, store, task.id, fresh, check=False)


def prepare_worktree(ctx: Ctx, task: Task, worktree: Path) -> None:
    """Write what the agent needs into (or beside) a fresh worktree, before the agent starts.

    Nothing is written into the checked-out tree itself: whatever is there when the agent exits is
    committed as its work. The task id goes into the worktree's private git folder, where
    ``orch report`` finds it even on a detached HEAD.
    """
    gitdir = worktree_gitdir(worktree)
    if gitdir is not None:
        with contextlib.suppress(OSError):
            (gitdir / "orch-task").write_text(task.id + "\n", encoding="utf-8")
    # Early warnings for Claude Code and Codex: their PreToolUse hooks refuse an edit to a locked or
    # out-of-scope path. The files are kept out of git's view, so they are never committed as work.
    from orch.verify import hooks

    hooks.write_agent_hooks(ctx, task.id, worktree)


def render_context(ctx: Ctx, manifest: dict[str, Any]) -> str:
    """context.md, the brief handed to the agent, from templates/context.md."""
    from orch.core.store import template

    scope = manifest.get("scope")
    if scope:
        scope_rule = (
            f"Change only files whose path, relative to the repository root, matches the regular "
            f"expression `{scope}` (Python `re.search`, as in `grep -E`). A change to any other file is a "
            "scope violation and keeps your work out of the base branch."
        )
    else:
        scope_rule = "This task has no scope: you may change any file that no lock below protects."
    accept = manifest.get("accept")
    test = ctx.config.test_command
    accept_text = (
        f"`{accept}` must pass; it runs in your worktree (through `sh -c`) when you exit."
        if accept
        else "This task has no acceptance command of its own."
    )
    if test:
        accept_text += f" At merge time the project's tests run: `{test}`."
    values = {
        "task_id": manifest["id"],
        "title": manifest["title"],
        "branch": manifest["branch"],
        "base_sha": manifest["base_sha"][:12],
        "base_branch": manifest.get("base_branch", ctx.config.base_branch),
        "brief": manifest.get("brief") or "(no brief beyond the title)",
        "scope_rule": scope_rule,
        "locks": _locks_text(ctx, scope),
        "accept": accept_text,
        "agents_md": str(Path(manifest["worktree"]) / "AGENTS.md"),
        "deps": _deps_text(ctx, manifest.get("deps") or []),
    }
    return string.Template(template("context.md")).safe_substitute(values)


def _locks_text(ctx: Ctx, scope: str | None) -> str:
    """The locks that touch the task's scope (all of them for a task without a scope)."""
    from orch.verify import locks as locks_mod

    lockset = locks_mod.load(ctx.project)
    lines = []
    others = 0
    for lock in lockset.for_agents():
        if not locks_mod.touches_scope(lock, scope):
            others += 1
            continue
        reason = f": {lock.reason}" if lock.reason else ""
        lines.append(f"- {lock.id} ({lock.mode} {lock.kind} lock) `{lock.label}`{reason}")
    if not lines:
        text = "No lock touches your scope."
    else:
        text = "\n".join(lines) + (
            "\n\nA hard lock blocks the merge of any change to what it protects; a soft lock needs a person's ack."
        )
    if others:
        text += f"\n\n({others} other lock(s) protect paths outside your scope: `orch lock list` shows them.)"
    return text


def _deps_text(ctx: Ctx, deps: list[str]) -> str:
    if not deps:
        return "None."
    lines = []
    for dep in deps:
        st = state.read(ctx.project, ctx.store, dep, refresh=False) or {}
        folder = ctx.project.task_dir(dep)
        head = st.get("head_sha") or (st.get("merge") or {}).get("sha")
        line = f"- {dep}: branch `orch/{dep}`" + (f" at `{head[:12]}`" if head else "")
        line += f", state {st.get('state', 'PENDING')}; its brief: `{folder / 'context.md'}`"
        lines.append(line)
        for artifact in st.get("artifacts") or []:
            shown = artifact if os.path.isabs(artifact) else f"{head[:12] if head else f'orch/{dep}'}:{artifact}"
            lines.append(f"  - artifact: `{shown}`")
    return (
        "\n".join(lines) + "\n\nThese are references: read them where they are, do not copy them "
        "(`git show orch/ID:PATH` prints a file of a dependency's branch)."
    )


# -- clean ------------------------------------------------------------------------------------------


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
    else:
        selected = [i for i, s in statuses.items() if s.get("state") != "CLEANED" and state.merged(s)]
    report = CleanReport()
    listing = git_worktrees(project.root)
    from orch.integrate.journal import pending

    journal = pending(ctx)
    held = set(journal["queue"]) if journal else set()
    for task_id in selected:
        if task_id in held:
            entry = CleanEntry(task_id, str(statuses[task_id].get("state", "PENDING")))
            entry.skipped = "an interrupted merge ceremony holds it (orch merge --resume or --abort first)"
            report.entries.append(entry)
            continue
        with store.lock(f"finish-{task_id}"):
            st = state.read(project, store, task_id) or {}
            report.entries.append(_clean_one(ctx, task_id, st, listing, force=force))
    return report


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
        return entry
    branch = branch_name(task_id)  # never the status's word for it: a status is a file anyone can edit
    wt_text = st.get("worktree")
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
        if in_base:
            git.run(["update-ref", "-d", f"refs/heads/{branch}", tip], cwd=root)
            git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
            entry.deleted_branch = branch
        elif force:
            kept = f"{KEPT_PREFIX}/{task_id}/{timestamp()}"
            git.run(
                ["update-ref", "--stdin"], cwd=root, input=f"create {kept} {tip}\ndelete refs/heads/{branch} {tip}\n"
            )
            git.run(["update-ref", "-d", f"{BASE_PREFIX}/{task_id}"], cwd=root, check=False)
            entry.deleted_branch = branch
            entry.kept_refs.append(kept)
            entry.restore.append(f"git branch {branch} {kept}")
        else:
            entry.kept_branch = branch
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

    def mark(s: state.Status) -> None:
        if s.get("state") != "CLEANED":
            s["previous_state"] = s.get("state")
            s["state"] = "CLEANED"
        s["cleaned_at"] = eventlog.utcnow()
        s["worktree"] = None
        s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *entry.kept_refs]))

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
    _snapshot_into(ctx, task_id, wt, entry)
    _keep_head(ctx, task_id, wt, entry)
    git.run(["worktree", "remove", "--force", str(wt)], cwd=root)
    entry.removed_worktree = project.rel(wt)
    return True


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
    fd, tmp = tempfile.mkstemp(prefix="orch-snapshot-", suffix=".index", dir=index.parent)
    os.close(fd)
    try:
        if index.exists():
            shutil.copyfile(index, tmp)
        else:
            os.unlink(tmp)
        env = {"GIT_INDEX_FILE": tmp}
        git.run(["add", "-A", "--", "."], cwd=worktree, env=env, no_hooks=True)
        tree = git.out(["write-tree"], cwd=worktree, env=env)
        head = git.rev_parse("HEAD", cwd=worktree)
        parents = ["-p", head] if head else []
        message = f"orch: snapshot of uncommitted work in task {task_id} ({why})"
        commit = git.out(["commit-tree", tree, *parents, "-m", message], cwd=worktree, env=git.ORCH_IDENT)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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
