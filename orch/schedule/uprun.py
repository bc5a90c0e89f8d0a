"""``orch up``'s life: one at a time (``upfile``), a look at every wake (``up.Up.look``), until the plan
has landed or nothing moves any more.

It stops when every task of the plan has landed; or when nothing moves by itself (no agent runs or
waits for a slot, nothing is left to spin or land) and either ``--until-idle`` was given or nothing
waits for a person either; or when what waits for a person has waited ``wait_for_people`` seconds
with nothing else moving (bounded: it never waits forever). ``orch down`` (SIGTERM) and Ctrl-C stop
it between two steps; a ceremony it had started is finished or rolled back by the next ``orch up``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.core import eventlog
from orch.core.context import open_ctx
from orch.schedule import upfile
from orch.schedule.look import Look, Options
from orch.schedule.up import Say, Up
from orch.schedule.wake import Waker

SAFETY = 30.0  # a look at least this often, whatever wakes it (a status no event announced)
SOON = 1.0  # the next look when something is to be tried again in a moment
WAIT_FOR_PEOPLE = 8 * 3600.0  # how long nothing but people's answers may be awaited


class Stopped(KeyboardInterrupt):
    """SIGTERM (``orch down``) asked orch up to stop: it does, between two steps."""


def run(
    root: Path,
    options: Options,
    *,
    say: Say,
    on_look: Callable[[Look, list[eventlog.Event], list[eventlog.Event]], None],
    wait_for_people: float = WAIT_FOR_PEOPLE,
) -> Look:
    """Drain the plan; the last look (``done``: every task landed)."""
    ctx = open_ctx(root)  # a broken plan or config at the start: exit 3 before anything is claimed
    _ = ctx.config, ctx.plan
    project = ctx.project
    how: dict[str, Any] = {
        "land": options.land,
        "until_idle": options.until_idle,
        "budget": options.budget.text if options.budget else None,
        "log": project.rel(upfile.log_path(project)) if os.environ.get("ORCH_UP_DETACHED") else None,
    }
    claim = upfile.claim(project, ctx.store, **how)
    try:
        waker = Waker(project)
    except BaseException:
        claim.release()
        raise
    asked: list[int] = []

    def on_term(signum: int, frame: Any) -> None:  # stop between two steps, never inside one
        asked.append(signum)
        waker.poke()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        offset = _size(project.log_path)
        ctx.log(
            "-", "UP", f"started pid={os.getpid()} land={options.land}" + (" until-idle" if options.until_idle else "")
        )
        up = Up(root, options, say)
        up.recover()
        idle_since: float | None = None
        while True:
            if asked:
                raise Stopped
            before, offset = eventlog.read_from(project.log_path, offset)  # what led to this look, first
            look = up.look()
            events, offset = eventlog.read_from(project.log_path, offset)
            on_look(look, before, events)
            if look.again and not asked:
                continue
            if look.done:
                break
            if look.broken is not None or not look.moving:  # a broken plan or config waits for a person
                if options.until_idle or (look.broken is None and not look.waiting):
                    break
                idle_since = idle_since if idle_since is not None else time.monotonic()
                if time.monotonic() - idle_since >= wait_for_people:
                    look.notes.append(f"waited {wait_for_people:g}s for a person with nothing else to do")
                    break
            else:
                idle_since = None
            left = SAFETY if idle_since is None else wait_for_people - (time.monotonic() - idle_since)
            waker.wait(max(0.0, min(SOON if look.soon else SAFETY, left)))
        ctx.log("-", "UP", f"stopped: {look.merged} of {look.total} landed")
        return look
    except KeyboardInterrupt as exc:
        why = "SIGTERM" if isinstance(exc, Stopped) else "Ctrl-C"
        ctx.log("-", "UP", f"stopped by {why}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        waker.close()
        claim.release()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
