"""The files of a task's run folder, ``run/tasks/<id>/``, and how a new run moves the last one's aside.

Both sides of a run name these files: the launch side (``orch.agents.launch``) writes the manifest,
the brief and the launch, the supervisor (``orch.agents.supervisor``) writes the agent's log, its
usage and the accept log, and a new spin rotates an earlier run's files into ``run-<n>/``. They live
in a module of their own, below both: the launch side imports the supervisor (``orch stop`` completes
a run whose supervisor is gone), so the supervisor cannot import the launch side.

Anyone who can write the checkout can write the run folder, agents included. orch never writes its
files there through a link: ``open_run_file`` replaces a symbolic link, a hard link or anything that
is not a plain file with a new file of its own (the link's target is never opened), and
``run_folder_problem`` finds a run folder, or a folder above it, replaced by a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from orch.core import state
from orch.core.errors import EnvError
from orch.core.repo import Project
from orch.core.store import Store


@dataclass(frozen=True)
class TaskFiles:
    folder: Path

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.yaml"

    @property
    def context(self) -> Path:
        return self.folder / "context.md"

    @property
    def status(self) -> Path:
        return self.folder / "status.yaml"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    @property
    def launch(self) -> Path:
        return self.folder / "launch.json"

    @property
    def usage(self) -> Path:
        return self.folder / "usage.jsonl"

    @property
    def accept_log(self) -> Path:
        return self.folder / "accept.log"

    @property
    def supervisor_log(self) -> Path:
        return self.folder / "supervisor.log"

    @property
    def launch_env(self) -> Path:
        """The caller's environment for a supervisor started in tmux (read once, then deleted)."""
        return self.folder / "launch-env.json"

    @property
    def launcher(self) -> Path:
        """The ``orch`` launcher on the agent's PATH (``$ORCH``); its folder holds nothing else."""
        return self.folder / "bin" / "orch"


# What one run leaves in the task folder; a new spin moves them to run-<n>/ (``rotate_run_files``).
RUN_FILES = (
    "agent.log", "usage.jsonl", "accept.log", "supervisor.log", "launch.json", "BLOCKER_REPORT.md",
    "context.md", "manifest.yaml", "status.yaml", "progress.md", "check.log", "tdd-gate.log", "loop.json",
    "reflection.md",
    "plan-brief.md",
)  # fmt: skip


def rotate_run_files(folder: Path) -> Path | None:
    """Move the files of an earlier run into ``run-<n>/`` (kept, never deleted); the folder used."""
    present = [name for name in RUN_FILES if (folder / name).exists()]
    present += sorted(p.name for p in folder.glob("iter-*.log"))  # the loop's, one per failed iteration
    if not present:
        return None
    numbers = [int(p.name[4:]) for p in folder.glob("run-*") if p.name[4:].isdigit()]
    target = folder / f"run-{max(numbers, default=0) + 1}"
    target.mkdir()
    for name in present:
        if name == "status.yaml":  # the status stays (its kept refs carry over); a copy goes along
            shutil.copy2(folder / name, target / name)
        else:
            os.replace(folder / name, target / name)
    return target


def files(project: Project, task_id: str) -> TaskFiles:
    return TaskFiles(project.task_dir(task_id))


# -- writing orch's own files in a run folder -------------------------------------------------------


def _foreign(path: Path) -> str | None:
    """What is at ``path`` if it is not a plain file of orch's own (None: nothing, or a plain file)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a symbolic link to {os.readlink(path)}"
        except OSError:
            return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if not stat.S_ISREG(st.st_mode):
        return "not a plain file"
    if st.st_nlink != 1:
        return "a hard link to another file"
    return None


def read_plain(path: Path, limit: int) -> bytes:
    """An agent's file, read as untrusted: a plain file only (never through a link, never a fifo),
    at most ``limit`` bytes; ``ValueError`` saying why not (``FileNotFoundError`` passes through)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a plain file")
        raw = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise ValueError(f"over {limit} bytes")
    return raw


def open_run_file(path: Path, *, append: bool, readable: bool = False) -> tuple[int, str | None]:
    """Open one of orch's files in a run folder for writing, never through a link; (fd, note).

    A symbolic link, a hard link, a fifo (anything but a plain file with one name) found at ``path``
    is removed, never opened, and a new file takes its place: the note says what was there. A folder
    there raises ``IsADirectoryError``. ``append`` keeps a plain file's content, else it is emptied.
    """
    note = None
    mode = os.O_RDWR if readable else os.O_WRONLY
    flags = mode | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_APPEND if append else os.O_TRUNC)
    for _attempt in range(5):
        found = _foreign(path)
        if found == "a folder":
            raise IsADirectoryError(errno.EISDIR, f"{path.name} is a folder, not orch's file", str(path))
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            note = note or f"{path.name} was {found}: orch removed it and never wrote through it"
        try:
            fd = os.open(path, flags | (os.O_EXCL if found else 0), 0o644)
        except (FileExistsError, OSError) as exc:
            if isinstance(exc, FileExistsError) or exc.errno in (errno.ELOOP, errno.ENXIO):
                continue  # something was put there again between the look and the open: look again
            raise
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.set_blocking(fd, True)
            return fd, note
        os.close(fd)
    raise OSError(errno.EPERM, f"{path.name} keeps being replaced by a link; orch does not write it", str(path))


def replace_foreign(path: Path) -> str | None:
    """Remove a link (or anything but orch's plain file) at ``path``; what was there, or None."""
    found = _foreign(path)
    if found is None or found == "a folder":
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return f"{path.name} was {found}: orch removed it and never wrote through it"


def run_folder_problem(project: Project, task_id: str) -> str | None:
    """Why orch must not write into a task's run folder (it, or a folder above it up to ``.orch/run``,
    is a symbolic link or not a folder), or None."""
    folder = project.task_dir(task_id)
    for place in (project.run_dir, project.tasks_dir, folder):
        try:
            st = os.lstat(place)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(place)
            except OSError:
                target = "?"
            return f"{project.rel(place)} is a symbolic link (to {target})"
        if not stat.S_ISDIR(st.st_mode):
            return f"{project.rel(place)} is not a folder"
    return None


def replace_linked_folder(project: Project, task_id: str) -> str | None:
    """If the task's run folder itself is a link (and the folders above it are not), put a new folder
    in its place; the note, or None. The link's target is left as it is."""
    folder = project.task_dir(task_id)
    if not folder.is_symlink() or project.run_dir.is_symlink() or project.tasks_dir.is_symlink():
        return None
    try:
        target = os.readlink(folder)
        os.unlink(folder)
    except FileNotFoundError:
        target = "?"
    folder.mkdir(exist_ok=True)
    return f"the run folder {project.rel(folder)} was a symbolic link to {target}: orch put a new folder in its place"


def guard_run_folder(project: Project, store: Store, task_id: str, saved: state.Status | None) -> list[str]:
    """Refuse a run folder reached through a link (``EnvError``); a link in place of the task's own
    folder is replaced by a new folder, where the status the supervisor holds (``saved``) is written."""
    problem = run_folder_problem(project, task_id)
    if problem is None:
        return []
    note = replace_linked_folder(project, task_id)
    if note is None:
        raise EnvError(
            f"refused to complete task {task_id}: {problem}; orch never writes through a link",
            hint="remove the link; the task then shows as CRASHED, and its work stays in its worktree",
        )
    if saved is not None:
        copy = dict(saved)
        state.update(project, store, task_id, lambda _current: copy)
    return [note]


def sweep_run_files(f: TaskFiles, log_fd: int | None) -> list[str]:
    """orch's files in the run folder that were replaced by links (or other files): removed, never
    written through; the notes. agent.log gets back what the agent wrote, read from ``log_fd`` (the
    supervisor's own descriptor of it)."""
    swapped = log_fd is not None and not _same_file(log_fd, f.log)
    notes = []
    for path in (f.log, f.accept_log, f.supervisor_log):
        note = replace_foreign(path)
        if note is not None:
            notes.append(note)
        elif path == f.log and swapped:
            notes.append(f"{path.name} was removed or replaced: orch wrote back what the agent wrote")
    if swapped and log_fd is not None:
        with contextlib.suppress(OSError):
            fd, _note = open_run_file(f.log, append=False)
            try:
                offset = 0
                while chunk := os.pread(log_fd, 1 << 20, offset):
                    os.write(fd, chunk)
                    offset += len(chunk)
            finally:
                os.close(fd)
    return notes


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
