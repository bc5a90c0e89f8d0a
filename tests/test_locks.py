from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import Orch
from hypothesis import given, settings
from hypothesis import strategies as hst
from vhelpers import commit_in, make_task, setup_project

from orch.verify import locks, regions


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def lock(pattern: str, kind: str = "path") -> locks.Lock:
    rx = None if kind == "region" else locks.glob_regex(pattern)
    return locks.Lock({"id": "X", "kind": kind, "mode": "hard", "pattern": pattern}, rx=rx)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/billing/pricing.py", "src/billing/pricing.py", True),
        ("src/billing/pricing.py", "lib/src/billing/pricing.py", False),
        ("tests/**/test_checkout*.py", "tests/a/b/test_checkout_x.py", True),
        ("tests/**/test_checkout*.py", "tests/test_checkout.py", True),
        ("tests/**/test_checkout*.py", "tests/a/test_cart.py", False),
        ("*.lock", "deep/dir/poetry.lock", True),
        ("docs/", "docs/a/b.md", True),
        ("docs/", "docs", False),
        ("/AGENTS.md", "AGENTS.md", True),
        ("/AGENTS.md", "sub/AGENTS.md", False),
        ("odd name/*.txt", "odd name/x.txt", True),
        ("x", "x\n", False),
    ],
)
def test_globs_have_gitignore_semantics(pattern: str, path: str, expected: bool) -> None:
    assert lock(pattern).matches(path) is expected


@pytest.mark.parametrize(
    ("pattern", "kind", "scope", "expected"),
    [
        ("src/billing/pricing.py", "path", "^src/auth/", False),
        ("src/billing/pricing.py", "path", "^src/", True),
        ("src/billing/pricing.py", "path", None, True),
        ("tests/**/test_checkout*.py", "path", r"^tests/test_checkout\.py$", True),
        ("tests/**/test_checkout*.py", "path", "^src/", False),
        ("docs/", "path", r"\.md$", True),
        ("*.lock", "path", "^poetry\\.lock$", True),
        ("src/auth/cart.py::Cart.total", "region", "^src/auth/", True),
        ("src/auth/cart.py::Cart.total", "region", "^web/", False),
    ],
)
def test_touches_scope(pattern: str, kind: str, scope: str | None, expected: bool) -> None:
    assert locks.touches_scope(lock(pattern, kind), scope) is expected


def test_touches_scope_uses_tracked_files() -> None:
    lk = lock("config/*.yaml")
    assert locks.touches_scope(lk, "^config/prod", files=["config/prod.yaml"]) is True
    assert locks.touches_scope(lk, "^config/prod", files=["config/dev.yaml"]) is False


def test_region_text_finds_functions_methods_and_comment_regions() -> None:
    src = "import x\n\n@deco\ndef f():\n    return 1\n\nclass A:\n    def m(self):\n        pass\n"
    assert regions.region_text(src, "f", python=True) == "@deco\ndef f():\n    return 1\n"
    assert regions.region_text(src, "A.m", python=True) == "    def m(self):\n        pass\n"
    assert regions.region_text(src, "A.zz", python=True) is None
    js = "a\n/* orch-lock: begin K */\nb\n/* orch-lock: end K */\nc\n"
    assert regions.region_text(js, "K", python=False) == "/* orch-lock: begin K */\nb\n/* orch-lock: end K */\n"
    with pytest.raises(regions.RegionError):
        regions.region_text("def (:\n", "f", python=True)


def test_lock_add_require_rm_keep_the_header_and_validate(proj: Path, orch: Orch) -> None:
    path = proj / ".orch/locks.yaml"
    r = orch.ok("lock", "add", "src/auth/*.py", "--soft", "--reason", "auth is frozen")
    assert r.stdout == "added soft path lock L5: src/auth/*.py; covers 2 tracked file(s) on the base branch\n"
    r = orch.ok("lock", "add", "src/auth/cart.py::Cart.count", "--id", "COUNT")
    assert r.stdout == "added hard region lock COUNT: src/auth/cart.py::Cart.count\n"
    r = orch.ok("lock", "add", "tests/unit/*.py", "--kind", "test")
    assert r.stdout.startswith("added hard test lock L6: tests/unit/*.py; covers 1 tracked")
    r = orch.ok("lock", "require", "No network in tests", "--check", "true", "--via", "static", "--soft")
    assert r.stdout == "added soft requirement R1: No network in tests (check: true)\n"
    text = path.read_text()
    assert text.startswith("# project locks\nversion: 1\n")
    data = yaml.safe_load(text)
    assert [x["id"] for x in data["locks"]] == ["L1", "L2", "L3", "L4", "L5", "COUNT", "L6", "R1"]
    assert len(data["locks"][5]["hash"]) == 16
    assert orch.ok("lock", "rm", "L5").stdout == "removed soft path lock L5\n"
    for args, message in [
        (("lock", "rm", "L5"), "no lock 'L5'"),
        (("lock", "add", "src/auth/cart.py::Cart.nope"), "no region 'Cart.nope' in src/auth/cart.py"),
        (("lock", "add", "missing.py::f"), "no file 'missing.py' on main"),
        (("lock", "add", "!x"), "negation"),
        (("lock", "add", "x", "--id", "L1"), "exists already"),
        (("lock", "require", "t", "--check", "true", "--via", "vibes"), "--via must be one of"),
        (("lock", "rm", "AGENTS_MD"), "agents_md_lock: false"),
    ]:
        r = orch(*args)
        assert r.returncode == 3, (args, r.output)
        assert message in r.stderr, (args, r.stderr)
    assert "L5" not in path.read_text()
    log = (proj / ".orch/run/log").read_text()
    assert "LOCK_ADD" in log and "LOCK_RM" in log


def test_lock_list_shows_pressure(proj: Path, orch: Orch) -> None:
    commit_in(make_task(proj, "T3"), "src/billing/pricing.py", "PRICE = 0\n")
    orch("verify", "T3")
    commit_in(make_task(proj, "T1"), "src/auth/session.py", "TTL = 1\n")
    orch.ok("verify", "T1")
    rows = {r["id"]: r for r in json.loads(orch.ok("lock", "list", "--json").stdout)["locks"]}
    assert list(rows) == ["L1", "L2", "L3", "L4", "AGENTS_MD"]
    assert rows["AGENTS_MD"]["implicit"] is True
    assert rows["L1"]["tasks"] == [{"id": "T3", "state": "LOCK_VIOLATION", "pressure": "blocking"}]
    assert rows["L3"]["tasks"] == [
        {"id": "T1", "state": "PENDING", "pressure": "clear"},
        {"id": "T3", "state": "LOCK_VIOLATION", "pressure": "routing around"},
    ]
    text = orch.ok("lock", "list").stdout
    assert text.splitlines()[0].split() == ["ID", "KIND", "MODE", "LOCKS", "REASON", "PRESSURE"]
    assert "T3 blocking" in text


def test_compiled_locks_are_cached_by_content(proj: Path, orch: Orch) -> None:
    from orch.core.context import open_ctx

    first = locks.load(open_ctx(proj).project)
    cache = list((proj / ".orch/run/cache/locks").glob("*.json"))
    assert len(cache) == 1
    again = locks.load(open_ctx(proj).project)
    assert [lk.id for lk in again.locks] == [lk.id for lk in first.locks] == ["L1", "L2", "L3", "L4"]
    path = proj / ".orch/locks.yaml"
    path.write_text(path.read_text().replace("mode: soft", "mode: hard"))
    assert locks.load(open_ctx(proj).project).get("L4").mode == "hard"  # type: ignore[union-attr]


_GLOB_PARTS = hst.sampled_from(
    ["src", "a", "b.py", "x_y", "*", "**", "?", "[ab]", "\\*", " ", "-", ".", "é", "!", "#", "a b", "**/", "\\ "]
)


@settings(max_examples=300, deadline=None)
@given(hst.booleans(), hst.lists(_GLOB_PARTS, min_size=1, max_size=5), hst.booleans(), hst.booleans(), hst.booleans())
def test_glob_prefix_is_never_longer_than_what_the_regex_pins_down(
    lead: bool, parts: list[str], middle: bool, trail: bool, space: bool
) -> None:
    from orch.verify import locks

    pattern = ("/" if lead else "") + ("/" if middle else "").join(parts) + ("/" if trail else "")
    pattern += " " if space else ""
    try:
        rx = locks.glob_regex(pattern)
    except ValueError:
        return
    assert locks.literal_prefix(rx).startswith(locks.glob_prefix(pattern)), (pattern, rx)


def test_glob_prefix_examples() -> None:
    from orch.verify import locks

    assert locks.glob_prefix("src/billing/pricing.py") == "src/billing/pricing.py"
    assert locks.glob_prefix("tests/**/test_checkout*.py") == "tests"
    assert locks.glob_prefix("/AGENTS.md") == "AGENTS.md"
    assert locks.glob_prefix("docs/") == ""  # a folder named docs at any depth
    assert locks.glob_prefix("*.pem") == ""
    assert locks.glob_prefix("src/m1/locked_*.py") == "src/m1/locked_"


def test_a_glob_that_does_not_compile_says_what_is_wrong(proj: Path, orch: Orch) -> None:
    before = (proj / ".orch/locks.yaml").read_text()
    for pattern, message in [
        ("[", "'[' is not a valid glob: unterminated character class (the '[' at position 1 has no closing ']'"),
        ("src/[!a", "'src/[!a' is not a valid glob: unterminated character class (the '[' at position 5"),
        ("docs/a\\", "'docs/a\\' is not a valid glob: it ends with a lone '\\'"),
        ("#x", "'#x' is a comment in gitignore syntax"),
        ("!x", "'!x' is a negation in gitignore syntax"),
    ]:
        r = orch("lock", "add", pattern)
        assert r.returncode == 3, (pattern, r.output)
        assert r.stderr.startswith(f"orch: {message}"), r.stderr
        assert "Traceback" not in r.output and "cannot be empty" not in r.output
    assert (proj / ".orch/locks.yaml").read_text() == before
    # the same words when locks.yaml itself holds such a pattern
    (proj / ".orch/locks.yaml").write_text(before + "  - {id: BAD, kind: path, mode: hard, pattern: 'a['}\n")
    r = orch("verify", "T1")
    assert r.returncode == 3 and "'a[' is not a valid glob: unterminated character class" in r.stderr, r.output
    assert locks.glob_problem("  ") == "a lock pattern cannot be empty"
