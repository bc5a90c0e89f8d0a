"""``orch ui``'s server without a browser: the access token (no cookie, ever), the one-time code of
``--open``, what a misbehaving client gets (a reset, an idle connection, too many connections, a
non-UTF-8 form), the headers on every answer, and the task page's diff (validated base, capped).

The server runs in this process (``Dashboard.serve_forever`` on a thread) on a real project; the
requests are plain sockets and ``http.client``.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git
from vhelpers import commit_in, make_task, setup_project

from orch.views import dashdata, dashserver


class Served:
    def __init__(self, project: Path) -> None:
        self.reported: list[str] = []
        self.dash = dashserver.Dashboard(project, 0, report=self.reported.append)
        self.thread = threading.Thread(target=self.dash.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.dash.port
        self.token = self.dash.token

    def exchange(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    def post(self, path: str, body: bytes, **extra: str) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Origin": f"http://127.0.0.1:{self.port}", "Content-Type": "application/x-www-form-urlencoded"}
        return self.exchange("POST", path, body, {**headers, **extra})


@pytest.fixture
def shop(repo: Path, orch: Orch) -> Path:
    project = setup_project(repo, orch)
    wt = make_task(project, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    assert orch("verify", "T3").returncode == 1  # soft lock L4 waits for an ack
    orch.ok("inbox")  # K1
    return project


@pytest.fixture
def served(shop: Path) -> Iterator[Served]:
    s = Served(shop)
    yield s
    s.dash.shutdown()
    s.thread.join(10)


def test_the_token_is_in_the_url_or_a_header_and_never_a_cookie(served: Served, shop: Path) -> None:
    status, body, headers = served.exchange("GET", f"/?token={served.token}")
    assert status == 200 and "Set-Cookie" not in headers and headers["Referrer-Policy"] == "same-origin"
    page = body.decode()
    assert f'href="/task/T3?token={served.token}"' in page  # links carry it
    assert f'name="token" value="{served.token}"' in page  # so do forms
    assert served.exchange("GET", "/part/main")[0] == 403
    assert served.exchange("GET", "/part/main", headers={"X-Orch-Token": served.token})[0] == 200
    assert served.exchange("GET", "/part/main", headers={"X-Orch-Token": "wrong"})[0] == 403
    assert served.exchange("GET", "/part/main", headers={"Cookie": f"orch_ui_{served.port}={served.token}"})[0] == 403
    csrf = page.split('name="csrf" content="')[1].split('"')[0]
    for body_, why in [(f"id=K1&csrf={csrf}", "no token"), (f"id=K1&csrf={csrf}&token=wrong", "a wrong token")]:
        assert served.post("/act/approve", body_.encode())[0] == 403, why
    assert yaml.safe_load((shop / ".orch/run/inbox/K1.yaml").read_text())["state"] == "open"
    status, _, headers = served.post("/act/approve", f"id=K1&csrf={csrf}&token={served.token}".encode())
    assert status == 303 and "Set-Cookie" not in headers
    where = urllib.parse.urlsplit(headers["Location"])
    assert where.path == "/" and urllib.parse.parse_qs(where.query)["token"] == [served.token]
    assert yaml.safe_load((shop / ".orch/run/inbox/K1.yaml").read_text())["state"] == "approved"


def test_the_one_time_code_opens_once(served: Served) -> None:
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(served.dash.open_url).query)["code"][0]
    assert served.token not in served.dash.open_url
    status, _, headers = served.exchange("GET", "/open?code=wrong")
    assert status == 403
    status, _, headers = served.exchange("GET", f"/open?code={code}")
    assert status == 303 and headers["Location"] == f"/?token={served.token}"
    assert served.exchange("GET", f"/open?code={code}")[0] == 403  # used


def test_no_redirect_leaves_the_server(served: Served) -> None:
    for path in (f"/\\evil.com?token={served.token}", f"//evil.com/?token={served.token}"):
        status, _, headers = served.exchange("GET", path)
        assert status == 404 and "Location" not in headers, path


def test_port_80_hosts() -> None:
    assert dashserver.hosts(80) == {"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}
    assert dashserver.hosts(8080) == {"127.0.0.1:8080", "localhost:8080"}


def test_a_form_that_is_not_utf8_is_refused(served: Served, shop: Path) -> None:
    page = served.exchange("GET", f"/?token={served.token}")[1].decode()
    csrf = page.split('name="csrf" content="')[1].split('"')[0]
    before = (shop / ".orch/config.yaml").read_bytes()
    for body in (b"path=src/\xff\xfe/&level=code", b"path=src/%FF/&level=code"):
        status, text, _ = served.post("/act/level", body + f"&csrf={csrf}&token={served.token}".encode())
        assert status == 400 and b"UTF-8" in text, body
    assert (shop / ".orch/config.yaml").read_bytes() == before


def test_every_answer_has_the_headers_and_head_does_not_stream(served: Served) -> None:
    huge_header = b"GET / HTTP/1.0\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n"
    for raw in (b"BREW / HTTP/1.0\r\n\r\n", huge_header, b"GET / x HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
            s.sendall(raw)
            answer = _read_all(s)
        head = answer.split(b"\r\n\r\n")[0]
        assert head.split(b" ")[1] in (b"400", b"431", b"501"), head
        assert b"Content-Security-Policy: default-src 'none'" in head and b"X-Content-Type-Options: nosniff" in head
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(f"HEAD /events?token={served.token} HTTP/1.0\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        answer = _read_all(s)  # the server closes it: no stream
    assert answer.startswith(b"HTTP/1.0 200") and b"text/event-stream" in answer and answer.endswith(b"\r\n\r\n")


def test_clients_that_reset_idle_or_crowd_are_handled_quietly(served: Served) -> None:
    for _ in range(3):  # a reset in the middle of a request: nothing said on the terminal
        s = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    idle = socket.create_connection(("127.0.0.1", served.port), timeout=3 * dashserver.TIMEOUT)
    assert _read_all(idle) == b""  # closed by the server (no socket timeout here), not held open
    idle.close()
    crowd = [socket.create_connection(("127.0.0.1", served.port), timeout=10)
             for _ in range(dashserver.MAX_CONNECTIONS)]  # fmt: skip
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as extra:
            assert _read_all(extra).startswith(b"HTTP/1.0 503")
        assert threading.active_count() < dashserver.MAX_CONNECTIONS + 20
    finally:
        for s in crowd:
            s.close()
    time.sleep(0.3)
    assert served.exchange("GET", f"/?token={served.token}")[0] == 200  # room again
    assert served.reported == []


def test_the_diff_takes_a_validated_base_and_is_cut(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orch.core.context import open_ctx
    from orch.views import taskchange

    wt = shop / ".orch" / "worktrees" / "T3"
    status = shop / ".orch/run/tasks/T3/status.yaml"
    status.parent.mkdir(parents=True, exist_ok=True)
    planted = tmp_path / "planted"
    status.write_text(f"id: T3\nstate: SUCCESS\nbranch: orch/T3\nbase_sha: --output={planted}\n")
    got = dashdata.diff(open_ctx(shop), "T3")
    assert got["text"] == "" and not planted.exists()  # an option is not a base

    base = git(shop, "rev-parse", "main")
    status.write_text(f"id: T3\nstate: SUCCESS\nbranch: orch/T3\nbase_sha: {base}\n")
    got = dashdata.diff(open_ctx(shop), "T3")
    assert "+better guide" in got["text"] and not got["cut"]
    big = "".join(f"line {n} {'x' * 60}\n" for n in range(40_000))  # ~2.7 MB of added lines
    commit_in(wt, "docs/big.txt", big)
    got = dashdata.diff(open_ctx(shop), "T3")
    assert got["cut"] and len(got["text"].encode()) <= dashdata.DIFF_CAP and got["text"].endswith("\n")
    assert got["tip"] == git(shop, "rev-parse", "orch/T3")
    monkeypatch.setattr(taskchange, "MAX_DIFF_BYTES", 4096)  # orch view --level code reads a capped patch too
    code = taskchange.code(open_ctx(shop), "T3", {"base_sha": base, "branch": "orch/T3"})
    assert code["truncated"] and sum(len(f["lines"]) for f in code["files"]) < 100


def test_the_watcher_sees_git_only_changes(shop: Path) -> None:
    from orch.core.context import open_ctx
    from orch.views.dashwatch import Watcher

    w = Watcher(open_ctx(shop).project, base_branch="main")
    w.start()
    w.stop()
    assert w.check() == frozenset()
    commit_in(shop / ".orch" / "worktrees" / "T3", "docs/more.md", "more\n")  # the task branch moves
    assert w.check() == {"state"}
    git(shop, "commit", "-q", "--allow-empty", "-m", "on main")  # the base branch moves
    assert w.check() == {"state"}
    git(shop, "pack-refs", "--all")
    assert w.check() == {"state"}


def test_a_reset_prints_nothing_on_the_terminal(shop: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "orch", "ui"], cwd=shop, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        port = urllib.parse.urlsplit(proc.stdout.readline().strip()).port or 0
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(0.5)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert stderr == "", stderr


def test_open_gives_the_browser_a_one_time_code_not_the_token(shop: Path, tmp_path: Path) -> None:
    said = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {said}\n")
    browser.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "orch", "ui", "--open"], cwd=shop, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "BROWSER": str(browser)})  # fmt: skip
    try:
        assert proc.stdout is not None
        printed = urllib.parse.urlsplit(proc.stdout.readline().strip())
        token = urllib.parse.parse_qs(printed.query)["token"][0]
        deadline = time.monotonic() + 30
        while not said.exists() or not said.read_text():
            assert time.monotonic() < deadline, "the browser was not started"
            time.sleep(0.05)
        opened = urllib.parse.urlsplit(said.read_text())
        assert opened.path == "/open" and token not in said.read_text()
        conn = http.client.HTTPConnection("127.0.0.1", printed.port or 0, timeout=10)
        conn.request("GET", f"/open?{opened.query}")
        r = conn.getresponse()
        assert (r.status, r.getheader("Location")) == (303, f"/?token={token}")
        conn.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _read_all(s: socket.socket) -> bytes:
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    return got
