"""What a task changed, from its base (``base_sha`` in its manifest) to its branch tip: the
``component`` and ``code`` levels of ``orch view`` (``orch.views.taskview``).

Git runs as plumbing only (``diff-tree``, ``cat-file``): no textconv, no external diff, no filter.
Top-level definitions come from ``ast`` for Python and from a conservative regex for a few other
languages (a definition that starts a line, at its first column; anything else is not claimed).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from orch.core import git, refs, state
from orch.core.context import Ctx
from orch.core.errors import OrchError
from orch.core.plan import ID_RE
from orch.core.text import printable
from orch.verify import locks as locks_mod
from orch.verify import regions

MAX_DIFF_LINES = 5000  # per task: a bigger diff is cut there (``truncated``)
MAX_DIFF_BYTES = 4 << 20  # and git is stopped after this much of its patch
MAX_BLOB = 1 << 20  # files larger than this are not read for definitions
ZERO = "0" * 40
MANIFESTS = frozenset(
    {
        "pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "Pipfile.lock", "poetry.lock", "uv.lock",
        "package.json", "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.toml", "Cargo.lock",
        "go.mod", "go.sum", "Gemfile", "Gemfile.lock", "pom.xml", "build.gradle", "build.gradle.kts",
        "composer.json", "composer.lock", "mix.exs", "environment.yml", "requirements.txt",
    }
)  # fmt: skip
_REQUIREMENTS = re.compile(r"requirements[\w.-]*\.(?:txt|in)")
_JS = [
    ("function", r"(?:export\s+(?:default\s+)?)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)"),
    ("class", r"(?:export\s+(?:default\s+)?)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)"),
    ("type", r"(?:export\s+)?(?:declare\s+)?(?:interface|type|enum)\s+([A-Za-z_$][\w$]*)"),
    ("const", r"(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*[:=]"),
]
_PATTERNS: dict[str, list[tuple[str, str]]] = {
    **dict.fromkeys((".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx"), _JS),
    ".go": [("func", r"func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)"), ("type", r"type\s+([A-Za-z_]\w*)")],
    ".rs": [
        ("item", r"(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?"
                 r"(?:fn|struct|enum|trait|mod|type)\s+([A-Za-z_]\w*)")
    ],
    ".rb": [("def", r"(?:def|class|module)\s+([A-Za-z_][\w.:]*[?!]?)")],
    **dict.fromkeys(
        (".java", ".kt", ".cs", ".scala"),
        [("class", r"(?:(?:public|internal|final|abstract|sealed|data|open)\s+)*"
                   r"(?:class|interface|enum|record|object)\s+([A-Za-z_]\w*)")],
    ),
    **dict.fromkeys((".sh", ".bash"), [("function", r"(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{")]),
}  # fmt: skip


def span(ctx: Ctx, task_id: str, st: state.Status) -> tuple[str, str] | None:
    """(base sha, tip sha) of the task's work, or None when it has no branch or base yet."""
    base = None
    if ID_RE.fullmatch(task_id):
        try:
            manifest = ctx.store.load(ctx.project.task_dir(task_id) / "manifest.yaml", "task_manifest")
            base = manifest.get("base_sha")
        except (OSError, OrchError):  # anyone's file: a view does not fail on it
            base = None
    base = base or st.get("base_sha")
    branch = st.get("branch") or (refs.branch_name(task_id) if ID_RE.fullmatch(task_id) else None)
    if not base or not branch:
        return None
    root = ctx.project.root
    tip = git.rev_parse(f"refs/heads/{branch}^{{commit}}", cwd=root)
    base_sha = git.rev_parse(f"{base}^{{commit}}", cwd=root) if re.fullmatch(r"[0-9a-f]{7,64}", str(base)) else None
    return (base_sha, tip) if base_sha and tip else None


def changes(ctx: Ctx, base: str, tip: str) -> list[dict[str, Any]]:
    """Each changed path: ``{path, status (A/D/M/T), old, new}`` (blob shas), in git's order."""
    r = git.run(["diff-tree", "-r", "-z", "--no-renames", "--raw", base, tip], cwd=ctx.project.root)
    fields = r.stdout.split("\0")
    out = []
    for head, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = head.split()
        if len(parts) < 5:
            continue
        out.append({"path": path, "status": parts[4][0], "old": parts[2], "new": parts[3]})
    return out


def component(ctx: Ctx, task_id: str, st: state.Status, pressure: list[dict[str, Any]]) -> dict[str, Any]:
    """Folders and modules touched, files added and deleted, top-level definitions added and removed,
    dependency manifests changed, and the locks the task presses on."""
    engaged = [
        {"lock": row["id"], "kind": row["kind"], "mode": row["mode"], "pressure": t["pressure"]}
        for row in pressure
        for t in row["tasks"]
        if t["id"] == task_id
    ]
    found = span(ctx, task_id, st)
    if found is None:
        return {"base": None, "tip": None, "changed": 0, "locks": engaged}
    base, tip = found
    changed = changes(ctx, base, tip)
    folders = sorted({str(PurePosixPath(c["path"]).parent) for c in changed})
    modules = sorted({m for c in changed if (m := _module(c["path"]))})
    readable = [c for c in changed if _kind_of(c["path"])]
    blobs = git.cat_blobs([s for c in readable for s in (c["old"], c["new"]) if s != ZERO], cwd=ctx.project.root)
    definitions = []
    for c in readable:
        before = _definitions(c["path"], blobs.get(c["old"]))
        after = _definitions(c["path"], blobs.get(c["new"]))
        if before is None or after is None:
            definitions.append({"path": c["path"], "added": [], "removed": [], "unreadable": True})
            continue
        added, removed = sorted(after - before), sorted(before - after)
        if added or removed:
            definitions.append({"path": c["path"], "added": added, "removed": removed})
    return {
        "base": base,
        "tip": tip,
        "changed": len(changed),
        "folders": folders,
        "modules": modules,
        "added": [c["path"] for c in changed if c["status"] == "A"],
        "deleted": [c["path"] for c in changed if c["status"] == "D"],
        "definitions": definitions,
        "manifests": [c["path"] for c in changed if _is_manifest(c["path"])],
        "locks": engaged,
    }


def _is_manifest(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in MANIFESTS or _REQUIREMENTS.fullmatch(name) is not None


def _module(path: str) -> str | None:
    """A Python file's dotted module (a package's ``__init__`` is the package); other source files that
    ``_PATTERNS`` reads: their path without the extension."""
    p = PurePosixPath(path)
    if p.suffix in (".py", ".pyi"):
        parts = list(p.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts) or None
    return str(p.with_suffix("")) if p.suffix in _PATTERNS else None


def _kind_of(path: str) -> str | None:
    suffix = PurePosixPath(path).suffix
    return "python" if suffix in (".py", ".pyi") else "regex" if suffix in _PATTERNS else None


def _definitions(path: str, blob: bytes | None) -> set[str] | None:
    """The top-level definitions of one version of a file (an empty set when the file is absent);
    None when it cannot be read for them (too large, not UTF-8, Python that does not parse)."""
    if blob is None:
        return set()
    if len(blob) > MAX_BLOB:
        return None
    try:
        source = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _kind_of(path) == "python":
        import ast

        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return None
        found = set()
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                found.add(f"class {node.name}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.add(f"def {node.name}")
        return found
    found = set()
    for kind, rx in _PATTERNS[PurePosixPath(path).suffix]:
        for m in re.finditer(rf"^{rx}", source, re.MULTILINE):
            found.add(f"{kind} {m.group(1)}")
    return found


# -- code -------------------------------------------------------------------------------------------


def code(ctx: Ctx, task_id: str, st: state.Status) -> dict[str, Any]:
    """The diff, file by file: each line with its old and new numbers, and the locks it falls under
    (region locks by the lines of their region on each side; path and test locks on the whole file)."""
    found = span(ctx, task_id, st)
    if found is None:
        return {"base": None, "tip": None, "files": [], "truncated": False}
    base, tip = found
    root = ctx.project.root
    changed = changes(ctx, base, tip)
    lockset = locks_mod.load(ctx.project)
    patch, cut = git.Stream(["diff-tree", "-r", "-p", "--no-renames", "--no-color", "--end-of-options", base, tip],
                            cwd=root).head(MAX_DIFF_BYTES)  # fmt: skip
    chunks = iter(re.split(r"^(?=diff --git )", patch, flags=re.MULTILINE)[1:])
    region_locks = lockset.of_kind("region")
    wanted = [s for c in changed if any(lk.file == c["path"] for lk in region_locks) for s in (c["old"], c["new"])]
    blobs = git.cat_blobs([s for s in wanted if s != ZERO], cwd=root)
    files = []
    budget = MAX_DIFF_LINES
    truncated = False
    for c in changed:
        # A type change (a link made a file) is two chunks of the patch: the deletion and the addition.
        chunk = next(chunks, "") + (next(chunks, "") if c["status"] == "T" else "")
        if cut and not chunk:  # the patch was cut before this file
            truncated = True
            break
        path = c["path"]
        path_locks = [
            lk.id for lk in lockset.of_kind("path", "test") if path.startswith(lk.prefix) and lk.matches(path)
        ]
        ranges = {
            side: _region_ranges(path, blobs.get(c[side]), [lk for lk in region_locks if lk.file == path])
            for side in ("old", "new")
        }
        lines, binary = _lines(chunk, ranges, budget)
        budget -= len(lines)
        if budget <= 0:
            truncated = True
        files.append(
            {
                "path": path,
                "status": c["status"],
                "locks": path_locks,
                "regions": sorted({lk for side in ranges.values() for lk in side}),
                "binary": binary,
                "lines": lines,
            }
        )
        if truncated:
            break
    return {"base": base, "tip": tip, "files": files, "truncated": truncated or cut}


def _region_ranges(path: str, blob: bytes | None, locks: list[locks_mod.Lock]) -> dict[str, tuple[int, int] | None]:
    """Each region lock's lines (first, last; 1-based) in one version of ``path``; None for a region
    the version does not hold, or that cannot be told (then every line of the file counts as in it)."""
    if not locks or blob is None:
        return {}
    source = blob.decode("utf-8", "replace")
    out: dict[str, tuple[int, int] | None] = {}
    for lk in locks:
        try:
            text = regions.region_text(source, lk.name or "", python=path.endswith((".py", ".pyi")))
        except regions.RegionError:
            out[lk.id] = (1, source.count("\n") + 1)
            continue
        at = source.find(text) if text else -1
        if text is None or at < 0:
            out[lk.id] = None
            continue
        first = source.count("\n", 0, at) + 1
        out[lk.id] = (first, first + text.rstrip("\n").count("\n"))
    return out


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def _lines(
    chunk: str, ranges: dict[str, dict[str, tuple[int, int] | None]], budget: int
) -> tuple[list[dict[str, Any]], bool]:
    out: list[dict[str, Any]] = []
    old = new = 0
    in_hunk = False
    binary = False
    for line in chunk.split("\n"):
        m = _HUNK.match(line)
        if m:
            old, new, in_hunk = int(m.group(1)), int(m.group(2)), True
            out.append({"op": "@", "old": None, "new": None, "text": printable(line), "locks": []})
            continue
        if not in_hunk:
            binary = binary or line.startswith("Binary files ")
            continue
        if not line or line[0] not in "+- ":
            continue  # '\ No newline at end of file', the chunk's last empty split
        op = line[0]
        o = old if op != "+" else None
        n = new if op != "-" else None
        held = {lk for lk, r in ranges.get("old", {}).items() if r and o is not None and r[0] <= o <= r[1]}
        held |= {lk for lk, r in ranges.get("new", {}).items() if r and n is not None and r[0] <= n <= r[1]}
        out.append({"op": op, "old": o, "new": n, "text": printable(line[1:]), "locks": sorted(held)})
        old += op != "+"
        new += op != "-"
        if len(out) >= budget:
            break
    return out, binary
