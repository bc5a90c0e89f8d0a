"""What the loop writes down between iterations: failure signatures, progress.md entries, the next
iteration's brief and the blocker report. Pure text functions, apart from reading the template."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from string import Template
from typing import Any

EXCERPT_LINES = 40
EXCERPT_CHARS = 4000
QUESTIONS = (
    "- What failed?\n- What specific change would fix it?\n- Am I repeating the same approach?\n\n"
    "You may answer in `REFLECTION.md` at the top of your worktree: orch moves it into the task's "
    "progress.md and never commits it."
)

_NORMALISE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b"), "<TIME>"),
    (re.compile(r"(/private)?(/tmp|/var/tmp|/var/folders|/dev/shm)(/[^\s'\":,)]*)?"), "<TMP>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<ADDR>"),
    (re.compile(r"\b[0-9a-f]{7,64}\b"), "<HEX>"),
    (re.compile(r"\d+(\.\d+)?"), "<N>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(text: str) -> str:
    """The failing output without what changes from one run to the next: times, temporary paths,
    addresses, hashes and numbers."""
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def signature(text: str) -> str:
    """The failure signature: a sha-256 of the normalised failing output (12 hex digits)."""
    return hashlib.sha256(normalise(text).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def excerpt(text: str) -> str:
    """The failing output's tail, as the brief and the reports quote it."""
    lines = text.rstrip("\n").splitlines()[-EXCERPT_LINES:]
    out = "\n".join(lines)
    return out[-EXCERPT_CHARS:] if len(out) > EXCERPT_CHARS else out


@dataclass
class Entry:
    """One iteration as progress.md records it."""

    iteration: int
    strategy: int
    ran: list[tuple[str, int | None]] = field(default_factory=list)  # (what, exit code; None: ended)
    failure: str = ""  # what failed, one line
    output: str = ""  # the failing output's excerpt
    sig: str = ""
    changed: bool = True
    reflection: str | None = None
    at: str = ""

    def saved(self) -> dict[str, object]:
        return {
            "iteration": self.iteration, "strategy": self.strategy, "ran": [list(r) for r in self.ran],
            "failure": self.failure, "output": self.output, "sig": self.sig, "changed": self.changed,
            "reflection": self.reflection, "at": self.at,
        }  # fmt: skip

    @classmethod
    def load(cls, data: dict[str, Any]) -> Entry:
        ran = [(str(r[0]), r[1] if isinstance(r[1], int) else None) for r in data.get("ran") or [] if len(r) == 2]
        reflection = data.get("reflection")
        return cls(
            iteration=int(data["iteration"]),
            strategy=int(data["strategy"]),
            ran=ran,
            failure=str(data.get("failure") or ""),
            output=str(data.get("output") or ""),
            sig=str(data.get("sig") or ""),
            changed=bool(data.get("changed", True)),
            reflection=str(reflection) if reflection is not None else None,
            at=str(data.get("at") or ""),
        )

    def ran_text(self) -> str:
        return ", ".join(f"{what} (exit {'-' if code is None else code})" for what, code in self.ran)

    def summary(self) -> str:
        return f"iteration {self.iteration} (strategy {self.strategy}): {self.failure}, sig={self.sig}"


def _fence(text: str) -> str:
    return "```text\n" + (text.replace("```", "` ` `") or "(no output)") + "\n```"


def progress_entry(e: Entry, max_iterations: int, strategies: int) -> str:
    lines = [
        f"## Iteration {e.iteration}/{max_iterations} (strategy {e.strategy}/{strategies})",
        "",
        f"- at: {e.at}",
        f"- ran: {e.ran_text()}",
        f"- failed: {e.failure}",
        f"- signature: {e.sig}",
        f"- tree: {'changed' if e.changed else 'unchanged since the previous iteration'}",
        "",
        "Failing output (excerpt):",
        "",
        _fence(e.output),
        "",
    ]
    if e.reflection:
        lines += ["Reflection (REFLECTION.md):", "", *(f"> {ln}" for ln in e.reflection.strip().splitlines()), ""]
    return "\n".join(lines) + "\n"


def next_brief(
    base: str,
    history: list[Entry],
    *,
    iteration: int,
    max_iterations: int,
    strategy: int,
    strategies: int,
    shift_why: str | None = None,
    budget_left: str | None = None,
) -> str:
    """The brief of iteration ``iteration``: the base brief, then what failed, what was tried, the questions."""
    last = history[-1]
    parts = [
        base.rstrip("\n"),
        "",
        f"## Feedback (iteration {iteration} of at most {max_iterations}, strategy {strategy} of {strategies})",
        "",
        *([budget_left, ""] if budget_left else []),
    ]
    if shift_why:
        parts += [
            "### Strategy shift",
            "",
            f"The previous strategy ended: {shift_why}. Its work is kept aside and your worktree was reset "
            "to the commit the task started from. You must take a different approach, not the one tried "
            "before: change library? real instead of mock? isolate the variables one at a time?",
            "",
        ]
    parts += [f"The last iteration failed: {last.failure}. The failing output (excerpt):", "", _fence(last.output), ""]
    parts += ["### Tried so far (from progress.md)", "", *(f"- {e.summary()}" for e in history), ""]
    parts += ["### Before you change anything, answer", "", QUESTIONS, ""]
    return "\n".join(parts)


def blocker_report(
    template: str,
    *,
    task_id: str,
    title: str,
    history: list[Entry],
    strategies: int,
    why: str,
    attempts: list[str],
    question: str | None = None,
) -> str:
    """BLOCKER_REPORT.md from ``templates/BLOCKER_REPORT.md``."""
    by_strategy: dict[int, list[Entry]] = {}
    for e in history:
        by_strategy.setdefault(e.strategy, []).append(e)
    tried = []
    for n, entries in sorted(by_strategy.items()):
        ref = attempts[n - 1] if n - 1 < len(attempts) else "(no commit)"
        tried.append(f"- strategy {n}: iterations {entries[0].iteration}-{entries[-1].iteration}, work kept at `{ref}`")
    excerpts = []
    for e in history:
        excerpts += [
            f"### Iteration {e.iteration} (strategy {e.strategy}): {e.failure}",
            "",
            f"ran: {e.ran_text()}; signature {e.sig}",
            "",
            _fence(e.output),
            "",
        ]
    reflection = next((e.reflection for e in reversed(history) if e.reflection), None)
    if question:
        asked = "\n".join(f"> {ln}" for ln in question.strip().splitlines())
        hypothesis = "The agent stopped to ask a person:\n\n" + asked
    elif reflection:
        hypothesis = "The agent's last reflection:\n\n" + "\n".join(f"> {ln}" for ln in reflection.strip().splitlines())
    else:
        sigs = [e.sig for e in history]
        common = max(set(sigs), key=sigs.count) if sigs else "-"
        match = next((e for e in reversed(history) if e.sig == common), None)
        hypothesis = (
            f"The failure signature {common} recurred in {sigs.count(common)} of {len(sigs)} iterations; "
            f"it matched: {match.failure if match else '-'} (see its excerpt below)."
        )
    if question is None:
        work = (
            "The worktree was rolled back to the commit the task started from; every strategy's last commit "
            f"is kept under `refs/orch/attempts/{task_id}/<n>` (`git log refs/orch/attempts/{task_id}/1`)."
        )
    else:
        work = (
            f"The agent's work stays in its worktree and on `orch/{task_id}`; the last commit of each "
            f"strategy before this one is kept under `refs/orch/attempts/{task_id}/<n>`."
        )
    return Template(template).safe_substitute(
        work=work,
        task_id=task_id,
        title=title,
        why=why,
        strategies=str(max(len(by_strategy), 1 if question else 0)),
        max_strategies=str(strategies),
        iterations=str(len(history)),
        tried="\n".join(tried) or "- none: the agent asked in its first iteration",
        hypothesis=hypothesis,
        excerpts="\n".join(excerpts).rstrip("\n") or "(no failed iteration)",
    )
