"""orch commands as real processes without paying Python's start each time: a fork server.

The property tests run orch hundreds of times; ``python -m orch`` costs ~0.3 s a run before any work.
``ForkOrch`` starts one Python process that imports orch and its heavy dependencies once, then forks a
child per command: the child changes to the command's folder, points its standard streams at files,
and runs ``orch.cli.entry.main`` (the console entry point, with its one error handler and
``sys.exit``). Each command is still a process of its own, with its own exit code, output and crash
log, and nothing it does leaks into the next one or into the test process (which never changes its
folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import Run

_SERVER = r"""
import json, os, sys, traceback

import importlib, pkgutil

import orch

# Every module a command could import, imported once and shared by every child (rich, PyYAML and
# jsonschema come in with them); not orch.__main__, which runs the CLI when imported.
for info in pkgutil.walk_packages(orch.__path__, "orch."):
    if info.name != "orch.__main__":
        importlib.import_module(info.name)
import jsonschema, pathspec, rich.console, rich.table, yaml  # noqa: E401, F401

requests = os.fdopen(int(sys.argv[1]), "r")
answers = os.fdopen(int(sys.argv[2]), "w")
for line in requests:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.chdir(req["cwd"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, name in ((1, req["out"]), (2, req["err"])):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            sys.stdin = open(os.devnull)
            os.environ.update(req["env"])
            sys.argv = ["orch", *req["argv"]]
            orch.cli.entry.main(req["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\n")
    answers.flush()
"""


class ForkOrch:
    """``orch(*args)`` as ``conftest.Orch`` has it, each command a forked child of one warm server."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._tmp = tempfile.TemporaryDirectory(prefix="forkorch-")
        req_r, self._req = os.pipe()
        self._ans, ans_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(req_r), str(ans_w)],
            pass_fds=(req_r, ans_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(req_r)
        os.close(ans_w)
        self._requests = os.fdopen(self._req, "w")
        self._answers = os.fdopen(self._ans, "r")

    def __call__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
        out, err = Path(self._tmp.name) / "out", Path(self._tmp.name) / "err"
        request = {"cwd": str(cwd or self.cwd), "argv": list(args), "out": str(out), "err": str(err), "env": env or {}}
        self._requests.write(json.dumps(request) + "\n")
        self._requests.flush()
        answer = self._answers.readline()
        if not answer:
            raise AssertionError(f"the fork server died (exit {self._proc.wait()})")
        read = lambda path: path.read_bytes().decode("utf-8", "replace")  # noqa: E731
        return Run(json.loads(answer), read(out), read(err))

    def close(self) -> None:
        self._requests.close()
        self._proc.wait(timeout=30)
        self._answers.close()
        self._tmp.cleanup()
