"""``orch inbox``, ``orch approve``, ``orch reject``: what waits for a person, and their answers."""

from __future__ import annotations

import typer

from orch.cli.app import app, ctx
from orch.cli.output import out


@app.command()
def inbox(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON (schemas/inbox_item.schema.json items)."),
) -> None:
    """Everything waiting for a person, oldest first, with the command that answers it."""
    from orch.cli import render
    from orch.core import inbox as inbox_file
    from orch.core.text import age
    from orch.inbox import decide

    c = ctx()
    items = decide.waiting(c)
    if as_json:
        out(render.dumps({"items": [{**i, "answer_with": decide.answer_command(i)} for i in items]}))
        return
    if not items:
        out("nothing waits for a person")
    else:
        rows = [
            [
                i["id"],
                i["kind"],
                i.get("task") or "-",
                age(decide.age_of(i)),
                decide.phrase(i),
                decide.answer_command(i),
            ]
            for i in items
        ]
        text = render.table(["ID", "KIND", "TASK", "SINCE", "ASKED", "ANSWER WITH"], rows)
        if text is not None:
            out(text)
    for problem in inbox_file.problems(c.project, c.store):
        out(f"note: {problem} (not shown)")


def _answer(ref: str, approve: bool, note: str | None, **options: str | None) -> None:
    from orch.inbox import decide

    item = decide.decide(ctx(), ref, decide.Answer(approve, note, {k: v for k, v in options.items() if v is not None}))
    out(f"{item['id']} ({item['kind']}{', task ' + item['task'] if item.get('task') else ''}): {item['outcome']}")


@app.command()
def approve(
    ref: str = typer.Argument(..., metavar="ID", help="An inbox item (G3, P2, ...), or a task id for its plan."),
    note: str | None = typer.Option(None, "--note", help="Your note, kept with the answer."),
    edit: str | None = typer.Option(None, "--edit", help="A learning: your line for AGENTS.md (SECTION: rule)."),
    task_id: str | None = typer.Option(None, "--id", help="A handoff: the id of the task it becomes."),
) -> None:
    """Say yes to an inbox item; what that does depends on its kind (see orch inbox)."""
    _answer(ref, True, note, edit=edit, id=task_id)


@app.command()
def reject(
    ref: str = typer.Argument(..., metavar="ID", help="An inbox item (G3, P2, ...), or a task id for its plan."),
    note: str | None = typer.Option(None, "--note", help="Why, kept with the answer (a plan's agent reads it)."),
) -> None:
    """Say no to an inbox item; what that does depends on its kind (see orch inbox)."""
    _answer(ref, False, note)
