"""What the hooks judge (``python -m orch.hookmain pre-commit|claude-pretool|codex-pretool|gemini-pretool``).

Hooks run on every commit and every agent edit, so this module starts in a few milliseconds: no
typer, no yaml, no jsonschema, no pathspec on the common path (locks and plan scopes are read from
their compiled JSON caches; a cache miss pays for the full, validating load once).

Hooks are early warnings; ``orch verify`` judges the exact commit whatever they said. A rule file
that is broken makes them refuse (fail closed, as verify does); a bug in orch itself lets the
action through with a warning on stderr rather than lock a person out of their own repository.
Each hook returns its exit code and its message; ``orch.cli.hook`` prints them.
"""

from __future__ import annotations

import json
import os

from orch.core import git
from orch.verify import changeset, rules
from orch.verify import locks as locks_mod

TYPE_CHECKING = False  # typing costs the hook ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from typing import Any

_PLAN_CACHE_VERSION = "1"
TASK_BRANCH_PREFIX = "refs/heads/orch/"
REFLECTION = "REFLECTION.md"  # the agent's reflection (orch.agents.learnings): taken out, never committed


class Place:
    """Where a hook runs: the worktree top, the main checkout, and the task (None outside one)."""

    def __init__(self, top: str, root: str, task: str | None) -> None:
        self.top = top
        self.root = root
        self.task = task

    @property
    def orch_dir(self) -> str:
        return os.path.join(self.root, ".orch")


def locate(cwd: str) -> Place | None:
    """The place ``cwd`` belongs to, or None when it is not in a repository set up with orch."""
    r = git.run(
        ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir", "--absolute-git-dir"],
        cwd=cwd,
        check=False,
    )
    lines = r.stdout.splitlines()
    if not r.ok or len(lines) < 3:
        return None
    top, common, git_dir = lines[0], lines[1], lines[2]
    if os.path.basename(common) == ".git" and os.path.exists(os.path.join(os.path.dirname(common), ".git")):
        root = os.path.dirname(common)
    else:
        from orch.core.repo import find_project

        root = str(find_project(top, require_init=False).root)
    if not os.path.isfile(os.path.join(root, ".orch", "config.yaml")):
        return None
    task = None
    try:
        with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as handle:
            head = handle.read().strip()
    except OSError:
        head = ""
    if head.startswith("ref: " + TASK_BRANCH_PREFIX):
        task = head[len("ref: " + TASK_BRANCH_PREFIX) :]
    return Place(top, root, task)


def task_scope(place: Place) -> str | None:
    """The task's scope from the main checkout's plan.md (cached by digest; parsed on a miss)."""
    if place.task is None:
        return None
    path = os.path.join(place.orch_dir, "plan.md")
    with open(path, "rb") as handle:
        raw = handle.read()
    digest = locks_mod.blake2b(raw + _PLAN_CACHE_VERSION.encode()).hexdigest()
    cached = os.path.join(place.orch_dir, "run", "cache", "plan", digest + ".json")
    scopes: Any = None
    try:
        with open(cached, encoding="utf-8") as handle:
            scopes = json.load(handle)
    except (OSError, ValueError):
        pass
    if not (isinstance(scopes, dict) and all(isinstance(v, (str, type(None))) for v in scopes.values())):
        from pathlib import Path

        from orch.core import planfile
        from orch.core.store import atomic_write

        plan = planfile.load(Path(path))
        scopes = {t.id: t.scope for t in plan.tasks}
        try:
            atomic_write(Path(cached), json.dumps(scopes))
        except OSError:
            pass
    scope: str | None = scopes.get(place.task)
    return scope


def scope_of(place: Place) -> tuple[str | None, str | None]:
    """``task_scope``, and why the scope could not be read (None when it could). A plan.md that does
    not read (a person in the middle of an edit) leaves the task's commits unchecked against its scope
    instead of failing every agent's commit: the hook is an early warning, and orch verify judges
    the scope as committed before any merge."""
    from orch.core.errors import InputError

    try:
        return task_scope(place), None
    except InputError as exc:
        return None, exc.render().splitlines()[0].removeprefix("orch: error: ")


def _show(path: str) -> str:
    """A path on one line: control characters (a newline in a file name) escaped."""
    return json.dumps(path, ensure_ascii=False)[1:-1] if any(c < " " for c in path) else path


# -- git pre-commit ---------------------------------------------------------------------------------


def pre_commit(cwd: str) -> tuple[int, str]:
    """The exit code for git and what to tell the person committing."""
    place = locate(cwd)
    if place is None:
        return 0, ""
    lockset = locks_mod.load_dir(place.orch_dir)
    scope, unread = scope_of(place)
    env = {k: os.environ[k] for k in ("GIT_INDEX_FILE",) if k in os.environ}
    diff = ["diff-index", "--cached", "-r", "-z", "--no-renames", "--ignore-submodules=none"]
    r = git.run([*diff, "HEAD", "--"], cwd=place.top, env=env, check=False)
    if not r.ok:  # no commit yet: everything staged is new
        r = git.run([*diff, _empty_tree(place.top), "--"], cwd=place.top, env=env)
    raw = r.stdout
    changes = changeset.parse_raw(raw)
    agent = place.task is not None
    found = rules.check_changes(
        changes,
        lockset=lockset,
        scope=scope,
        agent=agent,
        read=lambda shas: git.cat_blobs(shas, cwd=place.top),
    )
    hard = [v for v in found if v.mode == "hard"]
    soft = [v for v in found if v.mode == "soft"]
    lines = [f"orch: warning: {_show(v.path)}: {v.rule}: {v.message} (needs `orch ack` before a merge)" for v in soft]
    if unread:
        lines.insert(0, f"orch: warning: the task's scope is not checked here: {unread} (orch verify checks it)")
    if not hard:
        return 0, "\n".join(lines)
    who = f"task {place.task}" + (f" (scope {scope})" if scope else " (no scope)") if agent else "the main checkout"
    lines.append(f"orch: commit refused: {len(hard)} staged change(s) break the rules for {who}:")
    lines += [f"  {_show(v.path)}: {v.rule}: {v.message}" for v in hard]
    if agent:
        lines.append(
            "  hint: unstage them (git restore --staged -- PATH) and keep to the task's scope; "
            "orch verify judges the branch before any merge, whatever this hook says"
        )
    else:
        lines.append(
            "  hint: these paths are locked in .orch/locks.yaml; if you, a person, mean it: git commit --no-verify"
        )
    return 1, "\n".join(lines)


def _empty_tree(cwd: str) -> str:
    return git.out(["hash-object", "-t", "tree", "--stdin"], cwd=cwd, input="")


# -- agent hooks ------------------------------------------------------------------------------------


class Edit:
    """One file an agent is about to write: repo-relative path, status and (when known) new text."""

    def __init__(self, path: str, status: str, new_text: str | None, known: bool = True) -> None:
        self.path = path
        self.status = status  # A, M or D
        self.new_text = new_text
        self.known = known  # False: the new text could not be worked out


def judge_edits(place: Place, edits: list[Edit]) -> list[rules.Violation]:
    """The rules the edits would break, checked like a commit of them would be."""
    lockset = locks_mod.load_dir(place.orch_dir)
    scope, _unread = scope_of(place)
    blobs: dict[str, bytes] = {}
    changes: list[changeset.Change] = []
    for i, e in enumerate(edits):
        old_key, new_key = f"{i:040x}o", f"{i:040x}n"
        old_sha = "0" * 40
        if e.status != "A":
            try:
                with open(os.path.join(place.top, e.path), "rb") as handle:
                    blobs[old_key] = handle.read()
                old_sha = old_key
            except OSError:
                pass
        new_sha = "0" * 40
        if e.status != "D":
            new_sha = new_key
            if e.known and e.new_text is not None:
                blobs[new_key] = e.new_text.encode("utf-8", "surrogateescape")
            else:
                blobs[new_key] = b"\0orch: unknown content\0"  # cannot tell: treat regions as changed
        status = "A" if old_sha.strip("0") == "" and e.status != "D" else e.status
        changes.append(
            changeset.Change(
                "000000" if status == "A" else "100644",
                "000000" if status == "D" else "100644",
                old_sha,
                new_sha,
                status,
                e.path,
            )  # fmt: skip
        )
    return rules.check_changes(
        changes,
        lockset=lockset,
        scope=scope,
        agent=True,
        read=lambda shas: {s: blobs[s] for s in shas if s in blobs},
    )


def _relative(place: Place, path: str, cwd: str) -> str | None:
    """``path`` relative to the worktree top, or None when it lies outside the worktree."""
    full = os.path.normpath(os.path.join(cwd, path))
    top = os.path.normpath(place.top)
    for candidate_top in {top, os.path.realpath(top)}:
        rel = os.path.relpath(full, candidate_top)
        if rel != ".." and not rel.startswith("../"):
            return rel
    return None


def _targets(place: Place, path: str, cwd: str) -> tuple[list[str], list[str]]:
    """The repo-relative paths a write to ``path`` lands on, and reasons to deny it.

    Both the path as written and the path with its folder's symlinks resolved (``src/bl`` -> ``billing``
    puts ``src/bl/pricing.py`` on ``src/billing/pricing.py``): each is judged.
    """
    rels: list[str] = []
    denied: list[str] = []
    rel = _relative(place, path, cwd)
    if rel is None:
        reason = _outside(place, path, cwd)
        return [], [reason] if reason else []
    rels.append(rel)
    full = os.path.normpath(os.path.join(cwd, path))
    real = os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))
    resolved = os.path.relpath(real, os.path.realpath(place.top))
    if resolved == ".." or resolved.startswith("../"):
        reason = _outside(place, real, cwd)
        if reason:
            denied.append(reason)
    elif resolved != rel:
        rels.append(resolved)
    return rels, denied


def _outside(place: Place, path: str, cwd: str) -> str | None:
    """A reason to deny a path outside the task worktree that lies inside the project."""
    full = os.path.normpath(os.path.join(cwd, path))
    rel = os.path.relpath(full, os.path.normpath(place.root))
    if rel != ".." and not rel.startswith("../"):
        return f"{full} is outside your task worktree {place.top}: edit files in your own worktree only"
    return None


def _read(place: Place, rel: str) -> str | None:
    try:
        with open(os.path.join(place.top, rel), encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def claude_edits(place: Place, data: dict[str, Any], cwd: str) -> tuple[list[Edit], list[str]]:
    """The edits one Claude Code tool call makes, and reasons to deny paths outside the worktree."""
    tool = data.get("tool_name")
    args = data.get("tool_input") or {}
    raw_path = args.get("notebook_path") if tool == "NotebookEdit" else args.get("file_path")
    if not isinstance(raw_path, str) or not raw_path:
        return [], []
    rels, denied = _targets(place, raw_path, cwd)
    if not rels:
        return [], denied
    rel = rels[0]
    current = _read(place, rel)
    status = "M" if current is not None else "A"
    new: str | None = None
    known = True
    if tool == "Write":
        new = args.get("content") if isinstance(args.get("content"), str) else None
        known = new is not None
    elif tool == "Edit":
        new, known = _apply_edits(current, [args])
    elif tool == "MultiEdit":
        new, known = _apply_edits(current, list(args.get("edits") or []))
    else:
        known = False
    return [Edit(r, status, new, known) for r in rels], denied


def _apply_edits(text: str | None, edits: list[Any]) -> tuple[str | None, bool]:
    if text is None:
        text = ""
    for e in edits:
        if not isinstance(e, dict):
            return None, False
        old, new = e.get("old_string"), e.get("new_string")
        if not isinstance(old, str) or not isinstance(new, str) or (old and old not in text):
            return None, False
        text = text.replace(old, new) if e.get("replace_all") else text.replace(old, new, 1)
    return text, True


# Gemini CLI's file tools and the Claude Code tool each one acts like (``replace`` edits in place).
GEMINI_TOOLS = {"write_file": "Write", "replace": "Edit"}


def gemini_edits(place: Place, data: dict[str, Any], cwd: str) -> tuple[list[Edit], list[str]]:
    """The edits one Gemini CLI ``BeforeTool`` call makes: ``write_file`` {file_path, content} and
    ``replace`` {file_path, old_string, new_string, allow_multiple} are judged like Claude Code's
    Write and Edit; any other tool that names a ``file_path`` as a change of unknown content."""
    args = data.get("tool_input")
    if not isinstance(args, dict):
        return [], []
    tool = data.get("tool_name")
    inputs = dict(args)
    if tool == "replace":  # every occurrence with allow_multiple (or an older expected_replacements > 1)
        expected = args.get("expected_replacements")
        inputs["replace_all"] = args.get("allow_multiple") is True or (type(expected) is int and expected > 1)
    claude_tool = GEMINI_TOOLS.get(tool) if isinstance(tool, str) else None
    return claude_edits(place, {"tool_name": claude_tool or "unknown", "tool_input": inputs}, cwd)


def codex_edits(place: Place, data: dict[str, Any], cwd: str) -> tuple[list[Edit], list[str]]:
    """The edits a Codex ``apply_patch`` call makes, read from the patch text."""
    args = data.get("tool_input") or {}
    command = args.get("command") if isinstance(args, dict) else None
    if isinstance(command, list):
        command = next((c for c in reversed(command) if isinstance(c, str) and "*** " in c), None)
    if not isinstance(command, str):
        command = args.get("patch") if isinstance(args, dict) and isinstance(args.get("patch"), str) else None
    if not isinstance(command, str):
        return [], []
    edits: list[Edit] = []
    denied: list[str] = []
    ops: list[tuple[str, str, list[str]]] = []  # (op, path, body lines)
    for line in command.splitlines():
        marked = line.strip()  # Codex trims a line before it looks for a marker
        for marker, op in (("*** Add File: ", "A"), ("*** Delete File: ", "D"), ("*** Update File: ", "M"),
                           ("*** Move to: ", "R")):  # fmt: skip
            if marked.startswith(marker):
                ops.append((op, marked[len(marker) :].strip(), []))
                break
        else:
            if ops and not marked.startswith("***"):
                ops[-1][2].append(line)
    pending_update: tuple[str, str | None, bool] | None = None
    for op, raw_path, body in ops:
        rels, why = _targets(place, raw_path, cwd)
        denied += why
        if not rels:
            continue
        for alias in rels[1:]:  # the same file through a symlinked folder: judged as a change there too
            edits.append(Edit(alias, "M" if op != "D" else "D", None, known=False))
        rel = rels[0]
        if op == "A":  # on a file that exists, Codex overwrites it: a modification
            status = "M" if os.path.lexists(os.path.join(place.top, rel)) else "A"
            edits.append(Edit(rel, status, "".join(line[1:] + "\n" for line in body)))
        elif op == "D":
            edits.append(Edit(rel, "D", None))
        elif op == "M":
            new, known = _apply_hunks(_read(place, rel), body)
            edits.append(Edit(rel, "M", new, known))
            pending_update = (rel, new, known)
        elif op == "R" and pending_update is not None:
            old_rel, new, known = pending_update
            edits[-1] = Edit(old_rel, "D", None)
            edits.append(Edit(rel, "A", new, known))
            pending_update = None
    return edits, denied


def _apply_hunks(text: str | None, body: list[str]) -> tuple[str | None, bool]:
    """Apply the ``@@`` chunks of one Update File section; (None, False) when they do not fit."""
    if text is None:
        return None, False
    lines = text.split("\n")
    chunks: list[list[str]] = [[]]
    for line in body:
        if line.startswith("@@"):
            chunks.append([])
        elif line[:1] in (" ", "-", "+") or line == "":
            chunks[-1].append(line)
    pos = 0
    for chunk in chunks:
        if not chunk:
            continue
        old = [c[1:] for c in chunk if c[:1] in (" ", "-") or c == ""]
        new = [c[1:] for c in chunk if c[:1] in (" ", "+") or c == ""]
        for i in range(pos, len(lines) - len(old) + 1):
            if lines[i : i + len(old)] == old:
                lines[i : i + len(old)] = new
                pos = i + len(new)
                break
        else:
            return None, False
    return "\n".join(lines), True


def agent_hook(kind: str, stdin_text: str) -> tuple[int, str]:
    """(exit code, stderr text) for one Claude Code or Codex PreToolUse call, or one Gemini CLI
    BeforeTool call (``kind``: claude, codex, gemini): 2 denies, 0 allows (the three read exit 2 so)."""
    try:
        data = json.loads(stdin_text)
    except ValueError:
        return 2, "orch: the hook input is not JSON; refusing the edit (orch verify will judge the branch anyway)"
    if not isinstance(data, dict):
        return 2, "orch: the hook input is not a JSON object"
    given = data.get("cwd")
    cwd = given if isinstance(given, str) else os.getcwd()
    if not os.path.isdir(cwd):
        cwd = os.getcwd()
    place = locate(cwd)
    if place is None:
        return 0, ""
    if kind == "codex":
        edits, denied = codex_edits(place, data, cwd)
    elif kind == "gemini":
        edits, denied = gemini_edits(place, data, cwd)
    else:
        edits, denied = claude_edits(place, data, cwd)
    if os.environ.get("ORCH_PHASE") == "plan" and data.get("tool_name") in WRITE_TOOLS:
        return planning(edits, denied)
    found = judge_edits(place, edits) if edits else []
    if place.task is not None and not os.path.islink(os.path.join(place.top, REFLECTION)):
        found = [v for v in found if not (v.path == REFLECTION and v.rule == "scope")]  # never committed
    if place.task is None:  # a session in the main checkout: only the project's locks apply
        found = [v for v in found if v.lock and v.lock != locks_mod.AGENTS_MD_LOCK]
    if not found and not denied:
        return 0, ""
    lines = ["orch: this edit is refused by the task's rules:"]
    lines += [f"  {r}" for r in denied]
    for v in found:
        soft = " (soft lock: only a person can accept it, with orch ack)" if v.mode == "soft" else ""
        lines.append(f"  {_show(v.path)}: {v.rule}: {v.message}{soft}")
    lines.append(
        "  Leave these paths alone and keep to your scope; if the task cannot be done without them, stop and say why."
    )
    return 2, "\n".join(lines)


# The write tools the agents' hooks see (Claude Code, Codex, Gemini CLI).
WRITE_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit", "apply_patch", "write_file", "replace"})


def planning(edits: list[Edit], denied: list[str]) -> tuple[int, str]:
    """A planning run (``ORCH_PHASE=plan``, ``orch.agents.planphase``): the plan, ``PLAN.md`` at the top
    of the worktree, is the one write allowed (never committed, so no scope or lock applies to it)."""
    if edits and not denied and all(e.path == "PLAN.md" and e.status != "D" for e in edits):
        return 0, ""
    paths = ", ".join(_show(e.path) for e in edits) or "a file orch cannot name"
    return 2, (
        f"orch: this edit is refused: this run is for a plan only, and it writes {paths}.\n"
        "  Write your plan to PLAN.md at the top of your worktree and change nothing else: a person approves\n"
        "  the plan before any code is written, and a new run carries it out."
    )
