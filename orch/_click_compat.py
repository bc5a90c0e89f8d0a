"""Typer ships its own copy of click in recent releases and depends on click in older ones."""

from __future__ import annotations

from typing import Any

import typer


def click_exceptions() -> tuple[Any, Any, Any]:
    """(ClickException, Abort, Exit) as raised by the installed typer."""
    import importlib

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:
        module = importlib.import_module("click.exceptions")
    return module.ClickException, typer.Abort, typer.Exit
