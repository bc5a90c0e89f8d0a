"""The parsed-plan cache: a hit only for the exact same text; a broken plan is never remembered."""

from __future__ import annotations

from pathlib import Path

from conftest import Orch, git, write_plan

PLAN = "# Plan: x\n\n## T1: One\n- scope: ^a/\n\n## T2: Two\n- scope: ^b/\n- deps: T1\n"


def test_an_edit_of_the_same_length_is_seen(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN)
    # Committed, so that orch plan has no pending scope change to name (which parses, and caches, the
    # committed plan as well).
    git(project, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")
    assert "T1  PENDING (ready)" in orch.ok("plan").stdout
    cache = project / ".orch" / "run" / "cache" / "plan"
    assert len(list(cache.glob("*.json"))) == 1
    write_plan(project, PLAN.replace("## T2: Two", "## T3: Two"))  # same length, new id
    out = orch.ok("plan").stdout
    assert "T3  PENDING" in out and "T2" not in out.split("\n", 2)[2]


def test_a_broken_plan_is_reported_every_time(project: Path, orch: Orch) -> None:
    write_plan(project, PLAN.replace("- deps: T1", "- deps: T9"))
    for _ in range(2):
        r = orch("plan")
        assert r.returncode == 3
        assert ".orch/plan.md:8: unknown dependency 'T9' of T2" in r.stderr
    assert not list((project / ".orch" / "run" / "cache" / "plan").glob("*.json"))
