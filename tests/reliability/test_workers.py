"""Dying workers, retries and time limits."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from taskproc import FailedTaskError, FutureList, Graph, InlineExecutor, Task
from taskproc.run._executors import owned_pool

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


class Dies(Task):
    def __init__(self, how: str) -> None:
        self.how = how

    def run_task(self) -> int:
        if self.how == "exit":
            os._exit(3)
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.how == "memory":
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
            return len(bytearray(2 << 30))
        return 0


class Fine(Task):
    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> int:
        time.sleep(0.05)
        return self.i


class Crowd(Task):
    def __init__(self, how: str) -> None:
        self.fine = FutureList([Fine(i) for i in range(6)])
        self.bad = Dies(how)

    def run_task(self) -> int:
        return 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["exit", "kill", "memory"])
def test_dying_worker_fails_only_its_task(cache: Path, how: str) -> None:
    with Graph(cache):
        root = Crowd(how)
    with pytest.raises(ExceptionGroup) as info:
        # the default executor: a process pool taskproc owns and can replace
        root.run_graph(error_handling="lazy", max_workers=2)
    errors = info.value.exceptions
    assert len(errors) == 1
    err = errors[0]
    assert isinstance(err, FailedTaskError) and err.task == f"test_workers.Dies(how='{how}')"
    if how != "memory":
        assert "worker process died" in str(err)
    else:
        assert "MemoryError" in str(err)
    with Graph(cache):
        for i in range(6):  # every innocent task finished
            assert Fine(i).get_result() == i


@pytest.mark.timeout(60)
def test_dying_prefix_worker(cache: Path) -> None:
    with Graph(cache):
        task = Dies("exit")
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(executor=InlineExecutor(), prefixes={"*": "env A=1"})
    assert "exited with status 3" in str(info.value.exceptions[0])


class Flaky(Task):
    task_retries = 2
    task_retry_delay = 0.01

    def __init__(self, folder: str, failures: int) -> None:
        self.folder = folder
        self.failures = failures

    def run_task(self) -> int:
        attempts = Path(self.folder, "attempts")
        with attempts.open("a") as f:
            f.write("x")
        n = len(attempts.read_text())
        print(f"attempt {n}")
        if n <= self.failures:
            raise RuntimeError(f"flaky failure {n}")
        return n


@pytest.mark.parametrize(("failures", "ok"), [(2, True), (3, False)])
def test_retries(cache: Path, tmp_path: Path, executor: object, failures: int, ok: bool) -> None:
    with Graph(cache):
        task = Flaky(str(tmp_path), failures)
    if ok:
        result, _ = task.run_graph(executor=executor)  # type: ignore[arg-type]
        assert result == 3
    else:
        with pytest.raises(ExceptionGroup, match="1 task failed"):
            task.run_graph(executor=executor)  # type: ignore[arg-type]
    assert len((tmp_path / "attempts").read_text()) == 3
    if not isinstance(executor, InlineExecutor):
        log = (task.task_worker.task_dir / "stderr.txt").read_text()
        assert "attempt 1 failed" in log and "attempt 2 failed" in log


class Slow(Task):
    task_timeout = 0.5

    def __init__(self, style: str) -> None:
        self.style = style

    def run_task(self) -> int:
        if self.style == "sleep":
            time.sleep(30)
        else:
            for _ in range(3000):  # short sleeps: a thread can be interrupted between them
                time.sleep(0.01)
        return 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["inline", "thread", "process", "prefix"])
def test_timeouts_stop_the_task(cache: Path, kind: str) -> None:
    from conftest import make

    style = "loop" if kind == "thread" else "sleep"
    executor = make("inline" if kind == "prefix" else kind)
    with Graph(cache):
        task = Slow(style)
    start = time.monotonic()
    with pytest.raises(ExceptionGroup) as info:
        task.run_graph(executor=executor, prefixes={"*": "env A=1"} if kind == "prefix" else None)
    assert time.monotonic() - start < 20
    assert "task_timeout of 0.5 s" in str(info.value.exceptions[0])
    executor.shutdown(wait=False)


def test_owned_pool_workers_lead_their_process_groups() -> None:
    pool = owned_pool(2)
    try:
        pid = pool.submit(os.getpid).result()
        assert pool.submit(os.getpgrp).result() in {pid, *[p.pid for p in pool._processes.values()]}
        assert os.getpgid(pid) == pid
    finally:
        pool.shutdown()


class InC(Task):
    """One long call into C code that holds no Python frame to interrupt: about 10 s."""

    task_timeout = 1.0

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def run_task(self) -> bytes:
        import hashlib

        return hashlib.pbkdf2_hmac("sha256", b"x", b"y", 40_000_000)


class AroundC(Task):
    def __init__(self) -> None:
        self.slow = InC("a")
        self.fine = FutureList([Fine(i) for i in range(4)])

    def run_task(self) -> int:
        return 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["pool", "prefix"])
def test_a_timeout_ends_a_task_stuck_in_c_code(cache: Path, kind: str) -> None:
    """The worker is ended about a second past the limit (not when the call returns, ~10 s),
    the task is reported as timed out (not as a dead worker), and the others finish."""
    with Graph(cache):
        root = AroundC()
    start = time.monotonic()
    with pytest.raises(ExceptionGroup) as info:
        if kind == "pool":
            root.run_graph(error_handling="lazy", max_workers=2)
        else:
            root.run_graph(executor=InlineExecutor(), prefixes={InC.task_name: "env A=1"})
    took = time.monotonic() - start
    (err,) = info.value.exceptions
    assert isinstance(err, FailedTaskError) and err.error_type == "TaskTimeout", err
    assert "task_timeout of 1.0 s" in err.error_message and "in run_task" in err.traceback
    assert took < 6, f"the timeout of 1 s took {took:.1f} s to stop the task"
    with Graph(cache):
        assert [Fine(i).get_result() for i in range(4)] == [0, 1, 2, 3]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True])
def test_a_timeout_must_be_a_finite_number(value: object) -> None:
    from taskproc import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match="task_timeout must be None or a finite"):

        class Never(Task):  # noqa: F841 - defining it is the test
            task_timeout = value  # type: ignore[assignment]
