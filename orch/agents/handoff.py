"""Handoffs, the agents' side: propose, don't chain.

An agent that sees work for another agent proposes it (``orch propose``, or a ``HANDOFF.yaml`` left
at its worktree's root); it becomes a ``handoff`` item of the inbox, and a person decides whether it
becomes a task (``orch.inbox.handoff``). Nothing an agent proposes runs by itself.

A proposal is untrusted input, checked the same way whichever way it came: the target agent has a
manifest, the scope compiles, the confidence is a number from 0 to 1, every text is bounded, and
each artifact is a path from the repository's root (never absolute, never through ``..``) that
exists in the proposing task's branch at its tip, whose commit id is kept with it. Artifacts are
references (path + commit), never content.

Outside the box ``orch propose`` posts the item at once (``post``). Inside it ``.orch/`` is
read-only: the proposal goes to the task's outbox as ``handoff-*.json`` (``to_outbox``), which the
outbox's report reader leaves alone; at the end of the run the supervisor takes those entries and
``HANDOFF.yaml`` out (before the worktree is snapshotted: a proposal never lands on the branch) and
posts them once the run's work is in the branch (``Taken``), so the artifacts are checked at the
tip the agent's commits made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from orch.agents import manifest, outbox
from orch.core import eventlog, git, inbox, refs
from orch.core.errors import InputError, OrchError
from orch.core.repo import Project
from orch.core.store import Store, atomic_write
from orch.core.text import quoted

FILE = "HANDOFF.yaml"
KEYS = ("to", "title", "brief", "scope", "artifacts", "preconditions", "reason", "confidence")
REQUIRED = ("to", "title", "brief", "reason", "confidence")
MAX = {"title": 200, "brief": 8000, "reason": 2000, "scope": 1000, "path": 1024, "precondition": 500}
MAX_ARTIFACTS = 50
MAX_PRECONDITIONS = 20
MAX_ENTRY = 64 << 10  # bytes of one HANDOFF.yaml or outbox entry
MAX_PER_RUN = 20  # proposals taken at the end of one run
NAME_RE = outbox.HANDOFF_RE
OPTION = {"artifacts": "--artifact", "preconditions": "--precondition"}


@dataclass(frozen=True)
class Proposal:
    to: str
    title: str
    brief: str
    reason: str
    confidence: float
    scope: str | None = None
    artifacts: tuple[str, ...] = ()
    preconditions: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "title": self.title,
            "brief": self.brief,
            "scope": self.scope,
            "artifacts": list(self.artifacts),
            "preconditions": list(self.preconditions),
            "reason": self.reason,
            "confidence": self.confidence,
        }


# -- checking ---------------------------------------------------------------------------------------


def read(data: object, *, where: str, cli: bool = False) -> Proposal:
    """The proposal ``data`` holds (a mapping of ``KEYS``), its shape and values checked; no git and
    no file is read. ``where`` names the source in messages; ``cli``: name options, not keys."""

    def name(key: str) -> str:
        return OPTION.get(key, f"--{key}") if cli else key

    if not isinstance(data, dict):
        raise InputError(f"{where}: a proposal is a mapping of {', '.join(KEYS)}", hint=f"see {FILE} in the README")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(str(unknown[0]), KEYS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"the keys: {', '.join(KEYS)}"
        raise InputError(f"{where}: unknown key {quoted(str(unknown[0]))}", hint=hint)
    missing = [k for k in REQUIRED if data.get(k) is None or data.get(k) == ""]
    if missing:
        needs = ", ".join(name(k) for k in REQUIRED)
        raise InputError(f"{where}: {name(missing[0])} is missing", hint=f"a proposal needs {needs}")
    to = _text(data["to"], f"{where}: {name('to')}", line=True, limit=64)
    if not manifest.AGENT_RE.fullmatch(to):
        raise InputError(
            f"{where}: bad agent name {quoted(to)}",
            hint="agent names are letters, digits, '.', '_' or '-' (see: orch agents)",
        )
    scope = None
    if data.get("scope") not in (None, ""):
        from orch.core.scoperegex import scope_problem

        scope = _text(data["scope"], f"{where}: {name('scope')}", line=True, limit=MAX["scope"])
        problem = scope_problem(scope)
        if problem:
            raise InputError(f"{where}: {name('scope')}: {problem}", hint="a Python regex over paths, e.g. ^docs/")
    artifacts = [path_of(a, where=where, option=name("artifacts")) for a in _listed(data, "artifacts", where, name)]
    preconditions = [
        _text(p, f"{where}: {name('preconditions')}", line=True, limit=MAX["precondition"])
        for p in _listed(data, "preconditions", where, name)
    ]
    return Proposal(
        to=to,
        title=_text(data["title"], f"{where}: {name('title')}", line=True, limit=MAX["title"]),
        brief=_text(data["brief"], f"{where}: {name('brief')}", line=False, limit=MAX["brief"]),
        reason=_text(data["reason"], f"{where}: {name('reason')}", line=False, limit=MAX["reason"]),
        confidence=_confidence(data["confidence"], f"{where}: {name('confidence')}"),
        scope=scope,
        artifacts=tuple(dict.fromkeys(artifacts)),
        preconditions=tuple(preconditions),
    )


def _text(value: object, what: str, *, line: bool, limit: int) -> str:
    """``value`` as checked text: a string, not empty, at most ``limit`` characters, printable (one
    line if ``line``; else new lines and tabs too)."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}")
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not value:
        raise InputError(f"{what} is empty")
    if len(value) > limit:
        raise InputError(f"{what} is {len(value)} characters long, at most {limit}")
    if any(not (c.isprintable() or (not line and c in "\n\t")) for c in value):
        kind = "one printable line" if line else "printable text (new lines and tabs allowed)"
        raise InputError(f"{what} {quoted(value)} holds a control character", hint=f"give {kind}")
    return value


def _confidence(value: object, what: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{what} {quoted(str(value))} is not a number", hint="how sure: 0.0 to 1.0") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number from 0.0 to 1.0, not {type(value).__name__}")
    if not 0.0 <= value <= 1.0:  # NaN too: it compares false
        shown = f"{value:g}" if isinstance(value, float) else str(value) if abs(value) < 10**20 else "(a huge number)"
        raise InputError(f"{what} {shown} is outside 0.0-1.0", hint="how sure you are: 0.0 to 1.0")
    return float(value)


def _listed(data: dict[Any, Any], key: str, where: str, name: Callable[[str], str]) -> list[object]:
    value = data.get(key)
    if value is None:
        return []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list):
        raise InputError(f"{where}: {name(key)} must be a list, not {type(value).__name__}")
    most = MAX_ARTIFACTS if key == "artifacts" else MAX_PRECONDITIONS
    if len(value) > most:
        raise InputError(f"{where}: {len(value)} {key}, at most {most}")
    return value


def path_of(value: object, *, where: str, option: str = "artifacts") -> str:
    """An artifact's path as the repository names it (``./a//b`` is ``a/b``); absolute paths, ``..``
    and ``.git`` refused."""
    if not isinstance(value, str):
        raise InputError(f"{where}: {option} must be paths (text), not {type(value).__name__}")
    shown = quoted(value)
    if not value or len(value) > MAX["path"] or any(not c.isprintable() for c in value):
        raise InputError(
            f"{where}: {option} {shown} is not a path orch takes",
            hint=f"one printable line, at most {MAX['path']} characters, from the repository's root",
        )
    pure = PurePosixPath(value)
    if pure.is_absolute() or value.startswith("~"):
        raise InputError(
            f"{where}: {option} {shown} is absolute: artifacts are paths in the repository",
            hint="name it from the repository's root, e.g. docs/api.md",
        )
    parts = [p for p in pure.parts if p != "."]
    if ".." in parts:
        raise InputError(
            f"{where}: {option} {shown} climbs out with '..': artifacts are paths in the repository",
            hint="name it from the repository's root, e.g. docs/api.md",
        )
    if not parts or parts[0] == ".git":
        raise InputError(f"{where}: {option} {shown} is not a file or folder of the repository")
    return "/".join(parts)


def check_agent(project: Project, to: str, *, where: str) -> None:
    if not manifest.manifest_path(project, to).is_file():
        known = ", ".join(manifest.names(project)) or "none"
        raise InputError(
            f"{where}: no agent {quoted(to)} (no .orch/agents/{to}.yaml)",
            hint=f"known agents: {known} (see: orch agents)",
        )


def missing_at(project: Project, commit: str, paths: tuple[str, ...] | list[str]) -> list[str]:
    """The paths that name no file or folder in ``commit`` (one ``git cat-file --batch-check``)."""
    if not paths:
        return []
    query = "".join(f"{commit}:{p}\n" for p in paths)
    answers = git.run(["cat-file", "--batch-check"], cwd=project.root, input=query).stdout.splitlines()
    answers += [""] * (len(paths) - len(answers))
    return [p for p, a in zip(paths, answers[: len(paths)], strict=True) if not _found(a)]


def _found(answer: str) -> bool:
    """``<oid> blob|tree <size>``: a file or a folder (a missing one reads ``<name> missing``)."""
    parts = answer.split(" ")
    return len(parts) == 3 and bool(re.fullmatch(r"[0-9a-f]{40,64}", parts[0])) and parts[1] in ("blob", "tree")


def tip(project: Project, task_id: str) -> str:
    found = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=project.root)
    if found is None:
        raise InputError(
            f"task {task_id} has no branch {refs.branch_name(task_id)}: nothing to hand off from",
            hint="a handoff is proposed by a spun task (orch spin)",
        )
    return found


def check_artifacts(project: Project, task_id: str, commit: str, paths: tuple[str, ...], *, where: str) -> None:
    missing = missing_at(project, commit, paths)
    if missing:
        raise InputError(
            f"{where}: artifact {quoted(missing[0])} is not in {refs.branch_name(task_id)} at {commit[:12]}",
            hint="an artifact is a file or folder committed on the task's branch, named from the repository's "
            "root: commit it first (git add, git commit)",
        )


# -- posting ----------------------------------------------------------------------------------------


def post(project: Project, store: Store, task_id: str, proposal: Proposal, *, via: str, where: str) -> inbox.Item:
    """Check ``proposal`` against the project and task ``task_id``'s branch at its tip; then ask a
    person (the same proposal asked twice while open is one item)."""
    import hashlib

    check_agent(project, proposal.to, where=where)
    commit = tip(project, task_id)
    check_artifacts(project, task_id, commit, proposal.artifacts, where=where)
    data = {**proposal.as_json(), "task": task_id, "commit": commit, "via": via}
    digest = hashlib.sha256(json.dumps(proposal.as_json(), sort_keys=True).encode()).hexdigest()[:16]
    return inbox.post(
        project, store, "handoff", task=task_id, asked=phrase(data), data=data, key=f"handoff:{task_id}:{digest}"
    )


def phrase(data: dict[str, Any]) -> str:
    """How a handoff reads in the inbox: "worth handing off" from 0.8, "you might want to" below 0.5."""
    conf = data.get("confidence")
    try:
        c = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else 0.0
    except OverflowError:  # an item file anyone wrote
        c = 0.0
    title, to, task = data.get("title"), data.get("to"), data.get("task")
    scope = f"scope {data['scope']}" if data.get("scope") else "no scope: any file"
    reason = " ".join(str(data.get("reason") or "").split())
    reason = reason if len(reason) <= 300 else reason[:297] + "..."
    said = f"confidence {c:g}, {scope}"
    if c >= 0.8:
        return f'worth handing off: "{title}" to agent {to} (proposed by {task}, {said}): {reason}'
    if c < 0.5:
        return f'you might want to hand "{title}" to agent {to} (proposed by {task}, {said}): {reason}'
    return f'{task} proposes "{title}" for agent {to} ({said}): {reason}'


def to_outbox(project: Project, task_id: str, proposal: Proposal) -> Path:
    """From inside the box: leave the proposal in the task's outbox for the supervisor."""
    name = f"handoff-{time.time_ns()}-{os.getpid()}-{os.urandom(4).hex()}.json"
    path = outbox.folder(project, task_id) / name
    atomic_write(path, json.dumps(proposal.as_json(), ensure_ascii=False) + "\n")
    return path


# -- the supervisor's side: what the run left, posted once its work is in ---------------------------


class Taken:
    """``with Taken(...): settle the run``: ``HANDOFF.yaml`` and the outbox's proposals are taken out
    first (so the snapshot never commits them) and posted after, checked at the branch's new tip.
    Whatever goes wrong is a line in the event log: a proposal never fails a run."""

    def __init__(self, project: Project, store: Store, task_id: str, launch: dict[str, Any]) -> None:
        self.project, self.store, self.task_id, self.launch = project, store, task_id, launch
        self.found: list[tuple[str, bytes | str]] = []  # (where, its bytes, or why they were refused)

    def __enter__(self) -> Taken:
        with contextlib.suppress(OSError, ValueError):  # no worktree, no outbox: nothing proposed there
            if self.launch.get("cwd"):
                self._take(Path(self.launch["cwd"]) / FILE, FILE)
        with contextlib.suppress(OSError, ValueError):
            box = outbox.folder(self.project, self.task_id)
            if stat.S_ISDIR(os.lstat(box).st_mode):
                entries = sorted((e for e in os.listdir(box) if NAME_RE.fullmatch(e)), key=_order)
                for entry in entries[:MAX_PER_RUN]:
                    self._take(box / entry, f"outbox entry {entry}")
                for entry in entries[MAX_PER_RUN:]:  # a flood: removed unread
                    with contextlib.suppress(OSError):
                        os.unlink(box / entry)
                if len(entries) > MAX_PER_RUN:
                    more = f"{len(entries) - MAX_PER_RUN} more proposals in the outbox"
                    self.found.append((more, f"over {MAX_PER_RUN} in one run: removed unread"))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for n, (where, raw) in enumerate(self.found):
            try:
                if n >= MAX_PER_RUN and not isinstance(raw, str):
                    raise InputError(f"{where}: more than {MAX_PER_RUN} proposals in one run")
                if isinstance(raw, str):
                    raise InputError(f"{where}: {raw}")
                is_file = where == FILE
                proposal = read(_parse(raw, where, yaml_text=is_file), where=where)
                via = FILE if is_file else "orch propose (from the box)"
                post(self.project, self.store, self.task_id, proposal, via=via, where=where)
            except Exception as err:  # untrusted input, and git: a line in the log, never a failed run
                why = err.message if isinstance(err, OrchError) else f"{type(err).__name__}: {err}"
                with contextlib.suppress(OSError, OrchError):
                    eventlog.append(
                        self.project.log_path,
                        state="RUNNING",
                        task=self.task_id,
                        action="REFUSE",
                        result=f"handoff refused: {why.splitlines()[0] if why else '?'}"[:500],
                    )

    def _take(self, path: Path, where: str) -> None:
        """Read ``path`` as untrusted (a plain file, never through a link, capped), then remove it."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return
        except OSError as exc:
            if os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                self.found.append((where, "a symbolic link: refused (orch reads a plain file only)"))
            else:
                self.found.append((where, f"could not be read: {exc.strerror or exc}"))
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.found.append((where, "not a plain file: left where it is, not read"))
                return
            raw = os.read(fd, MAX_ENTRY + 1)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        self.found.append((where, raw if len(raw) <= MAX_ENTRY else f"over {MAX_ENTRY} bytes: refused"))


def _order(name: str) -> tuple[int, str]:
    """Oldest first: the outbox entries' names start with the time they were written."""
    head = name.removeprefix("handoff-").split("-", 1)[0]
    return (int(head) if head.isdigit() and len(head) < 21 else 0, name)


def _parse(raw: bytes, where: str, *, yaml_text: bool) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text") from None
    if not yaml_text:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InputError(f"{where}: not JSON ({exc})") from None
        except RecursionError:
            raise InputError(f"{where}: nested too deeply") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except ValueError:  # PyYAML's int() of a number of over 4,300 digits
        raise InputError(f"{where}: holds a number too long to read") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{where}{at}: not YAML ({getattr(exc, 'problem', None) or exc})") from None
