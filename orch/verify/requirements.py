"""Requirement locks: a person's check commands, run on a task's exact commit or in the merge
ceremony's integration worktree.

``orch verify`` runs them in ``checkout_at``, a fresh temporary worktree that holds exactly the
commit's tree, written from git's objects with every filter blanked (``write_tree``); the ceremony
runs the hard ones where it merged (``check_requirements``). Its own module because only those two
run checks: the hooks never import it.
"""

from __future__ import annotations

import os

from orch.core import git
from orch.core.errors import InputError
from orch.verify import locks as locks_mod
from orch.verify.changeset import GITLINK, SYMLINK

TYPE_CHECKING = False  # as in the modules git hooks import: typing for mypy only (it reads this as typing's)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from orch.core.context import Ctx


class RequirementFailure:
    __slots__ = ("lock_id", "text", "mode", "via", "check", "exit_code", "output")

    def __init__(self, lock: locks_mod.Lock, exit_code: int, output: str) -> None:
        self.lock_id = lock.id
        self.text = lock.text or ""
        self.mode = lock.mode
        self.via = lock.via
        self.check = lock.check or ""
        self.exit_code = exit_code
        self.output = output

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def run_check(
    command: str, cwd: Path | str, *, timeout: float, boxed: Callable[[list[str]], list[str]] = list
) -> tuple[int, str]:
    """Run a person's check command through ``sh -c`` (``boxed``: in the box, ``orch.core.box``);
    (exit code, the last 2000 characters of output)."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        boxed(["sh", "-c", command]),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=git.clean_env(),
        start_new_session=True,
    )
    try:
        data, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            data, _ = proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            data, _ = proc.communicate()
        data = (data or b"") + f"\n(timed out after {timeout:g}s)".encode()
        code = 124
    text = data.decode("utf-8", "replace")
    return code, text[-2000:]


def run_requirements(
    ctx: Ctx, lockset: locks_mod.LockSet, cwd: Path, *, timeout: float, hard_only: bool = False
) -> list[RequirementFailure]:
    """Run the requirement checks in ``cwd``, in the box when the config boxes agents: the tree there
    is an agent's work, and a check runs its code."""
    failures = []
    boxed = None
    for lk in lockset.of_kind("requirement", agents=False):
        if hard_only and lk.mode != "hard":
            continue
        if boxed is None:
            boxed = box_for(ctx, cwd)
        code, output = run_check(lk.check or "", cwd, timeout=timeout, boxed=boxed)
        if code != 0:
            failures.append(RequirementFailure(lk, code, output))
    return failures


def check_requirements(ctx: Ctx, cwd: Path, *, hard_only: bool = True) -> list[RequirementFailure]:
    """Run the requirement locks' checks in ``cwd`` (the ceremony's integration worktree)."""
    from orch.verify import inforce

    ctx = ctx.judging()
    lockset = inforce.locks(ctx)
    return run_requirements(ctx, lockset, cwd, timeout=ctx.config.test_timeout, hard_only=hard_only)


def box_for(ctx: Ctx, cwd: Path) -> Callable[[list[str]], list[str]]:
    """How a person's command runs on an agent's tree in ``cwd``: boxed as the config says."""
    from orch.core import box

    project = ctx.project
    config = ctx.judging().config
    readable = [project.root, project.common_dir, config.worktree_root]
    writable = box.expand(config.writable, os.environ.get("HOME"))
    return box.for_commands(config.sandbox, cwd, readable, writable)


class checkout_at:
    """A fresh temporary worktree holding exactly the tree of ``sha`` (removed afterwards).

    Never the task's own worktree: it may hold ignored files that shadow committed ones, and its agent
    may still be running. Nor is it filled by git's checkout, which runs smudge filters and hooks that
    config an agent can plant (``includeIf`` reaching only linked worktrees, ``info/attributes``) would
    name: the files are written here from ``ls-tree`` and ``cat-file``, and the index is set with
    ``read-tree`` (which runs no filter), then refreshed with every filter blanked.
    """

    def __init__(self, ctx: Ctx, task_id: str, sha: str) -> None:
        self.ctx = ctx
        self.task_id = task_id
        self.sha = sha
        self.temp: Path | None = None

    def __enter__(self) -> Path:
        root = self.ctx.project.root
        self.temp = self.ctx.project.run_dir / "verify" / f"{self.task_id}-{self.sha[:12]}-{os.getpid()}"
        if self.temp.exists():
            self._remove()
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.run(
                [*_no_filters(root), "worktree", "add", "--no-checkout", "--detach", str(self.temp), self.sha],
                cwd=root,
            )
            write_tree(root, self.sha, self.temp)
            git.run(["read-tree", self.sha], cwd=self.temp)
            blank = _no_filters(self.temp)  # as config is seen from inside this worktree
            git.run([*blank, "update-index", "-q", "--refresh"], cwd=self.temp, check=False)
        except BaseException:
            self._remove()
            raise
        return self.temp

    def __exit__(self, *exc: object) -> None:
        if self.temp is not None:
            self._remove()

    def _remove(self) -> None:
        assert self.temp is not None
        root = self.ctx.project.root
        git.run(["worktree", "remove", "--force", str(self.temp)], cwd=root, check=False)
        if self.temp.exists():  # not a worktree git knows (an interrupted earlier run): ours to clear
            import shutil

            shutil.rmtree(self.temp, ignore_errors=True)
        git.run(["worktree", "prune"], cwd=root, check=False)


def write_tree(root: Path | str, sha: str, dest: Path) -> None:
    """Write the files of commit ``sha`` into the folder ``dest`` as git stores them: no filter, no
    end-of-line conversion, modes kept (regular, executable, symlink; a submodule is an empty folder).

    Folders and files first, symlinks last, so no write can pass through a symlink of the tree; a
    path that could leave ``dest`` (``..``, ``.git``, an absolute path) is refused.
    """
    listing = git.run(["ls-tree", "-r", "-z", "--full-tree", sha], cwd=root).stdout
    entries: list[tuple[str, str, str]] = []  # (mode, object, path)
    for record in listing.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _kind, obj = meta.split(" ")
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
            raise InputError(f"commit {sha[:12]} holds a path git would never check out: {path!r}")
        entries.append((mode, obj, path))
    blobs = git.cat_blobs([obj for mode, obj, _ in entries if mode != GITLINK], cwd=root)
    links = []
    for mode, obj, path in entries:
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if mode == SYMLINK:
            links.append((obj, target))
        elif mode == GITLINK:
            os.makedirs(target, exist_ok=True)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o755 if mode == "100755" else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blobs[obj])
    for obj, target in links:
        os.symlink(blobs[obj].decode("utf-8", "surrogateescape"), target)


def _no_filters(root: Path) -> list[str]:
    """``-c`` options that blank every configured clean/smudge/process filter."""
    pattern = r"^filter\..*\.(smudge|clean|process)$"
    r = git.run(["config", "--name-only", "--get-regexp", pattern], cwd=root, check=False)
    opts: list[str] = []
    for name in r.stdout.split():
        opts += ["-c", f"{name}="]
    return opts
