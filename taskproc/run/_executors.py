"""Executors: the inline executor, executors by name, and how each kind is fed.

Thread pools and the inline executor run tasks in this process, so they get the task objects
themselves and upstream results from memory. Any other executor (a process pool, dask,
loky, mpi4py...) gets a small pickled job and reads upstream results from the cache.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from taskproc.run._options import executor_kind
from taskproc.run._watch import init_pool_worker, kill_group

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

P = ParamSpec("P")
T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each task at once in the calling thread: for debugging with pdb."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: stop the run
            future.set_exception(exc)
        return future


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def process_pool(max_workers: int | None = None, **kwargs: Any) -> ProcessPoolExecutor:
    """A process pool that forks on Linux, so scripts without a main guard work as in 0.25."""
    # Imported here: a worker process that only runs tasks never needs multiprocessing.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "mp_context" not in kwargs and sys.platform == "linux":
        kwargs["mp_context"] = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=max_workers or default_workers(), **kwargs)


def make_executor(
    exec_type: str, max_workers: int | None = None, scheduler: str | None = None
) -> Executor:
    """An executor by CLI name: ``process``, ``thread``, ``local`` or ``dask`` (the scheduler
    at `scheduler`, or a new local cluster of `max_workers` worker processes)."""
    exec_type = executor_kind(exec_type)
    if exec_type == "dask":
        from taskproc.run._dask import DaskExecutor

        if scheduler:
            return DaskExecutor(scheduler)
        return DaskExecutor(n_workers=max_workers or default_workers())
    if exec_type == "process":
        return process_pool(max_workers)
    if exec_type == "thread":
        return ThreadPoolExecutor(max_workers=max_workers or default_workers())
    return InlineExecutor()  # "local"


def runs_in_process(executor: Executor) -> bool:
    """Whether `executor` runs callables in this process (so no pickling is needed)."""
    return isinstance(executor, (ThreadPoolExecutor, InlineExecutor))


def workers_of(executor: Executor | None, max_workers: int | None = None) -> int | None:
    """How many tasks `executor` runs at once (None: the process pool a run makes of
    `max_workers`); None if it does not say."""
    if executor is None:
        return max_workers or default_workers()
    if isinstance(executor, InlineExecutor):
        return 1
    workers = getattr(executor, "_max_workers", None)  # the stdlib pools
    if workers is None:
        # dask: a DaskExecutor's `client`, or the `_client` of client.get_executor()
        client = getattr(executor, "client", None) or getattr(executor, "_client", None)
        try:
            workers = sum(client.nthreads().values()) if client is not None else None
        except Exception:  # not a dask client after all, or the cluster is unreachable
            workers = None
    return workers if isinstance(workers, int) and workers > 0 else None


def capacity(executor: Executor) -> int:
    """How many tasks to keep submitted at once: enough to keep every worker busy."""
    if isinstance(executor, InlineExecutor):
        return 1
    workers = workers_of(executor)
    if workers is not None:
        return 2 * workers + 2
    # Unknown: enough to keep a large cluster busy, few enough that several runners sharing
    # a cache do not claim each other's work far ahead.
    return 64


def owned_pool(max_workers: int | None = None, *, spawn: bool = False) -> ProcessPoolExecutor:
    """The default executor: a process pool whose workers each lead a process group, so
    that stopping a worker also stops the processes its task started, and Ctrl-C reaches
    only the runner, which then stops everything in order. A worker whose runner is gone
    (killed outright) ends its group by itself (see `_watch.py`). With `spawn` its workers
    are new interpreters rather than forks (for a process whose store client cannot cross a
    fork once used: a bucket's)."""
    kwargs: dict[str, Any] = {"initializer": init_pool_worker, "initargs": (os.getpid(),)}
    if spawn:
        import multiprocessing

        kwargs["mp_context"] = multiprocessing.get_context("spawn")
    return process_pool(max_workers, **kwargs)


def stop_workers(executor: Executor) -> None:
    """Kill the workers of a process pool we own, with what their tasks started."""
    # The stdlib keeps its worker processes in `_processes`; no public API lists them
    # before Python 3.14's kill_workers(), which would miss the tasks' own children.
    processes = getattr(executor, "_processes", None) or {}
    for proc in list(processes.values()):
        pid = getattr(proc, "pid", None)
        if pid and not kill_group(pid):
            with contextlib.suppress(OSError, AttributeError):
                proc.kill()


def forks_lazily(executor: Executor) -> bool:
    """A stdlib process pool whose workers have not been started yet (and that is not shut
    down: submitting to it then gives the usual one-line error)."""
    from concurrent.futures import ProcessPoolExecutor

    return (
        isinstance(executor, ProcessPoolExecutor)
        and not getattr(executor, "_processes", 1)
        and not getattr(executor, "_shutdown_thread", False)
    )


def is_shut_down(executor: Executor) -> bool:
    """Whether `executor` was shut down (so `submit` refuses work). The stdlib pools keep it
    in a flag; an executor without one is taken to be running."""
    return bool(
        getattr(executor, "_shutdown", False) or getattr(executor, "_shutdown_thread", False)
    )
