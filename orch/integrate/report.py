"""What a merge ceremony (or a forecast) came to: the ``Outcome`` and the Markdown report.

``Outcome`` is what ``orch merge`` prints (``to_json`` for --json) and decides its exit code
(``failed``); its id is a ``utc_stamp``. ``render_report`` is the text the ceremony keeps in
``.orch/run/merges/<id>.md``, with the command that puts the base back (``rollback_command``).
``describe_requirement`` words a failed hard requirement check for a test run's excerpt.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orch.integrate.integration import PARK_BRANCH, checkout_of
from orch.integrate.triage import Result


@dataclass
class Outcome:
    id: str
    into: str
    mode: str
    base_before: str
    base_after: str | None
    pre_ref: str | None
    landed: str
    message: str | None
    test_command: str | None
    test_runs: int
    results: list[Result]
    report: str | None
    rollback: str | None
    titles: dict[str, str]
    named: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # each test run: label, passed, log
    blocked_by: list[str] = field(default_factory=list)  # the person's uncommitted paths in the way
    land_command: str | None = None  # lands a parked result once they are out of the way

    @property
    def is_landed(self) -> bool:
        """The tested result is on the base branch now."""
        return self.landed in ("update-ref", "fast-forward")

    @property
    def parked_on(self) -> str | None:
        """The branch the tested result waits on when it could not land."""
        return PARK_BRANCH if self.landed in ("parked", "base-moved") else None

    def outcome_word(self, r: Result) -> str:
        """A task's outcome as the table and the report say it: MERGED means merged into the tested
        result, which is on the base only if the ceremony landed; else it is ``MERGED (parked)``."""
        if r.outcome == "MERGED" and self.parked_on:
            return "MERGED (parked)"
        return "NOT READY" if r.outcome == "NOT_READY" else r.outcome

    @property
    def failed(self) -> bool:
        """Exit 1: something did not make it (or, for a forecast, would not), or nothing landed."""
        if self.parked_on:
            return True
        for r in self.results:
            if r.outcome in ("REVERTED", "CONFLICT", "QUARANTINED", "SKIPPED"):
                return True
            if r.outcome == "NOT_READY" and r.task in self.named:
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        tasks = []
        for r in self.results:
            item = r.to_json()
            item["title"] = self.titles.get(r.task)
            if r.outcome == "MERGED" and self.mode != "dry-run":
                item["parked"] = self.parked_on is not None
            tasks.append(item)
        return {
            "id": self.id,
            "into": self.into,
            "dry_run": self.mode == "dry-run",
            "mode": self.mode,
            "base_before": self.base_before,
            "base_after": self.base_after,
            "pre_ref": self.pre_ref,
            "landed": self.landed,
            "parked_on": self.parked_on,
            "blocked_by": self.blocked_by,
            "land_command": self.land_command,
            "message": self.message,
            "test_command": self.test_command,
            "test_runs": self.test_runs,
            "report": self.report,
            "rollback": self.rollback,
            "runs": self.runs,
            "tasks": tasks,
        }


def utc_stamp() -> str:
    """A ceremony's id (and its pre-merge ref's name), or a forecast's."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def rollback_command(root: Path, j: dict[str, Any], base_after: str | None) -> str:
    target, pre = j["target"], j["pre_ref"]
    checkout = checkout_of(root, target)
    if checkout is not None:
        return f"git -C {shlex.quote(str(checkout))} reset --keep {shlex.quote(pre)}"
    return f"git update-ref {shlex.quote('refs/heads/' + target)} {shlex.quote(pre)} {base_after}"


def describe_requirement(failure: Any) -> str:
    lock = getattr(failure, "lock", None) or getattr(failure, "lock_id", None) or "?"
    text = getattr(failure, "text", "") or ""
    output = getattr(failure, "excerpt", None) or getattr(failure, "output", "") or ""
    code = getattr(failure, "exit_code", None)
    return f"requirement {lock} failed (exit {code}): {text}\n{output}".rstrip()


def render_report(o: Outcome) -> str:
    lines = [f"# Merge ceremony {o.id}", ""]
    lines.append(f"- into: `{o.into}`")
    lines.append(f"- base before: `{o.base_before}` (kept as `{o.pre_ref}`)")
    lines.append(f"- base after: `{o.base_after}` ({_landed_words(o.landed)})")
    if o.is_landed:
        lines.append(f"- landed: yes: `{o.into}` holds the tested result")
    elif o.parked_on:
        lines.append(f"- landed: no: PARKED on `{o.parked_on}`; `{o.into}` is unchanged")
    if o.blocked_by:
        lines.append("- blocked by your uncommitted changes to: " + ", ".join(f"`{p}`" for p in o.blocked_by))
    lines.append(f"- mode: {o.mode}; test command: `{o.test_command or '(none)'}`; test runs: {o.test_runs}")
    if o.message:
        lines += ["", f"> {o.message}"]
    lines += ["", "| task | title | outcome | detail |", "|---|---|---|---|"]
    for r in o.results:
        detail = (r.detail or "").replace("|", "\\|")
        title = o.titles.get(r.task, "").replace("|", "\\|")
        lines.append(f"| {r.task} | {title} | {o.outcome_word(r)} | {detail} |")
    for r in o.results:
        if r.outcome == "REVERTED":
            lines += [
                "",
                f"## {r.task}: REVERTED",
                "",
                f"Test log: `{r.log}`" if r.log else "",
                "",
                "```text",
                (r.excerpt or "").rstrip(),
                "```",
            ]
        elif r.outcome == "CONFLICT":
            lines += ["", f"## {r.task}: CONFLICT", "", "Conflicting paths:", ""]
            lines += [f"- `{p}`" for p in r.paths]
        elif r.outcome == "QUARANTINED":
            lines += ["", f"## {r.task}: QUARANTINED", "", f"At `{r.sha}`: {r.detail}", ""]
            lines += [f"- `{p}`: {rule}" for p, rule in zip(r.paths, r.rules, strict=False)]
    if o.runs:
        lines += ["", "## Test runs", "", "| # | what | result | log |", "|---|---|---|---|"]
        for n, run in enumerate(o.runs, 1):
            verdict = "pass" if run["passed"] else "FAIL"
            lines.append(f"| {n} | {run['label']} | {verdict} | `{run['log']}` |")
    if o.parked_on:
        lines += ["", "## Landing", "", f"The tested result is parked on `{o.parked_on}`; `{o.into}` is unchanged."]
        if o.land_command:
            lines += ["Once the changes in the way are stashed or moved, land it with:", ""]
            lines += ["```sh", o.land_command, "```"]
        else:
            lines.append(f"Run `orch merge` again to integrate onto the new `{o.into}`.")
    lines += ["", "## Roll back", ""]
    if o.rollback:
        lines += ["To put the base back where it was before this ceremony:", "", "```sh", o.rollback, "```"]
    else:
        lines.append("Nothing landed on the base, so there is nothing to roll back.")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _landed_words(how: str) -> str:
    return {
        "update-ref": "moved by compare-and-swap",
        "fast-forward": "your checkout was fast-forwarded",
        "parked": f"not landed: the result is on {PARK_BRANCH}",
        "nothing": "unchanged: nothing merged",
        "base-moved": f"not landed: the base moved; the result is on {PARK_BRANCH}",
    }.get(how, how)
