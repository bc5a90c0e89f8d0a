"""Atomic writes: a temp file in the same folder, fsynced, renamed over the target.

A process killed between writing its temp file and renaming it leaves the temp file behind and the
target as it was. The temp file's name carries the writer's pid, so ``orch doctor`` can tell a killed
writer's leftovers (``leftover_temp_files``) from a write under way. ``orch.core.store`` builds its
locked, validated writes on ``atomic_write``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from orch.core.errors import EnvError

# ".<file name>.<writer's pid>-<12 hex digits>.tmp", next to the file it replaces.
TEMP_NAME = r"\.(.+)\.([0-9]+)-[0-9a-f]{12}\.tmp"


def atomic_write(path: Path, text: str | bytes, *, durable: bool = True) -> None:
    """Write to a temp file in the same folder, fsync it, rename it over ``path``, fsync the folder.

    ``durable=False`` skips the fsyncs (for caches that are rebuilt when lost); the rename still makes
    the write all-or-nothing for readers. The folder is opened once, never through a symbolic link,
    and the temp file is made and renamed inside that very folder: a folder replaced by a link (an
    agent can write ``.orch/run/``) is refused, and a link at ``path`` is replaced, not followed.
    """
    import stat

    if not path.parent.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if not path.parent.is_symlink():
            raise
        raise EnvError(
            f"refused to write {path}: its folder is a symbolic link (to {os.readlink(path.parent)}); "
            "orch never writes through a link",
            hint=f"remove the link {path.parent}; orch makes the folder again",
        ) from exc
    try:
        name, tmp, fd = path.name, "", -1
        new = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while fd < 0:
            tmp = f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp"  # TEMP_NAME
            with contextlib.suppress(FileExistsError):
                fd = os.open(tmp, new, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                try:
                    old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    old = 0
                os.fchmod(handle.fileno(), old & 0o7777 if stat.S_ISREG(old) else 0o644)
                if durable:
                    os.fsync(handle.fileno())
            _fault_point("store.before_replace", name)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        _fault_point("store.after_replace", name)
        if durable:
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def leftover_temp_files(folder: Path, *, skip: Path | None = None) -> list[tuple[Path, str]]:
    """Temp files of ``atomic_write`` under ``folder`` (not under ``skip``) whose writer is gone: a
    process killed between writing and renaming. Each with the name of the file it was to replace,
    which is as it was before that write. A pid still running (or reused) keeps its temp files."""
    import re

    from orch.core.procs import alive

    pattern = re.compile(TEMP_NAME)
    skipped = skip.resolve() if skip is not None else None
    found = []
    for top, dirs, names in os.walk(folder):  # links are not followed
        dirs[:] = [d for d in dirs if Path(top, d).resolve() != skipped]
        for name in names:
            match = pattern.fullmatch(name)
            if match and not alive(int(match.group(2)), None):
                found.append((Path(top, name), match.group(1)))
    return sorted(found)


def _fault_point(name: str, detail: str) -> None:
    """``orch.core.procs.fault_point``, imported only when a crash test asks for a fail point."""
    if "ORCH_FAILPOINT" in os.environ:
        from orch.core.procs import fault_point

        fault_point(name, detail)
