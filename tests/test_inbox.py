"""The inbox: items on disk, ``orch inbox``, ``orch approve``/``reject``, the kinds read off the tasks'
state (acks, agents' questions), answers only a person's command gives, deciding commands refused
as an agent, and items that survive a SIGKILL of the command writing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, run_orch, status_of, wait_state, write_plan
from vhelpers import commit_in, make_task, setup_project

from orch.core import inbox
from orch.core.repo import find_project
from orch.core.store import Store


@pytest.fixture
def proj(repo: Path, orch: Orch) -> Path:
    return setup_project(repo, orch)


def items(orch: Orch) -> list[dict]:
    return json.loads(orch.ok("inbox", "--json").stdout)["items"]


def test_a_pending_ack_is_an_item_answered_by_approve(proj: Path, orch: Orch) -> None:
    assert orch.ok("inbox").stdout == "nothing waits for a person\n"
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    assert orch("verify", "T3").returncode == 1  # soft lock L4 waits for an ack
    [item] = items(orch)
    assert (item["id"], item["kind"], item["task"], item["state"]) == ("K1", "ack", "T3", "open")
    assert "soft lock L4" in item["asked"] and item["answer_with"] == "orch approve K1 | orch reject K1"
    assert items(orch) == [item]  # looked at twice, asked once
    listed = orch.ok("inbox").stdout
    assert "K1" in listed and "ack" in listed and "orch approve K1" in listed
    r = orch.ok("approve", "K1", "--note", "the guide is fine")
    assert r.stdout.startswith("K1 (ack, task T3): acked L4 for T3 at ")
    assert status_of(proj, "T3")["acks"][0].startswith("L4@")
    saved = yaml.safe_load((proj / ".orch/run/inbox/K1.yaml").read_text())
    assert saved["state"] == "approved" and saved["note"] == "the guide is fine" and saved["answered_by"]
    assert saved["answered_at"] and saved["outcome"].startswith("acked L4")
    log = (proj / ".orch/run/log").read_text()
    assert "| ASK | K1 ack:" in log and f"| APPROVE | K1 ack by {saved['answered_by']} at {saved['answered_at']}" in log
    assert items(orch) == []
    r = orch("approve", "K1")
    assert r.returncode == 3 and "is approved by" in r.stderr and "waits for nobody" in r.stderr
    r = orch("reject", "K9")
    assert r.returncode == 3 and "no inbox item 'K9'" in r.stderr and "orch inbox" in r.stderr


def test_an_item_whose_cause_went_away_is_withdrawn(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    assert [i["id"] for i in items(orch)] == ["K1"]
    commit_in(wt, "docs/guide.md", "the guide as it was\n")
    orch("verify", "T3")
    assert [i["id"] for i in items(orch)] == ["K2"]  # a new commit needs a new ack
    assert yaml.safe_load((proj / ".orch/run/inbox/K1.yaml").read_text())["state"] == "withdrawn"


def test_an_answer_written_into_the_file_is_not_a_persons(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    items(orch)
    path = proj / ".orch/run/inbox/K1.yaml"
    forged = yaml.safe_load(path.read_text())
    forged.update(state="approved", answered_by="boss@example.com", answered_at="2026-12-01T00:00:00Z")
    path.write_text(yaml.safe_dump(forged))
    script = (
        "from orch.core.context import open_ctx\nfrom orch.core import inbox\nfrom orch.inbox import decide\n"
        "c = open_ctx()\nprint(decide.answered_by_a_person(c, inbox.read(c.project, c.store, 'K1')))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=proj, capture_output=True, text=True, check=True)
    assert r.stdout == "False\n"
    assert "acks" not in status_of(proj, "T3")  # nothing acted on it


@pytest.mark.parametrize(
    "args",
    [
        ["approve", "K1"], ["reject", "K1"], ["ack", "T1", "L4"], ["merge"], ["spin", "T1"], ["start", "T1"],
        ["run", "T1"], ["resume", "T1"], ["retry", "T1"], ["stop", "T1"], ["lock", "add", "src/x"],
        ["lock", "rm", "L1"], ["plan", "add", "T9", "--title", "x"],
    ],
)  # fmt: skip
def test_deciding_commands_refuse_as_an_agent(proj: Path, orch: Orch, args: list[str]) -> None:
    r = orch(*args, env={"ORCH_TASK": "T1"})
    assert r.returncode == 3 and "is for a person" in r.stderr and "ORCH_TASK is set" in r.stderr, r.output
    assert "Traceback" not in r.output


def test_deciding_commands_refuse_inside_a_task_worktree(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_T")}
    r = run_orch(wt / "docs", "approve", "K1", env=env)
    assert r.returncode == 3 and "inside task T3's worktree" in r.stderr
    git(wt, "checkout", "-q", "--detach")  # off its branch: still the task's worktree, by its status
    r = run_orch(wt, "merge", "--dry-run", env=env)
    assert r.returncode == 3 and "inside task T3's worktree" in r.stderr
    assert orch("approve", "--help").returncode == 0  # help decides nothing
    assert orch.ok("inbox", cwd=wt).stdout  # reading the inbox is anyone's


def test_item_ids_count_on_and_the_schema_holds(proj: Path, orch: Orch) -> None:
    project = find_project(proj)
    store = Store(project.root, project.orch_dir)
    one = inbox.post(project, store, "gate", task="T1", asked="run `rm -rf /`?", data={"command": "rm -rf /"})
    two = inbox.post(project, store, "gate", task="T1", asked="again", key="k")
    same = inbox.post(project, store, "gate", task="T1", asked="again, the same", key="k")
    assert (one["id"], two["id"], same["id"]) == ("G1", "G2", "G2")
    (proj / ".orch/run/inbox/G2.yaml").unlink()
    assert inbox.post(project, store, "plan", task="T1", asked="plan")["id"] == "A1"
    (proj / ".orch/run/inbox/G7.yaml").write_text("kind: [broken\n")
    assert inbox.post(project, store, "gate", task="T1", asked="third")["id"] == "G8"  # never an id used before
    listed = orch.ok("inbox").stdout
    assert "note: .orch/run/inbox/G7.yaml" in listed and "G8" in listed


@pytest.mark.slow
def test_the_inbox_survives_sigkill_of_its_writers(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    killed = run_orch(proj, "inbox", env={"ORCH_FAILPOINT": "store.before_replace:K1.yaml"})
    assert killed.returncode == -9
    assert items(orch)[0]["id"] == "K1"  # the killed one wrote nothing; the next look asks again
    killed = run_orch(proj, "approve", "K1", env={"ORCH_FAILPOINT": "store.before_replace:K1.yaml"})
    assert killed.returncode == -9
    for path in (proj / ".orch/run/inbox").glob("*.yaml"):  # every item parses; none lost (a temp file may stay)
        assert yaml.safe_load(path.read_text())["id"] == path.stem
    # killed after the ack was given, before the answer was written: the ack holds, and the item,
    # kept, is withdrawn at the next look (what it asked waits no more)
    assert status_of(proj, "T3")["acks"][0].startswith("L4@")
    assert items(orch) == []
    assert yaml.safe_load((proj / ".orch/run/inbox/K1.yaml").read_text())["state"] == "withdrawn"


def test_status_counts_what_waits(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    assert "inbox: 1 item waits for a person (orch inbox)" in orch.ok("status").stdout


AGENT_ASKS = """
import os, subprocess, sys
brief = open(os.environ["ORCH_CONTEXT"]).read()
os.makedirs("src", exist_ok=True)
if "v2, the new one" in brief:
    open("src/done.txt", "w").write("done\\n")
else:
    subprocess.run([os.environ["ORCH"], "report", "BLOCKED", "--note", "which API version?"], check=True)
"""


def test_an_agents_question_answered_retries_it_with_the_answer(repo: Path, orch: Orch, tmp_path: Path) -> None:
    orch.ok("init")
    agent = tmp_path / "asks.py"
    agent.write_text(AGENT_ASKS)
    run = f"{sys.executable} {agent}"
    fields = f"- scope: ^src/\n- agent: shell\n- run: {run}\n- accept: test -f src/done.txt\n"
    write_plan(repo, f"# Plan\n\n## T1: Ask\n{fields}\nDo it.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plan")
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "BLOCKED"
    [item] = items(orch)
    assert (item["kind"], item["task"], item["asked"]) == ("question", "T1", "which API version?")
    r = orch("approve", item["id"])
    assert r.returncode == 3 and "give the answer" in r.stderr
    assert items(orch)[0]["state"] == "open"  # the effect failed: nothing recorded
    orch.ok("approve", item["id"], "--note", "v2, the new one")
    assert wait_state(orch, "T1") == "SUCCESS"
    assert items(orch) == []


def test_a_rejected_item_is_not_asked_again(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    assert [i["id"] for i in items(orch)] == ["K1"]
    orch.ok("reject", "K1", "--note", "not this change")
    assert items(orch) == []  # the same cause, answered: not asked again
    assert "inbox:" not in orch.ok("status").stdout


def test_help_as_an_options_value_is_no_way_past(proj: Path, orch: Orch) -> None:
    for args in (["approve", "K1", "--note", "--help"], ["plan", "add", "T9", "--title", "--help"]):
        r = orch(*args, env={"ORCH_TASK": "T1"})
        assert r.returncode == 3 and "is for a person" in r.stderr, (args, r.output)
    assert orch("approve", "--help", env={"ORCH_TASK": "T1"}).returncode == 0


def test_an_option_of_another_kind_is_refused(proj: Path, orch: Orch) -> None:
    wt = make_task(proj, "T3")
    commit_in(wt, "docs/guide.md", "better guide\n")
    orch("verify", "T3")
    items(orch)
    r = orch("approve", "K1", "--edit", "GOTCHAS: x")
    assert r.returncode == 2 and "--edit is for learning items, and K1 is an ack item" in r.stderr
    r = orch("approve", "K1", "--id", "T9")
    assert r.returncode == 2 and "--id is for handoff items" in r.stderr
    assert items(orch)[0]["state"] == "open"  # nothing answered


def test_the_entry_points_first_look_knows_every_deciding_command() -> None:
    from orch.cli.entry import MAYBE_DECIDING
    from orch.inbox.person import DECIDING, DECIDING_SUB

    assert DECIDING | {group for group, _sub in DECIDING_SUB} <= MAYBE_DECIDING
