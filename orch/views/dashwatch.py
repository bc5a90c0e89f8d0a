"""What wakes ``orch ui``'s event streams: a look at the files every command writes, a few times a second.

One thread for the whole server (not one per browser) compares each file's size and mtime with the
last look: the event log, every task's ``status.yaml`` and ``loop.json``, the inbox's items, the rule
files (config, plan, locks), the base branch's ref, the task branches (``refs/heads/orch/*``) and
``packed-refs`` (a commit or a merge that writes no orch file still shows); and each task's
``agent.log`` apart, so a growing log wakes only the pages that show it. A look is a few ``stat``
calls per task: cheap at hundreds of tasks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from orch.core.repo import Project

POLL = 0.1  # seconds between looks: a change reaches the page well within a second
KEEP = 256  # versions remembered for streams that fell behind
Sig = tuple[int, int, int]


class Watcher:
    def __init__(self, project: Project, poll: float = POLL, base_branch: str | None = None) -> None:
        self.project = project
        self.poll = poll
        self.base_branch = base_branch
        self._looking = threading.Lock()  # the thread and an action's request both look
        self.version = 0
        self._changes: dict[int, frozenset[str]] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, Sig] = {}

    def start(self) -> None:
        self._last = self.look()
        self._thread = threading.Thread(target=self._run, name="orch-ui-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()

    def check(self) -> frozenset[str]:
        """Look once; what changed since the last look (``state``, ``log:<id>``), and wake the streams."""
        with self._looking:
            now = self.look()
            changed = {k for k in now.keys() | self._last.keys() if now.get(k) != self._last.get(k)}
            self._last = now
        what = frozenset("log:" + k[4:] if k.startswith("log:") else "state" for k in changed)
        if what:
            with self._cond:
                self.version += 1
                self._changes[self.version] = what
                self._changes.pop(self.version - KEEP, None)
                self._cond.notify_all()
        return what

    def wait(self, seen: int, timeout: float) -> tuple[int, frozenset[str] | None]:
        """Block until a version after ``seen`` (or ``timeout``); (the version now, what changed since
        ``seen``, or None on a timeout)."""
        with self._cond:
            if self.version == seen:
                self._cond.wait(timeout)
            if self.version == seen:
                return seen, None
            what: set[str] = set()
            for v in range(seen + 1, self.version + 1):
                what |= self._changes.get(v, {"state"})  # forgotten: say everything changed
            return self.version, frozenset(what)

    def look(self) -> dict[str, Sig]:
        p = self.project
        found: dict[str, Sig] = {}
        for key, path in (("log", p.log_path), ("config", p.config_path), ("plan", p.plan_path),
                          ("locks", p.locks_path)):  # fmt: skip
            _stat(found, key, path)
        git_dir = p.common_dir
        _stat(found, "packed-refs", git_dir / "packed-refs")
        if self.base_branch and ".." not in self.base_branch:
            _stat(found, "base", git_dir / "refs" / "heads" / self.base_branch)
        try:
            branches = os.scandir(git_dir / "refs" / "heads" / "orch")
        except OSError:
            branches = None
        if branches is not None:
            with branches:
                for entry in branches:
                    _stat(found, f"ref:{entry.name}", Path(entry.path))
        try:
            tasks = os.scandir(p.tasks_dir)
        except OSError:
            tasks = None
        if tasks is not None:
            with tasks:
                for entry in tasks:
                    folder = Path(entry.path)
                    _stat(found, f"status:{entry.name}", folder / "status.yaml")
                    _stat(found, f"loop:{entry.name}", folder / "loop.json")
                    _stat(found, f"log:{entry.name}", folder / "agent.log")
        try:
            items = os.scandir(p.run_dir / "inbox")
        except OSError:
            items = None
        if items is not None:
            with items:
                for entry in items:
                    if entry.name.endswith(".yaml"):
                        _stat(found, f"inbox:{entry.name}", Path(entry.path))
        return found


def _stat(found: dict[str, Sig], key: str, path: Path) -> None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return
    found[key] = (st.st_mtime_ns, st.st_size, st.st_ino)  # a rename into place is a new inode
