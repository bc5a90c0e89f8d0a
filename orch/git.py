"""The one place that runs git.

Argv lists only, never a shell string; ``--`` before paths; a failure raises ``GitError`` with the
command, its exit code and its output. The environment is cleaned of the ``GIT_*`` variables git
exports to hooks (``GIT_DIR``, ``GIT_INDEX_FILE`` ...), which would otherwise point a git run from a
hook or from another worktree at the wrong repository.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orch.errors import EnvError, GitError

if TYPE_CHECKING:  # pathlib and dataclasses cost milliseconds the git hooks do not have
    from pathlib import Path

# Variables a person may legitimately set for every git they run: identity, dates (tests pin them),
# transport and tracing. Everything else named GIT_* is dropped.
_KEEP_PREFIXES = ("GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_SSH", "GIT_SSL_", "GIT_TRACE", "GIT_CONFIG_NOSYSTEM")
_KEEP = {"GIT_EXEC_PATH", "GIT_ASKPASS", "GIT_TEMPLATE_DIR", "GIT_CEILING_DIRECTORIES"}

# Options that stop config planted in the shared .git/config (an agent can write it) from running
# code while orch reads a repository: no fsmonitor daemon, no external diff, no textconv.
HARDENED = ("-c", "core.fsmonitor=false", "-c", "diff.external=", "-c", "core.untrackedCache=false")

# Where orch itself commits (snapshots, merges), no hook may run: verification judges the result.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")

ORCH_IDENT = {
    "GIT_AUTHOR_NAME": "orch",
    "GIT_AUTHOR_EMAIL": "orch@localhost",
    "GIT_COMMITTER_NAME": "orch",
    "GIT_COMMITTER_EMAIL": "orch@localhost",
}


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP or k.startswith(_KEEP_PREFIXES)
    }
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("LC_ALL", "C")
    if extra:
        env.update(extra)
    return env


class Result:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result(argv={self.argv!r}, returncode={self.returncode})"

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    args: Sequence[str],
    *,
    cwd: Path | str,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    hardened: bool = True,
    no_hooks: bool = False,
    optional_locks: bool = True,
    timeout: float | None = None,
) -> Result:
    """Run ``git ARGS`` in ``cwd`` and return its output; raise ``GitError`` on failure if ``check``."""
    argv = ["git"]
    if hardened:
        argv += HARDENED
    if no_hooks:
        argv += NO_HOOKS
    argv += list(args)
    extra = dict(env or {})
    if not optional_locks:
        extra["GIT_OPTIONAL_LOCKS"] = "0"
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            env=clean_env(extra),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if not os.path.isdir(cwd):
            raise EnvError(f"folder does not exist: {cwd}") from exc
        raise EnvError("git is not installed or not on PATH", hint="install git >= 2.38") from exc
    except subprocess.TimeoutExpired as exc:
        raise EnvError(f"git timed out after {timeout}s: {' '.join(argv)}") from exc
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise GitError(argv, proc.returncode, proc.stdout, proc.stderr)
    return result


def out(args: Sequence[str], *, cwd: Path | str, **kw: object) -> str:
    """stdout of ``git ARGS`` with the trailing newline removed."""
    return run(args, cwd=cwd, **kw).stdout.rstrip("\n")  # type: ignore[arg-type]


def rev_parse(rev: str, *, cwd: Path | str) -> str | None:
    """The full sha ``rev`` names, or None if it names nothing."""
    r = run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=cwd, check=False)
    return r.stdout.strip() if r.ok else None


def is_ancestor(ancestor: str, descendant: str, *, cwd: Path | str) -> bool:
    r = run(["merge-base", "--is-ancestor", ancestor, descendant], cwd=cwd, check=False)
    if r.returncode not in (0, 1):
        raise GitError(r.argv, r.returncode, r.stdout, r.stderr)
    return r.returncode == 0


def valid_branch_name(name: str, *, cwd: Path | str) -> bool:
    """What ``git check-ref-format --branch`` accepts (the authority, not a regex of ours)."""
    if name.startswith("-"):
        return False
    r = run(["check-ref-format", "--branch", name], cwd=cwd, check=False)
    return r.ok and r.stdout.strip() == name


def current_branch(*, cwd: Path | str) -> str | None:
    r = run(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=cwd, check=False)
    return r.stdout.strip() if r.ok else None


def worktree_is_dirty(*, cwd: Path | str) -> bool:
    """True if tracked files differ from HEAD or untracked, non-ignored files exist."""
    r = run(["status", "--porcelain=v1", "-z", "--untracked-files=all"], cwd=cwd, optional_locks=False)
    return bool(r.stdout)


def cat_blobs(shas: Sequence[str], *, cwd: Path | str) -> dict[str, bytes]:
    """The raw bytes of each object in ``shas`` (one ``git cat-file --batch``; no filters, no textconv)."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    argv = ["git", *HARDENED, "cat-file", "--batch"]
    proc = subprocess.run(
        argv,
        cwd=cwd,
        input=("\n".join(wanted) + "\n").encode(),
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(argv, proc.returncode, "", proc.stderr.decode("utf-8", "replace"))
    data = proc.stdout
    result: dict[str, bytes] = {}
    pos = 0
    for sha in wanted:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        result[sha] = data[pos : pos + size]
        pos += size + 1
    return result
