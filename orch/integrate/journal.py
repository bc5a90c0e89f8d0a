"""The merge ceremony's crash journal: its file, reading it back, and what it says after a crash.

The ceremony writes ``.orch/run/merges/journal.json`` before every step (``steps.Ceremony.save``)
and deletes it when it is done, so a journal left behind is an interrupted ceremony: ``pending``
tells other commands (clean leaves its tasks alone), ``has_landed`` whether it had moved the base
already, ``stop_orphan_test`` ends the test run it left behind, ``drop`` rolls it back.
The crash tests kill orch right after a step's journal write with ``ORCH_FAILPOINT=ceremony.<step>``
(``orch.core.procs.fault_point``); ``fault_hooks`` kills it in the middle of a git command (the
worktree add, the fast-forward).
``ceremony_lock`` lets one ceremony run at a time and tells the others which process runs it.

Everything in the journal is a claim: anyone who can write ``.orch/run/`` (an agent too) can write
it. What a resumed ceremony takes from it is checked first (``orch.integrate.proof``); the paths it
works in are computed, never read from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orch.core import git, procs
from orch.core.context import Ctx
from orch.core.errors import EnvError, InputError
from orch.integrate.integration import INTEGRATION_DIR, Integration

JOURNAL = "journal.json"  # JSON is YAML too: read back through the store and validated like the rest


# A reference-transaction hook that SIGKILLs orch and every git process between it and the hook, once
# git has prepared the update of the ref named (its lock files taken, what it wrote before still there).
_KILLER = """#!/bin/sh
[ "$1" = prepared ] || exit 0
awk -v r={ref} '$3 == r {{ found = 1 }} END {{ exit !found }}' || exit 0
chain=""
p=$PPID
n=0
while [ "$p" != {pid} ]; do
    [ "$p" -gt 1 ] && [ "$n" -lt 6 ] || exit 0
    chain="$p $chain"
    p=$(cut -d' ' -f4 "/proc/$p/stat") || exit 0
    n=$((n + 1))
done
kill -9 {pid} $chain
"""


def fault_hooks(ctx: Ctx, point: str, ref: str) -> list[str]:
    """Fault injection inside a git command: with ORCH_FAILPOINT naming ``point``, git options (put
    after orch's own) that make git run a hook killing orch and git with SIGKILL right when git is
    about to update ``ref``: in ``git worktree add`` (ref ``HEAD``: its admin folder half made) or in
    the fast-forward of the person's checkout (its files written, the branch not moved yet)."""
    if not procs.failpoint_armed(point):
        return []
    import shlex

    folder = ctx.project.merges_dir / "fault-hooks"
    folder.mkdir(parents=True, exist_ok=True)
    hook = folder / "reference-transaction"
    hook.write_text(_KILLER.format(ref=shlex.quote(ref), pid=os.getpid()))
    hook.chmod(0o755)
    return ["-c", f"core.hooksPath={folder}"]


@contextlib.contextmanager
def ceremony_lock(ctx: Ctx, wait: float = 5.0) -> Iterator[None]:
    """One merge ceremony (or --resume, --abort) at a time: ``flock`` on ``.orch/run/locks/merge.lock``.

    The holder writes its pid and start time into the lock file and empties it before letting go.
    Another ceremony finding the lock held by a live process that wrote itself there says so at once
    (exit 3); a pid left by a killed ceremony is no one's (the kernel dropped its lock with it) and
    blocks nothing. A holder that wrote nothing (any other command taking the lock named "merge",
    or a ceremony that has not written its pid yet) is waited for up to ``wait`` seconds.
    The file only ever feeds a message: orch never signals the pid it reads there.
    """
    import fcntl

    path = ctx.project.lock_dir / "merge.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise EnvError(f"cannot open the lock file {ctx.project.rel(path)}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            except OSError as exc:  # ENOLCK, ENOSYS: no flock on this filesystem
                raise EnvError(
                    f"cannot lock {ctx.project.rel(path)}: {exc.strerror}",
                    hint="put the repository on a local filesystem that supports flock",
                ) from None
            holder = _holder(fd)
            if holder is not None:
                raise InputError(
                    f"a merge ceremony is running (pid {holder})",
                    hint="wait for it to finish; to stop it, interrupt it (Ctrl-C, or kill -INT "
                    f"{holder}), then orch merge --resume or --abort",
                )
            if time.monotonic() >= deadline:
                raise InputError(
                    f"another orch command holds the merge lock ({ctx.project.rel(path)})",
                    hint="wait for it to finish, then run orch merge again",
                )
            time.sleep(0.05)
        me = os.getpid()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{me}\n{procs.start_time(me) or ''}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # before the lock goes: no one reads a finished ceremony's pid as live
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote into the lock file, if that process still runs."""
    try:
        lines = os.pread(fd, 200, 0).decode("ascii", "replace").split("\n")
        pid = int(lines[0])
    except (OSError, ValueError):
        return None
    started = lines[1] if len(lines) > 1 and lines[1] else None
    return pid if pid != os.getpid() and procs.alive(pid, started) else None


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


def stop_orphan_test(ctx: Ctx, j: dict[str, Any]) -> None:
    """A test run the killed ceremony left behind must not race the resumed one in the same tree.

    The pid is the journal's word: orch signals its process group only if it leads one (the test run
    has a session of its own) and, where ``/proc`` says, works in orch's integration worktree.
    """
    pid = j.get("test_pid")
    if pid and procs.alive(pid, j.get("test_start")) and _ran_our_tests(pid, integration_path(ctx)):
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


def _ran_our_tests(pid: int, where: Path) -> bool:
    try:
        if os.getpgid(pid) != pid:
            return False
    except OSError:
        return False
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): the group leader and its start time
    except OSError:
        return False
    where = where.resolve()
    return cwd == where or where in cwd.parents


def integration_path(ctx: Ctx) -> Path:
    """orch's integration worktree: always computed from the config, never read from a journal."""
    return ctx.config.worktree_root / INTEGRATION_DIR


def drop(ctx: Ctx, journal: dict[str, Any]) -> None:
    """Roll an interrupted ceremony back: its worktree (orch's own) back to the base, the journal gone."""
    integration = Integration(ctx, integration_path(ctx))
    integration.prepare(journal["base_sha"])
    (ctx.project.merges_dir / JOURNAL).unlink()
    ctx.log(
        "REVERTED", "MERGE_ROLLBACK", f"interrupted ceremony {journal['id']} dropped; {journal['target']} untouched"
    )
