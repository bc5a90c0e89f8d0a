"""The brief an agent reads, ``context.md``: its task, its scope, the locks that touch it, its deps.

Rendered from ``templates/context.md`` by ``orch spin`` (``orch.tasks.spin``) into the task's run
folder, next to the frozen manifest it is made from. It belongs to the agents stage: it is what orch
hands an agent, and it reads only the manifest, the locks and the deps' statuses.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

from orch.core import state
from orch.core.context import Ctx


def render_context(ctx: Ctx, manifest: dict[str, Any]) -> str:
    """context.md, the brief handed to the agent, from templates/context.md."""
    from orch.core.store import template

    scope = manifest.get("scope")
    if scope:
        scope_rule = (
            f"Change only files whose path, relative to the repository root, matches the regular "
            f"expression `{scope}` (Python `re.search`, as in `grep -E`). A change to any other file is a "
            "scope violation and keeps your work out of the base branch."
        )
    else:
        scope_rule = "This task has no scope: you may change any file that no lock below protects."
    accept = manifest.get("accept")
    test = ctx.config.test_command
    accept_text = (
        f"`{accept}` must pass; it runs in your worktree (through `sh -c`) when you exit."
        if accept
        else "This task has no acceptance command of its own."
    )
    if test:
        accept_text += f" At merge time the project's tests run: `{test}`."
    from orch.agents import budget

    left = budget.left_line(budget.Spent(), budget.Budget.of(manifest.get("limits") or {}))
    if left:
        accept_text += "\n\n" + left
    values = {
        "task_id": manifest["id"],
        "title": manifest["title"],
        "branch": manifest["branch"],
        "base_sha": manifest["base_sha"][:12],
        "base_branch": manifest.get("base_branch", ctx.config.base_branch),
        "brief": manifest.get("brief") or "(no brief beyond the title)",
        "scope_rule": scope_rule,
        "locks": _locks_text(ctx, scope),
        "accept": accept_text,
        "agents_md": str(Path(manifest["worktree"]) / "AGENTS.md"),
        "deps": _deps_text(ctx, manifest.get("deps") or []),
        "reflection": _fenced(template("REFLECTION.md"), "markdown"),
    }
    return string.Template(template("context.md")).safe_substitute(values)


def _locks_text(ctx: Ctx, scope: str | None) -> str:
    """The locks that touch the task's scope (all of them for a task without a scope)."""
    from orch.verify import locks as locks_mod

    lockset = locks_mod.load(ctx.project)
    lines = []
    others = 0
    for lock in lockset.for_agents():
        if not locks_mod.touches_scope(lock, scope):
            others += 1
            continue
        reason = f": {lock.reason}" if lock.reason else ""
        lines.append(f"- {lock.id} ({lock.mode} {lock.kind} lock) `{lock.label}`{reason}")
    if not lines:
        text = "No lock touches your scope."
    else:
        text = "\n".join(lines) + (
            "\n\nA hard lock blocks the merge of any change to what it protects; a soft lock needs a person's ack."
        )
    if others:
        text += f"\n\n({others} other lock(s) protect paths outside your scope: `orch lock list` shows them.)"
    return text


def _deps_text(ctx: Ctx, deps: list[str]) -> str:
    if not deps:
        return "None."
    lines = []
    for dep in deps:
        st = state.read(ctx.project, ctx.store, dep, refresh=False) or {}
        folder = ctx.project.task_dir(dep)
        head = st.get("head_sha") or (st.get("merge") or {}).get("sha")
        line = f"- {dep}: branch `orch/{dep}`" + (f" at `{head[:12]}`" if head else "")
        line += f", state {st.get('state', 'PENDING')}; its brief: `{folder / 'context.md'}`"
        lines.append(line)
        for artifact in st.get("artifacts") or []:
            shown = artifact if os.path.isabs(artifact) else f"{head[:12] if head else f'orch/{dep}'}:{artifact}"
            lines.append(f"  - artifact: `{shown}`")
    return (
        "\n".join(lines) + "\n\nThese are references: read them where they are, do not copy them "
        "(`git show orch/ID:PATH` prints a file of a dependency's branch)."
    )


def _fenced(text: str, info: str) -> str:
    """``text`` in a code fence longer than any run of backticks inside it."""
    import re

    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def _quoted(text: str) -> list[str]:
    """A person's text as a Markdown block quote, every line of it (control characters as spaces)."""
    clean = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text.strip())
    return [f"> {line}".rstrip() for line in clean.splitlines()]


def retry_section(
    *,
    run: int,
    previous: str,
    reason: str | None,
    kept: list[tuple[str, str]],
    files: str,
    source: str | None,
    text: str | None,
    note: str | None,
) -> str:
    """What ``orch retry`` adds to the brief: how the last run ended (its blocker report, else the tail
    of its last log), where its work is kept, and the note of the person who retried it."""
    said = f": {' '.join(reason.split())}" if reason else ""
    lines = [
        f"## Retry (run {run} of this task)",
        "",
        f"A person started this task over with `orch retry`. Its last run ended {previous}{said}.",
        "Your worktree is back at the commit the task started from: nothing of that run is in it.",
    ]
    if kept:
        where = ", ".join(f"`{ref}` (commit `{sha}`)" for ref, sha in kept)
        lines.append(f"That run's work is kept at {where}: read it (`git show`, `git diff`), but do not trust it.")
    lines += [f"That run's files (its logs, progress.md) are in `{files}`.", ""]
    if text and source == "BLOCKER_REPORT.md":
        lines += ["### The last run's blocker report", "", _fenced(text, "markdown"), ""]
    elif text:
        lines += [f"### The end of the last run's {source}", "", _fenced(text, "text"), ""]
    if note and note.strip():
        lines += ["### A note from the person who retried it", "", *_quoted(note), ""]
    return "\n".join(lines)


def human_section(*, run: int, was: str, note: str | None, commits: list[str], diffstat: str, files: str | None) -> str:
    """What ``orch release`` adds to the brief: a person drove this task for a while; their note, the
    commits they made (``git log --oneline``) and what those changed (the diffstat). Their commits are
    the starting point: the agent goes on from them."""
    lines = [
        "## A person worked on this",
        "",
        f"A person took this task over with `orch takeover` (it was {was}) and handed it back with "
        f"`orch release` (run {run} of this task). Your worktree holds their work: start from it, "
        "do not undo their commits.",
    ]
    if files:
        lines.append(f"The runs before theirs left their files (logs, progress.md) in `{files}`.")
    lines.append("")
    if note and note.strip():
        lines += ["### Their note", "", *_quoted(note), ""]
    if commits:
        lines += ["### The commits they made", "", _fenced("\n".join(commits), "text"), ""]
    else:
        lines += ["They made no commit of their own.", ""]
    if diffstat.strip():
        lines += ["### What those commits changed", "", _fenced(diffstat.rstrip("\n"), "text"), ""]
    return "\n".join(lines)
