"""One round of a run: the I/O around the decisions of `RunState`.

`Round.run` plans a `RunState` over the stale tasks, then loops: start what `take` allows
(submit executor runs; launch each prefix command with its batch, its first task claimed
here), wait on the one completion queue that executor callbacks and prefix waiter threads
feed, and turn each outcome into a transition (`succeeded`, `failed`, `held`, `requeue`,
`worker_died`, `set_aside`, and `command_ended` when a prefix command ends), telling the
hooks. Tasks held by another runner are polled until their result appears or their runner
dies.

Tasks through a prefix are grouped for batches by class: classes whose `Slot` (limited
labels, batch size, budget) and rendered command are equal share one queue, so one command
may run tasks of several classes; a template that names ``{task_id}`` (or ``{task_dir}``,
``{log_dir}``) renders differently for every task, and its tasks run one per command. A batch's
budget counts each task's recorded seconds: its own last run's, else the median of its task
name's (earlier runs, and those of this run), else 0.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import sys
import warnings
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import BrokenExecutor, CancelledError, Executor
from concurrent.futures import Future as ExecFuture
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from taskproc.errors import (
    CodeChangedWarning,
    ConfigError,
    CorruptResultError,
    FailedTaskError,
    Terminated,
)
from taskproc.model import (
    Fingerprints,
    InputFile,
    Ledger,
    Reason,
    TaskBase,
    new_record,
    why_stale,
)
from taskproc.run._executors import InlineExecutor, capacity, is_shut_down
from taskproc.run._hooks import RunHooks, TaskState
from taskproc.run._job import (
    OUTCOMES,
    TASK_ERRORS,
    Cached,
    Done,
    Failed,
    Failure,
    Held,
    InputsLost,
    JobSpec,
    Outcome,
    claim,
    deadline_file,
    execute,
    format_traceback,
    outside_failure,
    record_input,
    task_error,
    timed_out,
)
from taskproc.run._options import RunOptions
from taskproc.run._plan import code_changed_message, replaced_message
from taskproc.run._prefix import (
    NotStarted,
    PrefixRun,
    Report,
    batchable,
    first_of,
    prefix_of,
    render,
    stop_all,
)
from taskproc.run._resources import Resources
from taskproc.run._state import RunState, Slot, Start
from taskproc.run._timeout import overran
from taskproc.store import (
    Holder,
    Lease,
    Liveness,
    Portable,
    PrefixJobs,
    StampMaker,
    Store,
    read_record,
    write_code_identity,
)

if TYPE_CHECKING:
    from taskproc.run._remote import ClassTable

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import ExceptionGroup


def report_plan(
    hooks: list[RunHooks], order: list[TaskBase], stale: Mapping[TaskBase, Reason]
) -> None:
    """Tell the hooks, per task name, how many tasks will run and how many are cached."""
    plan: dict[str, list[int]] = {}
    for task in order:
        counts = plan.setdefault(task.task_name, [0, 0])
        counts[0 if task in stale else 1] += 1
    frozen = {k: (v[0], v[1]) for k, v in plan.items()}
    for hook in hooks:
        hook.run_started(frozen)


@dataclass(frozen=True, slots=True)
class _Batched:
    """The queue of tasks that may share prefix commands: same slot, same command."""

    slot: Slot
    argv: tuple[str, ...]


@dataclass(slots=True)
class _Job:
    """A started task's I/O: its spec, what to wait on or stop, and the claim the runner took
    for it (a prefix run; a job on an executor claims the task where it runs)."""

    spec: JobSpec
    handle: ExecFuture[Outcome] | PrefixRun | None = None
    executor: Executor | None = None
    lease: Lease | None = None


class Round:
    """One round: runs the stale tasks of a graph, as its `RunState` decides."""

    def __init__(
        self,
        root: TaskBase,
        store: Store,
        options: RunOptions,
        resources: Resources,
        hooks: list[RunHooks],
        me: Holder,
        fingerprints: Fingerprints,
        ledger: Ledger,
        started: float = 0.0,
    ) -> None:
        self.root = root
        self.ledger = ledger
        self.started = started  # the run's start, by this runner's clock
        self.store = store
        self.options = options
        self.resources = resources
        self.hooks = hooks
        self.me = me
        self.fingerprints = fingerprints
        self.liveness = Liveness(store, me, options.stale_after)
        self.table: ClassTable | None = None  # made when a task first leaves this process
        self.portable: Store | None = None  # the store as other processes reopen it
        self.in_process = resources.in_process()
        self.capture = "none" if isinstance(options.executor, InlineExecutor) else "thread"
        # (task, outcome or executor future), or (None, number) when a prefix command ends
        self.completions: queue.SimpleQueue[tuple[TaskBase | None, Any]] = queue.SimpleQueue()
        self.prefixes: dict[type, str | None] = {}
        self.slots: dict[type, Slot] = {}
        self.groups: dict[type, Hashable] = {}
        self.seconds: dict[str, list[float]] = {}  # recorded seconds by task name (budgets)
        self.own_seconds: dict[str, float] = {}  # by location, from the store
        self.medians: dict[str, float] = {}
        self.jobs: dict[TaskBase, _Job] = {}
        self.reasons: Mapping[TaskBase, Reason] = {}
        self.errors: list[FailedTaskError] = []
        self.corrupt: set[str] = set()  # upstream results found damaged: to discard
        self.vanished: set[str] = set()  # upstream results found deleted since the plan
        self.replaced: set[str] = set()  # upstream results another runner replaced meanwhile
        self.stamps = StampMaker()
        self.codes_kept: set[type] = set()
        self.state: RunState[TaskBase] = RunState.plan(
            {}, group_of=self._group_of, slot_of=self._slot_of, limits={}, policy="eager"
        )

    def _prefix(self, cls: type[TaskBase]) -> str | None:
        if cls not in self.prefixes:
            self.prefixes[cls] = prefix_of(cls._tp_labels, self.options.prefix_commands)
        return self.prefixes[cls]

    def _slot(self, cls: Any) -> Slot:
        slot = self.slots.get(cls)
        if slot is None:
            if cls is InputFile:  # recorded by the runner itself (`_start_all`): no limits
                slot = self.slots[cls] = Slot(())
                return slot
            labels, options = cls._tp_labels, self.options
            limited = tuple(label for label in labels if label in options.limits)
            prefix = self._prefix(cls)
            if prefix is None:
                slot = Slot(limited)
            else:
                size = int(first_of(labels, options.batches) or 1) if batchable(prefix) else 1
                slot = Slot(limited, False, size, first_of(labels, options.budgets))
            self.slots[cls] = slot
        return slot

    def _group_of(self, task: TaskBase) -> Hashable:
        cls = type(task)
        group = self.groups.get(cls)
        if group is None:
            slot, prefix = self._slot(cls), self._prefix(cls)
            group = cls
            if prefix is not None and slot.batch > 1:  # its command is the same for every task
                group = _Batched(slot, tuple(render(prefix, self._values(task))))
            self.groups[cls] = group
        return group

    def _slot_of(self, group: Hashable) -> Slot:
        return group.slot if isinstance(group, _Batched) else self._slot(group)

    def _values(self, task: TaskBase) -> dict[str, str]:
        """What fills a prefix template's placeholders for `task`."""
        loc = task._tp_loc()
        return {
            **dict(type(task)._tp_resources),
            "task_name": task.task_name,
            "task_id": task._tp.task_id,
            "task_dir": loc,
            "log_dir": loc,
        }

    def _cost(self, task: TaskBase) -> float:
        """`task`'s estimated seconds, for batch budgets (see the module note)."""
        own = self.own_seconds.get(task._tp_loc())
        if own is not None:
            return own
        name = task.task_name
        median = self.medians.get(name)
        if median is None:
            seen = self.seconds.get(name)
            median = self.medians[name] = _median(seen) if seen else 0.0
        return median

    def _read_seconds(self, classes: set[type[TaskBase]]) -> None:
        """The recorded seconds of the stored tasks of the classes whose batches have a
        budget (their result's facts), by location and by task name."""
        names = sorted({c.task_name for c in classes if self._slot(c).budget is not None})
        if not names:
            return
        with contextlib.suppress(OSError):
            for stored in self.store.scan(names):
                seconds = stored.facts.get("duration")
                if isinstance(seconds, (int, float)):
                    self.own_seconds[stored.location] = float(seconds)
                    self.seconds.setdefault(stored.task_name, []).append(float(seconds))

    def _note_seconds(self, task: TaskBase, seconds: float) -> None:
        self.seconds.setdefault(task.task_name, []).append(seconds)
        self.medians.pop(task.task_name, None)

    # -- the round ---------------------------------------------------------------------

    def run(
        self, order: list[TaskBase], stale: Mapping[TaskBase, Reason], *, first_round: bool
    ) -> None:
        self.reasons = stale
        scans = self.ledger.scans  # input files: the runner records them, no executor needed
        upstream = {t: [u for u in t._tp.upstream if u in stale] for t in order if t in stale}
        classes = {type(t) for t in upstream}
        self._read_seconds(classes)
        state = self.state = RunState.plan(
            upstream,
            group_of=self._group_of,
            slot_of=self._slot_of,
            limits=self.options.limits,
            policy=self.options.error_handling,
            keep={t: t._tp.upstream for t in upstream} if self.in_process else None,
            tolerates={t: t._tp.tolerated for t in upstream if t._tp.tolerated},
            cost_of=self._cost,
        )
        need_executor = any(self._slot(type(t)).on_executor for t in stale if t not in scans)
        # Before the hooks (progress bars start a thread): a process pool must fork its
        # workers while this process has no threads of taskproc's own.
        self.resources.start(need_executor)
        report_plan(self.hooks, order if first_round else [t for t in order if t in stale], stale)
        if need_executor:
            state.capacity = capacity(self.resources.executor())
        for cls in classes - {InputFile}:
            # Fingerprint every class now, before any task runs: it parses source files, which
            # must not happen while tasks on threads format tracebacks (see format_traceback).
            self.fingerprints(cls)
        self.ledger.keep.update(state.consumers)
        try:
            self._loop()
        except BaseException:
            self._stop_all(interrupt=True)
            raise
        finally:
            self.ledger.forget_all([t for t in state.consumers if t is not self.root])
        if state.abort:
            self._stop_all(interrupt=False)
        if self.errors:
            n = len(self.errors)
            raise ExceptionGroup(f"{n} task{'s' if n > 1 else ''} failed", self.errors)

    def _loop(self) -> None:
        state = self.state
        poll = self.options.poll_interval
        while not state.abort:
            while starts := state.take():
                self._start_all(starts)
            if state.idle():
                break
            try:
                item = self.completions.get(timeout=poll if state.waiting else 1.0)
            except queue.Empty:
                self._poll_waiting()
                continue
            self._finish(*item)
            while not state.abort:
                try:
                    item = self.completions.get_nowait()
                except queue.Empty:
                    break
                self._finish(*item)
            if state.waiting:
                self._poll_waiting()

    # -- starting ------------------------------------------------------------------

    def _start_all(self, starts: list[Start[TaskBase]]) -> None:
        """Start what `take` gave: executor runs one by one, prefix commands with their
        batches."""
        commands: dict[int, list[TaskBase]] = {}
        for start in starts:
            task = start.task
            if start.first:
                for hook in self.hooks:
                    hook.task_started(task.task_name)
            scan = self.ledger.scans.get(task)
            if scan is not None:  # an input file: its record is written here (the plan read it)
                spec, outcome = record_input(task, scan, self.store, self.me, self.started)
                self.jobs[task] = _Job(spec)
                self.completions.put((task, outcome))
            elif start.command:
                commands.setdefault(start.command, []).append(task)
            else:
                self._start(task)
        for command, tasks in commands.items():
            self._start_command(command, tasks)

    def _spec(self, task: TaskBase) -> JobSpec:
        cls = type(task)
        if cls not in self.codes_kept:
            self._keep_code(cls)
        failed_inputs = self._input_failures(task) if task._tp.tolerated else ()
        return JobSpec(
            task_name=task.task_name,
            task_id=task._tp.task_id,
            location=task._tp_loc(),
            args_json=task._tp.args_json,
            record=new_record(task, self.stamps.new(), self.fingerprints(cls), self.ledger),
            compress_level=cls.task_compress_level,
            retries=cls.task_retries,
            retry_delay=float(cls.task_retry_delay),
            timeout=None if cls.task_timeout is None else float(cls.task_timeout),
            log_level=self.options.worker_log_level,
            holder=self.me,
            forced=self.reasons.get(task) is Reason.FORCED,
            check_code=self.options.detect_source_change,
            failed_inputs=failed_inputs,
            run_started=self.started,
        )

    def _start(self, task: TaskBase) -> None:
        """Start a task on the executor: the worker claims it (the file operations of many
        tasks then run in parallel)."""
        job = self.jobs[task] = _Job(self._spec(task))
        try:
            self._submit(task, job)
        except RuntimeError as exc:
            if job.executor is not None and is_shut_down(job.executor):
                raise ConfigError.bad(
                    "executor",
                    f" passed to run_graph() for {self.root!r} is shut down; pass a running "
                    "executor",
                ) from None
            self.completions.put((task, outside_failure(type(exc).__name__, str(exc))))
        except Exception as exc:
            self.completions.put((task, outside_failure(type(exc).__name__, str(exc))))

    def _start_command(self, command: int, tasks: list[TaskBase]) -> None:
        """Launch prefix command `command` with its batch, in order (see `_prefix.py`): the
        first task that is still to run is claimed here and its claim handed over; the worker
        claims the others when it gets to them."""
        members: list[TaskBase] = []
        specs: list[JobSpec] = []
        for task in tasks:
            spec = self._spec(task)
            lease = None
            if not members:
                got = claim(spec, self.store, self.me)
                if isinstance(got, OUTCOMES):
                    self._not_run(task, got)
                    continue
                lease = got
                spec = spec._replace(holder=None, handover=lease.hand_over())
            self.jobs[task] = _Job(spec, lease=lease)
            members.append(task)
            specs.append(spec)
        if not members:
            self.state.command_ended(command)
            return
        done = self.completions.put

        def finished(i: int, report: Report, seconds: float) -> None:
            done((members[i], (report, seconds)))

        def ended() -> None:
            done((None, command))

        first = members[0]
        try:
            payloads = [self._pack(task) for task in members]
            argv = render(cast(str, self._prefix(type(first))), self._values(first))
            runner = (self.me, self.options.stale_after)
            jobs = cast(PrefixJobs, self.store)  # checked when the run started
            run = PrefixRun(
                argv, list(zip(specs, payloads, strict=True)), jobs, runner, finished, ended
            )
        except Exception as exc:
            failure = outside_failure(type(exc).__name__, str(exc))
            for i, task in enumerate(members):
                done((task, (failure if i == 0 else NotStarted(), 0.0)))
            done((None, command))
            return
        for task in members:
            self.jobs[task].handle = run

    def _input_failures(self, task: TaskBase) -> tuple[tuple[str, bytes], ...]:
        """Give each tolerated upstream task of `task` that failed or was skipped in this
        round its failure (the task's futures read it there, and its record's `deps` count
        it); the failures a worker process must be sent, by task key."""
        failures = {up: e for up in task._tp.tolerated if (e := self._failure(up)) is not None}
        if not failures or (self.in_process and self._prefix(type(task)) is None):
            return ()
        from taskproc.run._remote import pack_failure  # only runs that use other processes

        return tuple(
            (f"{up.task_name}/{up._tp.task_id}", pack_failure(e)) for up, e in failures.items()
        )

    def _failure(self, task: TaskBase) -> FailedTaskError | None:
        """The failure of `task` in this round: its own, or, if it was skipped, an error that
        names the failed task that kept it from running (the next one's failure its cause)."""
        failures = self.ledger.failures
        chain = []
        while task not in failures and task in self.state.skipped:
            chain.append(task)
            task = self.state.skipped[task]
        cause = failures.get(task)  # a failed task: skipping starts at one
        if cause is None:
            return None
        failed = cause.task
        for skipped in reversed(chain):  # from the failed task down, each the next's cause
            err = FailedTaskError(
                repr(skipped),
                task_name=skipped.task_name,
                task_id=skipped._tp.task_id,
                error_type="UpstreamFailed",
                error_message=f"not run, because {failed} failed",
            )
            err.__cause__ = cause
            failures[skipped] = cause = err
        return cause

    def _keep_code(self, cls: type[TaskBase]) -> None:
        """Store what the class's code identity covers (once per identity and store), so that
        `taskproc why` can later show what changed since this run. Our heartbeat names it
        first, so that `gc` keeps it while we run (its results may not be committed yet)."""
        self.codes_kept.add(cls)
        identity = self.fingerprints.identity(cls)
        self.resources.uses_code(identity.digest)
        with contextlib.suppress(OSError):
            write_code_identity(self.store, identity.digest, identity.entries)

    def _submit(self, task: TaskBase, job: _Job) -> None:
        done = self.completions.put
        spec = job.spec
        if self.in_process:
            fn: Callable[..., Outcome] = execute
            args: tuple[Any, ...] = (task, spec, self.capture, self.ledger)
        else:
            from taskproc.run._remote import run_remote

            classes, blob = self._pack(task)
            fn, args = run_remote, (spec, classes, blob, self._portable())
        executor = job.executor = self.resources.executor()
        try:
            future = executor.submit(fn, *args)
        except BrokenExecutor:
            # A worker died and the pool knows it before we have heard of the tasks it broke:
            # start a new pool (ours) and submit there.
            if not self.resources.owned:
                raise
            self.resources.replace_broken(executor)
            executor = job.executor = self.resources.executor()
            future = executor.submit(fn, *args)
        future.add_done_callback(lambda f, t=task: done((t, f)))  # type: ignore[misc]
        job.handle = future

    def _portable(self) -> Store:
        """The store as worker processes reopen it (checked to be `Portable` up front)."""
        if self.portable is None:
            self.portable = cast(Portable, self.store).portable()
        return self.portable

    def _pack(self, task: TaskBase) -> tuple[tuple[bytes, ...], bytes]:
        # Imported here: runs that keep every task in this process never need cloudpickle.
        from taskproc.run._remote import ClassTable, pack

        if self.table is None:
            self.table = ClassTable()
        return pack(task, self.table, self.ledger.stamps)

    # -- finishing -----------------------------------------------------------------

    def _finish(self, task: TaskBase | None, item: Any) -> None:
        if task is None:
            self.state.command_ended(item)
            return
        job = self.jobs.pop(task, None)
        if job is None:
            return
        if type(item) is tuple:  # a prefix run's report and its seconds (outcomes are NamedTuples)
            item, seconds = item
            if isinstance(item, NotStarted):  # its batch ended first: no attempt counts
                self.state.requeue(task)
                return
            if isinstance(item, Done):
                self._note_seconds(task, seconds)
        outcome = self._outcome(task, item, job)
        if job.lease is not None:
            job.lease.release()  # a prefix run's claim, ours: unless its worker committed
        match outcome:
            case None:
                return  # requeued after its worker process died
            case Done(value):
                self.ledger.stamps[task] = job.spec.record.stamp
                in_memory = self.in_process and job.executor is not None  # not a prefix run
                if in_memory and (task in self.state.consumers or task is self.root):
                    self.ledger.values[task] = value
                self._succeeded(task, TaskState.DONE)
            case Failed(failure):
                self._failed(task, failure)
            case InputsLost(locations, _, replaced_by) if replaced_by:
                self._replaced(task, locations[0], replaced_by)
            case InputsLost(locations, damaged):
                (self.corrupt if damaged else self.vanished).update(locations)
                self.state.set_aside(task)
                what = "is corrupt" if damaged else "was deleted since the run started"
                for loc in locations:
                    warnings.warn(
                        f"{task!r}: an upstream result {what} ({loc}); it will be recomputed",
                        stacklevel=1,
                    )
            case _:
                self._not_run(task, outcome)

    def _outcome(self, task: TaskBase, item: Any, job: _Job) -> Outcome | None:
        if isinstance(item, OUTCOMES):
            return item
        future: ExecFuture[Outcome] = item
        try:
            return future.result()
        except CancelledError:
            self._reclaim(job)
            return outside_failure("CancelledError", "the task was cancelled")
        except BrokenExecutor as exc:
            self._reclaim(job)
            owned = self.resources.owned
            if owned:
                self.resources.replace_broken(job.executor)
            if overran(deadline_file(self.store, job.spec.location)):
                return timed_out(job.spec, self.store)
            if self.state.worker_died(task, can_retry=owned):
                return None
            return outside_failure(
                "WorkerDied",
                "the worker process died while running this task (killed, out of memory, or "
                f"os._exit) - {exc}",
            )
        except TASK_ERRORS as raised:  # raised in the worker, outside the task's own code
            if isinstance(raised, Terminated):
                raise
            self._reclaim(job)
            error = task_error(raised)
            tb = format_traceback(error)
            return outside_failure(type(error).__name__, str(error), tb)

    def _replaced(self, task: TaskBase, loc: str, code_id: str) -> None:
        """An upstream result `task` loaded had been replaced by another runner since this
        run planned or made it: a result of other code stops `task` when code is checked (a
        runner never uses one; see docs/guarantees.md), and is warned about when it is not;
        either way it is not used as it is: the next round plans again."""
        up = next((u for u in task._tp.upstream if u._tp_loc() == loc), None)
        if up is not None and code_id != self.fingerprints(type(up)):
            if self.options.detect_source_change:
                message = replaced_message(up)
                self.store.write_error(task._tp_loc(), f"ResultReplaced: {message}\n")
                self._failed(task, Failure("ResultReplaced", message, ""))
                return
            self._warn_other_code(up)
        self.replaced.add(loc)
        self.state.set_aside(task)

    def _warn_other_code(self, task: TaskBase) -> None:
        """The warning of a result of other code that appeared while this run went on, used
        because code is not checked (the plan warns of those found before)."""
        message = code_changed_message({task.task_name: 1}, during_run=True)
        warnings.warn(message, CodeChangedWarning, stacklevel=2)

    def _reclaim(self, job: _Job) -> None:
        """Remove the claim a job's worker took and could not give back (it died, or the job
        failed around the task): a claim of this runner's is not another runner's to wait on."""
        loc = job.spec.location
        with contextlib.suppress(OSError):
            holder = self.store.read_claim(loc)
            if holder is not None and holder.same_runner(self.me):
                self.store.break_claim(loc, holder, self.me)

    def _not_run(self, task: TaskBase, outcome: Outcome) -> None:
        """The task was not run: another runner holds it, or has finished it (or the claim
        could not be taken)."""
        match outcome:
            case Cached(stamp, other_code):
                if other_code:
                    self._warn_other_code(task)
                self.ledger.stamps[task] = stamp
                self._succeeded(task, TaskState.CACHED)
            case Held(holder):
                loc = task._tp_loc()
                if self.liveness.is_dead(holder) and self.store.break_claim(loc, holder, self.me):
                    self.state.requeue(task)
                else:
                    self.state.held(task, holder)
            case Failed(failure):
                self._failed(task, failure)
            case _:
                self._failed(task, Failure("Error", f"unexpected outcome {outcome!r}", ""))

    def _succeeded(self, task: TaskBase, how: TaskState) -> None:
        for hook in self.hooks:
            hook.task_finished(task.task_name, how)
        for up in self.state.succeeded(task, task._tp.upstream):
            if up is not self.root:
                self.ledger.forget(up)

    def _failed(self, task: TaskBase, f: Failure) -> None:
        err = FailedTaskError(
            repr(task),
            task_name=task.task_name,
            task_id=task._tp.task_id,
            task_dir=task._tp_loc(),
            error_type=f.error_type,
            error_message=f.message,
            traceback=f.traceback,
            output_tail=f.output_tail,
        )
        if f.exception is not None:
            with contextlib.suppress(Exception):
                err.__cause__ = pickle.loads(f.exception)
        self.errors.append(err)
        self.ledger.failures[task] = err  # the value of futures that tolerate it (allow_failed)
        for hook in self.hooks:
            hook.task_finished(task.task_name, TaskState.FAILED)
        self.state.failed(task)

    # -- other runners ---------------------------------------------------------------

    def _poll_waiting(self) -> None:
        check_code = self.options.detect_source_change
        for task, holder in list(self.state.waiting.items()):
            loc = task._tp_loc()
            try:
                record = read_record(self.store, loc)
            except CorruptResultError:
                record = None
            code_id = self.fingerprints(type(task)) if check_code else None
            if record is not None and why_stale(task, record, code_id, self.ledger) is None:
                if not check_code and record.code_id != self.fingerprints(type(task)):
                    self._warn_other_code(task)
                self.ledger.stamps[task] = record.stamp
                self._succeeded(task, TaskState.CACHED)
                continue
            current = self.store.read_claim(loc)
            if current is None or self.liveness.is_dead(current):
                self.state.requeue(task)
            elif current != holder:
                self.state.held(task, current)

    # -- stopping ------------------------------------------------------------------

    def _stop_all(self, *, interrupt: bool) -> None:
        """Stop what runs (after an interrupt or an 'immediate' failure), all at once, and
        release every claim held, even if a second interrupt comes meanwhile."""
        jobs = list(self.jobs.values())
        try:
            for job in jobs:
                if isinstance(job.handle, ExecFuture):
                    job.handle.cancel()
            if self.resources.owned and (interrupt or jobs):
                self.resources.stop_workers()
            runs = {id(job.handle): job.handle for job in jobs if isinstance(job.handle, PrefixRun)}
            stop_all(list(runs.values()))
        finally:
            for job in jobs:
                if job.lease is not None:
                    job.lease.release()
                else:
                    self._reclaim(job)
            self.jobs.clear()


def _median(values: list[float]) -> float:
    """The median of `values` (not empty). Not `statistics.median`: a runner must not import
    a standard module that a pipeline's folder may hold a module of the same name for (the
    pipeline's own ``statistics.py`` would then never be imported)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
