"""Locks: what agents must not change, read from the main checkout's ``.orch/locks.yaml`` only.

Kinds:

* ``path``: a gitignore-style glob (``src/billing/pricing.py``, ``tests/**/test_checkout*.py``,
  ``docs/``); any change to a matching path is a violation.
* ``test``: a glob of test files that must stay byte-identical: editing, deleting or renaming one is
  a violation (adding a new file that matches is not).
* ``region``: ``path::Name``: the region between comment lines ``orch-lock: begin Name`` and
  ``orch-lock: end Name`` (any language), or, in a Python file, the function or class with that
  qualified name (``Cart.total``), located with ``ast`` (``orch.verify.regions`` finds it). The
  rest of the file stays editable.
* ``requirement``: an English requirement with a ``check`` command (run through ``sh -c``) and a
  ``via`` (schema, static, test, e2e).

``hard`` blocks the merge; ``soft`` needs ``orch ack TASK LOCK``. ``AGENTS.md`` at the root is
hard-locked for agents unless ``agents_md_lock: false``.

A missing, unreadable or invalid locks file is an error (exit 3), never "no locks". Loading is
fast on the second read: the validated, compiled form of each version of the file is kept as JSON
in ``.orch/run/cache/locks/`` keyed by a digest of its bytes, so git hooks need neither yaml nor
jsonschema nor pathspec. That cache is an untracked file anyone (an agent too) can write, so only
the early warnings read it; verification loads with ``cache=False``: parsed, validated and compiled
from the file itself (and the cache entry rewritten with the truth).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable

from orch.core.errors import InputError
from orch.core.globs import glob_problem, glob_regex  # noqa: F401 (their home before core.globs)

TYPE_CHECKING = False  # typing costs git hooks ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from typing import Any

    from orch.core.repo import Project

KINDS = ("path", "test", "region", "requirement")
VIAS = ("schema", "static", "test", "e2e")
AGENTS_MD_LOCK = "AGENTS_MD"
_COMPILER = "5"  # bump when the compiled form changes


# Lock regexes compiled in this process, by source: a long-lived one (orch ui) reads the locks again
# for each page, and re's own cache (512 entries) is too small for hundreds of locks and scopes.
_COMPILED: dict[str, re.Pattern[str]] = {}


class Lock:
    """One lock. ``regex`` is the compiled glob for path and test locks."""

    __slots__ = (
        "id", "kind", "mode", "pattern", "reason", "text", "check", "via", "hash", "rx_src", "_rx", "file",
        "name", "_prefix", "note",
    )  # fmt: skip

    def __init__(self, data: dict[str, Any], *, rx: str | None = None, prefix: str | None = None) -> None:
        self.id: str = data["id"]
        self.kind: str = data["kind"]
        self.mode: str = data["mode"]
        self.pattern: str | None = data.get("pattern")
        self.reason: str | None = data.get("reason")
        self.text: str | None = data.get("text")
        self.check: str | None = data.get("check")
        self.via: str | None = data.get("via")
        self.hash: str | None = data.get("hash")
        self.rx_src = rx  # compiled on first use: hooks meet only the few locks near the staged paths
        self._rx: re.Pattern[str] | None = None
        self._prefix = prefix if rx else None
        self.file: str | None = None
        self.name: str | None = None
        self.note: str | None = None  # why it binds though the working copy lost it (``inforce``)
        if self.kind == "region" and self.pattern:
            file, _, name = self.pattern.partition("::")
            self.file, self.name = file.lstrip("/"), name

    @property
    def rx(self) -> re.Pattern[str] | None:
        if self._rx is None and self.rx_src:
            self._rx = _COMPILED.get(self.rx_src)
            if self._rx is None:
                if len(_COMPILED) > 4096:
                    _COMPILED.clear()
                self._rx = _COMPILED[self.rx_src] = re.compile(self.rx_src, re.DOTALL)
        return self._rx

    @property
    def prefix(self) -> str:
        """The text every path this path or test lock covers starts with (``""``: any path may match).

        A path that does not start with it is clear of the lock without running the regex (or
        compiling it: a fresh process pays ~0.3 ms per regex it compiles).
        """
        if self._prefix is None:
            self._prefix = literal_prefix(self.rx_src) if self.rx_src else ""
        return self._prefix

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": self.kind, "mode": self.mode}
        for key in ("pattern", "text", "check", "via", "reason", "hash"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data

    def matches(self, path: str) -> bool:
        """Does this path or test lock cover ``path``? (Region locks: the path is their file.)"""
        if self.rx is not None:
            return self.rx.match(path) is not None
        return self.kind == "region" and path == self.file

    @property
    def label(self) -> str:
        return self.pattern or self.text or self.id

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        note = f" [{self.note}]" if self.note else ""
        return f"{self.mode} {self.kind} lock {self.id} ({self.label}){why}{note}"


class LockSet:
    def __init__(self, locks: list[Lock], agents_md_lock: bool) -> None:
        self.locks = locks
        self.agents_md_lock = agents_md_lock
        self._combined: re.Pattern[str] | None = None

    def get(self, lock_id: str) -> Lock | None:
        for lock in self.locks:
            if lock.id == lock_id:
                return lock
        return None

    def for_agents(self) -> list[Lock]:
        """The locks a task branch answers to, including the implicit AGENTS.md lock."""
        extra = [agents_md_lock()] if self.agents_md_lock and self.get(AGENTS_MD_LOCK) is None else []
        return [*self.locks, *extra]

    def of_kind(self, *kinds: str, agents: bool = True) -> list[Lock]:
        return [lk for lk in (self.for_agents() if agents else self.locks) if lk.kind in kinds]


# glob_regex("/AGENTS.md") and its literal prefix, spelled out: the implicit lock is built in every
# verify and every task-worktree hook, and deriving it costs the pathspec import (tests pin equality).
AGENTS_MD_RX = r"^AGENTS\.md(?:(?:/)|\Z)"
AGENTS_MD_PREFIX = "AGENTS.md"


def agents_md_lock() -> Lock:
    return Lock(
        {
            "id": AGENTS_MD_LOCK,
            "kind": "path",
            "mode": "hard",
            "pattern": "/AGENTS.md",
            "reason": "people curate AGENTS.md (agents_md_lock in .orch/locks.yaml)",
        },
        rx=AGENTS_MD_RX,
        prefix=AGENTS_MD_PREFIX,
    )


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")


def glob_prefix(pattern: str) -> str:
    """Literal text every path a gitignore-style ``pattern`` matches starts with ("" when it may match
    at any depth). Read from the glob, much cheaper than parsing its regex (``literal_prefix``), and
    conservative: it stops at the first character that is not plain (wildcards, escapes, spaces that
    gitignore may strip), so it is never longer than what the regex pins down (the tests check it).
    """
    if any(c.isspace() or c == "\\" for c in pattern):
        return ""  # gitignore strips or escapes these: leave such rare patterns to their regex alone
    body = pattern[1:] if pattern.startswith("/") else pattern
    # A separator at the start or in the middle anchors the pattern at the top (gitignore rules);
    # one only at the end does not.
    if not pattern.startswith("/") and "/" not in body.rstrip("/"):
        return ""
    out: list[str] = []
    for i, c in enumerate(body):
        if c not in _PLAIN or (c == "/" and body.startswith("**", i + 1)):  # "a/**/b" also matches "a/b"
            break
        out.append(c)
    return "".join(out)


def sre_parser() -> Any:
    """The regex parser of the standard library (``re._parser``; ``sre_parse`` before Python 3.11)."""
    import importlib

    try:
        return importlib.import_module("re._parser")  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        return importlib.import_module("sre_parse")


def literal_head(rx_src: str, flags: int = 0) -> tuple[bool, str, bool]:
    """What the start of regex ``rx_src`` pins down: (it begins with ``^``, the literal characters
    that follow up to the first anything else, whether those two are the whole regex).

    Read from the parsed regex, so it holds by construction. Nothing is pinned (``(False, "", False)``)
    when the regex cannot be parsed or ignores case.
    """
    try:
        parsed = sre_parser().parse(rx_src, flags)
    except re.error:
        return False, "", False
    if parsed.state.flags & re.IGNORECASE:
        return False, "", False
    items = list(parsed)
    anchored = bool(items) and str(items[0][0]) == "AT" and str(items[0][1]) == "AT_BEGINNING"
    out: list[str] = []
    for op, av in items[1 if anchored else 0 :]:
        if str(op) != "LITERAL":
            break
        out.append(chr(av))
    return anchored, "".join(out), len(out) + anchored == len(items)


def literal_prefix(rx_src: str) -> str:
    """The literal text every match of ``rx_src`` (a lock regex, used with ``re.match``) starts with."""
    return literal_head(rx_src, re.DOTALL)[1]


def blake2b(data: bytes) -> Any:
    """A 16-byte BLAKE2b of ``data`` from the built-in module: ``hashlib`` would load OpenSSL first,
    which costs a git hook more than the hashing."""
    try:
        from _blake2 import blake2b as _blake2b
    except ImportError:  # pragma: no cover - CPython always has it
        from hashlib import blake2b as _blake2b
    return _blake2b(data, digest_size=16)


# -- loading ----------------------------------------------------------------------------------------


def load(project: Project, *, cache: bool = True) -> LockSet:
    """The project's locks; a missing, unreadable or invalid file raises ``InputError`` (exit 3).

    ``cache=False``: from locks.yaml itself, never from the compiled cache (what verification uses).
    """
    return load_dir(str(project.orch_dir), cache=cache)


def load_dir(orch_dir: str, *, cache: bool = True) -> LockSet:
    """``load`` for the ``.orch`` folder at ``orch_dir`` (git hooks avoid building a Project)."""
    return from_bytes(orch_dir, read_raw(orch_dir), cache=cache)


def read_raw(orch_dir: str) -> bytes:
    """The bytes of ``locks.yaml`` in the ``.orch`` folder ``orch_dir``; missing or unreadable: InputError."""
    where = ".orch/locks.yaml"
    try:
        with open(os.path.join(orch_dir, "locks.yaml"), "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InputError(
            f"{where} is missing, so orch cannot tell what is locked (it never assumes 'no locks')",
            hint="restore it (git checkout -- .orch/locks.yaml) or run orch init to recreate the default",
        ) from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read it: {exc.strerror}", hint="fix its permissions") from None


def from_bytes(orch_dir: str, raw: bytes, *, where: str = ".orch/locks.yaml", cache: bool = True) -> LockSet:
    """The locks in ``raw``, the text of a locks.yaml (the working copy's, or the one committed on the
    base branch, named ``where`` in messages), through the compiled cache of ``orch_dir`` unless
    ``cache=False``."""
    digest = blake2b(raw + b"\0" + _COMPILER.encode() + _schema_bytes())
    cached = os.path.join(orch_dir, "run", "cache", "locks", digest.hexdigest() + ".json")
    if cache:
        try:
            with open(cached, encoding="utf-8") as handle:
                return _lockset(json.load(handle))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, or not our shape
            pass
    compiled = _compile(orch_dir, raw, where, cache=cache)
    _remember(cached, compiled)
    return _lockset(compiled)


def _lockset(compiled: dict[str, Any]) -> LockSet:
    """The LockSet of a compiled form; KeyError, TypeError or ValueError when it has another shape."""
    locks = []
    for item in compiled["locks"]:
        lock = Lock(item["lock"], rx=item.get("rx"), prefix=item.get("prefix"))
        if lock.kind not in KINDS or lock.mode not in ("hard", "soft") or not isinstance(lock.id, str):
            raise ValueError(f"not a compiled lock: {item!r}")
        locks.append(lock)
    agents_md = compiled["agents_md_lock"]
    if not isinstance(agents_md, bool):
        raise TypeError("agents_md_lock is not a bool")
    return LockSet(locks, agents_md)


def _schema_bytes() -> bytes:
    """The locks schema, read without importing orch.core.store (and yaml): git hooks start fast."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the orch package
    for folder in (os.path.join(here, "_data", "schemas"), os.path.join(os.path.dirname(here), "schemas")):
        try:
            with open(os.path.join(folder, "locks.schema.json"), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            continue
    return b""


def _remember(path: str, compiled: dict[str, Any]) -> None:
    import contextlib
    from pathlib import Path

    from orch.core.store import atomic_write

    text = json.dumps(compiled)
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:  # verification loads from source each time: rewrite only a wrong entry
                return
    with contextlib.suppress(OSError):
        atomic_write(Path(path), text, durable=False)


def _compile(orch_dir: str, raw: bytes, where: str, *, cache: bool = True) -> dict[str, Any]:
    """Parse, validate against the schema and check each lock; report every problem at once.
    ``cache=False``: validate even when the validation cache says this text passed before."""
    from pathlib import Path

    from orch.core.store import Store, _item_lines

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start})", hint="fix the file by hand") from None
    data = Store(Path(orch_dir).parent, Path(orch_dir), cache=cache).loads(text, "locks", where=where)
    if not isinstance(data, dict):
        raise InputError(f"{where}:1: expected a mapping with a 'locks' list", hint="see orch lock --help")
    problems: list[str] = []
    seen: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    lines: list[int] | None = None  # parsing again for line numbers is only worth it for a message

    def line_of(i: int) -> int:
        nonlocal lines
        if lines is None:
            lines = _item_lines(text, "locks")
        return lines[i] if i < len(lines) else 1

    for i, item in enumerate(data.get("locks") or []):
        lock_id = item["id"]
        if lock_id in seen:
            first = line_of(seen[lock_id])
            problems.append(f"{where}:{line_of(i)}: duplicate lock id '{lock_id}' (first at line {first})")
            continue
        seen[lock_id] = i
        problem, rx = check_fields(item)
        if problem:
            problems.append(f"{where}:{line_of(i)}: lock {lock_id}: {problem}")
            continue
        out.append({"lock": item, "rx": rx, "prefix": glob_prefix(str(item["pattern"])) if rx else None})
    if problems:
        raise InputError("\n".join(problems), hint="fix the file; verification fails closed until it is valid")
    return {"locks": out, "agents_md_lock": data.get("agents_md_lock", True) is not False}


def check_fields(item: dict[str, Any]) -> tuple[str | None, str | None]:
    """A problem with one lock's fields (or None) and, for path/test locks, the compiled regex."""
    kind = item["kind"]
    pattern = item.get("pattern")
    if kind in ("path", "test", "region") and not pattern:
        return f"a {kind} lock needs a 'pattern'", None
    if kind == "requirement":
        missing = [k for k in ("text", "check", "via") if not item.get(k)]
        if missing:
            return f"a requirement lock needs {', '.join(repr(m) for m in missing)}", None
        return None, None
    if kind == "region":
        file, sep, name = str(pattern).partition("::")
        if not sep or not file.strip("/") or not name:
            return f"a region pattern is 'path::Name' (got '{pattern}')", None
        return None, None
    try:
        return None, glob_regex(str(pattern))
    except ValueError as exc:  # glob_regex names the pattern and what is wrong with it
        return str(exc), None
    except re.error as exc:
        return f"bad pattern '{pattern}': {exc}", None


# -- scope overlap ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # lock list and the topology ask it once per lock and task: parse once
def _fragments(scope: str) -> tuple[str, ...]:
    """The literal runs inside a regex (``^tests/test_x\\.py$`` -> ``tests/test_x.py``)."""
    sre = sre_parser()
    found: set[str] = set()

    def walk(items: Any) -> None:
        run: list[str] = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                run.append(chr(av))
                continue
            if run:
                found.add("".join(run))
                run = []
            if name == "SUBPATTERN":
                walk(av[-1])
            elif name == "BRANCH":
                for branch in av[1]:
                    walk(branch)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(av[2])
        if run:
            found.add("".join(run))

    try:
        walk(sre.parse(scope))
    except Exception:  # an odd regex only loses precision here
        return ()
    return tuple(sorted(found)[:50])


def _samples(pattern: str, fills: tuple[str, ...]) -> list[str]:
    """Concrete paths built from a glob, its wildcards filled with ``fills``."""
    p = pattern.lstrip("/")
    out: set[str] = set()
    for fill in ["x", *fills]:
        s = re.sub(r"\[[^\]]*\]", "x", p).replace("**", fill).replace("*", fill).replace("?", "x")
        out.add(s + fill if s.endswith("/") else s)
        out.add(p.replace("**/", "").replace("*", fill))
    return sorted(out)


def touches_scope(lock: Lock, scope: str | None, *, files: Iterable[str] | None = None) -> bool:
    """Could a task with ``scope`` change what ``lock`` protects?

    A task without a scope touches every lock; a requirement lock concerns every task. Otherwise a
    path the lock covers must match the scope: tracked ``files`` when given (exact), plus sample
    paths built from the glob (so a lock on files that do not exist yet still counts).
    """
    if scope is None or lock.kind == "requirement":
        return True
    try:
        rx = re.compile(scope)
    except re.error:
        return True
    if lock.kind == "region":
        return rx.search(lock.file or "") is not None
    assert lock.pattern is not None
    fragments = _fragments(scope)
    candidates = [*fragments, *(f.lstrip("/") for f in fragments), *_samples(lock.pattern, fragments)]
    if any(lock.matches(c) and rx.search(c) for c in candidates):
        return True
    if files is not None:
        return any(lock.matches(f) and rx.search(f) for f in files)
    return False
