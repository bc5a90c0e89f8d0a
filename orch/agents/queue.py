"""The queue: spun tasks past the slots wait QUEUED, and each run that ends starts the next.

``spawn.start`` queues a task it cannot start now (``orch.agents.slots`` says why). No daemon drains
the queue: when a run ends, its supervisor calls ``drain``, which starts queued tasks (by the plan's
``priority``, then plan order) while the slots allow. Each start claims under the ``agent-slots``
lock and re-checks there, so two supervisors draining at once never start a task twice nor pass a
limit: the loser of a race finds the task RUNNING and moves on.
"""

from __future__ import annotations

from orch.agents import slots, spawn
from orch.core import state
from orch.core.context import Ctx
from orch.core.errors import InputError, OrchError


def queued(ctx: Ctx) -> list[str]:
    """The QUEUED tasks in the order they start."""
    statuses = state.read_all(ctx.project, ctx.store)
    return slots.queue_order(ctx, [t for t, st in statuses.items() if st.get("state") == "QUEUED"])


def drain(ctx: Ctx) -> list[str]:
    """Start queued tasks while the slots allow; the ids started. A task that cannot start (a broken
    manifest, say) keeps waiting, its reason saying why; the others go on."""
    started: list[str] = []
    tried: set[str] = set()
    while True:
        pick = _next(ctx, tried)
        if pick is None:
            return started
        tried.add(pick)
        try:
            st = spawn.start(ctx, pick)
        except OrchError as exc:
            _note(ctx, pick, f"could not start: {exc.message.splitlines()[0]}")
            continue
        if st.get("state") == "RUNNING":
            started.append(pick)


def _next(ctx: Ctx, tried: set[str]) -> str | None:
    """The first queued task the slots let start now; the others' reasons are brought up to date."""
    with ctx.store.lock(slots.LOCK):
        statuses = state.read_all(ctx.project, ctx.store)
        now = slots.Slots(ctx, statuses)
        waiting = [t for t, st in statuses.items() if st.get("state") == "QUEUED" and t not in tried]
        for task_id in slots.queue_order(ctx, waiting):
            why = now.why_wait(task_id, statuses[task_id].get("agent") or _agent_of(ctx, task_id))
            if why is None:
                return task_id
            if statuses[task_id].get("reason") != why:
                spawn.queue_it(ctx, task_id, why)
    return None


def _agent_of(ctx: Ctx, task_id: str) -> str | None:
    """The agent frozen in the task's manifest at spin (the config's default when it names none)."""
    from orch.agents.taskfiles import files

    try:
        manifest = ctx.store.load(files(ctx.project, task_id).manifest, "task_manifest")
    except (OSError, OrchError):
        return None
    return str(manifest.get("agent") or ctx.config.default_agent)


def _note(ctx: Ctx, task_id: str, why: str) -> None:
    """Say why a queued task could not start; a task another drain started meanwhile is left alone."""
    still: list[bool] = []

    def change(st: state.Status) -> None:
        still.append(st.get("state") == "QUEUED")
        if still[-1]:
            st["reason"] = why

    state.update(ctx.project, ctx.store, task_id, change)
    if still and still[-1]:
        ctx.log("QUEUED", "QUEUE", why, task=task_id)


def start_many(ctx: Ctx, ids: list[str], *, tmux: bool = False) -> list[tuple[str, state.Status | OrchError]]:
    """``orch start ID...``: start each (in queue order) or queue it past the slots; per id its status
    (RUNNING or QUEUED) or the error that refused it."""
    results: dict[str, state.Status | OrchError] = {}
    for task_id in slots.queue_order(ctx, dict.fromkeys(ids)):
        try:
            results[task_id] = spawn.start(ctx, task_id, tmux=tmux)
        except OrchError as exc:
            results[task_id] = exc
    return [(task_id, results[task_id]) for task_id in dict.fromkeys(ids)]


def dequeue(ctx: Ctx, task_id: str) -> state.Status:
    """Take a QUEUED task back to PENDING: still spun (worktree, manifest), not started (``orch start``)."""
    was: list[str] = []

    def change(st: state.Status) -> None:
        was.append(str(st.get("state")))
        if st.get("state") == "QUEUED":
            st.update(state="PENDING", reason="taken out of the queue (orch dequeue)", queued_at=None)

    with ctx.store.lock(slots.LOCK):  # not while a drain is picking it
        if state.read(ctx.project, ctx.store, task_id, refresh=False) is None:
            raise InputError(f"task {task_id} was never spun", hint="see the tasks with: orch status")
        st = state.update(ctx.project, ctx.store, task_id, change)
    if was[0] != "QUEUED":
        raise InputError(
            f"task {task_id} is {was[0]}, not QUEUED: nothing to dequeue", hint=f"see: orch status {task_id}"
        )
    ctx.log("PENDING", "DEQUEUE", "taken out of the queue", task=task_id)
    return st
