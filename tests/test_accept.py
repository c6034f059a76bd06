"""`taskproc accept` and `taskproc.accept_code`: stored results re-keyed to the current code,
without running, in the result files themselves; refusals with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

from taskproc import Graph, InlineExecutor, Task, accept_code
from taskproc.store import Holder, LocalStore, MemoryStore, Store, new_runner, read_record
from taskproc.store._resultfile import read_header
from taskproc.upkeep import Verdict

PIPE = """
from taskproc import Task
import helpers

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        return helpers.scale(self.x) ** 2

class Main(Task):
    def __init__(self, n: int = 3):
        self.squares = [Square(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.squares)
"""

HELPERS = """
def scale(x):
    return x * 2
"""

REFACTORED = """
def scale(x):
    doubled = x + x  # the same result, other code
    return doubled
"""


@pytest.mark.parametrize("executor", ["inline", "thread", "process"])
def test_accept_then_a_rerun_runs_nothing(project: Project, executor: str) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    assert project.run(executor)["result"] == 20
    project.write(helpers=REFACTORED)
    dry = project.cli("accept", "pipe.py", "-o", "cache", "--dry-run").stdout
    assert dry.startswith("would accept 3 tasks, 1 already fresh, 0 refused")
    out = project.cli("accept", "pipe.py", "-o", "cache").stdout.splitlines()
    assert out[0] == "accepted 3 tasks, 1 already fresh, 0 refused"
    assert out[1] == "  accepted: pipe.Square(x=0): changed: helpers.scale"
    rerun = project.run(executor)
    assert rerun["ran"] == {} and rerun["result"] == 20
    assert rerun["warnings"] == []  # the results now carry the code that runs
    why = project.cli("why", "pipe.py", "-o", "cache", "--dont-force-entrypoint").stdout
    assert why.startswith("nothing would run")


def test_accepting_an_upstream_task_keeps_its_downstream_cached(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    project.write(helpers=REFACTORED)
    out = project.cli("accept", "pipe.py", "-o", "cache", "pipe.Square").stdout
    assert out.startswith("accepted 3 tasks, 0 already fresh, 0 refused")
    assert project.run()["ran"] == {}  # Main's upstream stamps are unchanged


def test_accept_is_in_the_result_file_which_keeps_its_data(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    files = sorted((project.root / "cache" / "pipe.Square" / "results").glob("*/result.pkl.gz"))
    before = {f: (read_header(str(f)), f.read_bytes()) for f in files}
    project.write(helpers=REFACTORED)
    project.cli("accept", "pipe.py", "-o", "cache")
    for f, ((record, facts), data) in before.items():
        new_record, new_facts = read_header(str(f))
        assert new_record == record._replace(code_id=new_record.code_id)  # the rest is kept
        assert new_record.code_id != record.code_id
        assert new_facts["accepted"]["code"] == record.code_id
        assert new_facts["duration"] == facts["duration"]
        assert members(f.read_bytes()) == members(data)  # the pickled result, byte for byte


def members(data: bytes) -> bytes:
    """What follows the record's header (its comment, NUL, header CRC) in a result file."""
    start = data.index(b"taskproc 2 ") if b"taskproc 2 " in data else data.index(b"taskproc 1 ")
    return data[data.index(b"\0", start) + 3 :]


def test_accept_refuses_tasks_whose_arguments_changed(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    project.write(helpers=REFACTORED)
    proc = project.cli("accept", "pipe.py", "-o", "cache", "--kwargs", '{"n": 4}', check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "accepted 3 tasks, 0 already fresh, 2 refused"
    assert (
        "  refused: pipe.Square(x=3): no cached result: its arguments differ from every stored "
        "run of pipe.Square (3 stored runs); the closest, pipe.Square(x=0), differs in x"
    ) in lines
    assert any(
        line.startswith("  refused: pipe.Main(n=4): upstream pipe.Square(x=3)") for line in lines
    )
    data = json.loads(
        project.cli("accept", "pipe.py", "-o", "cache", "--json", "--dry-run", check=False).stdout
    )
    assert data["fresh"] == 4 and data["refused"] == 0


# -- in one process, with the code identity changed by hand -------------------------------------


class Leaf(Task):
    def __init__(self, x: int) -> None:
        self.x = x

    def run_task(self) -> int:
        return self.x


class Top(Task):
    def __init__(self, xs: list[int]) -> None:
        self.leaves = [Leaf(x) for x in xs]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)


def make_code_stale(task: Task) -> None:
    """Give the task's stored record another code identity, as an edit of its code would."""
    store: Store = task._tp.store
    loc = task._tp_loc()
    record = read_record(store, loc)
    assert record is not None
    lease = store.claim(loc, new_runner())
    assert not isinstance(lease, Holder)
    with lease:
        assert lease.rekey(record, record._replace(code_id="0" * 24))


@pytest.fixture(params=["local", "memory"])
def graph(request: pytest.FixtureRequest, tmp_path: Path) -> Graph:
    if request.param == "local":
        return Graph(tmp_path / "cache")
    return Graph("memory", store=MemoryStore())


def test_accept_code_in_python(graph: Graph) -> None:
    with graph:
        top = Top([1, 2])
    top.run_graph(executor=InlineExecutor())
    for leaf in top.leaves:
        make_code_stale(leaf)
    assert [w.kind.value for w in top.why()] == ["code", "code", "upstream"]
    report = accept_code(top, "test_accept.Leaf")
    assert [t.verdict for t in report.tasks] == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert top.why() == []
    _, stats = top.run_graph(executor=InlineExecutor(), detect_source_change=True)
    assert stats["executed"] == 0


def test_accept_refuses_a_changed_upstream_result_and_task_version(graph: Graph) -> None:
    with graph:
        top = Top([1, 2])
        leaf = Leaf(1)
    top.run_graph(executor=InlineExecutor())
    make_code_stale(top)
    leaf.clear_task()
    leaf.run_graph(executor=InlineExecutor())  # a new stamp: Top's input changed
    (refused,) = accept_code(top, "test_accept.Top").tasks
    assert refused.verdict is Verdict.REFUSED
    assert refused.why.startswith("an upstream result changed since it ran")

    Leaf.task_version = 5
    try:
        verdicts = accept_code(top).tasks
    finally:
        Leaf.task_version = None
    assert [v.verdict for v in verdicts] == [Verdict.REFUSED] * 3
    assert verdicts[0].why == "task_version changed: None -> 5"
    assert verdicts[2].why.startswith("upstream test_accept.Leaf(x=1) would rerun (task_version")


def test_accept_refuses_a_task_a_runner_holds(graph: Graph) -> None:
    with graph:
        top = Top([4])
    top.run_graph(executor=InlineExecutor())
    leaf = top.leaves[0]
    make_code_stale(leaf)
    other = Holder("someone", "elsewhere", 1)
    assert not isinstance(leaf._tp.store.claim(leaf._tp_loc(), other), Holder)  # kept held
    (verdict,) = accept_code(top, "test_accept.Leaf").tasks
    assert verdict.verdict is Verdict.REFUSED
    assert verdict.why.startswith("a runner holds it (host elsewhere, pid 1)")


def test_a_dry_run_writes_nothing(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        top = Top([1])
    top.run_graph(executor=InlineExecutor())
    make_code_stale(top.leaves[0])
    store = LocalStore(tmp_path / "cache")
    before = read_record(store, top.leaves[0]._tp_loc())
    report = accept_code(top, dry_run=True)
    assert [t.verdict for t in report.tasks] == [Verdict.ACCEPTED, Verdict.FRESH]
    assert read_record(store, top.leaves[0]._tp_loc()) == before
