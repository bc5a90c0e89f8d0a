"""A shell command line, read the way ``sh``/``bash`` would split it, for the command policy.

``read(text)`` gives the simple commands a line runs (``Cmd``), each with the operator that joins it
to the next (``&&``, ``||``, ``;``, ``|``, ``&``, a newline): ``a && b | c`` is three commands. It
reads quotes (``'...'``, ``"..."``, ``$'...'``), backslashes, comments, redirections (a file written
with ``>`` is a write; ``2>&1`` and ``> /dev/null`` are not), here-documents, and the commands inside
``$(...)``, backticks and ``<(...)``/``>(...)``, which are commands of their own. Assignments before a
command and wrappers that run another command (``env``, ``nohup``, ``time``, ``timeout``, ``nice``,
``xargs`` ...) are taken off, so ``env X=1 /usr/bin/curl`` is ``curl``. Scripts given to a shell
(``sh -c '...'``, ``eval``, a here-document fed to ``bash``) and commands ``find -exec`` runs are read
as commands too.

It is not a shell: what a word holds after expansion (``$X``, a glob) is not known, and is marked so
(``Word.dynamic``). Text it cannot read (an unclosed quote or ``$(``) raises ``Unreadable``.
"""

from __future__ import annotations

import itertools
import os
import re

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
    for part, sep in _parts(lex(text)):
        out += list(_commands(text, part, sep, origin, depth))
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


def _commands(text: str, part: list[Word | Op], sep: str, origin: str, depth: int) -> Iterator[Cmd]:
    while part and isinstance(part[0], Word) and part[0].text in RESERVED and part[0].raw == part[0].text:
        part = part[1:]
    if not part:
        return
    cmd = Cmd(text[part[0].start : part[-1].end].strip(), origin, depth)
    cmd.sep = "; " if sep == "\n" else sep
    inner: list[Cmd] = []
    words: list[Word] = []
    heredoc: str | None = None
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
            pending = None
            continue
        words.append(token)
    first = words[0].text if words else ""
    if first in HEADERS and words and words[0].raw == first:
        yield from inner  # `for x in $(ls)`: only what it runs
        return
    while words and _NAME.match(words[0].raw) and not words[0].raw.startswith("="):
        words = words[1:]
    cmd.argv = _unwrap(words, cmd)
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
    """``words`` without the wrappers in front (``env X=1 timeout 5 curl`` -> ``curl``)."""
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
        i, duration = 0, name == "timeout"
        while i < len(rest):
            w = rest[i].text
            if w == "--":
                i += 1
                break
            if name == "env" and _NAME.match(rest[i].raw):
                i += 1
            elif w.startswith("-") and len(w) > 1:
                i += 2 if w in takes else 1
            elif duration:  # timeout's duration, after its options
                i, duration = i + 1, False
            else:
                break
        if i >= len(rest):
            return words  # the wrapper alone (`env` prints the environment)
        words = rest[i:]
    return words


def _runs(cmd: Cmd, heredoc: str | None, depth: int) -> list[Cmd]:
    """The commands ``cmd`` itself runs: a shell's script, ``eval``'s words, ``find -exec``'s command,
    a here-document fed to a shell."""
    argv, program = cmd.argv, cmd.program
    found: list[Cmd] = []
    if program in SHELLS:
        script = _script_of(argv)
        if script is not None:
            found += _run_text([script], f"{program} -c", depth)
        elif heredoc is not None and all(w.text.startswith(("-", "+")) for w in argv[1:]):
            found += read(heredoc, origin=f"{program} <<", depth=depth + 1)
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
