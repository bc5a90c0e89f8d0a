"""Handoffs, both ends: an agent proposes (``orch propose``), a person disposes (``orch approve P2``).

The proposal itself (its checks, the outbox, ``HANDOFF.yaml``) is ``orch.agents.handoff``'s. Here:
``propose`` (what ``orch propose`` runs inside a task's worktree), how a handoff reads in the inbox,
and what an answer does: ``approve`` appends one task to plan.md (``planfile.add_task``: every byte
already there stays as it was) for the target agent, after the proposing task, its brief naming the
artifacts as ``git show`` references; nothing is spun or started, it is an ordinary task from then
on. ``reject`` drops it. The item's file is anyone's to write (``.orch/run/``), so the approval
checks the proposal again, as it would a new one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from orch.agents import handoff
from orch.core import inbox, refs, state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.plan import ID_RE
from orch.core.text import quoted
from orch.inbox.decide import PHRASES, Answer, handles, person

WHERE = "orch propose"


def propose(ctx: Ctx, cwd: Path, fields: dict[str, Any]) -> tuple[str, inbox.Item | None]:
    """``orch propose``: the proposing task and the item asked (None from the box: the supervisor
    posts it when the run ends, once the run's commits are in the task's branch)."""
    from orch.agents import launch, outbox

    project, store = ctx.project, ctx.store
    try:
        task_id = launch.find_task_here(ctx, cwd)
    except InputError as exc:
        raise InputError(exc.message, hint="run orch propose from the task's worktree (or set ORCH_TASK)") from None
    refs.check_id(task_id, cwd=project.root)
    current = state.read(project, store, task_id)
    if current is None:
        raise InputError(f"task {task_id} was never spun", hint="a handoff is proposed by a spun task")
    proposal = handoff.read(fields, where=WHERE, cli=True)
    handoff.check_agent(project, proposal.to, where=WHERE)
    box = outbox.folder(project, task_id)
    if not os.access(project.task_dir(task_id), os.W_OK) and os.access(box, os.W_OK):  # in the box
        worktree = Path(current.get("worktree") or project.here or cwd)
        for path in proposal.artifacts:
            if not os.path.lexists(worktree / path):
                raise InputError(
                    f"{WHERE}: artifact {quoted(path)} is not in the worktree {worktree}",
                    hint="name a file or folder of the task's worktree, from its root (e.g. docs/api.md)",
                )
        handoff.to_outbox(project, task_id, proposal)
        return task_id, None
    return task_id, handoff.post(project, store, task_id, proposal, via=WHERE, where=WHERE)


def _phrase(item: inbox.Item) -> str:
    data = item.get("data")
    return handoff.phrase({**data, "task": item.get("task")}) if isinstance(data, dict) else str(item.get("asked"))


PHRASES["handoff"] = _phrase


@handles("handoff")
def _answer(ctx: Ctx, item: inbox.Item, answer: Answer) -> str:
    if not answer.approve:
        return "dropped: nothing was added to the plan"
    if (answer.options or {}).get("edit") is not None:
        raise InputError(
            f"--edit changes a learning's line; {item['id']} is a handoff",
            hint=f"approve it (orch approve {item['id']} [--id TASK]), then edit its task in .orch/plan.md",
        )
    return approve(ctx, item, (answer.options or {}).get("id"), answer.note)


def approve(ctx: Ctx, item: inbox.Item, task_id: str | None, note: str | None) -> str:
    """Append the task the handoff ``item`` proposes to plan.md; one line saying what was done."""
    from orch.core import planfile

    project, where = ctx.project, f"inbox item {item['id']}"
    found = item.get("data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    proposal = handoff.read({k: data[k] for k in handoff.KEYS if k in data}, where=where)
    source, commit = str(item.get("task") or ""), str(data.get("commit") or "")
    if not ID_RE.fullmatch(source) or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        raise InputError(f"{where}: names no proposing task and commit orch can read", hint=f"orch reject {item['id']}")
    handoff.check_agent(project, proposal.to, where=where)
    handoff.check_artifacts(project, source, commit, proposal.artifacts, where=where)
    marker = f"(handoff {item['id']})"
    plan = planfile.load(project.plan_path)
    for task in plan.tasks:  # approved before, and killed before the answer was written: not twice
        if marker in task.brief_text().split("\n", 1)[0]:
            return f"already in the plan as {task.id} (.orch/plan.md:{task.line}); nothing added"
    if task_id is not None and task_id not in plan.ids():  # one in the plan: add_task names its line
        _free(ctx, task_id, item_id=item["id"])
    new_id = task_id or _next_id(ctx, plan.ids())
    fields = {"deps": source, "agent": proposal.to, "scope": proposal.scope}
    brief = _brief(proposal, source, commit, marker, who=person(ctx), note=note)
    added = planfile.add_task(
        project.plan_path, ctx.store, task_id=new_id, title=proposal.title, fields=fields, brief=brief
    )
    ctx.log("PENDING", "PLAN_ADD", f"{added.title} (handoff {item['id']} from {source})", task=added.id)
    return (
        f"added {added.id} to .orch/plan.md:{added.line} for agent {proposal.to}, after {source}; "
        f"nothing runs until you start it: orch run {added.id} (once {source} is merged)"
    )


def _next_id(ctx: Ctx, ids: list[str]) -> str:
    """``T<n>``: one past the highest ``T<n>`` in the plan, with no branch or run folder yet."""
    numbers = [int(i[1:]) for i in ids if re.fullmatch(r"T[0-9]{1,9}", i)]
    n = max(numbers, default=0) + 1
    heads = refs.branch_heads(ctx.project.root)
    while f"T{n}" in ids or refs.branch_name(f"T{n}") in heads or ctx.project.task_dir(f"T{n}").exists():
        n += 1
    return f"T{n}"


def _free(ctx: Ctx, task_id: str, *, item_id: str) -> None:
    """Refuse an id an earlier task still holds (its branch or run folder); the plan's own ids are
    ``add_task``'s to refuse, with the line that holds them."""
    if not ID_RE.fullmatch(task_id):
        return  # add_task says what a task id is
    held = None
    if refs.branch_name(task_id) in refs.branch_heads(ctx.project.root):
        held = f"branch {refs.branch_name(task_id)}"
    elif ctx.project.task_dir(task_id).exists():
        held = f"a run folder {ctx.project.rel(ctx.project.task_dir(task_id))}"
    if held is not None:
        raise InputError(
            f"task id {task_id} is taken: an earlier task left {held}",
            hint=f"pick another id: orch approve {item_id} --id ID (or leave --id out for the next free one)",
        )


def _brief(proposal: handoff.Proposal, source: str, commit: str, marker: str, *, who: str, note: str | None) -> str:
    """The new task's brief: who proposed it, the proposal's brief (quoted: no line of it can open a
    task or a field list), the artifacts as references, the preconditions, and why."""
    lines = [f"Proposed by task {source} {marker}, approved by {who}.", "", *_quote(proposal.brief), ""]
    if proposal.artifacts:
        lines += [f"Artifacts from {source}'s branch, proposed at commit {commit}:", ""]
        for path in proposal.artifacts:
            lines.append(
                f"- {_code(f'git show orch/{source}:{path}')} (as proposed: {_code(f'git show {commit[:12]}:{path}')})"
            )
        lines.append("")
    if proposal.preconditions:
        lines += ["Before you start, check:", "", *(f"- [ ] {p}" for p in proposal.preconditions), ""]
    lines += [f"Why {source} proposed it (confidence {proposal.confidence:g}):", "", *_quote(proposal.reason)]
    if note and note.strip():
        lines += ["", f"A note from {who}, who approved it:", "", *_quote(note)]
    return "\n".join(lines)


def _quote(text: str) -> list[str]:
    return [f"> {line}" if line.strip() else ">" for line in text.replace("\r", "").splitlines()]


def _code(text: str) -> str:
    """``text`` as inline code, with a fence of backticks longer than any run of them in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
