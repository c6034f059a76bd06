"""`RunState`: the decisions of one round of a run, with no I/O.

A round runs the stale tasks of a graph. The state knows which tasks are ready (a queue per
task class, in topological order from `graphlib`), running, waiting for another runner,
done and failed; the label counters; how many tasks the executor may hold; and the error
policy. The driver (`_driver.py`) asks it what may start now (`take`), does the I/O, and tells
it what came of each task (`succeeded`, `failed`, `held`, `requeue`, `worker_died`,
`set_aside`). Each transition is a plain method over this record, tested without an executor,
a thread or a disk. Tasks are any hashable values: the driver uses task objects, the tests
use strings.

Tasks that run through a prefix command start in commands (`Start.command`): each command
runs a batch of up to `Slot.batch` ready tasks of one group, one after another, filled from
what is ready when it starts (never waiting to fill), spread over the places the labels'
limits leave, and cut where the tasks' estimated seconds (`cost_of`) would pass
`Slot.budget`. A command, not a task, holds its labels' places: each task of a batch leaves
`running` on its own outcome, and the command gives its places back when it ends
(`command_ended`). A task of a batch that never started goes back to its queue (`requeue`).

A failure keeps its downstream tasks from ever becoming ready, unless some of them tolerate
it (`allow_failed`) and the policy is 'lazy'. Then the failed task counts as finished for the
sorter: its other downstream tasks are `blocked` and, once nothing else holds them back,
`skipped` (not run, and a failure to their own downstream tasks in turn), while those that
tolerate it become ready as usual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Generic, TypeVar

from taskproc.run._limits import LabelCounter, batch_size, fill_batch

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Slot:
    """How a group of tasks runs: the limited labels it holds, whether it takes a place on
    the executor (a prefix run does not: a thread of the runner waits for its command), and
    for prefix runs, the most tasks one command runs and the batch's time budget (seconds)."""

    limited: tuple[str, ...]
    on_executor: bool = True
    batch: int = 1
    budget: float | None = None


@dataclass(frozen=True, slots=True)
class Start(Generic[T]):
    """A task the driver must start now; `first` unless it was started before (a retry after
    its worker died, or a takeover from a dead runner): hooks hear of each task once. Tasks
    with the same `command` (never 0) run in one prefix command, in order; 0: on the executor."""

    task: T
    first: bool
    command: int = 0


def _no_cost(task: object) -> float:
    return 0.0


@dataclass(slots=True)
class RunState(Generic[T]):
    """The state of one round. Build it with `RunState.plan`."""

    sorter: TopologicalSorter[T]
    group_of: Callable[[T], Hashable]
    slot_of: Callable[[Hashable], Slot]
    counter: LabelCounter
    policy: str  # 'immediate', 'eager' or 'lazy'
    capacity: int = 1  # tasks the executor may hold at once
    cost_of: Callable[[T], float] = _no_cost  # a task's estimated seconds (batch budgets)
    ready: dict[Hashable, deque[T]] = field(default_factory=dict)
    slots: dict[Hashable, Slot] = field(default_factory=dict)  # slot_of's answers, by group
    running: dict[T, Slot] = field(default_factory=dict)
    waiting: dict[T, object] = field(default_factory=dict)  # task -> the claim it waits on
    done: list[T] = field(default_factory=list)
    failures: list[T] = field(default_factory=list)
    started: set[T] = field(default_factory=set)
    suspects: set[T] = field(default_factory=set)  # in flight when a worker died
    consumers: dict[T, int] = field(default_factory=dict)  # results kept in memory, by users
    inflight: int = 0  # running tasks that hold a place on the executor
    commands: dict[int, tuple[str, ...]] = field(default_factory=dict)  # live -> its labels
    last_command: int = 0
    tolerates: dict[T, frozenset[T]] = field(default_factory=dict)  # task -> upstream tasks
    downstream: dict[T, list[T]] = field(default_factory=dict)  # kept only if some tolerate
    blocked: dict[T, T] = field(default_factory=dict)  # task -> a failed upstream task
    skipped: dict[T, T] = field(default_factory=dict)  # not run: task -> a failed upstream
    stop_new: bool = False  # start nothing new (after a failure, 'eager')
    abort: bool = False  # stop at once (after a failure, 'immediate')

    @staticmethod
    def plan(
        upstream: Mapping[T, Iterable[T]],
        *,
        group_of: Callable[[T], Hashable],
        slot_of: Callable[[Hashable], Slot],
        limits: Mapping[str, int],
        policy: str,
        capacity: int = 1,
        keep: Mapping[T, Iterable[T]] | None = None,
        tolerates: Mapping[T, Iterable[T]] | None = None,
        cost_of: Callable[[T], float] = _no_cost,
    ) -> RunState[T]:
        """The state before a round: `upstream` maps each task to run to the tasks to run
        that it needs. With `keep` (each task to run -> all its upstream tasks), count the
        users of each upstream result, so the driver can drop results from memory once their
        last user has run (see `succeeded`). `tolerates` maps a task to those of its upstream
        tasks whose failure it takes as a value (see `failed`)."""
        sorter: TopologicalSorter[T] = TopologicalSorter()
        for task, ups in upstream.items():
            sorter.add(task, *ups)
        sorter.prepare()
        state = RunState(sorter, group_of, slot_of, LabelCounter(limits), policy, capacity, cost_of)
        for task, ups in (tolerates or {}).items():
            if ups := frozenset(ups):
                state.tolerates[task] = ups
        if state.tolerates:
            for task, ups in upstream.items():
                for up in ups:
                    state.downstream.setdefault(up, []).append(task)
        for ups in (keep or {}).values():
            for up in ups:
                state.consumers[up] = state.consumers.get(up, 0) + 1
        state._enqueue(sorter.get_ready())
        return state

    def _enqueue(self, tasks: Iterable[T]) -> None:
        for task in tasks:
            group = self.group_of(task)
            q = self.ready.get(group)
            if q is None:
                q = self.ready[group] = deque()
            q.append(task)

    def _requeue(self, task: T) -> None:
        self.ready.setdefault(self.group_of(task), deque()).appendleft(task)

    # -- what may start ---------------------------------------------------------------------

    def take(self) -> list[Start[T]]:
        """The tasks that may start now, marked running: each fits its labels' limits and,
        if it runs on the executor, a free place there (one place only while a worker's
        death is being traced to its task); prefix runs in commands (see the module note)."""
        out: list[Start[T]] = []
        if self.stop_new or self.abort:
            return out
        slots = self.slots
        for group, q in self.ready.items():
            slot = slots.get(group)
            if slot is None:
                slot = slots[group] = self.slot_of(group)
            if not slot.on_executor:
                while q and self.counter.fits(slot.limited):
                    self._start_command(q, slot, out)
                continue
            cap = 1 if self.suspects else self.capacity
            while q and self.inflight < cap:
                if not self.counter.fits(slot.limited):
                    break
                task = q.popleft()
                self.counter.acquire(slot.limited)
                self.inflight += 1
                self.running[task] = slot  # `_run`, written out: this runs once a task
                first = task not in self.started
                self.started.add(task)
                out.append(Start(task, first, 0))
        return out

    def _start_command(self, q: deque[T], slot: Slot, out: list[Start[T]]) -> None:
        """Start one prefix command with the next batch of `q`."""
        size = batch_size(slot.batch, len(q), self.counter.room(slot.limited))
        if slot.budget is not None and size > 1:
            cost_of = self.cost_of
            size = fill_batch((cost_of(t) for t in q), size, slot.budget)
        self.counter.acquire(slot.limited)
        self.last_command += 1
        command = self.last_command
        self.commands[command] = slot.limited
        for _ in range(size):
            out.append(self._run(q.popleft(), slot, command))

    def _run(self, task: T, slot: Slot, command: int) -> Start[T]:
        self.running[task] = slot
        first = task not in self.started
        self.started.add(task)
        return Start(task, first, command)

    def command_ended(self, command: int) -> None:
        """The prefix command `command` ended: its labels' places are free (its tasks left
        `running` on their own outcomes)."""
        limited = self.commands.pop(command, None)
        if limited is not None:
            self.counter.release(limited)

    def idle(self) -> bool:
        """Nothing is running or awaited: the round is over once `take` has nothing more."""
        return not self.running and not self.waiting and not self.commands

    # -- what came of a task -------------------------------------------------------------

    def _leave(self, task: T) -> bool:
        """Take `task` out of `running`, giving back what it held; False if not running."""
        slot = self.running.pop(task, None)
        if slot is None:
            return False
        if slot.on_executor:  # a prefix run's command holds the places (`command_ended`)
            self.counter.release(slot.limited)
            self.inflight -= 1
        return True

    def succeeded(self, task: T, upstream: Iterable[T] = ()) -> list[T]:
        """`task` has a fresh result (run here, or by another runner): its downstream tasks
        may become ready. Returns the tasks among `upstream` whose results no task of this
        round needs any longer."""
        self._leave(task)
        self.waiting.pop(task, None)
        self.suspects.discard(task)
        self.done.append(task)
        self._advance(task)
        freed = []
        if self.consumers:
            for up in upstream:
                left = self.consumers.get(up)
                if left is not None:
                    self.consumers[up] = left - 1
                    if left == 1:
                        freed.append(up)
        return freed

    def failed(self, task: T) -> None:
        """`task` failed: apply the error policy. Its downstream tasks never become ready,
        but with 'lazy', those that tolerate its failure do once nothing else holds them back
        (the others are skipped)."""
        self._leave(task)
        self.waiting.pop(task, None)
        self.failures.append(task)
        if self.policy == "immediate":
            self.abort = True
        elif self.policy == "eager":
            self.stop_new = True
        elif self.tolerates:
            self._block_downstream(task)
            self._advance(task)

    def _block_downstream(self, task: T) -> None:
        """`task` failed or was skipped: its downstream tasks that need its result cannot run."""
        for down in self.downstream.get(task, ()):
            if task not in self.tolerates.get(down, ()):
                self.blocked.setdefault(down, task)

    def _advance(self, task: T) -> None:
        """`task` holds back its downstream tasks no longer: queue those that are ready now,
        skipping the blocked ones (which may make more ready, or blocked)."""
        finished = [task]
        while finished:
            self.sorter.done(*finished)
            ready = self.sorter.get_ready()
            finished = []
            if self.blocked:
                for t in ready:
                    cause = self.blocked.pop(t, None)
                    if cause is not None:
                        self.skipped[t] = cause
                        self._block_downstream(t)
                        finished.append(t)
                if finished:
                    ready = tuple(t for t in ready if t not in self.skipped)
            self._enqueue(ready)

    def held(self, task: T, holder: object) -> None:
        """Another runner holds `task`: wait for it (see `requeue` if that runner dies)."""
        self._leave(task)
        self.waiting[task] = holder

    def requeue(self, task: T) -> None:
        """Start `task` again as soon as it fits: its holder died (its claim was broken)."""
        self._leave(task)
        self.waiting.pop(task, None)
        self._requeue(task)

    def worker_died(self, task: T, can_retry: bool) -> bool:
        """A worker process died while `task` was in flight. The first time (and if the pool
        can be replaced), retry it alone, so that the task that kills workers is found: True.
        A task that breaks the pool alone has failed: False (call `failed`)."""
        if can_retry and task not in self.suspects:
            self.suspects.add(task)
            self.requeue(task)
            return True
        return False

    def set_aside(self, task: T) -> None:
        """`task` found an upstream result damaged: leave it, the next round reruns both."""
        self._leave(task)
