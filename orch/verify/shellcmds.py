"""A shell command line, read the way ``sh``/``bash`` would split it, for the command policy.

``read(text)`` gives the simple commands a line runs (``Cmd``), each with the operator that joins it
to the next (``&&``, ``||``, ``;``, ``|``, ``&``, a newline): ``a && b | c`` is three commands. It
reads quotes (``'...'``, ``"..."``, ``$'...'``), backslashes, comments, redirections (a file written
with ``>`` is a write; ``2>&1`` and ``> /dev/null`` are not), here-documents, and the commands inside
``$(...)``, backticks and ``<(...)``/``>(...)``, which are commands of their own. Assignments before a
command and wrappers that run another command (``env``, ``nohup``, ``time``, ``timeout``, ``nice``,
``xargs``, ``setsid``, ``flock``, ``busybox``, ``coproc`` ...) are taken off, so ``env X=1 /usr/bin/curl``
is ``curl``; the assignments are kept (``Cmd.assigns``). Scripts given to a shell (``sh -c '...'``,
``eval``, a here-document or here-string fed to ``bash``), command lines a wrapper runs (``env -S``,
``flock -c``, ``watch``, ``parallel``, ``trap``) and commands ``find -exec`` runs are read as commands
too. What some programs' words say they do (a ``sed`` script's ``e``, a script piped into a shell, the
folder ``cp`` writes into) is read by ``shellprogs`` into ``Cmd.facts``, ``writes`` and ``changes``.

It is not a shell: what a word holds after expansion (``$X``, a glob) is not known, and is marked so
(``Word.dynamic``). Text it cannot read (an unclosed quote or ``$(``) raises ``Unreadable``.
"""

from __future__ import annotations

import itertools
import os
import re

from orch.verify import shellprogs
from orch.verify.shellwords import CONTROL, Op, Unreadable, Word, lex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Cmd", "Unreadable", "Word", "read"]

RESERVED = {"!", "{", "}", "then", "else", "elif", "do", "done", "fi", "esac", "if", "while", "until", "time"}
HEADERS = {"for", "select", "case", "function"}  # a part that only names a loop variable or a function
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"}
NOT_FILES = {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"}
MAX_DEPTH = 8
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_GLOB = re.compile(r"[*?[]")
_scripts = itertools.count()


class Cmd:
    """One simple command: its words after assignments and wrappers (``argv``), what it writes through
    redirections (``writes``), where it comes from (``origin``: "" for the line itself, else what ran
    it, e.g. ``sh -c``), and the operator that follows it (``sep``)."""

    def __init__(self, shown: str, origin: str, depth: int) -> None:
        self.shown = shown
        self.origin = origin
        self.depth = depth
        self.argv: list[Word] = []
        self.writes: list[Word] = []
        self.reads: list[str] = []
        self.changes: list[Word] = []  # folders it writes into (``cp x DIR``, ``find DIR -delete``)
        self.assigns: list[Word] = []  # NAME=VALUE it sets for itself or the commands after it
        self.facts: list[str] = []  # what its words say it does beyond its name ("sed runs commands")
        self.split: list[Word] | None = None  # ``env -S``'s command line
        self.sep = ""
        self.fed_by_xargs = False  # its operands come from its input: not known here
        self.script = -1  # which text it was read from (``read`` numbers them)

    @property
    def program(self) -> str:
        if not self.argv:
            return ""
        first = self.argv[0]
        return first.raw if first.dynamic else os.path.basename(first.text) or first.text

    def text(self) -> str:
        """What the policy's regexes read: the program's name (no folder), its words, its writes."""
        words = [self.program, *(w.shown() for w in self.argv[1:])] if self.argv else []
        words += [f"> {w.shown()}" for w in self.writes]
        return " ".join(words)


# -- commands -------------------------------------------------------------------------------------------


def read(text: str, *, origin: str = "", depth: int = 0) -> list[Cmd]:
    """The simple commands ``text`` runs, those it runs inside them included (see the module's text)."""
    if depth > MAX_DEPTH:
        raise Unreadable(f"commands nested more than {MAX_DEPTH} deep")
    out: list[Cmd] = []
    before = ""
    for part, sep in _parts(lex(text)):
        out += list(_commands(text, part, sep, origin, depth, piped=before in ("|", "|&")))
        before = sep
    script = next(_scripts)
    for cmd in out:
        if cmd.script < 0:  # not read from a script inside this one
            cmd.script = script
    return out


def _parts(tokens: list[Word | Op]) -> Iterator[tuple[list[Word | Op], str]]:
    part: list[Word | Op] = []
    for token in tokens:
        if isinstance(token, Op) and token.text in CONTROL:
            yield part, token.text
            part = []
        else:
            part.append(token)
    yield part, ""


def _commands(text: str, part: list[Word | Op], sep: str, origin: str, depth: int, *, piped: bool) -> Iterator[Cmd]:
    while part and isinstance(part[0], Word) and part[0].text in RESERVED and part[0].raw == part[0].text:
        part = part[1:]
    if not part:
        return
    cmd = Cmd(text[part[0].start : part[-1].end].strip(), origin, depth)
    cmd.sep = "; " if sep == "\n" else sep
    inner: list[Cmd] = []
    words: list[Word] = []
    heredoc: str | Word | None = None  # the text a here-document or here-string feeds it
    pending: Op | None = None
    for token in part:
        if isinstance(token, Op):
            pending = token
            if token.body is not None:
                heredoc = token.body
            continue
        inner += _subs(token, depth)
        if pending is not None:
            if pending.text in (">", ">>", ">|", "&>", "&>>") and not _not_a_file(token.text):
                cmd.writes.append(token)
            elif pending.text in ("<", "<>"):
                cmd.reads.append(token.text)
                if pending.text == "<>":
                    cmd.writes.append(token)
            elif pending.text in (">&", "<&") and not re.fullmatch(r"\d+-?|-", token.text):
                cmd.writes.append(token)  # >&file writes the file (bash)
            elif pending.text == "<<<" and not pending.io:
                heredoc = token
            pending = None
            continue
        words.append(token)
    first = words[0].text if words else ""
    if first in HEADERS and words and words[0].raw == first:
        yield from inner  # `for x in $(ls)`: only what it runs
        return
    while words and _NAME.match(words[0].raw) and not words[0].raw.startswith("="):
        cmd.assigns.append(words[0])
        words = words[1:]
    cmd.argv = _unwrap(words, cmd)
    _effects(cmd, piped=piped and heredoc is None)
    yield cmd
    yield from inner
    yield from _runs(cmd, heredoc, depth)


def _subs(word: Word, depth: int) -> list[Cmd]:
    found: list[Cmd] = []
    for sub in word.subs:
        found += read(sub, origin="$(...)", depth=depth + 1)
    return found


# Programs that run the command named by their arguments: how many option words each takes a value for.
WRAPPERS = {
    "env": {"-u", "--unset", "-C", "--chdir", "-S", "--split-string"},
    "nohup": set(),
    "time": {"-f", "--format", "-o", "--output"},
    "nice": {"-n", "--adjustment"},
    "ionice": {"-c", "-n", "-p", "-P", "-u"},
    "timeout": {"-s", "--signal", "-k", "--kill-after"},
    "stdbuf": {"-i", "-o", "-e"},
    "command": set(),
    "builtin": set(),
    "exec": {"-a"},
    "chronic": set(),
    "setsid": set(),
    "busybox": set(),
    "coproc": set(),
    "flock": {"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"},
    "watch": {"-n", "--interval", "-q", "--equexit"},
    "parallel": {
        "-j",
        "--jobs",
        "-P",
        "--max-procs",
        "-S",
        "--sshlogin",
        "-a",
        "--arg-file",
        "--delay",
        "--timeout",
        "-n",
        "-N",
        "-L",
        "--colsep",
        "-C",
        "-d",
        "--delimiter",
        "-I",
        "--joblog",
        "--results",
        "--tmpdir",
        "--workdir",
        "--wd",
        "-E",
        "--halt",
        "--retries",
        "--memfree",
    },
    "xargs": {
        "-a",
        "-E",
        "-e",
        "-I",
        "-i",
        "-L",
        "-l",
        "-n",
        "-P",
        "-s",
        "-d",
        "--delimiter",
        "--arg-file",
        "--max-args",
        "--max-procs",
        "--max-lines",
        "--replace",
        "--max-chars",
        "--eof",
    },  # fmt: skip
}


def _unwrap(words: list[Word], cmd: Cmd) -> list[Word]:
    """``words`` without the wrappers in front (``env X=1 timeout 5 curl`` -> ``curl``). A wrapper that
    runs a command line rather than words (``env -S``, ``flock -c``, ``watch``, ``parallel``) is kept,
    with that line as ``cmd.split``."""
    while words and not words[0].dynamic:
        name = os.path.basename(words[0].text)
        takes = WRAPPERS.get(name)
        if takes is None:
            return words
        rest = words[1:]
        if name == "command" and rest and rest[0].text in ("-v", "-V"):
            return words  # `command -v x` only asks where x is
        if name == "xargs":
            cmd.fed_by_xargs = True
        if name == "coproc" and len(rest) > 1 and rest[1].raw == "{":
            rest = rest[1:]  # coproc NAME { ...; }
        if name == "coproc" and rest and rest[0].raw == "{":
            rest = rest[1:]
        i, operand = 0, name in ("timeout", "flock")  # timeout's duration, flock's file
        while i < len(rest):
            w = rest[i].text
            if w == "--":
                i += 1
                break
            if name == "env" and _NAME.match(rest[i].raw):
                cmd.assigns.append(rest[i])
                i += 1
            elif name == "env" and (w.startswith("--split-string") or re.match(r"-[^-]*S", w)):
                value = w.partition("=")[2] if w.startswith("--") else w.partition("S")[2]
                tail = rest[i + 1 :] if value else rest[i + 2 :]
                head = [Word(value, value, rest[i].start, rest[i].end)] if value else rest[i + 1 : i + 2]
                if value:
                    head[0].dynamic = rest[i].dynamic
                cmd.split = head + [_requoted(t) for t in tail]
                return words
            elif name == "flock" and w in ("-c", "--command"):
                cmd.split = rest[i + 1 : i + 2]
                return words
            elif w.startswith("-") and len(w) > 1:
                i += 2 if w in takes else 1
            elif operand:
                i, operand = i + 1, False
            else:
                break
        if i >= len(rest):
            return words  # the wrapper alone (`env` prints the environment)
        if name in ("watch", "parallel"):
            line = rest[i:]
            end = next((j for j, t in enumerate(line) if t.text.startswith(":::")), len(line))
            if end:
                cmd.split = [_requoted(t) for t in line[:end]]
            else:  # parallel ::: 'cmd1' 'cmd2': its arguments (or input) are the commands
                cmd.facts.append("runs its input")
            return words
        words = rest[i:]
    return words


def _requoted(word: Word) -> Word:
    """``word`` as a word of a command line to read again (``_run_text`` joins the texts)."""
    out = Word(word.text if word.dynamic else _quote(word.text), word.raw, word.start, word.end)
    out.dynamic = word.dynamic
    return out


ASSIGNERS = {"export", "declare", "typeset", "local", "readonly"}
AWKS = {"awk", "gawk", "mawk", "nawk"}
STDIN = {"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}


def _effects(cmd: Cmd, *, piped: bool) -> None:
    """What ``cmd``'s words say it does beyond its name: ``cmd.facts``, and the files and folders it
    writes (``cmd.writes``, ``cmd.changes``)."""
    argv, program = cmd.argv, cmd.program
    if not argv:
        return
    if argv[0].brace:
        cmd.facts.append("brace-expanded program")
    if program in ASSIGNERS:
        cmd.assigns += [w for w in argv[1:] if _NAME.match(w.raw)]
    files, under = shellprogs.writes_of(program, argv)
    cmd.writes += [w for w in files if not _not_a_file(w.text)]
    cmd.changes += under
    if program == "sed":
        scripts = shellprogs.sed_scripts(argv[1:])
        if scripts is None:
            cmd.facts.append("sed runs a script file")
        for script in scripts or []:
            runs, writes = shellprogs.sed_effects(script.text)
            if runs or script.dynamic:
                cmd.facts.append("sed runs commands")
            cmd.writes += [Word(w, w, script.start, script.end) for w in writes if w and not _not_a_file(w)]
    elif program in AWKS:
        code = shellprogs.awk_program(argv[1:])
        if code is None:
            if len(argv) > 1:
                cmd.facts.append("awk runs a program file")
        else:
            runs, prints_to = shellprogs.awk_effects(code.text)
            if runs or code.dynamic:
                cmd.facts.append("awk runs commands")
            elif prints_to:
                cmd.facts.append("awk writes files")
    elif program in SHELLS or program in ("source", "."):
        operands = _shell_operands(argv) if program in SHELLS else argv[1:2]
        if operands is None:
            return  # sh -c '...': read in _runs
        if operands and (operands[0].dynamic or operands[0].text in STDIN):
            cmd.facts.append("runs its input")  # bash <(curl ...), . /dev/stdin
        elif not operands and piped and program in SHELLS:
            cmd.facts.append("runs its input")  # ... | sh


def _shell_operands(argv: list[Word]) -> list[Word] | None:
    """A shell's operands after its options (the first is its script file); None with ``-c``. ``-s``
    (the script is its input) gives none."""
    i, stdin = 1, False
    while i < len(argv):
        w = argv[i].text
        if w == "--":
            i += 1
            break
        if not w.startswith(("-", "+")) or w in ("-", "+"):
            break
        if w in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 1
        elif not w.startswith("--") and "c" in w[1:]:
            return None
        elif not w.startswith("--") and "s" in w[1:]:
            stdin = True
        i += 1
    return [] if stdin else argv[i:]


def _runs(cmd: Cmd, heredoc: str | Word | None, depth: int) -> list[Cmd]:
    """The commands ``cmd`` itself runs: a shell's script, ``eval``'s words, ``find -exec``'s command,
    a here-document or here-string fed to a shell, ``trap``'s command, a wrapper's command line."""
    argv, program = cmd.argv, cmd.program
    found: list[Cmd] = []
    if cmd.split is not None:
        inner = _run_text(cmd.split, program, depth)
        if program == "parallel":
            for c in inner:
                c.fed_by_xargs = True  # {} is what its arguments name
        found += inner
    if program in SHELLS:
        script = _script_of(argv)
        if script is not None:
            found += _run_text([script], f"{program} -c", depth)
        elif heredoc is not None and _shell_operands(argv) == []:
            if isinstance(heredoc, Word):
                found += _run_text([heredoc], f"{program} <<<", depth)
            else:
                found += read(heredoc, origin=f"{program} <<", depth=depth + 1)
    elif program == "trap":
        action = [w for w in argv[1:] if w.text != "--"]
        if len(action) > 1 and not action[0].text.startswith("-"):
            found += _run_text(action[:1], "trap", depth)
    elif program == "eval":
        found += _run_text(argv[1:], "eval", depth)
    elif program == "find":
        words = [w.text for w in argv]
        for i, w in enumerate(words):
            if w in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next((j for j in range(i + 1, len(words)) if words[j] in (";", "+")), len(words))
                if end > i + 1:
                    inner = read(" ".join(_quote(x) for x in words[i + 1 : end]), origin=f"find {w}", depth=depth + 1)
                    for c in inner:
                        c.fed_by_xargs = True  # its operands are what find found
                    found += inner
    return found


def _run_text(words: list[Word], origin: str, depth: int) -> list[Cmd]:
    """The commands a script given as words runs; one whose text is only known when the shell runs
    it (``eval "$X"``) is a command whose program is unknown."""
    if not words:
        return []
    dynamic = next((w for w in words if w.dynamic), None)
    if dynamic is not None:
        unknown = Cmd(dynamic.raw, origin, depth + 1)
        unknown.argv = [dynamic]
        return [unknown]
    return read(" ".join(w.text for w in words), origin=origin, depth=depth + 1)


def _script_of(argv: list[Word]) -> Word | None:
    """The script of ``sh -c SCRIPT`` (options may come first: ``bash -o pipefail -ec '...'``)."""
    has_c, i = False, 1
    while i < len(argv):
        w = argv[i].text
        if w == "--" or not w.startswith(("-", "+")) or w in ("-", "+"):
            break
        if w in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            i += 1
        elif not w.startswith("--") and "c" in w[1:]:
            has_c = True
        i += 1
    if has_c and i < len(argv) and argv[i].text != "--":
        return argv[i]
    return None


def _quote(word: str) -> str:
    return word if re.fullmatch(r"[\w@%+=:,./{}-]+", word) else "'" + word.replace("'", "'\\''") + "'"


def _not_a_file(path: str) -> bool:
    return path in NOT_FILES or path.startswith("/dev/fd/")


def is_glob(word: Word) -> bool:
    return word.glob and bool(_GLOB.search(word.text))
