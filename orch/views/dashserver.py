"""``orch ui``'s web server: the standard library's ``ThreadingHTTPServer`` on 127.0.0.1.

Access: a random token, given in the URL ``orch ui`` prints; the first page load trades it for an
HttpOnly, SameSite=Strict cookie (named after the port: cookies do not tell ports apart) and
redirects to the bare URL, so the token leaves the address bar. Any request without one is refused
(403), as is one whose ``Host`` is not this server's (DNS rebinding). A POST also needs the page's
CSRF token and an ``Origin`` (or ``Referer``) of this server. Every answer carries a strict
Content-Security-Policy: scripts and styles only from ``/static/``, no inline ones.

Live: ``/events`` is a server-sent-events stream. One ``Watcher`` thread looks at the event log, the
status files, the inbox and the rule files (their size and mtime, every ``POLL`` seconds) and wakes
the streams when one changed; each page then fetches its part again (``/part/...``).

The server keeps no state of its own: each request reads the files again (``dashdata``).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from orch.core.context import open_ctx
from orch.core.errors import OrchError
from orch.views import dashhtml
from orch.views.dashwatch import Watcher

STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
BODY_MAX = 64 * 1024
FRESH = 2.0  # seconds a rendering is served again while no watched file changes
KEEPALIVE = 15.0


class Dashboard:
    """One ``orch ui``: the server, its token, its CSRF token and the watcher feeding its streams."""

    def __init__(self, root: Path, port: int = 0) -> None:
        from orch.inbox.person import require_person

        require_person(["ui"])  # the server answers the inbox: a person's, never an agent's
        self.ctx = open_ctx(root)  # the project must be there, and readable, before anything is served
        self.root = self.ctx.project.root
        self.token = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.dashboard = self
        self.port = int(self.httpd.server_address[1])
        self.cookie = f"orch_ui_{self.port}"
        self.origins = {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}
        self.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        self.watcher = Watcher(self.ctx.project)
        self.closing = threading.Event()
        self._made: dict[str, tuple[int, float, Any]] = {}
        self._making = threading.RLock()  # the main part is made from the state, under the same lock

    def made(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, or what it gave for ``key`` while no watched file changed since (and for at most
        ``FRESH`` seconds: a crashed agent, a moved branch and "2m ago" are not files it watches). A
        page open in several tabs, each fetching its part on every change, costs one rendering."""
        with self._making:
            version = self.watcher.version
            held = self._made.get(key)
            if held is not None and held[0] == version and time.monotonic() - held[1] < FRESH:
                return held[2]
            value = make()
            self._made[key] = (version, time.monotonic(), value)
            return value

    def forget(self) -> None:
        """After an action: the next page reads the files again."""
        with self._making:
            self._made.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self.watcher.start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def close(self) -> None:
        self.closing.set()
        self.watcher.stop()
        self.httpd.server_close()

    def shutdown(self) -> None:
        self.closing.set()
        self.watcher.stop()
        self.httpd.shutdown()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    dashboard: Dashboard


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: the event stream ends with its socket
    server_version = "orch-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return  # the command's output is the URL; requests are not logged

    # -- the gate every request passes --------------------------------------------------------------

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _common_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _refuse(self, status: int, why: str) -> None:
        self._html(dashhtml.error_page(status, why), status)

    def _redirect(self, where: str, headers: dict[str, str] | None = None) -> None:
        self._send(303, b"", "text/plain", {"Location": where, **(headers or {})})

    def _cookie_token(self) -> str | None:
        from http.cookies import CookieError, SimpleCookie

        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(self.dash.cookie)
        return morsel.value if morsel is not None else None

    def _allowed(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(authorised, by the URL's token)."""
        if self.headers.get("Host") not in self.dash.hosts:
            return False, False
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given.encode(), self.dash.token.encode()):
            return True, True
        cookie = self._cookie_token()
        return bool(cookie) and hmac.compare_digest(str(cookie).encode(), self.dash.token.encode()), False

    # -- GET ------------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        ok, by_url = self._allowed(query)
        if not ok:
            self._refuse(403, "this dashboard needs the token orch ui printed (open the URL it gave)")
            return
        if by_url:  # trade the token for a cookie, and take it out of the address bar
            rest = urllib.parse.urlencode([(k, v) for k, vs in query.items() if k != "token" for v in vs])
            cookie = f"{self.dash.cookie}={self.dash.token}; HttpOnly; SameSite=Strict; Path=/"
            where = url.path if url.path.startswith("/") and not url.path.startswith("//") else "/"  # never off-site
            self._redirect(where + (f"?{rest}" if rest else ""), {"Set-Cookie": cookie})
            return
        try:
            self._route(url.path, query)
        except OrchError as exc:
            self._refuse(404 if "no task" in str(exc) or "not a task id" in str(exc) else 400, _said(exc))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # a bug: said on the page, the server goes on
            self._refuse(500, f"internal error: {type(exc).__name__}: {exc}")

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        from orch.views import dashdata

        said = (query.get("said") or [""])[0] or None
        error = (query.get("error") or [""])[0] or None
        csrf = self.dash.csrf
        title = f"orch · {self.dash.root.name}"
        dash = self.dash

        def data() -> dict[str, Any]:
            return dict(dash.made("state", lambda: dashdata.snapshot(open_ctx(dash.root))))

        def main() -> str:
            return str(dash.made("main", lambda: dashhtml.main(data(), csrf)))

        if path == "/":
            body = dashhtml.flash(said, error) + main()
            self._html(dashhtml.page(title, body, csrf=csrf, kind="main"))
        elif path == "/part/main":
            self._html(main())
        elif path.startswith("/task/") or path.startswith("/part/task/"):
            task = path.rpartition("/")[2]
            body = dashhtml.task_page(dashdata.task_detail(open_ctx(dash.root), task, data()), csrf)
            if path.startswith("/part/"):
                self._html(body)
            else:
                self._html(dashhtml.page(f"{task} · {title}", body, csrf=csrf, kind="task", task=task))
        elif path == "/api/state.json":
            self._json(data())
        elif path.startswith("/api/task/") and path.endswith(".json"):
            self._json(dashdata.task_detail(open_ctx(dash.root), path[len("/api/task/") : -len(".json")], data()))
        elif path.startswith("/static/") and path[len("/static/") :] in STATIC_TYPES:
            name = path[len("/static/") :]
            self._send(200, (STATIC / name).read_bytes(), STATIC_TYPES[name])
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        elif path == "/events":
            self._events()
        else:
            self._refuse(404, "no such page")

    def _json(self, data: Any) -> None:
        self._send(200, json.dumps(data, ensure_ascii=False, default=str).encode(), "application/json")

    def _events(self) -> None:
        """Server-sent events: ``state`` when the tasks, inbox or rules changed, ``log`` (with the task
        ids) when an agent's log grew; a comment every ``KEEPALIVE`` seconds otherwise."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self._common_headers()
        self.end_headers()
        watcher = self.dash.watcher
        seen = watcher.version
        try:
            self.wfile.write(f"event: hello\ndata: {seen}\n\n".encode())
            self.wfile.flush()
            while not self.dash.closing.is_set():
                seen, what = watcher.wait(seen, KEEPALIVE)
                if what is None:
                    self.wfile.write(b": keepalive\n\n")
                else:
                    logs = sorted(w[4:] for w in what if w.startswith("log:"))
                    if "state" in what:
                        self.wfile.write(f"event: state\ndata: {seen}\n\n".encode())
                    if logs:
                        self.wfile.write(f"event: log\ndata: {json.dumps(logs)}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return

    # -- POST -----------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        ok, _ = self._allowed({})
        if not ok:
            self._refuse(403, "this dashboard needs the token orch ui printed (open the URL it gave)")
            return
        origin = self.headers.get("Origin")
        if origin is None:
            referer = urllib.parse.urlsplit(self.headers.get("Referer") or "")
            origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
        if origin not in self.dash.origins:
            self._refuse(403, "a change must come from this dashboard's own page (Origin)")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= BODY_MAX:
            self._refuse(413, "the form is too large")
            return
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        given = form.pop("csrf", "") or self.headers.get("X-CSRF-Token") or ""
        if not given or not hmac.compare_digest(given.encode(), self.dash.csrf.encode()):
            self._refuse(403, "the form's CSRF token is missing or wrong: reload the dashboard")
            return
        if not url.path.startswith("/act/"):
            self._refuse(404, "no such action")
            return
        try:
            self._act(url.path[len("/act/") :], form)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # a bug: said on the page, the server goes on
            self._refuse(500, f"internal error: {type(exc).__name__}: {exc}")

    def _act(self, action: str, form: dict[str, str]) -> None:
        from orch.views import dashactions

        try:
            done = dashactions.run(self.dash.root, action, form)
        except OrchError as exc:  # said as the command would say it
            self.dash.forget()
            self._redirect("/?" + urllib.parse.urlencode({"error": _said(exc)}))
            return
        if done.confirm is not None:
            body = dashhtml.confirm(action, done.confirm, done.fields or {}, self.dash.csrf)
            self._html(dashhtml.page(f"confirm · orch · {self.dash.root.name}", body, csrf=self.dash.csrf,
                                     kind="confirm"))  # fmt: skip
            return
        self.dash.forget()
        self._redirect("/?" + urllib.parse.urlencode({"said": done.said}))


def _said(exc: OrchError) -> str:
    return exc.render().replace("\n  hint: ", " (hint: ") + (")" if exc.hint else "")
