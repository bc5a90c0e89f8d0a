"""The project's config, ``.orch/config.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orch.core.errors import InputError
from orch.core.plan import LEVELS  # noqa: F401 (coarse to fine; the plan's level: field takes the same)
from orch.core.repo import Project
from orch.core.store import Store
from orch.core.text import quoted

DEFAULT_TEST_TIMEOUT = 900.0
DEFAULT_WORKTREE_ROOT = ".orch/worktrees"


@dataclass(frozen=True)
class Config:
    base_branch: str
    test_command: str | None
    test_timeout: float
    worktree_root: Path
    max_parallel: int
    sandbox: str = "auto"
    writable: tuple[str, ...] = ()  # what boxed processes may write besides their tree (caches)
    defaults: dict[str, Any] = field(default_factory=dict)
    levels: tuple[tuple[str, str], ...] = ()  # (glob, level) as written: orch.views.levels reads them
    budget: str | None = None  # the budget of a whole orch up run

    @property
    def default_agent(self) -> str:
        return str(self.defaults.get("agent") or "shell")


def load(project: Project, store: Store) -> Config:
    data = store.load(project.config_path, "config")
    problem = branch_problem(str(data["base_branch"]))
    if problem:
        raise InputError(f"base_branch: {problem}", where=key_where(project, "base_branch"), hint=BASE_HINT)
    root = str(data.get("worktree_root") or "")
    if any(c < " " or c == "\x7f" for c in root):
        raise InputError(
            f"worktree_root: {quoted(root)} holds a control character",
            where=key_where(project, "worktree_root"),
            hint="name a folder by a plain path, e.g. the default .orch/worktrees",
        )
    for name, budget, indent in (
        ("defaults.budget", (data.get("defaults") or {}).get("budget"), True),
        ("budget", data.get("budget"), False),
    ):
        if budget:
            from orch.core.plan import parse_budget

            try:
                parse_budget(str(budget))
            except ValueError as exc:
                raise InputError(
                    f"{name}: {exc}",
                    where=key_where(project, "budget", indent=indent),
                    hint="write e.g. '200k tokens', '$5', or both: '200k tokens, $5'",
                ) from None
    for key in data.get("levels") or {}:
        glob = str(key)  # YAML reads a bare 1 or true as a number or a boolean: the glob is its text
        problem = level_glob_problem(glob)
        if problem:
            raise InputError(f"levels: {problem}", where=level_where(project, glob), hint=LEVEL_HINT)
    return from_data(project, data)


LEVEL_HINT = "map gitignore-style globs to goal, feature, component or code, e.g. 'src/auth/: code'"


def level_glob_problem(glob: str) -> str | None:
    """What is wrong with one ``levels:`` key that its text shows (no pathspec: every command reads the
    config), or None; ``orch.views.levels`` compiles the rest."""
    from orch.core.globs import syntax_problem

    if any(c < " " or c == "\x7f" for c in glob):
        return f"{quoted(glob)} holds a control character"
    return syntax_problem(glob, "level")


def level_where(project: Project, glob: str, path: Path | None = None) -> str:
    """``.orch/config.yaml:LINE`` of ``glob``'s line under ``levels:`` (of ``levels:`` itself when the
    key is not found as written: a flow mapping, an escape); the file alone without a ``levels:``."""
    import re

    path = path or project.config_path
    where = project.rel(path)
    lines = _lines(path)
    if lines is None:
        return where
    start = next((n for n, text in enumerate(lines) if re.match(r"['\"]?levels['\"]?[ \t]*:", text)), None)
    if start is None:
        return where
    line = level_where_in(lines, glob, start)
    return f"{where}:{(start if line is None else line) + 1}"


def level_where_in(lines: list[str], glob: str, start: int) -> int | None:
    """The index in ``lines`` of ``glob``'s entry in the ``levels:`` block that starts at ``start``."""
    import json
    import re

    spelled = {glob, json.dumps(glob, ensure_ascii=False)[1:-1], glob.replace("'", "''")}
    keys = "|".join(re.escape(s) for s in sorted(spelled, key=len, reverse=True))
    key = re.compile(rf"[ \t]+(?:'(?:{keys})'|\"(?:{keys})\"|(?:{keys}))[ \t]*:")
    for n in range(start + 1, len(lines)):
        text = lines[n]
        if text.strip() and not text[0].isspace() and not text.startswith("#"):
            return None  # the next top-level key: the block ended
        if key.match(text):
            return n
    return None


def from_data(project: Project, data: dict[str, Any]) -> Config:
    import os

    # Normalised (``../wt`` becomes a plain absolute path) as git lists its worktrees, so a task's
    # worktree compares equal to git's listing wherever the root is.
    root = os.path.normpath(project.root / (data.get("worktree_root") or DEFAULT_WORKTREE_ROOT))
    return Config(
        base_branch=data["base_branch"],
        test_command=data.get("test_command"),
        test_timeout=float(data.get("test_timeout") or DEFAULT_TEST_TIMEOUT),
        worktree_root=Path(root),
        max_parallel=int(data.get("max_parallel") or 4),
        sandbox=_sandbox(data.get("sandbox")),
        writable=tuple(str(p) for p in data.get("writable") or ()),
        defaults=dict(data.get("defaults") or {}),
        levels=tuple((str(k), str(v)) for k, v in (data.get("levels") or {}).items()),
        budget=str(data["budget"]) if data.get("budget") else None,
    )


def _sandbox(value: Any) -> str:
    """One ``sandbox`` value (config or manifest) as on, off or auto (YAML reads a bare on/off as
    true/false)."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    text = str(value or "auto").strip().lower()
    return text if text in ("auto", "on", "off") else "auto"


sandbox_mode = _sandbox


def in_force(working: Config, committed: dict[str, Any] | None) -> Config:
    """The config that judges: the working copy's, except what an uncommitted edit would loosen.

    ``committed`` is the validated ``config.yaml`` of the base branch (None: not committed yet). The
    merge ceremony runs the committed ``test_command`` whenever one is committed (an edit to ``true``
    would pass anything; a person's new command counts once committed), the working one only while none
    is; ``test_timeout`` is the shorter of the two; ``sandbox`` is the stricter of the two (on, then
    auto, then off: an edit cannot take agents out of the box), and ``writable`` the committed list.
    The base branch is the working copy's: it names the branch whose committed rules apply, and the
    ceremony merges into that branch.
    """
    if committed is None:
        return working
    timeout = float(committed.get("test_timeout") or DEFAULT_TEST_TIMEOUT)
    return replace(
        working,
        test_command=committed.get("test_command") or working.test_command,
        test_timeout=min(timeout, working.test_timeout),
        sandbox=max(working.sandbox, _sandbox(committed.get("sandbox")), key=_SANDBOX_ORDER.index),
        writable=tuple(str(p) for p in committed.get("writable") or ()),
    )


_SANDBOX_ORDER = ("off", "auto", "on")


_REFUSED = frozenset(" ~^:?*[\\\x7f")


def branch_problem(name: str) -> str | None:
    """Why git would refuse ``name`` as a branch name (``git check-ref-format --branch``'s rules, and a
    leading '-' git would read as an option), or None. Checked in Python: the config is read by every
    command, and a name git refuses must never reach a path or an argv."""
    shown = quoted(name)
    bad = sorted({c for c in name if c < " " or c in _REFUSED or "\ud800" <= c <= "\udfff"})
    if bad:
        return f"{shown} is not a valid branch name: git refuses {', '.join(repr(c) for c in bad)} in one"
    if name.startswith("-"):
        return f"{shown} is not a valid branch name: it starts with '-', which git reads as an option"
    parts = name.split("/")
    why = (
        "it is a name git keeps for itself" if name in ("@", "HEAD")
        else "it holds '..'" if ".." in name
        else "it holds '@{'" if "@{" in name
        else "it ends with '.'" if name.endswith(".")
        else "it has an empty part ('/' at an end, or '//')" if not all(parts)
        else "a part of it starts with '.'" if any(p.startswith(".") for p in parts)
        else "a part of it ends with '.lock'" if any(p.endswith(".lock") for p in parts)
        else "a part of it is longer than a file name can be" if any(len(p.encode()) > 255 for p in parts)
        else None
    )  # fmt: skip
    return f"{shown} is not a valid branch name: {why}" if why else None


BASE_HINT = "set base_branch to an existing branch (git branch lists them)"


def base_where(project: Project) -> str:
    """``.orch/config.yaml:LINE`` of ``base_branch``, for a message about the branch it names."""
    return key_where(project, "base_branch")


def _lines(path: Path) -> list[str] | None:
    """The file's lines, for saying where in it something is (None: it does not read as text)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def key_where(project: Project, key: str, path: Path | None = None, *, indent: bool = False) -> str:
    """``.orch/config.yaml:LINE`` (or ``path``'s) of a top-level ``key`` (``indent``: of a nested one,
    the first found); the file alone if it is not there."""
    import re

    path = path or project.config_path
    where = project.rel(path)
    lines = _lines(path)
    if lines is None:
        return where
    pattern = re.compile(("[ \t]+" if indent else "") + rf"['\"]?{re.escape(key)}['\"]?[ \t]*:")
    line = next((n for n, text in enumerate(lines, 1) if pattern.match(text)), None)
    return f"{where}:{line}" if line else where


def default(base_branch: str, test_command: str | None) -> dict[str, Any]:
    return {
        "version": 1,
        "base_branch": base_branch,
        "test_command": test_command,
        "test_timeout": DEFAULT_TEST_TIMEOUT,
        "worktree_root": DEFAULT_WORKTREE_ROOT,
        "max_parallel": 4,
        "defaults": {"agent": "shell", "max_iterations": 10, "timeout": 3600},
    }


def detect_test_command(root: Path) -> str | None:
    """A sensible integration test command for the repository, from the files it has."""
    if any((root / name).exists() for name in ("pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "tests")):
        return "python -m pytest -q"
    if (root / "package.json").is_file():
        return "npm test"
    if (root / "Cargo.toml").is_file():
        return "cargo test"
    if (root / "go.mod").is_file():
        return "go test ./..."
    if (root / "Makefile").is_file():
        return "make test"
    return None
