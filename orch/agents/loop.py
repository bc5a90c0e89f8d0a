"""The bounded loop: a supervised task with an ``accept`` command runs as iterations.

Each iteration is a fresh agent process (in the box as ever); when it ends the supervisor's ``finish``
brings its commits in and snapshots its work, then calls ``Loop.judge``: the cheap checks (``check``
in the plan task or the config's defaults) run first, then ``accept``. A pass ends the task SUCCESS.
A failure gets a signature (``loopnotes.signature``), one entry in ``run/tasks/<id>/progress.md``, an
``ITERATE`` event, and the next iteration's brief (``context.md``: the base brief and the feedback).

Limits (the strictest of config ``defaults``, agent manifest and plan task, frozen at spin): at most
``max_per_strategy`` iterations per strategy, ``max_strategies`` strategies, ``max_iterations`` in all,
and ``task_timeout`` seconds for the whole loop. The same signature three iterations in a row, or an
iteration that changed nothing, ends a strategy early. A strategy that ends keeps its last commit
under ``refs/orch/attempts/<id>/<n>``, and the task's branch and worktree go back to the commit the
task started from (``STRATEGY_SHIFT``). When the limits are spent the worktree goes back there too,
``BLOCKER_REPORT.md`` is written and the task is BLOCKED.

Before the first iteration the TDD gate runs ``accept`` on the untouched worktree: a test that
already passes proves nothing, and the task goes back to PENDING (``tdd_gate: false`` skips it).

The budget (``orch.agents.budget``): every brief states what is left; a failed iteration that leaves
85% or more of it used ends the run PAUSED, after the next brief is written. The loop's own state
(counts, history, attempts, what was spent) is written to ``run/tasks/<id>/loop.json`` after every
iteration, and ``orch resume`` starts a supervisor that goes on from it (``restore``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.agents import boxcmd, boxgit, budget, learnings, loopnotes, loopstate, taskgit
from orch.agents import manifest as agents
from orch.agents.loopstate import limits
from orch.agents.taskfiles import files, open_run_file
from orch.core import eventlog, git, refs, state
from orch.core.errors import OrchError
from orch.core.repo import Project
from orch.core.store import Store, template

STUCK = 3  # the same signature this many iterations in a row ends a strategy
SAVED = loopstate.SAVED  # the loop's state between iterations, for orch resume


@dataclass
class Judged:
    go_on: bool = False  # the loop goes on: the task stays RUNNING
    accept: dict[str, Any] | None = None
    final: str | None = None  # a state the loop decided (BLOCKED), or None: as finish decides
    why: str | None = None
    problems: list[str] = field(default_factory=list)  # links found where orch writes its logs


def argv_now(launch: dict[str, Any], brief: Path, meter: budget.Meter) -> list[str]:
    """The agent's argv rendered anew from its command: the brief as it is now (``{prompt}``) and the
    dollars left (``{budget_usd}``); the launch's own argv when it has no command to render."""
    if not launch.get("command") or not isinstance(launch.get("values"), dict):
        return list(launch["argv"])
    values = dict(launch["values"])
    if values.get("prompt") is not None:
        values["prompt"] = brief.read_text(encoding="utf-8", errors="replace")
    if meter.budget.usd:
        values["budget_usd"] = budget.usd_left(meter.before, meter.budget)
    return agents.render_command(list(launch["command"]), values)


def resume_hint(task_id: str) -> str:
    return f"to go on: orch resume {task_id} --budget AMOUNT (e.g. '500k tokens' or '$10')"


def back_to_pending(project: Project, store: Store, task_id: str, why: str) -> None:
    """The task refused by the TDD gate: PENDING again, with the reason (``orch start`` runs it)."""

    def change(st: state.Status) -> None:
        if st.get("state") == "RUNNING":
            st.update(state="PENDING", reason=why, supervisor_pid=None, supervisor_start=None, pid=None, pid_start=None)

    state.update(project, store, task_id, change)


class Loop:
    def __init__(
        self,
        project: Project,
        store: Store,
        task_id: str,
        launch: dict[str, Any],
        base_sha: str | None,
        meter: budget.Meter,
    ) -> None:
        self.project, self.store, self.task_id, self.launch = project, store, task_id, launch
        self.meter = meter
        self.f = files(project, task_id)
        self.base_sha = base_sha or git.rev_parse(f"{refs.BASE_PREFIX}/{task_id}", cwd=project.root)
        lim = limits(launch)
        self.max_iterations: int = lim["max_iterations"]
        self.per_strategy: int = lim["max_per_strategy"]
        self.strategies: int = lim["max_strategies"]
        self.timeout: float | None = lim["task_timeout"]
        self.started = time.monotonic()
        self.elapsed_before = 0.0  # the task's wall clock spent by earlier runs (a resumed loop)
        self.iteration = 0
        self.begun = 0  # iterations this supervisor started
        self.go_on = False  # the last judge said the loop goes on
        self.strategy = 1
        self.in_strategy = 0
        self.history: list[loopnotes.Entry] = []
        self.attempts: list[str] = []
        self.prev_tree = self._tree(self.base_sha)
        self.log_offset = 0
        self.reflection: str | None = None
        self.base_brief = self.f.context.read_text(encoding="utf-8", errors="replace")

    # -- the loop's state between runs (orch resume) -------------------------------------------------

    def save(self) -> None:
        """The loop's state, for a supervisor that goes on from here (``orch resume``)."""
        loopstate.save(self)

    def restore(self) -> None:
        """Go on from the saved state (a resumed task: no TDD gate, the counts kept)."""
        loopstate.restore(self)

    def paused(self, why: str) -> None:
        """The running iteration was stopped for the budget: noted in progress.md, the state saved."""
        self._write(
            self.f.folder / "progress.md",
            f"## Iteration {self.iteration}/{self.max_iterations} (strategy {self.strategy}/{self.strategies})\n\n"
            f"- at: {eventlog.utcnow()}\n- stopped: {why}; its work is snapshotted, the task is PAUSED\n\n",
            append=True,
        )
        self.save()

    # -- before and between iterations -------------------------------------------------------------

    def gate(self, stop_asked: Callable[[], bool]) -> str | None:
        """The TDD gate: why the task must not run (its accept passes untouched), or None."""
        if not self.launch.get("tdd_gate", True):
            return None
        result, _note = boxcmd.run(
            self.project, self.launch, self.f, str(self.launch["accept"]), self.f.folder / "tdd-gate.log", stop_asked
        )
        if result["exit_code"] != 0:
            self._log("TDD_GATE", f"ok: accept fails before any work (exit {result['exit_code']})")
            return None
        why = (
            "refused by the TDD gate: the accept command already passes on the untouched worktree, so it "
            "proves nothing; make it fail until the work is done (or set 'tdd_gate: false')"
        )
        self._log("TDD_GATE", why, state="PENDING", artifacts=[self.f.folder / "tdd-gate.log"])
        return why

    def time_left(self) -> float | None:
        return None if self.timeout is None else self.timeout - self.elapsed()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def begin(self, env: dict[str, str]) -> dict[str, Any]:
        """Start the next iteration: its number in the agent's environment and the status; the launch
        with the iteration's timeout (the agent's, cut to what the task's timeout leaves)."""
        self.iteration += 1
        self.begun += 1
        self.in_strategy += 1
        env["ORCH_ITERATION"] = str(self.iteration)
        env["ORCH_STRATEGY"] = str(self.strategy)
        with contextlib.suppress(OSError):
            self.log_offset = self.f.log.stat().st_size
        self.reflection = None
        self.meter.begin()
        spent = self.meter.before
        self.save()  # a run that ends without a judge (the agent paused it) goes on from here
        self._budget_in_brief(spent)

        def mark(st: state.Status) -> None:
            if st.get("state") == "RUNNING":
                if self.begun > 1:  # the one before ended without finish's count: it goes on
                    st["iterations"] = int(st.get("iterations") or 0) + 1
                st.update(
                    iteration=self.iteration,
                    max_iterations=self.max_iterations,
                    strategy=f"{self.strategy}/{self.strategies}",
                    usage=spent.as_json(),
                    budget=self.meter.budget.as_json(),
                )

        with contextlib.suppress(OrchError, OSError):
            state.update(self.project, self.store, self.task_id, mark, create=False)
        launch = dict(self.launch)
        launch["argv"] = argv_now(launch, self.f.context, self.meter)
        left = self.time_left()
        if left is not None:
            launch["timeout"] = round(max(0.1, min(float(launch.get("timeout") or left), left)), 1)
        return launch

    def _budget_in_brief(self, spent: budget.Spent) -> None:
        """The brief's line on the budget left, as it is now (after a resume with more, say)."""
        line = budget.left_line(spent, self.meter.budget)
        try:
            brief = self.f.context.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        lines = brief.split("\n")
        new = [line if ln.startswith(budget.LEFT) and line else ln for ln in lines]
        if new != lines:
            self.store.write_text(self.f.context, "\n".join(new))

    def take_reflection(self) -> None:
        """REFLECTION.md out of the worktree before the snapshot: into progress.md, never committed."""
        text = learnings.take(self.launch["cwd"])
        self.reflection = self.reflection if text is None else text

    @property
    def last_reflection(self) -> str | None:
        """The run's last reflection: this iteration's, else the latest an earlier one left."""
        return self.reflection or next((e.reflection for e in reversed(self.history) if e.reflection), None)

    # -- after an iteration ------------------------------------------------------------------------

    def judge(self, exit_code: int | None, reason: str | None, stop_asked: Callable[[], bool]) -> Judged:
        """Called by ``finish`` once the iteration's work is in (the lock held): checks, accept, and
        what comes next."""
        if stop_asked():
            return Judged()
        entry = loopnotes.Entry(self.iteration, self.strategy, at=eventlog.utcnow(), reflection=self.reflection)
        entry.ran.append(("agent", exit_code))
        output = ""
        if reason is not None or exit_code != 0:
            entry.failure = f"the agent {reason}" if reason else f"the agent exited with code {exit_code}"
            output = self._read(self.f.log, self.log_offset)
        else:
            for n, command in enumerate(self.launch.get("check") or [], 1):
                result, note = boxcmd.run(
                    self.project, self.launch, self.f, command, self.f.folder / "check.log", stop_asked, what="check"
                )
                if note:  # a link where orch writes: the run fails, as finish says
                    return Judged(problems=[note])
                entry.ran.append((f"check `{command}`", result["exit_code"]))
                if result["exit_code"] != 0:
                    entry.failure = f"check {n} `{command}` failed (exit {result['exit_code']})"
                    output = self._read(self.f.folder / "check.log")
                    break
            if not entry.failure:
                if stop_asked():
                    return Judged()
                result, note = boxcmd.run(
                    self.project, self.launch, self.f, str(self.launch["accept"]), self.f.accept_log, stop_asked
                )
                if note:
                    return Judged(accept=result, problems=[note])
                entry.ran.append(("accept", result["exit_code"]))
                passed = "PASS" if result["exit_code"] == 0 else f"FAIL exit={result['exit_code']}"
                self._log("ACCEPT", passed, iteration=self.iteration, artifacts=[self.f.accept_log])
                if result["exit_code"] == 0 or stop_asked():
                    return Judged(accept=result)
                entry.failure = f"the accept command failed (exit {result['exit_code']})"
                output = self._read(self.f.accept_log)
        return self._failed(entry, output)

    def _log(
        self,
        action: str,
        result: str,
        *,
        state: str = "RUNNING",
        iteration: int | None = None,
        artifacts: Sequence[Path] = (),
    ) -> None:
        """One line of this task's loop in the event log."""
        eventlog.append(
            self.project.log_path, state=state, task=self.task_id, iteration=iteration, action=action,
            result=result, artifacts=[self.project.rel(a) for a in artifacts],
        )  # fmt: skip

    def _failed(self, entry: loopnotes.Entry, output: str) -> Judged:
        entry.sig = loopnotes.signature(output + "\n" + entry.failure)
        entry.output = loopnotes.excerpt(output)
        tree = self._tree(self._tip())
        entry.changed = tree != self.prev_tree
        self.prev_tree = tree
        self.history.append(entry)
        iter_log = self.f.folder / f"iter-{entry.iteration}.log"
        self._write(iter_log, f"{entry.failure}\nran: {entry.ran_text()}\n\n{output}", append=False)
        self._write(
            self.f.folder / "progress.md",
            loopnotes.progress_entry(entry, self.max_iterations, self.strategies),
            append=True,
        )
        self._log("ITERATE", f"FAIL sig={entry.sig}", iteration=entry.iteration, artifacts=[iter_log])
        recent = [e.sig for e in self.history if e.strategy == self.strategy][-STUCK:]
        ended = None
        if not entry.changed:
            ended = "the last iteration changed nothing"
        elif len(recent) == STUCK and len(set(recent)) == 1:
            ended = f"the same failure (signature {entry.sig}) {STUCK} iterations in a row"
        elif self.in_strategy >= self.per_strategy:
            ended = f"{self.per_strategy} iterations without a pass"
        left = self.time_left()
        spent = None
        if self.iteration >= self.max_iterations:
            spent = f"{self.iteration} iterations without a pass (the limit is {self.max_iterations})"
        elif left is not None and left <= 0:
            spent = "the task's timeout ran out"
        elif ended and self.strategy >= self.strategies:
            spent = f"{self.strategies} strategies tried, the last one ended: {ended}"
        try:
            if spent:
                return self._exhausted(spent)
            if ended:
                self.shift(ended)
        except (OrchError, OSError) as exc:  # the work stays where it is; a person takes it from there
            why = exc.message if isinstance(exc, OrchError) else str(exc)
            return Judged(final="FAILED", why=f"the loop could not set the worktree back to its start: {why}")
        shift_why = ended
        brief = loopnotes.next_brief(
            self.base_brief,
            self.history,
            iteration=self.iteration + 1,
            max_iterations=self.max_iterations,
            strategy=self.strategy,
            strategies=self.strategies,
            shift_why=shift_why,
            budget_left=budget.left_line(self.meter.before, self.meter.budget),
        )
        self.store.write_text(self.f.context, brief)
        self.save()
        nearly = budget.nearly(self.meter.before, self.meter.budget)
        if nearly:
            return Judged(final="PAUSED", why=f"{nearly}; {resume_hint(self.task_id)}")
        self.go_on = True
        return Judged(go_on=True)

    def shift(self, why: str) -> None:
        """End this strategy: its work kept as an attempt, the worktree back at the start, the next one."""
        self._keep_attempt()
        self._reset()
        self._log("STRATEGY_SHIFT", f"strategy {self.strategy + 1}/{self.strategies}: {why}", iteration=self.iteration)
        self.strategy += 1
        self.in_strategy = 0
        self.prev_tree = self._tree(self.base_sha)

    def agent_blocked(self, question: str) -> Judged:
        """The agent ended its run with ``orch report BLOCKED``: its question goes in a blocker report
        (its work stays in the worktree, for the person who answers)."""
        path = self.f.folder / "BLOCKER_REPORT.md"
        report = loopnotes.blocker_report(
            template("BLOCKER_REPORT.md"),
            task_id=self.task_id,
            title=str(self.launch.get("title") or ""),
            history=self.history,
            strategies=self.strategies,
            why=f"the agent reported BLOCKED in iteration {self.iteration}",
            attempts=self.attempts,
            question=question,
        )
        self._write(path, report, append=False)
        return Judged(final="BLOCKED", why=f"the agent reported BLOCKED: {question}; see {self.project.rel(path)}")

    def _exhausted(self, why: str) -> Judged:
        self._keep_attempt()
        self._reset()
        report = loopnotes.blocker_report(
            template("BLOCKER_REPORT.md"),
            task_id=self.task_id,
            title=str(self.launch.get("title") or ""),
            history=self.history,
            strategies=self.strategies,
            why=why,
            attempts=self.attempts,
        )
        path = self.f.folder / "BLOCKER_REPORT.md"
        self._write(path, report, append=False)
        return Judged(final="BLOCKED", why=f"the loop is exhausted: {why}; see {self.project.rel(path)}")

    # -- git ---------------------------------------------------------------------------------------

    def _tip(self) -> str | None:
        return git.rev_parse(f"refs/heads/{refs.branch_name(self.task_id)}", cwd=self.project.root)

    def _tree(self, commit: str | None) -> str | None:
        if not commit:
            return None
        r = git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{tree}}"],
            cwd=self.project.root,
            check=False,
        )
        return r.stdout.strip() if r.ok else None

    def _keep_attempt(self) -> None:
        self.attempts.append(keep_attempt(self.project, self.task_id, self.base_sha) or "(no commit)")

    def _reset(self) -> None:
        reset_to_base(self.project, self.task_id, Path(self.launch["cwd"]), self.base_sha)

    # -- files -------------------------------------------------------------------------------------

    def _read(self, path: Path, offset: int = 0) -> str:
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(offset, size - (1 << 20)))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _write(self, path: Path, text: str, *, append: bool) -> None:
        fd, _note = open_run_file(path, append=append)  # never through a link the agent put there
        try:
            os.write(fd, text.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)


# -- setting a task aside and back to its start (the loop, orch retry) ------------------------------


def keep_attempt(project: Project, task_id: str, base_sha: str | None) -> str | None:
    """Keep the task branch's tip, when it holds work beyond the base, under the next free
    ``refs/orch/attempts/<id>/<n>`` (numbered on across strategies, runs and retries; a ref is only
    ever created, never moved); the ref, or None."""
    root = project.root
    tip = git.rev_parse(f"refs/heads/{refs.branch_name(task_id)}", cwd=root)
    if not tip or tip == base_sha:
        return None
    prefix = f"{refs.ATTEMPTS_PREFIX}/{task_id}/"
    taken = git.out(["for-each-ref", "--format=%(refname)", prefix], cwd=root).split()
    n = max((int(name[len(prefix) :]) for name in taken if name[len(prefix) :].isdigit()), default=0) + 1
    name = f"{prefix}{n}"
    git.run(["update-ref", name, tip, "0" * len(tip)], cwd=root)
    return name


def reset_to_base(project: Project, task_id: str, worktree: Path, base_sha: str | None) -> None:
    """The task's branch and worktree back to the commit the task started from (an attempt ref holds
    the work); the box's shadow goes too, or its refs would bring the attempt back."""
    tg = taskgit.open_worktree(project, task_id, worktree)
    if tg is None or tg.admin is None or tg.problem or not base_sha:
        raise OrchError(f"cannot reset task {task_id}'s worktree: {tg.problem if tg else 'no worktree'}")
    tg.git(["checkout", "-q", "-f", "-B", refs.branch_name(task_id), base_sha])
    tg.git(["clean", "-q", "-f", "-d"])
    shadow = boxgit.folder_of(project, task_id)
    if shadow.exists() or shadow.is_symlink():
        boxgit._remove(shadow)
