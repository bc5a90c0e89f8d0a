"""``orch retry ID [--note TEXT]``: start a task over from a clean state after a run that ended without
its work done (FAILED, BLOCKED, CRASHED or PAUSED), with the last run's story and a person's note in
the brief.

Under the task's ``retry-<id>`` lock, nothing is lost first: a boxed run's commits are brought in
(``boxgit.bring_in``: a crashed supervisor never did), uncommitted work is committed onto ``orch/<id>``
(``taskgit.settle``, as the supervisor does when an agent exits) and the branch's tip, when it holds
more than the base, is kept under the next ``refs/orch/attempts/<id>/<n>`` (the loop's numbering,
continued). Then the branch and worktree go back to the commit the task started from, as a strategy
shift does (``loop.reset_to_base``), the run's files move to ``run-<n>/``, the brief is written anew
with a section for the retry (``brief.retry_section``), the status goes back to PENDING (counters
reset, the note in ``notes``, ``RETRY`` in the event log) and the agent starts as ``orch start``
starts it (``launch.start``, whose claim makes it RUNNING: two retries at once cannot both start one).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orch.agents import boxgit, brief, launch, loop, loopnotes, taskgit
from orch.agents.taskfiles import TaskFiles, files, rotate_run_files, run_folder_problem
from orch.core import eventlog, git, procs, refs, state
from orch.core.context import Ctx
from orch.core.errors import EnvError, InputError
from orch.tasks.spin import worktree_path

REPORT_LIMIT = 40_000  # characters of the last run's blocker report put in the brief
NOTE_LIMIT = 20_000
TAIL_BYTES = 1 << 20
RESULTS = ("verdict", "acks", "merge", "artifacts", "accept", "snapshot_sha", "plan")  # the last run's, cleared


@dataclass
class Retried:
    id: str
    previous: str  # the state the task was retried from
    run_files: str | None  # where the last run's files went (run-<n>/)
    kept: list[str] = field(default_factory=list)  # refs made to keep the last run's work
    notes: list[str] = field(default_factory=list)  # what orch found and did on the way
    status: state.Status = field(default_factory=dict)


def refusal(task_id: str, st: state.Status | None) -> InputError | None:
    """Why the task cannot be retried, with the way on (None: it can)."""
    now = st.get("state") if st else None
    if st is None or (now == "PENDING" and not st.get("branch")):
        return InputError(
            f"task {task_id} was never spun: nothing to retry", hint=f"orch run {task_id} (or orch spin {task_id})"
        )
    if now in state.RETRYABLE:
        return None
    if now == "RUNNING":
        return InputError(
            f"task {task_id} is RUNNING: orch retry starts over only a run that has ended",
            hint=f"stop it first: orch stop {task_id}, then orch retry {task_id}",
        )
    if now == "PENDING":
        return InputError(
            f"task {task_id} is PENDING (spun, not started yet): nothing to retry",
            hint=f"start it: orch start {task_id} (or orch run {task_id}, which follows it)",
        )
    if now == "HUMAN":
        return InputError(
            f"task {task_id} is HUMAN: a person took it over and works on it; orch retry does not start it over",
            hint=f"give it back from the person's commits: orch release {task_id} --note TEXT (or --done)",
        )
    if now == "CLEANED":
        return InputError(
            f"task {task_id} was cleaned (its worktree is gone): nothing to retry",
            hint=f"orch run {task_id} (or orch spin {task_id}) spins it again",
        )
    if now == "MERGED":
        return InputError(f"task {task_id} is MERGED: its work is in the base branch, nothing to retry")
    if now in state.AWAITING_MERGE:
        return InputError(
            f"task {task_id} is {now}: its run ended well, nothing to retry", hint=f"merge it: orch merge {task_id}"
        )
    return InputError(
        f"task {task_id} is {now}: its run ended SUCCESS and went on to verification and merge; orch retry "
        "starts over only a run that ended FAILED, BLOCKED, CRASHED or PAUSED",
        hint=f"see: orch status {task_id}; to start over from the current base: orch clean --force {task_id}, "
        f"then orch spin {task_id}",
    )


def retry(ctx: Ctx, task_id: str, *, note: str | None = None, tmux: bool = False) -> Retried:
    """Start the task over (see the module's text); the task RUNNING again, and what was kept."""
    project, store = ctx.project, ctx.store
    root = project.root
    refs.check_id(task_id, cwd=root)
    note = (note or "").strip()[:NOTE_LIMIT] or None
    with store.lock(f"retry-{task_id}"):
        st = state.read(project, store, task_id)
        refused = refusal(task_id, st)
        if refused is not None:
            raise refused
        assert st is not None
        previous = str(st["state"])
        _still_supervised(task_id, previous, st)
        f = files(project, task_id)
        manifest, worktree, base = frozen(ctx, task_id, f)
        # Whatever can refuse (a broken locks file, planted git config) does so before anything changes.
        base_brief = brief.render_context(ctx, manifest).rstrip("\n")
        source, text = _last_run(f)
        git.check_programs(cwd=root, command="retry")  # the checkout back to the base could run filters
        done = Retried(task_id, previous, None)
        _set_aside(ctx, task_id, worktree, base, st, done)
        loop.reset_to_base(project, task_id, worktree, base)
        moved = rotate_run_files(f.folder)
        done.run_files = project.rel(moved) + "/" if moved is not None else None
        reason = str(st.get("reason") or "")
        if done.run_files:  # the blocker report it names moved with the rest
            reason = reason.replace(f"{project.rel(f.folder)}/", done.run_files)
        section = brief.retry_section(
            run=int(moved.name[4:]) + 1 if moved is not None else 1,
            previous=previous,
            reason=reason,
            kept=[(ref, sha) for ref in done.kept if (sha := git.rev_parse(ref, cwd=root))],
            files=done.run_files or project.rel(f.folder),
            source=source,
            text=text,
            note=note,
        )
        store.save(f.manifest, manifest, "task_manifest")
        store.write_text(f.context, f"{base_brief}\n\n{section}")
        from orch.verify import hooks

        hooks.write_agent_hooks(ctx, task_id, worktree)  # the agents' early warnings, as spin writes them
        back_to_pending(ctx, task_id, base, note, done)
        said = f"was {previous}" + (f"; kept {', '.join(done.kept)}" if done.kept else "")
        said += f"; note: {' '.join(note.split())[:200]}" if note else ""
        ctx.log("PENDING", "RETRY", said, task=task_id, artifacts=[done.run_files] if done.run_files else [])
        done.status = launch.start(ctx, task_id, tmux=tmux)
    return done


def frozen(ctx: Ctx, task_id: str, f: TaskFiles, *, verb: str = "retried") -> tuple[dict[str, Any], Path, str]:
    """The task's frozen manifest (its ``base_sha`` the commit the task started from), its worktree and
    that commit; refused when the run folder holds a link or any of them is not as orch made it."""
    project, root = ctx.project, ctx.project.root
    linked = run_folder_problem(project, task_id)
    if linked:
        raise EnvError(f"task {task_id} not {verb}: {linked}; orch never writes through a link", hint="remove it")
    manifest = _manifest(ctx, f, task_id)
    worktree = worktree_path(ctx, task_id)
    if os.path.realpath(str(manifest["worktree"])) != os.path.realpath(worktree):
        raise InputError(
            f"task {task_id}'s manifest names the worktree {manifest['worktree']}, not {project.rel(worktree)}",
            where=project.rel(f.manifest),
            hint=f"orch clean {task_id} (it keeps the branch), then orch spin {task_id}",
        )
    base = git.rev_parse(f"{refs.BASE_PREFIX}/{task_id}", cwd=root) or git.rev_parse(
        str(manifest["base_sha"]), cwd=root
    )
    if base is None:
        raise InputError(
            f"task {task_id}: the commit it started from is gone ({refs.BASE_PREFIX}/{task_id})",
            hint=f"orch clean {task_id} (it keeps the branch), then orch spin {task_id}",
        )
    manifest["base_sha"] = base
    return manifest, worktree, base


def _still_supervised(task_id: str, previous: str, st: state.Status) -> None:
    """Refuse a task whose supervisor (or its tmux session) still lives: whatever the status says (an
    agent can rewrite it), its run is not over, and a second supervisor must never start."""
    pid, session = st.get("supervisor_pid"), st.get("tmux_session")
    if isinstance(pid, int) and pid > 0 and procs.alive(pid, st.get("supervisor_start")):
        by = f"its supervisor still runs (pid {pid})"
    elif session and procs.tmux_alive(str(session)):
        by = f"its tmux session {session} is still there"
    else:
        return
    raise InputError(
        f"task {task_id} is {previous}, but {by}: the run is not over", hint=f"wait for it: orch wait {task_id}"
    )


def _manifest(ctx: Ctx, f: TaskFiles, task_id: str) -> dict[str, Any]:
    """The frozen manifest; a retry killed after it moved the files aside left it in the newest run-<n>/."""
    project, store = ctx.project, ctx.store
    folders = sorted(
        (p for p in f.folder.glob("run-*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:]), reverse=True
    )
    for path in [f.manifest, *(p / "manifest.yaml" for p in folders)]:
        try:
            manifest: dict[str, Any] = store.load(path, "task_manifest")
        except FileNotFoundError:
            continue
        if manifest.get("id") == task_id:
            return manifest
    raise InputError(
        f"task {task_id} has no manifest ({project.rel(f.manifest)}): orch cannot tell how to run it again",
        hint=f"orch clean {task_id} (it keeps the branch), then orch spin {task_id}",
    )


class Keeps(Protocol):
    kept: list[str]  # refs made to keep work
    notes: list[str]  # what orch found and did on the way


def _set_aside(ctx: Ctx, task_id: str, worktree: Path, base: str, st: state.Status, done: Retried) -> None:
    """Keep everything the last run left: the box's commits, uncommitted work, the branch's tip."""
    keep_work(ctx, task_id, worktree, base, st, done)
    attempt = loop.keep_attempt(ctx.project, task_id, base)
    if attempt is not None:
        done.kept.append(attempt)


def keep_work(
    ctx: Ctx, task_id: str, worktree: Path, base: str, st: state.Status, done: Keeps, *, command: str = "retry"
) -> None:
    """Bring in the box's commits and commit what is uncommitted onto ``orch/<id>`` (``taskgit.settle``):
    nothing the worktree holds is lost whatever comes next. Refused (nothing changed) when it cannot."""
    project = ctx.project
    verb = {"retry": "retried", "release": "released", "takeover": "taken over"}.get(command, command)
    tg = taskgit.open_worktree(project, task_id, worktree)
    if tg is None:
        raise InputError(
            f"task {task_id}'s worktree {project.rel(worktree)} is gone: nothing to "
            + ("start over in" if command == "retry" else "work in"),
            hint=f"orch clean {task_id} (it keeps the branch), then orch spin {task_id}",
        )
    if tg.admin is not None and (tg.admin / refs.CHECKOUT_MARKER).exists():
        raise InputError(
            f"task {task_id}'s worktree {project.rel(worktree)} was never checked out in full (a spin was killed)",
            hint="orch doctor --fix finishes or undoes that spin",
        )
    brought = boxgit.bring_in(project, task_id, worktree)
    done.kept += brought.kept
    done.notes += brought.notes
    if brought.problems:  # what could not come in stays, set aside (the reset removes the shadow)
        shadow = boxgit.folder_of(project, task_id)
        aside = shadow.with_name(f"box.failed-{refs.timestamp()}")
        os.replace(shadow, aside)
        done.notes += [*brought.problems, f"the box's git folder is kept as {project.rel(aside)}"]
    settled = taskgit.settle(
        project,
        task_id,
        worktree,
        f"left uncommitted before orch {command}",
        last_seen=st.get("head_sha"),
        base_hint=base,
    )
    done.kept += settled.kept
    done.notes += [*settled.notes, *settled.problems]
    snapshot = [("SNAPSHOT", settled.snapshot[:12])] if settled.snapshot else []
    for action, result in [*brought.events, *settled.events, *snapshot]:
        ctx.log(str(st.get("state")), action, result, task=task_id)
    if settled.error:
        raise EnvError(
            f"task {task_id} not {verb}: its uncommitted work could not be kept ({settled.error}); nothing was reset",
            hint=f"commit or move it by hand in {project.rel(worktree)}, then orch {command} {task_id}",
        )
    tg = taskgit.open_worktree(project, task_id, worktree)
    if tg is None or tg.admin is None or tg.problem:
        raise EnvError(
            f"task {task_id} not {verb}: {tg.problem if tg else 'its worktree is gone'}; its work is kept",
            hint="orch doctor shows what is wrong",
        )


def _read_tail(path: Path, limit: int) -> str | None:
    """The end of one of the run's files, only if it is a plain file of its own (an agent can put a link
    to anything there, and the text goes into the next brief)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        os.lseek(fd, max(0, info.st_size - limit), os.SEEK_SET)
        return os.read(fd, limit).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _last_run(f: TaskFiles) -> tuple[str | None, str | None]:
    """How the last run ended, for the brief: (file, text): its blocker report, else the tail of its
    last iteration's log, its accept log or its agent log."""
    report = _read_tail(f.folder / "BLOCKER_REPORT.md", REPORT_LIMIT * 4)
    if report and report.strip():
        if len(report) > REPORT_LIMIT:
            report = report[:REPORT_LIMIT] + "\n[... cut: the whole report is in the last run's folder]"
        return "BLOCKER_REPORT.md", report
    iters = sorted((p for p in f.folder.glob("iter-*.log") if p.stem[5:].isdigit()), key=lambda p: int(p.stem[5:]))
    for path in [*iters[-1:], f.accept_log, f.log]:
        text = _read_tail(path, TAIL_BYTES)
        if text and text.strip():
            return path.name, loopnotes.excerpt(text)
    return None, None


def back_to_pending(
    ctx: Ctx,
    task_id: str,
    base: str,
    note: str | None,
    done: Keeps,
    *,
    allowed: frozenset[str] = state.RETRYABLE,
    head: str | None = None,
    mark: str = "RETRY",
) -> None:
    """PENDING again, with the last run's counters and results cleared and the note kept (``head``: the
    branch's tip when it does not start from ``base``; ``mark``: the note's state, RETRY or RELEASE)."""
    changed: list[str] = []
    now = eventlog.utcnow()

    def back(st: state.Status) -> None:
        if st.get("state") not in allowed:  # moved on meanwhile (a person's orch report)
            changed.append(str(st.get("state")))
            return
        # The last run's results and spending go (its status is kept in run-<n>/): a fresh budget, as a spin's.
        for key in (*RESULTS, "tokens", "cost_usd", "usage", "budget", "resumed_at"):
            st.pop(key, None)
        st.update(
            state="PENDING",
            reason=None,
            base_sha=base,
            head_sha=head or base,
            iterations=0,
            iteration=None,
            max_iterations=None,
            strategy=None,
            exit_code=None,
            started_at=None,
            finished_at=None,
            stop_requested_at=None,
            supervisor_pid=None,
            supervisor_start=None,
            pid=None,
            pid_start=None,
            tmux_session=None,
        )
        # The note marks where this run's reports begin (supervisor._reported_state stops there).
        text = note or f"({'retried' if mark == 'RETRY' else 'released'} without a note)"
        st.setdefault("notes", []).append({"at": now, "state": mark, "text": text})
        st.pop("human", None)
        if done.kept:
            st["kept_refs"] = list(dict.fromkeys([*(st.get("kept_refs") or []), *done.kept]))

    state.update(ctx.project, ctx.store, task_id, back)
    if changed:
        raise InputError(
            f"task {task_id} became {changed[0]} while orch {mark.lower()} set it up; not started (its work is kept)",
            hint=f"see: orch status {task_id}",
        )
