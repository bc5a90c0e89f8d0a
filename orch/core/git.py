"""The one place that runs git.

Argv lists only, never a shell string; ``--`` before paths; a failure raises ``GitError`` with the
command, its exit code and its output. The environment is cleaned of the ``GIT_*`` variables git
exports to hooks (``GIT_DIR``, ``GIT_INDEX_FILE`` ...), which would otherwise point a git run from a
hook or from another worktree at the wrong repository.

Agents can write the shared git folder and the user's git config, so no git orch runs may start a
program they planted: hooks, signing, fsmonitor, the external diff, submodule recursion and network
transports are off (``NO_PROGRAMS``, ``_env``), and before a command that could start a filter, a
merge or diff driver or a config hook, the config is checked against the baseline a person accepted
(``orch.core.gitsafety``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence

from orch.core import gitsafety
from orch.core.errors import EnvError, GitError

TYPE_CHECKING = False  # typing, pathlib and dataclasses cost milliseconds the git hooks do not have
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# Variables a person may legitimately set for every git they run: identity, dates (tests pin them),
# transport and tracing. Everything else named GIT_* is dropped.
_KEEP_PREFIXES = ("GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_SSH", "GIT_SSL_", "GIT_TRACE", "GIT_CONFIG_NOSYSTEM")
_KEEP = {"GIT_EXEC_PATH", "GIT_ASKPASS", "GIT_TEMPLATE_DIR", "GIT_CEILING_DIRECTORIES"}

# Options that stop config planted in the shared .git/config (an agent can write it) from running
# code while orch reads a repository: no fsmonitor daemon, no external diff, no textconv.
HARDENED = ("-c", "core.fsmonitor=false", "-c", "diff.external=", "-c", "core.untrackedCache=false")

# No git orch runs starts a program that one option can switch off: no hook (a folder inside
# /dev/null can hold none; verification judges what orch commits, and an agent can write .git/hooks),
# no signing and no signature check (gpg.program), no recursion into submodules (their own config).
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
NO_PROGRAMS = (
    *NO_HOOKS,
    *("-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false"),
    *("-c", "merge.verifySignatures=false", "-c", "log.showSignature=false"),
    *("-c", "submodule.recurse=false"),
)

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


def _argv(args: Sequence[str], hardened: bool, sub: str) -> list[str]:
    argv = ["git"]
    if sub != "config":  # config runs nothing, and must answer what the files say
        if hardened:
            argv += HARDENED
        argv += NO_PROGRAMS
    argv += list(args)
    return argv


def _decode(data: bytes | None) -> str:
    # Not subprocess's text mode: its universal newlines turn a '\r' in a file name into '\n'.
    return data.decode("utf-8", "surrogateescape") if data else ""


def _popen(
    argv: list[str], cwd: Path | str, env: dict[str, str], *, stdin: bool = False, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=stderr,
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
    # No transport at all (orch never fetches): a promisor remote planted in config would otherwise
    # run its URL's program (ext::, a remote helper) when any command misses an object. A person who
    # needs lazy fetching sets GIT_ALLOW_PROTOCOL themselves. No editor either: orch never asks.
    extra.setdefault("GIT_ALLOW_PROTOCOL", os.environ.get("GIT_ALLOW_PROTOCOL", ""))
    extra["GIT_EDITOR"] = ":"
    return clean_env(extra)


def run(
    args: Sequence[str],
    *,
    cwd: Path | str,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    hardened: bool = True,
    optional_locks: bool = True,
    timeout: float | None = None,
) -> Result:
    """Run ``git ARGS`` in ``cwd`` and return its output; raise ``GitError`` on failure if ``check``.
    No hook runs under orch's git (``_argv``)."""
    return start(args, cwd=cwd, input=input, env=env, hardened=hardened, optional_locks=optional_locks).wait(
        check=check, timeout=timeout
    )


class Running:
    """A git process under way (``start``): do other work, then ``wait`` for its ``Result``."""

    __slots__ = ("argv", "_proc", "_input")

    def __init__(self, argv: list[str], proc: subprocess.Popen[bytes], input: bytes | None) -> None:
        self.argv = argv
        self._proc = proc
        self._input = input

    def wait(self, *, check: bool = True, timeout: float | None = None) -> Result:
        try:
            stdout, stderr = self._proc.communicate(self._input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.cancel()
            raise EnvError(f"git timed out after {timeout}s: {' '.join(self.argv)}") from exc
        result = Result(self.argv, self._proc.returncode, _decode(stdout), _decode(stderr))
        if check and result.returncode != 0:
            raise GitError(self.argv, result.returncode, result.stdout, result.stderr)
        return result

    def cancel(self) -> None:
        """Stop git (the caller no longer wants its answer) and release what it holds."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


def start(
    args: Sequence[str],
    *,
    cwd: Path | str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    hardened: bool = True,
    optional_locks: bool = True,
) -> Running:
    """Start ``git ARGS`` in ``cwd`` without waiting for it (``run`` is ``start(...).wait()``).

    Raises ``gitsafety.UnknownProgram`` (git does not start) if the command could start a program
    that the config names and no person accepted."""
    where, sub, rest = gitsafety.split(args)
    kinds = gitsafety.at_risk(sub, rest)
    if kinds:
        _refuse_unknown_programs(where, sub, kinds, cwd=cwd, env=env)
    argv = _argv(args, hardened, sub)
    proc = _popen(argv, cwd, _env(env, optional_locks), stdin=input is not None)
    return Running(argv, proc, None if input is None else input.encode("utf-8", "surrogateescape"))


class Stream:
    """``git ARGS`` started now, its stdout read later in pieces of about ``batch`` bytes or more,
    each ending at a NUL (for ``-z`` output), as git writes them: the caller works on other things
    (and then on one piece) while git writes ahead. Iterating raises ``GitError`` once git has ended,
    if it failed; ``cancel`` (or stopping the iteration early) stops git.
    """

    def __init__(self, args: Sequence[str], *, cwd: Path | str, batch: int = 1 << 17) -> None:
        import tempfile

        where, sub, rest = gitsafety.split(args)
        kinds = gitsafety.at_risk(sub, rest)
        if kinds:
            _refuse_unknown_programs(where, sub, kinds, cwd=cwd, env=None)
        self.argv = _argv(args, True, sub)
        self.batch = batch
        # stderr goes to a file, so stdout can be read with plain blocking reads: git cannot stall on a
        # full stderr pipe, and there is no select() round per chunk git writes.
        self._err = tempfile.TemporaryFile()
        try:
            self._proc = _popen(self.argv, cwd, _env(None, True), stderr=self._err)
        except BaseException:
            self._err.close()
            raise
        try:
            import fcntl

            # Room for git to write ahead while the caller does other work (1 MiB, Linux's default cap).
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        except (ImportError, AttributeError, OSError):  # not Linux, or over the system's limit: slower only
            pass

    @property
    def _fd(self) -> int:
        assert self._proc.stdout is not None
        return self._proc.stdout.fileno()

    def __iter__(self) -> Iterator[str]:
        fd, batch = self._fd, self.batch
        held: list[bytes] = []
        size = 0
        try:
            while data := os.read(fd, 1 << 16):  # under malloc's mmap threshold: no page faults per read
                held.append(data)
                size += len(data)
                if size >= batch:
                    joined = b"".join(held)
                    cut = joined.rfind(b"\0") + 1
                    held, size = [joined[cut:]], len(joined) - cut
                    if cut:
                        yield _decode(joined[:cut])
            code = self._proc.wait()
            rest = b"".join(held)
            if code != 0:
                self._err.seek(0)
                raise GitError(self.argv, code, _decode(rest), _decode(self._err.read()))
        finally:
            self.cancel()
        if rest:
            yield _decode(rest)

    def head(self, limit: int) -> tuple[str, bool]:
        """At most ``limit`` bytes of git's output, cut at a line's end, and whether it was cut (git is
        stopped there: a huge output costs ``limit``); ``GitError`` if git failed before that."""
        held: list[bytes] = []
        size = 0
        try:
            while size <= limit and (data := os.read(self._fd, 1 << 16)):
                held.append(data)
                size += len(data)
            if size <= limit and self._proc.wait() != 0:
                self._err.seek(0)
                raise GitError(self.argv, self._proc.returncode, _decode(b"".join(held)), _decode(self._err.read()))
        finally:
            self.cancel()
        raw = b"".join(held)
        if size > limit:
            raw = raw[:limit]
            raw = raw[: raw.rfind(b"\n") + 1] or raw
        return _decode(raw), size > limit

    def cancel(self) -> None:
        """Stop git if it still runs, and release the pipe and the stderr file (idempotent)."""
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._err.close()


def out(args: Sequence[str], *, cwd: Path | str, **kw: object) -> str:
    """stdout of ``git ARGS`` with the trailing newline removed."""
    return run(args, cwd=cwd, **kw).stdout.rstrip("\n")  # type: ignore[arg-type]


def rev_parse(rev: str, *, cwd: Path | str) -> str | None:
    """The full sha ``rev`` names, or None if it names nothing."""
    r = run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=cwd, check=False)
    return r.stdout.strip() if r.ok else None


class CommitPair:
    """Two commits and their merge-bases, from one ``git rev-parse LEFT...RIGHT`` started now and read
    with ``result`` later. rev-parse prints RIGHT, LEFT and then each merge-base as ``^SHA`` in the
    order ``git merge-base --all LEFT RIGHT`` gives them (with several, the order depends on which side
    comes first); all of them read at one moment."""

    def __init__(self, left: str, right: str, *, cwd: Path | str) -> None:
        self.left = left
        self.right = right
        self.cwd = cwd
        self._run: Running | None = None
        if not (left.startswith("-") or right.startswith("-") or ".." in left + right):
            self._run = start(["rev-parse", f"{left}^{{commit}}...{right}^{{commit}}"], cwd=cwd)

    def result(self) -> tuple[str | None, str | None, list[str]]:
        """(LEFT's full sha or None, RIGHT's or None, the merge-bases: empty when there are none)."""
        if self._run is not None:
            r, self._run = self._run.wait(check=False), None
            lines = r.stdout.split()
            bases = [line[1:] for line in lines[2:] if line.startswith("^")]
            if (
                r.ok
                and len(lines) >= 2
                and all(_is_sha(x) for x in [*lines[:2], *bases])
                and len(bases) == len(lines) - 2
            ):
                return lines[1], lines[0], bases
        left, right = rev_parse(self.left, cwd=self.cwd), rev_parse(self.right, cwd=self.cwd)
        if left is None or right is None:
            return left, right, []
        r = run(["merge-base", "--all", left, right], cwd=self.cwd, check=False)
        return left, right, r.stdout.split() if r.ok else []

    def cancel(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self._run = None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and not text.strip("0123456789abcdef")


def is_ancestor(ancestor: str, descendant: str, *, cwd: Path | str) -> bool:
    r = run(["merge-base", "--is-ancestor", ancestor, descendant], cwd=cwd, check=False)
    if r.returncode not in (0, 1):
        raise GitError(r.argv, r.returncode, r.stdout, r.stderr)
    return r.returncode == 0


def contained(shas: Iterable[str], tip: str, *, cwd: Path | str) -> set[str]:
    """Which of ``shas`` (full commit ids; anything else is left out) are ``tip`` or its ancestors.

    One ``git rev-list SHAS --not TIP`` for all of them: it lists what the shas reach and the tip does
    not, so a sha it does not list is in the tip's history. If git refuses (a sha it does not have,
    a tip that names nothing), each sha is asked about on its own.
    """
    wanted = [s for s in dict.fromkeys(shas) if _is_sha(s)]
    if not wanted:
        return set()
    r = run(["rev-list", *wanted, "--not", tip, "--"], cwd=cwd, check=False, optional_locks=False)
    if r.ok:
        outside = set(r.stdout.split())
        return {s for s in wanted if s not in outside}
    return {
        s for s in wanted if run(["merge-base", "--is-ancestor", s, tip], cwd=cwd, check=False, optional_locks=False).ok
    }


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
    argv = _argv(["cat-file", "--batch"], True, "cat-file")
    proc = subprocess.run(
        argv,
        cwd=cwd,
        input=("\n".join(wanted) + "\n").encode(),
        capture_output=True,
        env=_env(None, True),
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


def worktree_tree(
    worktree: Path, *, index: Path | None, tmpdir: Path, where: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> str:
    """The tree of every file in ``worktree`` (untracked included, ignored not), written through a
    temporary copy of ``index`` (None: an empty one) in ``tmpdir``: no one's index, HEAD or branch
    moves. ``where`` names the repository (``--git-dir``/``--work-tree``) when the caller must."""
    import contextlib
    import shutil
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="orch-snapshot-", suffix=".index", dir=tmpdir)
    os.close(fd)
    try:
        if index is not None:
            shutil.copyfile(index, tmp)
        else:
            os.unlink(tmp)
        with_index = {**(env or {}), "GIT_INDEX_FILE": tmp}
        run([*where, "add", "-A", "--", "."], cwd=worktree, env=with_index)
        return out([*where, "write-tree"], cwd=worktree, env=with_index)
    finally:
        for leftover in (tmp, tmp + ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


# -- the programs git names from config (orch.core.gitsafety) ----------------------------------------


def _programs_and_baseline(
    where: list[str], *, cwd: Path | str, env: Mapping[str, str] | None
) -> tuple[Result, dict[str, str]]:
    """``git config --list`` as ``git WHERE ...`` in ``cwd`` reads it, and the accepted programs (two
    short gits, side by side)."""
    listing = start([*where, "config", "--list", "--show-origin", "-z"], cwd=cwd, env=env)
    baseline = start([*where, "cat-file", "blob", gitsafety.BASELINE_REF], cwd=cwd, env=env)
    config, accepted = listing.wait(check=False), baseline.wait(check=False)
    return config, gitsafety.load_baseline(accepted.stdout) if accepted.ok else {}


def _refuse_unknown_programs(
    where: list[str], sub: str, kinds: frozenset[str], *, cwd: Path | str, env: Mapping[str, str] | None
) -> None:
    """Raise ``UnknownProgram`` if the config, as ``git WHERE SUB`` in ``cwd`` reads it, names a
    program of these kinds that the baseline does not hold."""
    config, known = _programs_and_baseline(where, cwd=cwd, env=env)
    if not config.ok:  # a config git cannot read: the command cannot start anything it names either
        return
    found = gitsafety.unaccepted(config.stdout, known, kinds, str(cwd))
    if found:
        raise gitsafety.UnknownProgram(found, sub)


def unaccepted_programs(*, cwd: Path | str) -> list[gitsafety.Unaccepted]:
    """Every config entry seen from ``cwd`` that names a program the baseline does not hold."""
    config, known = _programs_and_baseline([], cwd=cwd, env=None)
    if not config.ok:
        raise GitError(config.argv, config.returncode, config.stdout, config.stderr)
    return gitsafety.unaccepted(config.stdout, known, gitsafety.ANY, str(cwd))


def check_programs(*, cwd: Path | str, command: str) -> None:
    """Refuse ``orch COMMAND`` up front (before it changes anything) while the config names a program
    no person accepted; each git it runs checks again where it runs."""
    found = unaccepted_programs(cwd=cwd)
    if found:
        raise gitsafety.UnknownProgram(found, command, orch=True)


def accept_programs(*, cwd: Path | str) -> tuple[dict[str, str], dict[str, str]]:
    """Record the programs the config names, seen from ``cwd``, as the baseline (``orch init``,
    ``orch doctor --accept-git-config``): (what is accepted now, what was before)."""
    config, before = _programs_and_baseline([], cwd=cwd, env=None)
    if not config.ok:
        raise GitError(config.argv, config.returncode, config.stdout, config.stderr)
    now = {key: value for key, (value, _) in gitsafety.programs(config.stdout).items()}
    sha = out(["hash-object", "-w", "--stdin"], cwd=cwd, input=gitsafety.dump_baseline(now))
    run(["update-ref", "-m", "orch: accept the programs git config names", gitsafety.BASELINE_REF, sha], cwd=cwd)
    return now, before
