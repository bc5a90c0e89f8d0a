"""The bodies of ``orch verify`` and ``orch merge``, shared by the typer commands and the fast path."""

from __future__ import annotations

from collections.abc import Sequence

from orch.cli.output import err, out
from orch.core.errors import ExitCode, InputError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orch.core.context import Ctx


def verify_command(task_ids: Sequence[str], *, all_tasks: bool, as_json: bool) -> int:
    """``orch verify``: the body behind both the fast path and the typer command."""
    from orch.core.context import open_ctx
    from orch.verify import judge

    if task_ids and all_tasks:
        raise UsageError("name tasks or pass --all, not both")
    if not task_ids and not all_tasks:
        raise UsageError("name the tasks to verify (orch verify T1 T2), or pass --all")
    verdicts = judge.verify_many(open_ctx(from_source=True), task_ids, all_tasks=all_tasks)
    if as_json:
        from orch.cli import render

        out(render.dumps({"verdicts": [v.to_json() for v in verdicts]}))
    else:
        out("\n".join(judge.verdict_text(v) for v in verdicts))
    return ExitCode.OK if all(v.mergeable for v in verdicts) else ExitCode.CHECK_FAILED


def merge_command(
    ids: Sequence[str], *, dry_run: bool, batch: bool, resume: bool, abort: bool, into: str | None, as_json: bool
) -> int:
    """``orch merge``: the body behind both the fast path and the typer command."""
    from orch.cli import render
    from orch.core.context import open_ctx
    from orch.integrate import ceremony, forecast

    if resume and abort:
        raise UsageError("--resume and --abort exclude each other")
    if into is not None and not into.strip():
        raise UsageError(
            "--into needs a branch name; an empty one would merge into the base branch",
            hint="orch merge --into BRANCH, or leave --into out to merge into base_branch (.orch/config.yaml)",
        )
    if (resume or abort) and (ids or batch or into is not None or dry_run):
        raise UsageError(
            "--resume and --abort take no ids, --batch, --into or --dry-run: "
            "they continue or drop the interrupted ceremony as it was started"
        )
    if dry_run and batch:
        raise UsageError("--dry-run forecasts conflicts only; leave out --batch")
    # The ceremony judges: its test command, plan and locks are the rules in force, those committed on
    # the branch it merges into made stricter by the working copy (an uncommitted edit never loosens).
    c = open_ctx(from_source=True, rules_branch=into)
    if not (resume or abort or dry_run) and c.config.test_command != c.working_config.test_command:
        err(
            f"orch: note: test_command in .orch/config.yaml is an uncommitted edit; the ceremony runs the one "
            f"committed on {c.committed().branch}: `{c.config.test_command}` (commit the edit to use it)"
        )
    if not (resume or abort):
        _check_target(c, into)
    if dry_run:
        outcome = forecast.dry_run(c, list(ids) or None, into=into)
    else:
        with render.progress() as progress:
            try:
                outcome = ceremony.merge(
                    c, list(ids) or None, batch=batch, into=into, resume=resume, abort=abort, progress=progress
                )
            except KeyboardInterrupt:
                # An OrchError, not KeyboardInterrupt: click would turn that into its Abort, and the two
                # paths must say the same. Exit 130 with what --resume and --abort would do.
                raise ceremony.interrupted(c) from None
    if as_json:
        out(render.dumps(outcome.to_json()))
    else:
        out(render.merge_outcome(outcome))
    return ExitCode.CHECK_FAILED if outcome.failed else ExitCode.OK


def _check_target(c: Ctx, into: str | None) -> None:
    """The branch to merge into exists; if not, say where its name came from (``--into``, or the
    config's ``base_branch`` line)."""
    from orch.core import git
    from orch.core.config import key_where

    target = into or c.config.base_branch
    if git.rev_parse(f"refs/heads/{target}", cwd=c.project.root) is not None:
        return
    if into is not None:
        from orch.core.text import quoted

        name = quoted(into)  # a name of 10,000 characters is not repeated whole
        raise InputError(
            f"--into {into if into.isprintable() and len(into) <= 60 else name}: no branch {name} to merge into",
            hint="name a branch that exists (git branch)",
        )
    raise InputError(
        f"base_branch: no branch '{target}' to merge into",
        where=key_where(c.project, "base_branch"),
        hint="set base_branch to an existing branch (git branch lists them), or merge elsewhere with --into",
    )
