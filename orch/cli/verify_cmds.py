"""Verification: ``verify``, ``ack``, ``lock``, ``hooks``, ``hook``."""

from __future__ import annotations

from orch.cli.app import app, ctx, hook_app, hooks_app, lock_app, typer
from orch.cli.output import out
from orch.core.errors import UsageError

# -- verification: verify, ack, lock, hooks, hook --------------------------------------------------


def _mode(hard: bool, soft: bool) -> str:
    if hard and soft:
        raise UsageError("--hard and --soft exclude each other")
    return "soft" if soft else "hard"


@app.command()
def verify(
    task_ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to verify."),
    all_tasks: bool = typer.Option(False, "--all", help="Every task in the plan that has a branch."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> int:
    """Judge each task's branch tip against its scope and the locks; exit 1 unless all are mergeable."""
    from orch.cli.fast import verify_command

    return verify_command(task_ids or [], all_tasks=all_tasks, as_json=as_json)


@app.command()
def ack(
    task_id: str = typer.Argument(..., metavar="ID"),
    lock_id: str = typer.Argument(..., metavar="LOCK_ID"),
) -> None:
    """Accept, as a person, a task's change to a soft lock at its verified commit (that commit only)."""
    from orch.verify import judge

    result = judge.ack(ctx(from_source=True), task_id, lock_id)
    pending = ", ".join(result["pending_acks"]) or "none"
    out(
        f"acked {lock_id} for {task_id} at {result['sha'][:12]} (holds for that exact commit only); "
        f"still waiting for an ack: {pending}"
    )


@lock_app.command("add")
def lock_add(
    pattern: str = typer.Argument(..., metavar="PATTERN", help="Glob (gitignore style) or path::Name for a region."),
    hard: bool = typer.Option(False, "--hard", help="Blocks the merge (the default)."),
    soft: bool = typer.Option(False, "--soft", help="Needs orch ack before the merge."),
    kind: str | None = typer.Option(None, "--kind", help="path, test or region (default: from PATTERN)."),
    reason: str | None = typer.Option(None, "--reason", help="Why it is locked (shown to agents)."),
    lock_id: str | None = typer.Option(None, "--id", help="Lock id (default: the next L<n>)."),
) -> None:
    """Lock paths, test files or a code region."""
    from orch.verify import lockcmd

    result = lockcmd.add(ctx(), pattern, mode=_mode(hard, soft), kind=kind, reason=reason, lock_id=lock_id)
    item = result["lock"]
    covers = "" if item["kind"] == "region" else f"; covers {result['covered']} tracked file(s) on the base branch"
    out(f"added {item['mode']} {item['kind']} lock {item['id']}: {item['pattern']}{covers}")


@lock_app.command("require")
def lock_require(
    text: str = typer.Argument(..., metavar="TEXT", help="The requirement, in English."),
    check: str = typer.Option(..., "--check", help="Command that exits 0 when it holds (run through sh -c)."),
    via: str = typer.Option(..., "--via", help="schema, static, test or e2e."),
    hard: bool = typer.Option(False, "--hard", help="A failing check blocks the merge (the default)."),
    soft: bool = typer.Option(False, "--soft", help="A failing check needs orch ack."),
    reason: str | None = typer.Option(None, "--reason"),
    lock_id: str | None = typer.Option(None, "--id", help="Lock id (default: the next R<n>)."),
) -> None:
    """Add a requirement lock: checked on a fresh tree of the task's commit at verify time and after each merge."""
    from orch.verify import lockcmd

    result = lockcmd.require(ctx(), text, check=check, via=via, mode=_mode(hard, soft), reason=reason, lock_id=lock_id)
    item = result["lock"]
    out(f"added {item['mode']} requirement {item['id']}: {item['text']} (check: {item['check']})")


@lock_app.command("rm")
def lock_rm(lock_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove a lock.

    Judging (verify, ack, merge) keeps applying a committed lock until its removal is committed on the
    base branch: an uncommitted edit of .orch/locks.yaml never loosens the rules.
    """
    from orch.verify import lockcmd

    removed = lockcmd.remove(ctx(), lock_id)
    out(f"removed {removed['mode']} {removed['kind']} lock {lock_id}")
    if removed["committed_on"]:
        out(
            f"  the removal takes effect for judging only once .orch/locks.yaml is committed on "
            f"{removed['committed_on']}: until then orch verify and orch merge still apply {lock_id} as committed"
        )


@lock_app.command("list")
def lock_list(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every lock with its pressure: the tasks whose scope overlaps it (blocking, routing around, clear)."""
    from orch.cli import render
    from orch.verify import lockcmd

    rows = lockcmd.pressure(ctx())
    out(render.dumps({"locks": rows}) if as_json else lockcmd.pressure_text(rows))


@hooks_app.command("install")
def hooks_install() -> None:
    """Install the pre-commit shim in the common hooks folder (an existing hook is kept as .legacy)."""
    from orch.verify import hooks as hooks_mod

    for line in hooks_mod.install(ctx().project):
        out(line)


@hooks_app.command("uninstall")
def hooks_uninstall() -> None:
    """Remove orch's shims and restore the hooks they replaced."""
    from orch.verify import hooks as hooks_mod

    for line in hooks_mod.uninstall(ctx().project):
        out(line)


@hooks_app.command("status")
def hooks_status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show whether the hooks are installed and active."""
    from orch.cli import render
    from orch.verify import hooks as hooks_mod

    rows = hooks_mod.status(ctx().project)
    if as_json:
        out(render.dumps({"hooks": rows}))
    else:
        for row in rows:
            legacy = f" (runs {row['hook']}.legacy first)" if row["legacy"] else ""
            out(f"{row['hook']}: {row['state']}{legacy}")


def _run_hook(name: str) -> int:
    from orch.cli import hook

    return hook.main([name])


@hook_app.command("pre-commit")
def hook_pre_commit() -> int:
    """Check the staged change against the locks (and, in a task worktree, its scope)."""
    return _run_hook("pre-commit")


@hook_app.command("claude-pretool")
def hook_claude_pretool() -> int:
    """Claude Code PreToolUse hook: JSON on stdin; exit 2 with the reason on stderr denies the edit or command."""
    return _run_hook("claude-pretool")


@hook_app.command("codex-pretool")
def hook_codex_pretool() -> int:
    """Codex PreToolUse hook for apply_patch and Bash: exit 2 with the reason on stderr denies it."""
    return _run_hook("codex-pretool")


@hook_app.command("gemini-pretool")
def hook_gemini_pretool() -> int:
    """Gemini CLI BeforeTool hook for write_file, replace, run_shell_command: exit 2 with the reason denies it."""
    return _run_hook("gemini-pretool")
