"""The dashboard: how long ``orch ui`` takes to render its page, and to show a change.

    .venv/bin/python scripts/bench/ui.py [--runs N] [--json]

Builds a throw-away repository with 200 tasks (each with a status file, in every state) and 500
locks, starts the dashboard's server (``orch.views.dashserver``, the one ``orch ui`` runs) in this
process, and times over HTTP:

- the full page (every panel read from the files and rendered, as on a first load or after a change)
  against a static file of the same size served by the same server (its ``/static/`` route, through
  the same token check); and the same page asked again with no file changed, which the server
  serves as it rendered it (``Dashboard.made``: several tabs cost one rendering);
- a status write (``orch.core.state.update``, as a command writes it) until the page has its new
  text: in a real browser (headless Chromium through Playwright, when both are installed) until the
  task card's reason shows the new text; without them, with an event-stream client: the event arrives
  and ``/part/main``, which the page's script then fetches, holds the new text (the row says which).
  The baseline is that fetch alone.

Targets: the full page at most 3x the static file; a change shown within 1 s (median).
"""

from __future__ import annotations

import http.client
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import BenchError, Row, Target, main, orch_argv, rounds, run, scratch

DEFAULT_RUNS = 15
TASKS = 200
LOCKS = 500
STATES = ["MERGED", "SUCCESS", "FAILED", "RUNNING", "PENDING", "CRASHED", "SCOPE_VIOLATION", "BLOCKED", "QUEUED"]


def make_repo(folder: Path) -> Path:
    folder.mkdir()
    run(["git", "init", "-q", "-b", "main"], folder)
    for n in range(1, TASKS + 1):
        part = folder / "src" / f"part{n}"
        part.mkdir(parents=True)
        (part / "core.py").write_text(f"def f{n}():\n    return {n}\n")
    run(["git", "add", "-A"], folder)
    run(["git", "commit", "-q", "-m", "initial"], folder)
    run([*orch_argv(), "init", "--test-cmd", "true", "--no-hooks"], folder)
    lines = ["# Plan: benchmark\n\nA generated plan.\n"]
    for n in range(1, TASKS + 1):
        lines.append(f"\n## T{n}: Task number {n}\n- scope: ^src/part{n}/\n- agent: shell\n\nDo part {n}.\n")
    (folder / ".orch" / "plan.md").write_text("".join(lines))
    locks = ["version: 1\nagents_md_lock: true\nlocks:\n"]
    for n in range(1, LOCKS + 1):
        mode = "soft" if n % 5 == 0 else "hard"
        pattern = f"src/part{n % TASKS + 1}/lock{n}.py"
        locks.append(f"  - id: L{n}\n    kind: path\n    mode: {mode}\n    pattern: {pattern}\n    reason: benchmark\n")
    (folder / ".orch" / "locks.yaml").write_text("".join(locks))
    config = folder / ".orch" / "config.yaml"
    config.write_text(config.read_text() + "levels:\n  src/: feature\n  src/part1*/: code\n  src/part2*/: component\n")
    me = os.getpid()
    start = Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19] if Path("/proc").is_dir() else None
    for n in range(1, TASKS + 1):
        state = STATES[n % len(STATES)]
        if state == "PENDING":
            continue
        task_dir = folder / ".orch" / "run" / "tasks" / f"T{n}"
        task_dir.mkdir(parents=True)
        text = (
            f"id: T{n}\nstate: {state}\nagent: shell\nbranch: orch/T{n}\nworktree: .orch/worktrees/T{n}\n"
            f"base_sha: {'a' * 40}\ncreated_at: '2026-01-01T00:00:00Z'\nstarted_at: '2026-01-01T00:00:05Z'\n"
            f"iteration: {n % 4 + 1}\nmax_iterations: 10\ntokens:\n  input: {n * 1000}\n  output: {n * 100}\n"
            f"cost_usd: {n / 100}\n"
        )
        if state == "RUNNING":  # alive for as long as the benchmark runs: no CRASHED rewrite
            text += f"pid: {me}\npid_start: '{start}'\n" if start else f"pid: {me}\n"
        (task_dir / "status.yaml").write_text(text)
    run(["git", "add", "-A"], folder)
    run(["git", "commit", "-q", "-m", "orch"], folder)
    return folder


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", path, headers={"X-Orch-Token": self.token})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise BenchError(f"GET {path}: {r.status} {body[:200]!r}")
            return body
        finally:
            conn.close()

    def events(self, into: queue.Queue[str], stop: threading.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/events", headers={"X-Orch-Token": self.token})
        r = conn.getresponse()
        while not stop.is_set():
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b"event: "):
                into.put(line[7:].strip().decode())


def rows(runs: int) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from orch.core import state
    from orch.core.context import open_ctx
    from orch.views import dashserver

    with scratch("ui") as name:
        tmp = Path(name)
        repo = make_repo(tmp / "repo")
        for key in [k for k in os.environ if k.startswith(("ORCH_", "GIT_"))]:
            del os.environ[key]  # orch as a user runs it (the server runs in this process)
        dash = dashserver.Dashboard(repo, 0)
        threading.Thread(target=dash.serve_forever, daemon=True).start()
        client = Client(dash.port, dash.token)
        page = client.get("/")
        browser = _browser(dash.url)
        if browser is not None:
            browser.open()  # before the static files are swapped below: the page keeps the real script
        static = Path(tempfile.mkdtemp(dir=tmp))
        (static / "app.js").write_bytes(b"/" * len(page))  # a static file of the page's size, same route
        (static / "app.css").write_bytes((dashserver.STATIC / "app.css").read_bytes())
        dashserver.STATIC = static
        ctx = open_ctx(repo)
        events: queue.Queue[str] = queue.Queue()
        stop = threading.Event()
        threading.Thread(target=client.events, args=(events, stop), daemon=True).start()
        if events.get(timeout=30) != "hello":
            raise BenchError("the event stream did not say hello")

        def shown(n: int) -> float:
            marker = f"bench change {n}"
            while not events.empty():
                events.get_nowait()
            begin = time.perf_counter()
            state.update(ctx.project, ctx.store, "T1", lambda s: s.update(reason=marker))
            while events.get(timeout=30) != "state":
                pass
            body = client.get("/part/main")
            if marker.encode() not in body:
                raise BenchError(f"the page after the event lacks {marker!r}")
            return time.perf_counter() - begin

        def in_browser(n: int) -> float:
            assert browser is not None
            marker = f"browser change {n}"
            begin = time.perf_counter()
            state.update(ctx.project, ctx.store, "T1", lambda s: s.update(reason=marker))
            browser.wait_for(marker)
            return time.perf_counter() - begin

        def computed(n: int) -> float:
            dash.forget()  # as after a change: every panel read from the files and rendered again
            return _timed(lambda: client.get("/"))

        def again(n: int) -> float:
            client.get("/")
            return _timed(lambda: client.get("/"))

        got = rounds(
            {
                "page": computed,
                "again": again,
                "static": lambda n: _timed(lambda: client.get("/static/app.js")),
                "part": lambda n: (dash.forget(), _timed(lambda: client.get("/part/main")))[1],
                "shown": in_browser if browser is not None else shown,
            },
            runs,
        )
        stop.set()
        if browser is not None:
            browser.close()
        dash.shutdown()
    kb = len(page) / 1024
    return [
        Row(f"full page, {TASKS} tasks, {LOCKS} locks ({kb:.0f} KiB), rendered", got["page"], got["static"],
            "static file, same size", target=Target(3)),  # fmt: skip
        Row("the same page again, no file changed (served as rendered)", got["again"], got["static"],
            "static file, same size"),  # fmt: skip
        Row("status write to the page's update " + ("(in Chromium)" if browser is not None else
            f"(SSE + part; no browser: {_no_browser()})"), got["shown"], got["part"], "the part rendered alone",
            target=Target(1000, of_ratio=False)),  # fmt: skip
    ]


CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")


def _no_browser() -> str | None:
    """Why the change is not timed in a browser, or None when Playwright and Chromium are there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright not installed"
    return None if os.path.exists(CHROMIUM) else f"no Chromium at {CHROMIUM}"


class _Browser:
    """The dashboard in headless Chromium; ``wait_for`` waits (Playwright's own wait: the page's CSP
    allows no eval) until T1's card shows a reason."""

    def __init__(self, url: str) -> None:
        self.url = url

    def open(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        self.page = self._browser.new_page()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-live='1']", timeout=30_000)

    def wait_for(self, text: str) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator("#task-T1 .reason")).to_have_text(text, timeout=30_000)

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def _browser(url: str) -> _Browser | None:
    return None if _no_browser() is not None else _Browser(url)


def _timed(fn: object) -> float:
    begin = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - begin


if __name__ == "__main__":
    sys.exit(main(__doc__ or "", rows, DEFAULT_RUNS))
