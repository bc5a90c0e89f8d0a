"""``orch policy check``: how the command policy judges a shell command (anyone may ask)."""

from __future__ import annotations

from orch.cli.app import ctx, policy_app, typer
from orch.cli.output import out


@policy_app.command("check")
def policy_check(
    command: str = typer.Argument(..., metavar="COMMAND", help="A shell command line, quoted as one argument."),
    cwd: str | None = typer.Option(None, "--cwd", help="The folder it would run in (default: here)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Say whether an agent's shell command is SAFE, RISKY or CRITICAL, and which rule says so.

    Each command of the line is judged (a | b && c is three) by the policy in force: the one
    committed on the base branch (orch's built-in rules when none is), made only stricter by the
    working copy of .orch/policy.yaml. The worst tier wins. SAFE runs, RISKY runs after a safety
    snapshot of the worktree, CRITICAL waits for a person (orch inbox, orch approve).
    """
    from orch.cli import render
    from orch.verify import policy

    verdict = policy.check(ctx(), command, cwd=cwd)
    out(render.dumps(policy.as_json(verdict)) if as_json else policy.explain(verdict))
