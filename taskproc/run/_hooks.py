"""What the run loop tells the world: task states, the hooks protocol, and statistics.

`TaskState` is the one vocabulary of task states: the run's hooks and statistics, the progress
bars, `taskproc status`, `ls` and the graph view all use it. The run loop calls the hooks of a
`RunHooks` in this order: `run_started` once; for each task that it starts, `task_started`
once and later `task_finished` once (however often the task is retried, requeued or waited
for); `run_finished` once, also after a failure or an interrupt.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import Any, Protocol


class TaskState(str, enum.Enum):
    """The state of a task. A str, so that ``state == 'done'`` works as it always did."""

    DONE = "done"  # a fresh result is in the cache (in a run: it ran here and succeeded)
    CACHED = "cached"  # in a run: not run here, its fresh result was already there
    STALE = "stale"  # a result is there but the task would rerun (the reason is kept beside)
    RUNNING = "running"  # a live runner holds it
    FAILED = "failed"  # its last attempt raised
    INCOMPLETE = "incomplete"  # started but never finished: killed, or its runner died
    MISSING = "missing"  # never run: nothing of it is in the cache (views of a graph)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunHooks(Protocol):
    """What the run loop reports. `plan` maps task name to (tasks to run, tasks cached)."""

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None: ...
    def task_started(self, task_name: str) -> None: ...
    def task_finished(self, task_name: str, state: TaskState) -> None: ...
    def run_finished(self) -> None: ...


class Stats:
    """Counts per task name; `as_dict` is the `stats` that run_graph returns."""

    def __init__(self) -> None:
        self.executed: dict[str, int] = {}
        self.cached: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self._to_run: dict[str, int] = {}

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None:
        for name, (to_run, cached) in plan.items():
            self.executed.setdefault(name, 0)
            self.cached[name] = self.cached.get(name, 0) + cached
            self._to_run[name] = self._to_run.get(name, 0) + to_run

    def task_started(self, task_name: str) -> None:
        pass

    def task_finished(self, task_name: str, state: TaskState) -> None:
        if state is TaskState.DONE:
            self.executed[task_name] = self.executed.get(task_name, 0) + 1
        elif state is TaskState.FAILED:
            self.failed[task_name] = self.failed.get(task_name, 0) + 1
        elif state is TaskState.CACHED:  # finished by another runner meanwhile
            self.cached[task_name] = self.cached.get(task_name, 0) + 1

    def run_finished(self) -> None:
        self.elapsed = time.perf_counter() - self.started
        for name, to_run in self._to_run.items():
            left = (
                to_run
                - self.executed.get(name, 0)
                - self.failed.get(name, 0)
                - self.cached.get(name, 0)
            )
            if left > 0:
                self.skipped[name] = left

    def as_dict(self) -> dict[str, Any]:
        return {
            "stats": dict(self.executed),
            "cached": {k: v for k, v in self.cached.items() if v},
            "failed": dict(self.failed),
            "skipped": dict(self.skipped),
            "executed": sum(self.executed.values()),
            "elapsed": self.elapsed,
        }
