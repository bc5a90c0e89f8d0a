"""plan.md on disk: read it (through a parse cache), and append a task without rewriting a byte.

orch appends tasks but never rewrites what a person wrote; the parser itself is ``orch.core.plan``.
"""

from __future__ import annotations

import os
from pathlib import Path

from orch.core import plan as plan_mod
from orch.core import planvalues, scoperegex
from orch.core.errors import InputError, ManyErrors
from orch.core.plan import FIELDS, ID_RE, ID_RULE, Plan, Task, parse


def load(path: Path, *, where: str = ".orch/plan.md", cache: bool = True) -> Plan:
    """The plan in ``path``. ``cache=False``: parsed from the file even when the parse cache (an
    untracked file anyone can write) has an entry for it (what verification uses)."""
    return loads(read(path, where=where), path.parent, where=where, cache=cache)


def read(path: Path, *, where: str = ".orch/plan.md") -> str:
    """The text of plan.md; missing or not UTF-8: ``InputError``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where}: missing", hint="run orch init, or restore it from git") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text") from exc


def loads(text: str, orch_dir: Path, *, where: str, cache: bool = True) -> Plan:
    """The plan in ``text`` (``load``'s work once the file is read; the committed plan.md too), with
    the parse cache of the ``.orch`` folder ``orch_dir``."""
    from orch.core.store import conflict_marker_line

    marker = conflict_marker_line(text)
    if marker is not None:
        raise InputError(f"{where}:{marker}: unresolved merge conflict marker", hint="resolve it by hand")
    check_text(text, where)
    folder = orch_dir / "run" / "cache" / "plan"
    key = _cache_key(text)
    cached = _cache_get(folder, key) if cache else None
    if cached is not None:
        return cached
    plan = parse(text, where=where)
    if (orch_dir / "run").is_dir():
        _cache_put(folder, key, plan)
    return plan


def check_text(text: str, where: str) -> None:
    """Refuse a NUL character: no title, brief or command holding one could reach an agent's
    command line, and a text file with one is broken (a bad copy, a binary pasted in)."""
    at = text.find("\0")
    if at >= 0:
        raise InputError(
            f"{where}:{text.count(chr(10), 0, at) + 1}: holds a NUL character; plan.md is text",
            hint="remove it by hand; orch leaves the file as it is",
        )


# A valid plan is remembered, parsed, under a digest of its text and of this parser's source, so
# `orch status` and `orch plan` on an unchanged plan skip parsing and compiling every scope regex.


def _cache_key(text: str) -> str:
    from _blake2 import blake2b

    h = blake2b(digest_size=16)
    # the parser's source: a new orch parses again
    for source in (plan_mod.__file__, scoperegex.__file__, planvalues.__file__):
        here = os.stat(source)
        h.update(f"{here.st_size}:{here.st_mtime_ns}\0".encode())
    h.update(text.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _cache_get(folder: Path, key: str) -> Plan | None:
    import json

    try:
        data = json.loads((folder / f"{key}.json").read_bytes())
        tasks = [
            Task(t["id"], t["title"], t["fields"], t["brief"], t["gap"], t["line"], t["field_lines"])
            for t in data["tasks"]
        ]
        return Plan(data["preamble"], tasks)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_put(folder: Path, key: str, plan: Plan) -> None:
    import json

    from orch.core.store import atomic_write

    data = {
        "preamble": plan.preamble,
        "tasks": [
            {
                "id": t.id,
                "title": t.title,
                "fields": t.fields,
                "brief": t.brief,
                "gap": t.gap,
                "line": t.line,
                "field_lines": t.field_lines,
            }
            for t in plan.tasks
        ],
    }
    text = json.dumps(data, ensure_ascii=False)
    try:
        if (folder / f"{key}.json").read_text(encoding="utf-8") == text:
            return  # a read from source finds the entry right: no write
    except (OSError, ValueError):
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{key}.json", text, durable=False)
    except OSError:
        pass  # a cache that cannot be written is only slower


def add_task(
    path: Path,
    store: object,
    *,
    task_id: str,
    title: str,
    fields: dict[str, str | None],
    brief: str | None = None,
    where: str = ".orch/plan.md",
) -> Task:
    """Append a task to plan.md, leaving every byte already there as it was.

    The new text is checked together with the existing plan before anything is written; the write
    is atomic and under the plan's lock, and the file is re-read after taking the lock.
    """
    from orch.core.store import Store

    assert isinstance(store, Store)
    if not ID_RE.fullmatch(task_id):
        raise InputError(f"bad task id '{task_id}': {ID_RULE}")
    for name, value in [("title", title), *fields.items()]:
        if value is not None and ("\n" in value or "\r" in value):
            raise InputError(f"--{name.replace('_', '-')} must be a single line", hint="edit .orch/plan.md for more")
    unknown = [k for k in fields if k not in FIELDS]
    if unknown:
        raise InputError(f"unknown field '{unknown[0]}'", hint=f"known fields: {', '.join(FIELDS)}")
    if not title.strip():
        raise InputError("--title must not be empty")
    wanted = {k: v.strip() for k, v in fields.items() if v is not None and v.strip()}
    block = [f"## {task_id}: {title.strip()}\n"]
    block += [f"- {k}: {v}\n" for k, v in wanted.items()]
    if brief and brief.strip():
        block.append("\n" + brief.strip("\n") + "\n")
    with store.lock(where):
        try:  # newline="": the bytes as written, CRLF included
            text = path.open(encoding="utf-8", newline="").read() if path.exists() else ""
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 text", hint="fix the file's encoding by hand") from exc
        check_text(text, where)
        current = parse(text, where=where)  # a broken plan is reported as it is, before anything else
        existing = current.get(task_id)
        if existing is not None:
            raise InputError(f"{where}:{existing.line}: a task '{task_id}' exists already", hint="pick another id")
        nl = "\r\n" if "\r\n" in text else "\n"  # follow the file's own line endings
        sep = "" if not text or text.endswith(nl + nl) else (nl if text.endswith("\n") else nl + nl)
        new_text = text + sep + "".join(block).replace("\n", nl)
        try:
            plan = parse(new_text, where=where)  # the plan with the new task must be valid as a whole
        except ManyErrors as exc:
            raise ManyErrors(exc.problems, hint=f"{task_id} was not added; nothing was written") from None
        added = plan.get(task_id)
        if (
            added is None
            or len(plan.tasks) != len(current.tasks) + 1
            or added.fields != wanted
            or added.title != title.strip()
            or added.brief_text() != (brief or "").strip("\n")
        ):
            raise InputError(
                f"appending {task_id} would not read back as one task with these fields",
                hint="the plan may end inside an open ``` code block, or the brief holds a '## ' heading "
                "or starts with a '- field:' line; edit .orch/plan.md by hand",
            )
        if added.agent and not (path.parent / "agents" / f"{added.agent}.yaml").is_file():  # as orch plan checks
            raise InputError(
                f"no agent '{added.agent}' (no .orch/agents/{added.agent}.yaml)",
                hint=f"add its manifest first (see: orch agents), or name another; {task_id} was not added",
            )
        store.write_text(path, new_text)
    return added
