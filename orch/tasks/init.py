"""``orch init``: set up ``.orch/`` in a repository, never overwriting what a person edited."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orch.core import config as config_mod
from orch.core import git
from orch.core.errors import InputError
from orch.core.repo import find_project
from orch.core.store import Store, atomic_write, dump_yaml, template

ORCH_GITIGNORE = "# runtime state and task worktrees are local to this machine\nrun/\nworktrees/\n"


@dataclass
class InitResult:
    root: Path
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)  # with a .bak beside each
    hooks: list[str] = field(default_factory=list)  # what installing the git hooks did
    base_branch: str = ""  # what .orch/config.yaml holds once init is done (a kept file included)
    test_command: str | None = None
    not_applied: list[str] = field(default_factory=list)  # options a kept config.yaml overrides
    # The programs git config names (filters, merge and diff drivers) accepted as orch's baseline,
    # and which of them were not accepted before this run.
    git_programs: dict[str, str] = field(default_factory=dict)
    git_programs_new: list[str] = field(default_factory=list)


def preset_names() -> list[str]:
    from orch.core.store import data_dir

    return sorted(p.stem for p in (data_dir("templates") / "agents").glob("*.yaml"))


def run(
    start: Path | str | None = None,
    *,
    base_branch: str | None = None,
    test_command: str | None = None,
    force: bool = False,
    hooks: bool = True,
) -> InitResult:
    project = find_project(start, require_init=False)
    root = project.root
    if git.rev_parse("HEAD", cwd=root) is None:
        raise InputError(
            f"the repository at {root} has no commits yet",
            hint="make a first commit (git commit --allow-empty -m init), then run orch init",
        )
    branch = base_branch or git.current_branch(cwd=root)
    if not branch:
        raise InputError(
            "HEAD is detached, so there is no current branch to use as the base",
            hint="check out a branch, or pass --base BRANCH",
        )
    if git.rev_parse(f"refs/heads/{branch}", cwd=root) is None:
        raise InputError(f"no branch '{branch}' in this repository", hint="pass --base with an existing branch")
    result = InitResult(root=root, base_branch=branch)
    result.test_command = test_command if test_command is not None else config_mod.detect_test_command(root)

    store = Store(root, project.orch_dir)
    files: dict[Path, str] = {
        project.config_path: dump_yaml(config_mod.default(branch, result.test_command)),
        project.plan_path: template("plan.md"),
        project.locks_path: template("locks.yaml"),
        project.orch_dir / ".gitignore": ORCH_GITIGNORE,
    }
    for name in preset_names():
        files[project.agents_dir / f"{name}.yaml"] = template(f"agents/{name}.yaml")
    for path, text in files.items():
        _place(path, text, force=force, result=result, root=root)
    agents_md = root / "AGENTS.md"
    if not agents_md.exists():
        _place(agents_md, template("AGENTS.md"), force=False, result=result, root=root)
    else:
        result.kept.append("AGENTS.md")
    # Validate what is there now: a file a person broke is reported, not silently accepted.
    config = store.load(project.config_path, "config")
    # The summary says what the config holds, which a kept file decides, not what was asked for.
    for option, asked, key in (("--base", base_branch, "base_branch"), ("--test-cmd", test_command, "test_command")):
        if asked is not None and config.get(key) != asked:
            result.not_applied.append(option)
    result.base_branch = config.get("base_branch") or branch
    result.test_command = config.get("test_command")
    store.load(project.locks_path, "locks")
    project.run_dir.mkdir(parents=True, exist_ok=True)
    # A person runs init, before any agent: what git config names now is theirs (orch.core.gitsafety).
    result.git_programs, before = git.accept_programs(cwd=root)
    result.git_programs_new = [k for k, v in result.git_programs.items() if before.get(k) != v]
    if hooks:
        from orch.verify import hooks as hooks_mod

        try:
            result.hooks = hooks_mod.install(project)
        except InputError as exc:  # core.hooksPath set: init still succeeds, and says why
            result.hooks = [f"not installed: {exc.message}", f"hint: {exc.hint}"]
    return result


def _place(path: Path, text: str, *, force: bool, result: InitResult, root: Path) -> None:
    rel = str(path.relative_to(root))
    if path.exists() or path.is_symlink():
        if not force:
            result.kept.append(rel)
            return
        if path.read_bytes() == text.encode():
            result.kept.append(rel)
            return
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        atomic_write(path, text)
        result.rewritten.append(rel)
        return
    atomic_write(path, text)
    result.created.append(rel)
