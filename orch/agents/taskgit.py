"""A task worktree's git as orch made it, and what orch does with it when an agent's run ends.

An agent can write every file of its worktree, the ``.git`` file included, and the shared git folder
too. orch never lets that file choose the repository: ``open_worktree`` finds the worktree's private
git folder from git's side (``<common dir>/worktrees/<name>``, whose ``gitdir`` names this worktree
and whose ``commondir`` names this repository), and every git command orch runs in the worktree names
that folder and the tree (``--git-dir``/``--work-tree``), as the ceremony's integration worktree does.
If the ``.git`` file no longer points there (or the worktree is a link, or git no longer knows it),
orch commits nothing through it: the work is kept under ``refs/orch/snapshots/<id>/`` through a
temporary index, the ``.git`` file is put back, and the run fails with the reason.

``settle`` ends a run: it restores ``orch/<id>`` if someone deleted it or moved it away while the
agent ran (from the worktree's HEAD log, what the supervisor saw, the base ref), commits what is
uncommitted (only onto ``orch/<id>`` or the worktree's own detached HEAD, never onto another branch,
never without a parent) and brings the branch along to a HEAD the agent left off it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from orch.core import git, refs
from orch.core.errors import OrchError
from orch.core.repo import Project

SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
ATTEMPTS = 3  # a killed git may still hold index.lock a moment


def _read(path: Path) -> str | None:
    """A small file of git's, read only if it is a plain file (never through a link)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def _link_text(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _descends(ancestor: str | None, sha: str | None, root: Path) -> bool:
    """``sha`` is a commit holding ``ancestor`` (any commit, when ``ancestor`` is None)."""
    if not sha or not SHA_RE.fullmatch(sha):
        return False
    if ancestor is None:
        return git.rev_parse(sha, cwd=root) == sha
    try:
        return git.is_ancestor(ancestor, sha, cwd=root)
    except OrchError:
        return False


@dataclass
class TaskGit:
    """One task worktree and its private git folder (``admin``); ``problem`` says why orch must not
    run git through the worktree's own ``.git`` (None: it is as orch made it)."""

    project: Project
    task_id: str
    worktree: Path
    admin: Path | None = None
    problem: str | None = None
    readable: bool = True  # a real folder of this task's: its files may be read into a snapshot

    @property
    def ref(self) -> str:
        return f"refs/heads/{refs.branch_name(self.task_id)}"

    def git(self, args: list[str], *, check: bool = True, env: dict[str, str] | None = None) -> git.Result:
        assert self.admin is not None
        where = [f"--git-dir={self.admin}", f"--work-tree={self.worktree}"]
        return git.run([*where, *args], cwd=self.worktree, check=check, env=env)

    def head(self) -> str:
        """The worktree's HEAD file as it is: ``ref: refs/heads/...`` or a sha ('' if unreadable)."""
        return (_read(self.admin / "HEAD") if self.admin else None) or ""


def open_worktree(project: Project, task_id: str, worktree: Path) -> TaskGit | None:
    """The worktree's git, checked; None when there is no worktree folder."""
    try:
        st = os.lstat(worktree)
    except FileNotFoundError:
        return None
    tg = TaskGit(project, task_id, worktree)
    rel = project.rel(worktree)
    root = _real(project.root)
    if stat.S_ISLNK(st.st_mode):
        tg.problem = f"the worktree {rel} was replaced by a symbolic link (to {_link_text(worktree)})"
    elif not stat.S_ISDIR(st.st_mode):
        tg.problem = f"the worktree {rel} is not a folder"
    elif _real(worktree) == root or root.startswith(_real(worktree) + os.sep):
        tg.problem = f"{worktree} is the main checkout or holds it"
    if tg.problem:
        tg.readable = False  # nothing is read through it
        return tg
    tg.admin = refs.worktree_admin(project.common_dir, worktree)
    if tg.admin is None:
        tg.problem = f"git no longer knows {rel} as a worktree"
        return tg
    common = _read(tg.admin / "commondir") or ""
    if not common or _real(tg.admin / common) != _real(project.common_dir):
        tg.problem = f"the worktree's git folder {tg.admin} was changed to name another repository"
        tg.admin = None  # never run git with it
        return tg
    owner = _read(tg.admin / "orch-task")  # written by orch spin; a worktree doctor adopted has none
    if owner is not None and owner != task_id:
        tg.problem, tg.readable, tg.admin = f"{rel} is the worktree of task {owner}, not of {task_id}", False, None
        return tg
    tg.problem = _gitfile_problem(worktree, tg.admin)
    head = tg.head()
    if tg.problem is None and not (head.startswith("ref: refs/") or SHA_RE.fullmatch(head)):
        tg.problem = f"the worktree's HEAD file {tg.admin / 'HEAD'} was changed"
    return tg


def _gitfile_problem(worktree: Path, admin: Path) -> str | None:
    """Why the worktree's ``.git`` no longer leads to ``admin``, or None."""
    gitfile = worktree / ".git"
    try:
        st = os.lstat(gitfile)
    except FileNotFoundError:
        return "the worktree's .git file was deleted"
    if stat.S_ISLNK(st.st_mode):
        return f"the worktree's .git file was replaced by a symbolic link (to {_link_text(gitfile)})"
    if stat.S_ISDIR(st.st_mode):
        return "the worktree's .git file was replaced by a folder (a repository of its own)"
    text = _read(gitfile) or ""
    if not text.startswith("gitdir: "):
        return "the worktree's .git file was changed: it names no git folder"
    target = Path(text.removeprefix("gitdir: ").strip())
    if _real(target if target.is_absolute() else worktree / target) != _real(admin):
        return f"the worktree's .git file was changed to point at {target}, not at its own git folder {admin}"
    return None


def is_dirty(project: Project, task_id: str, worktree: Path) -> bool:
    """Uncommitted work in the worktree; a worktree whose git cannot be trusted counts as dirty."""
    tg = open_worktree(project, task_id, worktree)
    if tg is None:
        return False
    if tg.problem or tg.admin is None:
        return tg.readable
    r = tg.git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], env={"GIT_OPTIONAL_LOCKS": "0"})
    return bool(r.stdout)


# -- the end of a run -------------------------------------------------------------------------------


@dataclass
class Settled:
    """What ``settle`` found and did: the snapshot, refs made to keep commits, notes for the status,
    problems (each makes the run FAILED: a tampered worktree, work that may be lost), log events."""

    snapshot: str | None = None
    snapshot_ref: str | None = None
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


class _NoParent(OrchError):
    """A snapshot would have no parent: orch never makes one."""


class BranchWatch:
    """The last commit of ``orch/<id>`` (one holding its base) the supervisor saw while the agent ran."""

    def __init__(self, project: Project, task_id: str, base_hint: str | None) -> None:
        self.root = project.root
        self.ref = f"refs/heads/{refs.branch_name(task_id)}"
        self.base = git.rev_parse(f"{refs.BASE_PREFIX}/{task_id}", cwd=self.root) or base_hint
        self.last: str | None = None

    def poll(self) -> None:
        with contextlib.suppress(OrchError):
            tip = git.rev_parse(self.ref, cwd=self.root)
            if tip and tip != self.last and _descends(self.base, tip, self.root):
                self.last = tip


def settle(
    project: Project,
    task_id: str,
    worktree: Path | None,
    why: str,
    *,
    last_seen: str | None = None,
    base_hint: str | None = None,
) -> Settled:
    """Restore the branch if it was deleted or moved away, commit the uncommitted work, bring the
    branch along to the worktree's HEAD; see the module's text."""
    s = Settled()
    tg = open_worktree(project, task_id, worktree) if worktree is not None else None
    _restore_branch(project, task_id, tg, last_seen, base_hint, s)
    if tg is None:
        return s
    if tg.problem:
        s.problems.append(f"{tg.problem}: orch ran no git through it")
        s.events.append(("REFUSE", tg.problem))
        if tg.readable:
            _keep_aside(tg, why, base_hint, s)
            repaired = repair_gitfile(tg)
            if repaired:
                s.notes.append(repaired)
        return s
    if tg.admin is not None and (tg.admin / refs.CHECKOUT_MARKER).exists():
        # a killed spin's half checkout: what it lacks was never there; orch doctor --fix finishes it
        s.notes.append("its checkout never finished (a spin was killed): nothing committed; orch doctor --fix")
        return s
    where = _detach_foreign_head(tg)
    for attempt in range(ATTEMPTS):
        try:
            s.snapshot = _commit(tg, why)
            s.error = None
            break
        except OrchError as exc:  # the run must still be recorded, whatever git says
            s.error = str(exc).splitlines()[0]
            if isinstance(exc, _NoParent):
                break
            time.sleep(0.5 * (attempt + 1))
    note, kept = _bring_along(tg, where)
    if note:
        s.notes.append(note)
    if kept:
        s.kept.append(kept)
    return s


def restore_deleted(project: Project, task_id: str, worktree: Path, *, last_seen: str | None) -> str | None:
    """After the run: put ``orch/<id>`` back if it is gone (someone deleted it once the run was over),
    at the newest commit holding its base that the worktree's HEAD log names, else ``last_seen`` (the
    tip the run ended at). What orch did, or None when the branch is there (a branch moved since the
    run is a person's rebase or reset as much as an agent's doing: it is left alone)."""
    if git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=project.root) is not None:
        return None
    s = Settled()
    tg = open_worktree(project, task_id, worktree)
    usable = tg if tg is not None and not tg.problem else None  # a tampered worktree's HEAD log is not read
    _restore_branch(project, task_id, usable, last_seen, None, s, when="after its run")
    return "; ".join(s.problems + s.notes) or None


def _restore_branch(
    project: Project,
    task_id: str,
    tg: TaskGit | None,
    last_seen: str | None,
    base_hint: str | None,
    s: Settled,
    *,
    when: str = "while the task ran",
) -> None:
    """Put ``orch/<id>`` back where orch last knew it if it is gone or no longer holds that commit."""
    root = project.root
    branch = refs.branch_name(task_id)
    ref = f"refs/heads/{branch}"
    target = git.run(["symbolic-ref", "-q", ref], cwd=root, check=False).stdout.strip()
    if target:  # made a name for another branch (main, say): orch would move that one; drop the name only
        git.run(["update-ref", "--no-deref", "-d", ref], cwd=root)
        s.problems.append(f"{branch} was made a symbolic ref to {target} while the task ran; orch removed that")
    tip = git.rev_parse(ref, cwd=root)
    base = git.rev_parse(f"{refs.BASE_PREFIX}/{task_id}", cwd=root)
    if base is None and base_hint and SHA_RE.fullmatch(base_hint):
        base = git.rev_parse(base_hint, cwd=root)
    known: list[tuple[str, str]] = []
    if tg is not None and tg.admin is not None and tg.head() == f"ref: {ref}":
        # The worktree's own HEAD log records every commit its HEAD (on the branch) had, newest last;
        # a commit made on a deleted branch (no parent: it holds no base) is not the branch's.
        for sha in reversed(_reflog(tg.admin / "logs" / "HEAD")):
            if _descends(base, sha, root):
                known.append((sha, "the worktree's HEAD log"))
                break
    # Without that log (a detached HEAD, a log removed), what the supervisor saw of the branch.
    if not known and last_seen and _descends(base, last_seen, root):
        known.append((last_seen, "what the supervisor saw"))
    pick, source = known[0] if known else (base, "its base ref")
    if pick is None:
        if tip is None:
            s.problems.append(f"{branch} was deleted {when} and orch knows no commit of it")
        return
    if tip is not None and (tip == pick or _descends(pick, tip, root)):
        return  # the branch holds every commit orch knows of
    if tip is None:
        git.run(["update-ref", "--no-deref", "-m", "orch: restore", ref, pick, "0" * len(pick)], cwd=root)
        msg = f"{branch} was deleted {when}: orch restored it at {pick[:12]} (from {source})"
        if known:
            s.notes.append(msg)
        else:
            s.problems.append(msg + "; commits made on it after that may be lost")
        s.events.append(("RESTORE", msg))
        return
    holder = refs.checked_out_elsewhere(root, branch, tg.worktree if tg else None)
    if holder is not None:
        s.problems.append(f"{branch} was moved away from {pick[:12]} while the task ran; it is checked out in {holder}")
        return
    rewound = _descends(tip, pick, root)
    kept = None
    if not rewound:
        kept = f"{refs.KEPT_PREFIX}/{task_id}/{refs.timestamp()}"
        git.run(["update-ref", kept, tip, "0" * len(tip)], cwd=root)
        s.kept.append(kept)
    git.run(["update-ref", "--no-deref", "-m", "orch: restore", ref, pick, tip], cwd=root)
    how = "back to an older commit" if rewound else f"to {tip[:12]}, which does not hold its work"
    msg = f"while the task ran, {branch} was moved {how}: orch restored it at {pick[:12]} (from {source})"
    msg += f"; {tip[:12]} is kept as {kept}" if kept else ""
    (s.notes if rewound and known else s.problems).append(msg)
    s.events.append(("RESTORE", msg))


def _reflog(path: Path) -> list[str]:
    shas = []
    for line in (_read(path) or "").splitlines():
        parts = line.split(" ", 2)
        if len(parts) > 2 and SHA_RE.fullmatch(parts[1]) and parts[1].strip("0"):
            shas.append(parts[1])
    return shas


def _tree_of(commit: str, root: Path) -> str | None:
    r = git.run(["rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}"], cwd=root, check=False)
    return r.stdout.strip() if r.ok else None


def _new_commit(root: Path, tree: str, parent: str, task_id: str, why: str) -> str:
    message = f"orch: snapshot of task {task_id} ({why})"
    argv = ["commit-tree", "--no-gpg-sign", tree, "-p", parent, "-m", message]
    return git.out(argv, cwd=root, env=git.ORCH_IDENT)


def _detach_foreign_head(tg: TaskGit) -> str | None:
    """If the worktree's HEAD names a branch other than ``orch/<id>`` (main, say), detach it at that
    branch's commit: orch never commits onto another branch, and the branch itself is not touched."""
    head = tg.head()
    if not head.startswith("ref: ") or head == f"ref: {tg.ref}":
        return None
    other = head.removeprefix("ref: ")
    sha = git.rev_parse(other, cwd=tg.project.root)
    if sha is not None:
        tg.git(["update-ref", "--no-deref", "-m", "orch: detach from another branch", "HEAD", sha])
    else:  # an unborn branch: back onto the task's own
        tg.git(["symbolic-ref", "HEAD", tg.ref])
    return f"on {other.removeprefix('refs/heads/')}"


def _commit(tg: TaskGit, why: str) -> str | None:
    """Commit everything uncommitted onto ``orch/<id>`` (or the worktree's detached HEAD); the sha."""
    root = tg.project.root
    head = tg.head()
    attached = head == f"ref: {tg.ref}"
    parent = git.rev_parse(tg.ref, cwd=root) if attached else (head if SHA_RE.fullmatch(head) else None)
    if parent is None:
        raise _NoParent(f"no commit to put it on ({refs.branch_name(tg.task_id)} is gone); it stays in the worktree")
    tg.git(["add", "-A", "--", "."])
    tree = tg.git(["write-tree"]).stdout.strip()
    if tree == _tree_of(parent, root):
        return None
    commit = _new_commit(root, tree, parent, tg.task_id, why)
    message = f"orch: snapshot ({why})"
    if attached:
        tg.git(["update-ref", "--no-deref", "-m", message, tg.ref, commit, parent])
    else:
        tg.git(["update-ref", "--no-deref", "-m", message, "HEAD", commit, parent])
    return commit


def _bring_along(tg: TaskGit, where: str | None) -> tuple[str | None, str | None]:
    """If HEAD is off the branch, move the branch forward to it or keep it under a ref; (note, ref).

    The branch moves only forward (HEAD descends from it) and only while no other worktree has it
    checked out."""
    root = tg.project.root
    head = tg.head()
    if head == f"ref: {tg.ref}" or not SHA_RE.fullmatch(head):
        return None, None
    branch = refs.branch_name(tg.task_id)
    tip = git.rev_parse(tg.ref, cwd=root)
    where = where or "detached"
    if tip == head:
        tg.git(["symbolic-ref", "HEAD", tg.ref], check=False)
        return None, None
    elsewhere = refs.checked_out_elsewhere(root, branch, tg.worktree)
    if tip is not None and elsewhere is None and _descends(tip, head, root):
        if tg.git(["update-ref", "--no-deref", tg.ref, head, tip], check=False).ok:
            tg.git(["symbolic-ref", "HEAD", tg.ref], check=False)  # re-attach: both name one commit
            return f"the agent left HEAD {where}; {branch} was moved forward to it ({head[:12]})", None
    kept = f"{refs.KEPT_PREFIX}/{tg.task_id}/{refs.timestamp()}"
    git.run(["update-ref", kept, head, "0" * len(head)], cwd=root)
    return f"the agent left HEAD {where} at {head[:12]}, not on {branch}: kept as {kept}", kept


def _keep_aside(tg: TaskGit, why: str, base_hint: str | None, s: Settled) -> None:
    """Commit the worktree's files to ``refs/orch/snapshots/<id>/<ts>`` through a temporary index,
    naming the repository and the tree explicitly; no branch, no HEAD and no index of anyone's moves."""
    root = tg.project.root
    parent = git.rev_parse(tg.ref, cwd=root) or git.rev_parse(f"{refs.BASE_PREFIX}/{tg.task_id}", cwd=root)
    if parent is None and base_hint and SHA_RE.fullmatch(base_hint):
        parent = git.rev_parse(base_hint, cwd=root)
    if parent is None:
        s.problems.append("its uncommitted work stays in the worktree: orch knows no commit to put it on")
        return
    gitdir = tg.admin or tg.project.common_dir
    index = tg.admin / "index" if tg.admin else None
    try:
        tree = git.worktree_tree(
            tg.worktree,
            index=index if index is not None and _read_ok(index) else None,
            tmpdir=tg.project.common_dir,
            where=[f"--git-dir={gitdir}", f"--work-tree={tg.worktree}"],
        )
    except OrchError as exc:
        s.error = str(exc).splitlines()[0]
        return
    if tree == _tree_of(parent, root):
        return
    commit = _new_commit(root, tree, parent, tg.task_id, why)
    ref = f"{refs.SNAPSHOT_PREFIX}/{tg.task_id}/{refs.timestamp()}"
    git.run(["update-ref", ref, commit, "0" * len(commit)], cwd=root)
    s.snapshot_ref = ref
    s.kept.append(ref)
    s.notes.append(f"its work is kept as {ref}")
    s.events.append(("SNAPSHOT", f"{commit[:12]} as {ref}"))


def _read_ok(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def repair_gitfile(tg: TaskGit) -> str | None:
    """Put the worktree's ``.git`` file back (by rename: never written through a link); the note."""
    if tg.admin is None:
        return None
    gitfile = tg.worktree / ".git"
    if gitfile.is_dir() and not gitfile.is_symlink():
        return None  # a repository the agent made: its files are the agent's, left as they are
    fd, tmp = tempfile.mkstemp(prefix=".git-", suffix=".tmp", dir=tg.worktree)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"gitdir: {tg.admin}\n")
        os.replace(tmp, gitfile)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        return None
    return "orch put the worktree's .git file back"
