"""The run loop.

Data flow of one `run_graph` call::

    run(root, options)
      collect + decide (plan.py) ........ which tasks are stale, and why
      _Loop.run ......................... one round over the stale tasks
        graphlib ready ──> queue per task class ──> limits fit? ──> claim ──┐
          ┌─────────────────────────────────────────────────────────────────┘
          ├─ in-process executor:  submit(execute, task, spec)
          ├─ any other executor:   submit(run_remote, spec, classes, state)
          └─ label with a prefix:  PrefixRun (subprocess + a waiter thread)
        one completion queue <── executor done-callbacks and waiter threads
        finish ──> release limits and claim ──> graphlib done() ──> next ready
      load the root result .............. a corrupt result found on the way
                                          is deleted and the graph run again

Everything but the completion queue is touched by the thread that called `run_graph` only.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import BrokenExecutor, CancelledError, Executor
from concurrent.futures import Future as ExecFuture
from dataclasses import dataclass, field, replace
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Any

from taskproc.run._capture import routed_output
from taskproc.errors import ConfigError, CorruptResultError, FailedTaskError, GraphError, TaskprocError
from taskproc.run._executors import InlineExecutor, capacity, owned_pool, runs_in_process, stop_workers
from taskproc.model._fingerprint import fingerprinter
from taskproc.run._job import Failure, JobSpec, Outcome, claim, execute
from taskproc.run._limits import LabelCounter, check_limits
from taskproc.run._plan import Reason, collect, decide, expectation, folder_of, read_checked
from taskproc.run._prefix import PrefixRun, check_prefixes, render
from taskproc.run._progress import ProgressBars, RunHooks, Stats
from taskproc.store._resultfile import Record, StampMaker
from taskproc.store._local import Claim, Heartbeat, Liveness, Store, new_runner
from taskproc.model._task import _NO_RESULT, Task

if TYPE_CHECKING:
    from taskproc.run._remote import ClassTable

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import ExceptionGroup

ERROR_HANDLING = ("immediate", "eager", "lazy")
MAX_ROUNDS = 4


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The validated options of one run."""

    executor: Executor | None = None
    rate_limits: Mapping[str, int] = field(default_factory=dict)
    prefixes: Mapping[str, str] = field(default_factory=dict)
    error_handling: str = "eager"
    show_progress: bool = False
    detect_source_change: bool = False
    force_entrypoint: bool = False
    max_workers: int | None = None
    log_level: int | None = None
    hooks: tuple[RunHooks, ...] = ()
    heartbeat_interval: float = 5.0
    stale_after: float = 60.0
    poll_interval: float = 0.2

    @staticmethod
    def make(
        *,
        executor: Executor | None = None,
        rate_limits: Mapping[str, int] | None = None,
        prefixes: Mapping[str, str] | None = None,
        error_handling: str = "eager",
        show_progress: bool = False,
        detect_source_change: bool = False,
        force_entrypoint: bool = False,
        max_workers: int | None = None,
        log_level: int | None = None,
        hooks: tuple[RunHooks, ...] = (),
    ) -> RunOptions:
        if error_handling not in ERROR_HANDLING:
            raise ConfigError(
                f"error_handling must be one of {', '.join(ERROR_HANDLING)}, got {error_handling!r}"
            )
        if executor is not None and not isinstance(executor, Executor):
            raise ConfigError(
                "executor must be a concurrent.futures.Executor (e.g. ThreadPoolExecutor(4)), "
                f"got {type(executor).__name__}"
            )
        if max_workers is not None and (type(max_workers) is not int or max_workers < 1):
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        return RunOptions(
            executor=executor,
            rate_limits=check_limits(rate_limits),
            prefixes=check_prefixes(prefixes),
            error_handling=error_handling,
            show_progress=show_progress,
            detect_source_change=detect_source_change,
            force_entrypoint=force_entrypoint,
            max_workers=max_workers,
            log_level=log_level,
            hooks=hooks,
            heartbeat_interval=_env_float("TASKPROC_HEARTBEAT_INTERVAL", 5.0),
            stale_after=_env_float("TASKPROC_STALE_AFTER", 60.0),
            poll_interval=_env_float("TASKPROC_POLL_INTERVAL", 0.2),
        )


class _Resources:
    """The executor (made on first need when we own it), the heartbeat, output routing."""

    def __init__(self, options: RunOptions, store: Store, me: Claim) -> None:
        self._options = options
        self._store = store
        self._me = me
        self._owned: Executor | None = None
        self._heartbeat: Heartbeat | None = None
        self._stack = contextlib.ExitStack()
        self.interrupted = False

    @property
    def owned(self) -> bool:
        return self._options.executor is None

    def executor(self) -> Executor:
        given = self._options.executor
        if given is not None:
            return given
        if self._owned is None:
            self._owned = owned_pool(self._options.max_workers)
            # Start the workers now, before this process has threads of its own: forking a
            # process that has threads can deadlock.
            self._owned.submit(int).result()
        return self._owned

    def in_process(self) -> bool:
        given = self._options.executor
        return given is not None and runs_in_process(given)

    def replace_broken(self, broken: Executor | None) -> None:
        """Drop an owned pool that lost a worker (once); the next task makes a new one."""
        if broken is not None and broken is self._owned:
            stop_workers(self._owned)
            self._owned.shutdown(wait=False, cancel_futures=True)
            self._owned = None

    def start(self, need_executor: bool) -> None:
        if need_executor:
            executor = self.executor()
            if _forks_lazily(executor):
                # A pool that forks its workers on first use: start them now, before the
                # heartbeat thread exists (forking a process that has threads can deadlock).
                executor.submit(int).result()
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self._store, self._me, self._options.heartbeat_interval)
            self._heartbeat.start()
        given = self._options.executor
        if given is not None and runs_in_process(given) and not isinstance(given, InlineExecutor):
            self._stack.enter_context(routed_output())

    def stop_workers(self) -> None:
        if self._owned is not None:
            stop_workers(self._owned)

    def close(self) -> None:
        self._stack.close()
        if self._owned is not None:
            if self.interrupted:
                stop_workers(self._owned)
            self._owned.shutdown(wait=True, cancel_futures=True)
            self._owned = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


def _forks_lazily(executor: Executor) -> bool:
    """A stdlib process pool whose workers have not been started yet (and that is not shut
    down: submitting to it then gives the usual one-line error)."""
    from concurrent.futures import ProcessPoolExecutor

    return (
        isinstance(executor, ProcessPoolExecutor)
        and not getattr(executor, "_processes", 1)
        and not getattr(executor, "_shutdown_thread", False)
    )


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While running, turn SIGTERM into SystemExit(143) so that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run(root: Task, options: RunOptions) -> tuple[Any, dict[str, Any]]:
    """Run `root` and every stale task upstream of it; return (result, stats)."""
    state = root._tp
    if state.graph is None:
        raise GraphError(f"{root!r}: run_graph() cannot be called from inside a worker")
    store = Store(state.store_root)
    first_order = collect(root)  # a cycle is reported before anything is written
    store.ensure()
    stats = Stats()
    hooks: list[RunHooks] = [stats, *options.hooks]
    if options.show_progress:
        hooks.append(ProgressBars())
    code = fingerprinter()
    me = new_runner()
    resources = _Resources(options, store, me)
    finished = False
    try:
        with _sigterm_as_exit():
            for round_no in range(1, MAX_ROUNDS + 1):
                order = first_order if round_no == 1 else collect(root)
                stale = decide(
                    order,
                    root,
                    force_root=options.force_entrypoint and round_no == 1,
                    code=code,
                    check_code=options.detect_source_change,
                )
                if stale:
                    loop = _Loop(root, store, options, resources, hooks, me, code)
                    loop.run(order, stale, first_round=round_no == 1)
                    if loop.corrupt:
                        _quarantine(loop.corrupt)
                        continue
                elif round_no == 1:
                    _report_plan(hooks, order, stale)
                try:
                    result = root.get_result()
                except CorruptResultError as exc:
                    warnings.warn(f"{exc}; recomputing it", stacklevel=2)
                    _quarantine({exc.path})
                    continue
                finished = True
                for hook in hooks:
                    hook.run_finished()
                return result, stats.as_dict()
            raise TaskprocError(
                f"{root!r}: results kept turning out corrupt after {MAX_ROUNDS} rounds; "
                "check the disk and the cache folder"
            )
    except BaseException:
        resources.interrupted = True
        raise
    finally:
        resources.close()
        if not finished:
            for hook in hooks:
                hook.run_finished()


def _report_plan(hooks: list[RunHooks], order: list[Task], stale: Mapping[Task, Reason]) -> None:
    plan: dict[str, list[int]] = {}
    for task in order:
        counts = plan.setdefault(task.task_name, [0, 0])
        counts[0 if task in stale else 1] += 1
    frozen = {k: (v[0], v[1]) for k, v in plan.items()}
    for hook in hooks:
        hook.run_started(frozen)


def _quarantine(paths: set[str]) -> None:
    """Delete result files found corrupt, so the next round recomputes them."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


@dataclass(frozen=True, slots=True)
class _ClassInfo:
    limited: tuple[str, ...]
    prefix: str | None


@dataclass(slots=True)
class _Running:
    spec: JobSpec
    limited: tuple[str, ...]
    handle: ExecFuture[Outcome] | PrefixRun | None
    on_executor: bool
    executor: Executor | None = None


class _Loop:
    """One round: runs the stale tasks of a graph."""

    def __init__(
        self,
        root: Task,
        store: Store,
        options: RunOptions,
        resources: _Resources,
        hooks: list[RunHooks],
        me: Claim,
        code: Callable[[type], str],
    ) -> None:
        self.root = root
        self.store = store
        self.options = options
        self.resources = resources
        self.hooks = hooks
        self.me = me
        self.code = code
        self.liveness = Liveness(store, me, options.stale_after)
        self.counter = LabelCounter(options.rate_limits)
        self.table: ClassTable | None = None  # made when a task first leaves this process
        self.in_process = resources.in_process()
        self.capture = "none" if isinstance(options.executor, InlineExecutor) else "thread"
        self.completions: queue.SimpleQueue[tuple[Task, Any]] = queue.SimpleQueue()
        self.queues: dict[type, deque[Task]] = {}
        self.infos: dict[type, _ClassInfo] = {}
        self.running: dict[Task, _Running] = {}
        self.waiting: dict[Task, Claim] = {}
        self.reasons: Mapping[Task, Reason] = {}
        self.remaining: dict[Task, int] = {}
        self.suspects: set[Task] = set()
        self.failures: list[FailedTaskError] = []
        self.corrupt: set[str] = set()
        self.stop_new = False
        self.abort = False
        self.inflight = 0
        self.cap = 1
        self.sorter: TopologicalSorter[Task] = TopologicalSorter()
        self.stamps = StampMaker()

    # -- setup ---------------------------------------------------------------------

    def _info(self, cls: type[Task]) -> _ClassInfo:
        info = self.infos.get(cls)
        if info is None:
            labels = cls._tp_labels
            prefixes = self.options.prefixes
            prefix = next((prefixes[lb] for lb in labels if lb in prefixes), None)
            info = self.infos[cls] = _ClassInfo(self.counter.limited(labels), prefix)
        return info

    def run(self, order: list[Task], stale: Mapping[Task, Reason], *, first_round: bool) -> None:
        self.reasons = stale
        sorter = self.sorter
        for task in order:
            if task in stale:
                sorter.add(task, *(u for u in task._tp.upstream if u in stale))
        sorter.prepare()
        need_executor = any(self._info(type(t)).prefix is None for t in stale)
        # Before the hooks (progress bars start a thread): a process pool must fork its
        # workers while this process has no threads of taskproc's own.
        self.resources.start(need_executor)
        if first_round:
            _report_plan(self.hooks, order, stale)
        else:
            _report_plan(self.hooks, [t for t in order if t in stale], stale)
        if need_executor:
            self.cap = capacity(self.resources.executor())
        if self.in_process:
            for task in stale:
                for up in task._tp.upstream:
                    self.remaining[up] = self.remaining.get(up, 0) + 1
                    up._tp.retain = True
        self._enqueue(sorter.get_ready())
        try:
            self._loop()
        except BaseException:
            self._stop_all(interrupt=True)
            raise
        finally:
            for task in self.remaining:
                if task is not self.root:
                    task._tp.retain = False
                    task._tp.memo = _NO_RESULT
        if self.abort:
            self._stop_all(interrupt=False)
        if self.failures:
            n = len(self.failures)
            raise ExceptionGroup(f"{n} task{'s' if n > 1 else ''} failed", self.failures)

    def _loop(self) -> None:
        poll = self.options.poll_interval
        while not self.abort:
            self._dispatch()
            if not self.running and not self.waiting:
                break
            try:
                item = self.completions.get(timeout=poll if self.waiting else 1.0)
            except queue.Empty:
                self._poll_waiting()
                continue
            self._finish(*item)
            while not self.abort:
                try:
                    item = self.completions.get_nowait()
                except queue.Empty:
                    break
                self._finish(*item)
            if self.waiting:
                self._poll_waiting()

    def _enqueue(self, tasks: Any) -> None:
        for task in tasks:
            q = self.queues.get(type(task))
            if q is None:
                q = self.queues[type(task)] = deque()
            q.append(task)

    # -- starting ------------------------------------------------------------------

    def _dispatch(self) -> None:
        progress = True
        while progress and not self.stop_new and not self.abort:
            progress = False
            for cls, q in list(self.queues.items()):
                info = self._info(cls)
                while q:
                    if info.prefix is None:
                        cap = 1 if self.suspects else self.cap
                        if self.inflight >= cap:
                            break
                    if not self.counter.fits(info.limited):
                        break
                    self._start(q.popleft(), info)
                    progress = True
                    if self.stop_new or self.abort:
                        return

    def _start(self, task: Task, info: _ClassInfo) -> None:
        """Start `task`. Executor runs claim the task in the worker (their file operations
        then run in parallel); prefix runs are claimed here, before a job is launched."""
        task_dir = folder_of(task)
        cls = type(task)
        exp = expectation(task, self.code, self.options.detect_source_change)
        forced = self.reasons.get(task) is Reason.FORCED
        spec = JobSpec(
            task_name=task.task_name,
            task_dir=task_dir,
            args_json=task._tp.args_json,
            record=Record(self.stamps.new(), exp.code, exp.version, exp.deps),
            compress_level=cls.task_compress_level,
            retries=cls.task_retries,
            retry_delay=float(cls.task_retry_delay),
            timeout=None if cls.task_timeout is None else float(cls.task_timeout),
            log_level=self.options.log_level,
            claim=self.me,
            forced=forced,
            check_code=self.options.detect_source_change,
        )
        if info.prefix is not None:
            early, new_dir = claim(spec)
            if early is not None:
                self._not_run(task, early)
                return
            spec = replace(spec, claim=None, new_dir=new_dir)
        self.counter.acquire(info.limited)
        running = _Running(spec, info.limited, None, info.prefix is None)
        self.running[task] = running
        for hook in self.hooks:
            hook.task_started(task.task_name)
        try:
            running.handle = self._submit(task, spec, info, running)
        except RuntimeError as exc:
            if "shutdown" in str(exc):
                raise ConfigError(
                    f"{self.root!r}: the executor passed to run_graph() is shut down; pass a "
                    "running executor"
                ) from None
            self.completions.put(
                (task, Outcome(False, 0.0, Failure(type(exc).__name__, str(exc), "")))
            )
        except Exception as exc:
            self.completions.put(
                (task, Outcome(False, 0.0, Failure(type(exc).__name__, str(exc), "")))
            )

    def _submit(self, task: Task, spec: JobSpec, info: _ClassInfo, running: _Running) -> Any:
        done = self.completions.put
        if info.prefix is not None:
            state = task._tp
            values = {
                "task_name": task.task_name,
                "task_id": state.task_id,
                "task_dir": spec.task_dir,
                "log_dir": spec.task_dir,
            }
            classes, blob = self._pack(task)

            def finished(outcome: Outcome) -> None:
                done((task, outcome))

            return PrefixRun(
                render(info.prefix, values), spec, (classes, blob, state.store_root), finished
            )
        self.inflight += 1
        if self.in_process:
            fn: Callable[..., Outcome] = execute
            args: tuple[Any, ...] = (task, spec, self.capture)
        else:
            from taskproc.run._remote import run_remote

            classes, blob = self._pack(task)
            fn, args = run_remote, (spec, classes, blob, task._tp.store_root)
        executor = running.executor = self.resources.executor()
        try:
            future = executor.submit(fn, *args)
        except BrokenExecutor:
            # A worker died and the pool knows it before we have heard of the tasks it broke:
            # start a new pool (ours) and submit there.
            if not self.resources.owned:
                raise
            self.resources.replace_broken(executor)
            executor = running.executor = self.resources.executor()
            future = executor.submit(fn, *args)
        future.add_done_callback(lambda f, t=task: done((t, f)))  # type: ignore[misc]
        return future

    def _pack(self, task: Task) -> tuple[tuple[bytes, ...], bytes]:
        # Imported here: runs that keep every task in this process never need cloudpickle.
        from taskproc.run._remote import ClassTable, pack

        if self.table is None:
            self.table = ClassTable()
        return pack(task, self.table)

    # -- finishing -----------------------------------------------------------------

    def _finish(self, task: Task, item: Any) -> None:
        running = self.running.pop(task, None)
        if running is None:
            return
        self.counter.release(running.limited)
        if running.on_executor:
            self.inflight -= 1
        task_dir = running.spec.task_dir
        outcome = self._outcome(task, item, running)
        if outcome is None or not outcome.released:
            # A prefix run (claimed here), or a worker that died before releasing its claim
            # (it may also never have claimed: then the claim is not ours to remove).
            with contextlib.suppress(OSError):
                self.store.release(task_dir, self.me, verify=running.on_executor)
        if outcome is None:
            return  # requeued after its worker process died
        if outcome.held_by is not None or outcome.fresh_stamp is not None:
            for hook in self.hooks:
                hook.task_finished(task.task_name, "waiting")
            self._not_run(task, outcome)
            return
        if outcome.ok:
            task._tp.stamp = running.spec.record.stamp
            in_memory = self.in_process and running.on_executor  # not from a prefix run
            if in_memory and (self.remaining.get(task) or task is self.root):
                task._tp.memo = outcome.value
                task._tp.retain = True
            self.suspects.discard(task)
            self._succeeded(task, "done")
        elif outcome.corrupt:
            self.corrupt.update(outcome.corrupt)
            for path in outcome.corrupt:
                warnings.warn(
                    f"{task!r}: an upstream result is corrupt ({path}); it will be recomputed",
                    stacklevel=1,
                )
        else:
            self._failed(task, task_dir, outcome.failure)

    def _not_run(self, task: Task, outcome: Outcome) -> None:
        """The task was not run: another runner holds it, or has finished it."""
        if outcome.fresh_stamp is not None:
            task._tp.stamp = outcome.fresh_stamp
            self._succeeded(task, "cached")
            return
        holder = outcome.held_by
        if holder is None:
            self._failed(task, folder_of(task), outcome.failure)
            return
        task_dir = folder_of(task)
        if self.liveness.is_dead(holder) and self.store.break_claim(task_dir, holder, self.me):
            self.queues.setdefault(type(task), deque()).appendleft(task)
        else:
            self.waiting[task] = holder

    def _outcome(self, task: Task, item: Any, running: _Running) -> Outcome | None:
        if isinstance(item, Outcome):
            return item
        future: ExecFuture[Outcome] = item
        try:
            return future.result()
        except CancelledError:
            return Outcome(False, 0.0, Failure("CancelledError", "the task was cancelled", ""))
        except BrokenExecutor as exc:
            return self._worker_died(task, exc, running)
        except Exception as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return Outcome(False, 0.0, Failure(type(exc).__name__, str(exc), tb))

    def _worker_died(self, task: Task, exc: BaseException, running: _Running) -> Outcome | None:
        """A worker process died. Every task that was in flight is retried alone (one at a
        time) to find the one that killed it; a task that breaks the pool alone has failed."""
        if self.resources.owned:
            self.resources.replace_broken(running.executor)
            if task not in self.suspects:
                self.suspects.add(task)
                self.queues.setdefault(type(task), deque()).appendleft(task)
                return None
        return Outcome(
            False,
            0.0,
            Failure(
                "WorkerDied",
                "the worker process died while running this task (killed, out of memory, or "
                f"os._exit) - {exc}",
                "",
            ),
        )

    def _succeeded(self, task: Task, state: str) -> None:
        for hook in self.hooks:
            hook.task_finished(task.task_name, state)
        self.sorter.done(task)
        self._enqueue(self.sorter.get_ready())
        if self.remaining:
            for up in task._tp.upstream:
                left = self.remaining.get(up)
                if left is not None:
                    self.remaining[up] = left - 1
                    if left == 1 and up is not self.root:
                        up._tp.retain = False
                        up._tp.memo = _NO_RESULT

    def _failed(self, task: Task, task_dir: str, failure: Failure | None) -> None:
        f = failure or Failure("Error", "unknown failure", "")
        err = FailedTaskError(
            repr(task),
            task_name=task.task_name,
            task_id=task._tp.task_id,
            task_dir=task_dir,
            error_type=f.error_type,
            error_message=f.message,
            traceback=f.traceback,
            output_tail=f.output_tail,
        )
        if f.exception is not None:
            with contextlib.suppress(Exception):
                err.__cause__ = pickle.loads(f.exception)
        self.failures.append(err)
        for hook in self.hooks:
            hook.task_finished(task.task_name, "failed")
        policy = self.options.error_handling
        if policy == "immediate":
            self.abort = True
        elif policy == "eager":
            self.stop_new = True

    # -- other runners ---------------------------------------------------------------

    def _poll_waiting(self) -> None:
        for task, holder in list(self.waiting.items()):
            exp = expectation(task, self.code, self.options.detect_source_change)
            record = read_checked(task)
            if record is not None and exp.accepts(record) is None:
                del self.waiting[task]
                task._tp.stamp = record.stamp
                self._succeeded(task, "cached")
                continue
            current = self.store.read_claim(folder_of(task))
            if current is None or self.liveness.is_dead(current):
                del self.waiting[task]
                self.queues.setdefault(type(task), deque()).appendleft(task)
            elif current != holder:
                self.waiting[task] = current

    # -- stopping ------------------------------------------------------------------

    def _stop_all(self, *, interrupt: bool) -> None:
        """Stop what runs (after an interrupt or an 'immediate' failure); release claims."""
        for running in list(self.running.values()):
            handle = running.handle
            if isinstance(handle, PrefixRun):
                handle.stop()
            elif handle is not None:
                handle.cancel()
            with contextlib.suppress(OSError):
                self.store.release(running.spec.task_dir, self.me)
        if self.resources.owned and (interrupt or self.running):
            self.resources.stop_workers()
        self.running.clear()
