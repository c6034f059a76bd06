"""The run loop on stores other than a folder: the engine needs nothing of a store but its
contract. On the in-memory store (and, where an S3 server runs, on a bucket).

The memory store's runs touch no disk (the store is a dict), so they also pin what the driver
tells its hooks: each task it starts is reported started once and finished once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest

from taskproc import FailedTaskError, Graph, InlineExecutor, Task, TaskState
from taskproc.store import MemoryStore, Store

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Leaf(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        return self.n * 10


class Slow(Task):
    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        time.sleep(0.3)
        return self.n


class Bad(Task):
    def run_task(self) -> int:
        raise ValueError("no")


class Sum(Task):
    def __init__(self, parts: list[Task], bad: bool = False) -> None:
        self.parts = parts
        if bad:
            self.bad = Bad()

    def run_task(self) -> int:
        return sum(p.get_result() for p in self.parts)


class Events:
    """A hook that records every event."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.finished: list[tuple[str, TaskState]] = []

    def run_started(self, plan: object) -> None:
        pass

    def task_started(self, task_name: str) -> None:
        self.started[task_name] += 1

    def task_finished(self, task_name: str, state: TaskState) -> None:
        self.finished.append((task_name, state))

    def run_finished(self) -> None:
        pass


@pytest.fixture(params=["inline", "thread"])
def executor(request: pytest.FixtureRequest) -> Executor:
    return InlineExecutor() if request.param == "inline" else ThreadPoolExecutor(2)


@pytest.fixture(params=["memory", pytest.param("bucket", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "bucket":
        bucket_store: Store = request.getfixturevalue("bucket_store")
        return bucket_store
    return MemoryStore()


def test_runs_and_caches_in_memory(tmp_path: Path, executor: Executor, store: Store) -> None:
    with Graph(tmp_path / "unused", store=store):
        root = Sum([Leaf(i) for i in range(4)])
        assert root.run_graph(executor=executor)[0] == 60
        again, stats = Sum([Leaf(i) for i in range(4)]).run_graph(executor=executor)
    assert again == 60 and stats["executed"] == 0
    assert store.task_names() == [Leaf.task_name, Sum.task_name]
    assert not (tmp_path / "unused").exists()  # nothing was written to disk


def test_failures_are_reported_and_recorded(
    tmp_path: Path, executor: Executor, store: Store
) -> None:
    with Graph(tmp_path, store=store), pytest.raises(ExceptionGroup) as info:
        Sum([Leaf(1)], bad=True).run_graph(executor=executor)
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.error_message == "no"
    (loc,) = [f.location for f in store.scan([Bad.task_name])]
    assert "ValueError: no" in (store.read_error(loc) or "")


def test_a_task_another_runner_runs_is_reported_once(tmp_path: Path, store: Store) -> None:
    """Two runners on one store: the second finds the tasks held by the first, waits, and
    takes their results. Every task it started is reported finished once, as cached."""
    hooks = [Events(), Events()]
    results: list[int] = []

    def runner(i: int) -> None:
        with Graph(tmp_path, store=store):
            root = Sum([Slow(n) for n in range(3)])
            results.append(root.run_graph(executor=ThreadPoolExecutor(3), hooks=[hooks[i]])[0])

    first = threading.Thread(target=runner, args=(0,))
    first.start()
    deadline = time.monotonic() + 10
    while not any(f.holder for f in store.scan([Slow.task_name])):
        assert time.monotonic() < deadline, "the first runner never claimed a task"
        time.sleep(0.01)
    runner(1)
    first.join()
    assert results == [3, 3]
    for events in hooks:
        finished = Counter(name for name, _ in events.finished)
        assert finished == events.started  # one finish per started task
    second = Counter(state for _, state in hooks[1].finished)
    assert second[TaskState.CACHED] >= 1 and TaskState.FAILED not in second
    assert len(hooks[0].finished) + len(hooks[1].finished) == 8


class Prefixed(Task):
    task_label = "gpu"

    def run_task(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [
        (
            Leaf,
            {"executor": None},
            "a process pool (or dask) runs tasks in other processes: the store <memory> "
            "cannot be used from other processes; run with executor 'thread' or 'local'",
        ),
        (
            Prefixed,
            {"executor": "thread", "prefixes": {"gpu": "env"}},
            "prefix commands: the store <memory> cannot run tasks through prefix commands",
        ),
    ],
)
def test_what_a_store_cannot_do_is_refused_up_front(
    tmp_path: Path, task: type[Task], options: dict[str, object], message: str
) -> None:
    """A MemoryStore cannot travel to other processes: a process pool or a prefix command is
    refused in one line before anything runs (it used to fail every task with "cannot
    pickle '_thread.lock'")."""
    from taskproc import ConfigError

    store = MemoryStore()
    if options.get("executor") == "thread":
        options = {**options, "executor": ThreadPoolExecutor(1)}
    with Graph(tmp_path, store=store):
        root = task(0) if task is Leaf else task()
    with pytest.raises(ConfigError) as info:
        root.run_graph(**options)  # type: ignore[arg-type]
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    assert store.task_names() == [] and not store.is_cache()  # nothing ran, nothing written


def test_a_memory_store_captures_output_on_threads(tmp_path: Path, store: Store) -> None:
    """Output capture is a capability the memory store (and a bucket) has: a task's output on
    a thread pool is kept, and shown in its failure."""

    with Graph(tmp_path, store=store), pytest.raises(ExceptionGroup) as info:
        Loud().run_graph(executor=ThreadPoolExecutor(2))
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and "hello from the task" in err.output_tail
    (loc,) = [f.location for f in store.scan([Loud.task_name])]
    assert store.read_output(loc, "stdout") == b"hello from the task\n"


class Loud(Task):
    def run_task(self) -> int:
        print("hello from the task")
        raise ValueError("loud")


class Deleting(Task):
    """Its upstream result is deleted (as by `gc` or `clear` from another shell) the first
    `times` it runs, just before it reads it."""

    def __init__(self, times: int, marks: str) -> None:
        self.leaf = Leaf(7)
        self.times = times
        self.marks = marks

    def run_task(self) -> int:
        runs = len(os.listdir(self.marks))
        open(os.path.join(self.marks, str(runs)), "w").close()
        if runs < self.times:
            self.leaf.clear_task()
        return self.leaf.get_result() + 1


def test_results_deleted_during_a_run_however_often_are_computed_again(tmp_path: Path) -> None:
    """A result that vanished is not a corrupt one: the run computes it again, however often
    it is deleted (here 6 times, more than the rounds allowed for damaged results), and says
    so. (On a process pool, where a task reads its upstream results from the cache.)"""
    marks = tmp_path / "marks"
    marks.mkdir()
    with Graph(tmp_path / "cache"):
        Leaf(7).run_graph(executor=InlineExecutor())
        root = Deleting(6, str(marks))
    with pytest.warns(UserWarning, match="was deleted since the run started"):
        result, _ = root.run_graph()
    assert result == 71 and len(os.listdir(marks)) == 7
