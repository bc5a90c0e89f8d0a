"""One thing ``orch doctor`` found: what, where, how to fix it, and whether it was fixed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Finding:
    kind: str
    subject: str
    detail: str
    fix: str
    fixable: bool = True
    fixed: bool = False
    info: bool = False  # worth knowing, nothing to repair
    task: str | None = None  # the task it is about, if any
    path: str | None = None  # the absolute path it is about (a worktree, a lock file), if any

    def to_json(self) -> dict[str, object]:
        """One finding of ``orch doctor --json`` (schemas/doctor.schema.json)."""
        return {
            "kind": self.kind,
            "task": self.task,
            "path": self.path,
            "subject": self.subject,
            "message": self.detail,
            "fix": self.fix,
            "fixable": self.fixable,
            "fixed": self.fixed,
            "info": self.info,
        }
