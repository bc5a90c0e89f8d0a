"""``orch spin``: a branch, a worktree, a frozen manifest and a brief per task, then the agent.

Branch ``orch/<id>`` and the rollback ref ``refs/orch/base/<id>`` are created in one
``git update-ref --stdin`` transaction from the base branch's current commit (the ``create`` is the
claim: two spins of one task cannot both win), then ``git worktree add`` checks the branch out at
``<worktree_root>/<id>``; the frozen ``manifest.yaml``, ``context.md`` (``orch.agents.brief``) and
``status.yaml`` follow, then the agent starts (``orch.agents.launch``). A spin killed half-way leaves
a branch without a worktree or a worktree without a status: ``orch doctor`` finds both.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orch.agents import manifest as agents
from orch.agents import planphase
from orch.agents.brief import render_context
from orch.core import eventlog, git, procs, state
from orch.core.config import key_where
from orch.core.context import Ctx
from orch.core.errors import GitError, InputError, OrchError
from orch.core.plan import Plan, Task
from orch.core.refs import (
    BASE_PREFIX,
    KEPT_PREFIX,
    branch_name,
    check_id,
    clear_checkout,
    mark_checkout,
    worktree_gitdir,
)
from orch.tasks import limits

Progress = Callable[[str, str], None]  # (task id, what happened)


def worktree_path(ctx: Ctx, task_id: str) -> Path:
    return ctx.config.worktree_root / task_id


@dataclass
class SpinResult:
    id: str
    ok: bool = False
    branch: str | None = None
    worktree: str | None = None
    base_sha: str | None = None
    agent: str | None = None
    started: bool = False
    queued: str | None = None  # why it waits QUEUED (spun, started when a slot frees: orch.agents.queue)
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
    ready = state.ready_ids(ctx.project, ctx.plan.tasks, statuses, lambda: ctx.config.base_branch)
    return topo_order(ctx.plan, [t.id for t in ctx.plan.tasks if t.id in ready])


def spin(
    ctx: Ctx,
    ids: list[str],
    *,
    agent: str | None = None,
    start: bool = True,
    tmux: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    eager: bool = False,
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
    committed_plan = _committed_plan(ctx)
    statuses = {i: state.read(project, store, i) for i in seen}
    base_sha = git.rev_parse(f"refs/heads/{config.base_branch}", cwd=root)
    if base_sha is None:
        raise InputError(
            f"base_branch: the branch '{config.base_branch}' does not exist",
            where=key_where(project, "base_branch"),
            hint="set base_branch to an existing branch",
        )
    _check_worktree_root(ctx, seen)
    from orch.verify import locks as locks_mod

    locks_mod.load(project)  # the brief and the agent hooks read them: a broken file refuses before anything is made
    existing = set(
        git.out(["for-each-ref", "--format=%(refname)", "refs/heads/orch/"], cwd=root, optional_locks=False).split()
    )
    from orch.tasks import routing

    routes = routing.Routes(ctx) if agent is None else None  # .orch/routing.yaml as committed, read once
    results: list[SpinResult] = []
    prepared: list[_Prepared] = []
    for task_id in seen:
        result = SpinResult(task_id, branch=branch_name(task_id), base_sha=base_sha)
        results.append(result)
        try:
            task = plan.require(task_id)
            if committed_plan is not None:  # its accept command as committed must pass too
                task = replace(task, committed=committed_plan.get(task_id))
            st = statuses[task_id]
            now = st.get("state") if st is not None else None
            if st is not None and (now not in ("PENDING", "CLEANED") or (now == "PENDING" and st.get("branch"))):
                raise _already_spun(ctx, task_id, None, st)
            known = {d: statuses.get(d) or state.read(project, store, d) for d in task.deps}
            deps = {d: dep_status for d, dep_status in known.items() if dep_status is not None}
            done = state.merged_tasks(project, deps, task.deps, lambda: base_sha)  # merged however it got there
            missing = [d for d in task.deps if d not in done]
            if missing and not force:
                raise InputError(
                    f"task {task_id} depends on {', '.join(missing)}, not merged yet",
                    hint="merge those first, or pass --force to spin it from the current base anyway",
                )
            rule_at = None  # the routing rule that named the agent
            if not agent and not task.agent:  # routing picks the agent (and model) of a task naming none
                task, rule_at = _routed(task, routes)
            name = agent or task.agent or config.default_agent
            named_at = None  # where a missing manifest is asked for: the task's field, or the config's default
            if not agent and not agents.manifest_path(project, name).is_file():
                line = task.field_lines.get("agent", task.line)
                named_at = rule_at or (
                    f".orch/plan.md:{line}" if task.agent else key_where(project, "agent", indent=True)
                )
            manifest = agents.load(project, store, name, named_at=named_at)
            result.agent = name
            if "{run}" in " ".join(manifest.command) and not task.run:
                raise InputError(
                    f".orch/plan.md:{task.line}: task {task_id} has no 'run:' field, which agent '{name}' runs",
                    hint="add '- run: COMMAND' under the task heading, or pick another agent with --agent",
                )
            path = worktree_path(ctx, task_id)
            result.worktree = str(path)
            if f"refs/heads/{branch_name(task_id)}" in existing and st is not None and st.get("state") == "CLEANED":
                raise _kept_by_clean(ctx, task_id, st, base_sha)
            taken = path.exists() or path.is_symlink()
            if f"refs/heads/{branch_name(task_id)}" in existing or taken:  # taken: maybe by a spin since then
                tip = git.rev_parse(f"refs/heads/{branch_name(task_id)}", cwd=root)
                if tip is not None:
                    kept = not git.is_ancestor(tip, base_sha, cwd=root)  # orch clean keeps unmerged branches
                    raise _already_spun(ctx, task_id, f"its branch {branch_name(task_id)} exists", kept=kept)
            if taken:
                raise InputError(f"{project.rel(path)} exists already", hint="run orch doctor to see what it is")
            prepared.append(_Prepared(task, manifest, result, path))
        except OrchError as exc:
            result.error = exc.render()
            result.exit_code = int(exc.exit_code)
            note(task_id, f"refused: {exc.message.splitlines()[0]}")
    if not prepared:
        return results
    # Before any branch is claimed: a checkout could start a filter an agent planted in git config.
    git.check_programs(cwd=root, command="spin")
    prepared = _claim(ctx, prepared, base_sha, note)
    if not prepared:
        return results
    for p in prepared:
        procs.fault_point("spin.after_claim", p.task.id)
    for p in prepared:
        ctx.log("PENDING", "SPIN", f"branch={branch_name(p.task.id)} base={base_sha[:12]}", task=p.task.id)

    def add_worktree(p: _Prepared) -> str:
        """Check out one task's worktree; its progress line (the caller prints them in order)."""
        try:
            p.path.parent.mkdir(parents=True, exist_ok=True)
            # git races when worktrees are added at once ("failed to read .../commondir"): register
            # them one at a time (fast, no files yet), then check the files out in parallel.
            with ctx.store.lock("git-worktree-add"):
                git.run(["worktree", "add", "--quiet", "--no-checkout", str(p.path), branch_name(p.task.id)], cwd=root)
                mark_checkout(p.path)  # until the status is written: a kill leaves a worktree doctor knows
            procs.fault_point("spin.after_worktree_add", p.task.id)
            git.run(["checkout", "--force", "--quiet"], cwd=p.path)
            _write_task_files(ctx, p, base_sha)
            clear_checkout(p.path)
            p.result.ok = True
            return f"worktree {project.rel(p.path)}"
        except OrchError as exc:
            p.result.error = exc.render()
            p.result.exit_code = int(exc.exit_code)
            return f"failed: {exc.message.splitlines()[0]}"

    # The progress comes in the order of the tasks asked for, each line as soon as its task and
    # every task before it are done (checkouts finish in any order; their lines must not).
    def start_one(p: _Prepared) -> None:
        from orch.agents import launch

        try:
            st = launch.start(ctx, p.task.id, tmux=tmux)
            if st.get("state") == "QUEUED":
                p.result.queued = str(st.get("reason") or "waits for a slot")
                note(p.task.id, f"queued: {p.result.queued}")
                return
            p.result.started = True
            p.result.tmux_session = st.get("tmux_session")
            note(p.task.id, "started" + (f" in tmux session {p.result.tmux_session}" if tmux else ""))
        except OrchError as exc:
            p.result.ok = False
            p.result.error = exc.render()
            p.result.exit_code = int(exc.exit_code)
            note(p.task.id, f"not started: {exc.message.splitlines()[0]}")

    # The progress comes in the order of the tasks asked for, each line as soon as its task and
    # every task before it are done (checkouts finish in any order; their lines must not). ``eager``
    # (orch up, the ids in queue order): each agent starts as soon as its checkout and those before it are.
    workers = max(1, min(len(prepared), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else contextlib.nullcontext() as pool:
        checked = pool.map(add_worktree, prepared) if pool is not None else map(add_worktree, prepared)
        for p, message in zip(prepared, checked, strict=True):
            note(p.task.id, message)
            if eager and start and p.result.ok:
                start_one(p)
    if start and not eager:
        from orch.agents import slots

        order = slots.queue_order(ctx, [p.task.id for p in prepared])  # past the slots, the rest queue
        for p in sorted(prepared, key=lambda p: order.index(p.task.id)):
            if p.result.ok:
                start_one(p)
    return results


def _routed(task: Task, routes: Any) -> tuple[Task, str | None]:
    """``task`` with the agent and model routing gives it, and where the rule is; a tie refuses it."""
    d = routes.decide(task)
    if d.question:
        raise InputError(d.question, hint=f"orch route {task.id} shows which rules match and why")
    if not d.agent:
        return task, None
    fields = dict(task.fields, agent=d.agent)
    if d.model and not task.model:
        fields["model"] = d.model
    return replace(task, fields=fields), d.where


def _kept_by_clean(ctx: Ctx, task_id: str, st: state.Status, base_sha: str) -> InputError:
    """Why a cleaned task whose branch is still there (orch clean kept it) is not spun again, and the ways on."""
    branch, base = branch_name(task_id), ctx.config.base_branch
    n = int(git.out(["rev-list", "--count", f"{base_sha}..refs/heads/{branch}"], cwd=ctx.project.root) or 0)
    over = (
        f"start over from {base}: orch clean --force {task_id} (it keeps the branch's commits under "
        f"{KEPT_PREFIX}/{task_id}/), then orch spin {task_id}"
    )
    waiting = st.get("previous_state") in state.AWAITING_MERGE and not state.merged(st)
    return InputError(
        f"task {task_id} was cleaned, but its branch {branch} is still there ({n} commit(s) not in {base})",
        hint=(f"merge them: orch merge {task_id}; or " if waiting and n else "") + over,
    )


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
            where=key_where(ctx.project, "worktree_root"),
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
    procs.pause_point("claim")
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
            exc = _already_spun(ctx, p.task.id, f"a concurrent orch spin created {branch_name(p.task.id)} first")
            p.result.error = exc.render()
            p.result.exit_code = int(exc.exit_code)
            note(p.task.id, f"refused: {exc.message}")
        prepared = [p for p in prepared if p not in lost]
        if not lost:  # a ref lock held for a moment by another git: try again shortly
            time.sleep(0.05 * (attempt + 1))
    assert last is not None
    raise last


def _committed_plan(ctx: Ctx) -> Plan | None:
    """plan.md as committed on the base branch, parsed from git (never from a cache), or None."""
    from orch.core import planfile

    try:
        committed = ctx.committed()
        raw = committed.get("plan.md")
        if raw is None:
            return None
        return planfile.loads(raw.decode("utf-8"), ctx.project.orch_dir, where=committed.where("plan.md"), cache=False)
    except (OrchError, UnicodeDecodeError):
        return None  # verification reports a broken committed plan; the accept is then the working one


def accept_command(commands: list[str]) -> str | None:
    """One shell command that passes only when each of ``commands`` passes (``Task.accepts``: an
    uncommitted edit of a task's ``accept`` in the main checkout adds a check, never drops the
    committed one)."""
    if len(commands) <= 1:
        return commands[0] if commands else None
    import shlex

    return " && ".join(f"sh -c {shlex.quote(c)}" for c in commands)


def _already_spun(
    ctx: Ctx, task_id: str, how: str | None, st: state.Status | None = None, *, kept: bool = False
) -> InputError:
    """The task is spun (or a spin has its branch): say so, by its status if it has one, and point at
    it; never suggest deleting the branch, which may be a live task's. ``kept``: the branch has
    commits the base lacks (so no spin just made it: orch clean may have kept it)."""
    branch = branch_name(task_id)
    if st is None:
        try:
            st = state.read(ctx.project, ctx.store, task_id)
        except OrchError:
            st = None  # a broken status is reported by the commands that read it; here the branch speaks
    now = st.get("state") if st else None
    if now == "CLEANED" and kept:
        base = ctx.config.base_branch
        return InputError(
            f"task {task_id} was spun and cleaned before, and orch clean kept its branch {branch} "
            f"(commits not in {base})",
            hint=f"look at that work first (git log {base}..{branch}); orch clean --force {task_id} keeps its "
            f"commits under refs/orch/kept/{task_id}/ and frees the name to spin the task again",
        )
    hint = f"see: orch status {task_id} (orch attach {task_id} when it runs in tmux)"
    if st is None or now in (None, "CLEANED"):  # the spin that won has not written its status yet
        by = "no status yet: another orch spin is preparing it, or one was killed half-way"
        hint += "; a spin killed half-way is finished or undone by orch doctor --fix"
    else:
        by = str(now) + (", not started" if now == "PENDING" else "")
        by += f", agent {st['agent']}" if st.get("agent") else ""
        if now == "PENDING":
            hint += f"; start it: orch start {task_id}"
        elif now == "HUMAN":
            hint += f"; a person works on it: orch release {task_id} gives it back"
        elif now != "RUNNING":
            over = f"orch retry {task_id}" if now in state.RETRYABLE else f"orch clean {task_id}, then spin it again"
            hint += f"; to start over: {over}"
    return InputError(f"task {task_id} already spun ({by})" + (f": {how}" if how else ""), hint=hint)


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def _tdd_gate(field: str | None, default: Any) -> bool:
    """The plan task's ``tdd_gate`` (true/false, yes/no, on/off), else the config's (on by default)."""
    word = (field or "").strip().lower()
    return word in ("true", "yes", "on") if word else bool(default)


def _write_task_files(ctx: Ctx, p: _Prepared, base_sha: str) -> None:
    project, store = ctx.project, ctx.store
    task, folder = p.task, project.task_dir(p.task.id)
    folder.mkdir(parents=True, exist_ok=True)
    from orch.agents.taskfiles import rotate_run_files

    rotate_run_files(folder)  # an earlier run's log, usage and blocker report must not count for this one
    now = eventlog.utcnow()
    manifest = {
        "id": task.id,
        "title": task.title,
        "scope": task.scope,
        "deps": task.deps,
        "agent": p.agent.name,
        "model": task.model or p.agent.model or ctx.config.defaults.get("model"),
        "accept": accept_command(task.accepts),
        "check": [c for c in (task.fields.get("check"), *_listed(ctx.config.defaults.get("check"))) if c],
        "tdd_gate": _tdd_gate(task.fields.get("tdd_gate"), ctx.config.defaults.get("tdd_gate", True)),
        "approve_plan": planphase.wanted(ctx, task),
        "run": task.run,
        "level": task.level,
        "limits": limits.task_limits(ctx, task, p.agent),
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

    procs.fault_point("spin.before_status", task.id)
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
