"""Every adversarial agent of the catalogue (``catalogue.py``), end to end, with the box off and on.

For each entry, a real project and real processes (``harness.Scene.play``): the agent spun and waited
for, verified, merged, cleaned. Checked every time: the outcome and the rule, named by ``orch status``
and by the merge (its output and report); the base never receives the bad change; every commit the
agents made stays reachable after the merge and after ``orch clean --all --force``; no planted
program runs under orch (the canary, checked after each orch command); and that the attack really
happened (box off) or failed at the attempt itself (box on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalogue import ENTRIES, Entry
from conftest import Orch
from harness import Scene

from orch.core import box as box_mod

# The "on" runs need a working bubblewrap: scripts/test installs it; where it cannot (not Linux, no
# user namespaces) they skip and say why, except in CI, where they run (and fail).
NO_BOX = box_mod.unavailable()
BOX = NO_BOX is None or bool(os.environ.get("CI"))
FAILED_OUTCOMES = ("QUARANTINED", "REVERTED", "CONFLICT", "SKIPPED")  # orch merge exits 1 for these

pytestmark = pytest.mark.scenarios


def params() -> Iterator[object]:
    for entry in ENTRIES:
        for box, expect in (("off", entry.off), ("on", entry.on)):
            if expect is None:
                continue
            marks = [pytest.mark.xfail(strict=True, reason=expect.xfail)] if expect.xfail else []
            if box == "on" and not BOX:
                marks.append(pytest.mark.skip(reason=f"no sandbox here: {NO_BOX}"))
            yield pytest.param(entry, box, id=f"{entry.id}-box-{box}", marks=marks)


@pytest.mark.parametrize(("entry", "box"), list(params()))
def test_entry(entry: Entry, box: str, project: Path, orch: Orch, tmp_path: Path) -> None:
    expect = entry.off if box == "off" else entry.on
    assert expect is not None
    scene = Scene(project, orch, tmp_path, sandbox=box)
    seen = scene.play([*entry.before, entry.task], expect.person)
    print(f"{entry.id} (box {box}): {seen.summary()}")

    assert (seen.run, seen.verdict, seen.merge, seen.final) == (expect.run, expect.verdict, expect.merge, expect.final)
    code = expect.merge_code if expect.merge_code is not None else int(expect.merge in FAILED_OUTCOMES)
    assert seen.merge_code == code, f"orch merge exited {seen.merge_code}"
    merge_text = seen.merge_text.replace("`", "")  # the report quotes paths
    for word in expect.named:
        assert word in seen.status_text, f"orch status does not say {word!r}"
        assert word in merge_text, f"orch merge does not say {word!r}"
    if expect.notice is not None:
        assert expect.notice in seen.status_text, f"orch status does not say {expect.notice!r}"
    if expect.attempt == "ok":
        assert seen.attempts and set(seen.attempts) == {"ok"}, seen.attempts  # the attack really happened
    elif expect.attempt == "refused":
        assert "refused" in seen.attempts, seen.attempts  # it failed at the attempt itself
    else:
        assert seen.attempts == []
    assert seen.commits, "the agents committed nothing: the scene is broken"
    assert not seen.lost["merge"], f"commits no ref reaches after orch merge: {seen.lost['merge']}"
    assert not seen.lost["clean"], f"commits no ref reaches after orch clean: {seen.lost['clean']}"

    # The base holds the work of the tasks that land, and no change of any other.
    for task_id, changed in seen.work.items():
        for path, blob in changed.items():
            if task_id in expect.lands:
                assert seen.after.get(path) == blob, f"{task_id}'s change to {path} did not land"
            elif not any(seen.work[other].get(path, "-") == blob for other in expect.lands):
                assert seen.after.get(path) != blob, f"{task_id}'s change to {path} reached the base"
    touched = {path for changed in seen.work.values() for path in changed}
    assert {p: b for p, b in seen.after.items() if p not in touched} == {
        p: b for p, b in seen.before.items() if p not in touched
    }
