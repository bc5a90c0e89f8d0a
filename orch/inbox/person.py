"""Only a person decides: the commands that approve, merge or start agents refuse to run as an agent.

An agent's own commands are ``orch report``, ``orch propose`` and the hooks. Anything that decides
(answers the inbox, acks a lock, merges, starts or restarts an agent, changes the locks or the plan)
refuses when it runs with a task's environment (``ORCH_TASK``; ``ORCH_BOXED`` inside the box) or
inside a task's worktree. It is a tripwire, not the guarantee: a process of the same user can clear
its environment and change folder. The guarantees are elsewhere: in the box the agent cannot write
``.orch/`` at all, and nothing an agent writes is honoured as an answer (``orch.inbox.decide``).
"""

from __future__ import annotations

import os
from pathlib import Path

from orch.core.errors import InputError

# The deciding commands: a top-level name, or (group, sub-command).
DECIDING = frozenset(
    {
        "approve",
        "reject",
        "ack",
        "ack-base",
        "merge",
        "spin",
        "start",
        "run",
        "resume",
        "retry",
        "up",
        "down",
        "stop",
        "clean",
        "takeover",
        "release",
        "dequeue",
        "ui",  # the dashboard answers the inbox, acks, stops agents, edits the locks
    }
)
DECIDING_SUB = frozenset(
    {
        ("lock", "add"),
        ("lock", "require"),
        ("lock", "rm"),
        ("plan", "add"),
        ("level", "set"),
        ("hooks", "install"),
        ("hooks", "uninstall"),
    }
)


def command_of(args: list[str]) -> str | None:
    """The deciding command ``args`` run, or None. Only ``orch CMD --help`` alone is help: a ``--help``
    anywhere else may be an option's value (``--note --help``), and the command would run."""
    if not args:
        return None
    if args[0] in DECIDING:
        name, rest = args[0], args[1:]
    elif len(args) > 1 and (args[0], args[1]) in DECIDING_SUB:
        name, rest = f"{args[0]} {args[1]}", args[2:]
    else:
        return None
    return None if rest in (["--help"], ["-h"]) else name


def require_person(args: list[str]) -> None:
    """Refuse a deciding command run as an agent (see the module docstring)."""
    name = command_of(args)
    if name is None:
        return
    why = None
    if os.environ.get("ORCH_TASK"):
        why = f"it runs with task {os.environ['ORCH_TASK']}'s environment (ORCH_TASK is set)"
    elif os.environ.get("ORCH_BOXED"):
        why = "it runs in an agent's box (ORCH_BOXED is set)"
    else:
        try:
            here = Path.cwd()
        except OSError:  # a folder that no longer exists: the command itself says so
            here = None
        task = _task_worktree(here) if here is not None else None
        if task is not None:
            why = f"it runs inside task {task}'s worktree"
    if why is not None:
        raise InputError(
            f"orch {name} is for a person, and {why}: agents propose, people decide",
            hint="an agent asks with orch report BLOCKED --note ... or orch propose; "
            "a person runs this from their own checkout and shell",
        )


def _task_worktree(cwd: Path) -> str | None:
    """The task whose worktree ``cwd`` is in (its ``.git`` file names a linked worktree on
    ``orch/<id>``, or one orch recorded for a task), or None."""
    for folder in (cwd, *cwd.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return None  # a main checkout
        if not dot_git.is_file():
            continue
        try:
            line = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        if not line.startswith("gitdir:"):
            return None
        admin = Path(line.removeprefix("gitdir:").strip())
        admin = admin if admin.is_absolute() else (folder / admin)
        try:
            head = (admin / "HEAD").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            head = ""
        if head.startswith("ref: refs/heads/orch/"):
            return head.removeprefix("ref: refs/heads/orch/")
        return _recorded(folder)
    return None


def _recorded(worktree: Path) -> str | None:
    """The task whose worktree ``worktree`` is though its HEAD left ``orch/<id>``: a status names it,
    or it is a folder of the configured ``worktree_root``."""
    from orch.core import config, state
    from orch.core.repo import find_project
    from orch.core.store import Store

    here = worktree.resolve()
    try:
        project = find_project(worktree)
        store = Store(project.root, project.orch_dir)
        for task_id, st in state.read_all(project, store).items():
            if st.get("worktree") and Path(st["worktree"]).resolve() == here:
                return task_id
        if here.parent == config.load(project, store).worktree_root.resolve():
            return here.name
    except Exception:  # an odd repository is not an agent's worktree
        return None
    return None
