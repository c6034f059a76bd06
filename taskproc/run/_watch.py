"""Workers that notice their runner is gone, and end themselves with what their task started.

A runner killed outright (SIGKILL, the OOM killer, a preempted batch job) cannot stop its
workers, and a worker leads a process group of its own (so that stopping it stops its task's
children). Each worker therefore watches its runner from a daemon thread and, once the runner is
gone, kills its own process group: the worker, and everything its task started. A worker of
the runner's own pool watches its parent; a prefix job's worker on the runner's host watches
the runner's pid; one on another host watches the runner's heartbeat in the cache. The thread
needs the interpreter for a moment, which a task running Python code or waiting in C code
gives within milliseconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from taskproc.store import Holder, Liveness, Store, hostname, pid_alive

POLL = 0.5  # seconds between looks


def _end_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _watch(runner_gone: Callable[[], bool], interval: float) -> None:
    def loop() -> None:
        while True:
            time.sleep(interval)
            if runner_gone():
                _end_group()

    threading.Thread(target=loop, name="taskproc-watch", daemon=True).start()


def init_pool_worker(runner_pid: int) -> None:
    """The initializer of a worker of the runner's own pool: lead a process group, and end it
    when the runner (this worker's parent) is gone."""
    os.setpgrp()
    _watch(lambda: os.getppid() != runner_pid, POLL)


def watch_runner(runner: Holder, store: Store, stale_after: float) -> None:
    """In a prefix job's worker: end this process group when `runner` is gone."""
    if runner.host == hostname():
        _watch(lambda: not pid_alive(runner.pid), POLL)
        return
    me = Holder(runner.runner, hostname(), os.getpid())
    liveness = Liveness(store, me, stale_after)
    _watch(lambda: liveness.is_dead(runner), max(POLL, stale_after / 10))
