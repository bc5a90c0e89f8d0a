"""Work on the base branch that no merge ceremony landed: someone (an agent too) moved the base itself.

orch keeps ``refs/orch/landed/<branch>``: the sha it last put on the branch (a ceremony landing), or
found in order there (a ceremony that checked it), or a person acknowledged (``orch ack-base``). The
branch's commits that ref does not reach, and that are a task's own (reachable from ``orch/<id>`` or a
sha its status records, not from the base it was spun from), came in outside a ceremony: a person's
``git merge orch/T1``, or an agent's ``git update-ref refs/heads/main``. A person's own commits are no
task's and are not looked at. Without the ref (before the first ceremony), the bases the tasks were
spun from bound what is looked at.

``outside_work`` finds them and verifies each such task's change, from its spin base to the newest of
its commits on the branch, against its scope and the locks (the rules in force). ``orch merge`` stops
while one breaks a rule, until a person reverts it or acknowledges it (``acknowledge``); a clean one is
recorded MERGED by the ceremony. ``notice`` is ``orch status``'s one line about it: one cheap git call
(``for-each-ref --merged``), and only when the refs changed since it last looked.

The ref is as writable as any other by an agent running as the same user: this finds an agent that
moved the base, not one that also moved orch's record of it (only a sandbox stops that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orch.core import git, refs, state
from orch.core.config import BASE_HINT, base_where
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.plan import ID_RE, RESERVED_IDS
from orch.core.text import quoted

LANDED_PREFIX = "refs/orch/landed"
NOTICE_CACHE = "base-notice"


def landed_ref(target: str) -> str:
    return f"{LANDED_PREFIX}/{target}"


@dataclass
class Outside:
    """One task's commits on the branch that no ceremony landed."""

    task: str
    sha: str  # the newest of them
    since: str | None  # what its change is measured from (its spin base)
    verdict: Any = None  # orch.verify.judge.Verdict, when it could be judged
    reason: str | None = None  # why it breaks a rule; None: clean

    @property
    def clean(self) -> bool:
        return self.reason is None


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) in (40, 64) and not value.strip("0123456789abcdef")


def outside_work(ctx: Ctx, target: str) -> list[Outside]:
    """Every task whose commits ``target`` holds though no ceremony landed them, judged (see the module)."""
    root = ctx.project.root
    tip = git.rev_parse(f"refs/heads/{target}", cwd=root)
    landed = git.rev_parse(landed_ref(target), cwd=root)
    if tip is None or tip == landed:
        return []
    statuses = state.read_all(ctx.project, ctx.store)
    heads = refs.branch_heads(root)
    spun = _spin_bases(root)
    tips: dict[str, set[str]] = {}
    since: dict[str, str] = {}
    for task_id in set(statuses) | {n.removeprefix("orch/") for n in heads}:
        if not ID_RE.fullmatch(task_id) or task_id in RESERVED_IDS:
            continue
        st = statuses.get(task_id) or {}
        mine = [heads.get(refs.branch_name(task_id))]
        mine += [st.get("head_sha"), (st.get("verdict") or {}).get("sha"), (st.get("merge") or {}).get("sha")]
        tips[task_id] = {str(s) for s in mine if _is_sha(s)}
        base = spun.get(task_id) or st.get("base_sha")
        if _is_sha(base):
            since[task_id] = str(base)
    tips = {t: s for t, s in tips.items() if s}
    if not tips:
        return []
    known = _commits(root, {s for shas in tips.values() for s in shas} | set(since.values()))
    bound = [landed] if landed else sorted(set(since.values()) & known)
    if not bound:
        return []  # nothing orch saw the branch at: nothing to measure from
    wanted = [tip, *sorted({s for shas in tips.values() for s in shas} & known), *sorted(set(since.values()) & known)]
    listing = git.out(["rev-list", "--parents", *dict.fromkeys(wanted), "--not", *bound, "--"], cwd=root)
    graph = {line.split()[0]: line.split()[1:] for line in listing.splitlines() if line.strip()}
    reach = _Reach(graph)
    on_branch = reach.of([tip])
    found: list[Outside] = []
    for task_id in sorted(tips):
        own = reach.of(tips[task_id] & known) - reach.of([since[task_id]] if task_id in since else [])
        came = own & on_branch
        if not came:
            continue
        older = reach.of([p for c in came for p in graph.get(c, [])])
        for sha in sorted(came - older):
            found.append(_judge(ctx, task_id, sha, since.get(task_id) or landed))
    return found


def _judge(ctx: Ctx, task_id: str, sha: str, since: str | None) -> Outside:
    from orch.verify.judge import verify_task

    if since is None:
        return Outside(task_id, sha, None, reason="orch cannot tell where its work starts (no spin base)")
    try:
        verdict = verify_task(ctx, task_id, sha=sha, record=False, base_tip=since)
    except InputError as exc:
        return Outside(task_id, sha, since, reason=exc.message)
    if verdict.mergeable:
        return Outside(task_id, sha, since, verdict)
    hard = sorted({v.path for v in verdict.violations if v.mode == "hard"})
    if hard:
        shown = ", ".join(hard[:3]) + (f" and {len(hard) - 3} more" if len(hard) > 3 else "")
        reason = f"{verdict.result}: {shown}"
    else:
        reason = f"soft lock(s) {', '.join(verdict.pending_acks)} not acknowledged"
    return Outside(task_id, sha, since, verdict, reason)


class _Reach:
    """Commits reachable from some commits inside a ``rev-list --parents`` listing (memoised walk)."""

    def __init__(self, graph: dict[str, list[str]]) -> None:
        self.graph = graph

    def of(self, starts: Any) -> set[str]:
        seen: set[str] = set()
        todo = [s for s in starts if s in self.graph]
        while todo:
            commit = todo.pop()
            if commit in seen:
                continue
            seen.add(commit)
            todo.extend(p for p in self.graph[commit] if p in self.graph and p not in seen)
        return seen


def _spin_bases(root: Path) -> dict[str, str]:
    out = git.out(["for-each-ref", "--format=%(refname) %(objectname)", f"{refs.BASE_PREFIX}/"], cwd=root)
    bases = {}
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        bases[ref.removeprefix(f"{refs.BASE_PREFIX}/")] = sha
    return bases


def _commits(root: Path, shas: set[str]) -> set[str]:
    """Which of ``shas`` name commits in this repository (one ``cat-file --batch-check``)."""
    if not shas:
        return set()
    listing = sorted(shas)
    out = git.out(["cat-file", "--batch-check=%(objectname) %(objecttype)"], cwd=root, input="\n".join(listing) + "\n")
    return {line.split()[0] for line in out.splitlines() if line.endswith(" commit")}


def blocking_message(ctx: Ctx, target: str, found: list[Outside]) -> tuple[str, str]:
    """(the error, the hint) for work outside a ceremony that breaks a rule: how to revert or acknowledge it."""
    from orch.integrate.integration import checkout_of

    root = ctx.project.root
    bad = [o for o in found if not o.clean]
    named = "; ".join(f"{o.task} at {o.sha[:12]} ({o.reason})" for o in bad)
    tip = git.rev_parse(f"refs/heads/{target}", cwd=root) or ""
    back = (git.rev_parse(landed_ref(target), cwd=root) or bad[0].since or "")[:12] or "<the sha before it>"
    checkout = checkout_of(root, target)
    if checkout is None:
        revert = f"git -C {root} update-ref refs/heads/{target} {back} {tip[:12]}"
    elif git.run(["diff-index", "--cached", "--quiet", back, "--"], cwd=checkout, check=False).ok:
        # moved under the person's checkout (git update-ref): its files are still the old ones
        revert = f"git -C {checkout} update-ref refs/heads/{target} {back} {tip[:12]}"
    else:
        revert = f"git -C {checkout} reset --keep {back}"
    return (
        f"{target} holds work that came in outside a merge ceremony and breaks its task's rules: {named}; "
        "no merge ceremony runs until a person acts",
        f"revert it: {revert} (or git revert it, then acknowledge that), or, once you have checked it and want "
        f"it: orch ack-base {tip[:12]}",
    )


def mark(ctx: Ctx, target: str, sha: str) -> None:
    """Record ``sha`` as in order on ``target`` (a ceremony landed it, or checked it)."""
    git.run(["update-ref", "-m", "orch: in order", landed_ref(target), sha], cwd=ctx.project.root)


def acknowledge(ctx: Ctx, rev: str, target: str | None = None) -> tuple[str, str]:
    """``orch ack-base``: a person accepts ``target`` up to ``rev`` (a commit it holds) as it is. Returns
    (target, the full sha)."""
    root = ctx.project.root
    where = None if target else base_where(ctx.project)
    target = target or ctx.config.base_branch
    tip = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if tip is None:
        raise InputError(f"no branch {quoted(target)}", where=where, hint=f"{BASE_HINT}, or name one with --into")
    sha = git.rev_parse(rev, cwd=root) if not rev.startswith("-") else None
    if sha is None:
        raise InputError(f"'{rev}' names no commit in this repository", hint=f"orch ack-base {tip[:12]}")
    if not git.is_ancestor(sha, tip, cwd=root):
        raise InputError(f"{sha[:12]} is not on {target}", hint=f"name a commit it holds: orch ack-base {tip[:12]}")
    mark(ctx, target, sha)
    ctx.log("-", "ACK_BASE", f"{target} at {sha[:12]} acknowledged by a person")
    return target, sha


# -- orch status: one line, cheap --------------------------------------------------------------------


def notice(ctx: Ctx, statuses: dict[str, state.Status]) -> str | None:
    """One line for ``orch status`` when ``base`` holds a task branch no ceremony landed, else None.

    One ``git for-each-ref --merged`` call, and only when the refs files changed since the last look
    (a cache under .orch/run/cache/; an agent can write it too: this line is a courtesy, ``orch merge``
    and ``orch doctor`` check from git itself)."""
    if not statuses:
        return None
    target = ctx.config.base_branch
    key = _refs_key(ctx.project.common_dir, target)
    cache = ctx.project.run_dir / "cache" / NOTICE_CACHE
    try:
        first, *lines = cache.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        first, lines = "", []
    if first != key:
        lines = _merged_branches(ctx.project.root, ctx.project.common_dir, target)
        try:
            from orch.core.store import atomic_write

            atomic_write(cache, "\n".join([key, *lines]) + "\n", durable=False)
        except OSError:
            pass
    came = []
    for line in lines:
        task_id, _, sha = line.partition(" ")
        st = statuses.get(task_id)
        if st is None or state.merged(st) or st.get("state") in ("PENDING", "QUEUED"):
            continue
        if sha == st.get("base_sha"):  # no commit of its own (a loop or a retry put it back at its start)
            continue
        came.append(f"{task_id} ({sha[:12]})")
    if not came:
        return None
    return (
        f"notice: {target} holds work of {', '.join(came)} that no merge ceremony landed; "
        "orch merge verifies it before anything else (orch doctor says more)"
    )


def _merged_branches(root: Path, common: Path, target: str) -> list[str]:
    """``orch/<id> sha`` for each task branch ``target`` holds and orch's record of it does not."""
    args = ["for-each-ref", "--format=%(refname:lstrip=3) %(objectname)", f"--merged=refs/heads/{target}"]
    if _has_ref(common, landed_ref(target)):
        args.append(f"--no-merged={landed_ref(target)}")
    r = git.run([*args, "refs/heads/orch/"], cwd=root, check=False)
    return [line for line in r.stdout.splitlines() if line.strip()] if r.ok else []


def _has_ref(common: Path, ref: str) -> bool:
    """Does ``ref`` exist, read from git's files (no process): loose, packed, or a reftable (assumed)."""
    if (common / ref).is_file() or (common / "reftable").is_dir():
        return True
    try:
        with open(common / "packed-refs", "rb") as packed:
            return any(line.rstrip(b"\n").endswith(b" " + ref.encode()) for line in packed)
    except OSError:
        return False


def _refs_key(common: Path, target: str) -> str:
    """What changes when a ref that matters changes: the files git keeps them in (mtime, size, inode)."""
    parts = [target]
    for path in (
        common / "packed-refs",
        common / "refs" / "heads" / target,
        common / landed_ref(target),
        common / "refs" / "heads" / "orch",
        common / "reftable" / "tables.list",
    ):
        try:
            st = os.stat(path)
            parts.append(f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}")
        except OSError:
            parts.append("-")
    return " ".join(parts)
