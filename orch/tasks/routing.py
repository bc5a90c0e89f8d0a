"""Routing: which agent (and model) a task that names none gets, from ``.orch/routing.yaml``.

Each rule ``match``es by the task's ``kind``, its ``level`` and ``paths`` (a regular expression
searched in the tracked files of the base branch that the task's scope reaches; a task without a
scope reaches them all). A rule matches when all its keys do; of the matching rules the one with the
most keys wins. Two winners with as many keys and different agents are a question for a person: the
task is not spun until it names its agent. A task's own ``agent:`` always wins; no rule matching,
the config's default agent. ``order`` lists pairs of kinds: ``orch plan`` warns when a task of the
second kind depends (directly or not) on no task of the first while the plan has some.

The rules in force are those committed on the base branch (``orch.core.committed``), like the locks
and the policy: an agent can edit the main checkout's ``.orch/``, so an uncommitted edit counts for
nothing until a person commits it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orch.core import git
from orch.core.errors import InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orch.core.context import Ctx
    from orch.core.plan import Plan, Task

ROUTING = "routing.yaml"  # under .orch/


@dataclass
class Routing:
    rules: list[Rule] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    text: str = ""
    _lines: list[int] | None = None

    def line(self, n: int) -> int:
        """The line of rule ``n`` (found when first asked: a warm ``orch status`` parses no YAML)."""
        if self._lines is None:
            from orch.core.store import _item_lines

            self._lines = _item_lines(self.text, "rules")
        return self._lines[n] if n < len(self._lines) else 1


@dataclass(frozen=True)
class Rule:
    name: str
    match: dict[str, str]
    agent: str
    model: str | None
    index: int
    owner: Routing = field(compare=False, repr=False)

    @property
    def where(self) -> str:
        """The file and line that hold it: ``main:.orch/routing.yaml:4``."""
        return f"{self.owner.source}:{self.owner.line(self.index)}"


@dataclass
class Decision:
    """What routing gives one task: ``agent`` (None: the config's default), ``model``, the rule that
    chose, or ``question`` when two rules tie; ``lines`` says why, one line per rule."""

    agent: str | None = None
    model: str | None = None
    rule: str | None = None
    question: str | None = None
    own: bool = False  # the task names its agent
    where: str | None = None  # the winning rule's file:line
    lines: list[str] = field(default_factory=list)


def parse(text: str, where: str, *, store: object | None = None) -> Routing:
    """A routing file's text, validated by the schema and each ``paths`` compiled; else ``InputError``
    naming ``where:line``."""
    from pathlib import Path

    from orch.core.store import Store

    st = store if isinstance(store, Store) else Store(Path("."), Path(".orch"), cache=False)
    data = st.loads(text, "routing", where=where) or {}
    routing = Routing(source=where, text=text)
    seen: dict[str, int] = {}
    for n, item in enumerate(data.get("rules") or []):
        name = str(item["name"])
        if name in seen:
            raise InputError(
                f"{where}:{routing.line(n)}: rules[{n}]: a second rule named '{name}' "
                f"(the first at line {routing.line(seen[name])})",
                hint="give each rule its own name",
            )
        seen[name] = n
        match = {k: str(v) for k, v in item["match"].items()}
        if "paths" in match:
            try:
                re.compile(match["paths"])
            except (re.error, RecursionError, OverflowError) as exc:
                why = exc.msg if isinstance(exc, re.error) else "nested too deep"
                raise InputError(
                    f"{where}:{routing.line(n)}: rules[{n}].match.paths: not a regular expression ({why})",
                    hint="a Python regular expression, searched in each tracked file's path (like a scope)",
                ) from None
        routing.rules.append(Rule(name, match, str(item["agent"]), item.get("model"), n, routing))
    routing.order = [(str(a), str(b)) for a, b in data.get("order") or []]
    return routing


def in_force(ctx: Ctx) -> Routing | None:
    """The routing committed on the base branch, None without one (the working copy does not count)."""
    committed = ctx.committed()
    theirs = committed.get(ROUTING)
    if theirs is None:
        return None
    where = committed.where(ROUTING)
    try:
        text = theirs.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text", hint="commit it as UTF-8 YAML") from None
    return parse(text, where, store=ctx.store)


def pending_edit(ctx: Ctx) -> str | None:
    """A line saying the working copy of routing.yaml differs from the one in force, or None."""
    path = ctx.project.orch_dir / ROUTING
    try:
        mine: bytes | None = path.read_bytes()
    except OSError:
        mine = None
    committed = ctx.committed()
    if mine == committed.get(ROUTING):
        return None
    return (
        f"{ctx.project.rel(path)} differs from {committed.where(ROUTING)}: "
        "the edit counts once it is committed on the base branch"
    )


class Reach:
    """The tracked files on the base branch, read once, and the part a scope reaches."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._files: list[str] | None = None

    def files(self, scope: str | None) -> list[str]:
        if self._files is None:
            ref = f"refs/heads/{self.ctx.config.base_branch}"
            out = git.out(["ls-tree", "-r", "-z", "--name-only", ref], cwd=self.ctx.project.root, optional_locks=False)
            self._files = [f for f in out.split("\0") if f]
        if not scope:
            return self._files
        rx = re.compile(scope)
        return [f for f in self._files if rx.search(f)]


def decide(
    ctx: Ctx, task: Task, routing: Routing | None, reach: Reach | None = None, *, explain: bool = True
) -> Decision:
    """Which agent and model routing gives ``task`` (see the module's doc), and why."""
    if task.agent:
        return Decision(agent=task.agent, own=True, lines=[f"{task.id} names its agent: {task.agent}"])
    d = Decision()
    if routing is None or not routing.rules:
        d.lines.append("no rules in force (no .orch/routing.yaml committed on the base branch)")
        return d
    reach = reach or Reach(ctx)
    matched: list[Rule] = []
    for rule in routing.rules:
        misses = []
        for key, want in rule.match.items():
            if key == "paths":
                files = reach.files(task.scope)
                rx = re.compile(want)
                if not any(rx.search(f) for f in files):
                    misses.append(f"no file it reaches matches paths {want!r}")
            else:
                have = task.fields.get(key) or None
                if have != want:
                    misses.append(f"{key} is {have or 'not set'}, not {want}")
        if not misses:
            matched.append(rule)
        if not explain:
            continue
        if misses:
            d.lines.append(f"rule {rule.name} ({rule.where}): no: {'; '.join(misses)}")
        else:
            keys = ", ".join(rule.match)
            d.lines.append(f"rule {rule.name} ({rule.where}): matches ({len(rule.match)} key(s): {keys})")
    if not matched:
        d.lines.append("no rule matches: the config's default agent")
        return d
    best = max(len(r.match) for r in matched)
    top = [r for r in matched if len(r.match) == best]
    if len({(r.agent, r.model) for r in top}) > 1:
        names = " and the ".join(f"`{r.name}`" for r in top)
        d.question = (
            f"{task.id} matches both the {names} rule: which agent? add `- agent: NAME` to {task.id} in .orch/plan.md"
        )
        d.lines.append(d.question)
        return d
    win = top[0]
    d.agent, d.model, d.rule = win.agent, win.model, win.name
    d.where = win.where if explain else None
    d.lines.append(f"winner: rule {win.name}: agent {win.agent}" + (f", model {win.model}" if win.model else ""))
    return d


def questions(ctx: Ctx, tasks: list[Task]) -> dict[str, str]:
    """The tie question of each of ``tasks`` two rules match equally (none without routing rules)."""
    todo = [t for t in tasks if not t.agent]
    if not todo:
        return {}
    from orch.core.errors import OrchError

    try:
        routing = in_force(ctx)
    except OrchError:  # orch plan, orch route and orch spin name the broken file; status goes on
        return {}
    if routing is None or not routing.rules:
        return {}
    reach = Reach(ctx)
    out = {}
    for task in todo:
        d = decide(ctx, task, routing, reach, explain=False)
        if d.question:
            out[task.id] = d.question
    return out


def order_warnings(plan: Plan, routing: Routing | None) -> list[str]:
    """For each ``[earlier, later]`` pair of ``order``: a warning per task of the later kind that
    depends, directly or not, on no task of the earlier kind, when the plan has tasks of that kind."""
    if routing is None:
        return []
    by_id = {t.id: t for t in plan.tasks}

    def ancestors(tid: str) -> set[str]:
        seen: set[str] = set()
        todo = list(by_id[tid].deps) if tid in by_id else []
        while todo:
            d = todo.pop()
            if d in seen or d not in by_id:
                continue
            seen.add(d)
            todo.extend(by_id[d].deps)
        return seen

    out = []
    for earlier, later in routing.order:
        firsts = {t.id for t in plan.tasks if t.kind == earlier}
        if not firsts:
            continue
        for task in plan.tasks:
            if task.kind == later and not (ancestors(task.id) & firsts):
                out.append(
                    f".orch/plan.md:{task.line}: {later} task {task.id} depends on no {earlier} task "
                    f"({', '.join(sorted(firsts))}): routing.yaml's order puts {earlier} first (add it to deps)"
                )
    return out


class Routes:
    """The routing in force, read on the first task that needs it, for deciding many tasks."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._routing: Routing | None = None
        self._read = False
        self.reach = Reach(ctx)

    def decide(self, task: Task) -> Decision:
        if not self._read:
            self._routing, self._read = in_force(self.ctx), True
        return decide(self.ctx, task, self._routing, self.reach)
