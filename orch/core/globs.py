"""gitignore-style globs: the paths of locks (``.orch/locks.yaml``) and of levels (``.orch/config.yaml``).

``glob_regex`` compiles one with pathspec (imported on first use: git hooks read compiled locks from
a cache and never pay for it); ``syntax_problem`` says, without pathspec, what is wrong with a glob
whose mistake can be seen in its text (``orch status`` reads the config and stays free of pathspec).
"""

from __future__ import annotations

import re


def glob_regex(pattern: str, what: str = "lock") -> str:
    """A regex (for ``re.match``) equivalent to one gitignore-style pattern."""
    try:  # pathspec >= 0.13 names it GitIgnoreSpecPattern; older releases GitWildMatchPattern
        from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern as _Pattern
    except ImportError:  # pragma: no cover - depends on the pathspec release
        from pathspec.patterns.gitwildmatch import GitWildMatchPattern as _Pattern
    try:
        regex, include = _Pattern.pattern_to_regex(pattern)
    except ValueError:  # pathspec refuses some patterns outright (a trailing lone backslash)
        regex, include = None, None
    if regex is None or not include:
        raise ValueError(glob_problem(pattern, what))
    # Named groups would clash once patterns are combined; '$' would accept a trailing newline.
    return re.sub(r"\(\?P<[A-Za-z_0-9]+>", "(?:", regex).replace("|$)", "|\\Z)")


def glob_problem(pattern: str, what: str = "lock") -> str:
    """Why ``pattern`` is no usable glob (pathspec only says that it compiled to nothing)."""
    return syntax_problem(pattern, what) or f"'{pattern}' is not a valid glob: it matches no path"


def syntax_problem(pattern: str, what: str = "lock") -> str | None:
    """What is wrong with ``pattern`` as a glob that its text shows, or None."""
    body = pattern.rstrip(" ")  # gitignore drops trailing spaces
    if not body.strip():
        return f"a {what} pattern cannot be empty"
    if body[0] in "#!":
        kind = "a comment" if body[0] == "#" else "a negation"
        literal = f"write '\\{body[0]}' for a literal '{body[0]}'"
        return f"'{pattern}' is {kind} in gitignore syntax, not a {what} ({literal})"
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 == len(body):
            return f"'{pattern}' is not a valid glob: it ends with a lone '\\' (write '\\\\' for a literal one)"
        if body[i] == "[":  # git's wildmatch: '!' or '^' negates, a ']' right after them is a member
            j = i + 1 + (body[i + 1 : i + 2] in ("!", "^"))
            j += body[j : j + 1] == "]"
            while j < len(body) and body[j] != "]":
                j += 2 if body[j] == "\\" else 1
            if j >= len(body):
                return (
                    f"'{pattern}' is not a valid glob: unterminated character class (the '[' at position {i + 1} "
                    "has no closing ']'; write '\\[' for a literal '[')"
                )
            i = j
        i += 2 if body[i] == "\\" else 1
    return None
