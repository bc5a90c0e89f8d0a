"""Fixtures: real git repositories in temporary folders, pinned identities and dates, no GIT_* leaks.

Every test runs with HOME pointing at an empty folder (so no personal git config is read), an empty
GIT_TEMPLATE_DIR (no sample hooks), and author/committer pinned so commit ids are reproducible.
orch is run as a real process (``python -m orch``) from the folder the test names: no chdir.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PINNED = {
    "GIT_AUTHOR_NAME": "Ada Tester",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "Ada Tester",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}

_TMP: list[pytest.TempPathFactory] = []  # the session's, for ``built``


@pytest.fixture(autouse=True)
def _git_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("GIT_") or key in ("ORCH_TASK", "ORCH_WORKTREE", "ORCH_CONTEXT", "ORCH_HOME"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Ada Tester\n\temail = ada@example.com\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    templates = tmp_path_factory.mktemp("git-template")
    _TMP[:] = [tmp_path_factory]
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(templates))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("ORCH_CHECK_WRITES", "1")  # every write orch skips validating on a hot path is checked
    for key, value in PINNED.items():
        monkeypatch.setenv(key, value)
    yield


# The modules whose tests take longest (each test a matrix of commands or a whole run): they go first,
# so that with ``-n`` (scripts/test: ``--dist worksteal``) no worker is left running one at the end.
SLOW_FIRST = (
    "test_hostile_names.py", "test_state_mutations.py", "test_bad_input_property.py", "test_plan_property.py",
    "test_spin_crash.py", "test_takeover.py", "test_retry.py", "test_up.py", "test_up_hardening.py", "test_ui.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)  # stable: the order is kept otherwise


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip()


def commit_file(repo: Path, rel: str, text: str, message: str | None = None) -> str:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(repo, "add", "--", rel)
    git(repo, "commit", "-q", "-m", message or f"add {rel}")
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_orch(
    cwd: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "orch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


_CLI_PATH = "import sys\nfrom orch.cli.main import main\nmain(sys.argv[1:])\n"
_FAST_PATH = """
import atexit, sys
from orch.cli.entry import main
heavy = sys.argv.pop(1).split(",")
atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr))
main(sys.argv[1:])
"""
# Times (to the second) that two runs a moment apart may print differently: verdicts' and ceremonies'.
_TIMES = re.compile(r'"at": "[^"]*"|"id": "\d{8}T\d{6}Z"')


def assert_fast_path_agrees(
    cwd: Path, *args: str, heavy: Sequence[str], warm: bool = False, env: dict[str, str] | None = None
) -> int:
    """Run ``orch ARGS`` through the typer CLI and through ``orch.cli.entry``'s path that skips it; assert
    the second imported none of ``heavy`` and answered as the first (exit code, stdout, stderr).
    ``warm``: run the fast path once before the one that is checked (files validated, as users have
    them); ``env`` is added to the checked run. Returns the exit code."""

    def run(script: str, *extra: str, **more: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", script, *extra, *args]
        environ = {**os.environ, **more}
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=environ)

    cli = run(_CLI_PATH)
    if warm:
        run(_FAST_PATH, ",".join(heavy))
    fast = run(_FAST_PATH, ",".join(heavy), **(env or {}))
    *fast_err, imported = fast.stderr.splitlines()
    assert imported == "[]", (args, imported)
    assert (fast.returncode, _TIMES.sub("...", fast.stdout), "\n".join(fast_err)) == (
        cli.returncode,
        _TIMES.sub("...", cli.stdout),
        cli.stderr.rstrip("\n"),
    ), args
    return fast.returncode


class Orch:
    """Call orch in a folder: ``orch("status", "--json")``; asserts nothing by itself."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, cwd: Path | None = None, **kw: object) -> Run:
        return run_orch(cwd or self.cwd, *args, **kw)  # type: ignore[arg-type]

    def ok(self, *args: str, cwd: Path | None = None, **kw: object) -> Run:
        r = self(*args, cwd=cwd, **kw)
        assert r.returncode == 0, f"orch {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r


def init_repo(root: Path) -> None:
    """What the ``repo`` fixture holds: branch main with one commit."""
    git(root, "init", "-q", "-b", "main")
    commit_file(root, "README.md", "hello\n", "initial commit")


def _build_project(root: Path) -> None:
    init_repo(root)
    Orch(root).ok("init", "--test-cmd", "true", *no_hooks_flag())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "orch init")


# Each worker builds a fixture's repository once, with git and orch as a test would, and every test
# gets a copy of it (a copy costs a few ms; the build runs git three to five times and orch once).
_TEMPLATES: dict[object, Path] = {}


def built(dest: Path, key: object, build: Callable[[Path], None]) -> Path:
    """``dest`` (replaced) as ``build(dest)`` would leave it: built once per worker and ``key`` under
    pytest's temporary folder, copied for each test. ``build`` starts from an empty folder and must
    not depend on where it builds: it runs in another folder than ``dest``, with the first caller's
    environment (the fixtures')."""
    template = _TEMPLATES.get(key)
    if template is None:
        template = _TMP[0].mktemp("template") / "repo"
        template.mkdir()
        build(template)
        _TEMPLATES[key] = template
    if dest.exists():
        shutil.rmtree(dest)
    # New files (fresh times, as a build now would leave them), then git's index brought up to date
    # with them: the copy is what the build would have made, to the byte.
    shutil.copytree(template, dest, symlinks=True, copy_function=shutil.copy)
    git(dest, "update-index", "-q", "--refresh")
    return dest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch main with one commit."""
    return built(tmp_path / "repo", "repo", init_repo)


@pytest.fixture
def orch(repo: Path) -> Orch:
    return Orch(repo)


@pytest.fixture
def project(repo: Path, orch: Orch) -> Path:
    """A repository with orch initialised (no hooks) and .orch/ committed."""
    return built(repo, "project", _build_project)


def no_hooks_flag() -> Sequence[str]:
    """``--no-hooks`` where ``orch init`` installs git hooks (fixtures want a repository without them)."""
    import inspect

    from orch.cli import project_cmds as cli

    return ["--no-hooks"] if "no_hooks" in inspect.signature(cli.init).parameters else []


def write_plan(repo: Path, text: str) -> None:
    (repo / ".orch" / "plan.md").write_text(text)


def events(project: Path, action: str) -> list[str]:
    """The event log's lines of one action (``| ITERATE |``), in order."""
    return [ln for ln in (project / ".orch/run/log").read_text().splitlines() if f"| {action} |" in ln]


def status_of(repo: Path, task_id: str) -> dict:
    """A task's status.yaml as it is on disk."""
    import yaml

    return yaml.safe_load((repo / ".orch" / "run" / "tasks" / task_id / "status.yaml").read_text())


def wait_state(orch: Orch, task_id: str, timeout: float = 90) -> str:
    """``orch wait ID``'s verdict on the task: the state it ended in."""
    r = orch("wait", task_id, "--timeout", str(timeout))
    assert r.returncode in (0, 1), r.output
    return r.stdout.split(": ", 1)[1].split()[0]


def let_agent_write(repo: Path, folder: Path, agent: str = "shell") -> Path:
    """In the box an agent writes only its worktree: let ``agent`` write ``folder`` too (made here),
    through its manifest's ``writable`` list, for tests whose agents leave a record outside."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = repo / ".orch" / "agents" / f"{agent}.yaml"
    data = yaml.safe_load(path.read_text())
    data["writable"] = [*(data.get("writable") or []), str(folder)]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def no_box(repo: Path) -> None:
    """Commit ``sandbox: off``: for tests of what orch catches after the fact, which an agent in the
    box could not even attempt (tests/scenarios runs the attacks with the box on as well)."""
    config = repo / ".orch" / "config.yaml"
    text = "\n".join(ln for ln in config.read_text().splitlines() if not ln.startswith("sandbox:"))
    config.write_text(text + "\nsandbox: off\n")
    git(repo, "add", "--", ".orch/config.yaml")
    git(repo, "commit", "-q", "-m", "no box")
