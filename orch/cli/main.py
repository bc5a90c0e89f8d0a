"""The typer CLI as a whole: the app with every command module registered, run in one error handler.

``orch.cli.entry.main`` runs ``verify`` and ``merge`` itself when it can and hands the rest here.
"""

from __future__ import annotations

from typing import NoReturn

from orch.cli.app import app

# isort: off
# Importing a command module registers its commands; `orch --help` lists them in this order.
from orch.cli import project_cmds, task_cmds, human_cmds, verify_cmds, merge_cmds  # noqa: F401
from orch.cli import up_cmds, inbox_cmds, policy_cmds, timeline_cmds  # noqa: F401
from orch.cli import level_cmds, ui_cmds  # noqa: F401

# isort: on
from orch.core.errors import ExitCode


def main(argv: list[str] | None = None) -> NoReturn:
    """The typer app behind ``orch.cli.entry.main``, inside its one error handler."""
    from orch.cli.output import guarded

    def body() -> int:
        from orch.cli.click_compat import click_exceptions, command

        ClickException, Abort, Exit = click_exceptions()
        try:
            result = command(app).main(args=argv, standalone_mode=False, prog_name="orch")
        except Exit as exc:
            result = exc.exit_code
        except ClickException as exc:
            exc.show()
            return ExitCode.USAGE
        except Abort:
            raise KeyboardInterrupt from None
        if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into a silent 130: say it, as the fast path does
            raise KeyboardInterrupt
        return int(result) if isinstance(result, int) else ExitCode.OK

    guarded(body)
