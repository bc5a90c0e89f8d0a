"""The inbox's files: one YAML file per item waiting for a person, ``.orch/run/inbox/<ID>.yaml``.

An item is asked by orch (a gate the agent hook raised, a handoff an agent proposed, a plan to
approve, a learning, a soft-lock ack, an agent's question, a landing) and answered by a person with
``orch approve`` or ``orch reject`` (``orch.inbox``). Each is written atomically under the ``inbox``
lock (``Store.dump``: a temporary file renamed into place, so a killed command leaves the old item or
the new one, never half of one), validated by ``schemas/inbox_item.schema.json``, and kept once
answered: the answer, who gave it and when stay in the file, and in the event log.

The id is the kind's letter and a number, counted on from the highest ever used for that letter:
G (gate), P (handoff: a proposal), A (plan: an approval), L (learning), K (ack), Q (question),
M (landing), B (budget). It lives here, in ``core``, because the stages below the inbox post items (the agent
hooks in ``verify``, the supervisor in ``agents``); what an answer does is ``orch.inbox``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.core import eventlog
from orch.core.errors import InputError
from orch.core.repo import Project
from orch.core.store import Store

LETTERS = {
    "gate": "G",
    "handoff": "P",
    "plan": "A",
    "learning": "L",
    "ack": "K",
    "question": "Q",
    "landing": "M",
    "budget": "B",
}
ITEM_ID = re.compile(r"[A-Z][0-9]{1,9}")
LOCK = "inbox"

Item = dict[str, Any]


def folder(project: Project) -> Path:
    return project.run_dir / "inbox"


def path_of(project: Project, item_id: str) -> Path:
    return folder(project) / f"{item_id}.yaml"


def read(project: Project, store: Store, item_id: str) -> Item | None:
    if not ITEM_ID.fullmatch(item_id):
        return None
    try:
        item: Item = store.load(path_of(project, item_id), "inbox_item")
    except FileNotFoundError:
        return None
    return item if item.get("id") == item_id else None  # a file copied under another name is not that item


def read_all(project: Project, store: Store) -> list[Item]:
    """Every item, open or answered, oldest first (a file that does not parse is skipped here and
    reported by ``problems``)."""
    items = []
    for name in _names(project):
        try:
            item = read(project, store, name)
        except InputError:
            continue
        if item is not None:
            items.append(item)
    return sorted(items, key=lambda i: (i.get("created_at") or "", _number(i["id"])))


def problems(project: Project, store: Store) -> list[str]:
    """Inbox files that are not items orch can read: one line each (``orch doctor``, ``orch inbox``)."""
    out = []
    for name in _names(project):
        try:
            item = read(project, store, name)
        except InputError as exc:
            out.append(exc.render().splitlines()[0])
            continue
        if item is None:
            out.append(f"{project.rel(path_of(project, name))}: its id does not match its file name")
    return out


def open_items(project: Project, store: Store) -> list[Item]:
    return [i for i in read_all(project, store) if i.get("state") == "open"]


def post(
    project: Project,
    store: Store,
    kind: str,
    *,
    task: str | None,
    asked: str,
    data: dict[str, Any] | None = None,
    key: str | None = None,
) -> Item:
    """Ask a person: a new open item (or the open one with the same ``key``, asked once)."""
    letter = LETTERS[kind]
    with store.lock(LOCK):
        if key is not None:
            for item in open_items(project, store):
                if item.get("key") == key and item.get("kind") == kind:
                    return item
        numbers = [_number(n) for n in _names(project) if n.startswith(letter)]
        item_id = f"{letter}{max(numbers, default=0) + 1}"
        new: Item = {
            "id": item_id,
            "kind": kind,
            "task": task,
            "asked": asked,
            "key": key,
            "created_at": eventlog.utcnow(),
            "state": "open",
            "data": data or {},
        }
        folder(project).mkdir(parents=True, exist_ok=True)
        store.dump(path_of(project, item_id), new, "inbox_item")
    eventlog.append(project.log_path, state="INBOX", task=task, action="ASK", result=f"{item_id} {kind}: {asked}"[:300])
    return new


def change(project: Project, store: Store, item_id: str, edit: Callable[[Item], None]) -> Item:
    """Read-modify-write one item under the inbox lock; ``edit`` mutates it."""
    with store.lock(LOCK):
        item = read(project, store, item_id)
        if item is None:
            raise InputError(f"no inbox item {item_id}", hint="see what waits: orch inbox")
        edit(item)
        store.dump(path_of(project, item_id), item, "inbox_item")
        return item


def _names(project: Project) -> list[str]:
    """The item ids in the folder (files that do not parse too: ids are never used twice)."""
    try:
        entries = os.listdir(folder(project))
    except FileNotFoundError:
        return []
    names = [e[: -len(".yaml")] for e in entries if e.endswith(".yaml")]
    return [n for n in names if ITEM_ID.fullmatch(n)]


def _number(item_id: str) -> int:
    return int(item_id[1:]) if item_id[1:].isdigit() else 0
