"""``orch ui``: the live local dashboard (its server lives in ``orch.views.dashserver``, imported here
only when the command runs: no other command pays for it)."""

from __future__ import annotations

import typer

from orch.cli.app import app
from orch.cli.output import err, out


@app.command()
def ui(
    port: str = typer.Option("0", "--port", metavar="N", help="Port on 127.0.0.1 (default: a free one)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the dashboard in the web browser."),
) -> None:
    """A live dashboard in the browser: tasks by state, lock pressure, the trust topology, levels, the
    inbox (answer it there), diffs, cost and the agents' logs. Serves 127.0.0.1 only, behind a token in
    the URL it prints first (every link carries it; no cookie); --open hands the browser a one-time
    code instead; Ctrl-C stops it."""
    import sys
    from pathlib import Path

    from orch.core.errors import UsageError
    from orch.views import dashserver

    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--port must be a number from 0 to 65535 (got {port!r})", hint="0 picks a free port")
    try:
        dash = dashserver.Dashboard(Path.cwd(), int(port), report=err)
    except OSError as exc:
        from orch.core.errors import EnvError

        raise EnvError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}",
                                 hint="pick another --port, or leave it out for a free one") from None  # fmt: skip
    out(dash.url)
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(dash.open_url)  # a one-time code: the token stays out of the browser's command line
    try:
        dash.serve_forever()
    except KeyboardInterrupt:
        out("orch ui: stopped")

