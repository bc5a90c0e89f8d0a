"""Gates asked from the box: what the agent hook leaves for the supervisor, and what it does with it.

A CRITICAL command is denied by the agent hook and waits for a person as a ``gate`` item
(``orch.inbox.gates``). In orch's box the hook cannot write ``.orch/`` (the inbox is there): it
leaves files in a folder of the task's outbox, ``run/tasks/<id>/outbox/gate/``, which the supervisor
reads every few seconds (with ``outbox.drain``) as untrusted input: plain files only, capped, every
field checked, each file removed once read.

- ``ask-<key>.json`` ``{"command", "cwd", "agent"}``: a command was denied. The supervisor judges it
  again under the policy in force (nothing the file says about tiers or rules is believed) and posts
  the ``gate`` item when it is CRITICAL (one open item per command, folder and task: ``key``).
- ``use-<ID>.json`` ``{"nonce"}``: the hook wants to run the command approved as ``ID``. The
  supervisor records the use in the item (``data.used``: when, and the nonce) if ``ID`` is an approved
  gate of this task, not used yet, not expired. The hook lets the command through only once the
  item names its own nonce: the inbox, which the box cannot write, says which run used the approval,
  so it is used once whatever the box's files say. Without the box the hook records it itself
  (``record_use``, under the inbox lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from orch.agents.taskfiles import read_plain
from orch.core import eventlog, inbox, state
from orch.core.errors import InputError, OrchError
from orch.core.repo import Project
from orch.core.store import Store, atomic_write

FOLDER = "gate"  # inside the task's outbox (orch.agents.outbox.folder)
ASK_RE = re.compile(r"ask-([0-9a-f]{32})\.json")
USE_RE = re.compile(r"use-(G[0-9]{1,9})\.json")
NONCE_RE = re.compile(r"[0-9a-f]{32}")
TTL = 3600.0  # seconds an approval holds
MAX_ENTRY = 64 << 10
MAX_ENTRIES = 50
MAX_COMMAND = 16000


def folder(project: Project, task_id: str) -> Path:
    return project.task_dir(task_id) / "outbox" / FOLDER


def key(task_id: str, cwd: str, command: str) -> str:
    """What makes two requests the same: the task, the folder and the command's exact text."""
    from _blake2 import blake2b

    return blake2b(f"gate\0{task_id}\0{cwd}\0{command}".encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def ttl() -> float:
    """How long an approval holds: an hour (``ORCH_GATE_TTL`` may only shorten it)."""
    try:
        return min(TTL, max(0.0, float(os.environ.get("ORCH_GATE_TTL") or TTL)))
    except ValueError:
        return TTL


def expired(item: inbox.Item, now: float | None = None) -> bool:
    """Whether ``item``'s answer is older than the approval's lifetime (or has no readable time)."""
    try:
        when = datetime.fromisoformat(str(item.get("answered_at")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    return (now if now is not None else time.time()) - when > ttl()


# -- the hook's side (in the box) ------------------------------------------------------------------------


def ask(box: Path, task_id: str, cwd: str, command: str, agent: str) -> None:
    """Leave a request for a person (once per key: a request already waiting is left as it is)."""
    box.mkdir(parents=True, exist_ok=True)
    path = box / f"ask-{key(task_id, cwd, command)}.json"
    if not path.exists():
        atomic_write(path, json.dumps({"command": command, "cwd": cwd, "agent": agent}) + "\n", durable=False)


def claim(box: Path, item_id: str) -> str | None:
    """Ask to use approval ``item_id``: the nonce the item will name, or None when a claim waits already."""
    box.mkdir(parents=True, exist_ok=True)
    nonce = os.urandom(16).hex()
    try:
        fd = os.open(box / f"use-{item_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"nonce": nonce}) + "\n")
    return nonce


# -- the supervisor's side ------------------------------------------------------------------------------


class Refused(Exception):
    pass


def record_use(project: Project, store: Store, task_id: str, item_id: str, nonce: str) -> None:
    """Mark approval ``item_id`` used by ``nonce`` (under the inbox lock); ``Refused`` says why not."""

    def use(item: inbox.Item) -> None:
        data = item.get("data") or {}
        if item.get("kind") != "gate" or item.get("task") != task_id:
            raise Refused(f"{item_id} is not a gate of task {task_id}")
        if item.get("state") != "approved":
            raise Refused(f"{item_id} is {item.get('state')}, not approved")
        if data.get("used"):
            used = data["used"].get("at") if isinstance(data["used"], dict) else "?"
            raise Refused(f"{item_id} was used already (at {used}): a second run needs a new approval")
        if expired(item):
            raise Refused(f"the approval {item_id} expired (it holds for {ttl() / 60:g} minutes)")
        now = eventlog.utcnow()
        data["used"] = {"at": now, "nonce": nonce}
        item["data"] = data
        item["outcome"] = f"{item.get('outcome') or 'approved'}; used once at {now}"

    try:
        inbox.change(project, store, item_id, use)
    except InputError as exc:
        raise Refused(exc.message) from None
    eventlog.append(project.log_path, state="GATE", task=task_id, action="USE", result=f"{item_id} used once")


def drain(project: Project, store: Store, task_id: str) -> list[str]:
    """Post the gates the hook asked for and record the approvals it used; why others were refused."""
    box = folder(project, task_id)
    try:
        if not stat.S_ISDIR(os.lstat(box).st_mode):
            return [f"{project.rel(box)} is not a folder: ignored"]
        names = sorted(os.listdir(box))[:MAX_ENTRIES]
    except OSError:
        return []
    refused: list[str] = []
    for name in names:
        path = box / name
        if name.startswith(".") and name.endswith(".tmp"):
            continue
        try:
            data = _read(path)
            ask_m, use_m = ASK_RE.fullmatch(name), USE_RE.fullmatch(name)
            if ask_m:
                _post(project, store, task_id, ask_m.group(1), data)
            elif use_m:
                nonce = data.get("nonce")
                if not isinstance(nonce, str) or not NONCE_RE.fullmatch(nonce):
                    raise Refused("no nonce")
                record_use(project, store, task_id, use_m.group(1), nonce)
            else:
                raise Refused("not a name the hook writes")
        except (Refused, ValueError, OrchError) as exc:
            refused.append(f"gate request {name[:60]!r} refused: {exc}")
        with contextlib.suppress(OSError):
            if not (os.path.isdir(path) and not os.path.islink(path)):
                os.unlink(path)
    return refused


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = read_plain(path, MAX_ENTRY)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise Refused("not a JSON object")
    return data


def _post(project: Project, store: Store, task_id: str, want: str, data: dict[str, Any]) -> None:
    from orch.core.context import Ctx
    from orch.verify import policy

    command, cwd, agent = data.get("command"), data.get("cwd"), data.get("agent")
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND or "\0" in command:
        raise Refused("no command, or one orch will not hold")
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or "\0" in cwd or len(cwd) > 4096:
        raise Refused("no folder")
    if key(task_id, cwd, command) != want:
        raise Refused("its name does not match what it asks")
    st = state.read(project, store, task_id) or {}
    top = str(st.get("worktree") or project.root)
    ctx = Ctx(project, from_source=True)
    verdict = policy.judge(policy.in_force(ctx), command, policy.Place(cwd, top, str(project.root)))
    if verdict.tier != "CRITICAL":
        raise Refused(f"the policy says {verdict.tier}: nothing for a person to approve")
    post(project, store, task_id, command, cwd, str(agent or "agent"), verdict)


def post(project: Project, store: Store, task_id: str, command: str, cwd: str, agent: str, verdict: Any) -> inbox.Item:
    """The ``gate`` item for ``command`` (the open one with the same key, if one waits)."""
    why = [f"{f.shown}: {f.rule}: {f.why}" + (f" ({f.path})" if f.path else "") for f in verdict.worst()]
    shown = command if len(command) <= 300 else command[:300] + "..."
    asked = f"task {task_id} wants to run `{shown}` in {cwd}: CRITICAL ({'; '.join(why)[:400]})"
    data = {"command": command, "cwd": cwd, "agent": agent, "why": why[:20]}
    gate = f"gate:{key(task_id, cwd, command)}"
    return inbox.post(project, store, "gate", task=task_id, asked=asked, data=data, key=gate)
