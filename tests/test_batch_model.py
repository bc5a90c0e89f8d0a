"""The batch queue's bisection, checked against every failure pattern.

The real-git batch tests (tests/test_ceremony.py) show that batch mode merges what sequential mode
merges; they cannot afford every pattern. Here the same ``Ceremony.run_batch`` runs over a model of
the integration tree (a tuple of merged tasks; a test run fails when a failing task is in it), so
all 2^n patterns are checked for the queue's promises:

- the outcome equals one-by-one: exactly the failing tasks are reverted, each after a run of its own;
- one run when nothing fails; at most n + 1 runs when one task fails, and 1 + 2*ceil(log2 n) when
  that is fewer; never more than ``batch_bound(n)`` whatever fails.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

import pytest

from orch.integrate import steps as C
from orch.integrate.triage import Result


class ModelTree:
    def __init__(self) -> None:
        self.merged: tuple[str, ...] = ()

    def reset(self, good: tuple[str, ...]) -> None:
        self.merged = good

    def merge(self, task_id: str, sha: str, title: str) -> tuple[tuple[str, ...], list[str]]:
        self.merged = (*self.merged, task_id)
        return self.merged, []

    def head(self) -> tuple[str, ...]:
        return self.merged


class ModelCeremony(C.Ceremony):
    def __init__(self, failing: set[str]) -> None:  # no git, no files: the algorithm only
        self.j: dict[str, Any] = {"results": [], "good": (), "test_runs": 0, "shas": defaultdict(str)}
        self.integration = ModelTree()  # type: ignore[assignment]
        self.failing = failing
        self.solo_failures: list[str] = []

    def save(self, step: str) -> None:
        pass

    def decide(self, result: Result, *, good: Any = None, save: bool = True) -> None:
        self.j["results"].append({"task": result.task, "outcome": result.outcome})
        if good is not None:
            self.j["good"] = good

    def title(self, task_id: str) -> str:
        return task_id

    def blocked_by(self, task_id: str, ahead: frozenset[str] = frozenset()) -> str | None:
        return None

    def progress(self, message: str) -> None:
        pass

    def test(self, label: str) -> tuple[bool, str, str]:
        self.j["test_runs"] += 1
        new = [t for t in self.integration.merged if t not in self.j["good"]]
        passed = not (set(self.integration.merged) & self.failing)
        if not passed and len(new) == 1:
            self.solo_failures.append(new[0])
        return passed, "", ""


def run(n: int, failing: set[str]) -> ModelCeremony:
    model = ModelCeremony(failing)
    model.run_batch([f"T{i}" for i in range(n)])
    return model


@pytest.mark.parametrize("n", range(1, 11))
def test_every_failure_pattern(n: int) -> None:
    tasks = [f"T{i}" for i in range(n)]
    for k in range(n + 1):
        for failing in itertools.combinations(tasks, k):
            model = run(n, set(failing))
            outcome = {r["task"]: r["outcome"] for r in model.j["results"]}
            assert outcome == {t: "REVERTED" if t in failing else "MERGED" for t in tasks}
            assert sorted(model.solo_failures) == sorted(failing)  # blamed only after failing alone
            runs = model.j["test_runs"]
            assert runs <= C.batch_bound(n), (n, failing, runs)
            if k == 0:
                assert runs == 1
            if k == 1:
                assert runs <= (min(n + 1, 1 + 2 * math.ceil(math.log2(n))) if n > 1 else 1), (n, failing)


@pytest.mark.parametrize("position", range(16))
def test_one_failure_in_sixteen_takes_at_most_nine_runs(position: int) -> None:
    assert run(16, {f"T{position}"}).j["test_runs"] <= 9


def test_none_failing_in_sixteen_takes_one_run() -> None:
    assert run(16, set()).j["test_runs"] == 1
