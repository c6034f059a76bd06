"""Progress bars: a run hook that draws one tqdm bar per task name on a terminal, and prints
one summary line at the end.

Running and queued: the run tells its hooks when it gives a task to the executor, which holds
more tasks than it has workers (so that none idles). Executors start tasks in the order they
were given, so of the tasks given and not finished, the first `workers` run and the others
wait. A bar's clock starts when its first task does: its rate is that of its own tasks, not of
the run since it began.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from taskproc.run._hooks import TaskState


@dataclass(slots=True)
class _Counts:
    """Tasks of one name in this run (mutable: updated as the run goes)."""

    to_run: int = 0
    cached: int = 0
    taken: int = 0  # of to_run, finished by another runner meanwhile
    running: int = 0
    queued: int = 0  # given to the executor, waiting for a worker
    done: int = 0
    failed: int = 0
    begun: bool = False  # a task of this name started (its bar's clock runs)

    def postfix(self) -> str:
        parts = [f"{self.running} running"] if self.running else []
        if self.queued:
            parts.append(f"{self.queued} queued")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cached + self.taken:
            parts.append(f"{self.cached + self.taken} cached")
        return ", ".join(parts)


class ProgressBars:
    """On a terminal (and with `bars`), one tqdm bar per task name that has tasks to run, with
    its counts of done (the bar), running, queued, failed and cached; then a summary line.
    `workers`: how many tasks the executor runs at once (None: all it is given)."""

    def __init__(
        self, stream: TextIO | None = None, *, bars: bool = True, workers: int | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = bars and bool(getattr(self._stream, "isatty", lambda: False)())
        self._workers = workers
        self._bars: dict[str, Any] = {}
        self._counts: dict[str, _Counts] = {}
        self._given: list[str] = []  # task names of the tasks given and not finished, in order
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
        bar = self._bars.get(task_name)
        if bar is None:
            return  # no bars: only the summary, from the finished counts
        if not counts.begun:
            bar.reset(total=counts.to_run)  # its clock starts with its first task
            counts.begun = True
        self._given.append(task_name)
        self._recount(task_name, advance=0)

    def task_finished(self, task_name: str, state: TaskState) -> None:
        counts = self._of(task_name)
        if state is TaskState.CACHED:
            counts.taken += 1  # finished by another runner meanwhile, not run here
        elif state is TaskState.FAILED:
            counts.failed += 1
        else:
            counts.done += 1
        if task_name in self._given:
            self._given.remove(task_name)  # the first given of its name: it ran first
            self._recount(task_name, advance=1)

    def _recount(self, name: str, advance: int) -> None:
        """Share the tasks given and not finished into running and queued, and redraw the
        bars whose counts changed (a task finishing lets a task of another name run)."""
        split: dict[str, list[int]] = {}
        for i, given in enumerate(self._given):
            waits = self._workers is not None and i >= self._workers
            split.setdefault(given, [0, 0])[1 if waits else 0] += 1
        for other, counts in self._counts.items():
            running, queued = split.get(other, (0, 0))
            changed = (running, queued) != (counts.running, counts.queued)
            counts.running, counts.queued = running, queued
            if changed or other == name:
                self._refresh(other, counts, advance if other == name else 0)

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
