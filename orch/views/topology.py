"""The trust topology: the repository's tree with each path's level, its locks and the tasks in flight
whose scope reaches it; and the lock pressure over it (``orch topology``, the dashboard's tree).

The tree is the tracked files of the base branch. A folder is folded (shown as one node, its files
counted) when nothing below it differs from it: every file has the folder's level from the same glob
and no lock covers any of them. The tree's root is never folded. A folder's locks and tasks are those
of any file below it, so a folded folder still shows them.
"""

from __future__ import annotations

import re
from typing import Any

from orch.core import state
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.text import one_line, printable
from orch.verify import locks as locks_mod
from orch.views import levels as levels_mod

SCHEMA_VERSION = 1
PRESSURES = ("blocking", "routing around", "clear")
# Spun and not yet done with: merged, cleaned or skipped work is out of flight.
DONE = frozenset({"PENDING", "MERGED", "CLEANED", "SKIPPED"})


def pressure(ctx: Ctx) -> dict[str, Any]:
    """Each lock with its pressure as ``orch lock list`` computes it (``lockcmd.pressure``: per task),
    summed up per lock: ``blocking`` when a task blocks on it, else ``routing around`` when a task works
    within its reach, else ``clear``; and how many locks are at each."""
    from orch.verify import lockcmd

    rows = []
    counts = dict.fromkeys(PRESSURES, 0)
    for row in lockcmd.pressure(ctx):
        said = {t["pressure"] for t in row["tasks"]}
        how = next((p for p in PRESSURES[:2] if p in said), "clear")
        counts[how] += 1
        rows.append({**row, "pressure": how})
    return {"counts": counts, "locks": rows}


def in_flight(ctx: Ctx) -> dict[str, re.Pattern[str] | None]:
    """The tasks in flight (spun, not merged, cleaned or skipped) and their scope (None: no scope, so
    every path; a scope that does not compile reaches every path too, as verification refuses it)."""
    statuses = state.read_all(ctx.project, ctx.store)
    out: dict[str, re.Pattern[str] | None] = {}
    for task in ctx.plan.tasks:
        if (statuses.get(task.id) or {}).get("state", "PENDING") in DONE:
            continue
        try:
            out[task.id] = re.compile(task.scope) if task.scope else None
        except re.error:
            out[task.id] = None
    return out


def lock_entry(lock: locks_mod.Lock) -> dict[str, Any]:
    entry = {"name": lock.id, "kind": lock.kind, "hard": lock.mode == "hard", "pattern": lock.label}
    if lock.reason:
        entry["reason"] = lock.reason
    return entry


def build(ctx: Ctx, root: str | None = None) -> dict[str, Any]:
    """The tree under ``root`` (a tracked folder or file; the whole repository when None) as nested
    nodes: ``{path, name, kind, level, level_from, locks, tasks, children}``, plus ``files`` (tracked
    files below) and ``folded`` for folders."""
    files = levels_mod.tracked_files(ctx)
    top = _normal(root)
    if top:
        files = [f for f in files if f == top or f.startswith(top + "/")]
        if not files:
            raise InputError(
                f"no tracked file at '{printable(root or '')}' on {ctx.config.base_branch}",
                hint="name a folder or file of the base branch (git ls-tree -r --name-only BRANCH)",
            )
    rules = levels_mod.rules(ctx)
    locks = _locks_by_file(ctx, sorted(files))
    tasks = in_flight(ctx)
    if top in files:  # a file
        return _file(top, rules, locks, tasks)
    node = _folder(top, rules)
    folders = {top: node}
    for path in files:
        parent = path.rpartition("/")[0]
        here = folders.get(parent)
        if here is None:  # make the folders down to it
            parts = path[len(top) + 1 if top else 0 :].split("/")[:-1]
            here = node
            for i in range(len(parts)):
                at = "/".join(filter(None, [top, *parts[: i + 1]]))
                sub = folders.get(at)
                if sub is None:
                    sub = folders[at] = _folder(at, rules)
                    here["children"].append(sub)
                here = sub
        here["children"].append(_file(path, rules, locks, tasks))
    _settle(node, keep=True)
    return node


def _locks_by_file(ctx: Ctx, files: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each (sorted) file's locks, found lock by lock among the files that start with its prefix."""
    from orch.verify.lockcmd import covered_files

    out: dict[str, list[dict[str, Any]]] = {}
    known = set(files)
    for lock in locks_mod.load(ctx.project).for_agents():
        if lock.kind == "region":
            found = [lock.file] if lock.file in known else []
        elif lock.kind in ("path", "test"):
            found = covered_files(lock, files)
        else:
            continue
        entry = lock_entry(lock)
        for path in found:
            out.setdefault(str(path), []).append(entry)
    return out


def _normal(root: str | None) -> str:
    text = (root or "").strip()
    while text.startswith("./"):
        text = text[2:]
    return "" if text in (".", "/") else text.strip("/")


def _folder(path: str, rules: tuple[levels_mod.Rule, ...]) -> dict[str, Any]:
    rule = levels_mod.rule_of_path(rules, path + "/") if path else None
    return {
        "path": path + "/" if path else ".",
        "name": path.rsplit("/", 1)[-1] if path else ".",
        "kind": "dir",
        "level": rule.level if rule else levels_mod.DEFAULT,
        "level_from": rule.glob if rule else None,
        "locks": [],
        "tasks": [],
        "files": 0,
        "folded": False,
        "children": [],
    }


def _file(
    path: str,
    rules: tuple[levels_mod.Rule, ...],
    locks: dict[str, list[dict[str, Any]]],
    tasks: dict[str, re.Pattern[str] | None],
) -> dict[str, Any]:
    rule = levels_mod.rule_of_path(rules, path)
    return {
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "kind": "file",
        "level": rule.level if rule else levels_mod.DEFAULT,
        "level_from": rule.glob if rule else None,
        "locks": list(locks.get(path, ())),
        "tasks": [tid for tid, rx in tasks.items() if rx is None or rx.search(path)],
        "children": [],
    }


def _settle(node: dict[str, Any], *, keep: bool = False) -> bool:
    """Fill a folder's counts, locks and tasks from below, sort it, and fold it when nothing below
    differs from it. Returns whether the folder (or file) differs from a plain folder of its level."""
    if node["kind"] == "file":
        return bool(node["locks"])
    differs = False
    locks: dict[str, dict[str, Any]] = {}
    tasks: dict[str, None] = {}
    for child in node["children"]:
        differs |= _settle(child)
        differs |= (child["level"], child["level_from"]) != (node["level"], node["level_from"])
        node["files"] += child.get("files", 1)
        locks.update((lk["name"], lk) for lk in child["locks"])
        tasks.update(dict.fromkeys(child["tasks"]))
    node["locks"] = list(locks.values())
    node["tasks"] = sorted(tasks)
    node["children"].sort(key=lambda c: (c["kind"] != "dir", c["name"]))
    if not differs and not keep:
        node["folded"] = True
        node["children"] = []
    return differs


def tree_text(data: dict[str, Any], counts: dict[str, int] | None = None) -> str:
    """The tree as indented lines: name, level (``*`` when a glob sets it), locks and tasks."""
    lines = []
    if counts is not None:
        lines.append("lock pressure: " + ", ".join(f"{counts[p]} {p}" for p in PRESSURES))
    rows: list[tuple[str, dict[str, Any]]] = []

    def walk(node: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else prefix + ("└── " if last else "├── ")
        rows.append((branch, node))
        below = prefix if top else prefix + ("    " if last else "│   ")
        kids = node["children"]
        for i, child in enumerate(kids):
            walk(child, below, i == len(kids) - 1, False)

    walk(data, "", True, True)
    names = [b + one_line(n["name"] + ("/" if n["kind"] == "dir" and n["name"] != "." else "")) for b, n in rows]
    width = max(len(n) for n in names) + 2
    for name, (_, node) in zip(names, rows, strict=True):
        level = node["level"] + ("*" if node["level_from"] else "")
        extra = []
        if node.get("folded"):
            extra.append(f"({node['files']} file{'' if node['files'] == 1 else 's'})")
        if node["locks"]:
            shown = [f"[{'hard' if lk['hard'] else 'soft'} {lk['kind']} {lk['name']}]" for lk in node["locks"][:3]]
            more = len(node["locks"]) - len(shown)
            extra.append(" ".join(shown) + (f" +{more} more" if more else ""))
        if node["tasks"]:
            more = len(node["tasks"]) - 6
            extra.append("tasks: " + ", ".join(node["tasks"][:6]) + (f" +{more} more" if more > 0 else ""))
        lines.append(f"{name:<{width}}{level:<11}{' '.join(extra)}".rstrip())
    lines.append("(* set by a glob under levels: in .orch/config.yaml; the rest is at the default, feature)")
    return "\n".join(lines)
