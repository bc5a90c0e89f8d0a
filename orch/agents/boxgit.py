"""The git a boxed agent commits with: a shadow of its worktree's git folder, and how orch brings the
commits in.

In the box, the worktree's private git folder (``<common>/worktrees/<name>``) is covered by a shadow
(``run/tasks/<id>/box/admin``) whose ``commondir`` names a private common folder
(``run/tasks/<id>/box/common``): refs seeded from the repository's branches and tags, a config of its
own, and a private object folder with the repository's as a read-only alternate. The agent commits,
branches and rewrites there as it likes; nothing it does can delete or change an object or a ref of
the repository, whose git folder it sees read-only.

When the run ends, ``bring_in`` (outside the box, in the supervisor or ``orch stop``) reads the
shadow's refs as plain files (never running git on the shadow: its config is the agent's), packs
what they reach from the repository's side (the private objects as an alternate), lets
``git index-pack --strict`` check every object into the repository, moves ``orch/<id>`` to the
agent's tip when it holds the task's base (otherwise keeps it under ``refs/orch/kept/<id>/``), brings
the safety snapshots the agent hook made (``refs/orch/safety/<id>/<n>``, ``orch.verify.safety``) across
as such, numbered on, keeps the agent's other new refs under ``kept`` too, and resets the worktree's
index to the new tip. It is idempotent: ``orch stop`` or the next run calls it again after a crash.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from orch.agents import taskgit
from orch.core import git, gitpipe, gitsafety, refs
from orch.core.errors import EnvError, OrchError
from orch.core.repo import Project

SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
SEED = "orch-seed"  # the refs the shadow started with, as orch wrote them (read back to tell what is new)
MAX_REFS = 200  # refs of the agent's kept at most (the rest is named in the note)
MAX_FILE = 16 << 20
MAX_PACK = 4 << 30  # bytes of new objects a run may bring in (index-pack refuses more)
IMPORT_TIMEOUT = 600.0  # seconds for packing and checking them


@dataclass
class Shadow:
    folder: Path  # run/tasks/<id>/box
    admin: Path  # the worktree's real private git folder, which the shadow covers in the box

    @property
    def shadow_admin(self) -> Path:
        return self.folder / "admin"

    @property
    def common(self) -> Path:
        return self.folder / "common"


def folder_of(project: Project, task_id: str) -> Path:
    return project.task_dir(task_id) / "box"


def prepare(project: Project, task_id: str, worktree: Path) -> Shadow:
    """Build a fresh shadow for a run (after bringing in what an earlier one left)."""
    tg = taskgit.open_worktree(project, task_id, worktree)
    if tg is None or tg.admin is None or tg.problem:
        why = tg.problem if tg is not None and tg.problem else "no worktree"
        raise EnvError(f"cannot box task {task_id}: {why}", hint="orch doctor --fix, then orch start")
    folder = folder_of(project, task_id)
    if folder.exists() or folder.is_symlink():
        if bring_in(project, task_id, worktree).problems:  # what could not come in stays, set aside
            os.replace(folder, folder.with_name(f"box.failed-{refs.timestamp()}"))
        else:
            _remove(folder)
    shadow = Shadow(folder, tg.admin)
    admin, common = shadow.shadow_admin, shadow.common
    for sub in (admin, common / "objects" / "info", common / "refs" / "heads", common / "refs" / "tags"):
        sub.mkdir(parents=True, exist_ok=True)
    (common / "info").mkdir()
    real_objects = project.common_dir / "objects"
    _write(common / "objects" / "info" / "alternates", f"{real_objects.resolve()}\n")
    listing = git.out(  # and the programs a person accepted in git's config: the box's git checks them too
        ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/", "refs/tags/", "refs/remotes/",
         gitsafety.BASELINE_REF],
        cwd=project.root,
    )  # fmt: skip
    seed = "".join(f"{line}\n" for line in listing.splitlines() if _ref_line(line))
    _write(common / "packed-refs", "# pack-refs with: peeled fully-peeled sorted \n" + seed)
    _write(folder / SEED, seed)
    _write(common / "HEAD", "ref: refs/heads/" + refs.branch_name(task_id) + "\n")
    _write(common / "config", _config(project))
    for name in ("info/exclude", "shallow"):
        source = project.common_dir / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, common / name)
    head = tg.head()
    _write(admin / "HEAD", (head or f"ref: refs/heads/{refs.branch_name(task_id)}") + "\n")
    _write(admin / "commondir", f"{common}\n")
    _write(admin / "gitdir", f"{worktree / '.git'}\n")
    index = tg.admin / "index"
    if index.is_file() and not index.is_symlink():
        shutil.copyfile(index, admin / "index")
    return shadow


def _config(project: Project) -> str:
    lines = ["[core]", "\trepositoryformatversion = 1", "\tbare = false", "\tlogAllRefUpdates = true"]
    hooks = project.common_dir / "hooks"
    if hooks.is_dir():  # orch's git hooks, an early warning in the box as outside
        lines.append(f"\thooksPath = {hooks.resolve()}")
    fmt = git.run(["rev-parse", "--show-object-format"], cwd=project.root, check=False).stdout.strip()
    if fmt and fmt != "sha1":
        lines += ["[extensions]", f"\tobjectFormat = {fmt}"]
    return "\n".join(lines) + "\n"


def _ref_line(line: str) -> bool:
    sha, _, name = line.partition(" ")
    return bool(SHA_RE.fullmatch(sha)) and name.startswith("refs/") and "\n" not in name


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _remove(folder: Path) -> None:
    if folder.is_symlink() or not folder.is_dir():
        folder.unlink()
        return
    shutil.rmtree(folder)


# -- bringing the agent's commits in ----------------------------------------------------------------


@dataclass
class BroughtIn:
    tip: str | None = None  # the branch's new tip (None: the agent did not move it)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def bring_in(project: Project, task_id: str, worktree: Path | None) -> BroughtIn:
    """Bring the boxed run's commits into the repository (see the module's text); idempotent."""
    out = BroughtIn()
    folder = folder_of(project, task_id)
    common = folder / "common"
    if not _is_dir(folder) or not _is_dir(common):
        return out
    seed = dict(_parse_refs(_read(folder / SEED) or ""))
    found = _shadow_refs(common)
    branch = f"refs/heads/{refs.branch_name(task_id)}"
    new = {name: sha for name, sha in found.items() if seed.get(name) != sha}
    head = (_read(folder / "admin" / "HEAD") or "").strip()
    detached = {"HEAD": head} if SHA_RE.fullmatch(head) and head not in seed.values() else {}
    if not new and not detached:
        return out
    objects = common / "objects"
    tips = list(dict.fromkeys([*new.values(), *detached.values()]))
    try:
        _import(project, objects, tips)
    except OrchError as exc:
        first = (str(exc).splitlines() or ["?"])[0]
        out.problems.append(f"the commits the agent made in the box could not be brought in: {first}")
        out.events.append(("REFUSE", f"box import: {first}"))
        return out
    root = project.root
    base = git.rev_parse(f"{refs.BASE_PREFIX}/{task_id}", cwd=root)
    current = git.rev_parse(branch, cwd=root)
    tip = new.pop(branch, None)
    if SHA_RE.fullmatch(head) and head not in (tip, current, found.get(branch)):
        # a detached HEAD the agent committed on: the branch comes along when it holds the branch
        if _is_ancestor(tip or current or head, head, root):
            tip = head
            name = refs.branch_name(task_id)
            out.notes.append(f"the agent left HEAD detached in its box; {name} was moved forward to it ({head[:12]})")
        else:
            new["HEAD"] = head
    if tip is not None and git.rev_parse(tip, cwd=root) == tip:
        holds_base = base is None or _is_ancestor(base, tip, root)
        if current is None or tip == current or _is_ancestor(tip, current, root):
            pass  # brought in before (the branch has gone on since: a snapshot), or no branch to move
        elif holds_base and _is_ancestor(current, tip, root):  # forward only
            git.run(["update-ref", "-m", "orch: the agent's commits from the box", branch, tip, current], cwd=root)
            out.tip = tip
            out.events.append(("BOX", f"{branch} -> {tip[:12]}"))
            if worktree is not None:
                _reset_index(project, task_id, worktree, tip)
        else:
            new[branch] = tip
            why = "no longer held the task's base" if not holds_base else "went another way than orch/<id>"
            out.notes.append(f"the agent's branch in the box {why}: kept aside")
    for name, sha in _safety_refs(new, task_id):
        ref = _bring_safety(root, task_id, sha)
        if ref is not None:
            out.events.append(("SAFETY", f"{name} {sha[:12]} from the box as {ref}"))
    now = git.rev_parse(branch, cwd=root)
    for n, (name, sha) in enumerate(sorted(new.items())):
        if n >= MAX_REFS:
            out.notes.append(f"{len(new) - MAX_REFS} more refs the agent made in the box were not kept")
            break
        if name in seed:  # a ref of the repository's, moved in the box only
            out.events.append(
                ("BOX", f"the agent moved {name} in its box (to {sha[:12]}); the repository's did not move")
            )
        if git.rev_parse(sha, cwd=root) != sha:
            continue  # a tag or a tree: not kept
        if now is not None and _is_ancestor(sha, now, root):
            continue  # on the task's branch already
        ref = f"{refs.KEPT_PREFIX}/{task_id}/box/{_safe(name)}"
        if git.rev_parse(ref, cwd=root) == sha:
            continue
        while git.rev_parse(ref, cwd=root) is not None:  # two names of the agent's made one: keep both
            ref += "-1"
        git.run(["update-ref", ref, sha, "0" * len(sha)], cwd=root)
        out.kept.append(ref)
        out.events.append(("KEEP", f"{name} {sha[:12]} as {ref}"))
    return out


def _safety_refs(new: dict[str, str], task_id: str) -> list[tuple[str, str]]:
    """The task's safety snapshots the hook made in the box (taken out of ``new``), oldest first."""
    head = f"{refs.SAFETY_PREFIX}/{task_id}/"
    found = [(name, sha) for name, sha in new.items() if name.startswith(head) and name[len(head) :].isdigit()]
    for name, _ in found:
        del new[name]
    return sorted(found, key=lambda pair: int(pair[0][len(head) :]))[:MAX_REFS]


def _bring_safety(root: Path, task_id: str, sha: str) -> str | None:
    """``sha`` as the repository's next ``refs/orch/safety/<id>/<n>`` (None: one names it already)."""
    from orch.verify import safety

    have = safety.numbered(root, task_id)
    if git.rev_parse(sha, cwd=root) != sha or any(commit == sha for _, commit, _ in have):
        return None
    n = have[-1][0] if have else 0
    for _ in range(safety.MAX_TRIES):
        n += 1
        ref = f"{safety.prefix(task_id)}/{n}"
        if git.run(["update-ref", ref, sha, "0" * len(sha)], cwd=root, check=False).ok:
            return ref
    return None


def _import(project: Project, objects: Path, tips: list[str]) -> None:
    """Copy the objects ``tips`` reach (and the repository lacks) into it, each checked by git."""
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects.resolve())}
    listing = git.run(
        ["rev-list", "--objects", "--no-object-names", *tips, "--not", "--all"], cwd=project.root, env=env
    ).stdout
    if not listing.strip():
        return
    gitpipe.pipe(
        ["pack-objects", "--stdout", "-q"],
        ["index-pack", "--stdin", "--strict", f"--max-input-size={MAX_PACK}"],
        cwd=project.root,
        input=listing,
        first_env=env,
        timeout=IMPORT_TIMEOUT,
    )


def _reset_index(project: Project, task_id: str, worktree: Path, tip: str) -> None:
    """The worktree's index, as its new HEAD has it (the files in the worktree are left as they are)."""
    with contextlib.suppress(OrchError):
        tg = taskgit.open_worktree(project, task_id, worktree)
        if tg is not None and tg.admin is not None and not tg.problem:
            tg.git(["read-tree", tip])


def _shadow_refs(common: Path) -> dict[str, str]:
    """Every ref in the shadow, read as plain files: packed first, loose ones over them."""
    found = dict(_parse_refs(_read(common / "packed-refs") or ""))
    base = common / "refs"
    if _is_dir(base):
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in filenames:
                path = Path(dirpath) / name
                text = (_read(path) or "").strip()
                if SHA_RE.fullmatch(text):
                    found["refs/" + path.relative_to(base).as_posix()] = text
            if len(found) > 10 * MAX_REFS:
                break
    return found


def _parse_refs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith(("#", "^")):
            continue
        sha, _, name = line.partition(" ")
        if SHA_RE.fullmatch(sha) and name.startswith("refs/"):
            out.append((name.strip(), sha))
    return out


def _read(path: Path) -> str | None:
    """A file of the shadow's, read only if it is a plain file (never through a link), capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_FILE).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_ancestor(old: str, new: str, root: Path) -> bool:
    try:
        return git.is_ancestor(old, new, cwd=root)
    except OrchError:
        return False


def _safe(name: str) -> str:
    """A ref name of the agent's, as a part of one of orch's (``refs/heads/x`` -> ``heads/x``)."""
    text = name.removeprefix("refs/")
    text = re.sub(r"[^A-Za-z0-9._/-]", "_", text)
    text = re.sub(r"\.\.+|/\.|\.lock(?=/|$)|//+", "_", text).strip("/.") or "ref"
    return text[:200]
