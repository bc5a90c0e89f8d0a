"""Gates: the shell commands agents run, judged by the command policy before they run.

orch's agent hooks see each shell command an agent's CLI is about to run (Claude Code's and Codex's
``PreToolUse`` on ``Bash``, Gemini CLI's ``BeforeTool`` on ``run_shell_command``). The policy in force
(``orch.verify.policy``) says how risky it is:

- SAFE runs.
- RISKY runs once the worktree is kept as a safety snapshot (``orch.verify.safety``); in a planning
  run (``ORCH_PHASE=plan``, ``orch.agents.planphase``) only SAFE commands run.
- CRITICAL is denied (exit 2, with ``confirmation_required`` on stderr: the command, why, the inbox
  item) and waits for a person as a ``gate`` item holding the exact command, the task and the folder.
  ``orch approve G3`` lets that exact command (same text, same task, same folder) through once,
  within an hour of the approval; a second run needs a new approval; a rejection holds for that
  hour too. An approval counts only if ``orch approve`` gave it (``decide.answered_by_a_person``).

In orch's box the hook cannot write the inbox: it asks, and says it used an approval, through the
task's outbox, and the supervisor posts and records (``orch.agents.gatemail``); the hook waits a few
seconds for that (the supervisor looks every two), so the agent is told the item's id and an approval
is used once. Hooks are a guardrail, not a wall: a command hidden in a script the agent wrote and then
ran is judged by what the line says (``python x.py`` is RISKY, unknown), and the box bounds the rest.
"""

from __future__ import annotations

import os
import time
from typing import Any

from orch.agents import gatemail
from orch.core import inbox
from orch.core.context import Ctx
from orch.core.plan import ID_RE
from orch.inbox import decide
from orch.verify import hookrun, policy, safety

SHELL_TOOLS = {"Bash", "run_shell_command"}  # Claude Code and Codex; Gemini CLI
WAIT = 8.0  # seconds the hook in the box waits for the supervisor (hooks time out at 30)
POLL = 0.2


def is_shell_call(data: Any) -> bool:
    return isinstance(data, dict) and data.get("tool_name") in SHELL_TOOLS


def shell_hook(agent: str, data: dict[str, Any]) -> tuple[int, str]:
    """(exit code, stderr) for one shell tool call: 0 lets it run, 2 denies it. A failure of orch's
    own denies it too (the command is not known to be safe)."""
    from orch.core.errors import OrchError

    try:
        return _shell_hook(agent, data)
    except OrchError:
        raise  # broken rules: the hook's caller says so and refuses
    except Exception as exc:
        return 2, f"orch: the command policy could not judge this command ({type(exc).__name__}: {exc}); it did not run"


def _shell_hook(agent: str, data: dict[str, Any]) -> tuple[int, str]:
    args = data.get("tool_input")
    if not isinstance(args, dict):
        args = {}
    command = args.get("command")
    if not isinstance(command, str):
        return 2, "orch: the hook input names no command; refusing it"
    given = data.get("cwd")
    cwd = os.path.normpath(given) if isinstance(given, str) and os.path.isabs(given) else os.getcwd()
    inner = args.get("dir_path") or args.get("directory")  # Gemini CLI runs it there
    if isinstance(inner, str) and inner:
        cwd = os.path.normpath(os.path.join(cwd, inner))
    found = _where(cwd)
    if found is None:
        return 0, ""  # not a task of orch's: nothing to judge by
    place, task = found
    from orch.core.repo import find_project

    ctx = Ctx(find_project(place.root), from_source=True)
    verdict = policy.judge(policy.in_force(ctx), command, policy.Place(cwd, place.top, place.root))
    if verdict.tier == "SAFE":
        return 0, ""
    if os.environ.get("ORCH_PHASE") == "plan":  # a planning run reads; it changes nothing
        return 2, (
            f"orch: this command is refused: this run is for a plan only, and the command policy says it is "
            f"{verdict.tier} ({'; '.join(f.rule for f in verdict.worst())}), not a read.\n"
            "  Read what you need with read-only commands and write your plan to PLAN.md: a person approves the\n"
            "  plan before any code is written, and a new run carries it out."
        )
    if verdict.tier == "RISKY":
        return _risky(ctx, task, place.top, command)
    return _gate(ctx, task, cwd, command, verdict, agent)


def _where(cwd: str) -> tuple[hookrun.Place, str] | None:
    """The task's worktree and id: the agent's environment says which (``ORCH_WORKTREE``,
    ``ORCH_TASK``: the agent's commands cannot change its CLI's environment), else where it runs."""
    place = None
    worktree = os.environ.get("ORCH_WORKTREE")
    if worktree and os.path.isdir(worktree):
        place = hookrun.locate(worktree)
    if place is None and os.path.isdir(cwd):
        place = hookrun.locate(cwd)
    if place is None:
        place = hookrun.locate(os.getcwd())
    if place is None:
        return None
    task = os.environ.get("ORCH_TASK") or place.task
    return (place, task) if task and ID_RE.fullmatch(task) else None


def _boxed(ctx: Ctx) -> bool:
    """In orch's box: ``.orch/run`` cannot be written (what the box makes read-only)."""
    return not os.access(ctx.project.run_dir, os.W_OK)


def _risky(ctx: Ctx, task: str, top: str, command: str) -> tuple[int, str]:
    from orch.core.errors import OrchError

    try:
        ref, new = safety.snapshot(top, task, command)
    except OrchError as exc:
        first = (str(exc).splitlines() or ["?"])[0]
        why = f"orch could not keep a safety snapshot of the worktree first ({first})"
        return 2, f"orch: this RISKY command did not run: {why}"
    if new and not _boxed(ctx):
        ctx.log("RUNNING", "SAFETY", f"{ref} before `{command[:200]}`", task=task)
    return 0, ""


# -- CRITICAL: gates -------------------------------------------------------------------------------


def _gate(ctx: Ctx, task: str, cwd: str, command: str, verdict: policy.Verdict, agent: str) -> tuple[int, str]:
    project, store = ctx.project, ctx.store
    key = f"gate:{gatemail.key(task, cwd, command)}"
    mine = [
        i for i in inbox.read_all(project, store)
        if i.get("kind") == "gate" and i.get("key") == key and i.get("task") == task
        and (i.get("data") or {}).get("command") == command and (i.get("data") or {}).get("cwd") == cwd
    ]  # fmt: skip
    boxed = _boxed(ctx)
    expired = used = None
    for item in reversed(mine):
        if item.get("state") != "approved":
            continue
        if (item.get("data") or {}).get("used"):
            used = used or item["id"]
            continue
        if not decide.answered_by_a_person(ctx, item):
            continue
        if gatemail.expired(item):
            expired = expired or item["id"]
            continue
        why = _use(ctx, task, item["id"], boxed)
        if why is None:
            return 0, ""
        return 2, f"orch: confirmation_required: {command}\n  {item['id']} was approved, but {why}"
    said_no = next((i for i in reversed(mine) if i.get("state") == "rejected"), None)
    if said_no is not None and decide.answered_by_a_person(ctx, said_no) and not gatemail.expired(said_no):
        note = f" ({said_no['note']})" if said_no.get("note") else ""
        no = f"a person said no{note}; do not run it, nor anything that does the same"
        return 2, _denied(verdict, said_no["id"], no)
    waiting = next((i for i in mine if i.get("state") == "open"), None)
    if waiting is not None:
        item_id: str | None = waiting["id"]
    elif boxed:
        gatemail.ask(gatemail.folder(project, task), task, cwd, command, agent)
        item_id = _wait_for(ctx, lambda: next((i["id"] for i in _items(ctx, key) if i.get("state") == "open"), None))
    else:
        item_id = gatemail.post(project, store, task, command, cwd, agent, verdict)["id"]
    lapsed = f" (the approval {expired} expired: approvals hold for an hour)" if expired else ""
    if used and not expired:
        lapsed = f" (the approval {used} was used once already: each run needs its own)"
    return 2, _denied(verdict, item_id, f"a person must approve it first{lapsed}")


def _items(ctx: Ctx, key: str) -> list[inbox.Item]:
    return [i for i in inbox.read_all(ctx.project, ctx.store) if i.get("key") == key and i.get("kind") == "gate"]


def _wait_for(ctx: Ctx, found: Any) -> Any:
    """What ``found()`` returns once it is not None, or None after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        value = found()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(POLL)


def _use(ctx: Ctx, task: str, item_id: str, boxed: bool) -> str | None:
    """Use approval ``item_id`` once: None when it is this run's, else why not."""
    project, store = ctx.project, ctx.store
    if not boxed:
        try:
            gatemail.record_use(project, store, task, item_id, os.urandom(16).hex())
        except gatemail.Refused as exc:
            return str(exc)
        return None
    nonce = gatemail.claim(gatemail.folder(project, task), item_id)
    if nonce is None:
        return "another command is using it right now"

    def used() -> dict[str, Any] | None:
        item = inbox.read(project, store, item_id) or {}
        mark = (item.get("data") or {}).get("used")
        return mark if isinstance(mark, dict) else None

    mark = _wait_for(ctx, used)
    if mark is None:
        return "orch could not record its use in time (the supervisor did not answer); try again"
    return None if mark.get("nonce") == nonce else "it was used already: a second run needs a new approval"


def _denied(verdict: policy.Verdict, item_id: str | None, what: str) -> str:
    lines = [f"orch: confirmation_required: this command is CRITICAL under the command policy; it did not run: {what}."]
    lines.append(f"  command: {verdict.command}")
    for f in verdict.worst():
        where = f"the line {f.shown}" if f.origin == "the line" else f.shown
        lines.append(f"  why: {where}: {f.rule}: {f.why}" + (f" ({f.path})" if f.path else ""))
    if item_id is not None:
        lines.append(f"  inbox: {item_id} (a person answers with orch approve {item_id} or orch reject {item_id})")
    else:
        lines.append("  inbox: asked; the item appears in orch inbox within seconds")
    lines.append(
        "  Once approved, the same command run again from the same folder runs once, within an hour. Do not work "
        "around it with other commands. Go on with other work; if you cannot do without it, report BLOCKED "
        f"(orch report BLOCKED --note 'waiting for {item_id or 'a gate'}') and stop."
    )
    return "\n".join(lines)


# -- the inbox's side: how a gate reads, and what an answer does ---------------------------------------


def _phrase(item: inbox.Item) -> str:
    data = item.get("data") or {}
    command = str(data.get("command") or "")
    shown = command if len(command) <= 120 else command[:120] + "..."
    why = "; ".join(str(w) for w in data.get("why") or [])[:200]
    where = f" in {data['cwd']}" if data.get("cwd") else ""
    return f"run `{shown}`{where}? CRITICAL: {why}"


decide.PHRASES["gate"] = _phrase


@decide.handles("gate")
def _answer(ctx: Ctx, item: inbox.Item, answer: decide.Answer) -> str:
    minutes = f"{gatemail.ttl() / 60:g}"
    if not answer.approve:
        return f"rejected: the agent is told no if it asks again within {minutes} minutes"
    return f"approved: the agent may run it once, from the same folder, within {minutes} minutes"
