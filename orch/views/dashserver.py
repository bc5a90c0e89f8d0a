"""``orch ui``'s web server: the standard library's ``ThreadingHTTPServer`` on 127.0.0.1.

Access: a random token, given in the URL ``orch ui`` prints, and carried by every request: in the
URL (``?token=``: every link, form and the event stream's URL are rendered with it; a form also
holds it as a hidden field) or, for the page's fetches, in an ``X-Orch-Token`` header. No cookie:
browsers send 127.0.0.1's cookies to every port, so any local web server the person opens would get
it. ``Referrer-Policy: same-origin`` keeps the URL off other sites. Any request without the token is
refused (403), as is one whose ``Host`` is not this server's (DNS rebinding). A POST also needs the
page's CSRF token and an ``Origin`` (or ``Referer``) of this server. ``--open`` opens a URL with a
one-time code instead (``/open?code=``), traded once for the token URL: the token never reaches the
browser's command line. Every answer carries a strict Content-Security-Policy: scripts and styles
only from ``/static/``, no inline ones.

Connections: each gets ``TIMEOUT`` seconds per request (the event stream excepted), and at most
``MAX_CONNECTIONS`` are served at once (503 beyond). A client that goes away is not reported.

Live: ``/events`` is a server-sent-events stream. One ``Watcher`` thread looks at the event log, the
status files, the inbox and the rule files (their size and mtime, every ``POLL`` seconds) and wakes
the streams when one changed; each page then fetches its part again (``/part/...``).

The server keeps no state of its own: each request reads the files again (``dashdata``).
"""

from __future__ import annotations

import errno
import hmac
import json
import secrets
import socket
import sys
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
TIMEOUT = 10.0  # seconds a connection may take to send its request (and to take the answer)
MAX_CONNECTIONS = 64
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
        b"Retry-After: 1\r\n\r\ntoo many connections\r\n")
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)
FRESH = 2.0  # seconds a rendering is served again while no watched file changes
KEEPALIVE = 15.0


class Dashboard:
    """One ``orch ui``: the server, its token, its CSRF token and the watcher feeding its streams."""

    def __init__(self, root: Path, port: int = 0, report: Callable[[str], None] | None = None) -> None:
        from orch.inbox.person import require_person

        self.report = report or (lambda line: None)  # one line for a request that failed (not a client gone)
        require_person(["ui"])  # the server answers the inbox: a person's, never an agent's
        self.ctx = open_ctx(root)  # the project must be there, and readable, before anything is served
        self.root = self.ctx.project.root
        self.token = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.code: str | None = secrets.token_urlsafe(32)  # ``--open``'s, good once
        self._code_lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.dashboard = self
        self.port = int(self.httpd.server_address[1])
        self.hosts = hosts(self.port)
        self.origins = {f"http://{h}" for h in self.hosts}
        self.keys = dashhtml.Keys(csrf=self.csrf, token=self.token)
        try:
            base = str(self.ctx.working_config.base_branch)
        except Exception:  # a broken config: the page says so; the ref is not watched
            base = None
        self.watcher = Watcher(self.ctx.project, base_branch=base)
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
        """After an action: the next page reads the files again, and the streams learn of the change
        now (the page the action redirects to starts from it, instead of refreshing at once)."""
        with self._making:
            self._made.clear()
        self.watcher.check()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    @property
    def open_url(self) -> str:
        """The URL ``--open`` gives the browser: a one-time code, not the token (a browser's command
        line is readable by every local user in ``/proc``)."""
        return f"http://127.0.0.1:{self.port}/open?code={self.code}"

    def redeem(self, code: str) -> bool:
        """True once for the right one-time code; never again after."""
        with self._code_lock:
            if self.code is None or not hmac.compare_digest(code.encode(), self.code.encode()):
                return False
            self.code = None
            return True

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


def hosts(port: int) -> set[str]:
    """The ``Host`` values a browser sends to this server (the port left out when it is 80, the
    scheme's own)."""
    names = ("127.0.0.1", "localhost")
    return {f"{n}:{port}" for n in names} | (set(names) if port == 80 else set())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    dashboard: Dashboard

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # too many at once: refused here, no thread for it
            try:
                request.settimeout(1.0)
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is nobody's concern; anything else is one line, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, GONE) or (isinstance(exc, OSError) and exc.errno in _GONE_ERRNOS):
            return
        self.dashboard.report(f"orch ui: a request failed: {type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: the event stream ends with its socket
    server_version = "orch-ui"
    sys_version = ""
    timeout = TIMEOUT  # set on the socket before the request is read (the event stream lifts it)
    error_content_type = "text/html; charset=utf-8"

    def end_headers(self) -> None:
        if not getattr(self, "_common_sent", False):  # ``send_error``'s answers too (501, 431, 400)
            self._common_headers()
        super().end_headers()

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
        self._common_sent = True
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

    def _host_ok(self) -> bool:
        return self.headers.get("Host") in self.dash.hosts

    def _allowed(self, given: str) -> bool:
        """The request's ``Host`` is this server's and it carries the token (``given``: from the URL or
        the form; the ``X-Orch-Token`` header otherwise)."""
        if not self._host_ok():
            return False
        given = given or self.headers.get("X-Orch-Token") or ""
        return bool(given) and hmac.compare_digest(given.encode(), self.dash.token.encode())

    # -- GET ------------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/open" and self._host_ok():  # ``--open``'s one-time code, traded for the token URL
            if self.dash.redeem((query.get("code") or [""])[0]):
                self._redirect(f"/?token={self.dash.token}")
            else:
                self._refuse(403, "this link was used already: open the URL orch ui printed")
            return
        if not self._allowed((query.get("token") or [""])[0]):
            self._refuse(403, "this dashboard needs the token orch ui printed (open the URL it gave)")
            return
        try:
            self._route(url.path, query)
        except OrchError as exc:
            self._refuse(404 if "no task" in str(exc) or "not a task id" in str(exc) else 400, _said(exc))
        except GONE:
            return
        except Exception as exc:  # a bug: said on the page, the server goes on
            self._refuse(500, f"internal error: {type(exc).__name__}: {exc}")

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        from orch.views import dashdata

        said = (query.get("said") or [""])[0] or None
        error = (query.get("error") or [""])[0] or None
        keys = self.dash.keys
        title = f"orch · {self.dash.root.name}"
        dash = self.dash

        def data() -> dict[str, Any]:
            return dict(dash.made("state", lambda: dashdata.snapshot(open_ctx(dash.root))))

        def main() -> str:
            return str(dash.made("main", lambda: dashhtml.main(data(), keys)))

        if path == "/":
            body = dashhtml.flash(said, error) + main()
            self._html(dashhtml.page(title, body, keys=keys, kind="main"))
        elif path == "/part/main":
            self._html(main())
        elif path.startswith("/part/log/"):
            task = path.rpartition("/")[2]
            self._html(dashhtml.log_section(dashdata.log_tail(open_ctx(dash.root), task)))
        elif path.startswith("/task/") or path.startswith("/part/task/"):
            task = path.rpartition("/")[2]
            body = dashhtml.task_page(dashdata.task_detail(open_ctx(dash.root), task, data()), keys)
            if path.startswith("/part/"):
                self._html(body)
            else:
                self._html(dashhtml.page(f"{task} · {title}", body, keys=keys, kind="task", task=task))
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
        if self.command == "HEAD":
            return
        self.connection.settimeout(KEEPALIVE * 2)  # its own pace: a write every KEEPALIVE seconds
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
        except OSError:  # the browser went away (a timeout included)
            return

    # -- POST -----------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if not self._host_ok():
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
        try:
            body = self.rfile.read(length).decode("utf-8")
            pairs = urllib.parse.parse_qs(body, keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            self._refuse(400, "the form is not UTF-8 text")
            return
        form = {k: v[0] for k, v in pairs.items()}
        token = form.pop("token", "") or (urllib.parse.parse_qs(url.query).get("token") or [""])[0]
        if not self._allowed(token):
            self._refuse(403, "this dashboard needs the token orch ui printed (open the URL it gave)")
            return
        given = form.pop("csrf", "") or self.headers.get("X-CSRF-Token") or ""
        if not given or not hmac.compare_digest(given.encode(), self.dash.csrf.encode()):
            self._refuse(403, "the form's CSRF token is missing or wrong: reload the dashboard")
            return
        if not url.path.startswith("/act/"):
            self._refuse(404, "no such action")
            return
        try:
            self._act(url.path[len("/act/") :], form)
        except GONE:
            return
        except Exception as exc:  # a bug: said on the page, the server goes on
            self._refuse(500, f"internal error: {type(exc).__name__}: {exc}")

    def _act(self, action: str, form: dict[str, str]) -> None:
        from orch.views import dashactions

        try:
            done = dashactions.run(self.dash.root, action, form)
        except OrchError as exc:  # said as the command would say it
            self.dash.forget()
            self._redirect("/?" + urllib.parse.urlencode({"error": _said(exc), "token": self.dash.token}))
            return
        if done.confirm is not None:
            body = dashhtml.confirm(action, done.confirm, done.fields or {}, self.dash.keys)
            self._html(dashhtml.page(f"confirm · orch · {self.dash.root.name}", body, keys=self.dash.keys,
                                     kind="confirm"))  # fmt: skip
            return
        self.dash.forget()
        self._redirect("/?" + urllib.parse.urlencode({"said": done.said, "token": self.dash.token}))


_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT})


def _said(exc: OrchError) -> str:
    return exc.render().replace("\n  hint: ", " (hint: ") + (")" if exc.hint else "")
