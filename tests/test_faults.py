"""The fault matrix: a real orch command killed (SIGKILL) at each fail point, then put right.

``ORCH_FAILPOINT=<point>[:<detail>]`` (the points are named in ``orch.core.procs.FAILPOINTS``) makes
the process kill itself there. For every point a real command dies there; then every YAML and JSON
file under ``.orch/`` still parses, every commit reachable before (refs and reflogs) is still
reachable, the person's checkout holds no ``index.lock`` or ``MERGE_HEAD``, and the next command
(``orch doctor --fix``, ``orch merge --resume``, ``orch clean`` again) brings everything back:
``orch doctor`` then finds nothing to repair and ``orch status`` reads every task.
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ceremony_helpers import add_tasks_to_plan, finished_task, with_check
from conftest import Orch, git, status_of

from orch.core import procs

ORCH = Path(__file__).resolve().parent.parent / "orch"

# -- the checks every fault gets ---------------------------------------------------------------------


def reachable(repo: Path) -> set[str]:
    """Every commit a ref, a worktree's HEAD or a reflog leads to."""
    return set(git(repo, "rev-list", "--all", "--reflog").split())


def state_files(repo: Path) -> list[Path]:
    """orch's YAML and JSON files, the validation cache's JSON entries among them (task worktrees hold
    the project's files, not orch's)."""
    orch_dir = repo / ".orch"
    worktrees, valid = orch_dir / "worktrees", orch_dir / "run" / "cache" / "valid"
    return [
        p
        for p in sorted(orch_dir.rglob("*"))
        if p.is_file()
        and not p.is_relative_to(worktrees)
        and (p.suffix in (".yaml", ".yml", ".json") or (p.parent == valid and p.stat().st_size))
    ]


def assert_consistent_files(repo: Path) -> None:
    files = state_files(repo)
    assert any(p.name == "config.yaml" for p in files)
    for path in files:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        assert data is not None, f"{path} is empty"
    gitdir = repo / ".git"
    assert not (gitdir / "index.lock").exists() and not (gitdir / "MERGE_HEAD").exists()


def assert_settled(repo: Path, orch: Orch, before: set[str]) -> None:
    """Nothing lost, nothing left half done: what every fault must come back to."""
    assert_consistent_files(repo)
    lost = before - reachable(repo)
    assert not lost, f"commits no longer reachable: {sorted(lost)}"
    git(repo, "fsck", "--no-progress", "--no-dangling", "--connectivity-only")
    locks = [p for p in (repo / ".git").rglob("*.lock")]
    assert not locks, locks
    leftovers = [p for p in (repo / ".orch").rglob(".*.tmp")]
    assert not leftovers, leftovers
    doctor = orch("doctor")
    assert doctor.returncode == 0, doctor.output
    status = orch("status", "--json")
    assert status.returncode == 0, status.output


# -- the situations the commands are killed in ---------------------------------------------------------


AGENT_RUN = (
    "mkdir -p src && echo done > src/done.txt && git add src/done.txt && git commit -q -m agent-work "
    "&& echo wip > src/wip.txt"
)


def spin_setup(repo: Path) -> None:
    add_tasks_to_plan(repo, [("T1", "^src/", [])], run="true")


def run_setup(repo: Path) -> None:
    add_tasks_to_plan(repo, [("T1", "^src/", [])], run=AGENT_RUN)


def merge_setup(repo: Path) -> None:
    """T1 merges; T2 breaks the test and is undone."""
    with_check(repo)
    add_tasks_to_plan(repo, [("T1", "^", []), ("T2", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"})
    finished_task(repo, "T2", {"fail-T2": "x\n"})


def clean_setup(repo: Path) -> None:
    """T1 failed with a commit on its branch and uncommitted work in its worktree: clean --force keeps
    both (the commit under refs/orch/kept/, the work under refs/orch/snapshots/)."""
    add_tasks_to_plan(repo, [("T1", "^", [])])
    finished_task(repo, "T1", {"one.txt": "1\n"}, state="FAILED")
    (repo / ".orch" / "worktrees" / "T1" / "wip.txt").write_text("wip\n")


def spun_again(repo: Path, orch: Orch) -> None:
    """The killed spin is undone or finished: the task spins (again) and is ready to start."""
    if status_of_or_none(repo, "T1") is None or status_of(repo, "T1")["state"] == "CLEANED":
        orch.ok("spin", "T1", "--no-start")
    st = status_of(repo, "T1")
    assert st["state"] == "PENDING" and st["branch"] == "orch/T1"
    assert git(Path(st["worktree"]), "status", "--porcelain") == ""


def status_of_or_none(repo: Path, task_id: str) -> dict | None:
    path = repo / ".orch" / "run" / "tasks" / task_id / "status.yaml"
    return status_of(repo, task_id) if path.exists() else None


def planned(repo: Path, orch: Orch) -> None:
    """The task added again after the killed ``plan add`` is in plan.md once, after T1."""
    text = (repo / ".orch" / "plan.md").read_text()
    assert text.count("## T2: Two") == 1 and text.index("## T1:") < text.index("## T2: Two")


def merged(repo: Path, orch: Orch) -> None:
    assert status_of(repo, "T1")["state"] == "MERGED"
    assert status_of(repo, "T2")["state"] == "REVERTED"
    files = git(repo, "ls-tree", "--name-only", "main").splitlines()
    assert "one.txt" in files and "fail-T2" not in files
    assert (repo / "one.txt").is_file()
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".orch" / "run" / "merges" / "journal.json").exists()
    assert orch("merge").returncode == 0  # nothing left to merge, no ceremony in the way


def cleaned(repo: Path, orch: Orch) -> None:
    st = status_of(repo, "T1")
    assert st["state"] == "CLEANED" and st["worktree"] is None
    assert not (repo / ".orch" / "worktrees" / "T1").exists()
    assert git(repo, "branch", "--list", "orch/T1") == ""
    kept = git(repo, "for-each-ref", "--format=%(refname)", "refs/orch/kept/T1/").split()
    snapshots = git(repo, "for-each-ref", "--format=%(refname)", "refs/orch/snapshots/T1/").split()
    assert kept and snapshots
    assert set(st["kept_refs"]) == {*kept, *snapshots}  # the status names every ref that holds its work
    assert all(git(repo, "show", f"{ref}:one.txt") == "1" for ref in kept)
    assert all(git(repo, "show", f"{ref}:wip.txt") == "wip" for ref in snapshots)


def agent_ran(repo: Path, orch: Orch) -> None:
    """The task started after the killed spin ran its agent to the end, and its work is on its branch."""
    st = status_of(repo, "T1")
    assert st["state"] == "SUCCESS" and not st.get("reason"), st
    assert git(repo, "show", "orch/T1:src/done.txt") == "done"
    assert git(repo, "show", "orch/T1:src/wip.txt") == "wip"


def agent_work_kept(repo: Path, orch: Orch) -> None:
    """The agent's commit and the work it left uncommitted are both on its branch."""
    assert git(repo, "show", "orch/T1:src/done.txt") == "done"
    assert git(repo, "show", "orch/T1:src/wip.txt") == "wip"
    st = status_of(repo, "T1")
    assert st["state"] == "CRASHED" and st["head_sha"] == git(repo, "rev-parse", "orch/T1")


@dataclass(frozen=True)
class Fault:
    failpoint: str  # ORCH_FAILPOINT
    setup: Callable[[Path], None]
    command: tuple[str, ...]  # killed at the point
    recover: tuple[tuple[int, tuple[str, ...]], ...]  # (exit code, command) run after the kill, in order
    check: Callable[[Path, Orch], None]

    @property
    def point(self) -> str:
        return self.failpoint.partition(":")[0]


SPIN = ("spin", "T1", "--no-start")
DOCTOR_FIX = ((0, ("doctor", "--fix")),)
RESUME = ((1, ("merge", "--resume")),)
CLEAN = ("clean", "--force", "T1")
PLAN_ADD = ("plan", "add", "T2", "--title", "Two", "--scope", "^src/", "--run", "true")

FAULTS = [
    Fault("store.before_replace:status.yaml", spin_setup, SPIN, DOCTOR_FIX, spun_again),
    Fault("store.before_replace:plan.md", spin_setup, PLAN_ADD, (*DOCTOR_FIX, (0, PLAN_ADD)), planned),
    Fault("store.before_replace:journal.json", merge_setup, ("merge",), ((1, ("merge",)), *DOCTOR_FIX), merged),
    Fault("store.after_replace:status.yaml", spin_setup, SPIN, DOCTOR_FIX, spun_again),
    Fault("store.after_replace:status.yaml", run_setup, SPIN, ((0, ("start", "T1")), (0, ("wait", "T1"))), agent_ran),
    Fault("store.after_replace:status.yaml", merge_setup, ("merge",), RESUME, merged),
    Fault("spin.after_claim", spin_setup, SPIN, DOCTOR_FIX, spun_again),
    Fault("spin.after_worktree_add", spin_setup, SPIN, DOCTOR_FIX, spun_again),
    Fault("spin.before_status", spin_setup, SPIN, DOCTOR_FIX, spun_again),
    Fault("supervisor.after_agent", run_setup, ("spin", "T1"), DOCTOR_FIX, agent_work_kept),
    *(
        Fault(point, merge_setup, ("merge",), RESUME, merged)
        for point in (
            "ceremony.triaged",
            "ceremony.worktree_add",
            "ceremony.merging:T2",
            "ceremony.testing:T1",
            "ceremony.decided:T2",
            "ceremony.landing",
            "ceremony.fast_forward",
            "ceremony.landed",
            "ceremony.reported",
            "ceremony.recorded",
        )
    ),
    Fault("clean.after_snapshot", clean_setup, CLEAN, ((0, CLEAN),), cleaned),
    Fault("clean.before_branch_delete", clean_setup, CLEAN, ((0, CLEAN),), cleaned),
    Fault("clean.before_status", clean_setup, CLEAN, ((0, CLEAN),), cleaned),
]


def wait_for_supervisor(repo: Path) -> None:
    """The supervisor runs on after ``orch spin``: until it is gone (killed at its point)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = status_of(repo, "T1")
        pid, started = st.get("supervisor_pid"), st.get("supervisor_start")
        if st["state"] == "RUNNING" and pid and not procs.alive(pid, started):
            return
        assert st["state"] == "RUNNING", st  # the run must not have been recorded: the point is before
        time.sleep(0.1)
    raise AssertionError("the supervisor did not die at its fail point")


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.failpoint}-{f.setup.__name__.split('_')[0]}" for f in FAULTS])
def test_killed_at_the_point_then_put_right(project: Path, orch: Orch, fault: Fault) -> None:
    repo = project
    fault.setup(repo)
    before = reachable(repo)
    killed = orch(*fault.command, env={procs.FAILPOINT: fault.failpoint})
    if fault.point.startswith("supervisor."):
        assert killed.returncode == 0, killed.output
        wait_for_supervisor(repo)
    else:
        assert killed.returncode == -9, killed.output
    assert_consistent_files(repo)
    if fault.point != "ceremony.worktree_add":  # git itself cannot list refs until the half-made worktree is repaired
        assert before <= reachable(repo)
    for code, command in fault.recover:
        r = orch(*command)
        assert r.returncode == code, (command, r.output)
        assert "Traceback" not in r.output
    fault.check(repo, orch)
    assert_settled(repo, orch, before)


def test_the_matrix_kills_at_every_point() -> None:
    assert {f.point for f in FAULTS} == set(procs.FAILPOINTS)


# -- the list and the code agree -------------------------------------------------------------------


def points_in_code() -> dict[str, list[str]]:
    """The fail points orch's code names, each with where: ``fault_point``, ``failpoint_armed`` and
    ``fault_hooks`` calls with a literal name, and the ceremony's journal steps (``save("testing T1")``
    is the point ``ceremony.testing``)."""
    found: dict[str, list[str]] = {}
    for path in sorted(ORCH.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            index = 1 if name == "fault_hooks" else 0
            if name not in ("fault_point", "_fault_point", "failpoint_armed", "fault_hooks", "save"):
                continue
            if len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.JoinedStr):
                first = arg.values[0] if arg.values else None
                text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            else:
                text = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            if text is None:
                continue
            point = f"ceremony.{text.split(' ')[0]}" if name == "save" else text
            if name == "save" and path.parent.name != "integrate":
                continue
            found.setdefault(point, []).append(f"{path.relative_to(ORCH.parent)}:{node.lineno}")
    return found


def test_every_point_named_in_the_code_is_listed_and_every_listed_point_is_in_the_code() -> None:
    found = points_in_code()
    found.pop("ceremony.", None)  # Ceremony.save's f"ceremony.{verb}": the steps its callers save are counted
    assert sorted(found) == sorted(procs.FAILPOINTS), {
        "in the code, not listed": {p: w for p, w in found.items() if p not in procs.FAILPOINTS},
        "listed, not in the code": [p for p in procs.FAILPOINTS if p not in found],
    }


def test_a_point_not_in_the_list_is_refused_before_the_command_runs(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("T1", "^src/", [])], run="true")
    r = orch("spin", "T1", "--no-start", env={procs.FAILPOINT: "spin.before_stats"})
    assert r.returncode == 3, r.output
    assert "orch: ORCH_FAILPOINT: unknown fail point 'spin.before_stats' (did you mean 'spin.before_status'?)" in (
        r.stderr
    )
    assert not (project / ".orch" / "run" / "tasks" / "T1").exists()
    assert git(project, "branch", "--list", "orch/T1") == ""
    old = orch("merge", env={"ORCH_TEST_KILL_AT": "testing T1"})  # the variable this one replaced
    assert old.returncode == 3 and "ORCH_TEST_KILL_AT is gone" in old.stderr and "ceremony.testing:T1" in old.stderr


def test_a_detail_names_which_instance_of_a_point_kills(project: Path, orch: Orch) -> None:
    add_tasks_to_plan(project, [("T1", "^src/", []), ("T2", "^src/", [])], run="true")
    r = orch("spin", "T1", "T2", "--no-start", env={procs.FAILPOINT: "spin.before_status:T2"})
    assert r.returncode == -9, r.output
    branches = git(project, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch/").split()
    assert branches == ["orch/T1", "orch/T2"]
    assert not (project / ".orch" / "run" / "tasks" / "T2" / "status.yaml").exists()
    # Another detail never fires: the spin runs to its end.
    orch.ok("doctor", "--fix")
    other = orch("spin", "T2", "--no-start", env={procs.FAILPOINT: "spin.before_status:T9"})
    assert other.returncode == 0, other.output
    assert status_of(project, "T2")["state"] == "PENDING"


# -- what a write killed before its rename leaves ------------------------------------------------------


def test_doctor_removes_the_temp_files_of_killed_writes_and_leaves_live_ones(project: Path, orch: Orch) -> None:
    import jsonschema

    add_tasks_to_plan(project, [("T1", "^src/", [])], run="true")
    assert orch("spin", "T1", "--no-start", env={procs.FAILPOINT: "store.before_replace:status.yaml"}).returncode == -9
    folder = project / ".orch" / "run" / "tasks" / "T1"
    (dead,) = folder.glob(".status.yaml.*.tmp")
    live = folder / f".status.yaml.{os.getpid()}-0123456789ab.tmp"  # a write under way: this process's
    live.write_text("id: T1\n")
    # A running task's outbox: its boxed agent's pids mean nothing out here, its temp files stay.
    running = project / ".orch" / "run" / "tasks" / "T2"
    (running / "outbox").mkdir(parents=True)
    me = {"supervisor_pid": os.getpid(), "supervisor_start": procs.start_time(os.getpid())}
    (running / "status.yaml").write_text(yaml.safe_dump({"id": "T2", "state": "RUNNING", **me}))
    boxed = running / "outbox" / dead.name.replace(".status.yaml.", ".1-report.json.")
    boxed.write_text("{}")
    r = orch("doctor", "--json")
    assert r.returncode == 1, r.output
    data = json.loads(r.stdout)
    jsonschema.validate(data, json.loads((ORCH.parent / "schemas" / "doctor.schema.json").read_text()))
    temp = [f for f in data["findings"] if f["kind"] == "stale-temp-file"]
    assert temp == [
        {
            "kind": "stale-temp-file",
            "task": "T1",
            "path": str(dead),
            "subject": f".orch/run/tasks/T1/{dead.name}",
            "message": "left by an orch process killed while it wrote status.yaml, which is as it was before that "
            "write",
            "fix": "remove the temp file",
            "fixable": True,
            "fixed": False,
            "info": False,
        }
    ]
    orch.ok("doctor", "--fix")
    assert not dead.exists() and live.exists() and boxed.exists()


def test_every_kind_of_doctor_finding_is_in_its_schema() -> None:
    schema = json.loads((ORCH.parent / "schemas" / "doctor.schema.json").read_text())
    known = set(schema["properties"]["findings"]["items"]["properties"]["kind"]["enum"])
    kinds = {}
    for path in sorted((ORCH / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Finding":
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant), f"{path.name}:{node.lineno}: a Finding's kind is a literal"
                kinds[first.value] = f"{path.name}:{node.lineno}"
    assert len(kinds) > 10
    assert {k: w for k, w in kinds.items() if k not in known} == {}
