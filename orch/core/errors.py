"""One exception tree and the exit codes.

Every error a user can cause is an ``OrchError``: it carries what went wrong, where (``file:line``)
and how to fix it. ``orch.cli.output.guarded`` is the one place that catches them and turns them into an exit
code; anything else is a bug and gets a crash log.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    CHECK_FAILED = 1  # a violation, a failed merge, a failed check
    USAGE = 2
    BAD_INPUT = 3  # bad input or state: a broken plan, config, manifest, status
    GIT = 4  # git or the environment misbehaved
    INTERRUPTED = 130


class OrchError(Exception):
    """Base of every error orch reports to a person."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def render(self) -> str:
        head = f"{self.where}: {self.message}" if self.where else self.message
        return f"{head}\n  hint: {self.hint}" if self.hint else head


class UsageError(OrchError):
    exit_code = ExitCode.USAGE


class InputError(OrchError):
    """Bad input or state: a file that does not parse or validate, an unknown task, a refused id."""

    exit_code = ExitCode.BAD_INPUT


class ManyErrors(InputError):
    """Several problems found at once (plan.md reports all of them)."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        super().__init__("\n".join(problems), hint=hint)
        self.problems = problems


class CheckFailed(OrchError):
    """A check ran and said no: a violation, a failed merge. Not a bug, not bad input."""

    exit_code = ExitCode.CHECK_FAILED


class EnvError(OrchError):
    """git or the environment misbehaved (missing tool, permission, disk)."""

    exit_code = ExitCode.GIT


class GitError(EnvError):
    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        shown = " ".join(argv)
        detail = (stderr or stdout).strip().splitlines()
        tail = "\n    ".join(detail[-6:]) if detail else "(no output)"
        super().__init__(f"git failed (exit {returncode}): {shown}\n    {tail}")
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
