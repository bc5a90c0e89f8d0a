"""The wheel: built from this checkout, installed into a fresh virtualenv, `orch init` run from there.

schemas/ and templates/ live at the top of the repository and must ship inside the wheel. To stay
fast and offline, the fresh virtualenv gets the wheel alone (--no-deps) and borrows the test
virtualenv's dependencies through a .pth file; orch itself must come from the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import git

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env, timeout=600)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)], cwd=out)
    (built,) = out.glob("git_orch-*.whl")
    return built


def test_the_wheel_ships_schemas_templates_and_both_commands(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for schema in (ROOT / "schemas").glob("*.json"):
        assert f"orch/_data/schemas/{schema.name}" in names
    for template in (ROOT / "templates").rglob("*"):
        if template.is_file():
            assert f"orch/_data/templates/{template.relative_to(ROOT / 'templates')}" in names
    for module in (ROOT / "orch").rglob("*.py"):  # every subpackage ships, each with its __init__.py
        assert module.relative_to(ROOT).as_posix() in names
    for asset in (ROOT / "orch/views/static").iterdir():  # the dashboard's script and style: no CDN
        assert asset.relative_to(ROOT).as_posix() in names
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)
    for page in ("orch.1", "git-orch.1"):
        assert f"git_orch-0.1.0.data/data/share/man/man1/{page}" in names
    assert "orch = orch.cli.entry:main" in entry_points
    assert "git-orch = orch.cli.entry:main" in entry_points
    assert "Requires-Python: >=3.10" in metadata
    runtime = {
        re.split(r"[ <>=!;\[]", line.partition(":")[2].strip())[0].lower()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    # exactly the README's Dependencies section (gitpython went: git runs through argv lists)
    assert runtime == {"typer", "pyyaml", "jsonschema", "rich", "pathspec"}


def test_orch_init_from_a_fresh_virtualenv(wheel: Path, tmp_path: Path, repo: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
                   .stdout.strip())  # fmt: skip
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
         str(wheel)],
        cwd=tmp_path,
    )  # fmt: skip
    # dependencies from the test virtualenv, after the fresh one's own site-packages
    (purelib / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"

    probe = "import orch.core.store as s; print(s.__file__); print(s.data_dir('schemas'))"
    where = run([str(python), "-c", probe], repo, env)
    module, data = where.stdout.splitlines()
    assert Path(module).is_relative_to(purelib), module  # the wheel's copy, not this checkout
    assert Path(data) == purelib / "orch" / "_data" / "schemas"

    r = run([str(venv / "bin" / "orch"), "init", "--test-cmd", "true"], repo, env)
    assert "created  .orch/config.yaml" in r.stdout
    assert (repo / ".orch/plan.md").read_text() == (ROOT / "templates/plan.md").read_text()
    assert (repo / ".orch/agents/shell.yaml").is_file()
    assert (repo / "AGENTS.md").read_text() == (ROOT / "templates/AGENTS.md").read_text()
    r = run(["git", "orch", "plan"], repo, env)  # the git-orch script makes `git orch` a git subcommand
    assert "T1  PENDING (ready)" in r.stdout
    git(repo, "add", "-A")
    assert ".orch/config.yaml" in git(repo, "diff", "--cached", "--name-only")

    # git turns `git orch --help` into `man git-orch`: man finds the page beside the console script
    assert (venv / "share/man/man1/git-orch.1").read_text() == (ROOT / "man/git-orch.1").read_text()
    if shutil.which("man") is None:
        pytest.skip("man is not installed here: the page is in the wheel, `git orch --help` is not tried")
    r = run(["git", "orch", "--help"], repo, {**env, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"})
    assert "git-orch - a git-native orchestrator for coding agents" in r.stdout
    assert "git orch merge" in r.stdout and "EXIT STATUS" in r.stdout


def test_the_man_pages_are_the_clis_own_help(tmp_path: Path) -> None:
    """man/*.1 are generated (python -m orch.cli.manpage man/): a changed command changes them."""
    run([sys.executable, "-m", "orch.cli.manpage", str(tmp_path)], cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    for page in ("orch.1", "git-orch.1"):
        assert (tmp_path / page).read_text() == (ROOT / "man" / page).read_text(), (
            f"man/{page} is out of date: run python -m orch.cli.manpage man/"
        )
