"""The programs git starts by a name from its config, and orch's baseline of those a person set up.

For every git orch runs, ``git.py`` switches off what one option can: hooks, signing, signature
checks, fsmonitor, the external diff, submodule recursion and every network transport (a planted
promisor remote would otherwise fetch through any command). What no option can switch off are the
programs git picks by a name that attributes give (in ``.gitattributes``, ``info/attributes`` or
``core.attributesFile``): clean/smudge/process filters, merge drivers, diff drivers (textconv,
command); and hooks defined in config (``hook.<name>.command``, git >= 2.54). An attribute that
names a driver no config defines runs nothing, so the config is what decides.

``orch init`` records the programs the config names then (the baseline: a JSON blob that
``refs/orch-git-baseline`` points at; ``orch doctor --accept-git-config`` records it again). Before
a git command that could start one of them, orch lists the config as that command would read it (in
its folder, includes followed, a worktree's own config and orch's ``-c`` options included) and
refuses, naming each entry, when it names a program the baseline does not hold.

Nothing here runs git: ``git.py`` does, and calls this module on every git it starts, so it imports
nothing at load.
"""

from __future__ import annotations

import os

from orch.core.errors import EnvError

TYPE_CHECKING = False  # typing costs the git hooks milliseconds; mypy reads this as typing's
if TYPE_CHECKING:
    from collections.abc import Sequence

BASELINE_REF = "refs/orch-git-baseline"
ACCEPT = "orch doctor --accept-git-config"

FILTER, DRIVER, HOOK = "filter", "driver", "hook"
NONE: frozenset[str] = frozenset()
WORK_TREE = frozenset({FILTER, HOOK})  # hashes or writes work tree files: filters (and hooks)
ANY = frozenset({FILTER, DRIVER, HOOK})  # merges, diffs or checks out: every kind

# Global options before the subcommand that take a separate value.
_VALUED = frozenset({"-c", "-C", "--git-dir", "--work-tree", "--namespace", "--config-env"})

# Subcommands that start none of those programs (the options that would are in ``at_risk``).
_QUIET = frozenset(
    {
        "rev-parse", "update-ref", "symbolic-ref", "for-each-ref", "show-ref", "merge-base", "rev-list",
        "config", "check-ref-format", "check-ignore", "check-attr", "write-tree", "commit-tree", "mktree",
        "mktag", "ls-tree", "cat-file", "diff-tree", "diff-index", "clean", "branch", "count-objects",
        "pack-refs", "reflog", "var", "version", "init", "prune", "gc", "name-rev", "describe", "fsck",
        "hash-object", "ls-files", "read-tree", "update-index", "worktree",
    }
)  # fmt: skip
# Subcommands that read or write work tree files but merge and diff nothing: filters only.
_FILES = frozenset({"status", "add", "commit", "reset", "restore", "rm", "mv", "checkout-index", "diff-files"})
# update-index options that only set flags on index entries (no file is read).
_MARKS = frozenset({"--skip-worktree", "--no-skip-worktree", "--assume-unchanged", "--no-assume-unchanged"})


def split(args: Sequence[str]) -> tuple[list[str], str, list[str]]:
    """(global options, subcommand, its arguments) of a git argv without the leading ``git``."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in _VALUED else 1
    if i >= len(args):
        return list(args), "", []
    return list(args[:i]), args[i], list(args[i + 1 :])


def _short(rest: list[str], letter: str) -> bool:
    """A short option ``-<letter>`` given alone or in a cluster (``-zm``), before any ``--``."""
    for a in rest:
        if a == "--":
            return False
        if a.startswith("-") and not a.startswith("--") and letter in a[1:]:
            return True
    return False


def at_risk(sub: str, rest: list[str]) -> frozenset[str]:
    """The kinds of program ``git SUB REST`` could start by a name in config (empty: none)."""
    if not sub:  # only global options (--version): no command
        return NONE
    if sub == "worktree":
        action = rest[0] if rest else ""
        if action == "add" and "--no-checkout" not in rest:
            return WORK_TREE
        if action == "remove" and not ({"--force", "-f"} & set(rest)):
            return WORK_TREE  # it runs git status to see whether the tree is clean
        return NONE
    if sub in ("cat-file", "diff-tree"):
        return ANY if {"--textconv", "--filters", "--ext-diff"} & set(rest) else NONE
    if sub == "diff-index":
        return NONE if "--cached" in rest else WORK_TREE
    if sub == "hash-object":
        if "--no-filters" in rest or ("--stdin" in rest and not any(a.startswith("--path") for a in rest)):
            return NONE
        return WORK_TREE
    if sub == "ls-files":
        return WORK_TREE if "--modified" in rest or _short(rest, "m") else NONE
    if sub == "read-tree":
        return WORK_TREE if _short(rest, "u") else NONE
    if sub == "update-index":
        options = {a for a in rest if a.startswith("-") and a != "--"}
        return NONE if options & _MARKS and options <= _MARKS | {"-q"} else WORK_TREE
    if sub in _QUIET:
        return NONE
    return WORK_TREE if sub in _FILES else ANY


def kind_of(key: str) -> str | None:
    """Which kind of program a config key (as ``git config --list`` spells it) names, if any."""
    section, _, rest = key.partition(".")
    sub, _, name = rest.rpartition(".")
    if not sub:
        return None
    if section == "filter" and name in ("clean", "smudge", "process"):
        return FILTER
    if (section == "merge" and name == "driver") or (section == "diff" and name in ("textconv", "command")):
        return DRIVER
    if section == "hook" and name == "command":
        return HOOK
    return None


def programs(listing: str) -> dict[str, tuple[str, str]]:
    """Each program-naming key of ``git config --list --show-origin -z`` output, with the value git
    uses (the last one) and where it was set. A filter blanked (orch's own ``-c filter.X.clean=``)
    runs nothing and is left out."""
    found: dict[str, tuple[str, str]] = {}
    parts = listing.split("\0")
    for origin, entry in zip(parts[0::2], parts[1::2], strict=False):
        key, _, value = entry.partition("\n")
        kind = kind_of(key)
        if kind is None:
            continue
        found.pop(key, None)
        if value or kind != FILTER:
            found[key] = (value, origin)
    return found


def dump_baseline(progs: dict[str, str]) -> str:
    import json

    return json.dumps({"version": 1, "programs": dict(sorted(progs.items()))}, indent=2) + "\n"


def load_baseline(text: str) -> dict[str, str]:
    """The baseline's programs; none when it is missing or unreadable (so everything is refused)."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    progs = data.get("programs") if isinstance(data, dict) else None
    if not isinstance(progs, dict):
        return {}
    return {k: v for k, v in progs.items() if isinstance(k, str) and isinstance(v, str)}


class Unaccepted:
    """A program-naming config entry the baseline does not hold."""

    __slots__ = ("key", "value", "origin", "cwd")

    def __init__(self, key: str, value: str, origin: str, cwd: str) -> None:
        self.key = key
        self.value = value
        self.origin = origin
        self.cwd = cwd

    @property
    def file(self) -> str | None:
        """The config file that sets it (absolute), if a file does."""
        if not self.origin.startswith("file:"):
            return None
        return os.path.normpath(os.path.join(self.cwd, self.origin[len("file:") :]))

    def where(self) -> str:
        return f"set in {self.file}" if self.file else self.origin.rstrip(":")

    def shown(self, key: bool = True) -> str:
        value = repr(self.value if len(self.value) <= 120 else self.value[:117] + "...")
        return f"{self.key + '=' if key else ''}{value} ({self.where()})"

    def removal(self) -> str:
        import shlex

        if self.file is None:
            return f"unset {self.key} where it is set ({self.origin.rstrip(':')})"
        return f"git config --file {shlex.quote(self.file)} --unset-all {shlex.quote(self.key)}"


def unaccepted(listing: str, baseline: dict[str, str], kinds: frozenset[str], cwd: str) -> list[Unaccepted]:
    """The entries of ``listing`` of these kinds that name a program the baseline does not hold."""
    return [
        Unaccepted(key, value, origin, cwd)
        for key, (value, origin) in programs(listing).items()
        if kind_of(key) in kinds and baseline.get(key) != value
    ]


class UnknownProgram(EnvError):
    """git config names a program no person accepted (planted by an agent, or set since orch init)."""

    def __init__(self, found: list[Unaccepted], command: str, *, orch: bool = False) -> None:
        shown = "; ".join(u.shown() for u in found)
        done = f"orch {command} changed nothing" if orch else f"orch did not run `git {command}`"
        super().__init__(
            f"git config names a program orch has not accepted: {shown}; {done}",
            hint=f"if you, a person, set it up: {ACCEPT}; if not (an agent may have planted it), remove it: "
            + " && ".join(dict.fromkeys(u.removal() for u in found)),
        )
        self.found = found
