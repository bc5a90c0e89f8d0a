"""Find the main checkout and its ``.orch/`` from anywhere inside the repository.

A command may run in a subfolder, in the main checkout or inside a task's worktree; all of them
share one git common dir, whose main worktree holds the one ``.orch/`` that counts. Rules are read
from there, never from the worktree the command happens to run in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orch.core import git
from orch.core.errors import EnvError, InputError

ORCH_DIR = ".orch"


@dataclass(frozen=True)
class Project:
    root: Path  # the main checkout
    common_dir: Path  # the shared .git folder
    here: Path | None  # top of the worktree the command runs in (None inside .git)

    @property
    def orch_dir(self) -> Path:
        return self.root / ORCH_DIR

    @property
    def config_path(self) -> Path:
        return self.orch_dir / "config.yaml"

    @property
    def plan_path(self) -> Path:
        return self.orch_dir / "plan.md"

    @property
    def locks_path(self) -> Path:
        return self.orch_dir / "locks.yaml"

    @property
    def agents_dir(self) -> Path:
        return self.orch_dir / "agents"

    @property
    def run_dir(self) -> Path:
        return self.orch_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log"

    @property
    def tasks_dir(self) -> Path:
        return self.run_dir / "tasks"

    @property
    def merges_dir(self) -> Path:
        return self.run_dir / "merges"

    @property
    def lock_dir(self) -> Path:
        """Lock files live here, never beside committed files, and are never deleted."""
        return self.run_dir / "locks"

    def task_dir(self, task_id: str) -> Path:
        return self.tasks_dir / task_id

    def rel(self, path: Path) -> str:
        """A path as a person should read it: relative to the main checkout when inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def initialized(self) -> bool:
        return self.config_path.is_file()


def _box_root(common_dir: Path) -> Path | None:
    """The main checkout, when ``common_dir`` is the shadow git folder of a boxed task
    (``ROOT/.orch/run/tasks/ID/box/common``, ``orch.agents.boxgit``); else None."""
    parts = common_dir.parts
    if len(parts) < 7 or parts[-1] != "common" or parts[-2] != "box" or parts[-4] != "tasks":
        return None
    if parts[-5] != "run" or parts[-6] != ORCH_DIR:
        return None
    root = common_dir.parents[5]
    return root if (root / ".git").exists() else None


def find_project(start: Path | str | None = None, *, require_init: bool = True) -> Project:
    """Locate the project that ``start`` (default: the current folder) belongs to."""
    if start is not None:
        cwd = Path(start)
    else:
        try:
            cwd = Path(os.getcwd())
        except FileNotFoundError:
            raise EnvError(
                "the current folder no longer exists (a task worktree that was cleaned?)",
                hint="cd into the repository and run the command again",
            ) from None
    r = git.run(
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-common-dir",
            "--is-bare-repository",
            "--absolute-git-dir",
            "--show-toplevel",
        ],
        cwd=cwd,
        check=False,
    )
    lines = r.stdout.splitlines()
    if not r.ok and len(lines) < 2:
        if "not a git repository" in r.stderr:
            raise InputError(
                f"not inside a git repository: {cwd}",
                hint="run orch inside a git repository (git init, commit once, then orch init)",
            )
        raise EnvError(f"git could not read the repository at {cwd}: {r.stderr.strip()}")
    common_dir = Path(lines[0])
    boxed_root = _box_root(common_dir)
    if boxed_root is not None:  # inside orch's box: the task's own git folder is a shadow
        main = find_project(boxed_root, require_init=require_init)
        return Project(root=main.root, common_dir=main.common_dir, here=Path(lines[3]) if len(lines) > 3 else None)
    if lines[1] == "true":
        raise InputError(
            f"{common_dir} is a bare repository",
            hint="orch needs a checkout: clone it (git clone) and run orch there",
        )
    git_dir = Path(lines[2]) if len(lines) > 2 else common_dir
    here = Path(lines[3]) if len(lines) > 3 else None  # None inside the .git folder itself
    if common_dir.name == ".git" and (common_dir.parent / ".git").exists():
        root = common_dir.parent
    elif here is not None and git_dir == common_dir:  # the main checkout of a separate git dir
        root = here
    else:  # a separate git dir, seen from a linked worktree or from inside it: ask git
        listing = git.out(["worktree", "list", "--porcelain"], cwd=cwd)
        root = Path(listing.splitlines()[0].removeprefix("worktree "))
        if root == common_dir or not (root / ".git").exists():
            raise InputError(
                f"cannot tell where the main checkout of {common_dir} is from here",
                hint="run orch from the main checkout (this repository keeps its .git folder elsewhere)",
            )
    project = Project(root=root, common_dir=common_dir, here=here)
    if require_init and not project.initialized:
        raise InputError(
            f"orch is not set up in {root} (no {ORCH_DIR}/config.yaml)",
            hint="run: orch init",
        )
    return project
