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

from orch.core import inbox, refs, state
from orch.core.context import Ctx, open_ctx
from orch.core.errors import OrchError
from orch.schedule import landing, runbudget
from orch.schedule.left import ENDED, MOVING, PERSON, Known, left
from orch.schedule.look import Look, Options

Say = Callable[[str], None]


class Up:
    def __init__(self, root: Path, options: Options, say: Say) -> None:
        self.root = root
        self.options = options
        self.say = say
        self.refused: dict[str, tuple[Any, str]] = {}  # task -> (what it was refused for, why)
        self.lander = landing.Lander(options.land, say)
        self.budgeted = False

    def recover(self) -> None:
        """Before the first look: spins a killed ``orch up`` (or anyone) left half done, a plan task's
        branch without its status, are finished or undone as ``orch doctor --fix`` does."""
        try:
            ctx = open_ctx(self.root)
            statuses = state.read_all(ctx.project, ctx.store)
            heads = refs.branch_heads(ctx.project.root)
            half = [
                t.id
                for t in ctx.plan.tasks
                if refs.branch_name(t.id) in heads and not (statuses.get(t.id) or {}).get("branch")
            ]
            if not half:
                return
            from orch.tasks import doctor

            fixed = [f for f in doctor.run(ctx, fix=True) if f.fixed]
        except OrchError as exc:
            self.say("could not look for half-done spins: " + exc.message.splitlines()[0])
            return
        for finding in fixed:
            self.say(f"repaired: {finding.detail}" + (f" ({finding.fix})" if finding.fix else ""))

    def look(self) -> Look:
        """Read everything afresh; land, spin, start and ask what can be now; say what is left."""
        try:
            ctx = open_ctx(self.root)
            plan = ctx.plan
            run_budget = self.options.budget or runbudget.of_config(ctx)
        except OrchError as exc:
            return Look(broken=exc.render().splitlines()[0])
        look = Look(total=len(plan.tasks), slots=ctx.config.max_parallel)
        self.budgeted = run_budget is not None
        self.lander.resume_interrupted(ctx, look)
        statuses = state.read_all(ctx.project, ctx.store)
        merged = self._merged(ctx, statuses)
        ids = [t.id for t in plan.tasks]
        used = runbudget.spent(ctx.project, statuses, ids)
        look.spent = runbudget.line(used, run_budget)
        look.budget = runbudget.level(used, run_budget)
        landing_why = self.lander.land(ctx, statuses, merged, look)  # first: its dependents spin below
        if look.landed:
            statuses = state.read_all(ctx.project, ctx.store)
            merged = self._merged(ctx, statuses)
            look.again = True
        if look.budget == "spent":
            from orch.schedule import pausing

            for task_id in pausing.pause_all(ctx, statuses, f"the run's budget is spent ({look.spent})"):
                look.notes.append(f"{task_id}: asked to pause, the run's budget is spent")
        stop = runbudget.hold(ctx, run_budget, look.budget, look.spent, look.asked)
        held: dict[str, tuple[str, str]] = {}
        from orch.agents.breaker import tripped

        breakers = tripped(statuses)
        self._start_spun(ctx, statuses, breakers, stop, held, look)
        self._spin_ready(ctx, statuses, merged, breakers, stop, held, look)
        if look.spun or look.started:
            statuses = state.read_all(ctx.project, ctx.store)
        self._sync_inbox(ctx)
        items = [i for i in inbox.open_items(ctx.project, ctx.store) if i.get("task") in set(ids) or not i.get("task")]
        look.open_items = items
        by_task: dict[str, list[str]] = {}
        for item in items:
            by_task.setdefault(str(item.get("task")), []).append(str(item["id"]))
        look.left = left(plan, statuses, merged, Known(held, by_task, landing_why, breakers))
        look.merged = sum(1 for t in ids if t in merged)
        look.running = sum(1 for t in ids if (statuses.get(t) or {}).get("state") == "RUNNING")
        return look

    def _merged(self, ctx: Ctx, statuses: dict[str, state.Status]) -> set[str]:
        base = ctx.config.base_branch
        return state.merged_tasks(ctx.project, statuses, list(statuses), lambda: f"refs/heads/{base}")

    def _start_spun(
        self,
        ctx: Ctx,
        statuses: dict[str, state.Status],
        breakers: dict[str, str],
        stop: tuple[str, bool] | None,
        held: dict[str, tuple[str, str]],
        look: Look,
    ) -> None:
        """Start the plan's tasks spun but not started (a spin killed before it started the agent, a
        plan approved while every slot was taken), but those a person took out of the queue; and
        start QUEUED ones the slots allow now (a supervisor killed before it drained the queue)."""
        from orch.agents import queue

        spun = []
        queued = False
        for task in ctx.plan.tasks:
            st = statuses.get(task.id) or {}
            if st.get("state") == "QUEUED":
                queued = True
            if st.get("state") != "PENDING" or not st.get("branch") or "orch dequeue" in str(st.get("reason") or ""):
                continue
            if st.get("started_at"):  # it ran and was sent back (the TDD gate): a person decides
                why = str(st.get("reason") or "sent back to PENDING")
                held[task.id] = (f"{why} (orch start {task.id} runs it again)", PERSON)
                continue
            if stop is not None:
                held[task.id] = (stop[0], ENDED if stop[1] else PERSON)
                continue
            if st.get("agent") in breakers:
                held[task.id] = (breakers[str(st.get("agent"))], PERSON)
                continue
            seen = self.refused.get(task.id)
            if seen is not None and seen[0] == _inputs(ctx, task):
                held[task.id] = (seen[1], PERSON)
                continue
            spun.append(task.id)
        for task_id, result in queue.start_many(ctx, spun) if spun else []:
            if isinstance(result, OrchError):
                why = "not started: " + result.message.splitlines()[0]
                self.refused[task_id] = (_inputs(ctx, ctx.plan.require(task_id)), why)
                held[task_id] = (why, PERSON)
                self.say(f"{task_id}: {why}")
            else:
                look.started.append(task_id)
        if queued and stop is None:
            try:
                look.started += queue.drain(ctx)
            except OrchError as exc:
                look.notes.append("the queue could not be drained: " + exc.message.splitlines()[0])

    def _spin_ready(
        self,
        ctx: Ctx,
        statuses: dict[str, state.Status],
        merged: set[str],
        breakers: dict[str, str],
        stop: tuple[str, bool] | None,
        held: dict[str, tuple[str, str]],
        look: Look,
    ) -> None:
        """Spin (and start, or queue) every task never spun whose dependencies have all landed."""
        from orch.core.plan import topo_order
        from orch.tasks import routing, spin

        ready = [t for t in topo_order(ctx.plan) if state.ready(ctx.plan.require(t), statuses, merged)]
        routes = routing.Routes(ctx)
        wanted = []
        for task_id in ready:
            task = ctx.plan.require(task_id)
            seen = self.refused.get(task_id)
            if stop is not None:
                held[task_id] = (stop[0], ENDED if stop[1] else PERSON)
            elif seen is not None and seen[0] == _inputs(ctx, task):
                held[task_id] = (seen[1], PERSON)
            elif (agent := _agent(ctx, task, routes)) in breakers:
                held[task_id] = (breakers[agent], PERSON)
            else:
                wanted.append(task_id)
        if wanted and self.budgeted:  # spun past the slots, a task would wait QUEUED, and the queue knows no run budget
            running = sum(1 for st in statuses.values() if st.get("state") in ("RUNNING", "QUEUED"))
            free = max(0, ctx.config.max_parallel - running)
            for task_id in wanted[free:]:
                held[task_id] = ("waits for a slot (spun when one is free: the run has a budget)", MOVING)
            wanted = wanted[:free]
        if not wanted:
            return
        from orch.agents.slots import queue_order

        try:  # each agent starts as soon as its worktree is ready, by priority (``eager``)
            results = spin.spin(ctx, queue_order(ctx, wanted), eager=True)
        except OrchError as exc:  # refused as a whole (a broken locks.yaml, a planted git filter)
            why = "not spun: " + exc.message.splitlines()[0]
            self.say(why)
            for task_id in wanted:
                self.refused[task_id] = (_inputs(ctx, ctx.plan.require(task_id)), why)
                held[task_id] = (why, PERSON)
            return
        for result in results:
            if result.error:
                why = "not spun: " + result.error.splitlines()[0].removeprefix("orch: error: ")
                if "killed half-way" in why:
                    why += " (orch doctor --fix finishes or undoes it; orch up does at its start)"
                self.refused[result.id] = (_inputs(ctx, ctx.plan.require(result.id)), why)
                held[result.id] = (why, PERSON)
                self.say(f"{result.id}: {why}")
            else:
                self.refused.pop(result.id, None)
                look.spun.append(result.id)
        look.again = look.again or bool(look.spun)

    def _sync_inbox(self, ctx: Ctx) -> None:
        """Ask what the tasks wait on and withdraw what no longer waits (a landing done by hand)."""
        from orch.inbox import decide

        try:
            decide.sync(ctx)
        except OrchError as exc:
            self.say("the inbox could not be brought up to date: " + exc.message.splitlines()[0])


def _agent(ctx: Ctx, task: Any, routes: Any) -> str:
    """The agent a spin would give the task (its own, the routing's, or the config's default)."""
    if task.agent:
        return str(task.agent)
    try:
        decision = routes.decide(task)
    except OrchError:
        return ctx.config.default_agent
    return str(decision.agent or ctx.config.default_agent)


def _inputs(ctx: Ctx, task: Any) -> Any:
    """What a refusal depended on: the task's fields, the config, routing, locks and manifests (an
    edit of any of them and it is tried again)."""
    from orch.schedule.wake import EDITED, edited

    others = tuple(n for n in EDITED if n != "plan.md")  # the task's own fields stand for the plan
    return (tuple(sorted(task.fields.items())), edited(ctx.project, others))
