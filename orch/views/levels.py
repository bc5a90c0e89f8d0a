"""Levels: how closely a person wants to watch the work in each area of the repository.

``levels:`` in ``.orch/config.yaml`` maps gitignore-style globs to ``goal``, ``feature``,
``component`` or ``code`` (coarse to fine). A path's level is that of the most specific glob that
matches it: the one that names the most of a path literally (its characters other than the
wildcards ``*``, ``?``, ``[...]`` and the slashes), the one written last among equals. A task's
level is its ``level:`` field in the plan, else the finest level among the tracked files its scope
reaches, else ``feature``.

``orch level set`` appends to the config as ``orch plan add`` appends to the plan: every byte a
person wrote stays as it was (a glob already there has only its value changed, on its own line), and
the new text must read back with that one change before it is written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from orch.core import config as config_mod
from orch.core import git
from orch.core.context import Ctx
from orch.core.errors import InputError
from orch.core.plan import LEVELS, Task

DEFAULT = "feature"
FIELD_LEVEL = "the plan's level: field"


@dataclass(frozen=True)
class Rule:
    """One ``levels:`` entry, compiled."""

    glob: str
    level: str
    order: int  # its place in the file: the later wins a tie
    specificity: int
    rx: re.Pattern[str]

    def matches(self, path: str) -> bool:
        return self.rx.match(path) is not None


def rank(level: str) -> int:
    """0 for goal (coarsest) to 3 for code (finest)."""
    return LEVELS.index(level)


def specificity(glob: str) -> int:
    """How much of a path ``glob`` names literally: its characters but wildcards, ``[...]`` classes and
    slashes."""
    body = re.sub(r"\[(?:\\.|[^\]\\])*\]", "", glob.strip())
    return len(re.sub(r"\\(.)", r"\1", body).replace("*", "").replace("?", "").replace("/", ""))


@functools.lru_cache(maxsize=64)
def _compile(items: tuple[tuple[str, str], ...]) -> tuple[Rule, ...]:
    from orch.core.globs import glob_regex

    rules = []
    for order, (glob, level) in enumerate(items):
        if level not in LEVELS:
            raise ValueError(f"'{level}' is not a level (one of {', '.join(LEVELS)})")
        problem = config_mod.level_glob_problem(glob)
        if problem:
            raise ValueError(problem)
        rx = re.compile(glob_regex(glob, "level"), re.DOTALL)
        rules.append(Rule(glob, level, order, specificity(glob), rx))
    return tuple(rules)


def compile_levels(levels: dict[str, str] | tuple[tuple[str, str], ...]) -> tuple[Rule, ...]:
    """The rules of a ``levels:`` mapping; a bad glob or level raises ``InputError``."""
    items = tuple(levels.items()) if isinstance(levels, dict) else tuple(levels)
    try:
        return _compile(items)
    except ValueError as exc:
        raise InputError(f"levels: {exc}", hint=config_mod.LEVEL_HINT) from None


def rules(ctx: Ctx) -> tuple[Rule, ...]:
    """The project's rules (the working config: levels decide what a person sees, never a verdict); a
    bad glob is reported at its line of ``.orch/config.yaml`` (exit 3)."""
    items = ctx.working_config.levels
    for glob, level in items:
        try:
            _compile(((glob, level),))
        except ValueError as exc:
            raise InputError(
                f"levels: {exc}", where=config_mod.level_where(ctx.project, glob), hint=config_mod.LEVEL_HINT
            ) from None
    return _compile(items)


def rule_of_path(rules: tuple[Rule, ...], path: str) -> Rule | None:
    """The most specific rule matching ``path`` (a folder ends with ``/``), or None."""
    best: Rule | None = None
    for rule in rules:
        if rule.matches(path) and (best is None or rule.specificity >= best.specificity):
            best = rule
    return best


def level_of_path(levels: dict[str, str], path: str) -> str | None:
    """The level of ``path`` under ``levels`` (glob -> level, in the file's order): the most specific
    matching glob's, None when none matches. A folder is asked for as ``src/auth/``."""
    rule = rule_of_path(compile_levels(levels), path)
    return rule.level if rule else None


_listed: ContextVar[dict[tuple[str, str], list[str]] | None] = ContextVar("orch_levels_listed", default=None)


@contextlib.contextmanager
def list_once() -> Iterator[None]:
    """Within it, ``tracked_files`` lists each tree once (a page built from the levels, their overview
    and the topology asks three times)."""
    token = _listed.set({})
    try:
        yield
    finally:
        _listed.reset(token)


def tracked_files(ctx: Ctx, rev: str | None = None) -> list[str]:
    """The files tracked on ``rev`` (the base branch by default), as ``orch lock list`` reads them."""
    rev = rev or f"refs/heads/{ctx.config.base_branch}"
    held = _listed.get()
    key = (str(ctx.project.root), rev)
    if held is not None and key in held:
        return list(held[key])
    r = git.run(["ls-tree", "-r", "-z", "--name-only", rev], cwd=ctx.project.root, check=False)
    files = [f for f in r.stdout.split("\0") if f] if r.ok else []
    if held is not None:
        held[key] = list(files)
    return files


_WHERE: dict[tuple[str, int, int, int, str], str] = {}


def where_of(ctx: Ctx, rule: Rule) -> str:
    """``.orch/config.yaml:LINE`` of ``rule``'s glob (kept while the file stays as it was: a page of
    200 tasks asks for the same few globs 200 times)."""
    path = ctx.project.config_path
    try:
        st = path.stat()
    except OSError:
        return config_mod.level_where(ctx.project, rule.glob)
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino, rule.glob)
    got = _WHERE.get(key)
    if got is None:
        if len(_WHERE) > 256:
            _WHERE.clear()
        got = _WHERE[key] = config_mod.level_where(ctx.project, rule.glob)
    return got


def leveled_files(ctx: Ctx, paths: list[str] | None = None) -> list[tuple[str, Rule]]:
    """The tracked ``paths`` (the base branch's files when None) that a glob gives a level, with it: what
    ``task_level`` reads, worked out once for many tasks."""
    found = rules(ctx)
    if not found:
        return []
    out = []
    for path in tracked_files(ctx) if paths is None else paths:
        rule = rule_of_path(found, path)
        if rule is not None:
            out.append((path, rule))
    return out


def task_level(
    ctx: Ctx, task: Task, paths: list[str] | None = None, *, leveled: list[tuple[str, Rule]] | None = None
) -> tuple[str, str]:
    """``(level, why)`` of a plan task: its ``level:`` field, else the finest level among the tracked
    ``paths`` (the base branch's files when None) its scope reaches (every one without a scope), else
    ``feature``. ``leveled`` (``leveled_files``) saves matching every path again for each task."""
    if task.level:
        line = task.field_lines.get("level")
        return task.level, f"level: {task.level} in .orch/plan.md" + (f":{line}" if line else "")
    if not rules(ctx):
        return DEFAULT, "the default: .orch/config.yaml sets no levels"
    try:
        scope = re.compile(task.scope) if task.scope else None
    except re.error:
        scope = None
    finest: tuple[Rule, str] | None = None
    for path, rule in leveled_files(ctx, paths) if leveled is None else leveled:
        if scope is not None and not scope.search(path):
            continue
        if finest is None or rank(rule.level) > rank(finest[0].level):
            finest = (rule, path)
            if rule.level == LEVELS[-1]:
                break
    if finest is None:
        return DEFAULT, "the default: no level is set for a file its scope reaches"
    rule, path = finest
    return rule.level, f"{path} is at {rule.level} ({rule.glob}: {where_of(ctx, rule)})"


def list_levels(ctx: Ctx) -> list[dict[str, Any]]:
    """Each ``levels:`` glob with its level, its line and how many tracked files it decides."""
    found = rules(ctx)
    counts = [0] * len(found)
    if found:
        for path in tracked_files(ctx):
            rule = rule_of_path(found, path)
            if rule is not None:
                counts[rule.order] += 1
    return [{"glob": r.glob, "level": r.level, "where": where_of(ctx, r), "files": counts[r.order]} for r in found]


# -- orch level set ------------------------------------------------------------------------------------

_TOP_KEY = re.compile(r"^['\"]?levels['\"]?[ \t]*:[ \t]*(?P<rest>.*)$")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*/[A-Za-z0-9_./-]*|[A-Za-z0-9_][A-Za-z0-9_-]*\.[A-Za-z0-9_.-]+")


def check_level(level: str) -> str:
    if level in LEVELS:
        return level
    import difflib

    close = difflib.get_close_matches(level.lower(), LEVELS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise InputError(f"unknown level '{level}'", hint=f"{hint}a level is one of {', '.join(LEVELS)} (coarse to fine)")


def check_glob(glob: str) -> None:
    from orch.core.globs import glob_regex

    problem = config_mod.level_glob_problem(glob)
    if problem is None:
        try:
            glob_regex(glob, "level")
        except ValueError as exc:
            problem = str(exc)
    if problem:
        raise InputError(problem, hint="a level's path is a gitignore-style glob, e.g. src/auth/ or '*.sql'")


def set_level(ctx: Ctx, path: str, level: str) -> dict[str, Any]:
    """Give ``path`` (a glob) ``level`` in ``.orch/config.yaml``: a new line under ``levels:`` (the
    block is started at the end of the file when there is none), or the value changed on the glob's
    own line. Returns the glob, its level, the one it had and the line it is on."""
    check_level(level)
    check_glob(path)
    project = ctx.project
    cfg = project.config_path
    where = project.rel(cfg)
    with ctx.store.lock(ctx.store.lock_name(cfg)):
        try:
            text = cfg.open(encoding="utf-8", newline="").read()
        except UnicodeDecodeError:
            raise InputError(f"{where}: not UTF-8 text", hint="fix the file's encoding by hand") from None
        before = config_mod.load(project, ctx.store)  # a broken config is reported as it is
        old = dict(before.levels).get(path)
        new_text = _edited(text, path, level, where)
        data = ctx.store.loads(new_text, "config", where=where)
        wanted = {**dict(before.levels), path: level}
        if dict(config_mod.from_data(project, data).levels) != wanted:
            raise InputError(
                f"setting {path} to {level} would not read back as that one change",
                hint=f"edit the levels: block of {where} by hand; nothing was written",
            )
        ctx.store.write_text(cfg, new_text)
    ctx.log("-", "LEVEL_SET", f"{path} {level}" + (f" (was {old})" if old else ""))
    return {"glob": path, "level": level, "previous": old, "where": config_mod.level_where(project, path)}


def _key(glob: str) -> str:
    return glob if _PLAIN_KEY.fullmatch(glob) else json.dumps(glob, ensure_ascii=False)


def _edited(text: str, glob: str, level: str, where: str) -> str:
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if _TOP_KEY.match(ln.rstrip("\r\n"))), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else nl
        return f"{text}{sep}levels:{nl}  {_key(glob)}: {level}{nl}"
    rest = _TOP_KEY.match(lines[start].rstrip("\r\n"))["rest"]  # type: ignore[index]
    if rest.strip() and not rest.lstrip().startswith("#"):
        raise InputError(
            f"{where}:{start + 1}: levels: is not written as a block (one 'GLOB: LEVEL' per line)",
            hint="rewrite it as a block by hand, then run orch level set again; nothing was written",
        )
    line = config_mod.level_where_in(lines, glob, start)
    if line is not None:
        old = lines[line]
        m = re.match(r"^(?P<head>.*?:[ \t]*)(?P<value>[A-Za-z'\"]+)(?P<tail>[ \t]*(?:#.*)?\r?\n?)$", old)
        if m is None:
            raise InputError(
                f"{where}:{line + 1}: the level of {glob} is not written as one plain word",
                hint="edit that line by hand; nothing was written",
            )
        lines[line] = m["head"] + level + m["tail"]
        return "".join(lines)
    last = start  # the block's last entry: its indented lines
    indent = "  "
    for i in range(start + 1, len(lines)):
        body = lines[i].rstrip("\r\n")
        if body and not body[0].isspace() and not body.startswith("#"):
            break
        if body.strip() and not body.lstrip().startswith("#"):
            if last == start:
                indent = body[: len(body) - len(body.lstrip())]
            last = i
    if not lines[last].endswith("\n"):
        lines[last] += nl
    lines.insert(last + 1, f"{indent}{_key(glob)}: {level}{nl}")
    return "".join(lines)
