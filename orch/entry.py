"""The ``orch`` program: one error handler for every command, and the commands that skip the CLI.

typer and click cost more to import than a whole ``orch verify`` of a big change set, so a command
whose arguments are plain (ids and flags, no ``--help``) is run from here directly, through the same
function its typer command calls. Anything else goes to ``orch.cli``. Errors are caught in one
place, ``guarded``: an ``OrchError`` prints what, where and how to fix and exits with its code;
anything else prints one line and the path of a crash log holding the traceback.
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


def _fast(args: list[str]) -> Callable[[], int] | None:
    """The command for ``args`` when it can run without the CLI framework, else None."""
    if args[:1] == ["verify"]:
        flags = {a for a in args[1:] if a.startswith("-")}
        if flags <= {"--all", "--json"}:  # anything else (--help, --, a typo) is for typer to explain
            ids = [a for a in args[1:] if not a.startswith("-")]
            return lambda: verify_command(ids, all_tasks="--all" in flags, as_json="--json" in flags)
    return None


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
