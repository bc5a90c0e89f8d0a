"""Files are the database: atomic, locked, schema-validated reads and writes.

* Every YAML file is validated on read against ``schemas/<name>.schema.json``; errors name the file,
  the line and the field, with a closest-match hint for unknown keys.
* A file that is empty, truncated or carries merge-conflict markers is reported and left exactly
  as it is: never replaced by defaults.
* Every write goes to a temp file in the same folder, is fsynced and renamed over the target with
  ``os.replace`` (``orch.core.atomic``), under an ``flock`` on a file in ``.orch/run/locks/``. Lock
  files are never deleted.
* Validating with jsonschema costs more than reading the files, so a content digest of every file
  that passed is remembered in ``.orch/run/cache/valid/``, holding the parsed data as JSON (several
  times faster to load than YAML): re-reading an unchanged file is cheap, and a changed file has a
  new digest, so it is parsed and validated again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orch.core.atomic import atomic_write  # orch's modules import it from here too
from orch.core.errors import EnvError, InputError

_CONFLICT_PREFIXES = ("<<<<<<< ", ">>>>>>> ", "||||||| ")


def data_dir(kind: str) -> Path:
    """``schemas`` or ``templates``: inside the wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent.parent  # the orch package
    shipped = here / "_data" / kind
    return shipped if shipped.is_dir() else here.parent / kind


@functools.cache
def schema_text(name: str) -> str:
    return (data_dir("schemas") / f"{name}.schema.json").read_text(encoding="utf-8")


def schema(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(schema_text(name))
    return result


def template(name: str) -> str:
    return (data_dir("templates") / name).read_text(encoding="utf-8")


@functools.cache
def _yaml() -> tuple[Any, Any, Any]:
    """(yaml, Loader, Dumper), imported on first use: a warm cache answers without PyYAML at all.

    The C loader and dumper (libyaml) are several times faster; fall back quietly where they are
    missing.
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class StrictLoader(base):  # type: ignore[valid-type,misc]
        """A duplicate key is an error at the duplicate, not a silent 'last one wins'."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            first: dict[tuple[str, str], int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = (key_node.tag, key_node.value)
                    if key in first:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"duplicate key '{key_node.value}' (first at line {first[key]})",
                            key_node.start_mark,
                        )
                    first[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return yaml, StrictLoader, dumper


def conflict_marker_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(_CONFLICT_PREFIXES) or line == "=======":
            return number
    return None


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML text, turning problems into ``InputError`` naming ``where:line``."""
    if not text.strip():
        raise InputError(
            f"{where}: the file is empty",
            hint="restore it (git checkout -- FILE, or from .bak) or delete it and run orch init",
        )
    marker = conflict_marker_line(text)
    if marker is not None:
        raise InputError(
            f"{where}:{marker}: unresolved merge conflict marker",
            hint="resolve the conflict by hand; orch leaves the file as it is",
        )
    yaml, loader, _ = _yaml()
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
            # A character YAML refuses (a control character): the reader knows its offset, not its line.
            line = f":{text.count(chr(10), 0, exc.position) + 1}"
            problem = f"{exc.reason}: U+{exc.character:04X}"
        raise InputError(
            f"{where}{line}: not valid YAML: {problem}",
            hint="fix the syntax; orch leaves the file as it is",
        ) from exc


def dump_yaml(data: Any) -> str:
    """YAML with a stable key order (insertion order), so diffs stay small."""
    yaml, _, dumper = _yaml()
    text: str = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


# -- validation -------------------------------------------------------------------------------------


def _line_of(text: str, path: list[Any], key: str | None = None) -> int | None:
    """The 1-based line of the node at ``path`` (or of its key ``key``) in the YAML ``text``."""
    yaml, loader, _ = _yaml()
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for step in [*path, key] if key is not None else path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(step):
                    line = k.start_mark.line + 1
                    node = v if step is not key else k
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _item_lines(text: str, key: str) -> list[int]:
    """The 1-based line of each item of the top-level sequence ``key`` in the YAML ``text`` (one
    parse for all of them; ``_line_of`` per item would parse the text once per item)."""
    yaml, loader, _ = _yaml()
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return []
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key and isinstance(v, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in v.value]
    return []


def _describe(error: Any) -> list[tuple[str, list[Any]]]:
    """Readable messages, each with the path of the node it is about, for one jsonschema error."""
    path = list(error.absolute_path)
    field = ".".join(str(p) for p in path) or "(top level)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        import difflib

        known = sorted((error.schema.get("properties") or {}).keys())
        found = []
        for key in [k for k in error.instance if k not in known]:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(known)}"
            where = f" in {field}" if path else ""
            found.append((f"unknown field '{key}'{where} ({hint})", [*path, key]))
        return found
    if error.validator == "pattern" and error.validator_value == "^[^\\u0000]*$":  # argv, path, environment
        return [(f"{field}: holds a NUL character, which no command, path or environment can carry", path)]
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value if v is not None)
        return [(f"{field}: {error.instance!r} is not one of {allowed}", path)]
    message, size = error.message, len(error.message)  # a value of 10,000 characters is not repeated whole
    message = message if size <= 300 else f"{message[:200]}... ({size} characters)"
    return [(f"{field}: {message}", path)]


def _blake2b() -> Any:
    try:  # the built-in module: hashlib would load OpenSSL first, which costs more than the hashing
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - CPython always has it
        from hashlib import blake2b
    return blake2b(digest_size=16)


_MISS = object()


class _ValidCache:
    """Digests of (schema, content) pairs that passed validation, one file each holding the data as JSON.

    The digest covers the schema text and the file's bytes, so an edited file or an edited schema
    never hits an old entry. An entry that is empty or unreadable (data JSON cannot represent, such
    as a YAML date) still says "valid"; the caller then parses the YAML again.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def key(self, name: str, text: str) -> str:
        h = _blake2b()
        h.update(schema_text(name).encode())
        h.update(b"\0")
        h.update(text.encode("utf-8", "surrogateescape"))
        return f"{name}-{h.hexdigest()}"

    def hit(self, name: str, text: str) -> bool:
        return self.folder is not None and (self.folder / self.key(name, text)).exists()

    def get(self, name: str, text: str) -> Any:
        """The data remembered for this content, ``None`` if valid but not remembered, else ``_MISS``."""
        if self.folder is None:
            return _MISS
        try:
            cached = (self.folder / self.key(name, text)).read_bytes()
        except OSError:
            return _MISS
        if not cached:
            return None
        try:
            return json.loads(cached)
        except ValueError:
            return None

    def remember(self, name: str, text: str, data: Any = None) -> None:
        if self.folder is None:
            return
        payload = b""
        try:
            encoded = json.dumps(data, ensure_ascii=False, allow_nan=False)
            if json.loads(encoded) == data:  # int keys, dates, tuples would not come back the same
                payload = encoded.encode("utf-8", "surrogateescape")
        except (TypeError, ValueError):
            pass
        path = self.folder / self.key(name, text)
        with contextlib.suppress(OSError):
            if path.read_bytes() == payload:  # a read from source finds the entry right: no write
                return
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, payload, durable=False)


def validate(data: Any, name: str, *, text: str, where: str) -> None:
    """Check ``data`` (parsed from ``text``) against schema ``name``; report every problem at once."""
    import jsonschema  # heavy: only when a file is new or changed

    if data is None:
        raise InputError(
            f"{where}: holds no settings (only comments or blank lines)",
            hint="restore it (git checkout -- FILE, or from .bak); orch leaves it as it is",
        )
    validator_cls = jsonschema.validators.validator_for(schema(name))
    validator = validator_cls(schema(name))
    found: list[tuple[int, str]] = []
    for error in validator.iter_errors(data):
        for message, path in _describe(error):
            line = _line_of(text, path[:-1], path[-1]) if path else 1
            found.append((line or 1, message))
    if not found:
        return
    found.sort()
    lines = [f"{where}:{line}: {message}" for line, message in found[:20]]
    if len(found) > 20:
        lines.append(f"{where}: ... and {len(found) - 20} more")
    raise InputError("\n".join(lines), hint="fix the file by hand; orch leaves it as it is")


class Store:
    """Reads and writes the files under one ``.orch/`` folder."""

    def __init__(self, root: Path, orch_dir: Path, *, cache: bool = True) -> None:
        """``cache=False``: every read parses and validates the file itself, never trusting the
        validation cache (an untracked folder anyone can write); what passes is still remembered."""
        self.root = root  # paths in messages are relative to it
        self.orch_dir = orch_dir
        run = orch_dir / "run"
        self.lock_dir = run / "locks"
        self.use_cache = cache
        self._cache = _ValidCache(run / "cache" / "valid" if run.is_dir() else None)

    def where(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # -- reading ------------------------------------------------------------------------------------

    def read_text(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise
        except UnicodeDecodeError as exc:
            raise InputError(f"{self.where(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except OSError as exc:
            raise EnvError(f"cannot read {self.where(path)}: {exc.strerror}") from exc

    def load(self, path: Path, schema_name: str) -> Any:
        """Parse and validate a YAML file; ``FileNotFoundError`` passes through for the caller."""
        text = self.read_text(path)
        return self.loads(text, schema_name, where=self.where(path))

    def loads(self, text: str, schema_name: str, *, where: str) -> Any:
        if not self.use_cache:
            # Judging (verify, merge) takes the data from the file itself, never from the cache, which
            # anyone can write. It does skip re-validating text the cache has seen pass: a planted
            # "valid" mark for a broken file makes orch fail on it later, not read it differently.
            data = parse_yaml(text, where)
            if not self._cache.hit(schema_name, text):
                validate(data, schema_name, text=text, where=where)
                self._cache.remember(schema_name, text, data)
            return data
        cached = self._cache.get(schema_name, text)
        if cached is not None and cached is not _MISS:
            return cached
        data = parse_yaml(text, where)
        if cached is _MISS:
            validate(data, schema_name, text=text, where=where)
            self._cache.remember(schema_name, text, data)
        return data

    # -- writing ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 60.0) -> Iterator[None]:
        """An exclusive lock named ``name``: ``flock`` on a file in .orch/run/locks/, never deleted.

        ``fcntl`` directly, as the event log does: the filelock package costs a command ~15 ms to
        import, more than a whole ``orch verify``. The kernel drops the lock when the holder dies, so
        a killed command never leaves one behind; waiting polls, backing off to 20 ms.
        """
        import fcntl
        import time

        safe = name.replace("/", "%")
        path = self.lock_dir / f"{safe}.lock"
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            import errno

            if exc.errno == errno.ENAMETOOLONG:
                raise InputError(
                    f"cannot lock '{name[:40]}...': its lock file name is {len(safe) + 5} characters, "
                    "longer than the file system allows",
                    where=self.where(self.lock_dir),
                    hint="the name comes from a task or file name that is too long: shorten or remove it",
                ) from None
            raise EnvError(
                f"cannot open the lock file {self.where(path)}: {exc.strerror}", hint="fix its permissions"
            ) from None
        try:
            deadline = time.monotonic() + timeout
            pause = 0.0005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if not isinstance(exc, BlockingIOError):  # ENOLCK, ENOSYS: no flock on this filesystem
                        raise EnvError(
                            f"cannot lock {self.where(path)}: {exc.strerror}",
                            hint="put the repository on a local filesystem that supports flock",
                        ) from None
                    if time.monotonic() >= deadline:
                        raise EnvError(
                            f"timed out after {timeout:.0f}s waiting for the lock on {name}",
                            hint="another orch command holds it; wait for it to finish",
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def lock_name(self, path: Path) -> str:
        return self.where(path)

    def write_text(self, path: Path, text: str) -> None:
        """Atomic replace of ``path``; the caller holds the lock."""
        atomic_write(path, text)

    def dump(self, path: Path, data: Any, schema_name: str, *, durable: bool = True, check: bool = True) -> str:
        """Write ``data`` atomically as YAML, validated first; the caller holds the lock.

        ``check=False`` is for a hot path writing what orch built itself from data that was
        validated: it is not validated again (importing jsonschema alone costs more than such a
        whole command) unless ``ORCH_CHECK_WRITES=1``, as the test suite sets. Either way the
        content is remembered as valid, so its readers need not validate it either.
        """
        text = dump_yaml(data)
        if check or os.environ.get("ORCH_CHECK_WRITES") == "1":
            validate(data, schema_name, text=text, where=self.where(path))
        atomic_write(path, text, durable=durable)
        self._cache.remember(schema_name, text, data)
        return text

    def save(self, path: Path, data: Any, schema_name: str, *, check: bool = True) -> None:
        with self.lock(self.lock_name(path)):
            self.dump(path, data, schema_name, check=check)

    def update(
        self,
        path: Path,
        schema_name: str,
        change: Callable[[Any], Any],
        *,
        default: Callable[[], Any] | None = None,
        durable: bool = True,
        check: bool = True,
    ) -> Any:
        """Read-modify-write under the lock: ``change`` gets the state as it is *after* locking.

        ``change`` returns the new data (or mutates and returns it). ``default`` builds the state of a
        file that does not exist yet; without it, a missing file is an error. ``durable`` and
        ``check`` are passed to ``dump``.
        """
        with self.lock(self.lock_name(path)):
            try:
                current = self.load(path, schema_name)
            except FileNotFoundError:
                if default is None:
                    raise InputError(f"{self.where(path)}: missing") from None
                current = default()
            new = change(current)
            self.dump(path, new, schema_name, durable=durable, check=check)
            return new
