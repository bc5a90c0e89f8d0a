"""Helpers for the verification tests: a project with locks, plan tasks and task worktrees made with git."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import Orch, built, commit_file, git, init_repo, write_plan

PLAN = """\
# Plan: shop

## T1: Session expiry
- scope: ^src/auth/

Touch auth only.

## T2: Widgets
- scope: ^(src/dashboard/|tests/test_dashboard\\.py$)

## T3: Anything
"""

LOCKS = """\
# project locks
version: 1
agents_md_lock: true
locks:
  - id: L1
    kind: path
    mode: hard
    pattern: src/billing/pricing.py
    reason: prices are signed off by finance
  - id: L2
    kind: test
    mode: hard
    pattern: tests/**/test_checkout*.py
    reason: the checkout tests are the contract
  - id: L3
    kind: region
    mode: hard
    pattern: src/auth/cart.py::Cart.total
    reason: totals are audited
  - id: L4
    kind: path
    mode: soft
    pattern: docs/
    reason: docs are reviewed
"""

CART = textwrap.dedent(
    """\
    import math


    class Cart:
        def __init__(self):
            self.items = []

        @property
        def total(self):
            return sum(self.items)

        def count(self):
            return len(self.items)
    """
)


def setup_project(repo: Path, orch: Orch, *, locks: str = LOCKS, plan: str = PLAN) -> Path:
    """Init orch (no hooks), write files, plan and locks, commit everything on main (built once per
    worker, copied into ``repo`` for each test)."""
    assert orch.cwd == repo
    return built(repo, ("vhelpers", locks, plan), lambda root: _build(root, locks, plan))


def _build(repo: Path, locks: str, plan: str) -> None:
    init_repo(repo)
    Orch(repo).ok("init", "--test-cmd", "true", "--no-hooks")
    files = {
        "src/auth/session.py": "TTL = 60\n",
        "src/auth/cart.py": CART,
        "src/billing/pricing.py": "PRICE = 10\n",
        "src/dashboard/w.py": "W = 1\n",
        "tests/unit/test_checkout_flow.py": "def test_flow():\n    assert True\n",
        "docs/guide.md": "guide\n",
        "web/app.js": "let a = 1;\n// orch-lock: begin Pricing\nconst p = 10;\n// orch-lock: end Pricing\nlet b = 2;\n",
    }
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    write_plan(repo, plan)
    (repo / ".orch/locks.yaml").write_text(locks)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "project")


def make_task(repo: Path, task_id: str) -> Path:
    """A task branch and worktree, made with git directly (as spin would)."""
    wt = repo / ".orch" / "worktrees" / task_id
    git(repo, "worktree", "add", "-q", "-b", f"orch/{task_id}", str(wt), "main")
    return wt


def commit_in(wt: Path, rel: str, text: str, *extra: str) -> str:
    path = wt / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(wt, "add", "--", rel)
    git(wt, "commit", "-q", *extra, "-m", f"change {rel}")
    return git(wt, "rev-parse", "HEAD")


__all__ = ["CART", "LOCKS", "PLAN", "commit_file", "commit_in", "make_task", "setup_project"]
