"""Learnings: the line for AGENTS.md an agent proposes in ``REFLECTION.md``, asked of a person.

The brief asks the agent to leave ``REFLECTION.md`` at the root of its worktree when it is done, in
the shape of ``templates/REFLECTION.md`` (what surprised it, one line for AGENTS.md, one improvement
to the brief). The supervisor takes the file out of the worktree before the snapshot (``take``: it
never lands on the branch; the loop does the same after each iteration), keeps the run's last one as
``run/tasks/<id>/reflection.md``, and ``propose`` turns its line into a ``learning`` inbox item, with
the surprise and the improvement as context. People curate AGENTS.md (agent-written rules measurably
hurt): nothing here writes it; ``orch approve L4`` does (``orch.inbox.learnings``).

The line is the agent's text: it is checked (``check_line``: a known section prefix, one line of
printable characters, bounded) before it is asked, and again, with a person's ``--edit``, before it
is written. A reflection that proposes nothing usable posts nothing and says why in the event log;
it never changes how the run ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from orch.core import eventlog, inbox
from orch.core.errors import InputError
from orch.core.repo import Project
from orch.core.store import Store
from orch.core.text import quoted

REFLECTION = "REFLECTION.md"
KEPT = "reflection.md"  # the run's last reflection, in the task's run folder
SECTIONS = ("STYLE", "GOTCHAS", "ARCH_DECISIONS", "TEST_STRATEGY")
MAX_RULE = 300  # characters after the prefix: a rule, not an essay
MAX_CONTEXT = 600  # characters of the surprise and of the improvement kept with the item
MAX_READ = 65536  # bytes of REFLECTION.md read
MAX_TEXT = 20000  # characters of it kept

# The parts of a reflection, by the start of their heading (lower case).
PARTS = (("surprise", "what surprised"), ("line", "one line for agents"), ("improvement", "one improvement"))
LINE_HEADING = "## One line for AGENTS.md"
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+(.*?)[ \t#]*")
_FENCE = re.compile(r" {0,3}(?:`{3,}|~{3,}).*")
_PREFIX = re.compile(r"([A-Za-z_]+)[ \t]*:[ \t]*(.*)")
_BULLET = re.compile(r"[-*+][ \t]+")


@dataclass(frozen=True)
class Learning:
    section: str
    rule: str
    surprise: str = ""
    improvement: str = ""

    @property
    def line(self) -> str:
        return f"{self.section}: {self.rule}"


class NoLearning(Exception):
    """Why a reflection proposes nothing (said in the event log)."""


def check_line(text: str) -> tuple[str, str]:
    """``SECTION: rule`` checked: (section, rule); else ``InputError`` saying what is wrong.

    One line of printable characters (no control, format or line-separator character: a newline
    could start a heading of its own in AGENTS.md), a known section, a rule of at most ``MAX_RULE``
    characters. A leading bullet marker (``- GOTCHAS: ...``) is dropped.
    """
    hint = f"write it as SECTION: rule, one line, SECTION one of {', '.join(SECTIONS)}"
    line = text.strip()
    if "\n" in line or "\r" in line:
        raise InputError(f"the line for AGENTS.md is more than one line: {quoted(line)}", hint=hint)
    bad = next((c for c in line if not c.isprintable()), None)
    if bad is not None:
        raise InputError(
            f"the line for AGENTS.md holds a control or invisible character (U+{ord(bad):04X}): {quoted(line)}",
            hint=hint,
        )
    line = _BULLET.sub("", line, count=1)
    match = _PREFIX.fullmatch(line)
    if match is None:
        raise InputError(f"the line for AGENTS.md names no section: {quoted(line)}", hint=hint)
    section, rule = match.group(1).upper(), match.group(2).strip()
    if section not in SECTIONS:
        raise InputError(f"the line for AGENTS.md names an unknown section {match.group(1)!r}", hint=hint)
    if not rule:
        raise InputError(f"the line for AGENTS.md has nothing after {section}:", hint=hint)
    if len(rule) > MAX_RULE:
        raise InputError(
            f"the line for AGENTS.md is {len(rule)} characters long after {section}: (at most {MAX_RULE})",
            hint="one rule, said short; the details belong in the code or the docs",
        )
    return section, rule


def parse(text: str) -> Learning:
    """The learning a reflection proposes; ``NoLearning`` says why there is none."""
    learning = _parse(text)
    if learning.line == _example():
        raise NoLearning("its line is the template's example, unchanged")
    return learning


def _parse(text: str) -> Learning:
    parts: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.split("\n"):  # only "\n": any other break stays in its line, and the check refuses it
        raw = raw.removesuffix("\r").removeprefix("\ufeff")
        if _FENCE.fullmatch(raw):
            continue  # the template fenced, copied with its fence
        heading = _HEADING.fullmatch(raw)
        if heading is not None:
            title = heading.group(1).strip().lower()
            current = next((name for name, start in PARTS if title.startswith(start)), None)
            if current is not None:
                parts.setdefault(current, [])
            continue
        if current is not None:
            parts[current].append(raw)
    if "line" not in parts:
        raise NoLearning(f"it has no '{LINE_HEADING}' section")
    lines = [ln.strip() for ln in parts["line"] if ln.strip()]
    if not lines:
        raise NoLearning(f"its '{LINE_HEADING}' section is empty")
    if len(lines) > 1:
        raise NoLearning(f"its '{LINE_HEADING}' section holds {len(lines)} lines, not one")
    try:
        section, rule = check_line(lines[0])
    except InputError as exc:
        raise NoLearning(exc.message) from None
    return Learning(section, rule, _paragraph(parts.get("surprise")), _paragraph(parts.get("improvement")))


def _paragraph(lines: list[str] | None) -> str:
    """A part of the reflection as one paragraph of printable text, cut short."""
    text = " ".join(" ".join(lines or []).split())
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= MAX_CONTEXT else text[: MAX_CONTEXT - 3] + "..."


def _example() -> str | None:
    """The template's example line (an agent that copied it unchanged proposes nothing)."""
    from orch.core.store import template

    try:
        return _parse(template(REFLECTION)).line
    except (OSError, NoLearning):
        return None


# -- taking the file out of the worktree ------------------------------------------------------------


def take(worktree: str | Path | None) -> str | None:
    """``REFLECTION.md`` out of the worktree (before the snapshot would commit it): its text, or None.

    Read only if it is a plain file (never through a link, never a fifo: opened with ``O_NOFOLLOW``
    and ``O_NONBLOCK``, then checked), at most ``MAX_READ`` bytes; whatever it is, it is removed.
    """
    if not worktree:
        return None
    path = Path(worktree) / REFLECTION
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # a link (ELOOP), or unreadable: removed unread
        fd = -1
    text = None
    if fd >= 0:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                chunks, size = [], 0
                while size < MAX_READ:
                    chunk = os.read(fd, MAX_READ - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                text = b"".join(chunks).decode("utf-8", "replace")[:MAX_TEXT]
        except OSError:
            text = None
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return text


# -- asking a person -------------------------------------------------------------------------------


def propose(project: Project, store: Store, task_id: str, text: str | None, state: str) -> inbox.Item | None:
    """The run's last reflection: kept in the run folder, and its line asked as a ``learning`` item
    (once per task and line, whatever the answer was). Never raises: a reflection decides nothing
    about the run; what went wrong is said in the event log (``LEARNING``)."""
    if text is None:
        return None
    try:
        _keep(project, task_id, text)
        learning = parse(text)
        key = f"learning:{task_id}:{learning.line}"
        for item in inbox.read_all(project, store):
            if item.get("kind") == "learning" and item.get("key") == key:
                _log(project, task_id, state, f"{REFLECTION} proposes {item['id']}'s line again: not asked twice")
                return None
        asked = f'add to AGENTS.md under "## {learning.section}": {learning.rule}'
        data = {
            "section": learning.section,
            "rule": learning.rule,
            "line": learning.line,
            "surprise": learning.surprise,
            "improvement": learning.improvement,
        }
        return inbox.post(project, store, "learning", task=task_id, asked=asked, data=data, key=key)
    except NoLearning as exc:
        _log(project, task_id, state, f"{REFLECTION} proposes nothing for AGENTS.md: {exc}")
    except Exception as exc:  # the run is recorded whatever happens here
        why = exc.message if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        _log(project, task_id, state, f"{REFLECTION} could not be asked: {why}")
    return None


def _keep(project: Project, task_id: str, text: str) -> None:
    from orch.agents.taskfiles import files, open_run_file

    with contextlib.suppress(OSError):  # a copy for the person; the item holds what is asked
        fd, _note = open_run_file(files(project, task_id).folder / KEPT, append=False)  # never through a link
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)


def _log(project: Project, task_id: str, state: str, result: str) -> None:
    with contextlib.suppress(Exception):
        eventlog.append(project.log_path, state=state, task=task_id, action="LEARNING", result=result[:500])
