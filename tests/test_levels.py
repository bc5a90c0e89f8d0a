"""Levels: ``levels:`` in .orch/config.yaml, ``orch level set|list``, a path's and a task's level;
bad levels and bad globs (exit 3 with file:line), and the config's other bytes left as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Orch, git, write_plan
from vhelpers import setup_project

from orch.core.context import open_ctx
from orch.views import levels

PLAN = """\
# Plan: levels

## T1: Session expiry
- scope: ^src/auth/

## T2: Widgets
- scope: ^src/dashboard/

## T3: Onboarding
- scope: ^docs/
- level: goal

## T4: Anything
"""


def config(project: Path) -> Path:
    return project / ".orch" / "config.yaml"


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch, plan=PLAN)


def test_level_of_path_most_specific_glob_wins_last_written_among_equals() -> None:
    rules = {"src/": "feature", "src/auth/": "code", "*.md": "goal", "src/auth/legacy/": "component"}
    assert levels.level_of_path(rules, "src/dashboard/w.py") == "feature"
    assert levels.level_of_path(rules, "src/auth/session.py") == "code"
    assert levels.level_of_path(rules, "src/auth/legacy/old.py") == "component"
    assert levels.level_of_path(rules, "src/auth/") == "code"  # a folder is asked for with its slash
    assert levels.level_of_path(rules, "docs/guide.md") == "goal"
    assert levels.level_of_path(rules, "README.txt") is None
    # 'src/auth/README.md': src/auth/ names 7 characters literally, *.md 3: the folder wins
    assert levels.level_of_path(rules, "src/auth/README.md") == "code"
    # equals: the one written last
    assert levels.level_of_path({"a/*.py": "goal", "a/*.sh": "code", "*/x.py": "code"}, "a/x.py") == "code"
    assert levels.level_of_path({"*/x.py": "code", "a/*.py": "goal"}, "a/x.py") == "goal"
    assert levels.specificity("src/**/*.py") == 6 and levels.specificity("[ab]/x") == 1


def test_level_of_path_refuses_a_bad_glob_or_level() -> None:
    from orch.core.errors import InputError

    with pytest.raises(InputError, match="unterminated character class"):
        levels.level_of_path({"src/[ab": "code"}, "src/a")
    with pytest.raises(InputError, match="'codes' is not a level"):
        levels.level_of_path({"src/": "codes"}, "src/a")


def test_level_set_appends_and_list_shows(proj: Path, orch: Orch) -> None:
    before = config(proj).read_text()
    assert orch.ok("level", "list").stdout.startswith("no levels: every task shows at feature")
    r = orch.ok("level", "set", "src/auth/", "code")
    n = len(before.splitlines())
    assert r.stdout == f"src/auth/: code at .orch/config.yaml:{n + 2}\n"
    orch.ok("level", "set", "src/dashboard/", "feature")
    orch.ok("level", "set", "*.md", "goal")
    text = config(proj).read_text()
    assert text == before + 'levels:\n  src/auth/: code\n  src/dashboard/: feature\n  "*.md": goal\n'
    listed = orch.ok("level", "list").stdout.splitlines()
    assert listed[0].split() == ["GLOB", "LEVEL", "FILES", "WHERE"]
    assert listed[1].split() == ["src/auth/", "code", "2", f".orch/config.yaml:{n + 2}"]
    assert listed[2].split() == ["src/dashboard/", "feature", "1", f".orch/config.yaml:{n + 3}"]
    assert listed[3].split() == ["*.md", "goal", "4", f".orch/config.yaml:{n + 4}"]  # .orch/plan.md too
    assert listed[-1] == "elsewhere: feature"
    data = json.loads(orch.ok("level", "list", "--json").stdout)
    assert [(x["glob"], x["level"], x["files"]) for x in data["levels"]] == [
        ("src/auth/", "code", 2), ("src/dashboard/", "feature", 1), ("*.md", "goal", 4)
    ]  # fmt: skip
    assert "| LEVEL_SET | src/auth/ code" in (proj / ".orch/run/log").read_text()


def test_level_set_inside_a_block_a_person_wrote_keeps_every_byte(proj: Path, orch: Orch) -> None:
    original = config(proj).read_text()
    body = "\n".join(ln for ln in original.splitlines() if not ln.startswith(("max_parallel", "test_timeout")))
    person = (
        "# our config\n" + body.replace("defaults:", "levels:   # who watches what\n"
        "    'src/auth/': component   # security asked\n"
        "    # docs are for later\n"
        "\n"
        "    docs/: goal\n"
        "max_parallel: 2\n"
        "defaults:")
    )  # fmt: skip
    config(proj).write_text(person)
    orch.ok("level", "set", "src/billing/", "code")
    r = orch.ok("level", "set", "src/auth/", "code")
    assert r.stdout.startswith("src/auth/: code (was component) at .orch/config.yaml:")
    expected = person.replace("'src/auth/': component   # security", "'src/auth/': code   # security").replace(
        "    docs/: goal\n", "    docs/: goal\n    src/billing/: code\n"
    )
    assert config(proj).read_text() == expected
    ctx = open_ctx(proj)
    assert dict(ctx.working_config.levels) == {"src/auth/": "code", "docs/": "goal", "src/billing/": "code"}
    assert ctx.working_config.max_parallel == 2


def test_level_set_keeps_crlf_and_a_missing_final_newline(proj: Path, orch: Orch) -> None:
    text = config(proj).read_text().rstrip("\n").replace("\n", "\r\n")
    config(proj).write_bytes(text.encode())
    orch.ok("level", "set", "src/", "component")
    assert config(proj).read_bytes() == (text + "\r\nlevels:\r\n  src/: component\r\n").encode()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["src/", "codes"], "orch: unknown level 'codes'\n  hint: did you mean 'code'?"),
        (["src/", "Goal"], "orch: unknown level 'Goal'\n  hint: did you mean 'goal'?"),
        (["src/[ab", "code"], "orch: 'src/[ab' is not a valid glob: unterminated character class"),
        (["!src/", "code"], "orch: '!src/' is a negation in gitignore syntax, not a level"),
        (["  ", "code"], "orch: a level pattern cannot be empty"),
        (["src/\x07", "code"], "orch: 'src/\\x07' holds a control character"),
    ],
)
def test_level_set_refuses_bad_input(proj: Path, orch: Orch, args: list[str], said: str) -> None:
    before = config(proj).read_bytes()
    r = orch("level", "set", *args)
    assert r.returncode == 3 and r.stderr.startswith(said), r.output
    assert config(proj).read_bytes() == before


def test_level_set_refuses_a_flow_mapping_and_leaves_it(proj: Path, orch: Orch) -> None:
    config(proj).write_text(config(proj).read_text() + "levels: {src/: goal}\n")
    before = config(proj).read_bytes()
    n = len(before.decode().splitlines())
    r = orch("level", "set", "docs/", "goal")
    assert r.returncode == 3 and r.stderr.startswith(f"orch: .orch/config.yaml:{n}: levels: is not written as a block")
    assert config(proj).read_bytes() == before


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("  src/: cod\n", "'cod' is not one of"),
        ("  'src/[ab': code\n", "levels: 'src/[ab' is not a valid glob: unterminated character class"),
        ("  '#src': code\n", "levels: '#src' is a comment in gitignore syntax"),
    ],
)
def test_a_bad_levels_entry_is_reported_at_its_line(proj: Path, orch: Orch, entry: str, said: str) -> None:
    text = config(proj).read_text() + "levels:\n  docs/: goal\n" + entry
    config(proj).write_text(text)
    line = len(text.splitlines())
    for args in (["level", "list"], ["status"], ["level", "set", "docs/", "code"]):
        r = orch(*args)
        assert r.returncode == 3, (args, r.output)
        assert f".orch/config.yaml:{line}" in r.stderr and said in r.stderr, (args, r.stderr)
    assert config(proj).read_text() == text


def test_task_level_field_then_finest_reached_then_feature(proj: Path, orch: Orch) -> None:
    ctx = open_ctx(proj)
    plan = ctx.plan
    assert levels.task_level(ctx, plan.require("T1")) == ("feature", "the default: .orch/config.yaml sets no levels")
    assert levels.task_level(ctx, plan.require("T3")) == ("goal", "level: goal in .orch/plan.md:11")
    orch.ok("level", "set", "src/", "component")
    orch.ok("level", "set", "src/auth/cart.py", "code")
    orch.ok("level", "set", "docs/", "code")
    ctx = open_ctx(proj)
    line = len(config(proj).read_text().splitlines()) - 1
    assert levels.task_level(ctx, plan.require("T1")) == (
        "code", f"src/auth/cart.py is at code (src/auth/cart.py: .orch/config.yaml:{line})"
    )  # fmt: skip
    assert levels.task_level(ctx, plan.require("T2"))[0] == "component"
    assert levels.task_level(ctx, plan.require("T3"))[0] == "goal"  # the field wins over docs/: code
    assert levels.task_level(ctx, plan.require("T4"))[0] == "code"  # no scope: it reaches every file
    assert levels.task_level(ctx, plan.require("T2"), paths=["web/app.js"]) == (
        "feature", "the default: no level is set for a file its scope reaches"
    )  # fmt: skip
    write_plan(proj, PLAN.replace("- scope: ^src/dashboard/", "- scope: ^web/"))
    git(proj, "commit", "-qam", "T2 moves")
    assert levels.task_level(open_ctx(proj), open_ctx(proj).plan.require("T2"))[0] == "feature"


def test_a_glob_yaml_would_misread_is_written_quoted(proj: Path, orch: Orch) -> None:
    for glob in ("a b/", "it's/", "yes", "*.sql", "#notes/".replace("#", "\\#"), 'say "hi"/'):
        orch.ok("level", "set", glob, "component")
    assert dict(open_ctx(proj).working_config.levels) == {
        "a b/": "component", "it's/": "component", "yes": "component", "*.sql": "component",
        "\\#notes/": "component", 'say "hi"/': "component",
    }  # fmt: skip
    tail = config(proj).read_text().split("levels:\n", 1)[1]
    assert tail.splitlines()[:2] == ['  "a b/": component', '  "it\'s/": component']


def test_status_with_levels_imports_no_pathspec(proj: Path, orch: Orch) -> None:
    """Every command reads the config; the levels' globs are checked there without pathspec."""
    from test_house import HEAVY, imported

    orch.ok("level", "set", "src/auth/", "code")
    orch.ok("status")  # warms the caches
    status = imported(proj, "-m", "orch", "status")
    assert not status & {"jsonschema", "yaml", "pathspec"}, status & HEAVY
    assert not {m for m in status if m.startswith("orch.views.levels")}


def test_level_set_is_for_a_person_only(proj: Path, orch: Orch) -> None:
    before = (proj / ".orch/config.yaml").read_text()
    r = orch("level", "set", "src/auth/", "goal", env={"ORCH_TASK": "T1"})
    assert r.returncode == 3, r.output
    assert "for a person" in r.output
    assert (proj / ".orch/config.yaml").read_text() == before
    assert orch("level", "list", env={"ORCH_TASK": "T1"}).returncode == 0  # looking is anyone's
