"""orch's own integration worktree, where the merge ceremony merges and tests; and git merge-tree.

The ceremony never merges in the person's checkout: ``Integration`` is a detached worktree of its
own under the worktree root, and ``run_tests`` runs the test command there, in a process group of
its own. ``merge_tree`` merges two commits in memory (the forecasts); ``checkout_of`` finds the
person's checkout of a branch (landing fast-forwards it, the rollback command names it). Nothing
here reads the journal or decides an outcome: that is ``steps`` and ``ceremony``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orch.core import git
from orch.core.context import Ctx
from orch.core.errors import EnvError

INTEGRATION_DIR = "_integration"  # under the worktree root
PARK_BRANCH = "orch/integration"  # where a tested result waits when it cannot land
EXCERPT_LINES = 30


class Integration:
    """orch's own worktree where merges are made and tested; the user's checkout is never used.

    Every git command here names the worktree's private git folder and its tree explicitly
    (``--git-dir``/``--work-tree``): if a test command deleted the worktree's ``.git`` file, git would
    otherwise search upwards and find the user's checkout.
    """

    def __init__(self, ctx: Ctx, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        self.admin: Path | None = None  # <common dir>/worktrees/<name>

    def _find_admin(self) -> Path | None:
        """The private git folder of our worktree, if the worktree is intact."""
        try:
            text = (self.path / ".git").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        admin = Path(text.removeprefix("gitdir: ")) if text.startswith("gitdir: ") else None
        worktrees = (self.ctx.project.common_dir / "worktrees").resolve()
        if admin is None or not admin.is_absolute() or admin.resolve().parent != worktrees:
            return None
        try:
            back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
        except OSError:
            return None
        return admin if back.resolve() == (self.path / ".git").resolve() else None

    def prepare(self, sha: str, *, git_options: Sequence[str] = ()) -> None:
        """Our worktree at ``sha`` with a clean tree: repaired or made anew if it is broken or gone.

        ``git_options`` go before ``worktree add`` (the crash tests' fault injection).
        """
        root = self.ctx.project.root
        repair_half_made(self.ctx, self.path)
        self.admin = self._find_admin()
        if self.admin is None:
            if self.path.exists() or self.path.is_symlink():
                # a broken scratch tree of ours: everything in it is in git's objects
                _remove_scratch(self.ctx, self.path)
            git.run(["worktree", "prune"], cwd=root)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git.run(
                [*git_options, "worktree", "add", "--detach", "--force", "--", str(self.path), sha],
                cwd=root,
            )
            self.admin = self._find_admin()
            if self.admin is None:
                raise EnvError(f"could not set up the integration worktree at {self.path}")
        self.reset(sha)

    def git(self, args: list[str], **kw: Any) -> git.Result:
        assert self.admin is not None, "prepare() first"
        where = [f"--git-dir={self.admin}", f"--work-tree={self.path}"]
        # No automatic gc/maintenance in the middle of a ceremony: it would run after every merge
        # commit here; the person's own git commands still trigger it as usual.
        where += ["-c", "maintenance.auto=false", "-c", "gc.auto=0"]
        return git.run([*where, *args], cwd=self.path, **kw)

    def reset(self, sha: str) -> None:
        """Back to ``sha`` with a clean tree, whatever a killed merge left behind."""
        assert self.admin is not None
        lock = self.admin / "index.lock"
        if lock.exists():  # left by a git killed with us; this worktree is ours alone
            lock.unlink()
        self.git(["merge", "--abort"], check=False)
        self.git(["checkout", "--detach", "--force", sha])
        self.git(["reset", "--hard", "--quiet", sha])
        self.git(["clean", "-fdxq"])

    def merge(self, task_id: str, sha: str, title: str) -> tuple[str | None, list[str]]:
        """Merge ``sha``; return (new head, []) or (None, conflicting paths) after aborting."""
        message = f"orch: merge {task_id}: {title}\n\nMerged by orch merge at {sha}."
        r = self.git(
            ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", message, sha],
            check=False,
            env=git.ORCH_IDENT,
        )
        if r.ok:
            return self.head(), []
        paths = self.git(["diff", "--name-only", "--diff-filter=U", "-z"]).stdout.split("\0")
        paths = [p for p in paths if p]
        self.git(["merge", "--abort"], check=False)
        if not paths:
            raise EnvError(f"git merge of {task_id} failed without a conflict: {(r.stderr or r.stdout).strip()}")
        return None, paths

    def head(self) -> str:
        """HEAD of the integration worktree (always detached), read from its file: no git process."""
        assert self.admin is not None
        return (self.admin / "HEAD").read_text().strip()


def _owned(ctx: Ctx, path: Path) -> bool:
    """Is ``path`` orch's integration worktree folder: named so, right under the worktree root, not a
    symlink, and not holding the person's checkout?"""
    root = ctx.project.root.resolve()
    try:
        resolved = path.resolve()
        if path.is_symlink() or path.name != INTEGRATION_DIR:
            return False
        return resolved.parent == ctx.config.worktree_root.resolve() and not root.is_relative_to(resolved)
    except OSError:
        return False


def _remove_scratch(ctx: Ctx, path: Path) -> None:
    """Remove orch's own scratch tree; anything else is refused (orch removes nothing of anyone's)."""
    if not _owned(ctx, path):
        raise EnvError(
            f"refusing to remove {path}: it is not orch's integration worktree "
            f"({ctx.config.worktree_root / INTEGRATION_DIR})",
            hint="move it away by hand, then run the command again",
        )
    shutil.rmtree(path)


def half_made(ctx: Ctx, path: Path) -> list[Path]:
    """git's admin folders (``<common dir>/worktrees/<name>``) of an integration worktree at ``path`` that a
    killed ``git worktree add`` left half made: still marked ``initializing``, or without a valid HEAD
    (missing, all zeros, or ``HEAD.lock`` left). ``git worktree prune`` skips them (they are locked)
    and every ``git rev-list --all``, ``fsck`` and ``gc`` fails on their HEAD."""
    folder = ctx.project.common_dir / "worktrees"
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    ours = (path / ".git").resolve()
    found = []
    for admin in entries:
        suffix = admin.name[len(INTEGRATION_DIR) :]  # git adds a number when the name is taken
        if not admin.name.startswith(INTEGRATION_DIR) or (suffix and not suffix.isdigit()):
            continue
        try:
            gitdir = (admin / "gitdir").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            gitdir = None
        except OSError:
            continue
        if gitdir is not None and Path(gitdir).resolve() != ours:
            continue  # an integration worktree of another path (another worktree root): not this one
        try:
            locked = (admin / "locked").read_text(encoding="utf-8", errors="replace")
        except OSError:
            locked = ""
        try:
            head = (admin / "HEAD").read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            head = ""
        broken = (
            locked.startswith("initializing")
            or (admin / "HEAD.lock").exists()
            or not head
            or set(head) == {"0"}
            or gitdir is None
        )
        if broken:
            found.append(admin)
    return found


def repair_half_made(ctx: Ctx, path: Path) -> list[Path]:
    """Remove what a killed ``git worktree add`` of orch's integration worktree left: its admin
    folders (``half_made``) and its half-checked-out folder; then ``git worktree prune``. Returns the
    admin folders removed. Only orch's own: nothing else is touched."""
    broken = half_made(ctx, path)
    if not broken:
        return []
    for admin in broken:
        shutil.rmtree(admin)
    if path.exists() or path.is_symlink():
        _remove_scratch(ctx, path)
    git.run(["worktree", "prune"], cwd=ctx.project.root)
    return broken


def run_tests(
    command: str,
    cwd: Path,
    timeout: float,
    log_path: Path,
    *,
    on_start: Callable[[int], None] | None = None,
    append: bool = False,
    boxed: Callable[[list[str]], list[str]] = list,
) -> tuple[bool, str]:
    """Run a test command through ``sh -c`` (a person wrote it); (passed, excerpt). ``append``: after
    what ``log_path`` holds already (a task's accept command after the test command); ``boxed``: how
    it runs in the box (``orch.core.box.for_commands``): the tree holds the agents' code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = git.clean_env({"ORCH_INTEGRATION": "1"})
    with open(log_path, "ab" if append else "wb") as log:
        log.write(f"{chr(10) if append else ''}$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            boxed(["sh", "-c", command]),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            if on_start is not None:
                on_start(proc.pid)
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(proc)
            log.write(f"\norch: the test command timed out after {timeout:g}s\n".encode())
            code = -1
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or anything else: never leave the tests running
            end_group(proc)
            raise
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    excerpt = "\n".join(lines[-EXCERPT_LINES:])
    if code != 0 and code != -1:
        excerpt += f"\n(exit code {code})"
    return code == 0, excerpt


def end_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End the test run's process group: SIGTERM to all of it, SIGKILL to what is left after ``grace``.

    The group is the test command's own (``start_new_session``), so everything it started goes too,
    unless it made a session of its own. A second Ctrl-C cuts the grace short.
    """
    group = proc.pid
    _signal_group(group, signal.SIGTERM)
    try:
        deadline = time.monotonic() + grace
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        while time.monotonic() < deadline and _group_runs(group):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        if _group_runs(group):
            _signal_group(group, signal.SIGKILL)
        proc.wait()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_runs(group: int) -> bool:
    """Does any process of ``group`` still run (zombies waiting for their reaper do not count)?"""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: the group exists, so assume it runs
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().decode("ascii", "replace").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False


def fast_forward(checkout: Path, sha: str, *, git_options: Sequence[str] = ()) -> git.Result:
    """``git merge --ff-only`` of the person's checkout to ``sha``, as git itself would do it.

    git refuses (and changes nothing) when the fast-forward would overwrite an uncommitted change,
    an untracked file or, with ``--no-overwrite-ignore``, an ignored one; uncommitted changes to
    other paths stay as they are. No autostash (it would take the person's changes away and put
    them back), no submodule recursion, no hooks; messages in English, so ``in_the_way`` can read them.
    """
    return git.run(
        [
            "-c", "submodule.recurse=false", *git_options,
            "merge", "--ff-only", "--no-overwrite-ignore", "--no-autostash", "--quiet", sha,
        ],
        cwd=checkout,
        check=False,
        env={"LC_ALL": "C"},
    )  # fmt: skip


def in_the_way(root: Path, checkout: Path, base: str, sha: str, refusal: str) -> list[str]:
    """The person's uncommitted paths that a fast-forward from ``base`` to ``sha`` would overwrite.

    None of them unless git's ``refusal`` named files in the way (it may have refused for another
    reason). Then: what git named (only the first path of a kind; ignored files in the way too),
    and every modified, staged or untracked path the change touches (the same path, a file where
    the change needs a folder, or files in a folder the change makes a file).
    """
    said = {line[1:] for line in refusal.splitlines() if line.startswith("\t") and line[1:].strip()}
    if not said:
        return []
    changed = {p for p in git.out(["diff", "--name-only", "--no-renames", "-z", base, sha], cwd=root).split("\0") if p}
    folders = {parent for p in changed for parent in _parents(p)}
    status = git.out(
        ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"], cwd=checkout, optional_locks=False
    )
    found = said
    for entry in status.split("\0"):
        path = entry[3:]
        if path and (path in changed or path in folders or any(parent in changed for parent in _parents(path))):
            found.add(path)
    return sorted(found)


def _parents(path: str) -> list[str]:
    parts = path.rstrip("/").split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def checkout_of(root: Path, branch: str) -> Path | None:
    """The worktree (if any) that has ``branch`` checked out."""
    listing = git.out(["worktree", "list", "--porcelain", "-z"], cwd=root).split("\0")
    current: str | None = None
    for line in listing:
        if line.startswith("worktree "):
            current = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}" and current is not None:
            return Path(current)
    return None


def merge_tree(root: Path, a: str, b: str) -> tuple[str | None, list[str]]:
    """Merge two commits in memory: (tree, []) when clean, (None, conflicting paths) when not."""
    r = git.run(["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", a, b], cwd=root, check=False)
    if r.returncode == 0:
        return r.stdout.split("\0")[0].strip(), []
    if r.returncode == 1:
        parts = [p for p in r.stdout.split("\0") if p]
        return None, sorted(set(parts[1:]))
    raise EnvError(
        f"git merge-tree failed: {(r.stderr or r.stdout).strip()}",
        hint="orch needs git >= 2.38 for merge-tree --write-tree",
    )
