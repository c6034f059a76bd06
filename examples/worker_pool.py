"""A pool of worker processes that retire after a few tasks, with per-task logs and live counts
(seed 002's TaskQueue).

Run it from the repository's root::

    python examples/worker_pool.py -o /tmp/taskproc-pool
    python examples/worker_pool.py -o /tmp/taskproc-pool --jobs 40 --max-tasks-per-child 5

- Recycling: taskproc runs tasks on any ``concurrent.futures.Executor``; ``RecyclingPool`` below
  makes one of ``multiprocessing.Pool(maxtasksperchild=...)``, which replaces each worker process
  after that many tasks. (``ProcessPoolExecutor(max_tasks_per_child=...)`` would do, but on
  Python 3.11 to 3.13 it hangs once a worker retires: CPython issue gh-115634.)
- Logging: what a task logs goes to its own folder, ``<cache>/worker_pool.Job/results/<task
  id>/stderr.txt``, whichever process ran it: no ``multiprocessing.get_logger()`` plumbing.
- Counts: the pool counts the tasks it holds and has processed; they are printed every second
  while the pool runs, and at the end. ``taskproc status /tmp/taskproc-pool`` shows counts per
  task name from any shell.
- Stopping: Ctrl-C terminates the workers; finished results are kept for the next run.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from taskproc import FutureList, Graph, Task

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("worker_pool")


class RecyclingPool(Executor):
    """``multiprocessing.Pool`` as an Executor, counting queued and processed tasks."""

    def __init__(
        self, workers: int, max_tasks_per_child: int, initializer: Callable[[], None] | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")  # fresh workers, safe beside threads
        self._pool = context.Pool(workers, initializer, maxtasksperchild=max_tasks_per_child)
        self._max_workers = workers  # lets taskproc keep each worker fed
        self._lock = threading.Lock()
        self.queued = 0  # submitted and not finished: waiting in the pool or running
        self.processed = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()

        def finished(set_outcome: Callable[[Any], None]) -> Callable[[Any], None]:
            def callback(value: Any) -> None:
                with self._lock:
                    self.queued -= 1
                    self.processed += 1
                set_outcome(value)

            return callback

        with self._lock:
            self.queued += 1
        self._pool.apply_async(
            fn,
            args,
            kwargs,
            callback=finished(future.set_result),
            error_callback=finished(future.set_exception),
        )
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait and not cancel_futures:
            self._pool.close()  # let queued tasks finish
        else:
            self._pool.terminate()
        self._pool.join()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(cancel_futures=exc_type is not None)  # Ctrl-C: stop the workers now


class Job(Task):
    """Some work; returns the id of the worker process that did it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run_task(self) -> int:
        log.info("worker %d processing job %d", os.getpid(), self.n)
        total = sum(i * i for i in range(200_000 * (1 + self.n % 3)))
        log.info("worker %d done with job %d (%d)", os.getpid(), self.n, total)
        return os.getpid()


class Main(Task):
    """All the jobs; returns how many each worker process ran."""

    def __init__(self, jobs: int) -> None:
        self.pids = FutureList([Job(n) for n in range(jobs)])

    def run_task(self) -> dict[int, int]:
        return dict(Counter(self.pids.get_result()))


def setup_worker() -> None:
    """Runs once in each new worker process: log INFO records (to the running task's folder)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def report(pool: RecyclingPool, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        print(f"queued {pool.queued}, processed {pool.processed}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--cache-dir", required=True)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-tasks-per-child", type=int, default=3)
    args = parser.parse_args(argv)

    with Graph(args.cache_dir):
        task = Main(args.jobs)
    stop = threading.Event()
    with RecyclingPool(args.workers, args.max_tasks_per_child, setup_worker) as pool:
        reporter = threading.Thread(target=report, args=(pool, stop, 1.0), daemon=True)
        reporter.start()
        try:
            started = time.perf_counter()
            per_worker, stats = task.run_graph(executor=pool)
        finally:
            stop.set()
    took = time.perf_counter() - started
    print(f"queued {pool.queued}, processed {pool.processed} in {took:.1f} s")
    for pid, count in sorted(per_worker.items()):
        print(f"worker {pid} ran {count} jobs")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; finished results are kept", file=sys.stderr)
        sys.exit(130)
