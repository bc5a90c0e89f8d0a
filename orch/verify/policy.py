"""The command policy: how risky a shell command an agent wants to run is (SAFE, RISKY or CRITICAL).

A command line is read into the simple commands it runs (``orch.verify.shellcmds``); each is given
the tier of the first rule that matches it (``policyrules``: a regular expression over what it reads
as, perhaps only when one of its paths lies outside the task's worktree), the line as a whole is
matched by the ``level: line`` rules, and the worst tier wins. A line orch cannot read is CRITICAL.

The rules come from ``.orch/policy.yaml`` (``schemas/policy.schema.json``), followed by the built-in
ones unless it says ``builtin: false``; without the file, the built-in ones alone. Like the locks,
the policy in force is the one committed on the base branch (the built-in rules when none is), made
only stricter by the working copy: a command is judged by both and gets the worse tier. Agents run
as the person's user and can edit the main checkout's files; only a commit loosens the policy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from orch.core.errors import InputError
from orch.verify import policyrules, shellcmds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orch.core.context import Ctx
    from orch.core.store import Store

TIERS = ("SAFE", "RISKY", "CRITICAL")
RANK = {tier: n for n, tier in enumerate(TIERS)}
POLICY = "policy.yaml"  # under .orch/
TEMP = ("/tmp", "/var/tmp")  # scratch: what lies below them is not the person's work
MAX_TEXT = 32 << 10  # a longer line is not judged (CRITICAL): the rules' time must stay well under the hooks'
MAX_COMMANDS = 256


@dataclass(frozen=True)
class Rule:
    id: str
    tier: str
    level: str  # command | line; built in only: fact (a ``Cmd.facts`` entry), assign (a ``NAME=VALUE`` it sets)
    outside: str | None  # operands | writes | None
    rx: re.Pattern[str]
    why: str
    where: str  # "built in", or the file and line that holds it

    @property
    def match(self) -> str:
        return self.rx.pattern


@dataclass
class Policy:
    rules: list[Rule]
    unknown: str
    source: str  # what the rules came from, for messages


@dataclass
class Finding:
    """One command's tier (or the line's, ``shown`` = the line's programs) and the rule that gave it."""

    shown: str
    origin: str
    tier: str
    rule: str
    why: str
    where: str
    path: str | None = None  # the path outside the worktree that made an ``outside`` rule apply


@dataclass
class Verdict:
    command: str
    tier: str
    findings: list[Finding]
    sources: list[str]
    notes: list[str] = field(default_factory=list)

    def worst(self) -> list[Finding]:
        return [f for f in self.findings if f.tier == self.tier]


def builtin() -> Policy:
    return Policy(_builtin_rules(), policyrules.UNKNOWN, "orch's built-in rules")


def _builtin_rules() -> list[Rule]:
    return [
        Rule(rid, tier, level, outside, re.compile(match), why, "built in")
        for rid, tier, level, outside, match, why in policyrules.BUILTIN
    ]


def parse(text: str, where: str, *, store: Store | None = None) -> Policy:
    """A policy file's text (validated by the schema; each ``match`` compiled): a ``Policy``, else
    ``InputError`` naming ``where:line``."""
    from pathlib import Path

    from orch.core.store import Store, _item_lines

    data = (store or Store(Path("."), Path(".orch"), cache=False)).loads(text, "policy", where=where)
    lines = _item_lines(text, "rules")
    rules: list[Rule] = []
    for n, item in enumerate(data.get("rules") or []):
        line = lines[n] if n < len(lines) else 1
        try:
            rx = re.compile(item["match"])
        except (re.error, RecursionError, OverflowError) as exc:
            why = exc.msg if isinstance(exc, re.error) else "nested too deep"
            raise InputError(
                f"{where}:{line}: rules[{n}].match: not a regular expression ({why})",
                hint="a Python regular expression, searched in the command as orch reads it (see orch policy check)",
            ) from None
        rid = item.get("id") or f"rule {n + 1}"
        level, outside = item.get("level", "command"), item.get("outside")
        rules.append(Rule(rid, item["tier"], level, outside, rx, item.get("why") or "", f"{where}:{line}"))
    if data.get("builtin", True):
        rules += _builtin_rules()
    return Policy(rules, data.get("unknown", policyrules.UNKNOWN), where)


def in_force(ctx: Ctx) -> list[Policy]:
    """The policies that judge: the committed one (else the built-in rules), and the working copy's
    when it differs. Parsed from git and from the file, never from a cache."""
    committed = ctx.committed()
    theirs = committed.get(POLICY)
    path = ctx.project.orch_dir / POLICY
    try:
        mine: bytes | None = path.read_bytes()
    except FileNotFoundError:
        mine = None
    except OSError as exc:
        raise InputError(f"{ctx.project.rel(path)}: cannot read it ({exc.strerror})") from None
    store = ctx.judging().store
    there = committed.where(POLICY)
    floor = builtin() if theirs is None else parse(_text(theirs, there), there, store=store)
    if mine is None or mine == theirs:
        return [floor]
    where = ctx.project.rel(path)
    return [floor, parse(_text(mine, where), where, store=store)]


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start})") from None


# -- judging a command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a command runs: its folder, the task's worktree, and the main checkout."""

    cwd: str
    top: str
    root: str


def judge(policies: list[Policy], command: str, place: Place) -> Verdict:
    """The tier of ``command`` run at ``place``: the worse of what each policy says, command by command
    (and every ``level: line`` rule of each that matches)."""
    judged = [_judge_one(p, command, place) for p in policies]
    floor, _ = judged[0]
    findings = []
    for n, found in enumerate(floor):  # each policy read the same commands, in the same order
        others = [each[n] for each, _ in judged[1:] if n < len(each)]
        findings.append(max([found, *others], key=lambda f: RANK[f.tier]))  # ties: the committed rule
    for _, lines in judged:
        findings += [f for f in lines if f not in findings]
    tier = max((f.tier for f in findings), key=RANK.__getitem__, default="SAFE")
    verdict = Verdict(command, tier, findings, [p.source for p in policies])
    tiers = [max((f.tier for f in [*each, *lines]), key=RANK.__getitem__, default="SAFE") for each, lines in judged]
    for policy, own in zip(policies[1:], tiers[1:], strict=True):
        if RANK[own] < RANK[tiers[0]]:
            verdict.notes.append(
                f"{policy.source} would make it {own}, but it is judged {tiers[0]} by {policies[0].source}: "
                "an uncommitted edit cannot loosen the policy"
            )
    return verdict


def _judge_one(policy: Policy, command: str, place: Place) -> tuple[list[Finding], list[Finding]]:
    """What ``policy`` says of each command of the line, and of the line (its ``level: line`` rules)."""
    try:
        if len(command) > MAX_TEXT:
            raise shellcmds.Unreadable(f"over {MAX_TEXT // 1024} KiB: write big files with the file tools")
        cmds = shellcmds.read(command)
        if len(cmds) > MAX_COMMANDS:
            raise shellcmds.Unreadable(f"over {MAX_COMMANDS} commands")
    except (shellcmds.Unreadable, RecursionError) as exc:
        why = f"orch cannot read this command line ({exc}), so it cannot tell what it runs"
        shown = command if len(command) <= 300 else command[:300] + "..."
        return [Finding(shown, "", "CRITICAL", "unreadable", why, "built in")], []
    findings: list[Finding] = []
    here: str | None = place.cwd
    for cmd in cmds:
        findings.append(_judge_cmd(policy, cmd, place, here))
        if cmd.depth == 0 and cmd.program in ("cd", "pushd"):
            here = _cd(cmd, here)
    if not findings:
        findings.append(Finding("", "", "SAFE", "empty", "runs nothing", "built in"))
    lines = []
    for shown in _lines(cmds):
        rule = next((r for r in policy.rules if r.level == "line" and r.rx.search(shown)), None)
        if rule is not None:
            lines.append(Finding(shown, "the line", rule.tier, rule.id, rule.why, rule.where))
    return findings, lines


def _judge_cmd(policy: Policy, cmd: shellcmds.Cmd, place: Place, cwd: str | None) -> Finding:
    found = _by_rules(policy, cmd, place, cwd)
    if not cmd.facts and not cmd.assigns:
        return found
    # what its words say it does (`sed -n 1e ...`, `PATH=. ls`) counts whatever the first rule said
    for rule in policy.rules:
        if RANK[rule.tier] <= RANK[found.tier] or rule.level not in ("fact", "assign"):
            continue
        said = cmd.facts if rule.level == "fact" else [w.text for w in cmd.assigns]
        hit = next((each for each in said if rule.rx.search(each)), None)
        if hit is not None:
            found = Finding(cmd.shown, cmd.origin, rule.tier, rule.id, rule.why, rule.where, hit)
    return found


def _by_rules(policy: Policy, cmd: shellcmds.Cmd, place: Place, cwd: str | None) -> Finding:
    text = cmd.text()
    for rule in policy.rules:
        if rule.level != "command":
            continue
        path = None
        if rule.outside is not None:
            path = outside(cmd, rule.outside, place, cwd)
            if path is None:
                continue
        if rule.rx.search(text):
            return Finding(cmd.shown, cmd.origin, rule.tier, rule.id, rule.why, rule.where, path)
    why = f"no rule says what {cmd.program or 'it'} does"
    return Finding(cmd.shown, cmd.origin, policy.unknown, "unknown", why, policy.source)


def _lines(cmds: list[shellcmds.Cmd]) -> list[str]:
    """Each script's programs joined by their operators (``curl | sh``), for the ``level: line`` rules."""
    scripts: dict[int, list[str]] = {}
    for cmd in cmds:
        name = cmd.program
        if name in ("sudo", "doas") and len(cmd.argv) > 1:
            nxt = next((w for w in cmd.argv[1:] if not w.text.startswith("-")), None)
            name = f"{name} {os.path.basename(nxt.text)}" if nxt is not None else name
        sep = f" {cmd.sep.strip()} " if cmd.sep.strip() else ""
        scripts.setdefault(cmd.script, []).append(f"{name or '-'}{sep}")
    return ["".join(parts).strip() for parts in scripts.values()]


def _cd(cmd: shellcmds.Cmd, cwd: str | None) -> str | None:
    """Where ``cd`` leaves the commands after it (None: not known)."""
    args = [w for w in cmd.argv[1:] if not w.text.startswith("-") or w.text == "-"]
    if not args:
        return os.path.expanduser("~")
    target = args[0]
    if target.dynamic or target.text == "-" or cmd.fed_by_xargs:
        return None
    path = os.path.expanduser(target.text)
    if os.path.isabs(path):
        return os.path.normpath(path)
    return None if cwd is None else os.path.normpath(os.path.join(cwd, path))


# -- paths outside the worktree ----------------------------------------------------------------------

_TAKES_FIRST = {"chmod", "chown", "chgrp"}  # their first operand is a mode or an owner, not a path


def outside(cmd: shellcmds.Cmd, which: str, place: Place, cwd: str | None) -> str | None:
    """The first of ``cmd``'s operands (or the files it writes), read from ``cwd`` (None: not known),
    that lies outside the task's worktree, is the worktree itself, lies in its ``.git``, or cannot be
    known; None when all lie inside (or in a scratch folder such as /tmp, outside the project). The files
    it writes include those below the folders it writes into (``cp x DIR``, ``find DIR -delete``)."""
    if which == "writes":
        for word in cmd.changes:
            if _outside(word, place, cwd, below=True):
                return word.shown()
        words = cmd.writes
    else:
        if cmd.fed_by_xargs:
            return "(what its input names)"
        words, options = [], True
        for w in cmd.argv[1:]:
            if options and w.text == "--":
                options = False
            elif options and w.text.startswith("-") and len(w.text) > 1 and not w.dynamic:
                continue
            else:
                words.append(w)
        if cmd.program in _TAKES_FIRST:
            words = words[1:]
    for word in words:
        if _outside(word, place, cwd):
            return word.shown()
    return None


def _outside(word: shellcmds.Word, place: Place, cwd: str | None, *, below: bool = False) -> bool:
    if word.dynamic:
        return True
    if word.brace:  # bash makes it several words: each is judged
        texts = _braces(word.text)
        if texts is None:
            return True
        for text in texts:
            each = shellcmds.Word(text, text, word.start, word.end)
            each.glob = word.glob
            if _outside(each, place, cwd, below=below):
                return True
        return False
    text = os.path.expanduser(word.text)
    if below:  # a file it may write in that folder
        text = os.path.join(text, "x")
    if shellcmds.is_glob(word):
        head, _, tail = text.partition(next(c for c in text if c in "*?["))
        folder = head.rpartition("/")[0] if "/" in head else ""
        rest = (head.rpartition("/")[2] if "/" in head else head) + tail
        # `dir/*` empties dir itself; `dir/*.pyc` or `dir/x*/y` reaches only things inside it
        text = (folder or ".") if rest.strip("*./") == "" else os.path.join(folder or ".", "x")
    if not os.path.isabs(text) and cwd is None:
        return True
    full = os.path.normpath(os.path.join(cwd or "/", text))
    candidates = {full}
    parent = os.path.dirname(full)
    if os.path.isdir(parent):
        candidates.add(os.path.join(os.path.realpath(parent), os.path.basename(full)))
    return any(_outside_path(path, place) for path in candidates)


_BRACE = re.compile(r"\{([^{}]*)\}")


def _braces(text: str, limit: int = 64) -> list[str] | None:
    """The words bash's brace expansion makes of ``text`` (``a{b,c}`` -> ``ab``, ``ac``; a sequence
    ``{1..9}`` stands for its first item, which lies in the same folder as the others); None past ``limit``."""
    out, todo = [], [text]
    while todo:
        each = todo.pop()
        m = next((m for m in _BRACE.finditer(each) if "," in m.group(1) or ".." in m.group(1)), None)
        if m is None:
            out.append(each)
        else:
            items = m.group(1).split(",") if "," in m.group(1) else [m.group(1).partition("..")[0]]
            todo += [each[: m.start()] + item + each[m.end() :] for item in items]
        if len(out) + len(todo) > limit:
            return None
    return out


def _outside_path(path: str, place: Place) -> bool:
    tops = {os.path.normpath(place.top), os.path.realpath(place.top)}
    for top in tops:
        rel = os.path.relpath(path, top)
        if rel not in (".", "..") and not rel.startswith("../"):
            return rel == ".git" or rel.startswith(".git/")
    if any(t == path or t.startswith(path.rstrip("/") + "/") for t in tops):
        return True  # the worktree itself, or a folder that holds it
    home = os.path.expanduser("~")
    if home != "~" and (path == home or path.startswith(home.rstrip("/") + "/")):
        return True  # the person's own files
    roots = {os.path.normpath(place.root), os.path.realpath(place.root)}
    if any(path == r or path.startswith(r + "/") or r.startswith(path.rstrip("/") + "/") for r in roots):
        return True  # the project: the main checkout, other tasks' worktrees
    scratch = {*TEMP, os.environ.get("TMPDIR") or "/tmp"}
    return not any(path.startswith(s.rstrip("/") + "/") for s in scratch if s)


# -- explaining ------------------------------------------------------------------------------------


def explain(verdict: Verdict) -> str:
    """What ``orch policy check`` prints: the tier, then each command with its tier and rule."""
    lines = [f"{verdict.tier}: {verdict.command}"]
    width = max((len(f.tier) for f in verdict.findings), default=5)
    for f in verdict.findings:
        origin = f" (in {f.origin})" if f.origin and f.origin != "the line" else ""
        what = f"the line: {f.shown}" if f.origin == "the line" else f"{f.shown}{origin}"
        lines.append(f"  {f.tier:<{width}}  {what}")
        path = f" ({f.path})" if f.path else ""
        lines.append(f"  {'':<{width}}    {f.rule} [{f.where}]: {f.why}{path}")
    lines += [f"  note: {note}" for note in verdict.notes]
    lines.append(f"rules: {' + '.join(verdict.sources)}")
    return "\n".join(lines)


def as_json(verdict: Verdict) -> dict[str, object]:
    return {
        "command": verdict.command,
        "tier": verdict.tier,
        "commands": [
            {
                "command": f.shown,
                "in": f.origin or None,
                "tier": f.tier,
                "rule": f.rule,
                "where": f.where,
                "why": f.why,
                "path": f.path,
            }
            for f in verdict.findings
        ],  # fmt: skip
        "rules": verdict.sources,
        "notes": verdict.notes,
    }


def check(ctx: Ctx, command: str, *, cwd: str | None = None) -> Verdict:
    """``orch policy check``: how ``command`` would be judged run in ``cwd`` (default: here), in the
    worktree that holds it (or the main checkout)."""
    from orch.core import git

    here = os.path.abspath(cwd or os.getcwd())
    if not os.path.isdir(here):
        raise InputError(f"{here}: no such folder", hint="--cwd names the folder the command would run in")
    r = git.run(["rev-parse", "--show-toplevel"], cwd=here, check=False)
    top = r.stdout.strip() if r.ok and r.stdout.strip() else str(ctx.project.root)
    return judge(in_force(ctx.judging()), command, Place(here, top, str(ctx.project.root)))
