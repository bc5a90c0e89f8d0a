"""``orch view``'s text: a card per task (``orch.views.taskview``), its sections from coarse to fine."""

from __future__ import annotations

from typing import Any

from orch.core.text import age, one_line, printable


def cards_text(cards: list[dict[str, Any]]) -> str:
    if not cards:
        return "no tasks in the plan (add one: orch plan add ID --title ...)"
    return "\n\n".join(card_text(c) for c in cards)


def card_text(card: dict[str, Any]) -> str:
    lines = [f"{card['id']}: {card['title']}", f"  level      {card['level']} ({printable(card['level_why'])})"]
    lines += _goal(card["goal"])
    if "feature" in card:
        lines += _section("feature", _feature(card["feature"]))
    if "component" in card:
        lines += _section("component", _component(card["component"]))
    if "code" in card:
        lines += _code(card["code"])
    return "\n".join(lines)


def _section(name: str, said: list[str]) -> list[str]:
    return [f"  {name if i == 0 else '':<10} {text}" for i, text in enumerate(said or ["-"])]


def _goal(g: dict[str, Any]) -> list[str]:
    parts = [g["state"] + (f" ({printable(str(g['reason']))})" if g.get("reason") else "")]
    if g.get("iteration") is not None:
        parts.append(f"iteration {g['iteration']}/{g.get('max_iterations') or '-'}")
    if g.get("strategy"):
        parts.append(f"strategy {g['strategy']}")
    if g["checks"]:
        failing = [c["name"] for c in g["checks"] if not c["passed"]]
        parts.append(
            f"checks {g['checks_passing']}/{len(g['checks'])} passing"
            + (f" ({', '.join(failing)} failing)" if failing else "")
        )
    if g.get("seconds") is not None:
        parts.append(("ran " if g.get("finished_at") else "running for ") + age(g["seconds"]))
    if g.get("tokens") is not None or g.get("cost_usd") is not None:
        cost = f", ${g['cost_usd']:.2f}" if isinstance(g.get("cost_usd"), (int, float)) else ""
        parts.append(f"{g.get('tokens') or 0:,} tokens{cost}")
    return _section("goal", [", ".join(parts)])


def _feature(f: dict[str, Any]) -> list[str]:
    said = []
    a = f.get("accept")
    if a:
        said.append(f"accept: {'passed' if a['passed'] else 'failed'} ({printable(str(a.get('command') or ''))})")
    else:
        said.append("accept: not run yet")
    v = f.get("verdict")
    if v:
        ok = "mergeable" if v.get("mergeable") else "not mergeable"
        said.append(f"verdict: {v['result']} at {str(v.get('sha') or '')[:12]} ({ok})")
        for x in v["violations"]:
            said.append(f"  - {one_line(str(x['path']))}: {printable(str(x['rule']))}")
        if v["pending_acks"]:
            said.append(f"  waits for an ack of {', '.join(v['pending_acks'])} (orch ack)")
    else:
        said.append("verdict: not verified yet")
    if f.get("merge"):
        said.append(f"merge: {f['merge']}")
    for i in f["inbox"]:
        how = i["state"] if i["state"] == "open" else f"{i['state']} by {i.get('answered_by') or '?'}"
        note = f": {printable(str(i['note']))}" if i.get("note") else ""
        said.append(f"inbox {i['id']} ({i['kind']}) {how}{note}: {_short(i['asked'])}")
    b = f.get("blocker")
    if b:
        said.append(f"blocked: {b['why'] or 'see the report'} ({b['report']})")
        said += [f"  {ln}" for ln in b["question"].splitlines()[:6] if ln.strip()]
    for s in f["strategy_shifts"]:
        said.append(f"strategy shift after iteration {s['iteration']}: {s['why']}")
    return said


def _short(text: str, width: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 3] + "..."


def _component(c: dict[str, Any]) -> list[str]:
    said = []
    if c.get("base") is None:
        said.append("no work yet (the task has no branch)")
    else:
        said.append(f"{c['changed']} file(s) changed from {c['base'][:12]} to {c['tip'][:12]}")
        said.append(f"folders: {', '.join(c['folders']) or '-'}")
        if c["modules"]:
            said.append(f"modules: {', '.join(c['modules'])}")
        said.append(f"added: {', '.join(c['added']) or '-'}")
        said.append(f"deleted: {', '.join(c['deleted']) or '-'}")
        for d in c["definitions"]:
            if d.get("unreadable"):
                said.append(f"definitions in {one_line(str(d['path']))}: cannot be read")
                continue
            what = [f"+{x}" for x in d["added"]] + [f"-{x}" for x in d["removed"]]
            said.append(f"definitions in {one_line(str(d['path']))}: {', '.join(what)}")
        said.append(f"dependency manifests: {', '.join(c['manifests']) or 'none changed'}")
    for lk in c["locks"]:
        said.append(f"lock {lk['lock']} ({lk['mode']} {lk['kind']}): {lk['pressure']}")
    return [printable(s) for s in said]


def _code(c: dict[str, Any]) -> list[str]:
    if c.get("base") is None:
        return _section("code", ["no work yet (the task has no branch)"])
    lines = _section("code", [f"diff {c['base'][:12]}..{c['tip'][:12]}" + (" (cut short)" if c["truncated"] else "")])
    for f in c["files"]:
        marks = [f"locked by {', '.join(f['locks'])}"] if f["locks"] else []
        if f["regions"]:
            marks.append(f"regions {', '.join(f['regions'])}")
        lines.append(f"    {one_line(str(f['path']))} ({f['status']})" + (f"  [{'; '.join(marks)}]" if marks else ""))
        if f["binary"]:
            lines.append("      (binary)")
        for ln in f["lines"]:
            if ln["op"] == "@":
                lines.append(f"      {ln['text']}")
                continue
            number = ln["new"] if ln["new"] is not None else ln["old"]
            locked = f"  <- {', '.join(ln['locks'])}" if ln["locks"] else ""
            lines.append(f"    {'!' if ln['locks'] else ' '} {ln['op']}{number:>5} {ln['text']}{locked}")
    return lines
