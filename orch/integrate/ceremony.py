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

The modules of ``orch.integrate``, lowest first: ``integration`` (orch's worktree, the test run,
git merge-tree), ``triage`` (which tasks, in which order), ``journal`` (the crash journal),
``report`` (the outcome and its report), ``forecast`` (--dry-run and orch conflicts), ``steps``
(the ``Ceremony``: merging, testing, landing) and this one: ``merge``, the entry point, which
starts, resumes or aborts a ceremony and finishes it (statuses, report, event log).
"""

from __future__ import annotations

import os
from typing import Any

from orch.core import eventlog, git, state
from orch.core.context import Ctx
from orch.core.errors import CheckFailed, InputError
from orch.core.store import atomic_write
from orch.integrate.integration import INTEGRATION_DIR
from orch.integrate.journal import JOURNAL, drop, fault_point, has_landed, load_journal, stop_orphan_test
from orch.integrate.report import Outcome, render_report, rollback_command, utc_stamp
from orch.integrate.steps import Ceremony, Progress
from orch.integrate.triage import Result, merge_order, reverify, triage


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
    with ctx.store.lock("merge", timeout=5):
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


def _start(ctx: Ctx, ids: list[str] | None, *, batch: bool, into: str | None, progress: Progress) -> Outcome:
    root = ctx.project.root
    target = into or ctx.config.base_branch
    base = git.rev_parse(f"refs/heads/{target}", cwd=root)
    if base is None:
        raise InputError(f"no branch '{target}' to merge into", hint="check base_branch in .orch/config.yaml or --into")
    git.check_programs(cwd=root, command="merge")  # before the journal: merging runs filters and drivers
    tri = triage(ctx, ids)
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


def _resume(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    root = ctx.project.root
    ceremony = Ceremony(ctx, journal, progress)
    stop_orphan_test(journal)
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
    return _run(ceremony)


def _abort(ctx: Ctx, journal: dict[str, Any], progress: Progress) -> Outcome:
    if has_landed(ctx, journal):
        raise InputError(
            f"ceremony {journal['id']} already moved {journal['target']}; it can only be finished",
            hint="run orch merge --resume (and roll back with the command its report gives, if you want)",
        )
    stop_orphan_test(journal)
    progress("dropping the interrupted ceremony")
    drop(ctx, journal)
    raise CheckFailed(
        f"ceremony {journal['id']} was rolled back: nothing landed, no task branch was touched",
        hint="run orch merge to start again",
    )


def _run(ceremony: Ceremony) -> Outcome:
    ctx, j = ceremony.ctx, ceremony.j
    if j["step"] != "landed" and not has_landed(ctx, j):
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
    fault_point("reported")
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
    fault_point("recorded")
    (ctx.project.merges_dir / JOURNAL).unlink()
    return outcome
