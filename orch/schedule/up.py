"""``orch up``: the whole plan, Plan -> Spawn -> Monitor -> Verify -> Integrate, with no daemon.

Each look (``Up.look``) reads everything afresh (plan, config, agent manifests, statuses: an edit is
used at once) and does what can be done now: it spins every task whose dependencies have landed
(past the free slots they wait QUEUED, and each supervisor that ends starts the next), lands the
tasks that succeeded through the merge ceremony (``--land auto``; several at once in batch mode) or
asks a person first (``--land ask``: a ``landing`` item, which ``orch approve`` lands), and says why
each task left is not landed. Between looks it sleeps until the next event (``orch.schedule.wake``).

It holds no state of its own: killed at any point, the next ``orch up`` reads the same files and goes
on (an interrupted ceremony is resumed first). The little it remembers between looks (a spin that was
refused, a ceremony that could not start) only keeps it from trying the same thing on every event,
and is forgotten when the files it came from change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.core import inbox, state
from orch.core.context import Ctx, open_ctx
from orch.core.errors import OrchError
from orch.schedule import landing, runbudget
from orch.schedule.left import PERSON, Known, left
from orch.schedule.look import Look, Options

Say = Callable[[str], None]


class Up:
    def __init__(self, root: Path, options: Options, say: Say) -> None:
        self.root = root
        self.options = options
        self.say = say
        self.refused: dict[str, tuple[Any, str]] = {}  # task -> (what it was refused for, why)
        self.lander = landing.Lander(options.land, say)

    def look(self) -> Look:
        """Read everything afresh; spin, land and ask what can be now; say what is left."""
        try:
            ctx = open_ctx(self.root)
            plan = ctx.plan
            run_budget = self.options.budget or _config_budget(ctx)
        except OrchError as exc:
            return Look(broken=exc.render().splitlines()[0])
        look = Look(total=len(plan.tasks), slots=ctx.config.max_parallel)
        self.lander.resume_interrupted(ctx, look)
        statuses = state.read_all(ctx.project, ctx.store)
        merged = self._merged(ctx, statuses)
        ids = [t.id for t in plan.tasks]
        used = runbudget.spent(statuses, ids)
        look.spent = runbudget.line(used, run_budget)
        look.budget = runbudget.level(used, run_budget)
        held: dict[str, tuple[str, str]] = {}
        landing_why = self.lander.land(ctx, statuses, merged, look)  # first: its dependents spin below
        if look.landed:
            statuses = state.read_all(ctx.project, ctx.store)
            merged = self._merged(ctx, statuses)
            look.again = True
        stop_dispatch = self._budget_hold(ctx, look, run_budget, statuses)
        self._spin_ready(ctx, statuses, merged, held, stop_dispatch, look)
        if look.spun:
            statuses = state.read_all(ctx.project, ctx.store)
        items = [i for i in inbox.open_items(ctx.project, ctx.store) if i.get("task") in set(ids) or not i.get("task")]
        look.open_items = items
        by_task: dict[str, list[str]] = {}
        for item in items:
            by_task.setdefault(str(item.get("task")), []).append(str(item["id"]))
        look.left = left(plan, statuses, merged, Known(held, by_task, landing_why))
        look.merged = sum(1 for t in ids if t in merged)
        look.running = sum(1 for t in ids if (statuses.get(t) or {}).get("state") == "RUNNING")
        return look

    def _merged(self, ctx: Ctx, statuses: dict[str, state.Status]) -> set[str]:
        base = ctx.config.base_branch
        return state.merged_tasks(ctx.project, statuses, list(statuses), lambda: f"refs/heads/{base}")

    def _spin_ready(
        self,
        ctx: Ctx,
        statuses: dict[str, state.Status],
        merged: set[str],
        held: dict[str, tuple[str, str]],
        stop_dispatch: str | None,
        look: Look,
    ) -> None:
        """Spin (and start, or queue) every task never spun whose dependencies have all landed."""
        from orch.agents.breaker import tripped
        from orch.core.plan import topo_order
        from orch.tasks import spin

        breakers = tripped(statuses)
        ready = [t for t in topo_order(ctx.plan) if state.ready(ctx.plan.require(t), statuses, merged)]
        wanted = []
        for task_id in ready:
            task = ctx.plan.require(task_id)
            agent = task.agent or ctx.config.default_agent
            seen = self.refused.get(task_id)
            if stop_dispatch:
                held[task_id] = (stop_dispatch, PERSON)
            elif agent in breakers:
                held[task_id] = (breakers[agent], PERSON)
            elif seen is not None and seen[0] == _inputs(ctx, task):
                held[task_id] = (seen[1], PERSON)
            else:
                wanted.append(task_id)
        if not wanted:
            return
        for result in spin.spin(ctx, wanted):
            if result.error:
                why = "not spun: " + result.error.splitlines()[0].removeprefix("orch: error: ")
                self.refused[result.id] = (_inputs(ctx, ctx.plan.require(result.id)), why)
                held[result.id] = (why, PERSON)
                self.say(f"{result.id}: {why}")
            else:
                self.refused.pop(result.id, None)
                look.spun.append(result.id)
        look.again = look.again or bool(look.spun)

    def _budget_hold(
        self, ctx: Ctx, look: Look, run_budget: runbudget.RunBudget | None, statuses: dict[str, state.Status]
    ) -> str | None:
        """Why nothing new may be dispatched (the run's budget), or None; at 100% the running agents
        are asked to pause."""
        if run_budget is None or look.budget == "ok":
            return None
        if look.budget == "spent":
            from orch.schedule import pausing

            for task_id in pausing.pause_all(ctx, statuses, f"the run's budget is spent ({look.spent})"):
                look.notes.append(f"{task_id}: asked to pause, the run's budget is spent")
            return f"the run's budget is spent ({look.spent}): nothing new starts"
        answer = _budget_answer(ctx, run_budget, look)
        if answer == "approved":
            return None
        if answer == "rejected":
            return f"{look.spent}: a person said to dispatch nothing more"
        return f"{look.spent}: nothing new is dispatched until a person answers (orch inbox)"


def _budget_answer(ctx: Ctx, run_budget: runbudget.RunBudget, look: Look) -> str:
    """The person's answer to going past 85% of this budget: ``approved``, ``rejected`` or ``open``
    (asked now if it was not yet)."""
    from orch.inbox import decide

    key = f"budget:{run_budget.text}"
    for item in inbox.read_all(ctx.project, ctx.store):
        if item.get("key") != key or item.get("kind") != "budget":
            continue
        if item.get("state") == "open":
            return "open"
        if item.get("state") in ("approved", "rejected") and decide.answered_by_a_person(ctx, item):
            return str(item["state"])
    item = inbox.post(
        ctx.project,
        ctx.store,
        "budget",
        task=None,
        asked=f"orch up has {look.spent}: go on to 100% (approve), or dispatch nothing more (reject)?",
        data={"budget": run_budget.text},
        key=key,
    )
    look.asked.append(str(item["id"]))
    return "open"


def _config_budget(ctx: Ctx) -> runbudget.RunBudget | None:
    from orch.core.plan import parse_budget

    text = ctx.config.budget
    return runbudget.RunBudget.parsed(parse_budget(text), text) if text else None


def _inputs(ctx: Ctx, task: Any) -> Any:
    """What a spin refusal depended on: the task's fields, the manifests, the config (an edit of any
    of them and it is tried again)."""
    import os

    orch = ctx.project.orch_dir
    looks = []
    for path in [orch / "config.yaml", orch / "routing.yaml", orch / "agents", *sorted((orch / "agents").glob("*"))]:
        try:
            st = os.stat(path)
            looks.append((path.name, st.st_size, st.st_mtime_ns))
        except OSError:
            looks.append((path.name, -1, -1))
    return (tuple(sorted(task.fields.items())), tuple(looks))
