"""``orch approve L4 [--edit TEXT]``: a learning's line into AGENTS.md, under its section.

An agent proposes one line for AGENTS.md in its ``REFLECTION.md`` (``orch.agents.learnings`` asks
it as a ``learning`` item); people curate the file. Approving appends the line (or the person's
``--edit``, checked the same way: it may name another section) as a ``- `` bullet at the end of its
section (``## GOTCHAS``: up to the next ``#`` or ``##`` heading outside a code fence) of AGENTS.md
in the main checkout, or in a new section at the end of the file, or in a new file. Every other byte
stays as it was (a person's uncommitted edits included), the write is atomic, and nothing is
committed: the person reads ``git diff AGENTS.md`` and commits it. A link or anything but a plain
file at AGENTS.md is refused. Rejecting drops the line.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from orch.agents import learnings as proposals
from orch.core.atomic import atomic_write
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.inbox.decide import PHRASES, Answer, Item, handles

AGENTS_MD = "AGENTS.md"
LOCK = "agents-md"
_FENCE = re.compile(rb" {0,3}(`{3,}|~{3,})(.*)")
_HEADING = re.compile(rb" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*")
_BOM = b"\xef\xbb\xbf"


@handles("learning")
def _learning(ctx: Ctx, item: Item, answer: Answer) -> str:
    if not answer.approve:
        return "dropped: AGENTS.md is unchanged"
    edit = (answer.options or {}).get("edit")
    text = str(edit) if edit is not None else str((item.get("data") or {}).get("line") or "")
    try:
        section, rule = proposals.check_line(text)  # the file's line is anyone's: checked again
    except InputError as exc:
        whose = "your --edit" if edit is not None else f"{item['id']}'s line"
        raise InputError(f"{whose} is refused: {exc.message}", hint=exc.hint) from None
    with ctx.store.lock(LOCK):
        added = append(ctx.project.root / AGENTS_MD, section, rule)
    if not added:
        return f'already in AGENTS.md under "## {section}": nothing changed'
    return f'added to AGENTS.md under "## {section}": - {rule} (not committed: git diff AGENTS.md, then commit it)'


def _phrase(item: Item) -> str:
    data = item.get("data") or {}
    out = str(item.get("asked") or "")
    if data.get("surprise"):
        out += f" (it was surprised: {_cut(str(data['surprise']))})"
    if data.get("improvement"):
        out += f" (for the brief: {_cut(str(data['improvement']))})"
    return out


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


PHRASES["learning"] = _phrase


def append(path: Path, section: str, rule: str) -> bool:
    """Append ``- rule`` at the end of ``## section`` in the file at ``path`` (atomically; every other
    byte kept); False when that section already holds that very bullet. Refuses a link, anything
    but a plain file, and a file that ends inside a code fence (where its sections end is unclear)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{path} is a symbolic link (to {os.readlink(path)}): orch writes AGENTS.md only as a plain file",
            hint="put the file itself in place of the link, then approve again",
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a plain file: orch does not write it", hint="make it a plain file")
    if st is None:
        atomic_write(path, f"# AGENTS.md\n\n## {section}\n\n- {rule}\n".encode())
        return True
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        old = handle.read()
    new = insert(old, section, rule, where=str(path))
    if new is None:
        return False
    atomic_write(path, new)
    return True


def insert(old: bytes, section: str, rule: str, *, where: str = AGENTS_MD) -> bytes | None:
    """``old`` with ``- rule`` added at the end of its ``## section`` (or a new section at the end):
    the bytes of ``old`` unchanged around the ones added. None: the bullet is already there."""
    lines = old.split(b"\n")
    ends = [b"\n"] * (len(lines) - 1) + [b""]  # each line's own end, so offsets add up to old
    eol = b"\r\n" if lines[0].endswith(b"\r") else b"\n"
    bullet = f"- {rule}".encode()
    start = end = None
    fence: bytes | None = None
    fence_line = 0
    for i, line in enumerate(lines):
        body = line.removesuffix(b"\r").removeprefix(_BOM if i == 0 else b"")
        if fence is not None:
            closing = _FENCE.fullmatch(body)
            if closing and closing.group(1)[:1] == fence[:1] and len(closing.group(1)) >= len(fence):
                if not closing.group(2).strip():
                    fence = None
            continue
        opening = _FENCE.fullmatch(body)
        if opening:
            fence, fence_line = opening.group(1), i + 1
            continue
        heading = _HEADING.fullmatch(body)
        if heading is None or len(heading.group(1)) > 2:
            continue
        if start is not None and end is None:
            end = i
        title = (heading.group(2) or b"").decode("utf-8", "replace").strip().upper()
        if start is None and len(heading.group(1)) == 2 and title == section:
            start = i
    if fence is not None:
        raise InputError(
            f"{where}:{fence_line}: a code fence opens here and never closes: orch cannot tell where its sections end",
            hint="close the fence, then approve again",
        )
    if start is None:  # a new section at the end of the file
        sep = b"" if not old else (b"" if old.endswith(b"\n") else eol) + (b"" if old.endswith(eol * 2) else eol)
        return old + sep + f"## {section}".encode() + eol + eol + bullet + eol
    stop = end if end is not None else len(lines)
    if any(lines[i].removesuffix(b"\r").strip() == bullet for i in range(start + 1, stop)):
        return None
    last = max(i for i in range(start, stop) if lines[i].strip() or i == start)
    at = sum(len(lines[i]) + len(ends[i]) for i in range(last + 1))  # just after that line's end
    added = (b"" if ends[last] else eol) + (eol if last == start else b"") + bullet + eol
    return old[:at] + added + old[at:]
