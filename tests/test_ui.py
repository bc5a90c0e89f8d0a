"""``orch ui`` in a real headless Chromium (Playwright's Python API, Debian's ``chromium``) against a real
``orch ui`` process on a real repository with real spun tasks (scripted shell agents).

One browser for the module; each test starts its own server on its own project. The checks that need
no browser (403 without the token, a POST without CSRF or from another origin) use plain HTTP.
``ORCH_SCREENSHOT=PATH`` saves the dashboard of the first test as a PNG (the README's picture).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Orch, events, git, status_of, write_plan
from vhelpers import commit_in, make_task, setup_project

CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip

WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.1; done; rm go; echo 'TTL = 5' > src/auth/session.py"
PLAN = f"""\
# Plan: shop

## T1: Session expiry
- scope: ^src/auth/
- agent: shell
- run: {WAIT_FOR_GO}
- accept: grep -q 'TTL = 5' src/auth/session.py

Touch auth only.

## T2: Widgets <img src=x id=pwned> & "quotes"
- scope: ^(src/dashboard/|tests/test_dashboard\\.py$)

## T3: Anything
"""


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; scripts/test installs it)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need a browser in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                              args=ARGS)  # fmt: skip
        yield b
        b.close()


class UI:
    """A real ``orch ui`` process: its URL (first line of output), stopped at the end of the test."""

    def __init__(self, project: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orch", "ui"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        parts = urllib.parse.urlsplit(self.url)
        self.port = parts.port or 0
        self.token = urllib.parse.parse_qs(parts.query).get("token", [""])[0]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def request(self, method: str, path: str, body: str = "", headers: dict[str, str] | None = None) -> tuple[int, str]:
        status, text, _ = self.exchange(method, path, body, headers)
        return status, text

    def exchange(
        self, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body.encode(), headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read().decode(), dict(r.getheaders())
        finally:
            conn.close()


@pytest.fixture
def shop(repo: Path, orch: Orch) -> Iterator[Path]:
    """The vhelpers shop (locks L1..L4, a soft one on docs/) with T1 spun and RUNNING (its agent waits
    for a file ``go`` in its worktree) and an ack item K1 in the inbox (T3 changed docs/)."""
    project = setup_project(repo, orch, plan=PLAN)
    orch.ok("spin", "T1")
    _until(lambda: status_of(project, "T1").get("state") == "RUNNING", "T1 running")
    wt = make_task(project, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    assert orch("verify", "T3").returncode == 1  # soft lock L4 waits for an ack
    orch.ok("inbox")  # asks it: K1
    yield project
    orch("stop", "T1", "--kill")  # an agent still waiting for its file is not left behind


@pytest.fixture
def ui(shop: Path) -> Iterator[UI]:
    server = UI(shop)
    assert server.url.startswith("http://127.0.0.1:") and server.token, server.url
    yield server
    server.stop()


def _until(ok: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _open(browser: Any, ui: UI) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(ui.url)
    page.wait_for_selector("body[data-live='1']", timeout=10_000)
    return page


def test_the_page_shows_counts_cards_locks_and_the_inbox_and_follows_a_task_live(
    browser: Any, ui: UI, shop: Path, orch: Orch
) -> None:
    page = _open(browser, ui)
    try:
        assert page.url == ui.url  # the token stays in the URL: no cookie
        assert page.context.cookies() == []
        count = {k: page.inner_text(f"[data-count={k}] b") for k in ("active", "blocked", "waiting", "locks")}
        assert count == {"active": "1", "blocked": "0", "waiting": "1", "locks": "5"}
        assert page.get_attribute("#task-T1", "data-state") == "RUNNING"
        assert page.inner_text("[data-group='Running'] .card .tid") == "T1"
        assert "iteration 1/" in page.inner_text("#task-T1 .progress")
        assert page.inner_text("#task-T1 .scope code") == "^src/auth/"
        engaged = page.inner_text("#task-T1 .engaged")
        assert "L3" in engaged and "routing around" in engaged and "since" in engaged
        # an agent's text is shown as text, never markup
        assert "<img src=x id=pwned>" in page.inner_text("#task-T2 .title")
        assert page.query_selector("#pwned") is None
        assert "K1" in page.inner_text("#attention") and "soft lock L4" in page.inner_text("#item-K1")
        assert page.inner_text("[data-pressure=blocking] b") == "1"  # T3 on L4
        assert "L4" in page.inner_text("#pressure") and "T3 blocking" in page.inner_text("#lock-L4")
        auth = "#topology li[data-path='src/auth/']"
        assert page.inner_text(f"{auth} > .name") == "auth"
        assert "T1" in page.inner_text(f"{auth} > .task") and "L3" in page.inner_text(f"{auth} > .lock-hard")
        assert "L4" in page.inner_text("#topology li[data-path='docs/'] > .lock-soft")
        assert page.inner_text("#levels [data-level=feature] b") == "3"
        if os.environ.get("ORCH_SCREENSHOT"):
            page.screenshot(path=os.environ["ORCH_SCREENSHOT"], full_page=True)

        page.evaluate("window.notReloaded = true")
        st = status_of(shop, "T1")
        (Path(st["worktree"]) / "go").write_text("")  # the agent finishes: RUNNING -> SUCCESS
        page.wait_for_selector("#task-T1[data-state='SUCCESS']", timeout=60_000)
        assert page.evaluate("window.notReloaded") is True
        assert page.inner_text("[data-count=active] b") == "0"
        assert page.inner_text("[data-group='Done, to merge']").count("T1") >= 1
    finally:
        page.close()


def test_approving_from_the_page_answers_the_item_like_the_cli(browser: Any, ui: UI, shop: Path) -> None:
    page = _open(browser, ui)
    try:
        assert len(page.query_selector_all("#item-K1 input[name=note]")) == 1  # one note for both answers
        page.fill("#item-K1 input[name=note]", "fine <b>by me</b>")
        page.click("#item-K1 button[data-action=approve]")
        page.wait_for_selector("#flash", timeout=10_000)
        assert page.inner_text("#flash").startswith("K1 (ack, task T3): acked L4 for T3 at ")
        assert page.query_selector("#item-K1") is None
        assert page.inner_text("[data-count=waiting] b") == "0"
        saved = yaml.safe_load((shop / ".orch/run/inbox/K1.yaml").read_text())
        assert (saved["state"], saved["note"]) == ("approved", "fine <b>by me</b>")
        assert status_of(shop, "T3")["acks"][0].startswith("L4@")
        assert [ln for ln in events(shop, "APPROVE") if "K1 ack by" in ln]
    finally:
        page.close()


def test_removing_a_lock_asks_first_and_setting_a_level_is_orch_level_set(
    browser: Any, ui: UI, shop: Path, orch: Orch
) -> None:
    page = _open(browser, ui)
    try:
        page.focus("#pressure select[name=mode]")  # a menu with focus holds no update (a text being typed does)
        orch.ok("lock", "require", "prices stay positive", "--check", "true", "--via", "static")
        page.wait_for_selector("#req-R1", timeout=10_000)  # a command's change, shown without a reload
        assert page.inner_text("#req-R1 .via") == "static" and "prices stay positive" in page.inner_text("#req-R1")
        assert page.inner_text("#task-T1 .level") == "feature"
        page.fill("#levels input[name=path]", "src/auth/")
        page.select_option("#levels select[name=level]", "code")
        page.click("#levels button[data-action=level]")
        page.wait_for_selector("#flash", timeout=10_000)
        assert page.inner_text("#flash").startswith("src/auth/ is at level code: .orch/config.yaml:")
        assert "levels:\n  src/auth/: code\n" in (shop / ".orch/config.yaml").read_text()
        assert page.inner_text("#task-T1 .level") == "code" and events(shop, "LEVEL_SET")
        assert "src/auth/" in page.inner_text("#levels .rules")

        page.click("#lock-L1 button[data-action=lock-rm]")
        page.wait_for_selector("#confirm", timeout=10_000)
        assert "Remove hard path lock L1" in page.inner_text("#confirm")
        assert "id: L1" in (shop / ".orch/locks.yaml").read_text()  # nothing changed yet
        page.click("#confirm button[data-action=lock-rm]")
        page.wait_for_selector("#flash", timeout=10_000)
        assert page.inner_text("#flash").startswith("removed hard path lock L1")
        assert "id: L1" not in (shop / ".orch/locks.yaml").read_text()
        assert events(shop, "LOCK_RM") and page.query_selector("#lock-L1") is None

        page.fill("#pressure input[name=pattern]", "src/billing/")
        page.select_option("#pressure select[name=mode]", "soft")
        page.fill("#pressure input[name=reason]", "finance <reviews>")
        page.click("#pressure button[data-action=lock-add]")
        page.wait_for_selector("#confirm", timeout=10_000)
        assert page.inner_text("#confirm p") == "Add a soft path lock on src/billing/ (finance <reviews>)?"
        page.click("#confirm button[data-action=lock-add]")
        page.wait_for_selector("#flash", timeout=10_000)
        assert page.inner_text("#flash") == "added soft path lock L1: src/billing/"  # the next free id
        assert "finance <reviews>" in page.inner_text("#lock-L1") and events(shop, "LOCK_ADD")

        page.click("#lock-L4 button[data-action=ack]")  # T3 waits on soft lock L4: orch ack T3 L4
        page.wait_for_selector("#flash", timeout=10_000)
        assert page.inner_text("#flash").startswith("acked L4 for T3 at ")
        assert status_of(shop, "T3")["acks"][0].startswith("L4@") and events(shop, "ACK")
        assert page.query_selector("#item-K1") is None  # the inbox item went with it
    finally:
        page.close()


def test_the_task_page_shows_its_diff_and_its_log_as_text(browser: Any, ui: UI, shop: Path) -> None:
    log = shop / ".orch/run/tasks/T1/agent.log"
    with log.open("a") as f:
        f.write("<script>document.title='pwned'</script>\n")
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(ui.url.replace("/?", "/task/T1?"))
        page.wait_for_selector("body[data-live='1']", timeout=10_000)
        assert "<script>document.title='pwned'</script>" in page.inner_text("#log-text")
        assert page.title() != "pwned"
        with log.open("a") as f:
            f.write("a new line from the agent\n")
        expect(page.locator("#log-text")).to_contain_text("a new line from the agent", timeout=10_000)
        (Path(status_of(shop, "T1")["worktree"]) / "go").write_text("")
        expect(page.locator("#diff pre")).to_contain_text("+TTL = 5", timeout=60_000)
    finally:
        page.close()


def test_no_token_no_page_and_no_change_without_csrf_and_origin(ui: UI, shop: Path) -> None:
    for path in ("/", "/part/main", "/api/state.json", "/static/app.js", "/events", "/?token=wrong"):
        status, body = ui.request("GET", path)
        assert status == 403, (path, status)
        assert "token" in body
    assert ui.request("GET", f"/?token={ui.token}", headers={"Host": "evil.example:80"})[0] == 403
    status, body, headers = ui.exchange("GET", f"/api/state.json?token={ui.token}")
    assert status == 200 and '"K1"' in body and "Set-Cookie" not in headers
    auth = {"X-Orch-Token": ui.token}
    csrf = ui.request("GET", "/", headers=auth)[1].split('name="csrf" content="')[1].split('"')[0]
    origin = {"Origin": f"http://127.0.0.1:{ui.port}", "Content-Type": "application/x-www-form-urlencoded"}
    form = f"id=K1&csrf={csrf}&token={ui.token}"
    for headers, body, why in [
        ({**origin}, f"id=K1&csrf={csrf}", "no token"),
        ({**origin}, f"id=K1&token={ui.token}", "no CSRF"),
        ({**origin}, f"id=K1&csrf=wrong&token={ui.token}", "a wrong CSRF"),
        ({**origin, "Origin": "http://evil.example"}, form, "another origin"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, form, "no origin"),
    ]:
        status, _ = ui.request("POST", "/act/approve", body, headers)
        assert status == 403, why
    assert yaml.safe_load((shop / ".orch/run/inbox/K1.yaml").read_text())["state"] == "open"
    assert not events(shop, "APPROVE")
    status, _ = ui.request("POST", "/act/approve", form, origin)
    assert status == 303  # the same request, right: answered
    assert yaml.safe_load((shop / ".orch/run/inbox/K1.yaml").read_text())["state"] == "approved"
    # what the command refuses, the page refuses with the command's words
    acks = len(events(shop, "ACK"))
    status, _, headers = ui.exchange("POST", "/act/ack", f"task=T1&lock=L1&csrf={csrf}&token={ui.token}", origin)
    assert status == 303 and "error=" in headers["Location"]
    status, page, _ = ui.exchange("GET", headers["Location"])
    assert status == 200 and "L1 is a hard lock" in page and "cannot be acked" in page
    assert len(events(shop, "ACK")) == acks


def test_another_local_server_never_gets_the_token(browser: Any, ui: UI) -> None:
    """Browsers share 127.0.0.1's cookies between ports: an agent's own web server, opened in the same
    browser after the dashboard, must see neither a cookie nor a Referer with the token."""
    import http.server
    import threading

    seen: list[dict[str, str]] = []

    class Spy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            body = b"<a id=back href='/next'>next</a>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    spy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Spy)
    threading.Thread(target=spy.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{spy.server_address[1]}"
    page = _open(browser, ui)
    try:
        page.click("#task-T1 a.tid")  # around the dashboard first
        page.wait_for_selector("body[data-page='task'][data-live='1']", timeout=10_000)
        page.evaluate(f"location.href = {other + '/from-dashboard'!r}")  # a link out of the dashboard
        page.wait_for_selector("#back", timeout=10_000)
        page.click("#back")
        page.wait_for_url(other + "/next", timeout=10_000)
        page.goto(other + "/typed")  # the person opens it in the same browser
        by_path = {s["path"]: s for s in seen}
        assert {"/from-dashboard", "/next", "/typed"} <= set(by_path)
        assert by_path["/next"]["referer"] == other + "/from-dashboard"  # the spy does see a Referer
        for request in seen:
            assert "cookie" not in request, request
            assert ui.token not in str(request), request
        assert page.context.cookies() == []
    finally:
        page.close()
        spy.shutdown()
        spy.server_close()


def test_an_agent_cannot_start_the_dashboard(project: Path, orch: Orch) -> None:
    r = orch("ui", env={"ORCH_TASK": "T1"})
    assert r.returncode == 3 and "orch ui is for a person" in r.stderr, r.output
    r = orch("ui", "--port", "http")
    assert r.returncode == 2 and "--port" in r.stderr


def test_stop_from_the_page(browser: Any, repo: Path, orch: Orch) -> None:
    project = setup_project(repo, orch, plan=PLAN)
    write_plan(project, PLAN.replace(WAIT_FOR_GO, "sleep 300"))
    git(project, "commit", "-qam", "T1 sleeps")
    orch.ok("spin", "T1")
    _until(lambda: status_of(project, "T1").get("state") == "RUNNING", "T1 running")
    server = UI(project)
    page = _open(browser, server)
    try:
        page.click("#task-T1 button[data-action=stop]")
        page.wait_for_selector("#flash", timeout=30_000)
        assert page.inner_text("#flash").startswith("T1: ")
        assert status_of(project, "T1")["state"] != "RUNNING"
        assert events(project, "STOP")
        page.wait_for_selector("#task-T1:not([data-state='RUNNING'])", timeout=10_000)
    finally:
        page.close()
        server.stop()
