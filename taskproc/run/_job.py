"""One task's run: what a worker gets, what it does, and what it sends back.

In-process executors call `execute(task, spec, capture)` with the task object itself. Any
other executor gets `run_remote(spec, classes, state, store_root)`, where `state` is the task's
attributes pickled with every task object replaced by a reference (class, task id) and every
task class by an index into `classes` (each class pickled once per run, unpickled once per
worker process). So a job's size does not depend on the size of the upstream graph, and the
worker reads upstream results from the cache folder only when the task asks for them.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from taskproc.model._canonical import describe
from taskproc.run._capture import capture_fds, tail, thread_sink
from taskproc._compact import Compact
from taskproc.errors import PACKAGE_DIR, CorruptResultError
from taskproc.store._files import ensure_dir, folder_problem, open_write, write_atomic, write_file
from taskproc.model._future import Const, Future, FutureDict, FutureList, Item
from taskproc.store._resultfile import ClaimTaken, Record, read_record, write_result
from taskproc.store._local import Claim, open_claim, read_claim
from taskproc.model._task import Task


@dataclass(frozen=True, slots=True)
class JobSpec(Compact):
    """Everything about one run of one task except the task object."""

    task_name: str
    task_dir: str
    args_json: str
    record: Record
    compress_level: int
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    log_level: int | None = None
    new_dir: bool = False  # the runner made the task's folder for this run
    claim: Claim | None = None  # claim the task as this runner before running it
    forced: bool = False  # run even if another runner finished it meanwhile
    check_code: bool = False  # a result computed from other code is not fresh

    @property
    def description(self) -> str:
        """`mymodule.Choose(n=3, k=2)`, for messages (made only when one is needed)."""
        return describe(self.task_name, self.args_json)


@dataclass(frozen=True, slots=True)
class Failure(Compact):
    """Why a task failed, as text that crosses process boundaries."""

    error_type: str
    message: str
    traceback: str
    output_tail: str = ""
    exception: bytes | None = None  # the pickled exception, when it pickles


@dataclass(frozen=True, slots=True)
class Outcome(Compact):
    """What came of one job. `value` is only set for in-process runs."""

    ok: bool
    duration: float = 0.0
    failure: Failure | None = None
    corrupt: tuple[str, ...] = ()
    value: Any = field(default=None, compare=False)
    held_by: Claim | None = None  # not run: another runner holds the task
    fresh_stamp: str | None = None  # not run: another runner finished it; its stamp
    released: bool = False  # the worker removed the claim itself


# -- the deps/ links -------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _link_name(parts: tuple[str, ...]) -> str:
    name = _UNSAFE.sub("_", ".".join(parts)).strip(".")[:120]
    return name or "_"


def _walk(value: object, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Task]]:
    stack: list[tuple[object, tuple[str, ...]]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, Task):
            yield p, v
        elif isinstance(v, Item):
            stack.append((v.base, p))
        elif isinstance(v, FutureList):
            stack.extend((x, (*p, str(i))) for i, x in enumerate(v.items))
        elif isinstance(v, FutureDict):
            stack.extend((x, (*p, str(k))) for k, x in v.items.items())
        elif isinstance(v, Const) or isinstance(v, Future):
            continue
        elif type(v) in (list, tuple) and isinstance(v, (list, tuple)):
            stack.extend((x, (*p, str(i))) for i, x in enumerate(v))
        elif type(v) is dict and isinstance(v, dict):
            stack.extend((x, (*p, str(k))) for k, x in v.items())


def make_links(task: Task, task_dir: str) -> None:
    """``deps/<attr>`` relative symlinks to the folders of the upstream tasks."""
    deps = f"{task_dir}/deps"
    made = False
    for attr, value in task.__dict__.items():
        if attr == "_tp":
            continue
        for parts, up in _walk(value, (attr,)):
            if not made:
                ensure_dir(deps)
                made = True
            target = f"../../../../{up.task_name}/results/{up._tp.task_id}"
            try:
                os.symlink(target, f"{deps}/{_link_name(parts)}")
            except FileExistsError:
                pass
            except OSError:
                return  # a file system without symlinks: the links are only for browsing


# -- running a task ----------------------------------------------------------------------


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` from the first frame outside taskproc: the task's own code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _failure(exc: BaseException, task_dir: str) -> Failure:
    tb = user_traceback(exc)
    try:
        import cloudpickle  # here: a run that fails nothing never imports it

        blob: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        blob = None
    out = output_tail(task_dir)
    return Failure(type(exc).__qualname__, str(exc), tb, out, blob)


def output_tail(task_dir: str, lines: int = 10) -> str:
    """The last lines the task printed, stdout and stderr labelled."""
    parts = []
    for name in ("stdout", "stderr"):
        text = tail(f"{task_dir}/{name}.txt", lines)
        if text:
            parts.append(f"[{name}]\n{text}")
    return "\n".join(parts)


class TaskTimeout(Exception):
    """Raised inside a task that ran longer than its `task_timeout`."""

    def __init__(self, message: str = "the task ran longer than its task_timeout") -> None:
        super().__init__(message)


@functools.lru_cache(maxsize=1)
def _host_json() -> str:
    return json.dumps(os.uname().nodename)  # gethostname(), without importing socket


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


def _run_task(task: Task) -> Any:
    """`task.run_task()`; an ``async def run_task`` runs on an event loop of its own."""
    value = task.run_task()
    if inspect.iscoroutine(value):
        import asyncio  # here: most tasks are not coroutines, and asyncio is slow to import

        value = asyncio.run(value)
    return value


def _call_with_timeout(func: Callable[[], Any], timeout: float | None) -> Any:
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


def _prepare(task: Task, spec: JobSpec, capture: str, new_dir: bool) -> None:
    task_dir = spec.task_dir
    if not new_dir:  # a folder made for this run has nothing old in it
        stale = ["error.txt"] + (["stdout.txt", "stderr.txt"] if capture == "none" else [])
        for name in stale:  # captured runs truncate stdout/stderr instead
            try:
                os.unlink(f"{task_dir}/{name}")
            except FileNotFoundError:
                pass
    write_file(f"{task_dir}/args.json", spec.args_json.encode() + b"\n")
    make_links(task, task_dir)


def claim(spec: JobSpec) -> tuple[Outcome | None, bool]:
    """Make the task's folder and claim it as `spec.claim` for a run elsewhere (a prefix
    command): (None, made the folder) if we hold it now, else (why not to run it, False)."""
    early, new_dir, fd = _claim(spec)
    if fd is not None:
        os.close(fd)
    return early, new_dir


def _claim(spec: JobSpec) -> tuple[Outcome | None, bool, int | None]:
    """`claim`, keeping our claim file open: (None, made the folder, its descriptor).

    After claiming, the record is read again: another runner may have finished the task
    between the runner's plan and this claim, and it must not run twice.
    """
    task_dir = spec.task_dir
    me = spec.claim
    try:
        new_dir = ensure_dir(task_dir)
        got = open_claim(task_dir, me) if me is not None else None
    except OSError as exc:
        failed = failure_outcome(OSError(exc.errno, folder_problem(exc, task_dir)), task_dir, 0.0)
        return failed, False, None
    if isinstance(got, Claim):
        return Outcome(False, held_by=got), False, None
    if not spec.forced and not new_dir:
        try:
            record = read_record(f"{task_dir}/result.pkl.gz")
        except CorruptResultError:
            record = None
        mine = spec.record
        if (
            record is not None
            and record.version == mine.version
            and record.deps == mine.deps
            and (not spec.check_code or record.code == mine.code)
        ):
            if got is not None:
                os.close(got)
            _unlink(f"{task_dir}/claim")
            return Outcome(True, fresh_stamp=record.stamp, released=True), False, None
    return None, new_dir, got


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def execute(task: Task, spec: JobSpec, capture: str) -> Outcome:
    """Claim `task` (if `spec.claim`), run it (with retries), save its result, and report.

    `capture` is ``'fds'`` (a worker process), ``'thread'`` (a thread pool) or ``'none'``.
    Never raises for the task's own errors; KeyboardInterrupt and SystemExit pass through.
    """
    if spec.claim is None:
        return _execute(task, spec, capture, spec.new_dir, None)
    early, new_dir, fd = _claim(spec)
    if early is not None or fd is None:
        return early or Outcome(False, held_by=spec.claim)
    outcome: Outcome | None = None
    try:
        outcome = _execute(task, spec, capture, new_dir, fd)
    finally:
        os.close(fd)
        if outcome is None or not outcome.released:  # failed: the claim file is still ours
            _unlink(f"{spec.task_dir}/claim")
    return outcome if outcome.released else replace(outcome, released=True)


def _execute(
    task: Task, spec: JobSpec, capture: str, new_dir: bool, claim_fd: int | None
) -> Outcome:
    """Run the claimed task and save its result: into our claim file `claim_fd` if given,
    whose renaming releases the claim (the outcome says `released`)."""
    task_dir = spec.task_dir
    _prepare(task, spec, capture, new_dir)
    out_path = f"{task_dir}/stdout.txt"
    err_path = f"{task_dir}/stderr.txt"
    start = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            if capture == "fds":
                with capture_fds(out_path, err_path, append=attempt > 1):
                    value = _call_with_timeout(lambda: _run_task(task), spec.timeout)
            elif capture == "thread":
                with thread_sink(out_path, err_path, append=attempt > 1):
                    value = _call_with_timeout(lambda: _run_task(task), spec.timeout)
            else:
                value = _call_with_timeout(lambda: _run_task(task), spec.timeout)
            break
        except CorruptResultError as exc:
            return Outcome(
                False, time.perf_counter() - start, _failure(exc, task_dir), corrupt=(exc.path,)
            )
        except Exception as exc:
            if isinstance(exc, TaskTimeout):
                exc = TaskTimeout(f"the task ran longer than its task_timeout of {spec.timeout} s")
            if attempt <= spec.retries:
                with open_write(err_path, append=True) as f:
                    f.write(
                        f"taskproc: attempt {attempt} failed ({type(exc).__name__}: {exc}); "
                        f"retrying in {spec.retry_delay} s\n"
                    )
                time.sleep(spec.retry_delay)
                continue
            return failure_outcome(exc, task_dir, start)
    # Facts about this run, in the result's header: no file of its own to create.
    info = (
        f'{{"duration": {time.perf_counter() - start:.6f}, "attempts": {attempt}, '
        f'"host": {_host_json()}, "pid": {os.getpid()}, "finished": {time.time():.3f}}}'
    )
    claim = None if claim_fd is None else (claim_fd, f"{task_dir}/claim")
    try:
        write_result(
            f"{task_dir}/result.pkl.gz", value, spec.record, spec.compress_level, info, claim
        )
    except ClaimTaken:
        # Another runner took us for dead and claimed the task: its result will do.
        holder = read_claim(task_dir) or Claim("", "", 0)
        return Outcome(False, held_by=holder, released=True)
    except OSError as exc:
        return failure_outcome(OSError(exc.errno, folder_problem(exc, task_dir)), task_dir, start)
    except Exception as exc:
        err = TypeError(
            f"the result of {spec.description} cannot be pickled "
            f"({type(exc).__name__}: {exc}); return plain data, or objects that cloudpickle "
            "can pickle"
        )
        return failure_outcome(err, task_dir, start)
    return Outcome(True, time.perf_counter() - start, value=value, released=claim is not None)


def failure_outcome(exc: BaseException, task_dir: str, start: float) -> Outcome:
    failure = _failure(exc, task_dir)
    try:
        write_atomic(os.path.join(task_dir, "error.txt"), failure.traceback.encode())
    except OSError:
        pass
    return Outcome(False, time.perf_counter() - start, failure)
