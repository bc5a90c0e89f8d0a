"""A shell command line split into words and operators the way ``sh``/``bash`` would (the lexer of
``orch.verify.shellcmds``, which reads the commands a line runs for the command policy).

It reads quotes (``'...'``, ``"..."``, ``$'...'``), backslashes, comments, redirections with their
descriptors (``2>``), here-documents (their text is kept with the ``<<`` that starts them) and
``$(...)``, backticks, ``<(...)``/``>(...)``, whose text is kept with the word that holds them. What a
word holds after expansion (``$X``, a glob) is not known, and is marked so (``Word.dynamic``,
``Word.glob``). Text it cannot read (an unclosed quote or ``$(``) raises ``Unreadable``.
"""

from __future__ import annotations

import re

CONTROL = ("&&", "||", ";;&", ";;", ";&", ";", "|&", "|", "&", "\n", "(", ")")
REDIRECT = ("<<<", "<<-", "<<", "<>", "<&", ">>", ">&", ">|", "&>>", "&>", "<", ">")
_IO = re.compile(r"\d+(?=[<>])")


class Unreadable(ValueError):
    """A command line orch cannot split the way the shell would."""


class Word:
    """One word: ``text`` as the shell would pass it when nothing is expanded (quotes removed),
    ``raw`` as written, ``dynamic`` when it holds an expansion, ``glob`` for an unquoted ``*?[``,
    ``brace`` for an unquoted ``{a,b}`` or ``{1..3}`` (bash expands it into several words)."""

    __slots__ = ("text", "raw", "dynamic", "glob", "brace", "subs", "start", "end")

    def __init__(self, text: str, raw: str, start: int, end: int) -> None:
        self.text = text
        self.raw = raw
        self.start = start
        self.end = end
        self.dynamic = False
        self.glob = False
        self.brace = False
        self.subs: list[str] = []  # the command texts of $(...), `...`, <(...) inside it

    def shown(self) -> str:
        return self.raw if self.dynamic else self.text


class Op:
    __slots__ = ("text", "start", "end", "io", "body")

    def __init__(self, text: str, start: int, end: int, io: str = "") -> None:
        self.text = text
        self.start = start
        self.end = end
        self.io = io  # the descriptor before a redirection (2>)
        self.body: str | None = None  # a here-document's text


# -- the lexer ------------------------------------------------------------------------------------------


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.heredocs: list[tuple[Op, str, bool]] = []  # (its redirection, delimiter, strip tabs)

    def tokens(self, *, until_paren: bool = False) -> list[Word | Op]:
        s, depth = self.s, 0
        out: list[Word | Op] = []
        expect_delim: Op | None = None
        while True:
            self._blank()
            if self.i >= len(s):
                if until_paren:
                    raise Unreadable("a $( is never closed")
                return out
            c = s[self.i]
            if c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
                continue
            if c == "\n":
                out.append(Op("\n", self.i, self.i + 1))
                self.i += 1
                self._heredoc_bodies()
                continue
            m = _IO.match(s, self.i)
            io = m.group(0) if m else ""
            j = self.i + len(io)
            op = next((o for o in (*REDIRECT, *CONTROL) if s.startswith(o, j)), None)
            if op in ("<", ">") and s.startswith("(", j + 1):
                op = None  # <(...) and >(...) are words
            if op is not None:
                if op == ")" and until_paren and depth == 0:
                    self.i = j + 1
                    return out
                depth += {"(": 1, ")": -1}.get(op, 0)
                token = Op(op, self.i, j + len(op), io)
                out.append(token)
                self.i = j + len(op)
                if op in ("<<", "<<-"):
                    expect_delim = token
                continue
            word = self._word()
            out.append(word)
            if expect_delim is not None:
                self.heredocs.append((expect_delim, word.text, expect_delim.text == "<<-"))
                expect_delim = None

    def _blank(self) -> None:
        s = self.s
        while self.i < len(s):
            if s[self.i] in " \t\r":
                self.i += 1
            elif s.startswith("\\\n", self.i):
                self.i += 2
            else:
                return

    def _heredoc_bodies(self) -> None:
        s = self.s
        for op, delim, strip in self.heredocs:
            lines = []
            while self.i < len(s):
                end = s.find("\n", self.i)
                line = s[self.i : end if end >= 0 else len(s)]
                self.i = end + 1 if end >= 0 else len(s)
                if (line.lstrip("\t") if strip else line) == delim:
                    break
                lines.append(line)
            op.body = "\n".join(lines)
        self.heredocs = []

    def _word(self) -> Word:
        s, start = self.s, self.i
        text: list[str] = []
        word = Word("", "", start, start)
        braces = 0  # unquoted `{` open, and whether a `,` or `..` followed one (-1)
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r\n;&|()<>":
                if c in "<>" and s.startswith("(", self.i + 1):
                    text.append(self._substitution(word, self.i + 2))
                    continue
                break
            if c == "\\":
                if s.startswith("\n", self.i + 1):
                    self.i += 2
                    continue
                text.append(s[self.i + 1 : self.i + 2])
                self.i += 2
            elif c == "'":
                end = s.find("'", self.i + 1)
                if end < 0:
                    raise Unreadable("a ' quote is never closed")
                text.append(s[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                text.append(self._double(word))
            elif c == "`":
                text.append(self._backtick(word))
            elif c == "$":
                text.append(self._dollar(word))
            else:
                if c in "*?[":
                    word.glob = True
                elif c == "{":
                    braces = max(braces, 0) + 1 if braces >= 0 else braces
                elif braces and (c == "," or s.startswith("..", self.i)):
                    braces = -1
                elif c == "}" and braces < 0:
                    word.brace = True
                text.append(c)
                self.i += 1
        word.text, word.raw, word.end = "".join(text), s[start : self.i], self.i
        return word

    def _double(self, word: Word) -> str:
        s = self.s
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(s):
                raise Unreadable('a " quote is never closed')
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in '$`"\\\n':
                out.append("" if s[self.i + 1] == "\n" else s[self.i + 1])
                self.i += 2
            elif c == "`":
                out.append(self._backtick(word))
            elif c == "$":
                out.append(self._dollar(word, quoted=True))
            else:
                out.append(c)
                self.i += 1

    def _dollar(self, word: Word, *, quoted: bool = False) -> str:
        s, start = self.s, self.i
        nxt = s[self.i + 1 : self.i + 2]
        if nxt == "'" and not quoted:
            return self._ansi_c()
        if s.startswith("$((", self.i):
            self._skip_balanced(self.i + 3, "((", "))", word)
        elif nxt == "(":
            return self._substitution(word, self.i + 2)
        elif nxt == "{":
            self._skip_balanced(self.i + 2, "{", "}", word)
        elif nxt and (nxt.isalnum() or nxt in "_@*#?$!-"):
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])", s[self.i :])
            self.i += len(m.group(0)) if m else 2
        else:
            self.i += 1
            return "$"
        word.dynamic = True
        return s[start : self.i]

    def _substitution(self, word: Word, inner_start: int) -> str:
        """``$(...)``, ``<(...)`` or ``>(...)`` from ``self.i``: lexed like a line of its own."""
        start = self.i
        inner = _Lexer(self.s)
        inner.i = inner_start
        inner.tokens(until_paren=True)
        self.i = inner.i
        word.subs.append(self.s[inner_start : self.i - 1])
        word.dynamic = True
        return self.s[start : self.i]

    def _backtick(self, word: Word) -> str:
        s, start = self.s, self.i
        j = self.i + 1
        while j < len(s) and s[j] != "`":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise Unreadable("a ` quote is never closed")
        word.subs.append(re.sub(r"\\([`$\\])", r"\1", s[start + 1 : j]))
        word.dynamic = True
        self.i = j + 1
        return s[start : self.i]

    def _skip_balanced(self, j: int, opening: str, closing: str, word: Word) -> None:
        s, depth = self.s, 1
        while j < len(s):
            if s.startswith("$(", j) and not s.startswith("$((", j):
                self.i = j
                self._substitution(word, j + 2)
                j = self.i
                continue
            if s.startswith(closing, j):
                depth -= 1
                j += len(closing)
                if depth == 0:
                    self.i = j
                    return
                continue
            if s.startswith(opening, j):
                depth += 1
                j += len(opening)
                continue
            if s[j] in "'\"":
                end = s.find(s[j], j + 1)
                j = end + 1 if end > 0 else len(s)
                continue
            j += 2 if s[j] == "\\" else 1
        raise Unreadable(f"a {opening} is never closed")

    def _ansi_c(self) -> str:
        s = self.s
        j, out = self.i + 2, []
        escapes = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f",
                   "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}  # fmt: skip
        while j < len(s) and s[j] != "'":
            if s[j] == "\\" and j + 1 < len(s):
                m = re.match(r"x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{1,4})|U([0-9a-fA-F]{1,8})|([0-7]{1,3})", s[j + 1 :])
                if m:
                    out.append(chr(int(next(g for g in m.groups() if g), 8 if m.group(4) else 16)))
                    j += 1 + len(m.group(0))
                else:
                    out.append(escapes.get(s[j + 1], "\\" + s[j + 1]))
                    j += 2
            else:
                out.append(s[j])
                j += 1
        if j >= len(s):
            raise Unreadable("a $' quote is never closed")
        self.i = j + 1
        return "".join(out)


def lex(text: str) -> list[Word | Op]:
    """The words and operators of ``text``, here-documents' text attached to their ``<<``."""
    lexer = _Lexer(text)
    tokens = lexer.tokens()
    lexer._heredoc_bodies()  # a here-document on the last line
    return tokens
