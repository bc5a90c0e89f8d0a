"""``orch timeline``: which agent ran, what it saw, what it returned, what orch did with it."""

from __future__ import annotations

import typer

from orch.cli.app import app, ctx
from orch.cli.output import out


@app.command()
def timeline(
    ids: list[str] = typer.Argument(None, metavar="ID", help="Tasks to show (default: every task in the log)."),
    as_json: bool = typer.Option(False, "--json", help="Print the spans as JSON (schemas/timeline.schema.json)."),
    as_mermaid: bool = typer.Option(False, "--mermaid", help="Print a Mermaid gantt chart."),
) -> None:
    """Each task's spans from the event log on one time axis: queued, each iteration (its brief, what
    it returned, orch's verdict), verify, waiting for a person, merge."""
    import shutil

    from orch.cli import render
    from orch.core.errors import UsageError
    from orch.views import timeline as view
    from orch.views import timelineout

    if as_json and as_mermaid:
        raise UsageError("--json and --mermaid cannot be given together", hint="pick one")
    data = view.build(ctx(), list(ids or []))
    if as_json:
        out(render.dumps(data))
        return
    if as_mermaid:
        out(timelineout.mermaid(data))
        return
    if not data["tasks"]:
        whose = f"of {', '.join(ids)} " if ids else "of any task "
        out(f"the event log holds no events {whose}yet (.orch/run/log)")
        return
    width = shutil.get_terminal_size((100, 24)).columns
    rows, id_w, bar = timelineout.gantt(data, width)
    out(timelineout.axis(data, id_w, bar))
    if render.fancy():
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False, soft_wrap=True)
        for row in rows:
            line = Text(f"{row.task:<{id_w}} ")  # Text, never markup: ids and states are anyone's
            for char, style in row.cells:
                line.append(char, style=style or None)
            line.append(f" {row.state}", style=render.STATE_STYLE.get(row.state, ""))
            console.print(line)
    else:
        for row in rows:
            out(f"{row.task:<{id_w}} {''.join(c for c, _ in row.cells)} {row.state}".rstrip())
    for said in timelineout.legend(width):
        out(said)
    for said in timelineout.details(data):
        out(said)
