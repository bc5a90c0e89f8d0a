"""``orch view`` and ``orch topology`` on real tasks run by scripted agents: one edits a locked region
(verified: blocked on the lock), one adds and deletes files and changes a dependency manifest and
proposes a learning a person rejects, one runs out of strategies (BLOCKED, with a strategy shift), one
never spun. Each task at its level, ``--level``, ``--json``; the topology's tree, folding and
pressure; unknown ids, levels and paths (exit 3)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
from conftest import Orch, git, wait_state
from vhelpers import LOCKS, setup_project

from orch.core.context import open_ctx
from orch.views import taskview, topology

ROOT = Path(__file__).resolve().parents[1]
VIEW_SCHEMA = json.loads((ROOT / "schemas/view.schema.json").read_text())
TOPOLOGY_SCHEMA = json.loads((ROOT / "schemas/topology.schema.json").read_text())

AGENT = textwrap.dedent(
    """
    import os, sys
    mode = sys.argv[1]
    n = int(os.environ.get("ORCH_ITERATION", "0"))
    if mode == "auth":
        cart = open("src/auth/cart.py").read()
        open("src/auth/cart.py", "w").write(cart.replace("return sum(self.items)", "return sum(self.items) + 1"))
        with open("src/auth/session.py", "a") as f:
            f.write("\\n\\ndef renew(s):\\n    return s\\n")
        open("src/auth/tokens.py", "w").write("class Token:\\n    pass\\n")
    elif mode == "dash":
        os.remove("src/dashboard/w.py")
        open("src/dashboard/app.js", "w").write("export function render() {}\\nconst x = 1;\\n")
        open("package.json", "w").write('{"name": "shop"}\\n')
        open("REFLECTION.md", "w").write(
            "## What surprised me\\nnothing\\n## One line for AGENTS.md\\nGOTCHAS: widgets render twice\\n"
        )
    elif mode == "stuck":
        os.makedirs("docs", exist_ok=True)
        open("docs/try-%d.md" % n, "w").write("try\\n")
    """
)

PLAN = """\
# Plan: shop

## T1: Session expiry
- scope: ^src/auth/
- agent: shell
- run: {run} auth
- accept: grep -q renew src/auth/session.py

## T2: Widgets
- scope: ^(src/dashboard/|package\\.json$)
- agent: shell
- run: {run} dash
- accept: test -f src/dashboard/app.js

## T3: Onboarding
- scope: ^web/
- level: goal

## T4: Docs
- scope: ^docs/
- agent: shell
- run: {run} stuck
- accept: test -f docs/never
- level: feature
- max_iterations: 2
- max_per_strategy: 1
- max_strategies: 2
"""


@pytest.fixture
def ran(repo: Path, orch: Orch, tmp_path: Path) -> Path:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(agent))}"
    proj = setup_project(repo, orch, plan=PLAN.format(run=run), locks=LOCKS)
    config = proj / ".orch" / "config.yaml"
    config.write_text(config.read_text() + "levels:\n  src/auth/: code\n  src/dashboard/: component\n  docs/: goal\n")
    git(proj, "commit", "-qam", "levels")
    for task in ("T1", "T2", "T4"):
        orch.ok("spin", task)
    assert [wait_state(orch, t) for t in ("T1", "T2", "T4")] == ["SUCCESS", "SUCCESS", "BLOCKED"]
    assert orch("verify", "T1").returncode == 1  # the region lock L3
    orch.ok("verify", "T2")
    [learning] = [p.stem for p in (proj / ".orch/run/inbox").glob("L*.yaml")]
    orch.ok("reject", learning, "--note", "not for everyone")
    return proj


def cards(orch: Orch, *args: str) -> dict[str, dict]:
    data = json.loads(orch.ok("view", "--json", *args).stdout)
    jsonschema.validate(data, VIEW_SCHEMA)
    return {c["id"]: c for c in data["tasks"]}


def test_each_task_at_its_level(ran: Path, orch: Orch) -> None:
    got = cards(orch)
    assert list(got) == ["T1", "T2", "T3", "T4"]
    assert {i: (c["level"], c["state"]) for i, c in got.items()} == {
        "T1": ("code", "LOCK_VIOLATION"),
        "T2": ("component", "SUCCESS"),
        "T3": ("goal", "PENDING"),
        "T4": ("feature", "BLOCKED"),
    }
    assert got["T1"]["level_why"] == "src/auth/cart.py is at code (src/auth/: .orch/config.yaml:12)"
    assert got["T3"]["level_why"] == "level: goal in .orch/plan.md:17"
    # each level adds to the coarser ones
    assert [k for k in ("goal", "feature", "component", "code") if k in got["T1"]] == [
        "goal",
        "feature",
        "component",
        "code",
    ]
    assert [k for k in ("goal", "feature", "component", "code") if k in got["T2"]] == ["goal", "feature", "component"]
    assert [k for k in ("goal", "feature", "component", "code") if k in got["T3"]] == ["goal"]
    assert [k for k in ("goal", "feature", "component", "code") if k in got["T4"]] == ["goal", "feature"]

    goal = got["T2"]["goal"]
    assert (goal["state"], goal["iteration"], goal["max_iterations"]) == ("SUCCESS", 1, 10)
    assert goal["checks"] == [{"name": "accept", "passed": True}] and goal["checks_passing"] == 1
    assert goal["started_at"] and goal["seconds"] is not None and "tokens" in goal and "cost_usd" in goal
    stuck = got["T4"]["goal"]
    assert (stuck["iteration"], stuck["max_iterations"]) == (2, 2)
    assert stuck["checks"] == [{"name": "accept", "passed": False}] and stuck["checks_passing"] == 0
    assert got["T3"]["goal"]["state"] == "PENDING" and got["T3"]["goal"]["checks"] == []


def test_feature_level_acceptance_verdict_inbox_blocker_shifts(ran: Path, orch: Orch) -> None:
    got = cards(orch, "--level", "feature")
    t1, t2, t4 = got["T1"]["feature"], got["T2"]["feature"], got["T4"]["feature"]
    assert t1["accept"] == {
        "command": "grep -q renew src/auth/session.py",
        "passed": True,
        "log": ".orch/run/tasks/T1/accept.log",
    }
    assert t1["verdict"]["result"] == "LOCK_VIOLATION" and not t1["verdict"]["mergeable"]
    assert [v["lock"] for v in t1["verdict"]["violations"]] == ["L3"]
    assert t2["verdict"]["result"] == "OK" and t2["verdict"]["mergeable"]
    [item] = t2["inbox"]
    assert (item["kind"], item["state"], item["note"]) == ("learning", "rejected", "not for everyone")
    assert "widgets render twice" in item["asked"] and item["answered_by"]
    assert t4["accept"] == {"command": "test -f docs/never", "passed": False, "log": None} and t4["verdict"] is None
    assert t4["blocker"]["report"] == ".orch/run/tasks/T4/BLOCKER_REPORT.md"
    assert t4["blocker"]["why"] and t4["blocker"]["question"]
    [shift] = t4["strategy_shifts"]
    assert shift["iteration"] == 1 and shift["why"].startswith("strategy 2/2")
    text = orch.ok("view", "T2", "T4", "--level", "feature").stdout
    assert "  feature    accept: passed (test -f src/dashboard/app.js)\n" in text
    assert "verdict: OK at " in text and f"inbox {item['id']} (learning) rejected by " in text
    assert "strategy shift after iteration 1: strategy 2/2" in text and "blocked: " in text


def test_component_level(ran: Path, orch: Orch) -> None:
    got = cards(orch, "T1", "T2", "T3", "--level", "component")
    t1, t2 = got["T1"]["component"], got["T2"]["component"]
    assert t1["folders"] == ["src/auth"] and t1["modules"] == ["src.auth.cart", "src.auth.session", "src.auth.tokens"]
    assert t1["added"] == ["src/auth/tokens.py"] and t1["deleted"] == []
    assert t1["definitions"] == [
        {"path": "src/auth/session.py", "added": ["def renew"], "removed": []},
        {"path": "src/auth/tokens.py", "added": ["class Token"], "removed": []},
    ]  # cart.py changed inside Cart: no top-level definition came or went
    assert (
        t1["manifests"] == []
        and {"lock": "L3", "kind": "region", "mode": "hard", "pressure": "blocking"} in t1["locks"]
    )
    assert t2["added"] == ["package.json", "src/dashboard/app.js"] and t2["deleted"] == ["src/dashboard/w.py"]
    assert t2["folders"] == [".", "src/dashboard"] and t2["manifests"] == ["package.json"]
    assert {"path": "src/dashboard/app.js", "added": ["const x", "function render"], "removed": []} in t2["definitions"]
    assert got["T3"]["component"] == {"base": None, "tip": None, "changed": 0, "locks": []}
    base = open_ctx(ran).store.load(ran / ".orch/run/tasks/T2/manifest.yaml", "task_manifest")["base_sha"]
    assert t2["base"] == base and t2["tip"] == git(ran, "rev-parse", "orch/T2")
    text = orch.ok("view", "T2", "--level", "component").stdout
    assert "             added: package.json, src/dashboard/app.js\n" in text
    assert "             dependency manifests: package.json\n" in text


def test_code_level_marks_locked_region_lines(ran: Path, orch: Orch) -> None:
    code = cards(orch, "T1")["T1"]["code"]
    files = {f["path"]: f for f in code["files"]}
    assert list(files) == ["src/auth/cart.py", "src/auth/session.py", "src/auth/tokens.py"]
    cart = files["src/auth/cart.py"]
    assert cart["regions"] == ["L3"] and cart["locks"] == []
    changed = [ln for ln in cart["lines"] if ln["op"] in "+-"]
    assert [(ln["op"], ln["text"].strip(), ln["locks"]) for ln in changed] == [
        ("-", "return sum(self.items)", ["L3"]),
        ("+", "return sum(self.items) + 1", ["L3"]),
    ]
    context = {ln["text"].strip(): ln["locks"] for ln in cart["lines"] if ln["op"] == " "}
    assert context["def total(self):"] == ["L3"] and context["def count(self):"] == []
    assert all(not ln["locks"] for ln in files["src/auth/session.py"]["lines"])
    text = orch.ok("view", "T1").stdout
    assert "    src/auth/cart.py (M)  [regions L3]\n" in text
    assert "    ! +   10         return sum(self.items) + 1  <- L3\n" in text


def test_code_level_marks_paths_under_locks(repo: Path, orch: Orch) -> None:
    """A path lock on the file marks it; work made with git directly (no agent) reads the same."""
    proj = setup_project(repo, orch)
    wt = proj / ".orch/worktrees/T2"
    git(proj, "worktree", "add", "-q", "-b", "orch/T2", str(wt), "main")
    (wt / "src/billing").mkdir(parents=True, exist_ok=True)
    (wt / "src/billing/pricing.py").write_text("PRICE = 11\n")
    git(wt, "commit", "-qam", "price")
    status = proj / ".orch/run/tasks/T2/status.yaml"
    status.parent.mkdir(parents=True)
    base = git(proj, "rev-parse", "main")
    status.write_text(f"id: T2\nstate: SUCCESS\nbranch: orch/T2\nbase_sha: {base}\n")
    [f] = cards(orch, "T2", "--level", "code")["T2"]["code"]["files"]
    assert (f["path"], f["locks"], f["regions"]) == ("src/billing/pricing.py", ["L1"], [])


def test_bad_input(ran: Path, orch: Orch) -> None:
    r = orch("view", "T9")
    assert r.returncode == 3 and r.stderr.startswith("orch: no task 'T9' in .orch/plan.md"), r.output
    r = orch("view", "t1")
    assert r.returncode == 3 and "did you mean 'T1'" in r.stderr, r.output
    r = orch("view", "--level", "codes")
    assert r.returncode == 3 and r.stderr.startswith("orch: unknown level 'codes'\n  hint: did you mean 'code'?")
    r = orch("topology", "nowhere/")
    assert r.returncode == 3 and r.stderr.startswith("orch: no tracked file at 'nowhere/' on main"), r.output
    config = ran / ".orch/config.yaml"
    config.write_text(config.read_text().replace("  docs/: goal\n", "  docs/[: goal\n"))
    for args in (["view"], ["topology"]):
        r = orch(*args)
        assert r.returncode == 3 and ".orch/config.yaml:14: levels: 'docs/[' is not a valid glob" in r.stderr, r.output


def test_topology(ran: Path, orch: Orch) -> None:
    data = json.loads(orch.ok("topology", "--json").stdout)
    jsonschema.validate(data, TOPOLOGY_SCHEMA)
    pressure = data["pressure"]
    # L1, L2 and AGENTS.md: no task's scope reaches them
    assert pressure["counts"] == {"blocking": 1, "routing around": 1, "clear": 3}
    assert {row["id"]: row["pressure"] for row in pressure["locks"]}["L3"] == "blocking"
    tree = data["tree"]
    assert (tree["path"], tree["kind"], tree["level"], tree["level_from"], tree["folded"]) == (
        ".",
        "dir",
        "feature",
        None,
        False,
    )

    def node(path: str) -> dict:
        here = tree
        for part in path.strip("/").split("/"):
            here = next(c for c in here["children"] if c["name"] == part)
        return here

    auth = node("src/auth")
    assert (auth["path"], auth["level"], auth["level_from"], auth["folded"]) == (
        "src/auth/",
        "code",
        "src/auth/",
        False,
    )
    assert auth["locks"] == [{"name": "L3", "kind": "region", "hard": True, "pattern": "src/auth/cart.py::Cart.total",
                              "reason": "totals are audited"}]  # fmt: skip
    assert auth["tasks"] == ["T1"] and auth["files"] == 2
    cart = node("src/auth/cart.py")
    assert (cart["kind"], cart["level"], [lk["name"] for lk in cart["locks"]], cart["tasks"]) == (
        "file",
        "code",
        ["L3"],
        ["T1"],
    )
    assert node("src/auth/session.py")["locks"] == []
    dash = node("src/dashboard")  # nothing below differs from it: folded, its file counted
    assert (dash["folded"], dash["files"], dash["children"], dash["level"], dash["tasks"]) == (
        True,
        1,
        [],
        "component",
        ["T2"],
    )
    web = node("web")
    assert web["folded"] and web["level"] == "feature" and web["tasks"] == []  # T3 never spun: not in flight
    billing = node("src/billing")
    assert not billing["folded"] and billing["locks"][0]["name"] == "L1"
    assert node("docs")["tasks"] == ["T4"] and [lk["hard"] for lk in node("docs")["locks"]] == [False]
    assert [c["name"] for c in tree["children"]][:3] == [".orch", "docs", "src"]  # folders first, by name

    text = orch.ok("topology").stdout.splitlines()
    assert text[0] == "lock pressure: 1 blocking, 1 routing around, 3 clear"
    # a folder shows three of its locks (here those of .orch/, docs/ and src/ below it) and how many more
    assert text[1].split() == [
        ".", "feature", "[hard", "path", "AGENTS_MD]", "[soft", "path", "L4]", "[hard", "region", "L3]",
        "+2", "more", "tasks:", "T1,", "T2,", "T4",
    ]  # fmt: skip
    line = next(ln for ln in text if "auth/" in ln)
    assert line.split() == ["│", "├──", "auth/", "code*", "[hard", "region", "L3]", "tasks:", "T1"]
    assert any("component* (1 file) tasks: T2" in ln for ln in text if "dashboard/" in ln), text

    sub = json.loads(orch.ok("topology", "src/auth", "--json").stdout)["tree"]
    assert sub["path"] == "src/auth/" and [c["name"] for c in sub["children"]] == ["cart.py", "session.py"]
    one = json.loads(orch.ok("topology", "./src/auth/cart.py", "--json").stdout)["tree"]
    assert one["kind"] == "file" and one["path"] == "src/auth/cart.py"


def test_api_the_dashboard_calls(ran: Path) -> None:
    ctx = open_ctx(ran)
    assert topology.pressure(ctx)["counts"]["blocking"] == 1
    assert topology.build(ctx, "src")["path"] == "src/"
    [card] = taskview.view(ctx, ["T3"])
    assert card["level"] == "goal" and card["title"] == "Onboarding"
    assert [c["id"] for c in taskview.view(ctx, [], level="goal")] == ["T1", "T2", "T3", "T4"]


@pytest.mark.parametrize(
    "loop", ["not json", "[1, 2]", '{"history": [1, {"ran": "x"}, {"iteration": "2", "ran": [["accept"]]}]}', ""]
)
def test_a_run_folder_anyone_wrote_is_read_as_far_as_it_goes(repo: Path, orch: Orch, loop: str) -> None:
    proj = setup_project(repo, orch)
    folder = proj / ".orch/run/tasks/T1"
    folder.mkdir(parents=True)
    (folder / "status.yaml").write_text("id: T1\nstate: BLOCKED\nbranch: orch/T1\nbase_sha: nothex\niteration: 2\n")
    (folder / "loop.json").write_text(loop)
    (folder / "BLOCKER_REPORT.md").write_text("orch stopped this task: \x1b[2J cleared. It needs a person.\n")
    card = cards(orch, "T1", "--level", "code")["T1"]
    assert card["goal"]["checks"] == [] and card["feature"]["accept"] is None
    assert card["feature"]["blocker"]["why"] == "\\u001b[2J cleared"
    assert card["component"]["base"] is None  # no such base commit: no work to show
    assert card["code"] == {"base": None, "tip": None, "files": [], "truncated": False}
    assert "\x1b" not in orch.ok("view", "T1").stdout
    secret = proj.parent / "secret.txt"
    secret.write_text("orch stopped this task: the password is hunter2. It needs a person.\n")
    (folder / "BLOCKER_REPORT.md").unlink()
    (folder / "BLOCKER_REPORT.md").symlink_to(secret)  # a link is not orch's report: it is not read
    assert cards(orch, "T1", "--level", "feature")["T1"]["feature"]["blocker"] is None
    (folder / "BLOCKER_REPORT.md").unlink()
    os.mkfifo(folder / "BLOCKER_REPORT.md")  # nobody writes it: reading it would wait for ever
    (folder / "loop.json").unlink()
    os.mkfifo(folder / "loop.json")
    card = cards(orch, "T1", "--level", "feature")["T1"]
    assert card["feature"]["blocker"] is None and card["goal"]["checks"] == []


def test_a_file_name_with_newlines_stays_on_its_line(tmp_path: Path) -> None:
    from orch.core.text import one_line

    assert one_line("src/x\n   verdict: VERIFIED\r\tend") == "src/x\\n   verdict: VERIFIED\\r\\tend"
    assert "\n" not in one_line("a\nb") and one_line("back\\slash") == "back\\\\slash"
