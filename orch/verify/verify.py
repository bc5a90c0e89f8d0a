"""Verification: a task's exact commit judged against its scope, the locks and the always-forbidden.

The change set is every path changed between merge-base(base, commit) and the commit, read with
``git diff-tree -r -z --no-renames`` (a rename is a delete plus an add, so both paths are checked,
with their modes). Rules and locks come from the main checkout only. Hooks (git and agent) call
``check_changes`` on what they see early; this module's ``verify_task`` is the guarantee.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from orch.core import git, refs
from orch.core.errors import GitError, InputError
from orch.verify import locks as locks_mod

TYPE_CHECKING = False  # typing costs git hooks ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from orch.core.context import Ctx

ORCH_PREFIX = ".orch/"
SYMLINK = "120000"
GITLINK = "160000"
NULL_MODE = "000000"
# Rules whose violation is an attack on the locks; the others are scope problems.
LOCK_RULES = frozenset({"orch-state", "symlink-to-lock", "path-lock", "test-lock", "region-lock", "requirement"})

BlobReader = Callable[[Sequence[str]], dict[str, bytes]]


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
                i for i in _maybe_special(metas) if metas[i][1:7] in _SPECIAL or metas[i][8:14] in _SPECIAL
            )
        return self._special


_SPECIAL = (SYMLINK, GITLINK)


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


class Verdict:
    """What verification said about one exact commit."""

    def __init__(
        self,
        task_id: str,
        result: str,
        sha: str,
        base_sha: str | None,
        violations: list[Violation],
        pending_acks: list[str],
        at: str,
        changed: int = 0,
    ) -> None:
        self.task_id = task_id
        self.result = result
        self.sha = sha
        self.base_sha = base_sha
        self.violations = violations
        self.pending_acks = pending_acks
        self.at = at
        self.changed = changed

    @property
    def mergeable(self) -> bool:
        """No hard violation and no soft lock still waiting for ``orch ack``."""
        return not any(v.mode == "hard" for v in self.violations) and not self.pending_acks

    def to_dict(self) -> dict[str, Any]:
        """The form stored in status.yaml (schemas/task_status.schema.json ``verdict``)."""
        return {
            "result": self.result,
            "sha": self.sha,
            "base_sha": self.base_sha,
            "at": self.at,
            "violations": [v.to_dict() for v in self.violations],
            "pending_acks": list(self.pending_acks),
        }

    def to_json(self) -> dict[str, Any]:
        return {"id": self.task_id, **self.to_dict(), "mergeable": self.mergeable, "changed_paths": self.changed}


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
        parsed = locks_mod._sre_parser().parse(regex)
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
    checker = _Checker(lockset=lockset, scope=scope, agent=agent)
    checker.scan(changes)
    return checker.finish(read)


class _Checker:
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

    def __init__(self, *, lockset: locks_mod.LockSet, scope: str | None, agent: bool) -> None:
        self.agent = agent
        self.scope = scope
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
        self.found: list[Violation] = []
        self.region_changes: list[Change] = []
        self.symlinks: list[Change] = []

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
            special = frozenset(i for i, ch in enumerate(changes) if ch.old_mode in _SPECIAL or ch.new_mode in _SPECIAL)
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
            for i in self._outside_scope(ordered, index):
                if i not in skip:
                    found.append((i, 1, Violation(paths[i], "scope", f"outside the task's scope {scope}")))
            for i in sorted(special - skip):
                ch = changes[i]
                if GITLINK in (ch.old_mode, ch.new_mode) and not names_explicitly(scope, ch.path):
                    why = "changes a submodule pointer; the scope must name the path explicitly"
                    found.append((i, 2, Violation(ch.path, "submodule", why)))
                if ch.new_mode == SYMLINK:
                    self.symlinks.append(ch)
            joined = "\0".join(paths)  # one scan of the paths, not one test per path
            if ".gitmodules" in joined or ".gitattributes" in joined:
                for i, path in enumerate(paths):
                    if path.endswith(_GIT_FILES) and i not in skip:
                        base = path.rsplit("/", 1)[-1]
                        if base in _GIT_FILES and not names_explicitly(scope, path):
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
                    before = locks_mod.region_text(old, lk.name, python=python)
                except locks_mod.RegionError as exc:  # cannot tell the region apart: any change counts
                    why = f"the region cannot be located at the base ({exc}), so any change to the file counts"
                    out.append(Violation(ch.path, "region-lock", f"{why}: {lk.describe()}", lock=lk.id, mode=lk.mode))
                    continue
                if before is None:
                    continue  # nothing to protect at the base
                if new is None:
                    msg = "file deleted"
                else:
                    try:
                        after = locks_mod.region_text(new, lk.name, python=python)
                    except locks_mod.RegionError as exc:
                        after, msg = None, str(exc)
                    else:
                        msg = "region removed or renamed" if after is None else "region edited"
                    if after == before:
                        continue
                out.append(Violation(ch.path, "region-lock", f"{msg}: {lk.describe()}", lock=lk.id, mode=lk.mode))
        return out


# -- requirement checks -----------------------------------------------------------------------------


class RequirementFailure:
    __slots__ = ("lock_id", "text", "mode", "via", "check", "exit_code", "output")

    def __init__(self, lock: locks_mod.Lock, exit_code: int, output: str) -> None:
        self.lock_id = lock.id
        self.text = lock.text or ""
        self.mode = lock.mode
        self.via = lock.via
        self.check = lock.check or ""
        self.exit_code = exit_code
        self.output = output

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def run_check(command: str, cwd: Path | str, *, timeout: float) -> tuple[int, str]:
    """Run a person's check command through ``sh -c``; (exit code, the last 2000 characters of output)."""
    import signal
    import subprocess

    proc = subprocess.Popen(
        ["sh", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=git.clean_env(),
        start_new_session=True,
    )
    try:
        data, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            data, _ = proc.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            data, _ = proc.communicate()
        data = (data or b"") + f"\n(timed out after {timeout:g}s)".encode()
        code = 124
    text = data.decode("utf-8", "replace")
    return code, text[-2000:]


def run_requirements(
    lockset: locks_mod.LockSet, cwd: Path | str, *, timeout: float, hard_only: bool = False
) -> list[RequirementFailure]:
    failures = []
    for lk in lockset.of_kind("requirement", agents=False):
        if hard_only and lk.mode != "hard":
            continue
        code, output = run_check(lk.check or "", cwd, timeout=timeout)
        if code != 0:
            failures.append(RequirementFailure(lk, code, output))
    return failures


def check_requirements(ctx: Ctx, cwd: Path, *, hard_only: bool = True) -> list[RequirementFailure]:
    """Run the requirement locks' checks in ``cwd`` (the ceremony's integration worktree)."""
    ctx = ctx.judging()
    lockset = locks_mod.load(ctx.project, cache=False)
    return run_requirements(lockset, cwd, timeout=ctx.config.test_timeout, hard_only=hard_only)


# -- verifying a task -------------------------------------------------------------------------------


# --ignore-submodules=none: git would otherwise honour submodule.<name>.ignore and diff.ignoreSubmodules
# (from .gitmodules or config, both of which an agent can write) and leave a moved submodule out.
DIFF = ("diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", "--ignore-submodules=none")


def task_changes(root: Path | str, old: str, new: str) -> git.Stream:
    """git's raw diff from commit ``old`` to commit ``new``, started now: iterate it through
    ``parse_stream`` for the changes in batches as git writes them (in git's order), so checking one
    batch overlaps git's work on the next."""
    return git.Stream([*DIFF, old, new, "--"], cwd=root)


def _check_task_id(task_id: str) -> None:
    from orch.core.plan import ID_RE, ID_RULE

    if not ID_RE.fullmatch(task_id):
        raise InputError(f"'{task_id}' is not a task id", hint=ID_RULE)


def _resolved(pair: git.CommitPair, task_id: str, sha: str | None, base: str) -> tuple[str, str]:
    """(the full sha to judge, its merge-base with the base branch), or why there is none."""
    base_tip, found, bases = pair.result()
    if found is None:
        if sha is None:
            raise InputError(
                f"task {task_id} has no branch {refs.branch_name(task_id)}",
                hint=f"spin it first (orch spin {task_id}), or pass the commit to verify",
            )
        raise InputError(f"'{sha}' names no commit in this repository")
    if base_tip is None:
        raise InputError(f"the base branch '{base}' does not exist", hint="fix base_branch in .orch/config.yaml")
    if not bases:
        raise InputError(f"{refs.branch_name(task_id)} at {found[:12]} shares no history with {base}")
    return found, bases[0]  # with several (criss-cross merges), the one `git merge-base` names


def verify_task(
    ctx: Ctx,
    task_id: str,
    *,
    sha: str | None = None,
    record: bool = True,
    base_tip: str | None = None,
) -> Verdict:
    """Judge the exact commit ``sha`` (default: the tip of ``orch/<id>``) of task ``task_id``.

    ``base_tip`` is the commit the change set is measured from (through the merge-base); default: the
    tip of the configured base branch (the merge ceremony passes the tip of the branch it merges into).
    Config, plan and locks are read from their files, never from the caches (``Ctx.judging``).
    """
    from orch.core import state
    from orch.core.eventlog import utcnow

    _check_task_id(task_id)
    ctx = ctx.judging()
    project = ctx.project
    root = project.root
    base = ctx.config.base_branch
    # git works on the other core while the rules load: first the commit, the base tip and their
    # merge-base (while the plan is read), then the diff (while the locks are read). The locks still
    # fail closed, exit 3, before anything else is reported.
    pair = git.CommitPair(
        base_tip or f"refs/heads/{base}", f"refs/heads/{refs.branch_name(task_id)}" if sha is None else sha, cwd=root
    )
    try:
        task = ctx.plan.require(task_id)
    except BaseException:
        pair.cancel()
        raise
    try:
        commit, base_sha = _resolved(pair, task_id, sha, base)
    except InputError as exc:
        unresolved: InputError | None = exc  # told once the locks have loaded: they are reported first
        diff = None
    else:
        unresolved, diff = None, task_changes(root, base_sha, commit)
    try:
        lockset = locks_mod.load(project, cache=False)
        if unresolved is not None:
            raise unresolved
        assert diff is not None
        sha = commit
        checker = _Checker(lockset=lockset, scope=task.scope, agent=True)
        changed = 0
        for batch in parse_stream(diff):
            checker.scan(batch)
            changed += len(batch)
    finally:
        if diff is not None:
            diff.cancel()
    violations = checker.finish(lambda shas: git.cat_blobs(shas, cwd=root))
    status = state.read(project, ctx.store, task_id, refresh=False) or {}
    acks = acked_locks(status, sha)
    if lockset.of_kind("requirement", agents=False):
        with _checkout_at(ctx, task_id, sha) as where:
            for failure in run_requirements(lockset, where, timeout=ctx.config.test_timeout):
                excerpt = failure.output.strip().splitlines()[-1:] or [""]
                violations.append(
                    Violation(
                        f"(requirement {failure.lock_id})",
                        "requirement",
                        f"'{failure.text}' failed: `{failure.check}` exited {failure.exit_code}: {excerpt[0][:200]}",
                        lock=failure.lock_id,
                        mode=failure.mode,
                    )
                )
    pending = sorted({v.lock for v in violations if v.mode == "soft" and v.lock and v.lock not in acks})
    verdict = Verdict(task_id, result_of(violations), sha, base_sha, violations, pending, utcnow(), changed)
    if record:
        _record(ctx, verdict)
    return verdict


def _record(ctx: Ctx, verdict: Verdict) -> None:
    from orch.core import state

    new_state: str | None = None

    def change(st: state.Status) -> None:
        nonlocal new_state
        st["verdict"] = verdict.to_dict()
        if not st.get("branch"):  # so `orch status` can tell when a later commit makes the verdict stale
            st["branch"] = refs.branch_name(verdict.task_id)
        if verdict.result != "OK" and st.get("state") not in ("MERGED", "CLEANED"):
            st["state"] = verdict.result
            n = len([v for v in verdict.violations if v.mode == "hard"])
            plural = "s" if n != 1 else ""
            st["reason"] = f"verify: {n} violation{plural} at {verdict.sha[:12]} (orch verify {verdict.task_id})"
        new_state = st.get("state")

    state.update(ctx.project, ctx.store, verdict.task_id, change, check=False)  # built from a validated status
    hard = len([v for v in verdict.violations if v.mode == "hard"])
    result = f"{verdict.result} sha={verdict.sha[:12]} violations={hard}"
    if verdict.pending_acks:
        result += f" needs-ack={','.join(verdict.pending_acks)}"
    ctx.log(new_state or "PENDING", "VERIFY", result, task=verdict.task_id)


class _checkout_at:
    """A fresh temporary worktree holding exactly the tree of ``sha`` (removed afterwards).

    Never the task's own worktree: it may hold ignored files that shadow committed ones, and its agent
    may still be running. Nor is it filled by git's checkout, which runs smudge filters and hooks that
    config an agent can plant (``includeIf`` reaching only linked worktrees, ``info/attributes``) would
    name: the files are written here from ``ls-tree`` and ``cat-file``, and the index is set with
    ``read-tree`` (which runs no filter), then refreshed with every filter blanked.
    """

    def __init__(self, ctx: Ctx, task_id: str, sha: str) -> None:
        self.ctx = ctx
        self.task_id = task_id
        self.sha = sha
        self.temp: Path | None = None

    def __enter__(self) -> Path:
        root = self.ctx.project.root
        self.temp = self.ctx.project.run_dir / "verify" / f"{self.task_id}-{self.sha[:12]}-{os.getpid()}"
        if self.temp.exists():
            self._remove()
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.run(
                [*_no_filters(root), "worktree", "add", "--no-checkout", "--detach", str(self.temp), self.sha],
                cwd=root,
                no_hooks=True,
            )
            write_tree(root, self.sha, self.temp)
            git.run(["read-tree", self.sha], cwd=self.temp, no_hooks=True)
            blank = _no_filters(self.temp)  # as config is seen from inside this worktree
            git.run([*blank, "update-index", "-q", "--refresh"], cwd=self.temp, check=False, no_hooks=True)
        except BaseException:
            self._remove()
            raise
        return self.temp

    def __exit__(self, *exc: object) -> None:
        if self.temp is not None:
            self._remove()

    def _remove(self) -> None:
        assert self.temp is not None
        root = self.ctx.project.root
        git.run(["worktree", "remove", "--force", str(self.temp)], cwd=root, check=False)
        if self.temp.exists():  # not a worktree git knows (an interrupted earlier run): ours to clear
            import shutil

            shutil.rmtree(self.temp, ignore_errors=True)
        git.run(["worktree", "prune"], cwd=root, check=False)


def write_tree(root: Path | str, sha: str, dest: Path) -> None:
    """Write the files of commit ``sha`` into the folder ``dest`` as git stores them: no filter, no
    end-of-line conversion, modes kept (regular, executable, symlink; a submodule is an empty folder).

    Folders and files first, symlinks last, so no write can pass through a symlink of the tree; a
    path that could leave ``dest`` (``..``, ``.git``, an absolute path) is refused.
    """
    listing = git.run(["ls-tree", "-r", "-z", "--full-tree", sha], cwd=root).stdout
    entries: list[tuple[str, str, str]] = []  # (mode, object, path)
    for record in listing.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _kind, obj = meta.split(" ")
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
            raise InputError(f"commit {sha[:12]} holds a path git would never check out: {path!r}")
        entries.append((mode, obj, path))
    blobs = git.cat_blobs([obj for mode, obj, _ in entries if mode != GITLINK], cwd=root)
    links = []
    for mode, obj, path in entries:
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if mode == SYMLINK:
            links.append((obj, target))
        elif mode == GITLINK:
            os.makedirs(target, exist_ok=True)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o755 if mode == "100755" else 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blobs[obj])
    for obj, target in links:
        os.symlink(blobs[obj].decode("utf-8", "surrogateescape"), target)


def _no_filters(root: Path) -> list[str]:
    """``-c`` options that blank every configured clean/smudge/process filter."""
    pattern = r"^filter\..*\.(smudge|clean|process)$"
    r = git.run(["config", "--name-only", "--get-regexp", pattern], cwd=root, check=False)
    opts: list[str] = []
    for name in r.stdout.split():
        opts += ["-c", f"{name}="]
    return opts


def verify_many(ctx: Ctx, task_ids: Sequence[str], *, all_tasks: bool = False) -> list[Verdict]:
    """``orch verify``: the named tasks, or (``all_tasks``) every task in the plan with a branch."""
    ctx = ctx.judging()
    if all_tasks:

        heads = refs.branch_heads(ctx.project.root)
        task_ids = [t for t in ctx.plan.ids() if refs.branch_name(t) in heads]
    if not task_ids:
        raise InputError("no task to verify", hint="name tasks (orch verify T1 T2) or spin one first")
    for tid in task_ids:
        _check_task_id(tid)
        ctx.plan.require(tid)
    return [verify_task(ctx, tid) for tid in task_ids]


def ack_entry(lock_id: str, sha: str) -> str:
    """How status.yaml ``acks`` records an ack: the lock and the exact commit it was given for."""
    return f"{lock_id}@{sha}"


def acked_locks(status: dict[str, Any], sha: str) -> set[str]:
    """The soft locks a person acked for commit ``sha`` (an ack holds for one exact commit; entries
    without a commit, written by older versions, count for none)."""
    out = set()
    for entry in status.get("acks") or []:
        lock_id, at, acked_sha = str(entry).partition("@")
        if at and acked_sha == sha:
            out.add(lock_id)
    return out


def ack(ctx: Ctx, task_id: str, lock_id: str) -> dict[str, Any]:
    """``orch ack``: a person accepts task ``task_id``'s change to soft lock ``lock_id`` at the exact
    commit of its latest verdict (which must still be the branch tip): a later commit needs a new ack."""
    from orch.core import state

    _check_task_id(task_id)
    ctx = ctx.judging()
    ctx.plan.require(task_id)
    lockset = locks_mod.load(ctx.project, cache=False)
    lock = lockset.get(lock_id) or (locks_mod.agents_md_lock() if lock_id == locks_mod.AGENTS_MD_LOCK else None)
    if lock is None:
        known = ", ".join(lk.id for lk in lockset.locks) or "none"
        raise InputError(f"no lock '{lock_id}' in .orch/locks.yaml", hint=f"known locks: {known}")
    if lock.mode != "soft":
        raise InputError(
            f"{lock_id} is a hard lock: it cannot be acked",
            hint=f"fix the branch, or (a person decides) make it soft in .orch/locks.yaml, or: orch lock rm {lock_id}",
        )

    tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=ctx.project.root)
    status = state.read(ctx.project, ctx.store, task_id, refresh=False) or {}
    judged = (status.get("verdict") or {}).get("sha")
    if not judged:
        raise InputError(
            f"task {task_id} has no verdict to ack", hint=f"verify it first (orch verify {task_id}), then ack"
        )
    if tip != judged:
        where = f"is at {tip[:12]}" if tip else "is gone"
        raise InputError(
            f"{refs.branch_name(task_id)} {where}, not at {judged[:12]} where it was verified: "
            "an ack holds for one exact commit",
            hint=f"verify it again (orch verify {task_id}), then ack what that verdict shows",
        )
    sha = judged
    entry = ack_entry(lock_id, sha)

    def change(st: state.Status) -> None:
        acks = list(st.get("acks") or [])
        if entry not in acks:
            acks.append(entry)
        st["acks"] = acks
        verdict = st.get("verdict")
        if verdict and verdict.get("sha") == sha and lock_id in (verdict.get("pending_acks") or []):
            verdict["pending_acks"] = [a for a in verdict["pending_acks"] if a != lock_id]

    st = state.update(ctx.project, ctx.store, task_id, change)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "someone"
    ctx.log(str(st.get("state")), "ACK", f"{lock_id} at {sha[:12]} by {user}", task=task_id)
    verdict = st.get("verdict") or {}
    return {
        "task": task_id,
        "lock": lock_id,
        "sha": sha,
        "acks": st["acks"],
        "pending_acks": verdict.get("pending_acks") or [],
    }


def verdict_text(v: Verdict) -> str:
    head = f"{v.task_id}: {v.result} at {v.sha[:12]} (base {str(v.base_sha)[:12]}, {v.changed} changed paths)"
    lines = [head]
    for x in v.violations:
        tag = " [soft]" if x.mode == "soft" else ""
        lines.append(f"  {x.path}: {x.rule}{tag}: {x.message}")
    if v.pending_acks:
        acks = " ".join(f"orch ack {v.task_id} {a}" for a in v.pending_acks)
        lines.append(f"  needs a person's ack before the merge: {acks}")
    elif v.mergeable:
        lines.append("  mergeable")
    return "\n".join(lines)
