"""The typer app: its sub-commands' groups, the root options, and what every command shares.

The commands themselves live in ``*_cmds`` modules beside this one; ``orch.cli.main`` imports
them all and runs the app. Commands parse arguments, call one function, render its result.

No file I/O and no git here. Errors are caught in one place, ``orch.cli.output.guarded``, which
the fast path in ``orch.cli.entry`` shares.
"""

from __future__ import annotations

import os
from typing import Any

# Rich help panels cost more to import than all of orch; plain help keeps `orch --help` fast. typer
# reads the variable once, on import: it is taken out again, so the agents, tests and checks orch
# runs see the environment the user gave it, whichever path (this CLI or the fast path in orch.cli.entry) ran them.
_RICH_SET = "TYPER_USE_RICH" not in os.environ
if _RICH_SET:
    os.environ["TYPER_USE_RICH"] = "0"

import typer  # noqa: E402

if _RICH_SET:
    del os.environ["TYPER_USE_RICH"]


app = typer.Typer(
    name="orch",
    help="A git-native orchestrator for coding agents: plan, spin, verify, merge, clean.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
plan_app = typer.Typer(help="Show, check and extend .orch/plan.md.", invoke_without_command=True)
app.add_typer(plan_app, name="plan")
lock_app = typer.Typer(help="Hard and soft locks on paths, tests, code regions and requirements.", no_args_is_help=True)
app.add_typer(lock_app, name="lock")
hooks_app = typer.Typer(help="The git pre-commit hook shared by every worktree.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
hook_app = typer.Typer(help="Run one hook (what the installed hooks call).", no_args_is_help=True)
app.add_typer(hook_app, name="hook")
policy_app = typer.Typer(help="The command policy: how risky a shell command an agent runs is.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


from orch.cli.output import out  # noqa: E402


def ctx(*, from_source: bool = False) -> Any:
    """The project's context; ``from_source`` for commands that judge (verify, merge): config, plan
    and locks parsed from their files, not from the caches under .orch/run/."""
    from orch.core.context import open_ctx

    return open_ctx(from_source=from_source)


def version_callback(value: bool) -> None:
    if value:
        from orch import __version__

        out(f"orch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """A git-native orchestrator for coding agents: plan, spin, verify, merge, clean."""
