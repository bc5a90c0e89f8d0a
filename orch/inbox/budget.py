"""``budget`` items: an ``orch up`` run spent 85% of its budget (``--budget``, or ``budget:`` in the
config) and dispatches nothing new until a person answers. ``orch approve B1``: it goes on, up to
100% (where the running agents are paused). ``orch reject B1``: it dispatches nothing more; the
running agents finish. ``orch up`` honours only an answer the event log holds (a person's).
"""

from __future__ import annotations

from orch.core.context import Ctx
from orch.inbox.decide import Answer, Item, handles


@handles("budget")
def _answer(ctx: Ctx, item: Item, answer: Answer) -> str:
    spent = (item.get("data") or {}).get("budget") or "its budget"
    if answer.approve:
        return f"orch up goes on, up to 100% of {spent}"
    return "orch up dispatches nothing more; what runs finishes"
