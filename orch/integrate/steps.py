"""The merge ceremony's steps on its journal: merge and test one by one or in batches, then land.

A ``Ceremony`` holds the journal and orch's integration worktree; every decision goes into the
journal, saved before the next step (``save``). ``run_sequential`` merges each task on the good
head, tests it, and keeps or undoes the merge; ``run_batch`` merges many, tests once and bisects on
failure, in at most ``batch_bound`` test runs; ``land`` moves the base. ``ceremony`` starts,
resumes and finishes a ``Ceremony``.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from typing import Any

from orch.core import git, procs, state
from orch.core.context import Ctx
from orch.core.store import atomic_write
from orch.integrate.basecheck import mark
from orch.integrate.integration import PARK_BRANCH, Integration, checkout_of, fast_forward, in_the_way, run_tests
from orch.integrate.journal import JOURNAL, fault_hooks, integration_path
from orch.integrate.report import describe_requirement
from orch.integrate.triage import Result, deps, merged_outside, task_title

Progress = Callable[[str], None]


class Ceremony:
    def __init__(self, ctx: Ctx, journal: dict[str, Any], progress: Progress) -> None:
        self.ctx = ctx
        self.j = journal
        self.progress = progress
        self.integration = Integration(ctx, integration_path(ctx))  # orch's own: never the journal's word
        self.folder = ctx.project.merges_dir / journal["id"]
        self.tested: set[str] = set()  # heads this process saw pass their tests
        self.merged_since: list[str] = []  # tasks merged since the last test run: their accept commands run

    # journal ---------------------------------------------------------------------------------------

    def save(self, step: str) -> None:
        self.j["step"] = step
        # Renamed into place, not fsynced: the journal must outlive a killed orch, which the atomic
        # rename guarantees; against power loss git's own refs are not fsynced either (core.fsync).
        atomic_write(self.ctx.project.merges_dir / JOURNAL, json.dumps(self.j, indent=1) + "\n", durable=False)
        verb, _, detail = step.partition(" ")  # "testing T1": ORCH_FAILPOINT=ceremony.testing:T1
        procs.fault_point(f"ceremony.{verb}", detail)

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
        return task_title(self.ctx, task_id)

    def blocked_by(self, task_id: str, ahead: frozenset[str] = frozenset()) -> str | None:
        """The first dependency that is not merged, now or earlier; None if all are.

        A dependency in ``ahead`` (undecided, earlier in the same batch) counts as satisfiable: the
        batch merges it first, and if it fails the batch is split and this is asked again.
        """
        for dep in deps(self.ctx, task_id):
            if self.outcome_of(dep) == "MERGED" or (dep in ahead and self.outcome_of(dep) is None):
                continue
            if self.outcome_of(dep) is None and merged_outside(self.ctx, dep, self.j["base_sha"]):
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
        """Run the test command, the hard requirement checks and the ``accept`` command of each task
        merged since the last test run (``merged_since``) in the integration worktree.

        The test command is the one in .orch/config.yaml and each accept command the one in plan.md:
        what a person wrote, never what a journal or a status says. A task whose accept failed in its
        own run (FAILED) is judged again here, on the merged tree: its status is the agent's to write.
        """
        n = self.j["test_runs"] = int(self.j.get("test_runs", 0)) + 1
        log_path = self.folder / f"test-{n:03d}-{label}.log"
        rel = self.ctx.project.rel(log_path)
        self.progress(f"testing {label} (run {n})")
        command = self.ctx.config.test_command

        def started(pid: int) -> None:  # so that a resumed ceremony can stop a test run we left behind
            self.j["test_pid"], self.j["test_start"] = pid, procs.start_time(pid)
            self.save(f"testing {label}")

        from orch.verify.requirements import box_for, check_requirements

        boxed = box_for(self.ctx, self.integration.path)
        if command:
            passed, excerpt = run_tests(
                command, self.integration.path, self.ctx.config.test_timeout, log_path, on_start=started, boxed=boxed
            )
        else:
            passed, excerpt = True, ""
            atomic_write(log_path, "no test command configured (test_command in .orch/config.yaml)\n")
        if passed:
            failures = check_requirements(self.ctx, self.integration.path, hard_only=True)
            if failures:
                passed = False
                excerpt = "\n".join(describe_requirement(f) for f in failures)
                with open(log_path, "a", encoding="utf-8") as log:
                    log.write("\nhard requirement checks failed:\n" + excerpt + "\n")
        for task_id in self.merged_since if passed else []:
            task = self.ctx.plan.get(task_id)
            if task is None or not task.accept:
                continue
            passed, excerpt = run_tests(
                task.accept,
                self.integration.path,
                self.ctx.config.test_timeout,
                log_path,
                on_start=started,
                append=True,
                boxed=boxed,
            )
            if not passed:
                excerpt = f"the accept command of {task_id} failed on the merged tree:\n{excerpt}"
                break
        if passed:
            self.tested.add(self.integration.head())
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
        self.merged_since = [task_id]
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
            self.merged_since = list(merged)
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
        checkout = checkout_of(root, target)
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
            mark(self.ctx, target, good)
            return "update-ref", None
        # Landing when git itself would: the fast-forward goes ahead past uncommitted changes to other
        # paths; git refuses, changing nothing, when it would overwrite one. Then the result is parked.
        killer = fault_hooks(self.ctx, "ceremony.fast_forward", f"refs/heads/{target}")
        r = fast_forward(checkout, good, git_options=killer)
        if r.ok:
            mark(self.ctx, target, good)
            return "fast-forward", None
        self._park(good)
        blocked = in_the_way(root, checkout, base, good, r.stderr)
        command = f"git -C {shlex.quote(str(checkout))} merge --ff-only {PARK_BRANCH}"
        self.j["blocked_by"], self.j["land_command"] = blocked, command
        if blocked:
            shown = ", ".join(blocked[:5]) + (f" and {len(blocked) - 5} more" if len(blocked) > 5 else "")
            return "parked", (
                f"your checkout of {target} at {checkout} has uncommitted changes the merge would overwrite "
                f"({shown}), so orch left it untouched. The tested result is parked on {PARK_BRANCH}; stash or "
                f"move those changes, then land it with: {command}"
            )
        said = " ".join(line.strip() for line in (r.stderr or r.stdout).splitlines() if line.strip())
        return "parked", (
            f"could not fast-forward your checkout of {target} at {checkout} "
            f"({said or f'git merge exited {r.returncode}'}). The tested result is parked on {PARK_BRANCH}; "
            f"land it with: {command}"
        )

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
