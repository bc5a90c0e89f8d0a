"""The box: agents (and every command that runs their code) in a real bubblewrap sandbox.

Each agent is a real shell script run through the ``shell`` preset; bwrap, git and orch are real
processes. What is checked: what the agent could not do (each attempt's own exit status, recorded in
its worktree), what it did do that orch kept (its commits, brought in and checked), what it told orch
(through its outbox), and the switches (``sandbox: auto|on|off``, ``network``, ``ORCH_BWRAP``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import threading
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, status_of, wait_state, write_plan

from orch.core import box

WHY = box.unavailable()
needs_box = pytest.mark.skipif(
    WHY is not None and not os.environ.get("CI"), reason=f"no sandbox here: {WHY} (scripts/test installs bubblewrap)"
)
pytestmark = needs_box


def plan(repo: Path, script: Path, *, task_id: str = "T1", extra: str = "") -> None:
    write_plan(
        repo,
        f"# Plan: box\n\n## {task_id}: Boxed\n- scope: ^src/\n- deps: none\n- agent: shell\n"
        f"- run: sh {shlex.quote(str(script))}\n{extra}\nBrief.\n",
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plan")


def agent(tmp_path: Path, body: str, name: str = "agent.sh") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def attempts(worktree: Path) -> dict[str, int]:
    """What the agent's ``try NAME CMD`` lines recorded: NAME -> exit status."""
    out = {}
    for line in (worktree / "src/attempts.txt").read_text().splitlines():
        name, code = line.rsplit(" ", 1)
        out[name] = int(code)
    return out


TRY = 'mkdir -p src\ntry() { name=$1; shift; ( "$@" ) >/dev/null 2>&1; echo "$name $?" >> src/attempts.txt; }\n'


def test_what_judges_the_agent_is_out_of_its_reach_and_its_commits_come_in(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    script = agent(
        tmp_path,
        TRY
        + f"""export ROOT={shlex.quote(str(project))}
mkdir -p src && echo work > src/a.py && git add src/a.py && git commit -q -m 'agent work'
try locks_abs sh -c 'echo x >> "$ROOT/.orch/locks.yaml"'
try locks_rel sh -c 'echo x >> ../../../.orch/locks.yaml'
try plan sh -c 'echo x >> "$ROOT/.orch/plan.md"'
try main_checkout sh -c 'echo x > "$ROOT/README.md"'
try status sh -c 'echo "state: SUCCESS" > "$ROOT/.orch/run/tasks/T1/status.yaml"'
try shared_config git config --file "$ROOT/.git/config" core.hooksPath /tmp/evil
try hooks sh -c 'echo "#!/bin/sh" > "$ROOT/.git/hooks/pre-commit"'
try main_ref_file sh -c 'echo 0000000000000000000000000000000000000000 > "$ROOT/.git/refs/heads/main"'
try real_objects sh -c 'rm -rf "$ROOT/.git/objects/pack"'
try home sh -c 'echo x > "$HOME/planted"'
try supervisor kill -0 {os.getpid()}
try tmp_is_private sh -c 'echo mine > /tmp/box-was-here'
git update-ref refs/heads/main HEAD
git checkout -q -b side && git commit -q --allow-empty -m 'on the side' && git checkout -q orch/T1
echo uncommitted > src/b.py
""",
    )
    plan(project, script)
    main_before = git(project, "rev-parse", "main")
    config_before = (project / ".git/config").read_text()
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS", status_of(project, "T1")
    wt = project / ".orch/worktrees/T1"
    tried = attempts(wt)
    refused = {k: v for k, v in tried.items() if k != "tmp_is_private"}
    assert all(code != 0 for code in refused.values()), tried  # every attempt failed at once
    assert tried["tmp_is_private"] == 0 and not Path("/tmp/box-was-here").exists()
    assert not (Path(os.environ["HOME"]) / "planted").exists()
    # what judges it, untouched
    assert git(project, "rev-parse", "main") == main_before
    assert (project / ".git/config").read_text() == config_before
    assert git(project, "status", "--porcelain") == ""
    st = status_of(project, "T1")
    assert st["sandbox"] == "on, no network"
    # its commits came in, checked by git, and nothing it made is lost
    log = git(project, "log", "--format=%s", "main..orch/T1").splitlines()
    assert log[1:] == ["agent work"] and log[0].startswith("orch: snapshot"), log
    assert git(project, "show", "orch/T1:src/b.py") == "uncommitted"
    kept = git(project, "for-each-ref", "--format=%(refname)", "refs/orch/kept/T1/box/").splitlines()
    assert kept == ["refs/orch/kept/T1/box/heads/side"], kept  # main is on orch/T1: nothing more to keep
    assert git(project, "log", "-1", "--format=%s", kept[0]) == "on the side"
    assert "the agent moved refs/heads/main in its box" in (project / ".orch/run/log").read_text()
    git(project, "fsck", "--no-dangling")
    assert git(wt, "status", "--porcelain") == ""  # the worktree's index follows its new HEAD
    # and it lands through the ceremony like any task
    orch.ok("merge")
    assert status_of(project, "T1")["state"] == "MERGED"


def test_report_from_the_box_goes_through_the_outbox(project: Path, orch: Orch, tmp_path: Path) -> None:
    script = agent(
        tmp_path,
        "orch report PROGRESS --note 'half way'\n"
        "orch report BLOCKED --note 'which database?'\n"
        # forged entries in the outbox: orch reads them as untrusted input
        "ls -d ../../run/tasks/T1/outbox >/dev/null 2>&1 || true\n"
        'box="$ORCH_HOME/run/tasks/T1/outbox"\n'
        'echo \'{"kind": "SUCCESS", "text": "all done", "state": "MERGED"}\' > "$box/1-1-0000000a.json"\n'
        'echo \'{"kind": "MERGED", "text": "x"}\' > "$box/2-1-0000000b.json"\n'
        'echo "not json" > "$box/3-1-0000000c.json"\n'
        'ln -s /etc/passwd "$box/4-1-0000000d.json"\n'
        'echo \'{"kind": "PROGRESS", "text": "odd name"}\' > "$box/status.yaml"\n',
    )
    plan(project, script)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    st = status_of(project, "T1")
    texts = [n["text"] for n in st["notes"]]
    assert {"half way", "which database?", "all done"} == set(texts), texts  # the forged SUCCESS: a note only
    assert st["state"] == "BLOCKED" and "which database?" in st["reason"]
    assert "which database?" in (project / ".orch/run/tasks/T1/BLOCKER_REPORT.md").read_text()
    log = (project / ".orch/run/log").read_text()
    for refused in ("2-1-0000000b.json", "3-1-0000000c.json", "4-1-0000000d.json", "status.yaml"):
        assert f"outbox entry '{refused}' refused" in log, refused
    assert os.listdir(project / ".orch/run/tasks/T1/outbox") == []


def _listener() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    def serve() -> None:
        with contextlib.suppress(OSError):  # closed by the test before anyone came: fine
            server.accept()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize("network", ["off", "on"])
def test_network_is_on_unless_the_manifest_turns_it_off(
    project: Path, orch: Orch, tmp_path: Path, network: str
) -> None:
    server, port = _listener()
    manifest = project / ".orch/agents/shell.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["network"] = network
    manifest.write_text(yaml.safe_dump(data))
    script = agent(
        tmp_path,
        TRY + f"try connect python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 5)'\n",
    )
    plan(project, script)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    server.close()
    connected = attempts(project / ".orch/worktrees/T1")["connect"] == 0
    assert connected == (network == "on")


def test_accept_and_the_merge_tests_run_the_agents_code_in_the_box(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    # The test command is a person's; the script it runs is in the agent's scope. Outside the box,
    # the agent's code would run with the person's rights at accept and at merge time.
    (project / "src").mkdir()
    (project / "src/check.sh").write_text("exit 0\n")
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text().replace("test_command: 'true'", "test_command: sh src/check.sh"))
    assert "sh src/check.sh" in config.read_text()
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "tests")
    evil = (
        f"echo pwned >> {shlex.quote(str(project / '.orch/locks.yaml'))} 2>/dev/null && echo WROTE\n"
        "echo ran-in-the-box\nexit 0\n"
    )
    script = agent(tmp_path, f"cat > src/check.sh <<'EOF'\n{evil}EOF\n")
    plan(project, script, extra="- accept: sh src/check.sh\n- tdd_gate: false\n")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    accept_log = (project / ".orch/run/tasks/T1/accept.log").read_text()
    assert "ran-in-the-box" in accept_log and "WROTE" not in accept_log
    orch.ok("merge")
    assert "pwned" not in (project / ".orch/locks.yaml").read_text()
    logs = "".join(p.read_text() for p in (project / ".orch/run/merges").rglob("test-*.log"))
    assert "ran-in-the-box" in logs and "WROTE" not in logs


def test_a_nested_sandbox_works_inside_the_box(project: Path, orch: Orch, tmp_path: Path) -> None:
    # Codex starts bubblewrap of its own, Claude Code's sandboxed bash too: both run inside orch's box.
    # (A nested --proc needs a /proc nothing masks: not so in a container that masks parts of it.)
    script = agent(tmp_path, TRY + "try nested bwrap --ro-bind / / --dev /dev --unshare-ipc --tmpfs /tmp true\n")
    plan(project, script)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    assert attempts(project / ".orch/worktrees/T1")["nested"] == 0


def test_sandbox_switches(project: Path, orch: Orch, tmp_path: Path) -> None:
    script = agent(tmp_path, "mkdir -p src && echo x > src/a.py\n")
    plan(project, script)
    missing = {"ORCH_BWRAP": str(tmp_path / "no-such-bwrap")}
    # auto without bubblewrap: unboxed, with a one-line notice
    r = orch.ok("spin", "T1", env=missing)
    assert "orch: note: agents run without a sandbox: bubblewrap" in r.stderr and "not installed" in r.stderr
    assert wait_state(orch, "T1") == "SUCCESS"
    assert status_of(project, "T1")["sandbox"].startswith("off: bubblewrap")
    orch.ok("clean", "T1", "--force")
    # on without bubblewrap: refused, exit 4, nothing started
    config = project / ".orch/config.yaml"
    config.write_text(config.read_text() + "sandbox: on\n")
    git(project, "commit", "-q", "-am", "box on")
    r = orch("spin", "T1", env=missing)
    assert r.returncode == 4 and "sandbox: on, but bubblewrap" in r.stderr, r.output
    assert "Traceback" not in r.output
    # an uncommitted 'sandbox: off' does not take agents out of the box (the stricter one is in force)
    config.write_text(config.read_text().replace("sandbox: on", "sandbox: off"))
    orch.ok("clean", "T1", "--force")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    assert status_of(project, "T1")["sandbox"].startswith("on")


def test_config_writable_reaches_the_merge_tests_and_a_timeout_ends_the_whole_box(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    import subprocess

    cache, other = tmp_path / "cache", tmp_path / "other"
    cache.mkdir()
    other.mkdir()
    marker = "3017"  # sleep 3017: a process to look for afterwards
    command = (
        f"echo hit > {cache}/c; echo hit > {other}/o; "
        f"if [ -e src/slow ]; then (sleep {marker} &) ; sleep {marker}; fi; true"
    )
    config = project / ".orch/config.yaml"
    text = config.read_text().replace("test_command: 'true'", f"test_command: {command!r}")
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("test_timeout:"))
    config.write_text(text + f"\nwritable: [{str(cache)!r}]\ntest_timeout: 3\n")
    git(project, "commit", "-q", "-am", "tests write a cache")
    script = agent(tmp_path, "mkdir -p src && echo x > src/slow\n")
    plan(project, script)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    r = orch("merge")
    assert r.returncode == 1 and "timed out" in "".join(
        p.read_text() for p in (project / ".orch/run/merges").rglob("test-*.log")
    ), r.output
    assert (cache / "c").read_text() == "hit\n" and not (other / "o").exists()
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True, check=False)
    assert left.stdout.strip() == "", "the boxed test run outlived its timeout"


def test_commits_of_a_boxed_run_whose_supervisor_died_are_kept_by_clean(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    import signal
    import time

    script = agent(
        tmp_path,
        "mkdir -p src && echo 1 > src/a.py && git add -A && git commit -q -m 'in the box'\n"
        "touch src/committed\nsleep 60\n",
    )
    plan(project, script)
    orch.ok("spin", "T1")
    wt = project / ".orch/worktrees/T1"
    for _ in range(300):
        if (wt / "src/committed").exists():
            break
        time.sleep(0.05)
    os.kill(status_of(project, "T1")["supervisor_pid"], signal.SIGKILL)  # no bring-in, no snapshot
    for _ in range(300):
        if "CRASHED" in orch("status", "T1").stdout:
            break
        time.sleep(0.05)
    box_head = (project / ".orch/run/tasks/T1/box/common/refs/heads/orch/T1").read_text().strip()
    assert git(project, "rev-parse", "orch/T1") != box_head  # not brought in yet
    orch.ok("clean", "T1", "--force")
    reachable = git(project, "for-each-ref", "--contains", box_head, "--format=%(refname)")
    assert reachable, "the boxed run's commit is on no ref"
    assert git(project, "log", "-1", "--format=%s", box_head) == "in the box"


EVIL_GITFILE = r"""W=$(pwd); git init -q --bare evil.git
export GIT_DIR=$W/evil.git GIT_INDEX_FILE=$W/evil.idx
printf 'planted\n' > "$W/planted.txt"
B=$(git hash-object -w "$W/planted.txt")
git update-index --add --cacheinfo 100644,$B,planted-by-the-agent
C=$(echo x | git commit-tree $(git write-tree)); git update-ref HEAD $C
git config core.bare false; git config core.worktree "$VICTIM"
unset GIT_DIR GIT_INDEX_FILE; rm -f evil.git/index evil.idx
printf 'gitdir: evil.git\n' > .git && echo REWROTE
exit 0
"""


@pytest.mark.parametrize("boxed", [True, False], ids=["box-on", "box-off"])
def test_a_worktree_git_file_pointed_at_an_agents_repository_never_aims_orchs_git_elsewhere(
    project: Path, orch: Orch, tmp_path: Path, boxed: bool
) -> None:
    # The accept command runs the agent's code after the run was settled: it points the worktree's
    # .git file at a repository of its own whose core.worktree is a folder of the person's. orch clean
    # (and doctor) must not let git write there.
    from conftest import no_box

    victim = tmp_path / "victim"
    victim.mkdir()
    if not boxed:
        no_box(project)
    script = agent(tmp_path, "mkdir -p src && cat > src/check.sh <<'EOF'\n" + EVIL_GITFILE + "EOF\n")
    plan(project, script, extra=f"- accept: VICTIM={shlex.quote(str(victim))} sh src/check.sh\n")
    orch.ok("spin", "T1")
    wait_state(orch, "T1")
    accept_log = (project / ".orch/run/tasks/T1/accept.log").read_text()
    assert ("REWROTE" in accept_log) == (not boxed), accept_log  # in the box the write fails at once
    orch("doctor", "--fix")
    orch("clean", "T1", "--force")
    assert list(victim.iterdir()) == [], list(victim.iterdir())
    assert not (project / ".git/hooks/planted-by-the-agent").exists()


def test_read_only_settings_inside_a_writable_folder(project: Path, orch: Orch, tmp_path: Path) -> None:
    state_dir = tmp_path / "tool"
    state_dir.mkdir()
    (state_dir / "settings.json").write_text("{}\n")
    manifest = project / ".orch/agents/shell.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["writable"] = [str(state_dir)]
    data["read_only"] = [str(state_dir / "settings.json")]
    manifest.write_text(yaml.safe_dump(data))
    script = agent(
        tmp_path,
        TRY + f"try session sh -c 'echo s > {state_dir}/session'\n"
        f"try settings sh -c 'echo hooks > {state_dir}/settings.json'\n",
    )
    plan(project, script)
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS"
    tried = attempts(project / ".orch/worktrees/T1")
    assert tried["session"] == 0 and tried["settings"] != 0, tried
    assert (state_dir / "settings.json").read_text() == "{}\n"
