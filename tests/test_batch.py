"""Batched prefix runs (`batch_sizes`, `batch_seconds`) and `task_resources` in prefix
templates, through a counting prefix: a script that logs each invocation (how many job files it
got, and its words), then runs the command."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskproc import ConfigError, FailedTaskError, FutureList, Graph, InlineExecutor, Task
from taskproc.store import LocalStore

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

COUNTING = """#!/bin/sh
# count.sh LOG CMD...: log this invocation (its number of job files and its words), run CMD
log=$1; shift
n=0
for a in "$@"; do case $a in *job.pkl) n=$((n+1));; esac; done
echo "$n $*" >> "$log"
exec "$@"
"""

# The first invocation kills itself (and its worker) once a third task has started: the
# second has finished, the third is running. Later invocations count and run.
KILLING = """#!/bin/sh
log=$1; dir=$2; shift 2
echo "$*" >> "$log"
if mkdir "$dir/killer" 2>/dev/null; then
  "$@" &
  child=$!
  while [ "$(ls "$dir/started" | wc -l)" -lt 3 ]; do
    kill -0 $child 2>/dev/null || exit 3
    sleep 0.01
  done
  kill -9 $child
  touch "$dir/killed"
  kill -9 $$
fi
exec "$@"
"""


def counting_prefix(tmp_path: Path, extra: str = "") -> tuple[str, Path]:
    """A prefix template that counts its invocations in a log, and the log."""
    script, log = tmp_path / "count.sh", tmp_path / "invocations.log"
    script.write_text(COUNTING)
    return f"sh {script} {log}{extra}", log


def invocations(log: Path) -> list[tuple[int, str]]:
    """(number of job files, the words) of each invocation logged."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        n, _, words = line.partition(" ")
        out.append((int(n), words))
    return out


class Tiny(Task):
    task_label = "cpu"

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i * self.i


class Sum(Task):
    def __init__(self, n: int) -> None:
        self.parts = FutureList([Tiny(i) for i in range(n)])

    def run_task(self) -> int:
        return sum(self.parts.get_result())


def _sweep(cache: Path, tmp_path: Path, n: int, batch: int, limit: int | None = None) -> None:
    prefix, log = counting_prefix(tmp_path)
    with Graph(str(cache)):
        total, stats = Sum(n).run_graph(
            executor=InlineExecutor(),
            prefixes={"cpu": prefix},
            batch_sizes={"cpu": batch},
            rate_limits={"cpu": limit} if limit else None,
        )
    assert total == sum(i * i for i in range(n))
    assert stats["stats"] == {Tiny.task_name: n, Sum.task_name: 1}
    calls = invocations(log)
    assert sum(k for k, _ in calls) == n  # every task ran once
    assert max(k for k, _ in calls) <= batch
    assert len(calls) <= -(-n // batch) + (limit or 0), calls
    # each task's result is its own, and nothing of the batches is left
    with Graph(str(cache)):
        for i in (0, n // 2, n - 1):
            assert Tiny(i).get_result() == i * i
    assert not list(cache.rglob("job.pkl")) and not list(cache.rglob("outcome.pkl"))
    assert not list(cache.rglob("claim"))


def test_batches_run_many_tasks_per_invocation(cache: Path, tmp_path: Path) -> None:
    """200 tasks at batch 50, at most 2 commands at once: a handful of invocations."""
    _sweep(cache, tmp_path, 200, 50, limit=2)


@pytest.mark.slow
def test_thousand_tasks_at_batch_fifty(cache: Path, tmp_path: Path) -> None:
    """The issue's case: 1,000 trivial tasks at batch 50 use at most 25 invocations."""
    _sweep(cache, tmp_path, 1000, 50)
    assert len(invocations(tmp_path / "invocations.log")) <= 25


def test_batches_are_spread_over_the_limit(cache: Path, tmp_path: Path) -> None:
    """12 ready tasks, at most 4 commands at once, batch 25: four batches of 3, not one of 12
    beside three idle places."""
    prefix, log = counting_prefix(tmp_path)
    with Graph(str(cache)):
        total, _ = Sum(12).run_graph(
            executor=InlineExecutor(),
            prefixes={"cpu": prefix},
            batch_sizes={"*": 25},
            rate_limits={"cpu": 4},
        )
    assert total == sum(i * i for i in range(12))
    assert sorted(k for k, _ in invocations(log)) == [3, 3, 3, 3]


class Flaky(Task):
    task_label = "cpu"

    def __init__(self, i: int, bad: int) -> None:
        self.i, self.bad = i, bad

    def run_task(self) -> int:
        print(f"task {self.i} here")
        if self.i == self.bad:
            raise ValueError(f"task {self.i} is bad")
        return self.i


class Flakies(Task):
    def __init__(self, n: int, bad: int) -> None:
        self.parts = FutureList([Flaky(i, bad) for i in range(n)])

    def run_task(self) -> list[int]:
        return self.parts.get_result()


@pytest.mark.parametrize("policy", ["eager", "lazy"])
def test_a_task_that_raises_in_a_batch_fails_alone(
    cache: Path, tmp_path: Path, policy: str
) -> None:
    prefix, log = counting_prefix(tmp_path)
    with Graph(str(cache)), pytest.raises(ExceptionGroup) as caught:
        Flakies(6, bad=2).run_graph(
            executor=InlineExecutor(),
            prefixes={"cpu": prefix},
            batch_sizes={"cpu": 10},
            error_handling=policy,  # type: ignore[arg-type]
        )
    (error,) = caught.value.exceptions
    assert isinstance(error, FailedTaskError)
    assert error.task_name == Flaky.task_name and "Flaky(i=2, bad=2)" in str(error)
    assert error.error_type == "ValueError" and "task 2 is bad" in error.error_message
    assert "raise ValueError" in (error.traceback or "") and "task 2 here" in error.output_tail
    assert [k for k, _ in invocations(log)] == [6]  # one command: the batch went on
    store = LocalStore(str(cache))
    with Graph(str(cache)):
        for i in (0, 1, 3, 4, 5):  # committed, each with its own output
            task = Flaky(i, 2)
            assert task.get_result() == i
            out = store.read_output(task._tp_loc(), "stdout")
            assert out == f"task {i} here\n".encode()
        bad_id = Flaky(2, 2)._tp.task_id
    # the failed task's job stays, to rerun it by hand; the others' are gone
    assert [p.parent.name for p in cache.rglob("job.pkl")] == [bad_id]


class Marked(Task):
    """Marks its start in `dir/started`; while the killing prefix has not struck, it takes a
    while (so that it is still running when it strikes)."""

    task_label = "cpu"

    def __init__(self, i: int, dir: str) -> None:
        self.i, self.dir = i, dir

    def run_task(self) -> int:
        started = Path(self.dir, "started")
        (started / f"{self.i}.{time.time_ns()}").touch()
        deadline = time.monotonic() + 20
        while not Path(self.dir, "killed").exists() and time.monotonic() < deadline:
            if len(list(started.iterdir())) < 3:
                break  # not the third to start: done quickly
            time.sleep(0.01)
        return self.i


class AllMarked(Task):
    def __init__(self, n: int, dir: str) -> None:
        self.parts = FutureList([Marked(i, dir) for i in range(n)])

    def run_task(self) -> list[int]:
        return self.parts.get_result()


def test_a_batch_that_dies_fails_only_the_running_task(cache: Path, tmp_path: Path) -> None:
    """The prefix kills itself and its worker while the third task runs: that task fails
    (one attempt), the tasks not started go to later batches and run once each, and the
    first two keep their results."""
    script, log, marks = tmp_path / "kill.sh", tmp_path / "calls.log", tmp_path / "marks"
    script.write_text(KILLING)
    (marks / "started").mkdir(parents=True)
    n = 8
    with Graph(str(cache)), pytest.raises(ExceptionGroup) as caught:
        AllMarked(n, str(marks)).run_graph(
            executor=InlineExecutor(),
            prefixes={"cpu": f"sh {script} {log} {marks}"},
            batch_sizes={"cpu": n},
            error_handling="lazy",
        )
    starts = sorted(marks.joinpath("started").iterdir(), key=lambda p: int(p.name.split(".")[1]))
    order = [int(p.name.split(".")[0]) for p in starts]
    victim = order[2]  # the third to start
    assert sorted(order) == sorted(range(n))  # every task started exactly once
    (error,) = caught.value.exceptions
    assert isinstance(error, FailedTaskError) and error.error_type == "PrefixError"
    assert f"Marked(i={victim}," in str(error)
    assert "killed by signal SIGKILL" in error.error_message
    assert f"task 3 of a batch of {n}; the {n - 3} not started go back" in error.error_message
    assert len(log.read_text().splitlines()) >= 2  # later batches ran the rest
    with Graph(str(cache)):
        for i in range(n):
            task = Marked(i, str(marks))
            if i == victim:
                assert not Path(task._tp.store.result_file(task._tp_loc())).exists()
                continue
            assert task.get_result() == i
            (stored,) = [
                s for s in task._tp.store.scan([Marked.task_name]) if s.task_id == task._tp.task_id
            ]
            assert stored.facts["attempts"] == 1
        victim_id = Marked(victim, str(marks))._tp.task_id
    assert not list(cache.rglob("claim")), "claims left behind"
    # only the failed task's job is kept
    assert [p.parent.name for p in cache.rglob("job.pkl")] == [victim_id]


class Nap(Task):
    task_label = "cpu"
    task_version = 1

    def __init__(self, i: int, seconds: float) -> None:
        self.i, self.seconds = i, seconds

    def run_task(self) -> int:
        time.sleep(self.seconds)
        return self.i


class Naps(Task):
    def __init__(self, n: int, seconds: float, more: int = 0) -> None:
        self.parts = FutureList([Nap(i, seconds) for i in range(n + more)])

    def run_task(self) -> list[int]:
        return self.parts.get_result()


def test_batch_seconds_budget_is_respected(cache: Path, tmp_path: Path) -> None:
    """A first run records each task's time; a rerun (new task_version) fills each batch only
    while its tasks' recorded times stay within the budget; tasks never run before count as
    the median of their task name."""
    with Graph(str(cache)):
        Naps(6, 0.05).run_graph(executor=InlineExecutor())
    store = LocalStore(str(cache))
    recorded = {s.task_id: s.facts["duration"] for s in store.scan([Nap.task_name])}
    median = statistics.median(recorded.values())
    budget = 3.5 * max(recorded.values())  # three tasks fit, never four... of the slowest
    Nap.task_version = 2
    try:
        prefix, log = counting_prefix(tmp_path)
        with Graph(str(cache)):
            result, stats = Naps(6, 0.05, more=3).run_graph(
                executor=InlineExecutor(),
                prefixes={"cpu": prefix},
                batch_sizes={"cpu": 50},
                batch_seconds={"cpu": budget},
                rate_limits={"cpu": 1},
            )
            ids = {i: Nap(i, 0.05)._tp.task_id for i in range(9)}
    finally:
        Nap.task_version = 1
    assert result == list(range(9)) and stats["stats"][Nap.task_name] == 9
    calls = invocations(log)
    assert len(calls) >= 3 and all(k >= 1 for k, _ in calls)
    for k, words in calls:
        batch = [i for i, tid in ids.items() if f"/{tid}/job.pkl" in words]
        assert len(batch) == k
        estimate = sum(recorded.get(ids[i], median) for i in batch)
        assert k == 1 or estimate <= budget, (batch, estimate, budget)
    assert max(k for k, _ in calls) >= 2  # the budget still lets batches form


class Sized(Task):
    task_label = "cpu"
    task_resources = {"mem": "4G", "cpus": 2, "note": "a b;c"}

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


class Bigger(Sized):
    task_resources = {"mem": "16G", "cpus": 8, "note": "x"}


class SizedAll(Task):
    def __init__(self, n: int) -> None:
        self.small = FutureList([Sized(i) for i in range(n)])
        self.big = FutureList([Bigger(i) for i in range(n)])

    def run_task(self) -> int:
        return sum(self.small.get_result()) + sum(self.big.get_result())


def test_resources_fill_the_template(cache: Path, tmp_path: Path) -> None:
    """Each task's resources fill its command, shell-quoted; tasks whose commands differ are
    never batched together."""
    prefix, log = counting_prefix(tmp_path, " env MEM={mem} CPUS={cpus} NOTE={note}")
    with Graph(str(cache)):
        total, _ = SizedAll(4).run_graph(
            executor=InlineExecutor(), prefixes={"cpu": prefix}, batch_sizes={"cpu": 10}
        )
    assert total == 2 * sum(range(4))
    calls = sorted(invocations(log))
    assert [k for k, _ in calls] == [4, 4]
    words = sorted(w for _, w in calls)
    assert "env MEM=16G CPUS=8 NOTE=x " in words[0]
    assert "env MEM=4G CPUS=2 NOTE=a b;c " in words[1]  # one word: the shell got it whole
    for _, w in calls:  # each batch holds tasks of one class only
        assert (f"/{Sized.task_name}/" in w) == ("MEM=4G" in w) != (f"/{Bigger.task_name}/" in w)


def test_a_missing_resource_is_refused_before_anything_runs(cache: Path, tmp_path: Path) -> None:
    prefix, log = counting_prefix(tmp_path, " --gres gpu:{gpus}")
    with Graph(str(cache)), pytest.raises(ConfigError) as caught:
        SizedAll(2).run_graph(executor=InlineExecutor(), prefixes={"cpu": prefix})
    message = str(caught.value)
    assert "\n" not in message
    assert Bigger.task_name in message and "{gpus}" in message and "task_resources" in message
    assert not log.exists() and not cache.exists()  # nothing submitted, nothing written


def test_a_missing_resource_on_the_command_line(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe.py"
    pipeline.write_text(
        "from taskproc import Task\n"
        "class Main(Task):\n"
        "    task_resources = {'mem': '1G'}\n"
        "    def run_task(self):\n"
        "        return 1\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskproc",
            str(pipeline),
            "-o",
            str(tmp_path / "cache"),
            "--prefixes",
            json.dumps({"*": "env M={mem} C={cpus}"}),
            "--batch-sizes",
            json.dumps({"*": 4}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "pipe.Main" in line and "{cpus}" in line


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("batch_sizes", {"cpu": 0}, "batch_sizes['cpu'] must be an int >= 1"),
        ("batch_sizes", [1], "batch_sizes must be a mapping"),
        ("batch_seconds", {"cpu": -1}, "batch_seconds['cpu'] must be a number of seconds > 0"),
        ("batch_seconds", {"cpu": float("inf")}, "must be a number of seconds > 0"),
    ],
)
def test_bad_batch_options(cache: Path, option: str, value: object, says: str) -> None:
    with Graph(str(cache)), pytest.raises(ConfigError, match=says.replace("[", r"\[")):
        Sum(1).run_graph(**{option: value})  # type: ignore[arg-type]


def test_bad_batch_options_on_the_command_line(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe.py"
    pipeline.write_text(
        "from taskproc import Task\nclass Main(Task):\n    def run_task(self):\n        return 1\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskproc",
            str(pipeline),
            "-o",
            str(tmp_path / "cache"),
            "--batch-seconds",
            json.dumps({"*": "soon"}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "taskproc: error: --batch-seconds['*'] must be a number of seconds > 0, got 'soon'"
    ]


def test_bad_task_resources() -> None:
    from taskproc import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match="task_resources keys must be identifiers"):

        class Bad(Task):
            task_resources = {"my-mem": "1G"}

    with pytest.raises(TaskDefinitionError, match=r"task_resources\['mem'\] must be a str"):

        class Bad2(Task):
            task_resources = {"mem": ["1G"]}


class First(Task):
    task_label = "cpu"

    def __init__(self, i: int, dir: str) -> None:
        self.i, self.dir = i, dir

    def run_task(self) -> str:
        if self.i < 3:
            return "quick"
        # The last of the batch waits for the downstream task of the first one: it runs
        # while this batch still does, so the first task's outcome came before the batch's end.
        deadline = time.monotonic() + 30
        while not Path(self.dir, "downstream-ran").exists():
            if time.monotonic() > deadline:
                return "late"
            time.sleep(0.01)
        return "saw it"


class Downstream(Task):
    def __init__(self, dir: str) -> None:
        self.up = First(0, dir)
        self.dir = dir

    def run_task(self) -> str:
        Path(self.dir, "downstream-ran").touch()
        return self.up.get_result()


class Both(Task):
    def __init__(self, dir: str) -> None:
        self.down = Downstream(dir)
        self.rest = FutureList([First(i, dir) for i in range(1, 4)])

    def run_task(self) -> list[str]:
        return [self.down.get_result(), *self.rest.get_result()]


def test_each_outcome_reaches_the_round_as_it_finishes(cache: Path, tmp_path: Path) -> None:
    prefix, log = counting_prefix(tmp_path)
    with Graph(str(cache)), ThreadPoolExecutor(2) as pool:
        result, _ = Both(str(tmp_path)).run_graph(
            executor=pool, prefixes={"cpu": prefix}, batch_sizes={"cpu": 4}
        )
    assert result == ["quick", "quick", "quick", "saw it"]
    assert [k for k, _ in invocations(log)] == [4]


def test_a_template_naming_the_task_id_runs_one_task_per_command(
    cache: Path, tmp_path: Path
) -> None:
    prefix, log = counting_prefix(tmp_path, " env ID={task_id}")
    with Graph(str(cache)):
        Sum(3).run_graph(
            executor=InlineExecutor(), prefixes={"cpu": prefix}, batch_sizes={"cpu": 10}
        )
    assert [k for k, _ in invocations(log)] == [1, 1, 1]
