"""Run hooks: statistics and progress bars live outside the run loop."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO


class RunHooks(Protocol):
    """What the run loop reports. `plan` maps task name to (tasks to run, tasks cached)."""

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None: ...
    def task_started(self, task_name: str) -> None: ...
    def task_finished(self, task_name: str, state: str) -> None: ...
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

    def task_finished(self, task_name: str, state: str) -> None:
        if state == "done":
            self.executed[task_name] = self.executed.get(task_name, 0) + 1
        elif state == "failed":
            self.failed[task_name] = self.failed.get(task_name, 0) + 1
        elif state == "cached":  # finished by another runner meanwhile
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


class ProgressBars:
    """One tqdm bar per task name on a terminal; one summary line otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._bars: dict[str, Any] = {}
        self._running: dict[str, int] = {}
        self._counts = {"done": 0, "failed": 0, "cached": 0}
        self._start = time.perf_counter()

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None:
        self._counts["cached"] += sum(c for _, c in plan.values())
        if not self._tty:
            return
        from tqdm import tqdm

        for name, (to_run, cached) in plan.items():
            if to_run and name not in self._bars:
                self._bars[name] = tqdm(
                    total=to_run,
                    desc=name,
                    file=self._stream,
                    leave=True,
                    position=len(self._bars),
                    dynamic_ncols=True,
                )
                self._bars[name].set_postfix(cached=cached, refresh=False)

    def task_started(self, task_name: str) -> None:
        self._running[task_name] = self._running.get(task_name, 0) + 1
        bar = self._bars.get(task_name)
        if bar is not None:
            bar.set_postfix(running=self._running[task_name], refresh=True)

    def task_finished(self, task_name: str, state: str) -> None:
        self._counts[state] = self._counts.get(state, 0) + 1
        self._running[task_name] = max(0, self._running.get(task_name, 0) - 1)
        bar = self._bars.get(task_name)
        if bar is not None:
            bar.update(1)
            if state == "failed":
                bar.set_description(f"{task_name} (failed)", refresh=False)

    def run_finished(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        took = time.perf_counter() - self._start
        c = self._counts
        print(
            f"taskproc: {c['done']} done, {c['cached']} cached, {c['failed']} failed "
            f"in {took:.1f} s",
            file=self._stream,
        )
