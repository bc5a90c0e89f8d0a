"""``orch lock add|require|rm|list``: edit ``.orch/locks.yaml`` and show lock pressure."""

from __future__ import annotations

import re
from typing import Any

from orch.core import git, state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.store import dump_yaml, parse_yaml, validate
from orch.verify import locks as locks_mod
from orch.verify import regions
from orch.verify.judge import acked_locks

_HEADER_END = re.compile(r"^(?!#)(?!\s*$)", re.MULTILINE)


def _write(ctx: Ctx, change: Any) -> dict[str, Any]:
    """Read-modify-write locks.yaml under its lock, keeping the comment block at its top."""
    path = ctx.project.locks_path
    with ctx.store.lock(ctx.store.lock_name(path)):
        locks_mod.load(ctx.project)  # refuse to edit a file that does not validate
        text = path.read_text(encoding="utf-8")
        data = parse_yaml(text, ".orch/locks.yaml")
        data["locks"] = list(data.get("locks") or [])
        change(data)
        m = _HEADER_END.search(text)
        header = text[: m.start()] if m else ""
        body = dump_yaml(data)
        validate(data, "locks", text=body, where=".orch/locks.yaml")
        from orch.core.store import atomic_write

        atomic_write(path, header + body)
    return dict(data)


def _next_id(data: dict[str, Any], prefix: str) -> str:
    taken = {item["id"] for item in data["locks"]}
    n = 1
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def add(
    ctx: Ctx,
    pattern: str,
    *,
    mode: str = "hard",
    kind: str | None = None,
    reason: str | None = None,
    lock_id: str | None = None,
) -> dict[str, Any]:
    """Add a path, test or region lock; returns the lock and how many tracked files it covers."""
    kind = kind or ("region" if "::" in pattern else "path")
    if kind not in ("path", "test", "region"):
        raise InputError(f"--kind must be path, test or region (got '{kind}')")
    item: dict[str, Any] = {"id": lock_id or "", "kind": kind, "mode": mode, "pattern": pattern}
    if reason:
        item["reason"] = reason
    problem, _ = locks_mod.check_fields({**item, "id": item["id"] or "L"})
    if problem:
        raise InputError(problem)
    root = ctx.project.root
    base = ctx.config.base_branch
    covered = 0
    if kind == "region":
        lock = locks_mod.Lock({**item, "id": "x"})
        assert lock.file is not None and lock.name is not None
        r = git.run(["show", f"refs/heads/{base}:{lock.file}"], cwd=root, check=False)
        if not r.ok:
            raise InputError(f"no file '{lock.file}' on {base}", hint="lock a region of a file that is committed")
        try:
            text = regions.region_text(r.stdout, lock.name, python=lock.file.endswith((".py", ".pyi")))
        except regions.RegionError as exc:
            raise InputError(f"{lock.file}: {exc}") from None
        if text is None:
            raise InputError(
                f"no region '{lock.name}' in {lock.file} on {base}",
                hint="name a function or class (Class.method), or mark lines with 'orch-lock: begin NAME' / "
                "'orch-lock: end NAME' comments",
            )
        item["hash"] = regions.region_hash(text)
        covered = 1
    else:
        lock = locks_mod.Lock({**item, "id": "x"}, rx=locks_mod.glob_regex(pattern))
        files = git.run(["ls-tree", "-r", "-z", "--name-only", f"refs/heads/{base}"], cwd=root).stdout.split("\0")
        covered = sum(1 for f in files if f and lock.matches(f))

    _append(ctx, item, "L")
    ctx.log("-", "LOCK_ADD", f"{item['id']} {mode} {kind} {pattern}")
    return {"lock": item, "covered": covered}


def _append(ctx: Ctx, item: dict[str, Any], prefix: str) -> None:
    """Add ``item`` to locks.yaml under the lock, with its id or the next free ``<prefix>N``."""

    def change(data: dict[str, Any]) -> None:
        if item["id"] and any(x["id"] == item["id"] for x in data["locks"]):
            raise InputError(f"a lock with id '{item['id']}' exists already", hint="pick another --id")
        item["id"] = item["id"] or _next_id(data, prefix)
        data["locks"].append(item)

    _write(ctx, change)


def require(
    ctx: Ctx,
    text: str,
    *,
    check: str,
    via: str,
    mode: str = "hard",
    reason: str | None = None,
    lock_id: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": lock_id or "", "kind": "requirement", "mode": mode, "text": text, "check": check}
    item["via"] = via
    if reason:
        item["reason"] = reason
    if via not in locks_mod.VIAS:
        raise InputError(f"--via must be one of {', '.join(locks_mod.VIAS)} (got '{via}')")

    _append(ctx, item, "R")
    ctx.log("-", "LOCK_ADD", f"{item['id']} {mode} requirement {text}")
    return {"lock": item}


def remove(ctx: Ctx, lock_id: str) -> dict[str, Any]:
    removed: dict[str, Any] = {}

    def change(data: dict[str, Any]) -> None:
        for i, item in enumerate(data["locks"]):
            if item["id"] == lock_id:
                removed.update(data["locks"].pop(i))
                return
        known = ", ".join(x["id"] for x in data["locks"]) or "none"
        hint = f"known locks: {known}"
        if lock_id == locks_mod.AGENTS_MD_LOCK:
            hint = "the AGENTS.md lock is implicit: set agents_md_lock: false in .orch/locks.yaml"
        raise InputError(f"no lock '{lock_id}' in .orch/locks.yaml", hint=hint)

    _write(ctx, change)
    ctx.log("-", "LOCK_RM", lock_id)
    return {**removed, "committed_on": _committed_on(ctx, lock_id)}


def _committed_on(ctx: Ctx, lock_id: str) -> str | None:
    """The base branch when its committed locks.yaml holds ``lock_id``: a removal judging ignores until
    it is committed there (``inforce``). None when the lock was never committed."""
    from orch.verify import inforce

    committed = ctx.committed()
    raw = committed.get(inforce.LOCKS)
    if raw is None:
        return None
    try:
        held = locks_mod.from_bytes(str(ctx.project.orch_dir), raw, where=committed.where(inforce.LOCKS))
    except InputError:
        return committed.branch  # cannot tell: say what is certain, that judging reads the committed file
    return committed.branch if held.get(lock_id) is not None else None


def pressure(ctx: Ctx) -> list[dict[str, Any]]:
    """Every lock (the implicit AGENTS.md one included) with the tasks whose scope overlaps it.

    A task is ``blocking`` when its latest verdict names the lock (a violation or a pending ack),
    ``clear`` once it merged or its verdict passed without touching the lock, and ``routing around``
    while it works within reach of the lock.
    """
    lockset = locks_mod.load(ctx.project)
    statuses = state.read_all(ctx.project, ctx.store)
    base = ctx.config.base_branch
    r = git.run(["ls-tree", "-r", "-z", "--name-only", f"refs/heads/{base}"], cwd=ctx.project.root, check=False)
    files = sorted(f for f in r.stdout.split("\0") if f)
    rows = []
    reach = _Reach(ctx.plan.tasks)
    for lock in lockset.for_agents():
        covered = covered_files(lock, files)
        tasks = []
        for task in reach.near(lock):
            if not locks_mod.touches_scope(lock, task.scope, files=covered):
                continue
            st = statuses.get(task.id) or {}
            current = st.get("state", "PENDING")
            verdict = st.get("verdict") or {}
            named = {v.get("lock") for v in verdict.get("violations") or []} | set(verdict.get("pending_acks") or [])
            acked = bool(verdict.get("sha")) and lock.id in acked_locks(st, verdict["sha"])
            if lock.id in named and not (acked and lock.mode == "soft"):
                how = "blocking"
            elif current in ("MERGED", "CLEANED") or (verdict and verdict.get("result") == "OK"):
                how = "clear"
            elif current in ("SKIPPED",):
                continue
            else:
                how = "routing around"
            tasks.append({"id": task.id, "state": current, "pressure": how})
        rows.append({**lock.to_dict(), "implicit": lock.id == locks_mod.AGENTS_MD_LOCK and not lockset.get(lock.id),
                     "tasks": tasks})  # fmt: skip
    return rows


def covered_files(lock: locks_mod.Lock, files: list[str]) -> list[str]:
    """The sorted ``files`` a path or test lock covers, found among those starting with its literal
    prefix (a bisection): each task's overlap is then looked for in those alone, not in every file."""
    import bisect

    if lock.kind not in ("path", "test"):
        return files
    start = bisect.bisect_left(files, lock.prefix)
    out = []
    for f in files[start:]:
        if not f.startswith(lock.prefix):
            break
        if lock.matches(f):
            out.append(f)
    return out


class _Reach:
    """Which tasks could reach a lock, by literal starts alone (in plan order): every path a path or
    test lock covers starts with its prefix, every path a scope anchored with ``^`` matches starts
    with the scope's literal head, so one of the two must start with the other. That settles most
    pairs of a big plan by a lookup, before ``touches_scope`` looks closer at the rest."""

    def __init__(self, tasks: list[Any]) -> None:
        self.tasks = tasks
        self.loose: set[int] = set()  # no scope, or not anchored: any lock may be near
        self.by_head: dict[str, set[int]] = {}
        for i, task in enumerate(tasks):
            anchored, head, _ = locks_mod.literal_head(task.scope) if task.scope else (False, "", False)
            if anchored and head:
                self.by_head.setdefault(head, set()).add(i)
            else:
                self.loose.add(i)
        self.heads = sorted(self.by_head)

    def near(self, lock: locks_mod.Lock) -> list[Any]:
        if not lock.rx_src or not lock.prefix:
            return self.tasks
        import bisect

        prefix = lock.prefix
        found = set(self.loose)
        i = bisect.bisect_left(self.heads, prefix)
        while i < len(self.heads) and self.heads[i].startswith(prefix):
            found |= self.by_head[self.heads[i]]
            i += 1
        for end in range(1, len(prefix)):
            found |= self.by_head.get(prefix[:end], set())
        return [self.tasks[i] for i in sorted(found)]


def pressure_text(rows: list[dict[str, Any]]) -> str:
    from orch.core.text import plain_table

    if not rows:
        return "no locks (add one: orch lock add PATTERN --reason ...)"
    cells = []
    for r in rows:
        what = r.get("pattern") or r.get("text") or ""
        if r["kind"] == "requirement":
            what = f"{what} [{r.get('via')}: {r.get('check')}]"
        tasks = ", ".join(f"{t['id']} {t['pressure']}" for t in r["tasks"]) or "-"
        cells.append([r["id"], r["kind"], r["mode"], what, r.get("reason") or "-", tasks])
    return plain_table(["ID", "KIND", "MODE", "LOCKS", "REASON", "PRESSURE"], cells)
