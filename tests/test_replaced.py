"""One code per result, with several runners on one cache (docs/guarantees.md).

A task that loads an upstream result gets the result its run planned for or made (the record
must carry the stamp the run's ledger holds for it), never another runner's written meanwhile:

- with detection on, a result of other code stops the task that would load it, in one line;
- a result of the same code (another runner recomputed it) sends the run back to planning;
- with detection off, a result of other code is used, with the `CodeChangedWarning`.

The in-process tests replace the result from inside the downstream task (deterministic, on
thread and process pools); the two-runner test runs two ``taskproc`` commands of different code
on one cache, ordered by files. gc keeps the code records a live runner uses.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Project

from taskproc import CodeChangedWarning, FailedTaskError, Graph, RunHooks, Task, TaskprocError
from taskproc.store import (
    Heartbeat,
    Holder,
    LocalStore,
    Record,
    Store,
    code_identities,
    hostname,
    live_codes,
    new_runner,
    read_record,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

TASKPROC = str(Path(sys.executable).with_name("taskproc"))
OTHER_CODE = "0" * 32


def replace_result(store: Store, loc: str, value: object, code_id: str | None = None) -> None:
    """Do what another runner does: commit a new result of the task at `loc` (of the same code
    as the stored one, or of `code_id`)."""
    record = read_record(store, loc)
    assert record is not None
    new = Record(secrets.token_hex(6), code_id or record.code_id, None, record.inputs, record.task)
    got = store.claim(loc, Holder("other", "elsewhere", 1))
    assert not isinstance(got, Holder)
    with got as lease:
        lease.commit(value, new, 1, "{}")


class Up(Task):
    def run_task(self) -> str:
        return "A"


class Down(Task):
    """Replaces its upstream result once (a marker file says it did), then loads it."""

    def __init__(self, marker: str, code_id: str | None) -> None:
        self.up = Up()
        self.marker = marker
        self.code_id = code_id

    def run_task(self) -> str:
        if not self.marker or not os.path.exists(self.marker):  # "": every time
            if self.marker:
                open(self.marker, "w").close()
            replace_result(self.up._tp.store, self.up._tp_loc(), "B", self.code_id)
        return "down " + self.up.get_result()


@pytest.fixture(params=["thread", "process"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    pool = ThreadPoolExecutor(2) if request.param == "thread" else ProcessPoolExecutor(2)
    with pool:
        yield pool


def planned(cache: Path, executor: Executor, code_id: str | None) -> Down:
    """`Down`, whose upstream result is stored before its run, so that the run loads it (a
    result the runner's own process computed is used from memory)."""
    with Graph(cache):
        Up().run_graph(executor=executor)
        return Down(str(cache.parent / "marker"), code_id)


def test_a_result_of_other_code_written_meanwhile_stops_the_task_that_would_load_it(
    tmp_path: Path, executor: Executor
) -> None:
    down = planned(tmp_path / "cache", executor, OTHER_CODE)
    with pytest.raises(ExceptionGroup) as raised:
        down.run_graph(executor=executor, detect_source_change=True)
    (error,) = raised.value.exceptions
    assert isinstance(error, FailedTaskError)
    assert error.task == repr(down)
    assert error.error_type == "ResultReplaced"
    assert error.error_message.startswith(
        f"its upstream result {Up.task_name}() was replaced while this run used it, by another "
        "runner's result computed by other code"
    )


@pytest.mark.s3
@pytest.mark.parametrize("code_id", [OTHER_CODE, None])
def test_on_a_bucket_too(bucket_store: Store, tmp_path: Path, code_id: str | None) -> None:
    """The same on a cache in a bucket (`load` told the stamp there too), on a thread pool."""
    with ThreadPoolExecutor(2) as pool, Graph(bucket_store.root, store=bucket_store):
        Up().run_graph(executor=pool)
        down = Down(str(tmp_path / "marker"), code_id)
        if code_id is None:
            assert down.run_graph(executor=pool, detect_source_change=True)[0] == "down B"
            return
        with pytest.raises(ExceptionGroup) as raised:
            down.run_graph(executor=pool, detect_source_change=True)
    (error,) = raised.value.exceptions
    assert error.error_type == "ResultReplaced"


def test_a_result_of_the_same_code_written_meanwhile_is_planned_for_again(
    tmp_path: Path, executor: Executor
) -> None:
    down = planned(tmp_path / "cache", executor, None)
    result, stats = down.run_graph(executor=executor, detect_source_change=True)
    assert result == "down B"  # planned again: the stored result, the one now recorded
    assert stats["stats"] == {Up.task_name: 0, Down.task_name: 1}
    with Graph(tmp_path / "cache"):
        assert Down(str(tmp_path / "marker"), None).run_graph(executor=executor)[1]["executed"] == 0


def test_with_detection_off_a_result_of_other_code_written_meanwhile_is_warned_about(
    tmp_path: Path, executor: Executor
) -> None:
    down = planned(tmp_path / "cache", executor, OTHER_CODE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _ = down.run_graph(executor=executor, detect_source_change=False)
    assert result == "down B"
    (warning,) = [w for w in caught if issubclass(w.category, CodeChangedWarning)]
    assert str(warning.message).startswith(
        f"1 cached result of {Up.task_name} (written by another runner while this run went on) "
        "was computed by code other than the code now"
    )


def test_runners_that_keep_replacing_each_others_results_stop_saying_so(
    tmp_path: Path, executor: Executor
) -> None:
    """The same code over inputs that differ on two machines would replace each other's
    results for ever: the run plans again a few times, then stops."""
    with Graph(tmp_path / "cache"):
        Up().run_graph(executor=executor)
        down = Down("", None)
    with pytest.raises(TaskprocError, match=r"kept turning out corrupt, or being replaced by"):
        down.run_graph(executor=executor, detect_source_change=True)


class ReplaceRoot(RunHooks):
    """Replaces the root's result as soon as it is done, before the run loads it."""

    def __init__(self, root: Task, code_id: str) -> None:
        self.root = root
        self.code_id = code_id

    def run_started(self, plan: dict[str, tuple[int, int]]) -> None:
        pass

    def task_started(self, task_name: str) -> None:
        pass

    def task_finished(self, task_name: str, state: str) -> None:
        if task_name == Up.task_name:
            replace_result(self.root._tp.store, self.root._tp_loc(), "B", self.code_id)

    def run_finished(self) -> None:
        pass


@pytest.mark.parametrize("detect", [True, False])
def test_the_root_result_replaced_before_it_is_loaded(tmp_path: Path, detect: bool) -> None:
    with ProcessPoolExecutor(1) as pool, Graph(tmp_path / "cache"):  # the root is loaded
        root = Up()
        hook = ReplaceRoot(root, OTHER_CODE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if detect:
                with pytest.raises(ExceptionGroup) as raised:
                    root.run_graph(executor=pool, detect_source_change=True, hooks=[hook])
                (error,) = raised.value.exceptions
                assert error.error_message.startswith("its result was replaced while this run")
                return
            result, _ = root.run_graph(executor=pool, hooks=[hook])
    assert result == "B"
    assert any(issubclass(w.category, CodeChangedWarning) for w in caught)


# -- two runners of different code on one cache --------------------------------------------------

TWO = """
import os
import time
from pathlib import Path

from taskproc import Task

VALUE = "{value}"


class T(Task):
    def run_task(self) -> str:
        return VALUE


class D(Task):
    def __init__(self) -> None:
        self.t = T()

    def run_task(self) -> str:
        Path(os.environ["WAITING"]).touch()
        deadline = time.monotonic() + 120
        while not Path(os.environ["GO"]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the test says when to go on: a file, not a sleep
        return self.t.get_result()


class Main(Task):
    def __init__(self) -> None:
        self.t = T()
        self.d = D()

    def run_task(self) -> str:
        print(f"RESULT {{self.t.get_result()}}{{self.d.get_result()}}")
        return "done"
"""


def test_two_runners_of_different_code_never_use_each_others_results(tmp_path: Path) -> None:
    """Runner A (T returns "A") has computed T and its D is at work in a process worker when
    runner B (T edited to return "B") finds A's T stale by code and computes its own over it.
    When A's D loads T, it finds B's result: A stops that task in one line, B finishes with
    its own code's results, and a rerun of A recomputes T with A's code."""
    cache = tmp_path / "cache"
    runners = {}
    for name, value in (("a", "A"), ("b", "B")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pipe.py").write_text(TWO.format(value=value))
        env = {
            **os.environ,
            "WAITING": str(tmp_path / f"{name}-waiting"),
            "GO": str(tmp_path / f"{name}-go"),
            "TASKPROC_POLL_INTERVAL": "0.05",
        }
        runners[name] = (tmp_path / name, env)
    (tmp_path / "b-go").touch()  # B's D goes on at once, when it runs

    def start(name: str) -> subprocess.Popen[str]:
        folder, env = runners[name]
        command = [TASKPROC, "pipe.py", "-o", str(cache), "-t", "process", "-n", "2"]
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def wait_for(condition: object, what: str, procs: list[subprocess.Popen[str]]) -> None:
        deadline = time.monotonic() + 120
        while not condition():  # type: ignore[operator]
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise AssertionError(f"waiting for {what}: {[p.communicate() for p in procs]}")
            time.sleep(0.02)

    t_loc = LocalStore(cache).locate("pipe.T", _t_id())
    a = start("a")
    b = None
    try:
        wait_for(lambda: (tmp_path / "a-waiting").exists(), "A's D to start", [a])
        a_code = read_record(LocalStore(cache), t_loc).code_id  # type: ignore[union-attr]
        b = start("b")
        wait_for(
            lambda: (
                (r := read_record(LocalStore(cache), t_loc)) is not None and r.code_id != a_code
            ),
            "B to write its T over A's",
            [a, b],
        )
        (tmp_path / "a-go").touch()
        a_out, a_err = a.communicate(timeout=120)
        b_out, b_err = b.communicate(timeout=120)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert a.returncode == 1, a_err
    assert (
        "FAILED pipe.D() failed: ResultReplaced: its upstream result pipe.T() was replaced while "
        "this run used it, by another runner's result computed by other code"
    ) in a_err
    assert "RESULT" not in a_out
    assert b.returncode == 0, b_err
    assert "RESULT BB" in b_out
    # No ping-pong: A, run again, recomputes T with its own code, once.
    again = start("a")
    (tmp_path / "a-go").touch()
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "RESULT AA" in out and "taskproc: 3 done, 0 cached" in err


def _t_id() -> str:
    """The id of a task without arguments."""
    with Graph("unused"):
        return Up()._tp.task_id


# -- gc and the code records of live runners ------------------------------------------------------


def test_a_heartbeat_names_the_codes_its_runner_uses(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "cache")
    store.ensure()
    me = new_runner()
    beat = Heartbeat(store, me, 3600)
    beat.start()
    try:
        beat.uses_code("c0de")  # written at once, not at the next beat
        assert live_codes(store, hostname()) == {"c0de"}
    finally:
        beat.stop()
    assert live_codes(store, hostname()) == frozenset()
    dead = {"runner": "x", "host": hostname(), "pid": 2**22 + 7, "beat": 1, "codes": ["dead"]}
    store.write_meta("runners/x.json", json.dumps(dead).encode())
    assert live_codes(store, hostname()) == frozenset()  # its process is gone


GATED = """
import os
import time
from pathlib import Path

from taskproc import Task

FACTOR = 2


class Slow(Task):
    def run_task(self) -> int:
        Path("started").touch()
        deadline = time.monotonic() + 120
        while not Path("go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return 21 * FACTOR


class Main(Task):
    def __init__(self, gate: bool = True) -> None:
        self.slow = Slow() if gate else None

    def run_task(self) -> int:
        return self.slow.get_result() if self.slow else 0
"""


def test_gc_keeps_the_code_records_of_a_live_runner(project: Project) -> None:
    project.write(pipe=GATED, other="from taskproc import Task\n\nclass Main(Task):\n    pass\n")
    cache = project.root / "cache"
    command = [TASKPROC, "pipe.py", "-o", "cache", "-t", "thread", "--dont-show-progress"]
    runner = subprocess.Popen(
        command, cwd=project.root, env=project.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (project.root / "started").exists():
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
            time.sleep(0.01)
        codes = code_identities(LocalStore(cache))
        assert len(codes) == 1  # Slow's (Main has not started): no result of it is stored yet
        project.cli("gc", "other.py", "-o", "cache")
        assert code_identities(LocalStore(cache)) == codes  # the live runner uses them
        (project.root / "go").touch()
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, err
    project.edit("pipe", "FACTOR = 2", "FACTOR = 3")
    why = project.cli("why", "pipe.py", "-o", "cache").stdout
    assert "its source code changed: constant pipe.FACTOR changed" in why
    assert "-FACTOR = 2" in why and "+FACTOR = 3" in why  # the stored code, not a copied cache
