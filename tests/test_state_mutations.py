"""Mutated state files: every command that reads one exits 3 and says which file (and line) is wrong.

For each file orch reads (config.yaml, locks.yaml, an agent manifest, a task's status.yaml and
manifest.yaml) a set of mutations (wrong types, missing required keys, unknown keys, bad enums,
truncated YAML, ...) is applied in turn, and a handful of commands that read the file run against it:
each must exit 3 with a message that starts with the file's path, with ``:LINE`` when the problem
sits on a line. The file is put back after each command, so one project serves a whole file.
The mutated runs are real processes forked from one warm server (``forkorch``); the first mutation
of each command runs as ``python -m orch`` too, and must answer byte for byte as the forked one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Orch, git, write_plan
from forkorch import ForkOrch

CONFIG = ".orch/config.yaml"
LOCKS = ".orch/locks.yaml"
AGENT = ".orch/agents/shell.yaml"
STATUS = ".orch/run/tasks/T1/status.yaml"
MANIFEST = ".orch/run/tasks/T2/manifest.yaml"

LOCKS_TEXT = """\
version: 1
agents_md_lock: true
locks:
- id: L1
  kind: path
  mode: hard
  pattern: docs/locked.md
  reason: signed off
"""

# The commands that read each file (their exit code on the intact project is 0 or 1). T1 ran and
# succeeded, T2 is spun but not started, T3 is not spun.
COMMANDS: dict[str, list[list[str]]] = {
    CONFIG: [["verify", "T1"], ["merge", "--dry-run"], ["doctor"], ["lock", "list"], ["spin", "T3", "--no-start"],
             ["start", "T2"]],
    LOCKS: [["verify", "T1"], ["merge", "--dry-run"], ["lock", "list"], ["spin", "T3", "--no-start"]],
    AGENT: [["agents"], ["start", "T2"], ["spin", "T3", "--no-start"]],
    STATUS: [["status"], ["status", "T1"], ["verify", "T1"], ["merge", "--dry-run"], ["doctor"], ["wait", "T1"],
             ["clean", "T1"]],
    MANIFEST: [["start", "T2"]],
}  # fmt: skip


def _replace(key: str, value: str) -> object:
    """Replace the (first) line of top-level ``key`` with ``key: value``."""

    def mutate(text: str) -> str:
        out, n = re.subn(rf"(?m)^{key}:.*$", f"{key}: {value}", text, count=1)
        assert n, key
        return out

    return mutate


def _drop(key: str) -> object:
    def mutate(text: str) -> str:
        out, n = re.subn(rf"(?m)^{key}:.*\n", "", text, count=1)
        assert n, key
        return out

    return mutate


def _append(extra: str) -> object:
    return lambda text: text + extra


def _cut(text: str) -> str:
    """Truncated in the middle of its last key: what a full disk or a killed editor leaves."""
    lines = text.splitlines(keepends=True)
    last = lines[-1]
    return "".join(lines[:-1]) + last[: max(1, last.index(":") // 2)] if ":" in last else text[: len(text) // 2]


# (name, mutation, has a line) per file; every mutation makes the file invalid.
COMMON = [
    ("unknown key", _append("bogus_field: 1\n"), True),
    ("truncated", _cut, True),
    ("not a mapping", lambda text: "- a list\n- not a mapping\n", True),
    ("empty", lambda text: "", False),
    ("unterminated list", _append("extra: [1, 2\n"), True),
    ("duplicate key", lambda text: text + next(x for x in text.splitlines() if re.match("[a-z_]+:", x)) + "\n", True),
    ("not UTF-8", lambda text: text + "reason: caf\xe9\n", False),
]
MUTATIONS: dict[str, list[tuple[str, object, bool]]] = {
    CONFIG: [
        *COMMON,
        ("missing base_branch", _drop("base_branch"), True),
        ("base_branch a list", _replace("base_branch", "[main]"), True),
        ("max_parallel a word", _replace("max_parallel", "many"), True),
        ("version 2", _replace("version", "2"), True),
        ("defaults a list", _replace("defaults", "[1]"), True),
        ("unknown default", lambda text: text.replace("defaults:\n", "defaults:\n  bogus: 1\n"), True),
        ("empty worktree_root", _replace("worktree_root", "''"), True),
        ("negative test_timeout", _replace("test_timeout", "-1"), True),
        ("default agent empty", lambda text: text.replace("  agent: shell", "  agent: ''"), True),
        ("default budget a word", lambda text: text.replace("defaults:\n", "defaults:\n  budget: lots\n"), True),
    ],
    LOCKS: [
        *COMMON,
        ("missing locks", lambda text: text.split("locks:")[0], True),
        ("bad kind", lambda text: text.replace("kind: path", "kind: folder"), True),
        ("bad mode", lambda text: text.replace("mode: hard", "mode: medium"), True),
        ("pattern a number", lambda text: text.replace("pattern: docs/locked.md", "pattern: 5"), True),
        ("lock without id", lambda text: text.replace("- id: L1\n  kind", "- kind"), True),
        ("agents_md_lock a word", _replace("agents_md_lock", "maybe"), True),
        ("bad lock id", lambda text: text.replace("id: L1", "id: 1bad"), True),
        ("region without name", lambda text: text.replace("kind: path", "kind: region"), True),
        ("requirement without check", lambda text: text.replace("kind: path", "kind: requirement"), True),
        ("bad glob", lambda text: text.replace("pattern: docs/locked.md", "pattern: 'docs/**x/[a'"), True),
        ("duplicate lock id", lambda text: text + text[text.index("- id: L1") :], True),
        ("unknown lock key", lambda text: text.replace("  mode: hard", "  mode: hard\n  when: always"), True),
    ],
    AGENT: [
        *COMMON,
        ("missing command", _drop("command"), True),
        ("command a string", _replace("command", "sh -c true"), True),
        ("bad usage", _replace("usage", "tokens"), True),
        ("timeout a word", _replace("timeout", "soon"), True),
        ("budget a word", _append("budget: lots\n"), True),
        ("env not strings", _append("env: {A: 1}\n"), True),
        ("tools a string", _append("tools: Read\n"), True),
        ("max_turns zero", _append("max_turns: 0\n"), True),
        ("empty command", _replace("command", "[]"), True),
    ],
    STATUS: [
        *COMMON,
        ("missing state", _drop("state"), True),
        ("bad state", _replace("state", "SLEEPING"), True),
        ("iterations a word", _replace("iterations", "three"), True),
        ("branch a mapping", _replace("branch", "{name: orch/T1}"), True),
        ("bad branch", _replace("branch", "main"), True),
        ("bad verdict", _append("verdict: {result: MAYBE, sha: abc}\n"), True),
        ("pid a word", _append("pid: abc\n"), True),
        ("tokens of words", _append("tokens: {input: many}\n"), True),
        ("note without text", _append("notes: [{at: now}]\n"), True),
    ],
    MANIFEST: [
        *COMMON,
        ("missing worktree", _drop("worktree"), True),
        ("deps a string", _replace("deps", "T0"), True),
        ("bad base_sha", _replace("base_sha", "HEAD"), True),
        ("limits a list", _replace("limits", "[1]"), True),
        ("bad agent name", _replace("agent", "'bad name!'"), True),
        ("unknown agent", _replace("agent", "nosuch"), True),
        ("limits of words", lambda text: re.sub(r"(?m)^  timeout:.*$", "  timeout: soon", text), True),
        ("no branch", _drop("branch"), True),
    ],
}


def _message(stderr: str) -> str:
    """The first line orch reports an error on, without ``orch: `` and a task's ``T1: ``."""
    for line in stderr.splitlines():
        if line.startswith("orch: "):
            return re.sub(r"^(usage: |T\d: )", "", line.removeprefix("orch: "))
    return stderr


@pytest.fixture
def spun(project: Path, orch: Orch) -> Path:
    """T1 succeeded (with a commit), T2 is spun but not started, T3 waits; a lock in locks.yaml."""
    (project / LOCKS).write_text(LOCKS_TEXT)
    task = "## {0}: Task {0}\n- scope: ^src/\n- deps: none\n- agent: shell\n- run: true\n\nBrief.\n\n"
    write_plan(project, "# Plan: mutations\n\n" + "".join(task.format(t) for t in ("T1", "T2", "T3")))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan and locks")
    orch.ok("spin", "T1", "T2", "--no-start")
    worktree = project / ".orch/worktrees/T1"
    (worktree / "src").mkdir()
    (worktree / "src/a.py").write_text("x = 1\n")
    git(worktree, "add", "src/a.py")
    git(worktree, "commit", "-q", "-m", "work")
    status = project / STATUS  # as the supervisor leaves a run that succeeded
    text = status.read_text().replace("state: PENDING", "state: SUCCESS")
    status.write_text(re.sub(r"(?m)^head_sha: .*$", f"head_sha: {git(worktree, 'rev-parse', 'HEAD')}", text))
    return project


@pytest.fixture
def forked(spun: Path) -> Iterator[ForkOrch]:
    server = ForkOrch(spun)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("rel", "command"),
    [(rel, command) for rel, commands in COMMANDS.items() for command in commands],
    ids=lambda value: Path(value).name if isinstance(value, str) else "-".join(value),
)
def test_mutated_state_file_is_named_with_its_line(
    spun: Path, orch: Orch, forked: ForkOrch, rel: str, command: list[str]
) -> None:
    path = spun / rel
    original = path.read_bytes()
    statuses = [spun / STATUS, spun / ".orch/run/tasks/T2/status.yaml", spun / MANIFEST]
    keep = {p: p.read_bytes() for p in statuses}  # what a command that wrongly passes may change
    if command[0] not in ("start", "spin", "clean"):  # those would change the project when they pass
        r = orch(*command)  # on the intact project, the command is not refused
        assert r.returncode in (0, 1), (command, r.output)
    wrong = []
    for name, mutate, has_line in MUTATIONS[rel]:
        text = mutate(original.decode())  # type: ignore[operator]
        path.write_bytes(text.encode("latin-1") if name == "not UTF-8" else text.encode())
        r = forked(*command)
        if name == MUTATIONS[rel][0][0] and r.returncode == 3:  # as python -m orch too: the same answer
            real = orch(*command)
            assert (real.returncode, real.stdout, real.stderr) == (r.returncode, r.stdout, r.stderr), (name, command)
        message = _message(r.stderr)
        expected = rf"{re.escape(rel)}:\d+: " if has_line else rf"{re.escape(rel)}(:\d+)?: "
        if r.returncode != 3 or not re.match(expected, message) or "Traceback" in r.output:
            wrong.append(f"{name}: exit {r.returncode}: {message}")
        for p, data in keep.items():
            p.write_bytes(data)
        path.write_bytes(original)
    assert not wrong, f"orch {' '.join(command)}:\n" + "\n".join(wrong)
