"""`taskproc status`, `ls` and `clear`, run for real on caches under tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskproc import FailedTaskError, Graph
from taskproc.model import Ledger, inputs_digest, stamps_digest
from taskproc.run import TaskState
from taskproc.store import (
    Holder,
    Lease,
    LocalStore,
    MemoryStore,
    Record,
    RunSummary,
    Store,
    StoredTask,
    hostname,
    new_runner,
)
from taskproc.upkeep import clear_failed
from taskproc.views import first_error_line, human_size, human_time, scan
from taskproc.views._report import format_status, last_run_line
from taskproc.views._scan import Origin, TaskEntry, _with_staleness, raised_at

TASKPROC = str(Path(sys.executable).with_name("taskproc"))

PIPE = """
import os, sys, time
from taskproc import Task

class Square(Task):
    def __init__(self, x: int):
        self.x = x

    def run_task(self) -> int:
        return self.x * self.x

class Bad(Task):
    def run_task(self) -> int:
        print("about to fail", file=sys.stderr)
        raise ValueError("boom\\nsecond line")

class Slow(Task):
    def run_task(self) -> int:
        open(os.environ["MARKER"], "w").close()
        time.sleep(60)
        return 1

class Main(Task):
    def __init__(self, n: int = 3, bad: bool = False, slow: bool = False):
        self.squares = [Square(i) for i in range(n)]
        self.extra = [Bad()] if bad else [Slow()] if slow else []

    def run_task(self) -> int:
        return sum(s.get_result() for s in self.squares)
"""


# A typo in one task's arguments ("400"), fixed in the next run (--kwargs '{"n_rows": 400}').
TYPO = """
from taskproc import Task

class MakeData(Task):
    def __init__(self, n_rows: int):
        self.n_rows = n_rows

    def run_task(self) -> list[int]:
        return list(range(self.n_rows))

class Count(Task):
    def __init__(self, k: int):
        self.k = k

    def run_task(self) -> int:
        return self.k

class Main(Task):
    def __init__(self, n_rows: object = "400", k: int = 0, data: bool = True):
        self.data = [MakeData(n_rows)] if data else []
        self.count = Count(k)

    def run_task(self) -> int:
        return sum(len(d.get_result()) for d in self.data) + self.count.get_result()
"""


def taskproc(*args: object, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [TASKPROC, *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,  # never the terminal pytest may run on: nobody answers
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(proc: Any) -> Any:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def status_json(cache: Path) -> dict[str, Any]:
    return dict(json.loads(ok(taskproc("status", cache, "--json", cwd=cache.parent)).stdout))


@pytest.fixture
def pipe(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(PIPE))
    return tmp_path


def relative_paths(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, dirs, files in os.walk(root)
        for name in dirs + files
        if ".taskproc" not in folder and name != ".taskproc"
    }


# -- status ----------------------------------------------------------------------------------


def test_status_after_a_run(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    text = ok(taskproc("status", "cache", cwd=pipe)).stdout
    assert "4 tasks, 4 done" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:] if line}
    assert rows["pipe.Square"][:5] == ["3", "0", "0", "0", "0"]
    assert rows["pipe.Main"][:5] == ["1", "0", "0", "0", "0"]

    report = status_json(pipe / "cache")
    assert report["totals"] == {"done": 4, "stale": 0, "running": 0, "failed": 0, "incomplete": 0}
    assert report["task_names"]["pipe.Square"]["done"] == 3
    assert report["task_names"]["pipe.Square"]["time"] >= 0
    assert report["running"] == report["failed"] == []


def test_status_shows_sizes_per_task_name_and_in_total(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    listed = json.loads(ok(taskproc("ls", "cache", "--json", cwd=pipe)).stdout)
    per_name: dict[str, int] = {}
    for e in listed:
        per_name[e["task_name"]] = per_name.get(e["task_name"], 0) + e["size"]
    report = status_json(pipe / "cache")
    assert {n: v["size"] for n, v in report["task_names"].items()} == per_name
    assert report["size"] == sum(per_name.values()) > 0
    text = ok(taskproc("status", "cache", cwd=pipe)).stdout.splitlines()
    assert text[0].endswith(f"; {human_size(report['size'])}")
    assert text[3].split()[-3:] == ["task", "time", "size"]
    rows = {line.split()[0]: line.split() for line in text[4:] if line}
    assert rows["pipe.Square"][-2:] == human_size(per_name["pipe.Square"]).split()
    assert rows["total"][1:6] == ["4", "0", "0", "0", "0"]
    assert rows["total"][-2:] == human_size(report["size"]).split()


def test_status_shows_failures_with_error_and_log(pipe: Path) -> None:
    proc = taskproc("pipe.py", "-o", "cache", "--kwargs", '{"bad": true}', "-e", "lazy", cwd=pipe)
    assert proc.returncode == 1
    text = ok(taskproc("status", "cache", cwd=pipe)).stdout
    assert "1 failed" in text
    assert "pipe.Bad()  ValueError: boom" in text
    (failed,) = status_json(pipe / "cache")["failed"]
    assert failed["error"] == "ValueError: boom"
    assert failed["task"] == "pipe.Bad()"
    assert Path(failed["log"]).read_text() == "about to fail\n"
    assert str(Path(failed["log"]).parent) == failed["folder"]
    assert f"log: {failed['log']}" in text


def test_status_marks_a_failure_old_once_its_task_name_succeeds_later(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text(textwrap.dedent(TYPO))
    assert taskproc("typo.py", "-o", "cache", "-t", "thread", cwd=tmp_path).returncode == 1

    def failure() -> dict[str, Any]:
        (failed,) = status_json(tmp_path / "cache")["failed"]
        return dict(failed)

    first = failure()
    assert first["task"] == "typo.MakeData(n_rows='400')"
    assert first["old_failure"] is False
    error_file = Path(first["folder"]) / "error.txt"
    assert first["failed_at"] == pytest.approx(error_file.stat().st_mtime)

    # Tasks of other names that succeed later leave the failure as it is.
    other = '{"k": 1, "data": false}'
    ok(taskproc("typo.py", "-o", "cache", "-t", "thread", "--kwargs", other, cwd=tmp_path))
    assert failure()["old_failure"] is False
    text = ok(taskproc("status", "cache", cwd=tmp_path)).stdout
    assert ", 1 failed;" in text.splitlines()[0]
    assert "\nfailed:\n" in text and "old failures" not in text

    fixed = '{"n_rows": 400}'
    ok(taskproc("typo.py", "-o", "cache", "-t", "thread", "--kwargs", fixed, cwd=tmp_path))
    assert failure() == {**first, "old_failure": True}
    text = ok(taskproc("status", "cache", cwd=tmp_path)).stdout
    assert ", 1 failed (1 old);" in text.splitlines()[0]
    assert "\nfailed:\n" not in text  # the last run did not fail
    old = text.split("\nold failures (a task of the same name succeeded since):\n")[1]
    assert old.startswith("  typo.MakeData(n_rows='400')  failed ")
    assert "ago): TypeError: 'str' object cannot be interpreted as an integer" in old
    assert f"traceback: {error_file}" in old
    assert f"to remove them: taskproc clear {tmp_path / 'cache'} --failed" in old
    rows = ok(taskproc("ls", "cache", "typo.MakeData", cwd=tmp_path)).stdout.splitlines()
    assert sorted(r.split("  ")[1].strip() for r in rows[1:]) == ["done", "failed (old)"]

    ok(taskproc("clear", "cache", "--failed", cwd=tmp_path))
    assert status_json(tmp_path / "cache")["failed"] == []
    assert "old failures" not in ok(taskproc("status", "cache", cwd=tmp_path)).stdout


SIBLINGS = """
import time
from taskproc import FutureList, Task

class Delay(Task):
    def run_task(self) -> None:
        time.sleep(0.2)

class Part(Task):
    def __init__(self, i: int):
        self.i = i
        self.gate = [Delay()] if i else []  # the siblings finish after Part(0) failed

    def run_task(self) -> int:
        if self.i == 0:
            raise ValueError("part 0 fails")
        return self.i

class Main(Task):
    def __init__(self):
        self.parts = FutureList([Part(i) for i in range(3)], allow_failed=True)

    def run_task(self) -> int:
        return len(self.parts.get_result())
"""


@pytest.mark.parametrize("executor", ["local", "thread", "process"])
def test_a_sibling_that_finished_later_in_the_same_run_leaves_a_failure_current(
    tmp_path: Path, executor: str
) -> None:
    (tmp_path / "sib.py").write_text(textwrap.dedent(SIBLINGS))
    run = taskproc("sib.py", "-o", "cache", "-e", "lazy", "-t", executor, cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    (failed,) = status_json(tmp_path / "cache")["failed"]
    later = [
        Path(e["folder"]) / "result.pkl.gz"
        for e in json.loads(ok(taskproc("ls", "cache", "sib.Part", "--json", cwd=tmp_path)).stdout)
        if e["state"] == "done"
    ]
    assert len(later) == 2  # the premise: both siblings wrote their results after the failure
    assert all(failed["failed_at"] < p.stat().st_mtime for p in later)
    assert failed["old_failure"] is False
    assert "old failures" not in ok(taskproc("status", "cache", cwd=tmp_path)).stdout


def test_status_sees_a_running_task_then_its_abandoned_claim(pipe: Path) -> None:
    marker = pipe / "started"
    run = subprocess.Popen(
        [TASKPROC, "pipe.py", "-o", "cache", "--kwargs", '{"slow": true}'],
        cwd=pipe,
        env={**os.environ, "MARKER": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the slow task never started"
        report = status_json(pipe / "cache")
        (running,) = report["running"]
        assert running["task"] == "pipe.Slow()"
        assert running["claim"]["pid"] == run.pid
        assert running["claim"]["host"] == hostname()
        text = ok(taskproc("status", "cache", cwd=pipe)).stdout
        assert f"pipe.Slow()  on {hostname()} pid {run.pid}" in text
        graph = ["graph", "pipe.py", "-o", "cache", "--kwargs", '{"slow": true}', "--expand"]
        dot = ok(taskproc(*graph, cwd=pipe)).stdout
        assert f'"pipe.Slow()\\nrunning on {hostname()} pid {run.pid}"' in dot

        refused = taskproc("clear", "cache", "pipe.Slow", cwd=pipe)
        assert refused.returncode == 2
        assert "pipe.Slow()" in refused.stderr and "--force" in refused.stderr
        assert (pipe / "cache" / "pipe.Slow").exists()
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # a crash: nothing is cleaned up
        run.wait()
    # Its worker runs on until it notices its runner is gone (within a second): until then
    # the task is still running.
    deadline = time.monotonic() + 10
    report = status_json(pipe / "cache")
    while report["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
        report = status_json(pipe / "cache")
    assert report["running"] == []
    (left,) = report["incomplete"]
    assert left["task"] == "pipe.Slow()" and left["claim"]["pid"] == run.pid
    text = ok(taskproc("status", "cache", cwd=pipe)).stdout
    assert "abandoned" in text and "the next run takes it over" in text


def test_status_sees_stale_downstream_tasks(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    (square0,) = [
        p.parent.name
        for p in (pipe / "cache" / "pipe.Square" / "results").glob("*/args.json")
        if json.loads(p.read_text()) == {"x": 0}
    ]
    ok(taskproc("clear", "cache", f"pipe.Square/{square0[:8]}", cwd=pipe))
    (stale,) = status_json(pipe / "cache")["stale"]
    assert stale["task"] == "pipe.Main(n=3, bad=False, slow=False)"
    assert stale["error"] == f"upstream pipe.Square/{square0} has no result"

    ok(taskproc("pipe.py", "-o", "cache", "--kwargs", '{"n": 1}', cwd=pipe))  # reruns Square(0)
    report = status_json(pipe / "cache")
    assert [s["error"] for s in report["stale"]] == ["an upstream result changed since it ran"]
    assert report["totals"]["done"] == 4  # three squares and Main(n=1)
    mains = json.loads(ok(taskproc("ls", "cache", "pipe.Main", "--json", cwd=pipe)).stdout)
    assert sorted((m["task"], m["state"]) for m in mains) == [
        ("pipe.Main(n=1, bad=False, slow=False)", "done"),
        ("pipe.Main(n=3, bad=False, slow=False)", "stale"),
    ]


CHAIN = """
from taskproc import Task

class Split(Task):
    def __init__(self, frac: float):
        self.frac = frac

    def run_task(self) -> float:
        return self.frac

class Train(Task):
    def __init__(self, frac: float):
        self.split = Split(frac)

    def run_task(self) -> float:
        return 2 * self.split.get_result()

class Main(Task):
    def __init__(self):
        self.models = [Train(f) for f in (0.1, 0.2)]

    def run_task(self) -> float:
        return sum(m.get_result() for m in self.models)
"""


def test_staleness_follows_the_whole_upstream_graph(tmp_path: Path) -> None:
    (tmp_path / "sweep.py").write_text(textwrap.dedent(CHAIN))
    ok(taskproc("sweep.py", "-o", "cache", cwd=tmp_path))
    splits = sorted(p.name for p in (tmp_path / "cache" / "sweep.Split" / "results").iterdir())
    ok(taskproc("clear", "cache", "sweep.Split", cwd=tmp_path))
    report = status_json(tmp_path / "cache")
    assert report["totals"]["done"] == 0 and report["totals"]["stale"] == 3
    stale = {e["task"]: e["error"] for e in report["stale"]}
    assert stale["sweep.Main()"] in {f"upstream sweep.Split/{i} has no result" for i in splits}
    assert stale["sweep.Train(frac=0.1)"].startswith("upstream sweep.Split/")
    text = ok(taskproc("status", "cache", cwd=tmp_path)).stdout
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[4:] if line}
    assert rows["sweep.Main"] == ["0", "1"]  # done, stale
    # ls of one task name reads the names upstream of it too
    mains = json.loads(ok(taskproc("ls", "cache", "sweep.Main", "--json", cwd=tmp_path)).stdout)
    assert [m["state"] for m in mains] == ["stale"]
    # and the graph view, which plans as a run does, agrees
    dot = ok(taskproc("graph", "sweep.py", "-o", "cache", cwd=tmp_path)).stdout
    assert r"sweep.Main()\nan upstream task reruns" in dot


def _stored(name: str, stamp: str, ups: dict[str, str]) -> StoredTask:
    record = Record(stamp, "code", None, stamps_digest(ups.items()), f"{name}/{name[-1]}")
    return StoredTask(
        name, name[-1], f"{name}/{name[-1]}", record, {}, 1.0, None, None, None, "",
        tuple(ups), None, "", "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("a_state", "a_stamp", "b_error", "c_error"),
    [
        (TaskState.DONE, "sa", "", ""),
        (TaskState.FAILED, "sa", "upstream m.A/A failed", "upstream m.A/A failed"),
        (TaskState.RUNNING, "sa", "upstream m.A/A is running", "upstream m.A/A is running"),
        (
            TaskState.INCOMPLETE,
            "sa",
            "upstream m.A/A has no result",
            "upstream m.A/A has no result",
        ),
        (None, "sa", "upstream m.A/A has no result", "upstream m.A/A has no result"),
        (
            TaskState.DONE,
            "new",
            "an upstream result changed since it ran",
            "upstream m.B/B is stale",
        ),
    ],
)
def test_a_done_task_is_stale_when_anything_upstream_is(
    a_state: TaskState | None, a_stamp: str, b_error: str, c_error: str
) -> None:
    """A -> B -> C, all done as far as their own inputs go; A in each state (None: gone)."""
    found = [
        _stored("m.C", "sc", {"m.B/B": "sb"}),
        _stored("m.B", "sb", {"m.A/A": "sa"}),
        *([_stored("m.A", a_stamp, {})] if a_state else []),
    ]
    states = [TaskState.DONE, TaskState.DONE, *([a_state] if a_state else [])]
    entries = [
        TaskEntry(f.task_name, f.task_id, f.location, st, task=f.task_name)
        for f, st in zip(found, states, strict=True)
    ]
    judged = _with_staleness(found, entries, lambda key: None)
    assert [(e.state.value, e.error) for e in judged[:2]] == [
        ("stale" if c_error else "done", c_error),
        ("stale" if b_error else "done", b_error),
    ]


def test_status_shows_task_time_and_the_last_runs_wall_time(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    report = status_json(pipe / "cache")
    last = report["last_run"]
    assert last["host"] == hostname() and last["ran"] == 4 and last["failed"] == 0
    assert 0 < last["wall_time"] == pytest.approx(last["finished"] - last["started"], abs=1e-5)
    text = ok(taskproc("status", "cache", cwd=pipe)).stdout.splitlines()
    assert text[1].startswith(f"last run: {human_time(last['wall_time'])} wall time, 4 tasks run")
    assert "task time" in text[3]


def test_last_run_line_and_task_time_total() -> None:
    assert last_run_line(None) == "last run: none recorded"
    run = RunSummary(1000.0, 1002.1, "h", 7, ran=1, failed=2)
    assert last_run_line(run).startswith("last run: 2.10s wall time, 1 task run, 2 failed; ")
    entries = [
        TaskEntry("m.T", str(i), "f", TaskState.DONE, duration=60.0, size=1) for i in range(2)
    ]
    lines = format_status("/c", entries, run).splitlines()
    assert lines[3].split()[-3:] == ["task", "time", "size"]
    assert lines[-2].split()[-3:] == ["2m00s", "2", "B"]  # the total row sums task time
    assert lines[1] == last_run_line(run)


TOLERANT = """
import os
from taskproc import FutureList, Task

class Part(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        if self.i and not os.environ.get("FIXED"):
            raise ValueError("boom")
        return self.i

class Main(Task):
    def __init__(self):
        self.parts = FutureList([Part(0), Part(1)], allow_failed=True)

    def run_task(self) -> int:
        return len(self.parts.get_result())
"""


def test_status_of_a_result_computed_with_failed_tolerated_inputs(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(TOLERANT))
    assert taskproc("pipe.py", "-o", "cache", "-e", "lazy", cwd=tmp_path).returncode == 1
    report = status_json(tmp_path / "cache")
    # Main ran with Part(1) failed, and is as fresh as it can be while Part(1) has no result.
    assert report["totals"] == {"done": 2, "stale": 0, "running": 0, "failed": 1, "incomplete": 0}

    code = "from taskproc import Graph\nimport pipe\nwith Graph('cache'): pipe.Part(1).run_graph()"
    ok(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "FIXED": "1"}))
    (stale,) = status_json(tmp_path / "cache")["stale"]
    assert stale["task"] == "pipe.Main()"
    assert stale["error"] == "an upstream task that had failed when it ran has a result now"


def test_status_of_an_empty_cache(tmp_path: Path) -> None:
    (tmp_path / "cache" / ".taskproc").mkdir(parents=True)
    (tmp_path / "cache" / ".taskproc" / "cache.json").write_text('{"format": 1}')
    text = ok(taskproc("status", "cache", cwd=tmp_path)).stdout
    assert "0 tasks (nothing has run yet)" in text


# -- ls ------------------------------------------------------------------------------------


def test_ls_lists_task_names_then_tasks(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    names = ok(taskproc("ls", "cache", cwd=pipe)).stdout.splitlines()
    assert names[0].split() == ["task", "name", "tasks", "size", "states"]
    assert [line.split()[:2] for line in names[1:]] == [["pipe.Main", "1"], ["pipe.Square", "3"]]

    rows = ok(taskproc("ls", "cache", "pipe.Square", cwd=pipe)).stdout.splitlines()
    assert rows[0].split() == ["id", "state", "size", "time", "task"]
    assert sorted(r.split()[-1] for r in rows[1:]) == [f"pipe.Square(x={i})" for i in range(3)]
    assert all(len(r.split()[0]) == 32 and r.split()[1] == "done" for r in rows[1:])

    (main,) = json.loads(ok(taskproc("ls", "cache", "pipe.Main", "--json", cwd=pipe)).stdout)
    assert main["state"] == "done"  # its upstream tasks are read even though not listed

    listed = json.loads(ok(taskproc("ls", "cache", "pipe.*", "--json", cwd=pipe)).stdout)
    assert len(listed) == 4
    for entry in listed:
        folder = Path(entry["folder"])
        assert folder == pipe / "cache" / entry["task_name"] / "results" / entry["task_id"]
        assert entry["size"] >= (folder / "result.pkl.gz").stat().st_size
        assert entry["state"] == "done"


# -- clear -----------------------------------------------------------------------------------


def test_clear_matches_the_python_api(pipe: Path) -> None:
    """`clear CACHE NAME` is `clear_all_tasks`; `clear CACHE NAME/ID` is `clear_task`."""
    ok(taskproc("pipe.py", "-o", "cli", cwd=pipe))
    ok(taskproc("pipe.py", "-o", "api", cwd=pipe))
    sys.path.insert(0, str(pipe))
    try:
        import pipe as module  # type: ignore[import-not-found]

        with Graph(pipe / "api"):
            module.Square(1).clear_task()
            square1 = module.Square(1).task_id
        out = ok(taskproc("clear", "cli", f"pipe.Square/{square1}", cwd=pipe)).stdout
        assert out.splitlines()[0].startswith("cleared 1 task (")
        assert relative_paths(pipe / "cli") == relative_paths(pipe / "api")

        with Graph(pipe / "api"):
            module.Main.clear_all_tasks()
        ok(taskproc("clear", "cli", "pipe.Main", cwd=pipe))
        assert relative_paths(pipe / "cli") == relative_paths(pipe / "api")
    finally:
        sys.path.remove(str(pipe))
        sys.modules.pop("pipe", None)

    out = ok(taskproc("clear", "cli", "--yes", cwd=pipe)).stdout
    assert out.splitlines()[0].startswith("cleared 2 tasks (")
    assert os.listdir(pipe / "cli") == [".taskproc"]
    assert "0 tasks" in ok(taskproc("status", "cli", cwd=pipe)).stdout


def test_clear_checks_every_name_before_deleting_anything(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", cwd=pipe))
    proc = taskproc("clear", "cache", "pipe.Square", "pipe.Nope", cwd=pipe)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "taskproc: error: no task named 'pipe.Nope' in "
        f"{pipe / 'cache'} (task names: pipe.Main, pipe.Square); see 'taskproc ls CACHE'"
    ]
    assert (pipe / "cache" / "pipe.Square").is_dir()
    for command in ("clear", "ls"):  # a mistyped name gets the closest one
        proc = taskproc(command, "cache", "pipe.Sqaure", cwd=pipe)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "no task named 'pipe.Sqaure' in " in proc.stderr
        assert "; did you mean 'pipe.Square'? (task names: " in proc.stderr
    proc = taskproc("clear", "cache", "pipe.Square/ffff", cwd=pipe)
    assert proc.returncode == 2 and "no task with this id" in proc.stderr
    ok(taskproc("clear", "cache", "pipe.Sq*", cwd=pipe))
    assert not (pipe / "cache" / "pipe.Square").exists()
    assert (pipe / "cache" / "pipe.Main").exists()


def bad_run(pipe: Path) -> Path:
    """A cache of a run where pipe.Bad() failed and the three squares were done."""
    args = ("pipe.py", "-o", "cache", "-t", "thread", "-e", "lazy", "--kwargs", '{"bad": true}')
    assert taskproc(*args, cwd=pipe).returncode == 1
    return pipe / "cache"


def test_clear_failed_removes_the_failed_tasks_only(pipe: Path) -> None:
    cache = bad_run(pipe)
    before = relative_paths(cache)
    (failed,) = status_json(cache)["failed"]
    bad = Path(failed["folder"])
    assert (bad / "error.txt").exists()

    out = ok(taskproc("clear", "cache", "pipe.Square", "--failed", cwd=pipe)).stdout
    assert out.splitlines() == ["cleared 0 failed tasks (0 B)"]
    assert relative_paths(cache) == before

    # No task name: only the failures go, so nothing is asked (stdin is not a terminal here).
    out = ok(taskproc("clear", "cache", "--failed", cwd=pipe)).stdout.splitlines()
    assert out[0].startswith("cleared 1 failed task (") and len(out) == 2
    assert out[1].split()[0] == f"pipe.Bad/{bad.name}"
    assert out[1].endswith("pipe.Bad()  ValueError: boom")
    assert not bad.exists()
    assert relative_paths(cache) == {
        p for p in before if not p.startswith(f"pipe.Bad/results/{bad.name}")
    }
    report = status_json(cache)
    assert report["failed"] == [] and report["totals"]["done"] == 3


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_clear_failed_keeps_what_a_runner_took_up_meanwhile(tmp_path: Path, kind: str) -> None:
    store: Store = LocalStore(tmp_path / "cache") if kind == "local" else MemoryStore()
    store.ensure()
    locs = {}
    me = new_runner()

    def lease_on(loc: str) -> Lease:
        lease = store.claim(loc, me)
        assert not isinstance(lease, Holder)
        return lease

    for task_id in ("gone", "held", "redone", "again"):
        locs[task_id] = loc = store.locate("m.T", task_id)
        with lease_on(loc) as lease:
            lease.start("{}", [], keep_output=False)
        store.write_error(loc, "Traceback ...\nValueError: no")
    entries = scan(store)
    assert [e.state for e in entries] == [TaskState.FAILED] * 4
    # After the scan, a runner holds one, runs one to a result, and one fails again.
    held = lease_on(locs["held"])
    for task_id in ("redone", "again"):
        with lease_on(locs[task_id]) as lease:
            lease.start("{}", [], keep_output=False)
            if task_id == "redone":
                lease.commit(1, Record("s1", "code", None, "deps"), 0, "")
    store.write_error(locs["again"], "Traceback ...\nValueError: still no")
    try:
        done = clear_failed(store, entries)
    finally:
        held.release()
    assert sorted(e.task_id for e in done.removed) == ["again", "gone"]
    assert sorted(e.task_id for e in done.kept) == ["held", "redone"]
    assert store.task_ids("m.T") == frozenset({"held", "redone"})


def test_clear_dry_run_lists_sizes_and_removes_nothing(pipe: Path) -> None:
    cache = bad_run(pipe)
    before = relative_paths(cache)
    listed = json.loads(ok(taskproc("ls", "cache", "pipe.*", "--json", cwd=pipe)).stdout)
    sizes = {f"{e['task_name']}/{e['task_id']}": e["size"] for e in listed}
    assert len(sizes) == 4 and all(sizes.values())

    # No task name: never asked, even though stdin is not a terminal.
    out = ok(taskproc("clear", "cache", "--dry-run", cwd=pipe)).stdout.splitlines()
    assert out[0] == (
        f"would remove 4 tasks ({human_size(sum(sizes.values()))}) from {cache}; "
        "dry run: nothing was removed"
    )
    rows = {line.split()[0]: line.split()[1:3] for line in out[1:]}
    assert rows == {key: human_size(size).split() for key, size in sizes.items()}

    out = ok(taskproc("clear", "cache", "pipe.Sq*", "--dry-run", cwd=pipe)).stdout.splitlines()
    assert out[0].startswith("would remove 3 tasks (") and len(out) == 4
    assert all(line.split()[0].startswith("pipe.Square/") for line in out[1:])

    out = ok(taskproc("clear", "cache", "--failed", "--dry-run", cwd=pipe)).stdout.splitlines()
    assert out[0].startswith("would remove 1 failed task (") and len(out) == 2
    assert out[1].endswith("pipe.Bad()  ValueError: boom")
    assert relative_paths(cache) == before


def test_clearing_every_task_needs_yes_when_stdin_is_not_a_terminal(pipe: Path) -> None:
    ok(taskproc("pipe.py", "-o", "cache", "-t", "thread", cwd=pipe))
    cache = pipe / "cache"
    before = relative_paths(cache)
    size = human_size(status_json(cache)["size"])
    proc = taskproc("clear", "cache", "--force", cwd=pipe)  # --force answers no question
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"taskproc: error: clear with no TASK_NAME removes all 4 tasks ({size}) of {cache}; "
        "pass --yes to confirm (standard input is not a terminal to ask on)"
    ]
    assert relative_paths(cache) == before

    out = ok(taskproc("clear", "cache", "pipe.Main", cwd=pipe)).stdout  # names: no question
    assert out.startswith("cleared 1 task (")
    out = ok(taskproc("clear", "cache", "-y", cwd=pipe)).stdout
    assert out.startswith("cleared 3 tasks (")
    assert os.listdir(cache) == [".taskproc"]


@pytest.mark.parametrize("answer", ["y", "n"])
def test_clearing_every_task_asks_on_a_terminal(pipe: Path, answer: str) -> None:
    ok(taskproc("pipe.py", "-o", "cache", "-t", "thread", cwd=pipe))
    cache = pipe / "cache"
    before = relative_paths(cache)
    size = human_size(status_json(cache)["size"])
    terminal, stdin = os.openpty()
    proc = subprocess.Popen(
        [TASKPROC, "clear", "cache"],
        cwd=pipe,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(stdin)
    try:
        os.write(terminal, f"{answer}\n".encode())  # typed ahead: the terminal keeps the line
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(terminal)
    assert proc.returncode == 0, err
    assert err == f"Remove all 4 tasks ({size}) from {cache}? [y/N] "
    if answer == "y":
        assert out.startswith("cleared 4 tasks (")
        assert os.listdir(cache) == [".taskproc"]
    else:
        assert out == "nothing was removed\n"
        assert relative_paths(cache) == before


# -- pure helpers -------------------------------------------------------------------------------


def test_stamps_digest_matches_the_planner(pipe: Path) -> None:
    class Up:  # the attributes inputs_digest reads from a task
        def __init__(self, name: str, task_id: str) -> None:
            self.task_name = name
            self._tp = type("S", (), {"task_id": task_id})()

    ups: list[Any] = [Up("m.A", "01"), Up("m.B", "02")]
    ledger = Ledger()
    ledger.stamps.update({ups[0]: "s1", ups[1]: "s2"})
    pairs = [("m.A/01", "s1"), ("m.B/02", "s2")]
    assert stamps_digest(pairs) == inputs_digest(ups, ledger)
    assert stamps_digest([]) == inputs_digest([], ledger)
    # What the records of tasks without upstream tasks hold: the digest of nothing.
    assert stamps_digest([]) == hashlib.blake2b(digest_size=12).hexdigest()
    # A tolerated upstream task that failed (allow_failed) is a key without a stamp to status.
    ledger.failures[ups[1]] = FailedTaskError("m.B", task_name="m.B", task_id="02")
    with_failed = inputs_digest(ups, ledger)
    assert with_failed == stamps_digest([(pairs[0]), ("m.B/02", None)]) != stamps_digest(pairs)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "Traceback (most recent call last):\n  File 'x', line 1\nValueError: boom\n",
            "ValueError: boom",
        ),
        (
            "Traceback (most recent call last):\n  File 'x'\nKeyError: 'a'\nsecond\nthird",
            "KeyError: 'a'",
        ),
        (
            "Traceback (most recent call last):\n  File 'x'\nOSError: a\n\nThe above exception was "
            "the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
            "  File 'y'\nRuntimeError: b\n",
            "RuntimeError: b",
        ),
        ("just a message", "just a message"),
        ("", ""),
    ],
)
def test_first_error_line(text: str, line: str) -> None:
    assert first_error_line(text) == line


def test_human_units() -> None:
    assert [human_size(n) for n in (None, 5, 1234, 5_600_000)] == ["-", "5 B", "1.2 kB", "5.6 MB"]
    assert [human_time(s) for s in (None, 1.234, 42.0, 125.0, 7300.0)] == [
        "-",
        "1.23s",
        "42s",
        "2m05s",
        "2h01m",
    ]


CHAINED = """Traceback (most recent call last):
  File "/p/a.py", line 3, in load
    open(path)
FileNotFoundError: x

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/p/pipe.py", line 14, in run_task
    return explode(self.i)
           ^^^^^^^^^^^^^^^
  File "/p/pipe.py", line 5, in explode
    raise RuntimeError(f"leaf {i} exploded")
RuntimeError: leaf 7 exploded
"""


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        (CHAINED, Origin("/p/pipe.py", 5, "explode", 'raise RuntimeError(f"leaf {i} exploded")')),
        (
            CHAINED.replace('    raise RuntimeError(f"leaf {i} exploded")\n', ""),
            Origin("/p/pipe.py", 5, "explode"),
        ),  # fmt: skip
        (CHAINED.split("\n\nThe above")[0], Origin("/p/a.py", 3, "load", "open(path)")),
        (
            'Traceback (most recent call last):\n  File "<stdin>", line 2, in f\n'
            "    ~~~^^^\nValueError: v\n",
            Origin("<stdin>", 2, "f"),
        ),
        ("PrefixError: prefix command 'sh' exited with status 3", None),
        ("", None),
    ],
)
def test_raised_at_is_the_innermost_frame(text: str, origin: Origin | None) -> None:
    assert raised_at(text) == origin


GLOBBING = """
import glob, os
from taskproc import Task, FutureList

class Count(Task):
    def __init__(self, path: str):
        self.path = path

    def run_task(self) -> int:
        return len(open(self.path).read())

class Main(Task):
    def __init__(self, folder: str = "data"):
        self.counts = FutureList([Count(p) for p in sorted(glob.glob(folder + "/*.csv"))])

    def run_task(self) -> int:
        return sum(self.counts.get_result())
"""


def test_links_match_the_run_that_made_the_result(tmp_path: Path) -> None:
    """A task that keeps its id while its upstream tasks change (it globs a folder): after each
    run its links are that run's, so `status` and `tree -l` show the graph that ran, and the
    task is not called stale right after it succeeded."""
    (tmp_path / "pipe.py").write_text(textwrap.dedent(GLOBBING))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        (data / f"{i}.csv").write_text("x" * (i + 1))
    ok(taskproc("pipe.py", "-o", "cache", cwd=tmp_path))
    for i in range(2, 5):
        (data / f"{i}.csv").write_text("x" * (i + 1))
    (data / "0.csv").unlink()
    ok(taskproc("pipe.py", "-o", "cache", cwd=tmp_path))
    (main,) = (tmp_path / "cache" / "pipe.Main" / "results").iterdir()
    links = sorted(os.readlink(p) for p in (main / "deps").iterdir())
    assert len(links) == 4 and all("/pipe.Count/results/" in link for link in links)
    report = status_json(tmp_path / "cache")
    assert report["totals"]["stale"] == 0, report
