"""orch conflicts: the pairwise forecast, in words and as JSON (field report, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from ceremony_helpers import add_tasks_to_plan, finished_task
from conftest import Orch, commit_file

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "conflicts.schema.json").read_text())


def conflicts_json(orch: Orch) -> tuple[int, dict[str, Any]]:
    r = orch("conflicts", "--json")
    assert r.stderr == "", r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    return r.returncode, data


def test_conflicts_json_names_pairs_and_clashes_with_the_base(project: Path, orch: Orch) -> None:
    repo = project
    code, data = conflicts_json(orch)
    assert code == 0
    assert data == {"base": "main", "base_sha": data["base_sha"], "tasks": [], "pairs": [], "with_base": []}

    commit_file(repo, "src/shared.py", "x = 1\n")
    commit_file(repo, "docs/guide.md", "v1\n")
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", []), ("T3", "^", []), ("T4", "^", [])])
    finished_task(repo, "T1", {"src/shared.py": "x = 2\n", "docs/a.md": "a\n"})
    finished_task(repo, "T2", {"src/shared.py": "x = 3\n", "docs/a.md": "b\n"})
    finished_task(repo, "T3", {"docs/guide.md": "v2 from T3\n"})
    finished_task(repo, "T4", {"four.txt": "4\n"})
    commit_file(repo, "docs/guide.md", "v2 on main\n")  # the base moved under T3

    code, data = conflicts_json(orch)
    assert code == 1
    assert data["base"] == "main" and len(data["base_sha"]) == 40
    assert data["tasks"] == ["T1", "T2", "T3", "T4"]
    assert data["pairs"] == [{"tasks": ["T1", "T2"], "paths": ["docs/a.md", "src/shared.py"]}]
    assert data["with_base"] == [{"task": "T3", "paths": ["docs/guide.md"]}]

    # The words say the same.
    words = orch("conflicts")
    assert words.returncode == 1
    assert "T1 x T2: 2 conflicting path(s)" in words.stdout and "T3 x main: 1 conflicting path(s)" in words.stdout


def test_conflicts_json_when_nothing_clashes(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("T1", "^", []), ("T2", "^", [])])
    finished_task(project, "T1", {"one.txt": "1\n"})
    finished_task(project, "T2", {"two.txt": "2\n"})
    code, data = conflicts_json(orch)
    assert code == 0
    assert (data["tasks"], data["pairs"], data["with_base"]) == (["T1", "T2"], [], [])
