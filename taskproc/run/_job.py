"""One task's run: what a worker gets, what it does, and what it sends back.

In-process executors call `execute(task, spec, capture)` with the task object itself. Any
other executor gets a job from `_remote.py`, which rebuilds the task in the worker and calls
`execute` there. Either way the task's store does every write: claim, arguments, links,
result, error.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import threading
import time
import types
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from taskproc.errors import PACKAGE_DIR, CorruptResultError, ResultMissingError, Terminated
from taskproc.model import (
    ACTIVE_LEDGER,
    Ledger,
    TaskBase,
    args_reader,
    describe,
    stale_reason,
    upstream_links,
)
from taskproc.run._capture import capture_fds, thread_sink
from taskproc.run._timeout import TaskTimeout, call_with_timeout, hard_deadline
from taskproc.store import (
    ClaimTaken,
    DeadlineFiles,
    Handover,
    Holder,
    Lease,
    OutputFiles,
    Record,
    ResultReplaced,
    Store,
    folder_problem,
    open_write,
    output_tail,
    read_record,
    read_text,
    write_atomic,
)

if TYPE_CHECKING:
    from taskproc.model import Scan

# The records are NamedTuples, not frozen dataclasses, for a worker's start: see
# `store/_contract.py`.


class JobSpec(NamedTuple):
    """Everything about one run of one task except the task object."""

    task_name: str
    task_id: str
    location: str  # the task's location in its store
    args_json: str
    record: Record
    compress_level: int
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    log_level: int | None = None
    holder: Holder | None = None  # claim the task as this runner before running it
    handover: Handover | None = None  # or: the claim the runner took and handed over
    forced: bool = False  # run even if another runner finished it meanwhile
    check_code: bool = False  # a result computed from other code is not fresh
    # For a worker process: the failures of the tolerated upstream tasks (`allow_failed`)
    # that failed in this run, by task key, pickled (see `_remote.pack_failure`).
    failed_inputs: tuple[tuple[str, bytes], ...] = ()
    # When the run started (its runner's clock), kept in the result's facts: `status` tells a
    # failure that a later run followed with a success from one that a sibling outlived.
    run_started: float = 0.0

    def describe(self, store: Store) -> str:
        """`mymodule.Choose(n=3, k=2)`, for messages (made only when one is needed), its
        upstream tasks named by their arguments in `store`."""
        return describe(self.task_name, self.args_json, args_reader(store))


class Failure(NamedTuple):
    """Why a task failed, as text that crosses process boundaries."""

    error_type: str
    message: str
    traceback: str
    output_tail: str = ""
    exception: bytes | None = None  # the pickled exception, when it pickles


# -- what came of one job: exactly one of these -------------------------------------------


class Done(NamedTuple):
    """The task ran and its result is committed. `value` only for in-process runs."""

    value: Any = None


class Failed(NamedTuple):
    """The task failed (its own error, or one around it)."""

    failure: Failure


class Cached(NamedTuple):
    """Not run: another runner finished it between the plan and the claim (`other_code`: by
    code other than ours, a result used because code is not checked)."""

    stamp: str
    other_code: bool = False


class Held(NamedTuple):
    """Not run: another runner holds it."""

    holder: Holder


class InputsLost(NamedTuple):
    """Not run to the end: upstream results it read are damaged, gone (deleted by ``gc``
    or ``clear`` since the plan) or replaced (another runner wrote a result in place of the
    one this run planned for); the next round computes them and it again."""

    locations: tuple[str, ...]
    damaged: bool  # some were damaged (not only deleted)
    replaced_by: str = ""  # replaced: the code identity of the result found in its place


Outcome: TypeAlias = Done | Failed | Cached | Held | InputsLost
OUTCOMES = (Done, Failed, Cached, Held, InputsLost)  # for isinstance


def save_outcome(path: str, outcome: Outcome, seconds: float) -> None:
    """Write a prefix run's outcome file: what came of the task, and its seconds."""
    write_atomic(path, pickle.dumps((outcome, seconds)))


def load_outcome(path: str) -> tuple[Outcome, float] | None:
    """What an outcome file holds; None while there is none (or it cannot be read)."""
    try:
        with open(path, "rb") as f:
            outcome, seconds = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
        return None
    return outcome, float(seconds)


def outside_failure(error_type: str, message: str, tb: str = "", tail: str = "") -> Failed:
    """The outcome of a task that failed outside its own code (no exception to keep)."""
    return Failed(Failure(error_type, message, tb, tail))


def deadline_file(store: Store, loc: str) -> str | None:
    """Where a worker process leaves the tracebacks of a task it ends for overrunning its
    `task_timeout`; None if the store keeps none."""
    return store.deadline_file(loc) if isinstance(store, DeadlineFiles) else None


def timed_out(spec: JobSpec, store: Store) -> Failed:
    """The outcome of a task whose worker was ended for overrunning its `task_timeout`."""
    path = deadline_file(store, spec.location)
    message = (
        f"the task ran longer than its task_timeout of {spec.timeout} s and could not be "
        "interrupted (a long call into C code?), so its worker process was ended"
    )
    tb = _task_frames(read_text(path)) if path else ""
    store.write_error(spec.location, f"TaskTimeout: {message}\n{tb}")
    return outside_failure("TaskTimeout", message, tb, output_tail(store, spec.location))


def _task_frames(dump: str, lines: int = 12) -> str:
    """From faulthandler's dump of every thread: the first lines of the task's own thread
    (the watch thread of `_watch.py` is left out)."""
    blocks = [b for b in dump.split("\n\n") if b.strip() and "_watch.py" not in b]
    return "\n".join("\n".join(blocks).splitlines()[:lines])


# Formatting a traceback parses source lines (Python 3.11 points at the failing expression), and
# CPython 3.11 can fail two parses that run at once in different threads ("AST constructor
# recursion depth mismatch", gh-106905): tasks failing together on a thread pool format their
# tracebacks one at a time.
_FORMATTING = threading.Lock()


def format_traceback(exc: BaseException, tb: types.TracebackType | None = None) -> str:
    """`traceback.format_exception` of `exc` (from `tb`), one thread at a time."""
    import traceback  # here: a task that fails nothing never needs it (a worker's start)

    with _FORMATTING:
        return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` from the first frame outside taskproc: the task's own code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
        tb = tb.tb_next
    return format_traceback(exc, tb)


# What a task may raise and still only fail: every exception, and also a `sys.exit` or a stray
# GeneratorExit in its code. Only a real interrupt of the runner (Ctrl-C, `Terminated`) stops it.
TASK_ERRORS = (Exception, SystemExit, GeneratorExit)


def task_error(exc: BaseException) -> BaseException:
    """`exc` as the task's failure: a `sys.exit` says so, naming the fix."""
    if isinstance(exc, SystemExit):
        return RuntimeError(
            f"run_task called sys.exit({exc.code!r}); a task fails by raising an exception - "
            "raise one instead (a command-line parser inside a task exits this way on bad "
            "arguments)"
        ).with_traceback(exc.__traceback__)
    return exc


def failure_outcome(exc: BaseException, store: Store, loc: str) -> Failed:
    """The outcome of a task that raised `exc`; the failure is recorded in the store."""
    tb = user_traceback(exc)
    try:
        import cloudpickle  # here: a run that fails nothing never imports it

        blob: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        blob = None
    failure = Failure(type(exc).__qualname__, str(exc), tb, output_tail(store, loc), blob)
    store.write_error(loc, tb)
    return Failed(failure)


@functools.lru_cache(maxsize=1)
def _host_json() -> str:
    return json.dumps(os.uname().nodename)  # gethostname(), without importing socket


def _run_task(task: TaskBase) -> Any:
    """`task.run_task()`; an ``async def run_task`` runs on an event loop of its own."""
    value = task.run_task()
    if isinstance(value, types.CoroutineType):  # inspect.iscoroutine, without importing inspect
        import asyncio  # here: most tasks are not coroutines, and asyncio is slow to import

        value = asyncio.run(value)
    return value


def _links(task: TaskBase) -> list[tuple[str, str, str]]:
    return [(p, t.task_name, t._tp.task_id) for p, t in upstream_links(task.__dict__)]


def claim(spec: JobSpec, store: Store, me: Holder) -> Lease | Outcome:
    """Claim the task as `me`: our lease, or why not to run it (held by another runner,
    finished by another runner since the plan, or a cache that cannot be written)."""
    loc = spec.location
    try:
        got = store.claim(loc, me)
    except OSError as exc:
        return failure_outcome(OSError(exc.errno, folder_problem(exc, loc)), store, loc)
    if isinstance(got, Holder):
        return Held(got)
    cached = _finished_meanwhile(spec, store, got)
    if cached is not None:
        got.release()
        return cached
    return got


def _finished_meanwhile(spec: JobSpec, store: Store, lease: Lease) -> Cached | None:
    """The result another runner committed between the plan and our claim, if it is fresh:
    the task must not run twice."""
    if spec.forced or lease.fresh:
        return None
    try:
        record = read_record(store, spec.location)
    except CorruptResultError:
        return None
    mine = spec.record
    code_id = mine.code_id if spec.check_code else None
    if record is not None and stale_reason(record, mine.version, mine.inputs, code_id) is None:
        return Cached(record.stamp, record.code_id != mine.code_id)
    return None


def record_input(
    task: TaskBase, scan: Scan, store: Store, me: Holder, run_started: float
) -> tuple[JobSpec, Outcome]:
    """The run of an input file (`InputFile`), in the runner: its record written again with
    the facts and digests of its files that the plan found (the plan read them; workers only
    ever get the path), or why it cannot be read. Another runner recording it meanwhile
    records the same content: its stamp will do."""
    key = f"{task.task_name}/{task._tp.task_id}"
    spec = JobSpec(
        task_name=task.task_name,
        task_id=task._tp.task_id,
        location=task._tp_loc(),
        args_json=task._tp.args_json,
        record=scan.record(key),
        compress_level=type(task).task_compress_level,
        holder=me,
        run_started=run_started,
    )
    got = claim(spec, store, me)
    if isinstance(got, Held):
        got = Cached(scan.stamp)
    if isinstance(got, OUTCOMES):
        return spec, got if not scan.error else _unreadable_input(scan, store, spec.location)
    with got as lease:
        if scan.error:
            return spec, _unreadable_input(scan, store, spec.location)
        lease.start(spec.args_json, [], keep_output=False)
        info = (
            f'{{"duration": 0.0, "attempts": 1, "host": {_host_json()}, "pid": {os.getpid()}, '
            f'"finished": {time.time():.3f}, "run_started": {run_started:.3f}, '
            f'"files": {len(scan.rows)}, "read": {scan.read}}}'
        )
        try:
            lease.commit(scan.rows, spec.record, spec.compress_level, info)
        except ClaimTaken:
            return spec, Cached(scan.stamp)
        except OSError as exc:
            problem = OSError(exc.errno, folder_problem(exc, spec.location))
            return spec, failure_outcome(problem, store, spec.location)
    return spec, Done()


def _unreadable_input(scan: Scan, store: Store, loc: str) -> Failed:
    """The failure of an input whose file cannot be read, recorded in the store."""
    reader = f" (an input of {scan.reader})" if scan.reader else ""
    message = f"{scan.error}{reader}; create it, or give InputFile the path of an existing file"
    store.write_error(loc, f"InputFileError: {message}\n")
    return outside_failure("InputFileError", message)


def execute(task: TaskBase, spec: JobSpec, capture: str, ledger: Ledger) -> Outcome:
    """Claim `task` (or take up the claim handed over), run it (with retries) with `ledger`
    active, save its result, and report.

    `capture` is ``'fds'`` (a worker process), ``'thread'`` (a thread pool) or ``'none'``.
    Never raises for the task's own errors; KeyboardInterrupt and SystemExit pass through.
    """
    store = task._tp.store
    if spec.handover is not None:
        lease = store.resume(spec.handover)
        if lease is None:  # another runner took it over meanwhile: its result will do
            return Held(store.read_claim(spec.location) or Holder("", "", 0))
    elif spec.holder is not None:
        got = claim(spec, store, spec.holder.in_worker())
        if isinstance(got, OUTCOMES):
            return got
        lease = got
    else:
        raise ValueError(f"{spec.task_name}: a job needs a holder or a handed-over claim")
    # A try block rather than `with lease, ledger.active()`: this runs once a task, and the
    # context managers' calls cost more than the rest of this function.
    token = ACTIVE_LEDGER.set(ledger)
    try:
        return _execute(task, spec, store, capture, lease)
    finally:
        ACTIVE_LEDGER.reset(token)
        lease.release()


def _execute(task: TaskBase, spec: JobSpec, store: Store, capture: str, lease: Lease) -> Outcome:
    """Run the claimed task and commit its result through `lease`."""
    loc = spec.location
    fresh = lease.fresh
    outputs = (
        store.output_files(loc) if capture != "none" and isinstance(store, OutputFiles) else None
    )
    lease.start(spec.args_json, _links(task), keep_output=outputs is not None)
    start = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            deadline = deadline_file(store, loc) if capture == "fds" else None
            if spec.timeout is None or deadline is None:  # no process to end (most tasks)
                value = _attempt(
                    task, spec.timeout, capture, outputs, append=attempt > 1, fresh=fresh
                )
            else:
                with hard_deadline(spec.timeout, deadline):
                    value = _attempt(
                        task, spec.timeout, capture, outputs, append=attempt > 1, fresh=fresh
                    )
            break
        except CorruptResultError as damaged:
            return InputsLost((damaged.path,), True)
        except ResultReplaced as replaced:
            return InputsLost((replaced.location,), False, replaced.record.code_id)
        except ResultMissingError as missing:
            gone = _vanished(task)  # deleted since the plan (gc, clear): run them again
            if gone:
                return InputsLost(gone, False)
            return failure_outcome(missing, store, loc)
        except TASK_ERRORS as raised:
            if isinstance(raised, Terminated):
                raise
            error = task_error(raised)
            if isinstance(error, TaskTimeout):
                error = TaskTimeout(
                    f"the task ran longer than its task_timeout of {spec.timeout} s"
                ).with_traceback(error.__traceback__)
            if attempt <= spec.retries:
                if outputs is not None:
                    with open_write(outputs[1], append=True) as f:
                        f.write(
                            f"taskproc: attempt {attempt} failed "
                            f"({type(error).__name__}: {error}); "
                            f"retrying in {spec.retry_delay} s\n"
                        )
                time.sleep(spec.retry_delay)
                continue
            return failure_outcome(error, store, loc)
    # Facts about this run, in the result's header: no file of its own to create.
    info = (
        f'{{"duration": {time.perf_counter() - start:.6f}, "attempts": {attempt}, '
        f'"host": {_host_json()}, "pid": {os.getpid()}, "finished": {time.time():.3f}, '
        f'"run_started": {spec.run_started:.3f}}}'
    )
    try:
        lease.commit(value, spec.record, spec.compress_level, info)
    except ClaimTaken:
        # Another runner took us for dead and claimed the task: its result will do.
        return Held(store.read_claim(loc) or Holder("", "", 0))
    except OSError as exc:
        return failure_outcome(OSError(exc.errno, folder_problem(exc, loc)), store, loc)
    except Exception as exc:
        err = TypeError(
            f"the result of {spec.describe(store)} cannot be pickled "
            f"({type(exc).__name__}: {exc}); return plain data, or objects that cloudpickle "
            "can pickle"
        )
        return failure_outcome(err, store, loc)
    return Done(value)


def _vanished(task: TaskBase) -> tuple[str, ...]:
    """The locations of the task's upstream tasks whose result is gone."""
    gone = []
    for up in dict.fromkeys(t for _, t in upstream_links(task.__dict__)):
        loc = up._tp_loc()
        try:
            if read_record(up._tp.store, loc) is None:
                gone.append(loc)
        except (CorruptResultError, OSError):
            gone.append(loc)
    return tuple(gone)


def _attempt(
    task: TaskBase,
    timeout: float | None,
    capture: str,
    outputs: tuple[str, str] | None,
    append: bool,
    fresh: bool,
) -> Any:
    """One attempt at the task, its output captured as `capture` says (`fresh`: the task's
    folder was made for this run, so it holds no output files yet)."""
    if outputs is None:
        return call_with_timeout(lambda: _run_task(task), timeout)
    out, err = outputs
    sink = (
        capture_fds(out, err, append=append)
        if capture == "fds"
        else thread_sink(out, err, append=append, fresh=fresh)
    )
    with sink:
        return call_with_timeout(lambda: _run_task(task), timeout)
