"""The hooks as programs: run one, print what it found, exit with the code the caller reads.

``python -m orch.hookmain NAME`` (what installed hooks run) and ``orch hook NAME`` both land here;
what each hook judges is in ``orch.verify.hookrun``. Kept free of typer and of anything the hooks
do not need: this runs on every ``git commit`` and every agent edit.
"""

from __future__ import annotations

import os
import sys

from orch.core.errors import OrchError
from orch.core.text import printable
from orch.verify import hookrun

HOOK_PROGRAMS = ("pre-commit", "claude-pretool", "codex-pretool", "gemini-pretool")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in HOOK_PROGRAMS:
        sys.stderr.write(f"usage: python -m orch.hookmain {'|'.join(HOOK_PROGRAMS)}\n")
        return 2
    name = argv[0]
    try:
        if name == "pre-commit":
            code, message = hookrun.pre_commit(os.getcwd())
        else:
            code, message = hookrun.agent_hook(name.split("-")[0], sys.stdin.read())
        if message:
            sys.stderr.write(printable(message) + "\n")
        return code
    except OrchError as exc:  # broken rules: refuse, as verify does
        sys.stderr.write(f"orch: {printable(exc.render())}\n")
        return 1 if name == "pre-commit" else 2
    except Exception as exc:  # a bug in orch: warn and let the action through; verify still judges it
        sys.stderr.write(f"orch: warning: the {name} hook failed ({type(exc).__name__}: {exc}); not blocking\n")
        return 0
