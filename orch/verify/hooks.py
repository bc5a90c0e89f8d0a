"""Early warnings: the git ``pre-commit`` shim and the agents' hooks (Claude Code and Codex
``PreToolUse``, Gemini CLI ``BeforeTool``).

The git shim lives in the common hooks folder, so every worktree (the main checkout and each task's)
runs it. A hook that was there before is kept as ``<hook>.legacy`` and still runs first;
``uninstall`` puts it back. With ``core.hooksPath`` set, git would never read that folder, so
``install`` refuses and says what to do instead.

Hooks only warn early: an agent can commit with ``--no-verify`` or edit its hook settings.
``orch verify`` judges the exact commit whatever the hooks said.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from orch.core import git
from orch.core.errors import InputError
from orch.core.repo import Project
from orch.core.store import atomic_write

HOOKS = ("pre-commit",)
MARKER = "# orch-hook: managed by git-orch"
CLAUDE_SETTINGS = ".claude/settings.json"
CODEX_HOOKS = ".codex/hooks.json"
GEMINI_SETTINGS = ".gemini/settings.json"
AGENT_SETTINGS = (CLAUDE_SETTINGS, CODEX_HOOKS, GEMINI_SETTINGS)  # read-only in the box
CLAUDE_MATCHER = "Edit|Write|MultiEdit|NotebookEdit|Bash"  # Bash: the command policy (orch.inbox.gates)
CODEX_MATCHER = "apply_patch|Edit|Write|Bash"
GEMINI_MATCHER = "write_file|replace|run_shell_command"
# What Aider writes for itself at the top of the folder it works in (its chat and input history, its
# repository-map cache): never the task's work. Listed in info/exclude, so no snapshot commits them.
AIDER_FILES = ("/.aider.chat.history.md", "/.aider.input.history", "/.aider.llm.history", "/.aider.tags.cache.v*/")
HOOKS_HEADER = "# orch: agent hook settings written into task worktrees (never committed)"
AIDER_HEADER = "# orch: files agents write for themselves in task worktrees (never committed)"


def hooks_dir(project: Project) -> Path:
    return project.common_dir / "hooks"


def hooks_path_setting(project: Project) -> str | None:
    r = git.run(["config", "--get", "core.hooksPath"], cwd=project.root, check=False)
    return r.stdout.strip() or None if r.ok else None


def python_command() -> str:
    """How the hooks start orch's fast entry point: this interpreter, which has orch installed."""
    return f"{shlex.quote(sys.executable)} -m orch.hookmain"


def shim(hook: str) -> str:
    py = shlex.quote(sys.executable)
    return f"""#!/bin/sh
{MARKER} ({hook}); `orch hooks uninstall` removes it and restores any hook kept as {hook}.legacy.
# An early warning only: orch verify judges every task branch before a merge.
here=$(dirname "$0")
if [ -x "$here/{hook}.legacy" ]; then
    "$here/{hook}.legacy" "$@" || exit $?
fi
if [ -x {py} ]; then
    exec {py} -m orch.hookmain {hook} "$@"
elif command -v orch >/dev/null 2>&1; then
    exec orch hook {hook} "$@"
fi
echo "orch: {hook} hook skipped: orch is not installed here (reinstall it, or: orch hooks uninstall)" >&2
exit 0
"""


def _is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def install(project: Project) -> list[str]:
    """Install the shims; returns one line per hook saying what happened."""
    setting = hooks_path_setting(project)
    if setting is not None:
        raise InputError(
            f"core.hooksPath is set ({setting}), so git never runs hooks from {hooks_dir(project)}; "
            "orch installed nothing",
            hint="either `git config --unset core.hooksPath` and run `orch hooks install` again, or call "
            "`orch hook pre-commit` from your own pre-commit hook (pre-commit framework users: add the "
            "orch-locks hook from .pre-commit-hooks.yaml)",
        )
    folder = hooks_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    report = []
    for hook in HOOKS:
        path = folder / hook
        legacy = folder / f"{hook}.legacy"
        if (path.exists() or path.is_symlink()) and not _is_ours(path):
            if legacy.exists() or legacy.is_symlink():
                raise InputError(
                    f"{path} is not orch's and {legacy.name} exists already: orch will not overwrite either",
                    hint=f"merge them by hand (or move {legacy.name} away), then run orch hooks install again",
                )
            os.replace(path, legacy)
            report.append(f"kept your {hook} hook as {legacy.name} (it still runs first)")
        atomic_write(path, shim(hook))
        os.chmod(path, 0o755)
        report.append(f"installed {hook} hook in {folder}")
    return report


def uninstall(project: Project) -> list[str]:
    folder = hooks_dir(project)
    report = []
    for hook in HOOKS:
        path = folder / hook
        legacy = folder / f"{hook}.legacy"
        if not (path.exists() or path.is_symlink()):
            report.append(f"{hook}: not installed")
            continue
        if not _is_ours(path):
            report.append(f"{hook}: left alone (not orch's)")
            continue
        if legacy.exists() or legacy.is_symlink():
            os.replace(legacy, path)
            report.append(f"{hook}: restored your original hook")
        else:
            path.unlink()
            report.append(f"{hook}: removed")
    return report


def status(project: Project) -> list[dict[str, Any]]:
    setting = hooks_path_setting(project)
    folder = hooks_dir(project)
    rows = []
    for hook in HOOKS:
        path = folder / hook
        legacy = folder / f"{hook}.legacy"
        if setting is not None:
            state = f"inactive: core.hooksPath is set ({setting})"
        elif not (path.exists() or path.is_symlink()):
            state = "not installed"
        elif not _is_ours(path):
            state = "foreign hook (not orch's)"
        elif not os.access(path, os.X_OK):
            state = "installed but not executable (git skips it; orch hooks install fixes it)"
        else:
            state = "installed"
        rows.append({"hook": hook, "state": state, "path": str(path), "legacy": legacy.exists()})
    return rows


# -- agent hooks ------------------------------------------------------------------------------------


def _merge_hook(
    settings: dict[str, Any], matcher: str, command: str, event: str = "PreToolUse", timeout: int = 30
) -> dict[str, Any]:
    """Add orch's hook entry for ``event`` to a settings object, replacing an older orch entry."""
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InputError("its 'hooks' is not an object")
    entries = hooks.setdefault(event, [])
    if not isinstance(entries, list):
        raise InputError(f"its 'hooks.{event}' is not a list")
    kept = [e for e in entries if not _is_orch_entry(e)]
    hook: dict[str, Any] = {"type": "command", "command": command, "timeout": timeout}
    if event == "BeforeTool":  # Gemini CLI names hooks (in /hooks and its dedup); its timeout is in ms
        hook = {"name": "orch-pretool", **hook}
    kept.append({"matcher": matcher, "hooks": [hook]})
    hooks[event] = kept
    return settings


def _is_orch_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    for h in entry.get("hooks") or []:
        cmd = h.get("command", "") if isinstance(h, dict) else ""
        if "orch.hookmain" in cmd or "orch hook " in cmd:
            return True
    return False


def _write_settings(
    worktree: Path, rel: str, matcher: str, command: str, event: str = "PreToolUse", timeout: int = 30
) -> None:
    path = worktree / rel
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: cannot read it as JSON ({exc})", hint="fix or remove the file") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: expected a JSON object")
        settings = loaded
    try:
        _merge_hook(settings, matcher, command, event, timeout)
    except InputError as exc:
        raise InputError(f"{path}: {exc.message}", hint="fix the file by hand") from None
    atomic_write(path, json.dumps(settings, indent=2) + "\n")


def write_agent_hooks(ctx: Any, task_id: str, worktree: Path) -> None:
    """Write the agents' hooks into a task worktree, kept out of git's view.

    They judge file edits by the task's rules and shell commands by the command policy (``Bash``,
    ``run_shell_command``: ``orch.inbox.gates``). Claude Code: ``.claude/settings.json``
    (``PreToolUse``). Gemini CLI: ``.gemini/settings.json`` (``BeforeTool``, read in trusted folders:
    the gemini preset trusts the worktree). Codex:
    ``.codex/hooks.json``, which Codex ignores in a linked worktree (it reads the main checkout's,
    openai/codex#27133) and runs only when trusted: the codex preset passes the same hook on its
    command line (``{codex_hooks}``, ``codex_hooks_override``); the file stays for a Codex that reads
    a worktree's own hooks. Existing settings are merged (an older orch entry is replaced). A file the
    repository tracks is marked ``--skip-worktree`` in that worktree; an untracked one is listed in
    the repository's ``info/exclude``, so ``git add -A`` never commits it on the task branch. Aider's
    own files (``AIDER_FILES``) are listed there too.
    """
    base = python_command()
    _write_settings(worktree, CLAUDE_SETTINGS, CLAUDE_MATCHER, f"{base} claude-pretool")
    _write_settings(worktree, CODEX_HOOKS, CODEX_MATCHER, f"{base} codex-pretool")
    _write_settings(worktree, GEMINI_SETTINGS, GEMINI_MATCHER, f"{base} gemini-pretool", "BeforeTool", 30000)
    keep_out_of_git(ctx.project, worktree, [CLAUDE_SETTINGS, CODEX_HOOKS, GEMINI_SETTINGS])
    exclude(ctx.project, list(AIDER_FILES), AIDER_HEADER)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c < " " or c == "\x7f":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}.get(c, f"\\u{ord(c):04x}"))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def codex_hooks_override() -> str:
    """The ``-c`` override that gives ``codex exec`` orch's PreToolUse hook (the ``{codex_hooks}``
    placeholder): one TOML ``key=value``, the hook command a TOML string (the interpreter's path may
    hold spaces or quotes: shell-quoted first, then TOML-escaped)."""
    command = toml_string(f"{python_command()} codex-pretool")
    hook = f'{{type="command",command={command},timeout=30}}'
    return f'hooks.PreToolUse=[{{matcher="apply_patch|Bash",hooks=[{hook}]}}]'


def keep_out_of_git(project: Project, worktree: Path, rels: list[str]) -> None:
    tracked = set(git.out(["ls-files", "-z", "--", *rels], cwd=worktree).split("\0")) - {""}
    if tracked:
        git.run(["update-index", "--skip-worktree", "--", *sorted(tracked)], cwd=worktree)
    untracked = [r for r in rels if r not in tracked]
    if untracked:
        exclude(project, [f"/{r}" for r in untracked], HOOKS_HEADER)


def exclude(project: Project, patterns: list[str], header: str) -> None:
    """Add ``patterns`` to the repository's shared ``info/exclude`` (once; under ``header``)."""
    path = project.common_dir / "info" / "exclude"
    from orch.core.store import Store

    store = Store(project.root, project.orch_dir)
    with store.lock("git-info-exclude"):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = text.splitlines()
        missing = [p for p in patterns if p not in lines]
        if missing:
            head = text if not text or text.endswith("\n") else text + "\n"
            if header not in lines:
                head += header + "\n"
            atomic_write(path, head + "\n".join(missing) + "\n")
