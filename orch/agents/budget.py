"""A task's budget: tokens and/or dollars, summed over its iterations (and over ``orch resume``).

The budget is frozen at spin (``limits.max_tokens`` and ``limits.budget_usd`` in the task manifest:
the strictest of the plan task's ``budget``, the agent manifest's and the config's default) and a
person raises it with ``orch resume ID --budget``. Usage comes from what each iteration's agent
reports (``orch.agents.manifest.parse_usage``, read from that iteration's part of ``agent.log`` and of
the usage file). At ``NEARLY`` (85%) of either budget the loop pauses after the running iteration; at
100% the supervisor stops the running iteration at once. Either way the task is PAUSED: it needs a
person, who resumes it with more budget (or retries or cleans it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.agents.manifest import Usage, parse_usage

NEARLY = 0.85
LEFT = "Budget left for this task:"  # how the brief's budget line starts


@dataclass
class Budget:
    tokens: int | None = None
    usd: float | None = None

    @classmethod
    def of(cls, limits: dict[str, Any]) -> Budget:
        tokens, usd = limits.get("max_tokens"), limits.get("budget_usd")
        return cls(int(tokens) if tokens else None, float(usd) if usd else None)

    def __bool__(self) -> bool:
        return bool(self.tokens or self.usd)

    def as_json(self) -> dict[str, Any] | None:
        return {"tokens": self.tokens, "usd": self.usd} if self else None


@dataclass
class Spent:
    """Usage summed over iterations."""

    input: int = 0
    output: int = 0
    cached: int = 0
    cost_usd: float | None = None
    found: bool = False

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.cached

    def plus(self, usage: Usage) -> Spent:
        if not usage.found and usage.cost_usd is None:
            return Spent(self.input, self.output, self.cached, self.cost_usd, self.found)
        cost = self.cost_usd
        if usage.cost_usd is not None:
            cost = (cost or 0.0) + usage.cost_usd
        return Spent(
            self.input + usage.input,
            self.output + usage.output,
            self.cached + usage.cached,
            cost,
            self.found or usage.found,
        )

    def token_counts(self) -> dict[str, int] | None:
        """The status's ``tokens`` (as orch 0.1 wrote it for one run)."""
        if not self.found:
            return None
        return {"input": self.input, "output": self.output, "cached": self.cached, "total": self.tokens}

    def as_json(self) -> dict[str, Any]:
        """The status's ``usage``: what the task spent so far (``tokens`` None: no agent reported any)."""
        return {
            "tokens": self.tokens if self.found else None,
            "cost_usd": round(self.cost_usd, 6) if self.cost_usd is not None else None,
            "input": self.input,
            "output": self.output,
            "cached": self.cached,
        }

    @classmethod
    def load(cls, data: Any) -> Spent:
        """``as_json`` read back (a status any process could have written: odd values count as none)."""
        if not isinstance(data, dict):
            return cls()
        cost = data.get("cost_usd")

        def count(key: str) -> int:
            value = data.get(key)
            return max(0, value) if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            count("input"),
            count("output"),
            count("cached"),
            float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else None,
            data.get("tokens") is not None,
        )


def share(spent: Spent, budget: Budget) -> float | None:
    """The largest share of a budget spent (1.0: all of it), or None without a budget."""
    shares = []
    if budget.tokens and spent.found:
        shares.append(spent.tokens / budget.tokens)
    if budget.usd and spent.cost_usd is not None:
        shares.append(spent.cost_usd / budget.usd)
    if not budget:
        return None
    return max(shares, default=0.0)


def _amounts(spent: Spent, budget: Budget) -> str:
    parts = []
    if budget.tokens:
        parts.append(f"{spent.tokens:,} of {budget.tokens:,} tokens")
    if budget.usd:
        parts.append(f"${spent.cost_usd or 0:.2f} of ${budget.usd:g}")
    return " and ".join(parts)


def over(spent: Spent, budget: Budget) -> str | None:
    """Why the budget is spent (100% of either), or None."""
    used = share(spent, budget)
    if used is None or used < 1.0:
        return None
    return f"the budget is spent: {_amounts(spent, budget)} used"


def nearly(spent: Spent, budget: Budget) -> str | None:
    """Why the loop pauses after this iteration (``NEARLY`` of either budget), or None."""
    used = share(spent, budget)
    if used is None or used < NEARLY:
        return None
    return f"{used:.0%} of the budget is used ({_amounts(spent, budget)}); it pauses at {NEARLY:.0%}"


def left_line(spent: Spent, budget: Budget) -> str | None:
    """The brief's line on the budget left, or None without a budget."""
    if not budget:
        return None
    parts = []
    if budget.tokens:
        parts.append(f"{max(0, budget.tokens - spent.tokens):,} of {budget.tokens:,} tokens")
    if budget.usd:
        parts.append(f"${max(0.0, budget.usd - (spent.cost_usd or 0.0)):.2f} of ${budget.usd:g}")
    return (
        f"{LEFT} {' and '.join(parts)}. At {NEARLY:.0%} used the task pauses for a "
        "person after the running iteration; at 100% the running iteration is stopped."
    )


def usd_left(spent: Spent, budget: Budget) -> str | None:
    """The dollars left, for an agent CLI's own cap (``{budget_usd}``, e.g. ``--max-budget-usd``)."""
    if not budget.usd:
        return None
    return f"{max(0.01, budget.usd - (spent.cost_usd or 0.0)):.2f}"


def _read(path: Path, start: int, limit: int = 8 << 20) -> str:
    """``path`` from byte ``start`` (its last ``limit`` bytes at most); '' if it is not there."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(start, size - limit) if size >= start else max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Meter:
    """What a task spent: ``before`` (earlier iterations, earlier runs of a resumed loop) plus what the
    running iteration reported so far, read from where its output starts in ``agent.log`` (and in the
    usage file an agent such as Aider appends to)."""

    def __init__(self, launch: dict[str, Any], log: Path, before: Spent | None = None) -> None:
        self.kind = str(launch.get("usage") or "none")
        self.log = log
        self.usage_file = Path(launch["usage_file"]) if launch.get("usage_file") else None
        self.budget = Budget.of(launch)
        self.before = before or Spent()
        # What the files hold already is an earlier run's (or an earlier supervisor's): not this one's.
        self.log_from = _size(self.log)
        self.usage_from = _size(self.usage_file) if self.usage_file else 0

    def begin(self) -> None:
        """A new iteration starts: its usage is what the files get from here on."""
        self.log_from = _size(self.log)
        self.usage_from = _size(self.usage_file) if self.usage_file else 0

    def this_iteration(self) -> Usage:
        if self.kind == "none":
            return Usage()
        usage_text = None
        if self.kind == "aider-analytics" and self.usage_file is not None:
            usage_text = _read(self.usage_file, self.usage_from)
        try:
            return parse_usage(self.kind, _read(self.log, self.log_from), usage_text)
        except (ValueError, OverflowError, RecursionError):  # what an agent printed is no usage
            return Usage()

    def now(self) -> Spent:
        return self.before.plus(self.this_iteration())

    def end(self) -> Spent:
        """The iteration ended: its usage joins ``before``."""
        self.before = self.now()
        self.log_from = _size(self.log)
        self.usage_from = _size(self.usage_file) if self.usage_file else 0
        return self.before

    def over(self) -> str | None:
        return over(self.now(), self.budget) if self.budget else None
