"""The change set: the paths a commit changes, with their modes, parsed from git's raw diff.

A change set is every path changed between two commits, read with ``git diff-tree -r -z
--no-renames`` (``task_changes``; the pre-commit hook reads the index with ``diff-index``): a rename
is a delete plus an add, so both paths are checked, with their modes. Its own module because the
hooks and ``orch verify`` both read change sets; the hooks import it, so nothing here loads
``typing`` at import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from orch.core import git
from orch.core.errors import GitError

TYPE_CHECKING = False  # typing costs git hooks ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from pathlib import Path

SYMLINK = "120000"
GITLINK = "160000"


class Change:
    """One changed path as git reports it (``--no-renames``: status A, D, M or T)."""

    __slots__ = ("old_mode", "new_mode", "old_sha", "new_sha", "status", "path")

    def __init__(self, old_mode: str, new_mode: str, old_sha: str, new_sha: str, status: str, path: str) -> None:
        self.old_mode = old_mode
        self.new_mode = new_mode
        self.old_sha = old_sha
        self.new_sha = new_sha
        self.status = status
        self.path = path

    def __repr__(self) -> str:
        return f"Change({self.status} {self.path!r} {self.old_mode}->{self.new_mode})"


class Changes:
    """What ``parse_raw`` read: the paths as a plain list, each ``Change`` built only when asked for.

    A big change set is mostly ordinary files that only need their path checked; building an object
    per path would cost more than the checks themselves.
    """

    __slots__ = ("paths", "_metas", "_special")

    def __init__(self, metas: list[str], paths: list[str]) -> None:
        self.paths = paths
        self._metas = metas
        self._special: frozenset[int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Change:
        m1, m2, s1, s2, status = self._metas[i][1:].split(" ")
        return Change(m1, m2, s1, s2, status[:1], self.paths[i])

    def special(self) -> frozenset[int]:
        """Indexes of the changes with a symlink or submodule on either side."""
        if self._special is None:
            metas = self._metas
            self._special = frozenset(
                i for i in _maybe_special(metas) if metas[i][1:7] in SPECIAL or metas[i][8:14] in SPECIAL
            )
        return self._special


SPECIAL = (SYMLINK, GITLINK)


def _maybe_special(metas: list[str]) -> Iterable[int]:
    """Indexes of metas that may have a symlink or submodule mode (a superset; every one when unsure).

    git writes every meta of a change set with the same width (``:100644 100644 <sha> <sha> M``), and
    a ':' only at its start. When the joined metas have a ':' every ``width`` characters and nothing
    after the last one, each meta starts at a multiple of ``width``: the second digit of each mode
    (``0`` for files and deletions, ``2`` for 120000, ``6`` for 160000) is then one slice away.
    """
    if not metas:
        return ()
    width, count = len(metas[0]), len(metas)
    joined = "".join(metas)
    if width < 15 or len(joined) != width * count or joined[0::width].strip(":"):
        return range(count)
    old, new = joined[2::width], joined[9::width]
    if not old.strip("0") and not new.strip("0"):
        return ()
    return [i for i in range(count) if old[i] != "0" or new[i] != "0"]


def parse_stream(pieces: Iterable[str]) -> Iterator[Changes]:
    """``parse_raw`` of output that comes in pieces, each ending at a NUL (``git.Stream``): one batch
    per piece, a record (meta NUL path NUL) that straddles two pieces going with the second."""
    carry: list[str] = []
    for piece in pieces:
        parts = piece.split("\0")
        parts.pop()  # the piece ends with a NUL: the last part is empty
        if carry:
            parts[:0] = carry
        carry = [parts.pop()] if len(parts) % 2 else []
        if parts:
            yield Changes(parts[0::2], parts[1::2])
    if carry:
        raise GitError(list(DIFF), 0, "", f"git's output ends inside a record: {carry[0][:80]!r}")


def parse_raw(out: str) -> Changes:
    """Parse ``git diff-tree/diff-index -r -z --no-renames`` output (``:m1 m2 s1 s2 X\\0path\\0``)."""
    parts = out.split("\0")
    start = 0
    while start < len(parts) and not parts[start].startswith(":"):
        start += 1  # a commit id line (diff-tree given one commit); not ours
    paths = parts[start + 1 :: 2]
    metas = parts[start::2][: len(paths)]  # a trailing "" is left over
    return Changes(metas, paths)


# --ignore-submodules=none: git would otherwise honour submodule.<name>.ignore and diff.ignoreSubmodules
# (from .gitmodules or config, both of which an agent can write) and leave a moved submodule out.
DIFF = ("diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", "--ignore-submodules=none")


def task_changes(root: Path | str, old: str, new: str) -> git.Stream:
    """git's raw diff from commit ``old`` to commit ``new``, started now: iterate it through
    ``parse_stream`` for the changes in batches as git writes them (in git's order), so checking one
    batch overlaps git's work on the next."""
    return git.Stream([*DIFF, old, new, "--"], cwd=root)
