"""What an agent tells orch, and the per-task outbox a boxed agent tells it through.

``orch report`` run outside the box records at once (``record``). Inside the box the run folder is
read-only: ``orch report`` writes one small JSON file into ``run/tasks/<id>/outbox/`` (``post``), the
only folder of orch's the box lets it write, and the supervisor (or ``orch stop``) reads them as
untrusted input (``take``): plain files only (never through a link), a capped size and count, every
field checked; what passes is recorded exactly as an outside report would be, what does not is named
in the event log. Nothing there ever sets the task's state by itself: a reported BLOCKED, FAILED or
PAUSED is a note the run's end reads, as it always was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from orch.agents.taskfiles import read_plain
from orch.core import eventlog, state
from orch.core.repo import Project
from orch.core.store import Store, atomic_write

REPORT_STATES = ("PROGRESS", "SUCCESS", "BLOCKED", "PAUSED", "FAILED")
ENDED = ("SUCCESS", "FAILED", "CRASHED", "BLOCKED", "PAUSED", "AWAITING_APPROVAL")
NAME_RE = re.compile(r"\d{1,20}-\d{1,10}-[0-9a-f]{8}\.json")
HANDOFF_RE = re.compile(r"handoff-\d{1,20}-\d{1,10}-[0-9a-f]{8}\.json")  # orch propose's: read at the run's end
MAX_ENTRY = 64 << 10  # bytes of one entry
MAX_ENTRIES = 200  # entries read per look
MAX_NOTE = 8000  # characters of a note kept
MAX_ARTIFACTS = 100
GATES = "gate"  # the folder the agent hook asks for gates in (orch.agents.gatemail)


def folder(project: Project, task_id: str) -> Path:
    return project.task_dir(task_id) / "outbox"


@dataclass(frozen=True)
class Report:
    kind: str
    text: str
    artifacts: tuple[str, ...] = ()


def post(box: Path, report: Report) -> Path:
    """Leave ``report`` in the outbox ``box`` (from inside the box): a new file, written whole."""
    name = f"{time.time_ns()}-{os.getpid()}-{os.urandom(4).hex()}.json"
    data = {"kind": report.kind, "text": report.text, "artifacts": list(report.artifacts)}
    path = box / name
    atomic_write(path, json.dumps(data, ensure_ascii=False) + "\n")
    return path


def take(project: Project, task_id: str) -> tuple[list[Report], list[str]]:
    """The reports waiting in the task's outbox, oldest first, and why others were refused; every
    file read is removed (what it said is in the status and the event log from now on)."""
    box = folder(project, task_id)
    try:
        if not stat.S_ISDIR(os.lstat(box).st_mode):
            return [], [f"the outbox {project.rel(box)} is not a folder: ignored"]
        names = sorted((n for n in os.listdir(box) if not HANDOFF_RE.fullmatch(n)), key=_order)  # orch.agents.handoff
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"the outbox could not be read: {exc.strerror or exc}"]
    reports: list[Report] = []
    refused: list[str] = []
    for n, name in enumerate(names):
        if n >= MAX_ENTRIES:
            refused.append(f"{len(names) - MAX_ENTRIES} more outbox entries wait for the next look")
            break
        path = box / name
        if name.startswith(".") and name.endswith(".tmp") or name == GATES:
            continue  # a write under way (atomic_write's temp file), or the agent hook's gates folder
        try:
            report = _parse(path, name)
        except ValueError as exc:
            refused.append(f"outbox entry {name[:80]!r} refused: {exc}")
            report = None
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                continue  # a folder an agent made: left where it is
            os.unlink(path)
        if report is not None:
            reports.append(report)
    return reports, refused


def _order(name: str) -> tuple[int, str]:
    head = name.split("-", 1)[0]
    return (int(head) if head.isdigit() and len(head) < 21 else 0, name)


def _parse(path: Path, name: str) -> Report:
    if not NAME_RE.fullmatch(name):
        raise ValueError("not a name orch report writes")
    try:
        raw = read_plain(path, MAX_ENTRY)
    except FileNotFoundError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    kind, text, artifacts = data.get("kind"), data.get("text"), data.get("artifacts") or []
    if kind not in REPORT_STATES:
        raise ValueError(f"kind {str(kind)[:20]!r} is not one of {', '.join(REPORT_STATES)}")
    if not isinstance(text, str) or (kind in ("BLOCKED", "FAILED", "PAUSED") and not text.strip()):
        raise ValueError("no text")
    if not isinstance(artifacts, list) or not all(
        isinstance(a, str) and 0 < len(a) < 4096 and a.isprintable() for a in artifacts
    ):
        raise ValueError("artifacts is not a list of paths (printable, one line each)")
    clean = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text.strip())[:MAX_NOTE]
    return Report(kind, clean or kind.lower(), tuple(artifacts[:MAX_ARTIFACTS]))


def record(project: Project, store: Store, task_id: str, report: Report, *, via: str = "") -> state.Status:
    """Record an agent's report: a note (and artifacts) in the status, the event log, and for
    BLOCKED the blocker report. After the run ended (a person reporting by hand), BLOCKED, PAUSED
    or FAILED applies at once; during a run, the run's end decides."""
    now = eventlog.utcnow()
    kind, text, paths = report.kind, report.text, list(report.artifacts)

    def apply(st: state.Status) -> None:
        st.setdefault("notes", []).append({"at": now, "state": None if kind == "PROGRESS" else kind, "text": text})
        if paths:
            st["artifacts"] = list(dict.fromkeys([*(st.get("artifacts") or []), *paths]))
        if st.get("state") in ENDED and kind in ("BLOCKED", "PAUSED", "FAILED"):
            st["state"] = kind
            st["reason"] = text

    new = state.update(project, store, task_id, apply)
    if kind == "BLOCKED":
        atomic_write(
            project.task_dir(task_id) / "BLOCKER_REPORT.md",
            f"# Blocker report: {task_id}\n\nReported {now} by the agent{via}.\n\n{text}\n",
        )
    eventlog.append(
        project.log_path,
        state=str(new.get("state")),
        task=task_id,
        action="REPORT",
        result=f"{kind}: {text}",
        artifacts=paths,
    )
    return new


def drain(project: Project, store: Store, task_id: str, *, looks: int = 1) -> None:
    """Record every report waiting in the outbox, and name in the event log what was refused (a few
    reasons and a count: a flood of junk is one line, not thousands). ``looks``: how many batches to
    read (the end of a run reads until it is empty, within reason)."""
    from orch.agents import gatemail  # what the agent hook asked from the box: gates, approvals used

    for why in gatemail.drain(project, store, task_id)[:5]:
        eventlog.append(project.log_path, state="RUNNING", task=task_id, action="REFUSE", result=why)
    for _ in range(looks):
        reports, refused = take(project, task_id)
        for report in reports:
            record(project, store, task_id, report, via=" (from the box)")
        for why in refused[:5]:
            eventlog.append(project.log_path, state="RUNNING", task=task_id, action="REFUSE", result=why)
        if len(refused) > 5:
            more = f"{len(refused) - 5} more outbox entries refused"
            eventlog.append(project.log_path, state="RUNNING", task=task_id, action="REFUSE", result=more)
        if not reports and not refused:
            break


def sweep(project: Project, task_id: str) -> None:
    """Remove what is left in the outbox once the run is over (a write cut short: ``.*.tmp``)."""
    box = folder(project, task_id)
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(box).st_mode):
            for name in os.listdir(box):
                path = box / name
                if not (os.path.isdir(path) and not os.path.islink(path)) and not HANDOFF_RE.fullmatch(name):
                    path.unlink(missing_ok=True)
