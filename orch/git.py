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

from orch.errors import EnvError, GitError

TYPE_CHECKING = False  # typing, pathlib and dataclasses cost milliseconds the git hooks do not have
if TYPE_CHECKING:
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


def _argv(args: Sequence[str], hardened: bool, no_hooks: bool) -> list[str]:
    argv = ["git"]
    if hardened:
        argv += HARDENED
    if no_hooks:
        argv += NO_HOOKS
    argv += list(args)
    return argv


def _decode(data: bytes | None) -> str:
    # Not subprocess's text mode: its universal newlines turn a '\r' in a file name into '\n'.
    return data.decode("utf-8", "surrogateescape") if data else ""


def _popen(argv: list[str], cwd: Path | str, env: dict[str, str], stdin: bool, stdout: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin else None,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
    except FileNotFoundError as exc:
        if not os.path.isdir(cwd):
            raise EnvError(f"folder does not exist: {cwd}") from exc
        raise EnvError("git is not installed or not on PATH", hint="install git >= 2.38") from exc


def _env(env: Mapping[str, str] | None, optional_locks: bool) -> dict[str, str]:
    extra = dict(env or {})
    if not optional_locks:
        extra["GIT_OPTIONAL_LOCKS"] = "0"
    return clean_env(extra)


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
    return start(
        args,
        cwd=cwd,
        input=input,
        env=env,
        hardened=hardened,
        no_hooks=no_hooks,
        optional_locks=optional_locks,
    ).wait(check=check, timeout=timeout)


class Running:
    """A git process under way (``start``): do other work, then ``wait`` for its ``Result``."""

    __slots__ = ("argv", "_proc", "_input", "_file")

    def __init__(self, argv: list[str], proc: subprocess.Popen[bytes], input: bytes | None, file: int | None) -> None:
        self.argv = argv
        self._proc = proc
        self._input = input
        self._file = file  # stdout went to this in-memory file rather than a pipe

    def wait(self, *, check: bool = True, timeout: float | None = None) -> Result:
        try:
            stdout, stderr = self._proc.communicate(self._input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._proc.kill()
            self._proc.communicate()
            raise EnvError(f"git timed out after {timeout}s: {' '.join(self.argv)}") from exc
        finally:
            if self._file is not None:
                fd, self._file = self._file, None
                try:
                    stdout = _read_all(fd)
                finally:
                    os.close(fd)
        result = Result(self.argv, self._proc.returncode, _decode(stdout), _decode(stderr))
        if check and result.returncode != 0:
            raise GitError(self.argv, result.returncode, result.stdout, result.stderr)
        return result


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    pos = 0
    while pos < size:
        chunk = os.pread(fd, size - pos, pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def start(
    args: Sequence[str],
    *,
    cwd: Path | str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    hardened: bool = True,
    no_hooks: bool = False,
    optional_locks: bool = True,
    big: bool = False,
) -> Running:
    """Start ``git ARGS`` in ``cwd`` without waiting for it (``run`` is ``start(...).wait()``).

    ``big``: the output runs to megabytes (the change set of a large branch). It then goes to an
    in-memory file rather than a pipe, where git's many small writes would each wake the reader;
    where there is no ``memfd_create`` (not Linux) a pipe it is.
    """
    argv = _argv(args, hardened, no_hooks)
    file = None
    if big and hasattr(os, "memfd_create"):
        try:
            file = os.memfd_create("orch-git-output", os.MFD_CLOEXEC)
        except OSError:
            file = None
    try:
        proc = _popen(
            argv,
            cwd,
            _env(env, optional_locks),
            stdin=input is not None,
            stdout=subprocess.PIPE if file is None else file,
        )
    except BaseException:
        if file is not None:
            os.close(file)
        raise
    return Running(argv, proc, None if input is None else input.encode("utf-8", "surrogateescape"), file)


def out(args: Sequence[str], *, cwd: Path | str, **kw: object) -> str:
    """stdout of ``git ARGS`` with the trailing newline removed."""
    return run(args, cwd=cwd, **kw).stdout.rstrip("\n")  # type: ignore[arg-type]


def rev_parse(rev: str, *, cwd: Path | str) -> str | None:
    """The full sha ``rev`` names, or None if it names nothing."""
    r = run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=cwd, check=False)
    return r.stdout.strip() if r.ok else None


def rev_parse_many(revs: Sequence[str], *, cwd: Path | str) -> list[str | None]:
    """``rev_parse`` of each rev, in one git call when all of them name commits."""
    if not any(rev.startswith("-") for rev in revs):  # without --verify, '-x' would be an option
        r = run(["rev-parse", *(f"{rev}^{{commit}}" for rev in revs)], cwd=cwd, check=False)
        shas = r.stdout.split()
        if (
            r.ok
            and len(shas) == len(revs)
            and all(len(s) in (40, 64) and not s.strip("0123456789abcdef") for s in shas)
        ):
            return list(shas)
    return [rev_parse(rev, cwd=cwd) for rev in revs]  # and so say which one names nothing


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
