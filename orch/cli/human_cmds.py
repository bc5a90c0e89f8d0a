"""A person drives a task for a while: takeover, release."""

from __future__ import annotations

from orch.cli.app import app, ctx, typer
from orch.cli.output import err, out
from orch.core.errors import UsageError


@app.command()
def takeover(
    task_id: str = typer.Argument(..., metavar="ID"),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL for a running agent."),
) -> None:
    """Drive a task yourself: stop its agent if it runs (its work snapshotted), mark it HUMAN (nothing
    schedules, retries or merges it) and print its worktree; orch release gives it back."""
    from orch.tasks import takeover as takeover_mod

    c = ctx()
    taken = takeover_mod.takeover(c, task_id, grace=grace)
    how = "its agent stopped, " if taken.stopped else ""
    out(f"{task_id}: HUMAN (was {taken.previous}; {how}its work kept on {taken.branch})")
    for ref in taken.kept:
        out(f"  kept: {ref}")
    for line in taken.notes:
        out(f"  note: {line}")
    out(f"  worktree: {taken.worktree}")
    out(f"  branch:   {taken.branch} at {(taken.head or '-')[:12]}")
    out(f"  work and commit there; then, from your checkout: orch release {task_id} --note TEXT (back to the agent)")
    out(f"  or: orch release {task_id} --done (runs accept; SUCCESS if it passes)")


@app.command()
def release(
    task_id: str = typer.Argument(..., metavar="ID"),
    note: str | None = typer.Option(None, "--note", help="A note for the agent, put in its brief as a quote."),
    done: bool = typer.Option(False, "--done", help="Run accept only: SUCCESS if it passes, else it stays HUMAN."),
    use_tmux: bool = typer.Option(False, "--tmux", help="Run the agent in tmux session orch-ID."),
) -> int:
    """Give a HUMAN task back from your commits: its accept runs on them (SUCCESS if it passes, no agent
    needed); otherwise the loop starts again from iteration 1 on your commits, your note and commits in
    its brief. With --done: accept only; exit 1 (still HUMAN) if it fails."""
    from orch.cli.task_cmds import _box_notice
    from orch.tasks import takeover as takeover_mod

    if done and note is not None:
        raise UsageError("--note is for the agent, and --done runs none", hint=f"orch release {task_id} --done")
    c = ctx()
    rel = takeover_mod.release(c, task_id, note=note, done=done, tmux=use_tmux)
    mine = f"{len(rel.commits)} commit(s) of yours"
    if rel.outcome == "HUMAN":
        code = (rel.accept or {}).get("exit_code")
        err(f"orch: {task_id}: not released: the accept command fails (exit {code}) on {mine}; it stays HUMAN")
        if rel.accept_output:
            err(f"--- the end of {(rel.accept or {}).get('log')} ---")
            err(rel.accept_output.rstrip("\n"))
            err("---")
        err(f"  fix it, then orch release {task_id} --done again; or hand it back: orch release {task_id} --note TEXT")
        return 1
    for ref in rel.kept:
        out(f"  kept: {ref}")
    for line in rel.notes:
        out(f"  note: {line}")
    if rel.outcome == "SUCCESS":
        why = "the accept command passes on" if rel.accept else "no accept command; done on your word, with"
        out(f"{task_id}: SUCCESS ({why} {mine}; no agent ran)")
        out(f"  merge it: orch merge {task_id}")
        return 0
    if rel.accept is not None:
        out(f"{task_id}: the accept command fails on {mine} (exit {rel.accept.get('exit_code')}): back to the agent")
    st = rel.status
    how = f"tmux {st['tmux_session']}" if st.get("tmux_session") else "running"
    out(f"{task_id}: released: {how} ({st.get('agent')}) from {mine}, the loop from iteration 1")
    out(f"  follow it: orch run {task_id} (or orch wait {task_id})")
    _box_notice(c, [task_id])
    if rel.run_files:
        out(f"  the earlier runs' files: {rel.run_files}")
    return 0
