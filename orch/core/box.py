"""The box: every process that runs an agent's work runs inside a bubblewrap (``bwrap``) sandbox.

Inside the box the whole file system is read-only, except: the task's worktree, the task's private
git folder (``orch.agents.boxgit``: a shadow of the worktree's git folder with a private object
folder, the shared one as a read-only alternate), the task's outbox (where ``orch report`` writes,
``orch.agents.outbox``), a private ``/tmp``, and the paths the agent's manifest lists as
``writable`` (the agent CLI's own state, e.g. ``~/.claude``). ``/tmp``, ``/var/tmp`` and ``/run``
are private (empty) so no socket there can be reached (tmux, ssh-agent, docker, D-Bus); what the run
needs from under them (the repository, orch, its Python, the folders on PATH, the home folder, the
paths a command names) is bound back read-only. The agent runs in its own PID, IPC and UTS
namespaces (it cannot see, signal or trace any process outside), without capabilities, as an
unprivileged user (root outside runs as uid 1000 inside), and dies with the supervisor. The
network stays on unless the manifest says ``network: off``.

``sandbox: auto|on|off`` in ``.orch/config.yaml`` and in a manifest: ``on`` anywhere means on (and
a missing ``bwrap`` is an error), else ``off`` anywhere means off, else ``auto``: on where ``bwrap``
works, off with a one-line notice where it does not.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orch.core.errors import EnvError

MASKED = ("/tmp", "/var/tmp", "/run")  # private inside the box: sockets live there
INSIDE_UID = 1000  # who root is inside the box: no capabilities, and nested sandboxes still work
_probe: dict[str, str | None] = {}


def mode_of(*values: object) -> str:
    """The mode in force from the config's and the manifest's ``sandbox``: on > off > auto."""
    from orch.core.config import sandbox_mode

    seen = {sandbox_mode(v) for v in values if v is not None}
    return "on" if "on" in seen else "off" if "off" in seen else "auto"


def network_of(value: object) -> bool:
    """A manifest's ``network``: on unless it says off (YAML reads a bare ``off`` as false)."""
    if value is None or value is True:
        return True
    return str(value).strip().lower() not in ("off", "false", "no", "0")


def unavailable() -> str | None:
    """Why bubblewrap cannot box a process here (None: it can); asked once per process."""
    if "bwrap" not in _probe:
        _probe["bwrap"] = _try_bwrap()
    return _probe["bwrap"]


def _try_bwrap() -> str | None:
    if sys.platform != "linux":
        return f"the box needs Linux (this is {sys.platform})"
    program = _program()
    if program is None:
        return f"bubblewrap ({os.environ.get('ORCH_BWRAP') or 'bwrap'}) is not installed"
    argv = [program, *_identity(), "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run: {exc}"
    if r.returncode != 0:
        said = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return f"bwrap cannot make a sandbox here ({said})"
    return None


@dataclass(frozen=True)
class Decision:
    on: bool
    mode: str
    notice: str | None = None  # why it is off under auto


def decide(mode: str) -> Decision:
    """Box or not, for ``mode``; raises ``EnvError`` (exit 4) for ``on`` where bwrap does not work."""
    if mode == "off":
        return Decision(False, mode)
    why = unavailable()
    if why is None:
        return Decision(True, mode)
    if mode == "on":
        raise EnvError(
            f"sandbox: on, but {why}",
            hint="install bubblewrap (apt-get install bubblewrap), or set sandbox: auto in .orch/config.yaml",
        )
    return Decision(False, mode, f"agents run without a sandbox: {why} (sandbox: off in .orch/config.yaml hides this)")


@dataclass
class Spec:
    """What one boxed process may see and write."""

    cwd: Path
    writable: list[Path] = field(default_factory=list)  # bound read-write at the same place
    binds: list[tuple[Path, Path]] = field(default_factory=list)  # (source, where) read-write
    readable: list[Path] = field(default_factory=list)  # kept visible read-only under the private /tmp
    read_only: list[Path] = field(default_factory=list)  # inside what is writable, kept read-only
    network: bool = True
    terminal: bool = False  # the process shares a person's terminal (tmux): keep its session


def wrap(argv: Sequence[str], spec: Spec, env: Mapping[str, str]) -> list[str]:
    """The ``bwrap`` command line that runs ``argv`` in the box ``spec`` describes."""
    program = _program() or "bwrap"
    out = [program, "--die-with-parent", *_identity(), "--cap-drop", "ALL"]
    out += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not spec.network:
        out.append("--unshare-net")
    if not spec.terminal:
        out.append("--new-session")  # no TIOCSTI into a terminal it came from
    out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for masked in MASKED:
        if os.path.isdir(masked) and not os.path.islink(masked):
            out += ["--tmpfs", masked]
    if os.path.isdir("/var/run") and not os.path.islink("/var/run"):
        out += ["--tmpfs", "/var/run"]
    for seen in _outermost(_visible(argv, spec, env)):
        out += ["--ro-bind-try", seen, seen]
    for path in spec.writable:
        if path.exists():
            out += ["--bind", str(path), str(path)]
    for source, where in spec.binds:
        out += ["--bind", str(source), str(where)]
    for path in spec.read_only:
        if path.exists() or path.is_symlink():
            out += ["--ro-bind", str(path), str(path)]
    out += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(spec.cwd), "--", *argv]
    return out


def _program() -> str | None:
    """The bwrap to use: ``$ORCH_BWRAP`` (a path or a name on PATH), else ``bwrap`` on PATH."""
    return shutil.which(os.environ.get("ORCH_BWRAP") or "bwrap")


def _identity() -> list[str]:
    if os.geteuid() != 0:
        return ["--unshare-user"]
    return ["--unshare-user", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID)]


def _visible(argv: Sequence[str], spec: Spec, env: Mapping[str, str]) -> list[str]:
    """The paths under a private folder that the run needs to see (read-only)."""
    import orch

    wanted: list[str] = [str(p) for p in spec.readable]
    wanted += [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    wanted.append(str(Path(orch.__file__).resolve().parent.parent))
    for key in ("HOME", "XDG_CONFIG_HOME", "GIT_TEMPLATE_DIR", "GIT_EXEC_PATH", "VIRTUAL_ENV"):
        if env.get(key):
            wanted.append(env[key])
    wanted += [p for p in (env.get("PATH") or "").split(os.pathsep) if p]
    wanted += named_paths(argv)
    found: list[str] = []
    for item in wanted:
        path = os.path.abspath(os.path.expanduser(item))
        if _under_masked(path) and os.path.exists(path):
            found.append(path)
            real = os.path.realpath(path)
            if real != path and _under_masked(real):
                found.append(real)
    return found


def named_paths(argv: Sequence[str]) -> list[str]:
    """Absolute paths a command names: its words, and the words of a ``sh -c`` script it runs."""
    words: list[str] = []
    for arg in argv:
        words.append(arg)
        if any(c.isspace() for c in arg):
            try:
                words += shlex.split(arg, comments=True)
            except ValueError:
                words += arg.split()
    return [w for w in words if w.startswith("/") and "\0" not in w and len(w) < 4096]


def _under_masked(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in (*MASKED, "/var/run"))


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another, shortest first (a bind over its parent's bind)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def expand(paths: Iterable[object], home: str | None) -> list[Path]:
    """A manifest's ``writable``/``readable`` list as absolute paths (``~`` is the home folder)."""
    out: list[Path] = []
    for item in paths:
        text = str(item)
        if text.startswith("~") and home:
            text = home + text[1:]
        path = Path(text)
        if path.is_absolute():
            out.append(path)
    return out


def for_commands(
    mode: str, cwd: Path, readable: Sequence[Path], writable: Sequence[Path] = ()
) -> Callable[[list[str]], list[str]]:
    """How to run a person's command (the tests, a requirement check) on an agent's code in ``cwd``:
    in a box that may write ``cwd`` (and ``writable``) only, when ``mode`` boxes (unchanged otherwise). That code is the
    agent's as much as its process is: outside the box it could write what judges it."""
    if not decide(mode).on:
        return list
    spec = Spec(cwd=cwd, writable=[cwd, *writable], readable=list(readable))
    env = dict(os.environ)
    return lambda argv: wrap(argv, spec, env)
