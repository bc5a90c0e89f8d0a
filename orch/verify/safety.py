"""Safety snapshots: the task's worktree, kept before an agent runs a RISKY command.

The agent hook commits every file of the worktree (untracked ones too, ignored ones not) through a
temporary copy of the index, with the worktree's HEAD as parent, and names the commit
``refs/orch/safety/<task>/<n>`` (``n`` counts on). No file, index, HEAD or branch of anyone's moves.
A command run in a worktree that has not changed since the last snapshot (same files, same HEAD)
makes none: that snapshot already holds it.

Inside orch's box the worktree's git folder is the box's shadow (``orch.agents.boxgit``): the
snapshot's objects and its ref are written there, with the box's own rights (the shadow's config is
the agent's, but so is everything else in the box; the hook never runs git on it from outside), and
``boxgit.bring_in`` brings ``refs/orch/safety/<task>/*`` into the repository at the end of the run,
numbered on after the ones already there. Without the box they are written to the repository at once.

Get one back with ``git checkout refs/orch/safety/T1/3 -- .`` (or ``git worktree add --detach``).
"""

from __future__ import annotations

from pathlib import Path

from orch.core import git, refs
from orch.core.errors import EnvError

MAX_TRIES = 5  # another snapshot took the number: count on


def prefix(task_id: str) -> str:
    return f"{refs.SAFETY_PREFIX}/{task_id}"


def numbered(top: str | Path, task_id: str) -> list[tuple[int, str, str]]:
    """The task's safety snapshots as the worktree's git sees them: (n, commit, tree + parent), by n."""
    r = git.run(
        ["for-each-ref", "--format=%(refname) %(objectname) %(tree) %(parent)", f"{prefix(task_id)}/"],
        cwd=top,
        check=False,
    )
    found = []
    for line in r.stdout.splitlines() if r.ok else []:
        name, _, rest = line.partition(" ")
        number = name.rsplit("/", 1)[-1]
        sha, _, what = rest.partition(" ")
        if number.isdigit() and name == f"{prefix(task_id)}/{number}":
            found.append((int(number), sha, what))
    return sorted(found)


def snapshot(top: str | Path, task_id: str, command: str) -> tuple[str, bool]:
    """Keep the worktree ``top`` before ``command`` runs: (the ref that holds it, whether it is new).
    Raises ``OrchError`` when it cannot (the hook then refuses the command)."""
    top = Path(top)
    index = Path(git.out(["rev-parse", "--path-format=absolute", "--git-path", "index"], cwd=top))
    tree = git.worktree_tree(top, index=index if index.is_file() else None, tmpdir=index.parent)
    head = git.rev_parse("HEAD", cwd=top)
    have = numbered(top, task_id)
    if have and have[-1][2] == f"{tree} {head or ''}".strip():
        return f"{prefix(task_id)}/{have[-1][0]}", False
    shown = command if len(command) <= 200 else command[:200] + "..."
    message = f"orch: safety snapshot of task {task_id} before a RISKY command\n\n{shown}\n"
    parents = ["-p", head] if head else []
    commit = git.out(["commit-tree", "--no-gpg-sign", tree, *parents, "-m", message], cwd=top, env=git.ORCH_IDENT)
    n = have[-1][0] if have else 0
    for _ in range(MAX_TRIES):
        n += 1
        ref = f"{prefix(task_id)}/{n}"
        r = git.run(["update-ref", "-m", "orch: safety snapshot", ref, commit, "0" * len(commit)], cwd=top, check=False)
        if r.ok:
            return ref, True
    raise EnvError(f"could not name the safety snapshot {commit[:12]} of task {task_id}: {r.stderr.strip()}")
