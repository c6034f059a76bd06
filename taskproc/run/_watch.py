"""Workers that notice their runner is gone, and end themselves with what their task started.

A runner killed outright (SIGKILL, the OOM killer, a preempted batch job) cannot stop its
workers, and a worker leads a process group of its own (so that stopping it stops its task's
children). Each worker therefore watches its runner from a daemon thread and, once the runner is
gone, kills its own process group: the worker, and everything its task started. A worker of
the runner's own pool watches its parent; a prefix job's worker on the runner's host watches
the runner's pid; one on another host watches the runner's heartbeat in the cache. The thread
needs the interpreter for a moment, which a task running Python code or waiting in C code
gives within milliseconds. A dask worker exits by itself the moment its runner is gone, before
such a thread could act, so it leaves a reaper process in its group instead.
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


def kill_group(pid: int) -> bool:
    """Kill the process group that the worker `pid` leads (the worker and what its task
    started); False if there is none (the worker did not lead one yet, or is gone)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


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


# Waits while the runner ($1) and the worker ($2) live; kills the worker's group if the
# runner went first. It lives in that group: the kill ends it too.
_REAPER = (
    'while kill -0 "$1" && kill -0 "$2"; do sleep 0.5; done 2>/dev/null; '
    'kill -0 "$1" 2>/dev/null || kill -9 -"$2"'
)


def init_reaped_worker(runner_pid: int) -> None:
    """In a worker that exits at once when its runner is gone, leaving what its task started
    (dask's: `os._exit` as soon as its nanny's pipe closes, before any thread of ours could
    act): lead a process group, and leave a shell process in it that ends the group once the
    runner is gone (and ends by itself when the worker ends first)."""
    import subprocess  # here: a worker that is not dask's imports nothing more before its task

    os.setpgrp()
    subprocess.Popen(
        ["sh", "-c", _REAPER, "sh", str(runner_pid), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def watch_runner(runner: Holder, store: Store, stale_after: float) -> None:
    """In a prefix job's worker: end this process group when `runner` is gone."""
    if runner.host == hostname():
        _watch(lambda: not pid_alive(runner.pid), POLL)
        return
    me = Holder(runner.runner, hostname(), os.getpid())
    liveness = Liveness(store, me, stale_after)
    _watch(lambda: liveness.is_dead(runner), max(POLL, stale_after / 10))
