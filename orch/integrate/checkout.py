"""The person's checkout after orch was killed in the middle of fast-forwarding it.

``git merge --ff-only`` writes the files and the index first and moves the branch last. Killed in
between (or in the middle of writing the files), it leaves the checkout half-way: files and index
entries of the new commit on the old branch (the next merge then parks on "untracked working tree
files would be overwritten", or finds staged files nobody edited), and its lock files (``index.lock``,
``HEAD.lock``, the branch's ``.lock``) that make every later git command there fail.

``settle`` puts it where git would have left it: the lock files of the killed git go, and each path
the fast-forward changes is brought to one side (``want``: the branch's commit), but only where the
index entry or the file holds the other side's version, which the killed git wrote. A path holding
anything else is the person's and is left as it is (and named). Every version it replaces is a blob
of one of the two commits, so nothing is lost either way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from orch.core import git, procs
from orch.core.errors import EnvError

Entry = tuple[str, str]  # (mode, blob sha)


@dataclass
class Settled:
    locks: list[str] = field(default_factory=list)  # lock files of the killed git, removed
    paths: list[str] = field(default_factory=list)  # brought back to the branch's commit
    left: list[str] = field(default_factory=list)  # hold the person's own version: untouched


def git_running_in(folder: Path, besides: Path | None = None) -> bool:
    """Does a git process work in ``folder`` (its cwd there or below, but not in ``besides``: the task
    worktrees, whose gits take no lock of the checkout's)? Without /proc: assume so."""
    found = procs.git_working_in(folder, besides)
    return True if found is None else found


def drop_locks(folder: Path, locks: list[Path], besides: Path | None = None) -> list[str]:
    """Remove the lock files a git killed with orch left, unless a git process works in ``folder``."""
    present = [lock for lock in locks if lock.exists()]
    if not present:
        return []
    if git_running_in(folder, besides):
        raise EnvError(
            f"a git process is working in {folder}, and {present[0]} is there: orch was killed in the middle of "
            "a git command there",
            hint="wait for that git to finish, then run orch merge --resume (or --abort) again",
        )
    for lock in present:
        lock.unlink(missing_ok=True)
    return [str(lock) for lock in present]


def settle(
    checkout: Path, common_dir: Path, branch: str, want: str, other: str, *, besides: Path | None = None
) -> Settled:
    """Bring ``checkout`` (on ``branch``, now at ``want``) to ``want`` on every path a fast-forward between
    ``want`` and ``other`` changes, where it holds ``other``'s version; see the module's docstring.
    ``besides``: orch's worktree root, where agents' gits run without touching the checkout's locks."""
    gitdir = Path(git.out(["rev-parse", "--absolute-git-dir"], cwd=checkout))
    done = Settled()
    locks = [gitdir / "index.lock", gitdir / "HEAD.lock", common_dir / "refs" / "heads" / f"{branch}.lock"]
    done.locks = drop_locks(checkout, locks, besides)
    sides = _sides(checkout, want, other)
    if not sides:
        return done
    index = _index(checkout)
    files = _files(checkout, [p for p in sides if index.get(p) in sides[p]])
    fix_index: list[tuple[str, Entry | None]] = []
    write: list[str] = []
    remove: list[str] = []
    for path, (w, o) in sides.items():
        entry = index.get(path, None)
        if entry not in (w, o):
            done.left.append(path)  # the person staged something else there
            continue
        if entry == o:
            fix_index.append((path, w))
        have = files[path]
        if have == _shown(o):
            (write if w is not None else remove).append(path)
        elif have != _shown(w):
            done.left.append(path)  # edited since the kill: the person's
        if entry == o or have == _shown(o):
            done.paths.append(path)
    if fix_index:
        null = "0" * len(want)
        lines = "".join(f"{e[0]} {e[1]}\t{p}\0" if e else f"0 {null}\t{p}\0" for p, e in fix_index)
        git.run(["update-index", "-z", "--index-info"], cwd=checkout, input=lines)
    for path in remove:  # first: a folder the other side made may be where a file of ours goes
        _unlink(checkout, path)
    if write:
        git.run(["checkout-index", "-f", "-z", "--stdin"], cwd=checkout, input="".join(p + "\0" for p in write))
    git.run(["update-index", "-q", "--refresh"], cwd=checkout, check=False)
    return done


def _sides(checkout: Path, want: str, other: str) -> dict[str, tuple[Entry | None, Entry | None]]:
    """Each path the two commits differ on: (its entry in ``want``, in ``other``); None where absent.
    Submodules are left out (orch's fast-forward does not recurse into them)."""
    raw = git.out(["diff", "--raw", "-z", "--no-renames", "--no-abbrev", want, other, "--"], cwd=checkout)
    parts = raw.split("\0")
    sides: dict[str, tuple[Entry | None, Entry | None]] = {}
    for meta, path in zip(parts[0::2], parts[1::2], strict=False):
        fields = meta.lstrip(":").split()
        if len(fields) < 5 or "160000" in fields[:2]:
            continue
        wmode, omode, wsha, osha = fields[:4]
        sides[path] = (None if set(wmode) == {"0"} else (wmode, wsha), None if set(omode) == {"0"} else (omode, osha))
    return sides


def _index(checkout: Path) -> dict[str, Entry]:
    """Stage-0 entries of the checkout's index (conflicted paths are left out: they are the person's)."""
    entries: dict[str, Entry] = {}
    for record in git.out(["ls-files", "-s", "-z"], cwd=checkout).split("\0"):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[2] == "0":
            entries[path] = (fields[0], fields[1])
    return entries


def _shown(entry: Entry | None) -> tuple[str, str] | None:
    """How a file holding ``entry`` looks in the checkout (``_files``): its kind and blob, None if absent."""
    if entry is None:
        return None
    mode, sha = entry
    return ("link" if mode == "120000" else "x" if mode == "100755" else "file", sha)


def _files(checkout: Path, paths: list[str]) -> dict[str, tuple[str, str] | None]:
    """What each path holds in the checkout: its kind and the blob it would be committed as; None if absent."""
    found: dict[str, tuple[str, str] | None] = {p: None for p in paths}
    regular: list[tuple[str, str]] = []
    for path in paths:
        full = checkout / path
        try:
            st = full.lstat()
        except OSError:
            continue
        if os.path.islink(full):
            target = os.fsencode(os.readlink(full))
            found[path] = ("link", _blob_sha(target, checkout))
        elif full.is_file() and "\n" not in path:
            regular.append((path, "x" if st.st_mode & 0o100 else "file"))
        else:
            found[path] = ("other", "")
    if regular:
        shas = git.out(
            ["hash-object", "--stdin-paths"], cwd=checkout, input="".join(p + "\n" for p, _ in regular)
        ).split()
        for (path, kind), sha in zip(regular, shas, strict=True):
            found[path] = (kind, sha)
    return found


_ALGO: dict[Path, str] = {}


def _blob_sha(data: bytes, checkout: Path) -> str:
    if checkout not in _ALGO:
        _ALGO[checkout] = git.out(["rev-parse", "--show-object-format"], cwd=checkout) or "sha1"
    return hashlib.new(_ALGO[checkout], b"blob %d\0" % len(data) + data).hexdigest()


def _unlink(checkout: Path, path: str) -> None:
    """Remove a file the killed fast-forward wrote, and the folders it made for it that are now empty."""
    full = checkout / path
    full.unlink(missing_ok=True)
    parent = full.parent
    root = checkout.resolve()
    while parent.resolve() != root and root in parent.resolve().parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
