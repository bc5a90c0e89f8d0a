"""The hooks as programs: run one, print what it found, exit with the code the caller reads.

``python -m orch.hookmain NAME`` (what installed hooks run) and ``orch hook NAME`` both land here;
what each hook judges is in ``orch.verify.hookrun`` (file edits) and ``orch.inbox.gates`` (shell
commands, by the command policy). Kept free of typer and of anything the hooks
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
            code, message = _agent_hook(name.split("-")[0], sys.stdin.read())
        if message:
            sys.stderr.write(printable(message) + "\n")
        return code
    except OrchError as exc:  # broken rules: refuse, as verify does
        sys.stderr.write(f"orch: {printable(exc.render())}\n")
        return 1 if name == "pre-commit" else 2
    except Exception as exc:  # a bug in orch: warn and let the action through; verify still judges it
        sys.stderr.write(f"orch: warning: the {name} hook failed ({type(exc).__name__}: {exc}); not blocking\n")
        return 0


def _agent_hook(agent: str, text: str) -> tuple[int, str]:
    """A shell command goes to the command policy (``orch.inbox.gates``), a file edit to the rules."""
    if '"run_shell_command"' in text or '"Bash"' in text:  # cheap first look: most calls are edits
        import json

        try:
            data = json.loads(text)
        except ValueError:
            data = None
        from orch.inbox import gates

        if gates.is_shell_call(data):
            return gates.shell_hook(agent, data)
    return hookrun.agent_hook(agent, text)
