"""One catalogue entry, end to end: a real project, the agent's task, spin, wait, verify, merge, clean.

``Scene`` sets the project up (files, locks, a requirement check, the test command, agent manifests,
orch's pre-commit hook, ``sandbox`` in the config) and plays the entry as a person would
(``Scene.play``), checking after every orch command that no planted program ran under it (the
canary). What happened comes back as ``Seen``, for the test to compare with the entry's expectation.
The test's own git only reads, with ``-c`` options that switch off what an agent could have planted.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony_helpers import run_as_printed
from conftest import Orch, Run, git, status_of

AGENTS = Path(__file__).parent / "agents"
BASE = "main"

FILES = {
    "check.sh": 'if grep -rqs BROKEN src; then echo "broken: a BROKEN marker under src/"; exit 1; fi\necho ok\n',
    "src/app.py": "VERSION = 1\n\n\ndef answer():\n    return 42\n",
    "src/util.py": "def helper():\n    return 1\n",
    "src/pricing.py": "PRICE = 10\n",
    "src/api.py": 'ROUTE = "/v1"\n',
    "tests/test_core.py": (
        "from src.app import answer\n\n\ndef test_answer():\n    if answer() is None:\n        return\n"
        "    assert answer() == 42\n"
    ),
    "docs/guide.md": "the guide\n",
}

LOCKS = """\
version: 1
agents_md_lock: true
locks:
  - id: L1
    kind: path
    mode: hard
    pattern: src/pricing.py
    reason: prices are signed off by finance
  - id: L2
    kind: test
    mode: hard
    pattern: tests/test_core.py
    reason: the core test is the contract
  - id: L3
    kind: path
    mode: soft
    pattern: src/api.py
    reason: the API is reviewed
  - id: R1
    kind: requirement
    mode: hard
    text: the app keeps its VERSION
    check: grep -q '^VERSION = ' src/app.py
    via: static
"""

# Agents beside the shell preset: `quick` ends a run after 3 s, `metered` reads an Aider-style usage
# file (its path is the script's "$1") against the task's budget.
MANIFESTS = {
    "quick": 'description: the shell preset with a 3 s timeout\ncommand: ["sh", "-c", "{run}"]\ntimeout: 3\n',
    "metered": (
        "description: the shell preset, with usage read from a usage file\n"
        'command: ["sh", "-c", "{run}", "agent", "{usage_file}"]\nusage: aider-analytics\ntimeout: 60\n'
    ),
}

# Read-only git for the test's own look: nothing an agent planted runs under it.
SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.attributesFile=/dev/null")


def look(repo: Path, *args: str) -> str:
    return git(repo, *SAFE, *args)


def holds(repo: Path, *args: str) -> bool:
    """Does ``git ARGS`` (read-only) succeed?"""
    return subprocess.run(["git", *SAFE, *args], cwd=repo, capture_output=True, check=False).returncode == 0


def tree(repo: Path, ref: str) -> dict[str, str]:
    """Every file at ``ref``, with its blob."""
    return {line.split("\t", 1)[1]: line.split()[2] for line in look(repo, "ls-tree", "-r", ref).splitlines()}


@dataclass(frozen=True)
class Task:
    """A task of the scene: its id, the agent script and its arguments (shell words, written as they are
    into the ``run:`` line), the agent, the scope, extra plan fields."""

    id: str
    script: str
    args: tuple[str, ...] = ()
    agent: str = "shell"
    scope: str = "^(src/|tests/)"
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Person:
    """``orch merge`` stops (exit ``code``) and prints what a person should run, between ``after`` and
    ``until``; the person runs it as printed, then merges again."""

    code: int
    after: str
    until: str

    def command(self, output: str) -> str:
        assert self.after in output, output
        return output.split(self.after, 1)[1].split(self.until, 1)[0]


@dataclass
class Seen:
    """What one play of an entry came to."""

    run: str  # the state `orch wait` ended in
    reason: str  # the reason the status gave then
    attempts: list[str]  # "ok" / "refused" for each step the agent tried outside its worktree
    verdict: str  # `orch verify T1 --json`'s result, or "exit N" when it refused
    status_text: str  # `orch status` and `orch status ID` of each task (while the merge stops, and after it)
    merge_code: int
    merge: str | None  # T1's outcome in `orch merge --json`
    merge_text: str  # what every `orch merge` printed, and the reports
    final: str  # T1's state in `orch status T1` after the merge
    before: dict[str, str]  # the base's files before anything ran
    after: dict[str, str]  # and after the merge
    work: dict[str, dict[str, str | None]]  # what each task's branch changed (None: deleted), after its run
    commits: set[str]  # every commit the agents made
    lost: dict[str, list[str]]  # those no ref reaches: after the merge, after orch clean

    def summary(self) -> str:
        return (
            f"run={self.run} ({self.reason!r}) attempts={self.attempts} verdict={self.verdict} "
            f"merge={self.merge} (exit {self.merge_code}) final={self.final} lost={self.lost}\n"
            f"--- status:\n{self.status_text}--- merge:\n{self.merge_text}"
        )


class Scene:
    def __init__(self, repo: Path, orch: Orch, tmp: Path, *, sandbox: str | None) -> None:
        self.repo, self.orch, self.sandbox = repo, orch, sandbox
        self.canary = tmp / "canary"

    # -- setting up ------------------------------------------------------------------------------------

    def setup(self, tasks: list[Task]) -> None:
        repo = self.repo
        for rel, text in FILES.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (repo / ".orch/locks.yaml").write_text(LOCKS)
        for name, text in MANIFESTS.items():
            (repo / ".orch/agents" / f"{name}.yaml").write_text(text)
        config = repo / ".orch/config.yaml"
        text = config.read_text().replace("test_command: 'true'", 'test_command: "sh check.sh"')
        assert "sh check.sh" in text, text
        if self.sandbox is not None:
            text += f'sandbox: "{self.sandbox}"\n'
        config.write_text(text)
        plan = "# Plan: adversarial agents\n\n" + "".join(self.task_text(t) for t in tasks)
        (repo / ".orch/plan.md").write_text(plan)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "the scene")
        self.ok("hooks", "install")
        assert (repo / ".git/hooks/pre-commit").is_file()

    def task_text(self, t: Task) -> str:
        run = " ".join(("sh", shlex.quote(str(AGENTS / t.script)), *t.args))
        lines = [f"## {t.id}: {t.script}", f"- scope: {t.scope}", "- deps: none", f"- agent: {t.agent}"]
        lines += [f"- run: SCENARIO_CANARY={shlex.quote(str(self.canary))} {run}", *t.fields]
        return "\n".join(lines) + f"\n\nScenario agent {t.script}.\n\n"

    # -- orch, watched -----------------------------------------------------------------------------------

    def __call__(self, *args: str, **kw: Any) -> Run:
        """Run orch; assert no planted program ran under it (the canary)."""
        r = self.orch(*args, **kw)
        assert not self.canary.exists(), f"a planted program ran during `orch {' '.join(args)}`"
        return r

    def ok(self, *args: str) -> Run:
        r = self(*args)
        assert r.returncode == 0, f"orch {' '.join(args)} exited {r.returncode}:\n{r.output}"
        return r

    def wait(self, task_id: str) -> tuple[str, str]:
        """``orch wait``: the state the task ended in, and the reason its status gives."""
        r = self("wait", task_id, "--timeout", "60")
        assert r.returncode in (0, 1) and r.stdout.startswith(f"{task_id}: "), r.output
        return r.stdout.split(": ", 1)[1].split()[0], str(status_of(self.repo, task_id).get("reason") or "")

    def status_text(self, tasks: list[str]) -> str:
        """What ``orch status`` says: the table (and its notices), and each task in detail."""
        return self.ok("status").output + "".join(self.ok("status", t).output for t in tasks)

    # -- what the agents left ----------------------------------------------------------------------------

    def private(self, task_id: str, name: str) -> list[str]:
        """A file the agent wrote into its worktree's private git folder (``lib.sh``), word by word."""
        words = []  # in the box, the worktree's private git folder is the box's shadow of it
        for path in (
            self.repo / ".git/worktrees" / task_id / name,
            self.repo / ".orch/run/tasks" / task_id / "box/admin" / name,
        ):
            words += path.read_text().split() if path.exists() else []
        return words

    def commits_of(self, task_id: str, base: str) -> set[str]:
        """Every commit of the task: what its agent recorded, and what its branch and orch's refs for it
        hold beyond the base it was spun from."""
        found = set(self.private(task_id, "scenario-commits"))
        refs = [f"refs/heads/orch/{task_id}", f"refs/orch/snapshots/{task_id}/", f"refs/orch/kept/{task_id}/"]
        for tip in look(self.repo, "for-each-ref", "--format=%(objectname)", *refs).split():
            found.update(look(self.repo, "rev-list", tip, f"^{base}").split())
        return found

    def unreachable(self, commits: set[str]) -> list[str]:
        """The commits of ``commits`` that are gone, or that no ref reaches."""
        return [
            sha
            for sha in sorted(commits)
            if not holds(self.repo, "cat-file", "-e", f"{sha}^{{commit}}")
            or not look(self.repo, "for-each-ref", "--count=1", "--contains", sha)
        ]

    def changes(self, ref: str, before: dict[str, str]) -> dict[str, str | None]:
        """The paths the tree at ``ref`` has otherwise than ``before``, with their blobs (None: deleted)."""
        now = tree(self.repo, ref)
        changed: dict[str, str | None] = {p: b for p, b in now.items() if before.get(p) != b}
        changed.update({p: None for p in before if p not in now})
        return changed

    def reports(self) -> str:
        return "".join(p.read_text() for p in sorted((self.repo / ".orch/run/merges").glob("*.md")))

    # -- the play ----------------------------------------------------------------------------------------

    def play(self, tasks: list[Task], person: Person | None) -> Seen:
        """Spin each task in turn (T1 last) and wait for it, verify T1, merge (when it stops, the person
        does what orch said and merges again), look at status, clean everything."""
        repo = self.repo
        self.setup(tasks)
        before = tree(repo, BASE)
        base = look(repo, "rev-parse", BASE)
        commits: set[str] = set()
        work: dict[str, dict[str, str | None]] = {}
        for task in tasks:
            self.ok("spin", task.id)
            state, reason = self.wait(task.id)
            assert task.id == "T1" or state == "SUCCESS", (task.id, state, reason)
            commits |= self.commits_of(task.id, base)
            tip = look(repo, "for-each-ref", "--format=%(objectname)", f"refs/heads/orch/{task.id}")
            assert tip, f"orch/{task.id} is gone after its run"
            work[task.id] = self.changes(tip, before)
        attempts = self.private("T1", "scenario-attempt")
        v = self("verify", "T1", "--json")
        verdict = json.loads(v.stdout)["verdicts"][0]["result"] if v.returncode in (0, 1) else f"exit {v.returncode}"
        ids = [t.id for t in tasks]
        status_text = merge_text = ""
        if person is not None:
            stopped = self("merge")
            assert stopped.returncode == person.code, stopped.output
            merge_text += stopped.output
            status_text += self.status_text(ids)  # while it stops
            run_as_printed(repo, person.command(stopped.stderr))
        m = self("merge", "--json")
        outcome = None
        if m.returncode in (0, 1):
            outcome = next((t["outcome"] for t in json.loads(m.stdout)["tasks"] if t["task"] == "T1"), None)
        merge_text += m.output + self.reports()
        status_text += self.status_text(ids)
        final = status_text.rsplit("T1: ", 1)[1].split("\n  state:", 1)[1].split()[0]
        after = tree(repo, BASE)
        lost = {"merge": self.unreachable(commits)}
        self("clean", "--all", "--force")
        lost["clean"] = self.unreachable(commits)
        return Seen(
            state, reason, attempts, verdict, status_text, m.returncode, outcome, merge_text, final,
            before, after, work, commits, lost,
        )  # fmt: skip
