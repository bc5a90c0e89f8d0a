"""What the commands print and the one error handler every command runs in.

Errors are caught in one place, ``guarded``: an ``OrchError`` prints what, where and how to fix and
exits with its code; anything else prints one line and the path of a crash log holding the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from orch.core.errors import ExitCode, OrchError, UsageError
from orch.core.text import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import NoReturn


class StdoutClosed(Exception):
    """The reader of our output went away (``orch log | head``): not an error, nothing more to say.

    Not an ``OSError``, so click does not turn it into exit code 1 on its way to ``guarded``.
    """


def out(text: str = "") -> None:
    """Print ``text`` and a newline; what a terminal would act on (control characters from a title,
    a file name, an agent's report) is shown escaped, never sent as is."""
    text = printable(text)
    try:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    except BrokenPipeError:
        raise StdoutClosed() from None


def err(text: str) -> None:
    text = printable(text)
    sys.stderr.write(text + ("\n" if not text.endswith("\n") else ""))


def guarded(body: Callable[[], int]) -> NoReturn:
    """Run ``body`` and exit with its code, or with the code of what it raised."""
    code: int = ExitCode.OK
    if sys.stdout is None:  # started with stdout closed (`orch status >&-`): nowhere to say anything
        _closed_stdout()
    try:
        if "ORCH_FAILPOINT" in os.environ or "ORCH_TEST_KILL_AT" in os.environ:  # the crash tests' fault injection
            from orch.core.procs import check_failpoint

            check_failpoint()
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

    from orch.core.eventlog import utcnow

    text = f"orch {' '.join(sys.argv[1:])}\n{utcnow()}\n\n" + "".join(traceback.format_exception(exc))
    folder: Path
    try:
        from orch.core.repo import find_project

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


def _closed_stdout() -> NoReturn:
    """Refuse to run without a standard output: a command's result would be lost without a word."""
    if sys.stderr is not None:
        sys.stderr.write("orch: standard output is closed; run it with >/dev/null to discard the output\n")
        sys.stderr.flush()
    os._exit(ExitCode.GIT)
