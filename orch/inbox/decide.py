"""People dispose: ``orch inbox``, ``orch approve ID`` and ``orch reject ID``.

Every kind of "waiting for a person" is an item of ``orch.core.inbox``. Some are asked where they
happen (a gate by the agent hook, a handoff by ``orch propose``, a plan by the supervisor); two are
read off the tasks' own state whenever the inbox is looked at (``sync``): a soft lock a verdict waits
to have acked (``ack``) and the question of an agent that reported BLOCKED (``question``). An item
whose cause went away (the branch moved on, the task was retried) is withdrawn the same way.

An answer records who gave it (``git config user.email``), when, and the person's note, in the item
and in the event log (``APPROVE`` / ``REJECT``), and then does what the kind says (``HANDLERS``).
Anything that later honours an answer (the gate hook letting a command through) checks that the
event log holds the same answer (``answered_by_a_person``): an answer written into the item file by
any other process is not one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orch.core import eventlog, git, inbox, state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.plan import ID_RE

Item = inbox.Item


@dataclass
class Answer:
    approve: bool
    note: str | None = None
    options: dict[str, Any] | None = None  # a kind's own options (--edit, --id)


# What an answer does, per kind: returns one line saying what it did (kept as the item's ``outcome``).
HANDLERS: dict[str, Callable[[Ctx, Item, Answer], str]] = {}
# Whether an open item of a kind still waits, given its task's status (``sync`` withdraws it if not).
STILL_WAITS: dict[str, Callable[[Item, state.Status | None], bool]] = {}


def handles(kind: str) -> Callable[[Callable[[Ctx, Item, Answer], str]], Callable[[Ctx, Item, Answer], str]]:
    def register(fn: Callable[[Ctx, Item, Answer], str]) -> Callable[[Ctx, Item, Answer], str]:
        HANDLERS[kind] = fn
        return fn

    return register


def _kinds() -> None:
    """Import the modules that register the kinds' handlers and phrasings (one per line)."""
    import importlib

    modules: list[str] = [
        # the kind modules of orch.inbox, one per line:
        "budget",
        "gates",
        "handoff",
        "landing",
        "learnings",
        "plans",
    ]
    for name in modules:
        importlib.import_module(f"orch.inbox.{name}")


def person(ctx: Ctx) -> str:
    """Who answers: ``git config user.email`` (else user.name, else the login name)."""
    import getpass

    for key in ("user.email", "user.name"):
        r = git.run(["config", "--get", key], cwd=ctx.project.root, check=False)
        if r.ok and r.stdout.strip():
            return r.stdout.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- the items read off the tasks' state --------------------------------------------------------------


def sync(ctx: Ctx) -> None:
    """Ask for what the tasks wait on (acks, agents' questions); withdraw what no longer waits."""
    project, store = ctx.project, ctx.store
    statuses = state.read_all(project, store)
    wanted: dict[str, tuple[str, str | None, str, dict[str, Any]]] = {}
    for task_id, st in statuses.items():
        verdict = st.get("verdict") or {}
        for lock_id in verdict.get("pending_acks") or []:
            key = f"ack:{task_id}:{lock_id}@{verdict.get('sha')}"
            asked = f"task {task_id} changed what soft lock {lock_id} protects (at {str(verdict.get('sha'))[:12]})"
            wanted[key] = ("ack", task_id, asked, {"lock": lock_id, "sha": verdict.get("sha")})
        question = _question_of(st)
        if question is not None:
            key = f"question:{task_id}:{st.get('finished_at')}"
            wanted[key] = ("question", task_id, question, {"finished_at": st.get("finished_at")})
    items = inbox.read_all(project, store)
    # Asked once: an item answered (or open) is not asked again; one withdrawn is, if its cause is back.
    have = {i.get("key") for i in items if i.get("state") != "withdrawn"}
    for key, (kind, task, asked, data) in wanted.items():
        if key not in have:
            inbox.post(project, store, kind, task=task, asked=asked, data=data, key=key)
    for item in items:
        if item.get("state") == "open" and item.get("kind") in ("ack", "question") and item.get("key") not in wanted:
            inbox.change(project, store, item["id"], _withdrawn)
        waits = STILL_WAITS.get(str(item.get("kind")))
        if item.get("state") == "open" and waits is not None and not waits(item, statuses.get(str(item.get("task")))):
            inbox.change(project, store, item["id"], _withdrawn)


def _question_of(st: state.Status) -> str | None:
    """The question of an agent that ended its run BLOCKED (its last BLOCKED note), or None."""
    if st.get("state") != "BLOCKED" or not str(st.get("reason") or "").startswith("the agent reported BLOCKED"):
        return None
    for note in reversed(st.get("notes") or []):
        if note.get("state") == "BLOCKED":
            return str(note.get("text") or "")
    return None


def _withdrawn(item: Item) -> None:
    if item.get("state") == "open":
        item.update(state="withdrawn", answered_at=eventlog.utcnow(), outcome="no longer waits (the task moved on)")


# -- listing -------------------------------------------------------------------------------------------


def waiting(ctx: Ctx) -> list[Item]:
    """Everything open, oldest first, after ``sync``."""
    _kinds()
    sync(ctx)
    return inbox.open_items(ctx.project, ctx.store)


def answer_command(item: Item) -> str:
    if item["kind"] == "plan" and item.get("task"):
        return f"orch approve {item['task']} | orch reject {item['task']} --note TEXT"
    if item["kind"] == "question":
        return (
            f"orch approve {item['id']} --note ANSWER (retries {item.get('task')} with it) | orch reject {item['id']}"
        )
    if item["kind"] == "handoff":
        return f"orch approve {item['id']} [--id TASK] | orch reject {item['id']}"
    if item["kind"] == "learning":
        return f"orch approve {item['id']} [--edit TEXT] | orch reject {item['id']}"
    return f"orch approve {item['id']} | orch reject {item['id']}"


def age_of(item: Item) -> float | None:
    import time
    from datetime import datetime

    try:
        when = datetime.fromisoformat(str(item.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - when.timestamp())


# How a kind's question reads in the inbox; kinds without a phrasing show what they asked.
PHRASES: dict[str, Callable[[Item], str]] = {}


def phrase(item: Item) -> str:
    fn = PHRASES.get(item["kind"])
    return fn(item) if fn is not None else str(item.get("asked") or "")


def count(ctx: Ctx) -> int:
    """How many items wait (for ``orch status`` and ``orch up``)."""
    return len(waiting(ctx))


# -- answering -------------------------------------------------------------------------------------------


def find(ctx: Ctx, ref: str) -> Item:
    """The open item ``ref`` names: its id, or a task id for that task's open plan item."""
    project, store = ctx.project, ctx.store
    item = inbox.read(project, store, ref)
    if item is None:
        plans = [i for i in inbox.open_items(project, store) if i.get("kind") == "plan" and i.get("task") == ref]
        if plans:
            return plans[-1]
        st = state.read(project, store, ref, refresh=False) if ID_RE.fullmatch(ref) else None
        if st is not None:  # a task id: its plan is what a person answers by naming the task
            raise InputError(f"task {ref} has no plan waiting for approval (it is {st.get('state')})", hint=_NO_PLAN)
        raise InputError(f"no inbox item {ref!r}", hint="see what waits: orch inbox")
    if item.get("state") != "open":
        by = f" by {item.get('answered_by')}" if item.get("answered_by") else ""
        raise InputError(f"inbox item {ref} is {item.get('state')}{by} already: it waits for nobody")
    return item


_NO_PLAN = "see what waits: orch inbox (a task with '- approve: plan' asks once its planning run ends)"


def decide(ctx: Ctx, ref: str, answer: Answer) -> Item:
    """``orch approve`` / ``orch reject``: do what the kind says, then record the answer (an answer
    whose effect failed leaves the item open, with the error said)."""
    _kinds()
    sync(ctx)
    item = find(ctx, ref)
    _check_options(item, answer)
    with ctx.store.lock(f"inbox-{item['id']}"):  # one answer at a time per item
        item = find(ctx, item["id"])
        who, now = person(ctx), eventlog.utcnow()
        handler = HANDLERS.get(item["kind"])
        word = "approved" if answer.approve else "rejected"
        outcome = handler(ctx, item, answer) if handler is not None else word

        def record(it: Item) -> None:
            it.update(state=word, answered_at=now, answered_by=who, note=answer.note, outcome=outcome)

        # The log line first: killed before the item is written, the item stays open and is answered
        # again (a log line without its item honours nothing); the other way round it would read as
        # answered, and never be honoured.
        note = f" note={answer.note!r}" if answer.note else ""
        action = "APPROVE" if answer.approve else "REJECT"
        ctx.log("INBOX", action, f"{item['id']} {item['kind']} by {who} at {now}{note}"[:500], task=item.get("task"))
        item = inbox.change(ctx.project, ctx.store, item["id"], record)
    eventlog.nudge(ctx.project.run_dir / eventlog.WAKE)  # orch up, woken by the log line, reads the item now
    return item


OPTIONS = {"learning": {"edit"}, "handoff": {"id"}}  # the kinds' own options of orch approve


def _check_options(item: Item, answer: Answer) -> None:
    """An option of another kind (``--edit`` on a gate) is a mistake to stop, not to ignore."""
    from orch.core.errors import UsageError

    for key, value in (answer.options or {}).items():
        flag = f"--{key}"
        if key not in OPTIONS.get(str(item["kind"]), set()):
            kinds = [k for k, keys in OPTIONS.items() if key in keys]
            raise UsageError(
                f"{flag} is for {' and '.join(kinds) or 'no'} items, and {item['id']} is "
                f"{'an' if str(item['kind'])[:1] in 'aeiou' else 'a'} {item['kind']} item",
                hint=f"check the id: orch inbox (then orch approve {item['id']} without {flag})",
            )
        if not str(value).strip():
            raise UsageError(f"{flag} needs a value, not an empty one")


def answered_by_a_person(ctx: Ctx, item: Item) -> bool:
    """Whether ``item``'s answer is one ``orch approve``/``reject`` gave: the event log holds it, by the
    same person at the same time (an answer only written into the file is not honoured)."""
    if item.get("state") not in ("approved", "rejected"):
        return False
    action = "APPROVE" if item["state"] == "approved" else "REJECT"
    needle = f"{item['id']} {item['kind']} by {item.get('answered_by')} at {item.get('answered_at')}"
    events, _ = eventlog.read_from(ctx.project.log_path)
    return any(e.action == action and e.result.startswith(needle) for e in events)


# -- the kinds that exist before the rest of the inbox: acks and questions -----------------------------


@handles("ack")
def _ack(ctx: Ctx, item: Item, answer: Answer) -> str:
    if not answer.approve:
        return "rejected: the task stays quarantined until its branch changes what the lock protects no more"
    from orch.verify import judge

    judge.ack(ctx, str(item["task"]), str(item["data"]["lock"]))
    return f"acked {item['data']['lock']} for {item['task']} at {str(item['data'].get('sha'))[:12]}"


@handles("question")
def _question(ctx: Ctx, item: Item, answer: Answer) -> str:
    if not answer.approve:
        return "dismissed; the task stays BLOCKED"
    if not answer.note:
        raise InputError(
            f"approving {item['id']} answers the agent's question: give the answer",
            hint=f"orch approve {item['id']} --note 'your answer' (it retries {item['task']} with it)",
        )
    from orch.tasks import retry

    retry.retry(ctx, str(item["task"]), note=f"{item['asked']}\n\nA person's answer: {answer.note}")
    return f"answered; {item['task']} retried with the answer in its brief"
