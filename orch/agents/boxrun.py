"""Running a task's processes in its box: the agent with a git folder and an outbox of its own, its
accept command without them; and, when the run ends, the agent's commits brought in.

The supervisor's side of ``orch.agents.box`` (the sandbox) and ``orch.agents.boxgit`` (its git)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orch.agents import outbox
from orch.agents.taskfiles import open_run_file
from orch.core.repo import Project
from orch.verify.hooks import AGENT_SETTINGS


def boxed(
    project: Project,
    task_id: str,
    launch: dict[str, Any],
    env: dict[str, str],
    argv: list[str],
    *,
    terminal: bool,
    git_of_its_own: bool,
) -> list[str]:
    """``argv`` run in the task's box (``orch.agents.box``); ``git_of_its_own``: with the shadow git
    folder it commits in and the outbox it reports to (the agent), or neither (its accept command)."""
    from orch.agents import boxgit
    from orch.core import box

    info = launch["box"]
    worktree = Path(launch["cwd"])
    spec = box.Spec(
        cwd=worktree,
        writable=[worktree, *(Path(p) for p in info.get("writable") or [])],
        readable=[Path(p) for p in info.get("readable") or []],
        network=bool(info.get("network", True)),
        terminal=terminal,
        # The worktree's .git file names the repository every later git (clean, doctor) works in:
        # nothing in the box may point it elsewhere. The hook settings orch wrote into the worktree
        # (the gates on its shell commands) are not the agent's to change. And the agent CLI's
        # settings, which can name programs a person's next session would run, stay read-only
        # inside its writable state.
        read_only=[
            worktree / ".git",
            *(worktree / rel for rel in AGENT_SETTINGS),
            *map(Path, info.get("read_only") or []),
        ],
    )
    if git_of_its_own:
        shadow = boxgit.prepare(project, task_id, worktree)
        mailbox = outbox.folder(project, task_id)
        if mailbox.is_symlink() or (mailbox.exists() and not mailbox.is_dir()):
            mailbox.unlink()
        mailbox.mkdir(exist_ok=True)
        spec.binds += [(shadow.folder, shadow.folder), (shadow.shadow_admin, shadow.admin), (mailbox, mailbox)]
        usage = launch.get("usage_file")
        if usage and launch.get("usage") == "aider-analytics":  # the agent appends its usage there
            fd, _note = open_run_file(Path(usage), append=True)
            os.close(fd)
            spec.binds.append((Path(usage), Path(usage)))
    env["ORCH_BOXED"] = "1"
    return box.wrap(argv, spec, env)


def bring_in(project: Project, task_id: str, launch: dict[str, Any]) -> Any:
    """The boxed run's commits, brought into the repository (``orch.agents.boxgit``)."""
    from orch.agents import boxgit

    if not (launch.get("box") or {}).get("on"):
        return boxgit.BroughtIn()
    try:
        return boxgit.bring_in(project, task_id, Path(launch["cwd"]) if launch.get("cwd") else None)
    except Exception as exc:  # the run must still be recorded, whatever git says
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return boxgit.BroughtIn(problems=[f"the commits the agent made in the box could not be brought in: {first}"])


def box_word(boxed: dict[str, Any]) -> str:
    """The status's ``sandbox``: on, off (a person said so), or off and why (auto, no bubblewrap)."""
    if boxed["on"]:
        return "on" if boxed.get("network", True) else "on, no network"
    why = str(boxed.get("notice") or "").removeprefix("agents run without a sandbox: ").split(" (sandbox: off")[0]
    return f"off: {why}" if why else "off"


def box_notice(statuses: list[dict[str, Any]]) -> str | None:
    """One line for a person when agents just started without the box they would have had (auto)."""
    for st in statuses:
        word = str(st.get("sandbox") or "")
        if word.startswith("off: "):
            return f"agents run without a sandbox: {word[5:]} (sandbox: off in .orch/config.yaml hides this)"
    return None
