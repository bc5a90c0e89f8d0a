"""The rules a change set is checked against: scope, orch's own state, submodules, git's own
files, symlinks, and the path, test and region locks.

The hooks (git and agent) call ``check_changes`` on what they see early; ``orch verify``
(``orch.verify.judge``) runs the same ``Checker`` over a task's exact commit, which is the
guarantee. Rules and locks come from the main checkout only. Kept apart from the judge so that the
hooks import only this, ``changeset``, ``locks`` and ``regions``, none of which loads ``typing`` at
import.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence

from orch.verify import locks as locks_mod
from orch.verify.changeset import GITLINK, SPECIAL, SYMLINK, Change, Changes
from orch.verify.regions import RegionError, region_text

TYPE_CHECKING = False  # typing costs git hooks ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from typing import Any

ORCH_PREFIX = ".orch/"
# Rules whose violation is an attack on the locks; the others are scope problems.
LOCK_RULES = frozenset({"orch-state", "symlink-to-lock", "path-lock", "test-lock", "region-lock", "requirement"})

BlobReader = Callable[[Sequence[str]], dict[str, bytes]]


class Violation:
    __slots__ = ("path", "rule", "lock", "mode", "message")

    def __init__(self, path: str, rule: str, message: str, *, lock: str | None = None, mode: str = "hard") -> None:
        self.path = path
        self.rule = rule
        self.lock = lock
        self.mode = mode
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rule": self.rule, "lock": self.lock, "mode": self.mode, "message": self.message}

    def __repr__(self) -> str:
        return f"Violation({self.path!r}, {self.rule}, lock={self.lock}, {self.mode})"


def result_of(violations: Iterable[Violation]) -> str:
    hard = [v for v in violations if v.mode == "hard"]
    if any(v.rule in LOCK_RULES for v in hard):
        return "LOCK_VIOLATION"
    return "SCOPE_VIOLATION" if hard else "OK"


# -- the checks -------------------------------------------------------------------------------------


def names_explicitly(scope: str | None, path: str) -> bool:
    r"""Does the scope regex spell out ``path`` itself (needed for submodules, .gitmodules, .gitattributes)?

    Only as a whole alternative anchored at both ends, such as ``^vendor/lib$`` or
    ``^(src/auth/|\.gitmodules)$``: a regex that merely contains the text (``\.md$`` for a submodule
    at ``.md``, ``^vendor/lib`` for ``vendor/lib``) accepts other paths as well and names nothing.
    """
    if not scope:
        return False
    exact = exact_strings(scope)
    return exact is not None and path in exact and re.search(scope, path) is not None


_BEGIN_AT, _END_AT = "\x00", "\x01"  # anchors, marked in the expanded strings (no path holds them)


def exact_strings(regex: str, limit: int = 256) -> set[str] | None:
    """The paths ``regex`` spells out whole: what its alternatives anchored at both ends (``^``/``\\A``
    and ``$``/``\\Z``) match when they are finite sets of literal text. None when the regex cannot be
    parsed, ignores case, or has more than ``limit`` such strings."""
    try:
        parsed = locks_mod.sre_parser().parse(regex)
    except re.error:
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None

    def expand(items: Any) -> list[str] | None:
        out = [""]
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                options: list[str] | None = [chr(av)]
            elif name == "AT":
                where = str(av)
                if where in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
                    options = [_BEGIN_AT]
                elif where in ("AT_END", "AT_END_STRING"):
                    options = [_END_AT]
                else:
                    return None
            elif name == "SUBPATTERN":
                options = expand(av[-1])
            elif name == "BRANCH":  # an alternative that is not plain text names nothing; the others may
                options = []
                for branch in av[1]:
                    options += expand(branch) or []
                options = options or None
            elif name == "IN" and all(str(o) == "LITERAL" for o, _ in av):
                options = [chr(a) for _, a in av]
            else:
                return None
            if options is None or len(out) * len(options) > limit:
                return None
            out = [a + b for a in out for b in options]
        return out

    strings = expand(parsed)
    if strings is None:
        return None
    found = set()
    for s in strings:
        if s.startswith(_BEGIN_AT) and s.endswith(_END_AT):
            inner = s[1:-1]
            if _BEGIN_AT not in inner and _END_AT not in inner:
                found.add(inner)
    return found


def _symlink_target(link: str, target: str) -> str | None:
    """The repo-relative path a symlink at ``link`` points to, or None if it leaves the repository."""
    if not target or os.path.isabs(target) or "\0" in target:
        return None
    joined = os.path.normpath(os.path.join(os.path.dirname(link), target))
    if joined == ".." or joined.startswith("../") or os.path.isabs(joined):
        return None
    return "" if joined == "." else joined


_GIT_FILES = (".gitmodules", ".gitattributes")


def _prefix_range(ordered: Sequence[str], prefix: str, lo: int = 0) -> tuple[int, int]:
    """The slice of the sorted ``ordered`` whose items start with ``prefix`` (two bisections)."""
    lo = bisect.bisect_left(ordered, prefix, lo)
    last = ord(prefix[-1])
    if last < 0x10FFFF:  # every string starting with prefix sorts before prefix with its last char bumped
        return lo, bisect.bisect_left(ordered, prefix[:-1] + chr(last + 1), lo)
    hi = lo
    while hi < len(ordered) and ordered[hi].startswith(prefix):
        hi += 1
    return lo, hi


def _sorted_view(paths: list[str]) -> tuple[list[str], Sequence[int]]:
    """(the paths in sorted order, the index in ``paths`` of each); git reports them sorted already."""
    ordered = sorted(paths)  # on sorted input: one pass of comparisons
    if ordered == paths:
        return paths, range(len(paths))
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return [paths[i] for i in order], order


def check_changes(
    changes: Sequence[Change] | Changes,
    *,
    lockset: locks_mod.LockSet,
    scope: str | None,
    agent: bool,
    read: BlobReader,
) -> list[Violation]:
    """Every rule each change breaks.

    ``agent``: the change comes from a task branch (scope, the always-forbidden changes and the
    AGENTS.md lock apply); otherwise only the project's own locks do. ``read`` fetches blobs by sha,
    for symlink targets and code regions only.
    """
    checker = Checker(lockset=lockset, scope=scope, agent=agent)
    checker.scan(changes)
    return checker.finish(read)


class Checker:
    """``check_changes`` in two steps: ``scan`` (paths, modes, locks), then ``finish`` (symlink targets
    and code regions, which need blobs).

    The change set is checked rule by rule over all its paths rather than path by path: a change set
    of tens of thousands of paths is mostly paths that no lock comes near, and a per-path loop in
    Python would cost more than git takes to produce them. Every path a lock matches starts with the
    lock's literal prefix (``src/billing/`` for ``src/billing/*.py``), so two bisections of the sorted
    paths find the only paths whose lock regex needs running, and only locks whose prefix falls within
    the batch's first and last path are looked at. ``scan`` takes the change set in one batch or in
    several, in git's order (``task_changes``). Violations come out in path order (for one path: orch
    state, scope, submodule, .git files, then locks in the order of locks.yaml).
    """

    def __init__(
        self, *, lockset: locks_mod.LockSet, scope: str | None, agent: bool, committed_scope: str | None = None
    ) -> None:
        """``committed_scope``: the task's scope as committed on the base branch, when the working plan
        has another (judging): a path must match both, so an uncommitted edit cannot widen a scope."""
        self.agent = agent
        self.scope = scope
        self.committed_scope = committed_scope if agent and committed_scope != scope else None
        locks = lockset.for_agents() if agent else lockset.locks
        self.path_locks = [lk for lk in locks if lk.kind in ("path", "test") and lk.rx_src]
        self._rank = {id(lk): rank for rank, lk in enumerate(self.path_locks, 4)}  # after the agent rules
        self._anywhere = [lk for lk in self.path_locks if not lk.prefix]
        self._by_prefix: dict[str, list[locks_mod.Lock]] = {}
        for lk in self.path_locks:
            if lk.prefix:
                self._by_prefix.setdefault(lk.prefix, []).append(lk)
        self._prefixes = sorted(self._by_prefix)
        self.regions: dict[str, list[locks_mod.Lock]] = {}
        for lk in locks:
            if lk.kind == "region" and lk.file:
                self.regions.setdefault(lk.file, []).append(lk)
        self.scope_search = re.compile(scope).search if (agent and scope) else None
        # A scope like ^src/auth/ pins the start of every path it accepts: paths outside that prefix
        # are out of scope without a search, and when that is the whole regex the rest are in.
        anchored, head, whole = locks_mod.literal_head(scope) if (agent and scope) else (False, "", False)
        self.scope_head = head if anchored else ""
        self.scope_whole = whole
        self._committed: Checker | None = None  # checks the committed scope the same way
        if self.committed_scope:
            self._committed = Checker(lockset=locks_mod.LockSet([], False), scope=self.committed_scope, agent=True)
        self.found: list[Violation] = []
        self.region_changes: list[Change] = []
        self.symlinks: list[Change] = []

    def names(self, path: str) -> bool:
        """Does the scope (and the committed scope, if any) name ``path`` explicitly?"""
        scopes = [s for s in (self.scope, self.committed_scope) if s]
        return bool(scopes) and all(names_explicitly(s, path) for s in scopes)

    def locked_by(self, path: str) -> list[locks_mod.Lock]:
        """The path and test locks that cover ``path``, in the order of locks.yaml."""
        return [lk for lk in self.path_locks if path.startswith(lk.prefix) and lk.rx is not None and lk.rx.match(path)]

    def locked_under(self, folder: str) -> list[locks_mod.Lock]:
        """The locks on paths inside ``folder`` ("" for the repository's top), for a symlink to a folder:
        a path or test lock whose literal prefix lies in it, a region lock whose file does. (A lock that
        may match at any depth, like ``*.pem``, is not counted: what the folder holds is not looked at.)"""
        under = folder + "/" if folder else ""
        found = [lk for lk in self.path_locks if lk.prefix and lk.prefix.startswith(under)]
        found += [lk for file, held in self.regions.items() if file.startswith(under) for lk in held]
        return found

    def _outside_scope(self, ordered: list[str], index: Sequence[int]) -> Iterable[int]:
        """Indexes of the paths the scope regex does not find (``re.search``); ``ordered`` is sorted."""
        search = self.scope_search
        if search is None:
            return ()
        if not self.scope_head:
            return itertools.compress(index, map(operator.not_, map(search, ordered)))
        lo, hi = _prefix_range(ordered, self.scope_head)
        outside = [index[k] for k in itertools.chain(range(lo), range(hi, len(ordered)))]
        if not self.scope_whole:
            outside += [index[k] for k in range(lo, hi) if search(ordered[k]) is None]
        return outside

    def _near(self, ordered: list[str]) -> list[locks_mod.Lock]:
        """The path and test locks that may match a path of the sorted ``ordered``, in locks.yaml order."""
        if not ordered:
            return []
        first, last = ordered[0], ordered[-1]
        prefixes, by_prefix = self._prefixes, self._by_prefix
        # A path starts with prefix p only if p <= path: p <= last. A p before first can still hold
        # paths of the batch only if first itself starts with p.
        chosen = prefixes[bisect.bisect_left(prefixes, first) : bisect.bisect_right(prefixes, last)]
        chosen += [first[:k] for k in range(1, len(first)) if first[:k] in by_prefix]
        near = [lk for p in chosen for lk in by_prefix[p]] + self._anywhere
        near.sort(key=lambda lk: self._rank[id(lk)])
        return near

    def scan(self, changes: Sequence[Change] | Changes) -> None:
        """Check each change's path and modes; collect what ``finish`` must read."""
        scope = self.scope
        if isinstance(changes, Changes):
            paths = changes.paths
            special = changes.special()
        else:
            paths = [ch.path for ch in changes]
            special = frozenset(i for i, ch in enumerate(changes) if ch.old_mode in SPECIAL or ch.new_mode in SPECIAL)
        n = len(paths)
        ordered, index = _sorted_view(paths)
        found: list[tuple[int, int, Violation]] = []  # (path index, rank within the path, violation)
        skip: set[int] = set()  # changes to .orch/: that one violation says it all
        if self.agent:
            lo, hi = _prefix_range(ordered, ".orch")
            for k in range(lo, hi):
                path = ordered[k]
                if path == ".orch" or path.startswith(ORCH_PREFIX):
                    skip.add(index[k])
                    why = "changes orch's own state under .orch/ (rules come from the main checkout only)"
                    found.append((index[k], 0, Violation(path, "orch-state", why)))
            outside = {i: f"outside the task's scope {scope}" for i in self._outside_scope(ordered, index)}
            if self._committed is not None:
                why = (
                    f"outside the task's scope {self.committed_scope} as committed on the base branch (an "
                    "uncommitted edit of .orch/plan.md cannot widen it: commit the new scope first)"
                )
                for i in self._committed._outside_scope(ordered, index):
                    outside.setdefault(i, why)
            for i in sorted(outside):
                if i not in skip:
                    found.append((i, 1, Violation(paths[i], "scope", outside[i])))
            for i in sorted(special - skip):
                ch = changes[i]
                if GITLINK in (ch.old_mode, ch.new_mode) and not self.names(ch.path):
                    why = "changes a submodule pointer; the scope must name the path explicitly"
                    found.append((i, 2, Violation(ch.path, "submodule", why)))
                if ch.new_mode == SYMLINK:
                    self.symlinks.append(ch)
            joined = "\0".join(paths)  # one scan of the paths, not one test per path
            if ".gitmodules" in joined or ".gitattributes" in joined:
                for i, path in enumerate(paths):
                    if path.endswith(_GIT_FILES) and i not in skip:
                        base = path.rsplit("/", 1)[-1]
                        if base in _GIT_FILES and not self.names(path):
                            why = f"changes {base}; allowed only when the scope names '{path}' explicitly"
                            found.append((i, 3, Violation(path, base.lstrip("."), why)))
        for lk in self._near(ordered):
            rank = self._rank[id(lk)]
            if lk.prefix:
                lo, hi = _prefix_range(ordered, lk.prefix)
                if lo == hi:
                    continue
                rx = lk.rx
                assert rx is not None
                hits: Iterable[int] = [index[k] for k in range(lo, hi) if rx.match(ordered[k])]
            else:  # a pattern that may match at any depth (*.pem): its regex meets every path
                rx = lk.rx
                assert rx is not None
                hits = itertools.compress(range(n), map(rx.match, paths))
            for i in hits:
                if i in skip:
                    continue
                path = paths[i]
                if lk.kind != "test":
                    found.append(
                        (i, rank, Violation(path, "path-lock", f"locked: {lk.describe()}", lock=lk.id, mode=lk.mode))
                    )
                    continue
                status = changes[i].status
                if status == "A":
                    continue  # a new test is not a change to a locked one
                what = {"D": "deleted (or renamed away)", "T": "changed type"}.get(status, "modified")
                why = f"{what}; must stay byte-identical: {lk.describe()}"
                found.append((i, rank, Violation(path, "test-lock", why, lock=lk.id, mode=lk.mode)))
        if found:
            found.sort(key=lambda item: (item[0], item[1]))
            self.found += [v for _, _, v in found]
        if self.regions:
            touched: list[int] = []
            for file in self.regions:
                lo = bisect.bisect_left(ordered, file)
                touched += [index[k] for k in range(lo, bisect.bisect_right(ordered, file, lo))]
            for i in sorted(touched):
                if i in skip:
                    continue
                ch = changes[i]
                if ch.status != "A":
                    self.region_changes.append(ch)

    def finish(self, read: BlobReader) -> list[Violation]:
        """Symlink targets and code regions (one ``read`` of the blobs they need); every violation."""
        out, regions = self.found, self.regions
        symlinks, region_changes = self.symlinks, self.region_changes
        wanted = [c.new_sha for c in symlinks]
        for ch in region_changes:
            wanted += [s for s in (ch.old_sha, ch.new_sha) if s.strip("0")]
        blobs = read(wanted) if wanted else {}

        for ch in symlinks:
            target = blobs.get(ch.new_sha, b"").decode("utf-8", "surrogateescape")
            resolved = _symlink_target(ch.path, target)
            if resolved is None:
                out.append(Violation(ch.path, "symlink-escape", f"symlink to '{target}' leaves the repository"))
                continue
            if resolved == ".orch" or resolved.startswith(ORCH_PREFIX):
                out.append(Violation(ch.path, "symlink-to-lock", f"symlink into orch's state: '{target}'"))
                continue
            hits = self.locked_by(resolved) + [lk for lk in regions.get(resolved, [])]
            hits += self.locked_under(resolved)
            for lk in hits:
                out.append(
                    Violation(
                        ch.path,
                        "symlink-to-lock",
                        f"symlink to locked '{resolved}': {lk.describe()}",
                        lock=lk.id,
                        mode=lk.mode,
                    )  # fmt: skip
                )

        for ch in region_changes:
            python = ch.path.endswith((".py", ".pyi"))
            old = blobs.get(ch.old_sha, b"").decode("utf-8", "surrogateescape")
            new = blobs.get(ch.new_sha, b"").decode("utf-8", "surrogateescape") if ch.new_sha.strip("0") else None
            for lk in regions[ch.path]:
                assert lk.name is not None
                try:
                    before = region_text(old, lk.name, python=python)
                except RegionError as exc:  # cannot tell the region apart: any change counts
                    why = f"the region cannot be located at the base ({exc}), so any change to the file counts"
                    out.append(Violation(ch.path, "region-lock", f"{why}: {lk.describe()}", lock=lk.id, mode=lk.mode))
                    continue
                if before is None:
                    continue  # nothing to protect at the base
                if new is None:
                    msg = "file deleted"
                else:
                    try:
                        after = region_text(new, lk.name, python=python)
                    except RegionError as exc:
                        after, msg = None, str(exc)
                    else:
                        msg = "region removed or renamed" if after is None else "region edited"
                    if after == before:
                        continue
                out.append(Violation(ch.path, "region-lock", f"{msg}: {lk.describe()}", lock=lk.id, mode=lk.mode))
        return out
