"""What an interrupted ceremony's journal claims, proved again before ``--resume`` or ``--abort`` acts.

The journal is a file in ``.orch/run/``: anyone who can write the checkout (an agent too) can write
or replace it. So nothing in it is taken on its word:

* ``check_form`` (both ``--resume`` and ``--abort``): the id is a ceremony's id, its pre-merge ref is
  orch's and records the base sha, the target is a branch, the integration worktree is orch's own
  computed path, every task id is an id, and ``good`` is the base or a chain of merge commits git
  itself would have made, each merging a task the journal says was merged at that exact sha.
* ``check_work`` (``--resume`` only, before anything is merged or landed): the test command is the
  one in .orch/config.yaml, each task still to merge or merged is the tip of ``orch/<id>``, and its
  exact sha verifies now (scope, locks: the rules in force). The fresh verdicts replace the journal's.

What lands is tested again by the resumed ceremony itself (``ceremony._run``): the journal's word
that a tree passed its tests is not enough either. A journal that fails a check is refused with
what does not add up; ``--abort`` then sets it aside and changes nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orch.core import git, refs
from orch.core.context import Ctx
from orch.core.plan import ID_RE
from orch.integrate.integration import merge_tree
from orch.integrate.journal import integration_path

_ID = re.compile(r"\d{8}T\d{6}Z(-\d{1,6})?")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def is_sha(value: Any) -> bool:
    return isinstance(value, str) and _SHA.fullmatch(value) is not None


def check_form(ctx: Ctx, j: dict[str, Any]) -> list[str]:
    """What in the journal does not add up, without judging any task's work ([] when all does)."""
    root = ctx.project.root
    wrong: list[str] = []
    cid = str(j.get("id"))
    if not _ID.fullmatch(cid):
        wrong.append(f"its id {cid!r} is not a ceremony's")
    base = j.get("base_sha")
    if not is_sha(base):
        wrong.append(f"its base sha {base!r} is not a commit id")
    elif j.get("pre_ref") != f"refs/orch/pre-merge/{cid}":
        wrong.append(f"its pre-merge ref {j.get('pre_ref')!r} is not refs/orch/pre-merge/{cid}")
    elif git.rev_parse(str(j["pre_ref"]), cwd=root) != base:
        wrong.append(f"{j['pre_ref']} does not record its base {str(base)[:12]}")
    target = str(j.get("target"))
    if target.startswith("orch/") or not git.valid_branch_name(target, cwd=root):
        wrong.append(f"its target {target!r} is not a branch orch merges into")
    elif git.rev_parse(f"refs/heads/{target}", cwd=root) is None:
        wrong.append(f"its target branch {target!r} does not exist")
    ours = integration_path(ctx)
    if Path(str(j.get("integration"))) != ours:
        wrong.append(f"its integration worktree {j.get('integration')!r} is not orch's ({ours})")
    ids = [*j.get("queue", []), *j.get("shas", {}), *(r.get("task") for r in j.get("results", []))]
    ids += [*j.get("verdicts", {}), *j.get("named", []), *j.get("notes", {})]
    bad = sorted({str(i) for i in ids if not isinstance(i, str) or not ID_RE.fullmatch(i)})
    if bad:
        wrong.append("it names task ids that are not ids: " + ", ".join(repr(i) for i in bad[:5]))
    shas = j.get("shas", {})
    if set(j.get("queue", [])) != set(shas) or not all(is_sha(s) for s in shas.values()):
        wrong.append("its queue and the shas it merges do not match")
    if not wrong:
        wrong += _chain(root, j)
    return wrong


def _chain(root: Path, j: dict[str, Any]) -> list[str]:
    """``good`` must be the base, or merge commits on it (first parent the step before, second parent a
    task's sha the journal records as MERGED) whose trees are what git merges them to."""
    base, good = str(j["base_sha"]), j.get("good")
    if not isinstance(good, str) or not is_sha(good):
        return [f"its tested head {good!r} is not a commit id"]
    if good == base:
        return []
    merged: dict[str, str] = {}
    for r in j.get("results", []):
        if r.get("outcome") != "MERGED":
            continue
        if j["shas"].get(r["task"]) != r.get("sha"):
            return [f"it records {r['task']} merged at {str(r.get('sha'))[:12]}, not at the sha it queued"]
        merged[str(r["sha"])] = r["task"]
    log = git.run(["log", "--first-parent", "--format=%H %T %P", f"{base}..{good}", "--"], cwd=root, check=False)
    if not log.ok:
        return [f"its tested head {good[:12]} is not a commit on top of its base {base[:12]}"]
    links = [line.split() for line in log.stdout.splitlines() if line.strip()]
    if not links or len(links) > len(merged) or links[-1][2] != base:
        return [f"its tested head {good[:12]} is not a chain of orch's merges on its base {base[:12]}"]
    seen: set[str] = set()
    for commit, tree, *parents in links:
        if len(parents) != 2 or parents[1] not in merged or parents[1] in seen:
            return [f"{commit[:12]} (under its tested head) is not orch's merge of a task it records as MERGED"]
        seen.add(parents[1])
        made, _ = merge_tree(root, parents[0], parents[1])
        if made != tree:
            task = merged[parents[1]]
            return [f"{commit[:12]} does not hold what git merges {task} to (its tree was not made by git merge)"]
    return []


def check_work(ctx: Ctx, j: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Before a resumed ceremony merges or lands anything: the test command, and each task it merged or
    will merge verified again at its exact sha. (what does not add up, the fresh verdicts)."""
    from orch.verify.judge import verify_task

    root = ctx.project.root
    wrong: list[str] = []
    if j.get("test_command") != ctx.config.test_command:
        wrong.append(
            f"its test command {j.get('test_command')!r} is not test_command in .orch/config.yaml "
            f"({ctx.config.test_command!r})"
        )
    decided = {r["task"]: r["outcome"] for r in j.get("results", [])}
    todo = [t for t in j["queue"] if decided.get(t) in (None, "MERGED")]
    tips = refs.branch_heads(root)
    verdicts: dict[str, dict[str, Any]] = {}
    for task_id in todo:
        sha = j["shas"][task_id]
        if ctx.plan.get(task_id) is None:
            wrong.append(f"{task_id} is not in .orch/plan.md")
            continue
        if tips.get(refs.branch_name(task_id)) != sha:
            wrong.append(f"{refs.branch_name(task_id)} is not at {sha[:12]}, the commit it merges")
            continue
        verdict = verify_task(ctx, task_id, sha=sha, record=False, base_tip=j["base_sha"])
        verdicts[task_id] = verdict.to_dict()
        if not verdict.mergeable:
            why = ", ".join(sorted({v.path for v in verdict.violations if v.mode == "hard"})[:3])
            why = why or ", ".join(verdict.pending_acks)
            wrong.append(f"{task_id} at {sha[:12]} does not verify now ({verdict.result}: {why})")
    return wrong, verdicts


def refusal(j: dict[str, Any], wrong: list[str]) -> str:
    """One line: which journal, and everything in it that does not add up."""
    return f"the interrupted ceremony's journal does not add up: {'; '.join(wrong)}"
