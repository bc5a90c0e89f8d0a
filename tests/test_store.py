"""The store: validated reads naming file:line:field, broken files left alone, atomic locked writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Orch

from orch.core import state
from orch.core.errors import EnvError, InputError
from orch.core.repo import find_project
from orch.core.store import Store, atomic_write, dump_yaml

CONFIG = "version: 1\nbase_branch: main\ntest_command: 'true'\nmax_parallel: 2\ndefaults:\n  agent: shell\n"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    (tmp_path / ".orch" / "run").mkdir(parents=True)
    return Store(tmp_path, tmp_path / ".orch")


def write(store: Store, rel: str, text: str) -> Path:
    path = store.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(store: Store, path: Path, schema: str) -> str:
    with pytest.raises(InputError) as info:
        store.load(path, schema)
    return info.value.render()


def test_valid_files_load(store: Store) -> None:
    path = write(store, ".orch/config.yaml", CONFIG)
    assert store.load(path, "config") == {
        "version": 1,
        "base_branch": "main",
        "test_command": "true",
        "max_parallel": 2,
        "defaults": {"agent": "shell"},
    }


def test_errors_name_file_line_and_field_with_hints(store: Store) -> None:
    path = write(
        store,
        ".orch/config.yaml",
        "version: 1\nbase_branch: main\ntest_comand: x\nmax_parallel: many\ndefaults:\n  agnt: shell\n  zzz: 1\n",
    )
    assert load_error(store, path, "config") == (
        ".orch/config.yaml:3: unknown field 'test_comand' (did you mean 'test_command'?)\n"
        ".orch/config.yaml:4: max_parallel: 'many' is not of type 'integer'\n"
        ".orch/config.yaml:6: unknown field 'agnt' in defaults (did you mean 'agent'?)\n"
        ".orch/config.yaml:7: unknown field 'zzz' in defaults (known fields: agent, approve_plan, budget, check, "
        "max_iterations, max_per_strategy, max_strategies, model, task_timeout, tdd_gate, timeout)\n"
        "  hint: fix the file by hand; orch leaves it as it is"
    )


@pytest.mark.parametrize(
    ("schema", "text", "expected"),
    [
        ("config", "version: 1\n", ".orch/x.yaml:1: (top level): 'base_branch' is a required property"),
        ("config", "version: 2\nbase_branch: main\n", ".orch/x.yaml:1: version: 1 was expected"),
        ("locks", "locks:\n  - id: L1\n    kind: path\n    mode: medium\n",
         ".orch/x.yaml:4: locks.0.mode: 'medium' is not one of hard, soft"),
        ("locks", "locks:\n  - id: 1L\n    kind: path\n    mode: hard\n",
         ".orch/x.yaml:2: locks.0.id: '1L' does not match"),
        ("agent", "command: []\n", ".orch/x.yaml:1: command: [] should be non-empty"),
        ("agent", "command: [x]\nusage: tokens\n", ".orch/x.yaml:2: usage: 'tokens' is not one of claude-json"),
        ("task_status", "id: T1\nstate: DONE\n", ".orch/x.yaml:2: state: 'DONE' is not one of PENDING, RUNNING"),
        ("task_status", "id: T1\nstate: RUNNING\nnotes:\n  - at: x\n",
         ".orch/x.yaml:4: notes.0: 'text' is a required property"),
        ("task_manifest", "id: T1\ntitle: t\nbranch: orch/T1\nworktree: w\nbase_sha: nope\n",
         ".orch/x.yaml:5: base_sha: 'nope' does not match"),
        ("config", "# only a comment\n", ".orch/x.yaml: holds no settings (only comments or blank lines)"),
        ("config", "- a\n- b\n", ".orch/x.yaml:1: (top level): ['a', 'b'] is not of type 'object'"),
    ],
)  # fmt: skip
def test_every_schema_reports_where(store: Store, schema: str, text: str, expected: str) -> None:
    path = write(store, ".orch/x.yaml", text)
    assert load_error(store, path, schema).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ".orch/config.yaml: the file is empty"),
        ("  \n\n", ".orch/config.yaml: the file is empty"),
        ("version: 1\nbase_branch: main\ndefaults:\n  agent: [she", ".orch/config.yaml:5: not valid YAML"),
        ("version: 1\nbase_branch: 'ma", ".orch/config.yaml:2: not valid YAML: found unexpected end of stream"),
        ("version: 1\n<<<<<<< HEAD\nbase_branch: a\n=======\nbase_branch: b\n>>>>>>> x\n",
         ".orch/config.yaml:2: unresolved merge conflict marker"),
        ("version: 1\nbase_branch: main\ntest_command: make\ntest_command: true\n",
         ".orch/config.yaml:4: not valid YAML: duplicate key 'test_command' (first at line 3)"),
        ("version: 1\nbase_branch: main\nlimits:\n  max_parallel: 2\n  max_parallel: 9\n",
         ".orch/config.yaml:5: not valid YAML: duplicate key 'max_parallel' (first at line 4)"),
    ],
)  # fmt: skip
def test_broken_files_are_reported_and_left_byte_identical(project: Path, orch: Orch, text: str, expected: str) -> None:
    config = project / ".orch/config.yaml"
    config.write_text(text)
    r = orch("init")  # init reads the config back: it must report it, not replace it with defaults
    assert r.returncode == 3, r.output
    assert r.stderr.startswith(f"orch: {expected}")
    assert "Traceback" not in r.output
    assert config.read_text() == text
    assert not (project / ".orch/config.yaml.bak").exists()


def test_a_broken_status_file_is_reported_by_status_and_left(project: Path, orch: Orch) -> None:
    status = project / ".orch/run/tasks/T1/status.yaml"
    status.parent.mkdir(parents=True)
    status.write_bytes(b"id: T1\nstate: RUNN")  # truncated mid-write by something that is not orch
    r = orch("status")
    assert r.returncode == 3
    assert r.stderr.startswith("orch: .orch/run/tasks/T1/status.yaml:2: state: 'RUNN' is not one of PENDING")
    assert status.read_bytes() == b"id: T1\nstate: RUNN"
    p = find_project(project)
    with pytest.raises(InputError):  # a read-modify-write refuses too, leaving the bytes as they are
        state.update(p, Store(p.root, p.orch_dir), "T1", lambda s: s.update(state="FAILED"))
    assert status.read_bytes() == b"id: T1\nstate: RUNN"


def test_writes_are_atomic_and_leave_no_temp_files(store: Store) -> None:
    path = store.orch_dir / "run" / "tasks" / "T1" / "status.yaml"
    fresh = {"id": "T1", "state": "PENDING"}
    for n in range(5):
        store.update(path, "task_status", lambda s, n=n: {**s, "iterations": n}, default=lambda: dict(fresh))
    assert store.load(path, "task_status")["iterations"] == 4
    assert sorted(os.listdir(path.parent)) == ["status.yaml"]
    before = path.read_bytes()

    def boom(current: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("change failed half-way")

    with pytest.raises(RuntimeError):
        store.update(path, "task_status", boom)
    with pytest.raises(InputError, match="state: 'NOPE' is not one of"):  # invalid data is never written
        store.update(path, "task_status", lambda s: {**s, "state": "NOPE"})
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["status.yaml"]
    assert sorted(os.listdir(store.lock_dir)) == [".orch%run%tasks%T1%status.yaml.lock"]


def test_atomic_write_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write(path, "one")
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    atomic_write(path, b"two")
    assert (path.read_text(), path.stat().st_mode & 0o777) == ("two", 0o600)
    assert os.listdir(tmp_path) == ["f.txt"]


def test_update_of_a_missing_file_without_default_is_an_error(store: Store) -> None:
    with pytest.raises(InputError, match="missing"):
        store.update(store.orch_dir / "nothing.yaml", "config", lambda d: d)
    assert not (store.orch_dir / "nothing.yaml").exists()


WORKER = """
import sys
from pathlib import Path
from orch.core import state
from orch.core.repo import find_project
from orch.core.store import Store

project = find_project(sys.argv[1])
store = Store(project.root, project.orch_dir)
for _ in range(int(sys.argv[2])):
    def bump(s):
        s["iterations"] = s.get("iterations", 0) + 1
    state.update(project, store, "T1", bump)
"""


def test_concurrent_read_modify_write_loses_no_update(project: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(project), "15"], stderr=subprocess.PIPE, text=True)
        for _ in range(12)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, errors
    p = find_project(project)
    status = state.read(p, Store(p.root, p.orch_dir), "T1")
    assert status is not None and status["iterations"] == 12 * 15
    assert sorted(os.listdir(project / ".orch/run/tasks/T1")) == ["status.yaml"]
    # the lock file is still there: deleting it while another process waits would let two writers in
    assert (project / ".orch/run/locks/.orch%run%tasks%T1%status.yaml.lock").exists()


HOLDER = """
import sys, time
from pathlib import Path
from orch.core.store import Store

store = Store(Path(sys.argv[1]), Path(sys.argv[1]) / ".orch")
with store.lock("the-name"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_times_out_with_a_message_and_dies_with_its_holder(store: Store) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(EnvError, match="timed out after 0s waiting for the lock on the-name") as info:
            with store.lock("the-name", timeout=0.2):
                raise AssertionError("two holders at once")
        assert info.value.hint == "another orch command holds it; wait for it to finish"
        with store.lock("another-name", timeout=0.2):  # other names are not held up
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
        holder.wait()
    with store.lock("the-name", timeout=5):
        pass
    assert sorted(os.listdir(store.lock_dir)) == ["another-name.lock", "the-name.lock"]


def test_the_validation_cache_is_not_fooled_by_a_changed_file(store: Store) -> None:
    path = write(store, ".orch/config.yaml", CONFIG)
    assert store.load(path, "config")["max_parallel"] == 2
    cache = store.orch_dir / "run" / "cache" / "valid"
    assert len(os.listdir(cache)) == 1
    path.write_text(CONFIG.replace("max_parallel: 2", "max_parallel: 3"))  # same length, new content
    assert store.load(path, "config")["max_parallel"] == 3
    path.write_text(CONFIG.replace("max_parallel: 2", "max_parallel: 0"))  # same length, now invalid
    assert load_error(store, path, "config").startswith(".orch/config.yaml:4: max_parallel: 0 is less than")
    path.write_text(CONFIG)  # back to the first content: the cache answers, with equal data
    assert store.load(path, "config")["max_parallel"] == 2
    assert len(os.listdir(cache)) == 2
    # the same text under another schema is checked against that schema, not taken from the cache
    assert load_error(store, path, "agent").startswith(".orch/config.yaml:1: (top level): 'command' is a required")


def test_a_damaged_cache_entry_falls_back_to_parsing(store: Store) -> None:
    path = write(store, ".orch/config.yaml", CONFIG)
    first = store.load(path, "config")
    cache = store.orch_dir / "run" / "cache" / "valid"
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    assert store.load(path, "config") == first
    entry.write_text("")  # an empty entry (older orch) still means valid
    assert store.load(path, "config") == first


def test_data_json_cannot_hold_is_reparsed_not_mangled(store: Store) -> None:
    path = write(store, ".orch/agents/x.yaml", "command: [run]\nenv:\n  '1': one\n")
    assert store.load(path, "agent") == {"command": ["run"], "env": {"1": "one"}}
    assert store.load(path, "agent") == {"command": ["run"], "env": {"1": "one"}}
    path.write_text("command: [run]\nmodel: null\nmax_tokens: 100\nbudget: 1.5\n")
    for _ in range(2):
        assert store.load(path, "agent") == {"command": ["run"], "model": None, "max_tokens": 100, "budget": 1.5}


def test_loaded_data_is_a_fresh_copy(store: Store) -> None:
    path = write(store, ".orch/config.yaml", CONFIG)
    store.load(path, "config")
    first = store.load(path, "config")
    first["defaults"]["agent"] = "changed"
    assert store.load(path, "config")["defaults"]["agent"] == "shell"


def test_dump_yaml_keeps_key_order() -> None:
    assert dump_yaml({"b": 1, "a": {"z": 1, "y": [1, 2]}}) == "b: 1\na:\n  z: 1\n  y:\n  - 1\n  - 2\n"


def test_not_utf8_is_reported(store: Store) -> None:
    path = store.orch_dir / "config.yaml"
    path.write_bytes(b"version: 1\nbase_branch: \xff\n")
    assert load_error(store, path, "config").startswith(".orch/config.yaml: not UTF-8 text")
