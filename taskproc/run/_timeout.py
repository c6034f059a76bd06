"""Time limits of tasks: `call_with_timeout` interrupts a call with `TaskTimeout`, and in a
worker process `hard_deadline` ends the process when the call cannot be interrupted.

In the main thread of a worker process a timer signal raises `TaskTimeout`; in any other thread
the exception is raised into the thread. Either takes effect at the next Python instruction,
not inside one long call into C code. So a worker process also arms a watchdog that needs no
Python at all (`faulthandler`'s): `HARD_GRACE` seconds past the limit it writes every thread's
traceback to the task's deadline file and ends the process; the runner finds the file filled,
reports the task as timed out, and replaces the worker.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

HARD_GRACE = 1.0  # seconds past task_timeout before a worker process is ended


@contextlib.contextmanager
def hard_deadline(timeout: float, path: str) -> Iterator[None]:
    """In a worker process: end it `HARD_GRACE` seconds after `timeout`, writing the
    tracebacks to `path` first. Entered only for a task with a timeout (the caller checks:
    a context per task would cost most tasks calls for nothing)."""
    from taskproc.store import CREATE, open_file

    with open(open_file(path, CREATE), "w") as record:
        faulthandler.dump_traceback_later(timeout + HARD_GRACE, exit=True, file=record)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            with contextlib.suppress(OSError):
                os.unlink(path)


def overran(path: str | None) -> bool:
    """Whether a worker was ended for overrunning its timeout (its deadline file is filled)."""
    if path is None:
        return False
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


class TaskTimeout(Exception):
    """Raised inside a task that ran longer than its `task_timeout`."""

    def __init__(self, message: str = "the task ran longer than its task_timeout") -> None:
        super().__init__(message)


def _raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> None:
    import ctypes  # here: only tasks with a time limit on a thread need it

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type else None
    )


def _call_in_thread_with_timeout(func: Callable[[], Any], timeout: float) -> Any:
    """In a thread no signal can interrupt `func`: raise TaskTimeout into the thread instead.
    It takes effect at the next Python instruction, not inside a blocking C call."""
    ident = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                _raise_in_thread(ident, TaskTimeout)

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()
    try:
        return func()
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:
                _raise_in_thread(ident, None)  # drop it if it is still pending


def call_with_timeout(func: Callable[[], Any], timeout: float | None) -> Any:
    """Call `func`, interrupting it with TaskTimeout after `timeout` seconds."""
    if timeout is None:
        return func()
    if threading.current_thread() is not threading.main_thread():
        return _call_in_thread_with_timeout(func, timeout)

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeout(f"the task ran longer than its task_timeout of {timeout} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return func()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
