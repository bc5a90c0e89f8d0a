"""A spin killed while it filled its worktree: recognise it, and finish its checkout for the undo.

``orch spin`` adds a task's worktree with ``--no-checkout``, marks it (``refs.CHECKOUT_MARKER`` in
the worktree's private git folder, with the spin's pid), checks the branch out, writes the task's
files and status, and only then removes the mark. A worktree that still has the mark (or that has no
index at all: killed between ``worktree add`` and the mark) was never handed to an agent: the files it
lacks were never checked out, nobody deleted them. Doctor and clean must never snapshot such a tree as
if it were work; they ``restore`` what the checkout had not written yet (overwriting nothing), keep a
snapshot of anything that still differs from the branch, and ``finish`` the checkout over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orch.core import git, procs, refs


@dataclass(frozen=True)
class HalfSpun:
    """A worktree a spin had not finished: who may still be filling it."""

    worktree: Path
    spinner: int | None  # the pid of the orch spin still filling it
    git_busy: bool  # a git process still works there (the checkout of a spin killed on its own)

    @property
    def idle(self) -> bool:
        """Nobody is filling it any more: it may be finished or undone."""
        return self.spinner is None and not self.git_busy


def pending(worktree: Path, common_dir: Path) -> HalfSpun | None:
    """The unfinished spin of ``worktree``, or None when its spin completed.

    Callers hold the store lock ``git-worktree-add`` (spin adds and marks worktrees under it), so a
    worktree with neither index nor mark is one whose spin died between the two. The worktree's git
    folder is found from git's side (``refs.worktree_admin``), never from its ``.git`` file: an agent
    (or code an accept command ran) can point that file at a repository of its own."""
    admin = refs.worktree_admin(common_dir, worktree)
    if admin is None:
        return None
    marker = _marker(admin)
    if marker is None and (admin / "index").exists():
        return None
    spinner = None
    if marker is not None and procs.alive(marker[0], marker[1]) and marker[0] != os.getpid():
        spinner = marker[0]
    return HalfSpun(worktree, spinner, bool(procs.git_working_in(worktree)))


def _marker(admin: Path) -> tuple[int, str | None] | None:
    try:
        text = (admin / refs.CHECKOUT_MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pid, _, started = text.strip().partition(" ")
    return (int(pid) if pid.isdigit() else 0), (started if started and started != "-" else None)


def _git(admin: Path, worktree: Path, args: list[str], **kw: object) -> git.Result:
    """git on the worktree, through the private git folder git knows for it, with the tree named."""
    where = [f"--git-dir={admin}", f"--work-tree={worktree}"]
    return git.run([*where, *args], cwd=worktree, **kw)  # type: ignore[arg-type]


def restore(worktree: Path, common_dir: Path) -> None:
    """Write what the checkout had not written yet: the index from HEAD, the files missing from the
    folder, and the files the killed checkout cut short (a file that holds the start of its blob and
    no more). Nothing else is overwritten. Call it only on an ``idle`` worktree."""
    admin = refs.worktree_admin(common_dir, worktree)
    if admin is None:
        return
    (admin / "index.lock").unlink(missing_ok=True)  # left by the killed checkout: no git works there
    _git(admin, worktree, ["read-tree", "HEAD"])
    missing = _git(admin, worktree, ["ls-files", "-z", "--deleted"]).stdout
    if missing:
        _git(admin, worktree, ["checkout-index", "-z", "--stdin"], input=missing)
    _git(admin, worktree, ["update-index", "-q", "--refresh"], check=False)
    cut = _cut_short(admin, worktree, common_dir)
    if cut:
        _git(admin, worktree, ["checkout-index", "--force", "-z", "--stdin"], input="".join(p + "\0" for p in cut))
        _git(admin, worktree, ["update-index", "-q", "--refresh"], check=False)


def _cut_short(admin: Path, worktree: Path, common_dir: Path) -> list[str]:
    """Tracked regular files whose content is a strict beginning of their blob: written half-way."""
    raw = _git(admin, worktree, ["diff-files", "-z", "--diff-filter=M"]).stdout.split("\0")
    entries = []  # ":OLDMODE NEWMODE OLDSHA NEWSHA M", then the path
    for meta, path in zip(raw[::2], raw[1::2], strict=False):
        fields = meta.lstrip(":").split()
        if path and len(fields) == 5 and fields[0].startswith("100"):
            entries.append((path, fields[2]))
    blobs = git.cat_blobs([sha for _, sha in entries], cwd=common_dir)
    cut = []
    for path, sha in entries:
        file = worktree / path
        try:
            if file.is_symlink() or not file.is_file():
                continue
            data = file.read_bytes()
        except OSError:
            continue
        blob = blobs.get(sha)
        if blob is not None and len(data) < len(blob) and blob.startswith(data):
            cut.append(path)
    return cut


def finish(worktree: Path, common_dir: Path) -> None:
    """Check the branch out over what is left (keep a snapshot of anything that differs first); the
    worktree is then what a completed spin leaves, and its mark goes."""
    admin = refs.worktree_admin(common_dir, worktree)
    if admin is None:
        return
    _git(admin, worktree, ["checkout", "--force", "--quiet"])
    (admin / refs.CHECKOUT_MARKER).unlink(missing_ok=True)
