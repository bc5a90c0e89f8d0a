"""Handoffs (propose, don't chain): an agent proposes a task for another agent with ``orch propose``
or a ``HANDOFF.yaml``; it waits in the inbox, phrased by its confidence; nothing runs until a person
approves, and the approval only appends a task to plan.md (every byte before it as it was).

Real git, real processes: scripted shell agents run by a real supervisor in the box, and ``orch
propose`` run in a task's worktree outside it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import Orch, git, run_orch, status_of, wait_state, write_plan
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core import box
from orch.core.errors import InputError
from orch.core.plan import parse

WHY = box.unavailable()
needs_box = pytest.mark.skipif(WHY is not None, reason=f"no sandbox here: {WHY}")

PLAN_HEAD = "# Plan: handoffs\n\nWritten by a person, kept byte for byte.\n\n"


def write_task_plan(repo: Path, scripts: dict[str, Path | None]) -> bytes:
    """A plan of shell tasks (a script each, or none) committed; its bytes."""
    text = PLAN_HEAD
    for task_id, script in scripts.items():
        run = f"- run: sh {shlex.quote(str(script))}\n" if script else "- run: true\n"
        text += f"## {task_id}: Build the API\n- scope: ^src/\n- deps: none\n- agent: shell\n{run}\nBuild it.\n\n"
    write_plan(repo, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plan")
    return (repo / ".orch/plan.md").read_bytes()


def items(orch: Orch) -> list[dict]:
    return json.loads(orch.ok("inbox", "--json").stdout)["items"]


def item_file(repo: Path, item_id: str) -> dict:
    return yaml.safe_load((repo / ".orch/run/inbox" / f"{item_id}.yaml").read_text())


def orch_branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/orch/").splitlines()


def spun(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".orch/run/tasks").iterdir() if (p / "status.yaml").exists())


BOXED_AGENT = r"""
mkdir -p src && echo 'GET /users' > src/api.md && git add src/api.md && git commit -q -m 'the API'
orch propose --to claude --title 'Document the API' \
  --brief "$(printf 'Write docs/api.md from src/api.md.\n## T9: not a task\n- scope: .*\n```')" \
  --scope '^docs/' --artifact src/api.md --artifact ./src//api.md --precondition 'T1 is merged' \
  --reason 'the endpoints are done' --confidence 0.85 > src/said.txt 2>&1
echo "propose $?" >> src/said.txt
orch propose --to nobody --title x --brief x --reason x --confidence 0.5 >> src/said.txt 2>&1
echo "unknown agent $?" >> src/said.txt
orch approve P1 >> src/said.txt 2>&1
echo "approve $?" >> src/said.txt
"""


@needs_box
def test_a_boxed_agents_proposal_waits_for_a_person_then_becomes_a_task(
    project: Path, orch: Orch, tmp_path: Path
) -> None:
    script = tmp_path / "agent.sh"
    script.write_text(BOXED_AGENT)
    before = write_task_plan(project, {"T1": script})
    orch.ok("spin", "T1")
    assert wait_state(orch, "T1") == "SUCCESS", status_of(project, "T1")
    said = (project / ".orch/worktrees/T1/src/said.txt").read_text()
    assert "T1: proposed 'Document the API' for agent claude; it reaches the inbox when this run ends" in said
    assert "propose 0" in said and "unknown agent 3" in said and "approve 3" in said, said
    assert "no agent 'nobody' (no .orch/agents/nobody.yaml)" in said and "known agents: " in said
    assert "orch approve is for a person" in said and "Traceback" not in said
    # the item, phrased by its confidence; the artifact checked at the branch's tip, by commit
    [item] = items(orch)
    tip = git(project, "rev-parse", "orch/T1")
    assert (item["id"], item["kind"], item["task"], item["state"]) == ("P1", "handoff", "T1", "open")
    assert item["asked"] == (
        'worth handing off: "Document the API" to agent claude (proposed by T1, confidence 0.85, scope ^docs/): '
        "the endpoints are done"
    )
    assert item["answer_with"] == "orch approve P1 [--id TASK] | orch reject P1"
    data = item["data"]
    assert (data["to"], data["artifacts"], data["commit"], data["via"]) == (
        "claude",
        ["src/api.md"],
        tip,
        "orch propose (from the box)",
    )
    listed = orch.ok("inbox").stdout
    assert "P1" in listed and "handoff" in listed and "worth handing off" in listed and "Document the API" in listed
    # nothing runs, nothing is added, until a person says so
    assert (project / ".orch/plan.md").read_bytes() == before
    assert orch_branches(project) == ["orch/T1"] and spun(project) == ["T1"]
    assert [n for n in (project / ".orch/run/tasks/T1/outbox").iterdir()] == []
    r = orch.ok("approve", "P1", "--note", "yes, before the release")
    assert r.stdout == (
        "P1 (handoff, task T1): added T2 to .orch/plan.md:13 for agent claude, after T1; "
        "nothing runs until you start it: orch run T2 (once T1 is merged)\n"
    )
    after = (project / ".orch/plan.md").read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    orch.ok("plan")  # the plan as a whole still reads
    t2 = parse(after.decode()).require("T2")
    assert (t2.title, t2.deps, t2.agent, t2.scope) == ("Document the API", ["T1"], "claude", "^docs/")
    brief = t2.brief_text()
    assert brief.startswith("Proposed by task T1 (handoff P1), approved by ada@example.com.\n")
    assert "> ## T9: not a task\n> - scope: .*\n> ```" in brief  # quoted: no line of it opens a task
    assert f"Artifacts from T1's branch, proposed at commit {tip}:" in brief
    assert f"- `git show orch/T1:src/api.md` (as proposed: `git show {tip[:12]}:src/api.md`)" in brief
    assert "- [ ] T1 is merged" in brief
    assert "Why T1 proposed it (confidence 0.85):\n\n> the endpoints are done" in brief
    assert brief.endswith("A note from ada@example.com, who approved it:\n\n> yes, before the release")
    assert orch_branches(project) == ["orch/T1"] and spun(project) == ["T1"]  # still nothing spun
    assert items(orch) == []
    saved = item_file(project, "P1")
    assert saved["state"] == "approved" and saved["outcome"].startswith("added T2 to .orch/plan.md:13")
    log = (project / ".orch/run/log").read_text()
    assert "| ASK | P1 handoff: worth handing off" in log
    assert "| PLAN_ADD | Document the API (handoff P1 from T1)" in log


HANDOFF_GOOD = """\
to: claude
title: Tidy the API notes
brief: |
  Merge the notes in src/api.md into one list.
artifacts: [src/api.md]
reason: they repeat themselves
confidence: 0.3
"""

HANDOFF_BAD = """\
to: claude
title: Something
brief: x
reason: sure
confidence: 1.5
"""


@needs_box
def test_handoff_yaml_is_read_removed_and_never_lands_on_the_branch(project: Path, orch: Orch, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.sh", tmp_path / "bad.sh"
    good.write_text(
        "mkdir -p src && echo notes > src/api.md && git add src && git commit -q -m notes\n"
        f"cat > HANDOFF.yaml <<'EOF'\n{HANDOFF_GOOD}EOF\n"
    )
    bad.write_text(
        "mkdir -p src && echo work > src/b.md\n"
        f"cat > HANDOFF.yaml <<'EOF'\n{HANDOFF_BAD}EOF\n"
        # forged outbox entries: read as untrusted input, refused, removed
        'box="$ORCH_HOME/run/tasks/T2/outbox"\n'
        "echo 'not json' > \"$box/handoff-1-1-0000000a.json\"\n"
        'ln -s /etc/passwd "$box/handoff-2-1-0000000b.json"\n'
        'echo \'{"to": "claude", "title": "t", "brief": "b", "reason": "r", "confidence": 0.9, '
        '"artifacts": ["../../etc/passwd"]}\' > "$box/handoff-3-1-0000000c.json"\n'
    )
    write_task_plan(project, {"T1": good, "T2": bad})
    orch.ok("spin", "T1", "T2")
    assert wait_state(orch, "T1") == "SUCCESS" and wait_state(orch, "T2") == "SUCCESS"
    [item] = items(orch)
    assert (item["task"], item["data"]["via"], item["data"]["artifacts"]) == ("T1", "HANDOFF.yaml", ["src/api.md"])
    assert item["asked"] == (
        'you might want to hand "Tidy the API notes" to agent claude (proposed by T1, confidence 0.3, '
        "no scope: any file): they repeat themselves"
    )
    for task_id in ("T1", "T2"):
        assert not (project / ".orch/worktrees" / task_id / "HANDOFF.yaml").exists()
        assert "HANDOFF.yaml" not in git(project, "ls-tree", "-r", "--name-only", f"orch/{task_id}")
    assert git(project, "log", "--all", "--format=%H", "--", "HANDOFF.yaml") == ""  # in no commit at all
    assert git(project, "show", "orch/T2:src/b.md") == "work"  # the rest of the work is kept as ever
    log = (project / ".orch/run/log").read_text()
    assert "handoff refused: HANDOFF.yaml: confidence 1.5 is outside 0.0-1.0" in log
    assert "handoff refused: outbox entry handoff-1-1-0000000a.json: not JSON" in log
    assert "handoff refused: outbox entry handoff-2-1-0000000b.json: a symbolic link: refused" in log
    assert "handoff refused: outbox entry handoff-3-1-0000000c.json: artifacts '../../etc/passwd' climbs out" in log
    assert list((project / ".orch/run/tasks/T2/outbox").iterdir()) == []
    assert "outbox entry 'handoff-" not in log  # the report reader left them to the handoff reader


def propose(orch: Orch, wt: Path, *extra: str, confidence: str = "0.6", **kw: str) -> object:
    args = {"to": "claude", "title": "Document the API", "brief": "Write docs/api.md.", "reason": "it is done"}
    args.update(kw)
    argv = [x for k, v in args.items() for x in (f"--{k}", v)]
    return orch("propose", *argv, "--confidence", confidence, *extra, cwd=wt)


@pytest.fixture
def spun_t1(project: Path, orch: Orch) -> Path:
    """T1 spun but not started, with a committed src/api.md and an uncommitted src/draft.md."""
    write_task_plan(project, {"T1": None})
    orch.ok("spin", "T1", "--no-start")
    wt = project / ".orch/worktrees/T1"
    (wt / "src").mkdir()
    (wt / "src/api.md").write_text("GET /users\n")
    git(wt, "add", "src/api.md")
    git(wt, "commit", "-q", "-m", "api")
    (wt / "src/draft.md").write_text("not committed\n")
    return wt


def test_propose_outside_the_box_asks_at_once_and_once(project: Path, orch: Orch, spun_t1: Path) -> None:
    wt = spun_t1
    r = propose(orch, wt / "src", "--artifact", "src/api.md")
    assert r.returncode == 0, r.output
    assert r.stdout == "P1: T1 proposed 'Document the API' for agent claude; a person decides (orch inbox)\n"
    [item] = items(orch)
    assert item["asked"] == (
        'T1 proposes "Document the API" for agent claude (confidence 0.6, no scope: any file): it is done'
    )
    assert item["data"]["commit"] == git(project, "rev-parse", "orch/T1") and item["data"]["via"] == "orch propose"
    again = propose(orch, wt, "--artifact", "src/api.md")
    assert again.stdout.startswith("P1: ")  # the same proposal while it waits: one item
    assert [i["id"] for i in items(orch)] == ["P1"]
    r = propose(orch, wt, confidence="0.8", title="Another")
    assert r.stdout.startswith("P2: ") and items(orch)[1]["asked"].startswith('worth handing off: "Another"')


@pytest.mark.parametrize(
    ("extra", "kw", "said"),
    [
        ([], {"to": "nobody"}, "orch propose: no agent 'nobody' (no .orch/agents/nobody.yaml)"),
        ([], {"scope": "^(docs/"}, "orch propose: --scope: invalid scope regex '^(docs/'"),
        ([], {"confidence": "1.5"}, "orch propose: --confidence 1.5 is outside 0.0-1.0"),
        ([], {"confidence": "-0.1"}, "orch propose: --confidence -0.1 is outside 0.0-1.0"),
        ([], {"confidence": "sure"}, "orch propose: --confidence 'sure' is not a number"),
        ([], {"confidence": "nan"}, "orch propose: --confidence nan is outside 0.0-1.0"),
        (["--artifact", "../outside.md"], {}, "--artifact '../outside.md' climbs out with '..'"),
        (["--artifact", "/etc/passwd"], {}, "--artifact '/etc/passwd' is absolute"),
        (["--artifact", "src/missing.md"], {}, "artifact 'src/missing.md' is not in orch/T1 at "),
        (["--artifact", "src/draft.md"], {}, "artifact 'src/draft.md' is not in orch/T1 at "),
        (["--artifact", ".git/config"], {}, "--artifact '.git/config' is not a file or folder of the repository"),
        ([], {"title": "two\nlines"}, "orch propose: --title 'two\\nlines' holds a control character"),
        ([], {"title": "x" * 201}, "orch propose: --title is 201 characters long, at most 200"),
        ([], {"brief": "  "}, "orch propose: --brief is empty"),
    ],
)  # fmt: skip
def test_a_bad_proposal_is_refused_with_a_clear_error(
    project: Path, orch: Orch, spun_t1: Path, extra: list[str], kw: dict[str, str], said: str
) -> None:
    confidence = kw.pop("confidence", "0.6")
    r = propose(orch, spun_t1, *extra, confidence=confidence, **kw)
    assert r.returncode == 3, r.output
    assert said in r.stderr and "Traceback" not in r.output, r.stderr
    assert items(orch) == [] and not (project / ".orch/run/inbox").exists()


def test_propose_outside_a_task_is_refused(project: Path, orch: Orch, spun_t1: Path) -> None:
    r = propose(orch, project)
    assert r.returncode == 3 and "is not inside a task's worktree" in r.stderr
    r = orch("propose", "--to", "claude", cwd=spun_t1)
    assert r.returncode == 2 and "Missing option" in r.stderr  # a usage error, not bad input


def test_approve_picks_the_id_refuses_a_taken_one_and_reject_drops(project: Path, orch: Orch, spun_t1: Path) -> None:
    for title in ("First", "Second", "Third"):
        assert propose(orch, spun_t1, title=title).returncode == 0
    before = (project / ".orch/plan.md").read_bytes()
    r = orch("approve", "P1", "--id", "T1")
    assert r.returncode == 3 and ".orch/plan.md:5: a task 'T1' exists already" in r.stderr, r.output
    r = orch("approve", "P1", "--id", "bad id")
    assert r.returncode == 3 and "bad task id 'bad id'" in r.stderr
    git(project, "branch", "orch/T5", "main")  # an earlier task's branch, its task gone from the plan
    r = orch("approve", "P1", "--id", "T5")
    assert r.returncode == 3 and "task id T5 is taken: an earlier task left branch orch/T5" in r.stderr
    r = orch("approve", "P1", "--edit", "x")
    assert r.returncode == 2 and "--edit is for learning items, and P1 is a handoff item" in r.stderr
    assert (project / ".orch/plan.md").read_bytes() == before and item_file(project, "P1")["state"] == "open"
    assert orch.ok("approve", "P1", "--id", "docs-1").stdout.startswith("P1 (handoff, task T1): added docs-1 to ")
    assert orch.ok("approve", "P2").stdout.startswith("P2 (handoff, task T1): added T2 to ")  # the next free T<n>
    r = orch.ok("reject", "P3", "--note", "not now")
    assert r.stdout == "P3 (handoff, task T1): dropped: nothing was added to the plan\n"
    after = (project / ".orch/plan.md").read_bytes()
    assert after.startswith(before)
    plan = parse(after.decode())
    assert plan.ids() == ["T1", "docs-1", "T2"] and plan.require("T2").title == "Second"
    assert orch_branches(project) == ["orch/T1", "orch/T5"] and spun(project) == ["T1"]
    assert item_file(project, "P3")["state"] == "rejected" and items(orch) == []
    r = orch("approve", "P3")
    assert r.returncode == 3 and "is rejected by ada@example.com already" in r.stderr


def test_an_edited_item_is_checked_again_and_an_approval_is_never_applied_twice(
    project: Path, orch: Orch, spun_t1: Path
) -> None:
    assert propose(orch, spun_t1, "--artifact", "src/api.md").returncode == 0
    path = project / ".orch/run/inbox/P1.yaml"
    original = path.read_text()
    forged = yaml.safe_load(original)
    forged["data"]["to"] = "nobody"
    path.write_text(yaml.safe_dump(forged))
    r = orch("approve", "P1")
    assert r.returncode == 3 and "inbox item P1: no agent 'nobody'" in r.stderr
    forged["data"].update(to="claude", artifacts=["src/draft.md"])
    path.write_text(yaml.safe_dump(forged))
    r = orch("approve", "P1")
    assert r.returncode == 3 and "inbox item P1: artifact 'src/draft.md' is not in orch/T1 at" in r.stderr
    path.write_text(original)
    before = (project / ".orch/plan.md").read_bytes()
    assert (project / ".orch/plan.md").read_bytes() == before
    # killed after the task was appended, before the answer was written: approving again adds nothing
    killed = run_orch(project, "approve", "P1", env={"ORCH_FAILPOINT": "store.before_replace:P1.yaml"})
    assert killed.returncode == -9
    appended = (project / ".orch/plan.md").read_bytes()
    assert appended.startswith(before) and parse(appended.decode()).ids() == ["T1", "T2"]
    r = orch.ok("approve", "P1")
    assert r.stdout == "P1 (handoff, task T1): already in the plan as T2 (.orch/plan.md:13); nothing added\n"
    assert (project / ".orch/plan.md").read_bytes() == appended


# -- whatever a proposal holds, the answer is a proposal or a clear refusal -------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["claude", "^docs/", "^(", "src/api.md", "../x", "/etc/passwd", ".git/config", "a\x00b", "\udcff"]),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)
KEYS = ["to", "title", "brief", "scope", "artifacts", "preconditions", "reason", "confidence", "agent"]


def read_or_refused(text: bytes) -> None:
    """``text`` as HANDOFF.yaml and as an outbox entry: a checked proposal, or a refusal naming it."""
    from orch.agents import handoff

    for as_yaml in (True, False):
        where = handoff.FILE if as_yaml else "outbox entry x"
        try:
            read = handoff.read(handoff._parse(text, where, yaml_text=as_yaml), where=where)
        except InputError as exc:
            assert exc.message.startswith(where), exc.message
            continue
        assert 0.0 <= read.confidence <= 1.0 and read.title.isprintable()
        assert all(".." not in a.split("/") and not a.startswith("/") for a in read.artifacts)


@settings(max_examples=200, deadline=None)
@given(proposal=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=9), raw=st.binary(max_size=40))
def test_any_proposal_is_read_or_refused_clearly(proposal: dict, raw: bytes) -> None:
    from orch.agents import handoff

    with_number = yaml.safe_dump({**proposal, "confidence": 0.5}, allow_unicode=True)
    read_or_refused(with_number.encode("utf-8", "surrogateescape"))
    read_or_refused(json.dumps(proposal, default=str).encode("utf-8", "surrogateescape"))
    read_or_refused(raw)
    for value in proposal.values():  # an item file anyone wrote still reads in the inbox
        assert isinstance(handoff.phrase({"title": value, "reason": value, "confidence": value}), str)


@pytest.mark.parametrize(
    "text",
    [b"[" * 30000, b"confidence: " + b"9" * 5000, b"\xff\xfe", b"- a\n- b\n", b"to: [unclosed\n", b"{}"],
)
def test_odd_texts_are_refused_clearly(text: bytes) -> None:
    read_or_refused(text)
