"""What the dashboard's buttons do: each calls the function its CLI command calls, so the same checks
run and the same lines reach the event log (``APPROVE``/``REJECT``, ``ACK``, ``LOCK_ADD``/``LOCK_RM``,
``STOP``, the level change).

A lock change asks first: without ``confirm=yes`` the answer is a confirmation to show, not a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orch.core.context import Ctx, open_ctx
from orch.core.errors import InputError, UsageError

FIELD_MAX = 2000
ACTIONS = ("approve", "reject", "ack", "level", "lock-add", "lock-rm", "stop")


@dataclass
class Done:
    said: str = ""  # what was done, one line
    confirm: str | None = None  # a question to confirm (the action has not run)
    fields: dict[str, str] | None = None  # the form's fields, sent again with confirm=yes


def run(root: Path, action: str, form: dict[str, str]) -> Done:
    """Run one dashboard action with the form's fields; ``OrchError`` as the CLI raises it."""
    if action not in ACTIONS:
        raise UsageError(f"no action {action!r}", hint=f"one of {', '.join(ACTIONS)}")
    for key, value in form.items():
        if len(value) > FIELD_MAX or "\0" in value:
            raise InputError(f"field {key} is too long or holds a NUL")
    ctx = open_ctx(root)
    handler = {
        "approve": _approve,
        "reject": _reject,
        "ack": _ack,
        "level": _level,
        "lock-add": _lock_add,
        "lock-rm": _lock_rm,
        "stop": _stop,
    }[action]
    return handler(ctx, form)


def _need(form: dict[str, str], key: str) -> str:
    value = (form.get(key) or "").strip()
    if not value:
        raise UsageError(f"{key} is needed")
    return value


def _answer(ctx: Ctx, form: dict[str, str], approve: bool) -> Done:
    from orch.inbox import decide

    note = (form.get("note") or "").strip() or None
    item = decide.decide(ctx, _need(form, "id"), decide.Answer(approve, note, {}))
    task = f", task {item['task']}" if item.get("task") else ""
    return Done(f"{item['id']} ({item['kind']}{task}): {item['outcome']}")


def _approve(ctx: Ctx, form: dict[str, str]) -> Done:
    return _answer(ctx, form, True)


def _reject(ctx: Ctx, form: dict[str, str]) -> Done:
    return _answer(ctx, form, False)


def _ack(ctx: Ctx, form: dict[str, str]) -> Done:
    from orch.verify import judge

    task, lock = _need(form, "task"), _need(form, "lock")
    result = judge.ack(ctx.judging(), task, lock)
    return Done(f"acked {lock} for {task} at {result['sha'][:12]} (that exact commit only)")


def _level(ctx: Ctx, form: dict[str, str]) -> Done:
    from orch.views import levels

    done = levels.set_level(ctx, _need(form, "path"), _need(form, "level"))
    was = f" (was {done['previous']})" if done.get("previous") else ""
    return Done(f"{done['glob']} is at level {done['level']}{was}: {done['where']}")


def _lock_add(ctx: Ctx, form: dict[str, str]) -> Done:
    from orch.verify import lockcmd

    pattern = _need(form, "pattern")
    mode = form.get("mode") or "hard"
    if mode not in ("hard", "soft"):
        raise UsageError(f"mode must be hard or soft (got {mode!r})")
    kind = form.get("kind") or None
    reason = (form.get("reason") or "").strip() or None
    if form.get("confirm") != "yes":
        fields = {"pattern": pattern, "mode": mode, "kind": kind or "", "reason": reason or ""}
        what = f"Add a {mode} {kind or ('region' if '::' in pattern else 'path')} lock on {pattern}"
        return Done(confirm=what + (f" ({reason})?" if reason else "?"), fields=fields)
    result = lockcmd.add(ctx, pattern, mode=mode, kind=kind, reason=reason)
    item = result["lock"]
    return Done(f"added {item['mode']} {item['kind']} lock {item['id']}: {item['pattern']}")


def _lock_rm(ctx: Ctx, form: dict[str, str]) -> Done:
    from orch.verify import lockcmd
    from orch.verify import locks as locks_mod

    lock_id = _need(form, "id")
    if form.get("confirm") != "yes":
        lock = locks_mod.load(ctx.project).get(lock_id)
        if lock is None:
            raise InputError(f"no lock '{lock_id}' in .orch/locks.yaml")
        what = f"Remove {lock.mode} {lock.kind} lock {lock_id} ({lock.describe()})?"
        return Done(confirm=what, fields={"id": lock_id})
    removed = lockcmd.remove(ctx, lock_id)
    said = f"removed {removed['mode']} {removed['kind']} lock {lock_id}"
    if removed["committed_on"]:
        said += f"; judging applies it until the removal is committed on {removed['committed_on']}"
    return Done(said)


def _stop(ctx: Ctx, form: dict[str, str]) -> Done:
    from orch.agents import launch
    from orch.views.dashdata import _check_id

    task = _need(form, "task")
    _check_id(task)
    st = launch.stop(ctx, task)
    return Done(f"{task}: {st.get('state')}" + (f" ({st['reason']})" if st.get("reason") else ""))
