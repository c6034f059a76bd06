"""dask.distributed: ``run_graph(executor=client.get_executor(pure=False))`` and the
`taskproc.dask_executor` helper, on a real LocalCluster on loopback and on a scheduler and
workers started as separate processes with the ``dask`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from cluster_tasks import Fails, Gather, Rendezvous, Square, max_overlap, read_spans

from taskproc import DaskExecutor, FailedTaskError, Graph, dask_executor

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.cluster

ExecutorFactory = Callable[[], AbstractContextManager[Executor]]


@pytest.fixture(scope="module")
def local_cluster(distributed_module: Any) -> Iterator[Any]:
    """One LocalCluster (2 single-threaded worker processes) for this module's tests."""
    with distributed_module.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


@pytest.fixture(params=["client.get_executor", "dask_executor"])
def make_executor(request: pytest.FixtureRequest, local_cluster: Any) -> ExecutorFactory:
    """The two ways to run on the cluster: dask's own executor, and taskproc's helper."""
    import distributed

    @contextmanager
    def plain() -> Iterator[Executor]:
        with distributed.Client(local_cluster) as client:  # type: ignore[no-untyped-call]
            executor: Executor = client.get_executor(pure=False)
            yield executor

    def helper() -> AbstractContextManager[Executor]:
        return dask_executor(local_cluster.scheduler_address)

    return plain if request.param == "client.get_executor" else helper


def worker_pids(events: Path) -> set[int]:
    return {s.pid for s in read_spans(events)}


def test_graph_runs_on_dask_with_labels_limits_and_cache(
    make_executor: ExecutorFactory, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    barrier_dir = str(tmp_path / "barrier")
    with Graph(str(tmp_path / "cache")):
        meet = [Rendezvous(str(events), i, barrier_dir, 2) for i in range(2)]
        squares = [Square(str(events), x) for x in range(6)]
        root = Gather([*meet, *squares])
        with make_executor() as executor:
            result, stats = root.run_graph(executor=executor, rate_limits={"light": 1})
    assert result == [0, 1, 0, 1, 4, 9, 16, 25]
    assert stats["stats"] == {Rendezvous.task_name: 2, Square.task_name: 6, Gather.task_name: 1}
    spans = read_spans(events)
    assert os.getpid() not in worker_pids(events)  # ran on the dask workers
    assert max_overlap([s for s in spans if "Rendezvous" in s.task]) == 2  # both workers
    assert max_overlap([s for s in spans if "Square" in s.task]) == 1  # the 'light' limit
    # Output is captured in the task folder, as on a process pool.
    outputs = (tmp_path / "cache").glob("cluster_tasks.Square/results/*/stdout.txt")
    assert sorted(p.read_text().strip() for p in outputs) == [f"squaring {x}" for x in range(6)]

    # Cached: a rerun on dask runs nothing.
    with Graph(str(tmp_path / "cache")):
        root = Gather(
            [
                *(Rendezvous(str(events), i, barrier_dir, 2) for i in range(2)),
                *(Square(str(events), x) for x in range(6)),
            ]
        )
        with make_executor() as executor:
            again, stats = root.run_graph(executor=executor)
    assert again == result and sum(stats["stats"].values()) == 0
    assert len(read_spans(events)) == 8


@pytest.mark.parametrize("error_handling", ["eager", "lazy"])
def test_failures_on_dask_are_reported_as_on_a_process_pool(
    make_executor: ExecutorFactory, tmp_path: Path, error_handling: str
) -> None:
    events = tmp_path / "events"
    with Graph(str(tmp_path / "cache")):
        ok = Square(str(events), 3)
        bad = Fails("D4SK")
        root = Gather([bad, ok])
        with make_executor() as executor, pytest.raises(BaseExceptionGroup) as info:
            root.run_graph(executor=executor, error_handling=error_handling)  # type: ignore[arg-type]
    errors = info.value.exceptions
    assert len(errors) == 1 and isinstance(errors[0], FailedTaskError)
    text = str(errors[0])
    assert "boom D4SK" in text and "run_task" in text and "stderr D4SK" in text
    assert errors[0].task_id and Path(errors[0].task_dir).is_dir()
    assert "stdout D4SK" in (Path(errors[0].task_dir) / "stdout.txt").read_text()
    if error_handling == "lazy":  # what does not depend on the failure still runs
        assert [s.task for s in read_spans(events)] == [repr(ok)]


def test_helper_starts_and_closes_its_own_local_cluster(
    distributed_module: Any, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    with dask_executor(n_workers=1) as executor:
        assert isinstance(executor, DaskExecutor)
        assert executor.scheduler_address.startswith("tcp://127.0.0.1:")
        with Graph(str(tmp_path / "cache")):
            result, _ = Gather([Square(str(events), 2)]).run_graph(executor=executor)
        client = executor.client
    assert result == [4]
    assert client.status == "closed"


def local_directory() -> str:
    """Where the dask worker running this keeps its scratch files."""
    import distributed

    return str(distributed.get_worker().local_directory)


def test_helper_keeps_dask_scratch_space_in_a_folder_of_its_own(
    distributed_module: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``dask-scratch-space`` left in the temporary folder: the cluster's scratch space is a
    folder of the executor's, removed when it shuts down."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))  # the worker processes
    monkeypatch.setattr("tempfile.tempdir", str(temporary))  # this one (the scheduler)
    with dask_executor(n_workers=1) as executor:
        scratch = Path(executor.submit(local_directory).result())
        assert scratch.is_dir()
        assert scratch.relative_to(temporary).parts[0].startswith("taskproc-dask-")
    assert not list(temporary.iterdir())


def wait_for_file(path: str, marker: str) -> None:
    """Block until `path` exists (at most 60 s), then write `marker`."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(marker).touch()


def test_helper_cancels_instead_of_waiting_when_the_block_raises(
    distributed_module: Any, tmp_path: Path
) -> None:
    release, finished = tmp_path / "release", tmp_path / "finished"
    with pytest.raises(KeyboardInterrupt), dask_executor(n_workers=1) as executor:
        future = executor.submit(wait_for_file, str(release), str(finished))
        client = executor.client
        raise KeyboardInterrupt
    release.touch()  # (a waiting shutdown would have blocked until here: a deadlock)
    assert not finished.exists()  # the with block ended before the call did
    assert future.cancelled() and client.status == "closed"


def test_helper_passes_keywords_to_the_function(local_cluster: Any) -> None:
    with dask_executor(local_cluster.scheduler_address) as executor:
        # dask's own ClientExecutor would take `key` and `priority` as dask options.
        assert executor.submit(dict, key=1, priority=2).result() == {"key": 1, "priority": 2}
        # pure=False: two identical submissions run twice.
        a, b = executor.submit(os.urandom, 8), executor.submit(os.urandom, 8)
        assert a.result() != b.result()


def test_helper_without_dask_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ImportError, match=r"pip install 'taskproc\[dask\]'"):
        dask_executor()


def test_helper_rejects_conflicting_arguments(distributed_module: Any) -> None:
    with pytest.raises(ValueError, match="give one of"):
        DaskExecutor("tcp://127.0.0.1:1", client=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_workers"):
        DaskExecutor("tcp://127.0.0.1:1", n_workers=2)


@pytest.fixture
def dask_cli_cluster(
    distributed_module: Any, tmp_path: Path, subprocess_env: dict[str, str]
) -> Iterator[Path]:
    """A scheduler and two workers started with the `dask` command; yields the scheduler file."""
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists():
        pytest.skip(f"no `dask` command next to {sys.executable}")
    scheduler_file = tmp_path / "scheduler.json"
    commands = {
        "scheduler": ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0"],
        "worker": ["--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for kind, options in commands.items():
            with open(tmp_path / f"dask-{kind}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [str(dask), kind, "--scheduler-file", str(scheduler_file), *options],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=subprocess_env,
                        cwd=tmp_path,
                    )
                )
        client = distributed_module.Client(scheduler_file=str(scheduler_file), timeout=60)
        with client:
            client.wait_for_workers(2, timeout=60)
            yield scheduler_file
            client.shutdown()  # stops the scheduler and the workers
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_graph_runs_on_scheduler_and_workers_started_with_the_dask_command(
    dask_cli_cluster: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    barrier_dir = str(tmp_path / "barrier")
    with Graph(str(tmp_path / "cache")):
        root = Gather(
            [
                *(Rendezvous(str(events), i, barrier_dir, 2) for i in range(2)),
                Square(str(events), 5),
            ]
        )
        with dask_executor(scheduler_file=dask_cli_cluster) as executor:
            result, stats = root.run_graph(executor=executor)
        address = str(json.loads(dask_cli_cluster.read_text())["address"])
        with pytest.raises(BaseExceptionGroup) as info, dask_executor(address) as ex:
            Fails("CL1").run_graph(executor=ex)
    assert result == [0, 1, 25]
    assert stats["stats"][Rendezvous.task_name] == 2
    assert len(worker_pids(events)) == 2 and os.getpid() not in worker_pids(events)
    (error,) = info.value.exceptions
    assert isinstance(error, FailedTaskError) and "boom CL1" in str(error)


PIPELINE = """
from taskproc import FutureList, Task

class Square(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        return self.i * self.i

class Main(Task):
    def __init__(self) -> None:
        self.squares = FutureList([Square(i) for i in range(6)])

    def run_task(self) -> int:
        total = sum(self.squares.get_result())
        print(f"total {total}")
        return total
"""


@pytest.mark.parametrize("where", ["local", "scheduler"])
def test_command_line_runs_on_dask(
    distributed_module: Any, dask_cli_cluster: Path, tmp_path: Path, where: str
) -> None:
    (tmp_path / "squares.py").write_text(PIPELINE)
    cmd = [
        sys.executable,
        "-m",
        "taskproc",
        "squares.py",
        "-o",
        "cache",
        "-t",
        "dask",
        "-n",
        "1",
        "--dont-show-progress",
    ]
    if where == "scheduler":
        address = json.loads(dask_cli_cluster.read_text())["address"]
        cmd += ["--scheduler", address]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "total 55" in out.stdout


def test_the_cancel_race_of_dask_is_not_shown_as_a_traceback(
    distributed_module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An interrupted run cancels the calls it gave out; dask then sets the result of one that
    finished meanwhile and logs the InvalidStateError with a traceback (through tornado). While
    the executor lives, that record is dropped; other records of that logger are not."""
    import concurrent.futures
    import logging

    def race() -> None:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        future.cancel()
        try:
            future.set_result(1)
        except concurrent.futures.InvalidStateError:
            logging.getLogger("tornado.application").exception("Exception in callback")

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        with dask_executor(n_workers=1):
            race()
            logging.getLogger("tornado.application").error("something else")
        race()  # after shutdown: shown again
    shown = [r.getMessage() for r in caplog.records if r.name == "tornado.application"]
    assert shown == ["something else", "Exception in callback"]
