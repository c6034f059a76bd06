"""A run's live record and history (`run.LiveRecord`), and what `status` makes of them."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskproc import Graph, Task
from taskproc.cli._main import main
from taskproc.run import _live as live_module
from taskproc.store import LocalStore, MemoryStore, Store
from taskproc.views import read_history, read_runs, with_eta
from taskproc.views._live import LiveRun, NameProgress

GATE = threading.Event()
STARTED = threading.Semaphore(0)


class Gated(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        STARTED.release()
        assert GATE.wait(30)
        return self.i


class Quick(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i


class Fan(Task):
    def __init__(self, n: int, gated: bool) -> None:
        self.parts = [Gated(i) if gated else Quick(i) for i in range(n)]

    def run_task(self) -> int:
        return sum(p.get_result() for p in self.parts)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.live_writes = 0

    def write_meta(self, key: str, data: bytes, *, replace: bool = True) -> None:
        self.live_writes += key.startswith("runs/")
        super().write_meta(key, data, replace=replace)


def _run(store: Store, n: int, gated: bool) -> None:
    with Graph("unused", store=store), ThreadPoolExecutor(2) as ex:
        Fan(n, gated).run_graph(executor=ex)


def test_a_run_keeps_its_live_record_then_its_history() -> None:
    store = MemoryStore()
    GATE.clear()
    runner = threading.Thread(target=_run, args=(store, 4, True))
    runner.start()
    try:
        for _ in range(2):  # two workers: two tasks run, two wait
            assert STARTED.acquire(timeout=30)
        deadline = time.monotonic() + 5
        while not (runs := read_runs(store)) or runs[0].total("running") < 2:
            assert time.monotonic() < deadline, runs
            time.sleep(0.02)
        (run,) = runs
        gated = {n.task_name: n for n in run.names}["test_serve_live.Gated"]
        assert (gated.to_run, gated.done, gated.left) == (4, 0, 4)
        assert run.in_progress and run.total("to_run") == 5 and run.finished is None
    finally:
        GATE.set()
        runner.join(30)
    assert read_runs(store) == [] and store.list_meta("runs") == []
    (ended,) = read_history(store)
    assert ended.finished is not None and not ended.in_progress
    assert (ended.total("done"), ended.total("left"), ended.total("running")) == (5, 0, 0)
    assert ended.to_json()["wall_time"] > 0


def test_the_live_record_is_written_at_most_once_a_second() -> None:
    store = CountingStore()
    begin = time.monotonic()
    _run(store, 300, gated=False)  # 600 task events
    seconds = time.monotonic() - begin
    assert store.live_writes <= 2 + seconds / live_module.INTERVAL, (store.live_writes, seconds)
    assert len(store.list_meta("history")) == 1


def test_the_history_keeps_the_last_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_module, "HISTORY_KEEP", 2)
    store = MemoryStore()
    keys: list[str] = []
    for n in (1, 2, 3):
        with Graph("unused", store=store), ThreadPoolExecutor(1) as ex:
            Fan(n, False).run_graph(executor=ex)
        keys += [k for k in store.list_meta("history") if k not in keys]
    assert len(keys) == 3
    assert store.list_meta("history") == keys[1:]  # the oldest went
    assert [r.key for r in read_history(store)] == keys[:0:-1]  # newest first


def _record(store: Store, runner: str, host: str, **names: dict[str, int]) -> None:
    now = time.time()
    doc = {"runner": runner, "host": host, "pid": 1, "started": now - 60, "updated": now,
           "finished": None, "task_names": names}  # fmt: skip
    store.write_meta(f"runs/{runner}.json", json.dumps(doc).encode())


def test_status_shows_runs_in_progress_with_what_is_left_and_an_eta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    with Graph(str(cache)), ThreadPoolExecutor(2) as ex:
        Fan(3, False).run_graph(executor=ex)  # task times for the ETA
    store = LocalStore(cache)
    counts = {"to_run": 10, "done": 4, "running": 2}
    _record(store, "live1", "another-host", **{"test_serve_live.Quick": counts})
    store.write_meta("runners/live1.json", b'{"beat": 1}')  # alive: a heartbeat (elsewhere)
    _record(store, "dead1", "another-host", **{"test_serve_live.Quick": counts})  # no beat
    assert main(["status", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "run in progress: 6 of 10 left (4 done, 2 running or queued), ETA " in out
    assert "runner live1 on another-host pid 1" in out
    assert "run killed: 6 of 10 left" in out and "dead1" in out
    assert main(["status", str(cache), "--json"]) == 0
    runs = {r["runner"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    live, dead = runs["live1"], runs["dead1"]
    assert (live["in_progress"], live["total"], live["left"], live["waiting"]) == (True, 10, 6, 4)
    assert live["eta"] is not None and live["eta"] >= 0
    assert dead["in_progress"] is False and dead["eta"] is None
    assert live["task_names"]["test_serve_live.Quick"]["left"] == 6


def _live(names: dict[str, dict[str, int]], elapsed: float = 10.0) -> LiveRun:
    return LiveRun(
        key="runs/r.json",
        runner="r",
        host="h",
        pid=1,
        started=100.0,
        updated=100.0 + elapsed,
        finished=None,
        alive=True,
        names=tuple(NameProgress(name, **c) for name, c in names.items()),
    )


@pytest.mark.parametrize(
    ("names", "means", "eta"),
    [
        # 8 waiting and 2 running of 1 s each; 2 side by side (10 s of task time in 10 s... 1)
        ({"a": {"to_run": 20, "done": 10, "running": 2}}, {"a": 1.0}, 9.0 / 1.0),
        ({"a": {"to_run": 20, "done": 10, "running": 2}}, {"a": 2.0}, 18.0 / 2.0),
        # a name without a recorded time: the run's pace, 10 s for 10 finished, 10 left
        ({"a": {"to_run": 20, "done": 10, "running": 2}}, {}, 10.0),
        ({"a": {"to_run": 20, "running": 2}}, {}, None),  # nothing finished yet
        ({"a": {"to_run": 5, "done": 5}, "b": {"to_run": 2}}, {"a": 1.0, "b": 3.0}, 6.0),
    ],
)
def test_eta(names: dict[str, dict[str, int]], means: dict[str, float], eta: float | None) -> None:
    assert with_eta(_live(names), means).eta == pytest.approx(eta)
