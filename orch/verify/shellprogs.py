"""What some well-known programs do beyond their names, read from their arguments, for the command
policy (``orch.verify.shellcmds`` calls these on each command it reads):

- the files a command writes (``sed -i`` and ``sed 'w FILE'``, ``perl -pi``, ``sort -o``, ``dd of=``,
  ``find -fprint``, ``git diff --output=``) and the folders it writes into (``cp``/``mv``/``ln``/
  ``install``/``rsync``'s destination, ``find -delete``'s start folders, ``tar -x -C``), so the
  policy's outside-the-worktree check sees them;
- whether a ``sed`` script runs commands (GNU ``e``, ``s///e``) and whether an ``awk`` program runs
  commands (``system()``, pipes) or writes files (``print > FILE``).

Each is a reading of the words as given, not a full parser: what it cannot follow counts as running
something (the strict side).
"""

from __future__ import annotations

import re

from orch.verify.shellwords import Word

# -- writes ------------------------------------------------------------------------------------------

_DEST_TOOLS = {"cp", "mv", "ln", "install", "rsync"}
_DEST_TAKES = {"-t", "--target-directory", "-S", "--suffix", "-m", "--mode", "-o", "--owner", "-g", "--group",
               "-e", "--rsh", "--exclude", "--include", "--filter", "-f", "--backup-dir", "--chmod", "--chown",
               "--exclude-from", "--include-from", "--files-from", "--log-file", "--partial-dir",
               "--temp-dir"}  # fmt: skip


def writes_of(program: str, argv: list[Word]) -> tuple[list[Word], list[Word]]:
    """The files ``argv`` writes, and the folders it writes or deletes into (``cp x DIR`` writes below DIR:
    a folder below the worktree is inside it, the worktree's parent is not)."""
    words = argv[1:]
    files: list[Word] = []
    under: list[Word] = []
    if program in _DEST_TOOLS:
        operands: list[Word] = []
        i, options = 0, True
        while i < len(words):
            w = words[i].text
            if options and w == "--":
                options = False
            elif options and w.startswith("-") and len(w) > 1 and not words[i].dynamic:
                name, eq, value = w.partition("=")
                if name in ("-t", "--target-directory"):
                    if eq:
                        under.append(_word(value, words[i]))
                    elif i + 1 < len(words):
                        under.append(words[i + 1])
                elif w.startswith("-t") and len(w) > 2 and program != "rsync":
                    under.append(_word(w[2:], words[i]))
                if name in _DEST_TAKES and not eq and not (program == "rsync" and name in ("-t", "-o", "-g")):
                    i += 1
            else:
                operands.append(words[i])
            i += 1
        if len(operands) >= 2 or (program == "ln" and operands):
            under.append(operands[-1] if len(operands) >= 2 else _word(".", operands[0]))
    elif program in ("sed", "perl", "ruby") and _in_place(program, words):
        files += _file_operands(program, words)
    elif program == "sort":
        files += _option_values(words, ("-o", "--output"))
    elif program == "dd":
        files += [_word(w.text[3:], w) for w in words if w.text.startswith("of=")]
    elif program == "find":
        texts = [w.text for w in words]
        for i, w in enumerate(texts):
            if w in ("-fprint", "-fprint0", "-fprintf", "-fls") and i + 1 < len(words):
                files.append(words[i + 1])
        if "-delete" in texts:
            under += _find_starts(words)
    elif program == "tar" and _extracts(words):
        under += _option_values(words, ("-C", "--directory"))
    elif program == "git":
        files += [_word(w.text.partition("=")[2], w) for w in words if w.text.startswith("--output=")]
        files += [words[i + 1] for i, w in enumerate(words[:-1]) if w.text == "--output"]
    return files, under


def _word(text: str, like: Word) -> Word:
    word = Word(text, text, like.start, like.end)
    word.dynamic, word.glob, word.brace = like.dynamic, like.glob, like.brace
    return word


def _in_place(program: str, words: list[Word]) -> bool:
    for w in words:
        t = w.text
        if t == "--":
            return False
        if t.startswith("--in-place") or (t.startswith("-") and not t.startswith("--") and "i" in t[1:].split("e")[0]):
            return True
    return False


def _file_operands(program: str, words: list[Word]) -> list[Word]:
    """``sed -i``'s (or ``perl -pi``'s) files: its operands after the script."""
    out: list[Word] = []
    script_given = False
    i = 0
    while i < len(words):
        t = words[i].text
        if t in ("-e", "-f", "--expression", "--file", "-E" if program == "ruby" else "-e"):
            script_given = True
            i += 2
            continue
        if t.startswith(("--expression=", "--file=")):
            script_given = True
        elif program == "perl" and t.startswith("-") and "e" in t[1:]:
            script_given = True
            if t.endswith("e"):
                i += 1  # -pie 'code': the code is the next word
        elif t.startswith("-") and len(t) > 1:
            pass
        elif not script_given:
            script_given = True  # the script
        else:
            out.append(words[i])
        i += 1
    return out


def _option_values(words: list[Word], names: tuple[str, ...]) -> list[Word]:
    out = []
    for i, w in enumerate(words):
        t = w.text
        if t in names and i + 1 < len(words):
            out.append(words[i + 1])
        elif t.startswith("--") and t.partition("=")[0] in names and "=" in t:
            out.append(_word(t.partition("=")[2], w))
        elif not t.startswith("--") and any(t.startswith(n) and len(t) > len(n) for n in names if len(n) == 2):
            out.append(_word(t[2:], w))
    return out


def _find_starts(words: list[Word]) -> list[Word]:
    starts = []
    i = 0
    while (
        i < len(words)
        and words[i].text in ("-H", "-L", "-P", "-D", "-O")
        or (i < len(words) and re.fullmatch(r"-O\d", words[i].text))
    ):
        i += 2 if words[i].text == "-D" else 1
    while i < len(words) and not words[i].text.startswith(("-", "(", "!")):
        starts.append(words[i])
        i += 1
    return starts or [Word(".", ".", 0, 0)]


def _extracts(words: list[Word]) -> bool:
    if not words:
        return False
    first = words[0].text
    if not first.startswith("-") and "x" in first:
        return True  # `tar xf a.tar`
    return any(
        w.text in ("--extract", "--get") or (re.fullmatch(r"-[A-Za-z]+", w.text) is not None and "x" in w.text)
        for w in words
    )


# -- sed ---------------------------------------------------------------------------------------------


def sed_scripts(words: list[Word]) -> list[Word] | None:
    """The scripts of a ``sed`` command (None: it reads one from a file, ``-f``)."""
    scripts: list[Word] = []
    i = 0
    while i < len(words):
        t = words[i].text
        if t in ("-f", "--file") or t.startswith("--file="):
            return None
        if t in ("-e", "--expression"):
            if i + 1 < len(words):
                scripts.append(words[i + 1])
            i += 2
            continue
        if t.startswith("--expression="):
            scripts.append(_word(t.partition("=")[2], words[i]))
        elif t.startswith("-") and not t.startswith("--") and len(t) > 1:
            for k, flag in enumerate(t[1:], 1):
                if flag == "i":
                    break  # the rest is -i's suffix
                if flag == "f":
                    return None
                if flag in "el":
                    rest = t[k + 1 :]
                    if flag == "e":
                        scripts.append(_word(rest, words[i]) if rest else words[min(i + 1, len(words) - 1)])
                    i += 0 if rest else 1
                    break
        elif t.startswith("-") and len(t) > 1:
            pass
        elif not scripts:
            scripts.append(words[i])
            break
        i += 1
    return scripts


def sed_effects(script: str) -> tuple[bool, list[str]]:
    """Whether a GNU ``sed`` script runs commands (``e``, ``s///e``), and the files it writes (``w``,
    ``W``, ``s///w``). A script it cannot follow counts as running commands."""
    s, i, n = script, 0, len(script)
    runs, writes = False, list[str]()

    def rest_of_line(j: int) -> tuple[str, int]:
        end = s.find("\n", j)
        end = n if end < 0 else end
        return s[j:end].strip(), end

    while i < n:
        c = s[i]
        if c in " \t\n;{}!,0123456789$~+":
            i += 1
            continue
        if c == "/" or (c == "\\" and i + 1 < n):  # an address /re/ or \cREc
            delim = "/" if c == "/" else s[i + 1]
            j = i + (1 if c == "/" else 2)
            while j < n and s[j] != delim:
                j += 2 if s[j] == "\\" else 1
            if j >= n:
                return True, writes
            i = j + 1
            while i < n and s[i] in "IM":
                i += 1
            continue
        if c == "#" or c in "aicrR:bTtvlLqQ":
            if c in "aic" and s.startswith(("\\\n", "\\"), i + 1):
                while i < n:  # a text of several lines, each but the last ending in `\`
                    _, end = rest_of_line(i)
                    i = end + 1
                    if not s[:end].endswith("\\"):
                        break
                continue
            _, i = rest_of_line(i + 1) if c in "#aicrR:" else _label(s, i + 1)
            continue
        if c in "sy":
            if i + 1 >= n or s[i + 1] in "\\\n":
                return True, writes
            delim, j, parts = s[i + 1], i + 2, 0
            while j < n and parts < 2:
                if s[j] == "\\":
                    j += 2
                    continue
                if s[j] == delim:
                    parts += 1
                j += 1
            if parts < 2:
                return True, writes
            k = j
            while k < n and s[k] not in ";\n}":
                if s[k] in "wW" and c == "s":
                    target, k = rest_of_line(k + 1)
                    writes.append(target)
                    break
                if s[k] == "e" and c == "s":
                    runs = True
                k += 1
            i = k
            continue
        if c == "e":
            return True, writes
        if c in "wW":
            target, i = rest_of_line(i + 1)
            writes.append(target)
            continue
        if c in "=dDgGhHnNpPxzF":
            i += 1
            continue
        return True, writes  # a command this reading does not know
    return runs, writes


def _label(s: str, j: int) -> tuple[str, int]:
    end = j
    while end < len(s) and s[end] not in ";\n}":
        end += 1
    return s[j:end].strip(), end


# -- awk ---------------------------------------------------------------------------------------------

_AWK_TAKES = {"-F", "-v", "-f", "-i", "-l", "-E", "--field-separator", "--assign", "--file", "--include", "--load"}
_AWK_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_AWK_REGEX = re.compile(r"(^|[(,~!{};&|]|\bin)\s*/(?:[^/\\\n]|\\.)*/")


def awk_program(words: list[Word]) -> Word | None:
    """An ``awk`` command's program text (None: it runs a program file, ``-f``, or none is given)."""
    i = 0
    while i < len(words):
        t = words[i].text
        if t in ("-f", "--file", "-i", "--include", "-l", "--load", "-E", "--exec") or t.startswith(
            ("--file=", "--include=", "--load=", "--exec=", "-f", "-E")
        ):
            return None
        if t in ("-e", "--source"):
            return words[i + 1] if i + 1 < len(words) else None
        if t == "--":
            return words[i + 1] if i + 1 < len(words) else None
        if t in _AWK_TAKES:
            i += 2
            continue
        if t.startswith("-") and len(t) > 1:
            i += 1
            continue
        return words[i]
    return None


def awk_effects(program: str) -> tuple[bool, bool]:
    """Whether an ``awk`` program runs commands (``system()``, ``| getline``, ``print | "cmd"``,
    ``@load``), and whether it writes files (``print > FILE``)."""
    code = _AWK_REGEX.sub(r"\1 R", _AWK_STRING.sub("S", program))
    runs = bool(re.search(r"\bsystem\s*\(|(?<!\|)\|(?!\|)|@load\b", code))
    writes = bool(re.search(r"\bprintf?\b[^;{}\n]*>", code))
    return runs, writes
