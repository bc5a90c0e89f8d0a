"""The merge ceremony: ordered, test-gated, reversible integration of verified work.

1. Record the base sha (kept as ``refs/orch/pre-merge/<id>``) and triage every spun task.
2. Verify each queued task again at its current sha; a violation quarantines it.
3. In dependency order, merge each verified sha with ``--no-ff`` into orch's own integration worktree
   (never the user's checkout), run the test command and the hard requirement checks, and undo the
   merge if they fail. ``--batch`` tests many merges at once and bisects on failure.
4. Land: move the base only by compare-and-swap from the recorded sha, or fast-forward the user's
   clean checkout of it; a dirty checkout is left alone and the result parked on ``orch/integration``.
5. Write the report, the statuses and the event log.

A journal (``.orch/run/merges/journal.json``) is written before every step. Killed at any point, the
base is either untouched or at a fully tested result, and ``orch merge --resume`` finishes the
ceremony or rolls it back.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orch.core import eventlog, git, procs, refs, state
from orch.core.context import Ctx
from orch.core.errors import CheckFailed, EnvError, InputError
from orch.core.store import atomic_write

JOURNAL = "journal.json"  # JSON is YAML too: read back through the store and validated like the rest
INTEGRATION_DIR = "_integration"
PARK_BRANCH = "orch/integration"
EXCERPT_LINES = 30

Progress = Callable[[str], None]
_KILL_AT = os.environ.get("ORCH_TEST_KILL_AT", "")


def _fault_point(step: str) -> None:
    """Fault injection for the crash-safety tests (like git's GIT_TEST_* variables): with
    ORCH_TEST_KILL_AT naming this step, die as abruptly as a power cut would, right here."""
    if _KILL_AT and step == _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Result:
    task: str
    outcome: str  # MERGED REVERTED CONFLICT QUARANTINED SKIPPED NOT_READY
    detail: str | None = None
    sha: str | None = None
    merged_sha: str | None = None
    paths: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    excerpt: str | None = None
    log: str | None = None
    conflicts_with: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "conflicts_with"}
        if self.conflicts_with:
            data["conflicts_with"] = self.conflicts_with
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**data)


@dataclass
class Outcome:
    id: str
    into: str
    mode: str
    base_before: str
    base_after: str | None
    pre_ref: str | None
    landed: str
    message: str | None
    test_command: str | None
    test_runs: int
    results: list[Result]
    report: str | None
    rollback: str | None
    titles: dict[str, str]
    named: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # each test run: label, passed, log

    @property
    def failed(self) -> bool:
        """Exit 1: something did not make it (or, for a forecast, would not), or nothing landed."""
        if self.landed in ("base-moved", "parked"):
            return True
        for r in self.results:
            if r.outcome in ("REVERTED", "CONFLICT", "QUARANTINED", "SKIPPED"):
                return True
            if r.outcome == "NOT_READY" and r.task in self.named:
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        tasks = []
        for r in self.results:
            item = r.to_json()
            item["title"] = self.titles.get(r.task)
            tasks.append(item)
        return {
            "id": self.id,
            "into": self.into,
            "dry_run": self.mode == "dry-run",
            "mode": self.mode,
            "base_before": self.base_before,
            "base_after": self.base_after,
            "pre_ref": self.pre_ref,
            "landed": self.landed,
            "message": self.message,
            "test_command": self.test_command,
            "test_runs": self.test_runs,
            "report": self.report,
            "rollback": self.rollback,
            "runs": self.runs,
            "tasks": tasks,
        }


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _quiet(_: str) -> None:
    pass


# -- triage ------------------------------------------------------------------------------------------


@dataclass
class Triage:
    queue: list[str]  # ready to verify and merge, in no particular order yet
    shas: dict[str, str]
    results: list[Result]  # decided without merging: not ready, quarantined
    statuses: dict[str, state.Status]
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # fresh verdicts, by task
    named: list[str] = field(default_factory=list)  # tasks the person asked for by id


def _branch_tip(tips: dict[str, str], task_id: str, status: state.Status) -> str | None:
    return tips.get(status.get("branch") or f"orch/{task_id}")


def _tips(ctx: Ctx) -> dict[str, str]:
    """The sha of every orch/* branch, from one git call."""

    return refs.branch_heads(ctx.project.root)


def triage(ctx: Ctx, ids: list[str] | None) -> Triage:
    """Sort every spun task (or the ``ids`` named) into the queue and the rest, with reasons.

    SUCCESS and SKIPPED go in the queue; so do REVERTED, CONFLICT and quarantined tasks whose branch
    has new commits since, or that are named explicitly (to try again). FAILED, BLOCKED, PAUSED,
    CRASHED and RUNNING are not ready. A task no longer in the plan is not merged.
    """
    statuses = state.read_all(ctx.project, ctx.store)  # turns dead RUNNING tasks CRASHED
    named = list(dict.fromkeys(ids or []))
    wanted = named if named else list(statuses)
    for task_id in named:
        if task_id not in statuses:
            ctx.plan.require(task_id)
            raise InputError(
                f"task {task_id} was never spun, so there is nothing to merge", hint=f"orch spin {task_id}"
            )
    queue: list[str] = []
    shas: dict[str, str] = {}
    results: list[Result] = []
    tips = _tips(ctx)
    for task_id in wanted:
        st = statuses[task_id]
        current = st.get("state", "PENDING")
        tip = _branch_tip(tips, task_id, st) if current not in ("PENDING", "CLEANED", "MERGED") else None
        merge = st.get("merge") or {}
        verdict = st.get("verdict") or {}
        if current in ("MERGED", "CLEANED"):
            later = _branch_tip(tips, task_id, st)
            if later is not None and merge.get("sha") and later != merge.get("sha"):
                results.append(
                    Result(
                        task_id,
                        "NOT_READY",
                        f"merged at {str(merge.get('sha'))[:12]}; its branch has commits since, which orch does "
                        "not merge (give them a task of their own)",
                        sha=later,
                    )
                )
            elif named:
                results.append(Result(task_id, "NOT_READY", f"already {current.lower()}"))
            continue
        if current == "PENDING":
            if named:
                results.append(Result(task_id, "NOT_READY", "not spun yet"))
            continue
        if tip is None:
            results.append(Result(task_id, "NOT_READY", f"its branch {st.get('branch') or 'orch/' + task_id} is gone"))
            continue
        if ctx.plan.get(task_id) is None:
            results.append(
                Result(task_id, "NOT_READY", "no longer in .orch/plan.md (add it back to merge it)", sha=tip)
            )
            continue
        if current in ("SUCCESS", "SKIPPED"):
            queue.append(task_id)
        elif current in ("REVERTED", "CONFLICT"):
            if merge.get("sha") != tip or named:  # new work since, or asked for: try again
                queue.append(task_id)
            else:
                continue  # reported by the ceremony that decided it
        elif current in state.VIOLATIONS:
            if verdict.get("sha") != tip or named:
                queue.append(task_id)  # changed since the verdict, or asked for: verification decides
            elif current != "QUARANTINED":
                results.append(_quarantined(task_id, tip, verdict))  # a fresh verdict: quarantine it now
            else:
                continue  # quarantined by an earlier ceremony and unchanged
        elif current == "RUNNING":
            results.append(Result(task_id, "NOT_READY", "still running"))
        else:  # FAILED BLOCKED PAUSED CRASHED
            reason = st.get("reason")
            results.append(Result(task_id, "NOT_READY", current + (f": {reason}" if reason else "")))
        if task_id in queue:
            shas[task_id] = tip
    return Triage(queue, shas, results, statuses, named=named)


def _quarantined(task_id: str, sha: str, verdict: dict[str, Any] | Any) -> Result:
    if isinstance(verdict, dict):
        violations = verdict.get("violations") or []
        result = verdict.get("result")
        paths = [v["path"] for v in violations]
        rules = [v["rule"] for v in violations]
    else:
        result = verdict.result
        paths = [v.path for v in verdict.violations]
        rules = [v.rule for v in verdict.violations]
    return Result(
        task_id, "QUARANTINED", f"{result}: {len(paths)} offending path(s)", sha=sha, paths=paths, rules=rules
    )


def _reverify(ctx: Ctx, tri: Triage, *, log: bool, base_tip: str) -> list[str]:
    """Trust but verify: judge each queued task again at the exact sha that would be merged.

    The verdicts are kept in ``tri.verdicts`` and written to the statuses together with the outcome,
    one write per task.
    """
    from concurrent.futures import ThreadPoolExecutor

    from orch.verify import verify

    def judge(task_id: str) -> Any:
        return verify.verify_task(ctx, task_id, sha=tri.shas[task_id], record=False, base_tip=base_tip)

    # Each verdict is mostly two git processes; a few threads overlap them. Load what they share first.
    ctx.plan  # noqa: B018
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(tri.queue)))) as pool:
        verdicts = list(pool.map(judge, tri.queue))
    ok: list[str] = []
    for task_id, verdict in zip(tri.queue, verdicts, strict=True):
        sha = tri.shas[task_id]
        tri.verdicts[task_id] = verdict.to_dict()
        if log:
            ctx.log(
                tri.statuses[task_id].get("state", "PENDING"),
                "VERIFY",
                f"{verdict.result} sha={sha[:12]}",
                task=task_id,
            )
        if verdict.violations and verdict.result != "OK":
            tri.results.append(_quarantined(task_id, sha, verdict))
        elif not verdict.mergeable:
            pending = ", ".join(verdict.pending_acks)
            tri.results.append(
                Result(
                    task_id,
                    "SKIPPED",
                    f"soft lock(s) {pending} need acknowledging: orch ack {task_id} LOCK",
                    sha=sha,
                    rules=list(verdict.pending_acks),
                )
            )
        else:
            ok.append(task_id)
    return ok


def _deps(ctx: Ctx, task_id: str) -> list[str]:
    """A queued task's dependencies (triage keeps tasks that left the plan out of the queue)."""
    task = ctx.plan.get(task_id)
    return task.deps if task else []


def _title(ctx: Ctx, task_id: str) -> str:
    task = ctx.plan.get(task_id)
    return task.title if task else task_id


def _order(ctx: Ctx, ids: list[str]) -> list[str]:
    from orch.core.plan import topo_order

    in_plan = [i for i in topo_order(ctx.plan, ids)]
    return in_plan + [i for i in ids if i not in in_plan]


# -- the integration worktree ---------------------------------------------------------------------


class Integration:
    """orch's own worktree where merges are made and tested; the user's checkout is never used.

    Every git command here names the worktree's private git folder and its tree explicitly
    (``--git-dir``/``--work-tree``): if a test command deleted the worktree's ``.git`` file, git would
    otherwise search upwards and find the user's checkout.
    """

    def __init__(self, ctx: Ctx, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        self.admin: Path | None = None  # <common dir>/worktrees/<name>

    def _find_admin(self) -> Path | None:
        """The private git folder of our worktree, if the worktree is intact."""
        try:
            text = (self.path / ".git").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        admin = Path(text.removeprefix("gitdir: ")) if text.startswith("gitdir: ") else None
        worktrees = (self.ctx.project.common_dir / "worktrees").resolve()
        if admin is None or not admin.is_absolute() or admin.resolve().parent != worktrees:
            return None
        try:
            back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
        except OSError:
            return None
        return admin if back.resolve() == (self.path / ".git").resolve() else None

    def prepare(self, sha: str) -> None:
        root = self.ctx.project.root
        self.admin = self._find_admin()
        if self.admin is None:
            if self.path.exists():  # a broken scratch tree of ours: everything in it is in git's objects
                shutil.rmtree(self.path)
            git.run(["worktree", "prune"], cwd=root)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git.run(["worktree", "add", "--detach", "--force", "--", str(self.path), sha], cwd=root, no_hooks=True)
            self.admin = self._find_admin()
            if self.admin is None:
                raise EnvError(f"could not set up the integration worktree at {self.path}")
        self.reset(sha)

    def git(self, args: list[str], **kw: Any) -> git.Result:
        assert self.admin is not None, "prepare() first"
        where = [f"--git-dir={self.admin}", f"--work-tree={self.path}"]
        # No automatic gc/maintenance in the middle of a ceremony: it would run after every merge
        # commit here; the person's own git commands still trigger it as usual.
        where += ["-c", "maintenance.auto=false", "-c", "gc.auto=0"]
        return git.run([*where, *args], cwd=self.path, **kw)

    def reset(self, sha: str) -> None:
        """Back to ``sha`` with a clean tree, whatever a killed merge left behind."""
        assert self.admin is not None
        lock = self.admin / "index.lock"
        if lock.exists():  # left by a git killed with us; this worktree is ours alone
            lock.unlink()
        self.git(["merge", "--abort"], check=False)
        self.git(["checkout", "--detach", "--force", sha], no_hooks=True)
        self.git(["reset", "--hard", "--quiet", sha], no_hooks=True)
        self.git(["clean", "-fdxq"])

    def merge(self, task_id: str, sha: str, title: str) -> tuple[str | None, list[str]]:
        """Merge ``sha``; return (new head, []) or (None, conflicting paths) after aborting."""
        message = f"orch: merge {task_id}: {title}\n\nMerged by orch merge at {sha}."
        r = self.git(
            ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", message, sha],
            check=False,
            no_hooks=True,
            env=git.ORCH_IDENT,
        )
        if r.ok:
            return self.head(), []
        paths = self.git(["diff", "--name-only", "--diff-filter=U", "-z"]).stdout.split("\0")
        paths = [p for p in paths if p]
        self.git(["merge", "--abort"], check=False)
        if not paths:
            raise EnvError(f"git merge of {task_id} failed without a conflict: {(r.stderr or r.stdout).strip()}")
        return None, paths

    def head(self) -> str:
        """HEAD of the integration worktree (always detached), read from its file: no git process."""
        assert self.admin is not None
        return (self.admin / "HEAD").read_text().strip()


def run_tests(
    command: str, cwd: Path, timeout: float, log_path: Path, *, on_start: Callable[[int], None] | None = None
) -> tuple[bool, str]:
    """Run the integration test command through ``sh -c`` (a person wrote it); (passed, excerpt)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = git.clean_env({"ORCH_INTEGRATION": "1"})
    with open(log_path, "wb") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            ["sh", "-c", command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        if on_start is not None:
            on_start(proc.pid)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            log.write(f"\norch: the test command timed out after {timeout:g}s\n".encode())
            code = -1
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    excerpt = "\n".join(lines[-EXCERPT_LINES:])
    if code != 0 and code != -1:
        excerpt += f"\n(exit code {code})"
    return code == 0, excerpt


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the ceremony --------------------------------------------------------------------------------------


class Ceremony:
    def __init__(self, ctx: Ctx, journal: dict[str, Any], progress: Progress) -> None:
        self.ctx = ctx
        self.j = journal
        self.progress = progress
        self.integration = Integration(ctx, Path(journal["integration"]))
        self.folder = ctx.project.merges_dir / journal["id"]

    # journal ---------------------------------------------------------------------------------------

    def save(self, step: str) -> None:
        self.j["step"] = step
        # Renamed into place, not fsynced: the journal must outlive a killed orch, which the atomic
        # rename guarantees; against power loss git's own refs are not fsynced either (core.fsync).
        atomic_write(self.ctx.project.merges_dir / JOURNAL, json.dumps(self.j, indent=1) + "\n", durable=False)
        _fault_point(step)

    def decided(self) -> set[str]:
        return {r["task"] for r in self.j["results"]}

    def decide(self, result: Result, *, good: str | None = None, save: bool = True) -> None:
        self.j["results"].append({k: v for k, v in result.to_json().items() if v not in (None, [])})
        if good is not None:
            self.j["good"] = good
        said = result.detail or ""
        if result.outcome == "MERGED" and result.sha:
            said = f"{result.sha[:12]} into {self.j['target']}" + (f" ({said})" if said else "")
        elif result.paths:
            said += ": " + ", ".join(result.paths[:5]) + (" ..." if len(result.paths) > 5 else "")
        self.ctx.log(
            result.outcome,
            "MERGE",
            said[:300],
            task=result.task,
            artifacts=[result.log] if result.log else [],
        )
        if save:
            self.save(f"decided {result.task}")

    def outcome_of(self, task_id: str) -> str | None:
        for r in self.j["results"]:
            if r["task"] == task_id:
                return str(r["outcome"])
        return None

    # building blocks ------------------------------------------------------------------------------

    def title(self, task_id: str) -> str:
        return _title(self.ctx, task_id)

    def blocked_by(self, task_id: str, ahead: frozenset[str] = frozenset()) -> str | None:
        """The first dependency that is not merged, now or earlier; None if all are.

        A dependency in ``ahead`` (undecided, earlier in the same batch) counts as satisfiable: the
        batch merges it first, and if it fails the batch is split and this is asked again.
        """
        for dep in _deps(self.ctx, task_id):
            if self.outcome_of(dep) == "MERGED" or (dep in ahead and self.outcome_of(dep) is None):
                continue
            if self.outcome_of(dep) is None and state.merged(state.read(self.ctx.project, self.ctx.store, dep)):
                continue
            now = self.outcome_of(dep)
            if now is None:
                st = state.read(self.ctx.project, self.ctx.store, dep)
                now = (st or {}).get("state", "PENDING")
                if now == "SUCCESS" and dep not in self.j["queue"]:
                    return f"dependency {dep} is not merged (SUCCESS, but not part of this merge: name it too)"
            return f"dependency {dep} is not merged ({now})"
        return None

    def skip_blocked(self, tasks: list[str], *, batch: bool = False) -> list[str]:
        keep: list[str] = []
        for task_id in tasks:
            reason = self.blocked_by(task_id, frozenset(keep) if batch else frozenset())
            if reason:
                self.decide(Result(task_id, "SKIPPED", reason, sha=self.j["shas"][task_id]))
            else:
                keep.append(task_id)
        return keep

    def test(self, label: str) -> tuple[bool, str, str]:
        """Run the test command and the hard requirement checks in the integration worktree."""
        n = self.j["test_runs"] = int(self.j.get("test_runs", 0)) + 1
        log_path = self.folder / f"test-{n:03d}-{label}.log"
        rel = self.ctx.project.rel(log_path)
        self.progress(f"testing {label} (run {n})")
        command = self.j.get("test_command")

        def started(pid: int) -> None:  # so that a resumed ceremony can stop a test run we left behind
            self.j["test_pid"], self.j["test_start"] = pid, procs.start_time(pid)
            self.save(f"testing {label}")

        if command:
            passed, excerpt = run_tests(
                command, self.integration.path, self.ctx.config.test_timeout, log_path, on_start=started
            )
        else:
            passed, excerpt = True, ""
            atomic_write(log_path, "no test command configured (test_command in .orch/config.yaml)\n")
        if passed:
            from orch.verify import verify

            failures = verify.check_requirements(self.ctx, self.integration.path, hard_only=True)
            if failures:
                passed = False
                excerpt = "\n".join(_describe_requirement(f) for f in failures)
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write("\nhard requirement checks failed:\n" + excerpt + "\n")
        self.j["test_pid"] = self.j["test_start"] = None
        self.j.setdefault("runs", []).append({"label": label, "passed": passed, "log": rel})
        self.ctx.log("RUNNING", "TEST", f"{label}: {'pass' if passed else 'FAIL'} (run {n})", artifacts=[rel])
        return passed, excerpt, rel

    def merge_one(self, task_id: str) -> None:
        """The sequential step: merge on top of the good head, test, keep or undo."""
        sha = self.j["shas"][task_id]
        good = self.j["good"]
        self.save(f"merging {task_id}")
        self.progress(f"merging {task_id}")
        head, conflicts = self.integration.merge(task_id, sha, self.title(task_id))
        if head == good:  # "Already up to date": its work is in the base already
            self.decide(Result(task_id, "MERGED", "already contained in the base", sha=sha, merged_sha=good))
            return
        if head is None:
            self.integration.reset(good)
            self.decide(Result(task_id, "CONFLICT", f"conflicts in {len(conflicts)} path(s)", sha=sha, paths=conflicts))
            return
        passed, excerpt, log = self.test(task_id)
        if passed:
            self.decide(Result(task_id, "MERGED", None, sha=sha, merged_sha=head, log=log or None), good=head)
        else:
            self.integration.reset(good)
            self.decide(
                Result(
                    task_id,
                    "REVERTED",
                    "tests failed after merging; the merge was undone",
                    sha=sha,
                    excerpt=excerpt,
                    log=log or None,
                )
            )

    def run_sequential(self, tasks: list[str]) -> None:
        for task_id in tasks:
            if task_id in self.decided():
                continue
            if not self.skip_blocked([task_id]):
                continue
            self.merge_one(task_id)

    def run_batch(self, tasks: list[str]) -> None:
        total = len([t for t in tasks if t not in self.decided()])
        # Bisection costs runs when a half fails; it pays off when failures are sparse. Until the
        # first culprit is found it may spend up to ~log2(N) runs beyond one-by-one (that is what
        # finds a single failure in 1 + 2*log2(N) runs); once failures show up, it keeps the total
        # within one-by-one + 1 from there on and falls back to one-by-one when bisecting cannot.
        first_allowance = _first_allowance(total)

        def allowance() -> int:
            culprits = sum(1 for r in self.j["results"] if r["task"] in tasks and r["outcome"] == "REVERTED")
            return first_allowance if culprits == 0 else 0

        def slack() -> int:
            undecided = len([t for t in tasks if t not in self.decided()])
            return total + 1 - (int(self.j.get("test_runs", 0)) + undecided)

        def process(batch: list[str]) -> None:
            batch = [t for t in batch if t not in self.decided()]
            batch = self.skip_blocked(batch, batch=True)
            if len(batch) <= 1:
                self.run_sequential(batch)
                return
            good = self.j["good"]
            self.integration.reset(good)
            merged: list[str] = []
            for task_id in list(batch):
                sha = self.j["shas"][task_id]
                self.save(f"merging {task_id} (batch of {len(batch)})")
                self.progress(f"merging {task_id}")
                head, conflicts = self.integration.merge(task_id, sha, self.title(task_id))
                if head is not None:
                    merged.append(task_id)
                    continue
                if not merged:  # a conflict with the good head itself: the same as one by one
                    self.decide(
                        Result(task_id, "CONFLICT", f"conflicts in {len(conflicts)} path(s)", sha=sha, paths=conflicts)
                    )
                    batch.remove(task_id)
                    continue
                # It may conflict only with a task ahead that will not make it: decide it on its own later.
                self.integration.reset(good)
                split(batch)
                return
            if not merged:
                return
            if len(merged) == 1:
                self.integration.reset(good)
                self.run_sequential(merged)
                return
            passed, excerpt, log = self.test(f"batch-{len(merged)}")
            if passed:
                head = self.integration.head()
                for task_id in merged:  # decided together: one journal entry for the whole batch
                    self.decide(
                        Result(
                            task_id,
                            "MERGED",
                            f"in a batch of {len(merged)}",
                            sha=self.j["shas"][task_id],
                            merged_sha=head,
                            log=log or None,
                        ),
                        good=head,
                        save=False,
                    )
                self.save(f"decided {', '.join(merged)}")
                return
            self.integration.reset(good)
            split(merged)

        def split(batch: list[str]) -> None:
            if slack() >= 1 - allowance():
                mid = len(batch) // 2
                process(batch[:mid])
                process(batch[mid:])
            else:  # failures are dense: one by one costs less than bisecting further
                self.run_sequential(batch)

        process(tasks)

    # landing ---------------------------------------------------------------------------------------

    def land(self) -> tuple[str, str | None]:
        """Move the base to the good head; returns (how, message)."""
        root = self.ctx.project.root
        target = self.j["target"]
        base, good = self.j["base_sha"], self.j["good"]
        now = git.rev_parse(f"refs/heads/{target}", cwd=root)
        if good == base:
            return "nothing", None
        if now == good:
            return self.j.get("landed") or "update-ref", None  # landed before a crash
        if now != base:
            self._park(good)
            return "base-moved", (
                f"{target} moved from {base[:12]} to {(now or '?')[:12]} during the ceremony, so nothing landed. "
                f"The tested result is on {PARK_BRANCH}; run orch merge again to integrate onto the new {target}."
            )
        checkout = _checkout_of(root, target)
        # The way of landing is in the journal before the base moves, so that a resumed ceremony
        # reports it right even if orch dies right after.
        self.j["landed"] = "update-ref" if checkout is None else "fast-forward"
        self.save("landing")
        if checkout is None:
            r = git.run(
                ["update-ref", "-m", f"orch merge {self.j['id']}", f"refs/heads/{target}", good, base],
                cwd=root,
                check=False,
            )
            if not r.ok:
                self._park(good)
                return "base-moved", f"{target} moved while landing; the tested result is on {PARK_BRANCH}"
            return "update-ref", None
        dirty = git.run(["status", "--porcelain", "--untracked-files=no"], cwd=checkout, optional_locks=False)
        if dirty.stdout.strip():
            self._park(good)
            return "parked", (
                f"your checkout of {target} at {checkout} has uncommitted changes, so orch left it untouched. "
                f"The tested result is on {PARK_BRANCH}; when your checkout is clean, land it with: "
                f"git -C {shlex.quote(str(checkout))} merge --ff-only {PARK_BRANCH}"
            )
        r = git.run(
            ["merge", "--ff-only", "--no-overwrite-ignore", "--quiet", good], cwd=checkout, check=False, no_hooks=True
        )
        if not r.ok:
            self._park(good)
            return "parked", (
                f"could not fast-forward your checkout of {target} ({(r.stderr or r.stdout).strip()}). "
                f"The tested result is on {PARK_BRANCH}; land it with: git merge --ff-only {PARK_BRANCH}"
            )
        return "fast-forward", None

    def _park(self, sha: str) -> None:
        # PARK_BRANCH can never be a task's branch: plan.md refuses the task id "integration".
        old = git.rev_parse(f"refs/heads/{PARK_BRANCH}", cwd=self.ctx.project.root) or ""
        git.run(
            ["update-ref", "-m", "orch merge: parked result", f"refs/heads/{PARK_BRANCH}", sha, old],
            cwd=self.ctx.project.root,
        )


def _first_allowance(n: int) -> int:
    """Runs beyond one-by-one the batch queue may risk before any failure is found: none where
    bisecting a single failure (1 + 2*log2 n runs) would not beat one-by-one (n)."""
    if n < 2 or 1 + 2 * math.ceil(math.log2(n)) >= n + 1:
        return 0
    return max(1, math.ceil(math.log2(n)) - 2)


def batch_bound(n: int) -> int:
    """The most test runs the batch queue makes for ``n`` tasks, whatever fails (one-by-one: n)."""
    return n + 1 + 2 * _first_allowance(n)


def _describe_requirement(failure: Any) -> str:
    lock = getattr(failure, "lock", None) or getattr(failure, "lock_id", None) or "?"
    text = getattr(failure, "text", "") or ""
    output = getattr(failure, "excerpt", None) or getattr(failure, "output", "") or ""
    code = getattr(failure, "exit_code", None)
    return f"requirement {lock} failed (exit {code}): {text}\n{output}".rstrip()


def _checkout_of(root: Path, branch: str) -> Path | None:
    """The worktree (if any) that has ``branch`` checked out."""
    listing = git.out(["worktree", "list", "--porcelain", "-z"], cwd=root).split("\0")
    current: str | None = None
    for line in listing:
        if line.startswith("worktree "):
            current = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}" and current is not None:
            return Path(current)
    return None


# -- entry points ----------------------------------------------------------------------------------


def merge(
    ctx: Ctx,
    ids: list[str] | None = None,
    *,
    batch: bool = False,
    into: str | None = None,
    resume: bool = False,
    abort: bool = False,
    progress: Progress = _quiet,
) -> Outcome:
    with ctx.store.lock("merge", timeout=5):
        existing = _load_journal(ctx)
        if resume or abort:
            if existing is None:
                raise InputError("there is no interrupted merge ceremony", hint="run: orch merge")
            return _abort(ctx, existing, progress) if abort else _resume(ctx, existing, progress)
        if existing is not None:
            raise InputError(
                f"a merge ceremony ({existing['id']}) was interrupted at step '{existing['step']}'",
                hint="run orch merge --resume: it finishes the ceremony or rolls it back",
            )
        return _start(ctx, ids, batch=batch, into=into, progress=progress)


def pending(ctx: Ctx) -> dict[str, Any] | None:
    """The journal of an interrupted ceremony, if there is one (other commands leave its tasks alone)."""
    if not (ctx.project.merges_dir / JOURNAL).exists():
        return None
    return _load_journal(ctx)


def _load_journal(ctx: Ctx) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = ctx.store.load(ctx.project.merges_dir / JOURNAL, "merge_journal")
    except FileNotFoundError:
        return None
    return data


def _start(ctx: Ctx, ids: list[str] | None, *, batch: bool, into: str | None, progress: Progress) -> Outcome:
    root = ctx.project.root
    target = into or ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if base is None:
        raise InputError(f"no branch '{target}' to merge into", hint="check base_branch in .orch/config.yaml or --into")
    tri = triage(ctx, ids)
    mergeable = _reverify(ctx, tri, log=True, base_tip=base)
    order = _order(ctx, mergeable)
    stamp = _stamp()
    pre_ref = f"refs/orch/pre-merge/{stamp}"
    n = 1
    while git.rev_parse(pre_ref, cwd=root) is not None:
        n += 1
        pre_ref = f"refs/orch/pre-merge/{stamp}-{n}"
    ceremony_id = pre_ref.rsplit("/", 1)[1]
    git.run(["update-ref", pre_ref, base, ""], cwd=root)
    journal: dict[str, Any] = {
        "id": ceremony_id,
        "pid": os.getpid(),
        "target": target,
        "base_sha": base,
        "pre_ref": pre_ref,
        "integration": str(ctx.config.worktree_root / INTEGRATION_DIR),
        "batch": batch,
        "test_command": ctx.config.test_command,
        "named": tri.named,
        "queue": order,
        "shas": {t: tri.shas[t] for t in order},
        "verdicts": tri.verdicts,
        "results": [],
        "good": base,
        "step": "start",
        "test_runs": 0,
        "test_pid": None,
        "test_start": None,
        "landed": None,
        "land_detail": None,
    }
    ceremony = Ceremony(ctx, journal, progress)
    for result in tri.results:
        ceremony.decide(result, save=False)
    ctx.log(
        "RUNNING",
        "MERGE_START",
        f"into {target} at {base[:12]}; queue: {', '.join(order) or 'empty'}",
        artifacts=[pre_ref],
    )
    ceremony.save("triaged")
    return _run(ceremony)


def _landed(ctx: Ctx, j: dict[str, Any]) -> bool:
    """Did the interrupted ceremony already move the base to its result (maybe with commits since)?"""
    if j["good"] == j["base_sha"]:
        return False
    now = git.rev_parse(f"refs/heads/{j['target']}", cwd=ctx.project.root)
    return now is not None and (now == j["good"] or git.is_ancestor(j["good"], now, cwd=ctx.project.root))


def _stop_orphan_test(j: dict[str, Any]) -> None:
    """A test run the killed ceremony left behind must not race the resumed one in the same tree."""
    pid = j.get("test_pid")
    if pid and procs.alive(pid, j.get("test_start")):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                if not procs.alive(pid, j.get("test_start")):
                    break
                time.sleep(0.1)
    j["test_pid"] = j["test_start"] = None


def _resume(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    root = ctx.project.root
    ceremony = Ceremony(ctx, journal, progress)
    _stop_orphan_test(journal)
    now = git.rev_parse(f"refs/heads/{journal['target']}", cwd=root)
    if now not in (journal["base_sha"], journal["good"]) and not _landed(ctx, journal):
        # Someone moved the base before we landed: nothing of ours is on it. Roll back.
        progress("the base moved since the interrupted ceremony: rolling back")
        _drop(ctx, journal)
        raise CheckFailed(
            f"{journal['target']} moved since ceremony {journal['id']} was interrupted, before it landed; the "
            "ceremony was rolled back (nothing landed, no task branch was touched)",
            hint="run orch merge again",
        )
    ctx.log("RUNNING", "MERGE_RESUME", f"ceremony {journal['id']} from step '{journal['step']}'")
    return _run(ceremony)


def _abort(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    if _landed(ctx, journal):
        raise InputError(
            f"ceremony {journal['id']} already moved {journal['target']}; it can only be finished",
            hint="run orch merge --resume (and roll back with the command its report gives, if you want)",
        )
    _stop_orphan_test(journal)
    progress("dropping the interrupted ceremony")
    _drop(ctx, journal)
    raise CheckFailed(
        f"ceremony {journal['id']} was rolled back: nothing landed, no task branch was touched",
        hint="run orch merge to start again",
    )


def _drop(ctx: Ctx, journal: dict[str, Any]) -> None:
    integration = Integration(ctx, Path(journal["integration"]))
    integration.prepare(journal["base_sha"])
    (ctx.project.merges_dir / JOURNAL).unlink()
    ctx.log(
        "REVERTED", "MERGE_ROLLBACK", f"interrupted ceremony {journal['id']} dropped; {journal['target']} untouched"
    )


def _run(ceremony: Ceremony) -> Outcome:
    ctx, j = ceremony.ctx, ceremony.j
    if j["step"] != "landed" and not _landed(ctx, j):
        ceremony.integration.prepare(j["good"])
        todo = [t for t in j["queue"] if t not in ceremony.decided()]
        if j.get("batch"):
            ceremony.run_batch(todo)
        else:
            ceremony.run_sequential(todo)
        how, message = ceremony.land()
        j["landed"], j["land_detail"] = how, message
        ctx.log("MERGED" if how in ("update-ref", "fast-forward") else "RUNNING", "LAND", f"{how}: {message or ''}")
    else:
        j["landed"] = j.get("landed") or "update-ref"
    ceremony.save("landed")
    return _finish(ceremony)


def _finish(ceremony: Ceremony) -> Outcome:
    ctx, j = ceremony.ctx, ceremony.j
    root = ctx.project.root
    how = j.get("landed") or "nothing"
    landed = how in ("update-ref", "fast-forward")
    results = [Result.from_json(r) for r in j["results"]]
    base_after = git.rev_parse(f"refs/heads/{j['target']}", cwd=root)
    titles = {r.task: ceremony.title(r.task) for r in results}
    rollback = _rollback_command(root, j, base_after) if landed else None
    report_path = ctx.project.merges_dir / f"{j['id']}.md"
    outcome = Outcome(
        id=j["id"],
        into=j["target"],
        mode="batch" if j.get("batch") else "sequential",
        base_before=j["base_sha"],
        base_after=base_after,
        pre_ref=j["pre_ref"],
        landed=how,
        message=j.get("land_detail"),
        test_command=j.get("test_command"),
        test_runs=int(j.get("test_runs", 0)),
        results=results,
        report=ctx.project.rel(report_path),
        rollback=rollback,
        titles=titles,
        named=list(j.get("named") or []),
        runs=list(j.get("runs") or []),
    )
    atomic_write(report_path, render_report(outcome))
    _fault_point("reported")
    at = eventlog.utcnow()
    for r in results:
        if r.outcome == "NOT_READY":
            continue
        outcome_state = r.outcome
        if r.outcome == "MERGED" and not landed:
            continue  # parked or base moved: the task stays as it was and is merged next time

        verdict = (j.get("verdicts") or {}).get(r.task)

        def apply(
            st: state.Status,
            r: Result = r,
            outcome_state: str = outcome_state,
            verdict: dict[str, Any] | None = verdict,
        ) -> None:
            if verdict is not None:
                st["verdict"] = verdict
            if st.get("state") != "CLEANED":  # cleaned while the ceremony was interrupted: stays cleaned
                st["state"] = outcome_state
            st["reason"] = r.detail
            st["merge"] = {
                "outcome": r.outcome,
                "sha": r.sha,
                "merged_sha": r.merged_sha,
                "report": outcome.report,
                "at": at,
                "detail": r.detail,
            }

        # Not fsynced one by one: if a power cut loses them, the next ceremony finds merged shas already
        # in the base (MERGED without a test run) and re-derives the rest.
        state.update(ctx.project, ctx.store, r.task, apply, durable=False, check=False)
    summary = ", ".join(
        f"{sum(1 for r in results if r.outcome == o)} {o.lower()}"
        for o in ("MERGED", "REVERTED", "CONFLICT", "QUARANTINED", "SKIPPED")
        if any(r.outcome == o for r in results)
    )
    ctx.log(
        "MERGED" if landed else "SUCCESS",
        "MERGE_DONE",
        f"{how}; {summary or 'nothing to merge'}; {outcome.test_runs} test run(s)",
        artifacts=[outcome.report or ""],
    )
    _fault_point("recorded")
    (ctx.project.merges_dir / JOURNAL).unlink()
    return outcome


def _rollback_command(root: Path, j: dict[str, Any], base_after: str | None) -> str:
    target, pre = j["target"], j["pre_ref"]
    checkout = _checkout_of(root, target)
    if checkout is not None:
        return f"git -C {shlex.quote(str(checkout))} reset --keep {shlex.quote(pre)}"
    return f"git update-ref {shlex.quote('refs/heads/' + target)} {shlex.quote(pre)} {base_after}"


# -- the report --------------------------------------------------------------------------------------


def render_report(o: Outcome) -> str:
    lines = [f"# Merge ceremony {o.id}", ""]
    lines.append(f"- into: `{o.into}`")
    lines.append(f"- base before: `{o.base_before}` (kept as `{o.pre_ref}`)")
    lines.append(f"- base after: `{o.base_after}` ({_landed_words(o.landed)})")
    lines.append(f"- mode: {o.mode}; test command: `{o.test_command or '(none)'}`; test runs: {o.test_runs}")
    if o.message:
        lines += ["", f"> {o.message}"]
    lines += ["", "| task | title | outcome | detail |", "|---|---|---|---|"]
    for r in o.results:
        detail = (r.detail or "").replace("|", "\\|")
        title = o.titles.get(r.task, "").replace("|", "\\|")
        outcome = "NOT READY" if r.outcome == "NOT_READY" else r.outcome
        lines.append(f"| {r.task} | {title} | {outcome} | {detail} |")
    for r in o.results:
        if r.outcome == "REVERTED":
            lines += [
                "",
                f"## {r.task}: REVERTED",
                "",
                f"Test log: `{r.log}`" if r.log else "",
                "",
                "```text",
                (r.excerpt or "").rstrip(),
                "```",
            ]
        elif r.outcome == "CONFLICT":
            lines += ["", f"## {r.task}: CONFLICT", "", "Conflicting paths:", ""]
            lines += [f"- `{p}`" for p in r.paths]
        elif r.outcome == "QUARANTINED":
            lines += ["", f"## {r.task}: QUARANTINED", "", f"At `{r.sha}`: {r.detail}", ""]
            lines += [f"- `{p}`: {rule}" for p, rule in zip(r.paths, r.rules, strict=False)]
    if o.runs:
        lines += ["", "## Test runs", "", "| # | what | result | log |", "|---|---|---|---|"]
        for n, run in enumerate(o.runs, 1):
            verdict = "pass" if run["passed"] else "FAIL"
            lines.append(f"| {n} | {run['label']} | {verdict} | `{run['log']}` |")
    lines += ["", "## Roll back", ""]
    if o.rollback:
        lines += ["To put the base back where it was before this ceremony:", "", "```sh", o.rollback, "```"]
    else:
        lines.append("Nothing landed on the base, so there is nothing to roll back.")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _landed_words(how: str) -> str:
    return {
        "update-ref": "moved by compare-and-swap",
        "fast-forward": "your checkout was fast-forwarded",
        "parked": f"not landed: the result is on {PARK_BRANCH}",
        "nothing": "unchanged: nothing merged",
        "base-moved": f"not landed: the base moved; the result is on {PARK_BRANCH}",
    }.get(how, how)


# -- forecasts: --dry-run and orch conflicts ---------------------------------------------------------


def _merge_tree(root: Path, a: str, b: str) -> tuple[str | None, list[str]]:
    """Merge two commits in memory: (tree, []) when clean, (None, conflicting paths) when not."""
    r = git.run(["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", a, b], cwd=root, check=False)
    if r.returncode == 0:
        return r.stdout.split("\0")[0].strip(), []
    if r.returncode == 1:
        parts = [p for p in r.stdout.split("\0") if p]
        return None, sorted(set(parts[1:]))
    raise EnvError(
        f"git merge-tree failed: {(r.stderr or r.stdout).strip()}",
        hint="orch needs git >= 2.38 for merge-tree --write-tree",
    )


def dry_run(ctx: Ctx, ids: list[str] | None = None, *, into: str | None = None) -> Outcome:
    """Forecast every queued task's merge against the base and the tasks ahead; touches nothing."""
    root = ctx.project.root
    target = into or ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if base is None:
        raise InputError(f"no branch '{target}' to merge into")
    tri = triage(ctx, ids)
    mergeable = _reverify(ctx, tri, log=False, base_tip=base)
    order = _order(ctx, mergeable)
    results = list(tri.results)
    sim = base
    ahead: list[str] = []
    for task_id in order:
        sha = tri.shas[task_id]
        missing = [
            d for d in _deps(ctx, task_id) if d not in ahead and not state.merged(state.read(ctx.project, ctx.store, d))
        ]
        if missing:
            results.append(Result(task_id, "SKIPPED", f"dependency {missing[0]} would not be merged", sha=sha))
            continue
        _, with_base = _merge_tree(root, base, sha)
        if with_base:
            results.append(Result(task_id, "CONFLICT", "would conflict with the base", sha=sha, paths=with_base))
            continue
        tree, with_sim = _merge_tree(root, sim, sha)
        if tree is None:
            culprits = [other for other in ahead if _merge_tree(root, tri.shas[other], sha)[0] is None]
            results.append(
                Result(
                    task_id,
                    "CONFLICT",
                    "would conflict with " + (", ".join(culprits) or "the tasks ahead"),
                    sha=sha,
                    paths=with_sim,
                    conflicts_with=culprits,
                )
            )
            continue
        sim = git.out(
            ["commit-tree", tree, "-p", sim, "-p", sha, "-m", f"orch forecast: {task_id}"], cwd=root, env=git.ORCH_IDENT
        )
        ahead.append(task_id)
        results.append(Result(task_id, "CLEAN", "would merge cleanly (tests not run)", sha=sha))
    titles = {r.task: _title(ctx, r.task) for r in results}
    return Outcome(
        id=_stamp(),
        into=target,
        mode="dry-run",
        base_before=base,
        base_after=base,
        pre_ref=None,
        landed="forecast",
        message=None,
        test_command=ctx.config.test_command,
        test_runs=0,
        results=results,
        report=None,
        rollback=None,
        titles=titles,
        named=tri.named,
    )


@dataclass
class Clash:
    a: str
    b: str  # a task id, or the base branch name
    paths: list[str]


def conflicts(ctx: Ctx) -> tuple[list[str], list[Clash]]:
    """Pairwise forecast for tasks still in flight: which pairs (and which with the base) would conflict."""
    root = ctx.project.root
    statuses = state.read_all(ctx.project, ctx.store)
    base_name = ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{base_name}", cwd=root)
    if base is None:
        raise InputError(f"no branch '{base_name}'")
    tips: dict[str, str] = {}
    heads = _tips(ctx)
    for task_id, st in statuses.items():
        if st.get("state") in ("MERGED", "CLEANED", "PENDING"):
            continue
        tip = _branch_tip(heads, task_id, st)
        if tip is not None:
            tips[task_id] = tip
    ids = _order(ctx, list(tips))
    clashes: list[Clash] = []
    for i, a in enumerate(ids):
        tree, paths = _merge_tree(root, base, tips[a])
        if tree is None:
            clashes.append(Clash(a, base_name, paths))
        for b in ids[i + 1 :]:
            tree, paths = _merge_tree(root, tips[a], tips[b])
            if tree is None:
                clashes.append(Clash(a, b, paths))
    return ids, clashes
