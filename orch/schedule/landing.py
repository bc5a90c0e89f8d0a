"""How ``orch up`` lands what succeeded: through the merge ceremony, by itself (``auto``) or once a
person approves (``ask``, the default: one ``landing`` item per task and commit, with the verdict and
the merge forecast; ``orch approve`` runs the ceremony, ``orch.inbox.landing``).

``auto`` lands every task waiting at one look in one ceremony (batch mode when there are several:
one test run, bisected on failure). A ceremony that cannot start (the base holds work no ceremony
landed, a person's uncommitted files in the way) is not started again for the same tasks at the
same commits until the base moves: it waits for a person, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orch.core import inbox, refs, state
from orch.core.context import Ctx, open_ctx
from orch.core.errors import OrchError
from orch.schedule.left import ENDED, MOVING, PERSON
from orch.schedule.look import Look

Why = dict[str, tuple[str, str]]


def landing_key(task_id: str, sha: str) -> str:
    return f"landing:{task_id}:{sha}"


class Lander:
    def __init__(self, mode: str, say: Callable[[str], None]) -> None:
        self.mode = mode
        self.say = say
        self.stuck: tuple[Any, str] | None = None  # (what a ceremony was refused for, why)
        self.forecasts: dict[tuple[str, str, str], tuple[str, str]] = {}  # (task, sha, base) -> (why, kind)

    def resume_interrupted(self, ctx: Ctx, look: Look) -> None:
        """A ceremony killed half-way (this ``orch up``'s, or a person's) is finished or rolled back
        first: until then no other can start."""
        from orch.integrate import ceremony, journal

        try:
            if journal.load_journal(ctx) is None:
                return
            outcome = ceremony.merge(open_ctx(ctx.project.root, from_source=True), resume=True)
        except OrchError as exc:
            look.notes.append("an interrupted merge ceremony could not be resumed: " + _first(exc))
            return
        self.say(f"resumed the interrupted merge ceremony {outcome.id}: {outcome.landed}")
        look.landed += [r.task for r in outcome.results if r.outcome == "MERGED" and outcome.is_landed]

    def land(self, ctx: Ctx, statuses: dict[str, state.Status], merged: set[str], look: Look) -> Why:
        """Land (or ask to land) the plan's tasks that succeeded; why each one not landed waits."""
        ids = [t.id for t in ctx.plan.tasks]
        waiting = [t for t in ids if (statuses.get(t) or {}).get("state") in ("SUCCESS", "SKIPPED") and t not in merged]
        if not waiting:
            return {}
        tips = refs.branch_heads(ctx.project.root)
        candidates = [t for t in waiting if tips.get(refs.branch_name(t))]
        why: Why = {t: (f"its branch {refs.branch_name(t)} is gone", ENDED) for t in waiting if t not in candidates}
        if not candidates:
            return why
        if self.mode == "auto":
            why.update(self._auto(ctx, candidates, tips, look))
        else:
            why.update(self._ask(ctx, candidates, tips, look))
        return why

    def _auto(self, ctx: Ctx, ids: list[str], tips: dict[str, str], look: Look) -> Why:
        from orch.core import git
        from orch.integrate import ceremony

        base = ctx.config.base_branch
        key = (
            git.rev_parse(f"refs/heads/{base}", cwd=ctx.project.root),
            tuple((t, tips[refs.branch_name(t)]) for t in ids),
        )
        if self.stuck is not None and self.stuck[0] == key:
            return {t: (self.stuck[1], PERSON) for t in ids}
        self.say(f"landing {', '.join(ids)} on {base}" + (" (batch)" if len(ids) > 1 else ""))
        try:
            outcome = ceremony.merge(open_ctx(ctx.project.root, from_source=True), ids, batch=len(ids) > 1)
        except OrchError as exc:
            why = "not landed: " + _first(exc)
            self.say(why)
            if _busy(exc):  # another ceremony runs: tried again in a moment
                look.soon = True
                return {t: (why + "; tried again when it ends", MOVING) for t in ids}
            self.stuck = (key, why)
            return {t: (why, PERSON) for t in ids}
        self.stuck = None
        for r in outcome.results:
            if r.task in ids:
                self.say(f"{r.task}: {outcome.outcome_word(r)}" + (f": {r.detail}" if r.detail else ""))
        if outcome.parked_on:
            why = (
                f"tested, parked on {outcome.parked_on}: your uncommitted files are in the way ({outcome.land_command})"
            )
            self.stuck = (key, why)
            return {t: (why, PERSON) for t in ids}
        look.landed += [r.task for r in outcome.results if r.outcome == "MERGED" and outcome.is_landed]
        return {}

    def _ask(self, ctx: Ctx, ids: list[str], tips: dict[str, str], look: Look) -> Why:
        from orch.core import git

        why: Why = {}
        items = inbox.read_all(ctx.project, ctx.store)
        by_key = {i.get("key"): i for i in items if i.get("kind") == "landing" and i.get("state") != "withdrawn"}
        base_sha = git.rev_parse(f"refs/heads/{ctx.config.base_branch}", cwd=ctx.project.root) or ""
        to_forecast = []
        for task_id in ids:
            sha = tips[refs.branch_name(task_id)]
            item = by_key.get(landing_key(task_id, sha))
            if item is None:
                known = self.forecasts.get((task_id, sha, base_sha))
                if known is not None:
                    why[task_id] = known
                else:
                    to_forecast.append(task_id)
            elif item.get("state") == "open":
                why[task_id] = (f"waits for a person: orch approve {item['id']} lands it", PERSON)
            elif item.get("state") == "rejected":
                why[task_id] = (f"a person said not to land it ({item['id']})", ENDED)
            else:
                why[task_id] = (f"approved ({item['id']}) but not landed: {item.get('outcome') or '?'}", PERSON)
        if to_forecast:
            why.update(self._forecast_and_ask(ctx, to_forecast, tips, base_sha, look))
        return why

    def _forecast_and_ask(self, ctx: Ctx, ids: list[str], tips: dict[str, str], base_sha: str, look: Look) -> Why:
        """Verify and forecast each task; a clean one becomes a ``landing`` item, the others say why."""
        from orch.integrate import forecast

        why: Why = {}
        try:
            from orch.verify import judge

            judging = open_ctx(ctx.project.root, from_source=True)
            judge.verify_many(judging, ids)  # the verdicts recorded: orch status shows them too
            outcome = forecast.dry_run(judging, ids)
        except OrchError as exc:
            return {t: ("not asked: the forecast failed: " + _first(exc), PERSON) for t in ids}
        results = {r.task: r for r in outcome.results}
        base = ctx.config.base_branch
        for task_id in ids:
            sha = tips[refs.branch_name(task_id)]
            r = results.get(task_id)
            if r is None or r.outcome != "CLEAN":
                detail = (r.detail if r is not None else None) or "not mergeable"
                word = r.outcome.lower() if r is not None else "not ready"
                found = (f"not asked: {word}: {detail}", ENDED)
                self.forecasts[(task_id, sha, base_sha)] = found
                why[task_id] = found
                self.say(f"{task_id}: {found[0]}")
                continue
            title = ctx.plan.require(task_id).title
            item = inbox.post(
                ctx.project,
                ctx.store,
                "landing",
                task=task_id,
                asked=f"land {task_id} ({title}) on {base} at {sha[:12]}? verified OK; forecast: {r.detail}",
                data={"sha": sha, "base": base, "base_sha": base_sha, "verdict": "OK", "forecast": r.detail},
                key=landing_key(task_id, sha),
            )
            look.asked.append(str(item["id"]))
            why[task_id] = (f"waits for a person: orch approve {item['id']} lands it", PERSON)
        return why


def _first(exc: OrchError) -> str:
    return exc.message.splitlines()[0]


def _busy(exc: OrchError) -> bool:
    """The ceremony could not start only because another holds the merge lock (it will end)."""
    first = _first(exc)
    return first.startswith(("a merge ceremony is running", "another orch command holds the merge lock"))
