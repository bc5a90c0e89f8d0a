"""Scope regexes: whether one compiles, and stays shallow enough for Python's ``re`` (which recurses
once per nested group). Part of reading plan.md (``orch.core.plan``)."""

from __future__ import annotations

import re

MAX_SCOPE_DEPTH = 100  # nested groups in a scope regex; Python's re recurses once per level


def scope_problem(scope: str) -> str | None:
    """What is wrong with a scope regex, or None if it compiles (and stays within MAX_SCOPE_DEPTH)."""
    shown = scope if len(scope) <= 60 else scope[:40] + f"... ({len(scope)} characters)"
    depth = _group_depth(scope)
    if depth > MAX_SCOPE_DEPTH:
        return (
            f"scope '{shown}' is too deeply nested: {depth} levels of groups, at most {MAX_SCOPE_DEPTH} "
            "(write the alternatives side by side: ^(a/|b/|c/))"
        )
    try:
        re.compile(scope)
    except re.error as exc:
        return f"invalid scope regex '{shown}': {exc.msg} at position {exc.pos}"
    except (OverflowError, RecursionError) as exc:
        return f"invalid scope regex '{shown}': {exc}"
    return None


def _group_depth(pattern: str) -> int:
    """How deeply the groups of a regex nest (escapes and character classes read past)."""
    depth = deepest = 0
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a class: a ']' first (after an optional '^') is literal
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth = max(depth - 1, 0)
        i += 1
    return deepest
