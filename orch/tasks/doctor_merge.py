"""What ``orch doctor`` checks of the merge ceremony: its integration worktree and the base branch."""

from __future__ import annotations

from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.tasks.finding import Finding


def integration_worktree(ctx: Ctx, *, fix: bool) -> list[Finding]:
    """The ceremony's integration worktree half made by a ``git worktree add`` killed with orch: its
    admin folder (still locked, no valid HEAD) makes ``git rev-list --all``, ``fsck`` and ``gc`` fail,
    and ``git worktree prune`` skips it. Repaired under the merge lock: never under a running ceremony."""
    from orch.integrate.integration import half_made, repair_half_made
    from orch.integrate.journal import ceremony_lock, integration_path

    path = integration_path(ctx)
    broken = half_made(ctx, path)
    if not broken:
        return []
    finding = Finding(
        "half-made-integration-worktree",
        ctx.project.rel(path),
        f"a killed git worktree add left its admin folder {broken[0]} half made (locked, no valid "
        "HEAD): git rev-list --all, fsck and gc fail on it",
        "remove orch's own half-made admin folder and scratch tree, then git worktree prune "
        "(orch merge --resume and --abort do it too)",
        path=str(path),
    )
    if fix:
        try:
            with ceremony_lock(ctx, wait=0):
                repair_half_made(ctx, path)
            finding.fixed = True
        except InputError:
            finding.fix = "a merge ceremony is running: run orch doctor --fix again once it is done"
    return [finding]


def base_outside_ceremony(ctx: Ctx) -> list[Finding]:
    """Work the base branch holds that no merge ceremony landed: clean (the next orch merge records it
    MERGED) is worth knowing; breaking its task's rules stops every ceremony until a person acts."""
    from orch.integrate.basecheck import blocking_message, outside_work

    target = ctx.config.base_branch
    findings = []
    for o in outside_work(ctx, target):
        said = f"{target} holds {o.task}'s work up to {o.sha[:12]}, which no merge ceremony landed"
        if o.clean:
            findings.append(
                Finding(
                    "base-outside-ceremony",
                    o.task,
                    f"{said}; it verifies clean (scope, locks)",
                    "nothing to repair: the next orch merge records it MERGED",
                    fixable=False,
                    info=True,
                    task=o.task,
                )
            )
            continue
        _, hint = blocking_message(ctx, target, [o])
        findings.append(
            Finding(
                "base-outside-ceremony",
                o.task,
                f"{said}, and it breaks its rules ({o.reason}): orch merge refuses to run until a person acts",
                hint,
                fixable=False,
                task=o.task,
            )
        )
    return findings
