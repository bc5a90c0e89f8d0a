"""Typer across versions: where its click lives, and keeping pydantic out of plain parameters.

Typer ships its own copy of click in recent releases and depends on click in older ones. Recent
releases also coerce every parameter value through a pydantic ``TypeAdapter`` that is built the first
time the parameter is processed, even for an absent ``None`` and for ``--help``; importing pydantic
and building the adapters costs several times more than all of ``orch status``. String and flag
parameters need no coercion (click hands them over as ``str`` or ``bool`` already), so ``command``
gives those a pass-through and leaves every other type (ints with ranges, paths, choices) to typer.
"""

from __future__ import annotations

import types
import typing
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    import typer


def click_exceptions() -> tuple[Any, Any, Any]:
    """(ClickException, Abort, Exit) as raised by the installed typer."""
    import importlib

    import typer  # orch.cli.app imports it first, with plain help set up

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:
        module = importlib.import_module("click.exceptions")
    return module.ClickException, typer.Abort, typer.Exit


def command(app: typer.Typer) -> Any:
    """The click command behind ``app``, with string and flag parameters spared the pydantic import."""
    import typer.main

    _spare_plain_parameters()
    return typer.main.get_command(app)


def plain_type(annotation: Any) -> type | None:
    """``str`` or ``bool`` for an annotation that is one of them (optionally ``| None``), else None."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = set(typing.get_args(annotation)) - {type(None)}
        annotation = args.pop() if len(args) == 1 else None
    return annotation if annotation in (str, bool) else None


def plain_list(annotation: Any) -> bool:
    """Is the annotation ``list[str]`` (optionally ``| None``)?"""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = set(typing.get_args(annotation)) - {type(None)}
        annotation = args.pop() if len(args) == 1 else None
    return typing.get_origin(annotation) is list and typing.get_args(annotation) == (str,)


def _spare_plain_parameters() -> None:
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer.core import _TyperParameter
    except ImportError:  # a typer without per-parameter coercion: nothing to spare
        return
    original = _TyperParameter.get_runtime_param
    if getattr(original, "orch_plain", False):
        return

    class Plain(RuntimeParam):
        """A value click already made a str (or bool) passes as it is; anything else goes the typer way."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if isinstance(value, plain_type(self.annotation) or ()):
                return value
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

    class PlainList(RuntimeParam):
        """Strings click collected (``nargs=-1`` or a repeated option) become the list typer makes of them."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
                return list(value)
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        descriptor = getattr(self, "type_descriptor", None)
        if getattr(self, "_runtime_param", False) is None and descriptor is not None:
            annotation, info = descriptor.annotation, descriptor.parameter_info
            if plain_type(annotation) is not None and self.nargs == 1 and not self.multiple:
                self._runtime_param = Plain(parameter_info=info, annotation=annotation)
            elif plain_list(annotation) and (self.nargs == -1 or self.multiple):
                self._runtime_param = PlainList(parameter_info=info, annotation=annotation)
        return original(self)

    get_runtime_param.orch_plain = True  # type: ignore[attr-defined]
    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
