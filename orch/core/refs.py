"""The names orch gives a task in git: its branch, its refs, its worktree; found from either side.

Spin, the supervisor, verification, the ceremony and clean all name a task's branch and refs; they
take the names from here so that none of them has to import another.
"""

from __future__ import annotations

from pathlib import Path

from orch.core import git
from orch.core.errors import InputError
from orch.core.plan import ID_RE, ID_RULE
from orch.core.text import quoted

SNAPSHOT_PREFIX = "refs/orch/snapshots"
KEPT_PREFIX = "refs/orch/kept"
BASE_PREFIX = "refs/orch/base"
SAFETY_PREFIX = "refs/orch/safety"  # the worktree before a RISKY command an agent ran (orch.verify.safety)
ATTEMPTS_PREFIX = "refs/orch/attempts"  # the loop's strategies and the runs orch retry set aside


def branch_name(task_id: str) -> str:
    return f"orch/{task_id}"


def check_id(task_id: str, *, cwd: Path) -> None:
    """Refuse ids that could be read as options, paths, shell or revision syntax; nothing is created."""
    shown = quoted(task_id)
    if not ID_RE.fullmatch(task_id):
        raise InputError(f"refused task id {shown}: {ID_RULE}", hint="use an id from .orch/plan.md (see: orch plan)")
    if not git.valid_branch_name(branch_name(task_id), cwd=cwd):
        raise InputError(f"refused task id {shown}: orch/{task_id} is not a valid git branch name")


def timestamp() -> str:
    """A UTC time usable inside a ref name (no ':')."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def worktree_gitdir(worktree: Path) -> Path | None:
    try:
        text = (worktree / ".git").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    path = Path(text.removeprefix("gitdir: "))
    return path if path.is_absolute() else (worktree / path).resolve()


def worktree_admin(common_dir: Path, worktree: Path) -> Path | None:
    """The private git folder git keeps for ``worktree`` (``<common dir>/worktrees/<name>``), found from
    git's side (each such folder's ``gitdir`` file names its worktree), never from the worktree's own
    ``.git`` file, which whoever works in the worktree can rewrite. Only plain files and folders count."""
    import os
    import stat

    base = common_dir / "worktrees"
    want = os.path.realpath(worktree)
    try:
        names = sorted(os.listdir(base), key=lambda n: (n != worktree.name, n))
    except OSError:
        return None
    for name in names:
        admin = base / name
        try:
            if not stat.S_ISDIR(os.lstat(admin).st_mode) or not stat.S_ISREG(os.lstat(admin / "gitdir").st_mode):
                continue
            text = (admin / "gitdir").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        named = Path(text)
        if named.is_absolute() and named.name == ".git" and os.path.realpath(named.parent) == want:
            return admin
    return None


def same_repo(worktree: Path, common_dir: Path) -> bool:
    gitdir = worktree_gitdir(worktree)
    return gitdir is not None and gitdir.resolve().parent.parent == common_dir.resolve()


def task_of_worktree(worktree: Path) -> str | None:
    gitdir = worktree_gitdir(worktree)
    if gitdir is None:
        return None
    try:
        value = (gitdir / "orch-task").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value if ID_RE.fullmatch(value) else None


# `orch spin` adds a worktree with --no-checkout, then checks its files out. Until the spin is done
# (its status written), this file in the worktree's private git folder says so, with the spinning
# process's pid and start time: a worktree that has it was never handed to an agent, and whatever it
# lacks was never checked out (not deleted by anyone). Doctor and clean finish or undo such a spin;
# nothing snapshots it as work.
CHECKOUT_MARKER = "orch-checking-out"


def mark_checkout(worktree: Path) -> None:
    """Say in the worktree's private git folder that ``orch spin`` (this process) is filling it."""
    import os

    from orch.core.procs import start_time

    gitdir = worktree_gitdir(worktree)
    if gitdir is not None:
        pid = os.getpid()
        (gitdir / CHECKOUT_MARKER).write_text(f"{pid} {start_time(pid) or '-'}\n", encoding="utf-8")


def checkout_marker(worktree: Path) -> tuple[int, str | None] | None:
    """The (pid, start time) of the spin that marked ``worktree`` as being filled, or None if unmarked."""
    gitdir = worktree_gitdir(worktree)
    if gitdir is None:
        return None
    try:
        text = (gitdir / CHECKOUT_MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pid, _, started = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else 0), (started if started and started != "-" else None)


def clear_checkout(worktree: Path) -> None:
    """The spin that filled ``worktree`` is done (or was finished or undone for it)."""
    gitdir = worktree_gitdir(worktree)
    if gitdir is not None:
        (gitdir / CHECKOUT_MARKER).unlink(missing_ok=True)


def git_worktrees(root: Path) -> dict[str, dict[str, str]]:
    """git's worktrees by path: branch, locked, prunable."""
    out = git.out(["worktree", "list", "--porcelain"], cwd=root)
    result: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines() + [""]:
        if not line:
            if "worktree" in current:
                result[current["worktree"]] = current
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value
    return result


def checked_out_elsewhere(root: Path, branch: str, besides: Path | None = None) -> str | None:
    """The folder of a worktree (the main checkout included) that has ``branch`` checked out, if any."""
    mine = besides.resolve() if besides is not None else None
    for path, info in git_worktrees(root).items():
        if info.get("branch") == f"refs/heads/{branch}" and (mine is None or Path(path).resolve() != mine):
            return path
    return None


def branch_heads(root: Path) -> dict[str, str]:
    """sha of every orch/* branch, in one git call."""
    out = git.out(
        ["for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/orch/"],
        cwd=root,
        optional_locks=False,
    )
    heads = {}
    for line in out.splitlines():
        name, _, sha = line.rpartition(" ")
        heads[name] = sha
    return heads
