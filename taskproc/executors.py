"""Executors: the inline executor, executors by name, and how each kind is fed.

Thread pools and the inline executor run tasks in this process, so they get the task objects
themselves and upstream results from memory. Any other executor (a process pool, dask,
loky, mpi4py...) gets a small pickled job and reads upstream results from the cache.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from .errors import ConfigError

P = ParamSpec("P")
T = TypeVar("T")

EXEC_TYPES = ("process", "thread", "local")


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
    if "mp_context" not in kwargs and sys.platform == "linux":
        kwargs["mp_context"] = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=max_workers or default_workers(), **kwargs)


def make_executor(exec_type: str, max_workers: int | None = None) -> Executor:
    """An executor by CLI name: ``process``, ``thread`` or ``local``."""
    if exec_type == "process":
        return process_pool(max_workers)
    if exec_type == "thread":
        return ThreadPoolExecutor(max_workers=max_workers or default_workers())
    if exec_type == "local":
        return InlineExecutor()
    raise ConfigError(f"executor type must be one of {', '.join(EXEC_TYPES)}, got {exec_type!r}")


def runs_in_process(executor: Executor) -> bool:
    """Whether `executor` runs callables in this process (so no pickling is needed)."""
    return isinstance(executor, (ThreadPoolExecutor, InlineExecutor))


def capacity(executor: Executor) -> int:
    """How many tasks to keep submitted at once: enough to keep every worker busy."""
    workers = getattr(executor, "_max_workers", None)
    if isinstance(executor, InlineExecutor):
        return 1
    if isinstance(workers, int) and workers > 0:
        return 2 * workers + 2
    return 256


def owned_pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    """The default executor: a process pool whose workers each lead a process group, so
    that stopping a worker also stops the processes its task started, and Ctrl-C reaches
    only the runner, which then stops everything in order."""
    return process_pool(max_workers, initializer=os.setpgrp)


def stop_workers(executor: Executor) -> None:
    """Kill the workers of a process pool we own, with what their tasks started."""
    # The stdlib keeps its worker processes in `_processes`; no public API lists them
    # before Python 3.14's kill_workers(), which would miss the tasks' own children.
    processes = getattr(executor, "_processes", None) or {}
    for proc in list(processes.values()):
        pid = getattr(proc, "pid", None)
        if not pid:
            continue
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                proc.kill()
            except (OSError, AttributeError):
                pass
