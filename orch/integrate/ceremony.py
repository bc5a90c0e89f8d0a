"""The merge ceremony: ordered, test-gated, reversible integration of verified work.

1. Record the base sha (kept as ``refs/orch/pre-merge/<id>``) and triage every spun task.
2. Verify each queued task again at its current sha; a violation quarantines it.
3. In dependency order, merge each verified sha with ``--no-ff`` into orch's own integration worktree
   (never the user's checkout), run the test command and the hard requirement checks, and undo the
   merge if they fail. ``--batch`` tests many merges at once and bisects on failure.
4. Land: move the base only by compare-and-swap from the recorded sha, or fast-forward the user's
   checkout of it as ``git merge --ff-only`` would (past uncommitted changes to other paths); when
   git refuses, nothing of the user's is touched and the result is parked on ``orch/integration``.
5. Write the report, the statuses and the event log.

A journal (``.orch/run/merges/journal.json``) is written before every step. Killed at any point, the
base is either untouched or at a fully tested result, and ``orch merge --resume`` finishes the
ceremony or rolls it back. The journal is a claim anyone who can write .orch/run/ can make:
``proof`` checks it before --resume or --abort acts on it, the resumed ceremony tests again what it
is about to land, and a checkout left half fast-forwarded is settled first (``checkout``).

Before anything, the base itself is checked (``basecheck``): work on it that no ceremony landed
and that breaks its task's rules stops every ceremony until a person reverts or acknowledges it.

The modules of ``orch.integrate``, lowest first: ``integration`` (orch's worktree, the test run,
git merge-tree), ``triage`` (which tasks, in which order), ``journal`` (the crash journal),
``report`` (the outcome and its report), ``forecast`` (--dry-run and orch conflicts), ``steps``
(the ``Ceremony``: merging, testing, landing) and this one: ``merge``, the entry point, which
starts, resumes or aborts a ceremony and finishes it (statuses, report, event log).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orch.core import eventlog, git, procs, state
from orch.core.config import BASE_HINT, base_where
from orch.core.context import Ctx
from orch.core.errors import CheckFailed, ExitCode, InputError, OrchError
from orch.core.store import atomic_write
from orch.core.text import quoted
from orch.integrate.basecheck import blocking_message, landed_ref, mark, outside_work
from orch.integrate.checkout import drop_locks, settle
from orch.integrate.integration import checkout_of
from orch.integrate.journal import (
    JOURNAL,
    ceremony_lock,
    drop,
    fault_hooks,
    has_landed,
    integration_path,
    load_journal,
    stop_orphan_test,
)
from orch.integrate.proof import check_form, check_work, refusal
from orch.integrate.report import Outcome, render_report, rollback_command, utc_stamp
from orch.integrate.steps import Ceremony, Progress
from orch.integrate.triage import Result, in_the_base, merge_order, reverify, triage


def _quiet(_: str) -> None:
    pass


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
    with ceremony_lock(ctx):
        existing = load_journal(ctx)
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


class Interrupted(OrchError):
    """Ctrl-C (SIGINT) stopped ``orch merge``: what state it left, and what --resume and --abort would do."""

    exit_code = ExitCode.INTERRUPTED


def interrupted(ctx: Ctx) -> Interrupted:
    """The error to report when ``merge`` was interrupted (a test run it had going is ended already)."""
    try:
        j = load_journal(ctx)
    except (OrchError, OSError):
        j = None
    if j is None:
        return Interrupted("interrupted: no merge ceremony was left unfinished (none had started, or it had finished)")
    target, step = j["target"], j.get("step", "?")
    stopped = "; its test run was stopped" if str(step).startswith("testing") else ""
    if has_landed(ctx, j):
        return Interrupted(
            f"interrupted: merge ceremony {j['id']} had already landed on {target}{stopped}",
            hint="orch merge --resume  finishes it: statuses, report and event log (it cannot be aborted now)",
        )
    left = [t for t in j["queue"] if t not in {r["task"] for r in j["results"]}]
    return Interrupted(
        f"interrupted: merge ceremony {j['id']} stopped at step '{step}'{stopped}; {target} is unchanged",
        hint=(
            "orch merge --resume  finishes it: merges and tests what is left"
            + (f" ({', '.join(left)})" if left else "")
            + f", then lands on {target}\n"
            f"        orch merge --abort   rolls it back: {target} stays at {j['base_sha'][:12]}, no task branch "
            "is touched"
        ),
    )


def _start(ctx: Ctx, ids: list[str] | None, *, batch: bool, into: str | None, progress: Progress) -> Outcome:
    root = ctx.project.root
    target = into or ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if base is None:
        where = None if into else base_where(ctx.project)
        hint = f"{BASE_HINT}, or merge with --into"
        raise InputError(f"no branch {quoted(target)} to merge into", where=where, hint=hint)
    git.check_programs(cwd=root, command="merge")  # before the journal: merging runs filters and drivers
    found = outside_work(ctx, target)
    if not all(o.clean for o in found):
        message, hint = blocking_message(ctx, target, found)
        ctx.log("-", "MERGE_BLOCKED", message[:300])
        raise CheckFailed(message, hint=hint)
    tri = triage(ctx, ids, {o.task: o for o in found}, restore=True)
    mergeable = reverify(ctx, tri, log=True, base_tip=base)
    order = merge_order(ctx, mergeable)
    stamp = utc_stamp()
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
        "integration": str(integration_path(ctx)),
        "batch": batch,
        "test_command": ctx.config.test_command,
        "named": tri.named,
        "notes": tri.notes,
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


def _resume(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    root = ctx.project.root
    wrong = check_form(ctx, journal)
    verdicts: dict[str, Any] = {}
    if not wrong:
        more, verdicts = check_work(ctx, journal)
        wrong += more
    if wrong:
        raise InputError(
            refusal(journal, wrong),
            hint="orch merge --abort sets it aside (it merges, lands and moves nothing), then orch merge starts anew",
        )
    journal["verdicts"] = verdicts  # judged now; the journal's verdicts were its word only
    ceremony = Ceremony(ctx, journal, progress)
    stop_orphan_test(ctx, journal)
    _settle_landing(ctx, journal, progress)
    now = git.rev_parse(f"refs/heads/{journal['target']}", cwd=root)
    if now not in (journal["base_sha"], journal["good"]) and not has_landed(ctx, journal):
        # Someone moved the base before we landed: nothing of ours is on it. Roll back.
        progress("the base moved since the interrupted ceremony: rolling back")
        drop(ctx, journal)
        raise CheckFailed(
            f"{journal['target']} moved since ceremony {journal['id']} was interrupted, before it landed; the "
            "ceremony was rolled back (nothing landed, no task branch was touched)",
            hint="run orch merge again",
        )
    ctx.log("RUNNING", "MERGE_RESUME", f"ceremony {journal['id']} from step '{journal['step']}'")
    return _run(ceremony, resumed=True)


def _settle_landing(ctx: Ctx, j: dict[str, Any], progress: Progress) -> None:
    """Killed while landing: remove the lock files the killed git left, and put a checkout it was
    fast-forwarding where git would have left it (the branch not moved yet: back; moved: forward)."""
    if j.get("step") != "landing":
        return
    root, target = ctx.project.root, j["target"]
    if j.get("landed") != "fast-forward":
        drop_locks(root, [ctx.project.common_dir / "refs" / "heads" / f"{target}.lock"], ctx.config.worktree_root)
        return
    checkout = checkout_of(root, target)
    now = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if checkout is None or now is None or now not in (j["base_sha"], j["good"]):
        return
    other = j["good"] if now == j["base_sha"] else j["base_sha"]
    done = settle(checkout, ctx.project.common_dir, target, now, other, besides=ctx.config.worktree_root)
    if done.locks or done.paths:
        said = f"{len(done.paths)} path(s) back at {now[:12]}, {len(done.locks)} stale lock file(s) removed"
        progress(f"your checkout at {checkout} was left half fast-forwarded: {said}")
        ctx.log("RUNNING", "MERGE_RECOVER", f"checkout {checkout}: {said}")
    if done.left:
        progress(f"left as you have them (edited since): {', '.join(done.left[:5])}")


def _abort(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    target = str(journal.get("target"))
    wrong = check_form(ctx, journal)
    if wrong:
        # Not orch's journal, or not one orch can stand by: nothing it names is touched.
        kept = _set_aside(ctx)
        ctx.log(
            "REVERTED",
            "MERGE_ROLLBACK",
            f"journal refused: {'; '.join(wrong)}"[:300],
            artifacts=[ctx.project.rel(kept)],
        )
        message = (
            f"{refusal(journal, wrong)}. orch set it aside as {ctx.project.rel(kept)} and changed nothing else: no "
            "branch moved, no worktree or checkout touched; run orch merge to start again"
        )
        return _aborted(ctx, journal, target, message, pre_ref=None)
    if has_landed(ctx, journal):
        raise InputError(
            f"ceremony {journal['id']} already moved {target}; it can only be finished",
            hint="run orch merge --resume (and roll back with the command its report gives, if you want)",
        )
    stop_orphan_test(ctx, journal)
    _settle_landing(ctx, journal, progress)
    progress("dropping the interrupted ceremony")
    drop(ctx, journal)
    message = (
        f"ceremony {journal['id']} was rolled back: nothing landed on {target}, no task branch was touched; "
        "run orch merge to start again"
    )
    return _aborted(ctx, journal, target, message, pre_ref=journal["pre_ref"])


def _set_aside(ctx: Ctx) -> Path:
    """Move a journal orch will not act on out of the way, kept for a person to read."""
    n, stamp = 1, utc_stamp()
    kept = ctx.project.merges_dir / f"refused-{stamp}.json"
    while kept.exists():
        n += 1
        kept = ctx.project.merges_dir / f"refused-{stamp}-{n}.json"
    os.replace(ctx.project.merges_dir / JOURNAL, kept)
    return kept


def _aborted(ctx: Ctx, journal: dict[str, Any], target: str, message: str, *, pre_ref: str | None) -> Outcome:
    now = git.rev_parse(f"refs/heads/{target}", cwd=ctx.project.root) if pre_ref else None
    return Outcome(
        id=str(journal.get("id")),
        into=target,
        mode="batch" if journal.get("batch") else "sequential",
        base_before=str(journal.get("base_sha")),
        base_after=now,
        pre_ref=pre_ref,
        landed="aborted",
        message=message,
        test_command=ctx.config.test_command,
        test_runs=int(journal.get("test_runs", 0)),
        results=[],
        report=None,
        rollback=None,
        titles={},
    )


def _run(ceremony: Ceremony, *, resumed: bool = False) -> Outcome:
    ctx, j = ceremony.ctx, ceremony.j
    if not has_landed(ctx, j):
        ceremony.integration.prepare(j["good"], git_options=fault_hooks(ctx, "ceremony.worktree_add", "HEAD"))
        todo = [t for t in j["queue"] if t not in ceremony.decided()]
        if j.get("batch"):
            ceremony.run_batch(todo)
        else:
            ceremony.run_sequential(todo)
        if resumed:
            _retest(ceremony)
        how, message = ceremony.land()
        j["landed"], j["land_detail"] = how, message
        ctx.log("MERGED" if how in ("update-ref", "fast-forward") else "RUNNING", "LAND", f"{how}: {message or ''}")
    else:
        j["landed"] = j["landed"] if j.get("landed") in ("update-ref", "fast-forward") else "update-ref"
        j["land_detail"] = None
        landed = git.rev_parse(landed_ref(j["target"]), cwd=ctx.project.root)
        if resumed and not (landed and git.is_ancestor(j["good"], landed, cwd=ctx.project.root)):
            # On the base, but orch has no record of landing it: it lands in orch's record only tested.
            ceremony.integration.prepare(j["good"])
            _retest(ceremony, landed=True)
            mark(ctx, j["target"], j["good"])
    ceremony.save("landed")
    return _finish(ceremony)


def _retest(ceremony: Ceremony, *, landed: bool = False) -> None:
    """A resumed ceremony runs the tests on the tree it is about to land (or finds landed) unless it
    saw them pass itself: the journal's word that they passed is not enough."""
    ctx, j = ceremony.ctx, ceremony.j
    if j["good"] == j["base_sha"] or j["good"] in ceremony.tested:
        return
    merged = [r["task"] for r in j["results"] if r["outcome"] == "MERGED"]
    ceremony.merged_since = merged
    passed, _, log = ceremony.test("resumed")
    if passed:
        return
    target, good = j["target"], j["good"]
    if landed:
        rollback = rollback_command(ctx.project.root, j, git.rev_parse(f"refs/heads/{target}", cwd=ctx.project.root))
        _set_aside(ctx)
        raise CheckFailed(
            f"{target} holds {good[:12]}, which ceremony {j['id']} says it landed, but orch has no record of landing "
            f"it and it fails the tests now (log: {log}); orch recorded nothing of it",
            hint=f"roll it back with: {rollback}",
        )
    drop(ctx, j)
    raise CheckFailed(
        f"the result of ceremony {j['id']} ({good[:12]}) failed the tests when run again before landing (log: {log}); "
        f"the ceremony was rolled back: nothing landed on {target}, no task branch was touched",
        hint="run orch merge again",
    )


def _finish(ceremony: Ceremony) -> Outcome:
    ctx, j = ceremony.ctx, ceremony.j
    root = ctx.project.root
    how = j.get("landed") or "nothing"
    landed = how in ("update-ref", "fast-forward")
    results = [Result.from_json(r) for r in j["results"]]
    for r in results:  # what orch did to a task's branch before merging it (restored it) goes with the outcome
        note = (j.get("notes") or {}).get(r.task)
        if note and note not in (r.detail or ""):
            r.detail = f"{note}; {r.detail}" if r.detail else note
    base_after = git.rev_parse(f"refs/heads/{j['target']}", cwd=root)
    titles = {r.task: ceremony.title(r.task) for r in results}
    rollback = rollback_command(root, j, base_after) if landed else None
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
        test_command=ctx.config.test_command,
        test_runs=int(j.get("test_runs", 0)),
        results=results,
        report=ctx.project.rel(report_path),
        rollback=rollback,
        titles=titles,
        named=list(j.get("named") or []),
        runs=list(j.get("runs") or []),
        blocked_by=list(j.get("blocked_by") or []) if how == "parked" else [],
        land_command=j.get("land_command") if how == "parked" else None,
    )
    atomic_write(report_path, render_report(outcome))
    procs.fault_point("ceremony.reported")
    at = eventlog.utcnow()
    in_base = in_the_base(ctx, results, base_after) if not landed else set()
    for r in results:
        if r.outcome == "NOT_READY":
            continue
        outcome_state = r.outcome
        # Parked or base moved: the task stays as it was (with the verdict of the commit that is
        # parked) and is merged next time; unless its work is in the base already.
        verdict_only = r.outcome == "MERGED" and not landed and r.task not in in_base
        verdict = (j.get("verdicts") or {}).get(r.task)

        def apply(
            st: state.Status,
            r: Result = r,
            outcome_state: str = outcome_state,
            verdict: dict[str, Any] | None = verdict,
            verdict_only: bool = verdict_only,
        ) -> None:
            if verdict is not None:
                st["verdict"] = verdict
            if verdict_only:
                return
            # A task cleaned while the ceremony was interrupted stays cleaned; one named while
            # cleaned (triage queues it) and merged is MERGED.
            if st.get("state") != "CLEANED" or (r.outcome == "MERGED" and r.task in j["queue"]):
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
        if verdict is not None or not verdict_only:
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
    if not landed and base_after == j["base_sha"]:
        mark(ctx, j["target"], j["base_sha"])  # checked at the start (basecheck), and all of it recorded
    procs.fault_point("ceremony.recorded")
    (ctx.project.merges_dir / JOURNAL).unlink()
    return outcome
