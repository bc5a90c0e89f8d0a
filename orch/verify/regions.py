"""Code regions: the text a region lock (``path::Name``) protects, and its hash.

A region is the lines between comment markers ``orch-lock: begin Name`` and ``orch-lock: end Name``
(any language) or, in a Python file, the function or class with that qualified name, found with
``ast`` (imported on first use). The rules read a region at the base and at the commit when a
region lock's file changes; ``orch lock add`` records its hash. Its own module: how a region is
found is a concern of its own, apart from what a lock is and how locks.yaml loads. No ``typing``
at import (the hooks import it).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs git hooks ~2 ms to import; mypy reads this as typing's
if TYPE_CHECKING:
    from typing import Any

_BEGIN = "orch-lock: begin"
_END = "orch-lock: end"


class RegionError(Exception):
    """The file cannot be read for regions (a Python file that does not parse)."""


def region_text(source: str, name: str, *, python: bool) -> str | None:
    """The text of region ``name``: comment markers first, then (Python) a function or class.

    None when the file has no such region. Raises ``RegionError`` when the region cannot be told
    for sure, so a caller treats it as a change: a Python file that does not parse, a marker given
    more than once (a decoy copy could stand in for the real region), or a name bound more than once
    in its scope (Python uses the last binding, so a second ``def`` would silently replace the first).
    """
    lines = source.splitlines(keepends=True)
    begin = re.compile(rf"{re.escape(_BEGIN)}\s+{re.escape(name)}(?:\s|$)")
    end = re.compile(rf"{re.escape(_END)}\s+{re.escape(name)}(?:\s|$)")
    begins = [i for i, line in enumerate(lines) if begin.search(line)]
    ends = [i for i, line in enumerate(lines) if end.search(line)]
    if len(begins) > 1 or len(ends) > 1:
        raise RegionError(f"'{name}' has {len(begins)} begin and {len(ends)} end markers; one of each is expected")
    if begins:
        i = begins[0]
        if ends and ends[0] < i:
            raise RegionError(f"the end marker of '{name}' comes before its begin marker")
        j = ends[0] if ends else len(lines) - 1  # an unterminated region runs to the end of the file
        return "".join(lines[i : j + 1])
    if ends:
        raise RegionError(f"'{name}' has an end marker but no begin marker")
    if not python:
        return None
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise RegionError(f"cannot parse it as Python: {exc}") from None
    parts = name.split(".")
    if len(parts) > 1:
        _refuse_attribute_rebinding(tree, parts)
    node = _find(tree.body, parts)
    if node is None:
        return None
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    last = node.end_lineno or node.lineno
    return "".join(lines[first - 1 : last])


def _bindings(body: list[Any], name: str) -> list[Any]:
    """The statements of ``body`` that bind ``name`` (def, class, assignment, import)."""
    import ast

    found: list[Any] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if name in names:
                found.append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                found.append(node)
    return found


def _find(body: list[Any], parts: list[str]) -> Any:
    import ast

    bound = _bindings(body, parts[0])
    if len(bound) > 1:
        lines = ", ".join(str(n.lineno) for n in bound)
        raise RegionError(f"'{parts[0]}' is bound {len(bound)} times (lines {lines}); Python keeps the last one")
    if not bound:
        return None
    node = bound[0]
    if len(parts) == 1:
        return node
    return _find(node.body, parts[1:]) if isinstance(node, ast.ClassDef) else None


def _refuse_attribute_rebinding(tree: Any, parts: list[str]) -> None:
    """``Cart.total = other`` or ``setattr(Cart, "total", ...)`` anywhere replaces a locked method."""
    import ast

    dotted = ".".join(parts)
    node: Any
    for node in ast.walk(tree):
        targets: list[Any] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and _dotted(target) == dotted:
                raise RegionError(f"'{dotted}' is reassigned at line {node.lineno}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and len(node.args) >= 2
            and _dotted(node.args[0]) == ".".join(parts[:-1])
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == parts[-1]
        ):
            raise RegionError(f"'{dotted}' is changed with {node.func.id} at line {node.lineno}")


def _dotted(node: Any) -> str | None:
    import ast

    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def region_hash(text: str | None) -> str | None:
    import hashlib

    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
