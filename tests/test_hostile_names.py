"""Hostile task ids, titles, scopes, agent and branch names: refused clearly, or carried as plain data.

Each value is fed through ``plan.md``, ``orch plan add``, ``orch spin`` and ``config.yaml``. Whatever
orch answers, no shell ever runs one (no canary file appears anywhere), nothing appears outside
``.orch/`` and the worktree root (the whole temporary folder and ``$HOME`` are compared before and
after), no ref is made but a task's own, and a refusal is exit 3 with one clear line. Most commands
run forked from a warm server (``forkorch``); each test also runs some as ``python -m orch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Orch, Run, git, status_of, wait_state, write_plan
from forkorch import ForkOrch


def hostile(canary: Path) -> list[str]:
    """Names that are shell, option, path, revision or file-name syntax, control characters, a huge
    name, and look-alikes of a real id (fullwidth, Cyrillic, zero-width)."""
    return [
        f"$(touch {canary})", f"`touch {canary}`", "$(touch canary)", "`touch canary`", "T1;touch canary",
        f"--upload-pack=touch {canary}", "-b", "--force", "-", "../..", "../../escaped", "/tmp", "a/b", "~root",
        "a\rb", "a\nb", "a\tb", "a b", "a@{b", "@", "HEAD", "x.lock", "a..b", "a~1", "a^", "a:b", "a?b", "a*b", "a[b",
        "a\\b", ".hidden", "x" * 10_000, "Ｔ１", "Т1", "T1\u200b", "\u202eT1", "T1\x1b[2J", "é",
    ]  # fmt: skip


def snapshot(*roots: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every path under ``roots`` but ``skip``, with a digest of each file's bytes."""
    found: dict[str, str] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if here / d not in skip]
            for name in dirs:
                found[str(here / name)] = "dir"
            for name in files:
                path = here / name
                found[str(path)] = "link" if path.is_symlink() else hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def canaries(*roots: Path) -> list[str]:
    return [os.path.join(d, n) for root in roots for d, ds, fs in os.walk(root) for n in ds + fs if "canary" in n]


class Guard:
    """The temporary folder and $HOME as they were, to compare with after the hostile commands."""

    def __init__(self, tmp: Path, repo: Path) -> None:
        self.roots = (tmp, Path(os.environ["HOME"]))
        self.skip = (repo / ".git", repo / ".orch")
        self.before = snapshot(*self.roots, skip=self.skip)
        self.repo = repo

    def check(self, *, allowed: tuple[str, ...] = ()) -> None:
        assert canaries(*self.roots) == []
        after = snapshot(*self.roots, skip=self.skip)
        changed = sorted(p for p in self.before.keys() | after.keys() if self.before.get(p) != after.get(p))
        assert [p for p in changed if os.path.relpath(p, self.repo) not in allowed] == []
        refs = git(self.repo, "for-each-ref", "--format=%(refname)").split()
        valid = re.compile(r"refs/heads/(main|orch/[A-Za-z][A-Za-z0-9_-]{0,39})|refs/orch/[a-z-]+/[\w/.-]+")
        assert [r for r in refs if not valid.fullmatch(r) and r != "refs/orch-git-baseline"] == []


@pytest.fixture
def forked(project: Path) -> Iterator[ForkOrch]:
    server = ForkOrch(project)
    yield server
    server.close()


def refused(r: Run, *, code: int = 3) -> str:
    """The one line orch refused with (exit ``code``, no traceback, no crash)."""
    assert r.returncode == code, r.output[:2000]
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output[:2000]
    lines = [line for line in r.stderr.splitlines() if line.startswith("orch: ")]
    assert lines, r.output[:2000]
    return lines[0]


TASK = "## {id}: {title}\n- scope: {scope}\n- deps: none\n- agent: {agent}\n- run: true\n\nBrief.\n\n"


def plan_text(**fields: str) -> str:
    task = {"id": "T1", "title": "Task", "scope": "^src/", "agent": "shell", **fields}
    return "# Plan: hostile\n\n" + TASK.format(**task)


def first_line(value: str) -> str:
    """What plan.md reads of a value: up to the first line break."""
    return (value.splitlines() or [""])[0]


def compiles(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


# Which hostile values a plan.md field takes as data (the rest are refused at their line): a title is
# free text and a scope a regular expression, so every one that compiles; an id or an agent name only
# what their rules allow ('a:b' is the id 'a' with the title 'b: ...'; orch status refuses an agent with
# no manifest, at its line too).
TAKEN: dict[str, Callable[[str], bool]] = {
    "id": lambda v: v in ("HEAD", "a:b"),
    "title": lambda v: True,
    "scope": lambda v: compiles(first_line(v).strip()),
    "deps": lambda v: False,
    "agent": lambda v: first_line(v) in ("HEAD", "a", "a..b", "x.lock"),
}


@pytest.mark.parametrize("field", ["id", "title", "scope", "deps", "agent"])
def test_hostile_plan_fields_are_data_or_refused_at_their_line(
    project: Path, forked: ForkOrch, orch: Orch, tmp_path: Path, field: str
) -> None:
    guard = Guard(tmp_path, project)
    # A bad id is reported at its heading (line 3), a bad field at its own line; a line break inside
    # a value ends that line, and what follows is reported on the next.
    line = {"id": 3, "title": 3, "scope": 4, "deps": 5, "agent": 6}[field]
    for value in hostile(tmp_path / "canary"):
        if field == "deps":
            text = plan_text().replace("- deps: none", f"- deps: {value}")
        else:
            text = plan_text(**{field: value})
        (project / ".orch/plan.md").write_bytes(text.encode())
        for command in (["plan"], ["status"]):
            r = forked(*command)
            if r.returncode == 0:
                assert TAKEN[field](value), (field, value[:50], command)
                continue
            message = refused(r)
            assert re.match(rf"orch: \.orch/plan\.md:({line}|{line + 1}): ", message), (field, value[:50], message)
            assert field == "agent" or not TAKEN[field](value), (field, value[:50], message)
    for where, text in ((3, plan_text(title="a\x00b")), (4, "# Plan\n\n## T1: Task\n- run: a\x00b\n")):
        (project / ".orch/plan.md").write_bytes(text.encode())  # a NUL anywhere: plan.md is text
        assert refused(forked("plan")) == f"orch: .orch/plan.md:{where}: holds a NUL character; plan.md is text"
    guard.check()
    write_plan(project, plan_text(id="$(touch canary)"))  # and as real processes
    assert refused(orch("spin", "--ready", "--no-start")).startswith("orch: .orch/plan.md:3: ")
    assert refused(orch("plan")).startswith("orch: .orch/plan.md:3: bad task id '$(touch canary)'")
    guard.check()


PLAN_ADD_FIELDS = ["id", "title", "scope", "deps", "agent", "model", "budget", "brief"]


@pytest.mark.parametrize("field", PLAN_ADD_FIELDS)
def test_hostile_values_through_plan_add(
    project: Path, forked: ForkOrch, orch: Orch, tmp_path: Path, field: str
) -> None:
    write_plan(project, plan_text())
    plan = project / ".orch/plan.md"
    before = plan.read_bytes()
    guard = Guard(tmp_path, project)
    taken = []
    for value in hostile(tmp_path / "canary"):
        task_id = value if field == "id" else "T2"
        args = ["plan", "add", "--title", value if field == "title" else "Second"]
        if field not in ("id", "title"):
            args.append(f"--{field}={value}")
        r = forked(*args, "--", task_id)
        if r.returncode != 0:
            assert refused(r) and plan.read_bytes() == before, (field, value[:50])  # nothing written
            continue
        taken.append(value)
        added = json.loads(forked("plan", "--json").stdout)["tasks"][-1]  # it reads back, as given
        shown = {"id": added["id"], "title": added["title"], "brief": None}.get(field, added.get(field))
        assert shown in (value, value.strip(), None), (field, value[:50], added)
        plan.write_bytes(before)
    guard.check()
    assert [first_line(v)[:20] for v in taken] == [first_line(v)[:20] for v in hostile(tmp_path) if ADDED[field](v)]
    # and as a real process: the id is refused before anything is read or written
    assert refused(orch("plan", "add", "--title", "x", "--", "$(touch canary)")).startswith("orch: bad task id")
    assert plan.read_bytes() == before
    guard.check()


# What ``orch plan add`` takes: one line of anything for text fields; an id, deps and an agent by their
# rules; a scope that compiles; a budget it can read.
ADDED: dict[str, Callable[[str], bool]] = {
    "id": lambda v: v == "HEAD",
    "title": lambda v: "\n" not in v and "\r" not in v,
    "scope": lambda v: "\n" not in v and "\r" not in v and compiles(v.strip()),
    "deps": lambda v: False,
    "agent": lambda v: False,  # none has a manifest
    "model": lambda v: "\n" not in v and "\r" not in v,
    "budget": lambda v: False,
    "brief": lambda v: True,
}


def test_hostile_ids_and_agents_through_spin(project: Path, forked: ForkOrch, orch: Orch, tmp_path: Path) -> None:
    write_plan(project, plan_text())
    git(project, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")
    guard = Guard(tmp_path, project)
    for value in hostile(tmp_path / "canary"):
        if value != "HEAD":  # a valid id, not in the plan
            message = refused(forked("spin", "--no-start", "--", "T1", value))
            assert message.startswith("orch: refused task id ") and len(message) < 300, message[:300]
        message = refused(forked("spin", "--no-start", "--agent", value, "T1"))
        assert message.startswith(("orch: bad agent name ", "orch: T1: no agent ")) and len(message) < 300, message
    assert refused(forked("spin", "--no-start", "HEAD")) == "orch: HEAD: no task 'HEAD' in .orch/plan.md"
    guard.check()
    assert git(project, "for-each-ref", "refs/heads/orch/", "refs/orch/") == ""  # nothing was claimed
    assert not (project / ".orch/worktrees").exists() and not (project / ".orch/run/tasks").exists()
    # as real processes
    assert refused(orch("spin", "--no-start", "--", "$(touch canary)")).startswith("orch: refused task id")
    assert refused(orch("spin", "--no-start", "--agent", "--upload-pack=touch canary", "T1")).startswith(
        "orch: bad agent name '--upload-pack=touch canary'"
    )
    guard.check()


RECORDER = """\
description: writes the command line it was given to src/argv.json
command: ["python3", "-c", "import json, os, sys; os.makedirs('src', exist_ok=True); json.dump(sys.argv[1:], open('src/argv.json', 'w'))", "{task}", "{model}", "{prompt}"]
"""  # noqa: E501


def test_hostile_text_travels_as_data_through_a_whole_run(project: Path, orch: Orch, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    text = f"$(touch {canary}) `touch {canary}` --upload-pack=touch {canary} -b ../.. a@{{b x.lock Ｔ１ Т1 [/x] \u202e"
    scope = r"^src/|\$\(touch canary\)|`touch`|--upload-pack=x|\.\./\.\.|@\{|x\.lock"
    (project / ".orch/agents/recorder.yaml").write_text(RECORDER)
    plan = plan_text(title=text, scope=scope, agent="recorder")
    write_plan(project, plan.replace("\n\nBrief.", f"\n- model: {text}\n\n{text}"))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan")
    guard = Guard(tmp_path, project)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    argv = json.loads(git(project, "show", "orch/T1:src/argv.json"))
    assert argv[:2] == ["T1", text] and text in argv[2]  # each an argument of its own, never run
    assert orch.ok("verify", "T1").stdout.startswith("T1: OK at ")
    r = orch.ok("merge")
    assert "LANDED on main" in r.stdout, r.output
    assert text in git(project, "log", "-1", "--format=%B", "main")
    status = orch.ok("status").stdout  # shown as written, the bidi override escaped
    assert "$(touch" in status and "[/x] \\u202e" in status and "\u202e" not in status
    guard.check(allowed=("src", "src/argv.json"))  # what the merge brought into the checkout


@pytest.mark.parametrize("key", ["base_branch", "worktree_root"])
def test_hostile_branch_and_folder_names_in_the_config(
    project: Path, forked: ForkOrch, orch: Orch, tmp_path: Path, key: str
) -> None:
    write_plan(project, plan_text())
    git(project, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")
    config = project / ".orch/config.yaml"
    original = config.read_text()
    guard = Guard(tmp_path, project)
    line = {"base_branch": 2, "worktree_root": 5}[key]
    for value in [*hostile(tmp_path / "canary"), "a\x00b", "x/" * 3000]:
        config.write_text(original.replace(f"{key}: ", f"{key}: {json.dumps(value)}  # was: ", 1))
        commands = [["status"], ["spin", "--no-start", "T1"], ["merge", "--dry-run"], ["doctor"]]
        if key == "worktree_root" and "\x00" not in value and not (project / value).resolve().is_relative_to(tmp_path):
            commands.remove(["spin", "--no-start", "T1"])  # a folder outside the test's own (/tmp, ../..): not made
        for command in commands:
            r = forked(*command)
            if r.returncode == 0:  # a name git takes (no such branch), a folder that can be
                assert command[0] in ("status", "doctor") or key == "worktree_root", (value[:50], command)
            else:
                message = refused(r)
                assert message.startswith(f"orch: .orch/config.yaml:{line}: "), (value[:50], command, message)
        spun = (project / ".orch/run/tasks/T1/status.yaml").exists() and status_of(project, "T1")["worktree"]
        if spun:  # a worktree root that can be a folder: the spin made its worktree there, and only there
            worktree = Path(spun)
            assert worktree.name == "T1" and worktree.parent == Path(os.path.normpath(project / value)), value
            cleaned = forked("clean", "--force", "T1")
            assert cleaned.returncode == 0 and not worktree.exists(), cleaned.output
    config.write_text(original)
    guard.check()
    config.write_text(original.replace("base_branch: main", "base_branch: --upload-pack=x"))
    r = orch("merge", "--dry-run")  # a real process
    assert refused(r) == (
        "orch: .orch/config.yaml:2: base_branch: '--upload-pack=x' is not a valid branch name: "
        "it starts with '-', which git reads as an option"
    )
    guard.check()


def test_hostile_branch_names_through_merge_into(project: Path, forked: ForkOrch, orch: Orch, tmp_path: Path) -> None:
    write_plan(project, plan_text())
    git(project, "commit", "-q", "-m", "plan", "--", ".orch/plan.md")
    guard = Guard(tmp_path, project)
    before = git(project, "for-each-ref")
    for value in hostile(tmp_path / "canary"):
        for command in (["merge", "--dry-run", "--into", value], ["merge", "--into", value], ["ack-base", "HEAD"]):
            if command[0] == "ack-base":
                command = [*command, "--into", value]
            message = refused(forked(*command))
            assert ("no branch" in message or "is not a branch name" in message) and len(message) < 300, message[:300]
    assert git(project, "for-each-ref") == before  # no ref made or moved, no ceremony journal begun
    assert not (project / ".orch/run/merges").exists() or not any((project / ".orch/run/merges").iterdir())
    r = orch("merge", "--into", "--upload-pack=touch canary")  # a real process
    assert refused(r) == "orch: '--upload-pack=touch canary' is not a branch name"
    guard.check()
