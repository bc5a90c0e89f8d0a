"""The rule files as committed on the base branch: the floor an uncommitted edit cannot go below.

Agents run as the person's own user and can write the main checkout's files, ``.orch/`` included.
What judges them (``orch verify``, ``orch ack``, ``orch merge``) therefore takes the rules committed on
the base branch and makes them stricter with the working copy, never looser: locks of both files
apply, a task's scope is its committed scope and its working scope, the committed test command runs.
This module reads the committed side: ``config.yaml``, ``plan.md``, ``locks.yaml``, ``policy.yaml`` and ``routing.yaml``
of ``.orch/`` at the tip of one branch, from one ``git cat-file --batch`` (started at once, read when
needed, so it runs while other work goes on).
"""

from __future__ import annotations

from orch.core import git
from orch.core.errors import InputError
from orch.core.text import quoted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

RULE_FILES = ("config.yaml", "plan.md", "locks.yaml", "policy.yaml", "routing.yaml")  # under .orch/


class Committed:
    """The rule files of ``.orch/`` at the tip of ``branch``: their bytes, or None where the commit (or
    the branch) has none."""

    def __init__(self, branch: str, files: dict[str, bytes | None]) -> None:
        self.branch = branch
        self.files = files

    def get(self, name: str) -> bytes | None:
        return self.files.get(name)

    def where(self, name: str) -> str:
        """How messages name the committed file: ``main:.orch/locks.yaml`` (git's own spelling)."""
        return f"{self.branch}:.orch/{name}"

    def differs(self, name: str, working: bytes | None) -> bool:
        """Is there a committed version of ``name`` that is not byte for byte ``working``?"""
        committed = self.files.get(name)
        return committed is not None and committed != working


class Reading:
    """``read`` started: ``result`` waits for git and returns the ``Committed`` files."""

    def __init__(self, root: Path | str, branch: str) -> None:
        if not branch or branch.startswith("-") or any(c.isspace() or c in ":^~?*[\\" for c in branch):
            hint = "check base_branch in .orch/config.yaml, or --into"
            raise InputError(f"{quoted(branch)} is not a branch name", hint=hint)
        self.branch = branch
        self.names = [f"refs/heads/{branch}:.orch/{name}" for name in RULE_FILES]
        # --no-replace-objects: a `git replace` ref (anyone who can write .git can add one) must not
        # swap the committed file for another blob.
        self._run = git.start(
            ["--no-replace-objects", "cat-file", "--batch"], cwd=root, input="".join(n + "\n" for n in self.names)
        )
        self._result: Committed | None = None

    def result(self) -> Committed:
        if self._result is None:
            r = self._run.wait()
            self._result = Committed(self.branch, _parse(r.stdout.encode("utf-8", "surrogateescape"), self.branch))
        return self._result


def read(root: Path | str, branch: str) -> Committed:
    return Reading(root, branch).result()


def _parse(data: bytes, branch: str) -> dict[str, bytes | None]:
    """The answer of ``git cat-file --batch`` to the names of ``Reading``, one entry per rule file."""
    files: dict[str, bytes | None] = {}
    pos = 0
    for name in RULE_FILES:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if header[-1:] == [b"missing"] or len(header) < 3:
            files[name] = None  # no such file in that commit, or no such branch
            continue
        size = int(header[2])
        if header[1] != b"blob":
            raise InputError(
                f"{branch}:.orch/{name}: committed as a {header[1].decode()}, not a file",
                hint=f"commit .orch/{name} as a plain file on {branch}",
            )
        files[name] = data[pos : pos + size]
        pos += size + 1
    return files
