"""A tmux pane's output as plain text in ``agent.log``: ``python -m orch.agents.ptylog LOG``.

In tmux the agent writes to a terminal (a person can watch and type), and ``tmux pipe-pane`` hands
on what the terminal got: every ``\\n`` turned into ``\\r\\n`` by the line discipline, and NUL
bytes. The supervisor pipes the pane through this filter, which appends to ``LOG`` with ``\\r\\n``
(and ``\\r\\r\\n``) as ``\\n`` and no NUL byte, as soon as it reads them (no buffering: ``tail -f``
and the budget check see the output live). A ``\\r`` on its own (a progress line) is kept.
"""

from __future__ import annotations

import os
import sys


def clean(chunk: bytes, held: bytes = b"") -> tuple[bytes, bytes]:
    """Normalise ``held + chunk``; returns what to write now and what to hold for the next chunk.

    Carriage returns at the end of a chunk are held back: the ``\\n`` that may follow comes in the
    next one.
    """
    data = (held + chunk).replace(b"\0", b"")
    body = data.rstrip(b"\r")
    tail = data[len(body) :]
    while b"\r\n" in body:
        body = body.replace(b"\r\n", b"\n")
    return body, tail


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy(source: int, log: int) -> None:
    """Copy ``source`` to ``log`` until end of file, cleaning as it goes."""
    held = b""
    while True:
        try:
            chunk = os.read(source, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        text, held = clean(chunk, held)
        if text:
            _write_all(log, text)
    if held:
        _write_all(log, held)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m orch.agents.ptylog LOG\n")
        return 2
    from pathlib import Path

    from orch.agents.taskfiles import open_run_file

    fd, _note = open_run_file(Path(argv[0]), append=True)  # never through a link put in its place
    try:
        copy(sys.stdin.fileno(), fd)
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
