"""`taskproc why` and `task.why()`: the first reason each task would run, in words a user acts
on, and `--dry-run`, which says the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

from taskproc import FutureList, Graph, InlineExecutor, Task
from taskproc.store import MemoryStore
from taskproc.views import WhyKind

PIPE = """
from taskproc import Task
import helpers

class Square(Task):
    def __init__(self, x: int, power: int = 2):
        self.x = x
        self.power = power

    def run_task(self) -> int:
        return helpers.scale(self.x) ** self.power

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


def test_why_names_the_changed_function_in_its_first_line_with_a_diff(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    project.edit("helpers", "x * 2", "x * 3")
    out = project.cli("why", "pipe.py", "-o", "cache").stdout.splitlines()
    assert out[0] == (
        "pipe.Square(x=0, power=2) and 2 more: its source code changed: "
        "function helpers.scale changed"
    )
    assert "    -    return x * 2" in out and "    +    return x * 3" in out
    assert out[-2].startswith("pipe.Main(n=3): an upstream task reruns: pipe.Square(x=0")
    assert out[-1] == "4 of 4 tasks would run"
    # The same for tools, and nothing ran or was written.
    data = json.loads(project.cli("why", "pipe.py", "-o", "cache", "--json").stdout)
    square = data["tasks"][0]
    assert square["kind"] == "code" and square["changed"] == ["helpers.scale"]
    assert "+    return x * 3" in square["diff"]
    assert project.run()["ran"] == {"pipe.Square": 3, "pipe.Main": 1}


def test_why_selects_tasks_by_name_or_glob(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    project.edit("helpers", "x * 2", "x * 3")
    out = project.cli("why", "pipe.py", "-o", "cache", "pipe.M*", "--dont-force-entrypoint")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("pipe.Main(n=3): an upstream task reruns")
    assert lines[-1] == "1 of 4 tasks would run (of 1 selected)"
    bad = project.cli("why", "pipe.py", "-o", "cache", "nope.*", check=False)
    assert bad.returncode == 2 and "no task of this graph matches 'nope.*'" in bad.stderr


def test_dry_run_says_the_same(project: Project) -> None:
    project.write(pipe=PIPE, helpers=HELPERS)
    project.run()
    project.edit("helpers", "x * 2", "x * 3")
    out = project.cli("pipe.py", "-o", "cache", "--dry-run").stdout
    assert (
        "pipe.Square(x=1, power=2): its source code changed: function helpers.scale changed" in out
    )


def test_a_required_distribution_and_a_constant_are_named(project: Project) -> None:
    project.write(
        pipe=PIPE.replace(
            "class Square(Task):", "class Square(Task):\n    task_requires = 'pytest'"
        ),
        helpers="LIMIT = 10\n\ndef scale(x):\n    return min(x, LIMIT)\n",
    )
    project.run()
    project.edit("helpers", "LIMIT = 10", "LIMIT = 11")
    first = project.cli("why", "pipe.py", "-o", "cache").stdout.splitlines()[0]
    assert first.endswith("its source code changed: constant helpers.LIMIT changed")


# -- every kind of reason, through task.why() -----------------------------------------------------


class Leaf(Task):
    def __init__(self, x: int, flag: bool = False) -> None:
        self.x = x
        self.flag = flag

    def run_task(self) -> int:
        if self.x < 0:
            raise ValueError(f"negative: {self.x}")
        return self.x


class Top(Task):
    def __init__(self, xs: list[int]) -> None:
        self.leaves = [Leaf(x) for x in xs]

    def run_task(self) -> int:
        return sum(leaf.get_result() for leaf in self.leaves)


def test_why_for_tasks_never_run_failed_and_with_other_arguments(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        top = Top([1, 2])
    assert [w.kind for w in top.why()] == [WhyKind.NEW, WhyKind.NEW, WhyKind.UPSTREAM]
    assert top.why()[0].summary == "no cached result: never run"
    top.run_graph(executor=InlineExecutor())
    assert top.why() == []

    with Graph(tmp_path / "cache"):
        bad = Top([1, -1])
        other = Leaf(2, flag=True)
    with pytest.raises(Exception, match="1 task failed"):
        bad.run_graph(executor=InlineExecutor())
    failed = bad.why("test_why.Leaf")
    assert [w.kind for w in failed] == [WhyKind.FAILED]
    assert failed[0].summary == "no cached result: its last run failed (ValueError: negative: -1)"

    (why,) = other.why()
    assert why.kind is WhyKind.ARGUMENTS
    assert why.closest == "test_why.Leaf(x=2, flag=False)"
    assert why.differing == ("flag",)
    assert "differs in flag" in why.summary


class Flaky(Task):
    def __init__(self, x: int, folder: str) -> None:
        self.x = x
        self.folder = folder

    def run_task(self) -> int:
        if self.x < 0 and not Path(self.folder, "fixed").exists():
            raise ValueError(f"negative: {self.x}")
        return self.x


class Tolerant(Task):
    def __init__(self, xs: list[int], folder: str) -> None:
        self.parts = FutureList([Flaky(x, folder) for x in xs], allow_failed=True)

    def run_task(self) -> int:
        return sum(v for v in self.parts.get_result() if isinstance(v, int))


def test_why_for_a_failed_tolerated_upstream_task_that_has_a_result_now(tmp_path: Path) -> None:
    folder = str(tmp_path)
    with Graph(tmp_path / "cache"):
        top = Tolerant([1, -1], folder)
    with pytest.raises(Exception, match="1 task failed"):
        top.run_graph(executor=InlineExecutor(), error_handling="lazy")
    assert top.get_result() == 1
    (tmp_path / "fixed").touch()
    with Graph(tmp_path / "cache"):
        Flaky(-1, folder).run_graph(executor=InlineExecutor())  # by another pipeline
        (why,) = top.why()
    assert why.kind is WhyKind.RECOVERED
    assert why.summary == (
        "an upstream task that had failed when it ran has a result now: it ran with the failure "
        "of an upstream task it tolerates (allow_failed) as a value, and reruns with that task's "
        "result"
    )


def test_why_for_version_upstream_and_forced(tmp_path: Path) -> None:
    with Graph("memory", store=MemoryStore()):
        top = Top([1, 2])
    top.run_graph(executor=InlineExecutor())
    Leaf.task_version = 7
    try:
        whys = top.why()
    finally:
        Leaf.task_version = None
    assert [w.kind for w in whys] == [WhyKind.VERSION, WhyKind.VERSION, WhyKind.UPSTREAM]
    assert whys[0].summary == "task_version changed: None -> 7"
    assert whys[2].upstream == "test_why.Leaf(x=1, flag=False)"
    assert whys[2].summary == (
        "an upstream task reruns: test_why.Leaf(x=1, flag=False) and 1 more "
        "(task_version changed: None -> 7)"
    )
    (forced,) = top.why(force_entrypoint=True)
    assert forced.kind is WhyKind.FORCED


def test_why_for_a_corrupt_result(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        top = Top([3])
    top.run_graph(executor=InlineExecutor())
    path = top.leaves[0].task_worker.result_path
    path.write_bytes(path.read_bytes()[:12] + b"X" + path.read_bytes()[13:])
    whys = top.why()
    assert whys[0].kind is WhyKind.CORRUPT
    assert whys[0].summary.startswith("its cached result is unreadable (")
