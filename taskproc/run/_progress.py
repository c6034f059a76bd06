"""Progress bars: a run hook that draws one tqdm bar per task name on a terminal."""

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

    def task_finished(self, task_name: str, state: TaskState) -> None:
        counts = self._of(task_name)
        counts.running -= 1
        if state is TaskState.CACHED:
            counts.taken += 1  # finished by another runner meanwhile, not run here
        elif state is TaskState.FAILED:
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
