"""Two gits joined by an OS pipe: the one place besides ``orch.core.git`` that starts git, for data
(a pack) too big to pass through orch's memory. Same argv hardening and environment as ``git.run``."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from orch.core import git, gitsafety
from orch.core.errors import EnvError


def pipe(
    first: Sequence[str],
    second: Sequence[str],
    *,
    cwd: Path | str,
    input: str,
    first_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> git.Result:
    """``git FIRST | git SECOND`` through an OS pipe (what flows between them never passes through
    orch's memory: a pack of any size), ``input`` on FIRST's stdin; SECOND's result. Both end at
    ``timeout``."""
    import threading

    argv1 = git._argv(first, True, gitsafety.split(first)[1])
    argv2 = git._argv(second, True, gitsafety.split(second)[1])
    one = subprocess.Popen(
        argv1, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=git._env(first_env, True),
    )  # fmt: skip
    try:
        two = subprocess.Popen(
            argv2, cwd=cwd, stdin=one.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=git._env(None, True)
        )
    except BaseException:
        one.kill()
        one.wait()
        raise
    assert one.stdin is not None and one.stdout is not None
    one.stdout.close()  # the second git holds the reading end now

    def feed() -> None:
        try:
            one.stdin.write(input.encode("utf-8", "surrogateescape"))  # type: ignore[union-attr]
            one.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        stdout, stderr = two.communicate(timeout=timeout)
        one.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        for proc in (one, two):
            proc.kill()
            proc.wait()
        raise EnvError(f"git timed out after {timeout}s: {' '.join(argv1)} | {' '.join(argv2)}") from exc
    writer.join(timeout=1)
    result = git.Result(argv2, two.returncode or one.returncode, git._decode(stdout), git._decode(stderr))
    if result.returncode != 0:
        raise git.GitError(argv2, result.returncode, result.stdout, result.stderr)
    return result
