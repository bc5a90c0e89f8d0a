"""Finding the main checkout from anywhere, and the one git runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Orch, commit_file, git

from orch.core import git as orch_git
from orch.core.errors import EnvError, GitError, InputError
from orch.core.repo import find_project


def test_find_project_from_root_subfolder_and_worktree(project: Path, tmp_path: Path) -> None:
    sub = project / "a" / "b"
    sub.mkdir(parents=True)
    worktree = tmp_path / "wt"
    git(project, "worktree", "add", "-q", "-b", "side", str(worktree))
    for start, here in [(project, project), (sub, project), (worktree, worktree), (worktree / ".orch", worktree)]:
        p = find_project(start)
        assert (p.root, p.here, p.common_dir) == (project, here, project / ".git")
        assert p.orch_dir == project / ".orch"
        assert p.rel(project / ".orch/plan.md") == ".orch/plan.md"
        assert p.rel(tmp_path / "x") == str(tmp_path / "x")
    inside_git = find_project(project / ".git")
    assert (inside_git.root, inside_git.here) == (project, None)


def test_find_project_with_a_separate_git_dir(tmp_path: Path, orch: Orch) -> None:
    root = tmp_path / "checkout"
    git(tmp_path, "init", "-q", "-b", "main", "--separate-git-dir", str(tmp_path / "gitdir"), str(root))
    commit_file(root, "README.md", "x\n")
    orch.ok("init", cwd=root / ".")
    p = find_project(root)
    assert (p.root, p.common_dir) == (root, tmp_path / "gitdir")
    assert (root / ".orch/config.yaml").is_file()


def test_find_project_refusals(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(InputError, match="not inside a git repository"):
        find_project(tmp_path / "..")
    with pytest.raises(InputError, match=r"orch is not set up in .* \(no \.orch/config\.yaml\)"):
        find_project(repo)
    assert find_project(repo, require_init=False).root == repo
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(InputError, match="is a bare repository"):
        find_project(tmp_path / "bare.git")


def test_git_ignores_the_git_variables_of_a_hook(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "elsewhere")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))  # what git exports to a hook
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert orch_git.current_branch(cwd=repo) == "main"
    env = orch_git.clean_env()
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env and "GIT_WORK_TREE" not in env
    assert env["GIT_AUTHOR_NAME"] == "Ada Tester"  # identity a person set is kept
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_git_errors_carry_the_command(repo: Path) -> None:
    with pytest.raises(GitError) as info:
        orch_git.run(["rev-parse", "--verify", "no-such-branch"], cwd=repo)
    assert info.value.argv[:1] == ["git"] and "no-such-branch" in info.value.argv
    assert info.value.returncode == 128
    assert "git failed (exit 128)" in info.value.render()
    assert orch_git.run(["rev-parse", "--verify", "no-such-branch"], cwd=repo, check=False).returncode == 128
    with pytest.raises(EnvError, match="folder does not exist"):
        orch_git.run(["status"], cwd=repo / "missing")


def test_git_helpers(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert orch_git.rev_parse("HEAD", cwd=repo) == head
    assert orch_git.rev_parse("--output=x", cwd=repo) is None  # an option is never read as one
    assert orch_git.rev_parse("nothing", cwd=repo) is None
    second = commit_file(repo, "b.txt", "b\n")
    assert orch_git.is_ancestor(head, second, cwd=repo)
    assert not orch_git.is_ancestor(second, head, cwd=repo)
    assert orch_git.valid_branch_name("orch/T1", cwd=repo)
    assert not orch_git.valid_branch_name("-x", cwd=repo)
    assert not orch_git.valid_branch_name("a..b", cwd=repo)
    assert not orch_git.worktree_is_dirty(cwd=repo)
    (repo / "new.txt").write_text("n\n")
    assert orch_git.worktree_is_dirty(cwd=repo)


def test_init_refuses_a_detached_head_and_an_unknown_base(repo: Path, orch: Orch) -> None:
    r = orch("init", "--base", "nope")
    assert r.returncode == 3
    assert "no branch 'nope' in this repository" in r.stderr
    git(repo, "checkout", "-q", "--detach")
    r = orch("init")
    assert r.returncode == 3
    assert "HEAD is detached" in r.stderr
    assert not (repo / ".orch").exists()
    orch.ok("init", "--base", "main")
    assert "base_branch: main" in (repo / ".orch/config.yaml").read_text()
