"""Run hooks: statistics and progress bars live outside the run loop."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(slots=True)
class _Counts:
    """Tasks of one name in this run (mutable: updated as the run goes)."""

    to_run: int = 0
    cached: int = 0
    taken: int = 0  # of to_run, finished by another runner meanwhile
    running: int = 0
    done: int = 0
    failed: int = 0

    def postfix(self) -> str:
        parts = [f"{self.running} running"] if self.running else []
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cached + self.taken:
            parts.append(f"{self.cached + self.taken} cached")
        return ", ".join(parts)


class ProgressBars:
    """On a terminal, one tqdm bar per task name that has tasks to run, with its counts of
    done (the bar), running, failed and cached. Otherwise only a summary line at the end."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._bars: dict[str, Any] = {}
        self._counts: dict[str, _Counts] = {}
        self._start = time.perf_counter()

    def _of(self, task_name: str) -> _Counts:
        counts = self._counts.get(task_name)
        if counts is None:
            counts = self._counts[task_name] = _Counts()
        return counts

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None:
        for name, (to_run, cached) in plan.items():
            counts = self._of(name)
            counts.to_run += to_run
            counts.cached += cached
        if self._tty:
            for name, counts in self._counts.items():
                self._bar(name, counts)

    def _bar(self, name: str, counts: _Counts) -> None:
        bar = self._bars.get(name)
        if bar is None and counts.to_run:
            from tqdm import tqdm

            bar = self._bars[name] = tqdm(
                total=counts.to_run,
                desc=name,
                unit="task",
                file=self._stream,
                position=len(self._bars),
                leave=True,
                **self._width(),
            )
        elif bar is not None and bar.total != counts.to_run:
            bar.total = counts.to_run  # a later round (after a corrupt result) adds tasks
        if bar is not None:
            bar.set_postfix_str(counts.postfix(), refresh=False)

    def _width(self) -> dict[str, Any]:
        # A terminal that reports no size (a bare pty) would get hidden, empty bars.
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return {"dynamic_ncols": True} if columns > 0 else {"ncols": 100, "nrows": 40}

    def task_started(self, task_name: str) -> None:
        counts = self._of(task_name)
        counts.running += 1
        self._refresh(task_name, counts, advance=0)

    def task_finished(self, task_name: str, state: str) -> None:
        counts = self._of(task_name)
        if state == "cached":
            # Finished by another runner meanwhile: it was counted to run, never started here.
            counts.taken += 1
        else:
            counts.running = max(0, counts.running - 1)
            if state == "failed":
                counts.failed += 1
            else:
                counts.done += 1
        self._refresh(task_name, counts, advance=1)

    def _refresh(self, name: str, counts: _Counts, advance: int) -> None:
        bar = self._bars.get(name)
        if bar is None:
            return
        bar.set_postfix_str(counts.postfix(), refresh=False)
        if advance:
            bar.update(advance)
        else:
            bar.refresh()

    def summary(self) -> str:
        """``taskproc: 12 done, 3 cached, 1 failed, 2 not run in 4.2 s``."""
        c = self._counts.values()
        done = sum(x.done for x in c)
        cached = sum(x.cached + x.taken for x in c)
        failed = sum(x.failed for x in c)
        skipped = sum(max(0, x.to_run - x.done - x.failed - x.taken) for x in c)
        text = f"taskproc: {done} done, {cached} cached, {failed} failed"
        if skipped:
            text += f", {skipped} not run"
        return f"{text} in {time.perf_counter() - self._start:.1f} s"

    def run_finished(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._counts:  # no summary when the run stopped before it started (a cycle...)
            print(self.summary(), file=self._stream, flush=True)
