"""The merge ceremony: ``merge``, ``ack-base``, ``conflicts``; and ``demo``."""

from __future__ import annotations

from pathlib import Path

from orch.cli.app import app, ctx, typer
from orch.cli.output import out
from orch.core.errors import ExitCode

# -- merge ceremony ---------------------------------------------------------------------------------


@app.command()
def merge(
    ids: list[str] | None = typer.Argument(None, metavar="ID", help="Tasks to merge (default: every spun task)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Forecast conflicts with git merge-tree; change nothing."),
    batch: bool = typer.Option(False, "--batch", help="Test many merges at once and bisect failures."),
    resume: bool = typer.Option(False, "--resume", help="Finish (or roll back) an interrupted ceremony."),
    abort: bool = typer.Option(False, "--abort", help="Roll back an interrupted ceremony that has not landed."),
    into: str | None = typer.Option(None, "--into", help="Branch to merge into (default: the base branch)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON (schemas/merge_report.schema.json)."),
) -> int:
    """Merge verified work in dependency order, test after each merge, undo what breaks the tests."""
    from orch.cli.fast import merge_command

    return merge_command(
        ids or [], dry_run=dry_run, batch=batch, resume=resume, abort=abort, into=into, as_json=as_json
    )


@app.command("ack-base")
def ack_base(
    sha: str = typer.Argument(..., metavar="SHA", help="The commit of the base branch to accept as it is (its tip)."),
    into: str | None = typer.Option(None, "--into", help="The branch (default: the base branch)."),
) -> None:
    """Accept, as a person, work that reached the base branch outside a merge ceremony (up to SHA)."""
    from orch.integrate import basecheck

    target, full = basecheck.acknowledge(ctx(), sha, into)
    out(f"{target} up to {full[:12]} acknowledged: orch merge no longer stops at the work it holds")


@app.command()
def conflicts(
    as_json: bool = typer.Option(False, "--json", help="Print the forecast as JSON (schemas/conflicts.schema.json)."),
) -> int:
    """Forecast conflicts between tasks still in flight, pairwise and with the base (git merge-tree)."""
    from orch.integrate import forecast

    found = forecast.conflicts(ctx())
    code = ExitCode.CHECK_FAILED if found.clashes else ExitCode.OK
    if as_json:
        from orch.cli import render

        out(render.dumps(found.to_json()))
        return code
    if not found.tasks:
        out("no task branches in flight")
    elif not found.clashes:
        out(f"no conflicts among {len(found.tasks)} task branch(es): {', '.join(found.tasks)}")
    for clash in found.clashes:
        out(f"{clash.a} x {clash.b}: {len(clash.paths)} conflicting path(s)")
        for path in clash.paths:
            out(f"    {path}")
    return code


@app.command()
def demo(
    folder: Path | None = typer.Option(None, "--dir", help="Build the demo repository here (new or empty folder)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the throwaway repository to look around."),
) -> None:
    """Run a whole orchestration in a throwaway repository: scripted agents, no model, no network."""
    from orch.tasks import demo as demo_mod

    result = demo_mod.run(folder, keep=keep, echo=out)
    states = ", ".join(f"{t} {s}" for t, s in result.states.items())
    out(f"\ndemo finished in {result.seconds:.1f}s: {states}")
    if result.kept:
        out(f"the demo repository is in {result.folder / 'calc'}")
