from __future__ import annotations

from pathlib import Path

from conftest import Orch, git, run_orch


def test_init_creates_the_layout(repo: Path, orch: Orch) -> None:
    r = orch.ok("init", "--test-cmd", "pytest -q")
    for rel in [
        ".orch/config.yaml",
        ".orch/plan.md",
        ".orch/locks.yaml",
        ".orch/.gitignore",
        ".orch/agents/shell.yaml",
        "AGENTS.md",
    ]:
        assert (repo / rel).is_file(), rel
        assert f"created  {rel}" in r.stdout
    config = (repo / ".orch/config.yaml").read_text()
    assert "base_branch: main" in config
    assert "test_command: pytest -q" in config
    assert (repo / ".orch/.gitignore").read_text().splitlines()[1:] == ["run/", "worktrees/"]
    assert "Next steps" in r.stdout
    # run/ is ignored, so the main checkout shows only files a person should commit
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert ".orch/run" not in status


def test_init_is_idempotent_and_keeps_edits(repo: Path, orch: Orch) -> None:
    orch.ok("init")
    plan = repo / ".orch/plan.md"
    plan.write_text(plan.read_text() + "\nmy notes\n")
    before = plan.read_bytes()
    r = orch.ok("init")
    assert plan.read_bytes() == before
    assert "kept     .orch/plan.md" in r.stdout


def test_init_force_saves_a_backup(repo: Path, orch: Orch) -> None:
    orch.ok("init")
    plan = repo / ".orch/plan.md"
    edited = plan.read_text() + "\nmy notes\n"
    plan.write_text(edited)
    r = orch.ok("init", "--force")
    assert (repo / ".orch/plan.md.bak").read_text() == edited
    assert "my notes" not in plan.read_text()
    assert "rewrote  .orch/plan.md" in r.stdout


def test_init_detects_pytest(repo: Path, orch: Orch) -> None:
    (repo / "pyproject.toml").write_text("[project]\nname='x'\n")
    orch.ok("init")
    assert "test_command: python -m pytest -q" in (repo / ".orch/config.yaml").read_text()


def test_init_refuses_non_repo(tmp_path: Path) -> None:
    r = run_orch(tmp_path, "init")
    assert r.returncode == 3
    assert "not inside a git repository" in r.stderr
    assert "Traceback" not in r.output


def test_init_refuses_empty_repo(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    r = run_orch(tmp_path, "init")
    assert r.returncode == 3
    assert "no commits yet" in r.stderr
    assert not (tmp_path / ".orch").exists()


def test_init_refuses_bare_repo(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare")
    r = run_orch(tmp_path, "init")
    assert r.returncode == 3
    assert "bare repository" in r.stderr


def test_init_from_a_subfolder_sets_up_the_root(repo: Path, orch: Orch) -> None:
    sub = repo / "a" / "b"
    sub.mkdir(parents=True)
    orch.ok("init", cwd=sub)
    assert (repo / ".orch/config.yaml").is_file()
    assert not (sub / ".orch").exists()


def test_commands_before_init_say_so(repo: Path, orch: Orch) -> None:
    r = orch("status")
    assert r.returncode == 3
    assert "orch init" in r.stderr


def test_init_again_shows_the_config_it_kept(repo: Path, orch: Orch) -> None:
    orch.ok("init", "--test-cmd", "make check", "--no-hooks")
    r = orch.ok("init", "--no-hooks")
    assert "kept     .orch/config.yaml" in r.stdout
    assert "\nbase branch: main\ntest command: make check\n" in r.stdout, r.stdout
    git(repo, "checkout", "-q", "-b", "feature")
    r = orch.ok("init", "--no-hooks", "--test-cmd", "make other")
    assert "\nbase branch: main\ntest command: make check\n" in r.stdout, r.stdout
    assert "--test-cmd was not applied" in r.stdout
    assert "test_command: make check" in (repo / ".orch/config.yaml").read_text()
    r = orch.ok("init", "--no-hooks", "--force", "--test-cmd", "make other")  # --force rewrites it
    assert "\nbase branch: feature\ntest command: make other\n" in r.stdout, r.stdout
