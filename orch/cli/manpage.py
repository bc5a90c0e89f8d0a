"""The manual pages ``orch(1)`` and ``git-orch(1)``, generated from the CLI's own help.

``git orch --help`` makes git run ``man git-orch``; the wheel installs both pages under
``share/man/man1`` next to the console scripts, where ``man`` looks for them (pipx links them into
its man folder). The pages in ``man/`` are this module's output, and a test keeps them in step:

    python -m orch.cli.manpage man/
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PAGES = ("orch", "git-orch")


def _escape(text: str) -> str:
    """Text that roff shows as written: backslashes doubled, no line read as a request."""
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _context(command: Any, name: str, parent: Any = None) -> Any:
    # A fixed width: the page must not depend on the terminal of whoever generated it.
    return command.context_class(command, info_name=name, parent=parent, terminal_width=78, max_content_width=78)


def _walk(command: Any, ctx: Any, path: list[str]) -> list[tuple[list[str], str]]:
    found = [(path, command.get_help(ctx).rstrip())]
    if hasattr(command, "list_commands"):  # a group: its commands follow it
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                found += _walk(sub, _context(sub, name, ctx), [*path, name])
    return found


def render(page: str) -> str:
    """The roff source of the page ``orch`` or ``git-orch``."""
    from orch import __version__
    from orch.cli.click_compat import command
    from orch.cli.main import app

    root = command(app)
    prog = "git orch" if page == "git-orch" else "orch"
    sections = _walk(root, _context(root, prog), [])
    head = [
        f'.TH {page.upper()} 1 "" "git-orch {__version__}" "git-orch manual"',
        ".SH NAME",
        f"{page} \\- a git-native orchestrator for coding agents",
        ".SH SYNOPSIS",
        f".B {prog}\n.I COMMAND\n.RI [ ARGS ]...",
        ".SH DESCRIPTION",
        _escape(
            "orch writes nothing but files and git refs: a plan in .orch/plan.md, a worktree and a branch "
            "orch/ID per task, a verdict for the exact commit an agent made, and an ordered, test-gated "
            "merge ceremony that undoes merges that break the tests. Every command below is also "
            f"'{'orch' if page == 'git-orch' else 'git orch'} COMMAND'. The README has examples for each."
        ),
        ".SH COMMANDS",
    ]
    body = []
    for path, text in sections:
        name = " ".join([prog, *path])
        body += [f".SS {_escape(name)}", ".nf", _escape(text), ".fi"]
    tail = [".SH EXIT STATUS", ".nf", "0 ok; 1 a check failed (a violation, a failed merge); 2 usage;",
            "3 bad input or state; 4 git or environment problem; 130 interrupted.", ".fi",
            ".SH SEE ALSO", "git(1), git-worktree(1)"]  # fmt: skip
    return "\n".join(head + body + tail) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m orch.cli.manpage FOLDER\n")
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for page in PAGES:
        (folder / f"{page}.1").write_text(render(page), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
