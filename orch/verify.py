"""Verification: a task's exact commit judged against its scope, the locks and the always-forbidden.

The change set is every path changed between merge-base(base, commit) and the commit, read with
``git diff-tree -r -z --no-renames`` (a rename is a delete plus an add, so both paths are checked,
with their modes). Rules and locks come from the main checkout only. Hooks (git and agent) call
``check_changes`` on what they see early; this module's ``verify_task`` is the guarantee.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from orch import git
from orch import locks as locks_mod
from orch.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from orch.context import Ctx

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


def parse_raw(out: str) -> list[Change]:
    """Parse ``git diff-tree/diff-index -r -z --no-renames`` output (``:m1 m2 s1 s2 X\\0path\\0``)."""
    parts = out.split("\0")
    start = 0
    while start < len(parts) and not parts[start].startswith(":"):
        start += 1  # a commit id line (diff-tree given one commit); not ours
    changes: list[Change] = []
    append = changes.append
    for meta, path in zip(parts[start::2], parts[start + 1 :: 2], strict=False):  # a trailing "" is left over
        m1, m2, s1, s2, status = meta[1:].split(" ")
        append(Change(m1, m2, s1, s2, status[:1], path))
    return changes


def _literal_dir(pattern: str) -> str:
    """The folder every path a glob can match lies in (``src/m4/`` for ``src/m4/*.py``), or ``""``.

    Per gitignore rules a pattern without a slash before its end matches at any depth: ``""``.
    """
    body = pattern.lstrip("/")
    if "/" not in body.rstrip("/") and not pattern.startswith("/"):
        return ""
    segments = body.split("/")[:-1]
    prefix = []
    for seg in segments:
        if any(c in seg for c in "*?[\\"):
            break
        prefix.append(seg + "/")
    return "".join(prefix)


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
    """Does the scope regex spell out ``path`` itself (needed for submodules, .gitmodules, .gitattributes)?"""
    if not scope:
        return False
    return (path in scope or re.escape(path) in scope) and re.search(scope, path) is not None


def _symlink_target(link: str, target: str) -> str | None:
    """The repo-relative path a symlink at ``link`` points to, or None if it leaves the repository."""
    if not target or os.path.isabs(target) or "\0" in target:
        return None
    joined = os.path.normpath(os.path.join(os.path.dirname(link), target))
    if joined == ".." or joined.startswith("../") or os.path.isabs(joined):
        return None
    return "" if joined == "." else joined


def check_changes(
    changes: Sequence[Change],
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
    locks = lockset.for_agents() if agent else lockset.locks
    path_locks = [lk for lk in locks if lk.kind in ("path", "test") and lk.rx_src]
    regions: dict[str, list[locks_mod.Lock]] = {}
    for lk in locks:
        if lk.kind == "region" and lk.file:
            regions.setdefault(lk.file, []).append(lk)
    # Locks indexed by the literal folder they live in, so each path meets only the few that could
    # match it (one combined regex per folder) rather than every lock.
    by_dir: dict[str, list[locks_mod.Lock]] = {}
    for lk in path_locks:
        by_dir.setdefault(_literal_dir(lk.pattern or ""), []).append(lk)
    combined: dict[str, re.Pattern[str]] = {}

    def folder_rx(folder: str) -> re.Pattern[str]:
        rx = combined.get(folder)
        if rx is None:
            rx = combined[folder] = re.compile("|".join(f"(?:{lk.rx_src})" for lk in by_dir[folder]), re.DOTALL)
        return rx

    scope_rx = re.compile(scope) if (agent and scope) else None

    def locked_by(path: str) -> list[locks_mod.Lock]:
        hits: list[locks_mod.Lock] = []
        if "" in by_dir and folder_rx("").match(path):
            hits += [lk for lk in by_dir[""] if lk.rx is not None and lk.rx.match(path)]
        i = path.find("/")
        while i != -1:
            folder = path[: i + 1]
            if folder in by_dir and folder_rx(folder).match(path):
                hits += [lk for lk in by_dir[folder] if lk.rx is not None and lk.rx.match(path)]
            i = path.find("/", i + 1)
        return hits

    out: list[Violation] = []
    region_changes: list[Change] = []
    symlinks: list[Change] = []
    for ch in changes:
        path = ch.path
        if agent:
            if path.startswith(ORCH_PREFIX) or path == ".orch":
                out.append(
                    Violation(
                        path,
                        "orch-state",
                        "changes orch's own state under .orch/ (rules come from the main checkout only)",
                    )
                )
                continue
            if scope_rx is not None and scope_rx.search(path) is None:
                out.append(Violation(path, "scope", f"outside the task's scope {scope}"))
            if GITLINK in (ch.old_mode, ch.new_mode) and not names_explicitly(scope, path):
                out.append(
                    Violation(path, "submodule", "changes a submodule pointer; the scope must name the path explicitly")
                )
            base = path.rsplit("/", 1)[-1]
            if base in (".gitmodules", ".gitattributes") and not names_explicitly(scope, path):
                out.append(
                    Violation(
                        path, base.lstrip("."), f"changes {base}; allowed only when the scope names '{path}' explicitly"
                    )
                )
            if ch.new_mode == SYMLINK:
                symlinks.append(ch)
        for lk in locked_by(path):
            if lk.kind == "test":
                if ch.status == "A":
                    continue  # a new test is not a change to a locked one
                what = {"D": "deleted (or renamed away)", "T": "changed type"}.get(ch.status, "modified")
                out.append(
                    Violation(
                        path,
                        "test-lock",
                        f"{what}; must stay byte-identical: {lk.describe()}",
                        lock=lk.id,
                        mode=lk.mode,
                    )  # fmt: skip
                )
            else:
                out.append(Violation(path, "path-lock", f"locked: {lk.describe()}", lock=lk.id, mode=lk.mode))
        if path in regions and ch.status != "A":
            region_changes.append(ch)

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
        hits = locked_by(resolved) + [lk for lk in regions.get(resolved, [])]
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
            except locks_mod.RegionError:
                before = None
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
    lockset = locks_mod.load(ctx.project)
    return run_requirements(lockset, cwd, timeout=ctx.config.test_timeout, hard_only=hard_only)


# -- verifying a task -------------------------------------------------------------------------------


def task_branch(task_id: str) -> str:
    return f"orch/{task_id}"


def task_changes(root: Path | str, base_sha: str, sha: str) -> list[Change]:
    out = git.run(["diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", base_sha, sha, "--"], cwd=root).stdout
    return parse_raw(out)


def _check_task_id(task_id: str) -> None:
    from orch.plan import ID_RE, ID_RULE

    if not ID_RE.fullmatch(task_id):
        raise InputError(f"'{task_id}' is not a task id", hint=ID_RULE)


def verify_task(
    ctx: Ctx,
    task_id: str,
    *,
    sha: str | None = None,
    record: bool = True,
    base_tip: str | None = None,
    resolved: bool = False,
) -> Verdict:
    """Judge the exact commit ``sha`` (default: the tip of ``orch/<id>``) of task ``task_id``.

    ``base_tip`` is the commit the change set is measured from (through the merge-base); default: the
    tip of the configured base branch. ``resolved=True`` says ``sha`` is a full commit id the caller
    read from git itself (the merge ceremony verifies many tasks and saves a lookup for each).
    """
    from orch import state
    from orch.eventlog import utcnow

    _check_task_id(task_id)
    project = ctx.project
    root = project.root
    task = ctx.plan.require(task_id)
    lockset = locks_mod.load(project)  # fails closed (exit 3) before anything is judged
    if sha is None:
        sha = git.rev_parse(f"refs/heads/{task_branch(task_id)}", cwd=root)
        if sha is None:
            raise InputError(
                f"task {task_id} has no branch {task_branch(task_id)}",
                hint=f"spin it first (orch spin {task_id}), or pass the commit to verify",
            )
    elif not resolved:
        full = git.rev_parse(sha, cwd=root)
        if full is None:
            raise InputError(f"'{sha}' names no commit in this repository")
        sha = full
    base = ctx.config.base_branch
    if base_tip is None:
        base_tip = git.rev_parse(f"refs/heads/{base}", cwd=root)
        if base_tip is None:
            raise InputError(f"the base branch '{base}' does not exist", hint="fix base_branch in .orch/config.yaml")
    mb = git.run(["merge-base", base_tip, sha], cwd=root, check=False)
    if not mb.ok:
        raise InputError(f"{task_branch(task_id)} at {sha[:12]} shares no history with {base}")
    base_sha = mb.stdout.strip()
    changes = task_changes(root, base_sha, sha)
    violations = check_changes(
        changes,
        lockset=lockset,
        scope=task.scope,
        agent=True,
        read=lambda shas: git.cat_blobs(shas, cwd=root),
    )
    status = state.read(project, ctx.store, task_id, refresh=False) or {}
    acks = set(status.get("acks") or [])
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
    verdict = Verdict(task_id, result_of(violations), sha, base_sha, violations, pending, utcnow(), len(changes))
    if record:
        _record(ctx, verdict)
    return verdict


def _record(ctx: Ctx, verdict: Verdict) -> None:
    from orch import state

    new_state: str | None = None

    def change(st: state.Status) -> None:
        nonlocal new_state
        st["verdict"] = verdict.to_dict()
        if not st.get("branch"):  # so `orch status` can tell when a later commit makes the verdict stale
            st["branch"] = task_branch(verdict.task_id)
        if verdict.result != "OK" and st.get("state") not in ("MERGED", "CLEANED"):
            st["state"] = verdict.result
            n = len([v for v in verdict.violations if v.mode == "hard"])
            plural = "s" if n != 1 else ""
            st["reason"] = f"verify: {n} violation{plural} at {verdict.sha[:12]} (orch verify {verdict.task_id})"
        new_state = st.get("state")

    state.update(ctx.project, ctx.store, verdict.task_id, change)
    hard = len([v for v in verdict.violations if v.mode == "hard"])
    result = f"{verdict.result} sha={verdict.sha[:12]} violations={hard}"
    if verdict.pending_acks:
        result += f" needs-ack={','.join(verdict.pending_acks)}"
    ctx.log(new_state or "PENDING", "VERIFY", result, task=verdict.task_id)


class _checkout_at:
    """The task's worktree when it is clean at ``sha``; else a temporary detached worktree at ``sha``."""

    def __init__(self, ctx: Ctx, task_id: str, sha: str) -> None:
        self.ctx = ctx
        self.task_id = task_id
        self.sha = sha
        self.temp: Path | None = None

    def __enter__(self) -> Path:
        wt = self.ctx.config.worktree_root / self.task_id
        if wt.is_dir():
            head = git.rev_parse("HEAD", cwd=wt)
            if head == self.sha and not _dirty(wt):
                return wt
        root = self.ctx.project.root
        self.temp = self.ctx.project.run_dir / "verify" / f"{self.task_id}-{self.sha[:12]}"
        if self.temp.exists():
            self._remove()
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        # Checkout runs filters and hooks that an agent could have planted in .git/config: none here.
        git.run(
            [*_no_filters(root), "worktree", "add", "--detach", str(self.temp), self.sha],
            cwd=root,
            no_hooks=True,
        )
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


def _dirty(wt: Path) -> bool:
    """``git status`` with every configured filter blanked (status may run clean filters)."""
    args = [*_no_filters(wt), "status", "--porcelain=v1", "-z", "--untracked-files=all"]
    return bool(git.run(args, cwd=wt, optional_locks=False).stdout)


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
    if all_tasks:
        from orch.status import branch_heads

        heads = branch_heads(ctx)
        task_ids = [t for t in ctx.plan.ids() if task_branch(t) in heads]
    if not task_ids:
        raise InputError("no task to verify", hint="name tasks (orch verify T1 T2) or spin one first")
    for tid in task_ids:
        _check_task_id(tid)
        ctx.plan.require(tid)
    return [verify_task(ctx, tid) for tid in task_ids]


def ack(ctx: Ctx, task_id: str, lock_id: str) -> dict[str, Any]:
    """``orch ack``: a person accepts task ``task_id``'s change to soft lock ``lock_id``."""
    from orch import state

    _check_task_id(task_id)
    ctx.plan.require(task_id)
    lockset = locks_mod.load(ctx.project)
    lock = lockset.get(lock_id) or (locks_mod.agents_md_lock() if lock_id == locks_mod.AGENTS_MD_LOCK else None)
    if lock is None:
        known = ", ".join(lk.id for lk in lockset.locks) or "none"
        raise InputError(f"no lock '{lock_id}' in .orch/locks.yaml", hint=f"known locks: {known}")
    if lock.mode != "soft":
        raise InputError(
            f"{lock_id} is a hard lock: it cannot be acked",
            hint=f"fix the branch, or (a person decides) make it soft in .orch/locks.yaml, or: orch lock rm {lock_id}",
        )

    def change(st: state.Status) -> None:
        acks = list(st.get("acks") or [])
        if lock_id not in acks:
            acks.append(lock_id)
        st["acks"] = acks
        verdict = st.get("verdict")
        if verdict and lock_id in (verdict.get("pending_acks") or []):
            verdict["pending_acks"] = [a for a in verdict["pending_acks"] if a != lock_id]

    st = state.update(ctx.project, ctx.store, task_id, change)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "someone"
    ctx.log(str(st.get("state")), "ACK", f"{lock_id} by {user}", task=task_id)
    verdict = st.get("verdict") or {}
    return {"task": task_id, "lock": lock_id, "acks": st["acks"], "pending_acks": verdict.get("pending_acks") or []}


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
