"""The supervisor in a tmux pane: the caller's environment taken over, the pane's output piped into
``agent.log``. Also ``shell_quote``, for the few shell lines orch writes itself (never with an id)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from orch.agents.taskfiles import TaskFiles


def pipe_to_log(f: TaskFiles) -> None:
    """tmux pipes this pane's output into the task's ``agent.log``."""
    if os.environ.get("TMUX_PANE"):
        with contextlib.suppress(OSError):
            subprocess.run(
                ["tmux", "pipe-pane", "-t", os.environ["TMUX_PANE"], "-o", pane_to_log(f)],
                check=False,
                capture_output=True,
            )


def pane_to_log(f: TaskFiles) -> str:
    """The shell command tmux pipes the pane into: ``orch.agents.ptylog`` (plain line ends, no NUL
    bytes), from the run folder (``-m`` imports from the working folder); ``cat`` if it cannot start."""
    log = shell_quote(str(f.log))
    python = shell_quote(sys.executable)
    return f"cd {shell_quote(str(f.folder))} && {python} -m orch.agents.ptylog {log} || exec cat >> {log}"


def adopt_caller_env(path: Path) -> None:
    """Take the environment of the orch that started this tmux session (API keys and all)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    if isinstance(saved, dict):
        keep = {k: os.environ[k] for k in ("TMUX", "TMUX_PANE", "TERM") if k in os.environ}
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in saved.items()})
        os.environ.update(keep)


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
