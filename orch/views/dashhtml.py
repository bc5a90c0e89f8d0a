"""``orch ui``'s pages as HTML, rendered on the server from ``dashdata``'s dicts.

Every value goes through ``h`` (HTML-escaped, control characters and bidi overrides shown as
``\\uXXXX``): titles, reasons, paths, notes, diffs and logs are anyone's, agents' included. The page
holds no inline script or style (the Content-Security-Policy forbids them): ``static/app.js`` and
``static/app.css`` are served as files. Forms post to ``/act/<action>`` with the CSRF token and the
access token (hidden fields); every link carries the access token in its URL (``Keys.q``): the
server sets no cookie.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orch.core.text import age, budget_text, printable

MAX_TREE_DEPTH = 12


@dataclass(frozen=True)
class Keys:
    """What a rendered page carries to be let in: the access token (links, forms, the event stream)
    and the CSRF token (forms)."""

    csrf: str
    token: str

    @property
    def q(self) -> str:
        """The query that lets a link in (``href="/task/T1{keys.q}"``)."""
        return f"?token={h(self.token)}"

    def hidden(self) -> str:
        return (f"<input type=\"hidden\" name=\"csrf\" value=\"{h(self.csrf)}\">"
                f"<input type=\"hidden\" name=\"token\" value=\"{h(self.token)}\">")  # fmt: skip


def h(value: object) -> str:
    """``value`` as text safe inside HTML, in an element or a quoted attribute."""
    return html.escape(printable("" if value is None else str(value)), quote=True)


def page(title: str, body: str, *, keys: Keys, kind: str, task: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<meta name=\"csrf\" content=\"{h(keys.csrf)}\"><meta name=\"token\" content=\"{h(keys.token)}\">"
        f"<title>{h(title)}</title><link rel=\"stylesheet\" href=\"/static/app.css{keys.q}\">"
        f"<script src=\"/static/app.js{keys.q}\" defer></script>"
        f"</head><body data-page=\"{h(kind)}\" data-task=\"{h(task)}\">"
        f"<header class=\"top\"><a href=\"/{keys.q}\" class=\"brand\">orch</a> "
        f"<span class=\"project\">{h(title)}</span>"
        "<span id=\"live-state\" class=\"live\" title=\"live updates\">connecting</span></header>"
        f"<div id=\"live\">{body}</div></body></html>\n"
    )


def _form(action: str, keys: Keys, fields: dict[str, str], label: str, *, cls: str = "", extra: str = "") -> str:
    hidden = "".join(f"<input type=\"hidden\" name=\"{h(k)}\" value=\"{h(v)}\">" for k, v in fields.items())
    return (
        f"<form method=\"post\" action=\"/act/{h(action)}\" class=\"inline {h(cls)}\">"
        f"{keys.hidden()}{hidden}{extra}"
        f"<button type=\"submit\" data-action=\"{h(action)}\">{h(label)}</button></form>"
    )


def flash(said: str | None, error: str | None) -> str:
    if error:
        return f"<p class=\"flash error\" id=\"flash\">{h(error)}</p>"
    if said:
        return f"<p class=\"flash\" id=\"flash\">{h(said)}</p>"
    return ""


def main(data: dict[str, Any], keys: Keys) -> str:
    """The main page's live part (``/part/main``): swapped in whole on each change (a flash line, the
    answer to an action, goes before it)."""
    return "".join(
        [
            counts(data["counts"]),
            "<div class=\"grid\">",
            attention(data["inbox"], keys),
            pressure(data, keys),
            "</div>",
            cards(data, keys),
            "<div class=\"grid\">",
            topology(data.get("topology"), keys),
            "<div>",
            requirements(data["requirements"]),
            level_overview(data["levels"], keys),
            "</div></div>",
        ]
    )


def counts(c: dict[str, int]) -> str:
    names = [("active", "active"), ("blocked", "blocked"), ("waiting", "waiting for a person"), ("locks", "locks")]
    cells = "".join(
        f"<div class=\"count count-{k}\" data-count=\"{k}\"><b>{int(c.get(k, 0))}</b> {h(label)}</div>"
        for k, label in names
    )
    return f"<section id=\"counts\" class=\"counts\">{cells}</section>"


def attention(items: list[dict[str, Any]], keys: Keys) -> str:
    if not items:
        rows = "<p class=\"quiet\">nothing waits for a person</p>"
    else:
        rows = "".join(_item(i, keys) for i in items)
    return f"<section id=\"attention\" class=\"panel\"><h2>Needs Attention</h2>{rows}</section>"


def _item(item: dict[str, Any], keys: Keys) -> str:
    task = f" <a href=\"/task/{h(item['task'])}{keys.q}\">{h(item['task'])}</a>" if item.get("task") else ""
    # One form, one note: Reject posts the same fields to its own action.
    answer = (
        f"<form method=\"post\" action=\"/act/approve\" class=\"inline answer\">{keys.hidden()}"
        f"<input type=\"hidden\" name=\"id\" value=\"{h(item['id'])}\">"
        "<input name=\"note\" placeholder=\"note (optional)\" maxlength=\"500\">"
        "<button type=\"submit\" data-action=\"approve\">Approve</button>"
        "<button type=\"submit\" class=\"danger\" data-action=\"reject\" formaction=\"/act/reject\">Reject</button>"
        "</form>"
    )
    return (
        f"<div class=\"item\" id=\"item-{h(item['id'])}\" data-kind=\"{h(item['kind'])}\">"
        f"<span class=\"badge\">{h(item['id'])}</span> <span class=\"kind\">{h(item['kind'])}</span>{task} "
        f"<span class=\"asked\">{h(item.get('phrase') or item.get('asked'))}</span>"
        f"<div class=\"actions\">{answer}</div>"
        f"<div class=\"cli\">or: {h(item.get('answer_with'))}</div></div>"
    )


def pressure(data: dict[str, Any], keys: Keys) -> str:
    p = data["pressure"]
    summary = "".join(
        f"<div class=\"pressure p-{h(k.replace(' ', '-'))}\" data-pressure=\"{h(k)}\"><b>{int(p.get(k, 0))}</b> {h(k)}"
        "</div>"
        for k in ("blocking", "routing around", "clear")
    )
    rows = []
    for lk in data["locks"]:
        what = lk.get("pattern") or lk.get("text") or ""
        tasks = []
        for t in lk["tasks"]:
            ack = ""
            if t["pressure"] == "blocking" and lk["mode"] == "soft":
                ack = _form("ack", keys, {"task": t["id"], "lock": lk["id"]}, "Ack")
            tasks.append(
                f"<span class=\"tp p-{h(t['pressure'].replace(' ', '-'))}\">{h(t['id'])} {h(t['pressure'])}</span>{ack}"
            )
        remove = "" if lk.get("implicit") else _form("lock-rm", keys, {"id": lk["id"]}, "Remove", cls="danger")
        rows.append(
            f"<tr id=\"lock-{h(lk['id'])}\"><td>{h(lk['id'])}</td><td>{_mode(lk['mode'])} {h(lk['kind'])}</td>"
            f"<td class=\"path\">{h(what)}</td><td>{h(lk.get('reason') or '')}</td>"
            f"<td>{''.join(tasks) or '-'}</td><td>{remove}</td></tr>"
        )
    table = (
        "<div class=\"table-wrap\"><table class=\"locks\"><thead><tr><th>ID</th><th>Lock</th><th>Protects</th>"
        "<th>Reason</th><th>Pressure</th>"
        f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        if rows
        else "<p class=\"quiet\">no locks</p>"
    )
    add = (
        "<form method=\"post\" action=\"/act/lock-add\" class=\"add-lock\">"
        f"{keys.hidden()}"
        "<input name=\"pattern\" placeholder=\"path glob or file::Name\" required maxlength=\"500\">"
        "<select name=\"mode\"><option>hard</option><option>soft</option></select>"
        "<select name=\"kind\"><option value=\"\">auto</option><option>path</option><option>test</option>"
        "<option>region</option></select><input name=\"reason\" placeholder=\"reason\" maxlength=\"500\">"
        "<button type=\"submit\" data-action=\"lock-add\">Add lock</button></form>"
    )
    return (
        f"<section id=\"pressure\" class=\"panel\"><h2>Lock Pressure Overview</h2><div class=\"pressures\">{summary}"
        f"</div>{table}{add}</section>"
    )


def _mode(mode: str) -> str:
    return f"<span class=\"badge lock-{'hard' if mode == 'hard' else 'soft'}\">{h(mode)}</span>"


def cards(data: dict[str, Any], keys: Keys) -> str:
    by_id = {t["id"]: t for t in data["tasks"]}
    if not by_id:
        return '<section id="tasks" class="panel"><h2>Tasks</h2><p class="quiet">no tasks in the plan</p></section>'
    groups = []
    for g in data["groups"]:
        inner = "".join(card(by_id[i], keys) for i in g["tasks"])
        groups.append(
            f"<div class=\"group\" data-group=\"{h(g['name'])}\"><h3>{h(g['name'])} <span class=\"n\">"
            f"{len(g['tasks'])}</span></h3>{inner}</div>"
        )
    return f'<section id="tasks" class="panel"><h2>Tasks</h2><div class="groups">{"".join(groups)}</div></section>'


def progress(t: dict[str, Any]) -> str:
    if t.get("iteration") is not None:
        return f"iteration {h(t['iteration'])}/{h(t.get('max_iterations') or '-')}"
    if t.get("iterations") is not None:
        return f"{h(t['iterations'])} iteration(s)"
    return "not started"


def usage(t: dict[str, Any]) -> str:
    u = t.get("usage") or {}
    tokens = u.get("tokens")
    cost = u.get("cost_usd")
    parts = [f"{int(tokens):,} tokens" if isinstance(tokens, (int, float)) else "- tokens"]
    if isinstance(cost, (int, float)):
        parts.append(f"${cost:.2f}")
    budget = t.get("budget") or {}
    if budget.get("tokens") or budget.get("usd"):
        parts.append(f"budget {budget_text(t)}")
    return " · ".join(h(p) for p in parts)


def card(t: dict[str, Any], keys: Keys) -> str:
    locks = "".join(
        f"<li class=\"p-{h(lk['pressure'].replace(' ', '-'))}\">{_mode(lk['mode'])} {h(lk['id'])} {h(lk['kind'])}"
        f" · {h(lk['pressure'])}{' since ' + _when(lk['since']) if lk.get('since') else ''}</li>"
        for lk in t["locks"]
    )
    engaged = f"<ul class=\"engaged\">{locks}</ul>" if locks else ""
    stop = _form("stop", keys, {"task": t["id"]}, "Stop", cls="danger") if t["state"] == "RUNNING" else ""
    reason = f"<div class=\"reason\">{h(t['reason'])}</div>" if t.get("reason") else ""
    return (
        f"<article class=\"card state-{h(t['state'])}\" id=\"task-{h(t['id'])}\" data-state=\"{h(t['state'])}\">"
        f"<div class=\"card-head\"><a class=\"tid\" href=\"/task/{h(t['id'])}{keys.q}\">{h(t['id'])}</a> "
        f"<span class=\"title\">{h(t['title'])}</span></div>"
        f"<div class=\"meta\"><span class=\"badge state\">{h(t['state'])}</span> "
        f"<span class=\"badge level level-{h(t['level'])}\" title=\"{h(t.get('level_why'))}\">{h(t['level'])}</span> "
        f"<span class=\"progress\">{progress(t)}</span></div>"
        f"<div class=\"scope\">scope: <code>{h(t.get('scope') or '(any path not locked)')}</code></div>"
        f"<div class=\"usage\">{usage(t)}</div>{reason}{engaged}{stop}</article>"
    )


def _when(iso: str) -> str:
    from orch.views.status import _age

    return f"<time datetime=\"{h(iso)}\">{h(iso)}</time> ({h(age(_age(iso)))} ago)"


def topology(tree: dict[str, Any] | None, keys: Keys) -> str:
    if not tree:
        body = "<p class=\"quiet\">no topology</p>"
    else:
        body = f"<ul class=\"tree\">{_node(tree, 0, keys)}</ul>"
    return f"<section id=\"topology\" class=\"panel\"><h2>Trust Topology</h2>{body}</section>"


def _node(node: dict[str, Any], depth: int, keys: Keys) -> str:
    locks = "".join(
        f"<span class=\"badge lock-{'hard' if lk.get('hard') else 'soft'}\" title=\"{h(lk.get('kind'))}\">"
        f"{h(lk.get('name'))}</span>"
        for lk in node.get("locks") or []
    )
    tasks = "".join(f"<a class=\"badge task\" href=\"/task/{h(t)}{keys.q}\">{h(t)}</a>"
                    for t in node.get("tasks") or [])  # fmt: skip
    level = node.get("level")
    own = " own" if node.get("level_from") in (node.get("path"), "config") else ""
    lvl = f"<span class=\"badge level level-{h(level)}{own}\" title=\"{h(node.get('level_from'))}\">{h(level)}</span>"
    kids = node.get("children") or []
    inner = ""
    if kids and depth < MAX_TREE_DEPTH:
        inner = "<ul>" + "".join(_node(k, depth + 1, keys) for k in kids) + "</ul>"
    name = "(the repository)" if depth == 0 and node.get("path") in (".", "") else node.get("name") or node.get("path")
    if node.get("folded"):
        inner = f"<span class=\"quiet\"> · {int(node.get('files') or 0)} files</span>"
    return (
        f"<li data-path=\"{h(node.get('path'))}\" class=\"{h(node.get('kind'))}\"><span class=\"name\">{h(name)}</span>"
        f" {lvl if level else ''}{locks}{tasks}{inner}</li>"
    )


def requirements(reqs: list[dict[str, Any]]) -> str:
    if not reqs:
        body = "<p class=\"quiet\">no requirement locks (orch lock require TEXT --check CMD --via KIND)</p>"
    else:
        rows = "".join(
            f"<tr id=\"req-{h(r['id'])}\"><td>{h(r['id'])}</td><td>{_mode(r['mode'])}</td><td>{h(r.get('text'))}</td>"
            f"<td><span class=\"badge via\">{h(r.get('via'))}</span></td><td><code>{h(r.get('check'))}</code></td></tr>"
            for r in reqs
        )
        body = (
            "<table><thead><tr><th>ID</th><th>Mode</th><th>Requirement</th><th>Via</th><th>Check</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    return f"<section id=\"requirements\" class=\"panel\"><h2>Requirement Locks</h2>{body}</section>"


def level_overview(levels: dict[str, Any], keys: Keys) -> str:
    counts = "".join(
        f"<div class=\"count level-{h(name)}\" data-level=\"{h(name)}\"><b>{int(n)}</b> {h(name)}</div>"
        for name, n in levels["tasks"].items()
    )
    rules = "".join(
        f"<li><code>{h(r.get('glob') or r.get('path') or r.get('pattern'))}</code> "
        f"<span class=\"badge level level-{h(r.get('level'))}\">{h(r.get('level'))}</span></li>"
        for r in _rules(levels["rules"])
    )
    rules = rules or "<li class=\"quiet\">no levels yet (set one below, or levels: in .orch/config.yaml)</li>"
    options = "".join(f"<option>{h(name)}</option>" for name in levels["levels"])
    form = (
        "<form method=\"post\" action=\"/act/level\" class=\"set-level\">"
        f"{keys.hidden()}"
        "<input name=\"path\" placeholder=\"path or glob (src/auth/)\" required maxlength=\"500\">"
        f'<select name="level">{options}</select><button type="submit" data-action="level">Set level</button></form>'
    )
    return (
        f"<section id=\"levels\" class=\"panel\"><h2>Level Overview</h2><div class=\"counts small\">{counts}</div>"
        f"<ul class=\"rules\">{rules}</ul>{form}"
        "</section>"
    )


def _rules(rules: Any) -> Iterable[dict[str, Any]]:
    """``list_levels``' rules as dicts, whether it gives dicts or (glob, level) pairs."""
    for r in rules or []:
        if isinstance(r, dict):
            yield r
        elif isinstance(r, (list, tuple)) and len(r) >= 2:
            yield {"glob": r[0], "level": r[1]}


def task_page(detail: dict[str, Any], keys: Keys) -> str:
    """A task's live part (``/part/task/ID``): its card, its diff, the tail of its agent log (the log
    alone is ``/part/log/ID``: a growing log refreshes only that)."""
    t = detail["task"]
    d = detail["diff"]
    diff_text = d["text"] or "(no change yet)"
    lines = "".join(_diff_line(ln) for ln in diff_text.splitlines())
    cut = ""
    if d.get("cut"):
        cut = (f"<p class=\"quiet cut\">(diff cut at {h(d['cut_at'])}: git diff {h(d['base'])} {h(d['tip'])} "
               "for the rest)</p>")  # fmt: skip
    return (
        f"{counts(detail['counts'])}<div class=\"task-page\">{card(t, keys) if t else ''}"
        f"<section class=\"panel\" id=\"diff\"><h2>Diff</h2><pre class=\"diff\">{lines}</pre>{cut}</section>"
        f"{log_section(detail['log'])}</div>"
    )


def log_section(log: dict[str, Any]) -> str:
    note = f" ({h(log['note'])})" if log.get("note") else ""
    return (
        f"<section class=\"panel\" id=\"log\"><h2>Agent log{note}</h2><pre class=\"log\" id=\"log-text\">"
        f"{h(log['text']) or '(empty)'}</pre></section>"
    )


def _diff_line(line: str) -> str:
    cls = "add" if line.startswith("+") else "del" if line.startswith("-") else "hunk" if line.startswith("@@") else ""
    return f"<span class=\"{cls}\">{h(line)}</span>\n"


def confirm(action: str, what: str, fields: dict[str, str], keys: Keys) -> str:
    """The confirmation step of a lock change: the same form again, with ``confirm`` set."""
    return (
        f"<section class=\"panel confirm\" id=\"confirm\"><h2>Confirm</h2><p>{h(what)}</p>"
        f"{_form(action, keys, {**fields, 'confirm': 'yes'}, 'Confirm', cls='danger')}"
        f"<a href=\"/{keys.q}\" class=\"cancel\">Cancel</a></section>"
    )


def error_page(status: int, message: str) -> str:
    return (
        f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title></head>"
        f"<body><h1>{status}</h1><p>{h(message)}</p></body></html>\n"
    )
