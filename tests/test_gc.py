"""`taskproc gc` and `taskproc.gc_cache`: delete what the given pipelines' graphs do not reach,
never a running task's files, safely while other runners use the cache, and interruptibly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Project

from taskproc import Graph, InlineExecutor, Task, gc_cache
from taskproc.store import Holder, LocalStore, code_identities, new_runner


class Load(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> list[int]:
        return list(range(self.i * 100))


class PipeA(Task):
    def __init__(self, n: int) -> None:
        self.loads = [Load(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(len(load.get_result()) for load in self.loads)


class PipeB(Task):
    def __init__(self, lo: int, hi: int) -> None:
        self.loads = [Load(i) for i in range(lo, hi)]

    def run_task(self) -> int:
        return sum(len(load.get_result()) for load in self.loads)


def stored(cache: Path) -> set[str]:
    """Every task folder of the cache, as ``task_name/i`` for Load(i) and the name otherwise."""
    store = LocalStore(cache)
    out = set()
    for name in store.task_names():
        for task_id in store.task_ids(name) or ():
            args = json.loads(store.read_args(store.locate(name, task_id)) or "{}")
            out.add(f"{name}/{args['i']}" if "i" in args else name)
    return out


def fill(cache: Path) -> tuple[PipeA, PipeB]:
    with Graph(cache):
        a, b = PipeA(3), PipeB(2, 6)
    a.run_graph(executor=InlineExecutor())
    b.run_graph(executor=InlineExecutor())
    return a, b


A_KEYS = {"test_gc.Load/0", "test_gc.Load/1", "test_gc.Load/2", "test_gc.PipeA"}


def test_gc_keeps_what_the_given_pipeline_reaches_and_deletes_the_rest(cache: Path) -> None:
    a, b = fill(cache)
    assert stored(cache) == A_KEYS | {f"test_gc.Load/{i}" for i in (3, 4, 5)} | {"test_gc.PipeB"}
    sizes = {
        e.task_id: e.size
        for e in LocalStore(cache).scan(["test_gc.Load", "test_gc.PipeB"], with_size=True)
    }
    with Graph(cache):
        keep = PipeA(3)
    dry = gc_cache(keep, dry_run=True)
    assert stored(cache) == A_KEYS | {f"test_gc.Load/{i}" for i in (3, 4, 5)} | {"test_gc.PipeB"}
    report = gc_cache(keep)
    assert stored(cache) == A_KEYS
    names = {n.task_name: n for n in report.names}
    assert (names["test_gc.Load"].deleted, names["test_gc.Load"].kept) == (3, 3)
    assert (names["test_gc.PipeB"].deleted, names["test_gc.PipeA"].kept) == (1, 1)
    deleted = {k.rpartition("/")[2] for n in report.names for k in n.keys}
    assert report.bytes == sum(sizes[i] or 0 for i in deleted) > 0
    assert (dry.deleted, dry.bytes) == (report.deleted, report.bytes)
    # What is kept loads, and a rerun of the kept pipeline runs nothing.
    with Graph(cache):
        assert [Load(i).get_result()[-1:] for i in range(3)] == [[], [99], [199]]
        _, stats = PipeA(3).run_graph(executor=InlineExecutor())
    assert stats["executed"] == 0
    # Giving both pipelines keeps everything left.
    with Graph(cache):
        assert gc_cache(PipeA(3), PipeB(0, 1)).deleted == 0


def test_gc_deletes_code_identities_nothing_uses(cache: Path) -> None:
    a, b = fill(cache)
    store = LocalStore(cache)
    assert len(code_identities(store)) == 3  # Load, PipeA, PipeB
    with Graph(cache):
        report = gc_cache(PipeA(3))
    assert report.codes_deleted == 1 and len(code_identities(store)) == 2


def test_gc_keeps_recent_tasks_when_asked(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(cache)
    with Graph(cache):
        keep = PipeA(3)
    report = gc_cache(keep, keep_recent=1)
    assert report.deleted == 0 and sum(n.recent for n in report.names) == 4
    later = time.time() + 2 * 86400
    monkeypatch.setattr("taskproc.upkeep._gc.time.time", lambda: later)
    assert gc_cache(keep, keep_recent=1).deleted == 4


def test_gc_never_deletes_a_task_a_live_runner_holds(cache: Path) -> None:
    fill(cache)
    store = LocalStore(cache)
    runner = new_runner()  # alive: this process, with a heartbeat
    store.write_meta(f"runners/{runner.runner}.json", b"{}")
    with Graph(cache):
        held = PipeB(2, 6)
        keep = PipeA(3)
    lease = store.claim(held._tp_loc(), runner)
    assert not isinstance(lease, Holder)
    report = gc_cache(keep)
    assert {n.task_name: n.running for n in report.names}["test_gc.PipeB"] == 1
    assert "test_gc.PipeB" in stored(cache)
    store.delete_meta(f"runners/{runner.runner}.json")  # the runner is gone: its claim too
    assert gc_cache(keep).deleted == 1 and "test_gc.PipeB" not in stored(cache)


def test_an_interrupted_gc_leaves_no_half_deleted_task(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = fill(cache)
    with Graph(cache):
        keep = PipeA(3)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # Interrupted before a task's folder moves out: that task stays whole, claim released.
    monkeypatch.setattr(LocalStore, "_remove", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gc_cache(keep)
    monkeypatch.undo()
    assert not list(cache.glob("*/results/*/claim"))
    with Graph(cache):
        _, stats = PipeB(2, 6).run_graph(executor=InlineExecutor())
    assert stats["executed"] == 0
    # Interrupted after it moved out, while it is being removed: gone from its place whole.
    monkeypatch.setattr("taskproc.store._local._rmtree", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gc_cache(keep)
    monkeypatch.undo()
    assert len(stored(cache)) == len(A_KEYS) + 3  # one task of PipeB's gone, whole
    assert list((cache / ".taskproc" / "trash").iterdir())
    with Graph(cache):
        result, stats = PipeB(2, 6).run_graph(executor=InlineExecutor())
    assert result == 200 + 300 + 400 + 500 and stats["executed"] == 2  # that one, and PipeB
    gc_cache(keep)
    assert not list((cache / ".taskproc" / "trash").iterdir())


# -- two pipelines on the command line, with other runners at work ----------------------------

SHARED = """
import os, time
from taskproc import Task

class Load(Task):
    def __init__(self, i: int):
        self.i = i

    def run_task(self) -> int:
        return self.i * 10

class Gate(Task):
    \"\"\"Says it started, then waits until the test lets it finish.\"\"\"

    def __init__(self, name: str):
        self.name = name

    def run_task(self) -> str:
        open(f"started-{self.name}", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(f"go-{self.name}") and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.name
"""

PIPELINE = """
from taskproc import Task
from shared import Load, Gate

class {cls}(Task):
    def __init__(self, lo: int, hi: int):
        self.loads = [Load(i) for i in range(lo, hi)]

    def run_task(self) -> int:
        return sum(x.get_result() for x in self.loads)

class Main(Task):
    def __init__(self, gate: str = ""):
        self.part = {cls}({lo}, {hi})
        self.gate = Gate(gate) if gate else None

    def run_task(self) -> int:
        value = self.part.get_result()
        print("result", value, self.gate.get_result() if self.gate else "")
        return value
"""


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until `path` exists (the runner reached its gate), or the runner ended."""
    deadline = time.monotonic() + 60
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"runner ended or stuck: {proc.communicate()}")
        time.sleep(0.01)


def test_gc_of_two_pipelines_given_one_while_other_runners_run(project: Project) -> None:
    project.write(
        shared=SHARED,
        a=PIPELINE.format(cls="Train", lo=0, hi=3),
        b=PIPELINE.format(cls="Report", lo=2, hi=6),
    )
    for file in ("a.py", "b.py"):
        project.cli(file, "-o", "cache", "--dont-show-progress", "-t", "thread")
    cache = project.root / "cache"
    before = stored(cache)
    assert before == {
        *(f"shared.Load/{i}" for i in range(6)),
        "a.Train",
        "a.Main",
        "b.Report",
        "b.Main",
    }
    taskproc = str(Path(sys.executable).with_name("taskproc"))
    run = [taskproc, "-o", "cache", "--dont-show-progress", "-t", "thread"]
    runners: list[subprocess.Popen[str]] = []
    try:
        # A second runner runs the kept pipeline (a new gate task of it is running), and a
        # third runs the other pipeline (its gate task running, the rest cached).
        for file, gate in (("a.py", "one"), ("b.py", "two")):
            proc = subprocess.Popen(
                [*run, file, "--kwargs", json.dumps({"gate": gate})],
                cwd=project.root,
                env=project.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            runners.append(proc)
            wait_for(project.root / f"started-{gate}", proc)
        out = project.cli("gc", "a.py", "-o", "cache", "--kwargs", '{"gate": "one"}').stdout
        lines = out.splitlines()
        # Deleted: b's own tasks (Report, Main, Load 3-5), and a.Main of the first runs,
        # whose arguments were other (no gate).
        assert lines[0].startswith("deleted 6 tasks (")
        for name in ("a.Main", "b.Main", "b.Report"):
            assert any(line.startswith(f"  {name}: deleted 1 (") for line in lines), name
        assert any(
            line.startswith("  shared.Load: deleted 3 (") and line.endswith("), 3 kept")
            for line in lines
        )
        assert "  shared.Gate: 1 kept, 1 running, kept" in lines
        # Exactly the other pipeline's unreachable results are gone; its running task is not.
        assert stored(cache) == {*(f"shared.Load/{i}" for i in range(3)), "a.Train", "shared.Gate"}
        assert len(LocalStore(cache).task_ids("shared.Gate") or ()) == 2
        for gate in ("one", "two"):
            (project.root / f"go-{gate}").touch()
        outputs = [proc.communicate(timeout=120) for proc in runners]
    finally:
        for proc in runners:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert [proc.returncode for proc in runners] == [0, 0], outputs
    assert "result 30 one" in outputs[0][0]
    assert "result 140 two" in outputs[1][0]  # what gc deleted under it, it computed again
    # The kept pipeline is whole: nothing of it would run.
    why = project.cli(
        "why", "a.py", "-o", "cache", "--kwargs", '{"gate": "one"}', "--dont-force-entrypoint"
    )
    assert why.stdout.startswith("nothing would run")


def test_gc_command_line_checks(project: Project) -> None:
    project.write(
        shared=SHARED,
        a=PIPELINE.format(cls="Train", lo=0, hi=2),
        b=PIPELINE.format(cls="Report", lo=1, hi=3),
    )
    project.cli("a.py", "-o", "cache", "--dont-show-progress", "-t", "local")
    project.cli("b.py", "-o", "cache", "--dont-show-progress", "-t", "local")
    dry = json.loads(project.cli("gc", "a.py", "-o", "cache", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["deleted"] == 3
    assert dry["task_names"]["shared.Load"]["keys"]
    assert project.cli("gc", "a.py", "b.py", "-o", "cache").stdout.startswith("deleted 0 tasks")
    both = project.cli("gc", "a.py", "b.py", "-o", "cache", "--kwargs", "{}", "--kwargs", "{}")
    assert both.stdout.startswith("deleted 0 tasks")
    bad = project.cli("gc", "a.py", "-o", "nowhere", check=False)
    assert bad.returncode == 2 and "nowhere: no such folder" in bad.stderr
    many = project.cli("gc", "a.py", "b.py", "-o", "cache", *("--kwargs", "{}") * 3, check=False)
    assert many.returncode == 2 and "--kwargs given 3 times for 2 files" in many.stderr
    assert project.cli("gc", "a.py", "-o", "cache").stdout.startswith("deleted 3 tasks")
