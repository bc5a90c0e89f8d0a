"""The ``orch`` program: one error handler for every command, and the commands that skip the CLI.

typer and click cost more to import than a whole ``orch verify`` of a big change set, so ``verify``
and ``merge`` given plain arguments (ids, flags, ``--into BRANCH``; no ``--help``) are run from here
directly, through the same function their typer commands call. Anything else goes to
``orch.cli.main``, the typer CLI.
Both paths run inside the same error handler, ``orch.cli.output.guarded``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from orch.cli.fast import merge_command, verify_command
from orch.cli.output import guarded

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console entry point (``orch`` and ``git-orch``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and _maybe_deciding(args[0]):
        from orch.core.errors import OrchError
        from orch.inbox.person import require_person

        try:
            require_person(args)
        except OrchError as exc:
            refused = exc

            def refuse() -> int:
                raise refused

            guarded(refuse)
    fast = _fast(args)
    if fast is None:
        from orch.cli.main import main as cli_main

        cli_main(args)
    guarded(fast)


# A cheap first look (no import) at what only a person may run: every name of
# ``orch.inbox.person.DECIDING`` and the groups of its ``DECIDING_SUB`` (a test checks they agree).
MAYBE_DECIDING = frozenset({
    "approve", "reject", "ack", "ack-base", "merge", "spin", "start", "run", "resume", "retry", "up", "down", "stop",
    "clean", "takeover", "release", "dequeue", "ui", "lock", "plan", "hooks", "level",
})  # fmt: skip


def _maybe_deciding(name: str) -> bool:
    return name in MAYBE_DECIDING


def _verify(ids: list[str], seen: set[str], values: dict[str, str]) -> int:
    return verify_command(ids, all_tasks="--all" in seen, as_json="--json" in seen)


def _merge(ids: list[str], seen: set[str], values: dict[str, str]) -> int:
    return merge_command(
        ids,
        dry_run="--dry-run" in seen,
        batch="--batch" in seen,
        resume="--resume" in seen,
        abort="--abort" in seen,
        into=values.get("--into"),
        as_json="--json" in seen,
    )


# Commands run without the CLI framework: their flags, their options that take one value, and how
# to call their body with the ids, the flags seen and the options' values.
_FAST: dict[str, tuple[frozenset[str], frozenset[str], Callable[[list[str], set[str], dict[str, str]], int]]] = {
    "verify": (frozenset({"--all", "--json"}), frozenset(), _verify),
    "merge": (frozenset({"--dry-run", "--batch", "--resume", "--abort", "--json"}), frozenset({"--into"}), _merge),
}


def _fast(args: list[str]) -> Callable[[], int] | None:
    """The command for ``args`` when it can run without the CLI framework, else None.

    Only the plain forms: ids, known flags, and ``--into VALUE`` given once. Anything else (``--help``,
    ``--``, ``--into=X``, a typo) is for typer to run or explain.
    """
    if not args or args[0] not in _FAST:
        return None
    flags, valued, body = _FAST[args[0]]
    ids: list[str] = []
    seen: set[str] = set()
    values: dict[str, str] = {}
    rest = iter(args[1:])
    for arg in rest:
        if arg in flags:
            seen.add(arg)
        elif arg in valued:
            value = next(rest, None)
            if value is None or value.startswith("-") or arg in values:
                return None
            values[arg] = value
        elif arg.startswith("-"):
            return None
        else:
            ids.append(arg)
    return lambda: body(ids, seen, values)
