"""Plans a person approves first: a task with ``- approve: plan`` (or ``approve_plan: true`` in the
config's ``defaults``) runs in two phases.

Planning: one agent run asked for a plan only. Its brief, ``plan-brief.md`` in the run folder (the
task's brief, a section saying so and, after a rejection, the person's note and the plan rejected),
asks for ``PLAN.md`` at the top of the worktree and no other change. The run has ``ORCH_PHASE=plan``,
in which orch's agent hooks deny every write tool but the one writing PLAN.md
(``orch.verify.hookrun``), and Claude Code runs in its plan mode (the manifest's
``plan_permission_mode`` fills ``{permission_mode}``), where its final answer is the plan: taken from
the JSON ``result`` in agent.log when there is no PLAN.md. When the run ends, PLAN.md is taken out of
the worktree before the snapshot (never committed) and kept as ``plan-<n>.md`` in the run folder;
whatever else the run changed is kept under ``refs/orch/attempts/<id>/<n>`` and the worktree goes
back to the task's start. The task waits AWAITING_APPROVAL with a ``plan`` item in the inbox, posted
here (the supervisor runs outside the box).

Work: ``orch approve`` (``orch.inbox.plans``) appends the plan to ``context.md`` under ``## The
approved plan`` and starts the run as ever (the loop, the TDD gate); ``orch reject --note`` starts
planning again.

Which phase a run is (``phase_of``) is decided as it starts, from the status's ``plan`` record, which
any process of the user can write: ``work`` needs the approval in the event log, given since the task
was last spun or retried. ``orch approve`` itself passes ``work`` (its answer is logged once it acted).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orch.agents import budget, loop
from orch.agents import manifest as agents
from orch.agents.brief import _fenced, _quoted
from orch.agents.taskfiles import files, open_run_file
from orch.core import eventlog, git, inbox, state
from orch.core.context import Ctx
from orch.core.errors import InputError, OrchError
from orch.core.plan import Task
from orch.core.repo import Project
from orch.core.store import Store

PLAN = "PLAN.md"  # where the agent writes its plan, at the top of its worktree
BRIEF = "plan-brief.md"  # the planning run's brief, in the run folder
PLAN_FILE = re.compile(r"plan-([0-9]{1,9})\.md")
LIMIT = 200_000  # characters of a plan kept


# -- at spin and at start: does the task plan first, and which phase is this run -------------------


def wanted(ctx: Ctx, task: Task) -> bool:
    """Whether a person approves the task's plan first (frozen in the manifest at spin): the task says
    ``approve: plan`` as written or as committed (an uncommitted edit cannot drop it), or the config's
    ``defaults.approve_plan`` (working or committed) is on and the task opts out in neither version."""
    said = [t.fields.get("approve") for t in (task, task.committed) if t is not None]
    if "plan" in said:
        return True
    if all(word == "none" for word in said):
        return False
    return bool(ctx.config.defaults.get("approve_plan")) or _committed_default(ctx)


def _committed_default(ctx: Ctx) -> bool:
    """``defaults.approve_plan`` of the config committed on the base branch."""
    import yaml

    try:
        raw = ctx.committed().get("config.yaml")
        data = yaml.safe_load(raw.decode("utf-8")) if raw is not None else None
    except (OrchError, UnicodeDecodeError, yaml.YAMLError):
        return False  # verification reports a broken committed config
    defaults = data.get("defaults") if isinstance(data, dict) else None
    return isinstance(defaults, dict) and defaults.get("approve_plan") is True


def phase_of(project: Project, store: Store, task_id: str, manifest: dict[str, Any], given: str | None) -> str | None:
    """The phase of the run about to start: None (no plan to approve), ``plan`` or ``work``."""
    if not manifest.get("approve_plan"):
        return None
    if given in ("plan", "work"):
        return given
    record = (state.read(project, store, task_id, refresh=False) or {}).get("plan") or {}
    if record.get("state") == "approved" and approved_since_spin(project, store, task_id, record.get("item")):
        return "work"
    return "plan"


def approved_since_spin(project: Project, store: Store, task_id: str, item_id: Any) -> bool:
    """Whether plan item ``item_id`` of the task was approved by ``orch approve`` (the event log holds
    the answer ``orch.inbox.decide`` logs) since the task was last spun or retried."""
    try:
        item = inbox.read(project, store, item_id) if isinstance(item_id, str) else None
    except InputError:
        return False
    if item is None or (item.get("kind"), item.get("task"), item.get("state")) != ("plan", task_id, "approved"):
        return False
    answer = f"{item['id']} plan by {item.get('answered_by')} at {item.get('answered_at')}"
    approved = False
    for event in eventlog.read_from(project.log_path)[0]:
        if event.task != task_id:
            continue
        if event.action in ("SPIN", "RETRY"):
            approved = False
        elif event.action == "APPROVE" and event.result.startswith(answer):
            approved = True
    return approved


def permission_mode(agent: dict[str, Any], phase: str | None) -> str | None:
    """The ``{permission_mode}`` placeholder: the manifest's ``plan_permission_mode`` in a planning
    run (else its ``permission_mode``, and the hooks deny the writes)."""
    mode = agent.get("permission_mode")
    return (agent.get("plan_permission_mode") or mode) if phase == "plan" else mode


def planning(
    project: Project, store: Store, task_id: str, launch: dict[str, Any], base_sha: str | None, meter: budget.Meter
) -> PlanPhase | None:
    """The planning run's driver for the supervisor, when this run is one."""
    return PlanPhase(project, store, task_id, launch, base_sha, meter) if launch.get("plan_phase") == "plan" else None


# -- the planning run, in the supervisor -----------------------------------------------------------


class PlanPhase(loop.Loop):
    """One agent run asked for a plan (see the module's text). It stands where the loop stands in the
    supervisor: ``begin`` before the agent, ``take_reflection`` when it ended, ``judge`` in ``finish``."""

    plan_text: str | None = None

    def restore(self) -> None:
        return None  # a planning run paused for its budget plans again from the start

    def gate(self, stop_asked: Any) -> str | None:
        return None  # the TDD gate runs before the work, once the plan is approved

    def save(self) -> None:
        return None  # nothing of the loop's to go on from

    def begin(self, env: dict[str, str]) -> dict[str, Any]:
        self.iteration += 1
        self.in_strategy += 1
        env["ORCH_PHASE"] = "plan"
        with contextlib.suppress(OSError):
            self.log_offset = self.f.log.stat().st_size
        self.plan_text = self.reflection = None
        self.meter.begin()
        record = (state.read(self.project, self.store, self.task_id, refresh=False) or {}).get("plan") or {}
        path = self.f.folder / BRIEF
        text = planning_brief(self.base_brief, Path(self.launch["cwd"]), record, self._last_plan(record))
        self._write(path, text, append=False)
        launch = dict(self.launch)
        values = dict(launch.get("values") or {})
        if values.get("prompt") is not None:
            values["prompt"] = text
        values["prompt_file"] = str(path)
        if self.meter.budget.usd:
            values["budget_usd"] = budget.usd_left(self.meter.before, self.meter.budget)
        if launch.get("command"):
            launch["argv"] = agents.render_command(list(launch["command"]), values)
        env["ORCH_CONTEXT"] = str(path)
        left = self.time_left()
        if left is not None:
            launch["timeout"] = round(max(0.1, min(float(launch.get("timeout") or left), left)), 1)
        self._log("PLANNING", f"asked for a plan ({self.project.rel(path)})", artifacts=[path])
        return launch

    def _last_plan(self, record: dict[str, Any]) -> str | None:
        if record.get("state") != "rejected":
            return None
        return read_plan(self.f.folder, record)

    def take_reflection(self) -> None:
        """PLAN.md (and REFLECTION.md) out of the worktree before the snapshot: never committed."""
        super().take_reflection()
        self.plan_text = take_plan(self.project, Path(self.launch["cwd"]), self.base_sha)

    def judge(self, exit_code: int | None, reason: str | None, stop_asked: Any) -> loop.Judged:
        """The planning run ended: its plan kept and asked about; anything else it changed set aside."""
        if stop_asked() or reason is not None or exit_code != 0:
            return loop.Judged()  # finish says how it ended (FAILED, stopped)
        aside = None
        try:
            if self._tip() != self.base_sha:
                self._keep_attempt()
                self._reset()
                aside = self.attempts[-1]
        except (OrchError, OSError) as exc:
            why = exc.message if isinstance(exc, OrchError) else str(exc)
            return loop.Judged(final="FAILED", why=f"the planning run changed files orch could not set aside: {why}")
        text = self.plan_text or final_answer(self._read(self.f.log, self.log_offset))
        if not (text or "").strip():
            why = (
                f"the planning run ended without a plan: no {PLAN} at the top of its worktree, nor a final answer "
                f"in agent.log; orch retry {self.task_id} asks again"
            )
            return loop.Judged(final="FAILED", why=why)
        return self._ask(str(text)[:LIMIT], aside)

    def _ask(self, text: str, aside: str | None) -> loop.Judged:
        """Keep the plan as ``plan-<n>.md`` and ask a person about it (a ``plan`` item)."""
        n = next_number(self.f.folder)
        path = self.f.folder / f"plan-{n}.md"
        self._write(path, text, append=False)
        rel, digest = self.project.rel(path), hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
        title = str(self.launch.get("title") or "")
        asked = f"approve the plan for {self.task_id} ({title}) before any code is written? read {rel}"
        if aside:
            asked += f"; the planning run also changed files: set aside under {aside}, not in the worktree"
        data = {"file": rel, "round": n, "digest": digest, "set_aside": aside}
        item = inbox.post(self.project, self.store, "plan", task=self.task_id, asked=asked, data=data, key=rel)
        record = {"state": "waiting", "round": n, "file": path.name, "item": item["id"], "digest": digest, "note": None}
        state.update(self.project, self.store, self.task_id, lambda st: st.__setitem__("plan", record))
        self._log("PLAN", f"{path.name} waits for a person ({item['id']})", artifacts=[path])
        answer = f"orch approve {self.task_id} (or orch reject {self.task_id} --note TEXT)"
        return loop.Judged(final="AWAITING_APPROVAL", why=f"its plan waits for a person: read {rel}, then {answer}")


# -- files and texts --------------------------------------------------------------------------------


def left_behind(project: Project, task_id: str, launch: dict[str, Any], st: state.Status, it: Any) -> None:
    """A planning run completed without its driver (``orch stop`` after its supervisor died): PLAN.md
    goes to the run folder all the same (as ``plan-<n>.md``, asked of nobody), never onto the branch."""
    if it is not None or launch.get("plan_phase") != "plan" or not launch.get("cwd"):
        return
    folder = project.task_dir(task_id)

    def keep(text: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        fd, _note = open_run_file(folder / f"plan-{next_number(folder)}.md", append=False)
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)

    with contextlib.suppress(OSError):  # not kept: PLAN.md stays where it is (the snapshot has it)
        take_plan(project, Path(launch["cwd"]), st.get("base_sha"), keep)


def next_number(folder: Path) -> int:
    """The next plan's number: plans are numbered on across rounds, runs and retries."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 1
    return max((int(m[1]) for name in names if (m := PLAN_FILE.fullmatch(name))), default=0) + 1


def take_plan(
    project: Project, worktree: Path, base_sha: str | None, keep: Callable[[str], None] | None = None
) -> str | None:
    """PLAN.md's text, taken out of the worktree (as it is at the task's start, when the base has one),
    or None when the agent wrote none; ``keep`` stores the text first (if it raises, PLAN.md stays).
    Only a plain file is read: a link is left to the snapshot."""
    path = worktree / PLAN
    before = _at_base(project, base_sha)
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        raw = path.read_bytes()[: LIMIT * 4]
    except OSError:
        return None
    text = None if raw == before else raw.decode("utf-8", "replace")
    if keep is not None and text is not None:
        keep(text)
    with contextlib.suppress(OSError):
        if before is not None:
            path.write_bytes(before)
        else:
            path.unlink()
    return text


def _at_base(project: Project, base_sha: str | None) -> bytes | None:
    """PLAN.md as the task's start has it, or None."""
    if not base_sha:
        return None
    blob = git.rev_parse(f"{base_sha}:{PLAN}", cwd=project.root)
    return git.cat_blobs([blob], cwd=project.root).get(blob) if blob else None


def read_plan(folder: Path, record: dict[str, Any]) -> str | None:
    """The plan ``record`` names, if the file is the one orch kept (its digest); else None. Read only
    from a plain file of its own (the agent can put a link in the run folder)."""
    name = record.get("file")
    if not isinstance(name, str) or not PLAN_FILE.fullmatch(name):
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        raw = os.read(fd, LIMIT * 4 + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "surrogateescape")
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    return text if digest == record.get("digest") else None


def final_answer(log_text: str) -> str | None:
    """Claude Code's final answer (``--output-format json``): the ``result`` of its last ``type: result``
    object, unless that run ended in error."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "result":
            result = obj.get("result")
            return result if isinstance(result, str) and not obj.get("is_error") else None
    return None


def planning_brief(base: str, worktree: Path, record: dict[str, Any], last_plan: str | None) -> str:
    """The planning run's brief: the task's brief, what this run is for and, after a rejection, why."""
    lines = [
        base.rstrip("\n"),
        "",
        "## Planning run: a plan only",
        "",
        "A person approves this task's plan before any code is written. In this run:",
        "",
        f"- Change no file. Read what you need, then write your plan to `{PLAN}` at the top of your worktree",
        f"  (`{worktree / PLAN}`) and end the run. In plan mode (Claude Code), give the plan as your final answer.",
        f"- orch's hooks refuse every other write in this run, and anything changed anyway is set aside. {PLAN}",
        "  goes to the person, never onto the task's branch.",
        "- Name the files you will change or add, the steps in order, how you will test them (the accept",
        "  command above), and what could go wrong (a data migration, compatibility, locked paths).",
        "",
        "Once a person approves the plan, a new run carries it out, with the plan in its brief.",
        "",
    ]
    if record.get("state") == "rejected":
        lines += ["### Your last plan was rejected", ""]
        note = str(record.get("note") or "").strip()
        if note:
            lines += [f"A person rejected it (`{record.get('file')}`) with this note:", "", *_quoted(note), ""]
        else:
            lines += [f"A person rejected it (`{record.get('file')}`) without a note.", ""]
        lines += ["Write a new plan that answers it." + (" The plan rejected, for reference:" if last_plan else "")]
        if last_plan:
            lines += ["", _fenced(last_plan, "markdown")]
        lines.append("")
    return "\n".join(lines)


def approved_section(text: str, file: str, item_id: str, note: str | None) -> str:
    """What ``orch approve`` adds to the brief: the plan to carry out."""
    lines = [
        "## The approved plan",
        "",
        f"A person approved this plan (`{file}`, inbox item {item_id}) before any code was written. Carry it",
        "out. If it cannot be done as planned, stop and say why (`orch report BLOCKED --note ...`) rather than",
        "do something else.",
        "",
    ]
    if note and note.strip():
        lines += ["The person's note:", "", *_quoted(note), ""]
    lines += [_fenced(text, "markdown"), ""]
    return "\n".join(lines)


# -- a person's answer (orch.inbox.plans) ------------------------------------------------------------


def answered(project: Project, store: Store, task_id: str, item: inbox.Item, approve: bool, note: str | None) -> None:
    """The task, AWAITING_APPROVAL with this item's plan, PENDING again: approved (the plan appended to
    its brief) or rejected (the note kept for the next planning run's brief)."""
    f = files(project, task_id)
    st = state.read(project, store, task_id) or {}
    record = dict(st.get("plan") or {})
    if st.get("state") != "AWAITING_APPROVAL" or record.get("item") != item["id"]:
        now = st.get("state") or "not spun"
        raise InputError(
            f"inbox item {item['id']} waits no more: task {task_id} is {now}, not waiting for that plan",
            hint=f"see: orch status {task_id} and orch inbox",
        )
    text = read_plan(f.folder, record)
    if approve and text is None:
        raise InputError(
            f"{project.rel(f.folder / str(record.get('file')))} is not the plan orch kept (changed or gone since)",
            hint=f"ask for a new one: orch reject {task_id} --note 'plan again'",
        )
    if approve and text is not None:
        brief = f.context.read_text(encoding="utf-8", errors="replace").rstrip("\n")
        store.write_text(f.context, f"{brief}\n\n{approved_section(text, str(record['file']), item['id'], note)}")
    record.update(state="approved" if approve else "rejected", note=(note or "").strip() or None)
    changed: list[str] = []

    def back(s: state.Status) -> None:
        if s.get("state") != "AWAITING_APPROVAL" or (s.get("plan") or {}).get("item") != item["id"]:
            changed.append(str(s.get("state")))
            return
        s.update(state="PENDING", reason=None, plan=record)

    state.update(project, store, task_id, back)
    if changed:
        raise InputError(f"task {task_id} became {changed[0]} meanwhile: not answered", hint=f"orch status {task_id}")
