"""plan.md <-> Plan and Task, with line numbers.

The format (see the README): a level-2 heading ``## ID: Title`` starts a task; the bullet list right
under it holds its fields (``- scope: ^src/auth/``); the rest, up to the next level-2 heading, is the
brief. Text before the first task is free text. Every problem is reported at once as
``.orch/plan.md:LINE: message``. Reading the file and appending to it are in ``orch.core.planfile``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from orch.core.errors import InputError, ManyErrors
from orch.core.planvalues import MAX_TOKENS, MAX_USD, Budget, parse_budget, parse_duration  # noqa: F401
from orch.core.scoperegex import scope_problem

ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")
AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
FIELDS = (
    "scope", "deps", "agent", "accept", "check", "tdd_gate", "model", "level", "max_iterations", "max_per_strategy",
    "max_strategies", "task_timeout", "budget", "run", "approve", "priority", "overlap", "kind",
)  # fmt: skip
COUNTS = ("max_iterations", "max_per_strategy", "max_strategies")  # the loop's limits that are whole numbers
LEVELS = ("goal", "feature", "component", "code")
KINDS = ("design", "implement", "test", "review", "docs")  # `- kind:` what a task does (.orch/routing.yaml)
APPROVALS = ("plan", "none")  # `- approve:` plan first (orch.agents.planphase), or none (the config's default off)
# A field is a Markdown bullet ('-', '*' or '+', then a space or a tab), indented or not: whatever a
# Markdown reader shows as a bullet under the heading counts, so no field is dropped without a word.
_BULLET = re.compile(r"[ \t]*[-*+][ \t]")
_FIELD_LINE = re.compile(r"[ \t]*[-*+][ \t]+(?P<key>[A-Za-z_][A-Za-z0-9_-]*)[ \t]*:[ \t]*(?P<value>.*?)[ \t]*$")
# A task heading: '##' then a space or a tab, up to three spaces in (CommonMark); a bare '##' too.
_HEADING = re.compile(r" {0,3}##(?:[ \t]|$)")
_LOOKS_LIKE_HEADING = re.compile(r" {0,3}##[A-Za-z]")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# Branch orch/<id> belongs to task <id>; these names are orch's own (orch/integration holds a parked
# merge ceremony result).
RESERVED_IDS = frozenset({"integration"})
ID_RULE = "ids start with a letter, then letters, digits, '-' or '_', at most 40 characters"


@dataclass
class Task:
    id: str
    title: str
    fields: dict[str, str] = field(default_factory=dict)
    brief: str = ""
    gap: int = 0  # blank lines between the heading and the field list
    line: int = field(default=0, compare=False)
    field_lines: dict[str, int] = field(default_factory=dict, compare=False)
    # In a plan in force (``in_force``): this task as committed on the base branch, if it is there.
    committed: Task | None = field(default=None, compare=False, repr=False)

    @property
    def scope(self) -> str | None:
        return self.fields.get("scope") or None

    @property
    def deps(self) -> list[str]:
        return split_deps(self.fields.get("deps", ""))

    @property
    def agent(self) -> str | None:
        return self.fields.get("agent") or None

    @property
    def accept(self) -> str | None:
        return self.fields.get("accept") or None

    @property
    def run(self) -> str | None:
        return self.fields.get("run") or None

    @property
    def model(self) -> str | None:
        return self.fields.get("model") or None

    @property
    def level(self) -> str | None:
        return self.fields.get("level") or None

    @property
    def kind(self) -> str | None:
        return self.fields.get("kind") or None

    @property
    def max_iterations(self) -> int | None:
        return self._count("max_iterations")

    @property
    def max_per_strategy(self) -> int | None:
        return self._count("max_per_strategy")

    @property
    def max_strategies(self) -> int | None:
        return self._count("max_strategies")

    @property
    def task_timeout(self) -> int | None:
        """The whole loop's wall clock, seconds."""
        value = self.fields.get("task_timeout")
        return parse_duration(value) if value else None

    @property
    def priority(self) -> int:
        """The queue's order (``orch.agents.queue``): higher first, then plan order; 0 when not given."""
        value = self.fields.get("priority")
        return int(value) if value and value.lstrip("-").isdigit() else 0

    @property
    def overlap_ok(self) -> bool:
        """``overlap: ok``: may run beside a task whose scope reaches the same files."""
        return self.fields.get("overlap") == "ok"

    def _count(self, key: str) -> int | None:
        value = self.fields.get(key)
        return int(value) if value else None

    @property
    def budget(self) -> Budget | None:
        value = self.fields.get("budget")
        return parse_budget(value) if value else None

    def brief_text(self) -> str:
        return self.brief.strip("\n")

    @property
    def committed_scope(self) -> str | None:
        """The committed scope that still binds the task besides ``scope``: set only when the task is
        committed on the base branch with a scope other than the working one (an uncommitted edit can
        narrow a scope, never widen it)."""
        committed = self.committed.scope if self.committed is not None else None
        return committed if committed != self.scope else None

    @property
    def accepts(self) -> list[str]:
        """The acceptance commands that must all pass: the working one and, when it differs, the one
        committed on the base branch (an edit to ``true`` passes nothing the committed one fails)."""
        found = [a for a in (self.committed.accept if self.committed else None, self.accept) if a]
        return list(dict.fromkeys(found))


@dataclass
class Plan:
    preamble: str = ""
    tasks: list[Task] = field(default_factory=list)

    @property
    def title(self) -> str | None:
        for line in self.preamble.splitlines():
            if line.startswith("# "):
                return line[2:].removeprefix("Plan:").strip()
        return None

    def get(self, task_id: str) -> Task | None:
        for task in self.tasks:
            if task.id == task_id:
                return task
        return None

    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def require(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is None:
            import difflib

            same = [i for i in self.ids() if i.lower() == task_id.lower()]  # ids are case-sensitive
            close = same or difflib.get_close_matches(task_id, self.ids(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see the tasks with: orch plan"
            raise InputError(f"no task '{task_id}' in .orch/plan.md", hint=hint)
        return task

    def dependents(self, task_id: str) -> list[str]:
        return [t.id for t in self.tasks if task_id in t.deps]


def in_force(working: Plan, committed: Plan) -> Plan:
    """The plan that judges: the working plan, each task paired with its committed version (the base
    branch's ``plan.md``). A task only in the working copy (just added) is judged as written."""
    return Plan(working.preamble, [replace(t, committed=committed.get(t.id)) for t in working.tasks])


def split_deps(value: str) -> list[str]:
    value = value.strip()
    if not value or value.lower() == "none":
        return []
    return [d.strip() for d in value.split(",") if d.strip()]


# -- parsing -----------------------------------------------------------------------------------------


def parse(text: str, *, where: str = ".orch/plan.md") -> Plan:
    """Parse and validate plan text; raise ``ManyErrors`` listing every problem at once.

    A UTF-8 byte order mark (editors on Windows write one) is read past; ``plan add`` keeps it.
    """
    plan, problems = _parse(text.removeprefix("\ufeff"), where)
    problems += _validate(plan, where)
    if problems:
        problems.sort(key=lambda p: p[0])
        raise ManyErrors(
            [f"{where}:{line}: {msg}" for line, msg in problems],
            hint="fix the plan by hand; the format is in the README (section 'plan.md')",
        )
    return plan


def _split_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _parse(text: str, where: str) -> tuple[Plan, list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    lines = _split_lines(text)
    plan = Plan()
    # Find level-2 headings outside fenced code blocks.
    heads: list[int] = []
    fence: str | None = None  # the marker that opened the code block we are in
    for i, raw in enumerate(lines):
        m = _FENCE.match(raw)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not raw[m.end() :].strip():
                fence = None  # CommonMark: same character, at least as long, nothing after it
            continue
        if fence is None and _HEADING.match(raw.rstrip("\r\n")):
            heads.append(i)
        elif fence is None and _LOOKS_LIKE_HEADING.match(raw):
            problems.append(
                (i + 1, f"'{raw.rstrip()}' looks like a task heading: write '## ID: Title' (a space after '##')")
            )
    plan.preamble = "".join(lines[: heads[0]] if heads else lines)
    for n, start in enumerate(heads):
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        task, task_problems = _parse_task(lines, start, end)
        problems += task_problems
        if task is not None:
            plan.tasks.append(task)
    return plan, problems


def _parse_task(lines: list[str], start: int, end: int) -> tuple[Task | None, list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    lineno = start + 1
    heading = _HEADING.sub("", lines[start].rstrip("\r\n"), count=1)
    task_id, sep, title = heading.partition(":")
    task_id, title = task_id.strip(), title.strip()
    if not sep or not title:
        problems.append(
            (
                lineno,
                f"'{lines[start].rstrip()}' is not a task heading: expected '## ID: Title' "
                "(use '###' for a heading inside a brief)",
            )
        )
        return None, problems
    if not ID_RE.fullmatch(task_id):
        problems.append((lineno, f"bad task id '{task_id}': {ID_RULE}"))
    task = Task(id=task_id, title=title, line=lineno)
    i = start + 1
    while i < end and not lines[i].strip():
        i += 1
    if i < end and _starts_field_list(lines[i]):
        task.gap = i - start - 1
        while i < end and _BULLET.match(lines[i]):
            raw = lines[i].rstrip("\r\n")
            m = _FIELD_LINE.match(raw)
            if not m:
                problems.append(
                    (
                        i + 1,
                        f"expected '- field: value' in the field list of {task_id}, got '{raw}' "
                        "(leave a blank line between the fields and the brief)",
                    )
                )
            else:
                key, value = m["key"], (m["value"] or "")
                if key not in FIELDS:
                    import difflib

                    close = difflib.get_close_matches(key, FIELDS, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(FIELDS)})"
                    problems.append((i + 1, f"unknown field '{key}'{hint}"))
                elif key in task.fields:
                    problems.append(
                        (i + 1, f"field '{key}' given twice in {task_id} (first at line {task.field_lines[key]})")
                    )
                else:
                    task.fields[key] = value
                    task.field_lines[key] = i + 1
            i += 1
    else:
        i = start + 1
    task.brief = "".join(lines[i:end])
    problems += _stray_fields(lines, i, end, task_id)
    return task, problems


def _stray_fields(lines: list[str], i: int, end: int, task_id: str) -> list[tuple[int, str]]:
    """Field lines the brief would swallow: bullets naming a field, after blank lines at its top."""
    problems = []
    while i < end and (not lines[i].strip() or _BULLET.match(lines[i])):
        m = _FIELD_LINE.match(lines[i].rstrip("\r\n"))
        if m and m["key"] in FIELDS:
            problems.append(
                (
                    i + 1,
                    f"field '{m['key']}' of {task_id} is cut off from its field list by a blank line or a "
                    "line above it (it would be read as the brief): move it up into the list",
                )
            )
        i += 1
    return problems


def _starts_field_list(raw: str) -> bool:
    """A bullet right under the heading opens the field list if it names a field (or nearly does)."""
    m = _FIELD_LINE.match(raw.rstrip("\r\n"))
    if m is None:
        return False
    if m["key"] in FIELDS:
        return True
    import difflib

    return bool(difflib.get_close_matches(m["key"], FIELDS, n=1, cutoff=0.75))


def _validate(plan: Plan, where: str) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for task in plan.tasks:
        if task.id.lower() in RESERVED_IDS:
            problems.append(
                (task.line, f"task id '{task.id}' is reserved (orch/{task.id.lower()} is orch's own branch)")
            )
    for task in plan.tasks:
        if task.id in seen:
            problems.append((task.line, f"duplicate task id '{task.id}' (first defined at line {seen[task.id]})"))
        else:
            seen[task.id] = task.line
    ids = list(seen)
    for task in plan.tasks:
        fl = task.field_lines
        for key, value in task.fields.items():
            if not value and key != "deps":
                problems.append((fl[key], f"field '{key}' of {task.id} has no value"))
        scope = task.fields.get("scope")
        problem = scope_problem(scope) if scope else None
        if problem:
            problems.append((fl["scope"], problem))
        for dep in task.deps:
            if dep == task.id:
                continue  # reported as a cycle below
            if dep not in seen:
                import difflib

                close = difflib.get_close_matches(dep, ids, n=1)
                known = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known ids: {known or 'none'})"
                problems.append((fl["deps"], f"unknown dependency '{dep}' of {task.id}{hint}"))
        agent = task.fields.get("agent")
        if agent and not AGENT_RE.fullmatch(agent):
            problems.append((fl["agent"], f"bad agent name '{agent}': letters, digits, '.', '_', '-'"))
        level = task.fields.get("level")
        if level and level not in LEVELS:
            problems.append((fl["level"], f"bad level '{level}': one of {', '.join(LEVELS)}"))
        kind = task.fields.get("kind")
        if kind and kind not in KINDS:
            problems.append((fl["kind"], f"bad kind '{kind}': one of {', '.join(KINDS)}"))
        for key in COUNTS:
            count = task.fields.get(key)
            if count and not (re.fullmatch(r"[0-9]{1,18}", count) and int(count) > 0):  # int() of 4,300 digits raises
                huge = re.fullmatch(r"[0-9]+", count) and count.strip("0")
                problems.append((fl[key], f"bad {key} '{count}': {'too large' if huge else 'a whole number above 0'}"))
        timeout = task.fields.get("task_timeout")
        if timeout:
            try:
                parse_duration(timeout)
            except ValueError as exc:
                problems.append((fl["task_timeout"], f"bad task_timeout '{timeout}': {exc}"))
        gate = task.fields.get("tdd_gate")
        if gate and gate.strip().lower() not in ("true", "false", "yes", "no", "on", "off"):  # spin.tdd_gate
            problems.append((fl["tdd_gate"], f"bad tdd_gate '{gate}': true or false"))
        approve = task.fields.get("approve")
        if approve and approve not in APPROVALS:
            problems.append((fl["approve"], f"bad approve '{approve}': plan (a person approves a plan first) or none"))
        priority = task.fields.get("priority")
        if priority and not re.fullmatch(r"-?[0-9]{1,9}", priority):  # the queue's order: higher first
            problems.append((fl["priority"], f"bad priority '{priority}': a whole number (higher runs first)"))
        overlap = task.fields.get("overlap")
        if overlap and overlap != "ok":
            problems.append((fl["overlap"], f"bad overlap '{overlap}': ok (may run beside tasks reaching its files)"))
        budget = task.fields.get("budget")
        if budget:
            try:
                parse_budget(budget)
            except ValueError as exc:
                problems.append(
                    (fl["budget"], f"bad budget '{budget}': {exc} (write e.g. '200k tokens', '$5', or both)")
                )
    problems += _cycles(plan)
    return problems


def _cycles(plan: Plan) -> list[tuple[int, str]]:
    """Every dependency cycle, each reported once, naming the whole loop."""
    graph = {t.id: [d for d in t.deps if plan.get(d) is not None] for t in plan.tasks}
    color: dict[str, int] = {}
    stack: list[str] = []
    found: list[tuple[int, str]] = []
    reported: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        color[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if color.get(dep, 0) == 0:
                visit(dep)
            elif color[dep] == 1:
                loop = stack[stack.index(dep) :]
                key = frozenset(loop)
                if key not in reported:
                    reported.add(key)
                    # A -> B means "A depends on B"; print it in dependency order.
                    task = plan.get(loop[0])
                    line = task.field_lines.get("deps", task.line) if task else 0
                    found.append(
                        (line, "dependency cycle: " + " -> ".join([*loop, loop[0]]) + " (each depends on the next)")
                    )
        stack.pop()
        color[node] = 2

    for task in plan.tasks:
        if color.get(task.id, 0) == 0:
            visit(task.id)
    return found


# -- rendering and appending -------------------------------------------------------------------------


def render_task(task: Task) -> str:
    out = [f"## {task.id}: {task.title}\n", "\n" * task.gap]
    out += [f"- {k}: {v}\n" if v else f"- {k}:\n" for k, v in task.fields.items()]
    out.append(task.brief)
    return "".join(out)


def render(plan: Plan) -> str:
    return plan.preamble + "".join(render_task(t) for t in plan.tasks)


def topo_order(plan: Plan, ids: list[str] | None = None) -> list[str]:
    """Dependency order (deps first); plan order breaks ties. ``ids`` restricts the result."""
    wanted = set(ids) if ids is not None else set(plan.ids())
    position = {t.id: n for n, t in enumerate(plan.tasks)}
    done: set[str] = set()
    order: list[str] = []

    def place(task_id: str) -> None:
        if task_id in done:
            return
        done.add(task_id)
        task = plan.get(task_id)
        for dep in sorted(task.deps if task else [], key=lambda d: position.get(d, 0)):
            place(dep)
        order.append(task_id)

    for task in plan.tasks:
        place(task.id)
    return [t for t in order if t in wanted]
