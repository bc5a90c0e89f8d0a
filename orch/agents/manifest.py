"""Agents are data: ``.orch/agents/<name>.yaml`` manifests, their placeholders and usage parsers.

A manifest is re-read (and validated) every time a command needs it, so adding, changing or
deleting one takes effect at once. A broken manifest is an error for the tasks that use it only.

``command`` is an argv template. Placeholders are replaced inside each argument; the result is
never handed to a shell (unless the manifest itself runs ``sh -c``, as the ``shell`` preset does
with the task's ``run:`` field, a command a person wrote on purpose). An argument that is exactly
one placeholder with no value (``{model}`` when no model is set) is dropped, together with the
flag right before it, so ``["--model", "{model}"]`` simply disappears.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.core.errors import InputError
from orch.core.plan import AGENT_RE
from orch.core.repo import Project
from orch.core.store import Store
from orch.core.text import quoted

PLACEHOLDERS = (
    "prompt_file", "prompt", "task", "worktree", "model", "max_turns", "run", "tools", "usage_file", "budget_usd",
    "codex_hooks", "codex_sandbox", "permission_mode",
)  # fmt: skip
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


@dataclass(frozen=True)
class Agent:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def command(self) -> list[str]:
        return list(self.data["command"])

    @property
    def env(self) -> dict[str, str]:
        return dict(self.data.get("env") or {})

    @property
    def model(self) -> str | None:
        return self.data.get("model") or None

    @property
    def tools(self) -> list[str]:
        return list(self.data.get("tools") or [])

    @property
    def usage(self) -> str:
        return str(self.data.get("usage") or "none")

    @property
    def timeout(self) -> float | None:
        value = self.data.get("timeout")
        return float(value) if value is not None else None

    @property
    def max_turns(self) -> int | None:
        value = self.data.get("max_turns")
        return int(value) if value is not None else None

    @property
    def max_iterations(self) -> int | None:
        value = self.data.get("max_iterations")
        return int(value) if value is not None else None

    @property
    def max_tokens(self) -> int | None:
        value = self.data.get("max_tokens")
        return int(value) if value is not None else None

    @property
    def budget_usd(self) -> float | None:
        """The manifest's ``budget``: a number of dollars, or a string like ``$5`` / ``200k tokens``."""
        value = self.data.get("budget")
        if value is None:
            return None
        if isinstance(value, (int, float)):
            return float(value)
        from orch.core.plan import parse_budget

        return parse_budget(str(value)).usd

    @property
    def budget_tokens(self) -> int | None:
        value = self.data.get("budget")
        tokens = None
        if isinstance(value, str):
            from orch.core.plan import parse_budget

            tokens = parse_budget(value).tokens
        return tokens if tokens is not None else self.max_tokens


def check_name(name: str) -> None:
    if not AGENT_RE.fullmatch(name):
        raise InputError(
            f"bad agent name {quoted(name)}",
            hint="agent names are letters, digits, '.', '_' or '-' (a manifest .orch/agents/NAME.yaml)",
        )


def manifest_path(project: Project, name: str) -> Path:
    return project.agents_dir / f"{name}.yaml"


def load(project: Project, store: Store, name: str, *, named_at: str | None = None) -> Agent:
    """Read and validate one manifest now (no caching across commands: edits apply at once).
    ``named_at``: the ``file:line`` that names the agent, for the message when there is no such manifest."""
    check_name(name)
    path = manifest_path(project, name)
    try:
        data = store.load(path, "agent")
    except FileNotFoundError:
        known = ", ".join(names(project)) or "none"
        raise InputError(
            f"no agent '{name}' (no {project.rel(path)})",
            where=named_at,
            hint=f"known agents: {known}; add a manifest there, or run orch init to get the presets",
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{project.rel(path)}: an agent manifest is a mapping with at least 'command'")
    agent = Agent(name, path, data)
    _check_budget(agent, project)
    return agent


def _check_budget(agent: Agent, project: Project) -> None:
    try:
        agent.budget_usd  # noqa: B018 - parsing is the check
    except ValueError as exc:
        from orch.core.config import key_where

        raise InputError(
            f"budget: {exc}",
            where=key_where(project, "budget", agent.path),
            hint="use a number of dollars, '$5' or '200k tokens'",
        ) from None


def names(project: Project) -> list[str]:
    try:
        return sorted(p.stem for p in project.agents_dir.glob("*.yaml") if AGENT_RE.fullmatch(p.stem))
    except OSError:
        return []


@dataclass
class AgentInfo:
    name: str
    path: str
    valid: bool
    error: str | None = None
    description: str | None = None
    command: list[str] = field(default_factory=list)
    usage: str | None = None
    model: str | None = None
    timeout: float | None = None
    installed: bool | None = None  # is the program on PATH?

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_all(project: Project, store: Store) -> list[AgentInfo]:
    """Every manifest with its validity; a broken one is listed with its error, not raised."""
    import shutil

    infos: list[AgentInfo] = []
    for name in names(project):
        rel = project.rel(manifest_path(project, name))
        try:
            agent = load(project, store, name)
        except InputError as exc:
            infos.append(AgentInfo(name, rel, False, error=exc.render()))
            continue
        program = agent.command[0]
        infos.append(
            AgentInfo(
                name,
                rel,
                True,
                description=agent.data.get("description"),
                command=agent.command,
                usage=agent.usage,
                model=agent.model,
                timeout=agent.timeout,
                installed=shutil.which(program) is not None,
            )
        )
    return infos


def codex_hooks() -> str:
    """The ``{codex_hooks}`` value: a ``-c`` override giving ``codex exec`` orch's PreToolUse hook.

    Codex reads a linked worktree's hooks from the main checkout (openai/codex#27133) and runs project
    hooks only when trusted, so the hook orch writes into the worktree never runs; on the command line
    (with ``--dangerously-bypass-hook-trust``) it does.
    """
    from orch.verify.hooks import codex_hooks_override

    return codex_hooks_override()


def render_command(template: list[str], values: dict[str, str | None]) -> list[str]:
    """Fill the placeholders of an argv template; see the module docstring for the dropping rule."""
    argv: list[str] = []
    for arg in template:
        whole = _PLACEHOLDER.fullmatch(arg)
        if whole and not values.get(whole[1]):
            if argv and argv[-1].startswith("-"):
                argv.pop()  # the flag that introduced the missing value goes too
            continue
        argv.append(_PLACEHOLDER.sub(lambda m: values.get(m[1]) or "", arg))
    return argv


# -- usage parsers ----------------------------------------------------------------------------------


@dataclass
class Usage:
    input: int = 0
    output: int = 0
    cached: int = 0
    cost_usd: float | None = None
    found: bool = False

    @property
    def total(self) -> int:
        return self.input + self.output + self.cached

    def tokens(self) -> dict[str, int] | None:
        if not self.found:
            return None
        return {"input": self.input, "output": self.output, "cached": self.cached, "total": self.total}


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every line that is a JSON object, plus the whole text if it is one (pretty-printed output)."""
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
    if not found:
        start = text.find("{")
        end = text.rfind("}")
        if 0 <= start < end:
            try:
                obj = json.loads(text[start : end + 1])
            except ValueError:
                return []
            if isinstance(obj, dict):
                found.append(obj)
    return found


def _int(value: Any) -> int:
    """A count an agent printed: a whole number from 0 up (anything else, infinity included, is 0)."""
    try:
        return max(0, min(int(value or 0), 10**15))
    except (TypeError, ValueError, OverflowError):
        return 0


def _cost(value: Any) -> float | None:
    """Dollars an agent printed: a finite number from 0 up, else None."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        cost = float(value)
    except OverflowError:
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


def parse_usage(kind: str, log_text: str, usage_file_text: str | None = None) -> Usage:
    """Token usage and cost from an agent's output (``log_text``) or its usage file."""
    usage = Usage()
    if kind == "claude-json":
        results = [o for o in _json_objects(log_text) if o.get("type") == "result"]
        if results:
            last = results[-1]
            u = last.get("usage") or {}
            usage.input = _int(u.get("input_tokens")) + _int(u.get("cache_creation_input_tokens"))
            usage.cached = _int(u.get("cache_read_input_tokens"))
            usage.output = _int(u.get("output_tokens"))
            cost = last.get("total_cost_usd")
            usage.cost_usd = _cost(cost)
            usage.found = True
    elif kind == "codex-jsonl":
        for obj in _json_objects(log_text):
            if obj.get("type") == "turn.completed":
                u = obj.get("usage") or {}
                usage.input += _int(u.get("input_tokens")) - _int(u.get("cached_input_tokens"))
                usage.cached += _int(u.get("cached_input_tokens"))
                usage.output += _int(u.get("output_tokens"))
                usage.found = True
    elif kind == "aider-analytics":
        total_cost: float | None = None
        for obj in _json_objects(usage_file_text or ""):
            if obj.get("event") != "message_send":
                continue
            p = obj.get("properties") or {}
            usage.input += _int(p.get("prompt_tokens"))
            usage.output += _int(p.get("completion_tokens"))
            total, cost = _cost(p.get("total_cost")), _cost(p.get("cost"))
            if total is not None:
                total_cost = max(total_cost or 0.0, total)
            elif cost is not None:
                total_cost = (total_cost or 0.0) + cost
            usage.found = True
        usage.cost_usd = total_cost
    elif kind == "gemini-json":
        for obj in reversed(_json_objects(log_text)):
            models = ((obj.get("stats") or {}).get("models")) or {}
            if not isinstance(models, dict) or not models:
                continue
            for m in models.values():
                t = (m or {}).get("tokens") or {}
                cached = _int(t.get("cached"))
                # Gemini's total = prompt + candidates + thoughts + tool (tool-use prompt tokens, input);
                # thoughts are billed as output.
                usage.input += _int(t.get("prompt")) - cached + _int(t.get("tool"))
                usage.cached += cached
                usage.output += _int(t.get("candidates")) + _int(t.get("thoughts"))
            usage.found = True
            break
    usage.input = max(usage.input, 0)
    return usage
