"""orch demo: the whole flow, end to end, as a person runs it after `pip install .`."""

from __future__ import annotations

from pathlib import Path

from conftest import git, run_orch


def test_demo_runs_the_whole_flow_and_keeps_its_repository(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    r = run_orch(tmp_path, "demo", "--dir", str(folder), "--keep", timeout=300)
    assert r.returncode == 0, r.output
    assert "T1 MERGED, T2 MERGED, T3 REVERTED, T4 QUARANTINED, T5 QUARANTINED" in r.stdout
    for step in [
        "$ orch init",
        "$ orch spin --ready",
        "$ orch wait",
        "$ orch verify --all",
        "$ orch merge",
        "$ orch clean --all",
        "$ orch status",
    ]:
        assert step in r.stdout, step
    repo = folder / "calc"
    subjects = git(repo, "log", "--format=%s", "main").splitlines()
    assert [s for s in subjects if s.startswith("orch: merge")] == [
        "orch: merge T2: Add negation on top of subtraction",
        "orch: merge T1: Add subtraction",
    ]
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert {"calc/sub.py", "calc/neg.py", "tests/test_sub.py", "tests/test_neg.py"} <= set(files)
    assert "return a * b" in git(repo, "show", "main:calc/core.py")  # T3's breakage was undone
    # Cleaning kept every unmerged branch's work.
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch/").split()
    assert {"orch/T3", "orch/T4", "orch/T5"} <= set(branches)
    assert list((repo / ".orch" / "run" / "merges").glob("*.md"))


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    r = run_orch(tmp_path, "demo", "--dir", str(tmp_path / "busy"))
    assert r.returncode == 2
    assert "not empty" in r.stderr
