"""The values of plan fields that are more than a word: budgets (``200k tokens, $5``) and durations
(``90s``, ``15m``, ``2h``). ``orch.core.plan`` reads them (and re-exports these names)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION = re.compile(r"(?P<n>[0-9]{1,12})[ \t]*(?P<unit>[smh]?)")
_BUDGET_PART = re.compile(
    r"^(?:\$\s*(?P<usd>\d+(?:\.\d+)?)|(?P<usd2>\d+(?:\.\d+)?)\s*(?:usd|USD|dollars?)"
    r"|(?P<tok>\d+(?:\.\d+)?)\s*(?P<mult>[kKmM]?)\s*tokens?)$"
)


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None
    usd: float | None = None

    def __str__(self) -> str:
        parts = []
        if self.tokens is not None:
            parts.append(f"{self.tokens} tokens")
        if self.usd is not None:
            parts.append(f"${self.usd:g}")
        return ", ".join(parts) or "none"


def parse_duration(text: str) -> int:
    """Seconds: ``90``, ``90s``, ``15m`` or ``2h``."""
    m = _DURATION.fullmatch(text.strip())
    if not m or int(m["n"]) <= 0:
        raise ValueError("seconds above 0, or a whole number with s, m or h (90s, 15m, 2h)")
    return int(m["n"]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m["unit"]]


MAX_TOKENS, MAX_USD = 10**13, 10**9  # far beyond any real budget: a bound, so no count overflows


def parse_budget(text: str) -> Budget:
    """``200k tokens``, ``1.5M tokens``, ``$5``, ``5 usd``, or both separated by a comma."""
    tokens: int | None = None
    usd: float | None = None
    for part in (p.strip() for p in text.split(",")):
        m = _BUDGET_PART.match(part)
        if not m:
            raise ValueError(f"cannot read budget part '{part}'")
        if m["usd"] or m["usd2"]:
            usd = float(m["usd"] or m["usd2"])
            if not usd < MAX_USD:  # NaN and infinity too
                raise ValueError(f"'{part}' is too large (at most ${MAX_USD:,.0f})")
        else:
            factor = {"": 1, "k": 1_000, "m": 1_000_000}[m["mult"].lower()]
            count = float(m["tok"]) * factor
            if not count < MAX_TOKENS:
                raise ValueError(f"'{part}' is too large (at most {MAX_TOKENS:,} tokens)")
            tokens = int(count)
    if (tokens is not None and tokens <= 0) or (usd is not None and usd <= 0):
        raise ValueError("a budget must be positive")
    return Budget(tokens, usd)
