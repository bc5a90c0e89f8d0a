"""``orch takeover ID`` and ``orch release ID [--note TEXT | --done]``: a person drives a task for a while.

Takeover (seed 003: "stop, let me drive, resume") ends the agent's run as ``orch stop`` does (its work
snapshotted and, from the box, brought in) when it runs, keeps whatever the worktree holds
(``retry.keep_work``), removes the box's shadow folder (its refs name the agent's tip and would move
the branch back over the person's rewrites at the next run) and marks the task HUMAN: nothing
schedules it, retries, resumes, queues or merges it while it is. The person works and commits in the
worktree; orch never rewrites those commits.

Release gives it back from the branch as the person left it (uncommitted changes snapshotted first,
as orch always does). The task's ``accept`` runs on it (in the box, like the loop's): if it passes,
the task ends SUCCESS without an agent; otherwise the loop starts again from iteration 1, from the
person's commits (not from the task's base, as ``orch retry`` does), with a brief section saying what
the person did (``brief.human_section``). ``--done`` only runs ``accept``: SUCCESS if it passes, else
the task stays HUMAN. Both take the ``retry-<id>`` lock that ``orch retry`` and ``orch resume`` take.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.agents import boxcmd, boxgit, brief, launch, spawn, taskgit
from orch.agents.procgroup import GRACE
from orch.agents.taskfiles import TaskFiles, files, rotate_run_files
from orch.core import eventlog, git, procs, refs, state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.text import printable
from orch.tasks import retry

MAX_COMMITS = 100  # commit lines put in the brief
MAX_STAT_LINES = 200
SUPERVISOR_EXIT = 30.0  # seconds to wait for a stopped run's supervisor to exit after it completed the run


@dataclass
class Taken:
    id: str
    previous: str  # the state it was taken from
    stopped: bool  # it was RUNNING: orch stopped its agent first
    worktree: str
    branch: str
    head: str | None
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Released:
    id: str
    outcome: str  # SUCCESS (accept passed: no agent ran), RUNNING (the loop again), HUMAN (--done refused)
    commits: list[str] = field(default_factory=list)  # the person's, since the takeover (git log --oneline)
    accept: dict[str, Any] | None = None
    accept_output: str | None = None  # the end of the accept log, when it failed
    run_files: str | None = None
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: state.Status = field(default_factory=dict)


# -- takeover ---------------------------------------------------------------------------------------


def takeover_refusal(task_id: str, st: state.Status | None) -> InputError | None:
    """Why the task cannot be taken over, with the way on (None: it can)."""
    now = st.get("state") if st else None
    if st is None or (now == "PENDING" and not st.get("branch")):
        return InputError(
            f"task {task_id} was never spun: there is no worktree to take over",
            hint=f"spin it without an agent: orch spin --no-start {task_id}, then work in its worktree",
        )
    if now in state.TAKEABLE:
        return None
    if now == "HUMAN":
        return InputError(
            f"task {task_id} is HUMAN already: a person works on it in {st.get('worktree')}",
            hint=f"give it back: orch release {task_id} --note TEXT (or orch release {task_id} --done)",
        )
    if now == "PENDING":
        return InputError(
            f"task {task_id} is PENDING (spun, not started): nothing runs to take over",
            hint=f"work in its worktree {st.get('worktree')} as it is, or start it: orch start {task_id}",
        )
    if now in ("MERGED", "CLEANED"):
        return InputError(f"task {task_id} is {now}: its run is over and its worktree done with; nothing to take over")
    return InputError(
        f"task {task_id} is {now}: it went on to verification and merge; orch takeover takes a task that runs "
        "or whose run ended (FAILED, BLOCKED, PAUSED, CRASHED, SUCCESS, AWAITING_APPROVAL)",
        hint=f"see: orch status {task_id}",
    )


def takeover(ctx: Ctx, task_id: str, *, grace: float = GRACE) -> Taken:
    """Stop the task's agent if it runs, keep its work, mark it HUMAN; what was done."""
    project, store = ctx.project, ctx.store
    root = project.root
    refs.check_id(task_id, cwd=root)
    with store.lock(f"retry-{task_id}"):
        st = state.read(project, store, task_id)
        refused = takeover_refusal(task_id, st)
        if refused is not None:
            raise refused
        assert st is not None
        previous, stopped = str(st["state"]), False
        if previous == "RUNNING":
            ctx.log("RUNNING", "TAKEOVER", "a person takes it over: stopping the agent", task=task_id)
            running = st
            st = launch.stop(ctx, task_id, grace=grace)
            _wait_for_supervisor(running)
            stopped = True
            st = state.read(project, store, task_id, refresh=False) or st
            if st.get("state") == "RUNNING":  # whoever completes runs raced us: say so, change nothing more
                raise InputError(f"task {task_id} still runs after orch stop", hint=f"orch stop --kill {task_id}")
        retry._still_supervised(task_id, str(st.get("state")), st)
        f = files(project, task_id)
        _manifest, worktree, base = retry.frozen(ctx, task_id, f, verb="taken over")
        git.check_programs(cwd=root, command="takeover")  # the snapshot's git add could run filters
        taken = Taken(task_id, previous, stopped, str(worktree), refs.branch_name(task_id), None)
        retry.keep_work(ctx, task_id, worktree, base, st, taken, command="takeover")
        _drop_shadow(ctx, task_id, taken.notes)
        head = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=root)
        taken.head = head
        was = str(st.get("state")) if not stopped else f"RUNNING, stopped: {st.get('state')}"
        now = eventlog.utcnow()
        changed: list[str] = []

        def mine(s: state.Status) -> None:
            if s.get("state") not in state.FINISHED:  # started meanwhile (orch approve starts a planned task)
                changed.append(str(s.get("state")))
                return
            s.update(
                state="HUMAN",
                reason=f"a person took it over (it was {previous}); they work in {project.rel(worktree)}",
                head_sha=head,
                human={"at": now, "was": previous, "head": head},
                supervisor_pid=None,
                supervisor_start=None,
                pid=None,
                pid_start=None,
                tmux_session=None,
                stop_requested_at=None,
            )
            if taken.kept:
                s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *taken.kept]))

        state.update(project, store, task_id, mine)
        if changed:
            raise InputError(
                f"task {task_id} became {changed[0]} while orch takeover set it up; not taken over (its work is kept)",
                hint=f"see: orch status {task_id}, then orch takeover {task_id} again",
            )
        ctx.log("HUMAN", "TAKEOVER", f"was {was}; head={(head or '-')[:12]}", task=task_id)
    return taken


def _wait_for_supervisor(st: state.Status) -> None:
    """The stopped run is complete (its status says so); let its supervisor exit before going on."""
    pid, started = st.get("supervisor_pid"), st.get("supervisor_start")
    if not (isinstance(pid, int) and pid > 0):
        return
    deadline = time.monotonic() + SUPERVISOR_EXIT
    while procs.alive(pid, started) and (left := deadline - time.monotonic()) > 0:
        if not procs.wait_exit([pid], min(left, 1.0)):
            time.sleep(0.05)


def _drop_shadow(ctx: Ctx, task_id: str, notes: list[str]) -> None:
    """Remove the box's shadow git folder, whose commits ``keep_work`` brought in: its refs name the
    agent's tip, and the next run's ``bring_in`` would move the branch forward to it over whatever the
    person did. What could not come in stays, set aside."""
    shadow = boxgit.folder_of(ctx.project, task_id)
    if not (shadow.exists() or shadow.is_symlink()):
        return
    if boxgit.bring_in(ctx.project, task_id, None).problems:
        aside = shadow.with_name(f"box.failed-{refs.timestamp()}")
        os.replace(shadow, aside)
        notes.append(f"the box's git folder is kept as {ctx.project.rel(aside)}")
    else:
        boxgit._remove(shadow)


# -- release ----------------------------------------------------------------------------------------


def release_refusal(task_id: str, st: state.Status | None) -> InputError | None:
    now = st.get("state") if st else None
    if st is None:
        return InputError(f"task {task_id} was never spun: nothing to release", hint=f"orch run {task_id}")
    if now == "HUMAN":
        return None
    hint = {
        "RUNNING": f"an agent runs it; to drive it yourself: orch takeover {task_id}",
        "PAUSED": f"go on: orch resume {task_id}",
        "SUCCESS": f"merge it: orch merge {task_id}",
        "PENDING": f"start it: orch start {task_id}",
    }.get(str(now), f"see: orch status {task_id}")
    if now in state.RETRYABLE:
        hint = f"start it over: orch retry {task_id}" if now != "PAUSED" else hint
    return InputError(
        f"task {task_id} is {now}, not HUMAN: only a task taken over with orch takeover is released", hint=hint
    )


def release(ctx: Ctx, task_id: str, *, note: str | None = None, done: bool = False, tmux: bool = False) -> Released:
    """Give the HUMAN task back (see the module's text); what came of it."""
    project, store = ctx.project, ctx.store
    root = project.root
    refs.check_id(task_id, cwd=root)
    note = (note or "").strip()[: retry.NOTE_LIMIT] or None
    with store.lock(f"retry-{task_id}"):
        st = state.read(project, store, task_id)
        refused = release_refusal(task_id, st)
        if refused is not None:
            raise refused
        assert st is not None
        retry._still_supervised(task_id, "HUMAN", st)
        f = files(project, task_id)
        manifest, worktree, base = retry.frozen(ctx, task_id, f, verb="released")
        # What can refuse (a broken locks file, an agent manifest gone, planted git config) does so first.
        base_brief = None if done else brief.render_context(ctx, manifest).rstrip("\n")
        run = spawn.build_launch(ctx, task_id, manifest)
        git.check_programs(cwd=root, command="release")
        rel = Released(task_id, "HUMAN")
        retry.keep_work(ctx, task_id, worktree, base, st, rel, command="release")
        _drop_shadow(ctx, task_id, rel.notes)
        tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=root) or base
        since = _since(root, (st.get("human") or {}).get("head"), tip, base)
        rel.commits = _commits(root, since, tip)
        accept = manifest.get("accept")
        passed = not accept and done  # no accept command: --done is the person's word
        if accept:
            rel.accept, output = _accept(ctx, task_id, f, run, str(accept))
            passed = rel.accept["exit_code"] == 0
            if not passed:
                rel.accept_output = output
        if passed:
            rel.outcome = "SUCCESS"
            rel.status = _succeeded(ctx, task_id, tip, rel, accepted=bool(accept))
            return rel
        if done:
            ctx.log(
                "HUMAN",
                "RELEASE",
                f"refused: the accept command fails (exit {rel.accept['exit_code'] if rel.accept else '-'})",
                task=task_id,
            )
            rel.status = state.read(project, store, task_id, refresh=False) or st
            return rel
        assert base_brief is not None
        moved = rotate_run_files(f.folder)
        rel.run_files = project.rel(moved) + "/" if moved is not None else None
        section = brief.human_section(
            run=int(moved.name[4:]) + 1 if moved is not None else 1,
            was=str((st.get("human") or {}).get("was") or "taken over"),
            note=note,
            commits=rel.commits,
            diffstat=_diffstat(root, since, tip),
            files=rel.run_files,
        )
        store.save(f.manifest, manifest, "task_manifest")  # moved to run-<n>/ with the rest
        store.write_text(f.context, f"{base_brief}\n\n{section}")
        from orch.verify import hooks

        hooks.write_agent_hooks(ctx, task_id, worktree)  # the agents' early warnings, as spin writes them
        retry.back_to_pending(ctx, task_id, base, note, rel, allowed=frozenset({"HUMAN"}), head=tip, mark="RELEASE")
        said = f"{len(rel.commits)} commit(s) of the person's; back to the agent"
        said += f"; note: {' '.join(note.split())[:200]}" if note else ""
        ctx.log("PENDING", "RELEASE", said, task=task_id, artifacts=[rel.run_files] if rel.run_files else [])
        # As orch retry: refused here (every slot taken), it stays PENDING with its brief, for orch start.
        rel.status = launch.start(ctx, task_id, tmux=tmux)
        rel.outcome = "RUNNING"
    return rel


def _since(root: Path, head: Any, tip: str, base: str) -> str:
    """Where the person's commits begin: the tip at the takeover, while the branch still holds it (a
    person may rewrite their branch: then every commit since the task's base is theirs to show)."""
    if isinstance(head, str) and taskgit.SHA_RE.fullmatch(head) and git.rev_parse(head, cwd=root) == head:
        if git.is_ancestor(head, tip, cwd=root):
            return head
    return base


def _commits(root: Path, since: str, tip: str) -> list[str]:
    """``git log --oneline since..tip``, newest first, at most ``MAX_COMMITS`` lines."""
    listing = git.out(
        ["rev-list", "--no-commit-header", "--format=%h %s", f"--max-count={MAX_COMMITS + 1}", f"{since}..{tip}"],
        cwd=root,
    )
    lines = [printable(line) for line in listing.splitlines() if line.strip()]
    if len(lines) > MAX_COMMITS:
        lines = [*lines[:MAX_COMMITS], f"... and more: git log --oneline {since[:12]}..{tip[:12]}"]
    return lines


def _diffstat(root: Path, since: str, tip: str) -> str:
    if since == tip:
        return ""
    text = git.out(["diff-tree", "--stat=120", "--no-renames", "-r", since, tip], cwd=root)
    lines = [printable(line) for line in text.splitlines()]
    if len(lines) > MAX_STAT_LINES:
        lines = [*lines[: MAX_STAT_LINES - 1], "...", lines[-1]]
    return "\n".join(lines)


def _accept(ctx: Ctx, task_id: str, f: TaskFiles, run: dict[str, Any], command: str) -> tuple[dict[str, Any], str]:
    """The task's accept command on the person's work, in the box as the loop runs it; (result, its log's end)."""
    log = f.folder / "release-accept.log"
    result, link_note = boxcmd.run(ctx.project, run, f, command, log, lambda: False)
    if link_note:
        ctx.log("HUMAN", "REFUSE", link_note, task=task_id)
    code = result["exit_code"]
    ctx.log("HUMAN", "ACCEPT", "PASS" if code == 0 else f"FAIL exit={code}", task=task_id, artifacts=[result["log"]])
    output = ""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 4000))
            output = handle.read().decode("utf-8", "replace")
    except OSError:
        pass
    return result, output


def _succeeded(ctx: Ctx, task_id: str, tip: str, rel: Released, *, accepted: bool) -> state.Status:
    """SUCCESS on the person's commits: the last run's results cleared, the accept result kept."""
    why = (
        "released by a person: the accept command passes on their commits (no agent ran)"
        if accepted
        else "released by a person as done (the task has no accept command)"
    )
    changed: list[str] = []

    def ended(s: state.Status) -> None:
        if s.get("state") != "HUMAN":
            changed.append(str(s.get("state")))
            return
        for key in ("verdict", "acks", "merge", "accept", "human"):
            s.pop(key, None)
        s.update(state="SUCCESS", reason=why, head_sha=tip, finished_at=eventlog.utcnow(), exit_code=None)
        if rel.accept is not None:
            s["accept"] = rel.accept
        if rel.kept:
            s["kept_refs"] = list(dict.fromkeys([*(s.get("kept_refs") or []), *rel.kept]))

    new = state.update(ctx.project, ctx.store, task_id, ended)
    if changed:
        raise InputError(f"task {task_id} became {changed[0]} meanwhile: not released", hint=f"orch status {task_id}")
    ctx.log("SUCCESS", "RELEASE", f"{len(rel.commits)} commit(s) of the person's; {why}", task=task_id)
    return new
