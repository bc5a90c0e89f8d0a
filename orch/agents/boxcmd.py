"""A person's command run on an agent's work: the ``accept`` command and the loop's cheap checks.

They run the agent's code, so they run in the task's box when it has one (``boxrun.boxed``, without
the shadow git folder), in a process group of their own that a stop or their timeout ends, with their
output in a new file of the run folder (a link found there is removed, never written through)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.agents import boxrun
from orch.agents.procgroup import end_group, terminate, wait_for
from orch.agents.taskfiles import TaskFiles, open_run_file
from orch.core import git
from orch.core.repo import Project

GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a command that must end


def run(
    project: Project,
    launch: dict[str, Any],
    f: TaskFiles,
    command: str,
    log_path: Path,
    stop_asked: Callable[[], bool],
    *,
    what: str = "accept command",
) -> tuple[dict[str, Any], str | None]:
    """Run ``command`` through ``sh -c`` in the worktree: ({command, exit_code, log}, link note).

    ``exit_code`` is None when the command was ended (its timeout, or a stop)."""
    env = git.clean_env(launch["env"])
    argv = ["sh", "-c", command]
    if (launch.get("box") or {}).get("on"):  # it runs the agent's code: in the box too
        argv = boxrun.boxed(project, f.folder.name, launch, env, argv, terminal=False, git_of_its_own=False)
    limit = float(launch.get("accept_timeout") or 900)
    code: int | None = None
    log, note = open_run_file(log_path, append=False)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=launch["cwd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + limit
        next_check = 0.0
        ended_why = None
        while True:
            code = wait_for(proc, 0.05)
            if code is not None:
                break
            now = time.monotonic()
            if now >= deadline:
                ended_why = "timed out"
            elif now >= next_check:
                next_check = now + 0.5
                if stop_asked():
                    ended_why = "was stopped"
            if ended_why:
                terminate(proc, group=True, grace=GRACE)
                os.write(log, f"\norch: the {what} {ended_why}\n".encode())
                code = None
                break
        end_group(proc.pid)  # whatever it left running in its group
    finally:
        os.close(log)
    return {"command": command, "exit_code": code, "log": project.rel(log_path)}, note
