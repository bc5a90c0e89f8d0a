"""What one look of ``orch up`` found and did (``Look``), and how it was started (``Options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orch.schedule import runbudget
from orch.schedule.left import MOVING, PERSON, Left


@dataclass
class Options:
    land: str = "ask"  # auto: land by itself; ask: a person approves each landing
    until_idle: bool = False  # stop as soon as nothing moves by itself (do not wait for people)
    budget: runbudget.RunBudget | None = None  # --budget (else the config's budget:)


@dataclass
class Look:
    """What one look found and did."""

    spun: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # spun before, started (or queued) now
    landed: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)
    total: int = 0
    merged: int = 0
    running: int = 0
    slots: int = 0
    open_items: list[dict[str, Any]] = field(default_factory=list)
    spent: str = ""
    budget: str = "ok"
    notes: list[str] = field(default_factory=list)
    again: bool = False  # something landed or spun: look again at once (its dependents)
    soon: bool = False  # something to try again in a moment (another ceremony held the merge lock)
    broken: str | None = None  # the plan or config does not read: nothing is done until it is fixed

    @property
    def done(self) -> bool:
        return self.broken is None and self.total > 0 and self.merged == self.total

    @property
    def moving(self) -> bool:
        return self.again or any(x.kind == MOVING for x in self.left)

    @property
    def waiting(self) -> bool:
        return any(x.kind == PERSON for x in self.left)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "merged": self.merged,
            "running": self.running,
            "slots": self.slots,
            "spun": self.spun,
            "landed": self.landed,
            "asked": self.asked,
            "left": [x.to_json() for x in self.left],
            "open_items": [i["id"] for i in self.open_items],
            "spent": self.spent,
            "budget": self.budget,
            "notes": self.notes,
            "broken": self.broken,
        }
