"""check_changes against a plain per-path, per-rule reference, on generated change sets.

check_changes works rule by rule over sorted paths (bisections by literal prefixes, fixed-width
mode slices); the reference below walks every path through every rule, as the rules read. They must
agree on every violation and its order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import commit_file, git
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core import git as orch_git
from orch.core.errors import GitError
from orch.verify import changeset, locks, rules

SEGMENTS = [
    "src",
    "a",
    "b",
    "m1",
    ".orch",
    "locked",
    "x.py",
    "test_x.py",
    "AGENTS.md",
    ".gitmodules",
    ".gitattributes",
    "d e",
    "é",
    "a\nb",
    "a\rb",
    ".orchard",
    "srcx",
    "tests",
]
PATTERNS = [
    "src/**",
    "src/a/*.py",
    "*.py",
    "/AGENTS.md",
    "locked/",
    "a/b",
    "tests/**/test_*.py",
    "src/[ab]/x.py",
    "d e/*",
    "é/**",
    "src/m1/test_*.py",
    "/src",
    "b",
]
SCOPES = [None, "^src/", "^src/a/", "src", "^(src|a)/", r"\.py$", r"^src/a/x\.py$", "^.orch/", "^src/a", "^"]
ZERO = "0" * 40


def reference(changes: list[changeset.Change], lockset: locks.LockSet, scope: str | None, agent: bool) -> list[tuple]:
    found: list[tuple] = []
    links: list[tuple] = []
    for ch in changes:
        path = ch.path
        if agent:
            if path.startswith(".orch/") or path == ".orch":
                found.append((path, "orch-state", None))
                continue
            if scope and re.search(scope, path) is None:
                found.append((path, "scope", None))
            if "160000" in (ch.old_mode, ch.new_mode) and not rules.names_explicitly(scope, path):
                found.append((path, "submodule", None))
            base = path.rsplit("/", 1)[-1]
            if base in (".gitmodules", ".gitattributes") and not rules.names_explicitly(scope, path):
                found.append((path, base.lstrip("."), None))
            if ch.new_mode == "120000":
                links.append((path, "symlink-escape", None))  # no blob to read: an empty target
        for lk in lockset.for_agents() if agent else lockset.locks:
            if lk.kind in ("path", "test") and lk.rx_src and re.match(lk.rx_src, path, re.DOTALL):
                if lk.kind == "test":
                    if ch.status != "A":
                        found.append((path, "test-lock", lk.id))
                else:
                    found.append((path, "path-lock", lk.id))
    return found + links


paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join)
MODES = ["100644", "100755", "120000", "160000"]


@st.composite
def change_sets(draw: st.DrawFn) -> list[changeset.Change]:
    out = []
    for path in draw(st.lists(paths, unique=True, max_size=30)):
        status = draw(st.sampled_from("ADMT"))
        old = "000000" if status == "A" else draw(st.sampled_from(MODES))
        new = "000000" if status == "D" else (old if status == "M" else draw(st.sampled_from(MODES)))
        out.append(
            changeset.Change(
                old, new, ZERO if status == "A" else "1" * 40, ZERO if status == "D" else "2" * 40, status, path
            )
        )
    return out


@st.composite
def locksets(draw: st.DrawFn) -> locks.LockSet:
    chosen = draw(st.lists(st.sampled_from(PATTERNS), unique=True, max_size=8))
    made = [
        locks.Lock(
            {"id": f"L{i}", "kind": draw(st.sampled_from(["path", "test"])), "mode": "hard", "pattern": p},
            rx=locks.glob_regex(p),
        )
        for i, p in enumerate(chosen)
    ]
    return locks.LockSet(made, agents_md_lock=draw(st.booleans()))


def raw(changes: list[changeset.Change]) -> str:
    return "".join(f":{c.old_mode} {c.new_mode} {c.old_sha} {c.new_sha} {c.status}\0{c.path}\0" for c in changes)


def pieces(text: str, cuts: list[int]) -> list[str]:
    """``text`` cut after some of its NULs, as ``git.Stream`` hands it over."""
    ends = [i + 1 for i, c in enumerate(text) if c == "\0"]
    chosen = sorted({ends[c % len(ends)] for c in cuts} | {len(text)}) if ends else []
    return [text[a:b] for a, b in zip([0, *chosen], chosen, strict=False)]


@settings(max_examples=300, deadline=None)
@given(
    change_sets(),
    locksets(),
    st.sampled_from(SCOPES),
    st.booleans(),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_check_changes_agrees_with_the_plain_reference(
    changes: list[changeset.Change],
    lockset: locks.LockSet,
    scope: str | None,
    agent: bool,
    in_git_order: bool,
    cuts: list[int],
) -> None:
    if in_git_order:
        changes = sorted(changes, key=lambda c: c.path)
    want = reference(changes, lockset, scope, agent)
    for given_as in (changes, changeset.parse_raw(raw(changes))):  # objects, and git's raw text
        got = rules.check_changes(given_as, lockset=lockset, scope=scope, agent=agent, read=lambda shas: {})
        assert [(v.path, v.rule, v.lock) for v in got] == want
    checker = rules.Checker(lockset=lockset, scope=scope, agent=agent)  # in batches, as verify_task reads them
    batches = list(changeset.parse_stream(pieces(raw(changes), cuts)))
    for batch in batches:
        checker.scan(batch)
    assert [p for b in batches for p in b.paths] == [c.path for c in changes]
    assert [(v.path, v.rule, v.lock) for v in checker.finish(lambda shas: {})] == want


def test_parse_raw_reads_modes_statuses_and_odd_paths() -> None:
    text = (
        f":000000 120000 {ZERO} {'a' * 40} A\0link\0"
        f":100644 100644 {'b' * 40} {'c' * 40} M\0dir/with\nnewline\rand cr\0"
        f":160000 000000 {'d' * 40} {ZERO} D\0sub\0"
    )
    changes = changeset.parse_raw(text)
    assert changes.paths == ["link", "dir/with\nnewline\rand cr", "sub"]
    assert changes.special() == {0, 2}
    ch = changes[1]
    assert (ch.old_mode, ch.new_mode, ch.status) == ("100644", "100644", "M")
    assert (ch.old_sha, ch.new_sha) == ("b" * 40, "c" * 40)


def test_special_modes_are_found_when_metas_differ_in_width() -> None:
    # sha-256 next to sha-1 never comes from one git call; the slow path must still be exact
    text = f":100644 100644 {'b' * 64} {'c' * 64} M\0a\0:100644 120000 {'d' * 40} {'e' * 40} T\0b\0"
    assert changeset.parse_raw(text).special() == {1}


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("^src/", (True, "src/", True)),
        ("^src/auth/.*", (True, "src/auth/", False)),
        ("src/", (False, "src/", True)),
        ("^(src|lib)/", (True, "", False)),
        ("(?i)^src/", (False, "", False)),
        (r"^src\.x/$", (True, "src.x/", False)),
        ("^", (True, "", True)),
        ("(", (False, "", False)),
    ],
)
def test_literal_head(regex: str, expected: tuple[bool, str, bool]) -> None:
    assert locks.literal_head(regex) == expected


def test_lock_prefixes_hold_every_match() -> None:
    assert locks.glob_regex("/AGENTS.md") == locks.AGENTS_MD_RX
    assert locks.literal_prefix(locks.AGENTS_MD_RX) == locks.AGENTS_MD_PREFIX
    for pattern, prefix in [
        ("src/m4/locked_*.py", "src/m4/locked_"),
        ("*.pem", ""),
        ("docs/", ""),
        ("tests/**/test_x*.py", "tests"),
        ("a\\*b/c", "a*b/c"),
    ]:
        assert locks.literal_prefix(locks.glob_regex(pattern)) == prefix


def test_git_stream_hands_over_whole_records_and_reports_failure(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    for n in range(700):  # over 64 KiB of output: more than one read of the pipe, so several pieces
        (repo / f"d{n % 3}").mkdir(exist_ok=True)
        (repo / f"d{n % 3}/file {n}.txt").write_text(f"{n}\n")
    git(repo, "add", "-A")
    last = commit_file(repo, "last.txt", "last\n")
    args = [*changeset.DIFF, first, last, "--"]
    whole = changeset.parse_raw(orch_git.run(args, cwd=repo).stdout)
    got = list(orch_git.Stream(args, cwd=repo, batch=100))
    assert len(got) >= 2 and all(piece.endswith("\0") for piece in got)
    assert len(whole) == 701
    batches = list(changeset.parse_stream(got))
    assert [p for b in batches for p in b.paths] == whole.paths == sorted(whole.paths)
    assert [b[i].new_sha for b in batches for i in range(len(b))] == [whole[i].new_sha for i in range(len(whole))]
    with pytest.raises(GitError, match="bad object|not a tree|invalid"):
        list(changeset.task_changes(repo, "0" * 40, last))


def test_a_stream_stopped_early_leaves_no_git_and_no_open_files(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    for n in range(3000):  # several MiB of raw diff: more than git can write ahead into the pipe
        (repo / f"d{n % 7}").mkdir(exist_ok=True)
        (repo / f"d{n % 7}/a-rather-long-file-name-to-fill-the-pipe-{n}.txt").write_text(f"{n}\n")
    git(repo, "add", "-A")
    last = commit_file(repo, "last.txt", "last\n")
    args = [*changeset.DIFF, first, last, "--"]
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None

    never_read = orch_git.Stream(args, cwd=repo, batch=100)
    assert never_read._proc.poll() is None  # started at once, before anyone reads
    never_read.cancel()
    stopped = orch_git.Stream(args, cwd=repo, batch=100)
    for _ in stopped:
        break  # the caller stops after one piece
    stopped_iter = iter(orch_git.Stream(args, cwd=repo, batch=100))
    next(stopped_iter)
    stopped_iter.close()  # what happens when a for loop over the stream raises
    for s in (never_read, stopped):
        assert s._proc.returncode is not None  # reaped: no zombie, no git left writing
    if fds is not None:
        assert set(os.listdir("/proc/self/fd")) == fds  # the pipes and stderr files are closed


def test_parse_stream_refuses_output_that_stops_inside_a_record() -> None:
    with pytest.raises(GitError, match="ends inside a record"):
        list(changeset.parse_stream([f":100644 100644 {'a' * 40} {'b' * 40} M\0"]))


@pytest.mark.parametrize(
    ("scope", "path", "expected"),
    [
        (r"^(\.gitattributes|vendor/lib)$", "vendor/lib", True),
        (r"^(\.gitattributes|vendor/lib)$", ".gitattributes", True),
        (r"^src/|^vendor/lib$", "vendor/lib", True),
        (r"\Avendor/lib\Z", "vendor/lib", True),
        (r"^(src/auth/|vendor/lib$)", "vendor/lib", True),
        (r"^[.]gitmodules$", ".gitmodules", True),
        (r"^src/|\.md$", ".md", False),  # ends with .md: names every Markdown file, not this one
        (r"^vendor/lib", "vendor/lib", False),  # vendor/libX too
        (r"vendor/lib$", "vendor/lib", False),  # x/vendor/lib too
        (r"^vendor/lib$|^vendor/.*$", "vendor/lib", True),
        (r"^vendor/li.$", "vendor/lib", False),
        (r"(?i)^vendor/lib$", "vendor/lib", False),
        (r"^vendor/lib$", "vendor/lib2", False),
        (r"^src/(", "src/x", False),
    ],
)
def test_names_explicitly_needs_a_whole_anchored_alternative(scope: str, path: str, expected: bool) -> None:
    assert rules.names_explicitly(scope, path) is expected
