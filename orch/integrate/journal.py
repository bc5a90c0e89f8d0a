"""The merge ceremony's crash journal: its file, reading it back, and what it says after a crash.

The ceremony writes ``.orch/run/merges/journal.json`` before every step (``steps.Ceremony.save``)
and deletes it when it is done, so a journal left behind is an interrupted ceremony: ``pending``
tells other commands (clean leaves its tasks alone), ``has_landed`` whether it had moved the base
already, ``stop_orphan_test`` ends the test run it left behind, ``drop`` rolls it back.
``fault_point`` is the crash tests' way in: ``ORCH_TEST_KILL_AT=<step>`` kills orch right there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from orch.core import git, procs
from orch.core.context import Ctx
from orch.integrate.integration import Integration

JOURNAL = "journal.json"  # JSON is YAML too: read back through the store and validated like the rest
_KILL_AT = os.environ.get("ORCH_TEST_KILL_AT", "")


def fault_point(step: str) -> None:
    """Fault injection for the crash-safety tests (like git's GIT_TEST_* variables): with
    ORCH_TEST_KILL_AT naming this step, die as abruptly as a power cut would, right here."""
    if _KILL_AT and step == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def pending(ctx: Ctx) -> dict[str, Any] | None:
    """The journal of an interrupted ceremony, if there is one (other commands leave its tasks alone)."""
    if not (ctx.project.merges_dir / JOURNAL).exists():
        return None
    return load_journal(ctx)


def load_journal(ctx: Ctx) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = ctx.store.load(ctx.project.merges_dir / JOURNAL, "merge_journal")
    except FileNotFoundError:
        return None
    return data


def has_landed(ctx: Ctx, j: dict[str, Any]) -> bool:
    """Did the interrupted ceremony already move the base to its result (maybe with commits since)?"""
    if j["good"] == j["base_sha"]:
        return False
    now = git.rev_parse(f"refs/heads/{j['target']}", cwd=ctx.project.root)
    return now is not None and (now == j["good"] or git.is_ancestor(j["good"], now, cwd=ctx.project.root))


def stop_orphan_test(j: dict[str, Any]) -> None:
    """A test run the killed ceremony left behind must not race the resumed one in the same tree."""
    pid = j.get("test_pid")
    if pid and procs.alive(pid, j.get("test_start")):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                if not procs.alive(pid, j.get("test_start")):
                    break
                time.sleep(0.1)
    j["test_pid"] = j["test_start"] = None


def drop(ctx: Ctx, journal: dict[str, Any]) -> None:
    integration = Integration(ctx, Path(journal["integration"]))
    integration.prepare(journal["base_sha"])
    (ctx.project.merges_dir / JOURNAL).unlink()
    ctx.log(
        "REVERTED", "MERGE_ROLLBACK", f"interrupted ceremony {journal['id']} dropped; {journal['target']} untouched"
    )
