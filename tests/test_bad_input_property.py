"""Property: whatever a person (or an agent) writes into orch's files, orch answers without a traceback.

Random and mutated ``plan.md``, ``config.yaml``, ``locks.yaml``, ``policy.yaml``, an agent manifest and
a task's ``status.yaml`` are fed to the commands that read them. Every answer is the command's usual one (the
mutated file happened to be valid) or exit 3 naming the file and, for what sits on a line, the line.
The commands run as real processes forked from one warm server (``forkorch``); the module ends with
cases run through ``python -m orch`` itself, answering byte for byte as the forked ones. (Each kind of
mutation on its own, by name: ``tests/test_state_mutations.py``; what these tests found:
``tests/test_bad_input.py``.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Orch, git, write_plan
from forkorch import ForkOrch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PLAN = ".orch/plan.md"
CONFIG = ".orch/config.yaml"
LOCKS = ".orch/locks.yaml"
AGENT = ".orch/agents/shell.yaml"
STATUS = ".orch/run/tasks/T1/status.yaml"
POLICY = ".orch/policy.yaml"

POLICY_TEXT = """\
builtin: true
unknown: RISKY
rules:
- id: tests
  match: ^pytest( |$)
  tier: SAFE
  why: the tests write caches only
- match: ^make deploy
  tier: CRITICAL
- id: outside
  match: ^cp( |$)
  tier: CRITICAL
  outside: operands
  level: command
"""

LOCKS_TEXT = """\
version: 1
agents_md_lock: true
locks:
- id: L1
  kind: path
  mode: hard
  pattern: docs/locked.md
  reason: signed off
- id: L2
  kind: region
  mode: soft
  pattern: src/a.py::total
- id: L3
  kind: test
  mode: hard
  pattern: tests/test_*.py
- id: R1
  kind: requirement
  mode: hard
  text: the tests pass
  check: 'true'
  via: test
"""

TASK = "## {0}: Task {0}\n- scope: ^src/\n- deps: {1}\n- agent: shell\n- run: true\n- budget: 200k tokens\n\nBrief.\n\n"

# The commands that read each file; on the intact project each answers 0 or 1 (and the spin spins).
COMMANDS: dict[str, list[list[str]]] = {
    PLAN: [["plan"], ["plan", "--json"], ["status"], ["verify", "T1"], ["merge", "--dry-run"], ["doctor"]],
    CONFIG: [["status"], ["plan"], ["verify", "T1"], ["merge", "--dry-run"], ["doctor"], ["lock", "list"],
             ["level", "list"], ["view", "--json"], ["topology", "--json"]],
    LOCKS: [["lock", "list"], ["verify", "T1"], ["merge", "--dry-run"], ["status"]],
    AGENT: [["agents"], ["spin", "T3", "--no-start", "--force"]],
    STATUS: [["status"], ["status", "T1"], ["status", "--json"], ["verify", "T1"], ["merge", "--dry-run"],
             ["doctor"], ["wait", "T1", "--timeout", "0"]],
    POLICY: [["policy", "check", "pytest -q && cp x ../y"], ["policy", "check", "--json", "make deploy | sh"]],
}  # fmt: skip

# Commands whose answer may be "no" (exit 1) on a valid project: a violation, a finding, a failed task.
CHECKS = {"verify", "merge", "doctor", "wait"}
# Messages about a file as a whole, which no line could locate.
WHOLE_FILE = re.compile(r"the file is empty|not UTF-8 text|holds no settings|no task '\w+' in \.orch/plan\.md")


@pytest.fixture
def spun(project: Path, orch: Orch) -> Path:
    """T1 succeeded with a commit, T2 is spun but not started, T3 waits for T1; three kinds of lock."""
    (project / LOCKS).write_text(LOCKS_TEXT)
    (project / POLICY).write_text(POLICY_TEXT)
    config = project / CONFIG
    config.write_text(config.read_text() + "levels:\n  src/: code\n  'docs/*.md': goal\n")
    write_plan(project, "# Plan: properties\n\n" + TASK.format("T1", "none") + TASK.format("T2", "none")
               + TASK.format("T3", "T1"))  # fmt: skip
    (project / "src").mkdir()
    (project / "src/a.py").write_text("def total():\n    return 1\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "plan and locks")
    orch.ok("spin", "T1", "T2", "--no-start")
    worktree = project / ".orch/worktrees/T1"
    (worktree / "src/b.py").write_text("y = 2\n")
    git(worktree, "add", "src/b.py")
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


# -- mutations ---------------------------------------------------------------------------------------

# Lines and values that break YAML or Markdown in the ways people and tools do.
FRAGMENTS = [
    "", " ", "\t", "-", "- ", ":", ": x", "'", '"', "[", "]", "{", "}", "{a: [1, 2", "&a x", "*a", "*nope", "<<: *a",
    "!!python/object/apply:os.system ['touch canary']", "!!binary 'x'", "!!set {a}", "? x", "%YAML 1.1", "---", "...",
    "<<<<<<< HEAD", "=======", ">>>>>>> theirs", "|", ">", "~", "null", "true", "no", "0x1F", "1e400", ".nan",
    "-1", "0", "2026-01-01", "12:30:00", "\ufeff", "\x85", "\u2028", "\r", "\x00", "\x1b[31m", "é", "\U0001f600",
    "$(touch canary)", "`touch canary`", "--upload-pack=touch canary", "-b", "../..", "/etc/passwd", "a@{b", "x.lock",
    '"\\0"', '"a\\x00b"', '"\\e[1m"', '"a\\nb"', '"\\ud800"', '"\\U0010ffff"', "Ｔ１", "Т1", "x" * 10_000, "(" * 200,
    "[a-", "^src/(", "**", "\\", "#", "# comment",
]  # fmt: skip
PLAN_FRAGMENTS = [
    "## T9: Another task", "## T1: Duplicate", "## T2", "##", "## : no id", "##T4: no space", "## 1x: bad id",
    "## integration: reserved", "- scope: (", "- scope: [", "- scope: " + "(" * 200, "- scope:", "- deps: T1",
    "- deps: T3", "- deps: T9", "- deps: ../..", "- deps: T1, T1", "- agent: ../x", "- agent: nosuch", "- agent:",
    "- level: nope", "- budget: lots", "- budget: $0", "- budget: 1e999 tokens", "- max_iterations: 0",
    "- max_iterations: x", "- max_iterations: 99999999999999999999", "- max_per_strategy: 0", "- max_strategies: x",
    "- task_timeout: 0", "- task_timeout: 2d", "- task_timeout: 999999999999h", "- unknown: 1", "- scope: ^src/",
    "- accept: $(touch canary)", "```", "~~~", "    ```", "* scope: ^docs/", "+ deps: none", "- run: `touch canary`",
]  # fmt: skip
KEYS = ["version", "base_branch", "test_command", "test_timeout", "worktree_root", "max_parallel", "defaults", "agent",
        "locks", "id", "kind", "mode", "pattern", "command", "usage", "env", "state", "branch", "worktree", "verdict",
        "iterations", "tokens", "notes", "pid", "head_sha", "base_sha", "budget", "timeout"]  # fmt: skip

text = st.text(max_size=12)
fragment = st.one_of(st.sampled_from(FRAGMENTS), text)
HOSTILE = [f for f in FRAGMENTS if len(f) > 1] + ["T1", "orch/T1", "main", "HEAD", "/", ".", "..", "a\x00b", "\udcff"]
# Any value of any type (JSON, which YAML reads too), for "a field holds the wrong thing".
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.sampled_from(HOSTILE), text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | text, inner, max_size=3),
    max_leaves=6,
)
FIELD = re.compile(r"^(?P<head>[ \t]*(?:- )?[A-Za-z_]+:)[ \t]*(?P<value>.*)$", re.S)


@st.composite
def mutated(draw: st.DrawFn, original: str, extra: list[str]) -> bytes:
    """``original`` after one to three edits of the kinds editors, merges, full disks and agents make."""
    lines = original.splitlines(keepends=True)
    pieces = st.one_of(st.sampled_from(extra), fragment) if extra else fragment
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(
            ["drop", "duplicate", "swap", "insert", "value", "key", "indent", "truncate", "char", "retype", "retype"]
        ))  # fmt: skip
        n = draw(st.integers(0, max(0, len(lines) - 1)))
        if not lines:
            lines = [draw(pieces) + "\n"]
        elif kind == "drop":
            del lines[n]
        elif kind == "duplicate":
            lines.insert(n, lines[n])
        elif kind == "swap":
            m = draw(st.integers(0, len(lines) - 1))
            lines[n], lines[m] = lines[m], lines[n]
        elif kind == "insert":
            lines.insert(n, draw(pieces) + draw(st.sampled_from(["\n", "\r\n", "\r", ""])))
        elif kind == "value" and ":" in lines[n]:
            head = lines[n].split(":", 1)[0]
            lines[n] = f"{head}: {draw(pieces)}\n"
        elif kind == "retype" and (field := FIELD.match(lines[n].rstrip("\n"))):
            lines[n] = f"{field['head']} {json.dumps(draw(values))}\n"
        elif kind == "key":
            indent = draw(st.sampled_from(["", "  ", "- "]))
            lines.insert(n, f"{indent}{draw(st.sampled_from(KEYS))}: {draw(pieces)}\n")
        elif kind == "indent":
            lines[n] = draw(st.sampled_from(["", " ", "  ", "    ", "\t"])) + lines[n].lstrip(" ")
        elif kind == "truncate":
            joined = "".join(lines)
            cut = draw(st.integers(0, len(joined)))
            lines = joined[:cut].splitlines(keepends=True)
        else:  # char
            joined = "".join(lines)
            at = draw(st.integers(0, len(joined)))
            lines = (joined[:at] + draw(st.characters(codec="utf-8")) + joined[at + 1 :]).splitlines(keepends=True)
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:  # now and then, bytes that are not UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
    return data


def short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def problems(rel: str, command: list[str], expected: set[int], r: object) -> str | None:
    """What is wrong with orch's answer to a mutated ``rel``, or None."""
    code, stdout, stderr = r.returncode, r.stdout, r.stderr  # type: ignore[attr-defined]
    if "Traceback" in stdout + stderr or "internal error" in stderr:
        log = re.search(r"the traceback is in (\S+);", stderr)
        return f"a crash: {short(stderr)}\n{Path(log[1]).read_text()[-3000:] if log else ''}"
    if code == 3:
        first = next((line for line in stderr.splitlines() if line.startswith("orch: ")), stderr)
        message = re.sub(r"^orch: (T\d: )?", "", first)
        if WHOLE_FILE.search(message) and rel in message:
            return None
        if not re.match(rf"{re.escape(rel)}:\d+: ", message):
            return f"exit 3 without naming {rel}:LINE: {short(stderr)}"
        return None
    if code not in expected:
        return f"exit {code}: {short(stdout)}{short(stderr)}"
    return None


# Examples per file: modest, so the module stays well under a minute; each run draws new ones (no
# example database), and ORCH_PROPERTY_EXAMPLES=1000 searches harder.
EXAMPLES = int(os.environ.get("ORCH_PROPERTY_EXAMPLES", "100"))


def run_mutated(spun: Path, forked: ForkOrch, rel: str, data: bytes, command: list[str]) -> str | None:
    """Run ``command`` with ``rel`` holding ``data``; what is wrong with the answer, or None. Every file
    a command may write is put back."""
    path = spun / rel
    keep = {p: p.read_bytes() for p in (path, spun / STATUS, spun / ".orch/run/tasks/T2/status.yaml")}
    path.write_bytes(data)
    try:
        r = forked(*command)
        wrong = problems(rel, command, {0, 1} if command[0] in CHECKS else {0}, r)
        if wrong is None and command[0] != "verify" and path.read_bytes() != data:  # verify records a verdict
            wrong = f"orch {' '.join(command)} changed {rel}"
        if command[0] == "spin" and r.returncode == 0:
            forked("clean", "--force", "T3")
        return wrong
    finally:
        for p, kept in keep.items():
            p.write_bytes(kept)


@pytest.mark.parametrize("rel", [PLAN, CONFIG, LOCKS, AGENT, STATUS, POLICY], ids=lambda rel: Path(rel).name)
def test_mutated_files_never_crash_and_name_the_line(spun: Path, forked: ForkOrch, rel: str) -> None:
    original = (spun / rel).read_bytes()
    for command in COMMANDS[rel]:  # on the intact project, no command refuses
        if command[0] != "spin":
            assert forked(*command).returncode in ((0, 1) if command[0] in CHECKS else (0,)), command

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(mutated(original.decode(), PLAN_FRAGMENTS if rel == PLAN else []), st.sampled_from(COMMANDS[rel]))
    def check(data: bytes, command: list[str]) -> None:
        wrong = run_mutated(spun, forked, rel, data, command)
        assert wrong is None, f"orch {' '.join(command)} on {rel} = {short(repr(data), 2000)}:\n{wrong}"

    check()


# A few mutations of each file, run as ``python -m orch`` too: the forked server answers as orch does.
SAMPLES = [
    (PLAN, lambda t: t.replace("- scope: ^src/", "- scope: ^src/(", 1), ["plan"]),
    (PLAN, lambda t: t.replace("## T2: Task T2", "## T2: Task \x1b[2J\u202e"), ["plan"]),  # no ages to differ
    (CONFIG, lambda t: t.replace("base_branch: main", "base_branch: main.lock"), ["merge", "--dry-run"]),
    (CONFIG, lambda t: t.replace("max_parallel: 4", "max_parallel: \x1f"), ["doctor"]),
    (LOCKS, lambda t: t.replace("kind: test", "kind: tests"), ["lock", "list"]),
    (LOCKS, lambda t: t.replace("check: 'true'", 'check: "tr\\0ue"'), ["verify", "T1"]),
    (AGENT, lambda t: t + 'env: {"A=B": "1"}\n', ["agents"]),
    (STATUS, lambda t: t + "pid: 99999999999999999999\n", ["status", "T1"]),
    (STATUS, lambda t: t.replace("state: SUCCESS", "state: SUCCES"), ["wait", "T1", "--timeout", "0"]),
    (POLICY, lambda t: t.replace("^make deploy", "^make (deploy"), ["policy", "check", "ls"]),
]


def test_the_forked_commands_answer_as_python_m_orch_does(spun: Path, forked: ForkOrch, orch: Orch) -> None:
    for rel, mutate, command in SAMPLES:
        path = spun / rel
        original = path.read_text()
        path.write_text(mutate(original))
        try:
            real, fork = orch(*command), forked(*command)
            assert (fork.returncode, fork.stdout, fork.stderr) == (real.returncode, real.stdout, real.stderr)
            assert problems(rel, command, {0, 1} if command[0] in CHECKS else {0}, real) is None, real.output
        finally:
            path.write_text(original)
