"""The locks in force, and what uncommitted edits of the rule files would loosen.

An agent runs as the person's user and can edit the main checkout's ``.orch/locks.yaml``. So judging
(``orch verify``, ``orch ack``, the merge ceremony and its requirement checks) applies the locks of
the working copy and those committed on the base branch, both: a lock added in the working copy
counts at once; one removed, narrowed or turned soft counts only once that edit is committed on the
base branch. A lock id in both files with other content binds in both versions. The plan and the
config in force come from ``orch.core.context`` (``Ctx.plan``, ``Ctx.config`` of a judging context).

``loosened`` tells ``orch status`` and ``orch plan`` what is pending: edits that loosen a rule and so
do not count for judging yet. It compares bytes first (one ``git cat-file`` for the three files) and
reads through the caches, like every display command.
"""

from __future__ import annotations

from orch.core.errors import OrchError
from orch.verify import locks as locks_mod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orch.core.committed import Committed
    from orch.core.context import Ctx

LOCKS = "locks.yaml"


def locks(ctx: Ctx) -> locks_mod.LockSet:
    """The locks that judge: the working copy's and the base branch's committed ones, parsed and
    validated from the file and from git, never from a cache. Missing or invalid: ``InputError``."""
    ctx.read_committed()  # git reads the committed file while the working copy's is compiled
    orch_dir = str(ctx.project.orch_dir)
    raw = locks_mod.read_raw(orch_dir)
    working = locks_mod.from_bytes(orch_dir, raw, cache=False)
    committed = ctx.committed()
    theirs = committed.get(LOCKS)
    if theirs is None or theirs == raw:  # not committed yet, or no edit: the working copy is the rule
        return working
    base = locks_mod.from_bytes(orch_dir, theirs, where=committed.where(LOCKS), cache=False)
    return union(working, base, committed.branch)


def _key(lock: locks_mod.Lock) -> tuple[str | None, ...]:
    """What a lock binds (its reason only explains it)."""
    return (lock.id, lock.kind, lock.mode, lock.pattern, lock.text, lock.check, lock.via, lock.hash)


def union(working: locks_mod.LockSet, committed: locks_mod.LockSet, branch: str) -> locks_mod.LockSet:
    """Every lock of both sets: the working copy's, then each committed lock the working copy does not
    hold as it is (removed there, or changed: both versions bind), marked as such in messages."""
    have = {_key(lk) for lk in working.locks}
    extra = []
    for lk in committed.locks:
        if _key(lk) not in have:
            lk.note = f"as committed on {branch}; an uncommitted edit of .orch/locks.yaml cannot loosen it"
            extra.append(lk)
    return locks_mod.LockSet([*working.locks, *extra], working.agents_md_lock or committed.agents_md_lock)


# -- what is pending -----------------------------------------------------------------------------------


def loosened(ctx: Ctx) -> list[str]:
    """What uncommitted edits of ``.orch/``'s rule files would loosen (``".orch/locks.yaml: L1 removed"``),
    which judging ignores until the edit is committed on the base branch. Empty when nothing is pending,
    or when the files cannot be read (the commands that judge report that themselves).

    Display only, so it answers from a cache keyed by the branch tip (read from the ref file, no git)
    and the working files' bytes: an unchanged repository costs ``orch status`` no git process."""
    key = _notice_key(ctx)
    cached = _notice_cache(ctx, key)
    if cached is not None:
        return cached
    found = _loosened(ctx)
    if key is not None:
        _remember_notice(ctx, key, found)
    return found


def _loosened(ctx: Ctx) -> list[str]:
    try:
        committed = ctx.committed()
        found = []
        for name, check in ((LOCKS, _locks_loosened), ("plan.md", _plan_loosened), ("config.yaml", _config_loosened)):
            try:
                working = (ctx.project.orch_dir / name).read_bytes()
            except OSError:
                continue  # judging fails closed on a missing file
            if not committed.differs(name, working):
                continue
            what = check(ctx, committed, working)
            if what:
                found.append(f".orch/{name}: {', '.join(what)}")
        return found
    except (OrchError, UnicodeDecodeError):
        return []


def notice(ctx: Ctx) -> str | None:
    """The one line ``orch status`` and ``orch plan`` show while a loosening edit is pending."""
    found = loosened(ctx)
    if not found:
        return None
    branch = ctx.rules_branch or ctx.working_config.base_branch  # not committed(): that would ask git
    return (
        f"note: uncommitted edits loosen the rules ({'; '.join(found)}); orch verify and orch merge keep "
        f"judging by the rules committed on {branch} until these edits are committed there"
    )


def _locks_loosened(ctx: Ctx, committed: Committed, working: bytes) -> list[str]:
    theirs = committed.get(LOCKS)
    assert theirs is not None
    orch_dir = str(ctx.project.orch_dir)
    mine = locks_mod.from_bytes(orch_dir, working)
    base = locks_mod.from_bytes(orch_dir, theirs, where=committed.where(LOCKS))
    have = {_key(lk) for lk in mine.locks}
    ids = {lk.id for lk in mine.locks}
    out = [f"{lk.id} {'changed' if lk.id in ids else 'removed'}" for lk in base.locks if _key(lk) not in have]
    if base.agents_md_lock and not mine.agents_md_lock:
        out.append("agents_md_lock turned off")
    return list(dict.fromkeys(out))


def _plan_loosened(ctx: Ctx, committed: Committed, working: bytes) -> list[str]:
    from orch.core import planfile

    theirs = committed.get("plan.md")
    assert theirs is not None
    orch_dir = ctx.project.orch_dir
    mine = planfile.loads(working.decode("utf-8"), orch_dir, where=".orch/plan.md")
    base = planfile.loads(theirs.decode("utf-8"), orch_dir, where=committed.where("plan.md"))
    out = []
    for task in mine.tasks:
        before = base.get(task.id)
        if before is not None and before.scope and before.scope != task.scope:
            out.append(f"{task.id} scope")
        if before is not None and before.accept and before.accept != task.accept:
            out.append(f"{task.id} accept")
    return out


def _config_loosened(ctx: Ctx, committed: Committed, working: bytes) -> list[str]:
    theirs = committed.get("config.yaml")
    assert theirs is not None
    mine = ctx.store.loads(working.decode("utf-8"), "config", where=".orch/config.yaml")
    base = ctx.store.loads(theirs.decode("utf-8"), "config", where=committed.where("config.yaml"))
    from orch.core.config import DEFAULT_TEST_TIMEOUT as default

    out = []
    if base.get("test_command") and base.get("test_command") != mine.get("test_command"):
        out.append("test_command")
    if float(mine.get("test_timeout") or default) > float(base.get("test_timeout") or default):
        out.append("test_timeout")
    return out


# -- the display cache (anyone can write it: it only ever feeds the notice, never judging) -------------


def _tip(ctx: Ctx) -> str | None:
    """The base branch's commit from its ref file or ``packed-refs``, without a git process; None when
    that is not plain (a symbolic ref, a ref in a reftable, no branch): the caller then asks git."""
    import re

    branch = ctx.rules_branch or ctx.working_config.base_branch
    common = ctx.project.common_dir
    sha = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
    try:
        loose = common / "refs" / "heads" / branch
        if loose.is_file() and not loose.is_symlink():
            text = loose.read_text(encoding="utf-8").strip()
            return text if sha.fullmatch(text) else None
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            value, _, name = line.partition(" ")
            if name == f"refs/heads/{branch}" and sha.fullmatch(value):
                return value
    except (OSError, UnicodeDecodeError, ValueError, OrchError):
        return None
    return None


def _notice_key(ctx: Ctx) -> str | None:
    from _blake2 import blake2b

    tip = _tip(ctx)
    if tip is None:
        return None
    import os

    here = os.stat(__file__)  # a new orch computes the notice again
    h = blake2b(digest_size=16)
    h.update(f"{here.st_size}:{here.st_mtime_ns}\0{tip}\0{ctx.rules_branch or ''}\0".encode())
    for name in (LOCKS, "plan.md", "config.yaml"):
        try:
            h.update((ctx.project.orch_dir / name).read_bytes())
        except OSError:
            h.update(b"\0missing")
        h.update(b"\0\0")
    return h.hexdigest()


def _notice_cache(ctx: Ctx, key: str | None) -> list[str] | None:
    if key is None:
        return None
    try:
        text = (ctx.project.run_dir / "cache" / "notice" / key).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return [line for line in text.splitlines() if line]


def _remember_notice(ctx: Ctx, key: str, found: list[str]) -> None:
    from orch.core.store import atomic_write

    folder = ctx.project.run_dir / "cache" / "notice"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / key, "".join(f"{line}\n" for line in found), durable=False)
    except (OSError, OrchError):
        pass  # a cache that cannot be written is only slower
