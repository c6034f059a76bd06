"""Time limits of tasks: `call_with_timeout` interrupts a call with `TaskTimeout`.

In the main thread of a worker process a timer signal does it; in any other thread the
exception is raised into the thread, which takes effect at its next Python instruction.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


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
