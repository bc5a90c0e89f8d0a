"""The ``orch`` program: one error handler for every command, and the commands that skip the CLI.

typer and click cost more to import than a whole ``orch verify`` of a big change set, so ``verify``
and ``merge`` given plain arguments (ids, flags, ``--into BRANCH``; no ``--help``) are run from here
directly, through the same function their typer commands call. Anything else goes to ``orch.cli``.
Errors are caught in one place, ``guarded``: an ``OrchError`` prints what, where and how to fix and
exits with its code; anything else prints one line and the path of a crash log holding the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from orch.errors import ExitCode, OrchError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import NoReturn


class StdoutClosed(Exception):
    """The reader of our output went away (``orch log | head``): not an error, nothing more to say.

    Not an ``OSError``, so click does not turn it into exit code 1 on its way to ``guarded``.
    """


def out(text: str = "") -> None:
    try:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    except BrokenPipeError:
        raise StdoutClosed() from None


def err(text: str) -> None:
    sys.stderr.write(text + ("\n" if not text.endswith("\n") else ""))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console entry point (``orch`` and ``git-orch``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    fast = _fast(args)
    if fast is None:
        from orch.cli import main as cli_main

        cli_main(args)
    guarded(fast)


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


def verify_command(task_ids: Sequence[str], *, all_tasks: bool, as_json: bool) -> int:
    """``orch verify``: the body behind both the fast path and the typer command."""
    from orch import verify as verify_mod
    from orch.context import open_ctx

    if task_ids and all_tasks:
        raise UsageError("name tasks or pass --all, not both")
    if not task_ids and not all_tasks:
        raise UsageError("name the tasks to verify (orch verify T1 T2), or pass --all")
    verdicts = verify_mod.verify_many(open_ctx(from_source=True), task_ids, all_tasks=all_tasks)
    if as_json:
        from orch import render

        out(render.dumps({"verdicts": [v.to_json() for v in verdicts]}))
    else:
        out("\n".join(verify_mod.verdict_text(v) for v in verdicts))
    return ExitCode.OK if all(v.mergeable for v in verdicts) else ExitCode.CHECK_FAILED


def merge_command(
    ids: Sequence[str], *, dry_run: bool, batch: bool, resume: bool, abort: bool, into: str | None, as_json: bool
) -> int:
    """``orch merge``: the body behind both the fast path and the typer command."""
    from orch import ceremony, render
    from orch.context import open_ctx

    if resume and abort:
        raise UsageError("--resume and --abort exclude each other")
    if (resume or abort) and (ids or batch or into or dry_run):
        raise UsageError(
            "--resume and --abort take no ids, --batch, --into or --dry-run: "
            "they continue or drop the interrupted ceremony as it was started"
        )
    if dry_run and batch:
        raise UsageError("--dry-run forecasts conflicts only; leave out --batch")
    c = open_ctx(from_source=True)  # the ceremony judges: its test command, plan and locks come from the files
    if dry_run:
        outcome = ceremony.dry_run(c, list(ids) or None, into=into)
    else:
        with render.progress() as progress:
            outcome = ceremony.merge(
                c, list(ids) or None, batch=batch, into=into, resume=resume, abort=abort, progress=progress
            )
    if as_json:
        out(render.dumps(outcome.to_json()))
    else:
        out(render.merge_outcome(outcome))
    return ExitCode.CHECK_FAILED if outcome.failed else ExitCode.OK


def guarded(body: Callable[[], int]) -> NoReturn:
    """Run ``body`` and exit with its code, or with the code of what it raised."""
    code: int = ExitCode.OK
    try:
        code = body()
    except OrchError as exc:
        err(f"orch: {exc.render()}" if not isinstance(exc, UsageError) else f"orch: usage: {exc.render()}")
        code = exc.exit_code
    except KeyboardInterrupt:
        err("orch: interrupted")
        code = ExitCode.INTERRUPTED
    except (StdoutClosed, BrokenPipeError):
        _silence_stdout()
        code = ExitCode.OK
    except Exception as exc:  # a bug: one line for the person, the traceback in a file
        path = _crash_log(exc)
        err(f"orch: internal error: {type(exc).__name__}: {exc}\n  the traceback is in {path}; please report it")
        code = ExitCode.GIT
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code)


def _crash_log(exc: BaseException) -> str:
    import tempfile
    import traceback
    from pathlib import Path

    from orch.eventlog import utcnow

    text = f"orch {' '.join(sys.argv[1:])}\n{utcnow()}\n\n" + "".join(traceback.format_exception(exc))
    folder: Path
    try:
        from orch.repo import find_project

        folder = find_project(require_init=True).run_dir / "crash"
        folder.mkdir(parents=True, exist_ok=True)
    except Exception:
        folder = Path(tempfile.gettempdir())
    fd, path = tempfile.mkstemp(prefix="orch-crash-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit does not hit the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
